//! Batch metrics: outcome counters, an HDR latency histogram, snapshots in JSON and
//! Prometheus text, and alert rules. With the `metrics-server` feature, [`serve`] exposes
//! them as `GET /metrics`.
//!
//! These lived in `imggo-core` before; the `imggo` facade still re-exports them under
//! `imggo::core` (`imggo::core::Tracker`, `imggo::core::metrics::Snapshot`, ...).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use imggo_core::policy::RateLimitObserver;
use imggo_core::ratelimit::RateLimitInfo;
/// How serious an alert is (defined in `imggo-core`: the rate-limit pacer uses it too).
pub use imggo_core::Severity;

#[cfg(feature = "metrics-server")]
mod serve;
#[cfg(feature = "metrics-server")]
pub use serve::serve;

/// How one input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The API returned a manifest.
    Succeeded,
    /// It failed (bad input, API error, job failure).
    Failed,
    /// Served from the result cache.
    Cached,
    /// An identical image in the same batch; it shares that image's result.
    Duplicate,
}

/// Highest latency the histogram tracks exactly (longer ones are clamped): one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Shared batch metrics. `record*` take `&self` and are cheap from many threads; latency
/// lives in an HDR histogram (3 significant digits), never in a growing vector.
pub struct Tracker {
    start: Instant,
    latency_us: Mutex<Histogram<u64>>,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cached: AtomicU64,
    duplicate: AtomicU64,
    rate_limited: AtomicU64,
    retried: AtomicU64,
    bytes_before: AtomicU64,
    bytes_after: AtomicU64,
    /// Latest rate-limit usage as f64 bits; `u64::MAX` means unknown.
    rate_usage: AtomicU64,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A tracker whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static bounds are valid"),
            ),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            bytes_before: AtomicU64::new(0),
            bytes_after: AtomicU64::new(0),
            rate_usage: AtomicU64::new(u64::MAX),
        }
    }

    /// Records one finished input and its end-to-end latency.
    pub fn record(&self, outcome: Outcome, latency: Duration) {
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Failed => &self.failed,
            Outcome::Cached => &self.cached,
            Outcome::Duplicate => &self.duplicate,
        };
        counter.fetch_add(1, Relaxed);
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let mut h = self.latency_us.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(us);
    }

    /// Counts a 429 answer.
    pub fn record_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    /// Counts a retried request.
    pub fn record_retry(&self) {
        self.retried.fetch_add(1, Relaxed);
    }

    /// Adds an input's size before and after optimisation.
    pub fn record_bytes(&self, before: u64, after: u64) {
        self.bytes_before.fetch_add(before, Relaxed);
        self.bytes_after.fetch_add(after, Relaxed);
    }

    /// Sets the latest rate-limit usage (0.0 to 1.0).
    pub fn set_rate_limit_usage(&self, usage: f64) {
        self.rate_usage
            .store(usage.clamp(0.0, 1.0).to_bits(), Relaxed);
    }

    /// A consistent-enough view of everything so far.
    pub fn snapshot(&self) -> Snapshot {
        let elapsed = self.start.elapsed();
        let (succeeded, failed, cached, duplicate) = (
            self.succeeded.load(Relaxed),
            self.failed.load(Relaxed),
            self.cached.load(Relaxed),
            self.duplicate.load(Relaxed),
        );
        let total = succeeded + failed + cached + duplicate;
        let ok = succeeded + cached + duplicate;
        let latency = {
            let h = self.latency_us.lock().unwrap_or_else(|p| p.into_inner());
            LatencySummary::of(&h)
        };
        let usage_bits = self.rate_usage.load(Relaxed);
        let secs = elapsed.as_secs_f64();
        Snapshot {
            elapsed_secs: secs,
            total,
            succeeded,
            failed,
            cached,
            duplicate,
            rate_limited: self.rate_limited.load(Relaxed),
            retried: self.retried.load(Relaxed),
            bytes_before: self.bytes_before.load(Relaxed),
            bytes_after: self.bytes_after.load(Relaxed),
            throughput: if secs > 0.0 { total as f64 / secs } else { 0.0 },
            success_rate: (total > 0).then(|| ok as f64 / total as f64),
            latency,
            rate_limit_usage: (usage_bits != u64::MAX).then(|| f64::from_bits(usage_bits)),
        }
    }
}

impl RateLimitObserver for Tracker {
    fn observe(&self, info: &RateLimitInfo) {
        if let Some(u) = info.usage() {
            self.set_rate_limit_usage(u);
        }
    }
}

