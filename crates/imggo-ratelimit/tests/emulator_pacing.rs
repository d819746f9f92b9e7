//! A batch against the emulator's real limits (monthly quota, minimum gap, per-minute
//! token bucket) over loopback HTTP, paced by HeaderPacer (fed by the client's
//! rate-limit observer) chained with a TokenBucket: zero 429s, and the part of the batch
//! beyond the quota is refused locally with a typed error instead of being sent.
//!
//! Scaled to run in seconds: 600 requests per minute with a bucket of 5 and a 50 ms
//! minimum gap on the server. The emulator, like the real service, reports only the
//! monthly quota in `X-RateLimit-*`, so the per-minute rate is configured (as the plan's
//! published tier would be) and the gap is given to the pacer, each with a safety margin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use imggo_core::Severity;
use imggo_emulator::{Config, Emulator, Limits};
use imggo_http::{Client, IngestOptions};
use imggo_ratelimit::{Backoff, Chain, HeaderPacer, LimitError, Limiter, TokenBucket};

const KEY: &str = "imggo_test_key_ratelimit_0123456789";
const QUOTA: u64 = 40;
const BATCH: usize = 48;
const WORKERS: usize = 8;

fn limits() -> Limits {
    Limits {
        monthly_quota: Some(QUOTA),
        min_gap: Some(Duration::from_millis(50)),
        rpm: Some(600),
        burst: Some(5),
    }
}

fn images() -> Vec<Bytes> {
    imggo_testkit::corpus_files()
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() < 2 << 20)
        .map(Bytes::from)
        .collect()
}

#[derive(Debug, Default)]
struct Outcome {
    accepted: usize,
    refused_locally: usize,
    failed: Vec<String>,
}

/// Runs the batch with `WORKERS` tasks; every input first awaits `limiter`.
async fn run_batch(client: Client, pattern: String, limiter: Arc<dyn Limiter>) -> Outcome {
    let imgs = Arc::new(images());
    assert!(imgs.len() >= 10, "corpus images");
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Outcome::default()));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (client, pattern, limiter) = (client.clone(), pattern.clone(), limiter.clone());
        let (imgs, next, out) = (imgs.clone(), next.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= BATCH {
                    return;
                }
                match limiter.acquire().await {
                    Ok(()) => {}
                    Err(LimitError::WaitTooLong { .. }) => {
                        out.lock().unwrap().refused_locally += 1;
                        continue;
                    }
                    Err(e) => panic!("unexpected limiter error {e}"),
                }
                // Distinct extras make each input its own job even when images repeat.
                let opts = IngestOptions {
                    extras: Some(serde_json::json!({ "n": i })),
                    ..Default::default()
                };
                let image = imgs[i % imgs.len()].clone();
                match client.ingest_bytes(&pattern, image, opts).await {
                    Ok(_) => out.lock().unwrap().accepted += 1,
                    Err(e) => out.lock().unwrap().failed.push(format!("{i}: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

fn client(base_url: String, pacer: Option<Arc<HeaderPacer>>) -> Client {
    // Never retry: a 429 must show up as a failure, not be hidden by a retry.
    let policy = Backoff::new(Duration::from_millis(5), Duration::from_millis(50))
        .unwrap()
        .with_max_attempts(1);
    let mut b = Client::builder()
        .base_url(base_url)
        .api_key(KEY)
        .retry_policy(Arc::new(policy));
    if let Some(p) = pacer {
        b = b.observer(p);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_batch_gets_zero_429s_and_stops_at_the_quota() {
    let emu = Emulator::start(Config::default().api_key(KEY).limits(limits()))
        .await
        .unwrap();
    let pattern = emu.create_pattern("P", None).id;
    // A spread horizon of 10 s: the emulator's monthly reset is days away, so the quota
    // is counted, not spread (unless the test runs in the last 10 s of a month).
    let pacer = Arc::new(
        HeaderPacer::new()
            .with_min_gap(Duration::from_millis(80))
            .with_max_wait(Duration::from_secs(60))
            .with_spread_horizon(Duration::from_secs(10)),
    );
    let bucket = Arc::new(TokenBucket::new(9.0, 3).unwrap()); // 540/min against 600
    let limiter: Arc<dyn Limiter> = Arc::new(Chain::new().with(pacer.clone()).with(bucket));
    let out = run_batch(
        client(emu.base_url(), Some(pacer.clone())),
        pattern,
        limiter,
    )
    .await;
    let stats = emu.stats();
    assert_eq!(stats.rate_limited, 0, "no 429 at all: {out:?}");
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.accepted as u64, QUOTA, "the whole quota was used");
    assert_eq!(
        out.refused_locally,
        BATCH - QUOTA as usize,
        "the rest never left"
    );
    assert_eq!(pacer.usage(), Some(1.0));
    assert_eq!(pacer.alert(), Some(Severity::Critical));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_unpaced_is_refused_by_the_server() {
    // The contrast that shows the first test can fail: no pacing, the same limits.
    let emu = Emulator::start(Config::default().api_key(KEY).limits(limits()))
        .await
        .unwrap();
    let pattern = emu.create_pattern("P", None).id;
    let out = run_batch(
        client(emu.base_url(), None),
        pattern,
        Arc::new(Chain::new()),
    )
    .await;
    let stats = emu.stats();
    assert!(stats.rate_limited > 0, "{stats:?}");
    assert_eq!(out.failed.len() as u64, stats.rate_limited);
    emu.shutdown().await;
}
