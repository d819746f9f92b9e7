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
//! After the criterion groups, a *paired* section runs the plain clients in alternation:
//! for each concurrency, `PAIRED_ROUNDS` rounds of imggo-http, reqwest, wrk and two bare
//! transports for one second each, in an order that rotates every round, and prints each
//! round's ratios and their median. On a shared machine the background load drifts over
//! the minutes criterion needs; ratios taken within the same few seconds are much less
//! exposed to that drift.
//!
//! The bare transports do only `GET` + collect the body: no JSON, no retry layer, no
//! timeouts, no header parsing. *bare hyper conn* is hyper's connection primitive
//! (`hyper::client::conn::http1`, one connection per task), which imggo-http's own pool
//! is built on: its ratio to wrk is the ceiling of any client on hyper in this setup.
//! *bare hyper-util* is hyper-util's pooled legacy client, the pool imggo-http used
//! before it had its own.
//!
//! `cargo bench -p imggo-benches --bench http`; set `IMGGO_BENCH_WRK=0` to skip wrk
//! (and with it the paired section).

use std::hint::black_box;
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imggo_core::{Envelope, Job};
use imggo_emulator::{Config, Emulator, Handle};
use imggo_http::{Client, IngestOptions};
use tokio::runtime::Runtime;

const KEY: &str = "imggo_bench_key";
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Rounds of the paired section, per concurrency.
const PAIRED_ROUNDS: usize = 7;

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

