//! The job state machine under every latency model, `image_url` ingests, the docs dialect.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{corpus, start, wait_terminal, Api};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use imggo_core::{ContentHash, Envelope, Job, JobStatus};
use imggo_emulator::{Config, Faults, LatencyModel};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Polls `job` every 2 ms and returns the distinct states seen, in order, and the time to
/// the terminal one.
async fn watch_states(api: &Api, job: &str) -> (Vec<String>, Duration) {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let v = api.get(&format!("/jobs/{job}")).await.json();
        let s = v["data"]["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "succeeded" || s == "failed" {
            return (seen, start.elapsed());
        }
        assert!(start.elapsed() < Duration::from_secs(10), "stuck in {s}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn ingest_one(emu: &imggo_emulator::Handle, api: &Api, name: &str) -> String {
    let pattern = emu.create_pattern(name, None);
    let img = corpus("inventory3.jpg");
    let r = api.ingest_jpeg(&pattern.id, &img, "i.jpg").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    r.job_id()
}

/// Ingests `n` jobs for a new pattern `name`, then waits for each and returns its final
/// state, in ingest order.
async fn run_jobs(
    emu: &imggo_emulator::Handle,
    api: &Api,
    name: &str,
    n: usize,
    limit: Duration,
) -> Vec<Value> {
    let pattern = emu.create_pattern(name, None);
    let img = corpus("inventory3.jpg");
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(api.ingest_jpeg(&pattern.id, &img, "i.jpg").await.job_id());
    }
    let mut done = Vec::new();
    for id in &ids {
        done.push(wait_terminal(api, id, limit).await);
    }
    done
}

#[tokio::test]
async fn fixed_latency_goes_queued_running_succeeded() {
    let (emu, api) =
        start(Config::default().latency(LatencyModel::Fixed(Duration::from_millis(200)))).await;
    let job = ingest_one(&emu, &api, "Fixed").await;
    let (states, took) = watch_states(&api, &job).await;
    assert_eq!(states, ["queued", "running", "succeeded"]);
    assert!(took >= Duration::from_millis(150), "{took:?}");
    let j: Envelope<Job> =
        serde_json::from_value(api.get(&format!("/jobs/{job}")).await.json()).unwrap();
    let ms = j.data.latency_ms.unwrap();
    assert!((200..1000).contains(&ms), "latency_ms {ms}");
    assert!(j.data.started_at.is_some());
    emu.shutdown().await;
}

/// A job is done at its due time as far as a reader can tell, whether or not the timer has
/// fired: this test's runtime has one thread, blocked past the due time, so no timer task can
/// have run when the job is read.
#[tokio::test]
async fn a_job_read_after_its_due_time_is_finished_without_its_timer() {
    let (emu, api) =
        start(Config::default().latency(LatencyModel::Fixed(Duration::from_millis(40)))).await;
    let job = ingest_one(&emu, &api, "Due").await;
    assert_eq!(emu.job(&job).unwrap().status, JobStatus::Queued);
    std::thread::sleep(Duration::from_millis(60));
    let j = emu.job(&job).unwrap();
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.latency_ms, Some(40));
    assert!(j.manifest.is_some() && j.completed_at.is_some());
    // The timer, when it fires, finds nothing left to do (not even `updated_at` to touch: it
    // runs at least 2 ms after the read, in a later millisecond); the counters saw one finish.
    std::thread::sleep(Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(emu.job(&job).unwrap(), j);
    let stats = emu.stats();
    let states = ["queued", "running", "succeeded"].map(|s| stats.jobs_in(s));
    assert_eq!(states, [0, 0, 1]);
    emu.shutdown().await;
}

#[tokio::test]
async fn uniform_latency_spreads_within_the_range() {
    let (emu, api) = start(
        Config::default()
            .latency("uniform:20-120".parse().unwrap())
            .seed(5),
    )
    .await;
    let done = run_jobs(&emu, &api, "Uniform", 20, Duration::from_secs(5)).await;
    let lat: Vec<u64> = done
        .iter()
        .map(|v| v["data"]["latency_ms"].as_u64().unwrap())
        .collect();
    assert!(lat.iter().all(|&l| (20..400).contains(&l)), "{lat:?}");
    let distinct: HashSet<u64> = lat.iter().map(|l| l / 10).collect();
    assert!(distinct.len() >= 4, "latencies are not spread: {lat:?}");
    assert_eq!(emu.stats().jobs_in("succeeded"), 20);
    emu.shutdown().await;
}

