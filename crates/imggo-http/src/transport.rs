//! Pieces below the typed API: mapping hyper errors onto [`Error`], gzip bodies, the
//! `{success, data}` envelope and path segments.

use std::error::Error as StdError;
use std::io::Read;
use std::time::Duration;

use imggo_core::{Envelope, Error, TransportKind};
use serde::de::DeserializeOwned;

/// Largest response body read off the wire.
pub(crate) const MAX_WIRE_BODY: usize = 32 << 20;
/// Largest response body after gzip decompression (a gzip bomb stops here).
pub(crate) const MAX_DECODED_BODY: usize = 64 << 20;

/// Maps a failure to open a connection (DNS, TCP, TLS) onto [`Error`]: a timeout is
/// `Timeout { what: "connect" }`, anything else `TransportKind::Connect` (nothing was sent).
pub(crate) fn map_connect_error(
    e: &(dyn StdError + Send + Sync + 'static),
    connect_timeout: Duration,
) -> Error {
    if has_io_kind(e, &[std::io::ErrorKind::TimedOut]) {
        return Error::Timeout {
            what: "connect",
            after: connect_timeout,
        };
    }
    Error::Transport {
        kind: TransportKind::Connect,
        message: format!("connect: {}", chain(e)),
    }
}

/// Maps a failed HTTP handshake on a new connection onto [`Error`] (nothing was sent).
pub(crate) fn map_handshake_error(e: &hyper::Error) -> Error {
    Error::Transport {
        kind: TransportKind::Connect,
        message: format!("handshake: {}", chain(e)),
    }
}

/// Maps an error while sending a request or reading the response head onto [`Error`].
pub(crate) fn map_hyper_error(e: &hyper::Error) -> Error {
    Error::Transport {
        kind: classify(e),
        message: chain(e),
    }
}

/// Maps an error while reading a response body onto [`Error`].
pub(crate) fn map_body_error(e: &(dyn StdError + Send + Sync + 'static)) -> Error {
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        return Error::Decode {
            what: "response body".into(),
            message: format!("larger than {MAX_WIRE_BODY} bytes"),
        };
    }
    Error::Transport {
        kind: classify(e),
        message: chain(e),
    }
}

/// Resets, early closes and truncated messages are `ConnectionReset` (retryable); TLS
/// failures are `Tls`; anything else is `Other`.
fn classify(e: &(dyn StdError + 'static)) -> TransportKind {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return TransportKind::ConnectionReset;
            }
        }
        if is_tls(err) {
            return TransportKind::Tls;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return TransportKind::ConnectionReset;
            }
            if io.get_ref().is_some_and(|inner| is_tls(inner)) {
                return TransportKind::Tls;
            }
        }
        cur = err.source();
    }
    TransportKind::Other
}

/// True for a rustls error.
#[cfg(feature = "rustls")]
fn is_tls(e: &(dyn StdError + 'static)) -> bool {
    e.downcast_ref::<rustls::Error>().is_some()
}

/// Never a TLS error without the `rustls` feature.
#[cfg(not(feature = "rustls"))]
fn is_tls(_: &(dyn StdError + 'static)) -> bool {
    false
}

fn has_io_kind(e: &(dyn StdError + 'static), kinds: &[std::io::ErrorKind]) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if kinds.contains(&io.kind()) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// "outer: inner: innermost", without repeating a message that a wrapper already shows.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

/// Undoes a `Content-Encoding` (only gzip is asked for); caps the inflated size.
pub(crate) fn decode_content(
    encoding: Option<&str>,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, Error> {
    let Some(enc) = encoding.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(body);
    };
    if enc.eq_ignore_ascii_case("identity") {
        return Ok(body);
    }
    if !(enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip")) {
        return Err(Error::Decode {
            what: "response body".into(),
            message: format!("unsupported Content-Encoding {enc:?} (only gzip was offered)"),
        });
    }
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_DECODED_BODY));
    flate2::read::MultiGzDecoder::new(&body[..])
        .take(MAX_DECODED_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Decode {
            what: "gzip response body".into(),
            message: e.to_string(),
        })?;
    if out.len() > MAX_DECODED_BODY {
        return Err(Error::Decode {
            what: "gzip response body".into(),
            message: format!("inflates to more than {MAX_DECODED_BODY} bytes"),
        });
    }
    Ok(out.into())
}

/// Decodes `{success, data: T}`, or a bare `T` (the docs' dialect and `_health`).
///
/// The body is checked as UTF-8 once up front, so that serde_json does not check every
/// string it reads again.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Error> {
    let decoded = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<Envelope<T>>(text)
            .map(|env| env.data)
            .or_else(|enveloped| serde_json::from_str::<T>(text).map_err(|bare| (enveloped, bare))),
        Err(_) => serde_json::from_slice::<Envelope<T>>(body)
            .map(|env| env.data)
            .or_else(|enveloped| {
                serde_json::from_slice::<T>(body).map_err(|bare| (enveloped, bare))
            }),
    };
    decoded.map_err(|(enveloped, bare)| Error::Decode {
        what: what.to_owned(),
        message: format!("{enveloped}; as a bare object: {bare}"),
    })
}

