//! The one error type of the imggo crates, and the API's error codes.

use std::fmt;
use std::time::Duration;

use crate::envelope::ErrorBody;
use crate::ratelimit::RateLimitInfo;

/// A machine-readable error code from the API.
///
/// The server sends UPPER_SNAKE codes (`NOT_FOUND`), the prose docs lower_snake
/// (`pattern_not_found`); both parse, case-insensitively. A code this crate does not
/// know becomes [`ErrorCode::Unknown`] with the code normalised to UPPER_SNAKE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `NOT_FOUND` / `pattern_not_found` / `job_not_found`.
    NotFound,
    /// `VALIDATION_ERROR`.
    ValidationError,
    /// `INVALID_JSON`.
    InvalidJson,
    /// `INVALID_SCHEMA`.
    InvalidSchema,
    /// `INVALID_IMAGE`: the upload is not an image the service accepts.
    InvalidImage,
    /// `FILE_TOO_LARGE` / `PAYLOAD_TOO_LARGE`.
    FileTooLarge,
    /// `PATTERN_INACTIVE`.
    PatternInactive,
    /// `UNAUTHORIZED`, `MISSING_AUTHORIZATION`, `INVALID_API_KEY`.
    Unauthorized,
    /// `FORBIDDEN` / `INSUFFICIENT_SCOPE`.
    Forbidden,
    /// `RATE_LIMIT_EXCEEDED` (either 429 body shape).
    RateLimitExceeded,
    /// `INTERNAL_ERROR`.
    InternalError,
    /// `SERVICE_UNAVAILABLE`.
    ServiceUnavailable,
    /// Any other code, normalised to UPPER_SNAKE.
    Unknown(String),
}

impl ErrorCode {
    /// Parses a code in any case, with `-` or `_` separators.
    pub fn parse(raw: &str) -> Self {
        let norm: String = raw
            .trim()
            .chars()
            .map(|c| {
                if c == '-' || c == ' ' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        match norm.as_str() {
            "NOT_FOUND" | "PATTERN_NOT_FOUND" | "JOB_NOT_FOUND" | "WEBHOOK_NOT_FOUND" => {
                Self::NotFound
            }
            "VALIDATION_ERROR" | "BAD_REQUEST" | "INVALID_REQUEST" => Self::ValidationError,
            "INVALID_JSON" => Self::InvalidJson,
            "INVALID_SCHEMA" => Self::InvalidSchema,
            "INVALID_IMAGE" | "INVALID_FILE_TYPE" | "UNSUPPORTED_MEDIA_TYPE" => Self::InvalidImage,
            "FILE_TOO_LARGE" | "PAYLOAD_TOO_LARGE" => Self::FileTooLarge,
            "PATTERN_INACTIVE" => Self::PatternInactive,
            "UNAUTHORIZED" | "MISSING_AUTHORIZATION" | "INVALID_API_KEY" | "INVALID_TOKEN" => {
                Self::Unauthorized
            }
            "FORBIDDEN" | "INSUFFICIENT_SCOPE" => Self::Forbidden,
            "RATE_LIMIT_EXCEEDED" | "RATE_LIMITED" | "TOO_MANY_REQUESTS" => Self::RateLimitExceeded,
            "INTERNAL_ERROR" | "INTERNAL_SERVER_ERROR" => Self::InternalError,
            "SERVICE_UNAVAILABLE" => Self::ServiceUnavailable,
            _ => Self::Unknown(norm),
        }
    }

    /// The canonical UPPER_SNAKE spelling, as the server sends it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::InvalidJson => "INVALID_JSON",
            Self::InvalidSchema => "INVALID_SCHEMA",
            Self::InvalidImage => "INVALID_IMAGE",
            Self::FileTooLarge => "FILE_TOO_LARGE",
            Self::PatternInactive => "PATTERN_INACTIVE",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::Unknown(s) => s,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_via_str!(ErrorCode);

/// An error answered by the API: a non-2xx status with its decoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// The error code from the body, or one derived from the status when the body had none.
    pub code: ErrorCode,
    /// Human-readable message from the body.
    pub message: String,
    /// The `X-Request-ID` of the response, for support tickets.
    pub request_id: Option<String>,
    /// The `Retry-After` of the response, if any.
    pub retry_after: Option<Duration>,
    /// `details` from the body, if any.
    pub details: Option<serde_json::Value>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        if let Some(ra) = self.retry_after {
            write!(f, " (retry after {}s)", ra.as_secs_f64())?;
        }
        Ok(())
    }
}

/// What went wrong at the transport level, for [`Error::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The TCP connection could not be established.
    Connect,
    /// The connection was reset or closed before a full response arrived.
    ConnectionReset,
    /// TLS handshake or certificate failure.
    Tls,
    /// Anything else below HTTP.
    Other,
}

