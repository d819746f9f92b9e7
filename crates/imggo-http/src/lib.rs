//! # imggo-http
//!
//! The transport and typed client of imggo-rs: one pooled hyper connection pool (HTTP/1.1
//! keep-alive, HTTP/2 through ALPN, rustls on `ring`), gzip responses, retries through
//! [`imggo_core::RetryPolicy`] with [`DefaultRetry`] built in, rate-limit headers published
//! to an [`imggo_core::RateLimitObserver`], and every ImgGo endpoint as an async method.
//! Webhooks are checked with [`verify_signature`] or received by a [`WebhookReceiver`].
//!
//! ```no_run
//! use imggo_http::{Client, IngestOptions, PollPolicy};
//!
//! # async fn run() -> Result<(), imggo_core::Error> {
//! let client = Client::builder()
//!     .base_url("https://img-go.com/api")
//!     .api_key("imggo_...")
//!     .build()?;
//! let image = std::fs::read("invoice.jpg").map_err(|source| imggo_core::Error::Io {
//!     path: "invoice.jpg".into(),
//!     source,
//! })?;
//! // The idempotency key is derived from pattern + content: a retry or a re-run never
//! // creates a second job for the same image.
//! let accepted = client.ingest_bytes("pattern-id", image.into(), IngestOptions::default()).await?;
//! let job = client.wait_for_job(&accepted.response.job_id, &PollPolicy::default()).await?;
//! println!("{:?}", job.manifest);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs, missing_debug_implementations)]

mod account;
mod builder;
mod client;
mod ingest;
mod jobs;
mod multipart;
mod patterns;
mod pool;
#[cfg(feature = "receiver")]
mod receiver;
mod retry;
mod signature;
mod transport;

pub use account::WEBHOOK_ATTEMPTS;
pub use builder::{ClientBuilder, TlsRoots, API_KEY_ENV, DEFAULT_BASE_URL};
pub use client::{Client, TransportStats};
/// The format an upload is sniffed as (from imggo-core, shared with the optimizer).
pub use imggo_core::format::ImageFormat;
/// The precise sleep [`Client::wait_for_job`] waits with (from imggo-core).
pub use imggo_core::timer;
pub use ingest::{Accepted, IngestOptions, MAX_UPLOAD_BYTES};
pub use jobs::{FormattedResult, PollPolicy, Waited, MAX_UNREADABLE_ANSWERS};
#[cfg(feature = "receiver")]
pub use receiver::{ReceiverOptions, ReceiverStats, WebhookReceiver};
pub use retry::DefaultRetry;
pub use signature::{sign, verify_signature, SIGNATURE_HEADER};
