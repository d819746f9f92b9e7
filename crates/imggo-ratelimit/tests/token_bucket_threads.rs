//! TokenBucket::try_acquire from OS threads. In its own test binary: its spinning
//! threads would otherwise steal the CPU from the timing-sensitive async tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imggo_ratelimit::TokenBucket;

#[test]
fn try_acquire_from_threads_never_exceeds_the_burst_plus_rate() {
    // 8 OS threads spinning on try_acquire for 300 ms: GCRA admits at most
    // burst + rate·t, and (with this many callers) not much fewer.
    let bucket = Arc::new(TokenBucket::new(1000.0, 50).unwrap());
    let admitted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let run = Duration::from_millis(300);
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (b, a) = (bucket.clone(), admitted.clone());
            s.spawn(move || {
                while start.elapsed() < run {
                    if b.try_acquire().is_ok() {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let n = admitted.load(Ordering::Relaxed) as f64;
    let ceiling = 50.0 + 1000.0 * elapsed + 1.0;
    assert!(n <= ceiling, "{n} admitted, ceiling {ceiling}");
    assert!(n >= 50.0 + 1000.0 * 0.3 * 0.9, "{n} admitted");
}
