//! Jobs: read one (JSON or `?format=`), and wait for one to finish.

use std::time::{Duration, Instant};

use http::Method;
use imggo_core::{Error, Job, JobStatus, ResultFormat};

use crate::client::{Call, Client};
use crate::transport::{decode, segment};

/// How [`Client::wait_for_job`] polls: the first poll after `first`, the second `second`
/// later, each further wait `factor` times the previous one up to `max_interval`, and no
/// longer than `deadline` in all.
///
/// `first` and `second` are separate so that a caller who can predict the finish (the
/// pipeline learns it from earlier jobs) polls once at the prediction and, if that was a
/// little early, again soon after instead of a whole growth step later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    /// Wait before the first poll.
    pub first: Duration,
    /// Wait between the first and the second poll (at least 100 µs); later waits grow
    /// from it (each at least 1 ms).
    pub second: Duration,
    /// Growth of the wait between polls (1.0 = constant).
    pub factor: f64,
    /// Longest wait between polls.
    pub max_interval: Duration,
    /// Overall limit; past it the wait fails with `Error::Timeout { what: "job wait" }`.
    pub deadline: Duration,
}

impl Default for PollPolicy {
    /// 50 ms, then 75 ms, growing by 1.5× to 2 s, for at most 10 minutes.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(50),
            second: Duration::from_millis(75),
            factor: 1.5,
            max_interval: Duration::from_secs(2),
            deadline: Duration::from_secs(600),
        }
    }
}

impl PollPolicy {
    /// The wait after `previous`.
    pub fn next_interval(&self, previous: Duration) -> Duration {
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        previous
            .mul_f64(factor)
            .min(self.max_interval)
            .max(Duration::from_millis(1))
    }

    /// The wait after a poll that did not end the wait: `second` after the first poll,
    /// then growing. `interval` is `None` before the second poll.
    fn advance(&self, interval: &mut Option<Duration>) -> Duration {
        let next = match *interval {
            None => self.second.clamp(
                Duration::from_micros(100),
                self.max_interval.max(Duration::from_millis(1)),
            ),
            Some(previous) => self.next_interval(previous),
        };
        *interval = Some(next);
        next
    }
}

/// A finished wait: the job, and how many polls it took (at least 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Waited {
    /// The succeeded job.
    pub job: Job,
    /// Polls made, retried ones included.
    pub polls: u32,
}

/// A job's result in a non-JSON format (`GET /api/jobs/{id}?format=`).
#[derive(Debug, Clone, PartialEq)]
pub struct FormattedResult {
    /// The body as the server rendered it.
    pub body: String,
    /// The response's `Content-Type`.
    pub content_type: Option<String>,
    /// `X-Job-Id`.
    pub job_id: Option<String>,
    /// `X-Job-Status`, parsed (either dialect).
    pub job_status: Option<JobStatus>,
    /// `X-Pattern-Id`.
    pub pattern_id: Option<String>,
}

/// How many answers that cannot be decoded one wait for a job polls past, and one
/// ingest (whose idempotency key makes a re-send safe) sends past.
pub const MAX_UNREADABLE_ANSWERS: u32 = 3;

impl Client {
    /// `GET /api/jobs/{id}`: the job in either status dialect.
    pub async fn get_job(&self, id: &str) -> Result<Job, Error> {
        let path = self.item_path("/jobs", "job id", id)?;
        let reply = self.execute(Call::new(Method::GET, path)).await?;
        // The server's plain compact answer is read by hand, at about two thirds of
        // serde's cost; anything else goes through serde.
        if let Some(job) = std::str::from_utf8(&reply.body)
            .ok()
            .and_then(Job::from_compact_json)
        {
            return Ok(job);
        }
        decode(&reply.body, "job")
    }

    /// `GET /api/jobs/{id}?format=...`: the result rendered as YAML, XML, CSV, text (or
    /// the JSON envelope for [`ResultFormat::Json`]), with the job facts from the headers.
    pub async fn get_job_formatted(
        &self,
        id: &str,
        format: ResultFormat,
    ) -> Result<FormattedResult, Error> {
        let path = self.request_path(&format!(
            "/jobs/{}?format={}",
            segment("job id", id)?,
            format.as_str()
        ));
        let reply = self.execute(Call::new(Method::GET, path)).await?;
        let body = String::from_utf8(reply.body.to_vec()).map_err(|e| Error::Decode {
            what: format!("job {id} as {}", format.as_str()),
            message: e.to_string(),
        })?;
        Ok(FormattedResult {
            content_type: reply.header("content-type").map(str::to_owned),
            job_id: reply.header("x-job-id").map(str::to_owned),
            job_status: reply.header("x-job-status").map(JobStatus::parse),
            pattern_id: reply.header("x-pattern-id").map(str::to_owned),
            body,
        })
    }

