//! Content hashes and cache keys.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Chunk size of [`ContentHash::from_reader`]: large enough that the per-call overhead is
/// noise, small enough to stay in L2.
const CHUNK: usize = 256 * 1024;

/// The xxh3-128 hash of an image's bytes, shown as `xxh3-<32 hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(u128);

impl ContentHash {
    /// Hashes a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self(xxh3_128(bytes))
    }

    /// Hashes everything `reader` yields, in 256 KiB chunks, without holding it all.
    pub fn from_reader(mut reader: impl Read) -> std::io::Result<Self> {
        let mut h = Xxh3::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Self(h.digest128()))
    }

    /// The raw 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// Builds a hash from its raw value.
    pub fn from_u128(v: u128) -> Self {
        Self(v)
    }

    /// The 32 lower-case hex digits, without the `xxh3-` prefix (for file names).
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xxh3-{:032x}", self.0)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error of parsing a [`ContentHash`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a content hash (want xxh3-<32 hex digits>): {0:?}")]
pub struct ParseHashError(pub String);

impl FromStr for ContentHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("xxh3-").unwrap_or(s);
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseHashError(s.to_owned()));
        }
        u128::from_str_radix(hex, 16)
            .map(Self)
            .map_err(|_| ParseHashError(s.to_owned()))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A fingerprint of the settings that shape what is uploaded (optimiser options and the
/// like): two runs with different settings never share cache entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SettingsFingerprint(pub u64);

impl SettingsFingerprint {
    /// Fingerprints a canonical description of the settings, e.g. `max_side=2048;q=85`.
    pub fn of(canonical: &str) -> Self {
        Self(xxhash_rust::xxh3::xxh3_64(canonical.as_bytes()))
    }
}

impl fmt::Display for SettingsFingerprint {
    /// 16 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The key of a cached result: content hash, pattern id and version, and the settings
/// fingerprint. A new pattern version or other settings never hit an old entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    /// Hash of the original input bytes.
    pub content: ContentHash,
    /// The pattern.
    pub pattern_id: String,
    /// The pattern's version.
    pub pattern_version: u32,
    /// Fingerprint of the settings.
    pub settings: SettingsFingerprint,
}

impl CacheKey {
    /// Builds a key.
    pub fn new(
        content: ContentHash,
        pattern_id: impl Into<String>,
        pattern_version: u32,
        settings: SettingsFingerprint,
    ) -> Self {
        Self {
            content,
            pattern_id: pattern_id.into(),
            pattern_version,
            settings,
        }
    }

    /// One hash of the whole key: a fixed-width name for stores that need one (file names,
    /// Redis keys), made only of hex digits whatever the pattern id contains.
    pub fn digest(&self) -> ContentHash {
        let mut h = Xxh3::new();
        h.update(&self.content.as_u128().to_le_bytes());
        h.update(&(self.pattern_id.len() as u64).to_le_bytes());
        h.update(self.pattern_id.as_bytes());
        h.update(&self.pattern_version.to_le_bytes());
        h.update(&self.settings.0.to_le_bytes());
        ContentHash(h.digest128())
    }

    /// A hash of the pattern id alone, for per-pattern namespaces (directories, Redis keys).
    pub fn pattern_digest(&self) -> String {
        pattern_digest(&self.pattern_id)
    }
}

/// 16 hex digits naming a pattern id in a file or key namespace.
pub fn pattern_digest(pattern_id: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(pattern_id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sanity buffer of the xxHash test suite (`fillTestBuffer` in `xsum_sanity_check.c`).
    fn sanity_buffer(len: usize) -> Vec<u8> {
        let mut gen: u64 = 2_654_435_761;
        (0..len)
            .map(|_| {
                let b = (gen >> 56) as u8;
                gen = gen.wrapping_mul(11_400_714_785_074_694_797);
                b
            })
            .collect()
    }

    #[test]
    fn known_vectors() {
        // XXH3_128bits, seed 0, of xxHash's sanity buffer: (len, high64, low64), as printed
        // by the reference C library (python-xxhash 3.x) and matching xxHash's sanity table.
        let vectors: &[(usize, u64, u64)] = &[
            (0, 0x99AA06D3014798D8, 0x6001C324468D497F),
            (1, 0xA6CD5E9392000F6A, 0xC44BDFF4074EECDB),
            (6, 0x082AFE0B8162D12A, 0x3E7039BDDA43CFC6),
            (12, 0x6E3EFD8FC7802B18, 0x061A192713F69AD9),
            (24, 0x0CE966E4678D3761, 0x1E7044D28B1B901D),
            (48, 0xA002AC4E5478227E, 0xF942219AED80F67B),
            (81, 0x4952F58181AB0042, 0x5E8BAFB9F95FB803),
            (222, 0x337E09641B948717, 0xF1AEBD597CEC6B3A),
            (403, 0x1B6DE21E332DD73D, 0xCDEB804D65C6DEA4),
            (512, 0x18D2D110DCC9BCA1, 0x617E49599013CB6B),
            (2048, 0xF736557FD47073A5, 0xDD59E2C3A5F038E0),
            (2240, 0xCCB134FBFA7CE49D, 0x6E73A90539CF2948),
            (2367, 0xE89C0F6FF369B427, 0xCB37AEB9E5D361ED),
        ];
        let buf = sanity_buffer(2367);
        for &(len, hi, lo) in vectors {
            let want = (u128::from(hi) << 64) | u128::from(lo);
            assert_eq!(ContentHash::of(&buf[..len]).as_u128(), want, "len {len}");
        }
    }

    #[test]
    fn reader_matches_slice_and_display_round_trips() {
        let data = sanity_buffer(3 * CHUNK + 17);
        let a = ContentHash::of(&data);
        let b = ContentHash::from_reader(&data[..]).unwrap();
        assert_eq!(a, b);
        let text = a.to_string();
        assert!(text.starts_with("xxh3-") && text.len() == 37);
        assert_eq!(text.parse::<ContentHash>().unwrap(), a);
        assert!("xxh3-zz".parse::<ContentHash>().is_err());
    }

    #[test]
    fn cache_key_digest_separates_fields() {
        let h = ContentHash::of(b"img");
        let k = |p: &str, v| CacheKey::new(h, p, v, SettingsFingerprint::of("q=85"));
        assert_ne!(k("ab", 1).digest(), k("a", 1).digest());
        assert_ne!(k("a", 1).digest(), k("a", 2).digest());
        assert_eq!(k("a", 1).digest(), k("a", 1).digest());
        let other = CacheKey::new(h, "a", 1, SettingsFingerprint::of("q=80"));
        assert_ne!(other.digest(), k("a", 1).digest());
    }
}
