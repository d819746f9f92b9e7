//! imggo-ratelimit: the token bucket against governor (the same run), contended
//! acquisition, and RedisLimiter decisions per second against `redis-benchmark` running
//! the same script (and GET) on the same redis-server.
//!
//! `cargo bench -p imggo-benches --bench ratelimit`. The redis-benchmark baseline lines
//! are printed before the RedisLimiter group.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use governor::{Quota, RateLimiter};
use imggo_ratelimit::{RedisLimiter, Subject, TokenBucket};
use imggo_testkit::RedisServer;

const THREADS: u64 = 8;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// Both limiters at 1e9/s with a burst of 1e6: every call is admitted, so the benchmark
/// measures the decision itself.
fn fast_bucket() -> TokenBucket {
    TokenBucket::new(1e9, 1_000_000).expect("valid")
}

fn fast_governor() -> governor::DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(nz(1_000_000_000)).allow_burst(nz(1_000_000)))
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("try_acquire_uncontended");
    g.throughput(Throughput::Elements(1));
    let bucket = fast_bucket();
    g.bench_function("imggo_admit", |b| {
        b.iter(|| black_box(bucket.try_acquire().is_ok()))
    });
    let gov = fast_governor();
    g.bench_function("governor_admit", |b| {
        b.iter(|| black_box(gov.check().is_ok()))
    });
    // The refusal path: an empty bucket of 1/s.
    let bucket = TokenBucket::new(1.0, 1).expect("valid");
    let _ = bucket.try_acquire();
    g.bench_function("imggo_refuse", |b| {
        b.iter(|| black_box(bucket.try_acquire().is_err()))
    });
    let gov = RateLimiter::direct(Quota::per_second(nz(1)));
    let _ = gov.check();
    g.bench_function("governor_refuse", |b| {
        b.iter(|| black_box(gov.check().is_err()))
    });
    g.finish();
}

/// `iters` calls of `f` on each of 8 threads started together; the wall time.
fn on_threads(iters: u64, f: impl Fn() + Sync) -> Duration {
    let barrier = Barrier::new(THREADS as usize + 1);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    f();
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended_8_threads");
    // One iteration is one call on each of the 8 threads.
    g.throughput(Throughput::Elements(THREADS));
    let bucket = fast_bucket();
    g.bench_function("imggo_try_acquire", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, || {
                black_box(bucket.try_acquire().is_ok());
            })
        })
    });
    let gov = fast_governor();
    g.bench_function("governor_check", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, || {
                black_box(gov.check().is_ok());
            })
        })
    });

    // Async: 8 tasks on the 2-worker runtime awaiting acquire (never sleeping here).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bucket = Arc::new(fast_bucket());
    g.bench_function("imggo_acquire_async_8_tasks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let bucket = bucket.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                bucket.acquire().await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            })
        })
    });
    let gov = Arc::new(fast_governor());
    g.bench_function("governor_until_ready_async_8_tasks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let gov = gov.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                gov.until_ready().await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

/// Runs redis-benchmark quietly and returns its requests per second.
fn redis_benchmark(port: u16, args: &[&str]) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-q"])
        .args(args)
        .output()
        .expect("redis-benchmark is installed with redis-server");
    let text = String::from_utf8_lossy(&out.stdout);
    // "EVALSHA ...: 123456.79 requests per second, p50=..." (the last \r-separated part)
    let last = text.rsplit('\r').next().unwrap_or(&text);
    last.split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text:?}"))
}

const CALLERS: u64 = 50;

fn redis_decisions(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limiter = rt.block_on(async {
        let conn = RedisLimiter::connect(&server.url()).await.expect("connect");
        // Always admitted (as is the redis-benchmark run): a window of 1 s, limit 1e9.
        let l = RedisLimiter::new(
            conn,
            Subject::named("bench"),
            1_000_000_000,
            Duration::from_secs(1),
        )
        .expect("valid");
        l.check().await.expect("script loaded");
        l
    });
    let sha = limiter.script_hash().to_owned();
    let port = server.port();
    let evalsha = |pipeline: &str| {
        redis_benchmark(
            port,
            &[
                "-n",
                "200000",
                "-c",
                "50",
                "-P",
                pipeline,
                "-r",
                "1000000000",
                "EVALSHA",
                &sha,
                "1",
                "imggo:rl:{name:redis-benchmark}",
                "1000000000",
                "1000000",
                "__rand_int__",
            ],
        )
    };
    let get16 = redis_benchmark(
        port,
        &["-n", "1000000", "-c", "50", "-P", "16", "-t", "get"],
    );
    let eval16 = evalsha("16");
    let eval1 = evalsha("1");
    println!(
        "baseline redis-benchmark on this server: GET -c 50 -P 16: {get16:.0}/s; \
         EVALSHA (same script) -c 50 -P 16: {eval16:.0}/s; -c 50 -P 1: {eval1:.0}/s"
    );

    let mut g = c.benchmark_group("redis_limiter");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("check_50_concurrent_callers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let per = iters.div_ceil(CALLERS);
                let start = Instant::now();
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|_| {
                        let l = limiter.clone();
                        tokio::spawn(async move {
                            for _ in 0..per {
                                let d = l.check().await.expect("decision");
                                black_box(d.allowed);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                // Scale to exactly `iters` decisions.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * CALLERS) as f64)
            })
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, uncontended, contended, redis_decisions);
criterion_main!(benches);
