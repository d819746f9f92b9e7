//! The [`Cache`] trait every store implements.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imggo_core::CacheKey;

use crate::{CacheError, CacheStats, CachedResult, Invalidation};

/// A store of API results keyed by [`CacheKey`] (content hash, pattern id and version,
/// settings fingerprint).
///
/// # The never-fail contract
///
/// A cache is an optimisation: it must never fail the caller's batch. So reads and writes
/// return no errors:
///
/// - [`get`](Cache::get) / [`get_many`](Cache::get_many) on a broken store (I/O error,
///   corrupt or truncated entry, Redis down or slow) return `None`, a miss. The failure is
///   counted in [`CacheStats::errors`] and logged with `tracing::warn!`.
/// - [`put`](Cache::put) / [`put_many`](Cache::put_many) that cannot store count and log
///   the failure the same way and return normally; the next read is simply a miss.
///
/// Only calls the user makes on purpose report errors: opening a store and
/// [`invalidate_pattern`](Cache::invalidate_pattern), whose failure must not pass silently.
///
/// Values are shared as `Arc<CachedResult>` so that a memory hit costs a reference-count
/// increment rather than a deep copy of the manifest.
///
/// Blanket impls for `Arc<C>` and `Box<C>` let a facade hold an `Arc<dyn Cache>`.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The live entry for `key`, or `None` (absent, expired, corrupt, or store failing).
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>>;

    /// [`get`](Cache::get) for many keys, answered in the same order. Stores override it
    /// to batch (one Redis round trip, one blocking-pool hop for files).
    async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await);
        }
        out
    }

    /// Stores `value` under `key` for `ttl`. A zero `ttl` stores nothing.
    async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration);

    /// [`put`](Cache::put) for many entries with one TTL.
    async fn put_many(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
        for (key, value) in items {
            self.put(key, Arc::clone(value), ttl).await;
        }
    }

    /// Makes every entry of `pattern_id` (all versions, all settings) unreachable.
    async fn invalidate_pattern(&self, pattern_id: &str) -> Result<Invalidation, CacheError>;

    /// Counters since the store was opened (by this process), and its size when known.
    async fn stats(&self) -> CacheStats;
}

/// `Cache` for a smart pointer to a cache: every method goes to the pointee.
macro_rules! forward_cache {
    ($ptr:ident) => {
        #[async_trait]
        impl<C: Cache + ?Sized> Cache for $ptr<C> {
            async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
                (**self).get(key).await
            }
            async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
                (**self).get_many(keys).await
            }
            async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
                (**self).put(key, value, ttl).await
            }
            async fn put_many(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
                (**self).put_many(items, ttl).await
            }
            async fn invalidate_pattern(
                &self,
                pattern_id: &str,
            ) -> Result<Invalidation, CacheError> {
                (**self).invalidate_pattern(pattern_id).await
            }
            async fn stats(&self) -> CacheStats {
                (**self).stats().await
            }
        }
    };
}

forward_cache!(Arc);
forward_cache!(Box);