/// Latency percentiles in milliseconds; all zero when `count` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// Everything a [`Tracker`] knows at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the tracker was created.
    pub elapsed_secs: f64,
    /// Finished inputs.
    pub total: u64,
    /// Succeeded through the API.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Served from cache.
    pub cached: u64,
    /// Duplicates of another input.
    pub duplicate: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Requests retried.
    pub retried: u64,
    /// Input bytes before optimisation.
    pub bytes_before: u64,
    /// Bytes after optimisation (what was uploaded).
    pub bytes_after: u64,
    /// Finished inputs per second.
    pub throughput: f64,
    /// (succeeded + cached + duplicate) / total; `None` before the first input.
    pub success_rate: Option<f64>,
    /// End-to-end latency.
    pub latency: LatencySummary,
    /// Latest rate-limit usage (0.0 to 1.0), when the server reported one.
    pub rate_limit_usage: Option<f64>,
}

impl Snapshot {
    /// The Prometheus text exposition format (version 0.0.4), metric names `imggo_*`.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
            let _ = writeln!(
                out,
                "# HELP imggo_{name} {help}\n# TYPE imggo_{name} {kind}"
            );
            for (labels, v) in lines {
                let _ = writeln!(out, "imggo_{name}{labels} {v}");
            }
        };
        let outcomes = [
            ("succeeded", self.succeeded),
            ("failed", self.failed),
            ("cached", self.cached),
            ("duplicate", self.duplicate),
        ];
        metric(
            "inputs_total",
            "counter",
            "Finished inputs by outcome.",
            &outcomes
                .iter()
                .map(|(o, n)| (format!("{{outcome=\"{o}\"}}"), *n as f64))
                .collect::<Vec<_>>(),
        );
        metric(
            "rate_limited_total",
            "counter",
            "429 answers received.",
            &[(String::new(), self.rate_limited as f64)],
        );
        metric(
            "retries_total",
            "counter",
            "Requests retried.",
            &[(String::new(), self.retried as f64)],
        );
        metric(
            "bytes_total",
            "counter",
            "Image bytes before and after optimisation.",
            &[
                ("{stage=\"before\"}".into(), self.bytes_before as f64),
                ("{stage=\"after\"}".into(), self.bytes_after as f64),
            ],
        );
        metric(
            "throughput_per_second",
            "gauge",
            "Finished inputs per second.",
            &[(String::new(), self.throughput)],
        );
        let ratios = [
            (
                "success_ratio",
                "Share of inputs that ended with a result.",
                self.success_rate,
            ),
            (
                "rate_limit_usage_ratio",
                "Share of the rate-limit budget used.",
                self.rate_limit_usage,
            ),
        ];
        for (name, help, value) in ratios {
            if let Some(v) = value {
                metric(name, "gauge", help, &[(String::new(), v)]);
            }
        }
        let l = &self.latency;
        metric(
            "latency_seconds",
            "summary",
            "End-to-end latency per input.",
            &[
                ("{quantile=\"0.5\"}".into(), l.p50_ms / 1000.0),
                ("{quantile=\"0.9\"}".into(), l.p90_ms / 1000.0),
                ("{quantile=\"0.95\"}".into(), l.p95_ms / 1000.0),
                ("{quantile=\"0.99\"}".into(), l.p99_ms / 1000.0),
                // Suffixes rather than labels: these are the summary's own series.
                ("_sum".into(), l.mean_ms * l.count as f64 / 1000.0),
                ("_count".into(), l.count as f64),
            ],
        );
        out
    }
}

/// Thresholds that turn a [`Snapshot`] into [`Alert`]s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRules {
    /// No alert on success rate or latency before this many inputs.
    pub min_samples: u64,
    /// Alert when the success rate (0.0 to 1.0) falls below this.
    pub min_success_rate: Option<f64>,
    /// Alert when p95 latency exceeds this.
    pub max_p95: Option<Duration>,
    /// Warn when rate-limit usage reaches this (default 0.75).
    pub rate_limit_warning: f64,
    /// Critical when rate-limit usage reaches this (default 0.90).
    pub rate_limit_critical: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            min_samples: 20,
            min_success_rate: None,
            max_p95: None,
            rate_limit_warning: 0.75,
            rate_limit_critical: 0.90,
        }
    }
}

/// A fired alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum Alert {
    /// The success rate is below the rule.
    SuccessRateBelow {
        /// Observed rate.
        actual: f64,
        /// The rule's threshold.
        threshold: f64,
    },
    /// p95 latency is above the rule.
    P95Above {
        /// Observed p95, seconds.
        actual_secs: f64,
        /// The rule's threshold, seconds.
        threshold_secs: f64,
    },
    /// The rate-limit budget is nearly used up.
    RateLimitUsage {
        /// Observed usage (0.0 to 1.0).
        usage: f64,
        /// Warning at 75 %, critical at 90 % by default.
        severity: Severity,
    },
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SuccessRateBelow { actual, threshold } => write!(
                f,
                "success rate {:.1}% is below {:.1}%",
                actual * 100.0,
                threshold * 100.0
            ),
            Self::P95Above {
                actual_secs,
                threshold_secs,
            } => write!(
                f,
                "p95 latency {actual_secs:.3}s is above {threshold_secs:.3}s"
            ),
            Self::RateLimitUsage { usage, severity } => write!(
                f,
                "rate-limit usage {:.0}% ({})",
                usage * 100.0,
                match severity {
                    Severity::Warning => "warning",
                    Severity::Critical => "critical",
                }
            ),
        }
    }
}

