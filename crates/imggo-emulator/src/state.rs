//! The emulator's shared state: users, patterns, jobs, idempotency keys, webhooks.
//!
//! Jobs live in a sharded map so that polls of different jobs rarely meet on a lock; every
//! lock is held only to read or swap a few fields. A job keeps its JSON answer rendered, so
//! a poll is a map lookup and a reference-counted clone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use imggo_core::{Job, Pattern, Secret, Webhook};
use tokio::sync::watch;

use crate::config::{Config, Dialect, DEFAULT_USER};
use crate::lifecycle::Plan;
use crate::limiter::Limiter;
use crate::render;
use crate::rng;
use crate::stats::Counters;

const SHARDS: usize = 16;

/// Kinds of generated ids (keep their streams apart).
pub(crate) mod id_kind {
    pub const PATTERN: u64 = 1;
    pub const JOB: u64 = 2;
    pub const WEBHOOK: u64 = 3;
    pub const API_KEY: u64 = 4;
    pub const DEMO_JOB: u64 = 5;
    pub const UPLOAD: u64 = 6;
}

/// The HTTP client for webhook deliveries and `image_url` fetches (plain HTTP).
pub(crate) type OutClient = Client<HttpConnector, Full<Bytes>>;

/// A job and what is needed to answer for it.
#[derive(Debug)]
pub(crate) struct JobRecord {
    pub job: Job,
    pub user: Arc<str>,
    /// `{success:true, data: job}` in the configured dialect, for the current state.
    pub body: Bytes,
    /// What finishing the job needs, until it is finished (see [`crate::lifecycle::settle`]).
    pub pending: Option<Plan>,
}

/// A job in [`State::job_order`].
#[derive(Debug, Clone)]
pub(crate) struct Created {
    pub user: Arc<str>,
    pub id: Arc<str>,
    pub at: Instant,
}

/// The job an idempotency key created.
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    pub job: Arc<str>,
    /// When the job was created.
    pub at: Instant,
    /// A racing duplicate was answered 500 already: later ones find the job.
    pub raced: bool,
}

/// A pattern and its owner.
#[derive(Debug, Clone)]
pub(crate) struct PatternRecord {
    pub pattern: Pattern,
    pub user: Arc<str>,
}

/// A webhook registration and its owner.
#[derive(Debug, Clone)]
pub(crate) struct WebhookRecord {
    pub hook: Webhook,
    pub secret: Secret,
    pub user: Arc<str>,
}

#[derive(Debug, Default)]
pub(crate) struct PatternStore {
    pub by_id: HashMap<String, PatternRecord>,
    /// Ids in creation order.
    pub order: Vec<String>,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No `Authorization: Bearer ...` header.
    Missing,
    /// A key that no user owns.
    Unknown,
}

