//! Handlers of every route but ingest: patterns, jobs, webhooks, usage, health, stats.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use imggo_core::{
    BurstLimit, CreatePattern, CreateWebhook, EventKind, Health, Manifest, MessageResponse, Page,
    Pagination, Pattern, PatternFormat, ResultFormat, Secret, UpdatePattern, Usage, UsageLimits,
    UsageRequests, Webhook,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Dialect;
use crate::lifecycle;
use crate::render;
use crate::reply::{self, error, ok, Body, Reply};
use crate::rng::{self, Stream};
use crate::routes::query_param;
use crate::state::{id_kind, lock, now_rfc3339, PatternRecord, State, WebhookRecord};
use crate::validate::{self, Field, Format, Kind};

/// Parses a JSON body, or answers 400 `INVALID_JSON` naming the problem.
pub(crate) fn parse_json<T: DeserializeOwned>(state: &State, body: &[u8]) -> Result<T, Box<Reply>> {
    serde_json::from_slice(body).map_err(|e| {
        let (code, msg) = if e.is_data() {
            ("VALIDATION_ERROR", format!("Invalid request body: {e}"))
        } else {
            (
                "INVALID_JSON",
                format!("Request body is not valid JSON: {e}"),
            )
        };
        Box::new(error(
            state.dialect(),
            StatusCode::BAD_REQUEST,
            code,
            msg,
            None,
        ))
    })
}

fn validation(state: &State, message: impl Into<String>, field: &str) -> Reply {
    error(
        state.dialect(),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        message,
        Some(serde_json::json!({ "field": field })),
    )
}

pub(crate) fn not_found(state: &State, what: &str) -> Reply {
    error(
        state.dialect(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found"),
        None,
    )
}

fn valid_name(name: &str) -> bool {
    name.chars().count() <= 255 && validate::is_name(name)
}

const FORMATS: &[&str] = &["json", "yaml", "xml", "csv", "text"];
const DELIMITERS: &[&str] = &["comma", "semicolon"];
const NAME_CHARS: &str = "letters, digits, spaces, - _ ( )";

/// The body of `POST /api/patterns` (the server's create schema).
const CREATE_PATTERN: &[Field] = &[
    Field::new("name", Kind::Str)
        .required()
        .min(1)
        .max(255)
        .chars(validate::is_name, NAME_CHARS),
    Field::new("format", Kind::Str).one_of(FORMATS),
    Field::new("instructions", Kind::Str).required().max(2000),
    Field::new("json_schema", Kind::Any).nullable(),
    Field::new("yaml_schema", Kind::Str).nullable().max(5000),
    Field::new("xml_schema", Kind::Str).nullable().max(5000),
    Field::new("csv_schema", Kind::Str).nullable().max(5000),
    Field::new("csv_delimiter", Kind::Str).one_of(DELIMITERS),
    Field::new("plain_text_schema", Kind::Str)
        .nullable()
        .max(5000),
    Field::new("model_profile", Kind::Str).min(1),
    Field::new("version", Kind::Int).min(0),
    Field::new("is_active", Kind::Bool),
    Field::new("parent_pattern_id", Kind::Str)
        .nullable()
        .format(Format::Uuid),
];

/// The body of `PATCH /api/patterns/{id}` (the server's update schema).
const UPDATE_PATTERN: &[Field] = &[
    Field::new("name", Kind::Str)
        .min(1)
        .max(255)
        .chars(validate::is_name, NAME_CHARS),
    Field::new("format", Kind::Str).one_of(FORMATS),
    Field::new("instructions", Kind::Str).min(10).max(2000),
    Field::new("json_schema", Kind::Any).nullable(),
    Field::new("yaml_schema", Kind::Str).nullable().max(5000),
    Field::new("xml_schema", Kind::Str).nullable().max(5000),
    Field::new("csv_schema", Kind::Str).nullable().max(5000),
    Field::new("csv_delimiter", Kind::Str).one_of(DELIMITERS),
    Field::new("plain_text_schema", Kind::Str).max(5000),
    Field::new("is_active", Kind::Bool),
    Field::new("publish_new_version", Kind::Bool),
];

/// The body of `POST /api/webhooks`.
const CREATE_WEBHOOK: &[Field] = &[
    Field::new("url", Kind::Str).required().format(Format::Uri),
    Field::new("events", Kind::StrArray)
        .min(1)
        .one_of(&["job.succeeded", "job.failed"]),
    Field::new("secret", Kind::Str).min(16),
];

/// Checks `body` against `fields` and reads the known fields as `T`.
fn checked<T: DeserializeOwned>(
    state: &State,
    body: &[u8],
    fields: &[Field],
) -> Result<T, Box<Reply>> {
    let mut m = validate::object(state, body, fields)?;
    // A version beyond what the store keeps is saturated rather than refused: the schema
    // sets no maximum.
    if let Some(v) = m.get_mut("version") {
        if v.as_u64().is_none_or(|n| n > u64::from(u32::MAX)) {
            *v = Value::from(u32::MAX);
        }
    }
    serde_json::from_value(Value::Object(m)).map_err(|e| {
        Box::new(validation(
            state,
            format!("Invalid request body: {e}"),
            "body",
        ))
    })
}

/// 405 with `Allow` naming the methods the path takes.
pub(crate) fn method_not_allowed(
    state: &State,
    parts: &http::request::Parts,
    allowed: &[http::Method],
) -> Reply {
    let mut r = error(
        state.dialect(),
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not allowed on {}", parts.method, parts.uri.path()),
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&crate::routes::allow_header(allowed)) {
        r.headers_mut().insert(http::header::ALLOW, v);
    }
    r
}

/// Page and page size from the query, checked like the server's query schema: whole
/// numbers, `page` >= 1, `per_page` 1..=100 (defaults 1 and `default_per_page`).
fn paging(
    state: &State,
    query: Option<&str>,
    default_per_page: u32,
) -> Result<(u32, u32), Box<Reply>> {
    // Any positive whole number is a valid page (the schema sets no maximum); one beyond
    // what a u32 holds is simply past the last page.
    let number = |name: &str, default: u32, max: u32| match query_param(query, name) {
        None => Ok(default),
        Some(v) => {
            let digits = v.strip_prefix('+').unwrap_or(v);
            let n = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Some(digits.parse::<u32>().unwrap_or(u32::MAX))
            } else {
                None
            };
            n.filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                Box::new(validation(
                    state,
                    format!("{name} must be a whole number from 1 to {max}, got {v:?}"),
                    name,
                ))
            })
        }
    };
    Ok((
        number("page", 1, u32::MAX)?,
        number("per_page", default_per_page, 100)?,
    ))
}

