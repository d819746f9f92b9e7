//! The connection pool under [`Client`](crate::Client), built on hyper's connection
//! primitives (`hyper::client::conn`) and hyper-rustls's connector (with the `rustls`
//! feature; plain TCP without it).
//!
//! Each host (scheme + authority) has a LIFO stack of idle HTTP/1.1 connections and, when
//! TLS negotiates HTTP/2 through ALPN, one shared multiplexed connection. A client resolves
//! its base URL to a [`Host`] once, so a request costs one short lock to take a connection
//! and one to give it back: no per-request key hashing, connector clone or host formatting.
//! Those three are what hyper-util's general pooled client pays on every request, and they
//! made it cost about 40 % more client CPU than a bare hyper connection in the `get_job`
//! benchmark (`BENCHMARKS.md`, "HTTP client").
//!
//! A connection goes back to the stack only after its response body has been read to the
//! end; a lease dropped earlier (an error, a timeout, a cancelled call) closes it. Idle
//! connections older than the idle timeout are dropped when the stack is next used and by a
//! background sweep, and at most `max_idle` are kept per host.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
#[cfg(feature = "rustls")]
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use imggo_core::Error;
use tower_service::Service;

use crate::transport::{map_connect_error, map_handshake_error, map_hyper_error};

/// The connector every connection is made with: TCP, and TLS for `https`.
#[cfg(feature = "rustls")]
pub(crate) type Connector = HttpsConnector<HttpConnector>;
/// The connector every connection is made with: TCP (`http://` only, without `rustls`).
#[cfg(not(feature = "rustls"))]
pub(crate) type Connector = HttpConnector;

type Body = Full<Bytes>;

/// Settings shared by every host of one pool.
struct Settings {
    connector: Connector,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
}

