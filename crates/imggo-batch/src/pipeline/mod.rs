//! The batch pipeline: read → hash → dedup → cache → optimise → limit → ingest → wait →
//! cache put → one result line per input.
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
    AlertRules, CacheKey, ContentHash, Error, Job, Manifest, Outcome, RateLimitInfo, RetryPolicy,
    SettingsFingerprint, Tracker,
};
use imggo_http::{Client, IngestOptions, PollPolicy, MAX_UPLOAD_BYTES};
use imggo_optimize::{Optimizer, Options as OptimizeOptions};
use imggo_ratelimit::{AdaptiveConcurrency, LearnedPacer, LimitError, Limiter, PaceSource, Permit};
use serde_json::Value;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::input::Input;
use crate::journal::{ErrorInfo, ResultLine};
use crate::report::{PaceSummary, Report};
use crate::timing::JobClock;
#[cfg(feature = "webhook")]
use crate::webhook::WebhookRouter;

/// How many network tasks run at once.
#[derive(Debug, Clone)]
pub enum Concurrency {
    /// Exactly this many.
    Fixed(usize),
    /// Adapted to the service: grows while latency holds, shrinks on 429s, timeouts and
    /// latency inflation; the `usize` bounds the queue in front of it (its maximum).
    Auto(Arc<AdaptiveConcurrency>, usize),
}

/// How the pipeline learns that a job finished.
#[derive(Clone)]
pub enum WaitMode {
    /// Poll `GET /jobs/{id}` with backoff.
    Poll(PollPolicy),
    /// Wait for a signed webhook delivery; poll when none arrives within `fallback_after`.
    #[cfg(feature = "webhook")]
    Webhook {
        /// Routes verified deliveries to the waiting tasks.
        router: Arc<WebhookRouter>,
        /// How long to wait for a delivery before polling.
        fallback_after: Duration,
        /// The polling used as the fallback.
        poll: PollPolicy,
    },
}

impl std::fmt::Debug for WaitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Poll(p) => f.debug_tuple("Poll").field(p).finish(),
            #[cfg(feature = "webhook")]
            Self::Webhook {
                router,
                fallback_after,
                poll,
            } => f
                .debug_struct("Webhook")
                .field("router", router)
                .field("fallback_after", fallback_after)
                .field("poll", poll)
                .finish(),
        }
    }
}

/// How long a cached result is kept unless [`PipelineBuilder::cache`] says otherwise.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Builds a [`Pipeline`]; see [`Pipeline::builder`].
pub struct PipelineBuilder {
    client: Option<Client>,
    pattern_id: Option<String>,
    pattern_version: Option<u32>,
    optimize: Option<OptimizeOptions>,
    cache: Option<Arc<dyn Cache>>,
    cache_ttl: Duration,
    limiter: Option<Arc<dyn Limiter>>,
    pacer: Arc<LearnedPacer>,
    retry: Arc<dyn RetryPolicy>,
    deduper: Option<Arc<Deduper<Job, Error>>>,
    concurrency: Concurrency,
    wait: WaitMode,
    tracker: Arc<Tracker>,
    cpu_workers: usize,
    extras: Option<Value>,
    alert_rules: AlertRules,
    skip: HashSet<String>,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("pattern_id", &self.pattern_id)
            .field("pattern_version", &self.pattern_version)
            .field("optimize", &self.optimize.is_some())
            .field("cache", &self.cache.is_some())
            .field("limiter", &self.limiter.is_some())
            .field("concurrency", &self.concurrency)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// The API client (required).
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The pattern every input is run with (required).
    pub fn pattern(mut self, id: impl Into<String>) -> Self {
        self.pattern_id = Some(id.into());
        self
    }

    /// The pattern's version, when known; otherwise [`Pipeline::prepare`] asks the API.
    pub fn pattern_version(mut self, version: u32) -> Self {
        self.pattern_version = Some(version);
        self
    }

    /// Optimiser options; `None` uploads the original bytes.
    pub fn optimize(mut self, options: Option<OptimizeOptions>) -> Self {
        self.optimize = options;
        self
    }

