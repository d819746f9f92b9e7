//! Stage 2, prepare: read and hash each input once, drop in-run duplicates, look the
//! cache up, optimise on the blocking pool.

use super::*;
use crate::input::Input;
use crate::route::class_of;
use imggo_core::ErrorCode;

/// Where a classified input goes: its class (if the manifest had one) and its pattern
/// (if any route takes it).
pub(super) struct Classified {
    pub class: Option<String>,
    pub pattern_id: Option<String>,
}

impl Shared {
    /// Read, hash, dedup, cache lookup and optimise one input. `None` when the input is
    /// already answered (failed, cached, or a follower of an identical one in flight).
    pub(super) async fn prepare_one(
        self: &Arc<Self>,
        input: RoutedInput,
        started: Instant,
        out: &mpsc::Sender<ResultLine>,
    ) -> Option<Prepared> {
        let RoutedInput { input, route_name } = input;
        let label = input.label();
        if let Some(e) = self.halted() {
            self.fail(out, label, started, None, &e).await;
            return None;
        }
        let (mut pattern_id, mut classify) = match self.routes.route(&route_name) {
            _ if matches!(input, Input::Broken { .. }) => (self.pattern_id.clone(), false),
            Route::Pattern(p) => (p, false),
            Route::Classify => match self.routes.classify() {
                Some(c) => (c.pattern_id.clone(), true),
                None => (self.pattern_id.clone(), false),
            },
            Route::NoRoute => {
                let line = self.no_route_line(label, started, None, false);
                self.emit(out, line).await;
                return None;
            }
        };
        let file_name = match &input {
            Input::File(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            _ => None,
        };
        let (hash, raw) = match input {
            Input::Broken { reason, .. } => {
                let e = Error::InvalidInput {
                    input: label.clone(),
                    reason,
                };
                self.fail(out, label, started, None, &e).await;
                return None;
            }
            Input::Url(url) => (ContentHash::of(url.as_bytes()), Payload::Url(url)),
            Input::File(path) => {
                // Refuse what could never be sent before reading it into memory.
                let limit =
                    self.optimize
                        .as_ref()
                        .map_or(MAX_UPLOAD_BYTES, |o| o.max_input_bytes) as u64;
                let read = tokio::task::spawn_blocking(move || {
                    crate::read_bounded(&path, limit).map(|b| (ContentHash::of(&b), b))
                })
                .await;
                match read {
                    Ok(Ok((h, bytes))) => (h, Payload::Image(Bytes::from(bytes))),
                    Ok(Err(source)) => {
                        let e = Error::Io {
                            path: label.clone(),
                            source,
                        };
                        self.fail(out, label, started, None, &e).await;
                        return None;
                    }
                    Err(join) => {
                        let e = Error::InvalidInput {
                            input: label.clone(),
                            reason: format!("reader task failed: {join}"),
                        };
                        self.fail(out, label, started, None, &e).await;
                        return None;
                    }
                }
            }
        };
        let bytes_in = match &raw {
            Payload::Image(b) => b.len() as u64,
            Payload::Url(_) => 0,
        };
        let version = self.version_of(&pattern_id).unwrap_or(1);
        let mut key = CacheKey::new(hash, pattern_id.clone(), version, self.settings);
        let digest = key.digest();
        let span = Span::current();
        span.record("hash", field::display(&hash));

        // In-run single flight: an identical input already on its way answers this one.
        {
            let mut inflight = lock(&self.inflight);
            if let Some(followers) = inflight.get_mut(&digest) {
                tracing::debug!("identical input in flight: waiting for its result");
                followers.push(Follower {
                    label,
                    started,
                    bytes_in,
                    span,
                });
                return None;
            }
            inflight.insert(digest, Vec::new());
        }
        let repeat = !lock(&self.seen).insert(digest);
        let answered = if repeat {
            Outcome::Duplicate
        } else {
            Outcome::Cached
        };

        let (mut class, mut classify_job_id) = (None, None);
        if let Some(cache) = &self.cache {
            let mut hit = cache.get(&key).await;
            if let (Some(c), true) = (&hit, classify) {
                // The class is known from the cache: on to its extraction pattern.
                let Classified {
                    class: cls,
                    pattern_id: routed,
                } = self.classified(&c.manifest.to_value());
                tracing::debug!(class = cls.as_deref(), "classification cache hit");
                classify_job_id = c.job_id.clone();
                class = cls;
                let Some(routed) = routed else {
                    let mut l = self.no_route_line(label, started, class.as_deref(), true);
                    l.content_hash = Some(hash.to_string());
                    l.classify_job_id = classify_job_id;
                    l.bytes_in = bytes_in;
                    self.finish(out, &digest, l).await;
                    return None;
                };
                key = self.key_for(hash, &routed);
                pattern_id = routed;
                classify = false;
                hit = cache.get(&key).await;
            }
            if let Some(hit) = hit {
                if let Some(job_id) = &hit.job_id {
                    span.record("job_id", field::display(job_id));
                }
                tracing::debug!(
                    job_id = hit.job_id.as_deref().map(field::display),
                    repeat,
                    "cache hit"
                );
                let mut l = self.line(label, started, answered);
                l.pattern_id = pattern_id;
                l.pattern_version = Some(key.pattern_version);
                l.class = class;
                l.classify_job_id = classify_job_id;
                l.content_hash = Some(hash.to_string());
                l.job_id = hit.job_id.clone();
                l.manifest = Some(hit.manifest.to_value());
                l.bytes_in = bytes_in;
                self.finish(out, &digest, l).await;
                return None;
            }
        }

        let payload = match (raw, &self.optimize) {
            (Payload::Image(bytes), Some(opts)) => {
                let opts = opts.clone();
                let fp = self.optimize_fingerprint.clone();
                let original = bytes.clone();
                let optimized = tokio::task::spawn_blocking(move || {
                    OPTIMIZER.with(|cell| {
                        let mut slot = cell.borrow_mut();
                        if slot.as_ref().is_none_or(|(f, _)| **f != *fp) {
                            *slot = Some((fp, Optimizer::new(opts)));
                        }
                        let (_, opt) = slot.as_mut().expect("just set");
                        opt.optimize(&original).map(|o| o.bytes)
                    })
                })
                .await;
                let reason = match optimized {
                    Ok(Ok(out_bytes)) => Ok(Payload::Image(Bytes::from(out_bytes))),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(join) => Err(format!("optimiser task failed: {join}")),
                };
                match reason {
                    Ok(payload) => payload,
                    Err(reason) => {
                        let e = Error::InvalidInput {
                            input: label.clone(),
                            reason,
                        };
                        let mut l = self.line(label, started, Outcome::Failed);
                        l.pattern_id = pattern_id;
                        l.pattern_version = Some(key.pattern_version);
                        l.class = class;
                        l.classify_job_id = classify_job_id;
                        l.content_hash = Some(hash.to_string());
                        l.bytes_in = bytes_in;
                        l.error = Some(ErrorInfo {
                            code: ErrorCode::InvalidImage.as_str().into(),
                            message: e.to_string(),
                        });
                        self.finish(out, &digest, l).await;
                        return None;
                    }
                }
            }
            (raw, _) => raw,
        };
        let salt = lock(&self.salts).get(&label).cloned();
        Some(Prepared {
            salt,
            label,
            pattern_id,
            classify,
            flight: digest,
            file_name,
            class,
            classify_job_id,
            prep: started.elapsed(),
            repeat,
            hash,
            key,
            payload,
            bytes_in,
            span,
        })
    }

    /// The cache key of `hash` run with pattern `pattern_id` (at its known version).
    pub(super) fn key_for(&self, hash: ContentHash, pattern_id: &str) -> CacheKey {
        let version = self.version_of(pattern_id).unwrap_or(1);
        CacheKey::new(hash, pattern_id.to_owned(), version, self.settings)
    }

    /// The class in a classification manifest and the pattern it routes to.
    pub(super) fn classified(&self, manifest: &Value) -> Classified {
        let field = self.routes.classify().map_or("", |c| c.field.as_str());
        let class = class_of(manifest, field);
        let pattern_id = match &class {
            Some(c) => self.routes.for_class(c),
            None => self.routes.fallback(),
        }
        .map(str::to_owned);
        Classified { class, pattern_id }
    }
}
