//! Exponential backoff with jitter (the arithmetic of [`imggo_core::backoff`]), a server
//! `Retry-After` floor and a retry budget.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use imggo_core::backoff::{self, Exponential};
use imggo_core::{Error, RetryPolicy};
use rand::Rng;

use crate::error::ConfigError;

/// How the exponential delay is randomised, so that many clients failing together do not
/// come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `min(cap, base · 2^(failures−1))`.
    None,
    /// "Full jitter": uniform in `[0, min(cap, base · 2^(failures−1))]`. The default.
    #[default]
    Full,
    /// "Decorrelated jitter": each delay uniform in `[base, 3 · previous]`, capped.
    Decorrelated,
}

/// A retry budget in the style of the AWS SDKs' *standard* retry mode: a bucket of tokens
/// shared by every request that uses it. A retry costs tokens (a timeout costs more), each
/// success refunds some, and when the bucket is empty failures are returned at once
/// instead of retried, so a failing service is not hammered by retry storms.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicU32,
    capacity: u32,
    retry_cost: u32,
    timeout_cost: u32,
    success_refund: u32,
}

impl RetryBudget {
    /// The AWS standard-mode numbers: 500 tokens, 5 per retry, 10 per retry after a
    /// timeout, 1 back per success.
    pub fn standard() -> Self {
        Self::new(500, 5, 10, 1)
    }

    /// A full budget of `capacity` tokens with the given costs and refund.
    pub fn new(capacity: u32, retry_cost: u32, timeout_cost: u32, success_refund: u32) -> Self {
        Self {
            tokens: AtomicU32::new(capacity),
            capacity,
            retry_cost,
            timeout_cost,
            success_refund,
        }
    }

    /// Tokens left.
    pub fn available(&self) -> u32 {
        self.tokens.load(Ordering::Relaxed)
    }

    /// Takes the cost of retrying after `error`; false (and nothing taken) when the
    /// budget cannot pay for it.
    pub fn try_spend(&self, error: &Error) -> bool {
        let cost = if error.is_timeout() {
            self.timeout_cost
        } else {
            self.retry_cost
        };
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost))
            .is_ok()
    }

    /// Puts the success refund back, up to the capacity.
    pub fn refund(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.capacity)
                    .then(|| t.saturating_add(self.success_refund).min(self.capacity))
            });
    }
}

/// Exponential backoff: the retry policy of imggo-rs.
///
/// After the `n`-th failure it waits about `min(cap, base · 2^(n−1))`, randomised by
/// [`Jitter`]. A server's `Retry-After` is a **floor**: the delay is never shorter than
/// what the server asked for (nor cut to the cap). It gives up (returns `None`):
///
/// - for errors that are not [`Error::is_retryable`] (validation, auth, ...), and always
///   for [`Error::QuotaExhausted`];
/// - when `max_attempts` attempts have been made in total;
/// - when waiting would end after `max_elapsed` since the first attempt;
/// - when the shared [`RetryBudget`] (if any) cannot pay for the retry.
///
/// The delay itself is a pure function of the failure count and a random source
/// ([`Backoff::delay`], [`Backoff::decide`]), so it can be tested with a seeded RNG.
///
/// ```
/// use std::time::Duration;
/// use imggo_core::{Error, RetryPolicy};
/// use imggo_ratelimit::Backoff;
///
/// let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
///     .unwrap()
///     .with_max_attempts(4);
/// let timeout = Error::Timeout { what: "attempt", after: Duration::from_secs(30) };
/// let d = policy.next_delay(1, Duration::ZERO, &timeout).unwrap();
/// assert!(d <= Duration::from_millis(100));
/// assert_eq!(policy.next_delay(4, Duration::ZERO, &timeout), None); // 4 attempts made
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
    jitter: Jitter,
    budget: Option<Arc<RetryBudget>>,
}

impl Default for Backoff {
    /// Base 250 ms, cap 30 s, 5 attempts, at most 5 minutes, full jitter, a standard
    /// [`RetryBudget`] of its own.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            max_attempts: 5,
            max_elapsed: Some(Duration::from_secs(300)),
            jitter: Jitter::Full,
            budget: Some(Arc::new(RetryBudget::standard())),
        }
    }
}

