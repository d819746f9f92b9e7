//! Image format from magic bytes: the upload's file name and MIME type come from the
//! content, never from a file extension (a `.jpg` may well be a PNG).

/// An image format the ImgGo ingest route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// WebP (`RIFF....WEBP`).
    WebP,
    /// GIF (`GIF87a` / `GIF89a`).
    Gif,
    /// BMP (`BM`).
    Bmp,
}

impl ImageFormat {
    /// Detects the format from the first bytes; `None` for anything else (PDF, text, ...).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::WebP),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            // "BM", then a 4-byte size and 4 reserved bytes that are zero in practice.
            [b'B', b'M', _, _, _, _, 0, 0, 0, 0, ..] => Some(Self::Bmp),
            _ => None,
        }
    }

    /// The MIME type sent with the upload.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
            Self::Gif => "image/gif",
            Self::Bmp => "image/bmp",
        }
    }

    /// The file extension (without the dot) the server expects for this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::WebP => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_format() {
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"RIFF\x24\0\0\0WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
        assert_eq!(
            ImageFormat::sniff(b"GIF89a\x01\0\x01\0"),
            Some(ImageFormat::Gif)
        );
        assert_eq!(
            ImageFormat::sniff(b"GIF87a\x01\0\x01\0"),
            Some(ImageFormat::Gif)
        );
        assert_eq!(
            ImageFormat::sniff(b"BM\x3a\0\0\0\0\0\0\0\x36\0"),
            Some(ImageFormat::Bmp)
        );
    }

    #[test]
    fn rejects_non_images_and_short_input() {
        for bad in [
            &b""[..],
            b"\xFF\xD8",
            b"%PDF-1.7\n",
            b"RIFF\0\0\0\0WAVEfmt ",
            b"BMP is a word",
            b"hello",
        ] {
            assert_eq!(ImageFormat::sniff(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn corpus_png_named_jpg_is_png() {
        let bytes = std::fs::read(imggo_testkit::corpus_file("prescription1.jpg")).unwrap();
        assert_eq!(ImageFormat::sniff(&bytes), Some(ImageFormat::Png));
        for path in imggo_testkit::corpus_files() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(ImageFormat::sniff(&bytes).is_some(), "{}", path.display());
        }
    }
}
