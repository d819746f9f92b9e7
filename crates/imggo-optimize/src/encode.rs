//! Baseline JPEG encoding: 4:2:0, one interleaved scan, standard Huffman tables, no
//! metadata.
//!
//! jpeg-encoder 0.7.1's optimized-Huffman mode is deliberately not used: it writes one
//! scan per component (a non-interleaved sequential JPEG), which zune-jpeg 0.5.15 decodes
//! with wrong colours when chroma is subsampled (a flat (255, 127, 126) came back as
//! (0, 255, 0); libjpeg decodes it right), and it is about 1.7× slower. Other decoders on
//! the receiving side may share that weakness; the interleaved file costs about 2 % in size.
//!
//! RGB goes in through [`Rgb420`], which converts to YCbCr itself and skips the chroma the
//! encoder never reads; the bytes written are exactly those of jpeg-encoder's own RGB path.

use jpeg_encoder::{
    ChromaSubsamplingMethod, ColorType, ImageBuffer, JpegColorType, SamplingFactor,
};

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
        // `Rgb420` relies on this: each 2×2 block's chroma is that of its top-left pixel.
        encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Nearest);
        if img.is_gray() {
            encoder.encode(&img.data, w, h, ColorType::Luma)
        } else {
            encoder.encode_image(Rgb420::new(&img.data, w, h))
        }
        .map_err(err)?;
        self.capacity = self.capacity.max(out.len());
        Ok(out)
    }
}

/// RGB pixels fed to the encoder as YCbCr for 4:2:0 with nearest chroma sampling, which
/// reads the chroma of even columns on even rows only. Luma is converted for every pixel,
/// chroma only on the rows that are read (odd rows get a placeholder), with jpeg-encoder's
/// own fixed-point formulas, so the output is byte for byte that of `ColorType::Rgb`.
struct Rgb420<'a> {
    data: &'a [u8],
    width: u16,
    height: u16,
    avx2: bool,
}

impl<'a> Rgb420<'a> {
    fn new(data: &'a [u8], width: u16, height: u16) -> Self {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        let avx2 = std::is_x86_feature_detected!("avx2");
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        let avx2 = false;
        Rgb420 {
            data,
            width,
            height,
            avx2,
        }
    }
}

impl ImageBuffer for Rgb420<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let row_len = usize::from(self.width) * 3;
        let row = &self.data[usize::from(y) * row_len..][..row_len];
        // The encoder works in strips of 16 rows starting at multiples of 16, so a row's
        // parity is its place in the strip; rows below the image repeat the last row, which
        // may be odd, so that one gets its chroma too.
        let chroma = y.is_multiple_of(2) || y + 1 == self.height;
        let [luma, cb, cr, _] = buffers;
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if self.avx2 {
            // SAFETY: `avx2` is true only when the CPU reports AVX2 (`Rgb420::new`).
            unsafe { fill_row_avx2(row, luma, cb, cr, chroma) };
            return;
        }
        fill_row(row, luma, cb, cr, chroma);
    }
}

/// [`fill_row`] compiled for AVX2, where the loops vectorise.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
fn fill_row_avx2(row: &[u8], luma: &mut Vec<u8>, cb: &mut Vec<u8>, cr: &mut Vec<u8>, chroma: bool) {
    fill_row(row, luma, cb, cr, chroma);
}

/// Appends one row of Y, Cb and Cr (Cb and Cr left at 128 unless `chroma`).
#[inline(always)]
fn fill_row(row: &[u8], luma: &mut Vec<u8>, cb: &mut Vec<u8>, cr: &mut Vec<u8>, chroma: bool) {
    let width = row.len() / 3;
    let start = luma.len();
    luma.resize(start + width, 0);
    for (out, p) in luma[start..].iter_mut().zip(row.chunks_exact(3)) {
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        *out = ((19595 * r + 38470 * g + 7471 * b + 0x7FFF) >> 16) as u8;
    }
    let start = cb.len();
    cb.resize(start + width, 128);
    cr.resize(start + width, 128);
    if chroma {
        let chroma_rows = cb[start..].iter_mut().zip(cr[start..].iter_mut());
        for ((out_b, out_r), p) in chroma_rows.zip(row.chunks_exact(3)) {
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            *out_b = ((-11059 * r - 21709 * g + 32768 * b + (128 << 16) + 0x7FFF) >> 16) as u8;
            *out_r = ((32768 * r - 27439 * g - 5329 * b + (128 << 16) + 0x7FFF) >> 16) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Layout;

    /// Deterministic, busy RGB content (so every DCT coefficient matters).
    fn pixels(w: u16, h: u16) -> Vec<u8> {
        let mut state = 0x2545_F491_u32;
        (0..usize::from(w) * usize::from(h) * 3)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                ((i as u32 / 7 % 256) as u8).wrapping_add((state % 64) as u8)
            })
            .collect()
    }

    #[test]
    fn rgb420_matches_jpeg_encoders_own_rgb_path_byte_for_byte() {
        // Even and odd sizes, multiples of 16 and not, a single pixel and row.
        for (w, h) in [
            (1, 1),
            (2, 2),
            (16, 16),
            (17, 33),
            (30, 31),
            (37, 23),
            (64, 1),
            (1, 40),
        ] {
            let data = pixels(w, h);
            for quality in [40, 85] {
                let mut want = Vec::new();
                let mut e = jpeg_encoder::Encoder::new(&mut want, quality);
                e.set_sampling_factor(SamplingFactor::R_4_2_0);
                e.encode(&data, w, h, ColorType::Rgb).unwrap();

                let img = Decoded::new(u32::from(w), u32::from(h), Layout::Rgb, data.clone());
                let got = Encoder::new().encode(&img, quality).unwrap();
                assert!(got == want, "{w}x{h} q{quality}: output differs");
            }
        }
    }

    #[test]
    fn the_portable_row_fill_matches_the_simd_one() {
        let row = pixels(45, 1);
        let mut plain: [Vec<u8>; 3] = Default::default();
        let [l, b, r] = &mut plain;
        fill_row(&row, l, b, r, true);
        let mut img = Rgb420::new(&row, 45, 1);
        let mut simd: [Vec<u8>; 4] = Default::default();
        img.fill_buffers(0, &mut simd);
        assert_eq!(plain[..], simd[..3]);
        img.avx2 = false;
        let mut portable: [Vec<u8>; 4] = Default::default();
        img.fill_buffers(0, &mut portable);
        assert_eq!(plain[..], portable[..3]);
    }
}
