//! `imggo emulator`: a local ImgGo API server (see the `imggo-emulator` crate).
//!
//! The first line on stdout is `listening on http://ADDR`; scripts wait for it and read the
//! port from it (with `--addr 127.0.0.1:0`). Ctrl-C or SIGTERM stops the server gracefully
//! and prints the final stats as one JSON line on stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use imggo_emulator::{Config, Dialect, Emulator, Faults, LatencyModel, Limits, WebhookRetry};

use crate::EXIT_USAGE;

/// Flags of `imggo emulator`. Their names are a contract scripts rely on.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Accept this API key (repeatable; `USER=KEY` names its user, keys of one user share
    /// its limits). Without it any non-empty bearer key is accepted.
    #[arg(long = "api-key", value_name = "K")]
    api_keys: Vec<String>,
    /// Fixed processing time per job, in milliseconds.
    #[arg(long = "latency-ms", value_name = "N", conflicts_with = "latency")]
    latency_ms: Option<u64>,
    /// Processing time model: `N`, `uniform:A-B` or `lognormal:MEDIAN,P99` (milliseconds).
    #[arg(long, value_name = "SPEC")]
    latency: Option<LatencyModel>,
    /// Ingests per minute per user (token bucket).
    #[arg(long, value_name = "N")]
    rpm: Option<u32>,
    /// Bucket size of `--rpm` (default: the rpm).
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// Minimum gap between two ingests of one user, in milliseconds.
    #[arg(long = "min-gap-ms", value_name = "N")]
    min_gap_ms: Option<u64>,
    /// Ingests per user per month.
    #[arg(long = "monthly-quota", value_name = "N")]
    monthly_quota: Option<u64>,
    /// Probability of answering 500.
    #[arg(long = "fail-500", value_name = "P", default_value_t = 0.0)]
    fail_500: f64,
    /// Probability of answering 503.
    #[arg(long = "fail-503", value_name = "P", default_value_t = 0.0)]
    fail_503: f64,
    /// Probability of dropping the connection mid-response.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    drop: f64,
    /// Probability of failing a job.
    #[arg(long = "job-fail", value_name = "P", default_value_t = 0.0)]
    job_fail: f64,
    /// Probability and delay of a slow answer, as `P:MS`.
    #[arg(long, value_name = "P:MS", value_parser = parse_slow)]
    slow: Option<(f64, u64)>,
    /// Probability of losing a webhook delivery.
    #[arg(long = "webhook-loss", value_name = "P", default_value_t = 0.0)]
    webhook_loss: f64,
    /// Webhook retries: `once` (the server) or `docs[:SCALE]`, the docs' six retries with
    /// delays divided by SCALE (default 60: minutes become seconds).
    #[arg(long = "webhook-retry", value_name = "MODE", default_value = "once", value_parser = parse_retry)]
    webhook_retry: WebhookRetry,
    /// Probability that an ingest repeating an idempotency key within a second of its job's
    /// creation gets a 500, as the server's racing duplicates do (a retry finds the job).
    #[arg(long = "race-dup", value_name = "P", default_value_t = 0.0)]
    race_dup: f64,
    /// Jobs kept at most; past it the oldest finished ones are forgotten (404).
    #[arg(long = "max-jobs", value_name = "N", default_value_t = imggo_emulator::MAX_JOBS)]
    max_jobs: usize,
    /// Seconds a finished job is kept.
    #[arg(long = "job-ttl-secs", value_name = "S", default_value_t = imggo_emulator::JOB_TTL.as_secs())]
    job_ttl_secs: u64,
    /// Requests handled at once; more wait for a turn.
    #[arg(long = "max-requests", value_name = "N", default_value_t = imggo_emulator::MAX_REQUESTS)]
    max_requests: usize,
    /// Seed of every random choice.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// API dialect: `server` (what the service does) or `docs` (what its docs say).
    #[arg(long, value_name = "server|docs", default_value = "server")]
    dialect: Dialect,
}

fn parse_slow(s: &str) -> Result<(f64, u64), String> {
    let (p, ms) = s
        .split_once(':')
        .ok_or_else(|| format!("--slow wants P:MS, got {s:?}"))?;
    let p: f64 = p
        .parse()
        .map_err(|_| format!("--slow probability {p:?} is not a number"))?;
    let ms: u64 = ms
        .parse()
        .map_err(|_| format!("--slow delay {ms:?} is not a whole number of milliseconds"))?;
    Ok((p, ms))
}

fn parse_retry(s: &str) -> Result<WebhookRetry, String> {
    match s.split_once(':') {
        None if s == "once" => Ok(WebhookRetry::Once),
        None if s == "docs" => Ok(WebhookRetry::docs_schedule(60)),
        Some(("docs", scale)) => scale
            .parse::<u32>()
            .map(WebhookRetry::docs_schedule)
            .map_err(|_| format!("--webhook-retry scale {scale:?} is not a whole number")),
        _ => Err(format!(
            "--webhook-retry wants once, docs or docs:SCALE, got {s:?}"
        )),
    }
}

