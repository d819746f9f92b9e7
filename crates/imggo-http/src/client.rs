//! [`Client`] and the one request path every endpoint goes through: per-attempt and total
//! timeouts, retries through the [`RetryPolicy`], gzip, rate-limit observation and typed
//! errors.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use imggo_core::{Error, RateLimitInfo, RateLimitObserver, RetryPolicy, TransportKind};

use crate::builder::ClientBuilder;
use crate::pool::{Host, Pool};
use crate::transport::{decode_content, map_body_error, MAX_WIRE_BODY};

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A client of the ImgGo API. Cheap to clone: clones share one connection pool, one retry
/// policy and one observer.
///
/// Every method sends `Authorization: Bearer`, `Accept-Encoding: gzip` (bodies are
/// inflated transparently), retries what [`Error::is_retryable`] allows through the
/// configured [`RetryPolicy`], reports each response's rate-limit headers to the
/// [`RateLimitObserver`], and returns [`Error`]s that keep the response's `X-Request-ID`.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) base: Arc<Endpoint>,
}

/// A base URL resolved against the pool once.
pub(crate) struct Endpoint {
    /// The whole base URL, no trailing slash.
    url: Box<str>,
    /// Its path ("" or e.g. "/api"), the prefix of every request path.
    path: Box<str>,
    host: Arc<Host>,
    /// The headers every request to it starts with (`Host`, `Authorization`,
    /// `User-Agent`, `Accept`, and `Accept-Encoding` when gzip is on), built once:
    /// cloning the map is cheaper than inserting them one by one per request.
    headers: HeaderMap,
}

impl Endpoint {
    /// `url` as checked by `normalize_base_url`, on the pool of `inner`.
    pub(crate) fn new(inner: &Inner, url: &str) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("base URL {url:?}: {e}")))?;
        let path = uri.path().trim_end_matches('/');
        let host = inner.pool.host(&uri)?;
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(HOST, host.host_header().clone());
        headers.insert(AUTHORIZATION, inner.auth.clone());
        headers.insert(USER_AGENT, inner.user_agent.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if inner.gzip {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(Self {
            url: url.into(),
            path: path.into(),
            host,
            headers,
        })
    }
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) auth: HeaderValue,
    pub(crate) user_agent: HeaderValue,
    pub(crate) connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) total_timeout: Duration,
    pub(crate) retry: Arc<dyn RetryPolicy>,
    pub(crate) observer: Option<Arc<dyn RateLimitObserver>>,
    pub(crate) quota_cap: Duration,
    pub(crate) counters: Counters,
    pub(crate) gzip: bool,
}

imggo_core::counters! {
    /// What a [`Client`] (and all its clones) has done so far.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct TransportStats;
    /// Live counters behind [`TransportStats`].
    pub(crate) struct Counters {
        /// Logical calls (one per method call; retries not counted).
        calls,
        /// HTTP attempts, retries included.
        attempts,
        /// Responses that arrived gzip-compressed.
        gzip_responses,
        /// Response body bytes as received.
        wire_bytes,
        /// Response body bytes after decompression.
        body_bytes,
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base.url)
            .field("api_key", &"[redacted]")
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("attempt_timeout", &self.inner.attempt_timeout)
            .field("total_timeout", &self.inner.total_timeout)
            .field("quota_cap", &self.inner.quota_cap)
            .finish_non_exhaustive()
    }
}

/// Which failures a call may be repeated after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryMode {
    /// Reads, deletes, updates and ingests (which carry an idempotency key): anything
    /// the policy allows.
    Idempotent,
    /// Creates without a key: only failures where the server surely did nothing
    /// (connection refused, 429).
    Unsafe,
    /// One attempt.
    Never,
}

impl RetryMode {
    fn allows(self, e: &Error) -> bool {
        match self {
            Self::Idempotent => true,
            Self::Unsafe => {
                e.is_rate_limited()
                    || matches!(
                        e,
                        Error::Transport {
                            kind: TransportKind::Connect,
                            ..
                        }
                    )
                    || matches!(
                        e,
                        Error::Timeout {
                            what: "connect",
                            ..
                        }
                    )
            }
            Self::Never => false,
        }
    }
}

/// One logical request.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    /// Path and query, the base URL's path included (`/api/jobs/ID`).
    pub(crate) path: String,
    pub(crate) body: Option<(Bytes, &'a str)>,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) retry: RetryMode,
    /// A non-2xx status whose body is still the answer (`_health` says 503 when degraded).
    pub(crate) also_ok: Option<u16>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: String) -> Self {
        let retry = if method == Method::POST {
            RetryMode::Unsafe
        } else {
            RetryMode::Idempotent
        };
        Self {
            method,
            path,
            body: None,
            idempotency_key: None,
            retry,
            also_ok: None,
        }
    }

    pub(crate) fn json(mut self, body: Bytes) -> Self {
        self.body = Some((body, "application/json"));
        self
    }
}

