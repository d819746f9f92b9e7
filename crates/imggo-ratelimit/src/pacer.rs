//! [`HeaderPacer`]: spreads the budget the server announces over the time it has left.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use imggo_core::{Quota, RateLimitInfo, RateLimitObserver, Severity};

use crate::error::LimitError;
use crate::limiter::Limiter;

/// Paces requests by the server's own `X-RateLimit-Limit / -Remaining / -Reset` headers,
/// so that a batch on honest headers never receives a 429.
///
/// Feed it every response's [`RateLimitInfo`] through [`RateLimitObserver::observe`]
/// (the HTTP client does this when the pacer is installed as its observer) and await
/// [`HeaderPacer::acquire`] before each request. It then:
///
/// - spreads what is left evenly: with `r` requests left and `t` until the reset, the next
///   requests go `t / r` apart (each caller reserves its own slot, so many tasks are paced
///   fairly and without busy waiting); only for resets within the spread horizon
///   ([`HeaderPacer::with_spread_horizon`], 1 hour), so a monthly quota is just counted;
/// - counts its own admissions against the budget between headers, so requests still in
///   flight are not spent twice (it keeps the smaller of its count and the server's);
/// - after the budget is spent, waits for the reset (plus a margin, since the header has
///   one-second resolution) and starts the next period with the full limit;
/// - honours a minimum gap between requests ([`HeaderPacer::with_min_gap`], the plan's
///   "min interval between ingests"). A `Retry-After` is not used here: it belongs to the
///   request it answered (a 503 on a job poll must not slow the ingests), and the ingest
///   429s are learned from by [`LearnedPacer`](crate::LearnedPacer);
/// - refuses with [`LimitError::WaitTooLong`] when the next slot is further away than
///   [`HeaderPacer::with_max_wait`] (a monthly quota that resets in days), instead of
///   sleeping for days.
///
/// With no headers seen yet, or an unlimited quota (`-1`), only the minimum gap applies.
/// [`HeaderPacer::usage`] and [`HeaderPacer::alert`] report how much of the period's
/// budget is used, for alerts at 75 % and 90 %.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use imggo_core::{Quota, RateLimitInfo, RateLimitObserver, Severity};
/// use imggo_ratelimit::HeaderPacer;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pacer = HeaderPacer::new().with_reset_margin(Duration::ZERO);
/// pacer.observe(&RateLimitInfo {
///     limit: Some(Quota::Limited(100)),
///     remaining: Some(Quota::Limited(5)),
///     reset: Some(SystemTime::now() + Duration::from_millis(50)),
///     retry_after: None,
/// });
/// assert_eq!(pacer.alert(), Some(Severity::Critical)); // 95 % used
/// pacer.acquire().await.unwrap(); // at once; the next 4 come 10 ms apart
/// # });
/// ```
#[derive(Debug)]
pub struct HeaderPacer {
    state: Mutex<State>,
    reset_margin: Duration,
    max_wait: Duration,
    in_flight_window: Duration,
    spread_horizon: Duration,
    warning: f64,
    critical: f64,
}

#[derive(Debug)]
struct State {
    /// Finite limit of the period, `None` when unknown or unlimited.
    limit: Option<u64>,
    /// Our estimate of what is left in the period (`None`: unknown or unlimited).
    remaining: Option<u64>,
    /// When the period resets.
    reset_at: Option<Instant>,
    /// Length of a period, learned from two consecutive resets.
    period: Option<Duration>,
    /// No reservation before this (pacing and the minimum gap).
    next_slot: Instant,
    /// Minimum gap between two requests.
    min_gap: Duration,
    /// Slots of admissions whose response has not been observed yet (oldest first).
    pending: VecDeque<Instant>,
    /// Usage (0..=1) from the latest header.
    usage: Option<f64>,
}

impl Default for HeaderPacer {
    fn default() -> Self {
        Self::new()
    }
}

/// Two resets less than this apart are the same period (the header has 1 s resolution).
const SAME_PERIOD: Duration = Duration::from_millis(1500);

