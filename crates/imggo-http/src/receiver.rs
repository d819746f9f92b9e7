//! [`WebhookReceiver`]: a small HTTP server that takes the service's webhook deliveries,
//! verifies each against the raw body, drops stale and repeated ones, and hands the rest
//! out as a [`Stream`].

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_core::Stream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use imggo_core::server::{self, ServeOptions};
use imggo_core::{Error, Secret, WebhookEvent};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::signature::{verify_signature, SIGNATURE_HEADER};

/// Limits and windows of a [`WebhookReceiver`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverOptions {
    /// Bodies above this get 413 (default 1 MiB).
    pub max_body_bytes: usize,
    /// Events whose `timestamp` is further than this from now (either way) are refused
    /// as replays (default 5 minutes).
    pub replay_window: Duration,
    /// Refuse events without a parseable `timestamp` (default true: the server always
    /// sends one, and without it the replay window cannot be enforced).
    pub require_timestamp: bool,
    /// How many `(job_id, event)` pairs are remembered for de-duplication (default 100 000).
    pub dedupe_capacity: usize,
    /// Verified events buffered before deliveries wait for the stream's reader (default 1024).
    pub channel_capacity: usize,
    /// How long shutdown waits for in-flight deliveries (default 5 s).
    pub shutdown_grace: Duration,
    /// How long a delivery's body may take to arrive (default 10 s): a sender that
    /// trickles it is answered 408 and its connection closed.
    pub body_timeout: Duration,
    /// Connections served at once (default 256); more wait in the listen queue.
    pub max_connections: usize,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            replay_window: Duration::from_secs(300),
            require_timestamp: true,
            dedupe_capacity: 100_000,
            channel_capacity: 1024,
            shutdown_grace: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

imggo_core::counters! {
    /// What a receiver has done so far.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ReceiverStats;
    /// Live counters behind [`ReceiverStats`].
    struct Counters {
        /// Verified, fresh, first deliveries handed to the stream (answered 200).
        accepted,
        /// Verified repeats of an already accepted `(job_id, event)` (answered 200, dropped).
        duplicates,
        /// Missing or wrong signatures (answered 401).
        bad_signature,
        /// Timestamps outside the replay window, or missing (answered 400).
        stale,
        /// Bodies over the size limit (answered 413).
        oversized,
        /// Signed bodies that are not a webhook event, and wrong methods (answered 400/405).
        malformed,
    }
}

struct Dedupe {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    capacity: usize,
}

impl Dedupe {
    /// True when the pair is new (and now remembered).
    fn insert(&mut self, key: (String, String)) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.seen.insert(key);
        true
    }
}

struct Shared {
    secret: Secret,
    options: ReceiverOptions,
    dedupe: Mutex<Dedupe>,
    tx: mpsc::Sender<WebhookEvent>,
    counters: Arc<Counters>,
}

