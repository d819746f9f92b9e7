//! When to poll: a running estimate of how long the service takes per job.
//!
//! Polling on a fixed schedule either wastes requests (too soon) or wastes slots (too late):
//! with 50 ms jobs, a first poll at 50 ms and a second at 125 ms turns every slightly early
//! poll into 75 ms of idle slot. The estimator keeps the smoothed processing time the server
//! reports (`latency_ms` of finished jobs) and its mean deviation, like TCP's RTT estimator
//! (RFC 6298), and turns them into a [`PollPolicy`]: the first poll at the expected finish
//! plus a learned offset, the second one a deviation later, then the caller's growth.
//!
//! The offset closes the loop on what the estimate cannot see (the whole-millisecond
//! rounding of `latency_ms`, timer granularity, the time the ingest answer took to arrive):
//! each first poll that came too early moves it later by nine steps, each one that was on
//! time moves it earlier by one, so that, one job at a time, about one first poll in ten comes
//! early and the rest come as soon after the finish as that allows. Early polls that were
//! scheduled before the last move later count once, so ten concurrent jobs polled early
//! together do not push the offset ten times; with ten jobs in flight against a fixed 50 ms
//! service about four first polls in ten come early (1.4 polls per job), which bought 2 % of
//! throughput over counting each early poll.

use std::sync::Mutex;
use std::time::Duration;

use imggo_http::PollPolicy;

/// Smoothed job time, deviation and first-poll offset, in microseconds. Shared by all tasks
/// of a run.
#[derive(Debug, Default)]
pub(crate) struct JobClock {
    state: Mutex<Option<Estimate>>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    mean_us: u64,
    dev_us: u64,
    offset_us: i64,
}

/// A poll schedule handed out by [`JobClock::schedule`], to be given back to
/// [`JobClock::observe`] with what came of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// The policy to poll with.
    pub policy: PollPolicy,
    /// Whether `policy` came from the estimate (rather than the caller's default).
    predicted: bool,
    /// The offset `policy` was made with.
    offset_us: i64,
}

/// The longest `latency_ms` a server report counts as (a day).
const MAX_LATENCY_MS: u64 = 24 * 3600 * 1000;

impl JobClock {
    /// The poll policy for the next job: `base` with its first two waits set from the
    /// estimate, or `base` itself before any job has finished. Neither wait exceeds
    /// `base.max_interval`.
    pub(crate) fn schedule(&self, base: &PollPolicy) -> Schedule {
        let Some(e) = *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        else {
            return Schedule {
                policy: *base,
                predicted: false,
                offset_us: 0,
            };
        };
        let first = e.mean_us.saturating_add_signed(e.offset_us);
        // Early by a little: look again soon. A poll is cheap next to an idle slot (the
        // early ones cost 0.9 ms per job with 50 ms jobs when this was 1/32 of the job
        // time, 0.4 ms at 1/128), but not sooner than 1/128 of the job time or 250 µs.
        let second = (e.dev_us / 2).max(e.mean_us / 128).max(250);
        Schedule {
            policy: PollPolicy {
                first: Duration::from_micros(first).min(base.max_interval),
                second: Duration::from_micros(second).min(base.max_interval),
                ..*base
            },
            predicted: true,
            offset_us: e.offset_us,
        }
    }

