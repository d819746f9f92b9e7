//! Webhook registrations and the event payload the service POSTs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::job::{JobError, JobStatus, Manifest};
use crate::secret::Secret;

/// A webhook registration as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// Opaque id.
    pub id: String,
    /// Owner.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// Subscribed events (`job.succeeded`, `job.failed`).
    #[serde(default)]
    pub events: Vec<String>,
    /// The signing secret; the server returns it once, at creation (a list shows at most
    /// a masked form, never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Active flag.
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Last delivery.
    #[serde(default)]
    pub last_triggered_at: Option<String>,
}

fn yes() -> bool {
    true
}

/// Body of `POST /api/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateWebhook {
    /// Where events are POSTed.
    pub url: String,
    /// Events to subscribe to; the server defaults to both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Signing secret, at least 16 characters; omitted → the server generates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// The kind of a webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `job.succeeded` (`job.completed` in the docs).
    JobSucceeded,
    /// `job.failed`.
    JobFailed,
    /// `job.queued` (docs only).
    JobQueued,
    /// Anything else.
    Unknown(String),
}

impl EventKind {
    /// Parses either dialect.
    pub fn parse(s: &str) -> Self {
        match s {
            "job.succeeded" | "job.completed" => Self::JobSucceeded,
            "job.failed" => Self::JobFailed,
            "job.queued" => Self::JobQueued,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The server's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::JobSucceeded => "job.succeeded",
            Self::JobFailed => "job.failed",
            Self::JobQueued => "job.queued",
            Self::Unknown(s) => s,
        }
    }

    /// The kind for a job that ended with `status`.
    pub fn for_status(status: &JobStatus) -> Self {
        match status {
            JobStatus::Succeeded => Self::JobSucceeded,
            JobStatus::Failed => Self::JobFailed,
            JobStatus::Queued => Self::JobQueued,
            other => Self::Unknown(format!("job.{}", other.as_str())),
        }
    }
}

serde_via_str!(EventKind);

/// The payload of a webhook delivery: `{event, job_id, pattern_id, manifest, error, timestamp}`
/// (the docs' `result` and `status` fields are accepted too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// What happened.
    pub event: EventKind,
    /// The job.
    pub job_id: String,
    /// Its pattern.
    #[serde(default)]
    pub pattern_id: Option<String>,
    /// The job's status, when the sender includes it (docs dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// The manifest of a succeeded job.
    #[serde(default, alias = "result")]
    pub manifest: Option<Manifest>,
    /// The error of a failed job.
    #[serde(default)]
    pub error: Option<JobError>,
    /// When the event was sent: RFC 3339 string or Unix seconds/milliseconds.
    #[serde(default)]
    pub timestamp: Option<Value>,
}

impl WebhookEvent {
    /// The `timestamp` as a point in time (RFC 3339, Unix seconds, or Unix milliseconds):
    /// `Ok(None)` when there is none, an [`Error::Decode`] when it is there but is not a
    /// time (text that is neither, a negative, NaN or out-of-range number, a time past
    /// what [`SystemTime`] holds).
    pub fn sent_at(&self) -> Result<Option<SystemTime>, Error> {
        let at = match &self.timestamp {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => crate::time::parse_rfc3339(s)
                .or_else(|| s.parse::<f64>().ok().and_then(unix_number)),
            Some(Value::Number(n)) => n.as_f64().and_then(unix_number),
            Some(_) => None,
        };
        at.map(Some).ok_or_else(|| Error::Decode {
            what: "webhook timestamp".into(),
            message: "not an RFC 3339 time or Unix seconds/milliseconds in range".into(),
        })
    }
}

fn unix_number(n: f64) -> Option<SystemTime> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    // Anything past year 33658 in seconds is taken as milliseconds.
    let secs = if n > 1e12 { n / 1000.0 } else { n };
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(timestamp: &str) -> WebhookEvent {
        serde_json::from_str(&format!(
            r#"{{"event":"job.succeeded","job_id":"j","timestamp":{timestamp}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn absurd_timestamps_are_errors_not_panics() {
        for t in [
            "1e300",
            "-1",
            "1.7e308",
            "\"1e300\"",
            "\"NaN\"",
            "\"inf\"",
            "\"soon\"",
            "[]",
            "18446744073709551615000",
        ] {
            assert!(
                matches!(event(t).sent_at(), Err(Error::Decode { .. })),
                "{t}"
            );
        }
        assert_eq!(event("null").sent_at().unwrap(), None);
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(event("1700000000").sent_at().unwrap(), Some(at));
        assert_eq!(event("1700000000000").sent_at().unwrap(), Some(at));
        assert_eq!(
            event("\"2023-11-14T22:13:20Z\"").sent_at().unwrap(),
            Some(at)
        );
    }
}
