//! 4 processes × 16 tasks on one key for 5 s: the RedisLimiter never admits more than the
//! limit in any window, while the naive version (ZREMRANGEBYSCORE, ZCARD, then ZADD as
//! separate calls on each client's clock, as in the guide) measurably overshoots.
//!
//! The binary runs as the coordinator, and re-executes itself with `IMGGO_RL_WORKER` set
//! to run each worker process. Every admission is logged by its time on the clock that
//! decided it (Redis `TIME` for the script, the client clock for the naive version, the
//! same clock each wrote into the sorted set), and every window is checked.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imggo_ratelimit::{RedisLimiter, Subject};
use imggo_testkit::RedisServer;
use redis::AsyncCommands;

const PROCESSES: usize = 4;
const TASKS: usize = 16;
const RUN: Duration = Duration::from_secs(5);
const LIMIT: u32 = 20;
const WINDOW: Duration = Duration::from_millis(500);

fn main() {
    if let Ok(spec) = std::env::var("IMGGO_RL_WORKER") {
        worker(&spec);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("redis_multiprocess: test");
        return;
    }
    let redis = RedisServer::start();
    let script = run_mode(&redis, "script");
    let naive = run_mode(&redis, "naive");
    let (script_max, script_n) = (max_in_window(&script), script.len());
    let (naive_max, naive_n) = (max_in_window(&naive), naive.len());
    println!(
        "limit {LIMIT} per {WINDOW:?}, {PROCESSES} processes x {TASKS} tasks for {RUN:?}:\n  \
         RedisLimiter: {script_n} admitted, at most {script_max} in any window\n  \
         naive ZCARD-then-ZADD: {naive_n} admitted, at most {naive_max} in any window"
    );
    assert!(
        script_max <= LIMIT as usize,
        "RedisLimiter admitted {script_max} in one window, limit {LIMIT}"
    );
    // It also used the budget: about LIMIT per window over the run.
    let full = (RUN.as_secs_f64() / WINDOW.as_secs_f64()) * f64::from(LIMIT);
    assert!(
        script_n as f64 >= full * 0.8,
        "RedisLimiter admitted only {script_n} of about {full}"
    );
    assert!(
        naive_max > LIMIT as usize,
        "the naive baseline did not overshoot ({naive_max}); the test lost its contrast"
    );
    println!("test redis_multiprocess ... ok");
}

/// Runs the worker processes of one mode on a fresh key; returns all admission times (µs).
fn run_mode(redis: &RedisServer, mode: &str) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary path");
    let start_at = now_us() + 1_000_000; // all workers begin together, 1 s from now
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .env(
                    "IMGGO_RL_WORKER",
                    format!("{mode},{},{mode}-{i},{start_at}", redis.url()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    let mut times = Vec::new();
    for c in children {
        let out = c.wait_with_output().expect("worker output");
        assert!(
            out.status.success(),
            "{mode} worker failed: {:?}",
            out.status
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        times.extend(
            text.lines()
                .map(|l| l.parse::<u64>().expect("a time per line")),
        );
    }
    times.sort_unstable();
    times
}

/// The most admissions in any window `(t − WINDOW, t]`.
fn max_in_window(sorted: &[u64]) -> usize {
    let w = WINDOW.as_micros() as u64;
    let mut left = 0;
    let mut best = 0;
    for (right, &t) in sorted.iter().enumerate() {
        while sorted[left] + w <= t {
            left += 1;
        }
        best = best.max(right - left + 1);
    }
    best
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let [mode, url, name, start_at] = parts[..] else {
        panic!("bad IMGGO_RL_WORKER {spec:?}")
    };
    let start_at: u64 = start_at.parse().expect("start time");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let times = rt.block_on(async {
        let key = format!("multiprocess:{mode}");
        let log = Arc::new(Mutex::new(Vec::new()));
        let limiter = RedisLimiter::new(
            RedisLimiter::connect(url).await.expect("connect"),
            Subject::named(&key),
            LIMIT,
            WINDOW,
        )
        .expect("limiter");
        let naive_conn = redis::Client::open(url)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let wait = start_at.saturating_sub(now_us());
        tokio::time::sleep(Duration::from_micros(wait)).await;
        let end = Instant::now() + RUN;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (limiter, mut conn, log) = (limiter.clone(), naive_conn.clone(), log.clone());
            let member = format!("{name}-{t}");
            let mode = mode.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while Instant::now() < end {
                    let (admitted_at, wait) = if mode == "script" {
                        let d = limiter.check().await.expect("script decision");
                        (
                            d.allowed.then_some(d.server_time.as_micros() as u64),
                            d.retry_after,
                        )
                    } else {
                        seq += 1;
                        naive(&mut conn, limiter.key(), &format!("{member}-{seq}")).await
                    };
                    match admitted_at {
                        Some(at) => log.lock().unwrap().push(at),
                        None => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let v = log.lock().unwrap().clone();
        v
    });
    let out: String = times.iter().map(|t| format!("{t}\n")).collect();
    print!("{out}");
}

/// The guide's sliding window: prune, count, then add, as three separate calls, with the
/// client's own clock. Returns the admission time, or how long to wait.
async fn naive(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    member: &str,
) -> (Option<u64>, Duration) {
    let w = WINDOW.as_micros() as u64;
    let now = now_us();
    let _: usize = conn.zrembyscore(key, "-inf", now - w).await.expect("zrem");
    let count: usize = conn.zcard(key).await.expect("zcard");
    if count < LIMIT as usize {
        let _: usize = conn.zadd(key, member, now).await.expect("zadd");
        let _: bool = conn
            .pexpire(key, WINDOW.as_millis() as i64)
            .await
            .expect("pexpire");
        return (Some(now), Duration::ZERO);
    }
    let oldest: Vec<(String, f64)> = conn.zrange_withscores(key, 0, 0).await.expect("zrange");
    let wait = oldest
        .first()
        .map(|(_, s)| (*s as u64 + w).saturating_sub(now_us()))
        .unwrap_or(0);
    (None, Duration::from_micros(wait))
}