/// A running webhook endpoint; read it as a `Stream` of verified [`WebhookEvent`]s.
///
/// Every POST (any path) is checked in this order: body size (413), `X-ImgGo-Signature`
/// over the raw bytes (401), JSON shape (400), `timestamp` within the replay window (400),
/// then de-duplicated per `(job_id, event)`: a repeat is answered 200 but not handed out
/// again. The stream ends after [`shutdown`](Self::shutdown) once in-flight deliveries
/// are done. Dropping the receiver stops the server too.
pub struct WebhookReceiver {
    rx: mpsc::Receiver<WebhookEvent>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// Binds `addr` (port 0 picks a free port) and starts serving on the current Tokio
    /// runtime. Returns the bound address and the receiver.
    pub async fn bind(
        addr: SocketAddr,
        secret: impl Into<Secret>,
        options: ReceiverOptions,
    ) -> Result<(SocketAddr, WebhookReceiver), Error> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(Error::Config("webhook secret is empty".into()));
        }
        let (listener, local_addr) = server::bind(addr).await.map_err(|source| Error::Io {
            path: format!("webhook listener {addr}"),
            source,
        })?;
        let (tx, rx) = mpsc::channel(options.channel_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            secret,
            dedupe: Mutex::new(Dedupe {
                seen: HashSet::new(),
                order: VecDeque::new(),
                capacity: options.dedupe_capacity,
            }),
            options,
            tx,
            counters: counters.clone(),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, shared, stopped));
        Ok((
            local_addr,
            WebhookReceiver {
                rx,
                local_addr,
                stop: Some(stop),
                task: Some(task),
                counters,
            },
        ))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counts of accepted and refused deliveries so far.
    pub fn stats(&self) -> ReceiverStats {
        self.counters.snapshot()
    }

    /// Stops accepting connections and waits (up to the grace period) for in-flight
    /// deliveries. Events already verified stay readable from the stream, which then ends.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Stream for WebhookReceiver {
    type Item = WebhookEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WebhookEvent>> {
        self.rx.poll_recv(cx)
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, stopped: oneshot::Receiver<()>) {
    let options = ServeOptions {
        h2c: false,
        header_read_timeout: Some(Duration::from_secs(30)),
        max_connections: Some(shared.options.max_connections),
        drain: shared.options.shutdown_grace,
    };
    let stopped = async move {
        let _ = stopped.await;
    };
    // The loop drops this closure, and with it `shared`'s sender, before it drains: the
    // stream ends once the last in-flight delivery is done.
    server::accept_loop(listener, options, stopped, move || {
        let shared = shared.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(&shared, req).await) }
        })
    })
    .await;
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let c = &shared.counters;
    let bump = |a: &AtomicU64| {
        a.fetch_add(1, Ordering::Relaxed);
    };
    if req.method() != Method::POST {
        bump(&c.malformed);
        return reply(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let max = shared.options.max_body_bytes;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        bump(&c.oversized);
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    }
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let read = Limited::new(req.into_body(), max).collect();
    let Ok(read) = tokio::time::timeout(shared.options.body_timeout, read).await else {
        bump(&c.malformed);
        let mut r = reply(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return r;
    };
    let body = match read {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            bump(&c.oversized);
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
        }
        Err(_) => {
            bump(&c.malformed);
            return reply(StatusCode::BAD_REQUEST, "could not read body\n");
        }
    };
    let Some(signature) = signature else {
        bump(&c.bad_signature);
        return reply(StatusCode::UNAUTHORIZED, "missing signature\n");
    };
    if !verify_signature(shared.secret.expose().as_bytes(), &body, &signature) {
        bump(&c.bad_signature);
        return reply(StatusCode::UNAUTHORIZED, "invalid signature\n");
    }
    let event: WebhookEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(_) => {
            bump(&c.malformed);
            return reply(StatusCode::BAD_REQUEST, "not a webhook event\n");
        }
    };
    match event.sent_at() {
        Ok(Some(at)) => {
            let now = SystemTime::now();
            let skew = match now.duration_since(at) {
                Ok(past) => past,
                Err(future) => future.duration(),
            };
            if skew > shared.options.replay_window {
                bump(&c.stale);
                return reply(
                    StatusCode::BAD_REQUEST,
                    "timestamp outside the replay window\n",
                );
            }
        }
        Ok(None) if shared.options.require_timestamp => {
            bump(&c.stale);
            return reply(StatusCode::BAD_REQUEST, "missing timestamp\n");
        }
        Ok(None) => {}
        Err(_) => {
            bump(&c.malformed);
            return reply(StatusCode::BAD_REQUEST, "invalid timestamp\n");
        }
    }
    let key = (event.job_id.clone(), event.event.as_str().to_owned());
    let fresh = shared
        .dedupe
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key);
    if !fresh {
        bump(&c.duplicates);
        return reply(StatusCode::OK, "duplicate\n");
    }
    if shared.tx.send(event).await.is_err() {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "receiver closed\n");
    }
    bump(&c.accepted);
    reply(StatusCode::OK, "ok\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_forgets_oldest_at_capacity() {
        let mut d = Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: 2,
        };
        let k = |s: &str| (s.to_owned(), "job.succeeded".to_owned());
        assert!(d.insert(k("a")));
        assert!(!d.insert(k("a")));
        assert!(d.insert(k("b")));
        assert!(d.insert(k("c")));
        assert!(d.insert(k("a")), "a was evicted");
        assert!(!d.insert(k("c")));
        assert!(
            d.insert(("c".into(), "job.failed".into())),
            "other event of the same job"
        );
    }
}
