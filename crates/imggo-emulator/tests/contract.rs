//! Contract tests over real loopback HTTP: every route and its errors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{corpus, gunzip, wait_terminal, Api};
use http::{Method, StatusCode};
use imggo_core::{ContentHash, Envelope, ErrorBody, ErrorCode, IngestResponse, Job, JobStatus};
use imggo_emulator::{Config, Stats};
use serde_json::{json, Value};

const KEY: &str = "imggo_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";

async fn start(config: Config) -> (imggo_emulator::Handle, Api) {
    common::start_with_key(config, KEY).await
}

fn code_of(r: &common::Resp) -> Option<ErrorCode> {
    serde_json::from_slice::<ErrorBody>(&r.body).unwrap().code
}

#[tokio::test]
async fn auth_missing_unknown_and_open_mode() {
    let (emu, api) = start(Config::default().api_key(KEY)).await;
    let r = api.with_key(None).get("/patterns").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "MISSING_AUTHORIZATION");
    assert_eq!(code_of(&r), Some(ErrorCode::Unauthorized));
    let r = api.with_key(Some("imggo_wrong")).get("/patterns").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "INVALID_API_KEY");
    assert_eq!(api.get("/patterns").await.status, StatusCode::OK);
    // Health and stats need no key.
    assert_eq!(
        api.with_key(None).get("/_health").await.status,
        StatusCode::OK
    );
    emu.shutdown().await;

    // Open mode: any non-empty key.
    let (emu, api) = start(Config::default()).await;
    assert_eq!(
        api.with_key(Some("whatever")).get("/patterns").await.status,
        StatusCode::OK
    );
    let r = api
        .with_key(None)
        .send(
            Method::GET,
            "/patterns",
            &[("Authorization", "Bearer ")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    emu.shutdown().await;
}

#[tokio::test]
async fn every_response_has_a_request_id_and_unknown_routes_404() {
    let (emu, api) = start(Config::default()).await;
    let mut seen = std::collections::HashSet::new();
    for path in [
        "/_health",
        "/patterns",
        "/nope",
        "/jobs/missing",
        "/_emulator/stats",
    ] {
        let r = api.get(path).await;
        let id = r.header("x-request-id").expect("X-Request-ID").to_owned();
        assert!(seen.insert(id), "request ids must differ");
    }
    let r = api.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(code_of(&r), Some(ErrorCode::NotFound));
    let r = api.send(Method::PUT, "/patterns", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = api.with_key(None).get("/_health").await;
    // The openapi's HealthResponse is bare, without the {success, data} envelope.
    let h: imggo_core::Health = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(h.status, "healthy");
    assert!(r.json().get("success").is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn patterns_crud_pagination_and_filter() {
    let (emu, api) = start(Config::default()).await;
    let r = api
        .post_json(
            "/patterns",
            &json!({"name": "Receipts (v1)", "instructions": "Extract the totals",
                    "json_schema": {"type": "object", "properties": {"total": {"type": "number"}}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let p: Envelope<imggo_core::Pattern> = serde_json::from_slice(&r.body).unwrap();
    let id = p.data.id.clone();
    assert_eq!(p.data.version, 1);
    assert!(p.data.is_active);

    // Validation and JSON errors.
    let r = api
        .post_json(
            "/patterns",
            &json!({"name": "bad/name!", "instructions": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(&r), Some(ErrorCode::ValidationError));
    let r = api
        .send(
            Method::POST,
            "/patterns",
            &[("Content-Type", "application/json")],
            Bytes::from_static(b"{not json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(&r), Some(ErrorCode::InvalidJson));

    // Get, patch (bumps version), 404s.
    let r = api.get(&format!("/patterns/{id}")).await;
    assert_eq!(r.json()["data"]["name"], "Receipts (v1)");
    let r = api
        .patch_json(&format!("/patterns/{id}"), &json!({"is_active": false}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["data"]["version"], 2);
    assert_eq!(r.json()["data"]["is_active"], false);
    assert_eq!(
        api.get("/patterns/does-not-exist").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.patch_json("/patterns/nope", &json!({})).await.status,
        StatusCode::NOT_FOUND
    );

    // 24 more active patterns: pages of 10, newest first, status filter.
    for i in 0..24 {
        let r = api
            .post_json(
                "/patterns",
                &json!({"name": format!("P {i}"), "instructions": "Extract things"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = api.get("/patterns?page=3&per_page=10").await;
    let page: Envelope<imggo_core::Page<imggo_core::Pattern>> =
        serde_json::from_slice(&r.body).unwrap();
    assert_eq!(page.data.pagination.total, 25);
    assert_eq!(page.data.pagination.total_pages, 3);
    assert_eq!(page.data.data.len(), 5);
    assert!(!page.data.pagination.has_next());
    let r = api.get("/patterns?is_active=false").await;
    let v = r.json();
    assert_eq!(v["data"]["pagination"]["total"], 1);
    assert_eq!(v["data"]["data"][0]["id"], id.as_str());
    // The query schema allows per_page 1..=100 and page >= 1: anything else is a 400.
    for q in [
        "per_page=500",
        "per_page=0",
        "page=0",
        "page=x",
        "per_page=1.5",
    ] {
        let r = api.get(&format!("/patterns?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(code_of(&r), Some(ErrorCode::ValidationError), "{q}");
    }
    let r = api.get("/patterns?per_page=100").await;
    assert_eq!(r.json()["data"]["pagination"]["per_page"], 100);
    // A page far past the end is valid and empty.
    let r = api.get("/patterns?page=435417322681088695009804288").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["data"]["data"], json!([]));
    let r = api.get("/patterns?is_active=maybe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Delete, then it is gone.
    let r = api.delete(&format!("/patterns/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["data"]["message"].is_string());
    assert_eq!(
        api.get(&format!("/patterns/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete(&format!("/patterns/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn patterns_are_private_to_their_user() {
    let (emu, api) = start(
        Config::default()
            .user_key("alice", "key-alice")
            .user_key("bob", "key-bob"),
    )
    .await;
    let alice = api.with_key(Some("key-alice"));
    let bob = api.with_key(Some("key-bob"));
    let r = alice
        .post_json(
            "/patterns",
            &json!({"name": "Mine", "instructions": "Extract all"}),
        )
        .await;
    let id = r.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        bob.get(&format!("/patterns/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.get("/patterns").await.json()["data"]["pagination"]["total"],
        0
    );
    let img = corpus("invoice1.jpg");
    let r = bob.ingest(&id, &img, "a.jpg", "image/jpeg", &[], &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn multipart_ingest_runs_a_job_with_the_image_facts() {
    let (emu, api) = start(Config::default()).await;
    let schema = json!({"type": "object", "properties": {
        "total": {"type": "number"}, "vendor": {"type": "string"}}});
    let pattern = emu.create_pattern("Invoices", Some(schema));
    let img = corpus("invoice1.jpg");
    let r = api
        .ingest(&pattern.id, &img, "invoice1.jpg", "image/jpeg", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let env: Envelope<IngestResponse> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(env.data.status, JobStatus::Queued);
    assert!(env.data.message.is_some());
    assert_eq!(r.header("x-ratelimit-limit"), Some("-1"));
    assert!(r.header("x-ratelimit-reset").is_some());

    let v = wait_terminal(&api, &env.data.job_id, Duration::from_secs(5)).await;
    let job: Envelope<Job> = serde_json::from_value(v).unwrap();
    assert_eq!(job.data.status, JobStatus::Succeeded);
    // The answer has the plain shape that clients read without serde.
    let raw = api.get(&format!("/jobs/{}", env.data.job_id)).await;
    let text = std::str::from_utf8(&raw.body).unwrap();
    assert_eq!(
        Job::from_compact_json(text).as_ref(),
        Some(&job.data),
        "{text}"
    );
    let manifest = job.data.manifest.unwrap().to_value();
    let info = imggo_optimize::probe(&img).unwrap();
    let facts = &manifest["_emulator"];
    assert_eq!(facts["width"], info.width);
    assert_eq!(facts["height"], info.height);
    assert_eq!(facts["format"], info.format.name());
    assert_eq!(facts["bytes"], img.len());
    let hash = ContentHash::of(&img).to_string();
    assert_eq!(facts["content_hash"], hash.as_str());
    assert_eq!(manifest["total"], json!(0.0));
    assert_eq!(manifest["vendor"], json!("emulated"));
    assert!(job.data.latency_ms.is_some());
    assert!(job.data.completed_at.is_some());

    let s = emu.stats();
    assert_eq!(s.ingests_of(&hash), 1);
    assert_eq!(s.jobs_created, 1);
    assert_eq!(s.jobs_in("succeeded"), 1);
    assert_eq!(s.ingests_accepted, 1);
    emu.shutdown().await;
}

/// Ingests `img` as `c.jpg` with the idempotency key `key` in the form field.
async fn with_form_key(api: &Api, pattern_id: &str, img: &[u8], key: &str) -> common::Resp {
    let fields = [("idempotency_key", key)];
    api.ingest(pattern_id, img, "c.jpg", "image/jpeg", &fields, &[])
        .await
}

/// Ingests `img` as `c.jpg` with the idempotency key `key` in the `Idempotency-Key` header.
async fn with_header_key(api: &Api, pattern_id: &str, img: &[u8], key: &str) -> common::Resp {
    let headers = [("Idempotency-Key", key)];
    api.ingest(pattern_id, img, "c.jpg", "image/jpeg", &[], &headers)
        .await
}

#[tokio::test]
async fn idempotent_replay_from_the_form_key_only_in_the_server_dialect() {
    let (emu, api) = start(Config::default()).await;
    let pattern = emu.create_pattern("Receipts", None);
    let img = corpus("car-plate1.jpg");
    let first = with_form_key(&api, &pattern.id, &img, "key-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let job_id = first.job_id();
    wait_terminal(&api, &job_id, Duration::from_secs(5)).await;
    let again = with_form_key(&api, &pattern.id, &img, "key-1").await;
    assert_eq!(again.status, StatusCode::OK);
    let env: Envelope<IngestResponse> = serde_json::from_slice(&again.body).unwrap();
    assert_eq!(env.data.job_id, job_id);
    assert_eq!(env.data.status, JobStatus::Succeeded);
    assert!(env.data.manifest.is_some());

    // The server reads no header: a header-only key makes a new job each time, so a
    // client that stopped sending the key in the form would duplicate its retries.
    let h1 = with_header_key(&api, &pattern.id, &img, "hdr-1").await;
    assert_eq!(h1.status, StatusCode::ACCEPTED);
    let h2 = with_header_key(&api, &pattern.id, &img, "hdr-1").await;
    assert_eq!(h2.status, StatusCode::ACCEPTED);
    assert_ne!(h1.json()["data"]["job_id"], h2.json()["data"]["job_id"]);
    assert_ne!(h1.json()["data"]["job_id"].as_str().unwrap(), job_id);

    // Invalid key.
    let bad = with_form_key(&api, &pattern.id, &img, "no spaces!").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let s = emu.stats();
    assert_eq!(s.jobs_created, 3);
    assert_eq!(s.ingests_accepted, 3);
    assert_eq!(s.ingests_replayed, 1);
    // Every request that carried the bytes counts (the bad-key one too: the image was valid).
    assert_eq!(s.ingests_of(&ContentHash::of(&img).to_string()), 5);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_docs_dialect_also_takes_the_header_key() {
    let (emu, api) = start(Config::default().dialect(imggo_emulator::Dialect::Docs)).await;
    let pattern = emu.create_pattern("Receipts", None);
    let img = corpus("car-plate1.jpg");
    let h1 = with_header_key(&api, &pattern.id, &img, "hdr-1").await;
    assert_eq!(h1.status, StatusCode::ACCEPTED);
    let h2 = with_header_key(&api, &pattern.id, &img, "hdr-1").await;
    assert_eq!(h2.status, StatusCode::OK);
    assert_eq!(h1.json()["data"]["job_id"], h2.json()["data"]["job_id"]);
    // The form key wins over the header.
    let both = api
        .ingest(
            &pattern.id,
            &img,
            "c.jpg",
            "image/jpeg",
            &[("idempotency_key", "form-1")],
            &[("Idempotency-Key", "hdr-1")],
        )
        .await;
    assert_eq!(both.status, StatusCode::ACCEPTED);
    assert_eq!(emu.stats().jobs_created, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_racing_duplicate_key_gets_a_500_and_a_retry_finds_the_job() {
    let faults = imggo_emulator::Faults {
        race_dup: 1.0,
        ..imggo_emulator::Faults::default()
    };
    let (emu, api) = start(Config::default().faults(faults)).await;
    let pattern = emu.create_pattern("Receipts", None);
    let img = corpus("car-plate1.jpg");
    let first = with_form_key(&api, &pattern.id, &img, "key-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let raced = with_form_key(&api, &pattern.id, &img, "key-1").await;
    assert_eq!(raced.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code_of(&raced), Some(ErrorCode::InternalError));
    let retry = with_form_key(&api, &pattern.id, &img, "key-1").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(
        retry.json()["data"]["job_id"],
        first.json()["data"]["job_id"]
    );
    // A duplicate after the race window replays without a draw.
    let other = with_form_key(&api, &pattern.id, &img, "key-2").await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    tokio::time::sleep(imggo_emulator::RACE_WINDOW + Duration::from_millis(50)).await;
    let late = with_form_key(&api, &pattern.id, &img, "key-2").await;
    assert_eq!(late.status, StatusCode::OK);
    let s = emu.stats();
    assert_eq!((s.jobs_created, s.faults.race_dup), (2, 1));
    emu.shutdown().await;
}

#[tokio::test]
async fn finished_jobs_past_the_cap_are_forgotten_with_their_keys() {
    let config = Config {
        max_jobs: 3,
        ..Config::default()
    };
    let (emu, api) = start(config).await;
    let pattern = emu.create_pattern("Receipts", None);
    let img = corpus("car-plate1.jpg");
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = with_form_key(&api, &pattern.id, &img, &format!("key-{i}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.job_id());
    }
    // The two oldest are gone, answered like an unknown job; the rest are served.
    for (i, id) in ids.iter().enumerate() {
        let r = api.get(&format!("/jobs/{id}")).await;
        if i < 2 {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "job {i}");
            let text = String::from_utf8_lossy(&r.body);
            assert!(text.contains("Job not found"), "job {i}: {text}");
        } else {
            assert_eq!(r.status, StatusCode::OK, "job {i}");
        }
    }
    // The key of a forgotten job makes a new job; a kept one still replays.
    let again = with_form_key(&api, &pattern.id, &img, "key-0").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let kept = with_form_key(&api, &pattern.id, &img, "key-4").await;
    assert_eq!(kept.status, StatusCode::OK);
    let s = emu.stats();
    assert_eq!((s.jobs_created, s.jobs_evicted), (6, 3));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_body_past_the_upload_limit_is_refused_unread() {
    let config = Config {
        max_image_bytes: 64 * 1024,
        ..Config::default()
    };
    let (emu, api) = start(config).await;
    let pattern = emu.create_pattern("Receipts", None);
    // Just past the limit: read whole and answered with the server's 400.
    let mut img = corpus("car-plate1.jpg");
    img.resize(64 * 1024 + 10, 0);
    let r = api
        .ingest(&pattern.id, &img, "c.jpg", "image/jpeg", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(&r), Some(ErrorCode::FileTooLarge));
    // Far past it (more than the form's slack): refused without buffering it all.
    let huge = vec![0u8; 3 * 1024 * 1024];
    let r = api
        .ingest(&pattern.id, &huge, "c.jpg", "image/jpeg", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&r.body).contains("Request body exceeds"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(emu.stats().jobs_created, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn ingest_400s_for_what_is_not_an_acceptable_image() {
    let (emu, api) = start(Config::default()).await;
    let pattern = emu.create_pattern("Anything", None);
    let img = corpus("resume1.png");
    let cases: Vec<(Vec<u8>, &str, &str, ErrorCode)> = vec![
        (
            b"%PDF-1.7 not an image".to_vec(),
            "a.png",
            "image/png",
            ErrorCode::InvalidImage,
        ),
        (img.clone(), "a.pdf", "image/png", ErrorCode::InvalidImage),
        (
            img.clone(),
            "a.png",
            "application/pdf",
            ErrorCode::InvalidImage,
        ),
        (Vec::new(), "a.png", "image/png", ErrorCode::InvalidImage),
    ];
    for (bytes, name, mime, want) in cases {
        let r = api.ingest(&pattern.id, &bytes, name, mime, &[], &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name} {mime}");
        assert_eq!(code_of(&r), Some(want), "{name} {mime}: {:?}", r.body);
    }
    // Over 10 MiB: a PNG signature followed by padding.
    let mut big = img.clone();
    big.resize(10 * 1024 * 1024 + 1, 0);
    let r = api
        .ingest(&pattern.id, &big, "big.png", "image/png", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(&r), Some(ErrorCode::FileTooLarge));
    // No image field at all.
    let body =
        Bytes::from("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n");
    let r = api
        .send(
            Method::POST,
            &format!("/patterns/{}/ingest", pattern.id),
            &[("Content-Type", "multipart/form-data; boundary=b")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(&r), Some(ErrorCode::ValidationError));
    // Wrong content type.
    let r = api
        .send(
            Method::POST,
            &format!("/patterns/{}/ingest", pattern.id),
            &[("Content-Type", "text/plain")],
            Bytes::from_static(b"hello"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Unknown pattern, inactive pattern.
    let r = api
        .ingest("nope", &img, "a.png", "image/png", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    api.patch_json(
        &format!("/patterns/{}", pattern.id),
        &json!({"is_active": false}),
    )
    .await;
    let r = api
        .ingest(&pattern.id, &img, "a.png", "image/png", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(code_of(&r), Some(ErrorCode::PatternInactive));
    let s = emu.stats();
    assert_eq!(s.jobs_created, 0);
    assert_eq!(s.ingests_by_hash.len(), 0);
    assert_eq!(s.requests_with("POST /api/patterns/{id}/ingest", 400), 8);
    emu.shutdown().await;
}

#[tokio::test]
async fn jobs_404_list_and_formats() {
    let (emu, api) = start(Config::default()).await;
    assert_eq!(api.get("/jobs/unknown").await.status, StatusCode::NOT_FOUND);
    let pattern = emu.create_pattern("Plates", None);
    let img = corpus("car-plate2.jpg");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = api
            .ingest(
                &pattern.id,
                &img,
                "p.jpg",
                "image/jpeg",
                &[("idempotency_key", &format!("k{i}"))],
                &[],
            )
            .await;
        ids.push(r.job_id());
    }
    for id in &ids {
        wait_terminal(&api, id, Duration::from_secs(5)).await;
    }
    let r = api.get("/jobs?per_page=2").await;
    let v = r.json();
    assert_eq!(v["data"]["pagination"]["total"], 3);
    assert_eq!(v["data"]["pagination"]["total_pages"], 2);
    assert_eq!(v["data"]["data"][0]["id"], ids[2].as_str());
    let r = api.get("/jobs?status=failed").await;
    assert_eq!(r.json()["data"]["pagination"]["total"], 0);

    for (fmt, ct, needle) in [
        ("yaml", "application/x-yaml", "width: "),
        ("csv", "text/csv", "_emulator.width"),
        ("text", "text/plain", "_emulator.height: "),
        ("xml", "application/xml", "<width>"),
    ] {
        let r = api.get(&format!("/jobs/{}?format={fmt}", ids[0])).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-type").unwrap().starts_with(ct), "{fmt}");
        assert_eq!(r.header("x-job-id"), Some(ids[0].as_str()));
        assert_eq!(r.header("x-job-status"), Some("succeeded"));
        assert_eq!(r.header("x-pattern-id"), Some(pattern.id.as_str()));
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(text.contains(needle), "{fmt}: {text}");
    }
    assert_eq!(
        api.get(&format!("/jobs/{}?format=pdf", ids[0]))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn gzip_when_asked() {
    let (emu, api) = start(Config::default()).await;
    emu.create_pattern("Zipped", None);
    let r = api
        .send(
            Method::GET,
            "/patterns",
            &[("Accept-Encoding", "gzip")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let v: Value = serde_json::from_slice(&gunzip(&r.body)).unwrap();
    assert_eq!(v["data"]["data"][0]["name"], "Zipped");
    let r = api.get("/patterns").await;
    assert_eq!(r.header("content-encoding"), None);
    emu.shutdown().await;
}

#[tokio::test]
async fn stats_counters_are_exact_and_served_over_http() {
    let (emu, api) = start(Config::default()).await;
    let pattern = emu.create_pattern("Counted", None);
    let a = corpus("dices1.jpg");
    let b = corpus("resume2.png");
    let mut job_ids = Vec::new();
    for (img, name, mime) in [
        (&a, "a.jpg", "image/jpeg"),
        (&a, "a.jpg", "image/jpeg"),
        (&b, "b.png", "image/png"),
    ] {
        let r = api.ingest(&pattern.id, img, name, mime, &[], &[]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        job_ids.push(r.job_id());
    }
    for id in &job_ids {
        let r = api.get(&format!("/jobs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    api.get("/jobs/missing").await;
    let r = api.with_key(None).get("/_emulator/stats").await;
    let over_http: Stats = serde_json::from_slice(&r.body).unwrap();
    let s = emu.stats();
    assert_eq!(over_http.jobs_created, 3);
    assert_eq!(s.ingests_of(&ContentHash::of(&a).to_string()), 2);
    assert_eq!(s.ingests_of(&ContentHash::of(&b).to_string()), 1);
    assert_eq!(s.requests_with("POST /api/patterns/{id}/ingest", 202), 3);
    assert_eq!(s.requests_with("GET /api/jobs/{id}", 200), 3);
    assert_eq!(s.requests_with("GET /api/jobs/{id}", 404), 1);
    assert_eq!(s.job_polls, 4);
    // The stats request itself is counted after it is answered.
    assert_eq!(s.requests_of("GET /api/_emulator/stats"), 1);
    assert_eq!(over_http.requests_of("GET /api/_emulator/stats"), 0);
    assert_eq!(s.requests_total, 8);
    assert_eq!(s.jobs_in("succeeded"), 3);
    assert_eq!(s.jobs_in("queued") + s.jobs_in("running"), 0);
    assert_eq!(s.rate_limited, 0);
    assert!(s.connections_accepted >= 1);
    assert!(s.peak_in_flight >= 1);
    assert_eq!(s.in_flight, 0);
    assert!(s.max_ingests_per_second >= 1 && s.max_ingests_per_second <= 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn connections_are_counted_per_tcp_socket() {
    let (emu, api) = start(Config::default()).await;
    // One pooled client: sequential requests reuse one connection.
    for _ in 0..5 {
        api.get("/_health").await;
    }
    assert_eq!(emu.stats().connections_accepted, 1);
    // A second client opens a second socket.
    let other = Api::new(emu.base_url(), Some(KEY));
    other.get("/_health").await;
    assert_eq!(emu.stats().connections_accepted, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn usage_reports_limits() {
    let (emu, api) = start(Config {
        limits: imggo_emulator::Limits {
            monthly_quota: Some(100),
            min_gap: Some(Duration::from_millis(1)),
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let pattern = emu.create_pattern("U", None);
    let img = corpus("vin1.jpg");
    let r = api
        .ingest(&pattern.id, &img, "v.jpg", "image/jpeg", &[], &[])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("x-ratelimit-limit"), Some("100"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("99"));
    let r = api.get("/user/usage").await;
    let u: Envelope<imggo_core::Usage> = serde_json::from_slice(&r.body).unwrap();
    let req = u.data.requests.unwrap();
    assert_eq!((req.used, req.limit, req.remaining), (1, 100, 99));
    assert_eq!(u.data.burst_limit.unwrap().seconds, 0.001);
    assert_eq!(
        u.data.limits.unwrap().max_image_size,
        Some(10 * 1024 * 1024)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn h2c_clients_are_served_on_one_connection() {
    let (emu, _) = start(Config::default()).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        let uri = format!("{}/patterns", emu.base_url());
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(uri)
                .header("Authorization", "Bearer k")
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            (resp.version(), resp.status())
        }));
    }
    for t in tasks {
        let (version, status) = t.await.unwrap();
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(status, StatusCode::OK);
    }
    let s = emu.stats();
    assert_eq!(s.connections_accepted, 1);
    assert_eq!(s.requests_with("GET /api/patterns", 200), 20);
    emu.shutdown().await;
}