/// Serialises a request body; `what` names it in the error.
pub(crate) fn json_body<T: serde::Serialize>(what: &str, v: &T) -> Result<bytes::Bytes, Error> {
    serde_json::to_vec(v)
        .map(Into::into)
        .map_err(|e| Error::InvalidInput {
            input: what.to_owned(),
            reason: e.to_string(),
        })
}

/// Percent-encodes one path segment (an id is opaque: it may hold `/`, `?` or spaces).
pub(crate) fn segment(what: &str, id: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(id.len());
    push_segment(&mut out, what, id)?;
    Ok(out)
}

/// RFC 3986 unreserved bytes (`A-Z a-z 0-9 - _ . ~`), which a path segment keeps as they
/// are: a table, because every call checks every byte of its id.
const UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~');
        b += 1;
    }
    t
};

/// Appends `id` to `out` as one percent-encoded path segment; `what` names it in the
/// error for an empty id.
pub(crate) fn push_segment(out: &mut String, what: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::InvalidInput {
            input: what.to_owned(),
            reason: "is empty".into(),
        });
    }
    let unreserved = |b: u8| UNRESERVED[usize::from(b)];
    if id.bytes().all(unreserved) {
        // The usual id (a UUID): nothing to escape.
        out.push_str(id);
        return Ok(());
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in id.bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_round_trip_and_identity() {
        let z = gzip(b"{\"a\":1}");
        assert_eq!(
            &decode_content(Some("gzip"), z.into()).unwrap()[..],
            b"{\"a\":1}"
        );
        assert_eq!(&decode_content(None, "x".into()).unwrap()[..], b"x");
        assert_eq!(
            &decode_content(Some("identity"), "x".into()).unwrap()[..],
            b"x"
        );
        assert!(matches!(
            decode_content(Some("br"), "x".into()),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_content(Some("gzip"), "not gzip".into()),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn gzip_bomb_is_capped() {
        // A small compressed body that inflates past the cap.
        let z = gzip(&vec![0u8; MAX_DECODED_BODY + 10]);
        assert!(z.len() < MAX_WIRE_BODY / 8, "{}", z.len());
        let e = decode_content(Some("gzip"), z.into()).unwrap_err();
        assert!(e.to_string().contains("inflates to more than"), "{e}");
    }

    #[test]
    fn envelope_or_bare() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            a: u32,
        }
        assert_eq!(
            decode::<T>(br#"{"success":true,"data":{"a":1}}"#, "t").unwrap(),
            T { a: 1 }
        );
        assert_eq!(decode::<T>(br#"{"a":2}"#, "t").unwrap(), T { a: 2 });
        let e = decode::<T>(b"<html>", "the thing").unwrap_err();
        assert!(e.to_string().contains("the thing"), "{e}");
        // Invalid UTF-8 (not valid text, so read by the byte path) is still a decode error.
        assert_eq!(decode::<String>(b"\"\xc3\xa9\"", "text").unwrap(), "\u{e9}");
        let e = decode::<String>(b"\"\xff\"", "bytes").unwrap_err();
        assert!(
            matches!(&e, Error::Decode { what, .. } if what == "bytes"),
            "{e}"
        );
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("id", "abc-1_2.3~").unwrap(), "abc-1_2.3~");
        assert_eq!(segment("id", "a/b c?").unwrap(), "a%2Fb%20c%3F");
        assert!(matches!(
            segment("job id", ""),
            Err(Error::InvalidInput { .. })
        ));
    }
}
