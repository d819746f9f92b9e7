//! Image formats recognised from their leading bytes, never from a file name (a `.jpg`
//! may well hold a PNG). The optimizer, the HTTP client and the emulator all decide with
//! [`sniff`], so an upload the client accepts is one the optimizer can read and the
//! emulator takes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An image format ImgGo accepts: the API's ingest route takes `.jpg .jpeg .png .gif
/// .webp .bmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// WebP (`RIFF....WEBP`), lossy or lossless.
    Webp,
    /// GIF (`GIF87a` / `GIF89a`).
    Gif,
    /// Windows bitmap (`BM`, see [`sniff`] for what else is checked).
    Bmp,
}

/// Bytes a BMP needs before anything can be read from it: the 14-byte file header and the
/// 4-byte size of the DIB header that follows.
const BMP_MIN_LEN: usize = 18;

impl ImageFormat {
    /// The format announced by the first bytes of `bytes`; same as [`sniff`].
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::Webp),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            // "BM", a 4-byte file size, two reserved u16s that must be zero, the pixel
            // offset, then the DIB header's size. Text that starts with "BM" fails the
            // reserved bytes; a header cut short of the DIB size cannot be decoded.
            [b'B', b'M', _, _, _, _, 0, 0, 0, 0, ..] if bytes.len() >= BMP_MIN_LEN => {
                Some(Self::Bmp)
            }
            _ => None,
        }
    }

    /// The MIME type, e.g. `image/jpeg`.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Bmp => "image/bmp",
        }
    }

    /// The usual file extension without the dot, e.g. `jpg`; one the API accepts.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
        }
    }

    /// The lower-case name used in output and JSON, e.g. `jpeg`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The format announced by the first bytes of `bytes`, or `None` if none matches.
///
/// Only magic bytes (and for BMP the reserved header fields) are checked; the rest of the
/// file may still be invalid.
///
/// ```
/// use imggo_core::format::{sniff, ImageFormat};
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
/// assert_eq!(sniff(b"hello"), None);
/// ```
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    ImageFormat::sniff(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BMP file header plus the DIB header's size: the shortest prefix sniffed as BMP.
    const BMP_HEADER: &[u8; 18] = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0";

    #[test]
    fn sniffs_each_format() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some(ImageFormat::Gif));
        assert_eq!(sniff(b"GIF87a\x01\0\x01\0"), Some(ImageFormat::Gif));
        assert_eq!(sniff(BMP_HEADER), Some(ImageFormat::Bmp));
        assert_eq!(
            sniff(b"BM\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Some(ImageFormat::Bmp)
        );
    }

    #[test]
    fn rejects_non_images_and_short_input() {
        for bad in [
            &b""[..],
            b"BM",
            b"\xFF\xD8",
            b"%PDF-1.7\n",
            b"RIFF\0\0\0\0WAVEfmt ",
            b"BMP is a word",
            b"hello",
        ] {
            assert_eq!(sniff(bad), None, "{bad:?}");
        }
    }

    /// The two sniffers this one replaced disagreed here: one took any "BM" of 18 bytes or
    /// more (text included), the other any "BM" with zero reserved bytes, however short.
    #[test]
    fn bmp_needs_zero_reserved_bytes_and_the_dib_header_size() {
        // Text: long enough, but the reserved bytes are not zero.
        assert_eq!(sniff(b"BMP is a word, not a bitmap"), None);
        // A real file header cut before the DIB header's size.
        assert_eq!(sniff(&BMP_HEADER[..12]), None);
        assert_eq!(sniff(&BMP_HEADER[..17]), None);
        assert_eq!(sniff(BMP_HEADER), Some(ImageFormat::Bmp));
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(ImageFormat::Jpeg.to_string(), "jpeg");
        assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
        assert_eq!(ImageFormat::Jpeg.extension(), "jpg");
        assert_eq!(ImageFormat::Webp.mime(), "image/webp");
        assert_eq!(ImageFormat::Bmp.extension(), "bmp");
        assert_eq!(
            serde_json::to_string(&ImageFormat::Webp).unwrap(),
            "\"webp\""
        );
    }
}
