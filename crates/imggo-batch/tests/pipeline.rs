//! The batch pipeline end to end against the emulator over loopback HTTP, on inputs derived
//! from the real corpus.

mod common;
use common::run_all;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use imggo_batch::{
    Concurrency, CountingRetry, Inputs, Pipeline, ResultLine, WaitMode, WebhookRouter,
};
use imggo_batch::{Outcome, Tracker};
use imggo_cache::FileCache;
use imggo_core::{CreateWebhook, Secret};
use imggo_emulator::{Config, Emulator, Faults, Handle, LatencyModel};
use imggo_http::{Client, PollPolicy, ReceiverOptions, WebhookReceiver};
use imggo_ratelimit::Backoff;

const KEY: &str = "imggo_test_key";

/// The emulator, a client whose retries (imggo-ratelimit's backoff) count into `tracker`,
/// and a pattern.
async fn emulator_with(config: Config, tracker: Arc<Tracker>) -> (Handle, Client, String) {
    let handle = Emulator::start(config.api_key(KEY)).await.unwrap();
    let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(100))
        .unwrap()
        .with_max_attempts(12);
    let client = Client::builder()
        .base_url(handle.base_url())
        .api_key(KEY)
        .retry_policy(Arc::new(CountingRetry {
            inner: Arc::new(backoff),
            tracker,
        }))
        .build()
        .unwrap();
    let pattern = handle.create_pattern("test pattern", None);
    (handle, client, pattern.id)
}

async fn emulator(config: Config) -> (Handle, Client, String) {
    emulator_with(config, Arc::new(Tracker::new())).await
}

fn fast_poll() -> PollPolicy {
    PollPolicy {
        first: Duration::from_millis(5),
        second: Duration::from_millis(5),
        factor: 1.5,
        max_interval: Duration::from_millis(50),
        deadline: Duration::from_secs(60),
    }
}