/// Runs `one` in a loop on one task per element of `states` while `more(task, calls done
/// by it)` says so; returns how many calls completed. Each task owns its state, which
/// every call takes and hands back, and counts its own calls: the loop itself touches no
/// shared counter or reference count per call (wrk does not either).
async fn looped<S, F, Fut, M>(states: Vec<S>, one: F, more: M) -> u64
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = S> + Send,
    M: Fn(usize, u64) -> bool + Clone + Send + 'static,
{
    let tasks: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(task, mut state)| {
            let (one, more) = (one.clone(), more.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while more(task, done) {
                    state = one(state).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("bench task");
    }
    done
}

/// `iters` requests spread evenly over `concurrency` tasks, each with a clone of `state`.
async fn drive<S, F, Fut>(iters: u64, concurrency: usize, state: S, one: F) -> Duration
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = S> + Send,
{
    let n = concurrency as u64;
    let quota = move |task: usize| iters / n + u64::from((task as u64) < iters % n);
    let start = Instant::now();
    looped(vec![state; concurrency], one, move |task, done| {
        done < quota(task)
    })
    .await;
    start.elapsed()
}

/// Requests per second of one task per element of `states` looping on `one` for `dur`.
async fn rate_for<S, F, Fut>(dur: Duration, states: Vec<S>, one: F) -> f64
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = S> + Send,
{
    let start = Instant::now();
    let end = start + dur;
    let done = looped(states, one, move |_, _| Instant::now() < end).await;
    done as f64 / start.elapsed().as_secs_f64()
}

async fn imggo_get(s: (Client, Arc<str>)) -> (Client, Arc<str>) {
    black_box(s.0.get_job(&s.1).await.expect("get_job"));
    s
}

async fn reqwest_get(s: (reqwest::Client, Arc<str>)) -> (reqwest::Client, Arc<str>) {
    let resp = s.0.get(&*s.1).bearer_auth(KEY).send().await.expect("send");
    assert!(resp.status().is_success());
    let job: Envelope<Job> = resp.json().await.expect("json");
    black_box(job);
    s
}

/// The bare transport: hyper-util's pooled legacy client over plain HTTP.
type Bare = HyperClient<HttpConnector, Empty<Bytes>>;

fn bare_client() -> Bare {
    HyperClient::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// What both bare rows do with an answer: check the status and read the whole body.
async fn drain(resp: http::Response<hyper::body::Incoming>) {
    assert!(resp.status().is_success());
    black_box(resp.into_body().collect().await.expect("body").to_bytes());
}

type BareState = (Bare, http::Uri, http::HeaderValue);

async fn bare_get(s: BareState) -> BareState {
    let req = http::Request::get(s.1.clone())
        .header(http::header::AUTHORIZATION, s.2.clone())
        .body(Empty::new())
        .expect("request");
    drain(s.0.request(req).await.expect("send")).await;
    s
}

/// One task's own HTTP/1.1 connection made with hyper's connection primitive.
type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn conn_open(uri: &http::Uri) -> Conn {
    let addr = format!(
        "{}:{}",
        uri.host().expect("host"),
        uri.port_u16().expect("port")
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// One task's connection and what its requests carry: `Host`, `Authorization`, the path.
type ConnState = (
    Conn,
    http::HeaderValue,
    http::HeaderValue,
    http::uri::PathAndQuery,
);

async fn conn_get(mut s: ConnState) -> ConnState {
    s.0.ready().await.expect("connection ready");
    let req = http::Request::get(http::Uri::from(s.3.clone()))
        .header(http::header::HOST, s.1.clone())
        .header(http::header::AUTHORIZATION, s.2.clone())
        .body(Empty::new())
        .expect("request");
    drain(s.0.send_request(req).await.expect("send")).await;
    s
}

/// `concurrency` connections of their own, opened before the clock starts.
async fn conn_states(
    concurrency: usize,
    uri: &http::Uri,
    auth: &http::HeaderValue,
) -> Vec<ConnState> {
    let host = http::HeaderValue::try_from(uri.authority().expect("authority").as_str())
        .expect("host header");
    let path = uri.path_and_query().expect("path").clone();
    let mut states = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        states.push((
            conn_open(uri).await,
            host.clone(),
            auth.clone(),
            path.clone(),
        ));
    }
    states
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The paired section: imggo-http, reqwest, wrk and the two bare transports (all plain)
/// for one second each, in turn, `PAIRED_ROUNDS` times per concurrency; prints per-round
/// and median ratios.
fn paired(fx: &Fixture, url: &Arc<str>) {
    let dur = Duration::from_secs(1);
    let client = imggo_client(&fx.emu, false);
    let rq = reqwest_client();
    let bare = bare_client();
    let uri: http::Uri = url.parse().expect("job url");
    // Built once, as imggo-http builds its own: the floor should not pay a format! per call.
    let auth = http::HeaderValue::try_from(format!("Bearer {KEY}")).expect("header value");
    for &n in &CONCURRENCY {
        let (mut vs_wrk, mut vs_reqwest) = (Vec::new(), Vec::new());
        let (mut bare_vs_wrk, mut conn_vs_wrk) = (Vec::new(), Vec::new());
        'rounds: for round in 1..=PAIRED_ROUNDS {
            // [imggo-http, reqwest, wrk, bare hyper-util, bare hyper conn], run in an order
            // that rotates every round, so that none is always first after a switch.
            let mut rates = [0.0f64; 5];
            for k in 0..rates.len() {
                let which = (k + round) % rates.len();
                rates[which] = match which {
                    0 => {
                        let state = (client.clone(), fx.job_id.clone());
                        fx.rt.block_on(rate_for(dur, vec![state; n], imggo_get))
                    }
                    1 => {
                        let state = (rq.clone(), url.clone());
                        fx.rt.block_on(rate_for(dur, vec![state; n], reqwest_get))
                    }
                    2 => match wrk(url, n, false, 1) {
                        Ok(rps) => rps,
                        Err(e) => {
                            eprintln!("paired c{n} round {round}: {e}");
                            continue 'rounds;
                        }
                    },
                    3 => {
                        let state = (bare.clone(), uri.clone(), auth.clone());
                        fx.rt.block_on(rate_for(dur, vec![state; n], bare_get))
                    }
                    _ => fx.rt.block_on(async {
                        let states = conn_states(n, &uri, &auth).await;
                        rate_for(dur, states, conn_get).await
                    }),
                };
            }
            let [imggo, reqwest, wrk, floor, conn] = rates;
            println!(
                "paired c{n} round {round}: imggo-http {imggo:.0}, reqwest {reqwest:.0}, wrk {wrk:.0}, bare hyper-util {floor:.0}, bare hyper conn {conn:.0} requests/s; imggo/wrk {:.0} %, imggo/reqwest {:.2}, bare hyper-util/wrk {:.0} %, bare hyper conn/wrk {:.0} %",
                100.0 * imggo / wrk,
                imggo / reqwest,
                100.0 * floor / wrk,
                100.0 * conn / wrk
            );
            vs_wrk.push(imggo / wrk);
            vs_reqwest.push(imggo / reqwest);
            bare_vs_wrk.push(floor / wrk);
            conn_vs_wrk.push(conn / wrk);
        }
        if !vs_wrk.is_empty() {
            println!(
                "paired c{n} median of {} rounds: imggo/wrk {:.0} %, imggo/reqwest {:.2}, bare hyper-util/wrk {:.0} %, bare hyper conn/wrk {:.0} %",
                vs_wrk.len(),
                100.0 * median(vs_wrk),
                median(vs_reqwest),
                100.0 * median(bare_vs_wrk),
                100.0 * median(conn_vs_wrk)
            );
        }
    }
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
                    let state = (client.clone(), id.clone());
                    fx.rt.block_on(drive(iters, n, state, imggo_get))
                })
            });
        }

        let rq = reqwest_client();
        let u = url.clone();
        group.bench_function(BenchmarkId::new("reqwest", n), |b| {
            b.iter_custom(|iters| {
                let state = (rq.clone(), u.clone());
                fx.rt.block_on(drive(iters, n, state, reqwest_get))
            })
        });
        group.finish();

        if std::env::var("IMGGO_BENCH_WRK").as_deref() != Ok("0") {
            for gzip in [false, true] {
                match wrk(&url, n, gzip, 5) {
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
    if std::env::var("IMGGO_BENCH_WRK").as_deref() != Ok("0") {
        paired(&fx, &url);
    }
    let stats = fx.emu.stats();
    println!(
        "emulator: {} requests, {} TCP connections accepted",
        stats.requests_total, stats.connections_accepted
    );
}

/// Runs `wrk -tT -cN -dSECSs URL -H 'Authorization: Bearer KEY'`; returns Requests/sec.
fn wrk(url: &str, n: usize, gzip: bool, secs: u32) -> Result<f64, String> {
    let threads = n.min(2);
    let mut cmd = Command::new("wrk");
    cmd.args([
        format!("-t{threads}"),
        format!("-c{n}"),
        format!("-d{secs}s"),
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
