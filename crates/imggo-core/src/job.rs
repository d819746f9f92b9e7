//! Jobs, manifests and the ingest request/response, in both API dialects.

use std::fmt;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ErrorCode;

mod compact;

/// The state of a job.
///
/// The server says `queued | running | succeeded | failed`; the prose docs say
/// `processing` and `completed`. Both parse; anything else becomes [`JobStatus::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting to run.
    Queued,
    /// Running (`processing` in the docs).
    Running,
    /// Finished with a manifest (`completed` in the docs).
    Succeeded,
    /// Finished with an error.
    Failed,
    /// A status this crate does not know.
    Unknown(String),
}

impl JobStatus {
    /// Parses either dialect, case-insensitively.
    pub fn parse(s: &str) -> Self {
        const SPELLINGS: [(&str, JobStatus); 13] = [
            ("queued", JobStatus::Queued),
            ("pending", JobStatus::Queued),
            ("running", JobStatus::Running),
            ("processing", JobStatus::Running),
            ("in_progress", JobStatus::Running),
            ("succeeded", JobStatus::Succeeded),
            ("completed", JobStatus::Succeeded),
            ("complete", JobStatus::Succeeded),
            ("success", JobStatus::Succeeded),
            ("done", JobStatus::Succeeded),
            ("failed", JobStatus::Failed),
            ("failure", JobStatus::Failed),
            ("error", JobStatus::Failed),
        ];
        SPELLINGS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map_or_else(|| Self::Unknown(s.to_owned()), |(_, st)| st.clone())
    }

    /// The server's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Unknown(s) => s,
        }
    }

    /// The docs' spelling (`processing`, `completed`).
    pub fn as_docs_str(&self) -> &str {
        match self {
            Self::Running => "processing",
            Self::Succeeded => "completed",
            other => other.as_str(),
        }
    }

    /// True for `succeeded` and `failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl Serialize for JobStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StatusVisitor;
        impl Visitor<'_> for StatusVisitor {
            type Value = JobStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a job status string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<JobStatus, E> {
                Ok(JobStatus::parse(s))
            }
        }
        d.deserialize_str(StatusVisitor)
    }
}

/// The result of a job.
///
/// JSON patterns give an object (possibly empty: `{}` is a valid success), kept as the
/// text the server sent ([`JsonManifest`]) so that decoding a job does not build a tree.
/// Non-JSON patterns (YAML, XML, CSV, text) are carried as
/// `{"_format": "...", "_raw": "..."}` and become [`Manifest::Raw`].
///
/// Decoding works with serde_json's deserializers (from text, a reader or a `Value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    /// A JSON object.
    Json(JsonManifest),
    /// A non-JSON body with its format.
    Raw {
        /// `yaml`, `xml`, `csv`, `text`, ...
        format: String,
        /// The body as produced.
        body: String,
    },
}

impl Manifest {
    /// The manifest as a JSON value (the `_format`/`_raw` form for raw bodies).
    pub fn to_value(&self) -> Value {
        match self {
            Self::Json(m) => Value::Object(m.to_map()),
            Self::Raw { format, body } => {
                let mut m = Map::new();
                m.insert("_format".into(), Value::String(format.clone()));
                m.insert("_raw".into(), Value::String(body.clone()));
                Value::Object(m)
            }
        }
    }

    /// Builds a manifest from a JSON value: objects with a string `_raw` are raw, other
    /// objects are JSON, a bare string is raw text, anything else is wrapped as raw JSON text.
    pub fn from_value(v: Value) -> Self {
        match v {
            Value::Object(m) => match m.get("_raw") {
                Some(Value::String(body)) => Self::Raw {
                    format: m
                        .get("_format")
                        .and_then(Value::as_str)
                        .unwrap_or("text")
                        .to_owned(),
                    body: body.clone(),
                },
                _ => Self::Json(JsonManifest::from(m)),
            },
            Value::String(body) => Self::Raw {
                format: "text".into(),
                body,
            },
            other => Self::Raw {
                format: "json".into(),
                body: other.to_string(),
            },
        }
    }
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Json(m) => m.serialize(s),
            Self::Raw { .. } => self.to_value().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if simple_object(raw.get()) {
            return Ok(Self::Json(JsonManifest(raw.into())));
        }
        // A string, an array, a `_raw` body, an escaped key that might spell `_raw`, or
        // nesting near serde_json's limit: decode the tree and decide as `from_value` does.
        serde_json::from_str(raw.get())
            .map(Self::from_value)
            .map_err(serde::de::Error::custom)
    }
}

