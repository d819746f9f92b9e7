//! MemoryCache bounds and scan resistance.

mod common;

use std::sync::Arc;

use common::{key, value, HOUR};
use imggo_cache::{Cache, MemoryCache, MemoryCacheConfig};

#[tokio::test]
async fn entry_bound_holds() {
    let cache = MemoryCache::new(MemoryCacheConfig {
        max_entries: 100,
        max_bytes: 1 << 30,
    });
    for n in 0..1000 {
        cache.put(&key("p", n), Arc::new(value(n, "a")), HOUR).await;
    }
    let stats = cache.stats().await;
    let entries = stats.entries.unwrap();
    assert!((50..=100).contains(&entries), "entries {entries}");
    let one = value(0, "a").encoded_len() as u64;
    let bytes = stats.bytes.unwrap();
    assert!(
        bytes <= 100 * (one + 8),
        "bytes {bytes} for {entries} entries"
    );
}

#[tokio::test]
async fn byte_bound_holds() {
    let one = value(0, "a").encoded_len() as u64;
    let max_bytes = 20 * one;
    let cache = MemoryCache::new(MemoryCacheConfig {
        max_entries: 1_000_000,
        max_bytes,
    });
    for n in 0..500 {
        cache.put(&key("p", n), Arc::new(value(n, "a")), HOUR).await;
    }
    let stats = cache.stats().await;
    let bytes = stats.bytes.unwrap();
    assert!(bytes <= max_bytes, "bytes {bytes} > {max_bytes}");
    assert!(stats.entries.unwrap() <= 21);
    assert!(stats.entries.unwrap() >= 5);
}

#[tokio::test]
async fn a_scan_does_not_flush_the_hot_set() {
    let cache = MemoryCache::new(MemoryCacheConfig {
        max_entries: 1000,
        max_bytes: 1 << 30,
    });
    // Read-through, as the facade uses it: a miss, an upstream call, a put. First a warm
    // working set fills the cache, then a hot set is read again and again.
    for n in 0..1000 {
        read_through(&cache, "warm", n).await;
    }
    for _ in 0..20 {
        for n in 0..100 {
            read_through(&cache, "hot", n).await;
        }
    }
    // A one-off pass over 20 000 new images, far more than the cache holds.
    for n in 0..20_000 {
        read_through(&cache, "scan", n).await;
    }
    let mut kept = 0;
    for n in 0..100 {
        kept += usize::from(cache.get(&key("hot", n)).await.is_some());
    }
    assert!(
        kept >= 90,
        "only {kept} of 100 hot entries survived the scan"
    );
}

async fn read_through(cache: &MemoryCache, pattern: &str, n: u32) {
    let k = key(pattern, n);
    if cache.get(&k).await.is_none() {
        cache.put(&k, Arc::new(value(n, pattern)), HOUR).await;
    }
}

#[tokio::test]
async fn invalidation_counts_what_it_dropped() {
    let cache = MemoryCache::default();
    for n in 0..30 {
        cache.put(&key("a", n), Arc::new(value(n, "a")), HOUR).await;
        cache.put(&key("b", n), Arc::new(value(n, "b")), HOUR).await;
    }
    let inv = cache.invalidate_pattern("a").await.unwrap();
    assert_eq!(inv.dropped, Some(30));
    assert_eq!(cache.stats().await.entries, Some(30));
}
