//! `imggo demo`: the whole pipeline on the embedded emulator, with a synthetic corpus. No
//! network, no key, no Redis.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imggo::cache::MemoryCache;
use imggo::core::{CreatePattern, PatternFormat, PatternSchemas, Tracker};
use imggo::emulator::{Config, Emulator, Faults, LatencyModel};
use imggo::http::{Client, PollPolicy};
use imggo::{Concurrency, CountingRetry, Inputs, Journal, Pipeline, WaitMode};
use serde_json::json;

use super::common::usage_error;
use super::progress::Progress;

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
    let started = Instant::now();
    let corpus = match crate::synth::write_corpus(
        &dir.path().join("images"),
        args.docs,
        args.photos,
        args.duplicates,
        args.seed,
    ) {
        Ok(c) => c,
        Err(e) => return usage_error(&format!("cannot write the demo corpus: {e}")),
    };
    eprintln!(
        "imggo demo: {} images ({} duplicates) generated in {:.1}s under {}",
        corpus.files.len(),
        corpus.duplicates,
        started.elapsed().as_secs_f64(),
        dir.path().display()
    );

    let config = Config {
        latency,
        faults: Faults {
            fail_503: args.fail_503,
            ..Faults::default()
        },
        seed: args.seed,
        ..Config::default()
    }
    .api_key("imggo_demo_key");
    let emulator = match Emulator::start(config).await {
        Ok(h) => h,
        Err(e) => return usage_error(&format!("emulator: {e}")),
    };
    eprintln!("imggo demo: emulator listening on {}", emulator.base_url());

    let tracker = Arc::new(Tracker::new());
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("imggo_demo_key")
        .retry_policy(CountingRetry::backoff(tracker.clone()))
        .observer(tracker.clone())
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let pattern = client
        .create_pattern(&CreatePattern {
            name: "Receipt extraction demo".into(),
            instructions: "Extract merchant, date, total and line items from the receipt".into(),
            format: Some(PatternFormat::Json),
            schemas: PatternSchemas::json(json!({
                "type": "object",
                "properties": {
                    "merchant": {"type": "string"},
                    "date": {"type": "string"},
                    "total": {"type": "number"},
                    "items": {"type": "array"}
                }
            })),
            ..CreatePattern::default()
        })
        .await;
    let pattern = match pattern {
        Ok(p) => p,
        Err(e) => return usage_error(&format!("creating the demo pattern: {e}")),
    };

    let out = dir.path().join("results.jsonl");
    let (mut journal, _) = match Journal::open(&out, None) {
        Ok(j) => j,
        Err(e) => return usage_error(&e),
    };
    let pipeline = Pipeline::builder()
        .client(client)
        .pattern(pattern.id.clone())
        .pattern_version(pattern.version)
        .cache(
            Arc::new(MemoryCache::new(Default::default())),
            Duration::from_secs(3600),
        )
        .concurrency(Concurrency::Fixed(args.concurrency))
        .wait(WaitMode::Poll(PollPolicy {
            first: Duration::from_millis(100),
            second: Duration::from_millis(100),
            ..PollPolicy::default()
        }))
        .tracker(tracker.clone())
        .build();
    let pipeline = match pipeline {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let run_started = Instant::now();
    let pacer = pipeline.pacer();
    let mut run = pipeline.run(Inputs::new(
        corpus.files.iter().map(|p| p.display().to_string()),
    ));
    let progress = Progress::new(false, Some(corpus.files.len() as u64));
    let mut sample = None;
    while let Some(line) = run.next_line().await {
        if let Err(e) = journal.append(&line) {
            eprintln!("imggo demo: {e}");
        }
        if sample.is_none() && line.manifest.is_some() {
            sample = line.manifest.clone();
        }
        progress.tick(&tracker, &pacer, run_started);
    }
    progress.finish();
    let report = run.report().await;
    let stats = emulator.stats();
    emulator.shutdown().await;

    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        println!("{}", report.table());
        println!(
            "  emulator: {} ingests accepted, {} job polls, {} TCP connections",
            stats.ingests_accepted, stats.job_polls, stats.connections_accepted
        );
        if let Some(m) = sample {
            println!("  a manifest: {m}");
        }
        println!("  results: {} (removed on exit)", out.display());
    }
    ExitCode::from(report.exit_code())
}
