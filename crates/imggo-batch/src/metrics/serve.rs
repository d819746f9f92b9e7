//! `GET /metrics` in the Prometheus text format, served from a [`Tracker`] while a run goes on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use imggo_core::server::{self, ServeOptions};
use imggo_core::Error;

use super::Tracker;

/// Serves `/metrics` on `addr` until the returned task is aborted. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tracker: Arc<Tracker>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let (listener, local) = server::bind(addr).await.map_err(|source| Error::Io {
        path: format!("metrics listener {addr}"),
        source,
    })?;
    // No stop signal: the endpoint lives until its task is aborted at the end of the run.
    let stop = std::future::pending::<()>();
    let task = tokio::spawn(server::accept_loop(
        listener,
        ServeOptions::default(),
        stop,
        move || {
            let tracker = tracker.clone();
            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tracker = tracker.clone();
                async move { Ok::<_, Infallible>(answer(&tracker, req.uri().path())) }
            })
        },
    ));
    Ok((local, task))
}

/// The Prometheus text at `/metrics`, a 404 with a hint anywhere else.
fn answer(tracker: &Tracker, path: &str) -> Response<Full<Bytes>> {
    if path != "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"try /metrics\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(tracker.snapshot().to_prometheus())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
