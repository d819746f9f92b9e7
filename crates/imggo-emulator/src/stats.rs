//! Counters of everything the emulator saw, for tests and benchmarks to assert on.
//!
//! [`Stats`] is what `GET /api/_emulator/stats` returns (bare JSON, no envelope) and what
//! [`Handle::stats`](crate::Handle::stats) gives in-process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A snapshot of the emulator's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Requests by route (`"GET /api/jobs/{id}"`, ...) and then by HTTP status. Requests
    /// that matched no route are under `"unmatched"`. Dropped connections count under the
    /// status that was being sent.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// All requests answered (the sum over [`Stats::requests`]).
    pub requests_total: u64,
    /// Images received, by the `xxh3-<32 hex>` content hash of their bytes: multipart
    /// uploads the rate limiter admitted and whose bytes sniff as an image (idempotent
    /// replays, and uploads then refused for a malformed idempotency key, included), and
    /// `image_url` images once fetched.
    pub ingests_by_hash: BTreeMap<String, u64>,
    /// Ingests answered 202 (a new job).
    pub ingests_accepted: u64,
    /// Ingests answered 200 because their idempotency key was known.
    pub ingests_replayed: u64,
    /// The largest number of ingests accepted (202) within any one-second window.
    pub max_ingests_per_second: u64,
    /// Jobs created.
    pub jobs_created: u64,
    /// Jobs now in each state (`queued`, `running`, `succeeded`, `failed`); evicted jobs
    /// stay counted in their last state.
    pub jobs_by_state: BTreeMap<String, u64>,
    /// Finished jobs forgotten past `max_jobs` or `job_ttl`.
    #[serde(default)]
    pub jobs_evicted: u64,
    /// `GET /api/jobs/{id}` requests (job polls), whatever the answer.
    pub job_polls: u64,
    /// 429 answers served.
    pub rate_limited: u64,
    /// TCP connections accepted.
    pub connections_accepted: u64,
    /// Requests being handled right now.
    pub in_flight: u64,
    /// The most requests ever handled at once.
    pub peak_in_flight: u64,
    /// Webhook deliveries.
    pub webhooks: WebhookStats,
    /// Injected faults.
    pub faults: FaultStats,
}

impl Stats {
    /// Requests of `route` answered with `status`.
    pub fn requests_with(&self, route: &str, status: u16) -> u64 {
        self.requests
            .get(route)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// All requests of `route`, whatever the status.
    pub fn requests_of(&self, route: &str) -> u64 {
        self.requests.get(route).map_or(0, |m| m.values().sum())
    }

    /// Ingests received with content hash `hash` (its `xxh3-...` display form).
    pub fn ingests_of(&self, hash: &str) -> u64 {
        self.ingests_by_hash.get(hash).copied().unwrap_or(0)
    }

    /// Jobs now in `state` (server spelling).
    pub fn jobs_in(&self, state: &str) -> u64 {
        self.jobs_by_state.get(state).copied().unwrap_or(0)
    }
}

imggo_core::counters! {
    /// Webhook delivery counters.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct WebhookStats;
    /// The live counters behind [`WebhookStats`].
    pub(crate) struct WebhookCounters {
        /// Deliveries due (one per matching webhook per finished job).
        attempted,
        /// HTTP POSTs sent (retries included).
        sent,
        /// Deliveries answered 2xx.
        delivered,
        /// Deliveries that failed every attempt (non-2xx, timeout, refused).
        failed,
        /// Deliveries dropped on purpose by fault injection (never sent).
        lost,
    }
}

imggo_core::counters! {
    /// Counters of injected faults.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct FaultStats;
    /// The live counters behind [`FaultStats`].
    pub(crate) struct FaultCounters {
        /// Injected 500s.
        http_500,
        /// Injected 503s.
        http_503,
        /// Connections dropped mid-response.
        dropped,
        /// Responses delayed.
        slow,
        /// Jobs failed on purpose.
        jobs_failed,
        /// Ingests answered 500 as a racing duplicate of an idempotency key.
        #[serde(default)]
        race_dup,
    }
}

/// The live counters behind [`Stats`]. Hot counters are atomics; maps sit behind short
/// mutex sections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: Mutex<HashMap<(&'static str, u16), u64>>,
    ingests_by_hash: Mutex<HashMap<u128, u64>>,
    ingest_window: Mutex<IngestWindow>,
    pub(crate) ingests_accepted: AtomicU64,
    pub(crate) ingests_replayed: AtomicU64,
    pub(crate) jobs_created: AtomicU64,
    /// queued, running, succeeded, failed.
    jobs_by_state: [AtomicU64; 4],
    pub(crate) job_polls: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) connections: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    pub(crate) webhooks: WebhookCounters,
    pub(crate) faults: FaultCounters,
    pub(crate) jobs_evicted: AtomicU64,
}

