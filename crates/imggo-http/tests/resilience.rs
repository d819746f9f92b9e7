//! Retries, rate limits and polling against an emulator that injects faults: no retry
//! ever creates a second job, 429s wait at least Retry-After, an exhausted quota fails at
//! once, and polling works in both status dialects.

mod common;

use std::time::{Duration, Instant};

use common::*;
use imggo_core::{ContentHash, Error, JobStatus, Manifest};
use imggo_emulator::{Config, Dialect, Faults, LatencyModel, Limits};
use imggo_http::{IngestOptions, PollPolicy};

fn poll(deadline: Duration) -> PollPolicy {
    PollPolicy {
        first: Duration::from_millis(5),
        second: Duration::from_millis(5),
        factor: 1.5,
        max_interval: Duration::from_millis(40),
        deadline,
    }
}

#[tokio::test]
async fn injected_500s_and_503s_are_retried_without_duplicate_jobs() {
    let faults = Faults {
        fail_500: 0.35,
        fail_503: 0.1,
        ..Default::default()
    };
    let Scenario { emu, pattern, c } =
        scenario(Config::default().faults(faults).seed(11), "P", None).await;
    let images = small_images(6);
    let mut job_ids = Vec::new();
    let mut retried = 0;
    for (name, bytes) in &images {
        let a = c
            .ingest_bytes(&pattern.id, bytes.clone(), named(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        retried += a.attempts - 1;
        job_ids.push(a.response.job_id);
    }
    let s = emu.stats();
    assert!(
        s.faults.http_500 > 0 && s.faults.http_503 > 0,
        "the seed injects both: {:?}",
        s.faults
    );
    assert!(retried > 0);
    assert_eq!(s.jobs_created, images.len() as u64, "one job per image");
    for (name, bytes) in &images {
        assert_eq!(
            s.ingests_of(&ContentHash::of(bytes).to_string()),
            1,
            "{name} reached the handler once"
        );
    }
    job_ids.sort();
    job_ids.dedup();
    assert_eq!(job_ids.len(), images.len());
    // Reads retry the same way.
    for id in &job_ids {
        assert_eq!(
            c.wait_for_job(id, &poll(Duration::from_secs(20)))
                .await
                .unwrap()
                .status,
            JobStatus::Succeeded
        );
    }
    emu.shutdown().await;
}

/// Ingests each image once (with the client's retries), panicking with its name on error.
async fn ingest_each(c: &imggo_http::Client, pattern_id: &str, images: &[(String, bytes::Bytes)]) {
    for (name, bytes) in images {
        c.ingest_bytes(pattern_id, bytes.clone(), IngestOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn dropped_connections_are_retried_with_the_same_key() {
    let faults = Faults {
        drop: 0.4,
        ..Default::default()
    };
    let Scenario { emu, pattern, c } =
        scenario(Config::default().faults(faults).seed(3), "P", None).await;
    let images = small_images(8);
    ingest_each(&c, &pattern.id, &images).await;
    let s = emu.stats();
    assert!(s.faults.dropped > 0, "{:?}", s.faults);
    assert!(
        s.ingests_replayed > 0,
        "a response was lost after the job was made, and the retry found it"
    );
    assert_eq!(
        s.jobs_created,
        images.len() as u64,
        "no dropped response produced a second job"
    );
    let total: u64 = images
        .iter()
        .map(|(_, b)| s.ingests_of(&ContentHash::of(b).to_string()))
        .sum();
    assert_eq!(total, images.len() as u64 + s.ingests_replayed);
    emu.shutdown().await;
}

/// The server checks an idempotency key before its upload and inserts after it, so of two
/// requests with one key in flight together, the second hits the unique index and gets a
/// 500. Each retry of a dropped response here is such a duplicate (within the race window
/// of its job), and loses the race once: the client's next retry must find the one job.
#[tokio::test]
async fn a_racing_duplicate_500_is_retried_into_the_one_job() {
    let faults = Faults {
        drop: 0.4,
        race_dup: 1.0,
        ..Default::default()
    };
    let Scenario { emu, pattern, c } =
        scenario(Config::default().faults(faults).seed(3), "P", None).await;
    let images = small_images(8);
    ingest_each(&c, &pattern.id, &images).await;
    // Two sends of one image at once: one job, the same id for both.
    let (_, one) = &images[0];
    let (a, b) = tokio::join!(
        c.ingest_bytes(&pattern.id, one.clone(), IngestOptions::default()),
        c.ingest_bytes(&pattern.id, one.clone(), IngestOptions::default()),
    );
    assert_eq!(a.unwrap().response.job_id, b.unwrap().response.job_id);
    let s = emu.stats();
    assert!(s.faults.race_dup > 0, "{:?}", s.faults);
    assert_eq!(
        s.jobs_created,
        images.len() as u64,
        "no racing duplicate produced a second job"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_429_waits_at_least_retry_after() {
    let limits = Limits {
        min_gap: Some(Duration::from_millis(600)),
        ..Default::default()
    };
    let Scenario { emu, pattern, c } = scenario(Config::default().limits(limits), "P", None).await;
    let imgs = small_images(2);
    c.ingest_bytes(&pattern.id, imgs[0].1.clone(), IngestOptions::default())
        .await
        .unwrap();
    let t = Instant::now();
    let second = c
        .ingest_bytes(&pattern.id, imgs[1].1.clone(), IngestOptions::default())
        .await
        .unwrap();
    let waited = t.elapsed();
    assert_eq!(second.http_status, 202);
    assert_eq!(second.attempts, 2);
    assert_eq!(emu.stats().rate_limited, 1);
    // The server rounds 600 ms up to `Retry-After: 1`; the client slept at least that.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn an_exhausted_quota_fails_fast() {
    let limits = Limits {
        monthly_quota: Some(1),
        ..Default::default()
    };
    let Scenario { emu, pattern, c } = scenario(Config::default().limits(limits), "P", None).await;
    let imgs = small_images(2);
    c.ingest_bytes(&pattern.id, imgs[0].1.clone(), IngestOptions::default())
        .await
        .unwrap();
    let attempts_before = c.transport_stats().attempts;
    let e = c
        .ingest_bytes(&pattern.id, imgs[1].1.clone(), IngestOptions::default())
        .await
        .unwrap_err();
    match &e {
        Error::QuotaExhausted {
            retry_after,
            request_id,
            limit,
        } => {
            assert!(*retry_after > Duration::from_secs(600), "{retry_after:?}");
            assert!(request_id.is_some());
            assert!(limit.is_some());
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    assert!(!e.is_retryable());
    assert_eq!(
        c.transport_stats().attempts,
        attempts_before + 1,
        "one attempt, no sleeping"
    );
    assert_eq!(emu.stats().rate_limited, 1);
    emu.shutdown().await;
}

async fn poll_in(dialect: Dialect) {
    let config = Config::default()
        .dialect(dialect)
        .latency(LatencyModel::Fixed(Duration::from_millis(120)));
    let Scenario { emu, pattern, c } = scenario(config, "P", object_schema()).await;
    let a = ingest_plate(&c, &pattern.id).await;
    assert_eq!(a.response.status, JobStatus::Queued);
    let job = c
        .wait_for_job(&a.response.job_id, &poll(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Succeeded, "{dialect:?}");
    assert!(
        matches!(job.manifest, Some(Manifest::Json(_))),
        "{dialect:?}: {:?}",
        job.manifest
    );
    assert_eq!(job.id, a.response.job_id);
    assert!(
        emu.stats().job_polls >= 2,
        "polled while it was queued/running"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn polling_in_the_server_dialect() {
    poll_in(Dialect::Server).await;
}

#[tokio::test]
async fn polling_in_the_docs_dialect() {
    poll_in(Dialect::Docs).await;
}

#[tokio::test]
async fn failed_jobs_and_deadlines_are_typed() {
    for dialect in [Dialect::Server, Dialect::Docs] {
        let faults = Faults {
            job_fail: 1.0,
            ..Default::default()
        };
        let Scenario { emu, pattern, c } =
            scenario(Config::default().faults(faults).dialect(dialect), "P", None).await;
        let a = ingest_plate(&c, &pattern.id).await;
        let e = c
            .wait_for_job(&a.response.job_id, &poll(Duration::from_secs(10)))
            .await
            .unwrap_err();
        match e {
            Error::JobFailed { job_id, message } => {
                assert_eq!(job_id, a.response.job_id);
                assert!(!message.is_empty());
            }
            other => panic!("{dialect:?}: expected JobFailed, got {other:?}"),
        }
        emu.shutdown().await;
    }

    let Scenario { emu, pattern, c } = scenario(
        Config::default().latency(LatencyModel::Fixed(Duration::from_secs(30))),
        "P",
        None,
    )
    .await;
    let a = ingest_plate(&c, &pattern.id).await;
    let e = c
        .wait_for_job(&a.response.job_id, &poll(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "job wait",
                ..
            }
        ),
        "{e:?}"
    );

    // Cancel-safe: an abandoned wait leaves the client usable and stops polling.
    let long = poll(Duration::from_secs(60));
    let waiting = c.wait_for_job(&a.response.job_id, &long);
    assert!(tokio::time::timeout(Duration::from_millis(100), waiting)
        .await
        .is_err());
    let polls = emu.stats().job_polls;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        emu.stats().job_polls,
        polls,
        "no poll after the future was dropped"
    );
    assert_eq!(
        c.get_job(&a.response.job_id).await.unwrap().status,
        JobStatus::Queued
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn polling_survives_503s_and_honours_their_retry_after() {
    // Every other request or so is a 503 with `Retry-After: 1`.
    let faults = Faults {
        fail_503: 0.5,
        ..Default::default()
    };
    let emu = emulator(Config::default().faults(faults).seed(5)).await;
    let pattern = emu.create_pattern("P", None);
    // One attempt per call, so the wait loop itself must handle the 503s.
    let c = builder(&emu)
        .retry_policy(std::sync::Arc::new(imggo_http::DefaultRetry {
            max_attempts: 1,
            ..Default::default()
        }))
        .build()
        .unwrap();
    let a = loop {
        match c
            .ingest_bytes(
                &pattern.id,
                image("car-plate3.jpg"),
                IngestOptions::default(),
            )
            .await
        {
            Ok(a) => break a,
            Err(e) => assert_eq!(e.status(), Some(503), "{e:?}"),
        }
    };
    let before = emu.stats().faults.http_503;
    let t = Instant::now();
    let job = c
        .wait_for_job(&a.response.job_id, &poll(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    let during = emu.stats().faults.http_503 - before;
    assert!(during > 0, "the seed injects 503s while polling");
    assert!(
        t.elapsed() >= Duration::from_secs(during),
        "{during} × Retry-After 1 s honoured"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn attempt_and_total_timeouts_are_typed() {
    let faults = Faults {
        slow: 1.0,
        slow_by: Duration::from_millis(400),
        ..Default::default()
    };
    let emu = emulator(Config::default().faults(faults)).await;
    // Each attempt gives up after 40 ms and is retried (a timeout may succeed next time).
    let c = builder(&emu)
        .attempt_timeout(Duration::from_millis(40))
        .build()
        .unwrap();
    let e = c.health().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "attempt",
                ..
            }
        ),
        "{e:?}"
    );
    let e = c.get_job("any").await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Timeout {
                what: "attempt",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        c.transport_stats().attempts,
        1 + 6,
        "health: one attempt; get_job: all six"
    );

    // The call's own deadline cuts an attempt short and is reported as such.
    let c = builder(&emu)
        .total_timeout(Duration::from_millis(60))
        .build()
        .unwrap();
    let e = c.usage().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { what: "total", .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(c.transport_stats().attempts, 1);
    emu.shutdown().await;
}
