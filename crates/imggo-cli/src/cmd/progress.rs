//! Progress on stderr: a bar with rate, ETA and counts on a terminal, a plain log line
//! every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use imggo::core::Tracker;
use imggo::ratelimit::{LearnedPacer, PaceSource};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on a terminal, a log line every few seconds otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// When the bar was last refreshed or the last log line printed.
    last_log: std::sync::Mutex<Instant>,
}

impl Progress {
    /// `total`, when known, gives a bar with an ETA; otherwise a spinner.
    pub fn new(quiet: bool, total: Option<u64>) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = match total {
                Some(n) => {
                    let b = ProgressBar::new(n);
                    b.set_style(
                        ProgressStyle::with_template("{bar:30} {pos}/{len} eta {eta}  {msg}")
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
        Self {
            bar,
            quiet,
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Updates the bar (or logs every 5 s) from the tracker.
    pub fn tick(&self, tracker: &Tracker, pacer: &LearnedPacer, started: Instant) {
        if self.quiet {
            return;
        }
        // A snapshot walks the histogram: take one only when it will be shown.
        let every = if self.bar.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        {
            let mut last = self
                .last_log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < every {
                return;
            }
            *last = Instant::now();
        }
        let s = tracker.snapshot();
        let rate = s.total as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let msg = format!(
            "{rate:.1}/s  ok {}  failed {}  cached {}  dup {}{}",
            s.succeeded,
            s.failed,
            s.cached,
            s.duplicate,
            pace_text(pacer)
        );
        match &self.bar {
            Some(b) => {
                b.set_position(s.total);
                b.set_message(msg);
            }
            None => eprintln!("imggo: {} done, {msg}", s.total),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `  pace 9.8/s (server limit), 7 waiting` while the service's limit sets the pace.
fn pace_text(pacer: &LearnedPacer) -> String {
    let p = pacer.status();
    let waiting = if p.waiting > 0 {
        format!(", {} waiting", p.waiting)
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