/// Accept times of the last second, for the sliding one-second maximum.
#[derive(Debug, Default)]
struct IngestWindow {
    times: VecDeque<Instant>,
    max: u64,
}

/// Index of a job state in [`Counters::jobs_by_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateSlot {
    Queued = 0,
    Running = 1,
    Succeeded = 2,
    Failed = 3,
}

const STATE_NAMES: [&str; 4] = ["queued", "running", "succeeded", "failed"];

/// Decrements the in-flight gauge when dropped.
pub(crate) struct InFlight<'a>(&'a Counters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn request_started(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(self)
    }

    pub(crate) fn answered(&self, route: &'static str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((route, status)).or_insert(0) += 1;
    }

    pub(crate) fn ingest_received(&self, hash: u128) {
        let mut map = self
            .ingests_by_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(hash).or_insert(0) += 1;
    }

    pub(crate) fn ingest_accepted(&self, now: Instant) {
        self.ingests_accepted.fetch_add(1, Ordering::Relaxed);
        let mut w = self.ingest_window.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&first) = w.times.front() {
            if now.duration_since(first) >= Duration::from_secs(1) {
                w.times.pop_front();
            } else {
                break;
            }
        }
        w.times.push_back(now);
        w.max = w.max.max(w.times.len() as u64);
    }

    pub(crate) fn job_entered(&self, slot: StateSlot) {
        self.jobs_by_state[slot as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_moved(&self, from: StateSlot, to: StateSlot) {
        self.jobs_by_state[from as usize].fetch_sub(1, Ordering::Relaxed);
        self.jobs_by_state[to as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut requests: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
        let mut requests_total = 0;
        {
            let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for (&(route, status), &n) in map.iter() {
                *requests
                    .entry(route.to_owned())
                    .or_default()
                    .entry(status)
                    .or_insert(0) += n;
                requests_total += n;
            }
        }
        let ingests_by_hash = {
            let map = self
                .ingests_by_hash
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(&h, &n)| (imggo_core::ContentHash::from_u128(h).to_string(), n))
                .collect()
        };
        let max_ingests_per_second = self
            .ingest_window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max;
        let jobs_by_state = STATE_NAMES
            .iter()
            .zip(&self.jobs_by_state)
            .map(|(name, n)| ((*name).to_owned(), get(n)))
            .collect();
        Stats {
            requests,
            requests_total,
            ingests_by_hash,
            ingests_accepted: get(&self.ingests_accepted),
            ingests_replayed: get(&self.ingests_replayed),
            max_ingests_per_second,
            jobs_created: get(&self.jobs_created),
            jobs_evicted: get(&self.jobs_evicted),
            jobs_by_state,
            job_polls: get(&self.job_polls),
            rate_limited: get(&self.rate_limited),
            connections_accepted: get(&self.connections),
            in_flight: get(&self.in_flight),
            peak_in_flight: get(&self.peak_in_flight),
            webhooks: self.webhooks.snapshot(),
            faults: self.faults.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_max() {
        let c = Counters::default();
        let t0 = Instant::now();
        for i in 0..5 {
            c.ingest_accepted(t0 + Duration::from_millis(i * 100));
        }
        // 1.05 s after the first: the first has left the window.
        c.ingest_accepted(t0 + Duration::from_millis(1050));
        assert_eq!(c.snapshot().max_ingests_per_second, 5);
        for i in 0..3 {
            c.ingest_accepted(t0 + Duration::from_millis(1060 + i));
        }
        // Window (0.06 s, 1.06 s]: ingests at 0.1..0.4, 1.05, 1.06, 1.061, 1.062.
        assert_eq!(c.snapshot().max_ingests_per_second, 8);
        assert_eq!(c.snapshot().ingests_accepted, 9);
    }

    #[test]
    fn stats_round_trip_json() {
        let c = Counters::default();
        c.answered("GET /api/jobs/{id}", 200);
        c.answered("GET /api/jobs/{id}", 200);
        c.answered("GET /api/jobs/{id}", 404);
        c.ingest_received(7);
        let s = c.snapshot();
        let text = serde_json::to_string(&s).unwrap();
        let back: Stats = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.requests_with("GET /api/jobs/{id}", 200), 2);
        assert_eq!(back.requests_of("GET /api/jobs/{id}"), 3);
        assert_eq!(back.requests_total, 3);
        assert_eq!(
            back.ingests_of(&imggo_core::ContentHash::from_u128(7).to_string()),
            1
        );
    }
}
