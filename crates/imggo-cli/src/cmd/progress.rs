//! Progress on stderr: a bar with done/total, the current rate, the ETA, failures and the
//! rate-limit wait on a terminal; a plain status line every 10 s otherwise.
//!
//! The interval of the plain line can be changed with the hidden environment variable
//! `IMGGO_PROGRESS_INTERVAL_MS` (milliseconds; the tests use it to see a line quickly).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use imggo::core::Tracker;
use imggo::ratelimit::{LearnedPacer, PaceSource};
use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain status line is printed when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// The hidden override of [`LOG_EVERY`], in milliseconds.
const LOG_EVERY_ENV: &str = "IMGGO_PROGRESS_INTERVAL_MS";
/// The current rate is measured over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A progress bar on a terminal, a status line every 10 s otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: Option<u64>,
    /// When the bar was last refreshed.
    last_draw: Mutex<Instant>,
    /// (when, finished inputs) samples of the last [`RATE_WINDOW`], oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    log_every: Duration,
}

impl Progress {
    /// `total`, when known, gives a bar with an ETA; otherwise a spinner.
    pub fn new(quiet: bool, total: Option<u64>) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = match total {
                Some(n) => {
                    let b = ProgressBar::new(n);
                    b.set_style(
                        ProgressStyle::with_template("{bar:30} {pos}/{len}  {msg}")
                            .expect("static template"),
                    );
                    b
                }
                None => {
                    let b = ProgressBar::new_spinner();
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {elapsed_precise} {pos} done  {msg}",
                        )
                        .expect("static template"),
                    );
                    b
                }
            };
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let log_every = std::env::var(LOG_EVERY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map_or(LOG_EVERY, Duration::from_millis);
        Self {
            bar,
            quiet,
            total,
            last_draw: Mutex::new(Instant::now()),
            samples: Mutex::new(VecDeque::new()),
            log_every,
        }
    }

    /// How often [`Progress::refresh`] should be called: every second for the bar (the
    /// rate and the rate-limit wait change while no input finishes), at the plain line's
    /// interval otherwise; `None` when nothing is shown.
    pub fn period(&self) -> Option<Duration> {
        if self.quiet {
            None
        } else if self.bar.is_some() {
            Some(Duration::from_secs(1))
        } else {
            Some(self.log_every)
        }
    }

    /// An input finished: updates the bar (at most every 100 ms).
    pub fn tick(&self, tracker: &Tracker, pacer: &LearnedPacer, started: Instant) {
        if self.bar.is_none() {
            return;
        }
        {
            let mut last = self
                .last_draw
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() < Duration::from_millis(100) {
                return;
            }
            *last = Instant::now();
        }
        self.refresh(tracker, pacer, started);
    }

    /// Redraws the bar, or prints the plain status line.
    pub fn refresh(&self, tracker: &Tracker, pacer: &LearnedPacer, started: Instant) {
        if self.quiet {
            return;
        }
        // A snapshot walks the histogram: take one only when it will be shown.
        let s = tracker.snapshot();
        let rate = self.rate(s.total, started);
        let eta = match self.total {
            Some(total) if total > s.total && rate > 0.0 => {
                format!("eta {}", duration_text((total - s.total) as f64 / rate))
            }
            Some(total) if total <= s.total => "eta 0s".into(),
            _ => "eta ?".into(),
        };
        let msg = format!(
            "{rate:.1}/s  {eta}  failed {}  ok {}  cached {}  dup {}{}",
            s.failed,
            s.succeeded,
            s.cached,
            s.duplicate,
            pace_text(pacer)
        );
        match &self.bar {
            Some(b) => {
                b.set_position(s.total);
                b.set_message(msg);
            }
            None => {
                let done = match self.total {
                    Some(t) => format!("{}/{t}", s.total),
                    None => s.total.to_string(),
                };
                eprintln!("imggo: {done} done, {msg}");
            }
        }
    }

    /// Finished inputs per second over about the last 10 s (since the start before that).
    fn rate(&self, done: u64, started: Instant) -> f64 {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back((now, done));
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)
        {
            samples.pop_front();
        }
        let (t0, n0) = match samples.front() {
            Some(&(t, n)) if now.duration_since(t) >= Duration::from_secs(1) => (t, n),
            _ => (started, 0),
        };
        done.saturating_sub(n0) as f64 / now.duration_since(t0).as_secs_f64().max(1e-3)
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `95s` → `1m35s`; `3700s` → `1h01m`.
fn duration_text(secs: f64) -> String {
    let s = secs.round().min(1e9) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `  pace 9.8/s (server limit), waiting on the rate limit: 7` while the service's limit
/// sets the pace.
fn pace_text(pacer: &LearnedPacer) -> String {
    let p = pacer.status();
    let waiting = if p.waiting > 0 {
        format!(", waiting on the rate limit: {}", p.waiting)
    } else {
        String::new()
    };
    if p.held {
        return format!(
            "  waiting: other processes of the account use its limit ({:.1}/s){waiting}",
            p.others_rate
        );
    }
    match (p.source, p.rate()) {
        (PaceSource::Unlimited, _) => String::new(),
        (PaceSource::Discovering, _) => format!("  learning the server limit{waiting}"),
        (PaceSource::Account, Some(r)) => format!("  pace {r:.1}/s (account limit){waiting}"),
        (_, Some(r)) => format!("  pace {r:.1}/s (server limit){waiting}"),
        (_, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(4.4), "4s");
        assert_eq!(duration_text(95.0), "1m35s");
        assert_eq!(duration_text(3700.0), "1h01m");
    }
}
