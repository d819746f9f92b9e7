//! # imggo-core
//!
//! The leaf crate of imggo-rs: the ImgGo API's wire types (both the server's and the
//! docs' dialects), the one [`Error`] type, content hashing and cache keys, deterministic
//! idempotency keys, rate-limit header parsing and a precise sleep. No async
//! runtime and no HTTP stack by default (the `server` feature adds `server::accept_loop`, the one
//! accept loop of the workspace's HTTP servers): every other imggo crate builds on this one.
//!
//! ```
//! use imggo_core::{ContentHash, IdempotencyKey, Job, JobStatus, Envelope};
//!
//! // Both dialects of a job parse into one type.
//! let server: Envelope<Job> = serde_json::from_str(
//!     r#"{"success":true,"data":{"id":"j1","status":"succeeded","manifest":{"total":12.5}}}"#,
//! ).unwrap();
//! let docs: Job = serde_json::from_str(
//!     r#"{"job_id":"j1","status":"completed","result":{"total":12.5}}"#,
//! ).unwrap();
//! assert_eq!(server.data.status, JobStatus::Succeeded);
//! assert_eq!(server.data.manifest, docs.manifest);
//!
//! // The same image and pattern always give the same idempotency key.
//! let hash = ContentHash::of(b"...image bytes...");
//! let key = IdempotencyKey::derive("pattern-id", &hash, None);
//! assert!(key.as_str().starts_with("imggo-"));
//! ```

#![deny(missing_docs, missing_debug_implementations)]

/// `Serialize` as `self.as_str()` and `Deserialize` through `Self::parse(&str)`, for the
/// wire enums whose unknown values are kept rather than refused.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }
    };
}

pub mod account;
pub mod backoff;
pub mod counters;
pub mod envelope;
pub mod error;
pub mod format;
pub mod hash;
pub mod idempotency;
pub mod job;
pub mod pattern;
pub mod policy;
pub mod ratelimit;
pub mod secret;
#[cfg(feature = "server")]
pub mod server;
pub mod time;
pub mod timer;
pub mod url;
pub mod webhook;

pub use account::{BurstLimit, Health, Usage, UsageLimits, UsageRequests};
pub use envelope::{Envelope, ErrorBody, MessageResponse, Page, Pagination, QuotaLimit};
pub use error::{ApiError, Error, ErrorCode, Result, TransportKind};
pub use format::ImageFormat;
pub use hash::{CacheKey, ContentHash, SettingsFingerprint};
pub use idempotency::IdempotencyKey;
pub use job::{
    IngestRequest, IngestResponse, Job, JobError, JobStatus, JsonManifest, Manifest, ResultFormat,
};
pub use pattern::{
    CreatePattern, ListPatterns, Pattern, PatternFormat, PatternSchemas, UpdatePattern,
};
pub use policy::{RateLimitObserver, RetryPolicy};
pub use ratelimit::{Quota, RateLimitInfo, Severity};
pub use secret::{redact_url, Secret};
pub use webhook::{CreateWebhook, EventKind, Webhook, WebhookEvent};
