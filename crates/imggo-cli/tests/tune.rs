//! `imggo tune`: the real binary sweeping concurrency levels against the emulator.

use std::process::{Command, Stdio};
use std::time::Duration;

use imggo::emulator::{Config, Emulator, LatencyModel};
use serde_json::Value;

const KEY: &str = "imggo_cli_tune_key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_runs_concurrently_and_a_knee_is_recommended() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    imggo_testkit::corpus_variants(&input_dir, 24, 0);
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(40)),
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("tune test", None).id;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.args(["tune", "--pattern", &pattern, "--levels", "1,6", "--json"])
        .args([
            "--no-optimize",
            "--endpoint",
            &handle.base_url(),
            "--api-key",
            KEY,
        ])
        .arg(&input_dir)
        .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let levels: Vec<u64> = lines[..2]
        .iter()
        .map(|l| l["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(levels, [1, 6]);
    for l in &lines[..2] {
        assert_eq!(l["failed"], 0, "{l}");
    }
    // Each level ingests every input anew (its own idempotency nonce), so both levels did
    // the same work; six at a time must be several times faster than one at a time when
    // each job takes 40 ms.
    assert_eq!(handle.stats().ingests_accepted, 48);
    let rate = |i: usize| lines[i]["images_per_sec"].as_f64().unwrap();
    assert!(rate(1) > 2.5 * rate(0), "{stdout}");
    let knee = lines[2]["recommended_concurrency"].as_u64().unwrap();
    assert!(levels.contains(&knee), "{stdout}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_rate_limit_the_limit_is_the_knee() {
    // Ten ingests per second for the account, jobs of 400 ms: one at a time stays far
    // under the limit (about 2/s), eight at a time hit it, sixteen cannot do better.
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    imggo_testkit::corpus_variants(&input_dir, 24, 0);
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(400)),
        limits: imggo::emulator::Limits {
            rpm: Some(600),
            burst: Some(1),
            ..Default::default()
        },
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("tune under a limit", None).id;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.args([
        "tune",
        "--pattern",
        &pattern,
        "--levels",
        "1,8,16",
        "--json",
    ])
    .args([
        "--no-optimize",
        "--endpoint",
        &handle.base_url(),
        "--api-key",
        KEY,
    ])
    .arg(&input_dir)
    .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for l in &lines[..3] {
        assert_eq!(l["failed"], 0, "a 429 is a pace, not a failure: {l}");
    }
    let last = &lines[3];
    assert_eq!(last["recommended_concurrency"], 8, "{stdout}");
    let limit = last["limit_per_sec"].as_f64().expect("the limit is named");
    // Learned from a few dozen sends on a busy machine: never above the limit.
    assert!((2.5..=10.5).contains(&limit), "learned {limit}/s: {stdout}");
    handle.shutdown().await;
}
