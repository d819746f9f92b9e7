//! `imggo run` against hostile flags, files, lists and results files: the real binary
//! against the in-process emulator over loopback. Each case once made the run panic,
//! hang, lose lines or skip work.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{imggo_run, lines, output, report, stderr};

use imggo::core::Outcome;
use imggo::emulator::{Config, Emulator, Handle, LatencyModel};
use imggo::ResultLine;

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
    let mut c = imggo_run(&handle.base_url(), pattern, KEY, out, extra);
    c.arg("--quiet");
    c
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

/// Case 2: `--resume` with another pattern redoes every input, and the report counts
/// each resumed input once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_another_pattern_runs_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 3, 0);
    let (handle, first) = emulator().await;
    let second = handle.create_pattern("another pattern", None).id;
    let out = dir.path().join("results.jsonl");
    let arg = input_dir.display().to_string();
    let run = |pattern: &str, resume: bool| {
        let mut flags = vec!["--no-optimize", "--json", &arg];
        if resume {
            flags.push("--resume");
        }
        output(imggo(&handle, pattern, &out, &flags))
    };

    let o = run(&first, false).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&second, true).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        report(&o).resumed,
        0,
        "nothing was done with the second pattern"
    );
    let all = lines(&out);
    assert_eq!(all.len(), 2 * inputs.len());
    for pattern in [&first, &second] {
        let done = all
            .iter()
            .filter(|l| &l.pattern_id == pattern && l.status == Outcome::Succeeded)
            .count();
        assert_eq!(done, inputs.len(), "{pattern}");
    }
    assert_eq!(handle.stats().jobs_created, 2 * inputs.len() as u64);

    // Resumed again with the second pattern: nothing left, each input counted once.
    let o = run(&second, true).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report(&o).resumed, inputs.len() as u64);
    assert_eq!(lines(&out).len(), 2 * inputs.len());
    assert_eq!(handle.stats().jobs_created, 2 * inputs.len() as u64);
    handle.shutdown().await;
}

/// Resume is keyed by pattern, pattern version and settings: a new version of the pattern
/// or other optimiser options redo every input; the same ones skip them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_new_pattern_version_or_other_settings_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 3, 0);
    let n = inputs.len() as u64;
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let arg = input_dir.display().to_string();
    let run = |flags: &[&str]| {
        let mut all = vec!["--json", "--resume", arg.as_str()];
        all.extend_from_slice(flags);
        output(imggo(&handle, &pattern, &out, &all))
    };
    let resumed = |o: &Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        report(o).resumed
    };

    assert_eq!(resumed(&run(&["--no-optimize"]).await), 0);
    assert_eq!(
        resumed(&run(&["--no-optimize"]).await),
        n,
        "same everything"
    );
    // Other settings: the optimiser on.
    assert_eq!(resumed(&run(&[]).await), 0, "other settings");
    assert_eq!(resumed(&run(&[]).await), n);
    // A new version of the pattern.
    let client = imggo::http::Client::builder()
        .base_url(handle.base_url())
        .api_key(KEY)
        .build()
        .unwrap();
    let update = imggo::core::UpdatePattern {
        instructions: Some("Extract every field, now with the totals".into()),
        ..Default::default()
    };
    let updated = client.update_pattern(&pattern, &update).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(resumed(&run(&[]).await), 0, "a new pattern version");
    assert_eq!(resumed(&run(&[]).await), n);
    let all = lines(&out);
    assert_eq!(all.len() as u64, 3 * n);
    assert!(all
        .iter()
        .all(|l| l.pattern_version.is_some() && l.settings.is_some()));
    handle.shutdown().await;
}

/// Case 3: a run refused before it starts (an unknown pattern) keeps the results file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_pattern_leaves_the_results_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 2, 0);
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let arg = inputs[0].display().to_string();
    let o = output(imggo(&handle, &pattern, &out, &["--no-optimize", &arg])).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = std::fs::read(&out).unwrap();
    assert_eq!(lines(&out).len(), 1);

    let typo = "00000000-0000-0000-0000-000000000000";
    let o = output(imggo(&handle, typo, &out, &["--no-optimize", &arg])).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("pattern not found"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the results file was changed"
    );
    handle.shutdown().await;
}

