//! The job state machine: queued → running → succeeded | failed, driven by tokio timers
//! (one lightweight task per job that has a processing time; none for instant jobs).
//!
//! A job of received bytes finishes exactly at its due time as far as any client can
//! tell: its plan is parked in the job's record, and whichever comes first — the timer,
//! or a read of the job at or after the due time — finishes it ([`settle`]). Tokio's timer
//! alone would finish it up to a millisecond late, which a 50 ms emulated job would show
//! as a 2 % loss of throughput that the real service does not have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use imggo_core::{ContentHash, Job, JobError, JobStatus, Pattern};
use serde_json::Value;

use crate::fetch;
use crate::render::{self, ImageFacts};
use crate::rng::{self, Stream};
use crate::state::{id_kind, now_rfc3339, State};
use crate::stats::StateSlot;
use crate::webhook;

/// Where a job's image comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// Bytes received with the ingest: their facts, or why they could not be read.
    Received(Result<ImageFacts, String>),
    /// A URL to fetch when the job runs.
    Url(String),
}

/// What the ingest handler knows about a new job.
#[derive(Debug)]
pub(crate) struct NewJob {
    pub pattern: Pattern,
    pub user: Arc<str>,
    pub source: Source,
    pub idempotency_key: Option<String>,
    pub extras: Option<Value>,
    pub image_url: Option<String>,
}

/// The facts of received bytes (probed with imggo-optimize) whose hash is `hash`.
pub(crate) fn facts_with_hash(bytes: &[u8], hash: ContentHash) -> Result<ImageFacts, String> {
    match imggo_optimize::probe(bytes) {
        Ok(info) => Ok(ImageFacts {
            format: info.format.name(),
            width: info.width,
            height: info.height,
            bytes: bytes.len() as u64,
            content_hash: hash.to_string(),
            file_name: None,
        }),
        Err(e) => Err(format!("Invalid image: {e}")),
    }
}

/// Creates a job, stores it, and starts its clock. Returns the stored job (queued).
pub(crate) fn create(state: &Arc<State>, new: NewJob) -> Job {
    let (n, id) = state.next_id(id_kind::JOB);
    let seed = state.config.seed;
    let duration = state.config.latency.sample(
        rng::unit(seed, Stream::Latency, n),
        rng::normal(seed, Stream::Latency, n),
    );
    let fail = state.config.faults.job_fail > 0.0
        && rng::unit(seed, Stream::JobFail, n) < state.config.faults.job_fail;
    let now = now_rfc3339();
    let job = Job {
        id,
        pattern_id: Some(new.pattern.id.clone()),
        image_url: new.image_url.clone(),
        status: JobStatus::Queued,
        manifest: None,
        error: None,
        latency_ms: None,
        created_at: Some(now.clone()),
        updated_at: Some(now),
        started_at: None,
        completed_at: None,
        idempotency_key: new.idempotency_key.clone(),
        requested_by: Some(new.user.to_string()),
        extras: new.extras.clone(),
    };
    let id = state.insert_job(job.clone(), new.user.clone());
    state
        .counters
        .jobs_created
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.counters.job_entered(StateSlot::Queued);
    let plan = Plan {
        id,
        pattern: new.pattern,
        source: new.source,
        duration,
        fail,
        started: Instant::now(),
    };
    match plan.source {
        Source::Received(_) if duration.is_zero() => {
            set_running(state, &plan.id);
            finish(state, plan, None);
        }
        Source::Received(_) => {
            let (id, half, due) = (plan.id.clone(), plan.started + duration / 2, plan.due());
            state.park(&id, plan);
            let state = state.clone();
            tokio::spawn(async move {
                if wait_until(&state, half).await {
                    set_running(&state, &id);
                    if wait_until(&state, due).await {
                        settle(&state, &id);
                    }
                }
            });
        }
        Source::Url(_) => {
            let state = state.clone();
            tokio::spawn(async move { run(state, plan).await });
        }
    }
    job
}

