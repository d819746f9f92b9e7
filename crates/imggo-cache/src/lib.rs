//! # imggo-cache
//!
//! Content-addressed caches of ImgGo results, keyed by [`imggo_core::CacheKey`] (content
//! hash, pattern id and version, settings fingerprint), behind one [`Cache`] trait:
//!
//! - [`MemoryCache`]: in-process, bounded by entries and bytes, per-entry TTL.
//! - [`FileCache`]: one directory, atomic writes, checksummed entries, several processes.
//! - [`RedisCache`]: shared by every worker; O(1) invalidation by generation; batches in
//!   one round trip; a dead Redis is a cheap miss.
//! - [`Tiered`]: memory in front of file or Redis.
//!
//! [`Deduper`] makes identical images cost one API call: single-flight per key within a
//! process and, with Redis, across workers. [`parse_cache_url`] and [`open_cache`] turn
//! the command line's `--cache memory | file:PATH | redis://… | off` into a store.
//!
//! Every store keeps the never-fail contract documented on [`Cache`]: a broken store is a
//! miss, counted in [`CacheStats`] and logged, and never stops a batch.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use imggo_cache::{Cache, CachedResult, MemoryCache};
//! use imggo_core::{CacheKey, ContentHash, Manifest, SettingsFingerprint};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
//! let key = CacheKey::new(ContentHash::of(b"image bytes"), "pat-1", 3, SettingsFingerprint::of("q=85"));
//! let result = CachedResult::new(Manifest::Json(Default::default()), Some("job-1".into()), 3);
//!
//! assert!(cache.get(&key).await.is_none());
//! cache.put(&key, Arc::new(result.clone()), Duration::from_secs(3600)).await;
//! assert_eq!(cache.get(&key).await.as_deref(), Some(&result));
//! assert_eq!(cache.stats().await.hits, 1);
//! # });
//! ```

#![deny(missing_docs, missing_debug_implementations)]

mod cache;
pub mod dedup;
mod entry;
mod error;
pub mod file;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod redis_link;
mod tiered;
mod url;
mod value;

pub use cache::Cache;
pub use dedup::{DedupOptions, DedupStats, Deduper, Role};
pub use error::CacheError;
pub use file::{FileCache, FileCacheConfig, SweepReport};
pub use memory::{MemoryCache, MemoryCacheConfig};
#[cfg(feature = "redis")]
pub use redis::RedisCache;
#[cfg(feature = "redis")]
pub use redis_link::{RedisLink, RedisOptions};
pub use tiered::Tiered;
pub use url::{open_cache, parse_cache_url, CacheSpec, OpenOptions};
pub use value::{CacheStats, CachedResult, Invalidation};
