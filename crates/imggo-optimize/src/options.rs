//! What the optimizer should do, and a canonical fingerprint of it for cache keys.

use std::fmt;

/// A crop rectangle in oriented coordinates (after EXIF orientation is applied), in pixels
/// of the input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width, at least 1.
    pub width: u32,
    /// Height, at least 1.
    pub height: u32,
}

impl fmt::Display for CropBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}+{}+{}", self.width, self.height, self.x, self.y)
    }
}

/// Settings of an [`Optimizer`](crate::Optimizer). Build with struct update syntax:
///
/// ```
/// use imggo_optimize::Options;
/// let opts = Options { max_side: 1024, quality: 80, ..Options::default() };
/// assert!(opts.fingerprint().contains("max_side=1024"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Options {
    /// Longest side of the output, in pixels; larger images are shrunk (never enlarged).
    /// Default 2048.
    pub max_side: u32,
    /// JPEG quality of re-encoded output, 1..=100. Default 85.
    pub quality: u8,
    /// Output size ceiling in bytes; larger results are re-encoded at lower quality, then
    /// smaller size, until they fit. Default 2,000,000.
    pub max_bytes: usize,
    /// Largest accepted pixel count (width × height, read from the header before any
    /// allocation). Default 100,000,000.
    pub max_pixels: u64,
    /// Largest accepted input in bytes. Default 100 MiB.
    pub max_input_bytes: usize,
    /// Colour that transparency is composited onto. Default white.
    pub background: [u8; 3],
    /// Optional crop, applied after orientation and before resizing.
    pub crop: Option<CropBox>,
    /// Keep a JPEG that needs no change except metadata removal byte-wise (no decode), when
    /// its quantisation tables show a quality at most [`quality`](Self::quality). Default on.
    pub lossless_fast_path: bool,
    /// Keep the (stripped) input when re-encoding does not make it smaller and no geometric
    /// change is needed. Default on.
    pub never_larger: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_side: 2048,
            quality: 85,
            max_bytes: 2_000_000,
            max_pixels: 100_000_000,
            max_input_bytes: 100 * 1024 * 1024,
            background: [255, 255, 255],
            crop: None,
            lossless_fast_path: true,
            never_larger: true,
        }
    }
}

impl Options {
    /// Canonical text of every setting that changes the output bytes, for cache keys.
    ///
    /// The limits `max_pixels` and `max_input_bytes` only decide whether an image is
    /// refused, never what a successful output looks like, so they are not included.
    /// The leading `v1` changes whenever the pipeline's output changes for the same settings.
    pub fn fingerprint(&self) -> String {
        let [r, g, b] = self.background;
        let crop = match self.crop {
            Some(c) => c.to_string(),
            None => "none".to_string(),
        };
        format!(
            "v1;max_side={};q={};max_bytes={};bg={r:02x}{g:02x}{b:02x};crop={crop};lossless={};never_larger={}",
            self.max_side,
            self.quality,
            self.max_bytes,
            u8::from(self.lossless_fast_path),
            u8::from(self.never_larger),
        )
    }

    pub(crate) fn validate(&self) -> Result<(), crate::OptimizeError> {
        let bad = |reason: &str| {
            Err(crate::OptimizeError::InvalidOptions {
                reason: reason.to_string(),
            })
        };
        if self.max_side == 0 || self.max_side > 65_535 {
            return bad("max_side must be in 1..=65535");
        }
        if self.quality == 0 || self.quality > 100 {
            return bad("quality must be in 1..=100");
        }
        if self.max_bytes == 0 {
            return bad("max_bytes must be positive");
        }
        if let Some(c) = self.crop {
            if c.width == 0 || c.height == 0 {
                return bad("crop width and height must be positive");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fingerprint_is_stable() {
        assert_eq!(
            Options::default().fingerprint(),
            "v1;max_side=2048;q=85;max_bytes=2000000;bg=ffffff;crop=none;lossless=1;never_larger=1"
        );
    }

    #[test]
    fn fingerprint_ignores_limits_but_not_output_settings() {
        let base = Options::default();
        let limits = Options {
            max_pixels: 1,
            max_input_bytes: 1,
            ..Options::default()
        };
        assert_eq!(base.fingerprint(), limits.fingerprint());
        let crop = Options {
            crop: Some(CropBox {
                x: 1,
                y: 2,
                width: 3,
                height: 4,
            }),
            ..Options::default()
        };
        assert!(crop.fingerprint().contains("crop=3x4+1+2"));
        let bg = Options {
            background: [0, 16, 255],
            ..Options::default()
        };
        assert!(bg.fingerprint().contains("bg=0010ff"));
    }
}
