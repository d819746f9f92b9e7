//! `imggo run <INPUT>... --pattern ID`: the batch job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imggo::cache::{DedupOptions, Deduper, RedisLink, RedisOptions};
use imggo::core::url::HttpUrl;
use imggo::core::{redact_url, AlertRules, Error, RateLimitObserver, Secret, Tracker};
use imggo::http::{Client, PollPolicy, ReceiverOptions, WebhookReceiver};
use imggo::optimize::Options as OptimizeOptions;
use imggo::ratelimit::{
    AdaptiveConcurrency, AdaptiveConfig, Chain, HeaderPacer, Limiter, RedisLimiter, Subject,
    TokenBucket,
};
use imggo::{
    Concurrency, CountingRetry, Inputs, Journal, Pipeline, Report, ResumeKey, WaitMode,
    WebhookRouter,
};

use super::common::{seconds, usage_error, Connection, FileConfig, Hooks};
use super::progress::Progress;

/// Flags of `imggo run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files, directories (recursive, sorted), @list.txt (paths or URLs, one a line),
    /// `-` (the same list on stdin), or http(s) URLs (sent by URL, never downloaded).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// The pattern to run every input with.
    #[arg(long, env = "IMGGO_PATTERN")]
    pub pattern: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
    /// Concurrent uploads: a number, or `auto` to adapt to the service.
    #[arg(long, default_value = "10")]
    pub concurrency: String,
    /// Ingests per second at most, a hard ceiling on every attempt, retries included
    /// (`1.5` means one per 667 ms). Not needed to stay under the service's limit: that
    /// rate is learned from its answers.
    #[arg(long)]
    pub rps: Option<f64>,
    /// Share the --rps limit between workers through Redis: redis://host:port/ (better:
    /// set IMGGO_LIMITER when the URL holds a password).
    #[arg(long, env = "IMGGO_LIMITER", hide_env_values = true)]
    pub limiter: Option<String>,
    /// Result cache: memory, file:DIR, redis://..., or off (default: a file cache in the
    /// user cache directory).
    #[arg(long, env = "IMGGO_CACHE", hide_env_values = true)]
    pub cache: Option<String>,
    /// Upload the original bytes.
    #[arg(long)]
    pub no_optimize: bool,
    /// Longest side after optimisation.
    #[arg(long, default_value_t = 2048)]
    pub max_side: u32,
    /// JPEG quality of re-encoded images.
    #[arg(long, default_value_t = 85)]
    pub quality: u8,
    /// Results file (JSON Lines, one per input, appended and flushed per line).
    #[arg(long, default_value = "results.jsonl")]
    pub out: PathBuf,
    /// Keep the results file and skip inputs it already shows finished.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: send inputs whose job failed on the service again under a new
    /// idempotency key (otherwise the service answers with the same failed job). The
    /// salt of the key is written to the line as `idempotency_salt`.
    #[arg(long, requires = "resume")]
    pub retry_failed: bool,
    /// Receive job results by webhook on this address (polling stays as the fallback).
    #[arg(long, requires = "webhook_secret")]
    pub webhook_listen: Option<SocketAddr>,
    /// The URL the service delivers webhooks to: a public address, a tunnel or a reverse
    /// proxy in front of --webhook-listen. Needed unless the endpoint is on this machine.
    #[arg(long, requires = "webhook_listen")]
    pub webhook_url: Option<String>,
    /// Secret of the webhook signatures (at least 16 characters).
    #[arg(long, env = "IMGGO_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Seconds to wait for a webhook delivery before polling the job.
    #[arg(long, default_value_t = 10.0)]
    pub webhook_fallback: f64,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Alert (exit 3) when the success rate falls below P percent.
    #[arg(long, value_name = "P")]
    pub alert_success_rate: Option<f64>,
    /// Alert (exit 3) when p95 latency exceeds SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub alert_p95: Option<f64>,
    /// No progress and no summary.
    #[arg(long)]
    pub quiet: bool,
    /// Print each result line on stdout, and the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the batch; see the exit codes in `imggo --help`.
pub fn run(args: Args) -> ExitCode {
    super::common::runtime().block_on(run_async(args))
}