/// Case 4: a results file whose last line was cut inside a UTF-8 character resumes,
/// with a warning, and the input of the cut line runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_line_cut_inside_a_utf8_character_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 3, 0);
    let last = input_dir.join("ü-last.jpg");
    std::fs::rename(&inputs[2], &last).unwrap();
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let args: Vec<String> = [&inputs[0], &inputs[1]]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut flags: Vec<&str> = vec!["--no-optimize"];
    flags.extend(args.iter().map(String::as_str));
    let o = output(imggo(&handle, &pattern, &out, &flags)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A kill while the line of `ü-last.jpg` was written: cut after the first byte of ü.
    let mut cut = br#"{"input":""#.to_vec();
    cut.extend_from_slice(last.display().to_string().as_bytes());
    let at = cut.iter().position(|&b| b == 0xc3).unwrap() + 1;
    cut.truncate(at);
    let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    std::io::Write::write_all(&mut f, &cut).unwrap();
    drop(f);

    let dir_arg = input_dir.display().to_string();
    let o = output(imggo(
        &handle,
        &pattern,
        &out,
        &["--no-optimize", "--resume", &dir_arg],
    ))
    .await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("skipped 1 unreadable line"), "{err}");
    let all = lines(&out);
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].input, last.display().to_string());
    assert_eq!(handle.stats().jobs_created, 3);
    handle.shutdown().await;
}

/// Case 5: a FIFO in an input directory is one failed line, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_an_input_directory_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 2, 0);
    let fifo = input_dir.join("m-pipe.jpg");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let arg = input_dir.display().to_string();
    let o = output(imggo(&handle, &pattern, &out, &["--no-optimize", &arg])).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = lines(&out);
    assert_eq!(all.len(), inputs.len() + 1);
    let failed: Vec<&ResultLine> = all.iter().filter(|l| l.status == Outcome::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].input, fifo.display().to_string());
    let message = &failed[0].error.as_ref().unwrap().message;
    assert!(message.contains("FIFO"), "{message}");
    handle.shutdown().await;
}

/// Case 6: `a -> .` and `b -> .` in an input directory: the walk ends and each image is
/// sent once.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_loops_end_with_each_input_once() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 2, 0);
    std::os::unix::fs::symlink(".", input_dir.join("a")).unwrap();
    std::os::unix::fs::symlink(".", input_dir.join("b")).unwrap();
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let arg = input_dir.display().to_string();
    let o = output(imggo(&handle, &pattern, &out, &["--no-optimize", &arg])).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut got: Vec<String> = lines(&out).into_iter().map(|l| l.input).collect();
    got.sort();
    let want: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(got, want);
    handle.shutdown().await;
}

/// Case 7: a list line that is not UTF-8 is one failed line; the lines after it run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_line_that_is_not_utf8_does_not_drop_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 3, 0);
    let list = dir.path().join("list.txt");
    let mut text = Vec::new();
    for (i, p) in inputs.iter().enumerate() {
        text.extend_from_slice(p.display().to_string().as_bytes());
        text.push(b'\n');
        if i == 0 {
            text.extend_from_slice(b"bad-\xff\xfe.jpg\n");
        }
    }
    std::fs::write(&list, text).unwrap();
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let arg = format!("@{}", list.display());
    let o = output(imggo(&handle, &pattern, &out, &["--no-optimize", &arg])).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = lines(&out);
    assert_eq!(all.len(), inputs.len() + 1, "{all:?}");
    let failed: Vec<&ResultLine> = all.iter().filter(|l| l.status == Outcome::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].input, "bad-\\xff\\xfe.jpg");
    let ok = all
        .iter()
        .filter(|l| l.status == Outcome::Succeeded)
        .count();
    assert_eq!(ok, inputs.len());
    handle.shutdown().await;
}

/// Files that cannot be read (missing, unreadable even by root, a device) fail with one
/// line each, and the rest of the batch runs.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_inputs_fail_with_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 1, 0);
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let good = inputs[0].display().to_string();
    let missing = dir.path().join("missing.jpg").display().to_string();
    let bad = ["/proc/self/mem", missing.as_str(), "/dev/null"];
    let mut flags = vec!["--no-optimize", good.as_str()];
    flags.extend(bad);
    let o = output(imggo(&handle, &pattern, &out, &flags)).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let all = lines(&out);
    assert_eq!(all.len(), 4, "{all:?}");
    for input in bad {
        let mine: Vec<&ResultLine> = all.iter().filter(|l| l.input == input).collect();
        assert_eq!(mine.len(), 1, "{input}: {all:?}");
        assert_eq!(mine[0].status, Outcome::Failed, "{input}");
    }
    assert_eq!(handle.stats().jobs_created, 1);
    handle.shutdown().await;
}

