//! What a cache stores and reports: [`CachedResult`], [`CacheStats`], [`Invalidation`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use imggo_core::Manifest;
use serde::{Deserialize, Serialize};

/// One cached API result: the manifest with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResult {
    /// The structured result of the job.
    pub manifest: Manifest,
    /// The job that produced it, when known.
    pub job_id: Option<String>,
    /// The pattern version it was produced with.
    pub pattern_version: u32,
    /// When it was produced, in seconds since the Unix epoch.
    pub created_at: u64,
}

impl CachedResult {
    /// A result created now.
    pub fn new(manifest: Manifest, job_id: Option<String>, pattern_version: u32) -> Self {
        Self {
            manifest,
            job_id,
            pattern_version,
            created_at: unix_now(),
        }
    }

    /// The length of its JSON form, without building it (the memory cache's weight).
    pub fn encoded_len(&self) -> usize {
        let mut counter = ByteCounter(0);
        // Writing into a counter cannot fail, and the types always serialise.
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch now (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters of one cache, as [`crate::Cache::stats`] reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing, an expired entry, a corrupt entry, or a store that failed.
    pub misses: u64,
    /// Entries written.
    pub puts: u64,
    /// Store failures swallowed under the never-fail contract (each was logged with
    /// `tracing::warn!`): I/O errors, corrupt entries, Redis errors and timeouts, and calls
    /// skipped while Redis was marked down.
    pub errors: u64,
    /// Live entries, when the store can tell (Redis cannot without a scan).
    pub entries: Option<u64>,
    /// Bytes held by those entries, when the store can tell.
    pub bytes: Option<u64>,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before the first read.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// What [`crate::Cache::invalidate_pattern`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// The pattern whose entries are gone.
    pub pattern_id: String,
    /// Entries removed, when the store counted them. File and Redis stores invalidate in
    /// O(1) by moving to a new generation, so they do not count: the old entries are
    /// unreachable at once and are reclaimed by their TTL (or `FileCache::sweep`).
    pub dropped: Option<u64>,
    /// The pattern's new generation, for stores that keep one.
    pub generation: Option<u64>,
}

/// The hit/miss/put/error counters every store keeps.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    puts: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn lookup(&self, found: bool) {
        if found {
            self.hit()
        } else {
            self.miss()
        }
    }
    pub(crate) fn put(&self) {
        self.puts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self, entries: Option<u64>, bytes: Option<u64>) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            entries,
            bytes,
        }
    }
}
