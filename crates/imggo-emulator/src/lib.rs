//! # imggo-emulator
//!
//! A local, stateful ImgGo API server for tests, benchmarks and demos: patterns, multipart
//! and `image_url` ingest with idempotency keys, jobs that move through
//! `queued → running → succeeded/failed` on timers, webhooks signed with HMAC-SHA256,
//! per-user rate limits with the service's headers and 429 bodies, and seeded,
//! deterministic fault injection (500s, 503s, dropped connections, slow answers, failed
//! jobs, lost webhooks). It speaks the server's dialect by default and the prose docs'
//! dialect on request ([`Dialect`]). Every counter a test may want is in [`Stats`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use imggo_emulator::{Config, Emulator};
//!
//! let emu = Emulator::start(Config::default()).await.unwrap();
//! let pattern = emu.create_pattern("Receipts", None);
//! assert!(emu.base_url().ends_with("/api"));
//! assert_eq!(emu.stats().jobs_created, 0);
//! println!("POST {}/patterns/{}/ingest", emu.base_url(), pattern.id);
//! emu.shutdown().await;
//! # }
//! ```
//!
//! The routes, under `/api`: `GET/POST /patterns`, `GET/PATCH/DELETE /patterns/{id}`,
//! `POST /patterns/{id}/ingest`, `GET /jobs`, `GET /jobs/{id}` (with
//! `?format=yaml|xml|csv|text`), `GET/POST /webhooks`, `DELETE /webhooks/{id}`,
//! `GET /user/usage`, `GET/POST /api-keys`, `DELETE /api-keys/{id}`,
//! `POST /uploads/signed-url`, the public `POST /demo/process` and
//! `GET /demo/status/{job_id}`, `GET /_health`, and the emulator's own
//! `GET /_emulator/stats`. Bodies are checked like the server's zod schemas (types, lengths,
//! enums, uuids, URIs, date-times; unknown keys dropped) and refused with 400
//! `VALIDATION_ERROR`; a known path with another method is a 405 with `Allow`.
//! Every response carries `X-Request-ID`; gzip is used when the request accepts it.
//!
//! ## Dialects
//!
//! | | [`Dialect::Server`] (default) | [`Dialect::Docs`] |
//! |---|---|---|
//! | job status | `queued`, `running`, `succeeded`, `failed` | `queued`, `processing`, `completed`, `failed` |
//! | job fields | `id`, `manifest`, `latency_ms`, `error: "text"` | `job_id`, `result`, `processing_time_ms`, `error: {code, message}` |
//! | error codes | `NOT_FOUND`, `VALIDATION_ERROR`, ... | `not_found`, `validation_error`, ... |
//! | 429 body | `{error: "Rate limit exceeded", message, limit: {monthly, used, remaining, reset_at}, burst_limit?, upgrade_url}` | `{success: false, error: {code: "rate_limit_exceeded", message, details: {retry_after, limit}}}` |
//! | webhook payload | `{event, job_id, pattern_id, manifest, error, timestamp}` | the same plus `status` |
//! | idempotency key | the body or form field only | the body or form field, else the `Idempotency-Key` header |
//!
//! In both, ingest answers 202 `{job_id, status: "queued", message, approach}`, a known
//! idempotency key answers 200 with the existing job (and its manifest once finished), and
//! `X-RateLimit-Limit/Remaining/Reset` (monthly quota, `-1` when unlimited; reset = end of
//! the UTC month in Unix seconds) are sent on ingest answers. A 429 adds `Retry-After`
//! (whole seconds, rounded up) and `X-Emulator-Retry-After-Ms` (exact).
//!
//! ## Faults
//!
//! Each request `n` (in arrival order) draws from a splitmix64 stream keyed by
//! [`Config::seed`]: with [`Faults::fail_500`] / [`Faults::fail_503`] it is answered 500 /
//! 503 (`Retry-After: 1`) without being handled; with [`Faults::drop`] it is handled and then
//! the response is cut after half its body (HTTP/1.1: the connection is closed; HTTP/2: the
//! stream is reset); with [`Faults::slow`] the answer waits [`Faults::slow_by`]. Jobs fail
//! with [`Faults::job_fail`] and webhook deliveries are lost with [`Faults::webhook_loss`],
//! each keyed by the job's or delivery's number. With [`Faults::race_dup`] an ingest that
//! repeats a key within [`RACE_WINDOW`] of its job's creation is answered 500, once per
//! key, as the server answers the loser of two concurrent requests with one key. The same seed gives the same choices for
//! the same request, job and delivery numbers. `GET /api/_emulator/stats` is never faulted.

