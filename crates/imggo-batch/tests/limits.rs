//! The pipeline under every limit model of the emulator: a 429 is a pace, never a failure.
//! Each model runs with lognormal job latency and 5 % injected 503s on top; every test
//! checks zero failed inputs, one job per input and a bound on the 429s. Speed is measured
//! by `scripts/bench-limits`, not here.

mod common;
use common::run_all;

use std::collections::HashSet;
use std::time::Duration;

use imggo_batch::Outcome;
use imggo_batch::{Concurrency, Journal, Pipeline, ResultLine, ResumeKey, WaitMode};
use imggo_emulator::{Config, Emulator, Faults, Handle, LatencyModel, Limits};
use imggo_http::{Client, PollPolicy};

const KEY: &str = "imggo_limits_key";

fn hostile(limits: Limits) -> Config {
    Config {
        latency: LatencyModel::LogNormal {
            median: Duration::from_millis(20),
            p99: Duration::from_millis(120),
        },
        limits,
        faults: Faults {
            fail_503: 0.05,
            ..Faults::default()
        },
        seed: 7,
        ..Config::default()
    }
    .user_key("u1", KEY)
}

fn client(handle: &Handle, key: &str) -> Client {
    Client::builder()
        .base_url(handle.base_url())
        .api_key(key)
        .build()
        .unwrap()
}

fn poll() -> PollPolicy {
    PollPolicy {
        first: Duration::from_millis(10),
        second: Duration::from_millis(10),
        factor: 1.5,
        max_interval: Duration::from_millis(50),
        deadline: Duration::from_secs(60),
    }
}

fn pipeline(client: Client, pattern: &str) -> Pipeline {
    Pipeline::builder()
        .client(client)
        .pattern(pattern)
        .optimize(None)
        .concurrency(Concurrency::Fixed(10))
        .wait(WaitMode::Poll(poll()))
        .build()
        .unwrap()
}

/// Every input succeeded exactly once, and the emulator made one job per input.
fn assert_all_succeeded(handle: &Handle, lines: &[ResultLine], n: usize) {
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l.status != Outcome::Succeeded)
        .collect();
    assert!(
        failed.is_empty(),
        "{} not succeeded, first: {:?}",
        failed.len(),
        failed[0]
    );
    let inputs: HashSet<_> = lines.iter().map(|l| &l.input).collect();
    assert_eq!((lines.len(), inputs.len()), (n, n));
    assert_eq!(handle.stats().jobs_created, n as u64, "one job per input");
}