/// The error type of every imggo crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// The quota is gone: the server asked to wait longer than the configured cap.
    /// Callers should fail fast instead of sleeping.
    #[error("{}", quota_message(*retry_after, limit.as_ref(), request_id.as_deref()))]
    QuotaExhausted {
        /// How long the server asked to wait.
        retry_after: Duration,
        /// Rate-limit headers of the refusal.
        limit: Option<RateLimitInfo>,
        /// The `X-Request-ID` of the response.
        request_id: Option<String>,
    },

    /// A timeout elapsed; `what` says which one (connect, attempt, total, job wait).
    #[error("timed out: {what} after {}ms", after.as_millis())]
    Timeout {
        /// Which deadline elapsed.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },

    /// A transport failure (connect, reset, TLS).
    #[error("transport error ({kind:?}): {message}")]
    Transport {
        /// The kind of failure.
        kind: TransportKind,
        /// Description from the underlying library.
        message: String,
    },

    /// A response that could not be decoded.
    #[error("could not decode {what}: {message}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// Why it failed.
        message: String,
    },

    /// A job ended in the `failed` state.
    #[error("job {job_id} failed: {message}")]
    JobFailed {
        /// The job id.
        job_id: String,
        /// The job's error text.
        message: String,
    },

    /// Bad input given by the caller (a file, a URL, a parameter); `input` names it.
    #[error("invalid input {input}: {reason}")]
    InvalidInput {
        /// The input, e.g. a path.
        input: String,
        /// Why it is invalid.
        reason: String,
    },

    /// Invalid configuration.
    #[error("configuration error: {0}")]
    Config(String),

    /// The run was stopped before this input was sent (its results could not be
    /// recorded, or the caller stopped it).
    #[error("not sent: the run was stopped ({reason})")]
    Stopped {
        /// Why the run stopped.
        reason: String,
    },

    /// An I/O error while reading `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or resource.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// "quota exhausted: it resets at 2027-01-01T00:00:00.000Z (in 29 d 5 h) ...".
fn quota_message(
    retry_after: Duration,
    limit: Option<&RateLimitInfo>,
    request_id: Option<&str>,
) -> String {
    let reset = limit.and_then(|l| l.reset);
    let left = reset
        .and_then(|r| r.duration_since(std::time::SystemTime::now()).ok())
        .unwrap_or(retry_after);
    let when = match reset {
        Some(r) => format!("it resets at {}", crate::time::format_rfc3339(r)),
        None => "it frees up".to_owned(),
    };
    let secs = left.as_secs();
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let span = if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {} s", secs % 60)
    };
    let id = request_id
        .map(|r| format!(" (request id {r})"))
        .unwrap_or_default();
    format!(
        "quota exhausted: {when} (in {span}); the service asked to wait {}s, beyond the cap, so nothing more is sent{id}",
        retry_after.as_secs()
    )
}

