//! [`RunSpec`]: what a batch run is, as plain data, and [`RunSpec::start`], which builds the
//! [`Pipeline`] from it exactly as the `imggo run` command does.
//!
//! The command line only turns its flags (and the environment and config file) into a
//! `RunSpec`; everything that follows from the settings lives here, so a library user who
//! fills in the same spec gets the same run:
//!
//! - the client retries with imggo-ratelimit's backoff counted into the run's tracker, and
//!   its rate-limit headers go to both the learned pacer and the tracker ([`Observers`]);
//! - `rps` becomes an evenly spaced token bucket (burst 1), or, with `limiter`, a
//!   [`RedisLimiter`](imggo_ratelimit::RedisLimiter) shared by every worker of the key;
//! - a `redis://` cache also brings the cross-worker single flight (a Redis lease), so
//!   identical images cost one job across machines;
//! - a webhook spec binds the receiver, registers the delivery URL with the service last
//!   (replacing a registration of the same URL left by a killed run) and hands back a
//!   [`WebhookRegistration`] that removes it.

use std::sync::Arc;
use std::time::Duration;

use imggo_cache::Cache;
use imggo_core::url::HttpUrl;
use imggo_core::{redact_url, Error, RateLimitObserver, RetryPolicy, Secret};

use crate::alert::{AlertSinks, Alerter};
use crate::metrics::{AlertRules, Tracker};
use imggo_http::{Client, ClientBuilder, PollPolicy};
use imggo_optimize::Options as OptimizeOptions;
use imggo_ratelimit::{
    AdaptiveConcurrency, AdaptiveConfig, Chain, HeaderPacer, Limiter, TokenBucket,
};

use crate::hooks::{CountingRetry, Observers};
use crate::pipeline::{Concurrency, Pipeline, WaitMode, DEFAULT_CACHE_TTL};
use crate::route::{ClassifySpec, Routes};

#[cfg(feature = "webhook")]
pub use webhook::{WebhookRegistration, WebhookSpec};

/// How many inputs are sent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencySpec {
    /// Exactly this many (at least 1).
    Fixed(usize),
    /// Adapted to the service ([`AdaptiveConcurrency`] with its default bounds).
    Auto,
}

impl Default for ConcurrencySpec {
    /// Ten, the command line's default.
    fn default() -> Self {
        Self::Fixed(10)
    }
}

