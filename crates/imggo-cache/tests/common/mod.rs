//! The behaviour every [`Cache`] must show, run against each store by `behaviour.rs`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use imggo_cache::{Cache, CachedResult};
use imggo_core::{CacheKey, ContentHash, Manifest, SettingsFingerprint};

pub const HOUR: Duration = Duration::from_secs(3600);

/// A key for image number `n` of `pattern`.
pub fn key(pattern: &str, n: u32) -> CacheKey {
    CacheKey::new(
        ContentHash::of(format!("image-{n}").as_bytes()),
        pattern,
        1,
        SettingsFingerprint::of("max_side=2048;q=85"),
    )
}

/// A result that says which key and which writer produced it.
pub fn value(n: u32, writer: &str) -> CachedResult {
    let manifest: Manifest = serde_json::from_value(serde_json::json!({
        "n": n,
        "writer": writer,
        "lines": [{"item": "widget", "qty": n, "price": 1.25}],
        "note": "é ✓ \"quoted\"",
    }))
    .unwrap();
    CachedResult {
        manifest,
        job_id: Some(format!("job-{n}-{writer}")),
        pattern_version: 1,
        created_at: 1_764_000_000 + u64::from(n),
    }
}

/// Runs the whole suite; `p` makes the pattern ids unique to the caller so suites on
/// shared servers do not see each other's entries.
pub async fn behaviour_suite<C: Cache + ?Sized>(cache: &C, p: &str) {
    round_trip_and_counters(cache, &format!("{p}-rt")).await;
    keys_are_separated(cache, &format!("{p}-sep")).await;
    batches_keep_order(cache, &format!("{p}-batch")).await;
    overwrite_takes_the_newest(cache, &format!("{p}-over")).await;
    zero_ttl_stores_nothing(cache, &format!("{p}-zero")).await;
    invalidation_is_per_pattern(cache, &format!("{p}-inv-a"), &format!("{p}-inv-b")).await;
    ttl_expires(cache, &format!("{p}-ttl")).await;
}

async fn round_trip_and_counters<C: Cache + ?Sized>(cache: &C, p: &str) {
    let before = cache.stats().await;
    let k = key(p, 1);
    assert_eq!(cache.get(&k).await, None);
    let v = value(1, "a");
    cache.put(&k, Arc::new(v.clone()), HOUR).await;
    let got = cache.get(&k).await.expect("hit after put");
    assert_eq!(*got, v, "every field survives the store");
    let after = cache.stats().await;
    assert_eq!(after.hits - before.hits, 1);
    assert_eq!(after.misses - before.misses, 1);
    assert_eq!(after.puts - before.puts, 1);
    assert_eq!(
        after.errors, before.errors,
        "no store errors on the happy path"
    );
    if let Some(entries) = after.entries {
        assert!(entries >= 1, "entries {entries}");
        assert!(after.bytes.unwrap_or(0) > 0);
    }
}

async fn keys_are_separated<C: Cache + ?Sized>(cache: &C, p: &str) {
    let k = key(p, 7);
    cache.put(&k, Arc::new(value(7, "a")), HOUR).await;
    let mut other_version = k.clone();
    other_version.pattern_version = 2;
    let mut other_settings = k.clone();
    other_settings.settings = SettingsFingerprint::of("max_side=1024;q=85");
    let mut other_pattern = k.clone();
    other_pattern.pattern_id = format!("{p}x");
    for miss in [other_version, other_settings, other_pattern, key(p, 8)] {
        assert_eq!(cache.get(&miss).await, None, "{miss:?} must not hit");
    }
    assert!(cache.get(&k).await.is_some());
}

async fn batches_keep_order<C: Cache + ?Sized>(cache: &C, p: &str) {
    let items: Vec<_> = (0..20)
        .filter(|n| n % 3 != 0)
        .map(|n| (key(p, n), Arc::new(value(n, "batch"))))
        .collect();
    cache.put_many(&items, HOUR).await;
    let keys: Vec<_> = (0..20).map(|n| key(p, n)).collect();
    let got = cache.get_many(&keys).await;
    assert_eq!(got.len(), 20);
    for (n, g) in (0..20).zip(got) {
        if n % 3 == 0 {
            assert_eq!(g, None, "key {n} was never stored");
        } else {
            assert_eq!(g.as_deref(), Some(&value(n, "batch")), "key {n}");
        }
    }
    // Keys of several patterns in one batch.
    let mixed = vec![key(p, 1), key(&format!("{p}-other"), 1), key(p, 2)];
    let got = cache.get_many(&mixed).await;
    assert!(got[0].is_some() && got[1].is_none() && got[2].is_some());
    assert!(cache.get_many(&[]).await.is_empty());
}

async fn overwrite_takes_the_newest<C: Cache + ?Sized>(cache: &C, p: &str) {
    let k = key(p, 3);
    cache.put(&k, Arc::new(value(3, "old")), HOUR).await;
    cache.put(&k, Arc::new(value(3, "new")), HOUR).await;
    assert_eq!(cache.get(&k).await.as_deref(), Some(&value(3, "new")));
}

async fn zero_ttl_stores_nothing<C: Cache + ?Sized>(cache: &C, p: &str) {
    let k = key(p, 4);
    cache.put(&k, Arc::new(value(4, "a")), Duration::ZERO).await;
    assert_eq!(cache.get(&k).await, None);
}

async fn invalidation_is_per_pattern<C: Cache + ?Sized>(cache: &C, a: &str, b: &str) {
    let items: Vec<_> = (0..5)
        .flat_map(|n| {
            [
                (key(a, n), Arc::new(value(n, "a"))),
                (key(b, n), Arc::new(value(n, "b"))),
            ]
        })
        .collect();
    cache.put_many(&items, HOUR).await;
    let inv = cache.invalidate_pattern(a).await.expect("invalidate");
    assert_eq!(inv.pattern_id, a);
    if let Some(dropped) = inv.dropped {
        assert_eq!(dropped, 5);
    }
    for n in 0..5 {
        assert_eq!(cache.get(&key(a, n)).await, None, "{a} {n} invalidated");
        assert_eq!(
            cache.get(&key(b, n)).await.as_deref(),
            Some(&value(n, "b")),
            "{b} {n} untouched"
        );
    }
    // The pattern works again after invalidation, and a second one stacks.
    cache
        .put(&key(a, 0), Arc::new(value(0, "again")), HOUR)
        .await;
    assert_eq!(
        cache.get(&key(a, 0)).await.as_deref(),
        Some(&value(0, "again"))
    );
    let second = cache.invalidate_pattern(a).await.expect("invalidate again");
    if let (Some(g1), Some(g2)) = (inv.generation, second.generation) {
        assert!(g2 > g1);
    }
    assert_eq!(cache.get(&key(a, 0)).await, None);
}

async fn ttl_expires<C: Cache + ?Sized>(cache: &C, p: &str) {
    let short = key(p, 5);
    let long = key(p, 6);
    cache
        .put(&short, Arc::new(value(5, "a")), Duration::from_secs(1))
        .await;
    cache.put(&long, Arc::new(value(6, "a")), HOUR).await;
    assert!(cache.get(&short).await.is_some(), "live before its TTL");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cache.get(&short).await, None, "expired after its TTL");
    assert!(cache.get(&long).await.is_some());
}
