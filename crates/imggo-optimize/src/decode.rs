//! Full decoders, one per format, all producing 8-bit interleaved pixels.

use std::io::Cursor;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use imggo_core::format::ImageFormat;

use crate::error::OptimizeError;

/// Channel layout of decoded pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Gray,
    GrayAlpha,
    Rgb,
    Rgba,
}

impl Layout {
    pub(crate) fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::GrayAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }
}

/// Decoded pixels, rows top to bottom, no padding.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub data: Vec<u8>,
    /// The input carried an ICC profile that is not sRGB (dropped, not converted).
    pub foreign_icc: bool,
}

impl Decoded {
    pub(crate) fn new(width: u32, height: u32, layout: Layout, data: Vec<u8>) -> Self {
        Decoded {
            width,
            height,
            layout,
            data,
            foreign_icc: false,
        }
    }

    pub(crate) fn is_gray(&self) -> bool {
        self.layout == Layout::Gray
    }
}

fn foreign(icc: Option<&[u8]>) -> bool {
    icc.is_some_and(|p| !crate::jpeg::is_srgb_profile(p))
}

/// Decodes a JPEG in strict mode: a cut-off file is an error, never a grey-filled image.
pub(crate) fn jpeg(bytes: &[u8]) -> Result<Decoded, OptimizeError> {
    let err = |e: zune_jpeg::errors::DecodeErrors| OptimizeError::decode(ImageFormat::Jpeg, e);
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(err)?;
    let layout = if decoder.input_colorspace() == Some(ColorSpace::Luma) {
        decoder.set_options(options.jpeg_set_out_colorspace(ColorSpace::Luma));
        Layout::Gray
    } else {
        decoder.set_options(options.jpeg_set_out_colorspace(ColorSpace::RGB));
        Layout::Rgb
    };
    let (width, height) = decoder.dimensions().ok_or_else(|| {
        OptimizeError::decode(ImageFormat::Jpeg, "no dimensions after the header")
    })?;
    let data = decoder.decode().map_err(err)?;
    let out = Decoded::new(width as u32, height as u32, layout, data);
    check_len(ImageFormat::Jpeg, &out)?;
    Ok(out)
}

/// Decodes a PNG of any colour type and depth to 8 bits (palettes expanded, tRNS to alpha).
pub(crate) fn png(bytes: &[u8]) -> Result<Decoded, OptimizeError> {
    let err = |e: png::DecodingError| OptimizeError::decode(ImageFormat::Png, e);
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    decoder.set_ignore_text_chunk(true);
    let mut reader = decoder.read_info().map_err(err)?;
    let foreign_icc = reader.info().srgb.is_none() && foreign(reader.info().icc_profile.as_deref());
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| OptimizeError::decode(ImageFormat::Png, "image too large for memory"))?;
    let mut data = vec![0; size];
    let frame = reader.next_frame(&mut data).map_err(err)?;
    data.truncate(frame.buffer_size());
    let layout = match frame.color_type {
        png::ColorType::Grayscale => Layout::Gray,
        png::ColorType::GrayscaleAlpha => Layout::GrayAlpha,
        png::ColorType::Rgb => Layout::Rgb,
        png::ColorType::Rgba => Layout::Rgba,
        png::ColorType::Indexed => {
            return Err(OptimizeError::decode(
                ImageFormat::Png,
                "palette was not expanded",
            ))
        }
    };
    let mut out = Decoded::new(frame.width, frame.height, layout, data);
    out.foreign_icc = foreign_icc;
    check_len(ImageFormat::Png, &out)?;
    Ok(out)
}

/// Decodes a still WebP (the first frame of an animation).
pub(crate) fn webp(bytes: &[u8]) -> Result<Decoded, OptimizeError> {
    let err = |e: image_webp::DecodingError| OptimizeError::decode(ImageFormat::Webp, e);
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(err)?;
    let (width, height) = decoder.dimensions();
    let foreign_icc = foreign(decoder.icc_profile().ok().flatten().as_deref());
    let layout = if decoder.has_alpha() {
        Layout::Rgba
    } else {
        Layout::Rgb
    };
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| OptimizeError::decode(ImageFormat::Webp, "image too large for memory"))?;
    let mut data = vec![0; size];
    decoder.read_image(&mut data).map_err(err)?;
    let mut out = Decoded::new(width, height, layout, data);
    out.foreign_icc = foreign_icc;
    check_len(ImageFormat::Webp, &out)?;
    Ok(out)
}

