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
async fn file_store_with_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let cache =
        FileCache::open_with(dir.path(), imggo_cache::FileCacheConfig { fsync: true }).unwrap();
    common::behaviour_suite(&cache, "file-fsync").await;
}

#[tokio::test]
async fn through_arc_dyn() {
    let cache: std::sync::Arc<dyn imggo_cache::Cache> = std::sync::Arc::new(MemoryCache::default());
    common::behaviour_suite(&cache, "dyn").await;
}