/// Everything the handlers share.
pub(crate) struct State {
    pub config: Config,
    pub counters: Counters,
    keys: HashMap<String, Arc<str>>,
    default_user: Arc<str>,
    pub limiter: Limiter,
    pub patterns: Mutex<PatternStore>,
    jobs: Vec<Mutex<HashMap<Arc<str>, JobRecord>>>,
    /// Jobs in creation order.
    pub job_order: Mutex<VecDeque<Created>>,
    /// Idempotency key → its job; unique over all users, like the server's column.
    pub idempotency: Mutex<HashMap<String, KeyEntry>>,
    pub webhooks: Mutex<Vec<WebhookRecord>>,
    /// API keys created over `POST /api/api-keys` (they authenticate like configured keys).
    pub api_keys: Mutex<Vec<crate::api_keys::ApiKeyRecord>>,
    /// Jobs of `POST /api/demo/process`, by id.
    pub demo_jobs: Mutex<HashMap<String, crate::demo::DemoJob>>,
    /// When the demo ingests of the last hour were accepted (the demo's limit).
    pub demo_window: Mutex<std::collections::VecDeque<Instant>>,
    pub request_seq: AtomicU64,
    /// Turns among `max_requests` requests handled at once.
    pub turns: tokio::sync::Semaphore,
    /// Draws of the race-dup fault so far.
    pub race_seq: AtomicU64,
    seq: [AtomicU64; 8],
    pub shutdown: watch::Receiver<bool>,
    pub client: OutClient,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shard_of(id: &str) -> usize {
    // FNV-1a: ids are already random, any mixing will do.
    let mut h: u32 = 0x811c_9dc5;
    for &b in id.as_bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

impl State {
    pub(crate) fn new(config: Config, shutdown: watch::Receiver<bool>) -> Self {
        let mut keys = HashMap::new();
        for u in &config.users {
            let id: Arc<str> = Arc::from(u.id.as_str());
            for k in &u.keys {
                keys.insert(k.expose().to_owned(), id.clone());
            }
        }
        let default_user: Arc<str> =
            Arc::from(config.users.first().map_or(DEFAULT_USER, |u| u.id.as_str()));
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new()).build(http);
        let max_requests = config.max_requests;
        Self {
            limiter: Limiter::new(config.limits),
            config,
            counters: Counters::default(),
            keys,
            default_user,
            patterns: Mutex::default(),
            jobs: (0..SHARDS).map(|_| Mutex::default()).collect(),
            job_order: Mutex::default(),
            idempotency: Mutex::default(),
            webhooks: Mutex::default(),
            api_keys: Mutex::default(),
            demo_jobs: Mutex::default(),
            demo_window: Mutex::default(),
            request_seq: AtomicU64::new(0),
            race_seq: AtomicU64::new(0),
            turns: tokio::sync::Semaphore::new(max_requests),
            seq: Default::default(),
            shutdown,
            client,
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.config.dialect
    }

    /// The user in-process helpers act as.
    pub(crate) fn default_user(&self) -> Arc<str> {
        self.default_user.clone()
    }

    /// A fresh id of `kind`, deterministic for the seed and the creation order.
    pub(crate) fn next_id(&self, kind: u64) -> (u64, String) {
        let n = self.seq[kind as usize].fetch_add(1, Ordering::Relaxed);
        (n, rng::uuid(self.config.seed, kind, n))
    }

    /// The user of an `Authorization` header.
    pub(crate) fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Arc<str>, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        let text = raw.to_str().map_err(|_| AuthError::Unknown)?.trim();
        let (scheme, key) = text.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let key = key.trim();
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        if self.keys.is_empty() {
            return Ok(self.default_user.clone());
        }
        if let Some(user) = self.keys.get(key) {
            return Ok(user.clone());
        }
        crate::api_keys::authenticate(self, key).ok_or(AuthError::Unknown)
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, HashMap<Arc<str>, JobRecord>> {
        lock(&self.jobs[shard_of(id)])
    }

    /// Stores a new job (rendering its answer).
    pub(crate) fn insert_job(&self, job: Job, user: Arc<str>) -> Arc<str> {
        let id: Arc<str> = Arc::from(job.id.as_str());
        let body = render::job_envelope(&job, self.dialect());
        self.shard(&id).insert(
            id.clone(),
            JobRecord {
                job,
                user: user.clone(),
                body,
                pending: None,
            },
        );
        lock(&self.job_order).push_back(Created {
            user,
            id: id.clone(),
            at: Instant::now(),
        });
        id
    }

    /// Forgets the oldest jobs while there are more than `max_jobs` or the oldest is older
    /// than `job_ttl`, as long as the oldest is finished (an unfinished one finishes
    /// within its processing time and goes at a later call). Its idempotency key goes
    /// with it, so the idempotency map is bounded too. Call it with no lock held.
    pub(crate) fn evict(&self, now: Instant) {
        let mut keys = Vec::new();
        {
            let mut order = lock(&self.job_order);
            while let Some(Created { id, at, .. }) = order.front() {
                let expired = now.saturating_duration_since(*at) > self.config.job_ttl;
                if order.len() <= self.config.max_jobs && !expired {
                    break;
                }
                let mut shard = self.shard(id);
                let finished = shard
                    .get(id)
                    .is_none_or(|r| r.pending.is_none() && r.job.status.is_terminal());
                if !finished {
                    break;
                }
                if let Some(k) = shard.remove(id).and_then(|r| r.job.idempotency_key) {
                    keys.push((k, id.clone()));
                }
                drop(shard);
                order.pop_front();
                self.counters.jobs_evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !keys.is_empty() {
            let mut map = lock(&self.idempotency);
            for (k, id) in keys {
                if map.get(&k).is_some_and(|e| e.job == id) {
                    map.remove(&k);
                }
            }
        }
    }

    /// Parks what finishing job `id` needs, due at `plan.due()`.
    pub(crate) fn park(&self, id: &str, plan: Plan) {
        if let Some(rec) = self.shard(id).get_mut(id) {
            rec.pending = Some(plan);
        }
    }

    /// Takes the parked plan of job `id` if it is due by `now`: exactly one caller gets it,
    /// under one lock (every read of a job comes through here).
    pub(crate) fn unpark_due(&self, id: &str, now: Instant) -> Option<Plan> {
        let mut shard = self.shard(id);
        let pending = &mut shard.get_mut(id)?.pending;
        if pending.as_ref()?.due() > now {
            return None;
        }
        pending.take()
    }

    /// The rendered answer of a job, when `user` owns it.
    pub(crate) fn job_body(&self, id: &str, user: &str) -> Option<Bytes> {
        let shard = self.shard(id);
        let rec = shard.get(id)?;
        (*rec.user == *user).then(|| rec.body.clone())
    }

    /// A copy of a job, when `user` owns it (`None` user: any owner).
    pub(crate) fn job(&self, id: &str, user: Option<&str>) -> Option<Job> {
        let shard = self.shard(id);
        let rec = shard.get(id)?;
        user.is_none_or(|u| *rec.user == *u)
            .then(|| rec.job.clone())
    }

    /// Applies `change` to a job; when it says it changed something, stamps `updated_at` and
    /// re-renders the job's answer. Returns the job as it now is.
    pub(crate) fn update_job(
        &self,
        id: &str,
        change: impl FnOnce(&mut Job) -> bool,
    ) -> Option<Job> {
        let mut shard = self.shard(id);
        let rec = shard.get_mut(id)?;
        if change(&mut rec.job) {
            rec.job.updated_at = Some(now_rfc3339());
            rec.body = render::job_envelope(&rec.job, self.config.dialect);
        }
        Some(rec.job.clone())
    }

    /// A pattern owned by `user`.
    pub(crate) fn pattern(&self, id: &str, user: &str) -> Option<Pattern> {
        let store = lock(&self.patterns);
        let rec = store.by_id.get(id)?;
        (*rec.user == *user).then(|| rec.pattern.clone())
    }
}

/// Now, as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    imggo_core::time::format_rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_modes() {
        let (_tx, rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let open = State::new(Config::default(), rx.clone());
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(open.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            open.authenticate(Some(&h("Bearer "))),
            Err(AuthError::Missing)
        );
        assert_eq!(
            open.authenticate(Some(&h("Basic abc"))),
            Err(AuthError::Missing)
        );
        assert_eq!(
            open.authenticate(Some(&h("Bearer anything"))).as_deref(),
            Ok(DEFAULT_USER)
        );
        let closed = State::new(
            Config::default()
                .user_key("alice", "k1")
                .user_key("bob", "k2"),
            rx,
        );
        assert_eq!(
            closed.authenticate(Some(&h("bearer k2"))).as_deref(),
            Ok("bob")
        );
        assert_eq!(
            closed.authenticate(Some(&h("Bearer k3"))),
            Err(AuthError::Unknown)
        );
    }
}