#[tokio::test]
async fn lognormal_latency_has_its_median() {
    let (emu, api) = start(
        Config::default()
            .latency("lognormal:30,120".parse().unwrap())
            .seed(11),
    )
    .await;
    let done = run_jobs(&emu, &api, "LogNormal", 40, Duration::from_secs(10)).await;
    let mut lat = Vec::new();
    for v in &done {
        assert_eq!(v["data"]["status"], "succeeded");
        lat.push(v["data"]["latency_ms"].as_u64().unwrap());
    }
    lat.sort_unstable();
    // Median of 40 draws from lognormal(median 30 ms): well inside 15..80 ms even with
    // timer slack.
    let median = lat[20];
    assert!((15..80).contains(&median), "median {median} of {lat:?}");
    assert!(lat[0] < lat[39], "all equal: {lat:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_parse_errors_name_the_input() {
    for bad in [
        "uniform:9-3",
        "lognormal:0,5",
        "fast",
        "uniform:1",
        "lognormal:50,10",
    ] {
        let e = bad.parse::<LatencyModel>().unwrap_err().to_string();
        assert!(e.contains("latency"), "{bad}: {e}");
    }
    assert_eq!(
        "15".parse::<LatencyModel>().unwrap(),
        LatencyModel::Fixed(Duration::from_millis(15))
    );
}

#[tokio::test]
async fn job_fail_fault_fails_jobs_with_a_message() {
    let (emu, api) = start(Config::default().faults(Faults {
        job_fail: 1.0,
        ..Faults::default()
    }))
    .await;
    let job = ingest_one(&emu, &api, "Failing").await;
    let v = wait_terminal(&api, &job, Duration::from_secs(5)).await;
    let j: Envelope<Job> = serde_json::from_value(v).unwrap();
    assert_eq!(j.data.status, JobStatus::Failed);
    assert!(j.data.manifest.is_none());
    assert!(j.data.error.unwrap().message.contains("emulated"));
    let s = emu.stats();
    assert_eq!((s.jobs_in("failed"), s.faults.jobs_failed), (1, 1));
    emu.shutdown().await;
}

/// Serves `body` at every path of a loopback server; 404 for paths ending in `/missing`.
async fn image_server(body: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(body);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let status = if req.uri().path().ends_with("/missing") {
                            StatusCode::NOT_FOUND
                        } else {
                            StatusCode::OK
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn image_url_ingest_fetches_over_http() {
    let img = corpus("resume1.png");
    let server = image_server(img.clone()).await;
    let (emu, api) = start(Config::default()).await;
    let pattern = emu.create_pattern("ByUrl", None);
    let r = api
        .ingest_json(
            &pattern.id,
            &json!({"image_url": format!("http://{server}/img.png"),
                    "idempotency_key": "url-1", "extras": {"batch": 7}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.job_id();
    let v = wait_terminal(&api, &id, Duration::from_secs(5)).await;
    assert_eq!(v["data"]["status"], "succeeded");
    assert_eq!(v["data"]["extras"]["batch"], 7);
    let info = imggo_optimize::probe(&img).unwrap();
    assert_eq!(v["data"]["manifest"]["_emulator"]["width"], info.width);
    assert_eq!(
        emu.stats().ingests_of(&ContentHash::of(&img).to_string()),
        1
    );

    // Unreachable, 404 and non-image URLs fail the job with an invalid-image error.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let text_server = image_server(b"hello, not an image".to_vec()).await;
    for url in [
        format!("http://{dead_addr}/x.png"),
        format!("http://{server}/missing"),
        format!("http://{text_server}/x.png"),
    ] {
        let r = api
            .ingest_json(&pattern.id, &json!({ "image_url": url }))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let id = r.job_id();
        let v = wait_terminal(&api, &id, Duration::from_secs(15)).await;
        assert_eq!(v["data"]["status"], "failed", "{url}");
        let msg = v["data"]["error"].as_str().unwrap();
        assert!(msg.starts_with("Invalid image"), "{url}: {msg}");
    }
    // Bad JSON bodies.
    for body in [
        json!({}),
        json!({"image_url": "not a url"}),
        json!({"image_url": "http://x/", "extras": 3}),
    ] {
        let r = api.ingest_json(&pattern.id, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn docs_dialect_spells_things_the_docs_way() {
    let (emu, api) = start(Config::default().dialect(imggo_emulator::Dialect::Docs)).await;
    let job = ingest_one(&emu, &api, "Docs").await;
    let v = wait_terminal(&api, &job, Duration::from_secs(5)).await;
    assert_eq!(v["data"]["status"], "completed");
    assert_eq!(v["data"]["job_id"], job.as_str());
    assert!(v["data"]["result"].is_object());
    assert!(v["data"].get("manifest").is_none());
    assert!(v["data"]["processing_time_ms"].is_u64());
    // Core parses the docs dialect into the same types.
    let j: Envelope<Job> = serde_json::from_value(v).unwrap();
    assert_eq!(j.data.status, JobStatus::Succeeded);
    assert!(j.data.manifest.is_some());
    let r = api.get("/jobs/nope").await;
    assert_eq!(r.json()["error"]["code"], "not_found");
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_pending_jobs_and_the_listener() {
    let (emu, api) =
        start(Config::default().latency(LatencyModel::Fixed(Duration::from_secs(30)))).await;
    let addr = emu.addr();
    let _job = ingest_one(&emu, &api, "Slow").await;
    let t = Instant::now();
    emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(6));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
