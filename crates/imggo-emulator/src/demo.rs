//! The public demo: `POST /api/demo/process` queues a job without an API key (at most
//! [`PER_HOUR`] per hour, for everyone together: the emulator does not tell callers apart),
//! and `GET /api/demo/status/{job_id}` reports it until it expires an hour later. A demo job
//! takes the configured processing time and always succeeds with an emulated manifest.

use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::handlers::not_found;
use crate::reply::{error, ok, Reply};
use crate::rng::{self, Stream};
use crate::state::{id_kind, lock, State};
use crate::validate::{self, Field, Format, Kind};

/// Demo ingests accepted per rolling hour.
pub(crate) const PER_HOUR: usize = 3;

const HOUR: Duration = Duration::from_secs(3600);

/// Keeps the demo's latency draws apart from those of real jobs.
const LATENCY_STREAM_BASE: u64 = 1 << 40;

/// The body of `POST /api/demo/process`.
const REQUEST: &[Field] = &[
    Field::new("image_url", Kind::Str)
        .required()
        .format(Format::Uri),
    Field::new("pattern_type", Kind::Str).one_of(&["product", "receipt", "document"]),
];

/// A demo job.
#[derive(Debug, Clone)]
pub(crate) struct DemoJob {
    image_url: String,
    pattern_type: Option<String>,
    done_at: Instant,
    expires_at: Instant,
}

#[derive(Serialize)]
struct Queued {
    job_id: String,
    status: &'static str,
    message: &'static str,
    demo_expires_at: String,
}

#[derive(Serialize)]
struct Status {
    job_id: String,
    status: &'static str,
    manifest: Option<Value>,
    error: Option<String>,
}

pub(crate) fn process(state: &State, body: &[u8]) -> Reply {
    let m = match validate::object(state, body, REQUEST) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let now = Instant::now();
    {
        let mut window = lock(&state.demo_window);
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        if window.len() >= PER_HOUR {
            let wait = window
                .front()
                .map_or(HOUR, |t| HOUR.saturating_sub(now.duration_since(*t)));
            drop(window);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut r = error(
                state.dialect(),
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                format!("The demo takes {PER_HOUR} images per hour; try again in {secs} seconds"),
                Some(json!({"retry_after": secs})),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            return r;
        }
        window.push_back(now);
    }
    let (n, id) = state.next_id(id_kind::DEMO_JOB);
    let seed = state.config.seed;
    let took = state.config.latency.sample(
        rng::unit(seed, Stream::Latency, LATENCY_STREAM_BASE + n),
        rng::normal(seed, Stream::Latency, LATENCY_STREAM_BASE + n),
    );
    let job = DemoJob {
        image_url: m
            .get("image_url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        pattern_type: m
            .get("pattern_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        done_at: now + took,
        expires_at: now + HOUR,
    };
    lock(&state.demo_jobs).insert(id.clone(), job);
    ok(
        StatusCode::ACCEPTED,
        &Queued {
            job_id: id,
            status: "queued",
            message: "Demo image queued for processing",
            demo_expires_at: imggo_core::time::format_rfc3339(SystemTime::now() + HOUR),
        },
    )
}

pub(crate) fn status(state: &State, id: &str) -> Reply {
    let now = Instant::now();
    let job = {
        let mut jobs = lock(&state.demo_jobs);
        jobs.retain(|_, j| j.expires_at > now);
        jobs.get(id).cloned()
    };
    let Some(job) = job else {
        return not_found(state, "Demo job");
    };
    let done = now >= job.done_at;
    let manifest = done.then(|| {
        json!({
            "_emulator": {
                "emulated": true,
                "demo": true,
                "pattern_type": job.pattern_type.as_deref().unwrap_or("product"),
                "image_url": job.image_url,
            }
        })
    });
    // The prose docs say nothing of the demo, so both dialects spell it as the server does.
    let status = if done { "succeeded" } else { "queued" };
    ok(
        StatusCode::OK,
        &Status {
            job_id: id.to_owned(),
            status,
            manifest,
            error: None,
        },
    )
}
