//! `imggo run` alerts and progress as operators meet them: the real binary against the
//! emulator, alerts to a local receiver and a command, the plain progress line on a pipe.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imggo::core::Outcome;
use imggo::emulator::{Config, Emulator, Faults, Handle, LatencyModel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::{imggo_run, lines, output, stderr};

const KEY: &str = "imggo_cli_alert_key";

async fn emulator(latency_ms: u64, job_fail: f64) -> (Handle, String) {
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(latency_ms)),
        faults: Faults {
            job_fail,
            ..Faults::default()
        },
        seed: 11,
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("alert test", None).id;
    (handle, pattern)
}

/// One request the receiver got: its path, its JSON body, and the status it answered.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    body: serde_json::Value,
    status: u16,
}

/// A tiny HTTP/1.1 receiver on 127.0.0.1:0 that answers 500 to the first `fail_first`
/// requests and 200 after; it records every request.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::<Got>::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = serde_json::from_slice(&buf[head_end..head_end + length])
                    .unwrap_or(serde_json::Value::Null);
                let status = {
                    let mut seen = seen.lock().unwrap();
                    let status = if seen.len() < fail_first { 500 } else { 200 };
                    seen.push(Got { path, body, status });
                    status
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, got)
}

fn inputs(dir: &Path, n: usize) -> String {
    let input_dir = dir.join("in");
    imggo_testkit::corpus_variants(&input_dir, n, 0);
    input_dir.display().to_string()
}

/// Half the jobs fail: the success-rate rule fires once, and the alert reaches a webhook
/// that answers 500 twice before 200 (three attempts, one body) and a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_fires_once_to_a_retried_webhook_and_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let input_arg = inputs(dir.path(), 60);
    let (handle, pattern) = emulator(5, 0.5).await;
    let (url, got) = receiver(2).await;
    let hook = format!("{url}/hooks/secret-path-token");
    let file = dir.path().join("alert.json");
    let command = format!("cat > '{}'", file.display());
    let out = dir.path().join("out.jsonl");
    let o = output(imggo_run(
        &handle.base_url(),
        &pattern,
        KEY,
        &out,
        &[
            "--alert-success-rate",
            "95",
            "--alert-min-samples",
            "10",
            "--alert-window",
            "30",
            "--alert-webhook",
            &hook,
            "--alert-command",
            &command,
            &input_arg,
        ],
    ))
    .await;
    let err = stderr(&o);
    // Inputs failed: exit 1 wins over the alert's 3, as before.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(lines(&out).len(), 60);
    assert!(lines(&out).iter().any(|l| l.status == Outcome::Failed));
    assert_eq!(
        err.matches("imggo alert FIRING: success rate").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("warning: alert"), "{err}");

    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "two 500s, then the 200: {got:?}");
    assert_eq!(
        got.iter().map(|g| g.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for g in &got {
        assert_eq!(g.path, "/hooks/secret-path-token");
        assert_eq!(g.body, got[0].body, "the same alert each attempt");
    }
    let alert = &got[0].body["alert"];
    assert_eq!(alert["rule"], "success_rate");
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["threshold"], 0.95);
    assert_eq!(alert["window"], "last 30 inputs");
    assert!(alert["value"].as_f64().unwrap() < 0.95);
    assert!(alert["run_id"].as_str().unwrap().starts_with("run-"));
    let text = got[0].body["text"].as_str().unwrap();
    assert!(
        text.starts_with("imggo alert FIRING: success rate"),
        "{text}"
    );
    assert!(!got[0].body.to_string().contains(KEY));

    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written, got[0].body,
        "the command got the same JSON on stdin"
    );
    handle.shutdown().await;
}

/// A p95 rule that fires while nothing fails exits 3; an unreachable receiver and a
/// failing command only add warning lines (without the URL's path or the command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_changes_nothing_but_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let input_arg = inputs(dir.path(), 25);
    let (handle, pattern) = emulator(30, 0.0).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hook = format!("http://{closed}/hooks/secret-path-token");
    let rules: &[&str] = &["--alert-p95", "0.001", "--alert-min-samples", "5"];
    let plain = dir.path().join("plain.jsonl");
    let mut args = rules.to_vec();
    args.push(&input_arg);
    let a = output(imggo_run(&handle.base_url(), &pattern, KEY, &plain, &args)).await;
    assert_eq!(a.status.code(), Some(3), "{}", stderr(&a));

    let alerted = dir.path().join("alerted.jsonl");
    let mut args = rules.to_vec();
    args.extend([
        "--alert-webhook",
        &hook,
        "--alert-command",
        "exit 7 # secret-command-token",
        &input_arg,
    ]);
    let b = output(imggo_run(
        &handle.base_url(),
        &pattern,
        KEY,
        &alerted,
        &args,
    ))
    .await;
    let err = stderr(&b);
    assert_eq!(b.status.code(), Some(3), "{err}");
    let (la, lb) = (lines(&plain), lines(&alerted));
    assert_eq!(la.len(), 25);
    assert_eq!(lb.len(), 25);
    assert!(lb.iter().all(|l| l.status == Outcome::Succeeded));
    assert!(err.contains("imggo alert FIRING: p95 latency"), "{err}");
    assert!(
        err.contains(&format!("warning: alert webhook http://{closed}")),
        "{err}"
    );
    assert!(err.contains("warning: alert command: exited with"), "{err}");
    assert!(!err.contains("secret-path-token"), "{err}");
    assert!(!err.contains("secret-command-token"), "{err}");
    handle.shutdown().await;
}

/// On a pipe, `imggo run` prints a plain status line at the interval (10 s; shortened
/// here through the hidden `IMGGO_PROGRESS_INTERVAL_MS`), and none with `--quiet`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_gets_a_plain_status_line() {
    let dir = tempfile::tempdir().unwrap();
    let input_arg = inputs(dir.path(), 20);
    let (handle, pattern) = emulator(100, 0.0).await;
    let run = |out: &str, quiet: bool| {
        let mut args = vec!["--concurrency", "1", input_arg.as_str()];
        if quiet {
            args.push("--quiet");
        }
        let mut cmd = imggo_run(
            &handle.base_url(),
            &pattern,
            KEY,
            &dir.path().join(out),
            &args,
        );
        cmd.env("IMGGO_PROGRESS_INTERVAL_MS", "200");
        cmd
    };
    let o = output(run("a.jsonl", false)).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let status: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("imggo: ") && l.contains("/20 done, "))
        .collect();
    assert!(status.len() >= 2, "{err}");
    for l in &status {
        assert!(l.contains("/s  eta ") && l.contains("failed 0"), "{l}");
    }
    let q = output(run("b.jsonl", true)).await;
    assert_eq!(q.status.code(), Some(0));
    assert!(!stderr(&q).contains("done, "), "{}", stderr(&q));
    handle.shutdown().await;
}
