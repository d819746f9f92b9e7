//! A `multipart/form-data` body built into one `Bytes`: sent with a Content-Length (not
//! chunked), and re-sent byte for byte when a request is retried.

use bytes::{BufMut, Bytes, BytesMut};

/// One finished multipart body and its `Content-Type` header value.
#[derive(Debug, Clone)]
pub(crate) struct Multipart {
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
}

/// Builds a form body part by part.
pub(crate) struct MultipartBuilder {
    boundary: String,
    buf: BytesMut,
}

impl MultipartBuilder {
    /// `boundary_seed` makes the boundary deterministic (the same upload always gives the
    /// same bytes); it is hex so it is a valid boundary whatever the seed.
    pub(crate) fn new(boundary_seed: u128, capacity: usize) -> Self {
        Self {
            boundary: format!("imggo-boundary-{boundary_seed:032x}"),
            buf: BytesMut::with_capacity(capacity + 1024),
        }
    }

    /// Adds a text field.
    pub(crate) fn text(mut self, name: &str, value: &str) -> Self {
        self.open_part();
        self.buf
            .put_slice(b"Content-Disposition: form-data; name=\"");
        put_quoted(&mut self.buf, name);
        self.buf.put_slice(b"\"\r\n\r\n");
        self.buf.put_slice(value.as_bytes());
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Adds a file field.
    pub(crate) fn file(mut self, name: &str, file_name: &str, mime: &str, data: &[u8]) -> Self {
        self.open_part();
        self.buf
            .put_slice(b"Content-Disposition: form-data; name=\"");
        put_quoted(&mut self.buf, name);
        self.buf.put_slice(b"\"; filename=\"");
        put_quoted(&mut self.buf, file_name);
        self.buf.put_slice(b"\"\r\nContent-Type: ");
        self.buf.put_slice(mime.as_bytes());
        self.buf.put_slice(b"\r\n\r\n");
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Closes the body.
    pub(crate) fn finish(mut self) -> Multipart {
        self.buf.put_slice(b"--");
        self.buf.put_slice(self.boundary.as_bytes());
        self.buf.put_slice(b"--\r\n");
        Multipart {
            content_type: format!("multipart/form-data; boundary={}", self.boundary),
            body: self.buf.freeze(),
        }
    }

    fn open_part(&mut self) {
        self.buf.put_slice(b"--");
        self.buf.put_slice(self.boundary.as_bytes());
        self.buf.put_slice(b"\r\n");
    }
}

/// Writes a header parameter value: quotes, backslashes and line breaks cannot break out
/// of the quoted string.
fn put_quoted(buf: &mut BytesMut, s: &str) {
    for c in s.chars() {
        match c {
            '"' => buf.put_slice(b"%22"),
            '\r' => buf.put_slice(b"%0D"),
            '\n' => buf.put_slice(b"%0A"),
            '\\' => buf.put_slice(b"\\\\"),
            c => {
                let mut tmp = [0u8; 4];
                buf.put_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_layout() {
        let m = MultipartBuilder::new(7, 3)
            .text("idempotency_key", "k1")
            .file("image", "a\"b.png", "image/png", b"\x89PN")
            .finish();
        let b = "imggo-boundary-00000000000000000000000000000007";
        assert_eq!(m.content_type, format!("multipart/form-data; boundary={b}"));
        let want = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"idempotency_key\"\r\n\r\nk1\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a%22b.png\"\r\n\
             Content-Type: image/png\r\n\r\n\u{89}PN\r\n--{b}--\r\n"
        );
        // The image bytes are raw, not UTF-8: compare with them spliced in.
        let want = want.replace('\u{89}', "\u{1}");
        let mut got = m.body.to_vec();
        let pos = got.iter().position(|&x| x == 0x89).unwrap();
        got[pos] = 1;
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }

    #[test]
    fn same_input_same_bytes() {
        let a = MultipartBuilder::new(1, 4)
            .file("image", "x.jpg", "image/jpeg", b"abcd")
            .finish();
        let b = MultipartBuilder::new(1, 4)
            .file("image", "x.jpg", "image/jpeg", b"abcd")
            .finish();
        assert_eq!(a.body, b.body);
    }
}
