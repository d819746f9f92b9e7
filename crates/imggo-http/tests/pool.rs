//! The connection pool: reuse under concurrency, idle expiry, the idle bound, endpoints
//! sharing a host, and connections the server closed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use imggo_emulator::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_reuse_at_most_one_connection_each() {
    let Scenario { emu, pattern, c } = scenario(Config::default(), "P", None).await;
    let job = ingest_plate(&c, &pattern.id).await.response.job_id;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, job) = (c.clone(), job.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    c.get_job(&job).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = emu.stats();
    assert_eq!(s.job_polls, 200);
    assert!(
        (1..=8).contains(&s.connections_accepted),
        "8 concurrent callers need at most 8 connections, got {}",
        s.connections_accepted
    );
    assert_eq!(c.transport_stats().attempts, 201, "no call was retried");
    emu.shutdown().await;
}

#[tokio::test]
async fn idle_connections_expire_and_the_idle_bound_holds() {
    let Scenario { emu, pattern, c: _ } = scenario(Config::default(), "P", None).await;
    let c = builder(&emu)
        .pool_idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let job = ingest_plate(&c, &pattern.id).await.response.job_id;
    let before = emu.stats().connections_accepted;
    c.get_job(&job).await.unwrap();
    c.get_job(&job).await.unwrap();
    assert_eq!(
        emu.stats().connections_accepted,
        before,
        "within the idle timeout the ingest's connection is reused"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.get_job(&job).await.unwrap();
    assert_eq!(
        emu.stats().connections_accepted,
        before + 1,
        "past the idle timeout a new connection is made"
    );

    let unpooled = builder(&emu).pool_max_idle_per_host(0).build().unwrap();
    let before = emu.stats().connections_accepted;
    for _ in 0..3 {
        unpooled.get_job(&job).await.unwrap();
    }
    assert_eq!(
        emu.stats().connections_accepted,
        before + 3,
        "no idle connection is kept"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn endpoints_on_one_host_share_connections() {
    let Scenario { emu, pattern, c } = scenario(Config::default(), "P", None).await;
    let job = ingest_plate(&c, &pattern.id).await.response.job_id;
    let before = emu.stats().connections_accepted;
    let same_host = c.with_base_url(&format!("{}/", emu.base_url())).unwrap();
    for _ in 0..5 {
        same_host.get_job(&job).await.unwrap();
        c.get_job(&job).await.unwrap();
    }
    assert_eq!(emu.stats().connections_accepted, before);
    emu.shutdown().await;
}

/// A bare HTTP/1.1 server: answers one request per connection with a keep-alive health
/// answer, then closes the connection 20 ms later without saying so. Returns its port,
/// the number of connections accepted and the request heads it read.
async fn closing_server() -> (u16, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (a, h) = (accepted.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let body = br#"{"status":"healthy"}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                sock.write_all(head.as_bytes()).await.unwrap();
                sock.write_all(body).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    (port, accepted, heads)
}

#[tokio::test]
async fn a_connection_the_server_closed_is_not_reused() {
    let (port, accepted, heads) = closing_server().await;
    let c = imggo_http::Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/api"))
        .api_key(KEY)
        .build()
        .unwrap();
    for i in 1..=3 {
        // health() makes one attempt: a reused dead connection would fail it.
        assert_eq!(c.health().await.unwrap().status, "healthy");
        assert_eq!(accepted.load(Ordering::SeqCst), i);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.transport_stats().attempts, 3);
    let heads = heads.lock().unwrap();
    for head in heads.iter() {
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("get /api/_health http/1.1\r\n"),
            "origin-form request line: {head}"
        );
        assert!(
            head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
    }
}