impl HeaderPacer {
    /// A pacer that knows nothing yet: no minimum gap, a reset margin of 1 s, a maximum
    /// wait of 10 minutes, alerts at 75 % and 90 %.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(State {
                limit: None,
                remaining: None,
                reset_at: None,
                period: None,
                next_slot: now,
                min_gap: Duration::ZERO,
                pending: VecDeque::new(),
                usage: None,
            }),
            reset_margin: Duration::from_secs(1),
            max_wait: Duration::from_secs(600),
            in_flight_window: Duration::from_secs(60),
            spread_horizon: Duration::from_secs(3600),
            warning: 0.75,
            critical: 0.90,
        }
    }

    /// The minimum gap between two requests (the plan's minimum interval between ingests).
    pub fn with_min_gap(self, gap: Duration) -> Self {
        self.set_min_gap(gap);
        self
    }

    /// Changes the minimum gap at runtime (e.g. after reading the account's usage).
    pub fn set_min_gap(&self, gap: Duration) {
        self.lock().min_gap = gap;
    }

    /// How long after the announced reset the next period is assumed to have started.
    /// `X-RateLimit-Reset` has one-second resolution, so the default is 1 s.
    pub fn with_reset_margin(mut self, margin: Duration) -> Self {
        self.reset_margin = margin;
        self
    }

    /// The longest [`HeaderPacer::acquire`] may wait before it refuses with
    /// [`LimitError::WaitTooLong`].
    pub fn with_max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// An admission whose response has not been observed within this time no longer
    /// counts as in flight (a request that failed without headers). Default 60 s.
    pub fn with_in_flight_window(mut self, window: Duration) -> Self {
        self.in_flight_window = window;
        self
    }

    /// The budget is spread only over a reset at most this far away (default 1 hour).
    /// A budget that resets later (the API's monthly quota) is spent at full speed and
    /// only counted, so a batch is not slowed to a trickle to last the month; when it is
    /// spent, [`HeaderPacer::acquire`] waits for the reset or refuses past the maximum wait.
    pub fn with_spread_horizon(mut self, horizon: Duration) -> Self {
        self.spread_horizon = horizon;
        self
    }

    /// Usage fractions (0..=1) at which [`HeaderPacer::alert`] warns and turns critical.
    pub fn with_alert_levels(mut self, warning: f64, critical: f64) -> Self {
        self.warning = warning;
        self.critical = critical;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fraction of the period's budget used, from the latest headers (`None`: unknown or
    /// unlimited).
    pub fn usage(&self) -> Option<f64> {
        self.lock().usage
    }

    /// `Warning` at 75 % usage, `Critical` at 90 % (or the levels configured).
    pub fn alert(&self) -> Option<Severity> {
        let u = self.usage()?;
        if u >= self.critical {
            Some(Severity::Critical)
        } else if u >= self.warning {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// Requests the pacer thinks are left in the period (`None`: unknown or unlimited).
    pub fn remaining(&self) -> Option<u64> {
        self.lock().remaining
    }

    /// Reserves the next slot and returns when it is due, or refuses.
    fn reserve(&self) -> Result<Instant, LimitError> {
        let now = Instant::now();
        let mut s = self.lock();
        prune(&mut s.pending, now, self.in_flight_window);
        let mut slot = now.max(s.next_slot);
        let mut rolled = false;
        if let (Some(0), Some(reset)) = (s.remaining, s.reset_at) {
            // Budget spent: the next slot opens when the period resets.
            slot = slot.max(reset + self.reset_margin);
        }
        if let Some(reset) = s.reset_at {
            if slot >= reset + self.reset_margin {
                rolled = true;
            }
        }
        if slot.saturating_duration_since(now) > self.max_wait {
            return Err(LimitError::WaitTooLong {
                wait: slot - now,
                cap: self.max_wait,
            });
        }
        if rolled {
            // A new period: the full limit again, and the next reset one period later if
            // the period length is known (else unknown until the next header).
            let reset = s.reset_at.expect("rolled only with a reset");
            s.remaining = s.limit;
            s.reset_at = s.period.map(|p| {
                let mut r = reset;
                while r + self.reset_margin <= slot {
                    r += p;
                }
                r
            });
            s.pending.clear();
        }
        let mut gap = s.min_gap;
        if let Some(r) = s.remaining {
            if let Some(reset) = s.reset_at {
                let left = (reset + self.reset_margin).saturating_duration_since(slot);
                if left <= self.spread_horizon {
                    // r ≥ 1 here: r == 0 either waited for the reset or knows no reset.
                    gap = gap.max(left / u32::try_from(r.max(1)).unwrap_or(u32::MAX));
                }
            }
            s.remaining = Some(r.saturating_sub(1));
        }
        s.next_slot = slot + gap;
        s.pending.push_back(slot);
        Ok(slot)
    }

    /// Waits for this request's slot (see the type's docs).
    pub async fn acquire(&self) -> Result<(), LimitError> {
        let slot = self.reserve()?;
        // A slot already due goes at once: Tokio's timer would hold even a past deadline
        // until its next millisecond tick.
        if slot > Instant::now() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(slot)).await;
        }
        Ok(())
    }
}

