//! The batch pipeline: route → read → hash → dedup → cache → optimise → limit → ingest →
//! wait → cache put → one result line per input.
//!
//! Each input's pattern comes from the run's [`Routes`]: a `--route` glob on its name, else
//! a classification (one more limit → ingest → wait, its result cached under the
//! classification pattern, its class picking the extraction pattern), else the fallback
//! pattern; an input nothing takes gets a `failed` line [`NO_ROUTE`].
//!
//! Three stages joined by bounded channels, so memory stays flat however many inputs
//! there are and the stages overlap:
//!
//! 1. a feeder thread expands the inputs lazily;
//! 2. `cpu_workers` preparation tasks read and hash each file once, drop in-run duplicates,
//!    look the cache up, and optimise on the blocking pool — they run ahead of the network
//!    stage, so the CPU never idles while uploads wait;
//! 3. a dispatcher runs up to `concurrency` network tasks (fixed, or adaptive with
//!    [`Concurrency::Auto`]): limiter, ingest with the derived idempotency key, wait for the
//!    job by polling or by webhook with polling as the fallback, cache put.
//!
//! Logs go through `tracing`: one `input` span per input (debug level, fields `input`,
//! `hash`, `pattern_id`, and once known `job_id`, `request_id`, `attempt`) around
//! everything done for it, debug events at each decision (cache hit, dedup, pacing, 429,
//! retry, accepted, done), warn events for failures and an exhausted quota, and info
//! events for the run's start and end. Nothing is formatted while the level is off.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use futures_util::FutureExt;
use imggo_cache::{Cache, CachedResult, Deduper, Role};
use imggo_core::{
    CacheKey, ContentHash, Error, Job, Manifest, RateLimitInfo, RetryPolicy, SettingsFingerprint,
};
use imggo_http::{Client, IngestOptions, PollPolicy, MAX_UNREADABLE_ANSWERS, MAX_UPLOAD_BYTES};
use imggo_optimize::{Optimizer, Options as OptimizeOptions};
use imggo_ratelimit::{AdaptiveConcurrency, LearnedPacer, LimitError, Limiter, PaceSource, Permit};
use serde_json::Value;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{field, Instrument, Span};

use crate::alert::Alerter;
use crate::input::RoutedInput;
use crate::journal::{ErrorInfo, ResultLine};
use crate::metrics::{AlertRules, Outcome, Tracker};
use crate::report::{PaceSummary, Report};
use crate::route::{Route, Routes, NO_ROUTE};
use crate::timing::JobClock;
#[cfg(feature = "webhook")]
use crate::webhook::WebhookRouter;

mod builder;
mod flight;
mod prepare;
mod send;
mod wait;

pub use builder::{Concurrency, PipelineBuilder, WaitMode, DEFAULT_CACHE_TTL};

/// The assembled batch pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    concurrency: Concurrency,
    cpu_workers: usize,
    alert_rules: AlertRules,
    alerter: Option<Arc<Alerter>>,
    skip: HashSet<String>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("pattern_id", &self.shared.pattern_id)
            .field("settings", &self.shared.settings)
            .field("concurrency", &self.concurrency)
            .field("cpu_workers", &self.cpu_workers)
            .finish_non_exhaustive()
    }
}

