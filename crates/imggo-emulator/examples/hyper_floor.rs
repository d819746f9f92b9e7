//! The load-test baseline: a bare hyper server, configured like the emulator (own accept
//! loop, auto HTTP/1.1 + h2c, keep-alive, nodelay, multi-thread runtime), that answers every
//! request with the same fixed 665-byte JSON body, so `wrk` against it measures the floor
//! cost of hyper and the loopback on this machine. Prints `listening on http://ADDR`.
//!
//! `cargo run --release -p imggo-emulator --example hyper_floor -- 127.0.0.1:0`

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // 665 bytes: the size of a succeeded job's answer in the emulator's load test.
    let body = Bytes::from(format!(
        "{{\"success\":true,\"data\":\"{}\"}}",
        "x".repeat(639)
    ));
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let body = body.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(body))
                            .unwrap_or_default(),
                    )
                }
            });
            // Clients that disconnect end their connection task; nothing to report.
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
