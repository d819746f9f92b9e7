//! In-run single flight: identical inputs wait on the first one and get its result as a
//! `duplicate` line (or a `failed` line when it ended without an answer).

use super::*;

impl Shared {
    /// Inputs still waiting on an identical one when the run ends: that one's handling
    /// failed without answering them (it panicked). Each gets a `failed` line `INTERNAL`.
    pub(super) async fn strand_followers(&self, out: &mpsc::Sender<ResultLine>) {
        let stranded: Vec<Follower> = {
            let mut inflight = lock(&self.inflight);
            inflight.drain().flat_map(|(_, f)| f).collect()
        };
        for f in stranded {
            let what = "the identical input it waited on failed without an answer";
            let line = self.internal_line(f.label, f.started, what);
            self.emit(out, line).instrument(f.span).await;
        }
    }

    /// Emits `line` and a `duplicate` line (same result) for each input that waited on it.
    pub(super) async fn finish(
        &self,
        out: &mpsc::Sender<ResultLine>,
        digest: &ContentHash,
        line: ResultLine,
    ) {
        let followers = lock(&self.inflight).remove(digest).unwrap_or_default();
        for f in followers {
            let mut d = line.clone();
            if let Some(e) = &mut d.error {
                // Name the input this line is for.
                e.message = format!("{}: identical to {}: {}", f.label, line.input, e.message);
            }
            d.input = f.label;
            if d.status != Outcome::Failed {
                d.status = Outcome::Duplicate;
            }
            d.attempts = 0;
            d.rate_limited = Some(0);
            d.waited_ms = Some(0);
            d.bytes_in = f.bytes_in;
            d.bytes_sent = 0;
            d.latency_ms = ms(f.started);
            if let Some(job_id) = &d.job_id {
                f.span.record("job_id", field::display(job_id));
            }
            let span = f.span;
            tracing::debug!(
                parent: &span,
                leader = %line.input,
                "answered by the identical input in flight (in-run single flight)"
            );
            self.emit(out, d).instrument(span).await;
        }
        self.emit(out, line).await;
    }
}
