//! Response building: the body type, JSON envelopes, error bodies in both dialects, gzip.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use hyper::body::{Frame, SizeHint};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Dialect;

/// The body of every emulator response: whole, or cut off halfway on purpose.
#[derive(Debug)]
pub(crate) enum Body {
    /// The whole body in one frame.
    Full(Option<Bytes>),
    /// The first half of a body followed by an error, which makes hyper abort the
    /// connection mid-response (the `drop` fault).
    Truncated {
        /// The bytes still to send.
        head: Option<Bytes>,
    },
}

impl Body {
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(b))
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Truncated { head } => Poll::Ready(Some(match head.take() {
                Some(h) => Ok(Frame::data(h)),
                None => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "emulated connection drop",
                )),
            })),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Truncated { .. } => SizeHint::default(),
        }
    }
}

/// A response under construction.
pub(crate) type Reply = Response<Body>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A response with a JSON body from already-serialised bytes.
pub(crate) fn json_bytes(status: StatusCode, body: Bytes) -> Reply {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, JSON);
    r
}

/// `{success: true, data}` with `status`.
pub(crate) fn ok<T: Serialize>(status: StatusCode, data: &T) -> Reply {
    json_bytes(status, envelope_bytes(data))
}

/// Serialises `{success: true, data}`.
pub(crate) fn envelope_bytes<T: Serialize>(data: &T) -> Bytes {
    let env = imggo_core::Envelope::ok(data);
    // Serialising our own wire types into a Vec cannot fail (no non-string map keys).
    Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
}

/// A plain JSON value response.
pub(crate) fn value(status: StatusCode, v: &Value) -> Reply {
    json_bytes(status, Bytes::from(v.to_string()))
}

/// The standard error body `{success: false, error: {code, message, details}}`, with the
/// code in the dialect's case (`NOT_FOUND` or `not_found`).
pub(crate) fn error(
    dialect: Dialect,
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    details: Option<Value>,
) -> Reply {
    let code = match dialect {
        Dialect::Server => code.to_owned(),
        Dialect::Docs => code.to_ascii_lowercase(),
    };
    let mut err = json!({ "code": code, "message": message.into() });
    if let Some(d) = details {
        err["details"] = d;
    }
    value(status, &json!({ "success": false, "error": err }))
}

/// Gzips the body when it is whole and non-trivial; sets `Content-Encoding`.
pub(crate) fn gzip(mut r: Reply) -> Reply {
    let Body::Full(Some(bytes)) = r.body() else {
        return r;
    };
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2 + 32),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    if enc.write_all(bytes).is_err() {
        return r;
    }
    let Ok(out) = enc.finish() else {
        return r;
    };
    *r.body_mut() = Body::full(out);
    r.headers_mut()
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    r.headers_mut().remove(CONTENT_LENGTH);
    r
}

/// Replaces a whole body by its first half followed by an error (the `drop` fault). The
/// `Content-Length` of the whole body is kept, so the client sees a short read.
pub(crate) fn truncate(mut r: Reply) -> Reply {
    let whole = match r.body_mut() {
        Body::Full(b) => b.take().unwrap_or_default(),
        Body::Truncated { head } => head.take().unwrap_or_default(),
    };
    let len = whole.len();
    r.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len.max(2)));
    *r.body_mut() = Body::Truncated {
        head: Some(whole.slice(..len / 2)),
    };
    r
}

/// True when an `Accept-Encoding` value admits gzip.
pub(crate) fn accepts_gzip(v: &HeaderValue) -> bool {
    v.to_str().is_ok_and(|s| {
        s.split(',').any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>() == Ok(0.0))
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |s| HeaderValue::from_static(s);
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("deflate, GZIP;q=0.8")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br, deflate")));
    }

    #[test]
    fn docs_dialect_lowercases_codes() {
        let r = error(
            Dialect::Docs,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "gone",
            None,
        );
        let Body::Full(Some(b)) = r.body() else {
            panic!("whole body expected")
        };
        let v: Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["success"], false);
    }
}
