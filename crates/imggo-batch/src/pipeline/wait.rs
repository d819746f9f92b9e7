//! Stage 3, wait: the job's result by polling (timed by the learned job clock) or by
//! webhook with polling as the fallback.

use super::*;

impl Shared {
    /// The finished job `job_id`: by webhook (the slot given up meanwhile) with polling as
    /// the fallback, or by polling alone.
    #[cfg_attr(not(feature = "webhook"), allow(unused_variables))]
    pub(super) async fn wait_job(
        &self,
        job_id: &str,
        pattern_id: &str,
        slot: &mut Slot,
    ) -> Result<Job, Error> {
        tracing::debug!(
            job_id = %job_id,
            by = match &self.wait {
                WaitMode::Poll(_) => "poll",
                #[cfg(feature = "webhook")]
                WaitMode::Webhook { .. } => "webhook",
            },
            "waiting for the job"
        );
        match &self.wait {
            WaitMode::Poll(policy) => self.poll(job_id, policy).await,
            #[cfg(feature = "webhook")]
            WaitMode::Webhook {
                router,
                fallback_after,
                poll,
            } => match slot
                .release_during(router.wait(job_id, *fallback_after))
                .await
            {
                Some(ev) => WebhookRouter::job_from_event(ev, pattern_id),
                None => self.poll(job_id, poll).await,
            },
        }
    }

    /// Polls a job, first when jobs of this run are expected to finish (see [`JobClock`]):
    /// a service that takes 3 s is not polled five times before it could be done, and a
    /// 50 ms one is not left idle for a whole growth step after a slightly early poll.
    pub(super) async fn poll(&self, job_id: &str, policy: &PollPolicy) -> Result<Job, Error> {
        let schedule = self.job_clock.schedule(policy);
        let waited = self
            .client
            .wait_for_job_counted(job_id, &schedule.policy)
            .await?;
        self.job_clock
            .observe(&schedule, waited.polls, waited.job.latency_ms);
        Ok(waited.job)
    }
}
