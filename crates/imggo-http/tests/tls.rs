//! HTTPS through the pool, against a local rustls server: HTTP/2 when ALPN offers it (one
//! multiplexed connection, let go when idle past the timeout), HTTP/1.1 keep-alive when it does not, and an untrusted
//! certificate refused.
//!
//! `tests/tls/` holds a test CA and a certificate for 127.0.0.1 / localhost signed by it
//! (P-256, valid until 2126), made with openssl. The client trusts the CA through
//! `TlsRoots::Native`, which reads `SSL_CERT_FILE`; everything runs in one test so that the
//! variable is set before any client (or any other thread) reads it.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use imggo_core::{Error, TransportKind};
use imggo_http::{Client, TlsRoots};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// What the server saw: connections accepted, and per request its version, path and
/// `Host` header.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<(Version, String, Option<String>)>>,
}

/// A TLS server offering `alpn`, answering every request with a healthy health body.
async fn server(alpn: &[&[u8]]) -> (u16, Arc<Seen>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls_file("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(tls_file("server.key")).expect("server.key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            s.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let host = req
                        .headers()
                        .get(http::header::HOST)
                        .map(|v| v.to_str().unwrap().to_owned());
                    s.requests.lock().unwrap().push((
                        req.version(),
                        req.uri().path().to_owned(),
                        host,
                    ));
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            br#"{"status":"healthy"}"#,
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, seen)
}

fn client(port: u16, roots: TlsRoots) -> Client {
    Client::builder()
        .base_url(format!("https://127.0.0.1:{port}/api"))
        .api_key("imggo_tls_test_key")
        .tls_roots(roots)
        .build()
        .expect("client")
}

#[test]
fn https_with_http2_and_http1_and_an_untrusted_certificate() {
    // Set before the runtime starts any thread that could read the environment.
    std::env::set_var("SSL_CERT_FILE", tls_file("ca.pem"));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(https_checks());
}

async fn https_checks() {
    // HTTP/2 through ALPN: after the first call, 20 concurrent calls share its connection.
    let (port, seen) = server(&[b"h2", b"http/1.1"]).await;
    let c = client(port, TlsRoots::Native);
    assert_eq!(c.health().await.unwrap().status, "healthy");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.health().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, "healthy");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    {
        let requests = seen.requests.lock().unwrap();
        assert_eq!(requests.len(), 21);
        for (version, path, _) in requests.iter() {
            assert_eq!((*version, path.as_str()), (Version::HTTP_2, "/api/_health"));
        }
    }

    // Past the idle timeout the HTTP/2 connection is let go and a new one is made.
    let (port, seen) = server(&[b"h2"]).await;
    let c = Client::builder()
        .base_url(format!("https://127.0.0.1:{port}/api"))
        .api_key("imggo_tls_test_key")
        .tls_roots(TlsRoots::Native)
        .pool_idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    c.health().await.unwrap();
    c.health().await.unwrap();
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.health().await.unwrap();
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);

    // HTTP/1.1 when the server offers nothing else: keep-alive, origin-form, Host.
    let (port, seen) = server(&[b"http/1.1"]).await;
    let c = client(port, TlsRoots::Native);
    for _ in 0..5 {
        assert_eq!(c.health().await.unwrap().status, "healthy");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    let host = format!("127.0.0.1:{port}");
    for (version, path, h) in seen.requests.lock().unwrap().iter() {
        assert_eq!(*version, Version::HTTP_11);
        assert_eq!(path, "/api/_health");
        assert_eq!(h.as_deref(), Some(host.as_str()));
    }

    // The public roots do not include the test CA: the handshake fails, typed, and no
    // request reaches the server.
    let untrusted = client(port, TlsRoots::Webpki);
    let before = seen.requests.lock().unwrap().len();
    let e = untrusted.health().await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Transport {
                kind: TransportKind::Connect,
                message
            } if message.contains("certificate")
        ),
        "{e:?}"
    );
    assert_eq!(seen.requests.lock().unwrap().len(), before);
}
