//! `GET/POST /api/api-keys` and `DELETE /api/api-keys/{id}`: keys a user creates for
//! themselves. A created key authenticates like a configured one until it is deleted or
//! expires; its secret is shown once, in the answer to its creation.

use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use imggo_core::Secret;
use serde::Serialize;
use serde_json::Value;

use crate::reply::{ok, Reply};
use crate::rng::{self, Stream};
use crate::state::{id_kind, lock, now_rfc3339, State};
use crate::validate::{self, Field, Format, Kind};

/// Scopes a key gets when its request names none (the server's default).
const DEFAULT_SCOPES: [&str; 2] = ["patterns:read", "patterns:ingest"];

/// Keeps the secret streams of API keys apart from those of webhook secrets.
const KEY_STREAM_BASE: u64 = 1 << 40;

/// Characters of a key kept in its listing (`imggo_` and 8 hex digits).
const PREFIX_LEN: usize = 14;

/// The body of `POST /api/api-keys`.
const CREATE: &[Field] = &[
    Field::new("name", Kind::Str).required().min(1).max(255),
    Field::new("scopes", Kind::StrArray),
    Field::new("expires_at", Kind::Str).format(Format::DateTime),
];

/// A key as `GET /api/api-keys` lists it (no secret).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ApiKeyItem {
    id: String,
    name: String,
    key_prefix: String,
    key_type: &'static str,
    scopes: Vec<String>,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
}

/// A created key: its listing, its secret and its owner.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyRecord {
    item: ApiKeyItem,
    secret: Secret,
    user: Arc<str>,
}

/// The answer to a creation: the listing's fields plus the secret, once.
#[derive(Serialize)]
struct Created<'a> {
    id: &'a str,
    name: &'a str,
    key: &'a str,
    key_type: &'static str,
    scopes: &'a [String],
    created_at: &'a str,
    expires_at: Option<&'a str>,
}

/// The owner of a created key that is still valid, stamping its `last_used_at`.
pub(crate) fn authenticate(state: &State, key: &str) -> Option<Arc<str>> {
    let mut keys = lock(&state.api_keys);
    let rec = keys.iter_mut().find(|r| r.secret.expose() == key)?;
    let expired = rec
        .item
        .expires_at
        .as_deref()
        .and_then(imggo_core::time::parse_rfc3339)
        .is_some_and(|t| t <= SystemTime::now());
    if expired {
        return None;
    }
    rec.item.last_used_at = Some(now_rfc3339());
    Some(rec.user.clone())
}

pub(crate) fn create(state: &State, user: &Arc<str>, body: &[u8]) -> Reply {
    let m = match validate::object(state, body, CREATE) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
    let scopes: Vec<String> = match m.get("scopes").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let expires_at = m
        .get("expires_at")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (n, id) = state.next_id(id_kind::API_KEY);
    let seed = state.config.seed;
    let hex: String = (0..4)
        .map(|i| {
            format!(
                "{:016x}",
                rng::bits(seed, Stream::Secrets, KEY_STREAM_BASE + n * 4 + i)
            )
        })
        .collect();
    let secret = Secret::new(format!("imggo_{hex}"));
    let item = ApiKeyItem {
        id,
        name: name.to_owned(),
        key_prefix: secret.expose().chars().take(PREFIX_LEN).collect(),
        key_type: "live",
        scopes,
        created_at: now_rfc3339(),
        expires_at,
        last_used_at: None,
    };
    let shown = Created {
        id: &item.id,
        name: &item.name,
        key: secret.expose(),
        key_type: item.key_type,
        scopes: &item.scopes,
        created_at: &item.created_at,
        expires_at: item.expires_at.as_deref(),
    };
    let reply = ok(StatusCode::CREATED, &shown);
    lock(&state.api_keys).push(ApiKeyRecord {
        item,
        secret,
        user: user.clone(),
    });
    reply
}

pub(crate) fn list(state: &State, user: &str) -> Reply {
    let items: Vec<ApiKeyItem> = lock(&state.api_keys)
        .iter()
        .filter(|r| *r.user == *user)
        .map(|r| r.item.clone())
        .collect();
    ok(StatusCode::OK, &items)
}

pub(crate) fn delete(state: &State, user: &str, id: &str) -> Reply {
    crate::handlers::delete_owned(state, &state.api_keys, "API key", |r| {
        r.item.id == id && *r.user == *user
    })
}