impl Backoff {
    /// The defaults (see [`Default`]) with the given base and cap. Errors when `base` is
    /// zero or `cap` is below `base`.
    pub fn new(base: Duration, cap: Duration) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new("base", "0s", "must be above zero"));
        }
        if cap < base {
            return Err(ConfigError::new(
                "cap",
                format!("{}ms", cap.as_millis()),
                "must be at least the base",
            ));
        }
        Ok(Self {
            base,
            cap,
            ..Self::default()
        })
    }

    /// Total attempts allowed, the first included (1 means never retry).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Longest time from the first attempt to the start of the last retry (`None`: no limit).
    pub fn with_max_elapsed(mut self, max: Option<Duration>) -> Self {
        self.max_elapsed = max;
        self
    }

    /// The jitter mode.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The retry budget (share one `Arc` between several policies to pool it), or `None`
    /// for no budget.
    pub fn with_budget(mut self, budget: Option<Arc<RetryBudget>>) -> Self {
        self.budget = budget;
        self
    }

    /// The retry budget in use, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }

    /// The backoff delay after `failures` failures (1 after the first), before any
    /// `Retry-After` floor. Pure: the same RNG state gives the same delay. Always at
    /// most the cap.
    pub fn delay<R: Rng + ?Sized>(&self, failures: u32, rng: &mut R) -> Duration {
        let exponential = Exponential {
            base: self.base,
            cap: self.cap,
        };
        match self.jitter {
            Jitter::None => exponential.ceiling(failures),
            Jitter::Full => exponential.full_jitter(failures, rng.random()),
            Jitter::Decorrelated => {
                // Walk the chain of decorrelated draws up to this failure.
                let mut d = self.base;
                for _ in 0..failures.max(1) {
                    let hi = d.saturating_mul(3).min(self.cap);
                    d = backoff::uniform(self.base.min(hi), hi, rng.random());
                }
                d
            }
        }
    }

    /// The whole decision without the budget: `None` to give up, or the delay with the
    /// error's `Retry-After` as a floor. Pure in `(failures, elapsed, error, rng)`.
    pub fn decide<R: Rng + ?Sized>(
        &self,
        failures: u32,
        elapsed: Duration,
        error: &Error,
        rng: &mut R,
    ) -> Option<Duration> {
        if matches!(error, Error::QuotaExhausted { .. }) || !error.is_retryable() {
            return None;
        }
        if failures >= self.max_attempts {
            return None;
        }
        let delay = backoff::at_least_retry_after(self.delay(failures, rng), error);
        if let Some(max) = self.max_elapsed {
            if elapsed.saturating_add(delay) > max {
                return None;
            }
        }
        Some(delay)
    }
}

impl RetryPolicy for Backoff {
    fn next_delay(&self, failures: u32, elapsed: Duration, error: &Error) -> Option<Duration> {
        let delay = self.decide(failures, elapsed, error, &mut rand::rng())?;
        match &self.budget {
            Some(b) if !b.try_spend(error) => None,
            _ => Some(delay),
        }
    }

