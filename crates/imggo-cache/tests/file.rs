//! FileCache: corruption, crashed writers, several processes, sweeping.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{key, value, HOUR};
use imggo_cache::{Cache, CachedResult, FileCache};

/// Env var that turns this test binary into a child process for the multi-process tests.
const CHILD: &str = "IMGGO_CACHE_TEST_CHILD";
const CHILD_DIR: &str = "IMGGO_CACHE_TEST_DIR";

/// A value large enough (about 4 MiB) that a kill often lands in the middle of a write.
fn big_value(n: u32, writer: &str) -> CachedResult {
    let mut v = value(n, writer);
    if let imggo_core::Manifest::Json(m) = &mut v.manifest {
        let mut map = m.to_map();
        map.insert("pad".into(), "x".repeat(4 << 20).into());
        *m = map.into();
    }
    v
}

fn spawn_child(role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, role)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Not a test on its own: the body of the child processes spawned by the tests below
/// (it returns at once when the child env var is not set).
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD) else {
        return;
    };
    let dir = std::env::var(CHILD_DIR).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cache = FileCache::open(&dir).unwrap();
        if role == "loop" {
            // Writes big entries forever, announcing progress, until killed.
            for i in 0u32.. {
                let n = i % 20;
                cache
                    .put(&key("crash", n), Arc::new(big_value(n, "loop")), HOUR)
                    .await;
                println!("put {i}");
            }
        } else {
            // "writer-X": writes keys 0..200 in an order of its own and checks its reads.
            let writer = role.trim_start_matches("writer-");
            let step = if writer == "a" { 7 } else { 13 };
            for i in 0..200u32 {
                let n = (i * step) % 200;
                cache
                    .put(&key("shared", n), Arc::new(value(n, writer)), HOUR)
                    .await;
                let got = cache.get(&key("shared", (n + 100) % 200)).await;
                if let Some(v) = got {
                    let m = (n + 100) % 200;
                    assert!(*v == value(m, "a") || *v == value(m, "b"), "bad read {v:?}");
                }
            }
            assert_eq!(cache.stats().await.errors, 0);
            println!("done");
        }
    });
}

#[tokio::test]
async fn two_processes_write_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let children = [
        spawn_child("writer-a", dir.path()),
        spawn_child("writer-b", dir.path()),
    ];
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    }
    let cache = FileCache::open(dir.path()).unwrap();
    let keys: Vec<_> = (0..200).map(|n| key("shared", n)).collect();
    for (n, got) in (0..200).zip(cache.get_many(&keys).await) {
        let got = got.unwrap_or_else(|| panic!("key {n} missing"));
        assert!(
            *got == value(n, "a") || *got == value(n, "b"),
            "key {n}: {got:?}"
        );
    }
    assert_eq!(cache.stats().await.entries, Some(200));
    assert_eq!(cache.stats().await.errors, 0);
}

#[tokio::test]
async fn a_writer_killed_mid_write_leaves_nothing_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let mut temps = 0;
    for _round in 0..6 {
        let mut child = spawn_child("loop", dir.path());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for one completed put, then kill -9 the moment a temp file shows up, which
        // is while an entry is being written (4 MiB takes a few milliseconds).
        while !lines.next().unwrap().unwrap().starts_with("put ") {}
        let start = std::time::Instant::now();
        while walk(dir.path()).iter().filter(|p| is_temp(p)).count() <= temps {
            assert!(start.elapsed() < Duration::from_secs(20), "no write began");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        temps = walk(dir.path()).iter().filter(|p| is_temp(p)).count();
    }
    // Kills landed mid-write: torn temp files are there (a kill can also land just after
    // a rename, so not necessarily in every round).
    assert!(temps >= 1, "no kill landed in a write");
    eprintln!("6 kills left {temps} torn temp file(s)");
    let cache = FileCache::open(dir.path()).unwrap();
    let mut found = 0;
    for n in 0..20 {
        if let Some(v) = cache.get(&key("crash", n)).await {
            assert_eq!(*v, big_value(n, "loop"), "key {n} readable but wrong");
            found += 1;
        }
    }
    // Every round completed the put of key 0 before its kill; later torn writes of it
    // did not damage it.
    assert!(found >= 1, "the writers made progress ({found} entries)");
    assert!(cache.get(&key("crash", 0)).await.is_some());
    assert_eq!(
        cache.stats().await.errors,
        0,
        "rename means no torn entries"
    );
}

