//! [`RedisLink`]: one Redis connection with a per-call timeout and a breaker, shared by
//! [`crate::RedisCache`] and [`crate::Deduper`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::CacheError;
use imggo_core::redact_url;

/// How a [`RedisLink`] talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisOptions {
    /// Longest wait for one call (connect included). A slow or dead Redis costs at most
    /// this per call, and then nothing for [`cooldown`](Self::cooldown).
    pub timeout: Duration,
    /// After a failure, calls skip Redis (a miss, counted) for this long instead of each
    /// waiting for the timeout.
    pub cooldown: Duration,
}

impl Default for RedisOptions {
    /// 250 ms per call, 1 s cooldown.
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(250),
            cooldown: Duration::from_secs(1),
        }
    }
}

/// A reconnecting Redis connection (redis' `ConnectionManager`) with a per-call timeout
/// and a breaker that stops calling a Redis that just failed. Cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    conn: ConnectionManager,
    url: Arc<str>,
    options: RedisOptions,
    breaker: Arc<Breaker>,
}

struct Breaker {
    epoch: Instant,
    /// Milliseconds after `epoch` before which calls are skipped.
    open_until_ms: AtomicU64,
    down: AtomicBool,
}

impl RedisLink {
    /// Connects to `url` (`redis://`, `rediss://`, `unix://`) and checks it with `PING`.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, CacheError> {
        let link = Self::connect_lazy(url, options)?;
        let mut conn = link.conn.clone();
        link.call(async move { redis::cmd("PING").query_async::<()>(&mut conn).await })
            .await?;
        Ok(link)
    }

    /// Builds the link without connecting: the first call connects, and a Redis that is
    /// down at start is handled like one that goes down later.
    pub fn connect_lazy(url: &str, options: RedisOptions) -> Result<Self, CacheError> {
        let masked: Arc<str> = redact_url(url).into();
        let redis_err = |source| CacheError::Redis {
            url: masked.to_string(),
            source,
        };
        let client = redis::Client::open(url).map_err(redis_err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(options.cooldown);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(redis_err)?;
        Ok(Self {
            conn,
            url: masked,
            options,
            breaker: Arc::new(Breaker {
                epoch: Instant::now(),
                open_until_ms: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
        })
    }

    /// The server, with any password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options it was built with.
    pub fn options(&self) -> RedisOptions {
        self.options
    }

    /// True while the breaker is open: Redis failed within the last cooldown and calls
    /// skip it.
    pub fn is_down(&self) -> bool {
        self.now_ms() < self.breaker.open_until_ms.load(Ordering::Relaxed)
    }

    /// A handle for commands (pass it to [`call`](Self::call)'s future).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn now_ms(&self) -> u64 {
        self.breaker.epoch.elapsed().as_millis() as u64
    }

    /// Runs one Redis call under the timeout and the breaker. On failure, opens the
    /// breaker and logs a warning once per outage; the caller decides what a failure means
    /// (a miss, for the cache).
    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        if self.is_down() {
            return Err(CacheError::Unavailable {
                url: self.url.to_string(),
            });
        }
        let result = match tokio::time::timeout(self.options.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(CacheError::Redis {
                url: self.url.to_string(),
                source,
            }),
            Err(_) => Err(CacheError::Timeout {
                url: self.url.to_string(),
                timeout: self.options.timeout,
            }),
        };
        match &result {
            Ok(_) => {
                if self.breaker.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "imggo_cache::redis", url = %self.url, "redis is back");
                }
            }
            Err(e) if is_connection_failure(e) => {
                let until = self.now_ms() + self.options.cooldown.as_millis() as u64;
                self.breaker.open_until_ms.store(until, Ordering::Relaxed);
                if !self.breaker.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "imggo_cache::redis",
                        "redis unavailable, calls skip it for {:?} at a time: {e}",
                        self.options.cooldown
                    );
                }
            }
            Err(_) => {}
        }
        result
    }
}

/// Failures that say Redis is unreachable, too slow, or skipped for a recent failure (as
/// opposed to a bad command).
pub(crate) fn is_connection_failure(e: &CacheError) -> bool {
    match e {
        CacheError::Timeout { .. } | CacheError::Unavailable { .. } => true,
        CacheError::Redis { source, .. } => {
            source.is_io_error()
                || source.is_connection_dropped()
                || source.is_connection_refusal()
                || source.is_timeout()
        }
        _ => false,
    }
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish()
    }
}