struct Shared {
    client: Client,
    /// The fallback pattern (`--pattern`); empty when there is none.
    pattern_id: String,
    /// Which pattern each input runs with (globs, classification, the fallback).
    routes: Routes,
    /// The version of each pattern of `routes` (part of every cache key).
    versions: Mutex<HashMap<String, u32>>,
    optimize: Option<OptimizeOptions>,
    /// Canonical text of the optimiser options (`no-optimize` without them).
    optimize_fingerprint: Arc<str>,
    /// Its hash: part of every cache key.
    settings: SettingsFingerprint,
    cache: Option<Arc<dyn Cache>>,
    cache_ttl: Duration,
    limiter: Option<Arc<dyn Limiter>>,
    pacer: Arc<LearnedPacer>,
    retry: Arc<dyn RetryPolicy>,
    /// Set once the quota is gone: ends every wait at once.
    quota_closed: watch::Sender<bool>,
    deduper: Option<Arc<Deduper<Job, Error>>>,
    wait: WaitMode,
    tracker: Arc<Tracker>,
    extras: Option<Value>,
    /// In-run single flight: cache-key digest → inputs waiting for the first one's result.
    inflight: Mutex<HashMap<ContentHash, Vec<Follower>>>,
    /// The service's processing time, learned from finished jobs; sets the poll times.
    job_clock: JobClock,
    /// The service's "quota exhausted" answer, once seen: later inputs fail with it
    /// without a request.
    quota_gone: Mutex<Option<(Duration, Option<RateLimitInfo>)>>,
    /// Digests already handled in this run (16 bytes per unique input), so a repeat that
    /// arrives after the first one finished is still reported as a `duplicate`.
    seen: Mutex<HashSet<ContentHash>>,
    /// Inputs (by label) to send with a salted idempotency key, and the salt.
    salts: Mutex<HashMap<String, String>>,
    /// Set by [`Run::stop`]: inputs not sent yet fail with [`Error::Stopped`].
    stopped: Mutex<Option<String>>,
    /// The key may read the account's usage: its count of accepted ingests lets this
    /// run share the account's rate with other processes of the same user.
    usage_readable: AtomicBool,
}

struct Follower {
    label: String,
    started: Instant,
    bytes_in: u64,
    /// Its `input` span: its line is logged in it.
    span: Span,
}

enum Payload {
    Image(Bytes),
    Url(String),
}

struct Prepared {
    label: String,
    /// The pattern of the next ingest: the extraction pattern, or with `classify` the
    /// classification pattern.
    pattern_id: String,
    /// The input is to be classified first (`key` is the classification's).
    classify: bool,
    /// The digest its identical inputs in flight wait on (see [`Shared::finish`]).
    flight: ContentHash,
    /// The file's base name, sent as the upload's file name.
    file_name: Option<String>,
    /// The class, when it was read from the cache.
    class: Option<String>,
    /// The classification job, when it was read from the cache.
    classify_job_id: Option<String>,
    /// Salt of the idempotency key (see [`Pipeline::salt_keys`]).
    salt: Option<String>,
    /// Time spent reading, hashing and optimising (queue waits excluded).
    prep: Duration,
    /// An identical input already finished earlier in this run.
    repeat: bool,
    hash: ContentHash,
    key: CacheKey,
    payload: Payload,
    bytes_in: u64,
    /// Its `input` span (see [`input_span`]), entered again by the network stage.
    span: Span,
}

/// A running batch: a [`Stream`] of result lines, one per input, then [`Run::report`].
pub struct Run {
    shared: Arc<Shared>,
    started: Instant,
    pacer: Arc<LearnedPacer>,
    rx: mpsc::Receiver<ResultLine>,
    done: tokio::task::JoinHandle<(u64, u64)>,
    tracker: Arc<Tracker>,
    alert_rules: AlertRules,
    alerter: Option<Arc<Alerter>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("pattern_id", &self.shared.pattern_id)
            .field("started", &self.started)
            .field("pace", &self.pacer.status())
            .finish_non_exhaustive()
    }
}

impl Stream for Run {
    type Item = ResultLine;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ResultLine>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(line)) = &polled {
            self.observe(line);
        }
        polled
    }
}

impl Run {
    /// Stops sending new work at once, for example when the results can no longer be
    /// recorded: every input not sent yet gets a `failed` line with code `STOPPED`
    /// naming `reason`; requests already sent finish and report as usual. The stream
    /// still ends with one line per input.
    pub fn stop(&self, reason: &str) {
        self.shared.stop(reason);
    }

    /// The next result line, or `None` when every input has one.
    pub async fn next_line(&mut self) -> Option<ResultLine> {
        let line = self.rx.recv().await;
        if let Some(l) = &line {
            self.observe(l);
        }
        line
    }

    /// Feeds a finished input to the alerter, if any.
    fn observe(&self, line: &ResultLine) {
        if let Some(a) = &self.alerter {
            a.observe(line.status, Duration::from_millis(line.latency_ms));
        }
    }