fn is_temp(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tmp")
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn truncated_and_corrupt_entries_are_misses_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    let k = key("corrupt", 1);
    type Damage = fn(&mut Vec<u8>);
    let damage: [(&str, Damage); 5] = [
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("header only", |b| b.truncate(48)),
        ("empty", |b| b.clear()),
        ("bit flip", |b| {
            let last = b.len() - 3;
            b[last] ^= 1;
        }),
        ("trailing junk", |b| b.extend_from_slice(b"junk")),
    ];
    for (i, (what, damage)) in damage.iter().enumerate() {
        cache.put(&k, Arc::new(value(1, "a")), HOUR).await;
        let path = cache.entry_path(&k).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        damage(&mut bytes);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get(&k).await, None, "{what}");
        assert!(!path.exists(), "{what}: the bad entry is removed");
        assert_eq!(
            cache.stats().await.errors,
            i as u64 + 1,
            "{what} is counted"
        );
        assert_eq!(cache.get(&k).await, None, "{what}: still a miss");
    }
    // An intact entry of another key copied under this key's name is not this key's value.
    let other = key("corrupt", 2);
    cache.put(&other, Arc::new(value(2, "a")), HOUR).await;
    let path = cache.entry_path(&k).unwrap();
    fs::copy(cache.entry_path(&other).unwrap(), &path).unwrap();
    assert_eq!(cache.get(&k).await, None);
    assert!(cache.get(&other).await.is_some());
}

#[tokio::test]
async fn crash_before_rename_and_a_torn_final_file_are_not_readable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    let k = key("torn", 1);
    cache.put(&k, Arc::new(big_value(1, "a")), HOUR).await;
    let path = cache.entry_path(&k).unwrap();
    let good = fs::read(&path).unwrap();
    // A writer that died before its rename leaves a truncated temp file beside the entry,
    // and (say, a filesystem without rename barriers) a truncated final file.
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!(".{name}.99999.0.tmp"));
    fs::write(&tmp, &good[..good.len() / 3]).unwrap();
    fs::write(&path, &good[..good.len() - 1000]).unwrap();
    assert_eq!(cache.get(&k).await, None);
    assert!(!path.exists());
    // A fresh temp file may belong to a live writer: sweep keeps it. An old one goes.
    assert_eq!(cache.sweep().await.unwrap().temp_files, 0);
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(cache.sweep().await.unwrap().temp_files, 1);
    assert!(!tmp.exists());
    // The key works again.
    cache.put(&k, Arc::new(big_value(1, "a")), HOUR).await;
    assert_eq!(cache.get(&k).await.as_deref(), Some(&big_value(1, "a")));
}

#[tokio::test]
async fn sweep_reclaims_old_generations_and_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    for n in 0..10 {
        cache
            .put(&key("old", n), Arc::new(value(n, "a")), HOUR)
            .await;
        cache
            .put(&key("keep", n), Arc::new(value(n, "a")), HOUR)
            .await;
    }
    cache
        .put(
            &key("keep", 99),
            Arc::new(value(99, "a")),
            Duration::from_millis(10),
        )
        .await;
    let inv = cache.invalidate_pattern("old").await.unwrap();
    assert_eq!(inv.generation, Some(1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        cache.stats().await.entries,
        Some(11),
        "expired entry still on disk"
    );
    let report = cache.sweep().await.unwrap();
    assert_eq!(report.generations, 1);
    assert_eq!(report.entries, 1);
    assert_eq!(cache.stats().await.entries, Some(10));
    for n in 0..10 {
        assert!(cache.get(&key("keep", n)).await.is_some());
        assert!(cache.get(&key("old", n)).await.is_none());
    }
}

#[tokio::test]
async fn a_broken_store_is_a_miss_never_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    // A garbage generation file: reads miss, writes are skipped, both are counted.
    let k = key("gen", 1);
    cache.put(&k, Arc::new(value(1, "a")), HOUR).await;
    let gen_file = cache.root().join(k.pattern_digest()).join("gen");
    fs::write(&gen_file, "not a number").unwrap();
    assert_eq!(cache.get(&k).await, None);
    cache.put(&k, Arc::new(value(1, "b")), HOUR).await;
    assert_eq!(cache.stats().await.errors, 2);
    // Invalidation repairs it.
    let inv = cache.invalidate_pattern("gen").await.unwrap();
    assert!(inv.generation.unwrap() > 1);
    cache.put(&k, Arc::new(value(1, "c")), HOUR).await;
    assert_eq!(cache.get(&k).await.as_deref(), Some(&value(1, "c")));

    // A file where a pattern's directory should be: the put fails quietly.
    let blocked = key("blocked", 1);
    fs::write(cache.root().join(blocked.pattern_digest()), "in the way").unwrap();
    let before = cache.stats().await.errors;
    cache.put(&blocked, Arc::new(value(1, "a")), HOUR).await;
    assert_eq!(cache.get(&blocked).await, None);
    assert!(cache.stats().await.errors > before);
}

#[tokio::test]
async fn file_names_are_only_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(dir.path()).unwrap();
    let nasty = key("../../etc/passwd\0 ✓", 1);
    cache.put(&nasty, Arc::new(value(1, "a")), HOUR).await;
    assert!(cache.get(&nasty).await.is_some());
    let path = cache.entry_path(&nasty).unwrap();
    let rel = path.strip_prefix(cache.root()).unwrap();
    for part in rel.components() {
        let s = part.as_os_str().to_str().unwrap();
        assert!(s.chars().all(|c| c.is_ascii_hexdigit() || c == 'g'), "{s}");
    }
}
