//! The shared behaviour suite (tests/common) against every store.

mod common;

use imggo_cache::{FileCache, MemoryCache};

#[tokio::test]
async fn memory_store() {
    let cache = MemoryCache::default();
    common::behaviour_suite(&cache, "mem").await;
}

#[tokio::test]
async fn file_store() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    common::behaviour_suite(&cache, "file").await;
}

#[tokio::test]
async fn file_store_with_fsync_and_gets_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open_with(
        dir.path(),
        imggo_cache::FileCacheConfig {
            fsync: true,
            inline_get: false,
        },
    )
    .unwrap();
    common::behaviour_suite(&cache, "file-fsync").await;
}

#[tokio::test]
async fn through_arc_dyn() {
    let cache: std::sync::Arc<dyn imggo_cache::Cache> = std::sync::Arc::new(MemoryCache::default());
    common::behaviour_suite(&cache, "dyn").await;
}

#[tokio::test]
async fn redis_store() {
    let server = imggo_testkit::RedisServer::start();
    let cache = imggo_cache::RedisCache::connect(&server.url(), Default::default())
        .await
        .unwrap();
    common::behaviour_suite(&cache, "redis").await;
}

#[tokio::test]
async fn tiered_memory_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache =
        imggo_cache::Tiered::new(MemoryCache::default(), FileCache::open(dir.path()).unwrap());
    common::behaviour_suite(&cache, "tier-file").await;
}

#[tokio::test]
async fn tiered_memory_over_redis() {
    let server = imggo_testkit::RedisServer::start();
    let redis = imggo_cache::RedisCache::connect(&server.url(), Default::default())
        .await
        .unwrap();
    let cache = imggo_cache::Tiered::new(MemoryCache::default(), redis);
    common::behaviour_suite(&cache, "tier-redis").await;
}

#[tokio::test]
async fn stores_opened_from_cache_urls() {
    use imggo_cache::{open_cache, parse_cache_url, OpenOptions};
    let server = imggo_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions::default();
    let urls = [
        "memory".to_owned(),
        format!("file:{}", dir.path().display()),
        server.url(),
    ];
    for (i, url) in urls.iter().enumerate() {
        let spec = parse_cache_url(url).unwrap();
        let cache = open_cache(&spec, &options).await.unwrap().expect("a store");
        common::behaviour_suite(&cache, &format!("url{i}")).await;
    }
    let off = parse_cache_url("off").unwrap();
    assert!(open_cache(&off, &options).await.unwrap().is_none());
    // Nothing listens on this port: opening says so, naming the server.
    let dead = format!("redis://127.0.0.1:{}/", imggo_testkit::free_port());
    let err = open_cache(&parse_cache_url(&dead).unwrap(), &options)
        .await
        .err()
        .expect("unreachable redis is an error at open");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}
