//! Property tests of the parsers that read what the network sends: the hand-written job
//! decoder against serde, the rate-limit headers and `Retry-After`, and webhook events.
//! Each property runs a few hundred generated cases (a few seconds in all).

use std::time::{Duration, SystemTime};

use imggo_core::ratelimit::{parse_retry_after, MAX_RETRY_AFTER};
use imggo_core::{Envelope, Job, RateLimitInfo, WebhookEvent};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// What serde makes of a job answer: the envelope, else a bare job.
fn serde_job(text: &str) -> Option<Job> {
    serde_json::from_str::<Envelope<Job>>(text)
        .map(|e| e.data)
        .or_else(|_| serde_json::from_str::<Job>(text))
        .ok()
}

/// Any JSON value, a few levels deep, with the strings and numbers manifests carry.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn job_json() -> impl Strategy<Value = Value> {
    (
        "[a-f0-9-]{1,36}",
        prop_oneof![
            Just("queued"),
            Just("processing"),
            Just("succeeded"),
            Just("failed"),
            Just("cancelled")
        ],
        prop_oneof![
            Just(Value::Null),
            prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ],
        prop::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(|(id, status, manifest, latency, envelope)| {
            let mut job = json!({ "id": id, "status": status, "manifest": manifest });
            if let Some(l) = latency {
                job["latency_ms"] = Value::from(l);
            }
            if envelope {
                json!({ "success": true, "data": job })
            } else {
                job
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A job the fast decoder reads is exactly the job serde reads.
    #[test]
    fn compact_decoder_agrees_with_serde_on_jobs(job in job_json()) {
        let text = serde_json::to_string(&job).unwrap();
        let fast = Job::from_compact_json(&text);
        let slow = serde_job(&text);
        if let Some(f) = &fast {
            prop_assert_eq!(Some(f), slow.as_ref());
        }
        // The server's plain shapes are taken by the fast path, not left to serde.
        if !text.contains('\\') {
            prop_assert!(fast.is_some() || slow.is_none(), "fast path gave up on {}", text);
        }
    }

    /// Whatever the text, the fast decoder never panics and never disagrees with serde.
    #[test]
    fn compact_decoder_never_disagrees_on_any_text(text in any::<String>()) {
        if let Some(f) = Job::from_compact_json(&text) {
            prop_assert_eq!(Some(f), serde_job(&text));
        }
    }

    /// `Retry-After` of any text: never a panic, never beyond the cap.
    #[test]
    fn retry_after_of_any_text_is_bounded(v in any::<String>()) {
        if let Some(d) = parse_retry_after(&v, SystemTime::now()) {
            prop_assert!(d <= MAX_RETRY_AFTER);
        }
    }

    /// Whole seconds read as themselves.
    #[test]
    fn retry_after_in_seconds_is_exact(n in 0u64..10_000_000) {
        prop_assert_eq!(
            parse_retry_after(&n.to_string(), SystemTime::now()),
            Some(Duration::from_secs(n))
        );
    }

    /// Rate-limit headers with any values (numbers out of range, negative, text) never
    /// panic.
    #[test]
    fn rate_limit_headers_of_any_value_parse_or_not(
        limit in any::<String>(),
        remaining in any::<String>(),
        reset in prop_oneof![any::<String>(), any::<f64>().prop_map(|f| f.to_string())],
        retry in any::<String>(),
    ) {
        let header = |name: &str| match name {
            "x-ratelimit-limit" => Some(limit.as_str()),
            "x-ratelimit-remaining" => Some(remaining.as_str()),
            "x-ratelimit-reset" => Some(reset.as_str()),
            "retry-after" => Some(retry.as_str()),
            _ => None,
        };
        let _ = RateLimitInfo::from_headers(header, SystemTime::now());
    }

    /// A webhook body of any bytes, and any `timestamp` in a well-formed one, is an event
    /// or an error, never a panic.
    #[test]
    fn webhook_events_of_any_shape_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..256),
        timestamp in prop_oneof![
            any::<f64>().prop_map(|f| json!(f)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<String>().prop_map(|s| json!(s)),
        ],
    ) {
        let _ = serde_json::from_slice::<WebhookEvent>(&body);
        let event = json!({
            "event": "job.succeeded",
            "job_id": "j1",
            "pattern_id": "p1",
            "timestamp": timestamp,
        });
        if let Ok(e) = serde_json::from_value::<WebhookEvent>(event) {
            let _ = e.sent_at();
        }
    }
}
