//! The `{success, data}` envelope, pagination, and both error body shapes.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::ErrorCode;

/// The success envelope `{success: true, data: T}` every API route wraps its answer in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Always `true` on success; absent in some docs examples, so optional when reading.
    #[serde(default = "yes")]
    pub success: bool,
    /// The payload.
    pub data: T,
}

fn yes() -> bool {
    true
}

impl<T> Envelope<T> {
    /// Wraps `data` in a success envelope.
    pub fn ok(data: T) -> Self {
        Self {
            success: true,
            data,
        }
    }
}

/// One page of a paginated list: `{data: [...], pagination: {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// Where this page sits.
    pub pagination: Pagination,
}

/// Pagination facts of a [`Page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// 1-based page number.
    pub page: u32,
    /// Items per page.
    pub per_page: u32,
    /// Total items over all pages.
    pub total: u64,
    /// Number of pages.
    pub total_pages: u32,
}

impl Pagination {
    /// True when a later page exists.
    pub fn has_next(&self) -> bool {
        self.page < self.total_pages
    }
}

/// The `message` answer of deletes: `{message: "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResponse {
    /// What the server said.
    pub message: String,
}

/// The monthly-quota block of the server's 429 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaLimit {
    /// Requests allowed per month (`-1` = unlimited).
    #[serde(default)]
    pub monthly: Option<i64>,
    /// Requests used this month.
    #[serde(default)]
    pub used: Option<i64>,
    /// Requests remaining this month.
    #[serde(default)]
    pub remaining: Option<i64>,
    /// When the period resets (RFC 3339).
    #[serde(default)]
    pub reset_at: Option<String>,
}

/// A decoded error body, from either shape the service uses:
///
/// - standard: `{success:false, error:{code, message, details}}`
/// - the server's 429: `{error:"Rate limit exceeded", message, limit:{monthly,used,remaining,reset_at}}`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    /// The code, when the body had one (or implied one, as the 429 shape does).
    pub code: Option<ErrorCode>,
    /// The message.
    pub message: String,
    /// `details`, when present.
    pub details: Option<Value>,
    /// The quota block of the 429 shape.
    pub limit: Option<QuotaLimit>,
}

impl<'de> Deserialize<'de> for ErrorBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let obj = v
            .as_object()
            .ok_or_else(|| serde::de::Error::custom("error body is not an object"))?;
        let limit = obj
            .get("limit")
            .and_then(|l| serde_json::from_value::<QuotaLimit>(l.clone()).ok());
        let top_message = obj
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match obj.get("error") {
            Some(Value::Object(e)) => Ok(Self {
                code: e.get("code").and_then(Value::as_str).map(ErrorCode::parse),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or(top_message)
                    .unwrap_or_default(),
                details: e.get("details").cloned().filter(|d| !d.is_null()),
                limit,
            }),
            Some(Value::String(s)) => {
                let code = if s.to_ascii_lowercase().contains("rate limit") {
                    Some(ErrorCode::RateLimitExceeded)
                } else if !s.contains(' ') {
                    Some(ErrorCode::parse(s))
                } else {
                    None
                };
                Ok(Self {
                    code,
                    message: top_message.unwrap_or_else(|| s.clone()),
                    details: None,
                    limit,
                })
            }
            _ => match top_message {
                Some(message) => Ok(Self {
                    code: obj
                        .get("code")
                        .and_then(Value::as_str)
                        .map(ErrorCode::parse),
                    message,
                    details: None,
                    limit,
                }),
                None => Err(serde::de::Error::custom(
                    "no `error` or `message` in error body",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_error_shape() {
        let b: ErrorBody = serde_json::from_str(
            r#"{"success":false,"error":{"code":"rate_limit_exceeded","message":"slow down","details":{"retry_after":5}}}"#,
        )
        .unwrap();
        assert_eq!(b.code, Some(ErrorCode::RateLimitExceeded));
        assert_eq!(b.message, "slow down");
        assert!(b.details.is_some());
    }

    #[test]
    fn server_429_shape() {
        let b: ErrorBody = serde_json::from_str(
            r#"{"error":"Rate limit exceeded","message":"Monthly limit reached","limit":{"monthly":1000,"used":1000,"remaining":0,"reset_at":"2026-12-01T00:00:00Z"},"burst_limit":60,"upgrade_url":"https://img-go.com/pricing"}"#,
        )
        .unwrap();
        assert_eq!(b.code, Some(ErrorCode::RateLimitExceeded));
        assert_eq!(b.message, "Monthly limit reached");
        let l = b.limit.unwrap();
        assert_eq!(l.monthly, Some(1000));
        assert_eq!(l.remaining, Some(0));
    }

    #[test]
    fn envelope_and_page() {
        let e: Envelope<Page<u32>> = serde_json::from_str(
            r#"{"success":true,"data":{"data":[1,2],"pagination":{"page":1,"per_page":2,"total":5,"total_pages":3}}}"#,
        )
        .unwrap();
        assert!(e.data.pagination.has_next());
        assert_eq!(e.data.data, vec![1, 2]);
    }
}