impl Error {
    /// Builds the error for a non-2xx response from its status, headers and body.
    ///
    /// `header` looks a header up by lower-case name. Both 429 body shapes and an
    /// unparseable body are handled. A `Retry-After` above `quota_cap` turns the
    /// error into [`Error::QuotaExhausted`].
    pub fn from_response<'a>(
        status: u16,
        header: impl Fn(&str) -> Option<&'a str>,
        body: &[u8],
        quota_cap: Duration,
    ) -> Self {
        let request_id = header("x-request-id").map(str::to_owned);
        let limit = RateLimitInfo::from_headers(&header, std::time::SystemTime::now());
        let retry_after = limit.as_ref().and_then(|l| l.retry_after);
        if let (429, Some(ra)) = (status, retry_after) {
            if ra > quota_cap {
                return Self::QuotaExhausted {
                    retry_after: ra,
                    limit,
                    request_id,
                };
            }
        }
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        let (code, message, details) = match parsed {
            Some(b) => (b.code, b.message, b.details),
            None => (
                None,
                String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                None,
            ),
        };
        let code = code.unwrap_or_else(|| code_for_status(status));
        Self::Api(Box::new(ApiError {
            status,
            code,
            message,
            request_id,
            retry_after,
            details,
        }))
    }

    /// True when repeating the same request may succeed: 429, 500, 502, 503, 504,
    /// timeouts and connection resets. False for 4xx validation/auth errors and for
    /// quota exhaustion.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(e) => matches!(e.status, 408 | 429 | 500 | 502 | 503 | 504),
            Self::Timeout { what, .. } => *what != "total",
            Self::Transport { kind, .. } => {
                matches!(
                    kind,
                    TransportKind::Connect | TransportKind::ConnectionReset
                )
            }
            _ => false,
        }
    }

    /// True for a 429 answer.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::Api(e) if e.status == 429)
    }

    /// True for a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The server's `Retry-After`, if the error carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            Self::QuotaExhausted { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(e) => Some(e.status),
            Self::QuotaExhausted { .. } => Some(429),
            _ => None,
        }
    }

    /// The `X-Request-ID` of the failing response, if known.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api(e) => e.request_id.as_deref(),
            Self::QuotaExhausted { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// A short stable code for result lines and metrics (`NOT_FOUND`, `TIMEOUT`, ...).
    pub fn code(&self) -> String {
        match self {
            Self::Api(e) => e.code.to_string(),
            Self::QuotaExhausted { .. } => "QUOTA_EXHAUSTED".into(),
            Self::Timeout { .. } => "TIMEOUT".into(),
            Self::Transport { .. } => "TRANSPORT".into(),
            Self::Decode { .. } => "DECODE".into(),
            Self::JobFailed { .. } => "JOB_FAILED".into(),
            Self::InvalidInput { .. } => "INVALID_INPUT".into(),
            Self::Config(_) => "CONFIG".into(),
            Self::Io { .. } => "IO".into(),
            Self::Stopped { .. } => "STOPPED".into(),
        }
    }
}

/// The code implied by a status when the body carries none.
pub fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::ValidationError,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::FileTooLarge,
        429 => ErrorCode::RateLimitExceeded,
        500 => ErrorCode::InternalError,
        503 => ErrorCode::ServiceUnavailable,
        other => ErrorCode::Unknown(format!("HTTP_{other}")),
    }
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }

    #[test]
    fn codes_parse_in_both_cases() {
        assert_eq!(ErrorCode::parse("NOT_FOUND"), ErrorCode::NotFound);
        assert_eq!(ErrorCode::parse("pattern_not_found"), ErrorCode::NotFound);
        assert_eq!(
            ErrorCode::parse("rate_limit_exceeded"),
            ErrorCode::RateLimitExceeded
        );
        assert_eq!(
            ErrorCode::parse("some-new-code"),
            ErrorCode::Unknown("SOME_NEW_CODE".into())
        );
    }

    #[test]
    fn retryable_classification() {
        let mk = |status| Error::from_response(status, hdr(&[]), b"{}", Duration::from_secs(60));
        for s in [429, 500, 502, 503, 504] {
            assert!(mk(s).is_retryable(), "{s} should be retryable");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!mk(s).is_retryable(), "{s} must not be retried");
        }
        assert!(Error::Timeout {
            what: "attempt",
            after: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(Error::Transport {
            kind: TransportKind::ConnectionReset,
            message: "reset".into()
        }
        .is_retryable());
    }

    #[test]
    fn long_retry_after_is_quota_exhaustion() {
        let h = [("retry-after", "86400"), ("x-request-id", "req-1")];
        let e = Error::from_response(429, hdr(&h), b"{}", Duration::from_secs(300));
        assert!(matches!(e, Error::QuotaExhausted { .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert_eq!(e.request_id(), Some("req-1"));
        let h = [("retry-after", "5")];
        let e = Error::from_response(429, hdr(&h), b"{}", Duration::from_secs(300));
        assert!(e.is_rate_limited());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn api_error_keeps_body_fields() {
        let body = br#"{"success":false,"error":{"code":"VALIDATION_ERROR","message":"bad","details":{"field":"image"}}}"#;
        let h = [("x-request-id", "abc")];
        let e = Error::from_response(400, hdr(&h), body, Duration::from_secs(60));
        let Error::Api(api) = &e else { panic!("{e:?}") };
        assert_eq!(api.code, ErrorCode::ValidationError);
        assert_eq!(api.message, "bad");
        assert_eq!(api.request_id.as_deref(), Some("abc"));
        assert!(e.to_string().contains("abc"));
        // A body that is not JSON still gives a typed error with the status's code.
        let e = Error::from_response(502, hdr(&[]), b"<html>bad gateway", Duration::ZERO);
        assert_eq!(e.code(), "HTTP_502");
        assert!(e.is_retryable());
    }
}
