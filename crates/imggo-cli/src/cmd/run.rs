//! `imggo run <INPUT>... --pattern ID`: the batch job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imggo::core::{AlertRules, Error, Secret, Tracker};
use imggo::optimize::Options as OptimizeOptions;
use imggo::ratelimit::LearnedPacer;
use imggo::{
    AlertSinks, ConcurrencySpec, HtmlReport, Inputs, Journal, Pipeline, Report, ResultLine,
    ResumeKey, Run, RunSpec, Started, WebhookSpec,
};

use imggo::route::split_assignment;
use imggo::ClassifySpec;

use super::common::{seconds, usage_error, Connection, FileConfig};
use super::progress::Progress;

/// Flags of `imggo run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files, directories (recursive, sorted), @list.txt (paths or URLs, one a line),
    /// `-` (the same list on stdin), or http(s) URLs (sent by URL, never downloaded).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// The pattern to run every input with; with --route or --classify, the fallback for
    /// inputs they do not route.
    #[arg(long, env = "IMGGO_PATTERN")]
    pub pattern: Option<String>,
    /// Route by name (repeatable, the first match wins): inputs whose route name matches
    /// GLOB run with PATTERN_ID. The route name is the path relative to the directory
    /// argument, the file name of a file argument, or the path of a URL; `*` stays in one
    /// path component, `**` crosses them.
    #[arg(long = "route", value_name = "GLOB=PATTERN_ID")]
    pub route: Vec<String>,
    /// Classify each input no --route takes with this pattern first; the class at
    /// --class-field in its manifest picks the pattern (--route-class).
    #[arg(long, value_name = "PATTERN_ID", requires = "class_field")]
    pub classify: Option<String>,
    /// Where the class is in the classification manifest: a field, or a dotted path.
    #[arg(long, value_name = "FIELD", requires = "classify")]
    pub class_field: Option<String>,
    /// Inputs of class VALUE run with PATTERN_ID (repeatable); another class runs with
    /// --pattern, or fails NO_ROUTE without it.
    #[arg(
        long = "route-class",
        value_name = "VALUE=PATTERN_ID",
        requires = "classify"
    )]
    pub route_class: Vec<String>,
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
    /// Also write an HTML report of this run's result lines (charts, no scripts, no
    /// network) to this file at the end, also when inputs failed or the run was
    /// interrupted.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
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
    /// No alert before this many inputs have finished (in the window, and in the run).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub alert_min_samples: u64,
    /// The alert rules are checked on every finished input over the last N inputs.
    #[arg(long, value_name = "N", default_value_t = imggo::alert::DEFAULT_WINDOW)]
    pub alert_window: usize,
    /// POST each alert (firing, then resolved) as JSON to this URL (Slack incoming
    /// webhooks accept it); retried with backoff, never fatal.
    #[arg(
        long,
        value_name = "URL",
        env = "IMGGO_ALERT_WEBHOOK",
        hide_env_values = true
    )]
    pub alert_webhook: Option<String>,
    /// Run this with `sh -c` for each alert, the JSON on stdin; a failure is only logged.
    #[arg(long, value_name = "CMD")]
    pub alert_command: Option<String>,
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

