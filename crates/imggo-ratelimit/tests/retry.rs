//! `retry` with the real Backoff policy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use imggo_core::{ApiError, Error};
use imggo_ratelimit::{as_is, retry, Backoff, ErrorView, RetryBudget};

fn api(status: u16) -> Error {
    Error::Api(Box::new(ApiError {
        status,
        code: imggo_core::error::code_for_status(status),
        message: "test".into(),
        request_id: None,
        retry_after: None,
        details: None,
    }))
}

fn fast() -> Backoff {
    Backoff::new(Duration::from_millis(1), Duration::from_millis(4))
        .unwrap()
        .with_max_attempts(10)
        .with_budget(None)
}

#[tokio::test]
async fn stops_at_once_on_a_fatal_error() {
    let calls = AtomicU32::new(0);
    let out: Result<(), Error> = retry(
        || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(api(422)) }
        },
        &fast(),
        as_is,
    )
    .await;
    assert_eq!(out.unwrap_err().status(), Some(422));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn retries_transient_errors_until_max_attempts() {
    let calls = AtomicU32::new(0);
    let out: Result<(), Error> = retry(
        || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(api(503)) }
        },
        &fast().with_max_attempts(4),
        as_is,
    )
    .await;
    assert_eq!(
        out.unwrap_err().status(),
        Some(503),
        "the last error comes back"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 4);
}

#[derive(Debug)]
enum MyError {
    Flaky,
    Broken,
}

/// A classifier for a foreign error type. (A `fn`, or a closure written inline in the
/// call, gets the higher-ranked signature `retry` asks for.)
fn classify(e: &MyError) -> ErrorView<'_> {
    match e {
        MyError::Flaky => Error::Transport {
            kind: imggo_core::TransportKind::ConnectionReset,
            message: "flaky".into(),
        }
        .into(),
        MyError::Broken => Error::Config("broken".into()).into(),
    }
}

#[tokio::test]
async fn any_error_type_through_classify_and_budget_refunds() {
    let budget = Arc::new(RetryBudget::new(10, 5, 10, 5));
    let policy = fast().with_budget(Some(budget.clone()));
    // Two flaky failures cost the whole budget; the third attempt succeeds.
    let calls = AtomicU32::new(0);
    let out = retry(
        || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(MyError::Flaky)
                } else {
                    Ok(n)
                }
            }
        },
        &policy,
        classify,
    )
    .await;
    assert_eq!(out.unwrap(), 2);
    assert_eq!(budget.available(), 5, "10 - 2·5 + one refund of 5");
    // With the budget at 5, only one retry is paid for: 2 calls, then give up.
    let calls = AtomicU32::new(0);
    let out: Result<(), MyError> = retry(
        || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(MyError::Flaky) }
        },
        &policy,
        classify,
    )
    .await;
    assert!(matches!(out, Err(MyError::Flaky)));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(budget.available(), 0);
    // Errors the classifier calls fatal are never retried.
    let calls = AtomicU32::new(0);
    let out: Result<(), MyError> = retry(
        || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(MyError::Broken) }
        },
        &fast(),
        classify,
    )
    .await;
    assert!(matches!(out, Err(MyError::Broken)));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn retry_after_floor_is_slept() {
    let mut e = api(429);
    if let Error::Api(a) = &mut e {
        a.retry_after = Some(Duration::from_millis(120));
    }
    let first = std::sync::Mutex::new(Some(e));
    let start = std::time::Instant::now();
    let out: Result<(), Error> = retry(
        || {
            let r = first.lock().unwrap().take();
            async move { r.map_or(Ok(()), Err) }
        },
        &fast(),
        as_is,
    )
    .await;
    out.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(120),
        "{:?}",
        start.elapsed()
    );
}
