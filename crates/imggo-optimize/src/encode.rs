//! Baseline JPEG encoding: 4:2:0, one interleaved scan, standard Huffman tables, no
//! metadata.
//!
//! jpeg-encoder 0.7.1's optimized-Huffman mode is deliberately not used: it writes one
//! scan per component (a non-interleaved sequential JPEG), which zune-jpeg 0.5.15 decodes
//! with wrong colours when chroma is subsampled (a flat (255, 127, 126) came back as
//! (0, 255, 0); libjpeg decodes it right), and it is about 1.7× slower. Other decoders on
//! the receiving side may share that weakness; the interleaved file costs about 2 % in size.

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