/// Redis passwords stay out of `--help` and of error messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passwords_are_never_printed() {
    let help = Command::new(env!("CARGO_BIN_EXE_imggo"))
        .args(["run", "--help"])
        .env("IMGGO_CACHE", "redis://:hunter2@127.0.0.1:1/")
        .env("IMGGO_LIMITER", "redis://:hunter2@127.0.0.1:1/")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("IMGGO_LIMITER"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let help = Command::new(env!("CARGO_BIN_EXE_imggo"))
        .args(["cache", "--help"])
        .env("IMGGO_CACHE", "redis://:hunter2@127.0.0.1:1/")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));

    let dir = tempfile::tempdir().unwrap();
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let url = "redis://:hunter2@127.0.0.1:1/";
    let cases: &[&[&str]] = &[
        &["--cache", url],
        &["--rps", "5", "--limiter", url],
        &["--rps", "0.5", "--limiter", url],
    ];
    for flags in cases {
        let mut cmd = imggo(&handle, &pattern, &out, flags);
        cmd.arg("https://example.test/a.jpg");
        let o = output(cmd).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(
            err.contains("redis://:***@127.0.0.1:1/"),
            "{flags:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{flags:?}: {err}");
    }
    // From the environment, the same.
    let mut cmd = imggo(&handle, &pattern, &out, &["--rps", "5"]);
    cmd.env("IMGGO_LIMITER", url)
        .arg("https://example.test/a.jpg");
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_file_that_cannot_be_written_stops_the_run() {
    // `/dev/full` takes the open and refuses every write (ENOSPC), as a full disk does.
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    imggo_testkit::corpus_variants(&inputs, 60, 0);
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(100)),
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("full disk", None).id;
    let mut cmd = imggo(
        &handle,
        &pattern,
        Path::new("/dev/full"),
        &["--no-optimize", "--concurrency", "2"],
    );
    cmd.arg(&inputs);
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/dev/full"), "{}", stderr(&o));
    // Two at a time, 100 ms each: the first line fails to write after one round, so
    // only the inputs already sent by then may become jobs, not all 60.
    let jobs = handle.stats().jobs_created;
    assert!(
        jobs <= 8,
        "{jobs} jobs created after the results file failed"
    );
    handle.shutdown().await;
}

fn client(handle: &Handle) -> imggo::http::Client {
    imggo::http::Client::builder()
        .base_url(handle.base_url())
        .api_key(KEY)
        .build()
        .unwrap()
}

/// A remote service can never deliver to 127.0.0.1 or 0.0.0.0: without `--webhook-url`
/// the run is refused before anything is registered or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_a_remote_service_need_a_reachable_url() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    imggo_testkit::corpus_variants(&inputs, 2, 0);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.args(["run", "--pattern", "550e8400-e29b-41d4-a716-446655440000"])
        .args(["--endpoint", "https://img-go.example/api", "--api-key", KEY])
        .args(["--webhook-listen", "0.0.0.0:0", "--webhook-secret"])
        .arg("a-webhook-secret-of-some-length")
        .args(["--quiet", "--cache", "off", "--out"])
        .arg(dir.path().join("r.jsonl"))
        .arg(&inputs)
        .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--webhook-url"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("a-webhook-secret"), "{}", stderr(&o));
}

/// A registration of the same URL left by a killed run, with another secret, would make
/// every delivery fail its signature: it is replaced, results arrive by webhook, and the
/// run leaves no registration behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_webhook_with_another_secret_is_replaced_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    imggo_testkit::corpus_variants(&inputs, 6, 0);
    let (handle, pattern) = emulator().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let c = client(&handle);
    c.create_webhook(&imggo::core::CreateWebhook {
        url: url.clone(),
        events: vec!["job.succeeded".into(), "job.failed".into()],
        secret: Some(imggo::core::Secret::new("left-by-a-killed-run-0000")),
    })
    .await
    .unwrap();
    let out = dir.path().join("r.jsonl");
    let listen = format!("127.0.0.1:{port}");
    let arg = inputs.display().to_string();
    let flags = [
        "--no-optimize",
        "--webhook-listen",
        &listen,
        "--webhook-secret",
        "this-runs-own-secret-1234",
        "--webhook-fallback",
        "30",
        &arg,
    ];
    let o = output(imggo(&handle, &pattern, &out, &flags)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all = lines(&out);
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|l| l.status == Outcome::Succeeded));
    assert_eq!(handle.stats().job_polls, 0, "every result came by webhook");
    assert!(c.list_webhooks().await.unwrap().is_empty(), "nothing left");
    handle.shutdown().await;
}

