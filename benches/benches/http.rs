//! `get_job` throughput against the emulator (zero latency, loopback): imggo-http and
//! reqwest running the same loop at concurrency 1, 16 and 64, then `wrk` against the same
//! emulator at the same concurrency, all in one run.
//!
//! The emulator and the clients each get a 2-worker Tokio runtime in this process; wrk runs
//! as a child process with 2 threads (1 at concurrency 1, as wrk needs threads ≤ connections).
//! The like-for-like rows ask for uncompressed answers (reqwest is built without gzip and
//! wrk sends no Accept-Encoding); `imggo-http+gzip` is the client's default, compared with
//! `wrk` sending `Accept-Encoding: gzip` (wrk does not inflate, so that row only pays the
//! server's side of compression).
//!
//! `cargo bench -p imggo-benches --bench http`; set `IMGGO_BENCH_WRK=0` to skip wrk.

use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imggo_core::{Envelope, Job};
use imggo_emulator::{Config, Emulator, Handle};
use imggo_http::{Client, IngestOptions};
use tokio::runtime::Runtime;

const KEY: &str = "imggo_bench_key";
const CONCURRENCY: [usize; 3] = [1, 16, 64];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

struct Fixture {
    _emu_rt: Runtime,
    emu: Handle,
    rt: Runtime,
    job_id: Arc<str>,
}

fn fixture() -> Fixture {
    let emu_rt = runtime();
    let emu = emu_rt
        .block_on(Emulator::start(Config::default().api_key(KEY)))
        .expect("emulator starts");
    let pattern = emu.create_pattern("Bench", Some(serde_json::json!({"type": "object"})));
    let rt = runtime();
    let client = imggo_client(&emu, true);
    let image = std::fs::read(imggo_testkit::corpus_file("car-plate3.jpg")).expect("corpus");
    let accepted = rt
        .block_on(client.ingest_bytes(&pattern.id, image.into(), IngestOptions::default()))
        .expect("ingest");
    let job_id: Arc<str> = accepted.response.job_id.into();
    let job = rt.block_on(client.get_job(&job_id)).expect("job");
    assert!(
        job.status.is_terminal(),
        "zero latency: the job is done at once"
    );
    Fixture {
        _emu_rt: emu_rt,
        emu,
        rt,
        job_id,
    }
}

fn imggo_client(emu: &Handle, gzip: bool) -> Client {
    Client::builder()
        .base_url(emu.base_url())
        .api_key(KEY)
        .gzip(gzip)
        .build()
        .expect("client")
}

fn reqwest_client() -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`: give it ring, as imggo-http uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("reqwest client")
}

/// `iters` requests spread over `concurrency` tasks pulling from one counter.
async fn drive<F, Fut>(iters: u64, concurrency: usize, one: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let one = one.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < iters {
                    one().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("bench task");
    }
    start.elapsed()
}

fn get_job(c: &mut Criterion) {
    let fx = fixture();
    let url: Arc<str> = format!("{}/jobs/{}", fx.emu.base_url(), fx.job_id).into();
    let mut wrk_rows = Vec::new();
    for &n in &CONCURRENCY {
        let mut group = c.benchmark_group(format!("get_job/c{n}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(20);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));

        for (name, gzip) in [("imggo-http", false), ("imggo-http+gzip", true)] {
            let client = imggo_client(&fx.emu, gzip);
            let id = fx.job_id.clone();
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| {
                    let (client, id) = (client.clone(), id.clone());
                    fx.rt.block_on(drive(iters, n, move || {
                        let (client, id) = (client.clone(), id.clone());
                        async move {
                            black_box(client.get_job(&id).await.expect("get_job"));
                        }
                    }))
                })
            });
        }

        let rq = reqwest_client();
        let u = url.clone();
        group.bench_function(BenchmarkId::new("reqwest", n), |b| {
            b.iter_custom(|iters| {
                let (rq, u) = (rq.clone(), u.clone());
                fx.rt.block_on(drive(iters, n, move || {
                    let (rq, u) = (rq.clone(), u.clone());
                    async move {
                        let resp = rq.get(&*u).bearer_auth(KEY).send().await.expect("send");
                        assert!(resp.status().is_success());
                        let job: Envelope<Job> = resp.json().await.expect("json");
                        black_box(job);
                    }
                }))
            })
        });
        group.finish();

        if std::env::var("IMGGO_BENCH_WRK").as_deref() != Ok("0") {
            for gzip in [false, true] {
                match wrk(&url, n, gzip) {
                    Ok(rps) => wrk_rows.push((n, gzip, rps)),
                    Err(e) => eprintln!("wrk c={n} gzip={gzip}: {e}"),
                }
            }
        }
    }
    for (n, gzip, rps) in wrk_rows {
        let label = if gzip { "wrk+gzip" } else { "wrk" };
        println!("get_job/c{n}/{label}: {rps:.0} requests/s");
    }
    let stats = fx.emu.stats();
    println!(
        "emulator: {} requests, {} TCP connections accepted",
        stats.requests_total, stats.connections_accepted
    );
}

/// Runs `wrk -tT -cN -d5s URL -H 'Authorization: Bearer KEY'`; returns Requests/sec.
fn wrk(url: &str, n: usize, gzip: bool) -> Result<f64, String> {
    let threads = n.min(2);
    let mut cmd = Command::new("wrk");
    cmd.args([
        format!("-t{threads}"),
        format!("-c{n}"),
        "-d5s".to_owned(),
        url.to_owned(),
        "-H".to_owned(),
        format!("Authorization: Bearer {KEY}"),
    ]);
    if gzip {
        cmd.args(["-H", "Accept-Encoding: gzip"]);
    }
    eprintln!("running: {cmd:?}");
    let out = cmd.output().map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if text.contains("Non-2xx") {
        return Err(format!("wrk saw errors: {text}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output: {text}"))
}

criterion_group!(benches, get_job);
criterion_main!(benches);
