//! A panic anywhere in the handling of an input (here: a user's `Cache` that panics, once
//! while preparing an input and once after its job was created) costs that input a
//! `failed` line with code `INTERNAL`, and every identical input waiting on it the same;
//! every other input still gets its line, and the run's exit code is 1.

mod common;
use common::run_all;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imggo_batch::Outcome;
use imggo_batch::{Concurrency, Pipeline};
use imggo_cache::{Cache, CacheError, CacheStats, CachedResult, Invalidation, MemoryCache};
use imggo_core::{CacheKey, ContentHash};
use imggo_emulator::{Config, Emulator, LatencyModel};
use imggo_http::Client;

const KEY: &str = "imggo_panics_key";

/// A memory cache that panics reading one content and storing another.
struct PanickyCache {
    inner: MemoryCache,
    panic_on_get: ContentHash,
    panic_on_put: ContentHash,
}

#[async_trait]
impl Cache for PanickyCache {
    async fn get(&self, key: &CacheKey) -> Option<Arc<CachedResult>> {
        assert!(key.content != self.panic_on_get, "cache read exploded");
        self.inner.get(key).await
    }
    async fn put(&self, key: &CacheKey, value: Arc<CachedResult>, ttl: Duration) {
        if key.content == self.panic_on_put {
            panic!("cache write exploded for {}", key.content);
        }
        self.inner.put(key, value, ttl).await
    }
    async fn invalidate_pattern(&self, pattern_id: &str) -> Result<Invalidation, CacheError> {
        self.inner.invalidate_pattern(pattern_id).await
    }
    async fn stats(&self) -> CacheStats {
        self.inner.stats().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_costs_its_input_an_internal_line_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 12, 0);
    // Two copies of each exploding input: one of each pair waits on the other.
    for i in [0, 1] {
        let copy = dir.path().join(format!("copy{i}.jpg"));
        std::fs::copy(&inputs[i], &copy).unwrap();
        inputs.push(copy);
    }
    let hash = |i: usize| ContentHash::of(&std::fs::read(&inputs[i]).unwrap());
    let cache = PanickyCache {
        inner: MemoryCache::new(Default::default()),
        panic_on_get: hash(0),
        panic_on_put: hash(1),
    };
    let handle = Emulator::start(
        Config {
            latency: LatencyModel::Fixed(Duration::from_millis(5)),
            ..Config::default()
        }
        .api_key(KEY),
    )
    .await
    .unwrap();
    let pattern = handle.create_pattern("panics", None).id;
    let client = Client::builder()
        .base_url(handle.base_url())
        .api_key(KEY)
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .client(client)
        .pattern(pattern)
        .optimize(None)
        .cache(Arc::new(cache), Duration::from_secs(60))
        .concurrency(Concurrency::Fixed(4))
        .build()
        .unwrap();
    let (lines, report) = run_all(pipeline, &inputs).await;

    let labels: HashSet<_> = lines.iter().map(|l| l.input.clone()).collect();
    assert_eq!(lines.len(), inputs.len(), "one line per input: {lines:#?}");
    assert_eq!(labels.len(), inputs.len());
    let exploding: HashSet<String> = [0, 1, 12, 13]
        .iter()
        .map(|&i| inputs[i].display().to_string())
        .collect();
    for l in &lines {
        if exploding.contains(&l.input) {
            assert_eq!(l.status, Outcome::Failed, "{l:?}");
            let e = l.error.as_ref().unwrap();
            assert_eq!(e.code, "INTERNAL", "{l:?}");
            assert!(
                e.message.contains(&l.input),
                "the message names the input: {l:?}"
            );
        } else {
            assert_eq!(l.status, Outcome::Succeeded, "{l:?}");
        }
    }
    assert_eq!(report.exit_code(), 1);
    handle.shutdown().await;
}
