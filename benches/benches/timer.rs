//! How late a 5 ms sleep ends: Tokio's timer against `imggo_core::timer::sleep_until`
//! (re-exported as `imggo_http::timer`), both awaited on a two-worker runtime. The poll that
//! follows a job's predicted finish and the emulator's job clock wait this way, so the
//! difference is idle slot time in every job cycle.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

const WAIT: Duration = Duration::from_millis(5);

/// Total lateness of `iters` sleeps of `WAIT`, one after another.
fn lateness<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, sleep: F) -> Duration
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let mut late = Duration::ZERO;
        for _ in 0..iters {
            let deadline = Instant::now() + WAIT;
            sleep(deadline).await;
            late += Instant::now() - deadline;
        }
        late
    })
}

fn timer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("lateness of a 5 ms sleep");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.bench_function("tokio::time::sleep_until", |b| {
        b.iter_custom(|n| lateness(&rt, n, |d| tokio::time::sleep_until(d.into())))
    });
    g.bench_function("imggo_http::timer::sleep_until", |b| {
        b.iter_custom(|n| lateness(&rt, n, imggo_http::timer::sleep_until))
    });
    g.finish();
}

criterion_group!(benches, timer);
criterion_main!(benches);
