//! What the CLI's integration tests share: the real `imggo run` with a clean environment,
//! a hang guard, and readers for the results file and the report.

#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use imggo::{Report, ResultLine};

/// `imggo run` against `endpoint` with `--cache off` (unless `extra` names a cache), and
/// an environment that holds no key, endpoint, pattern, cache, limiter, config file or
/// `RUST_LOG` of the machine's.
pub fn imggo_run(endpoint: &str, pattern: &str, key: &str, out: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["--pattern", pattern];
    args.extend_from_slice(extra);
    imggo_run_routed(endpoint, key, out, &args)
}

/// [`imggo_run`] without `--pattern`: a run routed by `--route` or `--classify` alone.
pub fn imggo_run_routed(endpoint: &str, key: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imggo"));
    c.args(["run", "--endpoint", endpoint])
        .args(["--api-key", key, "--out"])
        .arg(out)
        .args(extra)
        .env_remove("IMGGO_API_KEY")
        .env_remove("IMGGO_ENDPOINT")
        .env_remove("IMGGO_PATTERN")
        .env_remove("IMGGO_CACHE")
        .env_remove("IMGGO_LIMITER")
        // Logs on stderr only when a test asks for them.
        .env_remove("RUST_LOG")
        .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !extra.contains(&"--cache") {
        c.args(["--cache", "off"]);
    }
    c
}

/// Runs `cmd` off the runtime (an in-process emulator lives on it), killed after 60 s so
/// that a hang fails the test instead of blocking it.
pub async fn output(mut cmd: Command) -> Output {
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

/// The result lines that parse (a torn last line is skipped).
pub fn lines(out: &Path) -> Vec<ResultLine> {
    std::fs::read(out)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// The report `--json` prints last.
pub fn report(o: &Output) -> Report {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", stderr(o)))
}

/// The run's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
