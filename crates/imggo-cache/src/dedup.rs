//! [`Deduper`]: single-flight per cache key, within a process and across workers.
//!
//! Identical images cost one API call: while one caller (the *leader*) runs the upstream
//! call for a key, every other caller for the same key (a *follower*) waits for the
//! leader's result instead of calling too.
//!
//! - **In-process**: the first caller registers a flight; later callers subscribe to it
//!   (a `tokio::sync::watch` channel) and receive a clone of the result, errors included
//!   (shared as `Arc<E>`). If the leader's future is dropped, a follower takes over.
//! - **Across workers** (with [`Deduper::with_redis`]): the local leader claims a lease
//!   with `SET {lease} {token} NX PX {lease}`. The winner runs the call, renews the lease
//!   while it runs (a renewal that finds the lease gone or taken over counts as a lost
//!   lease, [`DedupStats::leases_lost`], and renewing stops), publishes the result under a
//!   result key (JSON, short TTL, `NX`: the first published result is the one every
//!   worker returns) and releases
//!   the lease with a compare-and-delete script (so it never deletes another worker's
//!   lease). The others poll the result key; if the lease disappears without a result (the
//!   leader failed or died and its lease expired), one of them claims it and runs the call.
//!   If Redis is unreachable, or the wait passes [`DedupOptions::max_wait`], a worker runs
//!   the call itself: dedup is an optimisation and never blocks a batch.
//!
//! Keys: `imggo:v1:{pattern_digest}:dedup:{key_digest}:lease` and `…:result`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(feature = "redis")]
use std::time::Instant;

use imggo_core::CacheKey;
#[cfg(feature = "redis")]
use redis::Script;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

#[cfg(feature = "redis")]
use crate::redis_link::RedisLink;

/// Who produced a result a [`Deduper`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// This caller ran the upstream call.
    Leader,
    /// Another caller (in this process or another worker) ran it; report this one as a
    /// duplicate.
    Follower,
}

/// Timing of the cross-worker lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupOptions {
    /// How long a claim lasts without renewal: how soon a dead worker's claim is taken
    /// over. The leader renews it every third of this while its call runs.
    pub lease: Duration,
    /// How often a waiting worker checks for the result.
    pub poll: Duration,
    /// After waiting this long for another worker, run the call anyway.
    pub max_wait: Duration,
    /// How long a published result stays for late followers.
    pub result_ttl: Duration,
}

impl Default for DedupOptions {
    /// Lease 30 s, poll 50 ms, max wait 10 min, result TTL 10 min.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(50),
            max_wait: Duration::from_secs(600),
            result_ttl: Duration::from_secs(600),
        }
    }
}

/// Counters of a [`Deduper`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Calls that ran upstream.
    pub leaders: u64,
    /// Calls answered by another caller's result.
    pub followers: u64,
    /// Of those, answered by another worker through Redis.
    pub remote_followers: u64,
    /// Callers waiting right now (for a local flight or another worker's lease).
    pub waiting: u64,
    /// Calls run without cross-worker coordination because Redis failed or the wait
    /// passed `max_wait`.
    pub fallbacks: u64,
    /// Leases lost while their call ran: the renewal found another worker's claim (or
    /// none), or Redis failed for longer than the lease. Another worker may then have
    /// run the same call; the first published result is the one every worker returns.
    pub leases_lost: u64,
}

type Shared<T, E> = Option<Result<T, Arc<E>>>;

/// Single-flight for results of type `T` and errors `E`; see the [module docs](self).
pub struct Deduper<T, E> {
    flights: Mutex<HashMap<u128, watch::Receiver<Shared<T, E>>>>,
    remote: Option<Remote>,
    leaders: AtomicU64,
    followers: AtomicU64,
    remote_followers: AtomicU64,
    waiting: AtomicU64,
    fallbacks: AtomicU64,
    leases_lost: AtomicU64,
}

