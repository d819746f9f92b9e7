//! `imggo tune <INPUT>... --pattern ID [--levels 1,5,10,20,50]`: the guide's concurrency
//! sweep, done right — each level really runs that many uploads at once, on fresh jobs
//! (a per-sweep nonce in `extras` keeps idempotency from answering from earlier levels).
//! Under a rate limit each level learns it (a pacer of its own: one that learned at a
//! lower level would read that level's unsaturated sends as the limit), and the
//! recommendation names it: past the knee, the service's limit caps throughput.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use imggo::core::Tracker;
use imggo::{Concurrency, CountingRetry, Inputs, Pipeline, Report};
use serde::Serialize;
use serde_json::json;

use super::common::{runtime, usage_error, Connection, FileConfig, Hooks};

/// Flags of `imggo tune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Inputs as for `imggo run` (a few dozen representative images is enough).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// The pattern to measure with.
    #[arg(long, env = "IMGGO_PATTERN")]
    pub pattern: String,
    /// Concurrency levels to try.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20,50")]
    pub levels: Vec<usize>,
    /// Upload the original bytes.
    #[arg(long)]
    pub no_optimize: bool,
    /// Print one JSON line per level and one for the recommendation.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// One level's measurement.
#[derive(Debug, Serialize)]
pub struct Level {
    /// Concurrent uploads.
    pub concurrency: usize,
    /// Inputs finished per second.
    pub images_per_sec: f64,
    /// p95 latency per input.
    pub p95_ms: f64,
    /// Inputs that failed.
    pub failed: u64,
    /// Ingests per second the service allows, as learned so far (absent while no limit
    /// was met).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_per_sec: Option<f64>,
    /// Ingests refused with 429 at this level (each waited and went again).
    pub rate_limited: u64,
}

/// The lowest level within 10 % of the best throughput, or the lowest that ran into the
/// service's rate limit (its 429s say it asked for more than the service allows, even if
/// learning the limit cost it some throughput): more concurrency than that only adds
/// latency and rate-limit risk.
pub fn knee(levels: &[Level]) -> Option<usize> {
    let best = levels.iter().map(|l| l.images_per_sec).fold(0.0, f64::max);
    levels
        .iter()
        .filter(|l| l.failed == 0 && (l.images_per_sec >= 0.9 * best || l.rate_limited > 0))
        .map(|l| l.concurrency)
        .min()
}

/// The service's limit when it is what flattens the curve: some level ran into it (429s),
/// as learned at the highest level that learned it.
pub fn limit_at_knee(levels: &[Level]) -> Option<f64> {
    if levels.iter().all(|l| l.rate_limited == 0) {
        return None;
    }
    levels.iter().rev().find_map(|l| l.limit_per_sec)
}

/// Runs the sweep.
pub fn run(args: Args) -> ExitCode {
    if args.levels.is_empty() || args.levels.contains(&0) {
        return usage_error(&"--levels wants positive numbers, e.g. 1,5,10,20,50");
    }
    let file = match FileConfig::load() {
        Ok(f) => f,
        Err(e) => return usage_error(&e),
    };
    runtime().block_on(async move {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut results = Vec::new();

        if !args.json {
            println!(
                "{:>12} {:>10} {:>10} {:>7} {:>7}",
                "concurrency", "images/s", "p95 ms", "failed", "429s"
            );
        }
        for &level in &args.levels {
            let tracker = Arc::new(Tracker::new());
            let hooks = Hooks {
                retry: Some(CountingRetry::backoff(tracker.clone())),
                observer: Some(tracker.clone()),
            };
            let client = match args.conn.client(&file, hooks).await {
                Ok(c) => c,
                Err(e) => return usage_error(&e),
            };
            let built = Pipeline::builder()
                .client(client)
                .pattern(args.pattern.clone())
                .optimize((!args.no_optimize).then(Default::default))
                .concurrency(Concurrency::Fixed(level))
                .extras(json!({ "imggo_tune": format!("{nonce:x}-{level}") }))
                .tracker(tracker)
                .build();
            let pipeline = match built {
                Ok(p) => p,
                Err(e) => return usage_error(&e),
            };
            if let Err(e) = pipeline.prepare().await {
                return usage_error(&e);
            }
            let mut run = pipeline.run(Inputs::new(args.inputs.clone()));
            while run.next_line().await.is_some() {}
            let report: Report = run.report().await;
            let pace = report.pace.as_ref();

            let l = Level {
                concurrency: level,
                images_per_sec: report.snapshot.throughput,
                p95_ms: report.snapshot.latency.p95_ms,
                failed: report.snapshot.failed,
                limit_per_sec: pace.and_then(|p| p.allowed_rate),
                rate_limited: pace.map_or(0, |p| p.refused),
            };
            if args.json {
                println!("{}", serde_json::to_string(&l).expect("serialises"));
            } else {
                println!(
                    "{:>12} {:>10.1} {:>10.0} {:>7} {:>7}",
                    l.concurrency, l.images_per_sec, l.p95_ms, l.failed, l.rate_limited
                );
            }
            results.push(l);
        }
        let limit = limit_at_knee(&results);
        match (knee(&results), limit) {
            (Some(k), limit) if args.json => println!(
                "{}",
                json!({ "recommended_concurrency": k, "limit_per_sec": limit })
            ),
            (Some(k), Some(limit)) => println!(
                "recommended: --concurrency {k} (from there the service's limit, \
                 {limit:.1} ingests/s, caps throughput)"
            ),
            (Some(k), None) => println!(
                "recommended: --concurrency {k} (lowest level within 10 % of the best throughput)"
            ),
            (None, _) => println!("no level finished without failures"),
        }
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knee_is_the_lowest_level_near_the_best() {
        let l = |c, r, f| Level {
            concurrency: c,
            images_per_sec: r,
            p95_ms: 0.0,
            failed: f,
            limit_per_sec: None,
            rate_limited: 0,
        };
        assert_eq!(
            knee(&[l(1, 10.0, 0), l(5, 45.0, 0), l(10, 48.0, 0), l(20, 49.0, 0)]),
            Some(5)
        );
        assert_eq!(
            knee(&[l(1, 10.0, 0), l(5, 50.0, 3), l(10, 48.0, 0)]),
            Some(10)
        );
        assert_eq!(knee(&[]), None);
    }

    #[test]
    fn a_limit_is_named_once_a_level_ran_into_it() {
        let l = |c, r, limit, refused| Level {
            concurrency: c,
            images_per_sec: r,
            p95_ms: 0.0,
            failed: 0,
            limit_per_sec: limit,
            rate_limited: refused,
        };
        let capped = [
            l(1, 3.0, None, 0),
            l(5, 9.6, Some(9.8), 12),
            l(10, 9.7, Some(9.9), 9),
        ];
        assert_eq!(limit_at_knee(&capped), Some(9.9));
        assert_eq!(knee(&capped), Some(5));
        // Learning the limit cost level 5 throughput, but its 429s show it reached it.
        let learning = [
            l(1, 3.0, None, 0),
            l(5, 7.0, Some(9.9), 12),
            l(10, 9.7, Some(9.9), 3),
        ];
        assert_eq!(knee(&learning), Some(5));
        // No level met a 429: nothing to name.
        assert_eq!(
            limit_at_knee(&[l(1, 3.0, None, 0), l(5, 9.6, None, 0)]),
            None
        );
    }
}