fn prune(pending: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while pending
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > window)
    {
        pending.pop_front();
    }
}

impl RateLimitObserver for HeaderPacer {
    fn observe(&self, info: &RateLimitInfo) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut s = self.lock();
        // This response answers the oldest admission still pending.
        s.pending.pop_front();
        prune(&mut s.pending, now, self.in_flight_window);
        if let Some(u) = info.usage() {
            s.usage = Some(u);
        }
        match info.limit {
            Some(Quota::Unlimited) => {
                s.limit = None;
                s.remaining = None;
                s.usage = None;
                return;
            }
            Some(Quota::Limited(l)) => s.limit = Some(l),
            None => {}
        }
        let header_remaining = match info.remaining {
            Some(Quota::Limited(r)) => Some(r),
            Some(Quota::Unlimited) => {
                s.remaining = None;
                return;
            }
            None => None,
        };
        let header_reset = info.reset_in(wall).map(|d| now + d);
        let in_flight = s.pending.len() as u64;
        let same_period = match (header_reset, s.reset_at) {
            (Some(new), Some(old)) if new > old + SAME_PERIOD => false,
            // A header from a period we already left (a slow response): its count is stale.
            (Some(new), Some(old)) if new + SAME_PERIOD < old => return,
            (Some(_), None) => false,
            _ => true,
        };
        if same_period {
            // Keep the smaller of our count and the server's.
            if let Some(new) = header_reset {
                s.reset_at = Some(new);
            }
            if let Some(r) = header_remaining {
                s.remaining = Some(
                    s.remaining
                        .map_or(r.saturating_sub(in_flight), |m| m.min(r)),
                );
            }
        } else if let Some(new) = header_reset {
            // A period we did not know yet: adopt the server's count, minus requests
            // sent since that the server may not have counted yet.
            if let Some(old) = s.reset_at {
                let p = new - old;
                s.period = Some(s.period.map_or(p, |q| q.min(p)));
            }
            s.reset_at = Some(new);
            if let Some(r) = header_remaining {
                s.remaining = Some(r.saturating_sub(in_flight));
            }
        }
    }
}

#[async_trait]
impl Limiter for HeaderPacer {
    async fn acquire(&self) -> Result<(), LimitError> {
        HeaderPacer::acquire(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(limit: u64, remaining: u64, reset_in: Duration) -> RateLimitInfo {
        RateLimitInfo {
            limit: Some(Quota::Limited(limit)),
            remaining: Some(Quota::Limited(remaining)),
            reset: Some(SystemTime::now() + reset_in),
            retry_after: None,
        }
    }

    #[test]
    fn spreads_the_remaining_budget_over_the_time_left() {
        let p = HeaderPacer::new().with_reset_margin(Duration::ZERO);
        p.observe(&info(100, 10, Duration::from_secs(10)));
        let slots: Vec<Instant> = (0..10).map(|_| p.reserve().unwrap()).collect();
        for w in slots.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_millis(900) && gap <= Duration::from_millis(1100),
                "{gap:?}"
            );
        }
        assert_eq!(p.remaining(), Some(0));
        // The 11th waits for the reset and starts the next period with the full limit.
        let eleventh = p.reserve().unwrap();
        assert!(eleventh - slots[0] >= Duration::from_millis(9_900));
        assert_eq!(p.remaining(), Some(99));
    }

