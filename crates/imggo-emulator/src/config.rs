//! The emulator's configuration: users and keys, processing latency, rate limits, faults.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use imggo_core::Secret;

use crate::error::EmulatorError;

/// The user every key belongs to when no user is named.
pub const DEFAULT_USER: &str = "00000000-0000-4000-8000-000000000001";

/// The largest upload the service accepts: 10 MiB.
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;

/// Everything the emulator can be told.
///
/// [`Config`] has public fields and a [`Default`] that accepts any non-empty bearer key,
/// processes jobs instantly, enforces no limits, injects no faults, speaks the server
/// dialect and uses seed 0. Set fields directly (`Config { seed: 7, ..Config::default() }`)
/// or chain the builder methods:
///
/// ```
/// use std::time::Duration;
/// use imggo_emulator::{Config, LatencyModel};
///
/// let config = Config::builder()
///     .api_key("imggo_test_key")
///     .latency(LatencyModel::Fixed(Duration::from_millis(20)))
///     .rpm(600)
///     .seed(42);
/// assert_eq!(config.users.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen. The library default is `127.0.0.1:0` (a free port).
    pub addr: SocketAddr,
    /// Users and their API keys. Empty: any non-empty bearer key is accepted and belongs to
    /// [`DEFAULT_USER`].
    pub users: Vec<User>,
    /// How long a job takes from ingest to its terminal state.
    pub latency: LatencyModel,
    /// Per-user rate limits on ingest.
    pub limits: Limits,
    /// Seeded fault injection.
    pub faults: Faults,
    /// Webhook delivery: one attempt like the server, or the docs' retry schedule.
    pub webhook_retry: WebhookRetry,
    /// Timeout of one webhook delivery attempt (the server uses 30 s).
    pub webhook_timeout: Duration,
    /// Which dialect of the API to speak.
    pub dialect: Dialect,
    /// Seed of every random choice (ids, latencies, faults).
    pub seed: u64,
    /// Largest accepted upload in bytes (10 MiB like the server).
    pub max_image_bytes: usize,
    /// Jobs kept at most: past it, the oldest finished jobs (and their idempotency keys)
    /// are forgotten, and a lookup of one is answered like an unknown job.
    pub max_jobs: usize,
    /// Finished jobs older than this are forgotten the same way.
    pub job_ttl: Duration,
    /// Requests handled at once; more wait for a turn (holding their connection).
    pub max_requests: usize,
}

/// Jobs kept by default: a day of the project's own test runs and benches.
pub const MAX_JOBS: usize = 100_000;
/// How long a finished job is kept by default.
pub const JOB_TTL: Duration = Duration::from_secs(24 * 3600);
/// Requests handled at once by default. With the per-request body bound (the largest
/// upload plus 1 MiB of form), this bounds what request bodies can hold: about 1.4 GiB.
pub const MAX_REQUESTS: usize = 128;

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: Vec::new(),
            latency: LatencyModel::Fixed(Duration::ZERO),
            limits: Limits::default(),
            faults: Faults::default(),
            webhook_retry: WebhookRetry::Once,
            webhook_timeout: Duration::from_secs(30),
            dialect: Dialect::Server,
            seed: 0,
            max_image_bytes: MAX_IMAGE_BYTES,
            max_jobs: MAX_JOBS,
            job_ttl: JOB_TTL,
            max_requests: MAX_REQUESTS,
        }
    }
}

impl Config {
    /// The default configuration, to chain builder methods on.
    pub fn builder() -> Self {
        Self::default()
    }

    /// Listens on `addr`.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Accepts `key` for [`DEFAULT_USER`] (once any key is set, only configured keys pass).
    pub fn api_key(self, key: impl Into<String>) -> Self {
        self.user_key(DEFAULT_USER, key)
    }

    /// Accepts `key` for user `user_id`; keys of one user share its limits.
    pub fn user_key(mut self, user_id: impl Into<String>, key: impl Into<String>) -> Self {
        let user_id = user_id.into();
        let key = Secret::new(key);
        match self.users.iter_mut().find(|u| u.id == user_id) {
            Some(u) => u.keys.push(key),
            None => self.users.push(User {
                id: user_id,
                keys: vec![key],
            }),
        }
        self
    }

    /// Sets the processing-time model.
    pub fn latency(mut self, latency: LatencyModel) -> Self {
        self.latency = latency;
        self
    }