/// Flags → [`RunSpec`] → started pipeline → results file → report.
async fn run_async(args: Args) -> ExitCode {
    let tracker = Arc::new(Tracker::new());
    let mut started = match start(&args, tracker.clone()).await {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    // Every early return below first removes what `start` registered with the service.
    let (pipeline, mut journal) = match open(&args, started.take_pipeline()).await {
        Ok(p) => p,
        Err(e) => {
            started.cleanup().await;
            return usage_error(&e);
        }
    };
    let pacer = pipeline.pacer();
    let run = pipeline.run(Inputs::new(args.inputs.clone()).routed());
    let ended = drive(&args, run, &mut journal, &tracker, &pacer).await;
    started.cleanup().await;
    finish(&args, ended, &mut started)
}

/// The flags, the environment and the config file as a [`RunSpec`], started.
async fn start(args: &Args, tracker: Arc<Tracker>) -> Result<Started, Error> {
    let file = FileConfig::load()?;
    let started = spec(args, &file)?.start(tracker).await?;
    if let (Some((local, _)), false) = (&started.metrics, args.quiet) {
        eprintln!("imggo: metrics on http://{local}/metrics");
    }
    Ok(started)
}

/// What the flags ask for, as plain data; the checks of `RunSpec::start` come after.
fn spec(args: &Args, file: &FileConfig) -> Result<RunSpec, Error> {
    let routing = !args.route.is_empty() || args.classify.is_some();
    let pattern = args
        .pattern
        .clone()
        .or_else(|| file.pattern.clone())
        .or_else(|| routing.then(String::new))
        .ok_or_else(|| Error::Config("--pattern is required (or --route / --classify)".into()))?;
    let (endpoints, api_key, timeout) = args.conn.resolve(file)?;
    let mut spec = RunSpec::new(pattern, api_key);
    routes(args, &mut spec)?;
    spec.endpoints = endpoints;
    spec.timeout = timeout;
    spec.cache = args
        .cache
        .clone()
        .or_else(|| file.cache.clone())
        .unwrap_or_else(super::common::default_cache);
    spec.limiter = args.limiter.clone();
    spec.rps = args.rps;
    spec.concurrency = concurrency(&args.concurrency)?;
    spec.optimize = (!args.no_optimize).then(|| OptimizeOptions {
        max_side: args.max_side,
        quality: args.quality,
        ..OptimizeOptions::default()
    });
    spec.webhook = webhook(args)?;
    spec.metrics_addr = args.metrics_addr;
    spec.alert_rules = alert_rules(args)?;
    spec.alerts = AlertSinks {
        webhook: args.alert_webhook.clone(),
        command: args.alert_command.clone(),
        window: args.alert_window,
        quiet: args.quiet,
        ..AlertSinks::default()
    };
    Ok(spec)
}

/// `--route`, `--classify`, `--class-field`, `--route-class`.
fn routes(args: &Args, spec: &mut RunSpec) -> Result<(), Error> {
    spec.routes = args
        .route
        .iter()
        .map(|r| split_assignment("--route", r))
        .collect::<Result<_, _>>()?;
    spec.classify = match &args.classify {
        Some(pattern_id) => Some(ClassifySpec {
            pattern_id: pattern_id.clone(),
            field: args.class_field.clone().unwrap_or_default(),
            classes: args
                .route_class
                .iter()
                .map(|r| split_assignment("--route-class", r))
                .collect::<Result<_, _>>()?,
        }),
        None => None,
    };
    Ok(())
}

/// `--concurrency N|auto`.
fn concurrency(flag: &str) -> Result<ConcurrencySpec, Error> {
    match flag {
        "auto" => Ok(ConcurrencySpec::Auto),
        n => match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(ConcurrencySpec::Fixed(n)),
            _ => Err(Error::Config(format!(
                "--concurrency {n:?}: want a positive number or auto"
            ))),
        },
    }
}

/// `--webhook-listen`, `--webhook-url`, `--webhook-secret`, `--webhook-fallback`.
fn webhook(args: &Args) -> Result<Option<WebhookSpec>, Error> {
    let (Some(listen), Some(secret)) = (args.webhook_listen, &args.webhook_secret) else {
        return Ok(None);
    };
    Ok(Some(WebhookSpec {
        listen,
        url: args.webhook_url.clone(),
        secret: Secret::new(secret.clone()),
        fallback_after: seconds("--webhook-fallback", args.webhook_fallback, true)?,
    }))
}

/// `--alert-success-rate`, `--alert-p95`.
fn alert_rules(args: &Args) -> Result<AlertRules, Error> {
    let mut rules = AlertRules {
        min_samples: args.alert_min_samples,
        ..AlertRules::default()
    };
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
    Ok(rules)
}

/// Checks the key and the pattern, then opens the results file: an earlier line counts as
/// done only for this pattern, version and settings. Only once all that passed may an
/// earlier results file be emptied.
async fn open(args: &Args, pipeline: Pipeline) -> Result<(Pipeline, Journal), String> {
    let version = pipeline.prepare().await.map_err(|e| explain(&e))?;
    let resume = args.resume.then(|| {
        ResumeKey::new(pipeline.pattern_id())
            .version(version)
            .settings(pipeline.settings().to_string())
            .routed(pipeline.pattern_versions())
    });
    let (mut journal, done) =
        Journal::open(&args.out, resume.as_ref()).map_err(|e| e.to_string())?;
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
    journal.start().map_err(|e| e.to_string())?;
    if journal.torn_lines() > 0 {
        eprintln!(
            "imggo: warning: skipped {} unreadable lines of {} (cut by a kill or damaged); their inputs run again",
            journal.torn_lines(),
            args.out.display()
        );
    }
    Ok((pipeline, journal))
}

/// How the loop over the result lines ended.
struct Ended {
    report: Report,
    /// The HTML report being drawn (with `--report`).
    html: Option<HtmlReport>,
    interrupted: bool,
    journal_error: Option<Error>,
}

