//! Fault injection: rates within statistical bounds for a fixed seed, determinism across
//! runs, dropped connections, slow answers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::start;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use imggo_emulator::{Config, Emulator, Faults};

/// Sends `n` GETs of `/_health` on fresh clients and returns the outcome of each:
/// a status, or 0 for a transport error (dropped connection).
async fn outcomes(config: Config, n: usize) -> (Vec<u16>, imggo_emulator::Stats) {
    let emu = Emulator::start(config).await.unwrap();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}/_health", emu.base_url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let code = match client.request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.into_body().collect().await {
                    Ok(_) => status,
                    Err(_) => 0,
                }
            }
            Err(_) => 0,
        };
        out.push(code);
    }
    let stats = emu.stats();
    emu.shutdown().await;
    (out, stats)
}

fn within(count: usize, n: usize, p: f64) -> bool {
    // Four standard deviations of Binomial(n, p).
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 4.0 * sd + 1.0
}

#[tokio::test]
async fn rates_are_within_bounds_and_deterministic_per_seed() {
    let faults = Faults {
        fail_500: 0.1,
        fail_503: 0.15,
        drop: 0.05,
        ..Faults::default()
    };
    let config = Config {
        faults,
        seed: 1234,
        ..Config::default()
    };
    let n = 1000;
    let (a, stats) = outcomes(config.clone(), n).await;
    let count = |v: &[u16], code| v.iter().filter(|&&c| c == code).count();
    assert!(within(count(&a, 500), n, 0.1), "500s: {}", count(&a, 500));
    assert!(within(count(&a, 503), n, 0.15), "503s: {}", count(&a, 503));
    assert!(within(count(&a, 0), n, 0.05), "drops: {}", count(&a, 0));
    assert_eq!(
        count(&a, 200) + count(&a, 500) + count(&a, 503) + count(&a, 0),
        n
    );
    // The emulator's own counters agree with what the client saw.
    assert_eq!(stats.faults.http_500 as usize, count(&a, 500));
    assert_eq!(stats.faults.http_503 as usize, count(&a, 503));
    assert_eq!(stats.faults.dropped as usize, count(&a, 0));
    // Same seed, same sequence; another seed, another sequence.
    let (b, _) = outcomes(config.clone(), n).await;
    assert_eq!(a, b);
    let (c, _) = outcomes(Config { seed: 99, ..config }, n).await;
    assert_ne!(a, c);
}

#[tokio::test]
async fn dropped_connections_are_new_connections_next_time() {
    let config = Config {
        faults: Faults {
            drop: 1.0,
            ..Faults::default()
        },
        ..Config::default()
    };
    let (out, stats) = outcomes(config, 5).await;
    assert_eq!(out, [0; 5]);
    assert_eq!(
        stats.connections_accepted, 5,
        "each drop closes its connection"
    );
    // The response was being sent with its status: counted under it.
    assert_eq!(stats.requests_with("GET /api/_health", 200), 5);
}

#[tokio::test]
async fn slow_answers_are_delayed() {
    let (emu, api) = start(Config::default().faults(Faults {
        slow: 1.0,
        slow_by: Duration::from_millis(150),
        ..Faults::default()
    }))
    .await;
    let t = Instant::now();
    assert_eq!(api.get("/_health").await.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
    // The stats route is never faulted.
    let t = Instant::now();
    api.get("/_emulator/stats").await;
    assert!(t.elapsed() < Duration::from_millis(150));
    assert_eq!(emu.stats().faults.slow, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_fault_config_is_refused_naming_the_setting() {
    let e = Emulator::start(Config::default().faults(Faults {
        fail_500: 1.5,
        ..Faults::default()
    }))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("fail_500"), "{e}");
    let e = Emulator::start(Config::default().faults(Faults {
        fail_500: 0.6,
        fail_503: 0.6,
        ..Faults::default()
    }))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("must not exceed 1"), "{e}");
}
