//! [`PipelineBuilder`] and the settings it takes: [`Concurrency`], [`WaitMode`].

use super::*;

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
    routes: Option<Routes>,
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
    alerter: Option<Arc<Alerter>>,
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

    /// Routing by name and by class (see [`crate::route`]); the [`pattern`](Self::pattern)
    /// is the fallback unless `routes` has one. Without routes every input runs with the
    /// pattern.
    pub fn routes(mut self, routes: Routes) -> Self {
        self.routes = Some(routes);
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

    /// Checks the alert rules on every finished input while the run goes on and sends
    /// their state changes (see [`Alerter`]); the report then lists every rule that fired.
    pub fn alerter(mut self, alerter: Arc<Alerter>) -> Self {
        self.alerter = Some(alerter);
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
        let routes = match (self.routes, self.pattern_id) {
            (Some(r), Some(p)) if r.fallback().is_none() => r.with_fallback(p),
            (Some(r), _) => r,
            (None, p) => Routes::single(p.unwrap_or_default()),
        };
        if routes.is_empty() {
            return Err(Error::Config(
                "pipeline needs a pattern id (--pattern) or routes (--route, --classify)".into(),
            ));
        }
        let pattern_id = routes.fallback().unwrap_or_default().to_owned();
        let versions: HashMap<String, u32> = self
            .pattern_version
            .filter(|_| !pattern_id.is_empty())
            .map(|v| (pattern_id.clone(), v))
            .into_iter()
            .collect();
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
                routes,
                versions: Mutex::new(versions),
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
            alerter: self.alerter,
            skip: self.skip,
        })
    }
}

impl Pipeline {
    /// Starts building a pipeline.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder {
            client: None,
            pattern_id: None,
            pattern_version: None,
            routes: None,
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
            alerter: None,
            skip: HashSet::new(),
        }
    }
}
