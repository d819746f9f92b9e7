//! `imggo demo`: the whole pipeline on the embedded emulator, with a synthetic corpus. No
//! network, no key, no Redis.
//!
//! The demo runs a batch the way operators do: a classification pattern reads each image
//! first and its class (`invoice`, `receipt`, `menu`, or `other` for the fallback) picks
//! the extraction pattern; a burst of unreadable files from a "glitching scanner" drops
//! the success rate, so the alert fires to a local receiver and clears once good images
//! flow again; the HTML report is written with a table per class.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use imggo::core::{AlertRules, Tracker};
use imggo::emulator::{Config, Emulator, Faults, Handle, LatencyModel};
use imggo::{AlertSinks, ClassifySpec, ConcurrencySpec, HtmlReport, Inputs, Journal, RunSpec};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::usage_error;
use super::progress::Progress;

/// The classes of the demo's classification pattern; `other` has no extraction pattern of
/// its own and runs with the fallback.
const CLASSES: [&str; 4] = ["invoice", "receipt", "menu", "other"];
/// Unreadable files among the inputs: enough to fail the success-rate rule for a while.
const GLITCHES: usize = 12;
const KEY: &str = "imggo_demo_key";

/// Flags of `imggo demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Document-like scans to generate.
    #[arg(long, default_value_t = 40)]
    pub docs: usize,
    /// Large (8 MP) photos to generate.
    #[arg(long, default_value_t = 4)]
    pub photos: usize,
    /// Exact duplicates among the inputs.
    #[arg(long, default_value_t = 8)]
    pub duplicates: usize,
    /// Concurrent uploads.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Emulated processing time: N, uniform:A-B or lognormal:MEDIAN,P99 (milliseconds).
    #[arg(long, default_value = "lognormal:250,900")]
    pub latency: String,
    /// Probability of an injected 503 per request.
    #[arg(long, default_value_t = 0.03)]
    pub fail_503: f64,
    /// Seed of the corpus and of the emulator's faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the HTML report (default: imggo-demo-report.html in the system's
    /// temporary directory).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the final report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo.
pub fn run(args: Args) -> ExitCode {
    super::common::runtime().block_on(run_async(args))
}

async fn run_async(args: Args) -> ExitCode {
    let latency: LatencyModel = match args.latency.parse() {
        Ok(l) => l,
        Err(e) => return usage_error(&e),
    };
    if args.concurrency == 0 {
        return usage_error(&"--concurrency must be at least 1");
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return usage_error(&format!("temp dir: {e}")),
    };
    let images = dir.path().join("images");
    if let Err(e) = corpus(&args, &images) {
        return usage_error(&format!("cannot write the demo corpus: {e}"));
    }
    let config = Config {
        latency,
        faults: Faults {
            fail_503: args.fail_503,
            ..Faults::default()
        },
        seed: args.seed,
        ..Config::default()
    }
    .api_key(KEY);
    let emulator = match Emulator::start(config).await {
        Ok(h) => h,
        Err(e) => return usage_error(&format!("emulator: {e}")),
    };
    eprintln!("imggo demo: emulator listening on {}", emulator.base_url());
    let receiver = match Receiver::start().await {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("alert receiver: {e}")),
    };
    let spec = spec(&args, &emulator, &receiver);
    let code = batch(&args, spec, &images, dir.path(), &receiver).await;
    let stats = emulator.stats();
    emulator.shutdown().await;
    if !args.json {
        println!(
            "  emulator: {} jobs (a classification and an extraction per distinct image), {} job polls, {} TCP connections",
            stats.jobs_created, stats.job_polls, stats.connections_accepted
        );
    }
    code
}

/// The synthetic corpus, most files named by their class (the emulator's classification
/// stand-in reads the class from the file name; the rest get one by content hash), plus
/// [`GLITCHES`] unreadable files.
fn corpus(args: &Args, images: &Path) -> std::io::Result<()> {
    let started = Instant::now();
    let corpus =
        crate::synth::write_corpus(images, args.docs, args.photos, args.duplicates, args.seed)
            .map_err(std::io::Error::other)?;
    for (i, file) in corpus.files.iter().enumerate() {
        let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if i % 4 != 0 {
            std::fs::rename(file, images.join(format!("{}-{name}", CLASSES[i % 3])))?;
        }
    }
    for i in 0..GLITCHES {
        std::fs::write(
            images.join(format!("glitch-{i:02}.jpg")),
            b"scanner glitch: not an image",
        )?;
    }
    eprintln!(
        "imggo demo: {} images ({} duplicates, {GLITCHES} unreadable) generated in {:.1}s under {}",
        corpus.files.len() + GLITCHES,
        corpus.duplicates,
        started.elapsed().as_secs_f64(),
        images.display()
    );
    Ok(())
}

