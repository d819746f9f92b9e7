//! [`RedisCache`]: results shared by every worker through Redis.
//!
//! Keys (made only of hashes and numbers):
//!
//! ```text
//! imggo:v1:{pattern_digest}:gen                          the pattern's generation (absent = 0)
//! imggo:v1:{pattern_digest}:{generation}:{key_digest}    one entry, JSON, with a PX expiry
//! ```
//!
//! Invalidating a pattern is one `INCR` of its generation key: O(1), no `KEYS`/`SCAN`;
//! old entries are unreachable at once and expire by their TTL.
//!
//! Reads are one `MGET` of the patterns' generation keys and the entry keys, named with
//! the generation this process saw last; an entry counts only when the generation read in
//! the same (atomic) `MGET` matches, so a stale generation is never trusted, and after an
//! invalidation the keys are read once more with the new one. A single `get` is thus one
//! plain round trip, and a batch one round trip per 512 keys. Writes go through a small Lua
//! script that reads the generation and sets the entries in one server-side call. (The
//! script builds key names, so this store needs a standalone or single-shard Redis, not
//! Redis Cluster.)
//!
//! Redis down or slow: each call waits at most `RedisOptions::timeout`, then a miss; after
//! a failure, calls skip Redis for `RedisOptions::cooldown`. Every such call is counted in
//! [`CacheStats::errors`] and the outage is logged once with `tracing::warn!`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use imggo_core::hash::pattern_digest;
use imggo_core::CacheKey;
use redis::Script;

use crate::redis_link::{is_connection_failure, RedisLink, RedisOptions};
use crate::value::Counters;
use crate::{Cache, CacheError, CacheStats, CachedResult, Invalidation};

/// Keys per script call in batches (keeps each server-side call short).
const BATCH: usize = 512;

/// KEYS: generation keys. ARGV[1]: TTL in ms, then triples (index, digest, value).
const PUT_LUA: &str = r#"
local gens = {}
for i, k in ipairs(KEYS) do gens[i] = redis.call('GET', k) or '0' end
local n = 0
for j = 2, #ARGV, 3 do
  local i = tonumber(ARGV[j])
  redis.call('SET', string.sub(KEYS[i], 1, -4) .. gens[i] .. ':' .. ARGV[j + 1], ARGV[j + 2], 'PX', ARGV[1])
  n = n + 1
end
return n
"#;

/// The key holding a pattern's generation.
pub fn generation_key(pattern_id: &str) -> String {
    format!("imggo:v1:{}:gen", pattern_digest(pattern_id))
}

/// A Redis-backed cache; see the [module docs](self).
pub struct RedisCache {
    link: RedisLink,
    generations: Mutex<HashMap<String, u64>>,
    put_script: Script,
    counters: Counters,
}