fn page_of<T>(all: Vec<T>, page: u32, per_page: u32) -> Page<T> {
    let total = all.len() as u64;
    let total_pages = total.div_ceil(u64::from(per_page)) as u32;
    let skip = (page as usize - 1).saturating_mul(per_page as usize);
    let data = all.into_iter().skip(skip).take(per_page as usize).collect();
    Page {
        data,
        pagination: Pagination {
            page,
            per_page,
            total,
            total_pages,
        },
    }
}

/// Creates a pattern for `user` (shared by the HTTP route and `Handle::create_pattern`).
pub(crate) fn insert_pattern(
    state: &State,
    user: &Arc<str>,
    req: CreatePattern,
) -> Result<Pattern, (String, &'static str)> {
    if !valid_name(&req.name) {
        return Err((
            "name must be 1-255 characters of letters, digits, spaces, - _ ( )".into(),
            "name",
        ));
    }
    if req.instructions.chars().count() > 2000 {
        return Err((
            "instructions must be at most 2000 characters".into(),
            "instructions",
        ));
    }
    if let Some(parent) = &req.parent_pattern_id {
        if !validate::is_uuid(parent) {
            return Err((
                format!("parent_pattern_id must be a uuid, got {parent:?}"),
                "parent_pattern_id",
            ));
        }
    }
    if let Some(PatternFormat::Unknown(f)) = &req.format {
        return Err((
            format!("format must be json, yaml, xml, csv or text, got {f:?}"),
            "format",
        ));
    }
    let (_, id) = state.next_id(id_kind::PATTERN);
    let now = now_rfc3339();
    let pattern = Pattern {
        id: id.clone(),
        user_id: Some(user.to_string()),
        name: req.name,
        format: req.format.unwrap_or_default(),
        json_schema: req.schemas.json_schema,
        yaml_schema: req.schemas.yaml_schema,
        xml_schema: req.schemas.xml_schema,
        csv_schema: req.schemas.csv_schema,
        csv_delimiter: Some(req.schemas.csv_delimiter.unwrap_or_else(|| "comma".into())),
        plain_text_schema: req.schemas.plain_text_schema,
        instructions: req.instructions,
        model_profile: Some(req.model_profile.unwrap_or_else(|| "balanced".into())),
        version: req.version.unwrap_or(1).max(1),
        is_active: req.is_active.unwrap_or(true),
        created_at: Some(now.clone()),
        updated_at: Some(now),
        parent_pattern_id: req.parent_pattern_id,
    };
    let mut store = lock(&state.patterns);
    store.order.push(id.clone());
    store.by_id.insert(
        id,
        PatternRecord {
            pattern: pattern.clone(),
            user: user.clone(),
        },
    );
    Ok(pattern)
}

