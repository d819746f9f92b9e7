//! [`Tiered`]: a fast cache (memory) in front of a shared or durable one (file, Redis).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imggo_core::CacheKey;

use crate::value::Counters;
use crate::{Cache, CacheError, CacheStats, CachedResult, Invalidation};

/// Two caches as one: reads try `front`, then `back`, and a back hit fills the front;
/// writes go to both.
///
/// The front keeps an entry at most [`front_ttl`](Tiered::with_front_ttl) (default five
/// minutes), which bounds how long it can serve a result that another worker has since
/// invalidated in the shared back store. Invalidation through this `Tiered` clears both.
pub struct Tiered<F, B> {
    front: F,
    back: B,
    front_ttl: Duration,
    counters: Counters,
}

impl<F: Cache, B: Cache> Tiered<F, B> {
    /// `front` before `back`.
    pub fn new(front: F, back: B) -> Self {
        Self {
            front,
            back,
            front_ttl: Duration::from_secs(300),
            counters: Counters::default(),
        }
    }

    /// Sets the longest time an entry lives in the front.
    pub fn with_front_ttl(mut self, ttl: Duration) -> Self {
        self.front_ttl = ttl;
        self
    }

    /// The front cache (for its own stats).
    pub fn front(&self) -> &F {
        &self.front
    }

    /// The back cache (for its own stats).
    pub fn back(&self) -> &B {
        &self.back
    }
}

impl<F, B> std::fmt::Debug for Tiered<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiered")
            .field("front_ttl", &self.front_ttl)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<F: Cache, B: Cache> Cache for Tiered<F, B> {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        if let Some(v) = self.front.get(key).await {
            self.counters.hit();
            return Some(v);
        }
        let found = self.back.get(key).await;
        if let Some(v) = &found {
            self.front.put(key, Arc::clone(v), self.front_ttl).await;
        }
        self.counters.lookup(found.is_some());
        found
    }

    async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let mut out = self.front.get_many(keys).await;
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let wanted: Vec<CacheKey> = missing.iter().map(|&i| keys[i].clone()).collect();
            let found = self.back.get_many(&wanted).await;
            let mut fill = Vec::new();
            for (i, v) in missing.into_iter().zip(found) {
                if let Some(v) = v {
                    fill.push((keys[i].clone(), Arc::clone(&v)));
                    out[i] = Some(v);
                }
            }
            if !fill.is_empty() {
                self.front.put_many(&fill, self.front_ttl).await;
            }
        }
        for v in &out {
            self.counters.lookup(v.is_some());
        }
        out
    }

    async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
        self.back.put(key, Arc::clone(&value), ttl).await;
        self.front.put(key, value, ttl.min(self.front_ttl)).await;
        if !ttl.is_zero() {
            self.counters.put();
        }
    }

    async fn put_many(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
        self.back.put_many(items, ttl).await;
        self.front.put_many(items, ttl.min(self.front_ttl)).await;
        if !ttl.is_zero() {
            for _ in items {
                self.counters.put();
            }
        }
    }

    /// Clears the front, then the back; reports what the back reports.
    async fn invalidate_pattern(&self, pattern_id: &str) -> Result<Invalidation, CacheError> {
        let front = self.front.invalidate_pattern(pattern_id).await?;
        let back = self.back.invalidate_pattern(pattern_id).await?;
        Ok(Invalidation {
            pattern_id: pattern_id.to_owned(),
            dropped: back.dropped,
            generation: back.generation.or(front.generation),
        })
    }

    /// Hits and misses of the pair, errors of both tiers, size of the back.
    async fn stats(&self) -> CacheStats {
        let front = self.front.stats().await;
        let back = self.back.stats().await;
        let mut stats = self.counters.snapshot(back.entries, back.bytes);
        stats.errors = front.errors + back.errors;
        stats
    }
}
