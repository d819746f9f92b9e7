//! Webhooks end to end: the emulator delivers signed events to a `WebhookReceiver`;
//! forged, replayed, duplicate, oversized and malformed deliveries are refused or dropped.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as RawClient;
use hyper_util::rt::TokioExecutor;
use imggo_core::{CreateWebhook, EventKind, Manifest, Secret};
use imggo_emulator::{Config, Faults};
use imggo_http::{sign, Client, ReceiverOptions, ReceiverStats, WebhookReceiver};

const SECRET: &str = "whsec_emulated_0123456789";

/// POSTs `body` to the receiver with an optional signature header; returns the status.
async fn post(addr: SocketAddr, body: &[u8], signature: Option<&str>) -> u16 {
    let raw: RawClient<_, Full<Bytes>> = RawClient::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::post(format!("http://{addr}/hooks/imggo"))
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("X-ImgGo-Signature", sig);
    }
    let resp = raw
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// A receiver on a free loopback port that verifies with [`SECRET`].
async fn receiver() -> (SocketAddr, WebhookReceiver) {
    WebhookReceiver::bind(
        "127.0.0.1:0".parse().unwrap(),
        SECRET,
        ReceiverOptions::default(),
    )
    .await
    .unwrap()
}

/// Registers `url` as a webhook for every event, signed with [`SECRET`].
async fn subscribe(c: &Client, url: String) {
    c.create_webhook(&CreateWebhook {
        url,
        events: vec![],
        secret: Some(Secret::new(SECRET)),
    })
    .await
    .unwrap();
}

fn event_body(job_id: &str, sent: SystemTime) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": "job.succeeded",
        "job_id": job_id,
        "pattern_id": "p",
        "manifest": {"total": 1},
        "error": null,
        "timestamp": imggo_core::time::format_rfc3339(sent),
    }))
    .unwrap()
}