pub(crate) fn create_pattern(state: &State, user: &Arc<str>, body: &[u8]) -> Reply {
    let req: CreatePattern = match checked(state, body, CREATE_PATTERN) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match insert_pattern(state, user, req) {
        Ok(p) => ok(StatusCode::CREATED, &p),
        Err((msg, field)) => validation(state, msg, field),
    }
}

pub(crate) fn get_pattern(state: &State, user: &str, id: &str) -> Reply {
    match state.pattern(id, user) {
        Some(p) => ok(StatusCode::OK, &p),
        None => not_found(state, "Pattern"),
    }
}

pub(crate) fn list_patterns(state: &State, user: &str, query: Option<&str>) -> Reply {
    let (page, per_page) = match paging(state, query, 20) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let active = match query_param(query, "is_active") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return validation(
                state,
                format!("is_active must be true or false, got {other:?}"),
                "is_active",
            )
        }
    };
    let all: Vec<Pattern> = {
        let store = lock(&state.patterns);
        store
            .order
            .iter()
            .rev()
            .filter_map(|id| store.by_id.get(id))
            .filter(|r| *r.user == *user && active.is_none_or(|a| r.pattern.is_active == a))
            .map(|r| r.pattern.clone())
            .collect()
    };
    ok(StatusCode::OK, &page_of(all, page, per_page))
}

pub(crate) fn patch_pattern(state: &State, user: &str, id: &str, body: &[u8]) -> Reply {
    let req: UpdatePattern = match checked(state, body, UPDATE_PATTERN) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Some(name) = &req.name {
        if !valid_name(name) {
            return validation(
                state,
                "name must be 1-255 characters of letters, digits, spaces, - _ ( )",
                "name",
            );
        }
    }
    if let Some(i) = &req.instructions {
        let n = i.chars().count();
        if !(10..=2000).contains(&n) {
            return validation(
                state,
                "instructions must be 10-2000 characters",
                "instructions",
            );
        }
    }
    if let Some(PatternFormat::Unknown(f)) = &req.format {
        return validation(
            state,
            format!("format must be json, yaml, xml, csv or text, got {f:?}"),
            "format",
        );
    }
    let mut store = lock(&state.patterns);
    let Some(rec) = store.by_id.get_mut(id).filter(|r| *r.user == *user) else {
        drop(store);
        return not_found(state, "Pattern");
    };
    let p = &mut rec.pattern;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = req.$f { p.$f = v.into(); } )* };
    }
    set!(name, format, instructions, is_active);
    macro_rules! set_opt {
        ($($f:ident),*) => { $( if let Some(v) = req.schemas.$f { p.$f = Some(v); } )* };
    }
    set_opt!(
        json_schema,
        yaml_schema,
        xml_schema,
        csv_schema,
        csv_delimiter,
        plain_text_schema
    );
    p.version = p.version.saturating_add(1);
    p.updated_at = Some(now_rfc3339());
    let out = p.clone();
    drop(store);
    ok(StatusCode::OK, &out)
}