async fn run_async(args: Args) -> ExitCode {
    let file = match FileConfig::load() {
        Ok(f) => f,
        Err(e) => return usage_error(&e),
    };
    let tracker = Arc::new(Tracker::new());
    let built = match build(&args, &file, tracker.clone()).await {
        Ok(b) => b,
        Err(e) => return usage_error(&e),
    };
    let Built {
        pipeline,
        pattern,
        webhook_cleanup,
        metrics,
    } = built;
    // Every early return below first removes what `build` registered with the service.
    let cleanup = || async {
        if let Some(c) = webhook_cleanup {
            c.await;
        }
    };
    let version = match pipeline.prepare().await {
        Ok(v) => v,
        Err(e) => {
            cleanup().await;
            return usage_error(&explain(&e));
        }
    };
    // An earlier line counts as done only for this pattern, version and settings.
    let resume = args.resume.then(|| {
        ResumeKey::new(pattern)
            .version(version)
            .settings(pipeline.settings().to_string())
    });
    let (mut journal, done) = match Journal::open(&args.out, resume.as_ref()) {
        Ok(j) => j,
        Err(e) => {
            cleanup().await;
            return usage_error(&e);
        }
    };
    let mut pipeline = pipeline.skip(done);
    if args.retry_failed {
        // A new salt for each failed job of an input: a retry killed before its line was
        // written is resumed under the same key, and not sent twice.
        let salts = journal
            .failed_jobs()
            .iter()
            .map(|(input, n)| (input.clone(), format!("retry-{n}")))
            .collect();
        pipeline = pipeline.salt_keys(salts);
    }
    // Only now may an earlier results file be emptied.
    if let Err(e) = journal.start() {
        cleanup().await;
        return usage_error(&e);
    }
    if journal.torn_lines() > 0 {
        eprintln!(
            "imggo: warning: skipped {} unreadable lines of {} (cut by a kill or damaged); their inputs run again",
            journal.torn_lines(),
            args.out.display()
        );
    }
    let run_started = Instant::now();
    let pacer = pipeline.pacer();
    let mut run = pipeline.run(Inputs::new(args.inputs.clone()));
    // The total (for the ETA) costs a second walk of the inputs. A list that can be read
    // only once (stdin, a pipe, `@<(cmd)`) would be split between the two walks: no total.
    let once = |i: &String| {
        i == "-"
            || i.strip_prefix('@')
                .is_some_and(|list| std::fs::metadata(list).map_or(true, |m| !m.is_file()))
    };
    let total = (!args.quiet && !args.inputs.iter().any(once))
        .then(|| Inputs::new(args.inputs.clone()).count() as u64);
    let progress = Progress::new(args.quiet, total);
    let mut journal_error = None;
    let mut interrupts = interrupts();
    let mut interrupted = false;
    loop {
        let line = tokio::select! {
            line = run.next_line() => line,
            () = interrupts.as_mut().next_signal() => {
                if interrupted {
                    // A second one: leave now. Every finished line is already on disk;
                    // the next run replaces a webhook registration left behind.
                    std::process::exit(130);
                }
                interrupted = true;
                run.stop("interrupted");
                eprintln!(
                    "imggo: interrupted: sending nothing more, finishing what was sent \
                     (again to quit at once); --resume goes on from here"
                );
                continue;
            }
        };
        let Some(line) = line else { break };
        if journal_error.is_none() {
            if let Err(e) = journal.append(&line) {
                // Nothing more can be recorded: spend no more quota on work that
                // would be lost.
                run.stop("the results file cannot be written");
                eprintln!(
                    "imggo: results file {}: {e}; stopping (inputs not sent yet are not run)",
                    args.out.display()
                );
                journal_error = Some(e);
            }
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&line).expect("result lines serialise")
            );
        }
        progress.tick(&tracker, &pacer, run_started);
    }
    progress.finish();
    let report: Report = run.report().await;
    cleanup().await;
    if interrupted {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&report).expect("report serialises")
            );
        }
        return ExitCode::from(130);
    }
    if let Some(m) = metrics {
        m.abort();
    }
    if let Some(e) = journal_error {
        eprintln!("imggo: results file {}: {e}", args.out.display());
        return ExitCode::from(1);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else if !args.quiet {
        println!("{}", report.table());
    }
    ExitCode::from(report.exit_code())
}