fn count(lines: &[ResultLine], s: Outcome) -> usize {
    lines.iter().filter(|l| l.status == s).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_cost_one_ingest_and_a_second_run_is_all_cached() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(&dir.path().join("in"), 160, 40);
    let (handle, client, pattern) = emulator(Config {
        latency: LatencyModel::Fixed(Duration::from_millis(5)),
        ..Config::default()
    })
    .await;
    let cache_dir = dir.path().join("cache");
    let build = || {
        Pipeline::builder()
            .client(client.clone())
            .pattern(pattern.clone())
            .cache(
                Arc::new(FileCache::open(&cache_dir).unwrap()),
                Duration::from_secs(3600),
            )
            .concurrency(Concurrency::Fixed(16))
            .wait(WaitMode::Poll(fast_poll()))
            .build()
            .unwrap()
    };

    let (lines, report) = run_all(build(), &inputs).await;
    assert_eq!(lines.len(), 200, "one line per input");
    assert_eq!(count(&lines, Outcome::Succeeded), 160, "{lines:#?}");
    assert_eq!(count(&lines, Outcome::Duplicate), 40);
    let stats = handle.stats();
    assert_eq!(
        stats.ingests_accepted, 160,
        "each unique image ingested once"
    );
    assert_eq!(stats.jobs_created, 160);
    // Every line of one content hash carries the same job and manifest.
    let mut by_hash: HashMap<String, (Option<String>, Option<serde_json::Value>)> = HashMap::new();
    for l in &lines {
        assert!(l.manifest.is_some(), "{l:?}");
        let h = l.content_hash.clone().unwrap();
        let v = (l.job_id.clone(), l.manifest.clone());
        assert_eq!(by_hash.entry(h).or_insert_with(|| v.clone()), &v);
    }
    assert_eq!(by_hash.len(), 160);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.snapshot.total, 200);

    let (again, _) = run_all(build(), &inputs).await;
    assert_eq!(again.len(), 200);
    assert_eq!(count(&again, Outcome::Cached), 160);
    assert_eq!(count(&again, Outcome::Duplicate), 40);
    assert_eq!(
        handle.stats().ingests_accepted,
        160,
        "the second run made no ingest"
    );
    assert_eq!(handle.stats().ingests_replayed, 0);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_server_errors_never_fail_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), 60, 0);
    let tracker = Arc::new(Tracker::new());
    let (handle, client, pattern) = emulator_with(
        Config {
            latency: LatencyModel::Fixed(Duration::from_millis(2)),
            faults: Faults {
                fail_500: 0.1,
                fail_503: 0.1,
                ..Faults::default()
            },
            seed: 11,
            ..Config::default()
        },
        tracker.clone(),
    )
    .await;
    let pipeline = Pipeline::builder()
        .tracker(tracker)
        .client(client)
        .pattern(pattern)
        .optimize(None)
        .concurrency(Concurrency::Fixed(8))
        .wait(WaitMode::Poll(fast_poll()))
        .build()
        .unwrap();
    let (lines, report) = run_all(pipeline, &inputs).await;
    assert_eq!(count(&lines, Outcome::Succeeded), 60, "{lines:#?}");
    let stats = handle.stats();
    assert!(
        stats.faults.http_500 + stats.faults.http_503 > 10,
        "{:?}",
        stats.faults
    );
    assert_eq!(stats.jobs_created, 60, "retries created no duplicate job");
    assert!(report.snapshot.retried > 0);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_fails_its_line_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = imggo_testkit::corpus_variants(dir.path(), 5, 0);
    let good = std::fs::read(&inputs[0]).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let noise = dir.path().join("noise.png");
    std::fs::write(&noise, b"definitely not an image at all").unwrap();
    let missing = dir.path().join("missing.jpg");
    inputs.extend([cut.clone(), noise.clone(), missing.clone()]);
    let (handle, client, pattern) = emulator(Config::default()).await;
    let pipeline = Pipeline::builder()
        .client(client)
        .pattern(pattern)
        .wait(WaitMode::Poll(fast_poll()))
        .build()
        .unwrap();
    let (lines, report) = run_all(pipeline, &inputs).await;
    assert_eq!(lines.len(), 8);
    assert_eq!(count(&lines, Outcome::Succeeded), 5);
    let failed: BTreeMap<String, String> = lines
        .iter()
        .filter(|l| l.status == Outcome::Failed)
        .map(|l| (l.input.clone(), l.error.as_ref().unwrap().message.clone()))
        .collect();
    for p in [&cut, &noise, &missing] {
        let msg = &failed[&p.display().to_string()];
        assert!(
            msg.contains(&p.display().to_string()),
            "error names the input: {msg}"
        );
    }
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        handle.stats().ingests_accepted,
        5,
        "bad images were never uploaded"
    );
    handle.shutdown().await;
}