/// Everything a batch run needs, as plain data: what `imggo run` reads from its flags.
///
/// ```no_run
/// # async fn f() -> Result<(), imggo_core::Error> {
/// use std::sync::Arc;
/// use imggo_batch::{Inputs, RunSpec};
///
/// let mut spec = RunSpec::new("550e8400-e29b-41d4-a716-446655440000", "imggo_...");
/// spec.endpoints = vec!["https://img-go.com/api".into()];
/// spec.cache = "memory".into();
/// spec.rps = Some(5.0);
/// let mut started = spec.start(Arc::new(imggo_batch::Tracker::new())).await?;
/// let pipeline = started.take_pipeline();
/// pipeline.prepare().await?;
/// let mut run = pipeline.run(Inputs::new(["invoices/"]));
/// while let Some(line) = run.next_line().await {
///     println!("{}", serde_json::to_string(&line).unwrap());
/// }
/// let report = run.report().await;
/// started.cleanup().await; // removes the webhook registration, if any
/// # let _ = report; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RunSpec {
    /// API base URLs (`https://host` gets `/api`); several are probed and the fastest is
    /// used; none means the public service.
    pub endpoints: Vec<String>,
    /// The API key.
    pub api_key: Secret,
    /// Per-attempt timeout of every request.
    pub timeout: Duration,
    /// The pattern every input runs with; with `routes` or `classify`, the fallback for
    /// inputs they do not route (empty: no fallback, such an input fails `NO_ROUTE`).
    pub pattern: String,
    /// `--route GLOB=PATTERN_ID`, in order: the first glob that matches an input's route
    /// name picks its pattern (see [`crate::route`]).
    pub routes: Vec<(String, String)>,
    /// `--classify`: a classification pattern reads each input that no glob routes, and
    /// its class picks the extraction pattern.
    pub classify: Option<ClassifySpec>,
    /// The result cache: `memory`, `file:DIR`, `redis://…` or `off` (see
    /// [`imggo_cache::parse_cache_url`]); a `redis://` cache also shares in-flight work.
    pub cache: String,
    /// A Redis URL that shares the `rps` limit between every worker of the API key.
    pub limiter: Option<String>,
    /// Ingests per second at most, retries included (a hard, evenly spaced ceiling).
    pub rps: Option<f64>,
    /// How many inputs are sent at once.
    pub concurrency: ConcurrencySpec,
    /// Optimiser settings; `None` uploads the original bytes.
    pub optimize: Option<OptimizeOptions>,
    /// Results by signed webhook (polling stays as the fallback); `None` polls.
    #[cfg(feature = "webhook")]
    pub webhook: Option<WebhookSpec>,
    /// Serve Prometheus `GET /metrics` on this address.
    #[cfg(feature = "metrics-server")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Alert thresholds: checked on every finished input over a sliding window while the
    /// run goes on (see [`Alerter`]), and over the whole run in the report.
    pub alert_rules: AlertRules,
    /// Where the alerts of the running batch go (webhook, command) and their window. An
    /// [`Alerter`] is built when `alert_rules` holds a success-rate or p95 rule.
    pub alerts: AlertSinks,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RunSpec");
        let endpoints: Vec<String> = self.endpoints.iter().map(|e| redact_url(e)).collect();
        d.field("endpoints", &endpoints)
            .field("api_key", &self.api_key)
            .field("timeout", &self.timeout)
            .field("pattern", &self.pattern)
            .field("routes", &self.routes)
            .field("classify", &self.classify)
            .field("cache", &redact_url(&self.cache))
            .field("limiter", &self.limiter.as_deref().map(redact_url))
            .field("rps", &self.rps)
            .field("concurrency", &self.concurrency)
            .field("optimize", &self.optimize);
        #[cfg(feature = "webhook")]
        d.field("webhook", &self.webhook);
        #[cfg(feature = "metrics-server")]
        d.field("metrics_addr", &self.metrics_addr);
        d.field("alert_rules", &self.alert_rules)
            .field("alerts", &self.alerts)
            .finish()
    }
}

