//! Traits that let the transport, limiters and metrics meet without depending on each
//! other: imggo-http calls them, imggo-ratelimit and the facade implement them.

use std::time::Duration;

use crate::error::Error;
use crate::ratelimit::RateLimitInfo;

/// Decides whether a failed request is tried again, and after how long.
///
/// The transport calls [`RetryPolicy::next_delay`] after each failed attempt and sleeps
/// for the returned delay, or gives up on `None`. Implementations must treat the error's
/// `Retry-After` ([`Error::retry_after`]) as a floor and must return `None` for errors
/// that are not [`Error::is_retryable`].
pub trait RetryPolicy: Send + Sync {
    /// `failures` counts failed attempts so far (1 after the first), `elapsed` is the time
    /// since the first attempt started.
    fn next_delay(&self, failures: u32, elapsed: Duration, error: &Error) -> Option<Duration>;

    /// Called after a request succeeds (retry budgets refund here).
    fn on_success(&self) {}
}

/// Receives the rate-limit headers of every response (for pacing and alerts).
pub trait RateLimitObserver: Send + Sync {
    /// One response's rate-limit facts.
    fn observe(&self, info: &RateLimitInfo);
}

impl<T: RetryPolicy + ?Sized> RetryPolicy for std::sync::Arc<T> {
    fn next_delay(&self, failures: u32, elapsed: Duration, error: &Error) -> Option<Duration> {
        (**self).next_delay(failures, elapsed, error)
    }
    fn on_success(&self) {
        (**self).on_success()
    }
}

impl<T: RateLimitObserver + ?Sized> RateLimitObserver for std::sync::Arc<T> {
    fn observe(&self, info: &RateLimitInfo) {
        (**self).observe(info)
    }
}
