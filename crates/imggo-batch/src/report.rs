//! The end-of-run report: the summary table and the exit code.

use std::fmt::Write as _;

use crate::metrics::{Alert, Snapshot};
use serde::{Deserialize, Serialize};

/// What a finished run amounts to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Inputs seen (including ones skipped by `--resume`).
    pub inputs: u64,
    /// Inputs skipped because an earlier run finished them.
    pub resumed: u64,
    /// Metrics at the end of the run.
    pub snapshot: Snapshot,
    /// Alerts that fired.
    pub alerts: Vec<Alert>,
    /// How the run met the service's rate limit (absent when the report was built
    /// without a pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<PaceSummary>,
}

/// The service's rate limit as the run learned and met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaceSummary {
    /// Where the allowed rate comes from: `unlimited` (no 429 seen), `learned` (from the
    /// service's 429s), `account` (its minimum interval, read from the usage endpoint),
    /// `discovering` (a 429 was seen, the rate was still being bracketed).
    pub source: String,
    /// Ingests per second the service allows, as learned (`None`: unlimited, or not
    /// learned yet).
    pub allowed_rate: Option<f64>,
    /// Accepted ingests per second between the first and the last accepted one.
    pub achieved_rate: Option<f64>,
    /// Ingests the service accepted.
    pub accepted: u64,
    /// Ingests it refused with 429 (each waited and went again).
    pub refused: u64,
}

/// Exit code: every input succeeded (or was cached/duplicate/resumed).
pub const EXIT_OK: u8 = 0;
/// Exit code: some inputs failed.
pub const EXIT_FAILED_INPUTS: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: an alert fired (and no input failed).
pub const EXIT_ALERT: u8 = 3;

impl Report {
    /// 0 all succeeded, 1 some inputs failed, 3 an alert fired.
    pub fn exit_code(&self) -> u8 {
        if self.snapshot.failed > 0 {
            EXIT_FAILED_INPUTS
        } else if !self.alerts.is_empty() {
            EXIT_ALERT
        } else {
            EXIT_OK
        }
    }

    /// The human summary table.
    pub fn table(&self) -> String {
        let s = &self.snapshot;
        let saved = s.bytes_before.saturating_sub(s.bytes_after);
        let pct = if s.bytes_before > 0 {
            100.0 * saved as f64 / s.bytes_before as f64
        } else {
            0.0
        };
        let rows: Vec<(&str, String)> = vec![
            ("inputs", self.inputs.to_string()),
            ("resumed (skipped)", self.resumed.to_string()),
            ("succeeded", s.succeeded.to_string()),
            ("failed", s.failed.to_string()),
            ("cached", s.cached.to_string()),
            ("duplicates", s.duplicate.to_string()),
            (
                "bytes saved by optimisation",
                format!(
                    "{} of {} ({pct:.1} %)",
                    human_bytes(saved),
                    human_bytes(s.bytes_before)
                ),
            ),
            ("images/s", format!("{:.1}", s.throughput)),
            (
                "latency p50 / p95 / p99",
                format!(
                    "{:.0} / {:.0} / {:.0} ms",
                    s.latency.p50_ms, s.latency.p95_ms, s.latency.p99_ms
                ),
            ),
            ("429 responses", s.rate_limited.to_string()),
            (
                "rate limit",
                match &self.pace {
                    Some(p) => p.describe(),
                    None => "-".into(),
                },
            ),
            ("retries", s.retried.to_string()),
            ("alerts", self.alerts.len().to_string()),
            ("elapsed", format!("{:.2} s", s.elapsed_secs)),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        for a in &self.alerts {
            let _ = writeln!(out, "  ALERT: {a}");
        }
        out
    }
}

impl PaceSummary {
    /// `allowed 10.0/s (learned), achieved 9.8/s` or `none seen`.
    pub fn describe(&self) -> String {
        let achieved = self
            .achieved_rate
            .map(|r| format!(", achieved {r:.2}/s"))
            .unwrap_or_default();
        match self.allowed_rate {
            Some(r) => format!("allowed {r:.2}/s ({}){achieved}", self.source),
            None if self.source == "unlimited" => format!("none seen{achieved}"),
            None => format!("{}{achieved}", self.source),
        }
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Outcome, Tracker};
    use std::time::Duration;

    #[test]
    fn exit_codes_and_table() {
        let t = Tracker::new();
        t.record(Outcome::Succeeded, Duration::from_millis(40));
        t.record_bytes(2048, 1024);
        let mut r = Report {
            inputs: 1,
            resumed: 0,
            snapshot: t.snapshot(),
            alerts: vec![],
            pace: None,
        };
        assert_eq!(r.exit_code(), EXIT_OK);
        assert!(
            r.table().contains("1.0 KiB of 2.0 KiB (50.0 %)"),
            "{}",
            r.table()
        );
        r.alerts.push(Alert::SuccessRateBelow {
            actual: 0.5,
            threshold: 0.9,
        });
        assert_eq!(r.exit_code(), EXIT_ALERT);
        t.record(Outcome::Failed, Duration::from_millis(1));
        r.snapshot = t.snapshot();
        assert_eq!(r.exit_code(), EXIT_FAILED_INPUTS);
        assert_eq!(human_bytes(5), "5 B");
    }
}
