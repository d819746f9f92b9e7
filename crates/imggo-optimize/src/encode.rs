//! Baseline JPEG encoding (4:2:0, optimized Huffman tables, no metadata).

use jpeg_encoder::{ColorType, SamplingFactor};

use crate::decode::Decoded;
use crate::error::OptimizeError;

/// A JPEG encoder that keeps its output buffer capacity between calls.
pub(crate) struct Encoder {
    capacity: usize,
}

impl Encoder {
    pub(crate) fn new() -> Self {
        Encoder { capacity: 0 }
    }

    /// Encodes gray or RGB pixels at `quality`.
    pub(crate) fn encode(&mut self, img: &Decoded, quality: u8) -> Result<Vec<u8>, OptimizeError> {
        let err = |e: jpeg_encoder::EncodingError| OptimizeError::Encode {
            reason: e.to_string(),
        };
        let (w, h) = match (u16::try_from(img.width), u16::try_from(img.height)) {
            (Ok(w), Ok(h)) => (w, h),
            _ => {
                return Err(OptimizeError::Encode {
                    reason: format!("{}x{} is beyond JPEG's 65535 limit", img.width, img.height),
                })
            }
        };
        let mut out = Vec::with_capacity(self.capacity.max(img.data.len() / 8));
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
        encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
        encoder.set_optimized_huffman_tables(true);
        let color = if img.is_gray() {
            ColorType::Luma
        } else {
            ColorType::Rgb
        };
        encoder.encode(&img.data, w, h, color).map_err(err)?;
        self.capacity = self.capacity.max(out.len());
        Ok(out)
    }
}
