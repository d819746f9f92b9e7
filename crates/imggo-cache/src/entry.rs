//! The on-disk form of one [`crate::FileCache`] entry: a fixed header, then the JSON value.
//!
//! ```text
//! offset  size  field
//!      0     4  magic  "IGC" 0x01
//!      4     4  flags  (0)
//!      8    16  key digest, little-endian u128 (must match the file name)
//!     24     8  expires_at, Unix milliseconds, little-endian
//!     32     8  payload length, little-endian
//!     40     8  xxh3-64 of bytes 0..40 followed by the payload
//!     48     …  payload (JSON of CachedResult)
//! ```
//!
//! The length and checksum make a truncated, padded or bit-flipped file detectable, so it
//! is a miss instead of a wrong answer.

use xxhash_rust::xxh3::Xxh3;

const MAGIC: [u8; 4] = *b"IGC\x01";
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 48;

/// Why bytes on disk are not a usable entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Well-formed, but past its expiry time.
    Expired,
    /// Not a whole, intact entry for this key.
    Corrupt(&'static str),
}

/// Builds the bytes of an entry.
pub(crate) fn encode(digest: u128, expires_at_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&digest.to_le_bytes());
    out.extend_from_slice(&expires_at_ms.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = checksum(&out, payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks an entry read from disk and returns its payload.
pub(crate) fn decode(bytes: &[u8], digest: u128, now_ms: u64) -> Result<&[u8], Unusable> {
    if bytes.len() < HEADER_LEN {
        return Err(Unusable::Corrupt("shorter than the header"));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if header[0..4] != MAGIC {
        return Err(Unusable::Corrupt("bad magic"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let stored_digest = u128::from_le_bytes(header[8..24].try_into().expect("16 bytes"));
    let expires_at = u64_at(24);
    let len = u64_at(32);
    let sum = u64_at(40);
    if len != payload.len() as u64 {
        return Err(Unusable::Corrupt("length does not match (truncated?)"));
    }
    if sum != checksum(&header[..40], payload) {
        return Err(Unusable::Corrupt("checksum mismatch"));
    }
    if stored_digest != digest {
        return Err(Unusable::Corrupt("entry belongs to another key"));
    }
    if now_ms >= expires_at {
        return Err(Unusable::Expired);
    }
    Ok(payload)
}

/// The expiry time (Unix ms) in a header that is at least [`HEADER_LEN`] bytes long and has the
/// magic (for sweeping without reading payloads).
pub(crate) fn peek_expiry(header: &[u8]) -> Option<u64> {
    if header.len() < HEADER_LEN || header[0..4] != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(header[24..32].try_into().ok()?))
}

fn checksum(header: &[u8], payload: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&header[..40]);
    h.update(payload);
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_is_caught() {
        let payload = br#"{"manifest":{"total":12.5},"job_id":"j1"}"#;
        let bytes = encode(42, 1_000, payload);
        assert_eq!(decode(&bytes, 42, 999), Ok(&payload[..]));
        assert_eq!(decode(&bytes, 42, 1_000), Err(Unusable::Expired));
        assert!(matches!(decode(&bytes, 43, 0), Err(Unusable::Corrupt(_))));
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut], 42, 0), Err(Unusable::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(decode(&padded, 42, 0), Err(Unusable::Corrupt(_))));
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert!(decode(&flipped, 42, 0).is_err(), "flip at {i}");
        }
        assert_eq!(peek_expiry(&bytes), Some(1_000));
    }
}
