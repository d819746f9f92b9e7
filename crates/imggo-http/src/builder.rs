//! [`ClientBuilder`]: every knob of the transport, validated once in [`ClientBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::client::legacy::connect::HttpConnector;
use imggo_core::{Error, RateLimitObserver, RetryPolicy, Secret};

use crate::client::{Client, Inner};
use crate::pool::Pool;
use crate::retry::DefaultRetry;

/// The public service.
pub const DEFAULT_BASE_URL: &str = "https://img-go.com/api";
/// The environment variable the API key is read from when none is given.
pub const API_KEY_ENV: &str = "IMGGO_API_KEY";

/// Which certificate roots HTTPS connections trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRoots {
    /// Mozilla's roots compiled into the binary (the same on every machine).
    #[default]
    Webpki,
    /// The operating system's store (`/etc/ssl/certs` and the like), for corporate CAs.
    Native,
}

/// Builds a [`Client`]. Defaults: the public service, key from `IMGGO_API_KEY`, connect
/// timeout 10 s, 60 s per attempt, 300 s in total, up to 64 idle connections per host kept
/// 90 s, gzip responses, [`DefaultRetry`], Retry-After above 10 minutes =
/// [`Error::QuotaExhausted`].
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) base_url: String,
    api_key: Option<Secret>,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    total_timeout: Duration,
    pool_max_idle_per_host: usize,
    pool_idle_timeout: Duration,
    user_agent: String,
    retry: Option<Arc<dyn RetryPolicy>>,
    observer: Option<Arc<dyn RateLimitObserver>>,
    quota_cap: Duration,
    tls_roots: TlsRoots,
    gzip: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
            pool_max_idle_per_host: 64,
            pool_idle_timeout: Duration::from_secs(90),
            user_agent: concat!("imggo-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: None,
            observer: None,
            quota_cap: Duration::from_secs(600),
            tls_roots: TlsRoots::Webpki,
            gzip: true,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("user_agent", &self.user_agent)
            .field("custom_retry_policy", &self.retry.is_some())
            .field("observer", &self.observer.is_some())
            .field("quota_cap", &self.quota_cap)
            .field("tls_roots", &self.tls_roots)
            .field("gzip", &self.gzip)
            .finish()
    }
}

impl ClientBuilder {
    /// The API base, e.g. `https://img-go.com/api` or an emulator's `http://127.0.0.1:PORT/api`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The API key (otherwise `IMGGO_API_KEY` is read at [`build`](Self::build)).
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// How long establishing a TCP (and TLS) connection may take.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// How long one attempt (send, response head and body) may take.
    pub fn attempt_timeout(mut self, t: Duration) -> Self {
        self.attempt_timeout = t;
        self
    }

    /// How long a call may take over all its attempts and backoff sleeps.
    pub fn total_timeout(mut self, t: Duration) -> Self {
        self.total_timeout = t;
        self
    }

    /// Most idle keep-alive connections kept per host.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// How long an idle connection is kept.
    pub fn pool_idle_timeout(mut self, t: Duration) -> Self {
        self.pool_idle_timeout = t;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// The retry policy (default [`DefaultRetry`]).
    pub fn retry_policy(mut self, p: Arc<dyn RetryPolicy>) -> Self {
        self.retry = Some(p);
        self
    }

    /// Receives the rate-limit headers of every response.
    pub fn observer(mut self, o: Arc<dyn RateLimitObserver>) -> Self {
        self.observer = Some(o);
        self
    }

    /// A 429 whose `Retry-After` exceeds this fails at once with [`Error::QuotaExhausted`].
    pub fn quota_cap(mut self, cap: Duration) -> Self {
        self.quota_cap = cap;
        self
    }

    /// Which certificate roots HTTPS trusts (default [`TlsRoots::Webpki`]).
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.tls_roots = roots;
        self
    }

