//! [`RedisLimiter`]: one sliding-window limit shared by every process, decided atomically
//! inside Redis.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imggo_core::{ContentHash, Secret};
use redis::aio::ConnectionManager;
use redis::Script;

use crate::error::{ConfigError, LimitError};
use crate::limiter::Limiter;

/// The decision script: a sliding-window log in one sorted set per subject.
///
/// It runs atomically inside Redis, so no two callers can both see "one slot left"; the
/// time comes from Redis `TIME`, so clients with skewed clocks agree. Each admission
/// adds a member that is unique across processes (a random per-limiter nonce and a
/// counter). Returns `{allowed, remaining, retry_after_us, now_us}`.
const SCRIPT: &str = r"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  return {1, limit - count - 1, 0, now}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now, now}
";

/// What the limit applies to: one API key or one user. Becomes part of the Redis key.
///
/// API keys are never stored: [`Subject::api_key`] keeps only their xxh3-128 hash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    /// The subject of an API key, named by the key's hash (the key itself is not kept).
    pub fn api_key(key: &Secret) -> Self {
        Self(format!(
            "key:{}",
            ContentHash::of(key.expose().as_bytes()).hex()
        ))
    }

    /// The subject of a user id (the server pools every key of a user, so this is the
    /// one to use when several keys of one account run at once).
    pub fn user(id: &str) -> Self {
        Self(format!("user:{id}"))
    }

    /// Any other named scope, e.g. `"batch:nightly"`.
    pub fn named(name: &str) -> Self {
        Self(format!("name:{name}"))
    }

    /// The subject as it appears in the Redis key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({})", self.0)
    }
}

/// What [`Limiter::acquire`] does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Admit the request (the batch goes on; the server's own limit still applies).
    Open,
    /// Refuse with [`LimitError::Backend`] (never exceed the shared limit).
    Closed,
}

/// One decision of the shared limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may go.
    pub allowed: bool,
    /// Requests left in the current window after this one.
    pub remaining: u64,
    /// When refused, how long until a slot frees up (zero when allowed).
    pub retry_after: Duration,
    /// Redis's clock at the decision (since the Unix epoch); every process shares it.
    pub server_time: Duration,
}

/// At most `limit` requests in any window of `window`, for all processes that share a
/// Redis and a [`Subject`].
///
/// Each decision is one `EVALSHA` of a Lua script (loaded again automatically after a
/// `NOSCRIPT`, e.g. after a Redis restart) that prunes, counts and records in one atomic
/// step with Redis's own clock: unlike separate ZREMRANGEBYSCORE / ZCARD / ZADD calls on
/// each client's clock, concurrent workers cannot overshoot. The window is a true sliding
/// window (a log of admissions in a sorted set, `limit` entries at most per subject).
///
/// [`RedisLimiter::check`] asks once; the [`Limiter`] implementation waits for the
/// `retry_after` of a refusal and asks again. When Redis cannot be reached, `check`
/// returns [`LimitError::Backend`] and `acquire` follows the [`FailureMode`]. Requests
/// from concurrent tasks share the multiplexed connection and are pipelined on it.
///
/// ```no_run
/// use std::time::Duration;
/// use imggo_core::Secret;
/// use imggo_ratelimit::{FailureMode, Limiter, RedisLimiter, Subject};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = RedisLimiter::connect("redis://127.0.0.1/").await?;
/// let key = Secret::new("imggo_0123...");
/// let limiter = RedisLimiter::new(conn, Subject::api_key(&key), 60, Duration::from_secs(60))?
///     .with_failure_mode(FailureMode::Closed);
/// limiter.acquire().await?; // at most 60 per minute across every process
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Arc<Script>,
    key: String,
    prefix: String,
    subject: Subject,
    limit: u32,
    window_us: u64,
    failure: FailureMode,
    max_wait: Duration,
    nonce: u64,
    seq: Arc<AtomicU64>,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("key", &self.key)
            .field("limit", &self.limit)
            .field("window_us", &self.window_us)
            .field("failure", &self.failure)
            .finish()
    }
}