/// A successful response, body inflated.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) attempts: u32,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    /// A builder with the defaults of [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub(crate) fn new(inner: Arc<Inner>, base_url: &str) -> Result<Self, Error> {
        let base = Arc::new(Endpoint::new(&inner, base_url)?);
        Ok(Self { inner, base })
    }

    /// The API base URL this client talks to (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base.url
    }

    /// This client's pool and settings, aimed at another base URL (a regional endpoint).
    pub fn with_base_url(&self, url: &str) -> Result<Client, Error> {
        Self::new(
            self.inner.clone(),
            &crate::builder::normalize_base_url(url)?,
        )
    }

    /// The request path of `path` under the base URL (`/jobs` → `/api/jobs`).
    pub(crate) fn request_path(&self, path: &str) -> String {
        let base = &self.base.path;
        let mut s = String::with_capacity(base.len() + path.len());
        s.push_str(base);
        s.push_str(path);
        s
    }

    /// The request path `{base path}{collection}/{id}` with `id` percent-encoded, in one
    /// allocation; `what` names the id in the error when it is empty.
    pub(crate) fn item_path(
        &self,
        collection: &str,
        what: &str,
        id: &str,
    ) -> Result<String, Error> {
        let base = &self.base.path;
        let mut s = String::with_capacity(base.len() + collection.len() + 1 + id.len());
        s.push_str(base);
        s.push_str(collection);
        s.push('/');
        crate::transport::push_segment(&mut s, what, id)?;
        Ok(s)
    }

    /// Counters of calls, attempts and gzip use, shared by all clones of this client.
    pub fn transport_stats(&self) -> TransportStats {
        self.inner.counters.snapshot()
    }

    /// Runs a call to completion: attempts, backoff, total deadline. Each attempt runs
    /// under one timer, at the earlier of its own deadline and the call's.
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Reply, Error> {
        let inner = &*self.inner;
        inner.counters.calls.fetch_add(1, Ordering::Relaxed);
        let uri = Uri::try_from(call.path.as_str()).map_err(|e| {
            let url = format!("{}{}", self.base.url, call.path);
            Error::InvalidInput {
                input: format!("URL {url:?}"),
                reason: format!("{e}"),
            }
        })?;
        let total = inner.total_timeout;
        let start = tokio::time::Instant::now();
        let deadline = start + total;
        let mut failures = 0u32;
        loop {
            let attempt_deadline =
                (tokio::time::Instant::now() + inner.attempt_timeout).min(deadline);
            let outcome =
                tokio::time::timeout_at(attempt_deadline, self.attempt(&call, uri.clone())).await;
            let err = match outcome {
                Ok(Ok(mut reply)) => {
                    inner.retry.on_success();
                    reply.attempts = failures + 1;
                    return Ok(reply);
                }
                Ok(Err(e)) => e,
                Err(_) if attempt_deadline == deadline => {
                    return Err(Error::Timeout {
                        what: "total",
                        after: total,
                    });
                }
                Err(_) => Error::Timeout {
                    what: "attempt",
                    after: inner.attempt_timeout,
                },
            };
            failures += 1;
            if !call.retry.allows(&err) {
                return Err(err);
            }
            let elapsed = start.elapsed();
            let Some(delay) = inner.retry.next_delay(failures, elapsed, &err) else {
                return Err(err);
            };
            // Sleeping past the total deadline would only turn this error into a timeout.
            if elapsed + delay >= total {
                return Err(err);
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, call: &Call<'_>, uri: Uri) -> Result<Reply, Error> {
        let inner = &*self.inner;
        inner.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let body = call
            .body
            .as_ref()
            .map(|(b, _)| b.clone())
            .unwrap_or_default();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = call.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = self.base.headers.clone();
        let h = req.headers_mut();
        if let Some((_, ct)) = &call.body {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::try_from(*ct).map_err(|_| Error::InvalidInput {
                    input: "content type".into(),
                    reason: format!("{ct:?} is not a header value"),
                })?,
            );
        }
        if let Some(k) = call.idempotency_key {
            // IdempotencyKey only holds [A-Za-z0-9_-], always a valid header value.
            if let Ok(v) = HeaderValue::try_from(k) {
                h.insert(IDEMPOTENCY_KEY.clone(), v);
            }
        }

        let host = &self.base.host;
        let (resp, lease) = host.send(req).await?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_WIRE_BODY)
            .collect()
            .await
            .map_err(|e| map_body_error(&*e))?
            .to_bytes();
        host.give_back(lease);

        let headers = parts.headers;
        let lookup = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        if let Some(obs) = &inner.observer {
            if let Some(info) = RateLimitInfo::from_headers(lookup, SystemTime::now()) {
                obs.observe(&info);
            }
        }
        let wire = body.len() as u64;
        let encoding = headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        let body = decode_content(encoding, body)?;
        let c = &inner.counters;
        if encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip")) {
            c.gzip_responses.fetch_add(1, Ordering::Relaxed);
        }
        c.wire_bytes.fetch_add(wire, Ordering::Relaxed);
        c.body_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        let status = parts.status.as_u16();
        if parts.status.is_success() || call.also_ok == Some(status) {
            Ok(Reply {
                status,
                headers,
                body,
                attempts: 1,
            })
        } else {
            Err(Error::from_response(status, lookup, &body, inner.quota_cap))
        }
    }
}
