//! Webhook signatures: `X-ImgGo-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header the service signs deliveries with.
pub const SIGNATURE_HEADER: &str = "x-imggo-signature";

const HEX: &[u8; 16] = b"0123456789abcdef";

fn mac(secret: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The header value the service sends for `body`: `sha256=<64 lower-case hex digits>`.
///
/// ```
/// let h = imggo_http::sign(b"0123456789abcdef", br#"{"event":"job.succeeded"}"#);
/// assert!(h.starts_with("sha256=") && h.len() == 7 + 64);
/// assert!(imggo_http::verify_signature(b"0123456789abcdef", br#"{"event":"job.succeeded"}"#, &h));
/// ```
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let tag = mac(secret, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Checks a signature header against the raw body, in constant time.
///
/// Accepts `sha256=<hex>` or the bare hex digest, upper- or lower-case hex, with
/// surrounding whitespace. Anything malformed (wrong length, non-hex, empty) is simply
/// `false`; this function never panics.
pub fn verify_signature(secret: &[u8], raw_body: &[u8], header: &str) -> bool {
    let h = header.trim();
    let hex = match h.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256=") => &h[7..],
        _ => h,
    };
    let Some(given) = decode_hex32(hex) else {
        return false;
    };
    mac(secret, raw_body).ct_eq(&given).into()
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // HMAC-SHA256 test vector from RFC 4231, section 4.3.
        let h = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            h,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn accepts_valid_forms() {
        let secret = b"whsec_0123456789abcdef";
        let body = br#"{"event":"job.succeeded","job_id":"j1"}"#;
        let h = sign(secret, body);
        assert!(verify_signature(secret, body, &h));
        assert!(verify_signature(secret, body, &h[7..]));
        assert!(verify_signature(
            secret,
            body,
            &h.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(verify_signature(secret, body, &format!("  {h}\n")));
    }

    #[test]
    fn rejects_everything_else_without_panicking() {
        let secret = b"whsec_0123456789abcdef";
        let body = b"{}";
        let h = sign(secret, body);
        assert!(!verify_signature(b"other-secret-000000", body, &h));
        assert!(!verify_signature(secret, b"{} ", &h));
        for bad in [
            "",
            "sha256=",
            "sha256",
            "sha256=abc",
            &h[..h.len() - 1],
            &format!("{h}0"),
            &h.replace('a', "g"),
            "sha256=ééééééééééééééééééééééééééééééééééééééééééééééé",
            "é",
            "sha1=0000",
        ] {
            assert!(!verify_signature(secret, body, bad), "{bad:?}");
        }
    }
}