/// Default Redis key prefix.
const PREFIX: &str = "imggo:rl:";

impl RedisLimiter {
    /// A connection suited to the limiter: it reconnects on its own, and a connect or a
    /// command gives up after one second, so an outage is reported quickly instead of
    /// stalling the batch.
    pub async fn connect(url: &str) -> Result<ConnectionManager, LimitError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        ConnectionManager::new_with_config(client, config)
            .await
            .map_err(backend)
    }

    /// At most `limit` admissions per `window` for `subject`, failing open by default.
    /// Errors when `limit` is 0 or the window is shorter than a millisecond.
    pub fn new(
        conn: ConnectionManager,
        subject: Subject,
        limit: u32,
        window: Duration,
    ) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new("limit", limit, "must be at least 1"));
        }
        if window < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "window",
                format!("{window:?}"),
                "must be at least 1 ms",
            ));
        }
        Ok(Self {
            conn,
            script: Arc::new(Script::new(SCRIPT)),
            key: format!("{PREFIX}{{{}}}", subject.as_str()),
            prefix: PREFIX.to_owned(),
            subject,
            limit,
            window_us: window.as_micros().min(u128::from(u64::MAX / 4)) as u64,
            failure: FailureMode::Open,
            max_wait: Duration::from_secs(600),
            nonce: rand::random(),
            seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// What to do when Redis is down (default [`FailureMode::Open`]).
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure = mode;
        self
    }

    /// The Redis key prefix (default `imggo:rl:`); the key is `<prefix>{<subject>}`.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self.key = format!("{}{{{}}}", self.prefix, self.subject.as_str());
        self
    }

    /// The longest `acquire` waits for a slot before refusing with
    /// [`LimitError::WaitTooLong`] (default 10 minutes).
    pub fn with_max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// The same limiter (connection, limit, settings) for another subject.
    pub fn for_subject(&self, subject: Subject) -> Self {
        let mut l = self.clone();
        l.key = format!("{}{{{}}}", self.prefix, subject.as_str());
        l.subject = subject;
        l
    }

    /// The Redis key this limiter decides on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The SHA1 of the decision script (`EVALSHA <sha> 1 <key> <limit> <window µs>
    /// <member>`), for benchmarks against `redis-benchmark` and for audits.
    pub fn script_hash(&self) -> &str {
        self.script.get_hash()
    }

    /// Asks Redis once whether one request may go now, and records it if so. Errors
    /// only when Redis cannot be reached or answers with an error.
    pub async fn check(&self) -> Result<Decision, LimitError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let member = format!("{:016x}-{seq:x}", self.nonce);
        let mut conn = self.conn.clone();
        let (allowed, remaining, retry_us, now_us): (i64, i64, i64, i64) = self
            .script
            .key(&self.key)
            .arg(self.limit)
            .arg(self.window_us)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            retry_after: Duration::from_micros(retry_us.max(0) as u64),
            server_time: Duration::from_micros(now_us.max(0) as u64),
        })
    }
}

fn backend(e: redis::RedisError) -> LimitError {
    LimitError::Backend {
        message: e.to_string(),
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn acquire(&self) -> Result<(), LimitError> {
        loop {
            match self.check().await {
                Ok(d) if d.allowed => return Ok(()),
                Ok(d) => {
                    if d.retry_after > self.max_wait {
                        return Err(LimitError::WaitTooLong {
                            wait: d.retry_after,
                            cap: self.max_wait,
                        });
                    }
                    // At least 1 ms so that a refusal at the window's edge cannot spin.
                    tokio::time::sleep(d.retry_after.max(Duration::from_millis(1))).await;
                }
                Err(e) => {
                    return match self.failure {
                        FailureMode::Open => Ok(()),
                        FailureMode::Closed => Err(e),
                    }
                }
            }
        }
    }
}
