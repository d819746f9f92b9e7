//! Jobs: read one (JSON or `?format=`), and wait for one to finish.

use std::time::Duration;

use http::Method;
use imggo_core::{Error, Job, JobStatus, ResultFormat};

use crate::client::{Call, Client};
use crate::transport::{decode, segment};

/// How [`Client::wait_for_job`] polls: the first poll after `first`, each wait `factor`
/// times the previous one up to `max_interval`, and no longer than `deadline` in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    /// Wait before the first poll.
    pub first: Duration,
    /// Growth of the wait between polls (1.0 = constant).
    pub factor: f64,
    /// Longest wait between polls.
    pub max_interval: Duration,
    /// Overall limit; past it the wait fails with `Error::Timeout { what: "job wait" }`.
    pub deadline: Duration,
}

impl Default for PollPolicy {
    /// 50 ms, growing by 1.5× to 2 s, for at most 10 minutes.
    fn default() -> Self {
        Self {
            first: Duration::from_millis(50),
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

impl Client {
    /// `GET /api/jobs/{id}`: the job in either status dialect.
    pub async fn get_job(&self, id: &str) -> Result<Job, Error> {
        let url = self.url(&format!("/jobs/{}", segment("job id", id)?));
        let reply = self.execute(Call::new(Method::GET, url)).await?;
        decode(&reply.body, "job")
    }

    /// `GET /api/jobs/{id}?format=...`: the result rendered as YAML, XML, CSV, text (or
    /// the JSON envelope for [`ResultFormat::Json`]), with the job facts from the headers.
    pub async fn get_job_formatted(
        &self,
        id: &str,
        format: ResultFormat,
    ) -> Result<FormattedResult, Error> {
        let url = self.url(&format!(
            "/jobs/{}?format={}",
            segment("job id", id)?,
            format.as_str()
        ));
        let reply = self.execute(Call::new(Method::GET, url)).await?;
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
    /// least the server's `Retry-After` and polls again. Cancel-safe: dropping the future
    /// stops polling and leaves nothing behind.
    pub async fn wait_for_job(&self, id: &str, policy: &PollPolicy) -> Result<Job, Error> {
        segment("job id", id)?;
        let poll = async {
            let mut interval = policy.first;
            let mut wait = interval;
            loop {
                tokio::time::sleep(wait).await;
                match self.get_job(id).await {
                    Ok(job) => match job.status {
                        JobStatus::Succeeded => return Ok(job),
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
                        _ => {
                            interval = policy.next_interval(interval);
                            wait = interval;
                        }
                    },
                    Err(e) if e.is_retryable() => {
                        interval = policy.next_interval(interval);
                        wait = interval.max(e.retry_after().unwrap_or_default());
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
        let mut i = p.first;
        let mut seen = vec![i];
        for _ in 0..12 {
            i = p.next_interval(i);
            seen.push(i);
        }
        assert_eq!(seen[1], Duration::from_millis(75));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(2));
        let odd = PollPolicy {
            factor: f64::NAN,
            first: Duration::ZERO,
            ..p
        };
        assert_eq!(odd.next_interval(Duration::ZERO), Duration::from_millis(1));
    }
}