    /// Polls a job until it ends: `Ok(job)` when it succeeded (its manifest may be an
    /// empty object, which is a success), [`Error::JobFailed`] when it failed, and
    /// `Error::Timeout { what: "job wait" }` past the policy's deadline.
    ///
    /// Retryable errors while polling (429, 5xx, resets) do not end the wait: it sleeps at
    /// least the server's `Retry-After` and polls again. An answer that cannot be decoded
    /// (a proxy's HTML page, a body over the cap) is polled again too, up to
    /// [`MAX_UNREADABLE_ANSWERS`] times in one wait; then its [`Error::Decode`] ends the wait. Cancel-safe: dropping the future
    /// stops polling and leaves nothing behind.
    pub async fn wait_for_job(&self, id: &str, policy: &PollPolicy) -> Result<Job, Error> {
        self.wait_for_job_counted(id, policy).await.map(|w| w.job)
    }

    /// [`Client::wait_for_job`], also saying how many polls it took: a caller that
    /// predicts finish times learns from whether its first poll came too early.
    pub async fn wait_for_job_counted(
        &self,
        id: &str,
        policy: &PollPolicy,
    ) -> Result<Waited, Error> {
        segment("job id", id)?;
        let poll = async {
            let mut interval = None;
            let mut wait = policy.first;
            let mut polls = 0;
            let mut unreadable = 0;
            loop {
                // Not Tokio's timer: it ends waits up to about 2 ms late (see `timer`).
                if !wait.is_zero() {
                    crate::timer::sleep_until(Instant::now() + wait).await;
                }
                polls += 1;
                match self.get_job(id).await {
                    Ok(job) => match job.status {
                        JobStatus::Succeeded => return Ok(Waited { job, polls }),
                        JobStatus::Failed => {
                            return Err(Error::JobFailed {
                                job_id: job.id.clone(),
                                message: job
                                    .error
                                    .map(|e| match e.code {
                                        Some(code) => format!("{code}: {}", e.message),
                                        None => e.message,
                                    })
                                    .unwrap_or_else(|| "no error message".into()),
                            })
                        }
                        _ => wait = policy.advance(&mut interval),
                    },
                    Err(e) if e.is_retryable() => {
                        wait = policy
                            .advance(&mut interval)
                            .max(e.retry_after().unwrap_or_default());
                    }
                    // A poll is a safe GET: a garbled answer costs one more of them.
                    Err(Error::Decode { .. }) if unreadable < MAX_UNREADABLE_ANSWERS => {
                        unreadable += 1;
                        wait = policy.advance(&mut interval);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(policy.deadline, poll).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: "job wait",
                after: policy.deadline,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_grow_to_the_cap() {
        let p = PollPolicy::default();
        let mut interval = None;
        let mut seen = vec![p.first];
        for _ in 0..12 {
            seen.push(p.advance(&mut interval));
        }
        assert_eq!(seen[1], Duration::from_millis(75));
        assert_eq!(seen[2], Duration::from_micros(112_500));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(2));
        let odd = PollPolicy {
            factor: f64::NAN,
            first: Duration::ZERO,
            ..p
        };
        assert_eq!(odd.next_interval(Duration::ZERO), Duration::from_millis(1));
    }

    #[test]
    fn a_short_second_wait_then_growth() {
        let p = PollPolicy {
            first: Duration::from_millis(50),
            second: Duration::from_millis(2),
            ..PollPolicy::default()
        };
        let mut interval = None;
        let waits: Vec<_> = (0..3).map(|_| p.advance(&mut interval)).collect();
        assert_eq!(
            waits,
            [2000, 3000, 4500].map(Duration::from_micros).to_vec()
        );
        // A second wait under a millisecond is kept; the growth after it is not.
        let p = PollPolicy {
            second: Duration::from_micros(400),
            ..p
        };
        let mut interval = None;
        let waits: Vec<_> = (0..3).map(|_| p.advance(&mut interval)).collect();
        assert_eq!(waits, [400, 1000, 1500].map(Duration::from_micros).to_vec());
        let p = PollPolicy {
            second: Duration::ZERO,
            ..p
        };
        assert_eq!(p.advance(&mut None), Duration::from_micros(100));
    }
}
