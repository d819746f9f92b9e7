//! `POST /api/uploads/signed-url`: a signed URL for uploading an image straight to storage.
//! The emulator has no storage; it answers in the server's shape with a URL under
//! `storage.imggo.invalid` that names the user's upload path and a one-time token.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::reply::{ok, Reply};
use crate::rng::{self, Stream};
use crate::state::{id_kind, State};
use crate::validate::{self, Field, Kind};

/// How long a signed upload URL is valid.
const VALIDITY: Duration = Duration::from_secs(2 * 3600);

/// Keeps the token streams apart from key and webhook secrets.
const TOKEN_STREAM_BASE: u64 = 2 << 40;

/// The body of `POST /api/uploads/signed-url`.
const REQUEST: &[Field] = &[
    Field::new("path", Kind::Str)
        .required()
        .min(1)
        .chars(validate::is_storage_path, "letters, digits, / _ - ."),
    Field::new("content_type", Kind::Str),
];

#[derive(Serialize)]
struct SignedUpload {
    url: String,
    token: String,
    expires_at: String,
    upload_path: String,
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn signed_url(state: &State, user: &str, body: &[u8]) -> Reply {
    let m = match validate::object(state, body, REQUEST) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let path = m.get("path").and_then(Value::as_str).unwrap_or_default();
    let (n, _) = state.next_id(id_kind::UPLOAD);
    let token: String = (0..2)
        .map(|i| {
            format!(
                "{:016x}",
                rng::bits(
                    state.config.seed,
                    Stream::Secrets,
                    TOKEN_STREAM_BASE + n * 2 + i
                )
            )
        })
        .collect();
    let upload_path = format!("{user}/{}", path.trim_start_matches('/'));
    let url = format!(
        "https://storage.imggo.invalid/storage/v1/object/upload/sign/images/{}?token={token}",
        encode_path(&upload_path)
    );
    ok(
        StatusCode::OK,
        &SignedUpload {
            url,
            token,
            expires_at: imggo_core::time::format_rfc3339(SystemTime::now() + VALIDITY),
            upload_path,
        },
    )
}
