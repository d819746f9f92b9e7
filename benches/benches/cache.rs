//! imggo-cache: hit latency per store, against a raw Redis GET round trip.
//!
//! Targets (issue 7): memory below 1 µs, file below 50 µs, Redis within 2× of a raw
//! `GET` of the same entry on the same kind of connection, measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imggo_cache::{Cache, CachedResult, FileCache, MemoryCache, RedisCache, Tiered};
use imggo_core::{CacheKey, ContentHash, Manifest, SettingsFingerprint};
use tokio::runtime::Runtime;

/// An invoice-like manifest of about 1.5 KB.
fn result() -> Arc<CachedResult> {
    let lines: Vec<_> = (0..12)
        .map(|i| serde_json::json!({"description": format!("Widget model {i}"), "qty": i, "unit_price": 12.5, "total": 12.5 * f64::from(i)}))
        .collect();
    let manifest: Manifest = serde_json::from_value(serde_json::json!({
        "vendor": "ACME Supplies Ltd", "invoice_number": "INV-2026-00042",
        "date": "2026-11-26", "currency": "EUR", "lines": lines, "total": 825.0,
    }))
    .unwrap();
    Arc::new(CachedResult::new(manifest, Some("job-123".into()), 3))
}

fn keys(n: u32) -> Vec<CacheKey> {
    (0..n)
        .map(|i| {
            CacheKey::new(
                ContentHash::of(format!("image-{i}").as_bytes()),
                "pattern-invoice",
                3,
                SettingsFingerprint::of("max_side=2048;q=85"),
            )
        })
        .collect()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Times `iters` awaited hits of one store inside a single `block_on`, cycling over keys.
fn time_gets<C: Cache + ?Sized>(
    rt: &Runtime,
    cache: &C,
    keys: &[CacheKey],
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters as usize {
            let hit = cache.get(&keys[i % keys.len()]).await;
            debug_assert!(hit.is_some());
            black_box(hit);
        }
        start.elapsed()
    })
}

fn fill<C: Cache + ?Sized>(rt: &Runtime, cache: &C, keys: &[CacheKey]) {
    let value = result();
    let items: Vec<_> = keys
        .iter()
        .map(|k| (k.clone(), Arc::clone(&value)))
        .collect();
    rt.block_on(cache.put_many(&items, HOUR));
    let found = rt.block_on(cache.get_many(keys));
    assert!(found.iter().all(Option::is_some), "every key is a hit");
}

fn hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = keys(1000);
    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Elements(1));

    let memory = MemoryCache::default();
    fill(&rt, &memory, &keys);
    g.bench_function("memory", |b| {
        b.iter_custom(|n| time_gets(&rt, &memory, &keys, n))
    });

    let dir = tempfile::tempdir().unwrap();
    let file = FileCache::open(dir.path()).unwrap();
    fill(&rt, &file, &keys);
    g.bench_function("file", |b| {
        b.iter_custom(|n| time_gets(&rt, &file, &keys, n))
    });
    let tiered = Tiered::new(MemoryCache::default(), file.clone());
    fill(&rt, &tiered, &keys);
    g.bench_function("tiered_memory_over_file", |b| {
        b.iter_custom(|n| time_gets(&rt, &tiered, &keys, n))
    });

    let server = imggo_testkit::RedisServer::start();
    let redis = rt
        .block_on(RedisCache::connect(&server.url(), Default::default()))
        .unwrap();
    fill(&rt, &redis, &keys);
    g.bench_function("redis", |b| {
        b.iter_custom(|n| time_gets(&rt, &redis, &keys, n))
    });

    // Baseline: a raw GET of the same entries (same payload) on a ConnectionManager.
    let names: Vec<String> = keys
        .iter()
        .map(|k| format!("imggo:v1:{}:0:{}", k.pattern_digest(), k.digest().hex()))
        .collect();
    let mut conn = rt
        .block_on(redis::aio::ConnectionManager::new(
            redis::Client::open(server.url()).unwrap(),
        ))
        .unwrap();
    g.bench_function("raw_redis_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let v: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&names[i % names.len()])
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    debug_assert!(v.is_some());
                    black_box(v);
                }
                start.elapsed()
            })
        })
    });

    // What a remote hit must do beyond the round trip: decode the JSON entry.
    let payload = serde_json::to_vec(&*result()).unwrap();
    g.bench_function("decode_entry_only", |b| {
        b.iter(|| black_box(serde_json::from_slice::<CachedResult>(black_box(&payload)).unwrap()))
    });
    g.finish();

    // Batches: 100 keys per call, reported per key.
    let mut g = c.benchmark_group("cache_hit_batch100");
    g.throughput(Throughput::Elements(100));
    let batch = &keys[..100];
    g.bench_function("redis_get_many", |b| {
        b.iter(|| black_box(rt.block_on(redis.get_many(batch))))
    });
    g.bench_function("raw_redis_mget", |b| {
        b.iter(|| {
            let v: Vec<Option<Vec<u8>>> = rt
                .block_on(redis::cmd("MGET").arg(&names[..100]).query_async(&mut conn))
                .unwrap();
            black_box(v)
        })
    });
    g.bench_function("file_get_many", |b| {
        b.iter(|| black_box(rt.block_on(file.get_many(batch))))
    });
    g.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
