//! The one error type of this crate.
//!
//! Reads and writes never return it (a broken store is a miss, see [`crate::Cache`]); it
//! comes back only from calls the user asked for explicitly: opening a store, parsing a
//! cache URL, invalidating a pattern.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong opening or administering a cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("cache file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Redis answered with an error or the connection failed.
    #[cfg(feature = "redis")]
    #[error("redis at {url}: {source}")]
    Redis {
        /// The server, with any password masked.
        url: String,
        /// The cause.
        source: redis::RedisError,
    },
    /// Redis did not answer in time.
    #[error("redis at {url}: no answer within {timeout:?}")]
    Timeout {
        /// The server, with any password masked.
        url: String,
        /// The per-call limit that passed.
        timeout: Duration,
    },
    /// The call skipped Redis because it failed moments ago (see `RedisOptions::cooldown`).
    #[error("redis at {url}: skipped, it failed moments ago")]
    Unavailable {
        /// The server, with any password masked.
        url: String,
    },
    /// A cache URL that [`crate::parse_cache_url`] cannot read.
    #[error("bad cache URL {input:?}: {reason}")]
    BadUrl {
        /// The text as given (with any password masked).
        input: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl CacheError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