#[tokio::test]
async fn end_to_end_with_forged_replayed_and_duplicate_deliveries() {
    let (addr, mut events) = receiver().await;
    let Scenario { emu, pattern, c } = scenario(Config::default(), "P", object_schema()).await;
    subscribe(&c, format!("http://{addr}/hooks/imggo")).await;

    // 1. A real delivery from the emulator, signed over the raw body.
    let a = ingest_plate(&c, &pattern.id).await;
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("delivered")
        .unwrap();
    assert_eq!(ev.job_id, a.response.job_id);
    assert_eq!(ev.event, EventKind::JobSucceeded);
    assert!(matches!(ev.manifest, Some(Manifest::Json(_))));
    // The emulator counts the delivery once it has read the 200.
    for _ in 0..200 {
        if emu.stats().webhooks.delivered == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(emu.stats().webhooks.delivered, 1);

    // 2. Forged: signed with another secret, or not signed, or signature garbage.
    let fresh = event_body("job-forged", SystemTime::now());
    assert_eq!(
        post(addr, &fresh, Some(&sign(b"not-the-secret-at-all", &fresh))).await,
        401
    );
    assert_eq!(post(addr, &fresh, None).await, 401);
    assert_eq!(post(addr, &fresh, Some("sha256=zz")).await, 401);
    // A body changed after signing.
    let sig = sign(SECRET.as_bytes(), &fresh);
    let mut tampered = fresh.clone();
    tampered.push(b' ');
    assert_eq!(post(addr, &tampered, Some(&sig)).await, 401);

    // 3. Replayed: a correctly signed event from an hour ago (or from the future).
    let old = event_body("job-old", SystemTime::now() - Duration::from_secs(3600));
    assert_eq!(
        post(addr, &old, Some(&sign(SECRET.as_bytes(), &old))).await,
        400
    );
    let future = event_body("job-future", SystemTime::now() + Duration::from_secs(3600));
    assert_eq!(
        post(addr, &future, Some(&sign(SECRET.as_bytes(), &future))).await,
        400
    );

    // 4. Duplicate: the same (job_id, event) again is acknowledged but not handed out.
    let dup = event_body(&a.response.job_id, SystemTime::now());
    assert_eq!(
        post(addr, &dup, Some(&sign(SECRET.as_bytes(), &dup))).await,
        200
    );

    // 5. A valid new one gets through (and proves nothing else was queued before it).
    let other = event_body("job-other", SystemTime::now());
    assert_eq!(
        post(addr, &other, Some(&sign(SECRET.as_bytes(), &other))).await,
        200
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.job_id, "job-other");

    // 6. Oversized and malformed.
    let big = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        post(addr, &big, Some(&sign(SECRET.as_bytes(), &big))).await,
        413
    );
    let not_event = br#"{"hello":"world"}"#;
    assert_eq!(
        post(addr, not_event, Some(&sign(SECRET.as_bytes(), not_event))).await,
        400
    );

    assert_eq!(
        events.stats(),
        ReceiverStats {
            accepted: 2,
            duplicates: 1,
            bad_signature: 4,
            stale: 2,
            oversized: 1,
            malformed: 1
        }
    );
    events.shutdown().await;
    assert!(
        events.next().await.is_none(),
        "the stream ends after shutdown"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn an_absurd_timestamp_is_refused_and_the_receiver_keeps_serving() {
    let (addr, mut events) = receiver().await;
    for t in ["1e300", "-1", "\"1e300\"", "[1]"] {
        let body = format!(
            r#"{{"event":"job.succeeded","job_id":"j-{t}","manifest":{{}},"timestamp":{t}}}"#
        );
        let body = body.as_bytes();
        assert_eq!(
            post(addr, body, Some(&sign(SECRET.as_bytes(), body))).await,
            400,
            "{t}"
        );
    }
    let ok = event_body("job-ok", SystemTime::now());
    assert_eq!(
        post(addr, &ok, Some(&sign(SECRET.as_bytes(), &ok))).await,
        200
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.job_id, "job-ok");
    assert_eq!(events.stats().malformed, 4);
    events.shutdown().await;
}

#[tokio::test]
async fn concurrent_repeats_of_a_delivery_are_handed_out_once() {
    // A sender that retries (the docs' schedule) may deliver the same event twice at once.
    let (addr, mut events) = receiver().await;
    let body = event_body("job-7", SystemTime::now());
    let sig = sign(SECRET.as_bytes(), &body);
    let (a, b) = tokio::join!(post(addr, &body, Some(&sig)), post(addr, &body, Some(&sig)));
    assert_eq!((a, b), (200, 200));
    let first = events.next().await.unwrap();
    assert_eq!(first.job_id, "job-7");
    assert_eq!(events.stats().duplicates, 1);
    events.shutdown().await;
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn lost_deliveries_are_reconciled_by_polling() {
    // The server makes one attempt; when it is lost, polling still finds the result.
    let (addr, mut events) = receiver().await;
    let Scenario { emu, pattern, c } = scenario(
        Config::default().faults(Faults {
            webhook_loss: 1.0,
            ..Default::default()
        }),
        "P",
        None,
    )
    .await;
    subscribe(&c, format!("http://{addr}/h")).await;
    let a = ingest_plate(&c, &pattern.id).await;
    let job = c
        .wait_for_job(
            &a.response.job_id,
            &imggo_http::PollPolicy {
                first: Duration::from_millis(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(job.id, a.response.job_id);
    assert_eq!(emu.stats().webhooks.lost, 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.next())
            .await
            .is_err(),
        "nothing arrived"
    );
    events.shutdown().await;
    emu.shutdown().await;
}

/// A receiver with small limits, for the hostile-sender tests.
async fn tight_receiver(max_connections: usize) -> (SocketAddr, WebhookReceiver) {
    WebhookReceiver::bind(
        "127.0.0.1:0".parse().unwrap(),
        Secret::new(SECRET),
        ReceiverOptions {
            body_timeout: Duration::from_millis(300),
            max_connections,
            ..ReceiverOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Sends a request head announcing a 1000-byte body, then only `sent` bytes of it.
async fn trickle(addr: SocketAddr, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /hooks/imggo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 1000\r\nX-ImgGo-Signature: sha256=00\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let (addr, _rx) = tight_receiver(16).await;
    let mut s = trickle(addr, 10).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
        .await
        .expect("answered, not held open")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_their_turn() {
    let (addr, _rx) = tight_receiver(2).await;
    // Two senders hold both slots, their bodies not yet sent.
    let a = trickle(addr, 0).await;
    let b = trickle(addr, 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = tokio::spawn(post(addr, b"{}", Some("sha256=00")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served past the cap"
    );
    drop((a, b));
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(status, 401, "served, and refused for its bad signature");
}

/// A create whose answer is lost (the server made the registration, the client heard a
/// reset) or refused by a 503 ends with exactly one registration of the URL.
#[tokio::test]
async fn a_registration_whose_answer_was_lost_is_found_not_made_twice() {
    use imggo_testkit::proxy::{Fault, HostileProxy, Rule};
    let emu = emulator(Config::default()).await;
    let unavailable = Fault::Respond {
        status: 503,
        headers: vec![("content-type", "application/json")],
        body: br#"{"success":false,"error":{"code":"SERVICE_UNAVAILABLE","message":"busy"}}"#
            .to_vec(),
    };
    let proxy = HostileProxy::start(
        &emu.base_url(),
        vec![
            Rule::new("POST", "/webhooks", unavailable).first(1),
            Rule::new("POST", "/webhooks", Fault::Reset).first(1),
        ],
    )
    .await;
    let c = builder(&emu).base_url(proxy.base_url()).build().unwrap();
    let url = "http://127.0.0.1:9/hook".to_owned();
    let hook = c
        .register_webhook(&CreateWebhook {
            url: url.clone(),
            events: vec![],
            secret: Some(Secret::new(SECRET)),
        })
        .await
        .unwrap();
    assert_eq!((proxy.fired(0), proxy.fired(1)), (1, 1));
    let listed = client(&emu).list_webhooks().await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|w| w.url == url).collect();
    assert_eq!(mine.len(), 1, "{listed:?}");
    assert_eq!(mine[0].id, hook.id);
    // A plain create through the same faults would have failed at the first 503.
    let plain = HostileProxy::start(
        &emu.base_url(),
        vec![Rule::new("POST", "/webhooks", Fault::Reset).first(1)],
    )
    .await;
    let c = builder(&emu).base_url(plain.base_url()).build().unwrap();
    let lost = c
        .create_webhook(&CreateWebhook {
            url: "http://127.0.0.1:9/other".into(),
            events: vec![],
            secret: Some(Secret::new(SECRET)),
        })
        .await;
    assert!(lost.is_err(), "{lost:?}");
    emu.shutdown().await;
}
