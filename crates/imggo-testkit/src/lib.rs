//! Test helpers shared by the imggo crates' tests and benches (never a runtime dependency).
//!
//! - [`RedisServer`]: a private `redis-server` on a free loopback port in a temp dir,
//!   stopped on drop. A missing binary is a loud panic, never a skip.
//! - [`corpus_dir`] / [`corpus_files`]: the shared corpus of real images.
//! - [`proxy::HostileProxy`]: a fault-injecting proxy in front of a server on loopback.

pub mod proxy;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` owned by one test: own port, own directory, no persistence.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers. Panics with instructions when
    /// `redis-server` is not installed (`scripts/test` installs it).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        // redis cannot bind port 0, so take a free port from the OS and hand it over;
        // try again on the rare race where another process grabs it first.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start redis-server ({e}); install it (apt-get install -y \
                         redis-server) or run scripts/test, which does"
                    )
                });
            if wait_ready(&mut child, port, Duration::from_secs(5)) {
                return Self {
                    child: Some(child),
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start after 5 attempts");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server now (to test outages); idempotent.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_ready(child: &mut Child, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `../shared/corpus/real` seen from the workspace root (override with `IMGGO_CORPUS`).
pub fn corpus_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("IMGGO_CORPUS") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    root.join("../shared/corpus/real")
}

/// The corpus files, sorted by name. Panics when the corpus is missing.
pub fn corpus_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// One corpus file by name.
pub fn corpus_file(name: &str) -> PathBuf {
    corpus_dir().join(name)
}

/// Writes `unique` distinct real images into `dir` — small corpus JPEGs, each made unique
/// by bytes appended after its end marker (still a valid JPEG, like `vin1.jpg`) — plus
/// `dups` exact copies of some of them. Returns every path, uniques first.
pub fn corpus_variants(dir: &std::path::Path, unique: usize, dups: usize) -> Vec<PathBuf> {
    let sources: Vec<Vec<u8>> = corpus_files()
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.starts_with(&[0xFF, 0xD8]) && b.len() < 400_000)
        .collect();
    assert!(sources.len() >= 10, "the corpus has small JPEGs");
    std::fs::create_dir_all(dir).expect("create input dir");
    let mut files = Vec::with_capacity(unique + dups);
    for i in 0..unique {
        let mut bytes = sources[i % sources.len()].clone();
        bytes.extend_from_slice(format!("imggo-test-variant-{i}").as_bytes());
        let p = dir.join(format!("u{i:04}.jpg"));
        std::fs::write(&p, bytes).expect("write variant");
        files.push(p);
    }
    for i in 0..dups {
        let p = dir.join(format!("d{i:04}.jpg"));
        std::fs::copy(&files[(i * 7) % unique.max(1)], &p).expect("copy duplicate");
        files.push(p);
    }
    files
}