#[cfg(feature = "redis")]
struct Remote {
    link: RedisLink,
    options: DedupOptions,
    release: Script,
    renew: Script,
    token_prefix: String,
    seq: AtomicU64,
}

#[cfg(feature = "redis")]
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

#[cfg(feature = "redis")]
const RENEW_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

#[cfg(feature = "redis")]
/// What became of a result a leader published.
enum Published {
    Stored,
    /// Another worker's result was there first.
    Taken,
    Failed,
}

/// Counts a waiting caller for as long as it lives.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::SeqCst);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Removes the leader's flight when it finishes or is dropped.
struct Flight<'a, T, E> {
    flights: &'a Mutex<HashMap<u128, watch::Receiver<Shared<T, E>>>>,
    id: u128,
}

impl<T, E> Drop for Flight<'_, T, E> {
    fn drop(&mut self) {
        lock(self.flights).remove(&self.id);
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    // A panic elsewhere while holding the lock leaves the map itself consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Turn<T, E> {
    Lead(watch::Sender<Shared<T, E>>),
    Follow(watch::Receiver<Shared<T, E>>),
}

impl<T, E> Deduper<T, E>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// In-process single-flight only.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// In-process single-flight plus a Redis lease shared with other workers.
    #[cfg(feature = "redis")]
    pub fn with_redis(link: RedisLink, options: DedupOptions) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let token_prefix = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                format!("{}:{nanos}:{:p}", std::process::id(), &nanos).as_bytes()
            )
        );
        Self::build(Some(Remote {
            link,
            options,
            release: Script::new(RELEASE_LUA),
            renew: Script::new(RENEW_LUA),
            token_prefix,
            seq: AtomicU64::new(0),
        }))
    }

    fn build(remote: Option<Remote>) -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            remote,
            leaders: AtomicU64::new(0),
            followers: AtomicU64::new(0),
            remote_followers: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            leases_lost: AtomicU64::new(0),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DedupStats {
        DedupStats {
            leaders: self.leaders.load(Ordering::SeqCst),
            followers: self.followers.load(Ordering::SeqCst),
            remote_followers: self.remote_followers.load(Ordering::SeqCst),
            waiting: self.waiting.load(Ordering::SeqCst),
            fallbacks: self.fallbacks.load(Ordering::SeqCst),
            leases_lost: self.leases_lost.load(Ordering::SeqCst),
        }
    }

    /// Runs `call` for `key` unless another caller already is, and returns its result
    /// with this caller's [`Role`]. Followers of a failed leader receive the same error.
    pub async fn run<F, Fut>(&self, key: &CacheKey, call: F) -> Result<(T, Role), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let id = key.digest().as_u128();
        let mut call = Some(call);
        loop {
            let turn = {
                let mut flights = lock(&self.flights);
                match flights.get(&id) {
                    Some(rx) => Turn::Follow(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(id, rx);
                        Turn::Lead(tx)
                    }
                }
            };
            match turn {
                Turn::Follow(mut rx) => {
                    let waiting = Waiting::new(&self.waiting);
                    let outcome = rx.wait_for(Option::is_some).await.map(|v| v.clone());
                    drop(waiting);
                    match outcome {
                        Ok(Some(result)) => {
                            self.followers.fetch_add(1, Ordering::SeqCst);
                            return result.map(|t| (t, Role::Follower));
                        }
                        // The leader was dropped before it finished: try to lead.
                        _ => continue,
                    }
                }
                Turn::Lead(tx) => {
                    let _flight = Flight {
                        flights: &self.flights,
                        id,
                    };
                    let call = call.take().expect("only a leader takes the call, once");
                    let out = self.lead(key, call).await;
                    tx.send_replace(Some(out.clone().map(|(t, _)| t)));
                    return out;
                }
            }
        }
    }

    #[cfg(not(feature = "redis"))]
    async fn lead<F, Fut>(&self, _key: &CacheKey, call: F) -> Result<(T, Role), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_here(call).await
    }

    #[cfg(feature = "redis")]
    async fn lead<F, Fut>(&self, key: &CacheKey, call: F) -> Result<(T, Role), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Some(remote) = &self.remote else {
            return self.run_here(call).await;
        };
        let names = LeaseNames::new(key);
        let token = format!(
            "{}-{}",
            remote.token_prefix,
            remote.seq.fetch_add(1, Ordering::Relaxed)
        );
        let started = Instant::now();
        let mut waiting = None;
        loop {
            match remote.published::<T>(&names).await {
                Ok(Some(t)) => return Ok(self.remote_follow(t)),
                Ok(None) => {}
                Err(()) => return self.fall_back(call).await,
            }
            match remote.claim(&names, &token).await {
                Ok(true) => {
                    drop(waiting);
                    // The previous leader may have published just before its release.
                    if let Ok(Some(t)) = remote.published::<T>(&names).await {
                        remote.release(&names, &token).await;
                        return Ok(self.remote_follow(t));
                    }
                    self.leaders.fetch_add(1, Ordering::SeqCst);
                    let (result, held) = remote.run_renewing(&names, &token, call()).await;
                    if !held {
                        self.leases_lost.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(t) = &result {
                        // Another worker that took the lease over may have published
                        // first: its result is the one every worker returns.
                        if let Published::Taken = remote.publish(&names, t).await {
                            if let Ok(Some(theirs)) = remote.published::<T>(&names).await {
                                remote.release(&names, &token).await;
                                return Ok(self.remote_follow(theirs));
                            }
                        }
                    }
                    remote.release(&names, &token).await;
                    return result.map(|t| (t, Role::Leader)).map_err(Arc::new);
                }
                Ok(false) => {}
                Err(()) => return self.fall_back(call).await,
            }
            if started.elapsed() >= remote.options.max_wait {
                tracing::warn!(
                    target: "imggo_cache::dedup",
                    "waited {:?} for another worker; running the call here",
                    remote.options.max_wait
                );
                return self.fall_back(call).await;
            }
            waiting.get_or_insert_with(|| Waiting::new(&self.waiting));
            tokio::time::sleep(remote.options.poll).await;
        }
    }

    #[cfg(feature = "redis")]
    fn remote_follow(&self, t: T) -> (T, Role) {
        self.followers.fetch_add(1, Ordering::SeqCst);
        self.remote_followers.fetch_add(1, Ordering::SeqCst);
        (t, Role::Follower)
    }

    async fn run_here<F, Fut>(&self, call: F) -> Result<(T, Role), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.leaders.fetch_add(1, Ordering::SeqCst);
        call().await.map(|t| (t, Role::Leader)).map_err(Arc::new)
    }

    #[cfg(feature = "redis")]
    async fn fall_back<F, Fut>(&self, call: F) -> Result<(T, Role), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.fallbacks.fetch_add(1, Ordering::SeqCst);
        self.run_here(call).await
    }
}

