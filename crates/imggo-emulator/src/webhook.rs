//! Webhook deliveries: `{event, job_id, pattern_id, manifest, error, timestamp}` POSTed to
//! every matching webhook of the job's owner, signed with
//! `X-ImgGo-Signature: sha256=<hex HMAC-SHA256(secret, exact body)>`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::Request;
use http_body_util::Full;
use imggo_core::{EventKind, Job, WebhookEvent};
use serde_json::Value;
use sha2::Sha256;

use crate::config::{Dialect, WebhookRetry};
use crate::rng::{self, Stream};
use crate::state::{lock, now_rfc3339, State};

/// The `X-ImgGo-Signature` value of `body` under `secret`: `sha256=<64 lower-case hex>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Queues deliveries for a job that just ended.
pub(crate) fn job_finished(state: &Arc<State>, job: &Job) {
    let event = EventKind::for_status(&job.status);
    let targets: Vec<(String, Vec<u8>)> = {
        let hooks = lock(&state.webhooks);
        if hooks.is_empty() {
            return;
        }
        let owner = job.requested_by.as_deref().unwrap_or_default();
        hooks
            .iter()
            .filter(|w| {
                w.hook.is_active
                    && *w.user == *owner
                    && (w.hook.events.is_empty()
                        || w.hook.events.iter().any(|e| EventKind::parse(e) == event))
            })
            .map(|w| (w.hook.url.clone(), w.secret.expose().as_bytes().to_vec()))
            .collect()
    };
    if targets.is_empty() {
        return;
    }
    let payload = WebhookEvent {
        event,
        job_id: job.id.clone(),
        pattern_id: job.pattern_id.clone(),
        status: (state.dialect() == Dialect::Docs).then(|| job.status.clone()),
        manifest: job.manifest.clone(),
        error: job.error.clone(),
        timestamp: Some(Value::String(now_rfc3339())),
    };
    let body = match state.dialect() {
        Dialect::Server => serde_json::to_vec(&payload),
        Dialect::Docs => serde_json::to_vec(&docs_payload(&payload, job)),
    };
    let body = Bytes::from(body.unwrap_or_default());
    for (url, secret) in targets {
        let n = state
            .counters
            .webhooks
            .attempted
            .fetch_add(1, Ordering::Relaxed);
        let loss = state.config.faults.webhook_loss;
        if loss > 0.0 && rng::unit(state.config.seed, Stream::WebhookLoss, n) < loss {
            state.counters.webhooks.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let sig = signature(&secret, &body);
        let state = state.clone();
        let body = body.clone();
        tokio::spawn(async move { deliver(state, url, sig, body).await });
    }
}

/// The docs' spelling of a payload: `job.completed`, `status: completed`, `result`,
/// `error: {code, message}`.
fn docs_payload(payload: &WebhookEvent, job: &Job) -> Value {
    let mut v = serde_json::to_value(payload).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        if payload.event == EventKind::JobSucceeded {
            m.insert("event".into(), Value::from("job.completed"));
        }
        m.insert("status".into(), Value::from(job.status.as_docs_str()));
        if let Some(manifest) = m.remove("manifest") {
            m.insert("result".into(), manifest);
        }
        if let Some(e) = &job.error {
            m.insert(
                "error".into(),
                serde_json::json!({"code": "processing_failed", "message": e.message}),
            );
        }
    }
    v
}

async fn deliver(state: Arc<State>, url: String, sig: String, body: Bytes) {
    let delays: Vec<Duration> = match &state.config.webhook_retry {
        WebhookRetry::Once => Vec::new(),
        WebhookRetry::Schedule(d) => d.clone(),
    };
    let mut shutdown = state.shutdown.clone();
    for attempt in 0..=delays.len() {
        if attempt > 0 {
            tokio::select! {
                _ = tokio::time::sleep(delays[attempt - 1]) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        state.counters.webhooks.sent.fetch_add(1, Ordering::Relaxed);
        if post(&state, &url, &sig, body.clone()).await {
            state
                .counters
                .webhooks
                .delivered
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    state
        .counters
        .webhooks
        .failed
        .fetch_add(1, Ordering::Relaxed);
}

async fn post(state: &State, url: &str, sig: &str, body: Bytes) -> bool {
    let Ok(req) = Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "imggo-emulator")
        .header("X-ImgGo-Signature", sig)
        .body(Full::new(body))
    else {
        return false;
    };
    match tokio::time::timeout(state.config.webhook_timeout, state.client.request(req)).await {
        Ok(Ok(resp)) => resp.status().is_success(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
