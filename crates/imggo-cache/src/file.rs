//! [`FileCache`]: one directory of entries, safe for several processes at once.
//!
//! Layout (every name is made of hashes or numbers, never of user text):
//!
//! ```text
//! DIR/v1/{pattern_digest}/gen                    current generation, decimal (absent = 0)
//! DIR/v1/{pattern_digest}/g{generation}/ab/cdef…  one entry per key digest (ab = first two
//!                                                 hex digits of the digest: 256 shards)
//! ```
//!
//! - Writes are atomic: the entry goes to a temp file in its final directory and is
//!   renamed over the final name, so a reader sees the old entry, the new one, or none,
//!   never a half-written one. `fsync` (of the file and its directory) is optional.
//! - Each entry carries a header with magic, length, expiry and an xxh3 checksum
//!   (magic, length, key digest, expiry, xxh3 of it all); a corrupt, truncated or expired entry is a miss and is removed.
//! - Invalidating a pattern writes a new generation number (temp file + rename): O(1), and
//!   old entries are unreachable at once. [`FileCache::sweep`] reclaims their space.
//! - Two processes invalidating the same pattern at once may both write the same next
//!   number; either way every older entry is unreachable, which is all invalidation
//!   promises.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use imggo_core::hash::pattern_digest;
use imggo_core::CacheKey;

use crate::entry::{self, Unusable, HEADER_LEN};
use crate::value::{unix_now_ms, Counters};
use crate::{Cache, CacheError, CacheStats, CachedResult, Invalidation};

/// Layout version: a new on-disk format gets a new directory instead of misreading old files.
const LAYOUT: &str = "v1";
/// Entries larger than this are never read whole (nothing legitimate is that large).
const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// Temp files older than this are leftovers of a crashed writer; [`FileCache::sweep`] removes them.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Options of a [`FileCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCacheConfig {
    /// Flush each entry and its directory to disk before the rename (survives power loss,
    /// costs a few milliseconds per write). Off by default: without it a crash can lose
    /// recent entries but never leaves a wrong one readable.
    pub fsync: bool,
    /// Serve a single [`get`](Cache::get) on the calling task instead of the blocking
    /// pool. A hit is two small reads (generation and entry), usually from the page
    /// cache: about 10 µs inline, while the hop to a pool thread and back costs more than
    /// that and much more on a busy machine. On by default; turn it off when the directory
    /// is on slow or network storage, where a read can block for milliseconds.
    /// `get_many`, writes, invalidation and sweeps always use the blocking pool.
    pub inline_get: bool,
}

impl Default for FileCacheConfig {
    /// No fsync, inline single gets.
    fn default() -> Self {
        Self {
            fsync: false,
            inline_get: true,
        }
    }
}

/// A directory-backed cache; see the [module docs](self).
#[derive(Clone)]
pub struct FileCache {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    fsync: bool,
    inline_get: bool,
    counters: Counters,
    seq: AtomicU64,
}

/// What [`FileCache::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired or unreadable entries of current generations.
    pub entries: u64,
    /// Whole directories of old (invalidated) generations.
    pub generations: u64,
    /// Temp files left by writers that crashed before their rename.
    pub temp_files: u64,
}

impl FileCache {
    /// Opens (creating if needed) a cache in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, CacheError> {
        Self::open_with(dir, FileCacheConfig::default())
    }

    /// Opens (creating if needed) a cache in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, config: FileCacheConfig) -> Result<Self, CacheError> {
        let root = dir.as_ref().join(LAYOUT);
        fs::create_dir_all(&root).map_err(|e| CacheError::io(&root, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                fsync: config.fsync,
                inline_get: config.inline_get,
                counters: Counters::default(),
                seq: AtomicU64::new(0),
            }),
        })
    }

    /// The directory holding the entries (`DIR/v1`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where `key`'s entry lives in the current generation (for tools and tests).
    pub fn entry_path(&self, key: &CacheKey) -> Result<PathBuf, CacheError> {
        let pd = key.pattern_digest();
        let generation = self.inner.generation(&pd)?;
        Ok(self.inner.entry_path(&pd, generation, &key.digest().hex()))
    }

    /// Removes old generations, expired or unreadable entries and stale temp files.
    /// O(entries); run it between batches, not on the hot path.
    pub async fn sweep(&self) -> Result<SweepReport, CacheError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.sweep())
            .await
            .unwrap_or_else(|e| Err(CacheError::io(self.root(), e)))
    }
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("root", &self.inner.root)
            .field("fsync", &self.inner.fsync)
            .finish()
    }
}

