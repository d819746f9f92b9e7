//! Shared helpers of the integration tests: an emulator on a loopback port and a client
//! aimed at it with short backoffs.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use imggo_core::{Pattern, RateLimitInfo, RateLimitObserver};
use imggo_emulator::{Config, Emulator, Handle};
use imggo_http::{Accepted, Client, ClientBuilder, DefaultRetry, IngestOptions};
use serde_json::Value;

pub const KEY: &str = "imggo_test_key_0123456789";

/// An emulator that accepts only [`KEY`].
pub async fn emulator(config: Config) -> Handle {
    Emulator::start(config.api_key(KEY))
        .await
        .expect("emulator starts")
}

/// A builder for `emu` with backoffs in milliseconds (Retry-After still floors them).
pub fn builder(emu: &Handle) -> ClientBuilder {
    Client::builder()
        .base_url(emu.base_url())
        .api_key(KEY)
        .retry_policy(Arc::new(DefaultRetry {
            max_attempts: 6,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        }))
        .attempt_timeout(Duration::from_secs(10))
        .total_timeout(Duration::from_secs(30))
}

pub fn client(emu: &Handle) -> Client {
    builder(emu).build().expect("client builds")
}

/// An emulator (started with `config`), one pattern on it and a client aimed at it.
pub struct Scenario {
    pub emu: Handle,
    pub pattern: Pattern,
    pub c: Client,
}

/// Starts an emulator with `config`, creates the pattern `name` (with `json_schema`) on it
/// and builds a [`client`] for it.
pub async fn scenario(config: Config, name: &str, json_schema: Option<Value>) -> Scenario {
    let emu = emulator(config).await;
    let pattern = emu.create_pattern(name, json_schema);
    let c = client(&emu);
    Scenario { emu, pattern, c }
}

/// The JSON schema `{"type": "object"}`.
pub fn object_schema() -> Option<Value> {
    Some(serde_json::json!({"type": "object"}))
}

/// Default ingest options with the upload named `file_name`.
pub fn named(file_name: &str) -> IngestOptions {
    IngestOptions {
        file_name: Some(file_name.into()),
        ..Default::default()
    }
}

/// Ingests the corpus image `car-plate3.jpg` with default options; panics on failure.
pub async fn ingest_plate(c: &Client, pattern_id: &str) -> Accepted {
    c.ingest_bytes(
        pattern_id,
        image("car-plate3.jpg"),
        IngestOptions::default(),
    )
    .await
    .expect("car-plate3.jpg is accepted")
}

/// A real image of the corpus.
pub fn image(name: &str) -> Bytes {
    std::fs::read(imggo_testkit::corpus_file(name))
        .expect("corpus image")
        .into()
}

/// `n` distinct small real images (the smallest files of the corpus).
pub fn small_images(n: usize) -> Vec<(String, Bytes)> {
    let mut files: Vec<_> = imggo_testkit::corpus_files()
        .into_iter()
        .map(|p| {
            (
                std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX),
                p,
            )
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .take(n)
        .map(|(_, p)| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap().into())
        })
        .collect()
}

/// Records every rate-limit report.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<RateLimitInfo>>);

impl RateLimitObserver for Recorder {
    fn observe(&self, info: &RateLimitInfo) {
        self.0.lock().unwrap().push(*info);
    }
}