    /// The result cache and the lifetime of its entries.
    pub fn cache(mut self, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        self.cache = Some(cache);
        self.cache_ttl = ttl;
        self
    }

    /// A limiter every ingest attempt passes right before it is sent (a user's `--rps`
    /// ceiling, a limiter shared through Redis, the quota counted from the headers).
    pub fn limiter(mut self, limiter: Arc<dyn Limiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// The pacer that learns the service's ingest rate from its 429s and holds it (a new
    /// one by default). Share one between pipelines that use the same API user; seed it
    /// with the account's minimum interval ([`LearnedPacer::set_min_interval`]).
    pub fn pacer(mut self, pacer: Arc<LearnedPacer>) -> Self {
        self.pacer = pacer;
        self
    }

    /// How ingests are retried after a 5xx, a timeout or a dropped connection (default:
    /// imggo-ratelimit's [`Backoff`](imggo_ratelimit::Backoff) with its retry budget).
    /// A 429 is never given to it: it waits for its turn again, as often as needed, and
    /// only an exhausted quota ends an input early.
    pub fn retry_policy(mut self, policy: Arc<dyn RetryPolicy>) -> Self {
        self.retry = policy;
        self
    }

    /// Single flight across workers (a Redis-backed [`Deduper`]): identical images sent
    /// by several workers at once cost one job; the others report `duplicate`. Within one
    /// pipeline, duplicates are always folded without it.
    pub fn deduper(mut self, deduper: Arc<Deduper<Job, Error>>) -> Self {
        self.deduper = Some(deduper);
        self
    }

    /// Fixed or adaptive concurrency of the network stage.
    pub fn concurrency(mut self, c: Concurrency) -> Self {
        self.concurrency = c;
        self
    }

    /// Polling or webhooks.
    pub fn wait(mut self, w: WaitMode) -> Self {
        self.wait = w;
        self
    }

    /// A shared tracker (to serve `/metrics` while the run goes on).
    pub fn tracker(mut self, t: Arc<Tracker>) -> Self {
        self.tracker = t;
        self
    }

    /// Preparation tasks (reading, hashing, optimising); defaults to the core count.
    pub fn cpu_workers(mut self, n: usize) -> Self {
        self.cpu_workers = n.max(1);
        self
    }

    /// Metadata sent with every ingest (`extras`), part of the idempotency key.
    pub fn extras(mut self, extras: Value) -> Self {
        self.extras = Some(extras);
        self
    }

    /// Alert rules evaluated into the final report.
    pub fn alert_rules(mut self, rules: AlertRules) -> Self {
        self.alert_rules = rules;
        self
    }

    /// Inputs (by label) finished by an earlier run: skipped and counted as resumed.
    pub fn skip(mut self, done: HashSet<String>) -> Self {
        self.skip = done;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Pipeline, Error> {
        let client = self
            .client
            .ok_or_else(|| Error::Config("pipeline needs a client".into()))?;
        let pattern_id = self
            .pattern_id
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Error::Config("pipeline needs a pattern id (--pattern)".into()))?;
        if let Concurrency::Fixed(0) = self.concurrency {
            return Err(Error::Config("concurrency must be at least 1".into()));
        }
        let optimize_fingerprint: Arc<str> = self
            .optimize
            .as_ref()
            .map_or_else(|| "no-optimize".to_owned(), OptimizeOptions::fingerprint)
            .into();
        Ok(Pipeline {
            shared: Arc::new(Shared {
                settings: SettingsFingerprint::of(&optimize_fingerprint),
                optimize_fingerprint,
                client,
                pattern_id,
                pattern_version: Mutex::new(self.pattern_version),
                usage_readable: AtomicBool::new(false),
                stopped: Mutex::new(None),
                salts: Mutex::new(HashMap::new()),
                optimize: self.optimize,
                cache: self.cache,
                cache_ttl: self.cache_ttl,
                limiter: self.limiter,
                pacer: self.pacer,
                retry: self.retry,
                quota_closed: watch::channel(false).0,
                deduper: self.deduper,
                wait: self.wait,
                tracker: self.tracker,
                extras: self.extras,
                inflight: Mutex::new(HashMap::new()),
                seen: Mutex::new(HashSet::new()),
                quota_gone: Mutex::new(None),
                job_clock: JobClock::default(),
            }),
            concurrency: self.concurrency,
            cpu_workers: self.cpu_workers,
            alert_rules: self.alert_rules,
            skip: self.skip,
        })
    }
}

/// The assembled batch pipeline.
pub struct Pipeline {
    shared: Arc<Shared>,
    concurrency: Concurrency,
    cpu_workers: usize,
    alert_rules: AlertRules,
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
    pattern_id: String,
    pattern_version: Mutex<Option<u32>>,
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
}

enum Payload {
    Image(Bytes),
    Url(String),
}

struct Prepared {
    label: String,
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
        self.rx.poll_recv(cx)
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
        self.rx.recv().await
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
        let alerts = self.alert_rules.evaluate(&snapshot);
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
    /// Starts building a pipeline.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            client: None,
            pattern_id: None,
            pattern_version: None,
            optimize: Some(OptimizeOptions::default()),
            cache: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            limiter: None,
            pacer: Arc::new(LearnedPacer::new()),
            retry: Arc::new(imggo_ratelimit::Backoff::default()),
            deduper: None,
            concurrency: Concurrency::Fixed(10),
            wait: WaitMode::Poll(PollPolicy::default()),
            tracker: Arc::new(Tracker::new()),
            cpu_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            extras: None,
            alert_rules: AlertRules::default(),
            skip: HashSet::new(),
        }
    }

    /// The pattern every input runs with.
    pub fn pattern_id(&self) -> &str {
        &self.shared.pattern_id
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

    /// Fetches the pattern's version (part of every cache key) unless it was given. A
    /// missing pattern or a refused key fails here, before any input is touched.
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
        if let Some(v) = *lock(&self.shared.pattern_version) {
            return Ok(v);
        }
        let p = self
            .shared
            .client
            .get_pattern(&self.shared.pattern_id)
            .await?;
        *lock(&self.shared.pattern_version) = Some(p.version);
        Ok(p.version)
    }

    /// Runs the batch over `inputs` on the current Tokio runtime. Call [`Pipeline::prepare`]
    /// first (or set the pattern version).
    pub fn run<I>(self, inputs: I) -> Run
    where
        I: IntoIterator<Item = Input> + Send + 'static,
        I::IntoIter: Send,
    {
        let Pipeline {
            shared,
            concurrency,
            cpu_workers,
            alert_rules,
            skip,
        } = self;
        let net_slots = match &concurrency {
            Concurrency::Fixed(n) => *n,
            Concurrency::Auto(_, max) => *max,
        };
        let (in_tx, in_rx) = mpsc::channel::<Input>(cpu_workers * 4);
        let (net_tx, net_rx) = mpsc::channel::<Prepared>(net_slots.max(cpu_workers) * 2);
        let (out_tx, out_rx) = mpsc::channel::<ResultLine>(256);
        let tracker = shared.tracker.clone();
        let pacer = shared.pacer.clone();
        let started = Instant::now();

        // Stage 1: expand inputs on a thread of its own (directory walks block).
        let feeder = tokio::task::spawn_blocking(move || {
            let (mut seen, mut resumed) = (0u64, 0u64);
            for input in inputs {
                seen += 1;
                if skip.contains(&input.label()) {
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
                    let (label, started) = (input.label(), Instant::now());
                    let prepared = AssertUnwindSafe(shared.prepare_one(input, started, &out_tx))
                        .catch_unwind()
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
                            shared.internal(&out_tx, label, started, what).await;
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
                    Ok(counts) => counts,
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
        }
    }
}

/// How often the account's usage is read while the run is paced: often enough that a
/// process notices within a second that another one started or stopped sending.
const ACCOUNT_POLL: Duration = Duration::from_millis(500);
/// How often it is read while others of the account hold its whole rate, so that this
/// run takes over soon after they stop.
const ACCOUNT_POLL_HELD: Duration = Duration::from_millis(250);

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
                tasks.spawn(async move {
                    shared.send_guarded(p, &out_tx, None, &mut slot).await;
                });
                while tasks.try_join_next().is_some() {}
            }
        }
        Concurrency::Auto(adaptive, _) => {
            while let Some(p) = net_rx.recv().await {
                let permit = adaptive.acquire().await;
                let (shared, out_tx) = (shared.clone(), out_tx.clone());
                tasks.spawn(async move {
                    shared
                        .send_guarded(p, &out_tx, Some(permit), &mut Slot::default())
                        .await;
                });
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
            pattern_version: *lock(&self.pattern_version),
            settings: Some(self.settings.to_string()),
            idempotency_salt: None,
        }
    }

    async fn emit(&self, out: &mpsc::Sender<ResultLine>, line: ResultLine) {
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
        let (label, digest, hash) = (p.label.clone(), p.key.digest(), p.hash);
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

    /// Inputs still waiting on an identical one when the run ends: that one's handling
    /// failed without answering them (it panicked). Each gets a `failed` line `INTERNAL`.
    async fn strand_followers(&self, out: &mpsc::Sender<ResultLine>) {
        let stranded: Vec<Follower> = {
            let mut inflight = lock(&self.inflight);
            inflight.drain().flat_map(|(_, f)| f).collect()
        };
        for f in stranded {
            let what = "the identical input it waited on failed without an answer";
            let line = self.internal_line(f.label, f.started, what);
            self.emit(out, line).await;
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

    /// Read, hash, dedup, cache lookup and optimise one input. `None` when the input is
    /// already answered (failed, cached, or a follower of an identical one in flight).
    async fn prepare_one(
        self: &Arc<Self>,
        input: Input,
        started: Instant,
        out: &mpsc::Sender<ResultLine>,
    ) -> Option<Prepared> {
        let label = input.label();
        if let Some(e) = self.halted() {
            self.fail(out, label, started, None, &e).await;
            return None;
        }
        let version = lock(&self.pattern_version).unwrap_or(1);
        let (hash, raw) = match input {
            Input::Broken { reason, .. } => {
                let e = Error::InvalidInput {
                    input: label.clone(),
                    reason,
                };
                self.fail(out, label, started, None, &e).await;
                return None;
            }
            Input::Url(url) => (ContentHash::of(url.as_bytes()), Payload::Url(url)),
            Input::File(path) => {
                // Refuse what could never be sent before reading it into memory.
                let limit =
                    self.optimize
                        .as_ref()
                        .map_or(MAX_UPLOAD_BYTES, |o| o.max_input_bytes) as u64;
                let read = tokio::task::spawn_blocking(move || {
                    crate::read_bounded(&path, limit).map(|b| (ContentHash::of(&b), b))
                })
                .await;
                match read {
                    Ok(Ok((h, bytes))) => (h, Payload::Image(Bytes::from(bytes))),
                    Ok(Err(source)) => {
                        let e = Error::Io {
                            path: label.clone(),
                            source,
                        };
                        self.fail(out, label, started, None, &e).await;
                        return None;
                    }
                    Err(join) => {
                        let e = Error::InvalidInput {
                            input: label.clone(),
                            reason: format!("reader task failed: {join}"),
                        };
                        self.fail(out, label, started, None, &e).await;
                        return None;
                    }
                }
            }
        };
        let bytes_in = match &raw {
            Payload::Image(b) => b.len() as u64,
            Payload::Url(_) => 0,
        };
        let key = CacheKey::new(hash, self.pattern_id.clone(), version, self.settings);
        let digest = key.digest();

        // In-run single flight: an identical input already on its way answers this one.
        {
            let mut inflight = lock(&self.inflight);
            if let Some(followers) = inflight.get_mut(&digest) {
                followers.push(Follower {
                    label,
                    started,
                    bytes_in,
                });
                return None;
            }
            inflight.insert(digest, Vec::new());
        }
        let repeat = !lock(&self.seen).insert(digest);
        let answered = if repeat {
            Outcome::Duplicate
        } else {
            Outcome::Cached
        };

        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(&key).await {
                let mut l = self.line(label, started, answered);
                l.content_hash = Some(hash.to_string());
                l.job_id = hit.job_id.clone();
                l.manifest = Some(hit.manifest.to_value());
                l.bytes_in = bytes_in;
                self.finish(out, &digest, l).await;
                return None;
            }
        }

        let payload = match (raw, &self.optimize) {
            (Payload::Image(bytes), Some(opts)) => {
                let opts = opts.clone();
                let fp = self.optimize_fingerprint.clone();
                let original = bytes.clone();
                let optimized = tokio::task::spawn_blocking(move || {
                    OPTIMIZER.with(|cell| {
                        let mut slot = cell.borrow_mut();
                        if slot.as_ref().is_none_or(|(f, _)| **f != *fp) {
                            *slot = Some((fp, Optimizer::new(opts)));
                        }
                        let (_, opt) = slot.as_mut().expect("just set");
                        opt.optimize(&original).map(|o| o.bytes)
                    })
                })
                .await;
                let reason = match optimized {
                    Ok(Ok(out_bytes)) => Ok(Payload::Image(Bytes::from(out_bytes))),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(join) => Err(format!("optimiser task failed: {join}")),
                };
                match reason {
                    Ok(payload) => payload,
                    Err(reason) => {
                        let e = Error::InvalidInput {
                            input: label.clone(),
                            reason,
                        };
                        let mut l = self.line(label, started, Outcome::Failed);
                        l.content_hash = Some(hash.to_string());
                        l.bytes_in = bytes_in;
                        l.error = Some(ErrorInfo {
                            code: "INVALID_IMAGE".into(),
                            message: e.to_string(),
                        });
                        self.finish(out, &digest, l).await;
                        return None;
                    }
                }
            }
            (raw, _) => raw,
        };
        let salt = lock(&self.salts).get(&label).cloned();
        Some(Prepared {
            salt,
            label,
            prep: started.elapsed(),
            repeat,
            hash,
            key,
            payload,
            bytes_in,
        })
    }

    /// Limiter, ingest, wait, cache put, result line.
    async fn send_one(
        &self,
        p: Prepared,
        out: &mpsc::Sender<ResultLine>,
        permit: Option<Permit>,
        slot: &mut Slot,
    ) {
        let digest = p.key.digest();
        let request_started = Instant::now();
        let mut l = self.line(p.label.clone(), request_started, Outcome::Failed);
        l.content_hash = Some(p.hash.to_string());
        l.idempotency_salt = p.salt.clone();
        l.bytes_in = p.bytes_in;
        let mut paced = Duration::ZERO;
        // The round trip of the accepted ingest: the concurrency signal of `--concurrency
        // auto`. The whole input's time is not: a job's own time varies widely, and a
        // poll answered 503 with `Retry-After: 1` would read as a congested service.
        let mut ingest_rtt = None;
        let result = match &self.deduper {
            Some(d) => {
                d.run(&p.key, || {
                    self.ingest_and_wait(&p, &mut l, slot, &mut paced, &mut ingest_rtt)
                })
                .await
            }
            None => self
                .ingest_and_wait(&p, &mut l, slot, &mut paced, &mut ingest_rtt)
                .await
                .map(|job| (job, Role::Leader))
                .map_err(Arc::new),
        };
        if let Some(permit) = permit {
            match &result {
                Ok(_) => match ingest_rtt {
                    Some(rtt) => permit.success_with_latency(rtt),
                    // Answered by another worker: no sample of this service's latency.
                    None => permit.ignore(),
                },
                Err(e) if e.is_rate_limited() || e.is_timeout() => permit.dropped(),
                Err(_) => permit.ignore(),
            }
        }
        match result {
            Ok((job, role)) => {
                let manifest = job.manifest.unwrap_or(Manifest::Json(Default::default()));
                if role == Role::Follower {
                    l.attempts = 0;
                    l.bytes_sent = 0;
                }
                l.status = if p.repeat || role == Role::Follower {
                    Outcome::Duplicate
                } else {
                    Outcome::Succeeded
                };
                l.job_id = Some(job.id.clone());
                l.manifest = Some(manifest.to_value());
                if let Some(cache) = &self.cache {
                    let value = CachedResult::new(manifest, Some(job.id), p.key.pattern_version);
                    cache.put(&p.key, Arc::new(value), self.cache_ttl).await;
                }
            }
            Err(e) => l.error = Some(ErrorInfo::from(&*e)),
        }
        l.latency_ms = (p.prep + request_started.elapsed()).as_millis() as u64;
        self.finish(out, &digest, l).await;
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

    /// The quota's error, once the service said it is gone.
    fn quota_error(&self) -> Option<Error> {
        let (retry_after, limit) = (*lock(&self.quota_gone))?;
        Some(Error::QuotaExhausted {
            retry_after,
            limit,
            request_id: None,
        })
    }

    /// Remembers an exhausted quota (with its reset time) and stops every wait: inputs
    /// not sent yet fail at once.
    fn quota_exhausted(&self, retry_after: Duration, limit: Option<RateLimitInfo>) -> Error {
        {
            let mut gone = lock(&self.quota_gone);
            if gone.is_none() {
                let mut info = limit.unwrap_or_default();
                if info.reset.is_none() {
                    info.reset = std::time::SystemTime::now().checked_add(retry_after);
                }
                *gone = Some((retry_after, Some(info)));
            }
        }
        self.pacer.close(retry_after);
        self.quota_closed.send_replace(true);
        self.quota_error().expect("just set")
    }

    fn limit_error(&self, e: LimitError) -> Error {
        if let Some(q) = self.halted() {
            return q;
        }
        match Error::from(e) {
            Error::QuotaExhausted {
                retry_after, limit, ..
            } => self.quota_exhausted(retry_after, limit),
            other => other,
        }
    }

    /// Sleeps `d`, or less when the quota runs out meanwhile.
    async fn sleep_unless_quota(&self, d: Duration) {
        let mut closed = self.quota_closed.subscribe();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = closed.wait_for(|c| *c) => {}
        }
    }

    async fn ingest_and_wait(
        &self,
        p: &Prepared,
        l: &mut ResultLine,
        slot: &mut Slot,
        paced: &mut Duration,
        ingest_rtt: &mut Option<Duration>,
    ) -> Result<Job, Error> {
        let opts = IngestOptions {
            idempotency_key: None,
            extras: self.extras.clone(),
            // The whole cache key: a new pattern version or other settings make a new job;
            // a salt makes a new job for an input whose job failed.
            content_hash: Some(match &p.salt {
                Some(salt) => ContentHash::of(format!("{}:{salt}", p.key.digest()).as_bytes()),
                None => p.key.digest(),
            }),
            file_name: None,
            single_attempt: true,
        };
        let started = Instant::now();
        let mut failures = 0u32;
        // Every attempt, the first and each retry, passes the limiters: a 429 waits for
        // its turn again (as often as needed), a 5xx or a dropped connection is retried
        // through the retry policy, an exhausted quota ends the input and the run.
        let accepted = loop {
            if let Some(e) = self.halted() {
                return Err(e);
            }
            let waiting = Instant::now();
            let ticket = self
                .pacer
                .acquire_with(self.limiter.as_deref())
                .await
                .map_err(|e| self.limit_error(e))?;
            *paced += waiting.elapsed();
            l.attempts += 1;
            let sending = Instant::now();
            let sent = match &p.payload {
                Payload::Image(bytes) => {
                    if l.bytes_sent == 0 {
                        self.tracker.record_bytes(p.bytes_in, bytes.len() as u64);
                    }
                    l.bytes_sent = bytes.len() as u64;
                    self.client
                        .ingest_bytes(&self.pattern_id, bytes.clone(), opts.clone())
                        .await
                }
                Payload::Url(url) => {
                    self.client
                        .ingest_url(&self.pattern_id, url, opts.clone())
                        .await
                }
            };
            let e = match sent {
                Ok(a) => {
                    *ingest_rtt = Some(sending.elapsed());
                    self.pacer.accepted(ticket);
                    break a;
                }
                Err(e) => e,
            };
            match e {
                Error::QuotaExhausted {
                    retry_after, limit, ..
                } => {
                    self.pacer.refused(ticket, None);
                    self.tracker.record_rate_limited();
                    return Err(self.quota_exhausted(retry_after, limit));
                }
                e if e.is_rate_limited() => {
                    let floor = e.retry_after().unwrap_or(Duration::from_secs(1));
                    self.pacer.refused(ticket, e.retry_after());
                    self.tracker.record_rate_limited();
                    self.tracker.record_retry();
                    let waiting = Instant::now();
                    slot.release_while(self.sleep_unless_quota(floor)).await;
                    *paced += waiting.elapsed();
                }
                e => {
                    self.pacer.unused(ticket);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    failures += 1;
                    let Some(delay) = self.retry.next_delay(failures, started.elapsed(), &e) else {
                        return Err(e);
                    };
                    self.tracker.record_retry();
                    self.sleep_unless_quota(delay).await;
                }
            }
        };
        self.retry.on_success();
        let r = accepted.response;
        l.job_id = Some(r.job_id.clone());
        if r.status.is_terminal() {
            if r.status == imggo_core::JobStatus::Failed {
                return Err(Error::JobFailed {
                    job_id: r.job_id,
                    message: r.error.map(|e| e.message).unwrap_or_default(),
                });
            }
            if r.manifest.is_some() {
                return Ok(Job {
                    pattern_id: Some(self.pattern_id.clone()),
                    manifest: r.manifest,
                    ..Job::new(r.job_id, r.status)
                });
            }
        }
        match &self.wait {
            WaitMode::Poll(policy) => self.poll(&r.job_id, policy).await,
            #[cfg(feature = "webhook")]
            WaitMode::Webhook {
                router,
                fallback_after,
                poll,
            } => match slot
                .release_during(router.wait(&r.job_id, *fallback_after))
                .await
            {
                Some(ev) => WebhookRouter::job_from_event(ev, &self.pattern_id),
                None => self.poll(&r.job_id, poll).await,
            },
        }
    }

    /// Polls a job, first when jobs of this run are expected to finish (see [`JobClock`]):
    /// a service that takes 3 s is not polled five times before it could be done, and a
    /// 50 ms one is not left idle for a whole growth step after a slightly early poll.
    async fn poll(&self, job_id: &str, policy: &PollPolicy) -> Result<Job, Error> {
        let schedule = self.job_clock.schedule(policy);
        let waited = self
            .client
            .wait_for_job_counted(job_id, &schedule.policy)
            .await?;
        self.job_clock
            .observe(&schedule, waited.polls, waited.job.latency_ms);
        Ok(waited.job)
    }

    /// Emits `line` and a `duplicate` line (same result) for each input that waited on it.
    async fn finish(&self, out: &mpsc::Sender<ResultLine>, digest: &ContentHash, line: ResultLine) {
        let followers = lock(&self.inflight).remove(digest).unwrap_or_default();
        for f in followers {
            let mut d = line.clone();
            if let Some(e) = &mut d.error {
                // Name the input this line is for.
                e.message = format!("{}: identical to {}: {}", f.label, line.input, e.message);
            }
            d.input = f.label;
            if d.status != Outcome::Failed {
                d.status = Outcome::Duplicate;
            }
            d.attempts = 0;
            d.bytes_in = f.bytes_in;
            d.bytes_sent = 0;
            d.latency_ms = ms(f.started);
            self.emit(out, d).await;
        }
        self.emit(out, line).await;
    }
}
