//! Single-flight: in-process and across workers through a Redis lease.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::key;
use imggo_cache::{DedupOptions, Deduper, RedisLink, RedisOptions, Role};
use imggo_testkit::RedisServer;

type D = Deduper<String, String>;

/// Waits (up to 20 s, then fails) until `cond` holds: how a leader's upstream call is
/// held open until every other caller is provably waiting for it.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn total_waiting(ds: &[Arc<D>]) -> u64 {
    ds.iter().map(|d| d.stats().waiting).sum()
}

/// 100 concurrent requests for one key spread over `workers`; returns the roles.
async fn hundred_requests(workers: Vec<Arc<D>>) -> (u64, Vec<Role>) {
    let calls = Arc::new(AtomicU64::new(0));
    let k = key("dedup", 1);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let d = Arc::clone(&workers[i % workers.len()]);
        let all = workers.clone();
        let calls = Arc::clone(&calls);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            d.run(&k, || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                until("99 callers waiting", || total_waiting(&all) == 99).await;
                Ok::<_, String>("manifest".to_owned())
            })
            .await
        }));
    }
    let mut roles = Vec::new();
    for t in tasks {
        let (value, role) = t.await.unwrap().unwrap();
        assert_eq!(value, "manifest");
        roles.push(role);
    }
    (calls.load(Ordering::SeqCst), roles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_100_requests_make_one_call() {
    let d: Arc<D> = Arc::new(Deduper::new());
    let (calls, roles) = hundred_requests(vec![Arc::clone(&d)]).await;
    assert_eq!(calls, 1);
    assert_eq!(roles.iter().filter(|r| **r == Role::Leader).count(), 1);
    let s = d.stats();
    assert_eq!((s.leaders, s.followers, s.waiting), (1, 99, 0));
    // The flight is over: the next request runs again.
    let (_, role) = d
        .run(&key("dedup", 1), || async { Ok("again".to_owned()) })
        .await
        .unwrap();
    assert_eq!(role, Role::Leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_workers_100_requests_make_one_call() {
    let server = RedisServer::start();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let link = RedisLink::connect(&server.url(), RedisOptions::default())
            .await
            .unwrap();
        let options = DedupOptions {
            poll: Duration::from_millis(5),
            ..DedupOptions::default()
        };
        workers.push(Arc::new(D::with_redis(link, options)));
    }
    let (calls, roles) = hundred_requests(workers.clone()).await;
    assert_eq!(calls, 1, "one upstream call for 100 requests on 4 workers");
    assert_eq!(roles.iter().filter(|r| **r == Role::Leader).count(), 1);
    let remote: u64 = workers.iter().map(|w| w.stats().remote_followers).sum();
    assert_eq!(
        remote, 3,
        "one waiter per other worker, who then served its local followers"
    );
    assert!(workers.iter().all(|w| w.stats().fallbacks == 0));
    // The lease was released.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let lease = imggo_cache::dedup::LeaseNames::new(&key("dedup", 1)).lease;
    let exists: bool = redis::cmd("EXISTS")
        .arg(lease)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_lease_expires_and_another_takes_over() {
    let server = RedisServer::start();
    let k = key("dead-leader", 1);
    // A worker claimed the key and died without releasing: its lease has 300 ms left.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let names = imggo_cache::dedup::LeaseNames::new(&k);
    let _: () = redis::cmd("SET")
        .arg(&names.lease)
        .arg("dead-token")
        .arg("PX")
        .arg(300)
        .query_async(&mut conn)
        .await
        .unwrap();

    let link = RedisLink::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let d = D::with_redis(
        link,
        DedupOptions {
            poll: Duration::from_millis(10),
            ..Default::default()
        },
    );
    let calls = AtomicU64::new(0);
    let (v, role) = d
        .run(&k, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok("after takeover".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(
        (v.as_str(), role, calls.load(Ordering::SeqCst)),
        ("after takeover", Role::Leader, 1)
    );
    // It claimed only after the dead lease expired (SET NX), and released its own.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&names.lease)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -2, "released");
    // A later request finds the published result without calling.
    let (v, role) = d
        .run(&k, || async { Err("must not be called".to_owned()) })
        .await
        .unwrap();
    assert_eq!((v.as_str(), role), ("after takeover", Role::Follower));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_leader_shares_its_error_with_local_followers() {
    let d: Arc<D> = Arc::new(Deduper::new());
    let k = key("fails", 1);
    let leader = {
        let d = Arc::clone(&d);
        let k = k.clone();
        tokio::spawn(async move {
            let d2 = Arc::clone(&d);
            d.run(&k, || async move {
                until("follower waiting", || d2.stats().waiting == 1).await;
                Err::<String, _>("422 unprocessable image".to_owned())
            })
            .await
        })
    };
    until("leader running", || d.stats().leaders == 1).await;
    let follower = d.run(&k, || async { Ok("never".to_owned()) }).await;
    assert_eq!(follower.unwrap_err().as_str(), "422 unprocessable image");
    assert_eq!(
        leader.await.unwrap().unwrap_err().as_str(),
        "422 unprocessable image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over_to_a_follower() {
    let d: Arc<D> = Arc::new(Deduper::new());
    let k = key("cancel", 1);
    let leader = {
        let d = Arc::clone(&d);
        let k = k.clone();
        tokio::spawn(async move {
            d.run(&k, std::future::pending::<Result<String, String>>)
                .await
        })
    };
    until("leader running", || d.stats().leaders == 1).await;
    let follower = {
        let d = Arc::clone(&d);
        let k = k.clone();
        tokio::spawn(async move { d.run(&k, || async { Ok("took over".to_owned()) }).await })
    };
    until("follower waiting", || d.stats().waiting == 1).await;
    leader.abort();
    let (v, role) = follower.await.unwrap().unwrap();
    assert_eq!((v.as_str(), role), ("took over", Role::Leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_run_locally() {
    let mut server = RedisServer::start();
    let link = RedisLink::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    server.stop();
    let d = D::with_redis(link, DedupOptions::default());
    let (v, role) = d
        .run(&key("down", 1), || async { Ok("local".to_owned()) })
        .await
        .unwrap();
    assert_eq!((v.as_str(), role), ("local", Role::Leader));
    assert_eq!(d.stats().fallbacks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_returns_the_result_published_first() {
    let server = RedisServer::start();
    let k = key("lost-lease", 1);
    let names = imggo_cache::dedup::LeaseNames::new(&k);
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let link = RedisLink::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let d = D::with_redis(
        link,
        DedupOptions {
            lease: Duration::from_millis(300),
            poll: Duration::from_millis(10),
            ..Default::default()
        },
    );
    let (v, role) = d
        .run(&k, || async {
            // While this call runs, its lease is lost (expired under a stalled Redis,
            // say): another worker claims the key, runs it and publishes first.
            let mut other = conn.clone();
            let _: () = redis::cmd("SET")
                .arg(&names.lease)
                .arg("other-worker")
                .arg("PX")
                .arg(60_000)
                .query_async(&mut other)
                .await
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg(&names.result)
                .arg(serde_json::to_vec("theirs").unwrap())
                .query_async(&mut other)
                .await
                .unwrap();
            // Long enough for a renewal to find the other worker's claim.
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok("mine".to_owned())
        })
        .await
        .unwrap();
    assert_eq!((v.as_str(), role), ("theirs", Role::Follower));
    assert_eq!(d.stats().leases_lost, 1);
    // The other worker's claim was neither extended to our length nor deleted.
    let holder: Option<String> = redis::cmd("GET")
        .arg(&names.lease)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("other-worker"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&names.lease)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 50_000,
        "the other worker's lease keeps its own expiry: {ttl}"
    );
}
