//! A fault-injecting HTTP proxy: it stands between a client and a server (the emulator)
//! on loopback and spoils chosen responses the way proxies, load balancers and broken
//! servers do — absurd headers, HTML error pages, cut and trickled bodies, bodies over a
//! client's caps, a connection reset after the server acted.
//!
//! ```no_run
//! # async fn f(upstream: &str) {
//! use imggo_testkit::proxy::{Fault, HostileProxy, Rule};
//! let proxy = HostileProxy::start(
//!     upstream,
//!     vec![Rule::new("POST", "/ingest", Fault::Reset).first(2)],
//! )
//! .await;
//! // point the client at proxy.base_url(); afterwards proxy.fired(0) == 2
//! # }
//! ```

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, io::Error>;

/// How a matching response is spoiled.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forwards, then sets these headers on the server's answer (replacing any of the
    /// same name), e.g. `("x-ratelimit-reset", "1e20")` or a wrong `content-type`.
    Headers(Vec<(&'static str, &'static str)>),
    /// Answers by itself without forwarding: the server never sees the request. An
    /// HTML 502 from a load balancer, or a 429 with an absurd `Retry-After`.
    Respond {
        /// The status.
        status: u16,
        /// Headers of the answer.
        headers: Vec<(&'static str, &'static str)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Forwards, then replaces the body with this one (the server's headers kept, its
    /// length fixed): a manifest with numbers out of range, or a body over a cap.
    Body(Vec<u8>),
    /// Forwards, then replaces every occurrence of the first string in the server's body
    /// with the second.
    Replace(&'static str, &'static str),
    /// Forwards, then sends the head with the full `content-length` and half the body,
    /// then closes the connection.
    Truncate,
    /// Forwards, then sends the body one byte at a time, this long apart.
    Trickle(Duration),
    /// Forwards (the server acts on the request), then closes the connection without an
    /// answer.
    Reset,
}

/// Which responses a fault spoils: a method, a path fragment, and how many matches.
#[derive(Debug, Clone)]
pub struct Rule {
    method: &'static str,
    path_contains: &'static str,
    fault: Fault,
    first: usize,
}

impl Rule {
    /// Spoils every request with this method whose path contains `path_contains`.
    pub fn new(method: &'static str, path_contains: &'static str, fault: Fault) -> Self {
        Self {
            method,
            path_contains,
            fault,
            first: usize::MAX,
        }
    }

    /// Spoils only the first `n` matching requests; later ones pass untouched.
    pub fn first(mut self, n: usize) -> Self {
        self.first = n;
        self
    }
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct HostileProxy {
    addr: SocketAddr,
    path: String,
    fired: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: Uri,
    rules: Vec<Rule>,
    fired: Arc<Vec<AtomicUsize>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HostileProxy {
    /// Starts a proxy on 127.0.0.1 (port 0) in front of `upstream`, an `http://` base URL
    /// such as the emulator's `http://127.0.0.1:PORT/api`. The first rule that matches a
    /// request (and has matches left) decides its fault; the rest pass untouched.
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let upstream: Uri = upstream.parse().expect("an http:// upstream URL");
        let path = upstream.path().trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let fired: Arc<Vec<AtomicUsize>> = Arc::new(rules.iter().map(|_| 0.into()).collect());
        let shared = Arc::new(Shared {
            upstream,
            rules,
            fired: fired.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { shared.handle(req).await }
                    });
                    // A served fault ends connections with errors: that is the point.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            path,
            fired,
            task,
        }
    }

    /// The proxy's base URL: the upstream's with the proxy's address.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// How many requests rule `i` (in the order given) has spoiled.
    pub fn fired(&self, i: usize) -> usize {
        self.fired[i].load(Ordering::SeqCst)
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// The fault of the first rule that matches and has matches left, counted.
    fn fault_for(&self, method: &str, path: &str) -> Option<Fault> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.method.eq_ignore_ascii_case(method) && path.contains(rule.path_contains) {
                let taken = self.fired[i].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < rule.first).then_some(n + 1)
                });
                if taken.is_ok() {
                    return Some(rule.fault.clone());
                }
            }
        }
        None
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
        let fault = self.fault_for(req.method().as_str(), req.uri().path());
        if let Some(Fault::Respond {
            status,
            headers,
            body,
        }) = fault
        {
            // The body is still read, as a server would before answering.
            let _ = req.into_body().collect().await;
            let mut resp = Response::new(full(body));
            *resp.status_mut() = StatusCode::from_u16(status).expect("a status code");
            set(&mut resp, &headers);
            return Ok(resp);
        }
        let (status, headers, body) = self.forward(req).await?;
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        let body = match fault {
            None | Some(Fault::Respond { .. }) => body,
            Some(Fault::Headers(h)) => {
                set(&mut resp, &h);
                body
            }
            Some(Fault::Body(b)) => b.into(),
            Some(Fault::Replace(from, to)) => {
                let text = String::from_utf8_lossy(&body).replace(from, to);
                text.into_bytes().into()
            }
            Some(Fault::Truncate) => {
                let half = body.slice(..body.len() / 2);
                *resp.body_mut() = streamed(vec![half], Duration::ZERO, true);
                return Ok(resp);
            }
            Some(Fault::Trickle(every)) => {
                let bytes = (0..body.len()).map(|i| body.slice(i..=i)).collect();
                resp.headers_mut().remove(http::header::CONTENT_LENGTH);
                *resp.body_mut() = streamed(bytes, every, false);
                return Ok(resp);
            }
            Some(Fault::Reset) => {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        };
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = full(body);
        Ok(resp)
    }

    /// Sends the request on to the upstream (uncompressed, so that faults can read the
    /// body) and reads the whole answer.
    async fn forward(
        &self,
        req: Request<Incoming>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), io::Error> {
        let (mut parts, body) = req.into_parts();
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut uri = self.upstream.clone().into_parts();
        uri.path_and_query = Some(path.parse().map_err(io::Error::other)?);
        parts.uri = Uri::from_parts(uri).map_err(io::Error::other)?;
        parts.headers.remove(http::header::HOST);
        parts.headers.remove(http::header::ACCEPT_ENCODING);
        let resp = self
            .client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(io::Error::other)?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A body sent chunk by chunk, `every` apart, ending in an error when `cut`.
fn streamed(chunks: Vec<Bytes>, every: Duration, cut: bool) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(1);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(Frame::data(c))).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
        if cut {
            let cut = io::Error::new(io::ErrorKind::ConnectionReset, "cut");
            let _ = tx.send(Err(cut)).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

fn set(resp: &mut Response<Body>, headers: &[(&'static str, &'static str)]) {
    for (name, value) in headers {
        resp.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}
