//! Exponential backoff with full jitter, the arithmetic behind every imggo retry policy
//! (imggo-http's `DefaultRetry` and imggo-ratelimit's `Backoff`). After the `n`-th failure
//! the ceiling is `min(cap, base · 2^(n−1))`; full jitter draws the delay uniformly in
//! `[0, ceiling]` so that many clients failing together do not come back together; a
//! server's `Retry-After` is a floor on the result.
//!
//! ```
//! use std::time::Duration;
//! use imggo_core::backoff::Exponential;
//!
//! let e = Exponential { base: Duration::from_millis(100), cap: Duration::from_secs(10) };
//! assert_eq!(e.ceiling(3), Duration::from_millis(400));
//! assert_eq!(e.ceiling(u32::MAX), Duration::from_secs(10));
//! assert_eq!(e.full_jitter(3, 0.5), Duration::from_millis(200));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Error;

/// An exponential backoff ceiling: `base` after the first failure, doubling after each
/// further one, never above `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exponential {
    /// The ceiling after the first failure.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Exponential {
    /// `min(cap, base · 2^(failures−1))` (`base` for 0 or 1 failures); never overflows.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(127);
        let nanos = self.base.as_nanos().saturating_mul(1u128 << shift);
        if nanos >= self.cap.as_nanos() {
            self.cap
        } else {
            // Below the cap, so the seconds fit a u64.
            Duration::new(
                (nanos / 1_000_000_000) as u64,
                (nanos % 1_000_000_000) as u32,
            )
        }
    }

    /// Full jitter: the ceiling after `failures` failures scaled by `unit`, a uniform draw
    /// in `[0, 1]` (see [`random_unit`]).
    pub fn full_jitter(&self, failures: u32, unit: f64) -> Duration {
        uniform(Duration::ZERO, self.ceiling(failures), unit)
    }
}

/// The point `unit` (in `[0, 1]`, clamped) of the way from `lo` to `hi`; `lo` when
/// `hi <= lo`.
pub fn uniform(lo: Duration, hi: Duration, unit: f64) -> Duration {
    if hi <= lo {
        return lo;
    }
    lo + (hi - lo).mul_f64(unit.clamp(0.0, 1.0))
}

/// `delay`, raised to the server's `Retry-After` when `error` carries a longer one.
pub fn at_least_retry_after(delay: Duration, error: &Error) -> Duration {
    delay.max(error.retry_after().unwrap_or(Duration::ZERO))
}

/// A uniform number in `[0, 1)` from std's randomly keyed SipHash over a counter: good
/// enough to spread retries apart, and no random-number crate needed.
pub fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceiling_doubles_to_the_cap_without_overflow() {
        let e = Exponential {
            base: ms(100),
            cap: ms(5000),
        };
        let got: Vec<_> = (0..=8).map(|f| e.ceiling(f)).collect();
        assert_eq!(
            got,
            [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000]
                .map(ms)
                .to_vec()
        );
        assert_eq!(e.ceiling(u32::MAX), ms(5000));
        let tiny = Exponential {
            base: Duration::from_nanos(1),
            cap: Duration::MAX,
        };
        assert_eq!(tiny.ceiling(41), Duration::from_nanos(1 << 40));
        assert_eq!(tiny.ceiling(u32::MAX), Duration::MAX);
        let zero = Exponential {
            base: Duration::ZERO,
            cap: ms(10),
        };
        assert_eq!(zero.ceiling(50), Duration::ZERO);
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        let e = Exponential {
            base: ms(100),
            cap: ms(5000),
        };
        assert_eq!(e.full_jitter(3, 0.0), Duration::ZERO);
        assert_eq!(e.full_jitter(3, 1.0), ms(400));
        assert_eq!(e.full_jitter(3, 7.0), ms(400), "clamped");
        assert_eq!(uniform(ms(100), ms(300), 0.5), ms(200));
        assert_eq!(uniform(ms(300), ms(100), 0.5), ms(300));
        let draws: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u > 0.9) && draws.iter().any(|u| *u < 0.1));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let e = Error::QuotaExhausted {
            retry_after: ms(300),
            limit: None,
            request_id: None,
        };
        assert_eq!(at_least_retry_after(ms(100), &e), ms(300));
        assert_eq!(at_least_retry_after(ms(400), &e), ms(400));
        let t = Error::Timeout {
            what: "attempt",
            after: ms(1),
        };
        assert_eq!(at_least_retry_after(ms(100), &t), ms(100));
    }
}
