//! A small `multipart/form-data` parser over a whole body: parts borrow the body's bytes,
//! nothing is copied.

use bytes::Bytes;
use memchr::memmem;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// The `filename`, for file parts.
    pub filename: Option<String>,
    /// Its `Content-Type`, if given.
    pub content_type: Option<String>,
    /// Its bytes (a slice of the request body).
    pub data: Bytes,
}

/// Why a body is not a valid form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MultipartError {
    /// No `boundary=` in the `Content-Type`.
    #[error("multipart Content-Type has no boundary parameter")]
    NoBoundary,
    /// The body does not follow the multipart grammar.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// The boundary of a `multipart/form-data; boundary=...` Content-Type.
pub(crate) fn boundary(content_type: &str) -> Result<&str, MultipartError> {
    content_type
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"'))
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or(MultipartError::NoBoundary)
}

/// Splits `body` into its parts.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let delim = format!("--{boundary}");
    let finder = memmem::Finder::new(delim.as_bytes());
    let b = &body[..];
    let mut pos = finder
        .find(b)
        .ok_or(MultipartError::Malformed("no opening boundary"))?
        + delim.len();
    let mut parts = Vec::new();
    loop {
        let rest = &b[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest = rest
            .strip_prefix(b"\r\n")
            .ok_or(MultipartError::Malformed("boundary not followed by CRLF"))?;
        pos += 2;
        let head_end = memmem::find(rest, b"\r\n\r\n")
            .ok_or(MultipartError::Malformed("part headers do not end"))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| MultipartError::Malformed("part headers are not UTF-8"))?;
        let data_start = pos + head_end + 4;
        // The part ends at CRLF + delimiter.
        let mut search = data_start;
        let data_end = loop {
            let found = finder.find(&b[search..]).ok_or(MultipartError::Malformed(
                "part is not closed by a boundary",
            ))?;
            let at = search + found;
            if at >= data_start + 2
                && &b[at - 2..at] == b"\r\n"
                && ends_delimiter(&b[at + delim.len()..])
            {
                break at - 2;
            }
            if at == data_start {
                // An empty part directly followed by the delimiter (no CRLF) is malformed.
                return Err(MultipartError::Malformed("part body missing"));
            }
            search = at + 1;
        };
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body.slice(data_start..data_end),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').skip(1) {
                    if let Some((pk, pv)) = p.split_once('=') {
                        let pv = pv.trim().trim_matches('"').to_owned();
                        match pk.trim().to_ascii_lowercase().as_str() {
                            "name" => part.name = pv,
                            "filename" => part.filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            } else if k.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_owned());
            }
        }
        parts.push(part);
        pos = data_end + 2 + delim.len();
    }
}

/// True when the bytes after `--boundary` make it a delimiter line: `--` (the last one) or
/// optional spaces/tabs then CRLF. Anything else is data that merely starts like one.
fn ends_delimiter(after: &[u8]) -> bool {
    if after.starts_with(b"--") {
        return true;
    }
    let pad = after
        .iter()
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    after[pad..].starts_with(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, filename, content type, data)
    type TestPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

    fn form(boundary: &str, parts: &[TestPart<'_>]) -> Bytes {
        let mut out = Vec::new();
        for (name, filename, ct, data) in parts {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut cd = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = filename {
                cd.push_str(&format!("; filename=\"{f}\""));
            }
            out.extend_from_slice(cd.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(ct) = ct {
                out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Bytes::from(out)
    }

    #[test]
    fn parses_file_and_fields() {
        // Binary data containing CRLF and a near-boundary must survive.
        let data: &[u8] = b"\xff\xd8\r\n--xyz-not\r\n\xff\xd9";
        let body = form(
            "xyz",
            &[
                ("image", Some("a.jpg"), Some("image/jpeg"), data),
                ("idempotency_key", None, None, b"k1"),
                ("extras", None, None, b"{\"a\":1}"),
            ],
        );
        let parts = parse(&body, "xyz").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "image");
        assert_eq!(parts[0].filename.as_deref(), Some("a.jpg"));
        assert_eq!(parts[0].content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(&parts[0].data[..], data);
        assert_eq!(&parts[1].data[..], b"k1");
        assert_eq!(&parts[2].data[..], b"{\"a\":1}");
    }

    #[test]
    fn boundary_param() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("multipart/form-data;charset=utf-8;Boundary=q1").unwrap(),
            "q1"
        );
        assert_eq!(
            boundary("multipart/form-data"),
            Err(MultipartError::NoBoundary)
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b""[..],
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc",
            b"--bXX",
            b"--b\r\nno header end",
        ] {
            assert!(parse(&Bytes::from_static(body), "b").is_err(), "{body:?}");
        }
        // An empty form is fine.
        assert!(parse(&Bytes::from_static(b"--b--\r\n"), "b")
            .unwrap()
            .is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any body with any boundary is a list of parts or an error, never a panic.
        #[test]
        fn any_body_parses_or_errs(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            boundary in "[ -~]{1,20}",
        ) {
            let _ = parse(&Bytes::from(body), &boundary);
        }

        /// A form written by the rules reads back part for part, whatever its bytes
        /// (short of the boundary itself).
        #[test]
        fn written_forms_read_back(
            parts in proptest::collection::vec(
                (
                    "[a-z_]{1,10}",
                    proptest::option::of("[a-zA-Z0-9._-]{1,12}"),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                ),
                0..5,
            ),
        ) {
            let boundary = "----imggo-proptest-7f3a9c";
            let borrowed: Vec<TestPart<'_>> = parts
                .iter()
                .map(|(n, f, d)| {
                    let ct = Some("application/octet-stream");
                    (n.as_str(), f.as_deref(), ct, d.as_slice())
                })
                .collect();
            let got = parse(&form(boundary, &borrowed), boundary).unwrap();
            proptest::prop_assert_eq!(got.len(), parts.len());
            for (g, (n, f, d)) in got.iter().zip(&parts) {
                proptest::prop_assert_eq!(&g.name, n);
                proptest::prop_assert_eq!(&g.filename, f);
                proptest::prop_assert_eq!(&g.data[..], &d[..]);
            }
        }
    }
}
