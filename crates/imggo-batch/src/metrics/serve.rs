//! `GET /metrics` in the Prometheus text format, served from a [`Tracker`] while a run goes on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use imggo_core::Error;

use super::Tracker;
use tokio::net::TcpListener;

/// Serves `/metrics` on `addr` until the returned task is aborted. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tracker: Arc<Tracker>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        path: format!("metrics listener {addr}"),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        path: format!("metrics listener {addr}"),
        source,
    })?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors, or a connection reset before accept: one
                // failed accept must not end the endpoint for the rest of the run.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            let tracker = tracker.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tracker = tracker.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(tracker.snapshot().to_prometheus())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                    };
                    Ok::<_, Infallible>(resp.expect("static response parts are valid"))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}
