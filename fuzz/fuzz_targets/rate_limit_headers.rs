//! `Retry-After` and `X-RateLimit-*` values as a hostile proxy might send them.
#![no_main]
use std::time::SystemTime;

use imggo_core::ratelimit::{parse_retry_after, MAX_RETRY_AFTER};
use imggo_core::RateLimitInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (a, b, c, d) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if let Some(wait) = parse_retry_after(a, SystemTime::now()) {
        assert!(wait <= MAX_RETRY_AFTER);
    }
    let header = |name: &str| match name {
        "x-ratelimit-limit" => Some(a),
        "x-ratelimit-remaining" => Some(b),
        "x-ratelimit-reset" => Some(c),
        "retry-after" => Some(d),
        _ => None,
    };
    let _ = RateLimitInfo::from_headers(header, SystemTime::now());
});