/// Ctrl-C and SIGTERM, as one stream of signals.
struct Interrupts {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    async fn next_signal(self: std::pin::Pin<&mut Self>) {
        let this = self.get_mut();
        #[cfg(unix)]
        if let Some(term) = &mut this.term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = this;
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn interrupts() -> std::pin::Pin<Box<Interrupts>> {
    Box::pin(Interrupts {
        #[cfg(unix)]
        term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
    })
}

/// Removes the run's webhook registration when awaited.
type Cleanup = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The URL to register for deliveries to the receiver bound at `local`: `given`, or, when
/// the service runs on this machine (the emulator), the receiver's own address. A remote
/// service can never reach `127.0.0.1` or `0.0.0.0`, so it needs `--webhook-url`.
fn webhook_url(given: Option<&str>, local: SocketAddr, endpoint: &str) -> Result<String, Error> {
    if let Some(url) = given {
        return HttpUrl::parse(url)
            .map(|u| u.to_string())
            .map_err(|e| Error::Config(format!("--webhook-url {url}: {e}")));
    }
    if !HttpUrl::parse(endpoint).is_ok_and(|u| u.is_loopback()) {
        return Err(Error::Config(format!(
            "--webhook-url is needed: the service cannot deliver to {local} on this machine; \
             give the public URL that reaches --webhook-listen (a tunnel or a reverse proxy)"
        )));
    }
    let ip = if local.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        local.ip()
    };
    Ok(format!("http://{}/", SocketAddr::new(ip, local.port())))
}

/// Registers `url` for job results with `secret`. A registration of the same URL left by
/// an earlier run (one killed before it could remove it) may carry another secret, and
/// every delivery would then fail its signature check: it is replaced. Returns what
/// removes the new registration.
async fn register_webhook(client: &Client, url: String, secret: String) -> Result<Cleanup, Error> {
    for stale in client
        .list_webhooks()
        .await?
        .iter()
        .filter(|w| w.url == url)
    {
        client.delete_webhook(&stale.id).await?;
    }
    let created = client
        .create_webhook(&imggo::core::CreateWebhook {
            url,
            events: vec!["job.succeeded".into(), "job.failed".into()],
            secret: Some(Secret::new(secret)),
        })
        .await?;
    let c = client.clone();
    Ok(Box::pin(async move {
        let _ = c.delete_webhook(&created.id).await;
    }))
}

/// A clearer message for the errors that stop a run before it starts.
fn explain(e: &Error) -> String {
    match e.status() {
        Some(401) => format!("the API key was refused (401): {e}"),
        Some(403) => format!("the API key lacks a scope for this pattern (403): {e}"),
        Some(404) => format!("pattern not found (404): {e}"),
        _ => format!("cannot start the run: {e}"),
    }
}

struct Built {
    pipeline: Pipeline,
    pattern: String,
    webhook_cleanup: Option<Cleanup>,
    metrics: Option<tokio::task::JoinHandle<()>>,
}

async fn build(args: &Args, file: &FileConfig, tracker: Arc<Tracker>) -> Result<Built, Error> {
    let pattern = args
        .pattern
        .clone()
        .or_else(|| file.pattern.clone())
        .ok_or_else(|| Error::Config("--pattern is required".into()))?;
    let pacer = Arc::new(HeaderPacer::new());
    let observer: Arc<dyn RateLimitObserver> = Arc::new(Observers(vec![
        pacer.clone() as Arc<dyn RateLimitObserver>,
        tracker.clone(),
    ]));
    let retry = CountingRetry::backoff(tracker.clone());
    let client = args
        .conn
        .client(
            file,
            Hooks {
                retry: Some(retry),
                observer: Some(observer),
            },
        )
        .await?;

    let mut limiters: Vec<Arc<dyn Limiter>> = vec![pacer];
    match (&args.limiter, args.rps) {
        (Some(url), Some(rps)) => limiters.push(Arc::new(shared_limiter(url, rps, args).await?)),
        (Some(_), None) => return Err(Error::Config("--limiter needs --rps".into())),
        // Burst 1: evenly spaced, so no window of any length ever holds more than --rps.
        (None, Some(rps)) => limiters.push(Arc::new(
            TokenBucket::new(check_rps(rps)?, 1)
                .map_err(|e| Error::Config(format!("--rps {rps}: {e}")))?,
        )),
        (None, None) => {}
    }

    let concurrency = match args.concurrency.as_str() {
        "auto" => {
            let config = AdaptiveConfig::default();
            let max = config.max as usize;
            let adaptive = AdaptiveConcurrency::new(config)
                .map_err(|e| Error::Config(format!("--concurrency auto: {e}")))?;
            Concurrency::Auto(Arc::new(adaptive), max)
        }
        n => match n.parse::<usize>() {
            Ok(n) if n >= 1 => Concurrency::Fixed(n),
            _ => {
                return Err(Error::Config(format!(
                    "--concurrency {n:?}: want a positive number or auto"
                )))
            }
        },
    };

    let optimize = (!args.no_optimize).then(|| OptimizeOptions {
        max_side: args.max_side,
        quality: args.quality,
        ..OptimizeOptions::default()
    });

    let cache_spec = args
        .cache
        .clone()
        .or_else(|| file.cache.clone())
        .unwrap_or_else(super::common::default_cache);
    let cache = super::common::open_cache(&cache_spec)
        .await
        .map_err(|e| Error::Config(format!("--cache {}: {e}", redact_url(&cache_spec))))?;
    // Workers that share a Redis cache also share in-flight work: one job per image.
    let deduper = match imggo::cache::parse_cache_url(&cache_spec) {
        Ok(imggo::cache::CacheSpec::Redis(url)) => {
            let link = RedisLink::connect(&url, RedisOptions::default())
                .await
                .map_err(|e| Error::Config(format!("--cache {}: {e}", redact_url(&cache_spec))))?;
            Some(Arc::new(Deduper::with_redis(link, DedupOptions::default())))
        }
        _ => None,
    };

    let mut rules = AlertRules::default();
    if let Some(p) = args.alert_success_rate {
        if !(0.0..=100.0).contains(&p) {
            return Err(Error::Config(
                "--alert-success-rate is a percentage, 0 to 100".into(),
            ));
        }
        rules.min_success_rate = Some(p / 100.0);
    }
    if let Some(s) = args.alert_p95 {
        rules.max_p95 = Some(seconds("--alert-p95", s, false)?);
    }

    // Registered last, once nothing else in `build` can fail, so that no error leaves
    // an account-wide registration behind.
    let mut registration = None;
    let wait = match (&args.webhook_listen, &args.webhook_secret) {
        (Some(addr), Some(secret)) => {
            if secret.len() < 16 {
                return Err(Error::Config(
                    "--webhook-secret must be at least 16 characters".into(),
                ));
            }
            let (local, receiver) = WebhookReceiver::bind(
                *addr,
                Secret::new(secret.clone()),
                ReceiverOptions::default(),
            )
            .await?;
            let url = webhook_url(args.webhook_url.as_deref(), local, client.base_url())?;
            registration = Some((url, secret.clone()));
            WaitMode::Webhook {
                router: WebhookRouter::spawn(receiver),
                fallback_after: seconds("--webhook-fallback", args.webhook_fallback, true)?,
                poll: PollPolicy::default(),
            }
        }
        _ => WaitMode::Poll(PollPolicy::default()),
    };

    let metrics = match args.metrics_addr {
        Some(addr) => {
            let (local, task) = imggo::metrics::serve(addr, tracker.clone()).await?;
            if !args.quiet {
                eprintln!("imggo: metrics on http://{local}/metrics");
            }
            Some(task)
        }
        None => None,
    };

    let webhook_client = client.clone();
    let mut b = Pipeline::builder()
        .client(client)
        .pattern(pattern.clone())
        .optimize(optimize)
        .limiter(Arc::new(limiters.into_iter().collect::<Chain>()))
        .concurrency(concurrency)
        .wait(wait)
        .tracker(tracker)
        .alert_rules(rules);
    if let Some(cache) = cache {
        b = b.cache(cache, imggo::DEFAULT_CACHE_TTL);
    }
    if let Some(d) = deduper {
        b = b.deduper(d);
    }
    let pipeline = b.build()?;
    let webhook_cleanup = match registration {
        Some((url, secret)) => Some(register_webhook(&webhook_client, url, secret).await?),
        None => None,
    };
    Ok(Built {
        pipeline,
        pattern,
        webhook_cleanup,
        metrics,
    })
}

/// The Redis limiter shared by every worker using the same API key (namespaced by a hash
/// of the key, never the key itself): one ingest per `1/rps` seconds.
async fn shared_limiter(url: &str, rps: f64, args: &Args) -> Result<RedisLimiter, Error> {
    // One per 1/rps seconds in a sliding window: a hard ceiling that is never rounded.
    let (limit, window) = (1, Duration::from_secs_f64(1.0 / check_rps(rps)?));
    let conn = RedisLimiter::connect(url)
        .await
        .map_err(|e| Error::Config(format!("--limiter {}: {e}", redact_url(url))))?;
    let key = Secret::new(args.conn.api_key.clone().unwrap_or_default());
    RedisLimiter::new(conn, Subject::api_key(&key), limit, window)
        .map_err(|e| Error::Config(format!("--limiter {}: {e}", redact_url(url))))
}

/// `--rps` as a rate the limiters can hold: positive, finite, at least one per day.
fn check_rps(rps: f64) -> Result<f64, Error> {
    if (1.0 / 86_400.0..=1e6).contains(&rps) {
        Ok(rps)
    } else {
        Err(Error::Config(format!(
            "--rps {rps}: want a rate between one per day (0.0000116) and 1000000 per second"
        )))
    }
}

/// Fans rate-limit headers out to several observers.
struct Observers(Vec<Arc<dyn RateLimitObserver>>);

impl RateLimitObserver for Observers {
    fn observe(&self, info: &imggo::core::RateLimitInfo) {
        for o in &self.0 {
            o.observe(info);
        }
    }
}
