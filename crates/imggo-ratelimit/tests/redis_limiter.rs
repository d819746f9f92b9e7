//! RedisLimiter against a real redis-server: decisions, namespacing, NOSCRIPT reload,
//! outages under fail-open and fail-closed.

use std::time::Duration;

use imggo_core::Secret;
use imggo_ratelimit::{FailureMode, LimitError, Limiter, RedisLimiter, Subject};
use imggo_testkit::RedisServer;

async fn limiter(
    redis: &RedisServer,
    subject: Subject,
    limit: u32,
    window: Duration,
) -> RedisLimiter {
    let conn = RedisLimiter::connect(&redis.url()).await.unwrap();
    RedisLimiter::new(conn, subject, limit, window).unwrap()
}

#[tokio::test]
async fn admits_up_to_the_limit_then_says_when() {
    let redis = RedisServer::start();
    let l = limiter(&redis, Subject::named("t1"), 5, Duration::from_millis(800)).await;
    for left in (0..5).rev() {
        let d = l.check().await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
        assert_eq!(d.retry_after, Duration::ZERO);
    }
    let d = l.check().await.unwrap();
    assert!(!d.allowed);
    assert!(
        d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_millis(800),
        "{:?}",
        d.retry_after
    );
    assert!(
        d.server_time > Duration::from_secs(1_600_000_000),
        "Redis TIME, since the epoch"
    );
    tokio::time::sleep(d.retry_after + Duration::from_millis(5)).await;
    assert!(
        l.check().await.unwrap().allowed,
        "the oldest slot has left the window"
    );
    // acquire() waits for the window instead of failing.
    let start = std::time::Instant::now();
    for _ in 0..5 {
        l.acquire().await.unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn subjects_are_separate_and_api_keys_are_hashed() {
    let redis = RedisServer::start();
    let key = Secret::new("imggo_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let a = limiter(&redis, Subject::api_key(&key), 1, Duration::from_secs(10)).await;
    assert!(!a.key().contains(key.expose()), "{}", a.key());
    assert!(!format!("{a:?}").contains(key.expose()));
    assert!(a.key().starts_with("imggo:rl:{key:"), "{}", a.key());
    assert_eq!(
        Subject::api_key(&key),
        Subject::api_key(&Secret::new(key.expose())),
        "the same key always maps to the same subject"
    );
    let b = a.for_subject(Subject::user("u-42"));
    assert!(a.check().await.unwrap().allowed);
    assert!(!a.check().await.unwrap().allowed);
    assert!(
        b.check().await.unwrap().allowed,
        "another subject has its own window"
    );
    let c = a.clone().with_prefix("other:");
    assert_eq!(
        c.key(),
        format!("other:{{{}}}", Subject::api_key(&key).as_str())
    );
    assert!(c.check().await.unwrap().allowed);
    // Nothing in Redis holds the raw key.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter().all(|k| !k.contains(&key.expose()[6..])),
        "{keys:?}"
    );
}

#[tokio::test]
async fn script_is_reloaded_after_a_flush() {
    let redis = RedisServer::start();
    let l = limiter(&redis, Subject::named("t3"), 100, Duration::from_secs(1)).await;
    assert!(l.check().await.unwrap().allowed);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let d = l.check().await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 98, "the reloaded script sees the same window");
}

#[tokio::test]
async fn redis_outage_is_a_typed_error_and_the_mode_is_honoured() {
    let mut redis = RedisServer::start();
    let open = limiter(&redis, Subject::named("t4"), 10, Duration::from_secs(1)).await;
    let closed = open.clone().with_failure_mode(FailureMode::Closed);
    assert!(open.check().await.unwrap().allowed);
    redis.stop();
    let err = open.check().await.unwrap_err();
    assert!(err.is_backend(), "{err}");
    let core: imggo_core::Error = err.into();
    assert!(core.is_retryable(), "an outage may pass: {core}");
    // Fail-open admits, fail-closed refuses with the backend error; neither hangs.
    let t = std::time::Instant::now();
    open.acquire().await.unwrap();
    assert!(matches!(
        closed.acquire().await,
        Err(LimitError::Backend { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test]
async fn bad_settings_are_typed_errors() {
    let redis = RedisServer::start();
    let conn = RedisLimiter::connect(&redis.url()).await.unwrap();
    let e = RedisLimiter::new(conn.clone(), Subject::named("x"), 0, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.name, "limit");
    let e = RedisLimiter::new(conn, Subject::named("x"), 1, Duration::from_micros(10)).unwrap_err();
    assert_eq!(e.name, "window");
    let e = RedisLimiter::connect("not a url").await.unwrap_err();
    assert!(e.is_backend(), "{e}");
}