    /// Learns from a finished wait under `schedule`: `polls` is how many polls it took
    /// and `latency_ms` the server's processing time, if it said.
    pub(crate) fn observe(&self, schedule: &Schedule, polls: u32, latency_ms: Option<u64>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some(e), true) = (state.as_mut(), schedule.predicted) {
            let early = polls > 1;
            let step = (e.mean_us / 1000).max(20) as i64;
            let limit = e.mean_us as i64 / 4;
            // Many jobs are in flight at once: an early poll scheduled before the offset was
            // last raised has been answered already, so a burst of them raises it once.
            if !early {
                e.offset_us -= step;
            } else if schedule.offset_us >= e.offset_us {
                e.offset_us += 9 * step;
            }
            e.offset_us = e.offset_us.clamp(-limit, limit.max(1000));
        }
        let Some(ms) = latency_ms else { return };
        // `latency_ms` is whole milliseconds rounded down, and comes from the server: past
        // a day it says nothing about when to poll, and it must not overflow the signed
        // arithmetic of the offset above.
        let sample = ms.min(MAX_LATENCY_MS) * 1000 + 500;
        *state = Some(match *state {
            None => Estimate {
                mean_us: sample,
                dev_us: sample / 2,
                offset_us: 0,
            },
            Some(Estimate {
                mean_us,
                dev_us,
                offset_us,
            }) => {
                // Gains 1/8 and 1/4, as in RFC 6298.
                let err = sample.abs_diff(mean_us);
                Estimate {
                    mean_us: mean_us - mean_us / 8 + sample / 8,
                    dev_us: dev_us - dev_us / 4 + err / 4,
                    offset_us,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PollPolicy {
        PollPolicy {
            first: Duration::from_millis(50),
            second: Duration::from_millis(75),
            factor: 1.5,
            max_interval: Duration::from_secs(2),
            deadline: Duration::from_secs(600),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// One job of a service that finishes `done` after the ingest answer, polled by a
    /// timer that fires `late` after the requested time: the wait it takes, and whether
    /// the first poll came early.
    fn simulate(clock: &JobClock, done: Duration, late: Duration) -> (Duration, bool) {
        let s = clock.schedule(&base());
        let first = s.policy.first + late;
        let (waited, polls) = if first >= done {
            (first, 1)
        } else {
            (first + s.policy.second + late, 2)
        };
        clock.observe(&s, polls, Some(done.as_millis() as u64));
        (waited, polls > 1)
    }

    #[test]
    fn absurd_server_latencies_do_not_panic() {
        let clock = JobClock::default();
        for ms in [u64::MAX, 9_300_000_000_000_000, 1 << 62, 0, u64::MAX] {
            let s = clock.schedule(&base());
            clock.observe(&s, 1, Some(ms));
            let s = clock.schedule(&base());
            clock.observe(&s, 2, Some(ms));
            assert!(clock.schedule(&base()).policy.first <= base().max_interval);
        }
    }

    #[test]
    fn no_sample_keeps_the_callers_policy() {
        let s = JobClock::default().schedule(&base());
        assert_eq!(s.policy, base());
        assert!(!s.predicted);
    }

    #[test]
    fn a_steady_service_is_polled_just_after_it_finishes() {
        // 50.3 ms jobs (reported as 50), a timer 0.7 ms late.
        let clock = JobClock::default();
        let done = Duration::from_micros(50_300);
        let late = Duration::from_micros(700);
        let mut early = 0;
        let mut wasted = Duration::ZERO;
        for i in 0..600 {
            let (waited, was_early) = simulate(&clock, done, late);
            if i >= 200 {
                early += usize::from(was_early);
                wasted += waited - done;
            }
        }
        // About one first poll in ten early, and a slot idles well under a millisecond
        // per job on average, where the first poll at the mean would idle ~0.9 ms.
        assert!((10..=80).contains(&early), "{early} of 400 early");
        assert!(
            wasted / 400 < Duration::from_micros(600),
            "{:?}",
            wasted / 400
        );
        let s = clock.schedule(&base());
        assert_eq!(s.policy.second, Duration::from_micros(50_500 / 128));
        assert_eq!(
            (s.policy.factor, s.policy.max_interval, s.policy.deadline),
            (1.5, base().max_interval, base().deadline)
        );
    }

    #[test]
    fn an_early_first_poll_moves_the_next_one_later() {
        let clock = JobClock::default();
        let done = 50 * MS;
        simulate(&clock, done, Duration::ZERO);
        let before = clock.schedule(&base()).policy.first;
        // Jobs now take 80 ms: polls at ~50 ms are early until the estimate catches up.
        let (_, early) = simulate(&clock, 80 * MS, Duration::ZERO);
        assert!(early);
        assert!(clock.schedule(&base()).policy.first > before);
    }

    #[test]
    fn a_burst_of_early_polls_scheduled_together_moves_the_offset_once() {
        let clock = JobClock::default();
        simulate(&clock, 50 * MS, Duration::ZERO);
        // Ten jobs in flight, all scheduled before any of them is answered, all early.
        let schedules: Vec<_> = (0..10).map(|_| clock.schedule(&base())).collect();
        for s in &schedules {
            clock.observe(s, 2, Some(50));
        }
        let after_burst = clock.schedule(&base()).policy.first;
        let one_early = JobClock::default();
        simulate(&one_early, 50 * MS, Duration::ZERO);
        let s = one_early.schedule(&base());
        one_early.observe(&s, 2, Some(50));
        assert_eq!(after_burst, one_early.schedule(&base()).policy.first);
        assert!(after_burst > schedules[0].policy.first);
    }

    #[test]
    fn a_jittery_service_gets_a_longer_second_wait() {
        let steady = JobClock::default();
        let jittery = JobClock::default();
        let uncapped = PollPolicy {
            max_interval: Duration::from_secs(60),
            ..base()
        };
        for i in 0..200u64 {
            let (s, j) = (steady.schedule(&uncapped), jittery.schedule(&uncapped));
            steady.observe(&s, 1, Some(3000));
            let ms = if i % 2 == 0 { 2000 } else { 4000 };
            jittery.observe(&j, 1, Some(ms));
        }
        let (s, j) = (steady.schedule(&uncapped), jittery.schedule(&uncapped));
        assert!(j.policy.second >= Duration::from_millis(400), "{j:?}");
        assert!(j.policy.second > s.policy.second, "{j:?} vs {s:?}");
        // Capped by the caller's max_interval.
        let capped = steady.schedule(&base());
        assert_eq!(capped.policy.first, Duration::from_secs(2));
    }

    #[test]
    fn the_estimate_follows_a_change() {
        let clock = JobClock::default();
        for _ in 0..50 {
            simulate(&clock, 100 * MS, Duration::ZERO);
        }
        for _ in 0..50 {
            simulate(&clock, 20 * MS, Duration::ZERO);
        }
        let first = clock.schedule(&base()).policy.first;
        assert!(first < 22 * MS && first > 15 * MS, "{first:?}");
    }
}
