//! One monotonic origin so that limiter state fits in a `u64` of nanoseconds.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide monotonic origin.
#[inline]
pub(crate) fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// The [`tokio::time::Instant`] of a point given in nanoseconds since the origin.
pub(crate) fn instant_at(ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(origin() + Duration::from_nanos(ns))
}

/// Sleeps until `ns` (nanoseconds since the origin); returns at once if it has passed.
pub(crate) async fn sleep_until_ns(ns: u64) {
    if ns > now_ns() {
        tokio::time::sleep_until(instant_at(ns)).await;
    }
}