/// All hosts one client (and its clones) has talked to.
pub(crate) struct Pool {
    settings: Arc<Settings>,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl Pool {
    /// A pool dialling with `connector`; `connect_timeout` is the one the connector was
    /// built with (it names the timeout in errors).
    pub(crate) fn new(
        connector: Connector,
        connect_timeout: Duration,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            settings: Arc::new(Settings {
                connector,
                connect_timeout,
                max_idle,
                idle_timeout,
            }),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The host of `base` (an `http(s)://authority...` URL already checked by the builder),
    /// shared with every other client of this pool aimed at the same scheme and authority.
    pub(crate) fn host(&self, base: &Uri) -> Result<Arc<Host>, Error> {
        let bad = |reason: &str| Error::Config(format!("base URL {base}: {reason}"));
        let scheme = base.scheme().ok_or_else(|| bad("has no scheme"))?.clone();
        let authority = base.authority().ok_or_else(|| bad("has no host"))?.clone();
        let key = format!("{scheme}://{authority}");
        let mut hosts = lock(&self.hosts);
        if let Some(h) = hosts.get(&key) {
            return Ok(h.clone());
        }
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host_header = match authority.port_u16() {
            Some(p) if p != default_port => format!("{}:{p}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host_header = HeaderValue::try_from(host_header).map_err(|_| bad("bad host"))?;
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        let host = Arc::new(Host {
            settings: self.settings.clone(),
            origin,
            host_header,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            sweeping: AtomicBool::new(false),
        });
        hosts.insert(key, host.clone());
        Ok(host)
    }
}

/// One scheme + authority: its idle connections and its HTTP/2 connection, if any.
pub(crate) struct Host {
    settings: Arc<Settings>,
    /// `scheme://authority/`, what the connector dials and what HTTP/2 requests name.
    origin: Uri,
    /// `Host` of HTTP/1.1 requests (the port only when it is not the scheme's default).
    host_header: HeaderValue,
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The HTTP/2 connection, when the host speaks it, and when it last took a request.
    h2: Mutex<Option<(http2::SendRequest<Body>, Instant)>>,
    /// Whether the background sweep of idle connections runs.
    sweeping: AtomicBool,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// A connection lent out for one exchange. [`Host::give_back`] returns it to the pool once
/// its response body has been read; dropping it instead closes an HTTP/1.1 connection.
pub(crate) struct Lease(Option<http1::SendRequest<Body>>);

/// A connection taken from the pool or newly made.
enum Conn {
    H1 {
        sender: http1::SendRequest<Body>,
        reused: bool,
    },
    H2(http2::SendRequest<Body>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every step, so a panic elsewhere while holding
    // the lock leaves nothing half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Host {
    /// The `Host` header value of HTTP/1.1 requests.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// Sends `req` (origin-form URI, `Host` set) on a pooled or new connection. A request
    /// that a reused connection closed before taking is sent again on another one.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), Error> {
        loop {
            match self.checkout().await? {
                Conn::H2(mut sender) => {
                    self.to_absolute_form(&mut req)?;
                    let resp = sender
                        .send_request(req)
                        .await
                        .map_err(|e| map_hyper_error(&e))?;
                    return Ok((resp, Lease(None)));
                }
                Conn::H1 { mut sender, reused } => match sender.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, Lease(Some(sender)))),
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if reused => req = unsent,
                        _ => return Err(map_hyper_error(&e.into_error())),
                    },
                },
            }
        }
    }

    /// Returns a connection whose response body has been read to the end.
    pub(crate) fn give_back(self: &Arc<Self>, lease: Lease) {
        let Some(sender) = lease.0 else { return };
        if sender.is_closed() || self.settings.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        self.prune(&mut idle, now);
        if idle.len() < self.settings.max_idle {
            idle.push(Idle { sender, since: now });
        }
    }

    /// A ready connection: the most recently used idle one that is still open, the HTTP/2
    /// connection, or a new one.
    async fn checkout(self: &Arc<Self>) -> Result<Conn, Error> {
        loop {
            let popped = {
                let mut idle = lock(&self.idle);
                self.prune(&mut idle, Instant::now());
                idle.pop()
            };
            let Some(Idle { mut sender, .. }) = popped else {
                break;
            };
            // It may still be finishing the exchange it was given back after; an error
            // means the server closed it.
            if !sender.is_closed() && poll_fn(|cx| sender.poll_ready(cx)).await.is_ok() {
                return Ok(Conn::H1 {
                    sender,
                    reused: true,
                });
            }
        }
        let shared = self.shared_h2(Instant::now());
        if let Some(mut sender) = shared {
            if poll_fn(|cx| sender.poll_ready(cx)).await.is_ok() {
                return Ok(Conn::H2(sender));
            }
        }
        // Boxed: the handshake futures are large, and inline they would make every
        // request's future (moved several times per call) kilobytes bigger.
        Box::pin(self.connect()).await
    }

    /// A clone of the HTTP/2 connection if it is open and was used within the idle timeout
    /// (then marked used at `now`); an expired one is let go.
    fn shared_h2(&self, now: Instant) -> Option<http2::SendRequest<Body>> {
        let mut h2 = lock(&self.h2);
        self.expire_h2(&mut h2, now);
        let (sender, last_used) = h2.as_mut()?;
        *last_used = now;
        Some(sender.clone())
    }

    /// Lets go of the HTTP/2 connection when it is closed or idle past the timeout; it
    /// closes once the requests still running on it end.
    fn expire_h2(&self, h2: &mut Option<(http2::SendRequest<Body>, Instant)>, now: Instant) {
        if h2.as_ref().is_some_and(|(sender, last_used)| {
            sender.is_closed()
                || now.saturating_duration_since(*last_used) >= self.settings.idle_timeout
        }) {
            *h2 = None;
        }
    }

    /// Drops idle connections past the idle timeout (the oldest are first in the stack).
    fn prune(&self, idle: &mut Vec<Idle>, now: Instant) {
        let timeout = self.settings.idle_timeout;
        let stale = idle
            .iter()
            .take_while(|i| now.saturating_duration_since(i.since) >= timeout)
            .count();
        if stale > 0 {
            idle.drain(..stale);
        }
    }

    /// The connector's error (boxed with TLS, a `ConnectError` without) as ours.
    fn connect_error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        map_connect_error(&*e.into(), self.settings.connect_timeout)
    }

    async fn connect(self: &Arc<Self>) -> Result<Conn, Error> {
        let mut connector = self.settings.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| self.connect_error(e))?;
        let io = connector
            .call(self.origin.clone())
            .await
            .map_err(|e| self.connect_error(e))?;
        self.start_sweep();
        if io.connected().is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|e| map_handshake_error(&e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *lock(&self.h2) = Some((sender.clone(), Instant::now()));
            Ok(Conn::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| map_handshake_error(&e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Conn::H1 {
                sender,
                reused: false,
            })
        }
    }

    /// HTTP/2 wants the scheme and authority in the URI, and no `Host` header.
    fn to_absolute_form(&self, req: &mut Request<Body>) -> Result<(), Error> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = self.origin.clone().into_parts();
        parts.path_and_query = Some(path);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| Error::InvalidInput {
            input: format!("URL path {:?}", req.uri()),
            reason: e.to_string(),
        })?;
        req.headers_mut().remove(http::header::HOST);
        Ok(())
    }

    /// Starts, once per host, a task that drops idle connections past the idle timeout
    /// while nobody uses the pool. It ends when the pool is dropped.
    fn start_sweep(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let me = Arc::downgrade(self);
        let every = (self.settings.idle_timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(host) = me.upgrade() else { return };
                let now = Instant::now();
                host.prune(&mut lock(&host.idle), now);
                host.expire_h2(&mut lock(&host.h2), now);
            }
        });
    }
}
