//! The emulator against the API's OpenAPI contract, over real loopback HTTP: the health
//! shape, 405 with `Allow`, the zod-like validation, and the api-keys, signed-upload and
//! demo endpoints.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Api;
use http::{Method, StatusCode};
use imggo_emulator::{Config, Dialect, LatencyModel};
use serde_json::{json, Value};

const KEY: &str = "imggo_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";

async fn start(config: Config) -> (imggo_emulator::Handle, Api) {
    common::start_with_key(config.user_key("alice", KEY), KEY).await
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str()
        .and_then(imggo_core::time::parse_rfc3339)
        .is_some()
}

/// A 400 with the server's validation body naming `field`.
fn assert_validation(r: &common::Resp, field: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(v["error"]["details"]["field"], field, "{v}");
}

#[tokio::test]
async fn health_has_the_documented_shape() {
    for dialect in [Dialect::Server, Dialect::Docs] {
        let (emu, api) = start(Config {
            dialect,
            ..Config::default()
        })
        .await;
        let r = api.with_key(None).get("/_health").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert!(
            ["healthy", "degraded", "unhealthy"].contains(&v["status"].as_str().unwrap_or("")),
            "{v}"
        );
        assert!(is_timestamp(&v["timestamp"]), "{v}");
        for s in ["database", "storage", "queue"] {
            assert!(
                ["up", "down"].contains(&v["services"][s].as_str().unwrap_or("")),
                "{s}: {v}"
            );
        }
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn undeclared_methods_get_405_with_allow() {
    let (emu, api) = start(Config::default()).await;
    let id = "550e8400-e29b-41d4-a716-446655440000";
    let cases = [
        (Method::TRACE, "/_health".to_owned(), "GET"),
        (Method::PUT, "/patterns".to_owned(), "GET, POST"),
        (Method::PUT, format!("/patterns/{id}"), "GET, PATCH, DELETE"),
        (Method::GET, format!("/patterns/{id}/ingest"), "POST"),
        (Method::DELETE, format!("/jobs/{id}"), "GET"),
        (Method::PATCH, "/api-keys".to_owned(), "GET, POST"),
        (Method::GET, format!("/api-keys/{id}"), "DELETE"),
        (Method::PUT, "/webhooks".to_owned(), "GET, POST"),
        (Method::GET, "/uploads/signed-url".to_owned(), "POST"),
        (Method::GET, "/demo/process".to_owned(), "POST"),
        (Method::POST, format!("/demo/status/{id}"), "GET"),
    ];
    for (method, path, allow) in cases {
        let r = api.send(method.clone(), &path, &[], Bytes::new()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "METHOD_NOT_ALLOWED");
    }
    // Unknown paths stay 404, without Allow.
    let r = api.send(Method::PUT, "/nope", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header("allow").is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn pattern_bodies_are_validated_like_the_server() {
    let (emu, api) = start(Config::default()).await;
    let good = json!({"name": "Receipts", "instructions": "Extract the totals"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let bad = [
        (with("parent_pattern_id", json!("AAA")), "parent_pattern_id"),
        (with("name", json!("")), "name"),
        (with("name", json!("x".repeat(256))), "name"),
        (with("name", json!(5)), "name"),
        (
            with("instructions", json!("i".repeat(2001))),
            "instructions",
        ),
        (with("format", json!("pdf")), "format"),
        (with("csv_delimiter", json!("tab")), "csv_delimiter"),
        (with("yaml_schema", json!("y".repeat(5001))), "yaml_schema"),
        (with("model_profile", json!("")), "model_profile"),
        (with("version", json!(-1)), "version"),
        (with("version", json!(1.5)), "version"),
        (with("is_active", json!("yes")), "is_active"),
        (with("format", Value::Null), "format"),
        (json!({"instructions": "Extract"}), "name"),
        (json!([good.clone()]), ""),
    ];
    for (body, field) in bad {
        let r = api.post_json("/patterns", &body).await;
        assert_validation(&r, field);
    }
    assert_eq!(emu.stats().requests_of("POST /api/patterns"), 15);

    // Schema-valid bodies are accepted: a uuid parent, nulls where allowed, empty
    // instructions, unknown keys (dropped).
    let parent = "550e8400-e29b-41d4-a716-446655440000";
    let r = api
        .post_json(
            "/patterns",
            &json!({"name": "  ", "instructions": "", "parent_pattern_id": parent,
                    "yaml_schema": null, "json_schema": null, "version": 0, "surprise": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["data"]["parent_pattern_id"], parent);
    assert!(v["data"].get("surprise").is_none());
    assert!(v["data"]["version"].as_u64().is_some_and(|n| n >= 1));
    let id = v["data"]["id"].as_str().unwrap().to_owned();

    // Updates follow the update schema: instructions of at least 10 characters, no null
    // plain_text_schema.
    let r = api
        .patch_json(
            &format!("/patterns/{id}"),
            &json!({"instructions": "short"}),
        )
        .await;
    assert_validation(&r, "instructions");
    let r = api
        .patch_json(
            &format!("/patterns/{id}"),
            &json!({"plain_text_schema": null}),
        )
        .await;
    assert_validation(&r, "plain_text_schema");
    let r = api
        .patch_json(
            &format!("/patterns/{id}"),
            &json!({"instructions": "Extract every total", "publish_new_version": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // A version beyond the store's range is kept at its largest, and updates do not wrap
    // it around to 0.
    let r = api
        .post_json(
            "/patterns",
            &json!({"name": "Big", "instructions": "", "version": 1e20}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let big = r.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["data"]["version"], u32::MAX);
    let r = api
        .patch_json(&format!("/patterns/{big}"), &json!({"is_active": false}))
        .await;
    assert_eq!(r.json()["data"]["version"], u32::MAX);
    emu.shutdown().await;
}

#[tokio::test]
async fn webhook_bodies_are_validated_like_the_server() {
    let (emu, api) = start(Config::default()).await;
    for (body, field) in [
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://h/x", "events": []}), "events"),
        (
            json!({"url": "http://h/x", "events": ["job.queued"]}),
            "events",
        ),
        (json!({"url": "http://h/x", "secret": "short"}), "secret"),
    ] {
        let r = api.post_json("/webhooks", &body).await;
        assert_validation(&r, field);
    }
    let r = api
        .post_json("/webhooks", &json!({"url": "http://127.0.0.1:9/hook"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.json()["data"]["events"],
        json!(["job.succeeded", "job.failed"])
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn api_keys_are_created_listed_used_and_deleted() {
    let (emu, api) = start(Config::default()).await;
    let r = api
        .post_json(
            "/api-keys",
            &json!({"name": "CI", "scopes": ["patterns:read"], "expires_at": "2999-12-31T23:59:59Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let created = r.json()["data"].clone();
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(is_uuid(&id), "{created}");
    assert!(key.starts_with("imggo_") && key.len() == 70, "{key}");
    assert_eq!(created["key_type"], "live");
    assert_eq!(created["scopes"], json!(["patterns:read"]));
    assert_eq!(created["expires_at"], "2999-12-31T23:59:59Z");
    assert!(is_timestamp(&created["created_at"]));

    // Default scopes; a second key differs.
    let r = api.post_json("/api-keys", &json!({"name": "Other"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let other = r.json()["data"].clone();
    assert_eq!(other["scopes"], json!(["patterns:read", "patterns:ingest"]));
    assert_eq!(other["expires_at"], Value::Null);
    assert_ne!(other["key"], created["key"]);

    // The new key authenticates as its creator and is listed without its secret.
    let as_new = api.with_key(Some(&key));
    let r = as_new.get("/api-keys").await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let item = list.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(item["name"], "CI");
    assert!(item.get("key").is_none(), "{item}");
    assert!(key.starts_with(item["key_prefix"].as_str().unwrap()));
    assert!(item["key_prefix"].as_str().unwrap().len() < key.len());
    assert!(is_timestamp(&item["last_used_at"]), "{item}");
    assert!(!r.body.windows(key.len()).any(|w| w == key.as_bytes()));

    // Invalid bodies.
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "scopes": "patterns:read"}), "scopes"),
        (json!({"name": "x", "expires_at": "tomorrow"}), "expires_at"),
    ] {
        let r = api.post_json("/api-keys", &body).await;
        assert_validation(&r, field);
    }

    // Delete: gone from the list, no longer authenticates, a second delete is 404.
    let r = api.delete(&format!("/api-keys/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["data"]["message"].is_string());
    assert_eq!(
        as_new.get("/api-keys").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.delete(&format!("/api-keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete("/api-keys/AAA").await.status,
        StatusCode::NOT_FOUND
    );
    let r = api.get("/api-keys").await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn api_keys_are_per_user_and_expired_ones_do_not_authenticate() {
    let (emu, alice) = start(Config::default().user_key("bob", "bob-key")).await;
    let bob = alice.with_key(Some("bob-key"));
    let r = alice
        .post_json(
            "/api-keys",
            &json!({"name": "Old", "expires_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let data = r.json()["data"].clone();
    let expired = data["key"].as_str().unwrap().to_owned();
    let id = data["id"].as_str().unwrap().to_owned();
    assert_eq!(
        alice.with_key(Some(&expired)).get("/api-keys").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = bob.get("/api-keys").await;
    assert_eq!(r.json()["data"], json!([]));
    assert_eq!(
        bob.delete(&format!("/api-keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        alice.get("/api-keys").await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn signed_upload_urls() {
    let (emu, api) = start(Config::default()).await;
    let r = api
        .post_json(
            "/uploads/signed-url",
            &json!({"path": "receipts/2026/r-1.jpg", "content_type": "image/png"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let d = r.json()["data"].clone();
    assert_eq!(d["upload_path"], "alice/receipts/2026/r-1.jpg");
    let url = d["url"].as_str().unwrap();
    let token = d["token"].as_str().unwrap();
    assert!(url.starts_with("https://") && url.contains("alice/receipts/2026/r-1.jpg"));
    assert!(url.ends_with(&format!("token={token}")), "{url}");
    assert!(!token.is_empty());
    assert!(is_timestamp(&d["expires_at"]));
    let r2 = api
        .post_json(
            "/uploads/signed-url",
            &json!({"path": "receipts/2026/r-1.jpg"}),
        )
        .await;
    assert_ne!(r2.json()["data"]["token"], d["token"]);

    for body in [
        json!({}),
        json!({"path": ""}),
        json!({"path": "a b.jpg"}),
        json!({"path": 7}),
    ] {
        let r = api.post_json("/uploads/signed-url", &body).await;
        assert_validation(&r, "path");
    }
    assert_eq!(
        api.with_key(None)
            .post_json("/uploads/signed-url", &json!({"path": "a.jpg"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn demo_process_and_status() {
    let (emu, api) =
        start(Config::default().latency(LatencyModel::Fixed(Duration::from_millis(150)))).await;
    let public = api.with_key(None);
    let r = public
        .post_json(
            "/demo/process",
            &json!({"image_url": "https://example.com/demo.jpg", "pattern_type": "receipt"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let d = r.json()["data"].clone();
    let job = d["job_id"].as_str().unwrap().to_owned();
    assert!(is_uuid(&job));
    assert_eq!(d["status"], "queued");
    assert!(d["message"].is_string());
    assert!(is_timestamp(&d["demo_expires_at"]));

    let r = public.get(&format!("/demo/status/{job}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["data"]["status"], "queued");
    assert_eq!(r.json()["data"]["manifest"], Value::Null);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = public.get(&format!("/demo/status/{job}")).await;
    let d = r.json()["data"].clone();
    assert_eq!(d["job_id"], job.as_str());
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["manifest"]["_emulator"]["pattern_type"], "receipt");
    assert_eq!(d["error"], Value::Null);

    // Invalid requests and unknown jobs.
    for (body, field) in [
        (json!({}), "image_url"),
        (json!({"image_url": "nope"}), "image_url"),
        (
            json!({"image_url": "https://example.com/a.jpg", "pattern_type": "invoice"}),
            "pattern_type",
        ),
    ] {
        let r = public.post_json("/demo/process", &body).await;
        assert_validation(&r, field);
    }
    let r = public
        .get("/demo/status/550e8400-e29b-41d4-a716-446655440000")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Three per hour: the fourth is refused with Retry-After.
    for _ in 0..2 {
        let r = public
            .post_json(
                "/demo/process",
                &json!({"image_url": "https://example.com/b.jpg"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let r = public
        .post_json(
            "/demo/process",
            &json!({"image_url": "https://example.com/c.jpg"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["success"], false);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    emu.shutdown().await;
}
