//! Webhooks: registration, signed deliveries to a real loopback receiver, loss and retry.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{corpus, eventually, start, wait_terminal, Api};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use imggo_core::{Envelope, EventKind, Webhook, WebhookEvent};
use imggo_emulator::{signature, Config, Faults, WebhookRetry};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A delivery as received: signature header and exact body.
#[derive(Debug)]
struct Received {
    signature: String,
    body: Bytes,
}

/// Registers a hook for `http://{addr}/h` with the default events and a generated secret.
async fn register_default(api: &Api, addr: SocketAddr) {
    api.post_json("/webhooks", &json!({"url": format!("http://{addr}/h")}))
        .await;
}

/// A loopback receiver that answers `fail_first` requests with 500, then 200.
async fn receiver(fail_first: usize) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let seen = seen.clone();
                    async move {
                        let signature = req
                            .headers()
                            .get("x-imggo-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send(Received { signature, body });
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail_first {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

async fn ingest(api: &Api, pattern: &str, img: &[u8]) -> String {
    let r = api.ingest_jpeg(pattern, img, "x.jpg").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    r.job_id()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no delivery within 5 s")
        .expect("receiver closed")
}

#[tokio::test]
async fn registration_rules_and_listing() {
    let (emu, api) = start(Config::default()).await;
    // A given secret must have 16+ characters.
    let r = api
        .post_json(
            "/webhooks",
            &json!({"url": "http://127.0.0.1:9/h", "secret": "short"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .post_json("/webhooks", &json!({"url": "ftp://x/h"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .post_json(
            "/webhooks",
            &json!({"url": "http://127.0.0.1:9/h", "events": ["job.exploded"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Without a secret one is generated: 64 hex, returned once.
    let r = api
        .post_json("/webhooks", &json!({"url": "http://127.0.0.1:9/h"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let hook: Envelope<Webhook> = serde_json::from_slice(&r.body).unwrap();
    let secret = hook.data.secret.clone().unwrap();
    assert_eq!(secret.expose().len(), 64);
    assert!(secret.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(hook.data.events, ["job.succeeded", "job.failed"]);
    let list = api.get("/webhooks").await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // The list's schema requires the field; it shows the last four characters only.
    let shown = list["data"][0]["secret"].as_str().unwrap();
    let tail = &secret.expose()[60..];
    assert_eq!(shown, format!("****{tail}"), "secret shown twice");
    let r = api.delete(&format!("/webhooks/{}", hook.data.id)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api.delete(&format!("/webhooks/{}", hook.data.id))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.get("/webhooks").await.json()["data"], json!([]));
    emu.shutdown().await;
}

#[tokio::test]
async fn deliveries_are_signed_over_the_exact_body() {
    let (addr, mut rx) = receiver(0).await;
    let (emu, api) = start(
        Config::default()
            .faults(Faults {
                job_fail: 0.5,
                ..Faults::default()
            })
            .seed(3),
    )
    .await;
    let secret = "a-very-secret-webhook-key";
    let r = api
        .post_json(
            "/webhooks",
            &json!({"url": format!("http://{addr}/hook"), "secret": secret}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pattern = emu.create_pattern("Hooks", None);
    let img = corpus("construction1.jpg");
    let mut kinds = std::collections::HashSet::new();
    for _ in 0..12 {
        let job = ingest(&api, &pattern.id, &img).await;
        let final_state = wait_terminal(&api, &job, Duration::from_secs(5)).await;
        let got = next(&mut rx).await;
        // Verifies with the secret, not with another one.
        assert_eq!(got.signature, signature(secret.as_bytes(), &got.body));
        assert_ne!(
            got.signature,
            signature(b"a-wrong-secret-of-16+", &got.body)
        );
        let event: WebhookEvent = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(event.job_id, job);
        assert_eq!(event.pattern_id.as_deref(), Some(pattern.id.as_str()));
        assert!(event.sent_at().unwrap().is_some());
        match final_state["data"]["status"].as_str().unwrap() {
            "succeeded" => {
                assert_eq!(event.event, EventKind::JobSucceeded);
                assert!(event.manifest.is_some() && event.error.is_none());
            }
            _ => {
                assert_eq!(event.event, EventKind::JobFailed);
                assert!(event.manifest.is_none() && event.error.is_some());
            }
        }
        kinds.insert(event.event.as_str().to_owned());
    }
    assert_eq!(
        kinds.len(),
        2,
        "seed 3 with p=0.5 should give both outcomes"
    );
    // The receiver answered; the emulator counts the delivery when the answer arrives.
    eventually("12 deliveries", Duration::from_secs(5), || {
        emu.stats().webhooks.delivered == 12
    })
    .await;
    let s = emu.stats();
    assert_eq!(s.webhooks.attempted, 12);
    assert_eq!(s.webhooks.delivered, 12);
    assert_eq!((s.webhooks.lost, s.webhooks.failed), (0, 0));
    emu.shutdown().await;
}

#[tokio::test]
async fn event_filter_only_sends_subscribed_events() {
    let (addr, mut rx) = receiver(0).await;
    let (emu, api) = start(Config::default().faults(Faults {
        job_fail: 1.0,
        ..Faults::default()
    }))
    .await;
    api.post_json(
        "/webhooks",
        &json!({"url": format!("http://{addr}/ok"), "events": ["job.succeeded"], "secret": "0123456789abcdef"}),
    )
    .await;
    let pattern = emu.create_pattern("Filter", None);
    let job = ingest(&api, &pattern.id, &corpus("construction2.jpg")).await;
    wait_terminal(&api, &job, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rx.try_recv().is_err(),
        "a failed job was sent to a job.succeeded hook"
    );
    assert_eq!(emu.stats().webhooks.attempted, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn one_attempt_by_default_and_retries_on_request() {
    // Server behaviour: a 500 from the receiver is final.
    let (addr, mut rx) = receiver(2).await;
    let (emu, api) = start(Config::default()).await;
    register_default(&api, addr).await;
    let pattern = emu.create_pattern("Once", None);
    ingest(&api, &pattern.id, &corpus("construction3.jpg")).await;
    next(&mut rx).await;
    eventually("the failed delivery", Duration::from_secs(5), || {
        emu.stats().webhooks.failed == 1
    })
    .await;
    // No second attempt follows.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err());
    let s = emu.stats();
    assert_eq!(
        (s.webhooks.sent, s.webhooks.failed, s.webhooks.delivered),
        (1, 1, 0)
    );
    emu.shutdown().await;

    // The docs' schedule, scaled down: fails twice, delivered on the third attempt.
    let (addr, mut rx) = receiver(2).await;
    let (emu, api) = start(Config {
        webhook_retry: WebhookRetry::Schedule(vec![Duration::from_millis(30); 3]),
        ..Config::default()
    })
    .await;
    register_default(&api, addr).await;
    let pattern = emu.create_pattern("Retry", None);
    ingest(&api, &pattern.id, &corpus("construction3.jpg")).await;
    let t = Instant::now();
    let bodies: Vec<Bytes> = vec![
        next(&mut rx).await.body,
        next(&mut rx).await.body,
        next(&mut rx).await.body,
    ];
    assert!(t.elapsed() >= Duration::from_millis(55));
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "retries resend the same body"
    );
    eventually("the third attempt's answer", Duration::from_secs(5), || {
        emu.stats().webhooks.delivered == 1
    })
    .await;
    let s = emu.stats();
    assert_eq!(
        (s.webhooks.sent, s.webhooks.delivered, s.webhooks.failed),
        (3, 1, 0)
    );
    let docs = WebhookRetry::docs_schedule(60_000);
    let WebhookRetry::Schedule(d) = docs else {
        panic!("schedule")
    };
    assert_eq!(d.len(), 6);
    assert_eq!(d.iter().sum::<Duration>(), Duration::from_millis(102));
    emu.shutdown().await;
}

#[tokio::test]
async fn webhook_loss_drops_deliveries_at_the_configured_rate() {
    let (addr, mut rx) = receiver(0).await;
    let (emu, api) = start(
        Config::default()
            .faults(Faults {
                webhook_loss: 0.3,
                ..Faults::default()
            })
            .seed(17),
    )
    .await;
    register_default(&api, addr).await;
    let pattern = emu.create_pattern("Lossy", None);
    let img = corpus("construction4.jpg");
    let n = 200;
    for _ in 0..n {
        ingest(&api, &pattern.id, &img).await;
    }
    eventually("every delivery settled", Duration::from_secs(10), || {
        let w = emu.stats().webhooks;
        w.lost + w.delivered + w.failed == n
    })
    .await;
    let mut received = 0;
    while rx.try_recv().is_ok() {
        received += 1;
    }
    let s = emu.stats();
    assert_eq!(s.webhooks.attempted, n);
    assert_eq!(s.webhooks.lost + s.webhooks.delivered, n);
    assert_eq!(received, s.webhooks.delivered);
    // Binomial(200, 0.3): mean 60, sd 6.5; 4 sd either side.
    assert!(
        (34..=86).contains(&s.webhooks.lost),
        "lost {}",
        s.webhooks.lost
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn docs_dialect_payload() {
    let (addr, mut rx) = receiver(0).await;
    let (emu, api) = start(Config::default().dialect(imggo_emulator::Dialect::Docs)).await;
    let secret = "docs-dialect-secret-0001";
    api.post_json(
        "/webhooks",
        &json!({"url": format!("http://{addr}/h"), "secret": secret}),
    )
    .await;
    let pattern = emu.create_pattern("DocsHook", None);
    let job = ingest(&api, &pattern.id, &corpus("construction5.jpg")).await;
    let got = next(&mut rx).await;
    assert_eq!(got.signature, signature(secret.as_bytes(), &got.body));
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["event"], "job.completed");
    assert_eq!(v["status"], "completed");
    assert!(v["result"].is_object() && v.get("manifest").is_none());
    let event: WebhookEvent = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(event.event, EventKind::JobSucceeded);
    assert_eq!(event.job_id, job);
    assert!(event.manifest.is_some());
    emu.shutdown().await;
}