    /// The final report; call after the stream has ended.
    pub async fn report(self) -> Report {
        let (inputs, resumed) = self.done.await.unwrap_or((0, 0));
        let mut snapshot = self.tracker.snapshot();
        // The run's own clock, not the tracker's (which may predate setup).
        let secs = self.started.elapsed().as_secs_f64();
        snapshot.elapsed_secs = secs;
        snapshot.throughput = if secs > 0.0 {
            snapshot.total as f64 / secs
        } else {
            0.0
        };
        let mut alerts = self.alert_rules.evaluate(&snapshot);
        if let Some(a) = &self.alerter {
            // Deliveries still queued go out before the report (bounded wait), and a rule
            // that fired during the run counts even when it had recovered by the end.
            a.finish().await;
            for fired in a.fired() {
                let kind = std::mem::discriminant(&fired);
                if !alerts.iter().any(|a| std::mem::discriminant(a) == kind) {
                    alerts.push(fired);
                }
            }
        }
        let pace = self.pacer.status();
        Report {
            inputs,
            resumed,
            snapshot,
            alerts,
            pace: Some(PaceSummary {
                source: match pace.source {
                    PaceSource::Unlimited => "unlimited",
                    PaceSource::Discovering => "discovering",
                    PaceSource::Learned => "learned",
                    PaceSource::Account => "account",
                }
                .into(),
                allowed_rate: pace.rate(),
                achieved_rate: pace.achieved_rate,
                accepted: pace.accepted,
                refused: pace.refused,
            }),
        }
    }
}

thread_local! {
    /// One optimiser per blocking-pool thread, rebuilt if the options change.
    static OPTIMIZER: RefCell<Option<(Arc<str>, Optimizer)>> = const { RefCell::new(None) };
}

impl Pipeline {
    /// The fallback pattern (`--pattern`): the one every input runs with unless routes
    /// send it elsewhere; empty when there is none.
    pub fn pattern_id(&self) -> &str {
        &self.shared.pattern_id
    }

    /// The routing table of the run.
    pub fn routes(&self) -> &Routes {
        &self.shared.routes
    }

    /// The version of every pattern of the run, known after [`Pipeline::prepare`].
    pub fn pattern_versions(&self) -> HashMap<String, u32> {
        lock(&self.shared.versions).clone()
    }

    /// The tracker the run records into.
    pub fn tracker(&self) -> Arc<Tracker> {
        self.shared.tracker.clone()
    }

    /// The fingerprint of the settings that shape each result (part of every cache key,
    /// and written to every result line as `settings`).
    pub fn settings(&self) -> SettingsFingerprint {
        self.shared.settings
    }

    /// Inputs (by label) not to run, e.g. those an earlier results file shows finished
    /// with this pattern version and these settings; each counts as resumed.
    pub fn skip(mut self, done: HashSet<String>) -> Self {
        self.skip = done;
        self
    }

    /// Inputs (by label) to send with a new idempotency key: the service answers a key it
    /// has seen with the job it made for it, so an input whose job failed there is only
    /// run again under another key. The key is derived from the usual one and `salt`; the
    /// same salt gives the same key, so a retry that is killed and resumed is not sent
    /// twice. Each such input's line carries its salt.
    pub fn salt_keys(self, salts: HashMap<String, String>) -> Self {
        *lock(&self.shared.salts) = salts;
        self
    }

    /// The pacer of the run's ingests (its [`status`](LearnedPacer::status) says what rate
    /// the service allows and whether the run is waiting on it).
    pub fn pacer(&self) -> Arc<LearnedPacer> {
        self.shared.pacer.clone()
    }

