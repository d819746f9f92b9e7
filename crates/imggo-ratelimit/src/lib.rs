//! # imggo-ratelimit
//!
//! Everything that decides *when* a request to the ImgGo API may go, usable on its own:
//!
//! - [`Backoff`]: exponential backoff with full or decorrelated jitter, a server
//!   `Retry-After` as a floor, attempt and time limits and an AWS-style [`RetryBudget`];
//!   it implements [`imggo_core::RetryPolicy`]. [`retry()`] runs any async operation under
//!   a policy.
//! - [`Limiter`]: the one trait the facade awaits before each request, implemented by
//!   [`TokenBucket`] (local rate, lock-free GCRA), [`HeaderPacer`] (spreads the budget
//!   the server's `X-RateLimit-*` headers announce), [`RedisLimiter`] (one atomic Lua
//!   script shared by many processes) and [`Chain`] (all of several).
//! - [`AdaptiveConcurrency`]: a concurrency limit that grows while latency holds and
//!   shrinks on 429s, timeouts and latency inflation (AIMD).
//!
//! Every type is `Send + Sync` and meant to be shared behind an `Arc`, so one object
//! serves the submit and the poll paths of a batch.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use imggo_ratelimit::{Backoff, Chain, HeaderPacer, Limiter, TokenBucket};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pacer = Arc::new(HeaderPacer::new());         // fed by each response's headers
//! let local = Arc::new(TokenBucket::new(20.0, 5).unwrap()); // never more than 20/s here
//! let limiter = Chain::new().with(pacer.clone()).with(local);
//! let policy = Backoff::new(Duration::from_millis(200), Duration::from_secs(20)).unwrap();
//!
//! limiter.acquire().await.unwrap(); // before each ingest
//! // ... send it, then: pacer.observe(&info) with the response's RateLimitInfo,
//! // and on failure ask `policy` (a RetryPolicy) how long to wait.
//! # let _ = policy;
//! # });
//! ```

#![deny(missing_docs, missing_debug_implementations)]

pub mod adaptive;
pub mod backoff;
mod clock;
pub mod error;
pub mod learned;
pub mod limiter;
pub mod pacer;
#[cfg(feature = "redis")]
pub mod redis_limiter;
pub mod retry;
pub mod token_bucket;

pub use adaptive::{AdaptiveConcurrency, AdaptiveConfig, Permit};
pub use backoff::{Backoff, Jitter, RetryBudget};
pub use error::{ConfigError, LimitError};
pub use learned::{LearnedPacer, PaceConfig, PaceSource, PaceStatus};
pub use limiter::{Chain, Limiter};
pub use pacer::HeaderPacer;
#[cfg(feature = "redis")]
pub use redis_limiter::{Decision, FailureMode, RedisLimiter, Subject};
pub use retry::{as_is, retry, ErrorView};
pub use token_bucket::TokenBucket;