fn check_len(format: ImageFormat, d: &Decoded) -> Result<(), OptimizeError> {
    let want = d.width as usize * d.height as usize * d.layout.channels();
    if d.data.len() != want {
        return Err(OptimizeError::decode(
            format,
            format!(
                "decoder returned {} bytes for {}x{}, expected {want}",
                d.data.len(),
                d.width,
                d.height
            ),
        ));
    }
    Ok(())
}

/// Decodes the first frame of a GIF onto its logical screen (transparent where the frame
/// does not cover it or is transparent; the caller flattens onto the background).
pub(crate) fn gif(bytes: &[u8]) -> Result<Decoded, OptimizeError> {
    let err = |e: gif::DecodingError| OptimizeError::decode(ImageFormat::Gif, e);
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(err)?;
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let foreign_icc = foreign(decoder.icc_profile());
    let frame = decoder
        .read_next_frame()
        .map_err(err)?
        .ok_or_else(|| OptimizeError::decode(ImageFormat::Gif, "no image frame"))?;
    let mut data = vec![0u8; width as usize * height as usize * 4];
    let (left, top) = (u32::from(frame.left), u32::from(frame.top));
    let (fw, fh) = (u32::from(frame.width), u32::from(frame.height));
    if frame.buffer.len() < fw as usize * fh as usize * 4 {
        return Err(OptimizeError::decode(
            ImageFormat::Gif,
            "frame data is short",
        ));
    }
    let visible_w = fw.min(width.saturating_sub(left)) as usize;
    for y in 0..fh.min(height.saturating_sub(top)) {
        let src = &frame.buffer[(y * fw) as usize * 4..][..visible_w * 4];
        let dst = ((top + y) * width + left) as usize * 4;
        data[dst..dst + visible_w * 4].copy_from_slice(src);
    }
    let mut out = Decoded::new(width, height, Layout::Rgba, data);
    out.foreign_icc = foreign_icc;
    Ok(out)
}

