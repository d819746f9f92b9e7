//! Cache URLs for the command line: [`parse_cache_url`] and [`open_cache`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{
    Cache, CacheError, FileCache, FileCacheConfig, MemoryCache, MemoryCacheConfig, Tiered,
};
#[cfg(feature = "redis")]
use crate::{RedisCache, RedisOptions};
use imggo_core::redact_url;

/// Which cache a URL names.
#[derive(Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// `off`: no cache.
    Off,
    /// `memory`: in-process only.
    Memory,
    /// `file:PATH` (or `file:///abs/path`): a [`FileCache`] directory.
    File(PathBuf),
    /// `redis://…`, `redis+unix://…`, `unix://…`: a [`RedisCache`]. (`rediss://` is
    /// rejected with a clear error: this build of the redis client has no TLS.)
    #[cfg(feature = "redis")]
    Redis(String),
}

impl fmt::Display for CacheSpec {
    /// The URL again, with any Redis password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Memory => f.write_str("memory"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            #[cfg(feature = "redis")]
            Self::Redis(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for CacheSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheSpec({self})")
    }
}

/// Parses `memory`, `file:PATH`, `redis://…` (also `redis+unix://`, `unix://`) or `off` (keywords are case-insensitive; surrounding spaces are ignored).
///
/// ```
/// use imggo_cache::{parse_cache_url, CacheSpec};
/// assert_eq!(parse_cache_url("memory").unwrap(), CacheSpec::Memory);
/// assert_eq!(parse_cache_url("file:.imggo-cache").unwrap(), CacheSpec::File(".imggo-cache".into()));
/// assert!(parse_cache_url("memcached://x").is_err());
/// ```
pub fn parse_cache_url(input: &str) -> Result<CacheSpec, CacheError> {
    let text = input.trim();
    let bad = |reason: &str| CacheError::BadUrl {
        input: redact_url(input),
        reason: reason.to_owned(),
    };
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "" => {
            return Err(bad(
                "empty; use memory, file:PATH, redis://HOST[:PORT][/DB] or off",
            ))
        }
        "off" | "none" => return Ok(CacheSpec::Off),
        "memory" => return Ok(CacheSpec::Memory),
        _ => {}
    }
    if lower.starts_with("file:") {
        let rest = &text["file:".len()..];
        // file:///abs/path is the URL form of /abs/path; file:PATH is taken literally.
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(bad("file: needs a directory, as in file:.imggo-cache"));
        }
        return Ok(CacheSpec::File(PathBuf::from(path)));
    }
    let redis_scheme = ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| lower.starts_with(s));
    #[cfg(not(feature = "redis"))]
    if redis_scheme {
        return Err(bad(
            "this build has no Redis support (imggo-cache feature `redis`)",
        ));
    }
    #[cfg(feature = "redis")]
    if redis_scheme {
        redis::Client::open(text).map_err(|e| bad(&format!("not a Redis URL: {e}")))?;
        return Ok(CacheSpec::Redis(text.to_owned()));
    }
    Err(bad(
        "unknown kind; use memory, file:PATH, redis://HOST[:PORT][/DB] or off",
    ))
}

/// How [`open_cache`] builds a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Limits of the memory cache (alone, or in front of file/Redis).
    pub memory: MemoryCacheConfig,
    /// Put a memory cache in front of file and Redis stores ([`Tiered`]).
    pub memory_front: bool,
    /// File store options.
    pub file: FileCacheConfig,
    /// Redis timeouts.
    #[cfg(feature = "redis")]
    pub redis: RedisOptions,
}

impl Default for OpenOptions {
    /// Default limits, memory in front, no fsync, 250 ms Redis timeout.
    fn default() -> Self {
        Self {
            memory: MemoryCacheConfig::default(),
            memory_front: true,
            file: FileCacheConfig::default(),
            #[cfg(feature = "redis")]
            redis: RedisOptions::default(),
        }
    }
}

/// Opens the store `spec` names; `Ok(None)` for `off`. A file directory that cannot be
/// created or a Redis that does not answer `PING` is an error here (at start, where a
/// typo should be loud); after that, failures are misses (see [`Cache`]).
pub async fn open_cache(
    spec: &CacheSpec,
    options: &OpenOptions,
) -> Result<Option<Arc<dyn Cache>>, CacheError> {
    let front = || MemoryCache::new(options.memory);
    Ok(match spec {
        CacheSpec::Off => None,
        CacheSpec::Memory => Some(Arc::new(front())),
        CacheSpec::File(dir) => {
            let file = FileCache::open_with(dir, options.file)?;
            if options.memory_front {
                Some(Arc::new(Tiered::new(front(), file)))
            } else {
                Some(Arc::new(file))
            }
        }
        #[cfg(feature = "redis")]
        CacheSpec::Redis(url) => {
            let redis = RedisCache::connect(url, options.redis).await?;
            if options.memory_front {
                Some(Arc::new(Tiered::new(front(), redis)))
            } else {
                Some(Arc::new(redis))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses() {
        let ok = |s: &str| parse_cache_url(s).unwrap();
        assert_eq!(ok(" OFF "), CacheSpec::Off);
        assert_eq!(ok("none"), CacheSpec::Off);
        assert_eq!(ok("Memory"), CacheSpec::Memory);
        assert_eq!(ok("file:cache dir"), CacheSpec::File("cache dir".into()));
        assert_eq!(
            ok("file:///var/cache/imggo"),
            CacheSpec::File("/var/cache/imggo".into())
        );
        assert_eq!(ok("FILE:/tmp/x"), CacheSpec::File("/tmp/x".into()));
        assert_eq!(
            ok("redis://127.0.0.1:6380/2"),
            CacheSpec::Redis("redis://127.0.0.1:6380/2".into())
        );
        // The redis crate is built without TLS: say so at parse time, not at first use.
        let tls = parse_cache_url("rediss://h").unwrap_err().to_string();
        assert!(tls.contains("TLS"), "{tls}");
        assert!(matches!(
            ok("redis+unix:///tmp/redis.sock"),
            CacheSpec::Redis(_)
        ));
    }

    #[test]
    fn bad_urls_name_the_input_and_hide_passwords() {
        for bad in [
            "",
            "file:",
            "memcached://h",
            "redis://:pw@h:notaport",
            "mem",
        ] {
            let err = parse_cache_url(bad).unwrap_err();
            assert!(matches!(err, CacheError::BadUrl { .. }), "{bad:?}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        let spec = parse_cache_url("redis://user:hunter2@h:1/").unwrap();
        assert_eq!(spec.to_string(), "redis://user:***@h:1/");
        assert!(!format!("{spec:?}").contains("hunter2"));
    }
}