/// Ctrl-C (or SIGTERM) stops sending at once, lets what was sent finish, writes one line
/// per input (`STOPPED` for those not sent) and exits 130; `--resume` then does the rest,
/// and the account sees one job per input in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_finishes_what_it_sent_and_resume_does_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    imggo_testkit::corpus_variants(&inputs, 40, 0);
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(200)),
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("interrupted", None).id;
    let out = dir.path().join("r.jsonl");
    let arg = inputs.display().to_string();
    let flags = ["--no-optimize", "--concurrency", "2", arg.as_str()];
    let cmd = imggo(&handle, &pattern, &out, &flags);
    let (o, lines_at_signal) = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            let mut cmd = cmd;
            let child = cmd.spawn().unwrap();
            // Interrupt once the run is under way.
            while lines(&out).len() < 4 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let at = lines(&out).len();
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            (child.wait_with_output().unwrap(), at)
        }
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let first = lines(&out);
    assert_eq!(first.len(), 40, "one line per input");
    let succeeded = first
        .iter()
        .filter(|l| l.status == Outcome::Succeeded)
        .count();
    let stopped = first
        .iter()
        .filter(|l| l.error.as_ref().is_some_and(|e| e.code == "STOPPED"))
        .count();
    assert_eq!(succeeded + stopped, 40);
    // Two at a time: what was in flight at the signal finished, nothing more was sent.
    assert!(
        succeeded <= lines_at_signal + 4,
        "{succeeded} succeeded, {lines_at_signal} lines at the signal"
    );
    assert_eq!(handle.stats().jobs_created, succeeded as u64);

    let mut resume = flags.to_vec();
    resume.push("--resume");
    let o = output(imggo(&handle, &pattern, &out, &resume)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(handle.stats().jobs_created, 40, "one job per input in all");
    handle.shutdown().await;
}

/// A list that can be read only once (a FIFO, as `@<(find …)` gives) is read once: the
/// progress total, which walks the inputs a second time, is skipped for it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_from_a_pipe_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 5, 0);
    let fifo = dir.path().join("list.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let text: String = inputs
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    };
    let (handle, pattern) = emulator().await;
    let out = dir.path().join("results.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.args([
        "run",
        "--pattern",
        &pattern,
        "--endpoint",
        &handle.base_url(),
    ])
    .args(["--api-key", KEY, "--cache", "off", "--no-optimize", "--out"])
    .arg(&out)
    .arg(format!("@{}", fifo.display()))
    .env("IMGGO_CONFIG", "/nonexistent/imggo-config.toml")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let o = output(cmd).await;
    writer.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all = lines(&out);
    assert_eq!(all.len(), inputs.len(), "{all:?}");
    handle.shutdown().await;
}

/// A job that failed on the service comes back failed for as long as its input is sent
/// with the same idempotency key; `--retry-failed` sends it under a salted key (the salt
/// in its line), and repeated retries finish every input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_runs_a_failed_job_again_under_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    let inputs = imggo_testkit::corpus_variants(&input_dir, 12, 0);
    let n = inputs.len() as u64;
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(0)),
        faults: imggo::emulator::Faults {
            job_fail: 0.5,
            ..Default::default()
        },
        seed: 3,
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("retry failed", None).id;
    let out = dir.path().join("r.jsonl");
    let arg = input_dir.display().to_string();
    let run = |extra: &'static [&'static str]| {
        let mut flags = vec!["--no-optimize", arg.as_str()];
        flags.extend_from_slice(extra);
        output(imggo(&handle, &pattern, &out, &flags))
    };
    let failed_now = |out: &Path| {
        let mut last = std::collections::HashMap::new();
        for l in lines(out) {
            last.insert(l.input.clone(), l);
        }
        last.values()
            .filter(|l| l.status == Outcome::Failed)
            .count() as u64
    };

    run(&[]).await;
    let failed = failed_now(&out);
    assert!(failed > 0, "some jobs failed (job_fail 0.5)");
    assert_eq!(handle.stats().jobs_created, n);
    // Resumed with the same keys: the same failed jobs come back, nothing new is made.
    run(&["--resume"]).await;
    assert_eq!(failed_now(&out), failed);
    assert_eq!(handle.stats().jobs_created, n);
    // Retried under salted keys until every input succeeded.
    let mut rounds = 0;
    while failed_now(&out) > 0 {
        rounds += 1;
        assert!(rounds <= 10, "still failing after 10 retries");
        let before = handle.stats().jobs_created;
        let still = failed_now(&out);
        run(&["--resume", "--retry-failed"]).await;
        assert_eq!(
            handle.stats().jobs_created,
            before + still,
            "one new job per retry"
        );
    }
    let salted: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l.idempotency_salt.is_some())
        .collect();
    assert!(!salted.is_empty());
    assert!(salted
        .iter()
        .all(|l| l.idempotency_salt.as_deref().unwrap().starts_with("retry-")));
    handle.shutdown().await;
}
