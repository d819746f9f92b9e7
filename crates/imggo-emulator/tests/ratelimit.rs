//! Rate limits: headers on ingest answers, 429 bodies in both dialects, Retry-After and
//! the timing of refusals.

mod common;

use std::time::{Duration, SystemTime};

use common::{corpus, start, Api};
use http::StatusCode;
use imggo_core::{ErrorBody, ErrorCode, Quota, RateLimitInfo};
use imggo_emulator::{Config, Dialect, Limits};

fn limits(l: Limits) -> Config {
    Config {
        limits: l,
        ..Config::default()
    }
}

/// Ingests `img` as `p.jpg` for pattern `pid`.
async fn ingest(api: &Api, pid: &str, img: &[u8]) -> common::Resp {
    api.ingest_jpeg(pid, img, "p.jpg").await
}

/// The `x-emulator-retry-after-ms` header of a 429.
fn retry_after_ms(r: &common::Resp) -> u64 {
    r.header("x-emulator-retry-after-ms")
        .unwrap()
        .parse()
        .unwrap()
}

/// Sleeps `ms` plus 20 ms of slack, then checks that the next ingest is accepted.
async fn accepted_after(api: &Api, pid: &str, img: &[u8], ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms + 20)).await;
    let r = ingest(api, pid, img).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

fn info(r: &common::Resp) -> RateLimitInfo {
    RateLimitInfo::from_headers(|n| r.header(n), SystemTime::now()).expect("rate-limit headers")
}

#[tokio::test]
async fn monthly_quota_headers_count_down_then_429_in_server_shape() {
    let (emu, api) = start(limits(Limits {
        monthly_quota: Some(3),
        ..Limits::default()
    }))
    .await;
    let p = emu.create_pattern("Quota", None);
    let img = corpus("parking1.jpg");
    for left in [2u64, 1, 0] {
        let r = ingest(&api, &p.id, &img).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let i = info(&r);
        assert_eq!(i.limit, Some(Quota::Limited(3)));
        assert_eq!(i.remaining, Some(Quota::Limited(left)));
        let reset = i.reset_in(SystemTime::now()).unwrap();
        assert!(reset > Duration::ZERO && reset <= Duration::from_secs(31 * 86_400));
    }
    let r = ingest(&api, &p.id, &img).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let v = r.json();
    assert_eq!(v["error"], "Rate limit exceeded");
    assert_eq!(v["limit"]["monthly"], 3);
    assert_eq!(v["limit"]["used"], 3);
    assert_eq!(v["limit"]["remaining"], 0);
    assert!(v["upgrade_url"].is_string());
    let body: ErrorBody = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body.code, Some(ErrorCode::RateLimitExceeded));
    // Retry-After is the time to the end of the month, in seconds.
    let i = info(&r);
    let wait = i.retry_after.unwrap();
    let reset = i.reset_in(SystemTime::now()).unwrap();
    assert!(
        wait.as_secs().abs_diff(reset.as_secs()) <= 2,
        "{wait:?} vs {reset:?}"
    );
    let s = emu.stats();
    assert_eq!(s.rate_limited, 1);
    assert_eq!(s.requests_with("POST /api/patterns/{id}/ingest", 429), 1);
    // A refused ingest creates no job and its bytes are not counted.
    assert_eq!(s.jobs_created, 3);
    assert_eq!(s.ingests_by_hash.values().sum::<u64>(), 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn min_gap_refuses_until_the_gap_has_passed() {
    let gap = Duration::from_millis(300);
    let (emu, api) = start(limits(Limits {
        min_gap: Some(gap),
        ..Limits::default()
    }))
    .await;
    let p = emu.create_pattern("Gap", None);
    let img = corpus("parking2.jpg");
    let r = ingest(&api, &p.id, &img).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = ingest(&api, &p.id, &img).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("1"));
    let ms = retry_after_ms(&r);
    assert!(ms > 0 && ms <= 300, "{ms}");
    assert_eq!(r.json()["burst_limit"], 0.3);
    // Waiting out the advertised remainder makes the next ingest pass.
    accepted_after(&api, &p.id, &img, ms).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn per_minute_bucket_with_burst_and_docs_429_shape() {
    let (emu, api) = start(Config {
        limits: Limits {
            rpm: Some(60), // one per second
            burst: Some(3),
            ..Limits::default()
        },
        dialect: Dialect::Docs,
        ..Config::default()
    })
    .await;
    let p = emu.create_pattern("Bucket", None);
    let img = corpus("parking3.jpg");
    let mut statuses = Vec::new();
    let mut wait_ms = 0;
    for _ in 0..5 {
        let r = ingest(&api, &p.id, &img).await;
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            let v = r.json();
            assert_eq!(v["success"], false);
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
            assert!(v["error"]["details"]["retry_after"].as_u64().unwrap() >= 1);
            let body: ErrorBody = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body.code, Some(ErrorCode::RateLimitExceeded));
            let ms = retry_after_ms(&r);
            assert!(ms > 0 && ms <= 1000, "{ms}");
            wait_ms = ms;
        }
    }
    // The burst of 3 passes at once; the loop is far faster than the 1 s refill.
    assert_eq!(statuses, [202, 202, 202, 429, 429]);
    // Waiting what the last 429 advertised is enough.
    accepted_after(&api, &p.id, &img, wait_ms).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn limits_are_per_user_and_keys_of_one_user_share_them() {
    let emu = imggo_emulator::Emulator::start(Config {
        limits: Limits {
            monthly_quota: Some(1),
            ..Limits::default()
        },
        ..Config::default()
            .user_key("alice", "a1")
            .user_key("alice", "a2")
            .user_key("bob", "b1")
    })
    .await
    .unwrap();
    let api = Api::new(emu.base_url(), None);
    let img = corpus("parking4.jpg");
    let mut ids = std::collections::HashMap::new();
    for key in ["a1", "b1"] {
        let r = api
            .with_key(Some(key))
            .post_json(
                "/patterns",
                &serde_json::json!({"name": "P", "instructions": "Extract"}),
            )
            .await;
        ids.insert(key, r.json()["data"]["id"].as_str().unwrap().to_owned());
    }
    let a1 = api.with_key(Some("a1"));
    let a2 = api.with_key(Some("a2"));
    let b1 = api.with_key(Some("b1"));
    let ingest = |c: Api, pid: String| {
        let img = img.clone();
        async move {
            c.ingest(&pid, &img, "p.jpg", "image/jpeg", &[], &[])
                .await
                .status
        }
    };
    assert_eq!(ingest(a1, ids["a1"].clone()).await, StatusCode::ACCEPTED);
    // a2 is alice too: her quota is used up.
    assert_eq!(
        ingest(a2, ids["a1"].clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(ingest(b1, ids["b1"].clone()).await, StatusCode::ACCEPTED);
    emu.shutdown().await;
}

#[tokio::test]
async fn max_ingests_per_second_is_the_busiest_window() {
    let (emu, api) = start(Config::default()).await;
    let p = emu.create_pattern("Paced", None);
    let img = corpus("parking5.jpg");
    // A burst of 6 (well within one second), a pause longer than the window, then 2 more:
    // the busiest window held the 6.
    for i in 0..8 {
        if i == 6 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let r = ingest(&api, &p.id, &img).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let s = emu.stats();
    assert_eq!(s.max_ingests_per_second, 6);
    assert_eq!(s.ingests_accepted, 8);
    emu.shutdown().await;
}
