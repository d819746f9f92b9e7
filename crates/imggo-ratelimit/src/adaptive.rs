//! [`AdaptiveConcurrency`]: a concurrency limit found by AIMD on latency and drops.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ConfigError;

/// Settings of [`AdaptiveConcurrency`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConfig {
    /// Limit at start.
    pub initial: u32,
    /// The limit never goes below this.
    pub min: u32,
    /// The limit never goes above this.
    pub max: u32,
    /// Factor applied to the limit on a drop or latency inflation (0 < f < 1).
    pub backoff_ratio: f64,
    /// Latency counts as inflated when the smoothed latency exceeds the baseline (the
    /// best recent latency) by this factor...
    pub tolerance: f64,
    /// ...and by at least this much: a millisecond more on a loopback round trip of one
    /// is scheduling noise, not a queue at the server.
    pub min_inflation: Duration,
    /// Weight of a new sample in the smoothed latency (0 < w ≤ 1).
    pub smoothing: f64,
    /// The baseline latency is the least seen in the last one to two of these windows.
    pub baseline_window: Duration,
}

impl Default for AdaptiveConfig {
    /// Start at 4, between 1 and 64, back off to 90 %, tolerate 2× the baseline latency
    /// or 5 ms more, whichever is more.
    fn default() -> Self {
        Self {
            initial: 4,
            min: 1,
            max: 64,
            backoff_ratio: 0.9,
            tolerance: 2.0,
            min_inflation: Duration::from_millis(5),
            smoothing: 0.2,
            baseline_window: Duration::from_secs(30),
        }
    }
}

impl AdaptiveConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.min == 0 {
            return Err(ConfigError::new("min", self.min, "must be at least 1"));
        }
        if self.max < self.min {
            return Err(ConfigError::new("max", self.max, "must be at least min"));
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return Err(ConfigError::new(
                "initial",
                self.initial,
                "must lie between min and max",
            ));
        }
        if !(self.backoff_ratio > 0.0 && self.backoff_ratio < 1.0) {
            return Err(ConfigError::new(
                "backoff_ratio",
                self.backoff_ratio,
                "must lie in (0, 1)",
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 1.0) {
            return Err(ConfigError::new(
                "tolerance",
                self.tolerance,
                "must be at least 1",
            ));
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(ConfigError::new(
                "smoothing",
                self.smoothing,
                "must lie in (0, 1]",
            ));
        }
        Ok(())
    }
}

/// A concurrency limit that adapts to the server, in the spirit of Netflix's
/// concurrency-limits (AIMD): it grows while latency holds and shrinks on 429s, timeouts
/// and latency inflation, always within `[min, max]`. It backs `--concurrency auto`.
///
/// Each request takes a [`Permit`] with [`AdaptiveConcurrency::acquire`] (waiting, in
/// FIFO order, while `limit` requests are in flight) and completes it with its outcome:
/// [`Permit::success`] (its latency is a sample), [`Permit::dropped`] (a 429 or a
/// timeout: multiplicative decrease), or [`Permit::ignore`] / drop (no signal, e.g. a
/// validation error).
///
/// The algorithm: the limit starts in *slow start* (+1 per success while the requests in
/// flight use at least half of it), and after the first decrease grows by `1/limit` per
/// success (+1 per round of requests). A drop, or a smoothed latency above `tolerance ×`
/// the baseline (the least smoothed latency of the last one to two `baseline_window`s, so
/// that a permanently slower server is learnt), multiplies it by `backoff_ratio`, at most once
/// per smoothed round-trip so that one burst of 429s counts once; growth then pauses for
/// two round trips, which keeps the 429s of the sawtooth around a hard limit rare.
///
/// ```
/// use std::time::Duration;
/// use imggo_ratelimit::{AdaptiveConcurrency, AdaptiveConfig};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let limit = AdaptiveConcurrency::new(AdaptiveConfig::default()).unwrap();
/// let (a, b) = (limit.acquire().await, limit.acquire().await);
/// // ... send the requests; `success()` measures the latency itself ...
/// let latency = Duration::from_millis(80);
/// a.success_with_latency(latency); // half the limit was in use: slow start adds 1
/// b.success_with_latency(latency); // only 1 of 5 in use: no growth
/// assert_eq!(limit.limit(), 5);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrency {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sem: Arc<Semaphore>,
    config: AdaptiveConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The real-valued limit the algorithm moves.
    limit: f64,
    /// Permits the semaphore stands for in total (in flight + available − debt).
    applied: u32,
    /// Permits to forget when they come back (a decrease while they were in flight).
    debt: u32,
    in_flight: u32,
    slow_start: bool,
    epoch_start: Instant,
    current_min: Option<Duration>,
    previous_min: Option<Duration>,
    smoothed: Option<Duration>,
    last_decrease: Option<Instant>,
}