/// Writes each line to the results file (and stdout with `--json`) as it comes, ticks the
/// progress, and turns Ctrl-C or SIGTERM into a stop (a second one quits at once).
async fn drive(
    args: &Args,
    mut run: Run,
    journal: &mut Journal,
    tracker: &Tracker,
    pacer: &LearnedPacer,
) -> Ended {
    let run_started = Instant::now();
    let progress = Progress::new(args.quiet, total(args));
    let mut journal_error = None;
    let mut interrupts = interrupts();
    let mut interrupted = false;
    let mut html = args
        .report
        .as_ref()
        .map(|_| HtmlReport::new(args.out.display().to_string()));
    let mut refresh = refresher(&progress);
    loop {
        let line = tokio::select! {
            line = run.next_line() => line,
            _ = refresh.tick() => {
                progress.refresh(tracker, pacer, run_started);
                continue;
            }
            () = interrupts.as_mut().next_signal() => {
                interrupted = interrupt(&run, interrupted);
                continue;
            }
        };
        let Some(line) = line else { break };
        if let Some(h) = &mut html {
            h.add(&line);
        }
        if journal_error.is_none() {
            journal_error = record(args, &run, journal, &line).err();
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&line).expect("result lines serialise")
            );
        }
        progress.tick(tracker, pacer, run_started);
    }
    progress.finish();
    Ended {
        report: run.report().await,
        html,
        interrupted,
        journal_error,
    }
}

/// Redraws the bar, or prints the plain status line, also while no input finishes (e.g.
/// while the run waits on the rate limit).
fn refresher(progress: &Progress) -> tokio::time::Interval {
    let period = progress.period().unwrap_or(Duration::from_secs(3600));
    let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh
}

/// The total (for the ETA) costs a second walk of the inputs. A list that can be read
/// only once (stdin, a pipe, `@<(cmd)`) would be split between the two walks: no total.
fn total(args: &Args) -> Option<u64> {
    let once = |i: &String| {
        i == "-"
            || i.strip_prefix('@')
                .is_some_and(|list| std::fs::metadata(list).map_or(true, |m| !m.is_file()))
    };
    (!args.quiet && !args.inputs.iter().any(once))
        .then(|| Inputs::new(args.inputs.clone()).count() as u64)
}

/// A Ctrl-C or SIGTERM: the first stops sending, a second leaves at once (every finished
/// line is already on disk; the next run replaces a webhook registration left behind).
fn interrupt(run: &Run, already: bool) -> bool {
    if already {
        std::process::exit(130);
    }
    run.stop("interrupted");
    eprintln!(
        "imggo: interrupted: sending nothing more, finishing what was sent \
         (again to quit at once); --resume goes on from here"
    );
    true
}

/// Appends `line` to the results file. When that fails nothing more can be recorded:
/// the run stops, to spend no more quota on work that would be lost.
fn record(args: &Args, run: &Run, journal: &mut Journal, line: &ResultLine) -> Result<(), Error> {
    journal.append(line).inspect_err(|e| {
        run.stop("the results file cannot be written");
        eprintln!(
            "imggo: results file {}: {e}; stopping (inputs not sent yet are not run)",
            args.out.display()
        );
    })
}

/// Prints the report (a table, or JSON with `--json`) and picks the exit code.
fn finish(args: &Args, ended: Ended, started: &mut Started) -> ExitCode {
    let print_json = || {
        println!(
            "{}",
            serde_json::to_string(&ended.report).expect("report serialises")
        );
    };
    if let (Some(path), Some(html)) = (&args.report, &ended.html) {
        if let Err(e) = html.write(path) {
            eprintln!("imggo: report: {e}");
        } else if !args.quiet && !args.json {
            eprintln!("imggo: report written to {}", path.display());
        }
    }
    if ended.interrupted {
        if args.json {
            print_json();
        }
        return ExitCode::from(130);
    }
    started.stop_metrics();
    if let Some(e) = &ended.journal_error {
        eprintln!("imggo: results file {}: {e}", args.out.display());
        return ExitCode::from(1);
    }
    if args.json {
        print_json();
    } else if !args.quiet {
        println!("{}", ended.report.table());
    }
    ExitCode::from(ended.report.exit_code())
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

/// A clearer message for the errors that stop a run before it starts.
fn explain(e: &Error) -> String {
    match e.status() {
        Some(401) => format!("the API key was refused (401): {e}"),
        Some(403) => format!("the API key lacks a scope for this pattern (403): {e}"),
        Some(404) => format!("pattern not found (404): {e}"),
        _ => format!("cannot start the run: {e}"),
    }
}