    /// Whether to ask for gzip-compressed responses (default true). A gzip body is
    /// inflated either way; turning this off saves CPU on fast local networks.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Validates the settings and builds the client with its connection pool.
    ///
    /// Errors ([`Error::Config`]): no API key (argument or `IMGGO_API_KEY`), a base URL that
    /// is not `http(s)://host...`, a key or user agent that cannot be a header, or no
    /// native certificate roots when [`TlsRoots::Native`] is asked for.
    pub fn build(self) -> Result<Client, Error> {
        let key = match self.api_key.clone() {
            Some(k) => k,
            None => std::env::var(API_KEY_ENV)
                .map(Secret::new)
                .unwrap_or_default(),
        };
        if key.is_empty() {
            return Err(Error::Config(format!(
                "no API key: pass ClientBuilder::api_key or set {API_KEY_ENV}"
            )));
        }
        let base = normalize_base_url(&self.base_url)?;
        let mut auth = HeaderValue::try_from(format!("Bearer {}", key.expose())).map_err(|_| {
            Error::Config("the API key contains characters not allowed in an HTTP header".into())
        })?;
        auth.set_sensitive(true);
        let user_agent = HeaderValue::try_from(self.user_agent.as_str()).map_err(|_| {
            Error::Config(format!(
                "user agent {:?} is not a valid header value",
                self.user_agent
            ))
        })?;
        for (name, t) in [
            ("connect_timeout", self.connect_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("total_timeout", self.total_timeout),
        ] {
            if t.is_zero() {
                return Err(Error::Config(format!("{name} must be greater than zero")));
            }
        }

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_timeout));
        let connector = self.connector(tcp)?;
        let pool = Pool::new(
            connector,
            self.connect_timeout,
            self.pool_max_idle_per_host,
            self.pool_idle_timeout,
        );

        Client::new(
            Arc::new(Inner {
                pool,
                auth,
                user_agent,
                connect_timeout: self.connect_timeout,
                attempt_timeout: self.attempt_timeout,
                total_timeout: self.total_timeout,
                retry: self
                    .retry
                    .unwrap_or_else(|| Arc::new(DefaultRetry::default())),
                observer: self.observer,
                quota_cap: self.quota_cap,
                counters: Default::default(),
                gzip: self.gzip,
            }),
            &base,
        )
    }
}

/// Checks `http(s)://authority[/path]` and strips trailing slashes.
pub(crate) fn normalize_base_url(url: &str) -> Result<Arc<str>, Error> {
    let bad = |reason: &str| Error::Config(format!("base URL {url:?}: {reason}"));
    let trimmed = url.trim().trim_end_matches('/');
    let uri = imggo_core::url::HttpUrl::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    if uri.query().is_some() {
        return Err(bad("must not have a query string"));
    }
    Ok(Arc::from(trimmed))
}

impl ClientBuilder {
    /// TLS through rustls on `ring` around `tcp`, for `https` and `http` alike.
    #[cfg(feature = "rustls")]
    fn connector(&self, tcp: HttpConnector) -> Result<crate::pool::Connector, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = match self.tls_roots {
            TlsRoots::Webpki => tls
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| Error::Config(format!("TLS setup: {e}")))?,
            TlsRoots::Native => tls
                .with_provider_and_native_roots(provider)
                .map_err(|e| Error::Config(format!("native certificate roots: {e}")))?,
        };
        Ok(tls
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp))
    }

    /// Plain TCP: without the `rustls` feature an `https` base URL cannot be served.
    #[cfg(not(feature = "rustls"))]
    fn connector(&self, mut tcp: HttpConnector) -> Result<crate::pool::Connector, Error> {
        if self.base_url.to_ascii_lowercase().starts_with("https:") {
            return Err(Error::Config(format!(
                "base URL {}: https needs imggo-http's `rustls` feature",
                self.base_url
            )));
        }
        tcp.enforce_http(true);
        Ok(tcp)
    }
}

#[cfg(test)]
mod tests {

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn https_needs_the_rustls_feature() {
        let e = Client::builder()
            .base_url("https://img-go.com/api")
            .api_key("k")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("rustls"), "{e}");
        assert!(Client::builder()
            .base_url("http://127.0.0.1:9/api")
            .api_key("k")
            .build()
            .is_ok());
    }
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            &*normalize_base_url("http://127.0.0.1:8080/api/").unwrap(),
            "http://127.0.0.1:8080/api"
        );
        assert_eq!(
            &*normalize_base_url("https://img-go.com/api").unwrap(),
            "https://img-go.com/api"
        );
        for bad in [
            "",
            "img-go.com/api",
            "ftp://x/api",
            "http:///api",
            "http://x/api?a=1",
        ] {
            let e = normalize_base_url(bad).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn key_never_in_debug_or_errors() {
        let b = ClientBuilder::default().api_key("imggo_topsecretvalue");
        assert!(!format!("{b:?}").contains("topsecret"));
        let c = b
            .clone()
            .base_url("http://127.0.0.1:1/api")
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
        let e = ClientBuilder::default()
            .api_key("bad\nkey topsecret")
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        assert!(!e.to_string().contains("topsecret"));
    }

    #[test]
    fn zero_timeouts_are_config_errors() {
        let e = ClientBuilder::default()
            .api_key("k")
            .total_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("total_timeout"), "{e}");
    }
}
