//! # imggo
//!
//! The facade of imggo-rs: re-exports the layered crates ([`core`], [`optimize`],
//! [`cache`], [`ratelimit`], [`http`], [`emulator`]) and assembles them into the batch
//! [`Pipeline`]: read → hash → dedup → cache → optimise → limit → ingest → wait → cache put,
//! one [`ResultLine`] per input, then a [`Report`].
//!
//! ```
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
//! ```

#![warn(missing_docs)]
#![deny(missing_debug_implementations)]

pub mod hooks;
pub mod input;
pub mod journal;
pub mod metrics;
pub mod pipeline;
mod read;
pub mod report;
pub mod synth;
mod timing;
pub mod webhook;

pub use imggo_cache as cache;
pub use imggo_core as core;
pub use imggo_emulator as emulator;
pub use imggo_http as http;
pub use imggo_optimize as optimize;
pub use imggo_ratelimit as ratelimit;

pub use hooks::CountingRetry;
pub use input::{Input, Inputs};
pub use journal::{ErrorInfo, Journal, ResultLine, ResumeKey};
pub use pipeline::{Concurrency, Pipeline, PipelineBuilder, Run, WaitMode, DEFAULT_CACHE_TTL};
pub use read::read_bounded;
pub use report::{PaceSummary, Report};
pub use webhook::WebhookRouter;