impl RedisCache {
    /// Connects to `url` and checks it answers (an unreachable server at start is an
    /// error, so a typo in the URL is not silently a cache that never hits).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, CacheError> {
        Ok(Self::with_link(RedisLink::connect(url, options).await?))
    }

    /// A cache over an existing link (shared with a [`crate::Deduper`], say).
    pub fn with_link(link: RedisLink) -> Self {
        Self {
            link,
            generations: Mutex::new(HashMap::new()),
            put_script: Script::new(PUT_LUA),
            counters: Counters::default(),
        }
    }

    /// The link it uses.
    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    fn fail(&self, what: &str, n: usize, e: &CacheError) {
        for _ in 0..n {
            self.counters.error();
        }
        if is_connection_failure(e) {
            // The link warned once for the outage; per-call detail stays at debug.
            tracing::debug!(target: "imggo_cache::redis", "redis cache {what} ({n} keys): {e}");
        } else {
            tracing::warn!(target: "imggo_cache::redis", "redis cache {what} ({n} keys): {e}");
        }
    }

    fn fail_quietly(&self, what: &str, n: usize, why: &str) {
        for _ in 0..n {
            self.counters.error();
        }
        tracing::warn!(target: "imggo_cache::redis", "redis cache {what} ({n} keys): {why}");
    }

    async fn get_chunk(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let mut out: Vec<Option<Arc<CachedResult>>> = vec![None; keys.len()];
        let digests: Vec<String> = keys.iter().map(|k| k.pattern_digest()).collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        // One MGET reads the generations and the entries named with the generations seen
        // last time. An entry counts only if its generation is still current, which MGET
        // (atomic) proves; after an invalidation by another worker, the keys are read
        // again with the new generation (a second round trip, once per invalidation).
        for _attempt in 0..3 {
            let mut patterns: Vec<&str> = Vec::new();
            for &i in &pending {
                if !patterns.contains(&digests[i].as_str()) {
                    patterns.push(&digests[i]);
                }
            }
            let assumed: Vec<u64> = {
                let known = lock(&self.generations);
                patterns
                    .iter()
                    .map(|pd| known.get(*pd).copied().unwrap_or(0))
                    .collect()
            };
            let mut cmd = redis::cmd("MGET");
            for pd in &patterns {
                cmd.arg(format!("imggo:v1:{pd}:gen"));
            }
            for &i in &pending {
                let p = patterns
                    .iter()
                    .position(|pd| *pd == digests[i])
                    .unwrap_or(0);
                cmd.arg(format!(
                    "imggo:v1:{}:{}:{}",
                    digests[i],
                    assumed[p],
                    keys[i].digest().hex()
                ));
            }
            let mut conn = self.link.conn();
            let raw: Vec<Option<Vec<u8>>> = match self
                .link
                .call(async { cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await })
                .await
            {
                Ok(raw) if raw.len() == patterns.len() + pending.len() => raw,
                Ok(_) => {
                    self.fail_quietly(
                        "read failed",
                        pending.len(),
                        "MGET answer of the wrong length",
                    );
                    break;
                }
                Err(e) => {
                    self.fail("read failed", pending.len(), &e);
                    break;
                }
            };
            let (gens, entries) = raw.split_at(patterns.len());
            let current: Vec<u64> = gens
                .iter()
                .map(|g| {
                    g.as_deref()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0)
                })
                .collect();
            {
                let mut known = lock(&self.generations);
                for (pd, g) in patterns.iter().zip(&current) {
                    known.insert((*pd).to_owned(), *g);
                }
            }
            let mut stale = Vec::new();
            for (&i, bytes) in pending.iter().zip(entries) {
                let p = patterns
                    .iter()
                    .position(|pd| *pd == digests[i])
                    .unwrap_or(0);
                if current[p] != assumed[p] {
                    stale.push(i);
                    continue;
                }
                out[i] = bytes.as_deref().and_then(|b| self.decode(b));
            }
            pending = stale;
            if pending.is_empty() {
                break;
            }
        }
        for v in &out {
            self.counters.lookup(v.is_some());
        }
        out
    }

    fn decode(&self, bytes: &[u8]) -> Option<Arc<CachedResult>> {
        match serde_json::from_slice::<CachedResult>(bytes) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                self.counters.error();
                tracing::warn!(target: "imggo_cache::redis", "redis cache entry unreadable, ignored: {e}");
                None
            }
        }
    }

    async fn put_chunk(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl_ms: u64) {
        let mut patterns: HashMap<String, usize> = HashMap::new();
        let mut inv = self.put_script.prepare_invoke();
        inv.arg(ttl_ms);
        let mut n = 0;
        for (key, value) in items {
            let payload = match serde_json::to_vec(&**value) {
                Ok(p) => p,
                Err(e) => {
                    self.counters.error();
                    tracing::warn!(target: "imggo_cache::redis", "redis cache write skipped: {e}");
                    continue;
                }
            };
            let next = patterns.len() + 1;
            let index = *patterns.entry(key.pattern_id.clone()).or_insert_with(|| {
                inv.key(generation_key(&key.pattern_id));
                next
            });
            inv.arg(index).arg(key.digest().hex()).arg(payload);
            n += 1;
        }
        if n == 0 {
            return;
        }
        let mut conn = self.link.conn();
        match self
            .link
            .call(async { inv.invoke_async::<u64>(&mut conn).await })
            .await
        {
            Ok(stored) => {
                for _ in 0..stored {
                    self.counters.put();
                }
            }
            Err(e) => self.fail("write failed", n, &e),
        }
    }
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("link", &self.link)
            .finish()
    }
}

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        self.get_chunk(std::slice::from_ref(key))
            .await
            .pop()
            .flatten()
    }

    async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            out.extend(self.get_chunk(chunk).await);
        }
        out
    }

    async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
        if !ttl.is_zero() {
            self.put_chunk(&[(key.clone(), value)], ttl_ms(ttl)).await
        }
    }

    async fn put_many(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        for chunk in items.chunks(BATCH) {
            self.put_chunk(chunk, ttl_ms(ttl)).await;
        }
    }

    /// `INCR` of the pattern's generation: O(1). Fails (it is an explicit request) when
    /// Redis does not answer.
    async fn invalidate_pattern(&self, pattern_id: &str) -> Result<Invalidation, CacheError> {
        let mut conn = self.link.conn();
        let key = generation_key(pattern_id);
        let generation: u64 = self
            .link
            .call(async { redis::cmd("INCR").arg(&key).query_async(&mut conn).await })
            .await?;
        Ok(Invalidation {
            pattern_id: pattern_id.to_owned(),
            dropped: None,
            generation: Some(generation),
        })
    }

    /// Counters only: Redis cannot count this cache's entries without a scan.
    async fn stats(&self) -> CacheStats {
        self.counters.snapshot(None, None)
    }
}
