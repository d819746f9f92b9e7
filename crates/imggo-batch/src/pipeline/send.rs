//! Stage 3, send: each attempt passes the limiters, then the ingest with the derived
//! idempotency key; a 429 waits its turn again, an exhausted quota ends every wait.

use super::*;

/// The pause before re-sending an ingest whose answer could not be read, times the
/// count of such answers so far: a proxy's page is usually gone within a second.
const UNREADABLE_PAUSE: Duration = Duration::from_millis(200);

impl Shared {
    /// Limiter, ingest, wait, cache put, result line.
    pub(super) async fn send_one(
        &self,
        p: Prepared,
        out: &mpsc::Sender<ResultLine>,
        permit: Option<Permit>,
        slot: &mut Slot,
    ) {
        let digest = p.flight;
        let request_started = Instant::now();
        let mut l = self.line(p.label.clone(), request_started, Outcome::Failed);
        l.content_hash = Some(p.hash.to_string());
        l.idempotency_salt = p.salt.clone();
        l.bytes_in = p.bytes_in;
        l.pattern_id = p.pattern_id.clone();
        l.pattern_version = Some(p.key.pattern_version);
        l.class = p.class.clone();
        l.classify_job_id = p.classify_job_id.clone();
        let mut spent = Spent::default();
        let mut key = p.key.clone();
        let mut result = self.stage(&p, &key, &mut l, slot, &mut spent).await;
        if p.classify {
            // Stage one was the classification: its class picks the extraction pattern.
            match self
                .after_classify(&p, result, &mut l, request_started)
                .await
            {
                Next::Done(line, error) => {
                    settle(permit, error.as_deref(), spent.ingest_rtt);
                    let mut line = *line;
                    line.waited_ms = Some(spent.paced.as_millis() as u64);
                    return self.finish(out, &digest, line).await;
                }
                Next::Cached(hit) => {
                    settle(permit, None, spent.ingest_rtt);
                    l.status = if p.repeat {
                        Outcome::Duplicate
                    } else {
                        Outcome::Cached
                    };
                    l.job_id = hit.job_id.clone();
                    l.manifest = Some(hit.manifest.to_value());
                    l.latency_ms = (p.prep + request_started.elapsed()).as_millis() as u64;
                    l.waited_ms = Some(spent.paced.as_millis() as u64);
                    return self.finish(out, &digest, l).await;
                }
                Next::Extract(k) => {
                    // `attempts` is the extraction's, as the report reads more than one
                    // as a retry; the classification's 429s and waits stay counted in
                    // `rate_limited` and `waited_ms`.
                    l.attempts = 0;
                    key = k;
                    result = self.stage(&p, &key, &mut l, slot, &mut spent).await;
                }
            }
        }
        settle(
            permit,
            result.as_ref().err().map(|e| &**e),
            spent.ingest_rtt,
        );
        match result {
            Ok((job, role)) => {
                let manifest = job.manifest.unwrap_or(Manifest::Json(Default::default()));
                if role == Role::Follower {
                    l.attempts = 0;
                    l.bytes_sent = 0;
                    p.span.record("job_id", field::display(&job.id));
                    tracing::debug!(
                        job_id = %job.id,
                        "answered by another worker's job (cross-worker dedup)"
                    );
                }
                l.status = if p.repeat || role == Role::Follower {
                    Outcome::Duplicate
                } else {
                    Outcome::Succeeded
                };
                l.job_id = Some(job.id.clone());
                l.manifest = Some(manifest.to_value());
                l.pattern_id = key.pattern_id.clone();
                l.pattern_version = Some(key.pattern_version);
                if let Some(cache) = &self.cache {
                    let value = CachedResult::new(manifest, Some(job.id), key.pattern_version);
                    cache.put(&key, Arc::new(value), self.cache_ttl).await;
                }
            }
            Err(e) => l.error = Some(ErrorInfo::from(&*e)),
        }
        l.latency_ms = (p.prep + request_started.elapsed()).as_millis() as u64;
        l.waited_ms = Some(spent.paced.as_millis() as u64);
        self.finish(out, &digest, l).await;
    }