async fn one_model(limits: Limits, n: usize, max_429: u64) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), n, 0);
    let handle = Emulator::start(hostile(limits)).await.unwrap();
    let pattern = handle.create_pattern("limits", None).id;
    let (lines, report) = run_all(pipeline(client(&handle, KEY), &pattern), &inputs).await;
    assert_all_succeeded(&handle, &lines, n);
    let rate_limited = handle.stats().rate_limited;
    assert!(
        rate_limited <= max_429,
        "{limits:?}: {rate_limited} responses 429 for {n} inputs"
    );
    assert_eq!(report.exit_code(), 0);
    let pace = report.pace.expect("a pipeline report has its pace");
    assert_eq!(pace.refused, rate_limited);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_with_burst_one_is_learned() {
    // 20 per second, no burst: the run would fail most inputs if 429s were failures.
    let limits = Limits {
        rpm: Some(1200),
        burst: Some(1),
        ..Limits::default()
    };
    one_model(limits, 60, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_with_a_burst_is_learned() {
    let limits = Limits {
        rpm: Some(2400),
        burst: Some(8),
        ..Limits::default()
    };
    one_model(limits, 80, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimum_gap_is_read_from_the_account() {
    // The usage endpoint tells the gap: hardly a 429 even at the start.
    let limits = Limits {
        min_gap: Some(Duration::from_millis(50)),
        ..Limits::default()
    };
    one_model(limits, 60, 8).await;
}

/// Two API keys of one user, in two pipelines with a pacer each (as two processes have),
/// half of the inputs each, at the same time: they share the user's limit through the
/// account's usage count rather than fighting over it. The 429 bounds are those of one
/// pipeline, twice: each pipeline learns the limit on its own. Without the sharing (no
/// usage reads during the run), the minimum-gap run broke its bound and took about ten
/// times as long.
async fn two_keys_of_one_user(limits: Limits, n: usize, max_429: u64) {
    const KEY2: &str = "imggo_limits_key_2";
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), n, 0);
    let (a, b) = inputs.split_at(n / 2);
    let handle = Emulator::start(hostile(limits).user_key("u1", KEY2))
        .await
        .unwrap();
    let pattern = handle.create_pattern("limits", None).id;
    let (first, second) = tokio::join!(
        run_all(pipeline(client(&handle, KEY), &pattern), a),
        run_all(pipeline(client(&handle, KEY2), &pattern), b),
    );
    let lines: Vec<_> = first.0.into_iter().chain(second.0).collect();
    assert_all_succeeded(&handle, &lines, n);
    let rate_limited = handle.stats().rate_limited;
    assert!(
        rate_limited <= max_429,
        "{limits:?}: {rate_limited} responses 429 for {n} inputs in two pipelines"
    );
    let (pa, pb) = (first.1.pace.unwrap(), second.1.pace.unwrap());
    eprintln!(
        "{limits:?}: 429s {rate_limited}, refused {} + {}",
        pa.refused, pb.refused
    );
    assert_eq!(pa.refused + pb.refused, rate_limited);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_of_one_user_share_a_minimum_gap() {
    let limits = Limits {
        min_gap: Some(Duration::from_millis(50)),
        ..Limits::default()
    };
    two_keys_of_one_user(limits, 160, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_of_one_user_share_a_bucket() {
    let limits = Limits {
        rpm: Some(1200),
        burst: Some(1),
        ..Limits::default()
    };
    two_keys_of_one_user(limits, 160, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_quota_fails_fast_and_resume_goes_on_after_the_reset() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 30, 0);
    let handle = Emulator::start(hostile(Limits {
        monthly_quota: Some(15),
        min_gap: Some(Duration::from_millis(5)),
        ..Limits::default()
    }))
    .await
    .unwrap();
    let pattern = handle.create_pattern("limits", None).id;
    let out = dir.path().join("results.jsonl");

    let key = ResumeKey::new(&pattern);
    let (mut journal, done) = Journal::open(&out, Some(&key)).unwrap();
    assert!(done.is_empty());
    journal.start().unwrap();
    let started = std::time::Instant::now();
    let (lines, report) = run_all(pipeline(client(&handle, KEY), &pattern), &inputs).await;
    for l in &lines {
        journal.append(l).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(lines.len(), 30);
    let ok = lines
        .iter()
        .filter(|l| l.status == Outcome::Succeeded)
        .count();
    assert_eq!(ok, 15);
    for l in lines.iter().filter(|l| l.status == Outcome::Failed) {
        let e = l.error.as_ref().unwrap();
        assert_eq!(e.code, "QUOTA_EXHAUSTED", "{l:?}");
        assert!(e.message.contains("resets at 20"), "{}", e.message);
    }
    assert_eq!(report.exit_code(), 1);
    // Nothing more was sent after the refusal that told the quota was gone: only sends
    // already in flight (at most the concurrency) met the refusal too.
    assert!(
        handle.stats().rate_limited <= 10,
        "{}",
        handle.stats().rate_limited
    );

    // The month ends; the same run with --resume does the 15 that failed, and only them.
    handle.start_new_period();
    let (mut journal, done) = Journal::open(&out, Some(&key)).unwrap();
    assert_eq!(done.len(), 15);
    journal.start().unwrap();
    let p = Pipeline::builder()
        .client(client(&handle, KEY))
        .pattern(&pattern)
        .optimize(None)
        .wait(WaitMode::Poll(poll()))
        .skip(done)
        .build()
        .unwrap();
    let (lines, report) = run_all(p, &inputs).await;
    for l in &lines {
        journal.append(l).unwrap();
    }
    assert_eq!(lines.len(), 15);
    let bad: Vec<_> = lines
        .iter()
        .filter(|l| l.status != Outcome::Succeeded)
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!((report.inputs, report.resumed), (30, 15));
    assert_eq!(handle.stats().jobs_created, 30);
    let (_, done) = Journal::open(&out, Some(&key)).unwrap();
    assert_eq!(done.len(), 30);
    handle.shutdown().await;
}
