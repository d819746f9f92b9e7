//! What several subcommands share: the connection flags, the config file, building a
//! client, and the exit code of a failed command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use imggo::core::{Error, RateLimitObserver, RetryPolicy, Secret};
use imggo::http::Client;
use imggo::report::EXIT_USAGE;

/// Flags every subcommand that talks to the API takes. Flags win over the environment,
/// which wins over the config file (`$IMGGO_CONFIG`, else `~/.config/imggo/config.toml`).
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// API base URL, e.g. `https://img-go.com/api` (a URL without a path gets /api).
    /// Repeat it to probe several regional endpoints and use the fastest.
    #[arg(
        long = "endpoint",
        env = "IMGGO_ENDPOINT",
        value_delimiter = ',',
        global = true
    )]
    pub endpoints: Vec<String>,
    /// API key (better: set IMGGO_API_KEY).
    #[arg(long, env = "IMGGO_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Per-attempt timeout in seconds.
    #[arg(long, default_value_t = 60.0, global = true)]
    pub timeout: f64,
}

/// Settings read from the optional config file (`key = "value"` lines, TOML style).
#[derive(Debug, Default, Clone)]
pub struct FileConfig {
    /// `endpoint`.
    pub endpoint: Option<String>,
    /// `api_key`.
    pub api_key: Option<String>,
    /// `pattern`.
    pub pattern: Option<String>,
    /// `cache`.
    pub cache: Option<String>,
}

impl FileConfig {
    /// Loads the config file if there is one. A malformed line is a usage error.
    pub fn load() -> Result<Self, Error> {
        let path = match std::env::var_os("IMGGO_CONFIG") {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".config/imggo/config.toml"),
                None => return Ok(Self::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(Error::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mut cfg = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "{}:{}: expected key = \"value\"",
                    path.display(),
                    n + 1
                ))
            })?;
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "endpoint" => cfg.endpoint = Some(v),
                "api_key" => cfg.api_key = Some(v),
                "pattern" => cfg.pattern = Some(v),
                "cache" => cfg.cache = Some(v),
                other => {
                    return Err(Error::Config(format!(
                        "{}:{}: unknown key {other:?} (known: endpoint, api_key, pattern, cache)",
                        path.display(),
                        n + 1
                    )))
                }
            }
        }
        Ok(cfg)
    }
}

/// `https://host` → `https://host/api` (the library's, so `run` and the other commands agree).
pub use imggo::spec::normalize_endpoint;

/// Hooks the pipeline wants on the client: retries and rate-limit headers.
#[derive(Default, Clone)]
pub struct Hooks {
    /// Retry policy.
    pub retry: Option<Arc<dyn RetryPolicy>>,
    /// Rate-limit observer.
    pub observer: Option<Arc<dyn RateLimitObserver>>,
}

impl Connection {
    /// The endpoints (normalised), the API key and the per-attempt timeout, from the
    /// flags, else the environment, else the config file.
    pub fn resolve(&self, file: &FileConfig) -> Result<(Vec<String>, Secret, Duration), Error> {
        let mut endpoints = self.endpoints.clone();
        if endpoints.is_empty() {
            endpoints.extend(file.endpoint.clone());
        }
        let endpoints = endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let key = self
            .api_key
            .clone()
            .or_else(|| file.api_key.clone())
            .ok_or_else(|| {
                Error::Config("no API key: pass --api-key or set IMGGO_API_KEY".into())
            })?;
        let timeout = seconds("--timeout", self.timeout, false)?;
        Ok((endpoints, Secret::new(key), timeout))
    }

    /// Builds the client (probing several endpoints when given).
    pub async fn client(&self, file: &FileConfig, hooks: Hooks) -> Result<Client, Error> {
        let (endpoints, key, timeout) = self.resolve(file)?;
        imggo::spec::connect(&endpoints, key, timeout, hooks.retry, hooks.observer).await
    }
}

/// The longest time a seconds flag takes (about 31 years): longer than any real wait,
/// short enough that adding it to a clock never overflows.
pub const MAX_FLAG_SECONDS: f64 = 1e9;

/// Converts the value of a seconds flag to a [`Duration`]: a finite number above zero
/// (or zero too, with `zero_ok`) and at most [`MAX_FLAG_SECONDS`]; anything else
/// (negative, NaN, infinite, `1e30`) is a usage error naming the flag.
pub fn seconds(flag: &str, secs: f64, zero_ok: bool) -> Result<Duration, Error> {
    let low_ok = if zero_ok { secs >= 0.0 } else { secs > 0.0 };
    if !(low_ok && secs <= MAX_FLAG_SECONDS) {
        let low = if zero_ok { "0" } else { "above 0" };
        return Err(Error::Config(format!(
            "{flag} {secs}: want seconds, {low} and at most {MAX_FLAG_SECONDS:e}"
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|e| Error::Config(format!("{flag} {secs}: not a duration: {e}")))
}

/// Prints `imggo: <error>` and returns the usage exit code (2).
pub fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("imggo: {e}");
    ExitCode::from(EXIT_USAGE)
}

pub use imggo::spec::{default_cache, open_cache};

/// A runtime for one subcommand.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_api_path() {
        assert_eq!(
            normalize_endpoint("https://img-go.com").unwrap(),
            "https://img-go.com/api"
        );
        assert_eq!(
            normalize_endpoint("https://img-go.com/").unwrap(),
            "https://img-go.com/api"
        );
        assert_eq!(
            normalize_endpoint("https://img-go.com/api").unwrap(),
            "https://img-go.com/api"
        );
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:8080/api/").unwrap(),
            "http://127.0.0.1:8080/api"
        );
        assert!(normalize_endpoint("img-go.com").is_err());
    }

    #[test]
    fn seconds_flags_refuse_what_a_duration_cannot_hold() {
        assert_eq!(
            seconds("--t", 1.5, false).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(seconds("--t", 0.0, true).unwrap(), Duration::ZERO);
        for bad in [
            0.0,
            -1.0,
            1e30,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
        ] {
            let e = seconds("--t", bad, false).unwrap_err().to_string();
            assert!(e.contains("--t"), "{e}");
        }
        for bad in [-1.0, 1e30, f64::NAN, f64::INFINITY] {
            assert!(seconds("--t", bad, true).is_err());
        }
    }
}
