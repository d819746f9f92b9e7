//! `POST /api/patterns/{id}/ingest`: multipart or JSON, rate limits, idempotency, and the
//! server's 400s for what is not an image.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use imggo_core::{ContentHash, IngestRequest, IngestResponse, JobStatus};
use serde_json::{json, Value};

use crate::config::Dialect;
use crate::handlers::{not_found, parse_json};
use crate::lifecycle::{self, NewJob, Source};
use crate::limiter::{Decision, RateHeaders, Refusal};
use crate::multipart;
use crate::reply::{error, ok, value, Reply};
use crate::rng::{self, Stream};
use crate::state::{lock, KeyEntry, State};

/// Extensions the server accepts in an upload's file name.
const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "webp", "bmp"];

/// The parsed body of an ingest.
struct Parsed {
    source: Source,
    hash: Option<ContentHash>,
    idempotency_key: Option<String>,
    extras: Option<Value>,
    image_url: Option<String>,
}

/// A 400 with `code` (boxed: it travels in `Err`).
fn bad(state: &State, code: &str, message: impl Into<String>) -> Box<Reply> {
    Box::new(error(
        state.dialect(),
        StatusCode::BAD_REQUEST,
        code,
        message,
        None,
    ))
}

pub(crate) fn handle(
    state: &Arc<State>,
    user: &Arc<str>,
    pattern_id: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Reply {
    let Some(pattern) = state.pattern(pattern_id, user) else {
        return not_found(state, "Pattern");
    };
    if !pattern.is_active {
        return *bad(state, "PATTERN_INACTIVE", "Pattern is not active");
    }
    let limit = match state.limiter.check(user, Instant::now(), SystemTime::now()) {
        Decision::Allow(h) => h,
        Decision::Deny {
            headers: h,
            retry_after,
            why,
            used,
        } => return too_many(state, h, retry_after, why, used),
    };
    let parsed = match parse(state, headers, body) {
        Ok(p) => p,
        Err(r) => return with_limits(*r, limit),
    };
    if let Some(h) = parsed.hash {
        state.counters.ingest_received(h.as_u128());
    }
    // The body's or form's key follows the server's pattern (the docs declare the header
    // as any string).
    if let Some(k) = &parsed.idempotency_key {
        if imggo_core::IdempotencyKey::parse(k).is_err() {
            return with_limits(
                error(
                    state.dialect(),
                    StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "idempotency_key must match ^[a-zA-Z0-9_-]{1,255}$",
                    Some(json!({"field": "idempotency_key"})),
                ),
                limit,
            );
        }
    }
    // The key from the body or form. The server reads nothing else; the docs dialect
    // also takes the `Idempotency-Key` header, as the prose docs describe.
    let key = parsed.idempotency_key.or_else(|| {
        (state.dialect() == Dialect::Docs)
            .then(|| headers.get("idempotency-key"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let now = Instant::now();
    // One critical section decides "new, racing or replay", so concurrent duplicates get
    // one job.
    let mut keys = key.as_ref().map(|_| lock(&state.idempotency));
    if let (Some(map), Some(k)) = (keys.as_mut(), &key) {
        if let Some(existing) = map.get_mut(k.as_str()) {
            if races(state, existing, now) {
                existing.raced = true;
                drop(keys);
                state
                    .counters
                    .faults
                    .race_dup
                    .fetch_add(1, Ordering::Relaxed);
                return with_limits(race_500(state), limit);
            }
            let job = existing.job.clone();
            drop(keys);
            state
                .counters
                .ingests_replayed
                .fetch_add(1, Ordering::Relaxed);
            return with_limits(replay(state, &job), limit);
        }
    }
    let job = lifecycle::create(
        state,
        NewJob {
            pattern,
            user: user.clone(),
            source: parsed.source,
            idempotency_key: key.clone(),
            extras: parsed.extras,
            image_url: parsed.image_url,
        },
    );
    if let (Some(map), Some(k)) = (keys.as_mut(), key) {
        let entry = KeyEntry {
            job: Arc::from(job.id.as_str()),
            at: now,
            raced: false,
        };
        map.insert(k, entry);
    }
    drop(keys);
    state.evict(now);
    state.counters.ingest_accepted(Instant::now());
    let resp = IngestResponse {
        job_id: job.id,
        status: JobStatus::Queued,
        message: Some("Image queued for processing".into()),
        approach: Some("queued".into()),
        manifest: None,
        error: None,
    };
    with_limits(ok(StatusCode::ACCEPTED, &resp), limit)
}

/// How close after a key's job was created a duplicate counts as concurrent with it for
/// [`Faults::race_dup`](crate::Faults::race_dup): about the time the server's storage
/// upload takes between its key check and its insert.
pub const RACE_WINDOW: Duration = Duration::from_secs(1);

/// Whether a duplicate of `existing` loses the race (the fault's draw).
fn races(state: &State, existing: &KeyEntry, now: Instant) -> bool {
    let p = state.config.faults.race_dup;
    if p <= 0.0 || existing.raced || now.saturating_duration_since(existing.at) > RACE_WINDOW {
        return false;
    }
    let n = state.race_seq.fetch_add(1, Ordering::Relaxed);
    rng::unit(state.config.seed, Stream::RaceDup, n) < p
}

/// The server's answer to a duplicate that hit the unique index: its generic 500.
fn race_500(state: &State) -> Reply {
    error(
        state.dialect(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "Failed to create job",
        None,
    )
}

/// 200 with the existing job of a known idempotency key.
fn replay(state: &Arc<State>, job_id: &str) -> Reply {
    lifecycle::settle(state, job_id);
    let Some(job) = state.job(job_id, None) else {
        return not_found(state, "Job");
    };
    match state.dialect() {
        Dialect::Server => ok(
            StatusCode::OK,
            &IngestResponse {
                job_id: job.id,
                status: job.status,
                message: Some("Job already exists for this idempotency key".into()),
                approach: None,
                manifest: job.manifest,
                error: job.error,
            },
        ),
        Dialect::Docs => ok(
            StatusCode::OK,
            &json!({
                "job_id": job.id,
                "status": job.status.as_docs_str(),
                "message": "Job already exists for this idempotency key",
                "result": job.manifest,
                "error": job.error.map(|e| json!({"code": "processing_failed", "message": e.message})),
            }),
        ),
    }
}

fn parse(state: &State, headers: &HeaderMap, body: Bytes) -> Result<Parsed, Box<Reply>> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("multipart/form-data") {
        parse_multipart(state, ct, body)
    } else if essence.eq_ignore_ascii_case("application/json") {
        let req: IngestRequest = parse_json(state, &body)?;
        let url_ok = req
            .image_url
            .parse::<http::Uri>()
            .ok()
            .is_some_and(|u| u.scheme().is_some() && u.host().is_some());
        if !url_ok {
            return Err(bad(
                state,
                "VALIDATION_ERROR",
                format!("image_url must be a URL, got {:?}", req.image_url),
            ));
        }
        if let Some(e) = &req.extras {
            if !e.is_object() {
                return Err(bad(state, "VALIDATION_ERROR", "extras must be an object"));
            }
        }
        Ok(Parsed {
            source: Source::Url(req.image_url.clone()),
            hash: None,
            idempotency_key: req.idempotency_key,
            extras: req.extras,
            image_url: Some(req.image_url),
        })
    } else {
        Err(bad(
            state,
            "VALIDATION_ERROR",
            format!(
                "Content-Type must be multipart/form-data or application/json, got {essence:?}"
            ),
        ))
    }
}

fn parse_multipart(state: &State, ct: &str, body: Bytes) -> Result<Parsed, Box<Reply>> {
    let boundary =
        multipart::boundary(ct).map_err(|e| bad(state, "VALIDATION_ERROR", e.to_string()))?;
    let parts = multipart::parse(&body, boundary)
        .map_err(|e| bad(state, "VALIDATION_ERROR", e.to_string()))?;
    let mut image = None;
    let mut key = None;
    let mut extras = None;
    for p in parts {
        match p.name.as_str() {
            "image" => image = Some(p),
            "idempotency_key" => {
                key = Some(String::from_utf8_lossy(&p.data).trim().to_owned());
            }
            "extras" => {
                let v: Value = serde_json::from_slice(&p.data).map_err(|e| {
                    bad(
                        state,
                        "INVALID_JSON",
                        format!("extras is not valid JSON: {e}"),
                    )
                })?;
                if !v.is_object() {
                    return Err(bad(state, "VALIDATION_ERROR", "extras must be an object"));
                }
                extras = Some(v);
            }
            _ => {}
        }
    }
    let Some(image) = image else {
        return Err(bad(
            state,
            "VALIDATION_ERROR",
            "No image file provided (form field \"image\")",
        ));
    };
    let mime = image.content_type.as_deref().unwrap_or("");
    if !mime.to_ascii_lowercase().starts_with("image/") {
        return Err(bad(
            state,
            "INVALID_FILE_TYPE",
            format!("File must be an image (Content-Type image/*), got {mime:?}"),
        ));
    }
    if let Some(name) = &image.filename {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        if !ext.as_deref().is_some_and(|e| EXTENSIONS.contains(&e)) {
            return Err(bad(
                state,
                "INVALID_FILE_TYPE",
                format!(
                    "File extension must be one of .jpg .jpeg .png .gif .webp .bmp, got {name:?}"
                ),
            ));
        }
    }
    if image.data.len() > state.config.max_image_bytes {
        return Err(bad(
            state,
            "FILE_TOO_LARGE",
            format!(
                "File size {} bytes exceeds the maximum of {} bytes",
                image.data.len(),
                state.config.max_image_bytes
            ),
        ));
    }
    if image.data.is_empty() || imggo_core::format::sniff(&image.data).is_none() {
        return Err(bad(
            state,
            "INVALID_IMAGE",
            "File content is not a supported image",
        ));
    }
    let hash = ContentHash::of(&image.data);
    let facts = lifecycle::facts_with_hash(&image.data, hash).map(|mut f| {
        f.file_name = image.filename.clone();
        f
    });
    Ok(Parsed {
        source: Source::Received(facts),
        hash: Some(hash),
        idempotency_key: key,
        extras,
        image_url: None,
    })
}

fn with_limits(mut r: Reply, h: RateHeaders) -> Reply {
    let hs = r.headers_mut();
    hs.insert("X-RateLimit-Limit", HeaderValue::from(h.limit));
    hs.insert("X-RateLimit-Remaining", HeaderValue::from(h.remaining));
    hs.insert("X-RateLimit-Reset", HeaderValue::from(h.reset));
    r
}

/// The 429: the server's `{error, message, limit, burst_limit, upgrade_url}` body, or the
/// docs' standard error envelope, with `Retry-After` in whole seconds (rounded up).
fn too_many(
    state: &State,
    h: RateHeaders,
    retry_after: Duration,
    why: Refusal,
    used: u64,
) -> Reply {
    state.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let secs = secs.max(1);
    let message = match why {
        Refusal::Monthly => "Monthly request limit reached".to_owned(),
        Refusal::MinGap => format!("Please wait {secs} seconds between requests"),
        Refusal::PerMinute => "Too many requests per minute".to_owned(),
    };
    let reset_at =
        imggo_core::time::format_rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(h.reset));
    let limit = json!({
        "monthly": h.limit,
        "used": used,
        "remaining": h.remaining,
        "reset_at": reset_at,
    });
    let r = match state.dialect() {
        Dialect::Server => {
            let mut body = json!({
                "error": "Rate limit exceeded",
                "message": message,
                "limit": limit,
                "upgrade_url": "https://img-go.com/pricing",
            });
            if why == Refusal::MinGap {
                body["burst_limit"] = json!(state.limiter.min_gap_secs());
            }
            value(StatusCode::TOO_MANY_REQUESTS, &body)
        }
        Dialect::Docs => error(
            Dialect::Docs,
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            message,
            Some(json!({"retry_after": secs, "limit": limit})),
        ),
    };
    let mut r = with_limits(r, h);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r.headers_mut().insert(
        "X-Emulator-Retry-After-Ms",
        HeaderValue::from(retry_after.as_millis() as u64),
    );
    r
}
