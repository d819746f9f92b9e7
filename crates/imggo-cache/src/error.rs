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

/// `redis://user:secret@host` → `redis://user:***@host`: URLs go into errors and logs, and
/// passwords never do.
pub(crate) fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    // Everything before the last '@' is user info, even if it holds a stray '/'.
    match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{}{}@{}", &url[..scheme_end + 3], masked, &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::mask_url;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(mask_url("redis://:hunter2@h:1/"), "redis://:***@h:1/");
        assert_eq!(mask_url("rediss://u:p@ss@h/2"), "rediss://u:***@h/2");
        assert_eq!(mask_url("redis://token@h"), "redis://***@h");
        assert_eq!(mask_url("redis://:pa/ss@h/0"), "redis://:***@h/0");
    }
}
