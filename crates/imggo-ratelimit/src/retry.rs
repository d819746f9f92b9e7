//! [`retry`]: run any async operation under a [`RetryPolicy`].

use std::future::Future;
use std::ops::Deref;
use std::time::Instant;

use imggo_core::{Error, RetryPolicy};

/// Runs `op` until it succeeds or `policy` gives up, sleeping between attempts.
///
/// `classify` turns the operation's error into an [`imggo_core::Error`] that the policy can
/// judge (retryable or not, `Retry-After`); for operations that already fail with
/// `imggo_core::Error` pass [`as_is`]. Give `classify` as a `fn` or as a closure written
/// in the call (a closure first stored in a variable does not get the higher-ranked
/// signature `for<'e> Fn(&'e E) -> ErrorView<'e>` and fails to type-check). On success the policy's
/// [`RetryPolicy::on_success`] is called (retry budgets refund there). When the policy
/// gives up, the last error is returned unchanged.
///
/// ```
/// use std::time::Duration;
/// use imggo_core::Error;
/// use imggo_ratelimit::{retry, as_is, Backoff};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let policy = Backoff::new(Duration::from_millis(1), Duration::from_millis(5)).unwrap();
/// let mut calls = 0;
/// let out: Result<u32, Error> = retry(
///     || {
///         calls += 1;
///         let n = calls;
///         async move {
///             if n < 3 {
///                 Err(Error::Timeout { what: "attempt", after: Duration::from_millis(1) })
///             } else {
///                 Ok(n)
///             }
///         }
///     },
///     &policy,
///     as_is,
/// )
/// .await;
/// assert_eq!(out.unwrap(), 3);
/// # });
/// ```
pub async fn retry<T, E, Op, Fut, P, C>(mut op: Op, policy: &P, classify: C) -> Result<T, E>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: RetryPolicy + ?Sized,
    C: Fn(&E) -> ErrorView<'_>,
{
    let start = Instant::now();
    let mut failures = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                policy.on_success();
                return Ok(v);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = {
                    let judged = classify(&e);
                    policy.next_delay(failures, start.elapsed(), &judged)
                };
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(e),
                }
            }
        }
    }
}

/// The `classify` for operations whose error already is an [`imggo_core::Error`].
pub fn as_is(e: &Error) -> ErrorView<'_> {
    ErrorView::Borrowed(e)
}

/// What `classify` gives [`retry`]: the operation's error seen as an [`imggo_core::Error`],
/// borrowed when it is one, or built for the occasion (`imggo_core::Error` is not `Clone`,
/// so this plays the part of a `Cow`).
#[derive(Debug)]
pub enum ErrorView<'a> {
    /// The operation's own error.
    Borrowed(&'a Error),
    /// An error made to describe it, e.g. `Error::Timeout { .. }` for a client timeout.
    Owned(Error),
}

impl Deref for ErrorView<'_> {
    type Target = Error;
    fn deref(&self) -> &Error {
        match self {
            Self::Borrowed(e) => e,
            Self::Owned(e) => e,
        }
    }
}

impl<'a> From<&'a Error> for ErrorView<'a> {
    fn from(e: &'a Error) -> Self {
        Self::Borrowed(e)
    }
}

impl From<Error> for ErrorView<'_> {
    fn from(e: Error) -> Self {
        Self::Owned(e)
    }
}
