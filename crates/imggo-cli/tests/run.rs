//! `imggo run` as scripts use it: the real binary against the emulator over loopback.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use imggo::core::Outcome;
use imggo::emulator::{Config, Emulator, Handle, LatencyModel};

use common::{imggo_run, lines};

const KEY: &str = "imggo_cli_test_key";

async fn emulator(latency_ms: u64) -> (Handle, String) {
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(latency_ms)),
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("cli test", None).id;
    (handle, pattern)
}

fn imggo(handle: &Handle, pattern: &str, key: &str, out: &Path, extra: &[&str]) -> Command {
    imggo_run(&handle.base_url(), pattern, key, out, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_key_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 2, 0);
    let (handle, pattern) = emulator(0).await;
    let out = dir.path().join("results.jsonl");
    let mut cmd = imggo(&handle, &pattern, "imggo_wrong_key", &out, &[]);
    cmd.arg(&inputs[0]);
    let result = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("API key was refused"), "stderr: {stderr}");
    assert!(
        !stderr.contains("imggo_wrong_key"),
        "the key leaked: {stderr}"
    );
    assert_eq!(handle.stats().ingests_accepted, 0);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_makes_no_second_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 40, 0);
    let (handle, pattern) = emulator(250).await;
    let out = dir.path().join("results.jsonl");
    let input_arg = input_dir.display().to_string();

    let mut child = imggo(
        &handle,
        &pattern,
        KEY,
        &out,
        &["--concurrency", "4", "--quiet", &input_arg],
    )
    .spawn()
    .unwrap();
    // Kill it once some, but not all, inputs are done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&out).len() < 8 {
        assert!(Instant::now() < deadline, "the first run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = lines(&out).len();
    assert!(before < inputs.len(), "killed too late: {before} lines");
    let accepted_before = handle.stats().ingests_accepted;

    let cmd = imggo(
        &handle,
        &pattern,
        KEY,
        &out,
        &["--resume", "--concurrency", "4", &input_arg],
    );
    let result = tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        result.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let all = lines(&out);
    let finished: std::collections::HashSet<String> = all
        .iter()
        .filter(|l| l.status != Outcome::Failed)
        .map(|l| l.input.clone())
        .collect();
    assert_eq!(
        finished.len(),
        inputs.len(),
        "every input finished exactly once"
    );
    assert_eq!(all.len(), inputs.len(), "no input got a second line");
    let stats = handle.stats();
    assert_eq!(
        stats.jobs_created,
        inputs.len() as u64,
        "no second job for any image"
    );
    assert_eq!(stats.ingests_accepted, inputs.len() as u64);
    assert!(stats.ingests_accepted >= accepted_before);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_subcommands_take_connection_flags_after_the_verb() {
    let (handle, _) = emulator(0).await;
    let url = handle.base_url();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_imggo"))
                .args(&args)
                .env_remove("IMGGO_API_KEY")
                .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
                .output()
                .unwrap()
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let created = run(s(&[
        "patterns",
        "create",
        "--endpoint",
        &url,
        "--api-key",
        KEY,
        "--name",
        "Invoices",
        "--instructions",
        "Extract the invoice total",
        "--schema",
        r#"{"type":"object","properties":{"total":{"type":"number"}}}"#,
    ]))
    .await
    .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let p: imggo::core::Pattern = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(p.name, "Invoices");

    let listed = run(s(&[
        "patterns",
        "list",
        "--endpoint",
        &url,
        "--api-key",
        KEY,
    ]))
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&p.id));

    let missing = run(s(&[
        "jobs",
        "get",
        "no-such-job",
        "--endpoint",
        &url,
        "--api-key",
        KEY,
    ]))
    .await
    .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    handle.shutdown().await;
}

/// The server's racing-duplicate 500 (`--race-dup` in the emulator): two `imggo run`
/// processes over the same inputs at once send each image's key twice, about together,
/// and about a third of the second sends lose the race. Each run still ends with a
/// succeeded line per input, duplicates in its input list included, and the service
/// made exactly one job per distinct image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_duplicate_500s_still_make_one_job_per_distinct_input() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 60, 0);
    for (i, p) in inputs.iter().take(10).enumerate() {
        std::fs::copy(p, input_dir.join(format!("copy-{i}.jpg"))).unwrap();
    }
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(20)),
        faults: imggo::emulator::Faults {
            race_dup: 0.3,
            ..Default::default()
        },
        seed: 5,
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("cli test", None).id;
    let input_arg = input_dir.display().to_string();
    let outs = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
    let runs = outs.clone().map(|out| {
        let cmd = imggo(&handle, &pattern, KEY, &out, &["--quiet", &input_arg]);
        tokio::task::spawn_blocking(move || {
            let mut cmd = cmd;
            cmd.output().unwrap()
        })
    });
    for (run, out) in runs.into_iter().zip(&outs) {
        let result = run.await.unwrap();
        assert_eq!(
            result.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let all = lines(out);
        assert_eq!(all.len(), inputs.len() + 10, "one line per input");
        for l in &all {
            assert!(
                matches!(l.status, Outcome::Succeeded | Outcome::Duplicate),
                "{l:?}"
            );
        }
    }
    let stats = handle.stats();
    assert!(stats.faults.race_dup > 0, "{:?}", stats.faults);
    assert_eq!(stats.jobs_created, inputs.len() as u64, "one job per image");
    handle.shutdown().await;
}