    /// Fetches the version (part of every cache key) of every pattern the run may use
    /// (the fallback, each route's, the classification pattern and each class's) unless
    /// it was given, and returns the fallback's (or, without a fallback, the first
    /// route's). A missing pattern or a refused key fails here, before any input is
    /// touched.
    ///
    /// It also reads the account's usage (`GET /user/usage`) when the key may: the
    /// plan's minimum interval between ingests starts the pacer at the right rate, so
    /// not even the first ingests are refused.
    pub async fn prepare(&self) -> Result<u32, Error> {
        if let Ok(usage) = self.shared.client.usage().await {
            let used = usage.requests.as_ref().map(|r| r.used);
            self.shared
                .usage_readable
                .store(used.is_some_and(|u| u >= 0), Ordering::Relaxed);
            if let Some(gap) = usage
                .burst_limit
                .and_then(|b| Duration::try_from_secs_f64(b.seconds).ok())
                .filter(|g| !g.is_zero() && *g < Duration::from_secs(86_400))
            {
                self.shared.pacer.set_min_interval(gap);
            }
        }
        let mut first = None;
        for id in self.shared.routes.patterns() {
            let known = lock(&self.shared.versions).get(&id).copied();
            let version = match known {
                Some(v) => v,
                None => {
                    let p = self.shared.client.get_pattern(&id).await?;
                    lock(&self.shared.versions).insert(id, p.version);
                    p.version
                }
            };
            first.get_or_insert(version);
        }
        first.ok_or_else(|| Error::Config("the run has no pattern (--pattern, --route)".into()))
    }

    /// Runs the batch over `inputs` on the current Tokio runtime. Call [`Pipeline::prepare`]
    /// first (or set the pattern version).
    ///
    /// `inputs` are [`Input`](crate::Input)s, or [`RoutedInput`]s
    /// ([`Inputs::routed`](crate::Inputs::routed)) when `--route` globs should see the
    /// path of each file relative to its directory argument.
    pub fn run<I>(self, inputs: I) -> Run
    where
        I: IntoIterator + Send + 'static,
        I::Item: Into<RoutedInput>,
        I::IntoIter: Send,
    {
        let Pipeline {
            shared,
            concurrency,
            cpu_workers,
            alert_rules,
            alerter,
            skip,
        } = self;
        let net_slots = match &concurrency {
            Concurrency::Fixed(n) => *n,
            Concurrency::Auto(_, max) => *max,
        };
        let (in_tx, in_rx) = mpsc::channel::<RoutedInput>(cpu_workers * 4);
        let (net_tx, net_rx) = mpsc::channel::<Prepared>(net_slots.max(cpu_workers) * 2);
        let (out_tx, out_rx) = mpsc::channel::<ResultLine>(256);
        let tracker = shared.tracker.clone();
        let pacer = shared.pacer.clone();
        let started = Instant::now();
        tracing::info!(
            pattern_id = %shared.pattern_id,
            settings = %shared.settings,
            concurrency = ?concurrency,
            cpu_workers,
            cache = shared.cache.is_some(),
            "run started"
        );

        // Stage 1: expand inputs on a thread of its own (directory walks block).
        let feeder = tokio::task::spawn_blocking(move || {
            let (mut seen, mut resumed) = (0u64, 0u64);
            for input in inputs {
                let input: RoutedInput = input.into();
                seen += 1;
                if skip.contains(&input.input.label()) {
                    resumed += 1;
                    continue;
                }
                if in_tx.blocking_send(input).is_err() {
                    break;
                }
            }
            (seen, resumed)
        });

        // Stage 2: preparation tasks.
        let in_rx = Arc::new(tokio::sync::Mutex::new(in_rx));
        let mut prep = Vec::with_capacity(cpu_workers);
        for _ in 0..cpu_workers {
            let (in_rx, net_tx, out_tx, shared) = (
                in_rx.clone(),
                net_tx.clone(),
                out_tx.clone(),
                shared.clone(),
            );
            prep.push(tokio::spawn(async move {
                loop {
                    let next = in_rx.lock().await.recv().await;
                    let Some(input) = next else { break };
                    let (label, started) = (input.input.label(), Instant::now());
                    let span = input_span(&label, &shared.pattern_id);
                    let prepared = AssertUnwindSafe(shared.prepare_one(input, started, &out_tx))
                        .catch_unwind()
                        .instrument(span.clone())
                        .await;
                    match prepared {
                        Ok(Some(p)) => {
                            if net_tx.send(p).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err(panic) => {
                            let what = panic_text(&*panic);
                            shared
                                .internal(&out_tx, label, started, what)
                                .instrument(span)
                                .await;
                        }
                    }
                }
            }));
        }
        drop(net_tx);

        // Beside stage 3: the account's count of accepted ingests, read while the run is
        // paced, tells the pacer what other processes of the same user are sending.
        let watcher = shared
            .usage_readable
            .load(Ordering::Relaxed)
            .then(|| tokio::spawn(watch_account(shared.client.clone(), pacer.clone())));

        // Stage 3: the network dispatcher.
        let dispatcher = {
            let (shared, out_tx) = (shared.clone(), out_tx.clone());
            tokio::spawn(dispatch(shared, concurrency, net_rx, out_tx))
        };
        // The last lines (inputs stranded by a failure) go out once every stage is done.
        let final_tx = out_tx;

        let done = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let fed = feeder.await;
                for p in prep {
                    let _ = p.await;
                }
                let _ = dispatcher.await;
                if let Some(w) = watcher {
                    w.abort();
                }
                // Whatever went wrong above, no input goes without its line.
                shared.strand_followers(&final_tx).await;
                match fed {
                    Ok(counts) => {
                        log_end(&shared.tracker, started, counts);
                        counts
                    }
                    Err(e) => {
                        let what = match e.try_into_panic() {
                            Ok(p) => panic_text(&*p),
                            Err(e) => e.to_string(),
                        };
                        let label = "(listing the inputs)".to_string();
                        shared.internal(&final_tx, label, started, what).await;
                        (0, 0)
                    }
                }
            })
        };
        Run {
            shared,
            started,
            pacer,
            rx: out_rx,
            done,
            tracker,
            alert_rules,
            alerter,
        }
    }
}

