//! `imggo run --report` and `imggo report`: the real binary against the emulator with
//! a rate limit and failing jobs, and the HTML it writes.

mod common;

use std::time::Duration;

use imggo::core::Outcome;
use imggo::emulator::{Config, Emulator, Faults, LatencyModel, Limits};

use common::{imggo_run, lines, output, stderr};

const KEY: &str = "imggo_cli_report_key";
const HOSTILE: &str = "<script>alert(1)</script>.jpg";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_report_and_report_subcommand_draw_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    imggo_testkit::corpus_variants(&input_dir, 16, 0);
    // A file whose path reads `.../<script>alert(1)</script>.jpg`, and is no image.
    let hostile_dir = input_dir.join("<script>alert(1)<");
    std::fs::create_dir_all(&hostile_dir).unwrap();
    std::fs::write(hostile_dir.join("script>.jpg"), b"not an image").unwrap();
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(20)),
        limits: Limits {
            rpm: Some(600),
            burst: Some(2),
            ..Limits::default()
        },
        faults: Faults {
            job_fail: 0.2,
            ..Faults::default()
        },
        seed: 11,
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("report test", None).id;
    let out = dir.path().join("results.jsonl");
    let html_path = dir.path().join("report.html");
    let report_arg = html_path.display().to_string();
    let mut cmd = imggo_run(
        &handle.base_url(),
        &pattern,
        KEY,
        &out,
        &["--quiet", "--concurrency", "4", "--report", &report_arg],
    );
    cmd.arg(&input_dir);
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(1), "failed inputs: {}", stderr(&o));

    let results = lines(&out);
    assert_eq!(results.len(), 17);
    for l in &results {
        let at = l.finished_at.as_deref().expect("finished_at on every line");
        assert!(
            imggo::core::time::parse_rfc3339(at).is_some() && at.ends_with('Z'),
            "{at}"
        );
        assert!(l.rate_limited.is_some() && l.waited_ms.is_some(), "{l:?}");
    }
    let failed = results
        .iter()
        .filter(|l| l.status == Outcome::Failed)
        .count();
    assert!(failed >= 1);
    let met_429: u64 = results
        .iter()
        .map(|l| u64::from(l.rate_limited.unwrap_or(0)))
        .sum();
    assert_eq!(
        met_429,
        handle.stats().rate_limited,
        "429s counted per line"
    );

    let html = std::fs::read_to_string(&html_path).expect("--report wrote the report");
    assert_eq!(html.matches("<svg").count(), 6);
    assert!(html.contains(&format!("failed\" data-count=\"{failed}\"")));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.jpg"));
    assert!(!html.contains(HOSTILE));
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"));
    assert!(!lower.contains("http://") && !lower.contains("https://"));

    // The same from the results file, with a torn line at its end.
    let mut bytes = std::fs::read(&out).unwrap();
    bytes.extend(b"{\"input\":\"cut");
    std::fs::write(&out, bytes).unwrap();
    let again = dir.path().join("again.html");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.arg("report")
        .arg(&out)
        .arg("--out")
        .arg(&again)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped 1 unreadable lines"),
        "{}",
        stderr(&o)
    );
    let drawn = std::fs::read_to_string(&again).unwrap();
    assert!(drawn.contains("<tr><th>unreadable lines skipped</th><td>1</td></tr>"));
    assert!(drawn.contains("<tr><th>result lines</th><td>17</td></tr>"));
    // The charts are the run's: only the title (the results file's name) may differ.
    let charts = |h: &str| h[h.find("<figure>").unwrap()..].to_string();
    assert_eq!(charts(&drawn), charts(&html));

    // A missing results file is an error, not an empty report.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.arg("report")
        .arg(dir.path().join("nope.jsonl"))
        .arg("--out")
        .arg(dir.path().join("nope.html"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(1));
    handle.shutdown().await;
}

/// A device has no end to read to: `imggo report /dev/zero` is refused at once, naming
/// it, instead of reading forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.args(["report", "/dev/zero", "--out"])
        .arg(dir.path().join("r.html"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/dev/zero"), "{}", stderr(&o));
}
