//! The built-in retry policy: exponential backoff with full jitter (the arithmetic of
//! [`imggo_core::backoff`]), `Retry-After` as a floor, a fixed number of attempts. imggo-ratelimit offers a richer one (retry budget);
//! any [`RetryPolicy`] can be plugged in through the builder.

use std::time::Duration;

use imggo_core::backoff::{self, Exponential};
use imggo_core::{Error, RetryPolicy};

/// Exponential backoff with full jitter: after the n-th failure it waits a random time in
/// `[0, min(max_delay, base · 2^(n-1))]`, never less than the server's `Retry-After`, and
/// gives up after `max_attempts` attempts or on an error that is not
/// [`Error::is_retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetry {
    /// Attempts in all, the first one included (so 4 means up to 3 retries).
    pub max_attempts: u32,
    /// Backoff ceiling after the first failure.
    pub base: Duration,
    /// Largest backoff ceiling (a `Retry-After` may still be longer).
    pub max_delay: Duration,
}

impl Default for DefaultRetry {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl DefaultRetry {
    /// The backoff ceiling after `failures` failures (before jitter).
    pub fn ceiling(&self, failures: u32) -> Duration {
        self.exponential().ceiling(failures)
    }

    fn exponential(&self) -> Exponential {
        Exponential {
            base: self.base,
            cap: self.max_delay,
        }
    }
}

impl RetryPolicy for DefaultRetry {
    fn next_delay(&self, failures: u32, _elapsed: Duration, error: &Error) -> Option<Duration> {
        if !error.is_retryable() || failures >= self.max_attempts {
            return None;
        }
        let jittered = self
            .exponential()
            .full_jitter(failures, backoff::random_unit());
        Some(backoff::at_least_retry_after(jittered, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imggo_core::TransportKind;

    fn api(status: u16, retry_after: Option<&str>) -> Error {
        let h = retry_after.map(|v| ("retry-after", v));
        Error::from_response(
            status,
            |n| h.filter(|(k, _)| *k == n).map(|(_, v)| v),
            b"{}",
            Duration::from_secs(300),
        )
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_inside() {
        let p = DefaultRetry {
            max_attempts: 10,
            ..Default::default()
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(9), Duration::from_secs(10));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(10));
        let e = api(503, None);
        for f in 1..10 {
            let d = p.next_delay(f, Duration::ZERO, &e).unwrap();
            assert!(d <= p.ceiling(f), "{d:?} > {:?}", p.ceiling(f));
        }
        // Jitter actually varies.
        let ds: std::collections::HashSet<_> = (0..20)
            .map(|_| p.next_delay(5, Duration::ZERO, &e).unwrap())
            .collect();
        assert!(ds.len() > 1);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = DefaultRetry::default();
        let e = api(429, Some("3"));
        for _ in 0..20 {
            assert!(p.next_delay(1, Duration::ZERO, &e).unwrap() >= Duration::from_secs(3));
        }
    }

    #[test]
    fn gives_up_on_attempts_and_non_retryable() {
        let p = DefaultRetry::default();
        assert!(p.next_delay(3, Duration::ZERO, &api(500, None)).is_some());
        assert!(p.next_delay(4, Duration::ZERO, &api(500, None)).is_none());
        assert!(p.next_delay(1, Duration::ZERO, &api(400, None)).is_none());
        assert!(p.next_delay(1, Duration::ZERO, &api(404, None)).is_none());
        let reset = Error::Transport {
            kind: TransportKind::ConnectionReset,
            message: "x".into(),
        };
        assert!(p.next_delay(1, Duration::ZERO, &reset).is_some());
        let other = Error::Transport {
            kind: TransportKind::Other,
            message: "x".into(),
        };
        assert!(p.next_delay(1, Duration::ZERO, &other).is_none());
        let quota = Error::QuotaExhausted {
            retry_after: Duration::from_secs(86_400),
            limit: None,
            request_id: None,
        };
        assert!(p.next_delay(1, Duration::ZERO, &quota).is_none());
    }
}