    #[test]
    fn min_gap_is_honoured_and_retry_after_is_not_a_pace() {
        let p = HeaderPacer::new().with_min_gap(Duration::from_secs(6));
        let a = p.reserve().unwrap();
        let b = p.reserve().unwrap();
        assert_eq!(b - a, Duration::from_secs(6));
        // A Retry-After (say a 503 on a job poll) delays only its own request.
        p.observe(&RateLimitInfo {
            retry_after: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let c = p.reserve().unwrap();
        assert_eq!(c - b, Duration::from_secs(6));
    }

    #[test]
    fn a_far_reset_is_counted_not_spread() {
        let p = HeaderPacer::new();
        p.observe(&info(1000, 3, Duration::from_secs(86_400 * 10)));
        let a = p.reserve().unwrap();
        let b = p.reserve().unwrap();
        let c = p.reserve().unwrap();
        assert!(
            c - a < Duration::from_millis(100),
            "{:?} {:?}",
            b - a,
            c - a
        );
        assert_eq!(p.remaining(), Some(0));
        assert!(matches!(p.reserve(), Err(LimitError::WaitTooLong { .. })));
    }

    #[test]
    fn refuses_waits_beyond_the_cap() {
        let p = HeaderPacer::new().with_max_wait(Duration::from_secs(60));
        p.observe(&info(1000, 0, Duration::from_secs(86_400 * 3)));
        let e = p.reserve().unwrap_err();
        assert!(matches!(e, LimitError::WaitTooLong { .. }), "{e}");
        let core: imggo_core::Error = e.into();
        assert!(matches!(core, imggo_core::Error::QuotaExhausted { .. }));
        assert!(!core.is_retryable());
    }

    #[test]
    fn in_flight_requests_are_not_spent_twice() {
        let p = HeaderPacer::new();
        // Five requests go out before any header is known.
        for _ in 0..5 {
            p.reserve().unwrap();
        }
        // The first response says 10 left: the 4 still in flight will use 4 of them.
        p.observe(&info(20, 10, Duration::from_secs(60)));
        assert_eq!(p.remaining(), Some(6));
        // Later (stale-looking) headers never raise the estimate.
        p.observe(&info(20, 9, Duration::from_secs(60)));
        assert_eq!(p.remaining(), Some(6));
        // Another client spent budget: the server's lower count wins.
        p.observe(&info(20, 2, Duration::from_secs(60)));
        assert_eq!(p.remaining(), Some(2));
    }

    #[test]
    fn usage_alerts_at_75_and_90_percent() {
        let p = HeaderPacer::new();
        assert_eq!(p.alert(), None);
        p.observe(&info(100, 30, Duration::from_secs(60)));
        assert_eq!(p.alert(), None);
        p.observe(&info(100, 25, Duration::from_secs(60)));
        assert_eq!(p.alert(), Some(Severity::Warning));
        p.observe(&info(100, 10, Duration::from_secs(60)));
        assert_eq!(p.alert(), Some(Severity::Critical));
        assert_eq!(p.usage(), Some(0.9));
        // Unlimited plans pace by the gap only and never alert.
        p.observe(&RateLimitInfo {
            limit: Some(Quota::Unlimited),
            remaining: Some(Quota::Unlimited),
            ..Default::default()
        });
        assert_eq!(p.alert(), None);
        assert_eq!(p.remaining(), None);
    }
}