    fn on_success(&self) {
        if let Some(b) = &self.budget {
            b.refund();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imggo_core::ApiError;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn api(status: u16, retry_after: Option<Duration>) -> Error {
        Error::Api(Box::new(ApiError {
            status,
            code: imggo_core::error::code_for_status(status),
            message: "test".into(),
            request_id: None,
            retry_after,
            details: None,
        }))
    }

    fn policy() -> Backoff {
        Backoff::new(ms(100), ms(5000))
            .unwrap()
            .with_max_attempts(20)
            .with_max_elapsed(None)
            .with_budget(None)
    }

    #[test]
    fn full_jitter_stays_within_the_exponential_bound() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for failures in 1..=12u32 {
            let bound = (ms(100) * 2u32.pow(failures - 1)).min(ms(5000));
            let mut max_seen = Duration::ZERO;
            for _ in 0..2000 {
                let d = p.delay(failures, &mut rng);
                assert!(d <= bound, "failure {failures}: {d:?} > {bound:?}");
                max_seen = max_seen.max(d);
            }
            // The draws actually spread over the range (not stuck at zero).
            assert!(
                max_seen > bound * 9 / 10,
                "failure {failures}: max {max_seen:?}"
            );
        }
    }

    #[test]
    fn no_jitter_is_exact_and_capped() {
        let p = policy().with_jitter(Jitter::None);
        let mut rng = StdRng::seed_from_u64(1);
        let got: Vec<_> = (1..=8).map(|f| p.delay(f, &mut rng)).collect();
        assert_eq!(
            got,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
                .map(ms)
                .to_vec()
        );
        assert_eq!(p.delay(u32::MAX, &mut rng), ms(5000), "no overflow");
    }

    #[test]
    fn decorrelated_jitter_stays_between_base_and_cap() {
        let p = policy().with_jitter(Jitter::Decorrelated);
        let mut rng = StdRng::seed_from_u64(3);
        for failures in 1..=10 {
            for _ in 0..500 {
                let d = p.delay(failures, &mut rng);
                assert!(d >= ms(100) && d <= ms(5000), "{d:?}");
            }
        }
        // First retry: within [base, 3·base].
        for _ in 0..500 {
            assert!(p.delay(1, &mut rng) <= ms(300));
        }
    }

    #[test]
    fn same_seed_same_delay() {
        let p = policy();
        let a = p.delay(5, &mut StdRng::seed_from_u64(42));
        let b = p.delay(5, &mut StdRng::seed_from_u64(42));
        assert_eq!(a, b);
    }

    #[test]
    fn retry_after_is_a_floor_not_a_ceiling() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(9);
        // A Retry-After above the cap is still honoured in full.
        let e = api(429, Some(Duration::from_secs(12)));
        for f in 1..5 {
            let d = p.decide(f, Duration::ZERO, &e, &mut rng).unwrap();
            assert!(d >= Duration::from_secs(12), "{d:?}");
            assert_eq!(
                d,
                Duration::from_secs(12),
                "backoff never exceeds the cap itself"
            );
        }
        // A short Retry-After only raises delays that would be shorter.
        let e = api(503, Some(ms(150)));
        for _ in 0..1000 {
            let d = p.decide(6, Duration::ZERO, &e, &mut rng).unwrap();
            assert!(d >= ms(150) && d <= ms(3200), "{d:?}");
        }
    }

    #[test]
    fn gives_up_on_fatal_errors_attempts_and_elapsed() {
        let p = policy()
            .with_max_attempts(3)
            .with_max_elapsed(Some(ms(1000)));
        let mut rng = StdRng::seed_from_u64(5);
        assert_eq!(p.decide(1, Duration::ZERO, &api(400, None), &mut rng), None);
        assert_eq!(p.decide(1, Duration::ZERO, &api(401, None), &mut rng), None);
        let quota = Error::QuotaExhausted {
            retry_after: ms(10),
            limit: None,
            request_id: None,
        };
        assert_eq!(p.decide(1, Duration::ZERO, &quota, &mut rng), None);
        let e = api(502, None);
        assert!(p.decide(2, Duration::ZERO, &e, &mut rng).is_some());
        assert_eq!(
            p.decide(3, Duration::ZERO, &e, &mut rng),
            None,
            "3 attempts made"
        );
        // A Retry-After that ends beyond max_elapsed: give up now rather than sleep in vain.
        let e = api(429, Some(ms(2000)));
        assert_eq!(p.decide(1, Duration::ZERO, &e, &mut rng), None);
        assert_eq!(p.decide(1, ms(999), &api(500, Some(ms(5))), &mut rng), None);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            Backoff::new(Duration::ZERO, ms(1)).unwrap_err().name,
            "base"
        );
        assert_eq!(Backoff::new(ms(10), ms(1)).unwrap_err().name, "cap");
    }

    #[test]
    fn budget_runs_out_and_successes_refill_it() {
        let budget = Arc::new(RetryBudget::new(12, 5, 10, 1));
        let p = policy().with_budget(Some(budget.clone()));
        let e = api(503, None);
        assert!(p.next_delay(1, Duration::ZERO, &e).is_some()); // 12 -> 7
        assert!(p.next_delay(1, Duration::ZERO, &e).is_some()); // 7 -> 2
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &e),
            None,
            "budget exhausted"
        );
        assert_eq!(budget.available(), 2, "a refused retry costs nothing");
        // Timeouts cost more.
        for _ in 0..8 {
            p.on_success();
        }
        assert_eq!(budget.available(), 10);
        let t = Error::Timeout {
            what: "attempt",
            after: ms(1),
        };
        assert!(p.next_delay(1, Duration::ZERO, &t).is_some()); // 10 -> 0
        assert_eq!(p.next_delay(1, Duration::ZERO, &e), None);
        // Refunds stop at the capacity.
        for _ in 0..100 {
            p.on_success();
        }
        assert_eq!(budget.available(), 12);
        // A policy without a budget is never throttled by one.
        let free = policy();
        for _ in 0..1000 {
            assert!(free.next_delay(1, Duration::ZERO, &e).is_some());
        }
    }
}
