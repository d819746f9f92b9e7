//! The error type of every limiter.

use std::time::Duration;

/// Why a [`Limiter`](crate::Limiter) refused to admit a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// More permits were asked for at once than the limiter can ever hold, so waiting
    /// would never end.
    #[error("cannot take {requested} permits at once: the burst is {burst}")]
    ExceedsBurst {
        /// Permits asked for.
        requested: u32,
        /// The most the limiter holds.
        burst: u32,
    },

    /// The wait needed is longer than the limiter's configured maximum (for example the
    /// monthly quota is gone and resets in days). Fail fast instead of sleeping.
    #[error("rate limit: the next slot is {}s away, beyond the {}s cap", wait.as_secs(), cap.as_secs())]
    WaitTooLong {
        /// How long admission would take.
        wait: Duration,
        /// The configured cap.
        cap: Duration,
    },

    /// The shared limiter's backend (Redis) did not answer and the limiter is configured
    /// to fail closed.
    #[error("rate limiter backend unavailable: {message}")]
    Backend {
        /// What went wrong, from the client library (never contains a secret).
        message: String,
    },
}

impl LimitError {
    /// True when the backend was unreachable (as opposed to a limit decision).
    pub fn is_backend(&self) -> bool {
        matches!(self, Self::Backend { .. })
    }
}

impl From<LimitError> for imggo_core::Error {
    /// Maps a refusal into the one error type of the imggo crates: a wait beyond the cap
    /// is [`imggo_core::Error::QuotaExhausted`] (never retried), a backend outage a
    /// retryable connect failure, an impossible request a configuration error.
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::WaitTooLong { wait, .. } => imggo_core::Error::QuotaExhausted {
                retry_after: wait,
                limit: None,
                request_id: None,
            },
            LimitError::Backend { message } => imggo_core::Error::Transport {
                kind: imggo_core::TransportKind::Connect,
                message: format!("rate limiter backend: {message}"),
            },
            e @ LimitError::ExceedsBurst { .. } => imggo_core::Error::Config(e.to_string()),
        }
    }
}

/// A limiter was configured with a value it cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid rate-limit setting {name} = {value}: {reason}")]
pub struct ConfigError {
    /// The setting, e.g. `rate`.
    pub name: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ConfigError {
    pub(crate) fn new(name: &'static str, value: impl ToString, reason: &'static str) -> Self {
        Self {
            name,
            value: value.to_string(),
            reason,
        }
    }
}

impl From<ConfigError> for imggo_core::Error {
    fn from(e: ConfigError) -> Self {
        imggo_core::Error::Config(e.to_string())
    }
}
