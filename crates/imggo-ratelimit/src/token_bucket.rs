//! A lock-free, fair token bucket (GCRA over one atomic).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::error::{ConfigError, LimitError};
use crate::limiter::Limiter;

/// A token bucket of `rate` tokens per second holding at most `burst`, safe to share
/// between any number of tasks and threads.
///
/// It is the generic cell rate algorithm (GCRA): the whole state is one `AtomicU64`, the
/// *theoretical arrival time* (TAT) of the next token, in nanoseconds on a monotonic clock.
/// A request for `n` tokens moves the TAT forward by `n` emission intervals
/// (`1 / rate`); it is admitted when the new TAT is at most `burst` intervals ahead of now.
///
/// - [`TokenBucket::try_acquire`] never waits: it admits or says how long to wait.
/// - [`TokenBucket::acquire`] **reserves** its slot with one compare-and-swap and then
///   sleeps until that slot on the tokio timer. Callers are served in the order of their
///   reservations (fair, first come first served), nobody polls or spins, and no wake-up
///   can be lost because nobody waits for anyone else's release. A caller that is dropped
///   while sleeping leaves its slot unused, which errs on the safe side.
/// - [`TokenBucket::set_rate`] changes rate and burst at runtime; reservations already
///   made keep their slots.
///
/// ```
/// use imggo_ratelimit::TokenBucket;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let bucket = TokenBucket::new(50.0, 5).unwrap(); // 50/s, bursts of 5
/// for _ in 0..5 {
///     assert!(bucket.try_acquire().is_ok()); // the burst is there at once
/// }
/// let wait = bucket.try_acquire().unwrap_err(); // then one token per 20 ms
/// assert!(wait <= std::time::Duration::from_millis(20));
/// bucket.acquire().await; // sleeps about 20 ms
/// # });
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    /// Theoretical arrival time, ns since the clock's origin.
    tat: AtomicU64,
    /// Emission interval: ns per token.
    interval: AtomicU64,
    /// Most tokens available at once.
    burst: AtomicU32,
    clock: Clock,
}

/// Nanoseconds per second.
const NS: f64 = 1e9;