/// Deepest nesting a [`JsonManifest`] takes without a full parse; deeper objects go
/// through `serde_json::Value`, whose parser stops at 128 levels.
const MAX_FAST_DEPTH: usize = 100;

/// True when the JSON number `token` might be past `f64::MAX`, which serde_json refuses
/// ("number out of range"): its integer digits plus its exponent exceed 308. Cheap and
/// conservative (`1e308` counts); such text goes through the full parse, which decides.
pub(crate) fn number_may_overflow(token: &[u8]) -> bool {
    let token = token.strip_prefix(b"-").unwrap_or(token);
    let int_digits = token.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(e_at) = token.iter().position(|&b| b == b'e' || b == b'E') else {
        return int_digits > 308;
    };
    let exp = &token[e_at + 1..];
    let (negative, digits) = match exp.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, exp),
    };
    // Capped well past any f64 exponent, so the sum below cannot overflow.
    let e = digits
        .iter()
        .filter(|d| d.is_ascii_digit())
        .fold(0i64, |e, d| (e * 10 + i64::from(d - b'0')).min(1 << 20));
    let e = if negative { -e } else { e };
    int_digits as i64 + e > 308
}

/// True when no number in `bytes`, the text of a valid JSON value, might be out of `f64`
/// range (see [`number_may_overflow`]).
fn numbers_fit_f64(bytes: &[u8]) -> bool {
    let is_number_byte = |b: &u8| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-');
    let (mut at, mut in_string) = (0, false);
    while let Some(&b) = bytes.get(at) {
        match (in_string, b) {
            (true, b'\\') => at += 1,
            (_, b'"') => in_string = !in_string,
            (false, b'-' | b'0'..=b'9') => {
                let len = bytes[at..]
                    .iter()
                    .position(|b| !is_number_byte(b))
                    .unwrap_or(bytes.len() - at);
                if number_may_overflow(&bytes[at..at + len]) {
                    return false;
                }
                at += len;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    true
}

/// True for the text of a JSON object that surely holds no `_raw` key and that
/// `serde_json` parses back without hitting its nesting limit or a number out of `f64`
/// range (`1e400`).
fn simple_object(text: &str) -> bool {
    if !text.starts_with('{') || text.contains("_raw") {
        return false;
    }
    let bytes = text.as_bytes();
    // Without escapes and with few brackets there is nothing more to check. The count
    // adds bytes per 64-byte chunk (no overflow), which the compiler vectorises.
    let brackets: usize = bytes
        .chunks(64)
        .map(|c| {
            let n = c
                .iter()
                .map(|&b| u8::from(b == b'{') + u8::from(b == b'['))
                .fold(0u8, u8::wrapping_add);
            usize::from(n)
        })
        .sum();
    if brackets <= MAX_FAST_DEPTH && !bytes.contains(&b'\\') {
        return numbers_fit_f64(bytes);
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, b'u') => return false,
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_FAST_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    numbers_fit_f64(bytes)
}

/// A JSON object manifest, held as its JSON text: decoding a [`Job`] only checks and
/// copies it, and the object is parsed when someone asks for it ([`JsonManifest::to_map`],
/// [`JsonManifest::parse`]). Serialising writes the text back unchanged.
#[derive(Clone)]
pub struct JsonManifest(Box<str>);

impl JsonManifest {
    /// The object's JSON text (as received, or as serde_json wrote a map).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the object into a map.
    ///
    /// # Panics
    ///
    /// Never for a manifest decoded from JSON: its nesting and its numbers were checked
    /// on the way in (a manifest with a number out of `f64` range, such as `1e400`, is a
    /// decoding error). A map built by hand with more than 127 levels of nesting, which
    /// serde_json cannot read back, panics here.
    pub fn to_map(&self) -> Map<String, Value> {
        self.parse()
            .expect("a JsonManifest holds a JSON object that serde_json reads back")
    }

    /// Parses the object into any type that deserializes from JSON.
    pub fn parse<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.as_str())
    }

    /// Wraps the text of a JSON object that was already checked: valid, no `_raw` key,
    /// nesting within [`MAX_FAST_DEPTH`], numbers that serde_json reads as `f64`.
    fn from_checked(text: &str) -> Self {
        Self(text.into())
    }
}

impl Default for JsonManifest {
    /// The empty object `{}` (a valid success).
    fn default() -> Self {
        Self("{}".into())
    }
}

impl From<Map<String, Value>> for JsonManifest {
    fn from(m: Map<String, Value>) -> Self {
        Self(
            serde_json::to_string(&m)
                .expect("a JSON map always serialises")
                .into_boxed_str(),
        )
    }
}

impl PartialEq for JsonManifest {
    /// Equal objects, whatever their key order or spacing.
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_map() == other.to_map()
    }
}

