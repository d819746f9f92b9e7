//! Hooks that connect the client to the run's metrics.

use std::sync::Arc;
use std::time::Duration;

use imggo_core::{Error, RateLimitInfo, RateLimitObserver, RetryPolicy};

use crate::metrics::Tracker;

/// Counts retries and 429s into the tracker around another retry policy.
pub struct CountingRetry {
    /// The policy that decides.
    pub inner: Arc<dyn RetryPolicy>,
    /// Where the counts go.
    pub tracker: Arc<Tracker>,
}

impl std::fmt::Debug for CountingRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingRetry").finish_non_exhaustive()
    }
}

impl CountingRetry {
    /// imggo-ratelimit's default [`Backoff`](imggo_ratelimit::Backoff) (with its retry
    /// budget), counted into `tracker`: the policy the CLI uses.
    pub fn backoff(tracker: Arc<Tracker>) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(imggo_ratelimit::Backoff::default()),
            tracker,
        })
    }
}

impl RetryPolicy for CountingRetry {
    fn next_delay(&self, failures: u32, elapsed: Duration, error: &Error) -> Option<Duration> {
        if error.is_rate_limited() {
            self.tracker.record_rate_limited();
        }
        let d = self.inner.next_delay(failures, elapsed, error);
        if d.is_some() {
            self.tracker.record_retry();
        }
        d
    }

    fn on_success(&self) {
        self.inner.on_success()
    }
}

/// Fans rate-limit headers out to several observers (the pacer and the tracker in a run
/// built from a [`RunSpec`](crate::RunSpec)).
#[derive(Default)]
pub struct Observers(pub Vec<Arc<dyn RateLimitObserver>>);

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers")
            .field("count", &self.0.len())
            .finish()
    }
}

impl RateLimitObserver for Observers {
    fn observe(&self, info: &RateLimitInfo) {
        for o in &self.0 {
            o.observe(info);
        }
    }
}