impl<T, E> Default for Deduper<T, E>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

/// Without the `redis` feature there is no lease: `remote` is always `None`.
#[cfg(not(feature = "redis"))]
enum Remote {}

impl<T, E> Deduper<T, E> {
    /// The Redis server of the lease (password masked), if any.
    fn redis_url(&self) -> Option<&str> {
        #[cfg(feature = "redis")]
        return self.remote.as_ref().map(|r| r.link.url());
        #[cfg(not(feature = "redis"))]
        return self.remote.as_ref().map(|r| match *r {});
    }
}

impl<T, E> std::fmt::Debug for Deduper<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduper")
            .field("redis", &self.redis_url())
            .finish_non_exhaustive()
    }
}

/// The Redis key names of one key's lease and result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseNames {
    /// The lease (claim) key.
    pub lease: String,
    /// The published result key.
    pub result: String,
}

impl LeaseNames {
    /// The names for `key`.
    pub fn new(key: &CacheKey) -> Self {
        let base = format!(
            "imggo:v1:{}:dedup:{}",
            key.pattern_digest(),
            key.digest().hex()
        );
        Self {
            lease: format!("{base}:lease"),
            result: format!("{base}:result"),
        }
    }
}

#[cfg(feature = "redis")]
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(feature = "redis")]
impl Remote {
    /// The published result, if any. `Err` means Redis is unusable.
    async fn published<T: DeserializeOwned>(&self, names: &LeaseNames) -> Result<Option<T>, ()> {
        let mut conn = self.link.conn();
        let raw: Option<Vec<u8>> = self
            .link
            .call(async {
                redis::cmd("GET")
                    .arg(&names.result)
                    .query_async(&mut conn)
                    .await
            })
            .await
            .map_err(|e| warn("result check failed", &e))?;
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// `SET lease token NX PX lease`: true when this worker now holds the lease.
    async fn claim(&self, names: &LeaseNames, token: &str) -> Result<bool, ()> {
        self.set_if_absent(&names.lease, token.as_bytes(), self.options.lease)
            .await
            .map_err(|e| warn("lease claim failed", &e))
    }

    /// `SET key value NX PX ttl`: true when this call stored the value, false when the
    /// key was already there.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, crate::CacheError> {
        let mut conn = self.link.conn();
        let set: Option<String> = self
            .link
            .call(async {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Runs `work` while renewing the lease every third of its length. Also says whether
    /// the lease was held throughout: a renewal that finds the lease gone or another
    /// worker's, or renewals failing for longer than the lease, mean it was not (the
    /// renewals stop then, so that another worker's claim is never extended).
    async fn run_renewing<T, E>(
        &self,
        names: &LeaseNames,
        token: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> (Result<T, E>, bool) {
        let every = self.options.lease / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut renewed_at = Instant::now();
        let mut held = true;
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return (result, held),
                _ = tick.tick(), if held => {
                    let mut conn = self.link.conn();
                    let mut inv = self.renew.key(&names.lease);
                    inv.arg(token).arg(millis(self.options.lease));
                    let renewed = self.link.call(async { inv.invoke_async::<u64>(&mut conn).await }).await;
                    match renewed {
                        Ok(1) => renewed_at = Instant::now(),
                        Ok(_) => {
                            held = false;
                            tracing::warn!(
                                target: "imggo_cache::dedup",
                                "lease lost while its call ran: another worker may run it too"
                            );
                        }
                        Err(e) => {
                            warn("lease renewal failed", &e);
                            if renewed_at.elapsed() >= self.options.lease {
                                held = false;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Stores `value` as the key's result unless one is there already (`SET NX`).
    async fn publish<T: Serialize>(&self, names: &LeaseNames, value: &T) -> Published {
        let Ok(payload) = serde_json::to_vec(value) else {
            return Published::Failed;
        };
        let stored = self
            .set_if_absent(&names.result, &payload, self.options.result_ttl)
            .await;
        match stored {
            Ok(true) => Published::Stored,
            Ok(false) => Published::Taken,
            Err(e) => {
                warn("result publish failed", &e);
                Published::Failed
            }
        }
    }

    /// Deletes the lease if it is still ours (compare-and-delete).
    async fn release(&self, names: &LeaseNames, token: &str) {
        let mut conn = self.link.conn();
        let mut inv = self.release.key(&names.lease);
        inv.arg(token);
        let released = self
            .link
            .call(async { inv.invoke_async::<u64>(&mut conn).await })
            .await;
        if let Err(e) = released {
            warn("lease release failed (it will expire)", &e);
        }
    }
}

#[cfg(feature = "redis")]
fn warn(what: &str, e: &crate::CacheError) {
    tracing::warn!(target: "imggo_cache::dedup", "dedup {what}: {e}");
}
