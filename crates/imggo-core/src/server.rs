//! One accept loop for the small HTTP servers of imggo-rs (the emulator, the webhook
//! receiver, the metrics endpoint): accept, serve each connection on its own task, keep
//! serving after a failed accept, and on stop drain open connections for a bounded time.
//!
//! Behind the `server` feature, so that a build without it has no server code.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http_body_util::Full;
//! use hyper::{body::Bytes, service::service_fn, Response};
//! use imggo_core::server::{accept_loop, bind, ServeOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(accept_loop(
//!     listener,
//!     ServeOptions::default(),
//!     async move {
//!         let _ = stopped.await;
//!     },
//!     || service_fn(|_req| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hi")))) }),
//! ));
//! assert_ne!(addr.port(), 0);
//! let _ = stop.send(());
//! let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Binds `addr` (port 0 picks a free port) and returns the listener with the address it
/// really got.
pub async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// How long the loop pauses after a failed accept (out of file descriptors, a connection
/// reset before it was accepted) before it accepts again, rather than spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(5);

/// How [`accept_loop`] serves its connections. Every accepted socket gets `TCP_NODELAY`
/// (small answers go out at once) and HTTP/1.1 keep-alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Also speak HTTP/2 over clear text (h2c, prior knowledge), told apart per connection
    /// by its first bytes. Off: HTTP/1.1 only (default).
    pub h2c: bool,
    /// How long a client may take to send a request's headers (HTTP/1.1); `None` (default)
    /// sets no timer, which saves a timer entry per request on a server only local
    /// clients use.
    pub header_read_timeout: Option<Duration>,
    /// Connections served at once; at the cap the loop stops accepting and further
    /// connections wait in the listen queue. `None` (default): no cap.
    pub max_connections: Option<usize>,
    /// Once stopped, how long to wait for open connections to finish the requests they
    /// are serving (default 5 s).
    pub drain: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            h2c: false,
            header_read_timeout: None,
            max_connections: None,
            drain: Duration::from_secs(5),
        }
    }
}

/// Accepts connections on `listener` until `stop` completes, serving each on its own task
/// with the service `make_service` returns for it (it is called once per accepted
/// connection, so it can also count them). Then closes the listener, drops
/// `make_service` (and whatever it holds), asks open connections to finish and waits for
/// them up to [`ServeOptions::drain`].
///
/// A failed accept is not the end: the loop pauses for 5 ms and accepts again. A connection's own error (a client that goes away mid-request) ends only
/// that connection.
///
/// If the task running the loop is aborted instead, open connections are asked to finish
/// their requests and close.
pub async fn accept_loop<F, S, B>(
    listener: TcpListener,
    options: ServeOptions,
    stop: impl Future<Output = ()>,
    mut make_service: F,
) where
    F: FnMut() -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    if let Some(timeout) = options.header_read_timeout {
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout);
    }
    if !options.h2c {
        builder = builder.http1_only();
    }
    let slots = options
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))));
    tokio::pin!(stop);
    loop {
        let slot = match &slots {
            Some(slots) => tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => Some(slot),
                    Err(_) => break,
                },
                () = &mut stop => break,
            },
            None => None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(ACCEPT_PAUSE).await;
            continue;
        };
        // Only a latency hint: a socket that refuses it is served all the same.
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), make_service())
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    drop(make_service);
    let _ = tokio::time::timeout(options.drain, graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_each_connection_then_stops_and_drains() {
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        let options = ServeOptions {
            max_connections: Some(1),
            ..ServeOptions::default()
        };
        let server = tokio::spawn(accept_loop(
            listener,
            options,
            async move {
                let _ = stopped.await;
            },
            move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                })
            },
        ));
        for _ in 0..3 {
            let answer = get(addr).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("ok"), "{answer}");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 3);
        // An idle keep-alive connection does not hold the stop up: it is closed.
        let _idle = TcpStream::connect(addr).await.unwrap();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the loop ends once stopped")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
