//! Full decoders, one per format, all producing 8-bit interleaved pixels.

use std::io::Cursor;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::OptimizeError;
use crate::format::ImageFormat;

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
    let out = Decoded {
        width: width as u32,
        height: height as u32,
        layout,
        data,
    };
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
    let out = Decoded {
        width: frame.width,
        height: frame.height,
        layout,
        data,
    };
    check_len(ImageFormat::Png, &out)?;
    Ok(out)
}

/// Decodes a still WebP (the first frame of an animation).
pub(crate) fn webp(bytes: &[u8]) -> Result<Decoded, OptimizeError> {
    let err = |e: image_webp::DecodingError| OptimizeError::decode(ImageFormat::Webp, e);
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(err)?;
    let (width, height) = decoder.dimensions();
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
    let out = Decoded {
        width,
        height,
        layout,
        data,
    };
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