/// How often the account's usage is read while the run is paced: often enough that a
/// process notices within a second that another one started or stopped sending.
const ACCOUNT_POLL: Duration = Duration::from_millis(500);
/// How often it is read while others of the account hold its whole rate, so that this
/// run takes over soon after they stop.
const ACCOUNT_POLL_HELD: Duration = Duration::from_millis(100);

/// Feeds the account's accepted-ingest count to the pacer while the run is paced (one
/// `GET /user/usage` per [`ACCOUNT_POLL`]; none while nothing limits the run).
async fn watch_account(client: Client, pacer: Arc<LearnedPacer>) {
    loop {
        let status = pacer.status();
        let every = if status.held {
            ACCOUNT_POLL_HELD
        } else {
            ACCOUNT_POLL
        };
        let next = tokio::time::Instant::now() + every;
        if status.source != PaceSource::Unlimited {
            if let Ok(Some(r)) = client.usage().await.map(|u| u.requests) {
                if let Ok(used) = u64::try_from(r.used) {
                    pacer.observe_account_use(used);
                }
            }
        }
        tokio::time::sleep_until(next).await;
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    concurrency: Concurrency,
    mut net_rx: mpsc::Receiver<Prepared>,
    out_tx: mpsc::Sender<ResultLine>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    match concurrency {
        Concurrency::Fixed(n) => {
            let slots = Arc::new(Semaphore::new(n));
            let waits = Arc::new(Semaphore::new(n.saturating_mul(WAITS_PER_SLOT)));
            while let Some(p) = net_rx.recv().await {
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let (shared, out_tx) = (shared.clone(), out_tx.clone());
                let mut slot = Slot {
                    slots: Some(slots.clone()),
                    permit: Some(permit),
                    waits: Some(waits.clone()),
                };
                let span = p.span.clone();
                tasks.spawn(
                    async move {
                        shared.send_guarded(p, &out_tx, None, &mut slot).await;
                    }
                    .instrument(span),
                );
                while tasks.try_join_next().is_some() {}
            }
        }
        Concurrency::Auto(adaptive, _) => {
            while let Some(p) = net_rx.recv().await {
                let permit = adaptive.acquire().await;
                let (shared, out_tx) = (shared.clone(), out_tx.clone());
                let span = p.span.clone();
                tasks.spawn(
                    async move {
                        shared
                            .send_guarded(p, &out_tx, Some(permit), &mut Slot::default())
                            .await;
                    }
                    .instrument(span),
                );
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Inputs per concurrency slot that may wait for their webhook delivery with the slot
/// given up. Each holds its prepared upload meanwhile, so this bounds that memory to
/// `(1 + WAITS_PER_SLOT) × concurrency` uploads.
const WAITS_PER_SLOT: usize = 4;

/// A network task's concurrency slot, given up while the task only waits (out a 429's
/// `Retry-After`, or for a webhook delivery) so that the next input can use it, and taken
/// again before it sends.
#[derive(Default)]
struct Slot {
    slots: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
    /// Turns to wait for a delivery without the slot (see [`WAITS_PER_SLOT`]).
    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    waits: Option<Arc<Semaphore>>,
}

impl Slot {
    /// Awaits `wait` with the slot given up when a waiting turn is free (and with it held
    /// otherwise), then takes the slot again.
    #[cfg_attr(not(feature = "webhook"), allow(dead_code))]
    async fn release_during<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let turn = self
            .waits
            .as_ref()
            .and_then(|w| w.clone().try_acquire_owned().ok());
        match turn {
            Some(_turn) => self.release_while(wait).await,
            None => wait.await,
        }
    }

    /// Awaits `wait` with the slot given up, then takes the slot again.
    async fn release_while<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let Some(slots) = &self.slots else {
            return wait.await;
        };
        self.permit = None;
        let out = wait.await;
        self.permit = slots.clone().acquire_owned().await.ok();
        out
    }
}

/// What a caught panic said.
fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Locks `m` even if a panicking task poisoned it: the run goes on, the panicking input
/// gets its `INTERNAL` line.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `input` span of one input: everything done for it is logged inside. Its fields
/// not known yet are recorded as the run learns them (`hash` once read, `job_id` once
/// accepted or answered; `request_id` and `attempt` of the accepted ingest).
/// Disabled (and free) unless debug logs of this module are on.
fn input_span(label: &str, pattern_id: &str) -> Span {
    tracing::debug_span!(
        "input",
        input = %label,
        hash = field::Empty,
        pattern_id = %pattern_id,
        job_id = field::Empty,
        request_id = field::Empty,
        attempt = field::Empty,
    )
}

/// Logs the line of an input (in its span when there is one): `warn` for a failure
/// with its code, `debug` for any other outcome.
fn log_line(line: &ResultLine) {
    match (&line.status, &line.error) {
        (Outcome::Failed, error) => tracing::warn!(
            input = %line.input,
            job_id = line.job_id.as_deref().map(field::display),
            code = error.as_ref().map(|e| e.code.as_str()),
            error = error.as_ref().map(|e| e.message.as_str()),
            attempts = line.attempts,
            "input failed"
        ),
        (status, _) => tracing::debug!(
            status = ?status,
            job_id = line.job_id.as_deref().map(field::display),
            attempts = line.attempts,
            latency_ms = line.latency_ms,
            "input done"
        ),
    }
}

/// The run's end in one `info` event: the inputs and what became of them.
fn log_end(tracker: &Tracker, started: Instant, (inputs, resumed): (u64, u64)) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let s = tracker.snapshot();
    tracing::info!(
        inputs,
        resumed,
        succeeded = s.succeeded,
        cached = s.cached,
        duplicate = s.duplicate,
        failed = s.failed,
        retried = s.retried,
        rate_limited = s.rate_limited,
        elapsed_ms = ms(started),
        "run finished"
    );
}

/// Elapsed milliseconds since `t`.
fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

impl Shared {
    fn line(&self, label: String, started: Instant, status: Outcome) -> ResultLine {
        ResultLine {
            input: label,
            content_hash: None,
            pattern_id: self.pattern_id.clone(),
            job_id: None,
            status,
            manifest: None,
            error: None,
            attempts: 0,
            latency_ms: ms(started),
            bytes_in: 0,
            bytes_sent: 0,
            pattern_version: self.version_of(&self.pattern_id),
            settings: Some(self.settings.to_string()),
            idempotency_salt: None,
            finished_at: None,
            rate_limited: Some(0),
            waited_ms: Some(0),
            class: None,
            classify_job_id: None,
        }
    }

    /// The version of pattern `id`, once [`Pipeline::prepare`] fetched it.
    fn version_of(&self, id: &str) -> Option<u32> {
        lock(&self.versions).get(id).copied()
    }

    /// A `failed` line [`NO_ROUTE`]: nothing takes the input. `classified`: its
    /// classification manifest gave `class` (`None`: no class at the field).
    fn no_route_line(
        &self,
        label: String,
        started: Instant,
        class: Option<&str>,
        classified: bool,
    ) -> ResultLine {
        let mut l = self.line(label.clone(), started, Outcome::Failed);
        let field = self.routes.classify().map_or("", |c| c.field.as_str());
        let message = match (class, classified) {
            (Some(c), _) => format!(
                "{label}: no route for class {c:?} (no --route-class {c}=PATTERN_ID and no --pattern fallback)"
            ),
            (None, true) => format!(
                "{label}: its classification has no class at {field:?} and there is no --pattern fallback"
            ),
            (None, false) => format!(
                "{label}: no route matches it (no --route glob matched, and no --classify or --pattern fallback)"
            ),
        };
        l.error = Some(ErrorInfo {
            code: NO_ROUTE.into(),
            message,
        });
        l.class = class.map(str::to_owned);
        if let (Some(c), true) = (self.routes.classify(), classified) {
            // The classification is the pattern that ran for it.
            l.pattern_id = c.pattern_id.clone();
            l.pattern_version = self.version_of(&c.pattern_id);
        }
        l
    }

    async fn emit(&self, out: &mpsc::Sender<ResultLine>, mut line: ResultLine) {
        line.finished_at = Some(imggo_core::time::format_rfc3339(
            std::time::SystemTime::now(),
        ));
        log_line(&line);
        self.tracker
            .record(line.status, Duration::from_millis(line.latency_ms));
        let _ = out.send(line).await;
    }

    /// The line of an input whose handling panicked (a bug, or a user's `Cache`,
    /// `Limiter` or `RetryPolicy` that panicked): `failed`, code `INTERNAL`.
    async fn internal(
        &self,
        out: &mpsc::Sender<ResultLine>,
        label: String,
        started: Instant,
        what: String,
    ) {
        let line = self.internal_line(label, started, &what);
        self.emit(out, line).await;
    }

    fn internal_line(&self, label: String, started: Instant, what: &str) -> ResultLine {
        let mut l = self.line(label.clone(), started, Outcome::Failed);
        l.error = Some(ErrorInfo {
            code: "INTERNAL".into(),
            message: format!("internal error while handling {label}: {what}"),
        });
        l
    }

    /// [`Shared::send_one`], and if it panics, a `failed` line `INTERNAL` for the input
    /// and for every identical input that waited on it.
    async fn send_guarded(
        &self,
        p: Prepared,
        out: &mpsc::Sender<ResultLine>,
        permit: Option<Permit>,
        slot: &mut Slot,
    ) {
        let (label, digest, hash) = (p.label.clone(), p.flight, p.hash);
        let started = Instant::now();
        let sent = AssertUnwindSafe(self.send_one(p, out, permit, slot))
            .catch_unwind()
            .await;
        if let Err(panic) = sent {
            let mut line = self.internal_line(label, started, &panic_text(&*panic));
            line.content_hash = Some(hash.to_string());
            self.finish(out, &digest, line).await;
        }
    }

    async fn fail(
        &self,
        out: &mpsc::Sender<ResultLine>,
        label: String,
        started: Instant,
        hash: Option<ContentHash>,
        err: &Error,
    ) {
        let mut l = self.line(label, started, Outcome::Failed);
        l.content_hash = hash.map(|h| h.to_string());
        l.error = Some(ErrorInfo::from(err));
        self.emit(out, l).await;
    }

    /// Why nothing more may be sent: the run was stopped, or the quota is gone.
    fn halted(&self) -> Option<Error> {
        if let Some(reason) = lock(&self.stopped).clone() {
            return Some(Error::Stopped { reason });
        }
        self.quota_error()
    }

    /// Stops sending: inputs not sent yet fail at once with [`Error::Stopped`]; requests
    /// already sent finish and report as usual.
    fn stop(&self, reason: &str) {
        lock(&self.stopped).get_or_insert_with(|| reason.to_string());
        self.pacer.close(Duration::ZERO);
        self.quota_closed.send_replace(true);
    }
}
