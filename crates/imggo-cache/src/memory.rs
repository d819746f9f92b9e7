//! [`MemoryCache`]: an in-process store bounded by entries and bytes, with per-entry TTL.
//!
//! Built on `quick_cache` (a sharded CLOCK-Pro/S3-FIFO-style cache: new entries enter a
//! small cold queue and only entries read again are promoted, with ghost entries
//! remembering recent evictions). That keeps the hit rate under scans: a one-off pass
//! over new images cannot push out a working set that is read again.
//!
//! Why not moka: with a weigher (needed for the byte bound) moka 0.12.16 sizes its
//! frequency sketch to a quarter of the entries and lost the whole hot set to a scan in
//! our test (0 of 100 kept; quick_cache kept 100 of 100, see `tests/memory.rs`). Moka's
//! per-entry expiry is not needed either: the expiry time is kept in the entry and
//! checked on read (an expired entry is removed when read, or evicted like any other).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use imggo_core::CacheKey;

use crate::value::Counters;
use crate::{Cache, CacheError, CacheStats, CachedResult, Invalidation};

/// Limits of a [`MemoryCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCacheConfig {
    /// At most this many entries.
    pub max_entries: u64,
    /// At most this many bytes of entries (measured as the JSON length of each value).
    pub max_bytes: u64,
}

impl Default for MemoryCacheConfig {
    /// 100 000 entries, 256 MiB.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

#[derive(Debug)]
struct Entry {
    value: Arc<CachedResult>,
    /// xxh3-64 of the pattern id (the number behind `imggo_core::hash::pattern_digest`).
    pattern: u64,
    size: u64,
    expires_at: Instant,
}

/// Charges each entry `max(its bytes, max_bytes / max_entries)`, so that a capacity of
/// `max_bytes` bounds both the bytes and the number of entries.
#[derive(Clone)]
struct Charge {
    floor: u64,
}

impl quick_cache::Weighter<u128, Arc<Entry>> for Charge {
    fn weight(&self, _: &u128, e: &Arc<Entry>) -> u64 {
        e.size.max(self.floor)
    }
}

/// An in-process cache; see the [module docs](self).
pub struct MemoryCache {
    cache: quick_cache::sync::Cache<u128, Arc<Entry>, Charge>,
    counters: Counters,
}

impl MemoryCache {
    /// A cache with the given limits (a zero limit is taken as 1).
    pub fn new(config: MemoryCacheConfig) -> Self {
        let max_entries = config.max_entries.max(1);
        let max_bytes = config.max_bytes.max(1);
        let floor = max_bytes.div_ceil(max_entries).max(1);
        let estimated = usize::try_from(max_entries).unwrap_or(usize::MAX);
        Self {
            cache: quick_cache::sync::Cache::with_weighter(estimated, max_bytes, Charge { floor }),
            counters: Counters::default(),
        }
    }

    fn lookup(&self, key: &CacheKey, now: Instant) -> Option<Arc<CachedResult>> {
        let digest = key.digest().as_u128();
        let found = match self.cache.get(&digest) {
            Some(e) if e.expires_at > now => Some(Arc::clone(&e.value)),
            Some(_) => {
                self.cache.remove_if(&digest, |e| e.expires_at <= now);
                None
            }
            None => None,
        };
        self.counters.lookup(found.is_some());
        found
    }

    fn store(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        // A TTL too long for the clock means "as long as the cache keeps it".
        let expires_at = now
            .checked_add(ttl)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let entry = Entry {
            size: value.encoded_len() as u64,
            value,
            pattern: xxhash_rust::xxh3::xxh3_64(key.pattern_id.as_bytes()),
            expires_at,
        };
        self.cache.insert(key.digest().as_u128(), Arc::new(entry));
        self.counters.put();
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(MemoryCacheConfig::default())
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.cache.len())
            .finish()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        self.lookup(key, Instant::now())
    }

    async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let now = Instant::now();
        keys.iter().map(|k| self.lookup(k, now)).collect()
    }

    async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
        self.store(key, value, ttl)
    }

    async fn put_many(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
        for (key, value) in items {
            self.store(key, Arc::clone(value), ttl);
        }
    }

    /// Removes the pattern's entries and counts them (O(entries); rare, and the memory
    /// store is small).
    async fn invalidate_pattern(&self, pattern_id: &str) -> Result<Invalidation, CacheError> {
        let pattern = xxhash_rust::xxh3::xxh3_64(pattern_id.as_bytes());
        let dropped = AtomicU64::new(0);
        self.cache.retain(|_, e| {
            let keep = e.pattern != pattern;
            if !keep {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
        Ok(Invalidation {
            pattern_id: pattern_id.to_owned(),
            dropped: Some(dropped.into_inner()),
            generation: None,
        })
    }

    /// Counts live entries and their bytes by walking the cache (O(entries)).
    async fn stats(&self) -> CacheStats {
        let now = Instant::now();
        let (mut entries, mut bytes) = (0, 0);
        for (_, e) in self.cache.iter() {
            if e.expires_at > now {
                entries += 1;
                bytes += e.size;
            }
        }
        self.counters.snapshot(Some(entries), Some(bytes))
    }
}