    /// Sets all rate limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Per-minute ingest rate per user (a token bucket; see [`Limits::burst`]).
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.limits.rpm = Some(rpm);
        self
    }

    /// Sets all faults at once.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Sets the dialect.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks that probabilities are in `0..=1` and ranges are ordered.
    pub fn validate(&self) -> Result<(), EmulatorError> {
        let probs = [
            ("fail_500", self.faults.fail_500),
            ("fail_503", self.faults.fail_503),
            ("drop", self.faults.drop),
            ("job_fail", self.faults.job_fail),
            ("slow", self.faults.slow),
            ("webhook_loss", self.faults.webhook_loss),
            ("race_dup", self.faults.race_dup),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return Err(EmulatorError::Config(format!(
                    "fault probability {name} must be within 0..=1, got {p}"
                )));
            }
        }
        let sum = self.faults.fail_500 + self.faults.fail_503 + self.faults.drop;
        if sum > 1.0 {
            return Err(EmulatorError::Config(format!(
                "fail_500 + fail_503 + drop must not exceed 1, got {sum}"
            )));
        }
        self.latency.validate()?;
        if self.max_jobs == 0 || self.max_requests == 0 {
            return Err(EmulatorError::Config(
                "max_jobs and max_requests must be at least 1".into(),
            ));
        }
        if self.limits.rpm == Some(0) {
            return Err(EmulatorError::Config("rpm must be at least 1".into()));
        }
        for u in &self.users {
            if u.keys.iter().any(Secret::is_empty) {
                return Err(EmulatorError::Config(format!(
                    "user {} has an empty API key",
                    u.id
                )));
            }
        }
        Ok(())
    }
}

/// A user and the API keys that act as it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id (a UUID on the server; any string here).
    pub id: String,
    /// Its bearer keys.
    pub keys: Vec<Secret>,
}

/// Which spelling of the API the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// What the server does: `succeeded`/`running`, `manifest`, UPPER_SNAKE codes, the
    /// server's 429 body `{error: "Rate limit exceeded", message, limit}`.
    #[default]
    Server,
    /// What the prose docs say: `completed`/`processing`, `result`, lower_snake codes,
    /// `error: {code, message}` on jobs, and the `{success:false, error:{code:
    /// "rate_limit_exceeded"}}` 429 body.
    Docs,
}

impl FromStr for Dialect {
    type Err = EmulatorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "server" => Ok(Self::Server),
            "docs" => Ok(Self::Docs),
            _ => Err(EmulatorError::Config(format!(
                "dialect must be server or docs, got {s:?}"
            ))),
        }
    }
}

/// How long a job takes from ingest to its terminal state. A job is `queued` for the
/// first half of its time and `running` for the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyModel {
    /// Always the same time.
    Fixed(Duration),
    /// Uniform between `min` and `max` (inclusive).
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
    /// Log-normal with the given median and 99th percentile.
    LogNormal {
        /// The median.
        median: Duration,
        /// The 99th percentile (at least the median).
        p99: Duration,
    },
}

impl LatencyModel {
    fn validate(&self) -> Result<(), EmulatorError> {
        match *self {
            Self::Fixed(_) => Ok(()),
            Self::Uniform { min, max } if min <= max => Ok(()),
            Self::Uniform { min, max } => Err(EmulatorError::Config(format!(
                "uniform latency range is reversed: {}-{} ms",
                min.as_millis(),
                max.as_millis()
            ))),
            Self::LogNormal { median, p99 } if median <= p99 && !median.is_zero() => Ok(()),
            Self::LogNormal { median, p99 } => Err(EmulatorError::Config(format!(
                "lognormal latency needs 0 < median <= p99, got {},{} ms",
                median.as_millis(),
                p99.as_millis()
            ))),
        }
    }

    /// Draws a processing time; `unit` and `normal` are a uniform `[0,1)` draw and a
    /// standard normal draw.
    pub(crate) fn sample(&self, unit: f64, normal: f64) -> Duration {
        match *self {
            Self::Fixed(d) => d,
            Self::Uniform { min, max } => {
                let span = (max - min).as_secs_f64();
                min + Duration::from_secs_f64(span * unit)
            }
            Self::LogNormal { median, p99 } => {
                // z of the 99th percentile of the standard normal.
                const Z99: f64 = 2.326_347_874_040_840_8;
                let mu = median.as_secs_f64().ln();
                let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
                Duration::from_secs_f64((mu + sigma * normal).exp().min(86_400.0))
            }
        }
    }
}