impl fmt::Debug for JsonManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonManifest").field(&self.as_str()).finish()
    }
}

impl Serialize for JsonManifest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Written as raw JSON: borrowing it as a `RawValue` checks it without copying.
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// A job's error: the server sends a string, the docs an object `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// The code, when the docs' object form was used.
    pub code: Option<ErrorCode>,
    /// The message.
    pub message: String,
}

impl Serialize for JobError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}

impl<'de> Deserialize<'de> for JobError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(message) => Self {
                code: None,
                message,
            },
            Value::Object(o) => Self {
                code: o.get("code").and_then(Value::as_str).map(ErrorCode::parse),
                message: o
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            other => Self {
                code: None,
                message: other.to_string(),
            },
        })
    }
}

/// A job as `GET /api/jobs/{id}` returns it (either dialect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job id (`id` on the server, `job_id` in the docs).
    #[serde(alias = "job_id")]
    pub id: String,
    /// The pattern it runs.
    #[serde(default)]
    pub pattern_id: Option<String>,
    /// Where the image is stored.
    #[serde(default)]
    pub image_url: Option<String>,
    /// Status.
    pub status: JobStatus,
    /// The result (`manifest` on the server, `result` in the docs).
    #[serde(default, alias = "result")]
    pub manifest: Option<Manifest>,
    /// The error of a failed job.
    #[serde(default)]
    pub error: Option<JobError>,
    /// Processing time (`latency_ms`, or the docs' `processing_time_ms`).
    #[serde(default, alias = "processing_time_ms")]
    pub latency_ms: Option<u64>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// When it started running.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// The idempotency key it was created with.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The user that created it.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// Caller metadata.
    #[serde(default)]
    pub extras: Option<Value>,
}

impl Job {
    /// A job with only an id and a status (every other field empty), e.g. to represent a
    /// result learned from a webhook or a duplicate-key ingest answer.
    pub fn new(id: impl Into<String>, status: JobStatus) -> Self {
        Self {
            id: id.into(),
            pattern_id: None,
            image_url: None,
            status,
            manifest: None,
            error: None,
            latency_ms: None,
            created_at: None,
            updated_at: None,
            started_at: None,
            completed_at: None,
            idempotency_key: None,
            requested_by: None,
            extras: None,
        }
    }
}

/// Body of a JSON ingest (`POST /api/patterns/{id}/ingest` with `image_url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRequest {
    /// URL the service fetches the image from.
    pub image_url: String,
    /// Caller metadata, kept on the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Value>,
    /// Idempotency key (`^[a-zA-Z0-9_-]{1,255}$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The answer to an ingest: 202 `{job_id, status: queued, message, approach}`, or 200 for a
/// repeated idempotency key, possibly already terminal with its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// The job (`job_id`, or `id`).
    #[serde(alias = "id")]
    pub job_id: String,
    /// Its status.
    pub status: JobStatus,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Processing approach reported by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approach: Option<String>,
    /// The manifest, when a duplicate key hit a finished job (`result` in the docs).
    #[serde(default, alias = "result", skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// The error, when a duplicate key hit a failed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

/// Result formats of `GET /api/jobs/{id}?format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultFormat {
    /// JSON (the default envelope).
    Json,
    /// YAML body.
    Yaml,
    /// XML body.
    Xml,
    /// CSV body.
    Csv,
    /// Plain text body.
    Text,
}

