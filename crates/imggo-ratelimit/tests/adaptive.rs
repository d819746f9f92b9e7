//! AdaptiveConcurrency finding a server's capacity: from 429s, and from latency alone.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imggo_ratelimit::{AdaptiveConcurrency, AdaptiveConfig};
use tokio::sync::Semaphore;

/// Drives `workers` tasks through `ac` for `run`; `serve` answers true for success and
/// false for a 429. Returns (successes, drops).
async fn drive<F, Fut>(
    ac: &AdaptiveConcurrency,
    workers: usize,
    run: Duration,
    serve: F,
) -> (u64, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let serve = Arc::new(serve);
    let ok = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + run;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (ac, serve, ok, dropped) = (ac.clone(), serve.clone(), ok.clone(), dropped.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let permit = ac.acquire().await;
                if serve().await {
                    permit.success();
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    permit.dropped();
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), dropped.load(Ordering::Relaxed))
}

fn config() -> AdaptiveConfig {
    AdaptiveConfig {
        initial: 1,
        min: 1,
        max: 100,
        ..AdaptiveConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_near_the_capacity_a_server_enforces_with_429s() {
    const CAPACITY: usize = 8;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let ac = AdaptiveConcurrency::new(config()).unwrap();
    let f = in_flight.clone();
    let (ok, dropped) = drive(&ac, 40, Duration::from_secs(3), move || {
        let f = f.clone();
        async move {
            // Serves up to CAPACITY requests at once (10 ms each) and refuses the rest
            // with a quick 429 (1 ms), which takes no service slot.
            let n = f.fetch_add(1, Ordering::SeqCst) + 1;
            if n > CAPACITY {
                f.fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            f.fetch_sub(1, Ordering::SeqCst);
            true
        }
    })
    .await;
    let limit = ac.limit() as usize;
    eprintln!("429 server: {ok} ok, {dropped} 429s, final limit {limit}");
    assert!(
        (CAPACITY / 2..=CAPACITY * 3 / 2).contains(&limit),
        "limit {limit} for a capacity of {CAPACITY}"
    );
    let rate = dropped as f64 / (ok + dropped) as f64;
    assert!(rate < 0.15, "{dropped} 429s of {}", ok + dropped);
    assert!(ok > 1000, "{ok} successes in 3 s at about 8 × 100/s");
    assert_eq!(ac.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_growing_when_latency_inflates() {
    // The server works on 8 requests at once and queues the rest: more concurrency only
    // adds latency. No 429s ever; the limit must stop where latency doubles (~2 × 8).
    const CAPACITY: usize = 8;
    let server = Arc::new(Semaphore::new(CAPACITY));
    let ac = AdaptiveConcurrency::new(config()).unwrap();
    let s = server.clone();
    let (ok, dropped) = drive(&ac, 64, Duration::from_secs(3), move || {
        let s = s.clone();
        async move {
            let _slot = s.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            true
        }
    })
    .await;
    assert_eq!(dropped, 0);
    assert!(ok > 1000, "{ok}");
    let limit = ac.limit() as usize;
    eprintln!(
        "queueing server: {ok} ok, final limit {limit}, latency {:?}",
        ac.latency()
    );
    assert!(
        (CAPACITY..=CAPACITY * 3).contains(&limit),
        "limit {limit} with a server of {CAPACITY} workers (64 callers, max 100)"
    );
    let latency = ac.latency().unwrap();
    assert!(
        latency < Duration::from_millis(35),
        "smoothed latency {latency:?}"
    );
}