impl FromStr for LatencyModel {
    type Err = EmulatorError;

    /// Parses `N` (fixed ms), `uniform:A-B` or `lognormal:MEDIAN,P99` (milliseconds).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            EmulatorError::Config(format!(
                "latency must be N, uniform:A-B or lognormal:MEDIAN,P99 (ms), got {s:?}"
            ))
        };
        let ms = |v: &str| v.trim().parse::<u64>().map(Duration::from_millis);
        let model = if let Some(range) = s.strip_prefix("uniform:") {
            let (a, b) = range.split_once('-').ok_or_else(bad)?;
            Self::Uniform {
                min: ms(a).map_err(|_| bad())?,
                max: ms(b).map_err(|_| bad())?,
            }
        } else if let Some(pair) = s.strip_prefix("lognormal:") {
            let (a, b) = pair.split_once(',').ok_or_else(bad)?;
            Self::LogNormal {
                median: ms(a).map_err(|_| bad())?,
                p99: ms(b).map_err(|_| bad())?,
            }
        } else {
            Self::Fixed(ms(s).map_err(|_| bad())?)
        };
        model.validate()?;
        Ok(model)
    }
}

impl fmt::Display for LatencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(d) => write!(f, "{}", d.as_millis()),
            Self::Uniform { min, max } => {
                write!(f, "uniform:{}-{}", min.as_millis(), max.as_millis())
            }
            Self::LogNormal { median, p99 } => {
                write!(f, "lognormal:{},{}", median.as_millis(), p99.as_millis())
            }
        }
    }
}

/// Per-user limits on ingest, as the service enforces them. `None` = no such limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Ingests per month; `X-RateLimit-Limit` reports it (`-1` when unset).
    pub monthly_quota: Option<u64>,
    /// Minimum time between two accepted ingests of one user.
    pub min_gap: Option<Duration>,
    /// Ingests per minute, as a token bucket refilled at `rpm / 60` per second.
    pub rpm: Option<u32>,
    /// Bucket size of the per-minute limit (defaults to `rpm` when unset).
    pub burst: Option<u32>,
}

/// Seeded fault injection. Probabilities are per request (or per job / per delivery).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Answer 500 `INTERNAL_ERROR` instead of handling the request.
    pub fail_500: f64,
    /// Answer 503 `SERVICE_UNAVAILABLE` instead of handling the request.
    pub fail_503: f64,
    /// Handle the request, then drop the connection halfway through the response body.
    pub drop: f64,
    /// Fail a job that would have succeeded.
    pub job_fail: f64,
    /// Delay a response by [`Faults::slow_by`].
    pub slow: f64,
    /// The delay of a slow response.
    pub slow_by: Duration,
    /// Lose a webhook delivery (never sent).
    pub webhook_loss: f64,
    /// Answer 500 to an ingest whose idempotency key another request created a job for
    /// less than [`RACE_WINDOW`](crate::RACE_WINDOW) earlier, as the server does when two
    /// requests with one key pass its key check together and the second one hits the
    /// unique index after its upload. Only the first such duplicate can get it: a retry
    /// comes after the winner's insert and finds its job.
    pub race_dup: f64,
}

/// How webhook deliveries are retried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WebhookRetry {
    /// One attempt, no retry: what the server does.
    #[default]
    Once,
    /// Retry after each of these delays when an attempt fails (non-2xx or transport error).
    /// [`WebhookRetry::docs_schedule`] gives the docs' schedule scaled down.
    Schedule(Vec<Duration>),
}

impl WebhookRetry {
    /// Six retries after 1, 5, 10, 15, 30 and 41 minutes (the docs' 1 h 42 m in all),
    /// with every delay divided by `scale` (e.g. 60 000 turns minutes into milliseconds).
    pub fn docs_schedule(scale: u32) -> Self {
        let minutes = [1u64, 5, 10, 15, 30, 41];
        let scale = scale.max(1);
        Self::Schedule(
            minutes
                .iter()
                .map(|m| Duration::from_secs(m * 60) / scale)
                .collect(),
        )
    }
}