impl Args {
    fn config(self) -> Config {
        let mut config = Config {
            addr: self.addr,
            latency: match (self.latency, self.latency_ms) {
                (Some(model), _) => model,
                (None, Some(ms)) => LatencyModel::Fixed(Duration::from_millis(ms)),
                (None, None) => LatencyModel::Fixed(Duration::ZERO),
            },
            limits: Limits {
                monthly_quota: self.monthly_quota,
                min_gap: self.min_gap_ms.map(Duration::from_millis),
                rpm: self.rpm,
                burst: self.burst,
            },
            faults: Faults {
                fail_500: self.fail_500,
                fail_503: self.fail_503,
                drop: self.drop,
                job_fail: self.job_fail,
                slow: self.slow.map_or(0.0, |(p, _)| p),
                slow_by: Duration::from_millis(self.slow.map_or(0, |(_, ms)| ms)),
                webhook_loss: self.webhook_loss,
                race_dup: self.race_dup,
            },
            max_jobs: self.max_jobs,
            job_ttl: Duration::from_secs(self.job_ttl_secs),
            max_requests: self.max_requests,
            webhook_retry: self.webhook_retry,
            dialect: self.dialect,
            seed: self.seed,
            ..Config::default()
        };
        for k in self.api_keys {
            config = match k.split_once('=') {
                Some((user, key)) => config.user_key(user, key),
                None => config.api_key(k),
            };
        }
        config
    }
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> ExitCode {
    let config = args.config();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imggo emulator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let emu = match Emulator::start(config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("imggo emulator: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let mut out = std::io::stdout().lock();
        // Scripts read this line; if stdout is closed there is no one to tell.
        let _ = writeln!(out, "listening on http://{}", emu.addr());
        let _ = out.flush();
        drop(out);
        wait_for_stop().await;
        let stats = emu.stats();
        emu.shutdown().await;
        match serde_json::to_string(&stats) {
            Ok(line) => eprintln!("{line}"),
            Err(e) => eprintln!("imggo emulator: stats: {e}"),
        }
        ExitCode::SUCCESS
    })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Config, clap::Error> {
        let mut full = vec!["emulator"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).map(|c| c.args.config())
    }

    #[test]
    fn defaults_and_every_flag() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(c.users.is_empty());
        assert_eq!(c.latency, LatencyModel::Fixed(Duration::ZERO));
        let c = parse(&[
            "--addr",
            "127.0.0.1:0",
            "--api-key",
            "k1",
            "--api-key",
            "bob=k2",
            "--latency",
            "uniform:5-10",
            "--rpm",
            "60",
            "--burst",
            "5",
            "--min-gap-ms",
            "250",
            "--monthly-quota",
            "1000",
            "--fail-500",
            "0.1",
            "--fail-503",
            "0.2",
            "--drop",
            "0.05",
            "--job-fail",
            "0.3",
            "--slow",
            "0.5:200",
            "--webhook-loss",
            "0.25",
            "--seed",
            "7",
            "--dialect",
            "docs",
            "--webhook-retry",
            "docs:1000",
        ])
        .unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[1].id, "bob");
        assert_eq!(
            c.latency,
            LatencyModel::Uniform {
                min: Duration::from_millis(5),
                max: Duration::from_millis(10)
            }
        );
        assert_eq!(c.limits.rpm, Some(60));
        assert_eq!(c.limits.burst, Some(5));
        assert_eq!(c.limits.min_gap, Some(Duration::from_millis(250)));
        assert_eq!(c.limits.monthly_quota, Some(1000));
        assert_eq!(c.faults.fail_500, 0.1);
        assert_eq!(c.faults.fail_503, 0.2);
        assert_eq!(c.faults.drop, 0.05);
        assert_eq!(c.faults.job_fail, 0.3);
        assert_eq!(c.faults.slow, 0.5);
        assert_eq!(c.faults.slow_by, Duration::from_millis(200));
        assert_eq!(c.faults.webhook_loss, 0.25);
        assert_eq!(c.seed, 7);
        assert_eq!(c.dialect, Dialect::Docs);
        assert!(matches!(c.webhook_retry, WebhookRetry::Schedule(ref d) if d.len() == 6));
        let c = parse(&["--latency-ms", "40"]).unwrap();
        assert_eq!(c.latency, LatencyModel::Fixed(Duration::from_millis(40)));
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for argv in [
            &["--latency", "uniform:9-1"][..],
            &["--latency-ms", "5", "--latency", "5"],
            &["--slow", "0.5"],
            &["--dialect", "yaml"],
            &["--webhook-retry", "sometimes"],
            &["--addr", "localhost"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?}");
        }
    }
}