pub(crate) fn delete_pattern(state: &State, user: &str, id: &str) -> Reply {
    let mut store = lock(&state.patterns);
    if store.by_id.get(id).is_none_or(|r| *r.user != *user) {
        drop(store);
        return not_found(state, "Pattern");
    }
    store.by_id.remove(id);
    store.order.retain(|x| x != id);
    drop(store);
    ok(
        StatusCode::OK,
        &MessageResponse {
            message: "Pattern deleted successfully".into(),
        },
    )
}

pub(crate) fn get_job(state: &Arc<State>, user: &str, id: &str, query: Option<&str>) -> Reply {
    lifecycle::settle(state, id);
    state.counters.job_polls.fetch_add(1, Ordering::Relaxed);
    let format = query_param(query, "format");
    let Some(format) = format.filter(|f| !f.eq_ignore_ascii_case("json")) else {
        return match state.job_body(id, user) {
            Some(b) => reply::json_bytes(StatusCode::OK, b),
            None => not_found(state, "Job"),
        };
    };
    let Some(format) = ResultFormat::parse(format) else {
        return validation(
            state,
            format!("format must be json, yaml, xml, csv or text, got {format:?}"),
            "format",
        );
    };
    let Some(job) = state.job(id, Some(user)) else {
        return not_found(state, "Job");
    };
    let delimiter = job
        .pattern_id
        .as_deref()
        .and_then(|p| state.pattern(p, user))
        .map_or(',', |p| match p.csv_delimiter.as_deref() {
            Some("semicolon") => ';',
            _ => ',',
        });
    let body = match (&job.manifest, &job.error) {
        (Some(m), _) => render::manifest_as(m, format, delimiter).0,
        (None, Some(e)) => {
            render::manifest_as(
                &Manifest::Raw {
                    format: "text".into(),
                    body: e.message.clone(),
                },
                format,
                delimiter,
            )
            .0
        }
        (None, None) => String::new(),
    };
    let ct = render::manifest_as(
        &Manifest::Raw {
            format: format.as_str().into(),
            body: String::new(),
        },
        format,
        delimiter,
    )
    .1;
    let mut r = Reply::new(Body::full(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    h.insert("X-Job-Id", hv(&job.id));
    h.insert(
        "X-Job-Status",
        hv(render::status_str(&job.status, state.dialect())),
    );
    if let Some(p) = &job.pattern_id {
        h.insert("X-Pattern-Id", hv(p));
    }
    r
}

pub(crate) fn list_jobs(state: &Arc<State>, user: &str, query: Option<&str>) -> Reply {
    let (page, per_page) = match paging(state, query, 15) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let status = query_param(query, "status").map(imggo_core::JobStatus::parse);
    let ids: Vec<Arc<str>> = lock(&state.job_order)
        .iter()
        .rev()
        .filter(|c| *c.user == *user)
        .map(|c| c.id.clone())
        .collect();
    let jobs: Vec<Value> = ids
        .iter()
        .filter_map(|id| {
            lifecycle::settle(state, id);
            state.job(id, None)
        })
        .filter(|j| status.as_ref().is_none_or(|s| *s == j.status))
        .map(|j| match state.dialect() {
            Dialect::Server => serde_json::to_value(&j).unwrap_or(Value::Null),
            Dialect::Docs => render::job_docs_value(&j),
        })
        .collect();
    ok(StatusCode::OK, &page_of(jobs, page, per_page))
}

pub(crate) fn create_webhook(state: &State, user: &Arc<str>, body: &[u8]) -> Reply {
    let req: CreateWebhook = match checked(state, body, CREATE_WEBHOOK) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    // Beyond the schema's `uri`, the server takes only http(s) URLs with a host (its
    // documented "invalid webhook URL" 400).
    let url_ok =
        req.url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
    if !url_ok {
        return validation(
            state,
            format!("url must be an http(s) URL, got {:?}", req.url),
            "url",
        );
    }
    let events = if req.events.is_empty() {
        vec!["job.succeeded".to_owned(), "job.failed".to_owned()]
    } else {
        req.events
    };
    if let Some(bad) = events.iter().find(|e| {
        !matches!(
            EventKind::parse(e),
            EventKind::JobSucceeded | EventKind::JobFailed
        )
    }) {
        return validation(
            state,
            format!("events must be job.succeeded or job.failed, got {bad:?}"),
            "events",
        );
    }
    let (n, id) = state.next_id(id_kind::WEBHOOK);
    let secret = match req.secret {
        Some(s) if s.expose().chars().count() >= 16 => s,
        Some(_) => {
            return validation(state, "secret must be at least 16 characters", "secret");
        }
        None => {
            let seed = state.config.seed;
            let hex: String = (0..4)
                .map(|i| format!("{:016x}", rng::bits(seed, Stream::Secrets, n * 4 + i)))
                .collect();
            Secret::new(hex)
        }
    };
    let now = now_rfc3339();
    let hook = Webhook {
        id,
        user_id: Some(user.to_string()),
        url: req.url,
        events,
        secret: None,
        is_active: true,
        created_at: Some(now.clone()),
        updated_at: Some(now),
        last_triggered_at: None,
    };
    lock(&state.webhooks).push(WebhookRecord {
        hook: hook.clone(),
        secret: secret.clone(),
        user: user.clone(),
    });
    let shown = Webhook {
        secret: Some(secret),
        ..hook
    };
    ok(StatusCode::CREATED, &shown)
}

pub(crate) fn list_webhooks(state: &State, user: &str) -> Reply {
    // The secret is shown whole once, at creation; the list (whose schema requires the
    // field) shows only its last four characters.
    let hooks: Vec<Webhook> = lock(&state.webhooks)
        .iter()
        .filter(|w| *w.user == *user)
        .map(|w| Webhook {
            secret: Some(Secret::new(masked(w.secret.expose()))),
            ..w.hook.clone()
        })
        .collect();
    ok(StatusCode::OK, &hooks)
}

/// `****` and the last four characters of `secret`.
fn masked(secret: &str) -> String {
    let tail: Vec<char> = secret.chars().rev().take(4).collect();
    format!("****{}", tail.into_iter().rev().collect::<String>())
}

pub(crate) fn delete_webhook(state: &State, user: &str, id: &str) -> Reply {
    delete_owned(state, &state.webhooks, "Webhook", |w| {
        w.hook.id == id && *w.user == *user
    })
}

/// Removes the records of `list` that `is_target` picks (a user's own record by id) and
/// answers `{what} deleted successfully`, or 404 `{what} not found` when there was none.
pub(crate) fn delete_owned<T>(
    state: &State,
    list: &std::sync::Mutex<Vec<T>>,
    what: &str,
    is_target: impl Fn(&T) -> bool,
) -> Reply {
    let mut items = lock(list);
    let before = items.len();
    items.retain(|item| !is_target(item));
    let removed = items.len() < before;
    drop(items);
    if removed {
        ok(
            StatusCode::OK,
            &MessageResponse {
                message: format!("{what} deleted successfully"),
            },
        )
    } else {
        not_found(state, what)
    }
}

pub(crate) fn usage(state: &State, user: &str) -> Reply {
    let (used, limit) = state.limiter.usage(user);
    let remaining = if limit < 0 {
        -1
    } else {
        (limit - used as i64).max(0)
    };
    let usage = Usage {
        requests: Some(UsageRequests {
            used: used as i64,
            limit,
            remaining,
        }),
        burst_limit: Some(BurstLimit {
            seconds: state.limiter.min_gap_secs(),
        }),
        limits: Some(UsageLimits {
            max_image_size: Some(state.config.max_image_bytes as u64),
        }),
        extra: Default::default(),
    };
    ok(StatusCode::OK, &usage)
}

/// `GET /api/_health`: the bare `{status, timestamp, services}` of the openapi (no
/// envelope).
pub(crate) fn health() -> Reply {
    let mut services = serde_json::Map::new();
    for s in ["database", "storage", "queue"] {
        services.insert(s.into(), Value::String("up".into()));
    }
    let body = Health {
        status: "healthy".into(),
        timestamp: Some(now_rfc3339()),
        services: Some(services),
    };
    reply::json_bytes(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

pub(crate) fn stats(state: &State) -> Reply {
    let s = state.counters.snapshot();
    reply::json_bytes(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&s).unwrap_or_default()),
    )
}