async fn webhook_run(
    loss: f64,
    n: usize,
    concurrency: usize,
) -> (Vec<ResultLine>, imggo_emulator::Stats) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), n, 0);
    let (handle, client, pattern) = emulator(Config {
        latency: LatencyModel::Fixed(Duration::from_millis(20)),
        faults: Faults {
            webhook_loss: loss,
            ..Faults::default()
        },
        seed: 5,
        ..Config::default()
    })
    .await;
    let secret = "a-webhook-secret-of-32-characters";
    let (addr, receiver) = WebhookReceiver::bind(
        "127.0.0.1:0".parse().unwrap(),
        Secret::new(secret),
        ReceiverOptions::default(),
    )
    .await
    .unwrap();
    client
        .create_webhook(&CreateWebhook {
            url: format!("http://{addr}/"),
            events: vec!["job.succeeded".into(), "job.failed".into()],
            secret: Some(Secret::new(secret)),
        })
        .await
        .unwrap();
    let pipeline = Pipeline::builder()
        .client(client)
        .pattern(pattern)
        .optimize(None)
        .concurrency(Concurrency::Fixed(concurrency))
        .wait(WaitMode::Webhook {
            router: WebhookRouter::spawn(receiver),
            fallback_after: Duration::from_millis(400),
            poll: fast_poll(),
        })
        .build()
        .unwrap();
    let (lines, _) = run_all(pipeline, &inputs).await;
    let stats = handle.stats();
    handle.shutdown().await;
    (lines, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_replace_polling() {
    let (lines, stats) = webhook_run(0.0, 40, 8).await;
    assert_eq!(count(&lines, Outcome::Succeeded), 40, "{lines:#?}");
    assert_eq!(stats.job_polls, 0, "no job was polled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_webhooks_fall_back_to_polling() {
    let (lines, stats) = webhook_run(0.3, 40, 8).await;
    assert_eq!(count(&lines, Outcome::Succeeded), 40, "{lines:#?}");
    assert!(stats.webhooks.lost > 0, "{:?}", stats.webhooks);
    assert!(stats.job_polls > 0);
}

/// An input waiting for its delivery gives up its concurrency slot (up to four waiting
/// per slot), so lost deliveries do not hold the next inputs back for the fallback time:
/// with 2 slots, a 400 ms fallback and every delivery lost, ten ingests go out at once.
/// Holding the slots, at most two would go out per fallback (five or six a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_waiting_for_a_delivery_free_their_slot() {
    let (lines, stats) = webhook_run(1.0, 12, 2).await;
    assert_eq!(count(&lines, Outcome::Succeeded), 12, "{lines:#?}");
    assert_eq!(stats.webhooks.lost, 12, "{:?}", stats.webhooks);
    assert!(
        stats.max_ingests_per_second >= 9,
        "{} ingests in the busiest second",
        stats.max_ingests_per_second
    );
}

/// A tiny HTTP server on a thread that answers every GET with `body` (image/jpeg).
fn serve_file(body: Vec<u8>) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_sent_by_url_and_adaptive_concurrency_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let files = imggo_testkit::corpus_variants(dir.path(), 30, 0);
    let addr = serve_file(std::fs::read(&files[0]).unwrap());
    let list = dir.path().join("list.txt");
    let mut text = String::new();
    for i in 0..3 {
        text.push_str(&format!("http://{addr}/image-{i}.jpg\n"));
    }
    for f in &files {
        text.push_str(&format!("{}\n", f.display()));
    }
    std::fs::write(&list, text).unwrap();
    let (handle, client, pattern) = emulator(Config {
        latency: LatencyModel::Fixed(Duration::from_millis(10)),
        ..Config::default()
    })
    .await;
    let adaptive = imggo_ratelimit::AdaptiveConcurrency::new(Default::default()).unwrap();
    let pipeline = Pipeline::builder()
        .client(client)
        .pattern(pattern)
        .concurrency(Concurrency::Auto(Arc::new(adaptive), 64))
        .wait(WaitMode::Poll(fast_poll()))
        .build()
        .unwrap();
    pipeline.prepare().await.unwrap();
    let mut run = pipeline.run(Inputs::new([format!("@{}", list.display())]));
    let mut lines = Vec::new();
    while let Some(l) = run.next_line().await {
        lines.push(l);
    }
    assert_eq!(lines.len(), 33);
    assert_eq!(count(&lines, Outcome::Succeeded), 33, "{lines:#?}");
    let url_lines: Vec<_> = lines
        .iter()
        .filter(|l| l.input.starts_with("http://"))
        .collect();
    assert_eq!(url_lines.len(), 3);
    assert!(
        url_lines.iter().all(|l| l.bytes_sent == 0),
        "URLs are never downloaded"
    );
    let stats = handle.stats();
    assert_eq!(stats.jobs_created, 33);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_text() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tracker = Arc::new(Tracker::new());
    tracker.record(Outcome::Succeeded, Duration::from_millis(120));
    let (addr, task) = imggo_batch::metrics::serve("127.0.0.1:0".parse().unwrap(), tracker)
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("imggo_inputs_total{outcome=\"succeeded\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("imggo_latency_seconds{quantile=\"0.95\"}"),
        "{body}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_redis_send_each_image_once() {
    use imggo_cache::{DedupOptions, Deduper, RedisLink, RedisOptions};
    let redis = imggo_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), 30, 0);
    let (handle, client, pattern) = emulator(Config {
        latency: LatencyModel::Fixed(Duration::from_millis(30)),
        ..Config::default()
    })
    .await;
    let worker = |client: Client| {
        let (pattern, inputs, url) = (pattern.clone(), inputs.clone(), redis.url());
        async move {
            let link = RedisLink::connect(&url, RedisOptions::default())
                .await
                .unwrap();
            let deduper = Deduper::with_redis(
                link,
                DedupOptions {
                    poll: Duration::from_millis(10),
                    ..DedupOptions::default()
                },
            );
            let pipeline = Pipeline::builder()
                .client(client)
                .pattern(pattern)
                .optimize(None)
                .deduper(Arc::new(deduper))
                .concurrency(Concurrency::Fixed(6))
                .wait(WaitMode::Poll(fast_poll()))
                .build()
                .unwrap();
            run_all(pipeline, &inputs).await.0
        }
    };
    let (a, b) = tokio::join!(worker(client.clone()), worker(client.clone()));
    let all: Vec<ResultLine> = a.into_iter().chain(b).collect();
    assert_eq!(all.len(), 60);
    assert_eq!(count(&all, Outcome::Failed), 0, "{all:#?}");
    assert_eq!(
        count(&all, Outcome::Succeeded),
        30,
        "one worker led each image"
    );
    assert_eq!(
        count(&all, Outcome::Duplicate),
        30,
        "the other one followed"
    );
    let stats = handle.stats();
    assert_eq!(
        stats.ingests_accepted + stats.ingests_replayed,
        30,
        "each image cost exactly one ingest call"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_quota_fails_the_rest_fast() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), 12, 0);
    let (handle, client, pattern) = emulator(Config {
        limits: imggo_emulator::Limits {
            monthly_quota: Some(4),
            ..Default::default()
        },
        ..Config::default()
    })
    .await;
    let pipeline = Pipeline::builder()
        .client(client)
        .pattern(pattern)
        .optimize(None)
        .concurrency(Concurrency::Fixed(1))
        .wait(WaitMode::Poll(fast_poll()))
        .build()
        .unwrap();
    let (lines, report) = run_all(pipeline, &inputs).await;
    assert_eq!(lines.len(), 12);
    assert_eq!(count(&lines, Outcome::Succeeded), 4);
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l.status == Outcome::Failed)
        .collect();
    assert_eq!(failed.len(), 8);
    assert!(failed
        .iter()
        .all(|l| l.error.as_ref().unwrap().code == "QUOTA_EXHAUSTED"));
    // One refused request taught the pipeline; the other seven were never sent.
    assert_eq!(handle.stats().rate_limited, 1);
    assert_eq!(report.exit_code(), 1);
    handle.shutdown().await;
}

/// Every public type prints for logs, and none prints the API key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_names_the_run_and_hides_the_key() {
    let (handle, client, pattern) = emulator(Config::default()).await;
    let builder = Pipeline::builder()
        .client(client)
        .pattern(pattern.clone())
        .optimize(None);
    let text = format!("{builder:?}");
    assert!(text.contains(&pattern) && !text.contains(KEY), "{text}");
    let pipeline = builder.build().unwrap();
    let text = format!("{pipeline:?}");
    assert!(text.contains(&pattern) && !text.contains(KEY), "{text}");
    let run = pipeline.run(Vec::<imggo_batch::Input>::new());
    let text = format!("{run:?}");
    assert!(text.contains(&pattern) && !text.contains(KEY), "{text}");
    handle.shutdown().await;
}
