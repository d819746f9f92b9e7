//! The HTTP server: imggo-core's accept loop (counting TCP connections), one hyper
//! connection task per socket (HTTP/1.1 or h2c), fault injection, request ids, gzip, per-route stats.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, RETRY_AFTER};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use imggo_core::server::{self, ServeOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api_keys;
use crate::demo;
use crate::handlers;
use crate::ingest;
use crate::reply::{self, accepts_gzip, error, Body, Reply};
use crate::rng::{self, Stream};
use crate::routes::Route;
use crate::state::{AuthError, State};
use crate::uploads;

/// What a request body may hold beyond the largest upload (the form's other fields and
/// boundaries). A larger body is refused without reading further; up to it, a slightly
/// too large upload is read whole and answered with the server's 400 rather than a reset.
const FORM_SLACK: usize = 1024 * 1024;

/// Accepts connections until `stop` turns true, then drains them for up to 5 seconds.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let options = ServeOptions {
        // HTTP/1.1 and h2c, as clients of the real service may speak either.
        h2c: true,
        // No header-read timeout: it guards public servers against slow clients; here it
        // would only cost a timer entry per request.
        header_read_timeout: None,
        max_connections: None,
        drain: Duration::from_secs(5),
    };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    server::accept_loop(listener, options, stopped, move || {
        state.counters.connections.fetch_add(1, Ordering::Relaxed);
        let st = state.clone();
        service_fn(move |req| serve(st.clone(), req))
    })
    .await;
}

/// What fault injection decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Fail500,
    Fail503,
    Drop,
}

fn decide(state: &State, n: u64) -> (Fault, bool) {
    let f = &state.config.faults;
    if f.fail_500 == 0.0 && f.fail_503 == 0.0 && f.drop == 0.0 && f.slow == 0.0 {
        return (Fault::None, false);
    }
    let seed = state.config.seed;
    let u = rng::unit(seed, Stream::Faults, n.wrapping_mul(2));
    let fault = if u < f.fail_500 {
        Fault::Fail500
    } else if u < f.fail_500 + f.fail_503 {
        Fault::Fail503
    } else if u < f.fail_500 + f.fail_503 + f.drop {
        Fault::Drop
    } else {
        Fault::None
    };
    let slow = f.slow > 0.0 && rng::unit(seed, Stream::Faults, n.wrapping_mul(2) + 1) < f.slow;
    (fault, slow)
}

