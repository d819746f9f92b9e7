//! RedisCache and Tiered against a real redis-server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{key, value, HOUR};
use imggo_cache::{Cache, MemoryCache, RedisCache, RedisOptions, Tiered};
use imggo_testkit::RedisServer;

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn redis_stopped_mid_test_gives_misses_not_errors() {
    let mut server = RedisServer::start();
    let cache = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    cache
        .put(&key("down", 1), Arc::new(value(1, "a")), HOUR)
        .await;
    assert!(cache.get(&key("down", 1)).await.is_some());
    assert_eq!(cache.stats().await.errors, 0);

    server.stop();
    // The batch goes on: every read is a miss, every write returns, nothing panics.
    for n in 0..20 {
        assert_eq!(cache.get(&key("down", 1)).await, None);
        cache
            .put(&key("down", n), Arc::new(value(n, "a")), HOUR)
            .await;
    }
    let keys: Vec<_> = (0..50).map(|n| key("down", n)).collect();
    assert!(cache.get_many(&keys).await.iter().all(Option::is_none));
    let items: Vec<_> = (0..50)
        .map(|n| (key("down", n), Arc::new(value(n, "a"))))
        .collect();
    cache.put_many(&items, HOUR).await;
    let stats = cache.stats().await;
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.misses, 20 + 50);
    assert!(
        stats.errors >= 20 + 20 + 50 + 50,
        "every failed call counted: {stats:?}"
    );
    // An explicit invalidation does report the outage.
    let err = cache.invalidate_pattern("down").await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn invalidation_bumps_a_generation_and_touches_no_entry() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let k = key("gen", 1);
    cache.put(&k, Arc::new(value(1, "a")), HOUR).await;
    let pd = k.pattern_digest();
    let old_entry = format!("imggo:v1:{pd}:0:{}", k.digest().hex());
    let mut conn = raw(&server).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&old_entry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "PX set from the TTL: {ttl}"
    );

    let inv = cache.invalidate_pattern("gen").await.unwrap();
    assert_eq!(inv.generation, Some(1));
    assert_eq!(cache.get(&k).await, None);
    // O(1): the old entry is still there (it ages out by TTL), just unreachable.
    let exists: bool = redis::cmd("EXISTS")
        .arg(&old_entry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists);
    let gen: u64 = redis::cmd("GET")
        .arg(format!("imggo:v1:{pd}:gen"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(gen, 1);

    // Every key is made of hashes and numbers only, whatever the pattern id holds.
    cache
        .put(&key("../x y\n✓", 1), Arc::new(value(1, "a")), HOUR)
        .await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for k in keys {
        let parts: Vec<&str> = k.split(':').collect();
        assert_eq!(&parts[..2], ["imggo", "v1"], "{k}");
        assert!(
            parts[2..]
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_alphanumeric())),
            "{k}"
        );
    }
}

#[tokio::test]
async fn workers_share_entries_and_invalidations() {
    let server = RedisServer::start();
    let a = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let b = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    a.put(&key("shared", 1), Arc::new(value(1, "a")), HOUR)
        .await;
    assert_eq!(
        b.get(&key("shared", 1)).await.as_deref(),
        Some(&value(1, "a"))
    );
    b.invalidate_pattern("shared").await.unwrap();
    assert_eq!(a.get(&key("shared", 1)).await, None);
    // `a` read generation 1 above; b invalidates again and writes under generation 2:
    // a's first read names generation 1, sees 2 in the same MGET, and reads again.
    b.invalidate_pattern("shared").await.unwrap();
    b.put(&key("shared", 1), Arc::new(value(1, "b2")), HOUR)
        .await;
    assert_eq!(
        a.get(&key("shared", 1)).await.as_deref(),
        Some(&value(1, "b2"))
    );
    // And an entry left under a's old generation is never served.
    let stats = a.stats().await;
    assert_eq!((stats.hits, stats.misses, stats.errors), (1, 1, 0));
}

#[tokio::test]
async fn a_garbled_value_is_a_counted_miss() {
    let server = RedisServer::start();
    let cache = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let k = key("garbled", 1);
    let mut conn = raw(&server).await;
    let name = format!("imggo:v1:{}:0:{}", k.pattern_digest(), k.digest().hex());
    let _: () = redis::cmd("SET")
        .arg(&name)
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(cache.get(&k).await, None);
    let stats = cache.stats().await;
    assert_eq!((stats.misses, stats.errors), (1, 1));
}

#[tokio::test]
async fn a_back_hit_fills_the_front() {
    let server = RedisServer::start();
    let back = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let other_worker = RedisCache::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let tiered = Tiered::new(MemoryCache::default(), back);
    let keys: Vec<_> = (0..4).map(|n| key("fill", n)).collect();
    other_worker
        .put(&keys[0], Arc::new(value(0, "w")), HOUR)
        .await;
    other_worker
        .put(&keys[2], Arc::new(value(2, "w")), HOUR)
        .await;

    assert!(tiered.front().get(&keys[0]).await.is_none());
    let got = tiered.get_many(&keys).await;
    assert_eq!(got.iter().filter(|v| v.is_some()).count(), 2);
    assert_eq!(
        tiered.front().get(&keys[0]).await.as_deref(),
        Some(&value(0, "w"))
    );
    assert_eq!(
        tiered.front().get(&keys[2]).await.as_deref(),
        Some(&value(2, "w"))
    );
    let stats = tiered.stats().await;
    assert_eq!((stats.hits, stats.misses), (2, 2));

    // Single get: a back hit fills the front too, and the next read is served from memory.
    other_worker
        .put(&keys[3], Arc::new(value(3, "w")), HOUR)
        .await;
    assert!(tiered.get(&keys[3]).await.is_some());
    let back_reads = tiered.back().stats().await.hits;
    assert!(tiered.get(&keys[3]).await.is_some());
    assert_eq!(
        tiered.back().stats().await.hits,
        back_reads,
        "served by the front"
    );
}

#[tokio::test]
async fn a_dead_redis_costs_little() {
    let mut server = RedisServer::start();
    let options = RedisOptions {
        timeout: Duration::from_millis(200),
        cooldown: Duration::from_secs(5),
    };
    let cache = RedisCache::connect(&server.url(), options).await.unwrap();
    server.stop();
    assert!(!cache.link().is_down());
    assert_eq!(cache.get(&key("dead", 0)).await, None);
    // After the first failure the breaker is open: the next calls skip Redis instead of
    // each waiting for the timeout.
    assert!(cache.link().is_down());
    for n in 1..200 {
        assert_eq!(cache.get(&key("dead", n)).await, None);
    }
    assert_eq!(cache.stats().await.errors, 200);
}