/// Runs blocking filesystem work off the async threads.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("file cache task failed: {e}")))
}

impl Inner {
    fn pattern_dir(&self, pd: &str) -> PathBuf {
        self.root.join(pd)
    }

    fn entry_path(&self, pd: &str, generation: u64, hex: &str) -> PathBuf {
        let mut p = self.pattern_dir(pd);
        p.push(format!("g{generation}"));
        p.push(&hex[..2]);
        p.push(&hex[2..]);
        p
    }

    /// The pattern's current generation (0 when never invalidated).
    fn generation(&self, pd: &str) -> Result<u64, CacheError> {
        let path = self.pattern_dir(pd).join("gen");
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| {
                CacheError::io(
                    &path,
                    std::io::Error::new(ErrorKind::InvalidData, "generation is not a number"),
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(CacheError::io(path, e)),
        }
    }

    fn fail(&self, what: &str, err: &dyn std::fmt::Display) {
        self.counters.error();
        tracing::warn!(target: "imggo_cache::file", "file cache {what}: {err}");
    }

    fn get_all(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let now = unix_now_ms();
        let mut generations: HashMap<String, Option<u64>> = HashMap::new();
        keys.iter()
            .map(|key| {
                let pd = key.pattern_digest();
                let generation = *generations.entry(pd.clone()).or_insert_with(|| {
                    self.generation(&pd)
                        .map_err(|e| self.fail("read failed", &e))
                        .ok()
                });
                let found = generation.and_then(|g| self.read(key, &pd, g, now));
                self.counters.lookup(found.is_some());
                found.map(Arc::new)
            })
            .collect()
    }

    fn read(&self, key: &CacheKey, pd: &str, generation: u64, now: u64) -> Option<CachedResult> {
        let digest = key.digest();
        let path = self.entry_path(pd, generation, &digest.hex());
        let bytes = match read_capped(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => {
                self.fail("read failed", &CacheError::io(&path, e));
                return None;
            }
        };
        let problem = match entry::decode(&bytes, digest.as_u128(), now) {
            Ok(payload) => match serde_json::from_slice::<CachedResult>(payload) {
                Ok(value) => return Some(value),
                Err(_) => Unusable::Corrupt("payload is not a cached result"),
            },
            Err(u) => u,
        };
        if let Unusable::Corrupt(why) = problem {
            self.fail("entry dropped", &format_args!("{}: {why}", path.display()));
        }
        remove_if_present(&path);
        None
    }

    fn put_all(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let expires_at = unix_now_ms().saturating_add(ttl_ms);
        let mut generations: HashMap<String, Option<u64>> = HashMap::new();
        for (key, value) in items {
            let pd = key.pattern_digest();
            let generation = *generations.entry(pd.clone()).or_insert_with(|| {
                self.generation(&pd)
                    .map_err(|e| self.fail("write skipped", &e))
                    .ok()
            });
            let Some(generation) = generation else {
                continue;
            };
            let digest = key.digest();
            let path = self.entry_path(&pd, generation, &digest.hex());
            let payload = match serde_json::to_vec(&**value) {
                Ok(p) => p,
                Err(e) => {
                    self.fail("write skipped", &e);
                    continue;
                }
            };
            let bytes = entry::encode(digest.as_u128(), expires_at, &payload);
            match self.write_atomic(&path, &bytes) {
                Ok(()) => self.counters.put(),
                Err(e) => self.fail("write failed", &e),
            }
        }
    }

    /// Writes `bytes` to a temp file beside `path`, then renames it over `path`.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let dir = path.parent().expect("entry paths have a parent");
        let name = path.file_name().expect("entry paths have a name");
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let write = |tmp: &Path| -> std::io::Result<()> {
            let mut f = match fs::File::create_new(tmp) {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    fs::create_dir_all(dir)?;
                    fs::File::create_new(tmp)?
                }
                other => other?,
            };
            f.write_all(bytes)?;
            if self.fsync {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(tmp, path)?;
            if self.fsync {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write(&tmp).map_err(|e| {
            remove_if_present(&tmp);
            CacheError::io(path, e)
        })
    }

    fn invalidate(&self, pattern_id: &str) -> Result<Invalidation, CacheError> {
        let pd = pattern_digest(pattern_id);
        // An unreadable generation file cannot be incremented; jump past any number it
        // could have held by using the clock.
        let next = match self.generation(&pd) {
            Ok(g) => g + 1,
            Err(e) => {
                self.fail("generation unreadable, resetting", &e);
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(u64::MAX / 2)
            }
        };
        let path = self.pattern_dir(&pd).join("gen");
        self.write_atomic(&path, format!("{next}\n").as_bytes())?;
        Ok(Invalidation {
            pattern_id: pattern_id.to_owned(),
            dropped: None,
            generation: Some(next),
        })
    }

    /// Live entry count and bytes of the current generations.
    fn usage(&self) -> (u64, u64) {
        let (mut entries, mut bytes) = (0, 0);
        for pattern in read_dir_paths(&self.root) {
            let Some(pd) = file_name(&pattern) else {
                continue;
            };
            let Ok(generation) = self.generation(&pd) else {
                continue;
            };
            for shard in read_dir_paths(&pattern.join(format!("g{generation}"))) {
                for file in read_dir_paths(&shard) {
                    if file_name(&file).is_some_and(|n| !n.starts_with('.')) {
                        if let Ok(m) = fs::metadata(&file) {
                            entries += 1;
                            bytes += m.len();
                        }
                    }
                }
            }
        }
        (entries, bytes)
    }

    fn sweep(&self) -> Result<SweepReport, CacheError> {
        let mut report = SweepReport::default();
        let now = unix_now_ms();
        let entries = fs::read_dir(&self.root).map_err(|e| CacheError::io(&self.root, e))?;
        for pattern in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let Some(pd) = file_name(&pattern) else {
                continue;
            };
            let Ok(generation) = self.generation(&pd) else {
                continue;
            };
            let current = format!("g{generation}");
            for dir in read_dir_paths(&pattern) {
                let Some(name) = file_name(&dir) else {
                    continue;
                };
                if name.starts_with('g') && name != "gen" && name != current {
                    if fs::remove_dir_all(&dir).is_ok() {
                        report.generations += 1;
                    }
                } else if name.starts_with(".gen.")
                    && is_stale(&dir)
                    && fs::remove_file(&dir).is_ok()
                {
                    report.temp_files += 1;
                }
            }
            for shard in read_dir_paths(&pattern.join(&current)) {
                for file in read_dir_paths(&shard) {
                    let Some(name) = file_name(&file) else {
                        continue;
                    };
                    if name.starts_with('.') {
                        if is_stale(&file) && fs::remove_file(&file).is_ok() {
                            report.temp_files += 1;
                        }
                    } else if read_header(&file)
                        .and_then(|h| entry::peek_expiry(&h))
                        .is_none_or(|expires_at| now >= expires_at)
                        && fs::remove_file(&file).is_ok()
                    {
                        report.entries += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_ENTRY_BYTES {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("entry of {len} bytes is larger than any real one"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_header(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; HEADER_LEN];
    fs::File::open(path).ok()?.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn remove_if_present(path: &Path) {
    let _ = fs::remove_file(path);
}

fn read_dir_paths(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= STALE_TEMP_AGE)
}

#[async_trait]
impl Cache for FileCache {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        if self.inner.inline_get {
            return self
                .inner
                .get_all(std::slice::from_ref(key))
                .pop()
                .flatten();
        }
        self.get_many(std::slice::from_ref(key))
            .await
            .pop()
            .flatten()
    }

    async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<CachedResult>>> {
        let inner = Arc::clone(&self.inner);
        let owned = keys.to_vec();
        match run_blocking(move || inner.get_all(&owned)).await {
            Ok(found) => found,
            Err(e) => {
                self.inner.fail("read failed", &e);
                keys.iter().map(|_| None).collect()
            }
        }
    }

    async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
        self.put_many(&[(key.clone(), value)], ttl).await
    }

    async fn put_many(&self, items: &[(CacheKey, Arc<CachedResult>)], ttl: Duration) {
        let inner = Arc::clone(&self.inner);
        let owned = items.to_vec();
        if let Err(e) = run_blocking(move || inner.put_all(&owned, ttl)).await {
            self.inner.fail("write failed", &e);
        }
    }

    async fn invalidate_pattern(&self, pattern_id: &str) -> Result<Invalidation, CacheError> {
        let inner = Arc::clone(&self.inner);
        let id = pattern_id.to_owned();
        run_blocking(move || inner.invalidate(&id))
            .await
            .unwrap_or_else(|e| Err(CacheError::io(self.root(), e)))
    }

    /// Walks the current generations to count entries and bytes: O(entries).
    async fn stats(&self) -> CacheStats {
        let inner = Arc::clone(&self.inner);
        let usage = run_blocking(move || inner.usage()).await.ok();
        self.inner
            .counters
            .snapshot(usage.map(|u| u.0), usage.map(|u| u.1))
    }
}