fn request_id(seed: u64, n: u64) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rng::bits(seed, Stream::Ids, n ^ 0xA5A5_0000_0000_0000);
    let mut buf = *b"req_0000000000000000";
    for i in 0..16 {
        buf[4 + i] = HEX[((bits >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("req_0"))
}

async fn serve(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // A turn among `max_requests`: bounds the bodies buffered and the work in progress.
    // (It is never closed, so the `Err` arm does not occur.)
    let _turn = state.turns.acquire().await.ok();
    let _in_flight = state.counters.request_started();
    let n = state.request_seq.fetch_add(1, Ordering::Relaxed);
    let gzip = req.headers().get(ACCEPT_ENCODING).is_some_and(accepts_gzip);
    let (parts, body) = req.into_parts();
    let route = Route::of(&parts.method, parts.uri.path());
    let label = route.label();
    let (fault, slow) = if route.is_control() {
        (Fault::None, false)
    } else {
        decide(&state, n)
    };
    let mut resp = match fault {
        Fault::Fail500 => {
            state
                .counters
                .faults
                .http_500
                .fetch_add(1, Ordering::Relaxed);
            error(
                state.dialect(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error (emulated fault)",
                None,
            )
        }
        Fault::Fail503 => {
            state
                .counters
                .faults
                .http_503
                .fetch_add(1, Ordering::Relaxed);
            let mut r = error(
                state.dialect(),
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service temporarily unavailable (emulated fault)",
                None,
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Fault::None | Fault::Drop => dispatch(&state, &route, &parts, body).await,
    };
    if slow {
        state.counters.faults.slow.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(state.config.faults.slow_by).await;
    }
    resp.headers_mut()
        .insert("X-Request-ID", request_id(state.config.seed, n));
    if gzip {
        resp = reply::gzip(resp);
    }
    if fault == Fault::Drop {
        state
            .counters
            .faults
            .dropped
            .fetch_add(1, Ordering::Relaxed);
        resp = reply::truncate(resp);
    }
    state.counters.answered(label, resp.status().as_u16());
    Ok(resp)
}

async fn read_body(state: &State, body: Incoming) -> Result<Bytes, Reply> {
    let cap = state.config.max_image_bytes.saturating_add(FORM_SLACK);
    match Limited::new(body, cap).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            state.dialect(),
            StatusCode::BAD_REQUEST,
            "FILE_TOO_LARGE",
            format!("Request body exceeds {cap} bytes"),
            None,
        )),
        Err(e) => Err(error(
            state.dialect(),
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("Could not read the request body: {e}"),
            None,
        )),
    }
}

async fn dispatch(state: &Arc<State>, route: &Route<'_>, parts: &Parts, body: Incoming) -> Reply {
    let d = state.dialect();
    let user = if route.is_public() {
        None
    } else {
        match state.authenticate(parts.headers.get(AUTHORIZATION)) {
            Ok(u) => Some(u),
            Err(e) => {
                let (code, message) = match e {
                    AuthError::Missing => (
                        "MISSING_AUTHORIZATION",
                        "Missing or malformed Authorization header (expected: Bearer <api key>)",
                    ),
                    AuthError::Unknown => ("INVALID_API_KEY", "Invalid API key"),
                };
                return error(d, StatusCode::UNAUTHORIZED, code, message, None);
            }
        }
    };
    let query = parts.uri.query();
    let (Some(user), false) = (user, route.is_public()) else {
        return match route {
            Route::Health => handlers::health(),
            Route::Stats => handlers::stats(state),
            Route::DemoProcess => match read_body(state, body).await {
                Ok(b) => demo::process(state, &b),
                Err(r) => r,
            },
            Route::DemoStatus(id) => demo::status(state, id),
            Route::MethodNotAllowed(allowed) => handlers::method_not_allowed(state, parts, allowed),
            _ => no_route(state, parts),
        };
    };
    let needs_body = matches!(
        route,
        Route::CreatePattern
            | Route::PatchPattern(_)
            | Route::Ingest(_)
            | Route::CreateWebhook
            | Route::CreateApiKey
            | Route::SignedUpload
    );
    let body = if needs_body {
        match read_body(state, body).await {
            Ok(b) => b,
            Err(r) => return r,
        }
    } else {
        Bytes::new()
    };
    match route {
        Route::GetJob(id) => handlers::get_job(state, &user, id, query),
        Route::ListJobs => handlers::list_jobs(state, &user, query),
        Route::ListPatterns => handlers::list_patterns(state, &user, query),
        Route::GetPattern(id) => handlers::get_pattern(state, &user, id),
        Route::DeletePattern(id) => handlers::delete_pattern(state, &user, id),
        Route::ListWebhooks => handlers::list_webhooks(state, &user),
        Route::DeleteWebhook(id) => handlers::delete_webhook(state, &user, id),
        Route::Usage => handlers::usage(state, &user),
        Route::CreatePattern => handlers::create_pattern(state, &user, &body),
        Route::PatchPattern(id) => handlers::patch_pattern(state, &user, id, &body),
        Route::CreateWebhook => handlers::create_webhook(state, &user, &body),
        Route::Ingest(id) => ingest::handle(state, &user, id, &parts.headers, body),
        Route::ListApiKeys => api_keys::list(state, &user),
        Route::CreateApiKey => api_keys::create(state, &user, &body),
        Route::DeleteApiKey(id) => api_keys::delete(state, &user, id),
        Route::SignedUpload => uploads::signed_url(state, &user, &body),
        // Public routes were answered above.
        Route::Health => handlers::health(),
        Route::Stats => handlers::stats(state),
        Route::DemoProcess
        | Route::DemoStatus(_)
        | Route::MethodNotAllowed(_)
        | Route::NotFound => no_route(state, parts),
    }
}

/// 404 for a method and path the emulator does not serve.
fn no_route(state: &State, parts: &Parts) -> Reply {
    error(
        state.dialect(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("No route for {} {}", parts.method, parts.uri.path()),
        None,
    )
}