/// A [`RunSpec`] started: the pipeline, and what was set up around it.
#[derive(Debug)]
pub struct Started {
    /// The pipeline; [`Pipeline::prepare`] it, then [`Pipeline::run`] it.
    pub pipeline: Option<Pipeline>,
    /// The webhook registration made for this run; [`Started::cleanup`] removes it.
    #[cfg(feature = "webhook")]
    pub webhook: Option<WebhookRegistration>,
    /// The metrics endpoint: its bound address and the task serving it.
    #[cfg(feature = "metrics-server")]
    pub metrics: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Started {
    /// The pipeline (once; it is moved out).
    ///
    /// # Panics
    /// When called a second time.
    pub fn take_pipeline(&mut self) -> Pipeline {
        self.pipeline.take().expect("the pipeline is taken once")
    }

    /// Removes what the run registered with the service (the webhook), also after an
    /// error; call it when the run ends. Calling it again does nothing.
    pub async fn cleanup(&mut self) {
        #[cfg(feature = "webhook")]
        if let Some(w) = self.webhook.take() {
            w.remove().await;
        }
    }

    /// Stops the metrics endpoint, if one is served.
    pub fn stop_metrics(&mut self) {
        #[cfg(feature = "metrics-server")]
        if let Some((_, task)) = self.metrics.take() {
            task.abort();
        }
    }
}

impl RunSpec {
    /// A spec with the command line's defaults: the public service, a 60 s attempt
    /// timeout, the file cache of [`default_cache`], concurrency 10, the default optimiser
    /// settings, polling, no rate ceiling, no alerts.
    pub fn new(pattern: impl Into<String>, api_key: impl Into<Secret>) -> Self {
        Self {
            endpoints: Vec::new(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(60),
            pattern: pattern.into(),
            routes: Vec::new(),
            classify: None,
            cache: default_cache(),
            limiter: None,
            rps: None,
            concurrency: ConcurrencySpec::default(),
            optimize: Some(OptimizeOptions::default()),
            #[cfg(feature = "webhook")]
            webhook: None,
            #[cfg(feature = "metrics-server")]
            metrics_addr: None,
            alert_rules: AlertRules::default(),
            alerts: AlertSinks::default(),
        }
    }

    /// Builds the pipeline and what goes around it (see the [module docs](self)). The
    /// webhook is registered last, once nothing else can fail, so that no error leaves an
    /// account-wide registration behind.
    pub async fn start(&self, tracker: Arc<Tracker>) -> Result<Started, Error> {
        let routes = Routes::new(
            &self.routes,
            self.classify.clone(),
            Some(self.pattern.clone()),
        )?;
        if routes.is_empty() {
            return Err(Error::Config(
                "--pattern is required (or --route / --classify)".into(),
            ));
        }
        let pacer = Arc::new(HeaderPacer::new());
        let observer: Arc<dyn RateLimitObserver> = Arc::new(Observers(vec![
            pacer.clone() as Arc<dyn RateLimitObserver>,
            tracker.clone(),
        ]));
        let retry = CountingRetry::backoff(tracker.clone());
        let client = connect(
            &self.endpoints,
            self.api_key.clone(),
            self.timeout,
            Some(retry),
            Some(observer),
        )
        .await?;
        let mut limiters: Vec<Arc<dyn Limiter>> = vec![pacer];
        limiters.extend(self.limiter().await?);
        let concurrency = self.concurrency()?;
        let (cache, deduper) = self.cache().await?;
        let rules = &self.alert_rules;
        let alerter = if rules.min_success_rate.is_some() || rules.max_p95.is_some() {
            Some(Arc::new(Alerter::new(
                self.alert_rules,
                self.alerts.clone(),
            )?))
        } else {
            None
        };

        #[cfg(feature = "webhook")]
        let (wait, registration) = match &self.webhook {
            Some(w) => {
                let (wait, url) = w.bind(client.base_url()).await?;
                (wait, Some((url, w.secret.clone())))
            }
            None => (WaitMode::Poll(PollPolicy::default()), None),
        };
        #[cfg(not(feature = "webhook"))]
        let wait = WaitMode::Poll(PollPolicy::default());

        #[cfg(feature = "metrics-server")]
        let metrics = match self.metrics_addr {
            Some(addr) => Some(crate::metrics::serve(addr, tracker.clone()).await?),
            None => None,
        };

        let mut b = Pipeline::builder()
            .client(client.clone())
            .pattern(self.pattern.clone())
            .routes(routes)
            .optimize(self.optimize.clone())
            .limiter(Arc::new(limiters.into_iter().collect::<Chain>()))
            .concurrency(concurrency)
            .wait(wait)
            .tracker(tracker)
            .alert_rules(self.alert_rules);
        if let Some(cache) = cache {
            b = b.cache(cache, DEFAULT_CACHE_TTL);
        }
        if let Some(d) = deduper {
            b = b.deduper(d);
        }
        if let Some(a) = alerter {
            b = b.alerter(a);
        }
        let pipeline = b.build()?;
        #[cfg(feature = "webhook")]
        let webhook = match registration {
            Some((url, secret)) => Some(WebhookRegistration::register(&client, url, secret).await?),
            None => None,
        };
        Ok(Started {
            pipeline: Some(pipeline),
            #[cfg(feature = "webhook")]
            webhook,
            #[cfg(feature = "metrics-server")]
            metrics,
        })
    }

    /// The `rps` ceiling: a token bucket with burst 1 (evenly spaced, so no window of
    /// any length ever holds more than `rps`), or the Redis limiter shared by the key.
    async fn limiter(&self) -> Result<Option<Arc<dyn Limiter>>, Error> {
        match (&self.limiter, self.rps) {
            #[cfg(feature = "redis")]
            (Some(url), Some(rps)) => Ok(Some(Arc::new(
                shared_limiter(url, rps, &self.api_key).await?,
            ))),
            #[cfg(not(feature = "redis"))]
            (Some(url), Some(_)) => Err(Error::Config(format!(
                "--limiter {}: this build has no Redis support (feature `redis`)",
                redact_url(url)
            ))),
            (Some(_), None) => Err(Error::Config("--limiter needs --rps".into())),
            (None, Some(rps)) => Ok(Some(Arc::new(
                TokenBucket::new(check_rps(rps)?, 1)
                    .map_err(|e| Error::Config(format!("--rps {rps}: {e}")))?,
            ))),
            (None, None) => Ok(None),
        }
    }

    fn concurrency(&self) -> Result<Concurrency, Error> {
        match self.concurrency {
            ConcurrencySpec::Auto => {
                let config = AdaptiveConfig::default();
                let max = config.max as usize;
                let adaptive = AdaptiveConcurrency::new(config)
                    .map_err(|e| Error::Config(format!("--concurrency auto: {e}")))?;
                Ok(Concurrency::Auto(Arc::new(adaptive), max))
            }
            ConcurrencySpec::Fixed(n) if n >= 1 => Ok(Concurrency::Fixed(n)),
            ConcurrencySpec::Fixed(n) => Err(Error::Config(format!(
                "--concurrency \"{n}\": want a positive number or auto"
            ))),
        }
    }

    /// The cache store, and with a Redis cache the deduper that shares in-flight work
    /// between the workers using it: one job per image.
    async fn cache(&self) -> Result<(Option<Arc<dyn Cache>>, Option<Arc<Deduper>>), Error> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Config(format!("--cache {}: {e}", redact_url(&self.cache)))
        };
        let cache = open_cache(&self.cache).await.map_err(|e| bad(&e))?;
        #[cfg(feature = "redis")]
        if let Ok(imggo_cache::CacheSpec::Redis(url)) = imggo_cache::parse_cache_url(&self.cache) {
            use imggo_cache::{DedupOptions, RedisLink, RedisOptions};
            let link = RedisLink::connect(&url, RedisOptions::default())
                .await
                .map_err(|e| bad(&e))?;
            let deduper = imggo_cache::Deduper::with_redis(link, DedupOptions::default());
            return Ok((cache, Some(Arc::new(deduper))));
        }
        Ok((cache, None))
    }
}

