//! `imggo run` against hostile flags, files, lists and results files: the real binary
//! against the in-process emulator over loopback. Each case once made the run panic,
//! hang, lose lines or skip work.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use imggo::emulator::{Config, Emulator, Handle, LatencyModel};

const KEY: &str = "imggo_hostile_test_key";

async fn emulator() -> (Handle, String) {
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(0)),
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("hostile test", None).id;
    (handle, pattern)
}

fn imggo(handle: &Handle, pattern: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imggo"));
    c.args([
        "run",
        "--pattern",
        pattern,
        "--endpoint",
        &handle.base_url(),
    ])
    .args(["--api-key", KEY, "--cache", "off", "--quiet", "--out"])
    .arg(out)
    .args(extra)
    .env_remove("IMGGO_API_KEY")
    .env_remove("IMGGO_ENDPOINT")
    .env_remove("IMGGO_PATTERN")
    .env_remove("IMGGO_CACHE")
    .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Runs `cmd` off the runtime (the emulator lives on it), killed after 60 s so that a
/// hang fails the test instead of blocking it.
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let child = cmd.spawn().unwrap();
        let id = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if rx.recv_timeout(Duration::from_secs(60)).is_err() {
                // The run hung: end it so that the assertion below reports it.
                let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            }
        });
        let out = child.wait_with_output().unwrap();
        let _ = tx.send(());
        out
    })
    .await
    .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_seconds_and_rates_exit_2_not_101() {
    let dir = tempfile::tempdir().unwrap();
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let cases: &[&[&str]] = &[
        &["--timeout", "1e30"],
        &["--timeout", "NaN"],
        &["--timeout", "inf"],
        &["--timeout=-1"],
        &["--alert-p95", "1e30"],
        &["--alert-p95", "NaN"],
        &["--alert-p95=-3"],
        &["--rps", "1e-30"],
        &["--rps", "NaN"],
        &["--rps=-1"],
        &["--rps", "1e-30", "--limiter", "redis://127.0.0.1:1/"],
        &["--rps", "inf", "--limiter", "redis://127.0.0.1:1/"],
    ];
    for flags in cases {
        let mut cmd = imggo(&handle, &pattern, &out, flags);
        cmd.arg("https://example.test/a.jpg");
        let o = output(cmd).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        let flag = flags[0].split('=').next().unwrap();
        assert!(err.contains(flag), "{flags:?}: {err}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
    }
    assert_eq!(handle.stats().ingests_accepted, 0);
    handle.shutdown().await;
}
