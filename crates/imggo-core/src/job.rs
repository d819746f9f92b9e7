//! Jobs, manifests and the ingest request/response, in both API dialects.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::ErrorCode;

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
        match s.to_ascii_lowercase().as_str() {
            "queued" | "pending" => Self::Queued,
            "running" | "processing" | "in_progress" => Self::Running,
            "succeeded" | "completed" | "complete" | "success" | "done" => Self::Succeeded,
            "failed" | "failure" | "error" => Self::Failed,
            _ => Self::Unknown(s.to_owned()),
        }
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
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// The result of a job.
///
/// JSON patterns give an object (possibly empty: `{}` is a valid success). Non-JSON
/// patterns (YAML, XML, CSV, text) are carried as `{"_format": "...", "_raw": "..."}`
/// and become [`Manifest::Raw`].
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    /// A JSON object.
    Json(Map<String, Value>),
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
            Self::Json(m) => Value::Object(m.clone()),
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
                _ => Self::Json(m),
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
        Ok(Self::from_value(Value::deserialize(d)?))
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