type Deduper = imggo_cache::Deduper<imggo_core::Job, Error>;

/// `https://host` → `https://host/api`; a URL with a path is kept (without a trailing `/`).
pub fn normalize_endpoint(url: &str) -> Result<String, Error> {
    let url = url.trim().trim_end_matches('/');
    let parsed = HttpUrl::parse(url).map_err(|e| Error::Config(format!("endpoint {url:?} {e}")))?;
    Ok(if parsed.has_path() {
        url.to_owned()
    } else {
        format!("{url}/api")
    })
}

/// The client of a run: `endpoints` normalised ([`normalize_endpoint`]; none is the
/// public service, several are probed and the fastest is used), with the key, the
/// per-attempt timeout and the optional hooks.
pub async fn connect(
    endpoints: &[String],
    api_key: Secret,
    timeout: Duration,
    retry: Option<Arc<dyn RetryPolicy>>,
    observer: Option<Arc<dyn RateLimitObserver>>,
) -> Result<Client, Error> {
    let endpoints = endpoints
        .iter()
        .map(|e| normalize_endpoint(e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut b: ClientBuilder = Client::builder().api_key(api_key).attempt_timeout(timeout);
    if let Some(r) = retry {
        b = b.retry_policy(r);
    }
    if let Some(o) = observer {
        b = b.observer(o);
    }
    match endpoints.len() {
        0 => b.build(),
        1 => b.base_url(endpoints[0].clone()).build(),
        _ => Client::fastest(&endpoints, b).await,
    }
}

/// `$XDG_CACHE_HOME/imggo` or `~/.cache/imggo`, as `file:DIR`: the default cache.
pub fn default_cache() -> String {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    format!("file:{}", base.join("imggo").display())
}

/// Opens a cache by its URL (`memory`, `file:DIR`, `redis://...` or `off`), with a memory
/// tier in front of file and Redis stores.
pub async fn open_cache(spec: &str) -> Result<Option<Arc<dyn Cache>>, String> {
    let spec = imggo_cache::parse_cache_url(spec).map_err(|e| e.to_string())?;
    imggo_cache::open_cache(&spec, &imggo_cache::OpenOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// The Redis limiter shared by every worker using the same API key (namespaced by a hash
/// of the key, never the key itself): one ingest per `1/rps` seconds.
#[cfg(feature = "redis")]
async fn shared_limiter(
    url: &str,
    rps: f64,
    key: &Secret,
) -> Result<imggo_ratelimit::RedisLimiter, Error> {
    use imggo_ratelimit::{RedisLimiter, Subject};
    // One per 1/rps seconds in a sliding window: a hard ceiling that is never rounded.
    let (limit, window) = (1, Duration::from_secs_f64(1.0 / check_rps(rps)?));
    let conn = RedisLimiter::connect(url)
        .await
        .map_err(|e| Error::Config(format!("--limiter {}: {e}", redact_url(url))))?;
    RedisLimiter::new(conn, Subject::api_key(key), limit, window)
        .map_err(|e| Error::Config(format!("--limiter {}: {e}", redact_url(url))))
}

/// `rps` as a rate the limiters can hold: positive, finite, at least one per day.
pub fn check_rps(rps: f64) -> Result<f64, Error> {
    if (1.0 / 86_400.0..=1e6).contains(&rps) {
        Ok(rps)
    } else {
        Err(Error::Config(format!(
            "--rps {rps}: want a rate between one per day (0.0000116) and 1000000 per second"
        )))
    }
}

#[cfg(feature = "webhook")]
mod webhook {
    use std::net::SocketAddr;
    use std::time::Duration;

    use imggo_core::url::HttpUrl;
    use imggo_core::{Error, Secret};
    use imggo_http::{Client, PollPolicy, ReceiverOptions, WebhookReceiver};

    use crate::pipeline::WaitMode;
    use crate::webhook::WebhookRouter;

    /// Results by signed webhook: where to listen, the URL the service delivers to, the
    /// signing secret and how long to wait for a delivery before polling.
    #[derive(Debug, Clone)]
    pub struct WebhookSpec {
        /// The receiver's address.
        pub listen: SocketAddr,
        /// The URL the service delivers to (a public address, a tunnel or a reverse proxy
        /// in front of `listen`); needed unless the endpoint is on this machine.
        pub url: Option<String>,
        /// The signing secret, at least 16 characters.
        pub secret: Secret,
        /// How long to wait for a delivery before polling the job.
        pub fallback_after: Duration,
    }

    impl WebhookSpec {
        /// Binds the receiver; returns the wait mode and the URL to register.
        pub(super) async fn bind(&self, endpoint: &str) -> Result<(WaitMode, String), Error> {
            if self.secret.expose().len() < 16 {
                return Err(Error::Config(
                    "--webhook-secret must be at least 16 characters".into(),
                ));
            }
            let (local, receiver) =
                WebhookReceiver::bind(self.listen, self.secret.clone(), ReceiverOptions::default())
                    .await?;
            let url = delivery_url(self.url.as_deref(), local, endpoint)?;
            let wait = WaitMode::Webhook {
                router: WebhookRouter::spawn(receiver),
                fallback_after: self.fallback_after,
                poll: PollPolicy::default(),
            };
            Ok((wait, url))
        }
    }

    /// The URL to register for deliveries to the receiver bound at `local`: `given`, or,
    /// when the service runs on this machine (the emulator), the receiver's own address.
    /// A remote service can never reach `127.0.0.1` or `0.0.0.0`, so it needs `given`.
    fn delivery_url(
        given: Option<&str>,
        local: SocketAddr,
        endpoint: &str,
    ) -> Result<String, Error> {
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

    /// A webhook registered for one run; [`remove`](Self::remove) deletes it.
    pub struct WebhookRegistration {
        client: Client,
        id: String,
        url: String,
    }

    impl std::fmt::Debug for WebhookRegistration {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("WebhookRegistration")
                .field("id", &self.id)
                .field("url", &self.url)
                .finish_non_exhaustive()
        }
    }

    impl WebhookRegistration {
        /// Registers `url` for job results with `secret`. A registration of the same URL
        /// left by an earlier run (one killed before it could remove it) may carry another
        /// secret, and every delivery would then fail its signature check: it is replaced.
        /// A create whose answer is lost is not repeated blindly (see
        /// [`Client::register_webhook`]): one run makes one registration.
        pub async fn register(client: &Client, url: String, secret: Secret) -> Result<Self, Error> {
            for stale in client
                .list_webhooks()
                .await?
                .iter()
                .filter(|w| w.url == url)
            {
                client.delete_webhook(&stale.id).await?;
            }
            let created = client
                .register_webhook(&imggo_core::CreateWebhook {
                    url: url.clone(),
                    events: vec!["job.succeeded".into(), "job.failed".into()],
                    secret: Some(secret),
                })
                .await?;
            Ok(Self {
                client: client.clone(),
                id: created.id,
                url,
            })
        }

        /// Deletes the registration (a failure is ignored: the next run with the same URL
        /// replaces it).
        pub async fn remove(self) {
            let _ = self.client.delete_webhook(&self.id).await;
        }
    }
}