/// Decodes an uncompressed BMP: 8-bit palette, 24-bit, or 32-bit (plain or with
/// byte-aligned bit-field masks). Other variants (RLE, 1/4/16-bit, embedded JPEG/PNG) are
/// refused as unsupported.
pub(crate) fn bmp(b: &[u8]) -> Result<Decoded, OptimizeError> {
    let cut = || OptimizeError::decode(ImageFormat::Bmp, "file is cut off");
    let u16_at = |at: usize| -> Option<u32> {
        Some(u32::from(u16::from_le_bytes(
            b.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let unsupported = |what: String| OptimizeError::Unsupported {
        reason: format!("BMP {what}"),
    };
    let data_offset = u32_at(10).ok_or_else(cut)? as usize;
    let header = u32_at(14).ok_or_else(cut)? as usize;
    let (width, height, top_down, bpp, compression, palette_entry) = if header == 12 {
        let (w, h) = (u16_at(18).ok_or_else(cut)?, u16_at(20).ok_or_else(cut)?);
        (w, h, false, u16_at(24).ok_or_else(cut)?, 0, 3)
    } else {
        let w = u32_at(18).ok_or_else(cut)? as i32;
        let h = u32_at(22).ok_or_else(cut)? as i32;
        if w <= 0 || h == 0 || h == i32::MIN {
            return Err(OptimizeError::decode(
                ImageFormat::Bmp,
                format!("bad dimensions {w}x{h}"),
            ));
        }
        let bpp = u16_at(28).ok_or_else(cut)?;
        let compression = u32_at(30).ok_or_else(cut)?;
        (w as u32, h.unsigned_abs(), h < 0, bpp, compression, 4)
    };
    // Bit positions of R, G and B in a little-endian 32-bit pixel (BGRX by default).
    let mut shifts = [16u32, 8, 0];
    match (bpp, compression) {
        (8 | 24 | 32, 0) => {}
        (32, 3) | (32, 6) => {
            // The R, G, B masks follow a 40-byte header, or sit at the same place inside V2+ ones.
            let masks_at = 14 + 40;
            for (i, shift) in shifts.iter_mut().enumerate() {
                let mask = u32_at(masks_at + 4 * i).ok_or_else(cut)?;
                if mask.count_ones() != 8 || mask.trailing_zeros() % 8 != 0 {
                    return Err(unsupported(format!("bit-field mask {mask:#010x}")));
                }
                *shift = mask.trailing_zeros();
            }
        }
        (bpp, 0) => return Err(unsupported(format!("with {bpp} bits per pixel"))),
        (_, c) => return Err(unsupported(format!("compression method {c}"))),
    }
    let palette: Vec<[u8; 3]> = if bpp == 8 {
        let at = 14 + header;
        let colors = match u32_at(46) {
            Some(n) if header >= 40 && n > 0 => (n as usize).min(256),
            _ => 256,
        };
        (0..colors)
            .map_while(|i| {
                let p = b.get(at + i * palette_entry..at + i * palette_entry + 3)?;
                Some([p[2], p[1], p[0]])
            })
            .collect()
    } else {
        Vec::new()
    };
    let bytes_pp = bpp as usize / 8;
    let stride = (width as usize * bpp as usize).div_ceil(32) * 4;
    let needed = stride * height as usize;
    let pixels = b
        .get(data_offset..)
        .and_then(|p| p.get(..needed))
        .ok_or_else(cut)?;
    let mut data = vec![0u8; width as usize * height as usize * 3];
    for (y, out_row) in data.chunks_exact_mut(width as usize * 3).enumerate() {
        let src_y = if top_down { y } else { height as usize - 1 - y };
        let row = &pixels[src_y * stride..][..width as usize * bytes_pp];
        for (x, out) in out_row.chunks_exact_mut(3).enumerate() {
            let px = &row[x * bytes_pp..][..bytes_pp];
            let rgb = match bpp {
                8 => *palette.get(usize::from(px[0])).ok_or_else(|| {
                    OptimizeError::decode(ImageFormat::Bmp, "palette index out of range")
                })?,
                24 => [px[2], px[1], px[0]],
                _ => {
                    let v = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
                    [
                        (v >> shifts[0]) as u8,
                        (v >> shifts[1]) as u8,
                        (v >> shifts[2]) as u8,
                    ]
                }
            };
            out.copy_from_slice(&rgb);
        }
    }
    Ok(Decoded::new(width, height, Layout::Rgb, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::flatten;

    fn encode_png(color: png::ColorType, data: &[u8], palette: Option<(&[u8], &[u8])>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 3, 1);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        if let Some((plte, trns)) = palette {
            enc.set_palette(plte.to_vec());
            enc.set_trns(trns.to_vec());
        }
        enc.write_header().unwrap().write_image_data(data).unwrap();
        out
    }

    /// Exact compositing: c' = (c·a + bg·(255 − a) + 127) / 255, per channel.
    #[test]
    fn png_alpha_is_flattened_exactly() {
        let bg = [255, 255, 255];
        let rgba = encode_png(
            png::ColorType::Rgba,
            &[10, 200, 30, 0, 10, 200, 30, 255, 10, 200, 30, 100],
            None,
        );
        let out = flatten(png(&rgba).unwrap(), bg);
        assert_eq!(out.layout, Layout::Rgb);
        // a=100: (10·100 + 255·155 + 127)/255 = 159, (200·100 + 39525 + 127)/255 = 233,
        // (3000 + 39525 + 127)/255 = 167.
        assert_eq!(out.data, vec![255, 255, 255, 10, 200, 30, 159, 233, 167]);

        let la = encode_png(
            png::ColorType::GrayscaleAlpha,
            &[0, 0, 0, 255, 50, 128],
            None,
        );
        let out = flatten(png(&la).unwrap(), bg);
        assert_eq!(out.layout, Layout::Gray);
        // (50·128 + 255·127 + 127)/255 = 152.
        assert_eq!(out.data, vec![255, 0, 152]);
        // On a coloured background gray+alpha becomes RGB.
        let out = flatten(png(&la).unwrap(), [255, 0, 0]);
        assert_eq!(out.data, vec![255, 0, 0, 0, 0, 0, 152, 25, 25]);

        let palette = encode_png(
            png::ColorType::Indexed,
            &[0, 1, 2],
            Some((&[255, 0, 0, 0, 255, 0, 0, 0, 255], &[0, 64])),
        );
        let out = flatten(png(&palette).unwrap(), bg);
        // Index 0 fully transparent, 1 at a=64: (0 + 255·191 + 127)/255 = 191 and
        // (255·64 + 255·191 + 127)/255 = 255; index 2 has no tRNS entry, so it is opaque.
        assert_eq!(out.data, vec![255, 255, 255, 191, 255, 191, 0, 0, 255]);
    }

    #[test]
    fn sixteen_bit_png_is_reduced_to_eight() {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Sixteen);
        enc.write_header()
            .unwrap()
            .write_image_data(&[
                0xFF, 0xFF, 0x80, 0x00, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC,
            ])
            .unwrap();
        let d = png(&out).unwrap();
        assert_eq!(
            (d.layout, d.data),
            (Layout::Rgb, vec![0xFF, 0x80, 0, 0x12, 0x56, 0x9A])
        );
    }
}
