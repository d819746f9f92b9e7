//! Account-level answers: usage and health.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /api/user/usage`. The server's shape is only loosely documented, so every field is
/// optional and unknown fields are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Monthly request counts.
    #[serde(default)]
    pub requests: Option<UsageRequests>,
    /// Minimum gap between ingests.
    #[serde(default, rename = "burstLimit", alias = "burst_limit")]
    pub burst_limit: Option<BurstLimit>,
    /// Plan limits.
    #[serde(default)]
    pub limits: Option<UsageLimits>,
    /// Everything else the server sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Monthly request counts of [`Usage`]; `-1` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageRequests {
    /// Used this period.
    #[serde(default)]
    pub used: i64,
    /// Allowed per period (`-1` = unlimited).
    #[serde(default)]
    pub limit: i64,
    /// Left this period (`-1` = unlimited).
    #[serde(default)]
    pub remaining: i64,
}

/// Minimum interval between ingests, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BurstLimit {
    /// Seconds between two ingests (0 = none).
    #[serde(default)]
    pub seconds: f64,
}

/// Plan limits of [`Usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageLimits {
    /// Largest image the plan accepts, in bytes (soft).
    #[serde(default, rename = "maxImageSize", alias = "max_image_size")]
    pub max_image_size: Option<u64>,
}

/// `GET /api/_health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// When it was measured.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Per-service state (`up`/`down`).
    #[serde(default)]
    pub services: Option<serde_json::Map<String, Value>>,
}
