//! `RunSpec`: the plain settings of `imggo run`, started against the emulator. What the
//! command does around the pipeline (the webhook registration and its removal, the
//! `--rps` ceiling, counting rate-limit headers) comes with the spec.

mod common;
use common::run_all;

use std::sync::Arc;
use std::time::Duration;

use imggo_batch::{ConcurrencySpec, RunSpec, WebhookSpec};
use imggo_batch::{Outcome, Tracker};
use imggo_core::Secret;
use imggo_emulator::{Config, Emulator, LatencyModel};
use imggo_http::Client;

const KEY: &str = "imggo_spec_test_key";
const SECRET: &str = "a-webhook-secret-of-32-characters";

/// One change to a valid spec.
type Change = Box<dyn Fn(&mut RunSpec)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_runs_by_webhook_and_removes_its_registration() {
    let handle = Emulator::start(
        Config {
            latency: LatencyModel::Fixed(Duration::from_millis(20)),
            seed: 3,
            ..Config::default()
        }
        .api_key(KEY),
    )
    .await
    .unwrap();
    let pattern = handle.create_pattern("spec pattern", None).id;
    let dir = tempfile::tempdir().unwrap();
    let inputs = imggo_testkit::corpus_variants(dir.path(), 12, 0);

    // The emulator's host without /api: normalised as the command line does.
    let endpoint = handle.base_url().trim_end_matches("/api").to_owned();
    let mut spec = RunSpec::new(pattern, KEY);
    spec.endpoints = vec![endpoint];
    spec.cache = "memory".into();
    spec.optimize = None;
    spec.rps = Some(1000.0);
    spec.concurrency = ConcurrencySpec::Fixed(4);
    spec.webhook = Some(WebhookSpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        url: None,
        secret: Secret::new(SECRET),
        fallback_after: Duration::from_secs(5),
    });
    let tracker = Arc::new(Tracker::new());
    let mut started = spec.start(tracker.clone()).await.unwrap();
    let admin = Client::builder()
        .base_url(handle.base_url())
        .api_key(KEY)
        .build()
        .unwrap();
    assert_eq!(admin.list_webhooks().await.unwrap().len(), 1);

    let (lines, report) = run_all(started.take_pipeline(), &inputs).await;
    started.cleanup().await;
    assert_eq!(lines.len(), inputs.len());
    assert!(
        lines.iter().all(|l| l.status == Outcome::Succeeded),
        "{lines:?}"
    );
    assert_eq!(report.exit_code(), 0);
    assert!(
        handle.stats().webhooks.delivered > 0,
        "{:?}",
        handle.stats().webhooks
    );
    assert!(admin.list_webhooks().await.unwrap().is_empty());
    started.stop_metrics();
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_refuses_what_the_command_refuses_and_registers_nothing() {
    let handle = Emulator::start(Config::default().api_key(KEY))
        .await
        .unwrap();
    let pattern = handle.create_pattern("spec pattern", None).id;
    let base = RunSpec {
        endpoints: vec![handle.base_url()],
        cache: "off".into(),
        ..RunSpec::new(pattern, KEY)
    };
    let cases: [(&str, Change); 4] = [
        ("--rps", Box::new(|s| s.rps = Some(0.0))),
        (
            "--limiter needs --rps",
            Box::new(|s| s.limiter = Some("redis://127.0.0.1:1/".into())),
        ),
        (
            "--concurrency",
            Box::new(|s| s.concurrency = ConcurrencySpec::Fixed(0)),
        ),
        (
            "--webhook-secret",
            Box::new(|s| {
                s.webhook = Some(WebhookSpec {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    url: None,
                    secret: Secret::new("short"),
                    fallback_after: Duration::from_secs(1),
                })
            }),
        ),
    ];
    for (needle, change) in cases {
        let mut spec = base.clone();
        change(&mut spec);
        let e = spec.start(Arc::new(Tracker::new())).await.unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    let admin = Client::builder()
        .base_url(handle.base_url())
        .api_key(KEY)
        .build()
        .unwrap();
    assert!(admin.list_webhooks().await.unwrap().is_empty());
    handle.shutdown().await;
}

#[test]
fn debug_never_shows_the_key_or_a_redis_password() {
    let mut spec = RunSpec::new("p", "imggo_secret_key_value");
    spec.cache = "redis://:hunter2@127.0.0.1:6379/".into();
    spec.limiter = Some("redis://user:hunter3@127.0.0.1:6379/".into());
    spec.webhook = Some(WebhookSpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        url: None,
        secret: Secret::new("a-webhook-secret-of-32-characters"),
        fallback_after: Duration::from_secs(1),
    });
    let text = format!("{spec:?}");
    for secret in [
        "imggo_secret_key_value",
        "hunter2",
        "hunter3",
        "a-webhook-secret",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}