    /// One ingest-and-wait for `key` with its pattern (through the cross-worker
    /// deduper when there is one): every attempt passes the limiters.
    async fn stage(
        &self,
        p: &Prepared,
        key: &CacheKey,
        l: &mut ResultLine,
        slot: &mut Slot,
        spent: &mut Spent,
    ) -> Result<(Job, Role), Arc<Error>> {
        match &self.deduper {
            Some(d) => {
                d.run(key, || self.ingest_and_wait((p, key), l, slot, spent))
                    .await
            }
            None => self
                .ingest_and_wait((p, key), l, slot, spent)
                .await
                .map(|job| (job, Role::Leader))
                .map_err(Arc::new),
        }
    }

    /// What follows a classification: its result cached, the class on the line, and
    /// either the extraction to run, its result from the cache, or a finished line (the
    /// classification failed, or no route takes the class).
    async fn after_classify(
        &self,
        p: &Prepared,
        result: Result<(Job, Role), Arc<Error>>,
        l: &mut ResultLine,
        started: Instant,
    ) -> Next {
        l.classify_job_id = l.job_id.take();
        let job = match result {
            Ok((job, _)) => job,
            Err(e) => {
                let mut line = l.clone();
                line.error = Some(ErrorInfo::from(&*e));
                line.latency_ms = (p.prep + started.elapsed()).as_millis() as u64;
                return Next::Done(Box::new(line), Some(e));
            }
        };
        l.classify_job_id = Some(job.id.clone());
        let manifest = job.manifest.unwrap_or(Manifest::Json(Default::default()));
        let classified = self.classified(&manifest.to_value());
        if let Some(cache) = &self.cache {
            let value = CachedResult::new(manifest, Some(job.id), p.key.pattern_version);
            cache.put(&p.key, Arc::new(value), self.cache_ttl).await;
        }
        tracing::debug!(class = classified.class.as_deref(), "classified");
        l.class = classified.class.clone();
        let Some(pattern_id) = classified.pattern_id else {
            let no_route =
                self.no_route_line(p.label.clone(), started, classified.class.as_deref(), true);
            let mut line = l.clone();
            line.error = no_route.error;
            line.latency_ms = (p.prep + started.elapsed()).as_millis() as u64;
            return Next::Done(Box::new(line), None);
        };
        let key = self.key_for(p.hash, &pattern_id);
        l.pattern_id = pattern_id;
        l.pattern_version = Some(key.pattern_version);
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.get(&key).await {
                return Next::Cached(hit);
            }
        }
        Next::Extract(key)
    }

    /// The quota's error, once the service said it is gone.
    pub(super) fn quota_error(&self) -> Option<Error> {
        let (retry_after, limit) = (*lock(&self.quota_gone))?;
        Some(Error::QuotaExhausted {
            retry_after,
            limit,
            request_id: None,
        })
    }

    /// Remembers an exhausted quota (with its reset time) and stops every wait: inputs
    /// not sent yet fail at once.
    pub(super) fn quota_exhausted(
        &self,
        retry_after: Duration,
        limit: Option<RateLimitInfo>,
    ) -> Error {
        {
            let mut gone = lock(&self.quota_gone);
            if gone.is_none() {
                tracing::warn!(
                    retry_after_s = retry_after.as_secs(),
                    "quota exhausted: inputs not sent yet fail without a request"
                );
                let mut info = limit.unwrap_or_default();
                if info.reset.is_none() {
                    info.reset = std::time::SystemTime::now().checked_add(retry_after);
                }
                *gone = Some((retry_after, Some(info)));
            }
        }
        self.pacer.close(retry_after);
        self.quota_closed.send_replace(true);
        self.quota_error().expect("just set")
    }

    pub(super) fn limit_error(&self, e: LimitError) -> Error {
        if let Some(q) = self.halted() {
            return q;
        }
        match Error::from(e) {
            Error::QuotaExhausted {
                retry_after, limit, ..
            } => self.quota_exhausted(retry_after, limit),
            other => other,
        }
    }

    /// Sleeps `d`, or less when the quota runs out meanwhile.
    pub(super) async fn sleep_unless_quota(&self, d: Duration) {
        let mut closed = self.quota_closed.subscribe();
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = closed.wait_for(|c| *c) => {}
        }
    }

    pub(super) async fn ingest_and_wait(
        &self,
        (p, key): (&Prepared, &CacheKey),
        l: &mut ResultLine,
        slot: &mut Slot,
        spent: &mut Spent,
    ) -> Result<Job, Error> {
        let pattern_id = key.pattern_id.as_str();
        let opts = IngestOptions {
            idempotency_key: None,
            extras: self.extras.clone(),
            // The whole cache key: a new pattern version or other settings make a new job;
            // a salt makes a new job for an input whose job failed.
            content_hash: Some(match &p.salt {
                Some(salt) => ContentHash::of(format!("{}:{salt}", key.digest()).as_bytes()),
                None => key.digest(),
            }),
            // The base name only: the client drops directories and quotes the rest.
            file_name: p.file_name.clone(),
            single_attempt: true,
        };
        let started = Instant::now();
        let (mut failures, mut unreadable) = (0u32, 0u32);
        // Every attempt, the first and each retry, passes the limiters: a 429 waits for
        // its turn again (as often as needed), a 5xx or a dropped connection is retried
        // through the retry policy, an exhausted quota ends the input and the run.
        let accepted = loop {
            if let Some(e) = self.halted() {
                return Err(e);
            }
            let waiting = Instant::now();
            let ticket = self
                .pacer
                .acquire_with(self.limiter.as_deref())
                .await
                .map_err(|e| self.limit_error(e))?;
            let waited = waiting.elapsed();
            spent.paced += waited;
            l.attempts += 1;
            if waited >= Duration::from_millis(1) {
                tracing::debug!(
                    waited_ms = waited.as_millis() as u64,
                    pace_per_s = self.pacer.status().rate(),
                    "paced: waited for a turn to send"
                );
            }
            let sending = Instant::now();
            let sent = match &p.payload {
                Payload::Image(bytes) => {
                    if l.bytes_sent == 0 {
                        self.tracker.record_bytes(p.bytes_in, bytes.len() as u64);
                    }
                    l.bytes_sent = bytes.len() as u64;
                    self.client
                        .ingest_bytes(pattern_id, bytes.clone(), opts.clone())
                        .await
                }
                Payload::Url(url) => self.client.ingest_url(pattern_id, url, opts.clone()).await,
            };
            let e = match sent {
                Ok(a) => {
                    spent.ingest_rtt = Some(sending.elapsed());
                    // Recorded once: a text log repeats a field recorded again.
                    p.span.record("attempt", l.attempts);
                    p.span.record("job_id", field::display(&a.response.job_id));
                    if let Some(id) = &a.request_id {
                        p.span.record("request_id", field::display(id));
                    }
                    tracing::debug!(
                        job_id = %a.response.job_id,
                        request_id = a.request_id.as_deref().map(field::display),
                        http_status = a.http_status,
                        attempt = l.attempts,
                        "ingest accepted"
                    );
                    self.pacer.accepted(ticket);
                    break a;
                }
                Err(e) => e,
            };
            match e {
                Error::QuotaExhausted {
                    retry_after, limit, ..
                } => {
                    self.pacer.refused(ticket, None);
                    self.tracker.record_rate_limited();
                    *l.rate_limited.get_or_insert(0) += 1;
                    tracing::debug!(
                        retry_after_s = retry_after.as_secs(),
                        attempt = l.attempts,
                        "quota exhausted (429)"
                    );
                    return Err(self.quota_exhausted(retry_after, limit));
                }
                e if e.is_rate_limited() => {
                    let floor = e.retry_after().unwrap_or(Duration::from_secs(1));
                    self.pacer.refused(ticket, e.retry_after());
                    self.tracker.record_rate_limited();
                    *l.rate_limited.get_or_insert(0) += 1;
                    self.tracker.record_retry();
                    tracing::debug!(
                        error = %e,
                        retry_after_ms = e.retry_after().map(|d| d.as_millis() as u64),
                        wait_ms = floor.as_millis() as u64,
                        pace_per_s = self.pacer.status().rate(),
                        attempt = l.attempts,
                        "rate limited (429): waiting, then sending again"
                    );
                    let waiting = Instant::now();
                    slot.release_while(self.sleep_unless_quota(floor)).await;
                    spent.paced += waiting.elapsed();
                }
                // The key makes a re-send safe: an answer that could not be read (a
                // proxy's page, a body over the cap) is sent again, a few times.
                Error::Decode { .. } if unreadable < MAX_UNREADABLE_ANSWERS => {
                    self.pacer.unused(ticket);
                    unreadable += 1;
                    self.tracker.record_retry();
                    tracing::debug!(
                        error = %e,
                        attempt = l.attempts,
                        "retry: the answer could not be read; sending again"
                    );
                    self.sleep_unless_quota(UNREADABLE_PAUSE * unreadable).await;
                }
                e => {
                    self.pacer.unused(ticket);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    failures += 1;
                    let Some(delay) = self.retry.next_delay(failures, started.elapsed(), &e) else {
                        return Err(e);
                    };
                    self.tracker.record_retry();
                    tracing::debug!(
                        error = %e,
                        code = %e.code(),
                        delay_ms = delay.as_millis() as u64,
                        attempt = l.attempts,
                        "retry after error"
                    );
                    self.sleep_unless_quota(delay).await;
                }
            }
        };
        self.retry.on_success();
        let r = accepted.response;
        l.job_id = Some(r.job_id.clone());
        if r.status.is_terminal() {
            if r.status == imggo_core::JobStatus::Failed {
                return Err(Error::JobFailed {
                    job_id: r.job_id,
                    message: r.error.map(|e| e.message).unwrap_or_default(),
                });
            }
            if r.manifest.is_some() {
                return Ok(Job {
                    pattern_id: Some(pattern_id.to_owned()),
                    manifest: r.manifest,
                    ..Job::new(r.job_id, r.status)
                });
            }
        }
        self.wait_job(&r.job_id, pattern_id, slot).await
    }
}