/// The run: classify, route by class, alert to the local receiver.
fn spec(args: &Args, emulator: &Handle, receiver: &Receiver) -> RunSpec {
    let classify = emulator.create_pattern(
        "Document classifier",
        Some(json!({"type": "object", "properties": {
            "doc_type": {"type": "string", "enum": CLASSES}
        }})),
    );
    let extract = |name: &str, fields: serde_json::Value| {
        emulator
            .create_pattern(name, Some(json!({"type": "object", "properties": fields})))
            .id
    };
    let invoice = extract(
        "Invoice extraction",
        json!({"vendor": {"type": "string"}, "total": {"type": "number"}, "due": {"type": "string", "format": "date"}}),
    );
    let receipt = extract(
        "Receipt extraction",
        json!({"merchant": {"type": "string"}, "total": {"type": "number"}, "items": {"type": "array"}}),
    );
    let menu = extract(
        "Menu extraction",
        json!({"dishes": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}}}}}),
    );
    let fallback = extract("Generic document", json!({"text": {"type": "string"}}));
    let mut spec = RunSpec::new(fallback, KEY);
    spec.endpoints = vec![emulator.base_url()];
    spec.cache = "memory".into();
    spec.concurrency = ConcurrencySpec::Fixed(args.concurrency);
    spec.classify = Some(ClassifySpec {
        pattern_id: classify.id,
        field: "doc_type".into(),
        classes: vec![
            ("invoice".into(), invoice),
            ("receipt".into(), receipt),
            ("menu".into(), menu),
        ],
    });
    spec.alert_rules = AlertRules {
        min_samples: 10,
        min_success_rate: Some(0.8),
        ..AlertRules::default()
    };
    spec.alerts = AlertSinks {
        webhook: Some(receiver.url.clone()),
        window: 20,
        quiet: args.json,
        ..AlertSinks::default()
    };
    spec
}

/// Runs the batch, writes the results and the report, prints the summary.
async fn batch(
    args: &Args,
    spec: RunSpec,
    images: &Path,
    dir: &Path,
    receiver: &Receiver,
) -> ExitCode {
    let tracker = Arc::new(Tracker::new());
    let mut started = match spec.start(tracker.clone()).await {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let pipeline = started.take_pipeline();
    if let Err(e) = pipeline.prepare().await {
        return usage_error(&e);
    }
    let out = dir.join("results.jsonl");
    let (mut journal, _) = match Journal::open(&out, None) {
        Ok(j) => j,
        Err(e) => return usage_error(&e),
    };
    let (run_started, pacer) = (Instant::now(), pipeline.pacer());
    let total = Inputs::new([images.display().to_string()]).count() as u64;
    let mut run = pipeline.run(Inputs::new([images.display().to_string()]).routed());
    let progress = Progress::new(args.json, Some(total));
    let mut html = HtmlReport::new("imggo demo: routed by class");
    let mut classes = std::collections::BTreeMap::<String, (String, u64)>::new();
    while let Some(line) = run.next_line().await {
        if let Err(e) = journal.append(&line) {
            eprintln!("imggo demo: {e}");
        }
        html.add(&line);
        if let Some(c) = &line.class {
            let e = classes
                .entry(c.clone())
                .or_insert((line.pattern_id.clone(), 0));
            e.1 += 1;
        }
        progress.tick(&tracker, &pacer, run_started);
    }
    progress.finish();
    let report = run.report().await;
    started.stop_metrics();
    let path = args
        .report
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("imggo-demo-report.html"));
    let written = html.write(&path);
    let alerts = receiver.states();
    let fired_and_cleared =
        alerts.iter().any(|s| s == "firing") && alerts.iter().any(|s| s == "resolved");
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        println!("{}", report.table());
        print_routing(&classes, &receiver.url, &alerts);
        match &written {
            Ok(()) => println!("  report: {}", path.display()),
            Err(e) => println!("  report: {e}"),
        }
        println!("  results: {} (removed on exit)", out.display());
    }
    // The glitching scanner's files fail on purpose, and the alert they fire is the
    // point: the demo went as designed when it fired, cleared, and nothing else failed.
    if fired_and_cleared && report.snapshot.failed == GLITCHES as u64 && written.is_ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "imggo demo: not as designed (alerts {alerts:?}, {} failed)",
            report.snapshot.failed
        );
        ExitCode::from(report.exit_code().max(1))
    }
}

/// Which pattern each class went to, and the alerts the receiver got.
fn print_routing(
    classes: &std::collections::BTreeMap<String, (String, u64)>,
    url: &str,
    alerts: &[String],
) {
    for (class, (pattern, n)) in classes {
        let name = match class.as_str() {
            "invoice" => "Invoice extraction",
            "receipt" => "Receipt extraction",
            "menu" => "Menu extraction",
            _ => "Generic document (the fallback)",
        };
        println!("  class {class:<8} {n:>3} inputs → {name} ({pattern})");
    }
    let got = if alerts.is_empty() {
        "none".to_string()
    } else {
        alerts.join(", ")
    };
    println!("  alerts received on {url}: {got}");
}

/// A local alert receiver on 127.0.0.1: answers every POST 200 and keeps each alert's
/// `alert.state`.
struct Receiver {
    url: String,
    states: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/alerts", listener.local_addr()?);
        let states = Arc::new(Mutex::new(Vec::new()));
        let keep = states.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let body = read_request(&mut conn).await;
                    let state = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["alert"]["state"].as_str().map(str::to_owned));
                    if let Some(s) = state {
                        keep.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                    }
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Ok(Self { url, states })
    }

    fn states(&self) -> Vec<String> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The body of one HTTP/1.1 request (by its `content-length`; at most 1 MiB).
async fn read_request(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0)
                .min(1 << 20);
            if buf.len() >= end + 4 + length {
                return buf[end + 4..end + 4 + length].to_vec();
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return Vec::new(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 2 << 20 {
            return Vec::new();
        }
    }
}