/// Finishes job `id` if its parked plan is due; a no-op for jobs finished, not yet due or
/// not parked. Every read of a job calls this first.
pub(crate) fn settle(state: &Arc<State>, id: &str) {
    if let Some(plan) = state.unpark_due(id, Instant::now()) {
        // A read at the due time can come before the timer's queued → running step.
        set_running(state, id);
        finish(state, plan, None);
    }
}

/// Everything finishing a job needs.
#[derive(Debug)]
pub(crate) struct Plan {
    id: Arc<str>,
    pattern: Pattern,
    source: Source,
    duration: Duration,
    fail: bool,
    started: Instant,
}

impl Plan {
    /// When the job is done.
    pub(crate) fn due(&self) -> Instant {
        self.started + self.duration
    }
}

/// Sleeps until `deadline`, or returns false when the emulator shuts down first. Deadlines
/// are absolute, and the sleep is imggo-core's precise one rather than Tokio's (which ends
/// about a millisecond late), so that a job finishes (and its webhook goes out) at its
/// planned time.
async fn wait_until(state: &State, deadline: Instant) -> bool {
    if deadline <= Instant::now() {
        return !*state.shutdown.borrow();
    }
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        _ = imggo_core::timer::sleep_until(deadline) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

async fn run(state: Arc<State>, plan: Plan) {
    if !wait_until(&state, plan.started + plan.duration / 2).await {
        return;
    }
    set_running(&state, &plan.id);
    let fetched = match &plan.source {
        Source::Url(url) => Some(fetch::image(&state, url).await),
        Source::Received(_) => None,
    };
    if !wait_until(&state, plan.due()).await {
        return;
    }
    finish(&state, plan, fetched);
}

/// Queued → running; a no-op for a job that has moved on already.
fn set_running(state: &State, id: &str) {
    let now = now_rfc3339();
    let mut moved = false;
    state.update_job(id, |j| {
        moved = j.status == JobStatus::Queued;
        if moved {
            j.status = JobStatus::Running;
            j.started_at = Some(now);
        }
        moved
    });
    if moved {
        state
            .counters
            .job_moved(StateSlot::Queued, StateSlot::Running);
    }
}

fn finish(state: &Arc<State>, plan: Plan, fetched: Option<Result<ImageFacts, String>>) {
    let fetched_url = fetched.is_some();
    let facts = match (fetched, &plan.source) {
        (Some(f), _) => f,
        (None, Source::Received(f)) => f.clone(),
        (None, Source::Url(u)) => Err(format!("Invalid image: {u} was not fetched")),
    };
    let outcome = match facts {
        Err(e) => Err(e),
        Ok(_) if plan.fail => {
            state
                .counters
                .faults
                .jobs_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err("Processing failed: emulated job failure (fault injection)".to_owned())
        }
        Ok(f) => Ok(render::manifest(&plan.pattern, &f)),
    };
    // Received bytes finish at their due time (see the module docs); a fetched URL takes
    // as long as its fetch made it.
    let latency = match fetched_url {
        false => plan.duration,
        true => plan.started.elapsed(),
    }
    .as_millis() as u64;
    let now = now_rfc3339();
    let failed = outcome.is_err();
    let job = state.update_job(&plan.id, |j| {
        match outcome {
            Ok(m) => {
                j.status = JobStatus::Succeeded;
                j.manifest = Some(m);
            }
            Err(message) => {
                j.status = JobStatus::Failed;
                j.error = Some(JobError {
                    code: None,
                    message,
                });
            }
        }
        j.latency_ms = Some(latency);
        j.completed_at = Some(now);
        true
    });
    let to = if failed {
        StateSlot::Failed
    } else {
        StateSlot::Succeeded
    };
    state.counters.job_moved(StateSlot::Running, to);
    if let Some(job) = job {
        webhook::job_finished(state, &job);
    }
}
