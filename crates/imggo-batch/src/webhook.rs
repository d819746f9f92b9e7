//! Routes verified webhook deliveries to the tasks waiting for their jobs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use imggo_core::{Error, EventKind, Job, JobStatus, WebhookEvent};
use imggo_http::WebhookReceiver;
use tokio::sync::oneshot;

/// Deliveries that arrive before anyone waits for them (a job can finish before its
/// ingest answer is processed) are kept, up to this many.
const EARLY_CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
struct Inner {
    waiters: HashMap<String, oneshot::Sender<WebhookEvent>>,
    early: HashMap<String, WebhookEvent>,
    early_order: VecDeque<String>,
}

/// Hands each verified [`WebhookEvent`] to the task waiting for its job.
#[derive(Debug, Default)]
pub struct WebhookRouter {
    inner: Mutex<Inner>,
}

impl WebhookRouter {
    /// A router fed by `receiver` on a background task, which ends with the receiver.
    pub fn spawn(mut receiver: WebhookReceiver) -> std::sync::Arc<Self> {
        let router = std::sync::Arc::new(Self::default());
        let r = router.clone();
        tokio::spawn(async move {
            while let Some(ev) = receiver.next().await {
                r.deliver(ev);
            }
        });
        router
    }

    /// Passes one event to its waiter, or keeps it for a waiter still to come.
    pub fn deliver(&self, ev: WebhookEvent) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = inner.waiters.remove(&ev.job_id) {
            let _ = tx.send(ev);
            return;
        }
        if inner.early.len() >= EARLY_CAPACITY {
            if let Some(old) = inner.early_order.pop_front() {
                inner.early.remove(&old);
            }
        }
        inner.early_order.push_back(ev.job_id.clone());
        inner.early.insert(ev.job_id.clone(), ev);
    }

    /// Waits up to `within` for the delivery about `job_id`; `None` when none came (the
    /// caller then polls).
    pub async fn wait(&self, job_id: &str, within: Duration) -> Option<WebhookEvent> {
        let rx = {
            let mut inner = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(ev) = inner.early.remove(job_id) {
                return Some(ev);
            }
            let (tx, rx) = oneshot::channel();
            inner.waiters.insert(job_id.to_owned(), tx);
            rx
        };
        let got = tokio::time::timeout(within, rx)
            .await
            .ok()
            .and_then(Result::ok);
        if got.is_none() {
            self.inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .waiters
                .remove(job_id);
        }
        got
    }

    /// Turns a delivery into the job it reports: `Ok` for `job.succeeded`, the job's
    /// failure otherwise.
    pub fn job_from_event(ev: WebhookEvent, pattern_id: &str) -> Result<Job, Error> {
        match ev.event {
            EventKind::JobSucceeded => Ok(Job {
                pattern_id: ev.pattern_id.or_else(|| Some(pattern_id.to_owned())),
                manifest: ev.manifest,
                ..Job::new(ev.job_id, JobStatus::Succeeded)
            }),
            other => Err(Error::JobFailed {
                job_id: ev.job_id,
                message: ev
                    .error
                    .map(|e| e.message)
                    .unwrap_or_else(|| format!("webhook event {}", other.as_str())),
            }),
        }
    }
}
