//! # imggo-batch
//!
//! The batch engine of imggo-rs: it assembles the layered crates (`imggo-core`,
//! `imggo-optimize`, `imggo-cache`, `imggo-ratelimit`, `imggo-http`) into the [`Pipeline`]:
//! read → hash → dedup → cache → optimise → limit → ingest → wait → cache put, one
//! [`ResultLine`] per input, then a [`Report`]. Most users reach it through the `imggo`
//! facade, which re-exports everything here.
//!
//! | stage | where |
//! |---|---|
//! | what to run: plain settings, and the pipeline built from them | [`spec`] ([`RunSpec`]) |
//! | builder, [`Concurrency`], [`WaitMode`] | `pipeline/builder.rs` ([`PipelineBuilder`]) |
//! | inputs: files, directories, lists, URLs | [`input`] |
//! | routing by name (globs) and by class (classification) | [`route`] ([`Routes`]) |
//! | prepare: read, hash, cache, optimise | `pipeline/prepare.rs` |
//! | send: limit and ingest | `pipeline/send.rs` |
//! | wait: poll, or webhook with polling as the fallback | `pipeline/wait.rs`, `webhook` |
//! | single flight of identical inputs in a run | `pipeline/flight.rs` |
//! | results file and resume | [`journal`] |
//! | summary and exit code | [`report`] |
//! | the HTML report (charts drawn from result lines) | [`report_html`] ([`HtmlReport`]) |
//! | alerts during the run: webhook, command | [`alert`] ([`Alerter`]) |
//! | metrics ([`Tracker`]), alert rules, Prometheus text | [`metrics`] |
//!
//! A [`RunSpec`] holds what the `imggo run` command reads from its flags; its
//! [`start`](RunSpec::start) builds the same pipeline the command runs (webhook
//! registration and its removal, the Redis dedup lease when the cache is Redis, the
//! `--rps` limiter, rate-limit headers fanned out to the pacer and the tracker).
//!
//! ## Features
//!
//! `redis` (Redis cache, dedup lease and shared limiter), `webhook` (results by signed
//! webhook), `metrics-server` (`metrics::serve`), `rustls` (HTTPS); all on by default.

#![deny(missing_docs, missing_debug_implementations)]

pub mod alert;
pub mod hooks;
pub mod input;
pub mod journal;
pub mod metrics;
pub mod pipeline;
mod read;
pub mod report;
pub mod report_html;
pub mod route;
pub mod spec;
mod timing;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use alert::{AlertEvent, AlertSinks, AlertState, Alerter};
pub use hooks::{CountingRetry, Observers};
pub use input::{Input, Inputs, RoutedInput, RoutedInputs};
pub use journal::{ErrorInfo, Journal, ResultLine, ResumeKey};
pub use metrics::{Alert, AlertRules, LatencySummary, Outcome, Severity, Snapshot, Tracker};
pub use pipeline::{Concurrency, Pipeline, PipelineBuilder, Run, WaitMode, DEFAULT_CACHE_TTL};
pub use read::read_bounded;
pub use report::{PaceSummary, Report};
pub use report_html::HtmlReport;
pub use route::{ClassifySpec, Route, Routes, NO_ROUTE};
pub use spec::{ConcurrencySpec, RunSpec, Started};
#[cfg(feature = "webhook")]
pub use spec::{WebhookRegistration, WebhookSpec};
#[cfg(feature = "webhook")]
pub use webhook::WebhookRouter;
