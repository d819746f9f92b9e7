//! Every endpoint against the emulator over loopback HTTP: happy paths and typed errors,
//! connection reuse, gzip, rate-limit observation, regional endpoint selection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use imggo_core::{
    ContentHash, CreatePattern, CreateWebhook, Error, ErrorCode, IdempotencyKey, JobStatus,
    ListPatterns, Manifest, PatternSchemas, ResultFormat, Secret, UpdatePattern,
};
use imggo_emulator::{Config, Faults};
use imggo_http::{Client, IngestOptions, PollPolicy};

fn fast_poll() -> PollPolicy {
    PollPolicy {
        first: Duration::from_millis(5),
        second: Duration::from_millis(5),
        factor: 1.5,
        max_interval: Duration::from_millis(50),
        deadline: Duration::from_secs(10),
    }
}

fn api_code(e: &Error) -> (u16, ErrorCode, Option<String>) {
    match e {
        Error::Api(a) => (a.status, a.code.clone(), a.request_id.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn patterns_crud_and_auto_pagination() {
    let emu = emulator(Config::default()).await;
    let c = client(&emu);
    let mut ids = Vec::new();
    for i in 0..5 {
        let p = c
            .create_pattern(&CreatePattern {
                name: format!("Receipts {i}"),
                instructions: "Extract merchant, date and total".into(),
                schemas: PatternSchemas::json(serde_json::json!({"type": "object"})),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(p.name, format!("Receipts {i}"));
        ids.push(p.id);
    }

    let page = c
        .list_patterns_page(&ListPatterns {
            page: Some(1),
            per_page: Some(2),
            is_active: None,
        })
        .await
        .unwrap();
    assert_eq!(page.data.len(), 2);
    assert_eq!(page.pagination.total, 5);
    assert_eq!(page.pagination.total_pages, 3);

    let all: Vec<_> = c
        .list_patterns(ListPatterns {
            per_page: Some(2),
            ..Default::default()
        })
        .collect()
        .await;
    let mut listed: Vec<String> = all.into_iter().map(|p| p.unwrap().id).collect();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want, "the stream walks all three pages once");
    assert_eq!(emu.stats().requests_with("GET /api/patterns", 200), 4);

    let got = c.get_pattern(&ids[0]).await.unwrap();
    assert_eq!(got.id, ids[0]);
    let updated = c
        .update_pattern(
            &ids[0],
            &UpdatePattern {
                name: Some("Renamed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "Renamed");
    assert_eq!(c.get_pattern(&ids[0]).await.unwrap().name, "Renamed");

    c.delete_pattern(&ids[0]).await.unwrap();
    let e = c.get_pattern(&ids[0]).await.unwrap_err();
    let (status, code, request_id) = api_code(&e);
    assert_eq!((status, code), (404, ErrorCode::NotFound));
    assert!(
        request_id.is_some_and(|r| r.starts_with("req_")),
        "X-Request-ID is kept"
    );
    assert!(!e.is_retryable());

    // Validation errors are typed and not retried.
    let before = emu.stats().requests_of("POST /api/patterns");
    let e = c
        .create_pattern(&CreatePattern {
            name: "Bad/name!".into(),
            instructions: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(api_code(&e).0, 400, "{e}");
    assert_eq!(emu.stats().requests_of("POST /api/patterns"), before + 1);

    // A bad query is refused before any request.
    let e = c
        .list_patterns_page(&ListPatterns {
            per_page: Some(500),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn ingest_bytes_poll_and_formats() {
    let Scenario { emu, pattern, c } =
        scenario(Config::default(), "Invoices", object_schema()).await;
    let img = image("invoice1.jpg");
    let hash = ContentHash::of(&img);

    let first = c
        .ingest_bytes(&pattern.id, img.clone(), named("invoice1.jpg"))
        .await
        .unwrap();
    assert_eq!(first.http_status, 202);
    assert_eq!(first.attempts, 1);
    assert!(!first.is_duplicate());
    assert_eq!(
        first.idempotency_key,
        IdempotencyKey::derive(&pattern.id, &hash, None)
    );

    let job = c
        .wait_for_job(&first.response.job_id, &fast_poll())
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert!(
        matches!(job.manifest, Some(Manifest::Json(_))),
        "{:?}",
        job.manifest
    );
    assert_eq!(
        job.idempotency_key.as_deref(),
        Some(first.idempotency_key.as_str())
    );

    // The same image again: the key matches, the server answers 200 with the same job.
    let again = c
        .ingest_bytes(&pattern.id, img.clone(), IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(again.http_status, 200);
    assert!(again.is_duplicate());
    assert_eq!(again.response.job_id, first.response.job_id);
    let s = emu.stats();
    assert_eq!(s.jobs_created, 1);
    assert_eq!(s.ingests_replayed, 1);
    assert_eq!(s.ingests_of(&hash.to_string()), 2);

    for format in [
        ResultFormat::Yaml,
        ResultFormat::Xml,
        ResultFormat::Csv,
        ResultFormat::Text,
        ResultFormat::Json,
    ] {
        let r = c.get_job_formatted(&job.id, format).await.unwrap();
        assert!(!r.body.is_empty(), "{format:?}");
        if format != ResultFormat::Json {
            assert_eq!(r.job_id.as_deref(), Some(job.id.as_str()), "{format:?}");
            assert_eq!(r.job_status, Some(JobStatus::Succeeded), "{format:?}");
        }
    }

    // Unknown job: typed 404.
    let e = c.get_job("no-such-job").await.unwrap_err();
    assert_eq!(api_code(&e).1, ErrorCode::NotFound);
    emu.shutdown().await;
}

#[tokio::test]
async fn png_named_jpg_is_sent_as_png_and_extras_change_the_key() {
    let Scenario { emu, pattern, c } = scenario(Config::default(), "Prescriptions", None).await;
    let img = image("prescription1.jpg"); // really a PNG
    let a = c
        .ingest_bytes(&pattern.id, img.clone(), named("prescription1.jpg"))
        .await
        .unwrap();
    assert_eq!(a.http_status, 202);
    let extras = serde_json::json!({"batch": "b1", "row": 7});
    let b = c
        .ingest_bytes(
            &pattern.id,
            img.clone(),
            IngestOptions {
                extras: Some(extras.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(b.http_status, 202, "other extras, other key, new job");
    assert_ne!(a.idempotency_key, b.idempotency_key);
    let job = c
        .wait_for_job(&b.response.job_id, &fast_poll())
        .await
        .unwrap();
    assert_eq!(job.extras, Some(extras));

    // A given content hash (of the original file) is used instead of hashing the upload.
    let original = ContentHash::of(b"the original, before optimisation");
    let d = c
        .ingest_bytes(
            &pattern.id,
            img,
            IngestOptions {
                content_hash: Some(original),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        d.idempotency_key,
        IdempotencyKey::derive(&pattern.id, &original, None)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_locally() {
    let Scenario { emu, pattern, c } = scenario(Config::default(), "P", None).await;
    let cases: Vec<(&str, Bytes, IngestOptions)> = vec![
        ("", image("car-plate3.jpg"), IngestOptions::default()),
        (
            &pattern.id,
            Bytes::from_static(b"%PDF-1.7\n..."),
            named("scan.pdf"),
        ),
        (&pattern.id, Bytes::new(), IngestOptions::default()),
        (
            &pattern.id,
            image("car-plate3.jpg"),
            IngestOptions {
                extras: Some(serde_json::json!([1, 2])),
                ..Default::default()
            },
        ),
    ];
    for (pid, bytes, opts) in cases {
        let e = c.ingest_bytes(pid, bytes, opts).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    }
    let e = c
        .ingest_bytes(
            &pattern.id,
            Bytes::from_static(b"%PDF-1.7"),
            named("scan.pdf"),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("scan.pdf"),
        "the error names the input: {e}"
    );
    let mut huge = vec![0u8; imggo_http::MAX_UPLOAD_BYTES + 1];
    huge[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let e = c
        .ingest_bytes(&pattern.id, huge.into(), IngestOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("upload limit"), "{e}");
    for url in ["ftp://x/a.jpg", "not a url", "http://", "/relative.jpg"] {
        let e = c
            .ingest_url(&pattern.id, url, IngestOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{url}: {e:?}");
    }
    assert!(matches!(
        c.get_job("").await,
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(c.transport_stats().calls, 0, "nothing was sent");
    assert_eq!(emu.stats().requests_total, 0);
    emu.shutdown().await;
}

/// A one-route loopback server for the emulator to fetch `image_url`s from.
async fn serve_image(bytes: Bytes) -> (String, tokio::task::JoinHandle<()>) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let b = bytes.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(b),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/images/receipt.jpg"), task)
}

#[tokio::test]
async fn ingest_url_is_fetched_by_the_service_and_keyed_by_url() {
    let Scenario { emu, pattern, c } = scenario(Config::default(), "Receipts", None).await;
    let img = image("car-plate3.jpg");
    let (url, server) = serve_image(img.clone()).await;

    let a = c
        .ingest_url(&pattern.id, &url, IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(a.http_status, 202);
    assert_eq!(
        a.idempotency_key,
        IdempotencyKey::derive(&pattern.id, &ContentHash::of(url.as_bytes()), None)
    );
    let job = c
        .wait_for_job(&a.response.job_id, &fast_poll())
        .await
        .unwrap();
    assert_eq!(job.image_url.as_deref(), Some(url.as_str()));
    assert_eq!(
        emu.stats().ingests_of(&ContentHash::of(&img).to_string()),
        1,
        "the service fetched it"
    );

    let b = c
        .ingest_url(&pattern.id, &url, IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (b.http_status, b.response.job_id.as_str()),
        (200, a.response.job_id.as_str())
    );
    server.abort();
    emu.shutdown().await;
}

#[tokio::test]
async fn webhooks_usage_health_and_auth_errors() {
    let emu = emulator(Config::default()).await;
    let c = client(&emu);
    let created = c
        .create_webhook(&CreateWebhook {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["job.succeeded".into()],
            secret: Some(Secret::new("whsec_0123456789abcdef")),
        })
        .await
        .unwrap();
    assert_eq!(created.events, vec!["job.succeeded".to_owned()]);
    let generated = c
        .create_webhook(&CreateWebhook {
            url: "http://127.0.0.1:9/other".into(),
            events: vec![],
            secret: None,
        })
        .await
        .unwrap();
    assert!(
        generated
            .secret
            .as_ref()
            .is_some_and(|s| s.expose().len() >= 16),
        "the server made a secret"
    );
    assert!(!format!("{generated:?}").contains(generated.secret.as_ref().unwrap().expose()));
    let listed = c.list_webhooks().await.unwrap();
    assert_eq!(listed.len(), 2);
    c.delete_webhook(&created.id).await.unwrap();
    assert_eq!(c.list_webhooks().await.unwrap().len(), 1);
    assert_eq!(
        api_code(&c.delete_webhook(&created.id).await.unwrap_err()).1,
        ErrorCode::NotFound
    );
    let e = c
        .create_webhook(&CreateWebhook {
            url: "http://x/h".into(),
            events: vec![],
            secret: Some(Secret::new("short")),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");

    let usage = c.usage().await.unwrap();
    let req = usage.requests.unwrap();
    assert_eq!((req.used, req.limit), (0, -1));
    let health = c.health().await.unwrap();
    assert_eq!(health.status, "healthy");

    // A wrong key: typed 401, not retried, and the key appears nowhere.
    let bad = builder(&emu)
        .api_key("imggo_wrong_key_secretvalue")
        .build()
        .unwrap();
    let before = emu.stats().requests_total;
    let e = bad.usage().await.unwrap_err();
    let (status, code, _) = api_code(&e);
    assert_eq!((status, code), (401, ErrorCode::Unauthorized));
    assert!(!e.is_retryable());
    assert_eq!(emu.stats().requests_total, before + 1);
    assert!(!format!("{e} {e:?} {bad:?}").contains("secretvalue"));
    emu.shutdown().await;
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection_and_gzip() {
    let Scenario { emu, pattern, c } = scenario(Config::default(), "P", None).await;
    let a = ingest_plate(&c, &pattern.id).await;
    let clone = c.clone();
    for i in 0..100 {
        let client = if i % 2 == 0 { &c } else { &clone };
        client.get_job(&a.response.job_id).await.unwrap();
    }
    let s = emu.stats();
    assert_eq!(s.job_polls, 100);
    assert_eq!(
        s.connections_accepted, 1,
        "101 requests over one keep-alive connection"
    );
    let t = c.transport_stats();
    assert_eq!(t.calls, 101);
    assert_eq!(t.attempts, 101);
    assert_eq!(t.gzip_responses, 101, "every answer came gzip-compressed");
    assert!(t.body_bytes > t.wire_bytes, "{t:?}");

    let plain = builder(&emu).gzip(false).build().unwrap();
    for _ in 0..5 {
        plain.get_job(&a.response.job_id).await.unwrap();
    }
    let t = plain.transport_stats();
    assert_eq!((t.calls, t.gzip_responses), (5, 0));
    assert_eq!(t.body_bytes, t.wire_bytes);
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_headers_reach_the_observer() {
    let emu = emulator(Config::default()).await;
    let pattern = emu.create_pattern("P", None);
    let rec = Arc::new(Recorder::default());
    let c = builder(&emu).observer(rec.clone()).build().unwrap();
    ingest_plate(&c, &pattern.id).await;
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].limit, Some(imggo_core::Quota::Unlimited));
    emu.shutdown().await;
}

#[tokio::test]
async fn fastest_picks_the_quickest_healthy_endpoint() {
    let slow = emulator(Config::default().faults(Faults {
        slow: 1.0,
        slow_by: Duration::from_millis(40),
        ..Default::default()
    }))
    .await;
    let fast = emulator(Config::default()).await;
    // A closed port: it never answers and is skipped.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/api", l.local_addr().unwrap())
    };
    let urls = vec![dead.clone(), slow.base_url(), fast.base_url()];
    let c = Client::fastest(&urls, builder(&fast)).await.unwrap();
    assert_eq!(c.base_url(), fast.base_url());
    assert_eq!(fast.stats().requests_of("GET /api/_health"), 3);
    assert_eq!(slow.stats().requests_of("GET /api/_health"), 3);

    let e = Client::fastest(&[dead], builder(&fast)).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(matches!(
        Client::fastest(&[], builder(&fast)).await,
        Err(Error::Config(_))
    ));
    slow.shutdown().await;
    fast.shutdown().await;
}