/// How a request ended, for [`AdaptiveConcurrency`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Success(Duration),
    Dropped,
    Ignore,
}

impl AdaptiveConcurrency {
    /// A limiter at `config.initial`. Errors on settings that make no sense (`min` 0,
    /// `max < min`, ratios out of range).
    pub fn new(config: AdaptiveConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let initial = config.initial;
        Ok(Self {
            shared: Arc::new(Shared {
                sem: Arc::new(Semaphore::new(initial as usize)),
                state: Mutex::new(State {
                    limit: f64::from(initial),
                    applied: initial,
                    debt: 0,
                    in_flight: 0,
                    slow_start: true,
                    epoch_start: Instant::now(),
                    current_min: None,
                    previous_min: None,
                    smoothed: None,
                    last_decrease: None,
                }),
                config,
            }),
        })
    }

    /// Waits (first come, first served) until fewer than `limit` requests are in flight.
    pub async fn acquire(&self) -> Permit {
        let permit = Arc::clone(&self.shared.sem)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.shared.lock().in_flight += 1;
        Permit {
            permit: Some(permit),
            shared: Arc::clone(&self.shared),
            started: Instant::now(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.shared.lock().applied
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> u32 {
        self.shared.lock().in_flight
    }

    /// The smoothed latency of successful requests, once there is one.
    pub fn latency(&self) -> Option<Duration> {
        self.shared.lock().smoothed
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn complete(&self, permit: OwnedSemaphorePermit, signal: Signal) {
        let mut s = self.lock();
        let in_flight = s.in_flight;
        s.in_flight = s.in_flight.saturating_sub(1);
        let now = Instant::now();
        match signal {
            Signal::Success(latency) => {
                let w = self.config.smoothing;
                let smoothed = s
                    .smoothed
                    .map_or(latency, |m| m.mul_f64(1.0 - w) + latency.mul_f64(w));
                s.smoothed = Some(smoothed);
                // Baseline: the least latency of this epoch and the one before, so a
                // lasting change of the server is learnt within two epochs.
                if now.duration_since(s.epoch_start) >= self.config.baseline_window {
                    s.epoch_start = now;
                    s.previous_min = s.current_min.take();
                }
                // The least *smoothed* latency: a service whose times vary widely (a
                // lognormal job time) has a raw minimum far below its typical latency,
                // which would read as constant inflation and shrink the limit to `min`.
                let current = s.current_min.map_or(smoothed, |m| m.min(smoothed));
                s.current_min = Some(current);
                let baseline = s.previous_min.map_or(current, |p| p.min(current));
                // Hold growth for two round trips after a decrease: the requests of the
                // round that saw the drop are still finishing.
                let holding = s
                    .last_decrease
                    .is_some_and(|t| now.duration_since(t) < smoothed * 2);
                let inflated = baseline
                    .mul_f64(self.config.tolerance)
                    .max(baseline + self.config.min_inflation);
                if smoothed > inflated {
                    self.decrease(&mut s, now);
                } else if !holding && f64::from(in_flight) * 2.0 >= s.limit {
                    s.limit += if s.slow_start { 1.0 } else { 1.0 / s.limit };
                    s.limit = s.limit.min(f64::from(self.config.max));
                }
            }
            Signal::Dropped => self.decrease(&mut s, now),
            Signal::Ignore => {}
        }
        self.apply(&mut s);
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }

    fn decrease(&self, s: &mut State, now: Instant) {
        let rtt = s.smoothed.unwrap_or(Duration::ZERO);
        if s.last_decrease.is_some_and(|t| now.duration_since(t) < rtt) {
            return;
        }
        s.last_decrease = Some(now);
        s.slow_start = false;
        s.limit = (s.limit * self.config.backoff_ratio).max(f64::from(self.config.min));
    }

    /// Makes the semaphore stand for `floor(limit)` permits.
    fn apply(&self, s: &mut State) {
        let target = (s.limit.floor() as u32).clamp(self.config.min, self.config.max);
        if target > s.applied {
            let mut add = target - s.applied;
            let paid = add.min(s.debt);
            s.debt -= paid;
            add -= paid;
            self.sem.add_permits(add as usize);
        } else if target < s.applied {
            let cut = s.applied - target;
            let forgotten = self.sem.forget_permits(cut as usize) as u32;
            s.debt += cut - forgotten;
        }
        s.applied = target;
    }
}

/// One request's slot in an [`AdaptiveConcurrency`]; complete it with the outcome.
/// Dropping it without calling a method is the same as [`Permit::ignore`].
#[derive(Debug)]
#[must_use = "a permit should be completed with its outcome"]
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    started: Instant,
}

impl Permit {
    /// The request succeeded; its latency (since the permit was granted) is a sample.
    pub fn success(self) {
        let latency = self.started.elapsed();
        self.finish(Signal::Success(latency));
    }

    /// The request succeeded with this latency (e.g. measured by the HTTP layer).
    pub fn success_with_latency(self, latency: Duration) {
        self.finish(Signal::Success(latency));
    }

    /// The server pushed back: a 429, a 503 or a timeout. The limit shrinks.
    pub fn dropped(self) {
        self.finish(Signal::Dropped);
    }

    /// The outcome says nothing about load (e.g. a 400): release without a signal.
    pub fn ignore(self) {
        self.finish(Signal::Ignore);
    }

    fn finish(mut self, signal: Signal) {
        if let Some(p) = self.permit.take() {
            self.shared.complete(p, signal);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.shared.complete(p, Signal::Ignore);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(initial: u32, min: u32, max: u32) -> AdaptiveConfig {
        AdaptiveConfig {
            initial,
            min,
            max,
            ..AdaptiveConfig::default()
        }
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert_eq!(
            AdaptiveConcurrency::new(cfg(1, 0, 4)).unwrap_err().name,
            "min"
        );
        assert_eq!(
            AdaptiveConcurrency::new(cfg(2, 2, 1)).unwrap_err().name,
            "max"
        );
        assert_eq!(
            AdaptiveConcurrency::new(cfg(9, 1, 4)).unwrap_err().name,
            "initial"
        );
        let bad = AdaptiveConfig {
            backoff_ratio: 1.0,
            ..AdaptiveConfig::default()
        };
        assert_eq!(
            AdaptiveConcurrency::new(bad).unwrap_err().name,
            "backoff_ratio"
        );
    }

    #[tokio::test]
    async fn grows_on_success_shrinks_on_drops_within_bounds() {
        let ac = AdaptiveConcurrency::new(cfg(4, 2, 10)).unwrap();
        for _ in 0..50 {
            let held: Vec<Permit> = futures_hold(&ac, ac.limit()).await;
            for p in held {
                p.success_with_latency(Duration::from_millis(10));
            }
        }
        assert_eq!(ac.limit(), 10, "grows to max and stops there");
        for _ in 0..50 {
            let p = ac.acquire().await;
            p.dropped();
            // One decrease per round trip: let a round trip (10 ms) pass.
            std::thread::sleep(Duration::from_millis(11));
        }
        assert_eq!(ac.limit(), 2, "shrinks to min and stops there");
        assert_eq!(ac.in_flight(), 0);
    }

    async fn futures_hold(ac: &AdaptiveConcurrency, n: u32) -> Vec<Permit> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(ac.acquire().await);
        }
        v
    }

    #[tokio::test]
    async fn a_decrease_while_permits_are_out_is_honoured_on_return() {
        let ac = AdaptiveConcurrency::new(cfg(10, 1, 10)).unwrap();
        let held = futures_hold(&ac, 10).await;
        let mut it = held.into_iter();
        it.next().unwrap().dropped(); // 10 -> 9 with 9 still out
        assert_eq!(ac.limit(), 9);
        for p in it {
            p.ignore();
        }
        // Exactly 9 can be held now.
        let again = futures_hold(&ac, 9).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), ac.acquire())
                .await
                .is_err(),
            "a 10th permit must wait"
        );
        drop(again);
    }
}
