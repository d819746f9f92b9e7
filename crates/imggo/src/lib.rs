//! # imggo
//!
//! The facade of imggo-rs. It holds no code of its own: it re-exports the layered crates
//! ([`core`], [`optimize`], [`cache`], [`ratelimit`], [`http`], [`batch`] and, with the
//! `emulator` feature, [`emulator`]) and puts the batch engine's main
//! types at the top: the [`Pipeline`] (read → hash → dedup → cache → optimise → limit →
//! ingest → wait → cache put, one [`ResultLine`] per input, then a [`Report`]) and the
//! plain-data [`RunSpec`] that builds one the way the `imggo run` command does.
//!
//! ## Features
//!
//! | feature | brings |
//! |---|---|
//! | `redis` | the `redis://` cache, the cross-worker dedup lease and the shared limiter |
//! | `emulator` | [`emulator`]: a local ImgGo-compatible server |
//! | `rustls` | HTTPS through rustls on `ring` |
//! | `metrics-server` | `metrics::serve`: Prometheus `GET /metrics` |
//! | `webhook` | results by signed webhook (`WaitMode::Webhook`, `WebhookRouter`) |
//!
//! All are on by default (what the command line needs); `default-features = false` leaves
//! a client with polling, memory and file caches, and no server code.
//!
//! ```
//! # #[cfg(feature = "emulator")]
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use imggo::{emulator::Emulator, http::Client, Inputs, Pipeline};
//!
//! // A local ImgGo-compatible server; point `base_url` at https://img-go.com/api for real.
//! let server = Emulator::start(Default::default()).await?;
//! let pattern = server.create_pattern("receipts", None);
//! let client = Client::builder().base_url(server.base_url()).api_key("imggo_key").build()?;
//!
//! let pipeline = Pipeline::builder().client(client).pattern(pattern.id).build()?;
//! pipeline.prepare().await?; // checks the key and the pattern before any upload
//! let mut run = pipeline.run(Inputs::new(["../../../shared/corpus/real/car-plate3.jpg"]));
//! while let Some(line) = run.next_line().await {
//!     assert_eq!(line.status, imggo::core::Outcome::Succeeded);
//!     println!("{} -> {}", line.input, line.manifest.unwrap());
//! }
//! assert_eq!(run.report().await.exit_code(), 0);
//! # Ok(()) }
//! # #[cfg(not(feature = "emulator"))]
//! # fn main() {}
//! ```

#![deny(missing_docs, missing_debug_implementations)]

pub use imggo_batch as batch;
pub use imggo_cache as cache;
#[cfg(feature = "emulator")]
pub use imggo_emulator as emulator;
pub use imggo_http as http;
pub use imggo_optimize as optimize;
pub use imggo_ratelimit as ratelimit;

pub use imggo_batch::metrics;

/// `imggo-core` (wire types, errors, hashing, retry policy), plus the batch metrics
/// ([`Tracker`](crate::core::Tracker), [`AlertRules`](crate::core::AlertRules), ...) that
/// now live in [`batch::metrics`] but were reached here before.
pub mod core {
    pub use imggo_batch::metrics;
    pub use imggo_batch::metrics::{Alert, AlertRules, LatencySummary, Outcome, Snapshot, Tracker};
    pub use imggo_core::*;
}
#[cfg(feature = "webhook")]
pub use imggo_batch::webhook;
pub use imggo_batch::{alert, hooks, input, journal, pipeline, report, report_html, route, spec};

pub use imggo_batch::{
    read_bounded, AlertEvent, AlertSinks, AlertState, Alerter, ClassifySpec, Concurrency,
    ConcurrencySpec, CountingRetry, ErrorInfo, HtmlReport, Input, Inputs, Journal, PaceSummary,
    Pipeline, PipelineBuilder, Report, ResultLine, ResumeKey, RoutedInput, RoutedInputs, Routes,
    Run, RunSpec, Started, WaitMode, DEFAULT_CACHE_TTL, NO_ROUTE,
};
#[cfg(feature = "webhook")]
pub use imggo_batch::{WebhookRegistration, WebhookRouter, WebhookSpec};