impl ResultFormat {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Xml => "xml",
            Self::Csv => "csv",
            Self::Text => "text",
        }
    }

    /// Parses a query value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "json" => Self::Json,
            "yaml" | "yml" => Self::Yaml,
            "xml" => Self::Xml,
            "csv" => Self::Csv,
            "text" | "txt" => Self::Text,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(text: &str) -> Manifest {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn json_objects_keep_their_text() {
        let text = r#"{"b":1,"a":{"c":[1,"x}"]}}"#;
        let Manifest::Json(m) = manifest(text) else {
            panic!("not JSON");
        };
        assert_eq!(m.as_str(), text);
        assert_eq!(
            serde_json::to_string(&Manifest::Json(m.clone())).unwrap(),
            text
        );
        assert_eq!(m.to_map()["a"]["c"][1], "x}");
        assert_eq!(
            m,
            JsonManifest::from(
                json!({"a": {"c": [1, "x}"]}, "b": 1})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        assert_ne!(m, JsonManifest::default());
        assert_eq!(manifest("{}"), Manifest::Json(JsonManifest::default()));
    }

    #[test]
    fn raw_bodies_are_found_however_written() {
        let raw = |text: &str| match manifest(text) {
            Manifest::Raw { format, body } => (format, body),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            raw(r#"{"_format":"csv","_raw":"a,b"}"#),
            ("csv".into(), "a,b".into())
        );
        // An escaped key still spells `_raw`.
        assert_eq!(raw(r#"{"\u005fraw":"x"}"#), ("text".into(), "x".into()));
        assert_eq!(raw(r#""plain""#), ("text".into(), "plain".into()));
        assert_eq!(raw("[1, 2]"), ("json".into(), "[1,2]".into()));
        // `_raw` that is not a string, or only nested, leaves a JSON object.
        assert!(matches!(manifest(r#"{"_raw":1}"#), Manifest::Json(_)));
        assert!(matches!(
            manifest(r#"{"a":{"_raw":"x"}}"#),
            Manifest::Json(_)
        ));
        assert!(matches!(manifest(r#"{"a":"\u00e9"}"#), Manifest::Json(_)));
        // Escapes and many shallow brackets go through the careful scan and stay raw text.
        let quoted = r#"{"a":"x\"}{[","b":"\\"}"#;
        assert!(matches!(manifest(quoted), Manifest::Json(m) if m.as_str() == quoted));
        let wide = format!(r#"{{"a":[{}[]]}}"#, "[],".repeat(150));
        assert!(matches!(manifest(&wide), Manifest::Json(m) if m.as_str() == wide));
    }

    #[test]
    fn nesting_beyond_the_parser_limit_is_an_error_not_a_panic() {
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(200),
            "1".to_owned() + &"}".repeat(200)
        );
        assert!(serde_json::from_str::<Manifest>(&deep).is_err());
        let ok = format!(
            "{}{}",
            "{\"a\":".repeat(90),
            "1".to_owned() + &"}".repeat(90)
        );
        let Manifest::Json(m) = manifest(&ok) else {
            panic!("not JSON");
        };
        assert_eq!(m.to_map().len(), 1);
    }

    #[test]
    fn manifests_decode_from_values_and_readers() {
        let v = json!({"id": "j", "status": "DONE", "manifest": {"total": 2}});
        let from_value: Job = serde_json::from_value(v.clone()).unwrap();
        let from_reader: Job = serde_json::from_reader(v.to_string().as_bytes()).unwrap();
        assert_eq!(from_value, from_reader);
        assert_eq!(from_value.status, JobStatus::Succeeded);
        assert_eq!(from_value.manifest.unwrap().to_value(), json!({"total": 2}));
    }

    #[test]
    fn status_spellings() {
        assert_eq!(JobStatus::parse("Processing"), JobStatus::Running);
        assert_eq!(JobStatus::parse("in_progress"), JobStatus::Running);
        assert_eq!(JobStatus::parse("ERROR"), JobStatus::Failed);
        assert_eq!(
            JobStatus::parse("Archived"),
            JobStatus::Unknown("Archived".into())
        );
        assert!(serde_json::from_str::<JobStatus>("3").is_err());
    }

    #[test]
    fn numbers_out_of_f64_range_are_decoding_errors_not_panics() {
        let huge = "9".repeat(400);
        for n in ["1e400", "-1E+400", "1.5e309", huge.as_str()] {
            for text in [
                format!(r#"{{"n":{n}}}"#),
                format!(r#"{{"s":"\u0041","n":[{n}]}}"#), // escapes: the careful scan
            ] {
                assert!(serde_json::from_str::<Manifest>(&text).is_err(), "{text}");
                let job = format!(r#"{{"id":"j","status":"succeeded","manifest":{text}}}"#);
                assert!(Job::from_compact_json(&job).is_none(), "{job}");
                assert!(serde_json::from_str::<Job>(&job).is_err(), "{job}");
                let env = format!(r#"{{"success":true,"data":{job}}}"#);
                assert!(Job::from_compact_json(&env).is_none(), "{env}");
            }
        }
        // In range, with an exponent: decoded through the full parse, equal in value.
        let job = r#"{"id":"j","status":"succeeded","manifest":{"n":1e5,"m":-2.5E-400}}"#;
        let decoded: Job = serde_json::from_str(job).unwrap();
        assert_eq!(
            decoded.manifest.unwrap().to_value(),
            json!({"n": 100000.0, "m": -0.0})
        );
        // Look-alikes inside strings keep the fast path and their text.
        let text = r#"{"hash":"ab1e400","big":"1e400"}"#;
        let Manifest::Json(m) = manifest(text) else {
            panic!("not JSON");
        };
        assert_eq!(m.as_str(), text);
        assert_eq!(m.to_map()["big"], "1e400");
    }
}
