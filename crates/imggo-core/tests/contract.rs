//! Every example payload of the API's own OpenAPI contract, and each docs-dialect variant,
//! parses into the imggo-core types.

use std::path::PathBuf;

use imggo_core::*;
use serde_json::{json, Value};

fn openapi() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/api/openapi.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("openapi.yaml parses")
}

fn parse<T: serde::de::DeserializeOwned>(name: &str, v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("example of {name}: {e}\n{v:#}"))
}

#[test]
fn every_schema_example_parses() {
    let doc = openapi();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    // Schemas of routes outside imggo's job (key management, signed uploads, public demo).
    let out_of_scope = [
        "ApiKeyResponse",
        "ApiKeyCreateRequest",
        "ApiKeyListItem",
        "SignedUploadResponse",
        "DemoProcessResponse",
        "DemoProcessRequest",
    ];
    let mut checked = 0;
    for (name, schema) in schemas {
        let Some(ex) = schema.get("example") else {
            continue;
        };
        match name.as_str() {
            "Pattern" => {
                let p: Pattern = parse(name, ex);
                assert_eq!(p.format, PatternFormat::Json);
                assert_eq!(p.version, 1);
            }
            "Job" => {
                let j: Job = parse(name, ex);
                assert_eq!(j.status, JobStatus::Succeeded);
                assert!(
                    matches!(j.manifest, Some(Manifest::Json(ref m)) if m.to_map().contains_key("brand"))
                );
                assert_eq!(j.latency_ms, Some(1250));
            }
            "ErrorResponse" => {
                let e: ErrorBody = parse(name, ex);
                assert_eq!(e.code, Some(ErrorCode::InvalidSchema));
                assert!(e.details.is_some());
            }
            "CreatePatternRequest" => {
                let c: CreatePattern = parse(name, ex);
                assert_eq!(c.format, Some(PatternFormat::Json));
            }
            "UpdatePatternRequest" => {
                let u: UpdatePattern = parse(name, ex);
                assert_eq!(u.is_active, Some(true));
            }
            "IngestResponse" => {
                let r: IngestResponse = parse(name, ex);
                assert_eq!(r.status, JobStatus::Queued);
            }
            "IngestRequest" => {
                let r: IngestRequest = parse(name, ex);
                assert!(IdempotencyKey::parse(r.idempotency_key.as_deref().unwrap()).is_ok());
            }
            "Webhook" => {
                let w: Webhook = parse(name, ex);
                assert_eq!(w.events, ["job.succeeded", "job.failed"]);
                assert!(
                    !format!("{w:?}").contains("whsec_abc123"),
                    "secret leaked into Debug"
                );
            }
            "WebhookCreateRequest" => {
                let w: CreateWebhook = parse(name, ex);
                assert!(w.secret.unwrap().expose().len() >= 16);
            }
            "HealthResponse" => {
                let h: Health = parse(name, ex);
                assert_eq!(h.status, "healthy");
            }
            other => {
                assert!(
                    out_of_scope.contains(&other),
                    "new schema {other} has no type"
                );
                continue;
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 10, "every in-scope example was checked");
}

#[test]
fn success_envelopes_of_the_contract_parse() {
    let _: Envelope<Pattern> = serde_json::from_value(json!({"success": true, "data": {
        "id": "p1", "user_id": "u1", "name": "n", "format": "json", "instructions": "i",
        "model_profile": "managed-default", "version": 3, "is_active": true,
        "created_at": "2025-01-15T10:00:00Z", "updated_at": "2025-01-15T10:00:00Z"}}))
    .unwrap();
    let page: Envelope<Page<Pattern>> = serde_json::from_value(json!({"success": true, "data": {
        "data": [], "pagination": {"page": 1, "per_page": 20, "total": 0, "total_pages": 0}}}))
    .unwrap();
    assert!(!page.data.pagination.has_next());
    let del: Envelope<MessageResponse> =
        serde_json::from_value(json!({"success": true, "data": {"message": "Pattern deleted"}}))
            .unwrap();
    assert_eq!(del.data.message, "Pattern deleted");
}

#[test]
fn docs_dialect_job() {
    let j: Job = serde_json::from_value(json!({
        "job_id": "j1", "status": "processing", "progress": 40
    }))
    .unwrap();
    assert_eq!(j.id, "j1");
    assert_eq!(j.status, JobStatus::Running);
    assert!(!j.status.is_terminal());

    let j: Job = serde_json::from_value(json!({
        "job_id": "j1", "status": "completed", "result": {}, "processing_time_ms": 812,
        "confidence": 0.97
    }))
    .unwrap();
    assert_eq!(j.status, JobStatus::Succeeded);
    // An empty manifest is a success, not a missing one.
    assert_eq!(j.manifest, Some(Manifest::Json(Default::default())));
    assert_eq!(j.latency_ms, Some(812));

    let j: Job = serde_json::from_value(json!({
        "job_id": "j2", "status": "failed",
        "error": {"code": "invalid_image", "message": "could not decode"}
    }))
    .unwrap();
    let e = j.error.unwrap();
    assert_eq!(e.code, Some(ErrorCode::InvalidImage));
    assert_eq!(e.message, "could not decode");
}

#[test]
fn server_dialect_job_failure_and_unknown_status() {
    let j: Job = serde_json::from_value(json!({
        "id": "j3", "pattern_id": "p", "image_url": "u", "status": "failed", "manifest": null,
        "error": "Model timeout", "latency_ms": null, "created_at": "2025-01-15T10:00:00Z",
        "updated_at": "2025-01-15T10:00:00Z", "started_at": null, "completed_at": null,
        "idempotency_key": null, "requested_by": null, "extras": null
    }))
    .unwrap();
    assert_eq!(j.error.unwrap().message, "Model timeout");
    assert_eq!(j.manifest, None);
    let j: Job = serde_json::from_value(json!({"id": "j4", "status": "archived"})).unwrap();
    assert_eq!(j.status, JobStatus::Unknown("archived".into()));
}

#[test]
fn raw_manifests_of_non_json_patterns() {
    let j: Job = serde_json::from_value(json!({
        "id": "j5", "status": "succeeded",
        "manifest": {"_format": "csv", "_raw": "name,total\nACME,12.50\n"}
    }))
    .unwrap();
    let m = j.manifest.unwrap();
    assert_eq!(
        m,
        Manifest::Raw {
            format: "csv".into(),
            body: "name,total\nACME,12.50\n".into()
        }
    );
    // And it serialises back to the same wire form.
    assert_eq!(m.to_value()["_raw"], "name,total\nACME,12.50\n");
}

#[test]
fn ingest_duplicate_answer_may_be_terminal() {
    let r: Envelope<IngestResponse> = serde_json::from_value(json!({"success": true, "data": {
        "job_id": "j1", "status": "succeeded", "manifest": {"a": 1}}}))
    .unwrap();
    assert!(r.data.status.is_terminal());
    assert!(r.data.manifest.is_some());
    let r: IngestResponse = serde_json::from_value(json!({
        "job_id": "j1", "status": "queued", "message": "Image queued for processing",
        "approach": "queue"}))
    .unwrap();
    assert_eq!(r.approach.as_deref(), Some("queue"));
    // The docs' synchronous answer.
    let r: IngestResponse = serde_json::from_value(json!({
        "job_id": "j1", "status": "completed", "result": {"x": true}}))
    .unwrap();
    assert_eq!(r.status, JobStatus::Succeeded);
    assert!(r.manifest.is_some());
}

#[test]
fn webhook_event_both_dialects() {
    let e: WebhookEvent = serde_json::from_value(json!({
        "event": "job.succeeded", "job_id": "j1", "pattern_id": "p1",
        "manifest": {"total": 1}, "error": null, "timestamp": "2025-01-15T10:00:01.250Z"}))
    .unwrap();
    assert_eq!(e.event, EventKind::JobSucceeded);
    assert!(e.sent_at().unwrap().is_some());
    let e: WebhookEvent = serde_json::from_value(json!({
        "event": "job.completed", "job_id": "j1", "status": "completed",
        "result": {"total": 1}, "timestamp": 1736935201}))
    .unwrap();
    assert_eq!(e.event, EventKind::JobSucceeded);
    assert_eq!(e.status, Some(JobStatus::Succeeded));
    assert!(e.manifest.is_some());
    let secs = e
        .sent_at()
        .unwrap()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(secs, 1_736_935_201);
    let e: WebhookEvent =
        serde_json::from_value(json!({"event": "job.archived", "job_id": "j"})).unwrap();
    assert_eq!(e.event, EventKind::Unknown("job.archived".into()));
}

#[test]
fn usage_is_lenient() {
    let u: Usage = serde_json::from_value(json!({
        "requests": {"used": 10, "limit": -1, "remaining": -1},
        "burstLimit": {"seconds": 6},
        "limits": {"maxImageSize": 10485760},
        "plan": "starter"
    }))
    .unwrap();
    assert_eq!(u.requests.unwrap().limit, -1);
    assert_eq!(u.burst_limit.unwrap().seconds, 6.0);
    assert_eq!(u.limits.unwrap().max_image_size, Some(10_485_760));
    assert_eq!(u.extra["plan"], "starter");
}