impl AlertRules {
    /// The alerts `s` fires under these rules.
    pub fn evaluate(&self, s: &Snapshot) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if s.total >= self.min_samples.max(1) {
            if let (Some(min), Some(actual)) = (self.min_success_rate, s.success_rate) {
                if actual < min {
                    alerts.push(Alert::SuccessRateBelow {
                        actual,
                        threshold: min,
                    });
                }
            }
        }
        if s.latency.count >= self.min_samples.max(1) {
            if let Some(max) = self.max_p95 {
                let p95 = s.latency.p95_ms / 1000.0;
                if p95 > max.as_secs_f64() {
                    alerts.push(Alert::P95Above {
                        actual_secs: p95,
                        threshold_secs: max.as_secs_f64(),
                    });
                }
            }
        }
        if let Some(usage) = s.rate_limit_usage {
            let severity = if usage >= self.rate_limit_critical {
                Some(Severity::Critical)
            } else if usage >= self.rate_limit_warning {
                Some(Severity::Warning)
            } else {
                None
            };
            if let Some(severity) = severity {
                alerts.push(Alert::RateLimitUsage { usage, severity });
            }
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn empty_and_single_sample_do_not_divide_by_zero() {
        let t = Tracker::new();
        let s = t.snapshot();
        assert_eq!(s.total, 0);
        assert_eq!(s.success_rate, None);
        assert_eq!(s.latency, LatencySummary::default());
        assert!(AlertRules::default().evaluate(&s).is_empty());
        assert!(s
            .to_prometheus()
            .contains("imggo_inputs_total{outcome=\"failed\"} 0"));
        t.record(Outcome::Failed, Duration::from_millis(5));
        let s = t.snapshot();
        assert_eq!(s.success_rate, Some(0.0));
        assert!((s.latency.p99_ms - 5.0).abs() < 0.01, "{:?}", s.latency);
        serde_json::to_string(&s).unwrap();
    }

    #[test]
    fn percentiles_within_histogram_precision() {
        let t = Tracker::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut exact: Vec<u64> = (0..100_000)
            .map(|_| {
                // Log-uniform between 1 ms and 10 s, like real API latencies.
                let us = 10f64.powf(rng.random_range(3.0..7.0)) as u64;
                t.record(Outcome::Succeeded, Duration::from_micros(us));
                us
            })
            .collect();
        exact.sort_unstable();
        let s = t.snapshot();
        let check = |q: f64, got_ms: f64| {
            let idx = ((q * exact.len() as f64).ceil() as usize).saturating_sub(1);
            let want_ms = exact[idx] as f64 / 1000.0;
            let rel = (got_ms - want_ms).abs() / want_ms;
            // 3 significant digits: relative error at most 0.1 % (plus a rank of slack).
            assert!(rel < 0.002, "q{q}: got {got_ms} want {want_ms} rel {rel}");
        };
        check(0.50, s.latency.p50_ms);
        check(0.90, s.latency.p90_ms);
        check(0.95, s.latency.p95_ms);
        check(0.99, s.latency.p99_ms);
        check(1.0, s.latency.max_ms);
        assert_eq!(s.latency.count, 100_000);
    }

    #[test]
    fn alerts_fire_on_thresholds_after_min_samples() {
        let t = Tracker::new();
        let rules = AlertRules {
            min_samples: 10,
            min_success_rate: Some(0.95),
            max_p95: Some(Duration::from_millis(100)),
            ..AlertRules::default()
        };
        for _ in 0..5 {
            t.record(Outcome::Failed, Duration::from_secs(1));
        }
        assert!(
            rules.evaluate(&t.snapshot()).is_empty(),
            "below min_samples"
        );
        for _ in 0..5 {
            t.record(Outcome::Succeeded, Duration::from_secs(1));
        }
        let alerts = rules.evaluate(&t.snapshot());
        assert!(matches!(alerts[0], Alert::SuccessRateBelow { actual, .. } if actual == 0.5));
        assert!(matches!(alerts[1], Alert::P95Above { .. }));
        t.set_rate_limit_usage(0.8);
        let alerts = rules.evaluate(&t.snapshot());
        assert!(alerts.contains(&Alert::RateLimitUsage {
            usage: 0.8,
            severity: Severity::Warning
        }));
        t.set_rate_limit_usage(0.95);
        assert!(rules
            .evaluate(&t.snapshot())
            .contains(&Alert::RateLimitUsage {
                usage: 0.95,
                severity: Severity::Critical
            }));
    }

    #[test]
    fn many_threads_record_everything() {
        let t = std::sync::Arc::new(Tracker::new());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        t.record(Outcome::Cached, Duration::from_micros(i));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = t.snapshot();
        assert_eq!(s.cached, 80_000);
        assert_eq!(s.latency.count, 80_000);
    }
}