/// Tells `--concurrency auto` how the input's requests went: the round trip of its
/// accepted ingest, or a rate limit or timeout (congestion); anything else, or an answer
/// from another worker (no sample of this service's latency), is ignored.
/// What an input's sends spent, over its stages.
#[derive(Debug, Default)]
pub(super) struct Spent {
    /// Time waited for the limiters and out 429s' `Retry-After` (`waited_ms`).
    paced: Duration,
    /// The round trip of the accepted ingest: the concurrency signal of `--concurrency
    /// auto`. The whole input's time is not: a job's own time varies widely, and a poll
    /// answered 503 with `Retry-After: 1` would read as a congested service.
    ingest_rtt: Option<Duration>,
}

fn settle(permit: Option<Permit>, error: Option<&Error>, ingest_rtt: Option<Duration>) {
    let Some(permit) = permit else { return };
    match (error, ingest_rtt) {
        (Some(e), _) if e.is_rate_limited() || e.is_timeout() => permit.dropped(),
        (None, Some(rtt)) => permit.success_with_latency(rtt),
        _ => permit.ignore(),
    }
}

/// What comes after a classification (see [`Shared::after_classify`]).
enum Next {
    /// The input's line is ready: the classification failed (with its error), or no
    /// route takes the class.
    Done(Box<ResultLine>, Option<Arc<Error>>),
    /// Extract with this key.
    Extract(CacheKey),
    /// The extraction's result, from the cache.
    Cached(Arc<CachedResult>),
}
