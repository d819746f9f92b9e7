//! The [`Limiter`] trait that the facade calls before each ingest, and [`Chain`].

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::LimitError;

/// Something that decides when the next request may go.
///
/// # Execution model
///
/// The caller (the imggo facade, or any code sending requests) awaits
/// [`Limiter::acquire`] once **before each request** it sends. The future resolves when
/// the request may go now; it sleeps on the tokio timer in between (never spins), so a
/// tokio runtime with the time driver must be running.
///
/// - `Ok(())`: send the request now. Admission is not refundable: a request that is not
///   sent after all simply leaves its slot unused (limiters err on the safe side).
/// - `Err(LimitError)`: do not send; the error says why (the wait would exceed a cap, a
///   backend is down under fail-closed, an impossible request). Map it into
///   [`imggo_core::Error`] with `?`/`From` to report it per input.
///
/// Dropping the future before it resolves (a timeout, a cancelled batch) is safe: no
/// permit is leaked and no other waiter loses its wake-up; a slot already reserved by the
/// dropped caller stays unused.
///
/// Implementations are `Send + Sync` and meant to be shared behind an [`Arc`]: one limiter
/// object can serve the submit and the poll paths of a batch at the same time. Implemented
/// by [`TokenBucket`](crate::TokenBucket) (local rate), [`HeaderPacer`](crate::HeaderPacer)
/// (follows the server's headers), [`RedisLimiter`](crate::RedisLimiter) (shared between
/// processes) and [`Chain`] (all of several). `Arc<L>`, `Box<L>` and `&L` are limiters
/// when `L` is, so `Arc<dyn Limiter>` works everywhere.
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Waits until one request may be sent.
    async fn acquire(&self) -> Result<(), LimitError>;
}

#[async_trait]
impl<L: Limiter + ?Sized> Limiter for Arc<L> {
    async fn acquire(&self) -> Result<(), LimitError> {
        (**self).acquire().await
    }
}

#[async_trait]
impl<L: Limiter + ?Sized> Limiter for Box<L> {
    async fn acquire(&self) -> Result<(), LimitError> {
        (**self).acquire().await
    }
}

#[async_trait]
impl<L: Limiter + ?Sized> Limiter for &L {
    async fn acquire(&self) -> Result<(), LimitError> {
        (**self).acquire().await
    }
}

/// Several limiters that must all admit a request, asked in order.
///
/// A request passes the first limiter, then waits on the second, and so on; the first
/// error stops the chain. Because a slot taken in an earlier limiter is not given back
/// while a later one makes the caller wait, put the limiter that waits longest first
/// (typically the [`HeaderPacer`](crate::HeaderPacer) or the
/// [`RedisLimiter`](crate::RedisLimiter)), and a local [`TokenBucket`](crate::TokenBucket)
/// last. An empty chain admits everything at once.
///
/// ```
/// use std::sync::Arc;
/// use imggo_ratelimit::{Chain, Limiter, TokenBucket};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let chain = Chain::new()
///     .with(Arc::new(TokenBucket::new(100.0, 10).unwrap()))
///     .with(Arc::new(TokenBucket::new(1000.0, 1).unwrap()));
/// chain.acquire().await.unwrap();
/// assert_eq!(chain.len(), 2);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct Chain {
    limiters: Vec<Arc<dyn Limiter>>,
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a limiter.
    pub fn with(mut self, limiter: Arc<dyn Limiter>) -> Self {
        self.limiters.push(limiter);
        self
    }

    /// Appends a limiter in place.
    pub fn push(&mut self, limiter: Arc<dyn Limiter>) {
        self.limiters.push(limiter);
    }

    /// How many limiters are chained.
    pub fn len(&self) -> usize {
        self.limiters.len()
    }

    /// True when nothing is chained (every request is admitted at once).
    pub fn is_empty(&self) -> bool {
        self.limiters.is_empty()
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("limiters", &self.limiters.len())
            .finish()
    }
}

impl FromIterator<Arc<dyn Limiter>> for Chain {
    fn from_iter<I: IntoIterator<Item = Arc<dyn Limiter>>>(iter: I) -> Self {
        Self {
            limiters: iter.into_iter().collect(),
        }
    }
}

#[async_trait]
impl Limiter for Chain {
    async fn acquire(&self) -> Result<(), LimitError> {
        for l in &self.limiters {
            l.acquire().await?;
        }
        Ok(())
    }
}
