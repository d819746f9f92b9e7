//! Helpers shared by the integration tests: decoding outputs and listing JPEG segments.
#![allow(dead_code)] // each test binary uses a subset

use zune_core::bytestream::ZCursor;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Decodes a JPEG strictly to (width, height, components-in-file, RGB pixels).
pub fn decode_jpeg(bytes: &[u8]) -> (u32, u32, u8, Vec<u8>) {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
    let mut d = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = d.decode().expect("output decodes");
    let (w, h) = d.dimensions().unwrap();
    let components = d.info().unwrap().components;
    (w as u32, h as u32, components, pixels)
}

/// Markers of the segments before the first scan, plus the offset of SOS.
pub fn header_markers(bytes: &[u8]) -> (Vec<u8>, usize) {
    assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
    let mut at = 2;
    let mut markers = Vec::new();
    loop {
        assert_eq!(bytes[at], 0xFF, "marker expected at {at}");
        let marker = bytes[at + 1];
        markers.push(marker);
        if marker == 0xDA {
            return (markers, at);
        }
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        at += 2 + len;
    }
}

/// The entropy-coded data and everything after it, up to and including EOI.
pub fn scan_data(bytes: &[u8]) -> &[u8] {
    let (_, sos) = header_markers(bytes);
    let eoi = bytes
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .expect("EOI");
    &bytes[sos..eoi + 2]
}

/// Encodes RGB pixels as a JPEG (4:4:4 at quality 95, so colours stay close).
pub fn encode_rgb(pixels: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = jpeg_encoder::Encoder::new(&mut out, 95);
    e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    e.encode(pixels, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// Inserts an APP1 EXIF segment carrying `orientation` right after SOI.
pub fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0*\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// RGB pixel at (x, y) of an interleaved RGB buffer `w` wide.
pub fn rgb_at(pixels: &[u8], w: u32, x: u32, y: u32) -> [u8; 3] {
    let i = (y * w + x) as usize * 3;
    [pixels[i], pixels[i + 1], pixels[i + 2]]
}

/// Asserts two colours are within `tol` per channel.
#[track_caller]
pub fn assert_close(got: [u8; 3], want: [u8; 3], tol: u8, what: &str) {
    let ok = got
        .iter()
        .zip(want.iter())
        .all(|(g, w)| g.abs_diff(*w) <= tol);
    assert!(ok, "{what}: got {got:?}, want {want:?} (±{tol})");
}