#![deny(missing_docs, missing_debug_implementations)]

mod api_keys;
mod config;
mod demo;
mod error;
mod fetch;
mod handlers;
mod ingest;
mod lifecycle;
mod limiter;
mod multipart;
mod render;
mod reply;
mod rng;
mod routes;
mod server;
mod state;
mod stats;
mod uploads;
mod validate;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use imggo_core::{CreatePattern, Job, Pattern, PatternSchemas};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    Config, Dialect, Faults, LatencyModel, Limits, User, WebhookRetry, DEFAULT_USER, JOB_TTL,
    MAX_IMAGE_BYTES, MAX_JOBS, MAX_REQUESTS,
};
pub use error::EmulatorError;
pub use ingest::RACE_WINDOW;
pub use stats::{FaultStats, Stats, WebhookStats};
pub use webhook::signature;

use state::State;

/// The emulator's entry point.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Validates `config`, binds `config.addr` and starts serving on the current tokio
    /// runtime. The server runs until [`Handle::shutdown`] (or the runtime ends).
    pub async fn start(config: Config) -> Result<Handle, EmulatorError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.addr,
                source,
            })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = Arc::new(State::new(config, stop_rx.clone()));
        let task = tokio::spawn(server::accept_loop(listener, state.clone(), stop_rx));
        Ok(Handle {
            addr,
            state,
            stop: stop_tx,
            task,
        })
    }
}

/// A running emulator. Dropping it leaves the server running until the runtime ends;
/// call [`Handle::shutdown`] to stop it gracefully.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Handle {
    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/api`, the base URL clients should use.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The counters right now: the same data as `GET /api/_emulator/stats`.
    pub fn stats(&self) -> Stats {
        self.state.counters.snapshot()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// Creates an active JSON pattern owned by the first configured user (or
    /// [`DEFAULT_USER`]) without HTTP. `json_schema` fills the manifest's placeholders.
    ///
    /// # Panics
    ///
    /// When `name` breaks the API's rule (1 to 255 letters, digits, spaces, `-`, `_`, `(`,
    /// `)`): this is a test helper, use [`Handle::create_pattern_with`] to get the error.
    pub fn create_pattern(&self, name: &str, json_schema: Option<Value>) -> Pattern {
        let req = CreatePattern {
            name: name.to_owned(),
            instructions: format!("Extract the fields of {name} (emulated)"),
            schemas: PatternSchemas {
                json_schema,
                ..PatternSchemas::default()
            },
            ..CreatePattern::default()
        };
        self.create_pattern_with(req)
            .unwrap_or_else(|msg| panic!("create_pattern({name:?}): {msg}"))
    }

    /// Creates a pattern from a full request without HTTP, with the route's validation.
    pub fn create_pattern_with(&self, req: CreatePattern) -> Result<Pattern, String> {
        handlers::insert_pattern(&self.state, &self.state.default_user(), req)
            .map_err(|(msg, _)| msg)
    }

    /// Starts a new billing period for every user, as the end of the month would: the
    /// monthly quota is full again (the other limits keep their state).
    pub fn start_new_period(&self) {
        self.state.limiter.start_new_period();
    }

    /// A job by id, whoever owns it.
    pub fn job(&self, id: &str) -> Option<Job> {
        lifecycle::settle(&self.state, id);
        self.state.job(id, None)
    }

    /// Stops accepting connections, lets open requests finish (up to 5 s), and stops job
    /// timers and webhook retries.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
