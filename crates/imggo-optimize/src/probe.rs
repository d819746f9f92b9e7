//! Header-only probing: format and dimensions without decoding pixels.

use imggo_core::format::{sniff, ImageFormat};

use crate::error::OptimizeError;

/// Format and stored dimensions of an image, read from its header.
///
/// Dimensions are as stored; EXIF orientation is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageInfo {
    /// The sniffed format.
    pub format: ImageFormat,
    /// Stored width in pixels.
    pub width: u32,
    /// Stored height in pixels.
    pub height: u32,
}

impl ImageInfo {
    /// `width * height`.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Reads format and dimensions from the header only (no pixel decode, no allocation
/// proportional to the image), so that decompression bombs can be refused up front.
///
/// ```
/// # let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/real/resume1.png")).unwrap();
/// let info = imggo_optimize::probe(&bytes).unwrap();
/// assert_eq!(info.format, imggo_optimize::ImageFormat::Png);
/// ```
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, OptimizeError> {
    if bytes.is_empty() {
        return Err(OptimizeError::Empty);
    }
    let format = sniff(bytes).ok_or_else(|| OptimizeError::Unsupported {
        reason: format!("unknown format (first bytes {})", hex_prefix(bytes)),
    })?;
    let (width, height) = match format {
        ImageFormat::Jpeg => jpeg_size(bytes),
        ImageFormat::Png => png_size(bytes),
        ImageFormat::Webp => webp_size(bytes),
        ImageFormat::Gif => gif_size(bytes),
        ImageFormat::Bmp => bmp_size(bytes),
    }
    .map_err(|reason| OptimizeError::decode(format, reason))?;
    if width == 0 || height == 0 {
        return Err(OptimizeError::decode(
            format,
            format!("header says {width}x{height}"),
        ));
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        b.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

const CUT: &str = "header is cut off";

/// Walks marker segments up to the first SOFn.
fn jpeg_size(b: &[u8]) -> Result<(u32, u32), String> {
    let mut at = 2;
    loop {
        // Skip fill bytes before a marker.
        while b.get(at) == Some(&0xFF) && b.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if b.get(at) != Some(&0xFF) {
            return Err(match b.get(at) {
                None => CUT.to_string(),
                Some(_) => format!("expected a marker at byte {at}"),
            });
        }
        let marker = *b.get(at + 1).ok_or(CUT)?;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => {
                at += 2;
                continue;
            }
            0xD9 | 0xDA => return Err("no frame header (SOF) before the scan".to_string()),
            _ => {}
        }
        let len = be16(b, at + 2).ok_or(CUT)? as usize;
        if len < 2 {
            return Err(format!("bad segment length {len} at byte {at}"));
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let h = be16(b, at + 5).ok_or(CUT)?;
            let w = be16(b, at + 7).ok_or(CUT)?;
            return Ok((w, h));
        }
        at += 2 + len;
    }
}

fn png_size(b: &[u8]) -> Result<(u32, u32), String> {
    if b.get(12..16) != Some(b"IHDR") {
        return Err(if b.len() < 16 {
            CUT.to_string()
        } else {
            "first chunk is not IHDR".to_string()
        });
    }
    Ok((be32(b, 16).ok_or(CUT)?, be32(b, 20).ok_or(CUT)?))
}

fn webp_size(b: &[u8]) -> Result<(u32, u32), String> {
    let chunk = b.get(12..16).ok_or(CUT)?;
    match chunk {
        b"VP8 " => {
            if b.get(23..26) != Some(&[0x9d, 0x01, 0x2a]) {
                return Err("missing VP8 start code".to_string());
            }
            Ok((
                le16(b, 26).ok_or(CUT)? & 0x3FFF,
                le16(b, 28).ok_or(CUT)? & 0x3FFF,
            ))
        }
        b"VP8L" => {
            if b.get(20) != Some(&0x2F) {
                return Err("missing VP8L signature".to_string());
            }
            let bits = le32(b, 21).ok_or(CUT)?;
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Ok((le24(b, 24).ok_or(CUT)? + 1, le24(b, 27).ok_or(CUT)? + 1)),
        other => Err(format!(
            "unknown first chunk {:?}",
            String::from_utf8_lossy(other)
        )),
    }
}

fn gif_size(b: &[u8]) -> Result<(u32, u32), String> {
    Ok((le16(b, 6).ok_or(CUT)?, le16(b, 8).ok_or(CUT)?))
}

fn bmp_size(b: &[u8]) -> Result<(u32, u32), String> {
    let header = le32(b, 14).ok_or(CUT)?;
    if header == 12 {
        return Ok((le16(b, 18).ok_or(CUT)?, le16(b, 20).ok_or(CUT)?));
    }
    if header < 40 {
        return Err(format!("unknown BMP header size {header}"));
    }
    let w = le32(b, 18).ok_or(CUT)? as i32;
    let h = le32(b, 22).ok_or(CUT)? as i32;
    if w <= 0 || h == i32::MIN {
        return Err(format!("bad BMP dimensions {w}x{h}"));
    }
    Ok((w.unsigned_abs(), h.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_header() {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&60000u32.to_be_bytes());
        b.extend_from_slice(&70000u32.to_be_bytes());
        let info = probe(&b).unwrap();
        assert_eq!((info.width, info.height), (60000, 70000));
        assert_eq!(info.pixels(), 4_200_000_000);
    }

    #[test]
    fn jpeg_header_skips_segments() {
        let b = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC2, 0, 11, 8, 0x01, 0x02, 0x03, 0x04, 3,
        ];
        let info = probe(&b).unwrap();
        assert_eq!((info.width, info.height), (0x0304, 0x0102));
    }

    #[test]
    fn cut_headers_are_decode_errors() {
        assert!(matches!(
            probe(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]),
            Err(OptimizeError::Decode {
                format: ImageFormat::Jpeg,
                ..
            })
        ));
        assert!(matches!(
            probe(b"GIF89a\x01"),
            Err(OptimizeError::Decode { .. })
        ));
        assert_eq!(probe(b""), Err(OptimizeError::Empty));
        assert!(matches!(
            probe(b"not an image"),
            Err(OptimizeError::Unsupported { .. })
        ));
    }

    #[test]
    fn gif_bmp_webp_headers() {
        assert_eq!(
            probe(b"GIF89a\x10\x00\x20\x00").unwrap(),
            ImageInfo {
                format: ImageFormat::Gif,
                width: 16,
                height: 32
            }
        );
        let mut bmp = vec![0u8; 26];
        bmp[..2].copy_from_slice(b"BM");
        bmp[14..18].copy_from_slice(&40u32.to_le_bytes());
        bmp[18..22].copy_from_slice(&5i32.to_le_bytes());
        bmp[22..26].copy_from_slice(&(-7i32).to_le_bytes());
        let info = probe(&bmp).unwrap();
        assert_eq!((info.width, info.height), (5, 7));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[99, 0, 0, 199, 0, 0]);
        let info = probe(&webp).unwrap();
        assert_eq!((info.width, info.height), (100, 200));
    }
}
