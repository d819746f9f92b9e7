//! Logs of `imggo run`: `RUST_LOG=imggo=debug`, `--log-format`, `--log-file`, against the
//! emulator over loopback.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use imggo::emulator::{Config, Emulator, Handle, LatencyModel, Limits};
use serde_json::Value;

use common::{imggo_run, lines, output, stderr};

const KEY: &str = "imggo_log_test_key_do_not_print";

/// An emulator that lets two ingests a second through (bucket of one): a run of several
/// inputs at once is answered 429 at first.
async fn emulator() -> (Handle, String) {
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(20)),
        limits: Limits {
            rpm: Some(120),
            burst: Some(1),
            ..Limits::default()
        },
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("logging test", None).id;
    (handle, pattern)
}

/// The message of a JSON log event.
fn message(e: &Value) -> &str {
    e["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_file_has_each_input_with_its_job_id_429s_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    imggo_testkit::corpus_variants(&input_dir, 5, 0);
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let log = dir.path().join("imggo.log");
    let (input_arg, log_arg) = (input_dir.display().to_string(), log.display().to_string());
    let mut cmd = imggo_run(
        &handle.base_url(),
        &pattern,
        KEY,
        &out,
        &["--concurrency", "5", "--quiet", "--log-format", "json"],
    );
    cmd.args(["--log-file", &log_arg, &input_arg])
        .env("RUST_LOG", "imggo=debug");
    let o = output(cmd).await;
    let err = stderr(&o);
    assert!(o.status.success(), "stderr: {err}");
    // The logs went to the file, not to stderr.
    assert!(!err.contains("imggo_batch"), "stderr: {err}");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(KEY), "the API key is in the log:\n{text}");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();

    // `imggo=debug` matches the module-path targets of the engine (`imggo_batch::…`):
    // each input has its span, and once the job is known, the span names it.
    let results = lines(&out);
    assert_eq!(results.len(), 5, "{results:?}");
    for r in &results {
        let job_id = r.job_id.as_deref().expect("a job id");
        let in_span = |e: &&Value| {
            e["span"]["name"] == "input"
                && e["span"]["input"] == r.input.as_str()
                && e["span"]["job_id"] == job_id
        };
        assert!(
            events
                .iter()
                .any(|e| in_span(&e) && message(e) == "input done"),
            "no `input done` event in the span of {} with job {job_id}:\n{text}",
            r.input
        );
        assert!(
            events
                .iter()
                .any(|e| in_span(&e) && message(e) == "ingest accepted"),
            "no `ingest accepted` event for {}:\n{text}",
            r.input
        );
    }

    // Every 429 the emulator answered is logged, with the wait, in the input's span.
    let refused = handle.stats().rate_limited;
    assert!(refused >= 1, "the emulator answered no 429");
    let logged: Vec<&Value> = events
        .iter()
        .filter(|e| message(e).starts_with("rate limited (429)"))
        .collect();
    assert_eq!(logged.len() as u64, refused, "{text}");
    for e in logged {
        assert_eq!(e["level"], "DEBUG", "{e}");
        assert_eq!(e["span"]["name"], "input", "{e}");
        assert!(e["fields"]["wait_ms"].is_u64(), "{e}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "INFO" && message(e) == "run finished"),
        "{text}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_on_stderr_leave_the_json_lines_on_stdout_and_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    imggo_testkit::corpus_variants(&input_dir, 4, 0);
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let input_arg = input_dir.display().to_string();
    let mut cmd = imggo_run(
        &handle.base_url(),
        &pattern,
        KEY,
        &out,
        &["--json", "--log-format", "text", &input_arg],
    );
    cmd.env("RUST_LOG", "imggo=debug");
    let o = output(cmd).await;
    let err = stderr(&o);
    assert!(o.status.success(), "stderr: {err}");
    assert!(err.contains("input{input="), "stderr: {err}");
    assert!(err.contains("ingest accepted"), "stderr: {err}");
    assert!(!err.contains(KEY), "the API key is in the log:\n{err}");

    // Each line on stdout is JSON: the four result lines, then the report.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let parsed: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stdout}")))
        .collect();
    assert_eq!(parsed.len(), 5, "{stdout}");
    assert_eq!(lines(&out).len(), 4);
    let raw = std::fs::read_to_string(&out).unwrap();
    assert_eq!(raw.lines().count(), 4, "{raw}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_of_a_redis_cache_with_a_password_never_hold_it() {
    const PASSWORD: &str = "hunter2-log-secret";
    let redis = imggo_testkit::RedisServer::start();
    // The server asks for a password from now on.
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    conn.write_all(format!("CONFIG SET requirepass {PASSWORD}\r\n").as_bytes())
        .unwrap();
    let mut answer = [0u8; 5];
    conn.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"+OK\r\n");
    let cache = format!("redis://:{PASSWORD}@127.0.0.1:{}/", redis.port());

    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    imggo_testkit::corpus_variants(&input_dir, 3, 0);
    let (handle, pattern) = emulator().await;
    let log = dir.path().join("imggo.log");
    let (input_arg, log_arg) = (input_dir.display().to_string(), log.display().to_string());
    // The second run is answered by the cache.
    for run in 0..2 {
        let out = dir.path().join(format!("results-{run}.jsonl"));
        let mut cmd = imggo_run(
            &handle.base_url(),
            &pattern,
            KEY,
            &out,
            &["--cache", &cache, "--quiet", "--log-file", &log_arg],
        );
        cmd.arg(&input_arg).env("RUST_LOG", "debug");
        let o = output(cmd).await;
        assert!(o.status.success(), "stderr: {}", stderr(&o));
        assert_eq!(lines(&out).len(), 3);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("cache hit").count(), 3, "{text}");
    assert!(
        !text.contains(PASSWORD),
        "the Redis password is in the log:\n{text}"
    );
    assert!(!text.contains(KEY), "the API key is in the log:\n{text}");
    handle.shutdown().await;
}