fn validate(rate: f64, burst: u32) -> Result<u64, ConfigError> {
    if !rate.is_finite() || rate <= 0.0 {
        return Err(ConfigError::new(
            "rate",
            rate,
            "must be a positive number of tokens per second",
        ));
    }
    if rate > NS {
        return Err(ConfigError::new(
            "rate",
            rate,
            "must be at most 1e9 per second",
        ));
    }
    if burst == 0 {
        return Err(ConfigError::new("burst", burst, "must be at least 1"));
    }
    let interval = (NS / rate).round() as u64;
    if interval
        .checked_mul(u64::from(burst))
        .is_none_or(|t| t > u64::MAX / 4)
    {
        return Err(ConfigError::new(
            "burst",
            burst,
            "burst / rate is too long a time",
        ));
    }
    Ok(interval.max(1))
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` tokens per second.
    ///
    /// Errors when `rate` is not a positive finite number up to 1e9, or `burst` is 0.
    pub fn new(rate: f64, burst: u32) -> Result<Self, ConfigError> {
        let interval = validate(rate, burst)?;
        Ok(Self {
            tat: AtomicU64::new(0),
            interval: AtomicU64::new(interval),
            burst: AtomicU32::new(burst),
            clock: Clock::global(),
        })
    }

    /// Changes rate and burst from now on. Slots already reserved are kept.
    pub fn set_rate(&self, rate: f64, burst: u32) -> Result<(), ConfigError> {
        let interval = validate(rate, burst)?;
        self.interval.store(interval, Ordering::Relaxed);
        self.burst.store(burst, Ordering::Relaxed);
        Ok(())
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        NS / self.interval.load(Ordering::Relaxed) as f64
    }

    /// Most tokens available at once.
    pub fn burst(&self) -> u32 {
        self.burst.load(Ordering::Relaxed)
    }

    /// Takes one token if one is available now; otherwise returns how long until one is.
    #[inline]
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.try_acquire_n(1)
    }

    /// Takes `n` tokens at once if they are available now; otherwise returns how long
    /// until they are ([`Duration::MAX`] when `n` exceeds the burst: never).
    pub fn try_acquire_n(&self, n: u32) -> Result<(), Duration> {
        let interval = self.interval.load(Ordering::Relaxed);
        let burst = self.burst.load(Ordering::Relaxed);
        if n > burst {
            return Err(Duration::MAX);
        }
        let tau = interval * u64::from(burst);
        let inc = interval * u64::from(n);
        let now = self.clock.now_ns();
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now) + inc;
            let allow_at = new_tat.saturating_sub(tau);
            if allow_at > now {
                return Err(Duration::from_nanos(allow_at - now));
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Waits for one token (see the type's docs for fairness).
    pub async fn acquire(&self) {
        let (at, now) = self.reserve(1);
        if at > now {
            tokio::time::sleep(Duration::from_nanos(at - now)).await;
        }
    }

    /// Waits for `n` tokens taken together. Errors at once when `n` exceeds the burst,
    /// since that could never be admitted.
    pub async fn acquire_n(&self, n: u32) -> Result<(), LimitError> {
        let burst = self.burst();
        if n > burst {
            return Err(LimitError::ExceedsBurst {
                requested: n,
                burst,
            });
        }
        let (at, now) = self.reserve(n);
        if at > now {
            tokio::time::sleep(Duration::from_nanos(at - now)).await;
        }
        Ok(())
    }

    /// Reserves `n` tokens unconditionally; returns when (ns since the origin) the
    /// reservation is due, and the clock reading it was made at (sleeping from that
    /// slightly earlier reading errs on the late side).
    fn reserve(&self, n: u32) -> (u64, u64) {
        let interval = self.interval.load(Ordering::Relaxed);
        let tau = interval * u64::from(self.burst.load(Ordering::Relaxed));
        let inc = interval * u64::from(n);
        let now = self.clock.now_ns();
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now) + inc;
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (new_tat.saturating_sub(tau), now),
                Err(actual) => tat = actual,
            }
        }
    }
}

#[async_trait]
impl Limiter for TokenBucket {
    async fn acquire(&self) -> Result<(), LimitError> {
        TokenBucket::acquire(self).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_typed_errors() {
        for (rate, burst, name) in [
            (0.0, 1, "rate"),
            (-1.0, 1, "rate"),
            (f64::NAN, 1, "rate"),
            (f64::INFINITY, 1, "rate"),
            (1.0, 0, "burst"),
            (1e-9, u32::MAX, "burst"),
        ] {
            let e = TokenBucket::new(rate, burst).unwrap_err();
            assert_eq!(e.name, name, "{rate} {burst}: {e}");
        }
        let b = TokenBucket::new(10.0, 2).unwrap();
        assert!(b.set_rate(0.0, 1).is_err());
        assert_eq!(b.burst(), 2, "a refused change leaves the bucket as it was");
    }

    #[test]
    fn burst_then_wait_then_rate_change() {
        let b = TokenBucket::new(10.0, 3).unwrap();
        for _ in 0..3 {
            b.try_acquire().unwrap();
        }
        let wait = b.try_acquire().unwrap_err();
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(b.try_acquire_n(4), Err(Duration::MAX));
        b.set_rate(1000.0, 3).unwrap();
        assert!((b.rate() - 1000.0).abs() < 1e-6);
    }

    #[tokio::test]
    async fn acquire_n_beyond_burst_fails_fast() {
        let b = TokenBucket::new(10.0, 3).unwrap();
        assert_eq!(
            b.acquire_n(4).await,
            Err(LimitError::ExceedsBurst {
                requested: 4,
                burst: 3
            })
        );
        b.acquire_n(3).await.unwrap();
    }

    #[tokio::test]
    async fn reservations_are_spaced_by_the_interval() {
        let b = TokenBucket::new(100.0, 1).unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            b.acquire().await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(99), "{took:?}");
    }
}
