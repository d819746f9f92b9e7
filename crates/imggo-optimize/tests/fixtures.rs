//! Generated fixtures: orientation, crop, transparency, every input format, and the
//! typed errors for broken input.

mod common;

use imggo_optimize::{Action, CropBox, ImageFormat, OptimizeError, Optimizer, Options};

use common::{assert_close, decode_jpeg, encode_rgb, rgb_at, with_orientation};

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

/// A 64×32 image with four flat quadrants: red, green over blue, white.
fn quadrants() -> Vec<u8> {
    let mut px = Vec::with_capacity(64 * 32 * 3);
    for y in 0..32 {
        for x in 0..64 {
            px.extend_from_slice(match (x < 32, y < 16) {
                (true, true) => &RED,
                (false, true) => &GREEN,
                (true, false) => &BLUE,
                (false, false) => &WHITE,
            });
        }
    }
    px
}

/// Colours of the displayed corners (TL, TR, BL, BR) for each EXIF orientation, from the
/// stored corners TL=red, TR=green, BL=blue, BR=white.
fn displayed_corners(orientation: u16) -> [[u8; 3]; 4] {
    let [tl, tr, bl, br] = [RED, GREEN, BLUE, WHITE];
    match orientation {
        1 => [tl, tr, bl, br],
        2 => [tr, tl, br, bl], // mirror horizontally
        3 => [br, bl, tr, tl], // rotate 180
        4 => [bl, br, tl, tr], // mirror vertically
        5 => [tl, bl, tr, br], // transpose
        6 => [bl, tl, br, tr], // rotate 90 clockwise
        7 => [br, tr, bl, tl], // transverse
        8 => [tr, br, tl, bl], // rotate 90 counter-clockwise
        _ => unreachable!(),
    }
}

#[test]
fn all_eight_orientations_are_applied() {
    let base = encode_rgb(&quadrants(), 64, 32);
    let mut optimizer = Optimizer::new(Options::default());
    for orientation in 1..=8u16 {
        let out = optimizer
            .optimize(&with_orientation(&base, orientation))
            .unwrap();
        let (w, h, _, px) = decode_jpeg(&out.bytes);
        let want_dims = if orientation >= 5 { (32, 64) } else { (64, 32) };
        assert_eq!((w, h), want_dims, "orientation {orientation}");
        assert_eq!((out.out_width, out.out_height), want_dims);
        // Orientation 1 may be kept byte-wise; any other needs a re-encode.
        if orientation != 1 {
            assert_eq!(
                out.action,
                Action::Recompressed,
                "orientation {orientation}"
            );
        }
        // Sample 4 px in from each corner, away from chroma edges.
        let got = [
            rgb_at(&px, w, 4, 4),
            rgb_at(&px, w, w - 5, 4),
            rgb_at(&px, w, 4, h - 5),
            rgb_at(&px, w, w - 5, h - 5),
        ];
        for (i, (g, want)) in got.iter().zip(displayed_corners(orientation)).enumerate() {
            assert_close(
                *g,
                want,
                40,
                &format!("orientation {orientation} corner {i}"),
            );
        }
    }
}

#[test]
fn crop_is_in_oriented_coordinates() {
    // Orientation 6: displayed 32×64, its top-left 16×32 quadrant is stored blue.
    let input = with_orientation(&encode_rgb(&quadrants(), 64, 32), 6);
    let crop = CropBox {
        x: 0,
        y: 0,
        width: 16,
        height: 32,
    };
    let mut optimizer = Optimizer::new(Options {
        crop: Some(crop),
        ..Options::default()
    });
    let out = optimizer.optimize(&input).unwrap();
    assert_eq!(out.action, Action::Resized);
    let (w, h, _, px) = decode_jpeg(&out.bytes);
    assert_eq!((w, h), (16, 32));
    assert_close(rgb_at(&px, w, 8, 16), BLUE, 40, "cropped centre");
    // The bottom-right displayed quadrant is stored green.
    let mut optimizer = Optimizer::new(Options {
        crop: Some(CropBox {
            x: 16,
            y: 32,
            ..crop
        }),
        ..Options::default()
    });
    let (w, _, _, px) = decode_jpeg(&optimizer.optimize(&input).unwrap().bytes);
    assert_close(rgb_at(&px, w, 8, 16), GREEN, 40, "cropped centre");
    // A box reaching past the oriented size is refused (it would fit the stored 64×32).
    let mut optimizer = Optimizer::new(Options {
        crop: Some(CropBox {
            x: 0,
            y: 0,
            width: 33,
            height: 10,
        }),
        ..Options::default()
    });
    assert!(matches!(
        optimizer.optimize(&input),
        Err(OptimizeError::CropOutside {
            width: 32,
            height: 64,
            ..
        })
    ));
}

fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    data: &[u8],
    palette: Option<(&[u8], &[u8])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    if let Some((plte, trns)) = palette {
        enc.set_palette(plte.to_vec());
        enc.set_trns(trns.to_vec());
    }
    enc.write_header().unwrap().write_image_data(data).unwrap();
    out
}

#[test]
fn transparency_is_flattened_onto_the_background() {
    // Half-transparent red over white: (255·128 + 255·127 + 127)/255 = 255, (0 + 255·127 + 127)/255 = 127.
    let rgba: Vec<u8> = (0..64 * 64).flat_map(|_| [255, 0, 0, 128]).collect();
    let la: Vec<u8> = (0..64 * 64).flat_map(|_| [0, 128]).collect();
    let indexed = vec![0u8; 64 * 64];
    let inputs = [
        (
            "rgba",
            png(64, 64, png::ColorType::Rgba, &rgba, None),
            [255, 127, 127],
        ),
        (
            "gray+alpha",
            png(64, 64, png::ColorType::GrayscaleAlpha, &la, None),
            [127, 127, 127],
        ),
        (
            "palette+tRNS",
            png(
                64,
                64,
                png::ColorType::Indexed,
                &indexed,
                Some((&[255, 0, 0], &[128])),
            ),
            [255, 127, 127],
        ),
    ];
    let mut optimizer = Optimizer::new(Options::default());
    for (what, input, want) in inputs {
        let out = optimizer.optimize(&input).unwrap();
        assert_eq!(
            (out.action, out.out_format),
            (Action::Converted, ImageFormat::Jpeg),
            "{what}"
        );
        let (w, _, _, px) = decode_jpeg(&out.bytes);
        assert_close(rgb_at(&px, w, 32, 32), want, 3, what);
    }
    // Another background colour.
    let mut optimizer = Optimizer::new(Options {
        background: [0, 0, 255],
        ..Options::default()
    });
    let out = optimizer
        .optimize(&png(64, 64, png::ColorType::Rgba, &rgba, None))
        .unwrap();
    let (w, _, _, px) = decode_jpeg(&out.bytes);
    assert_close(rgb_at(&px, w, 32, 32), [128, 0, 127], 3, "blue background");
}

#[test]
fn gray_jpeg_stays_gray_and_cmyk_becomes_rgb() {
    let gray: Vec<u8> = (0..3000 * 16).map(|i| (i % 3000 / 12) as u8).collect();
    let mut input = Vec::new();
    jpeg_encoder::Encoder::new(&mut input, 90)
        .encode(&gray, 3000, 16, jpeg_encoder::ColorType::Luma)
        .unwrap();
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert_eq!(
        (out.action, out.out_width, out.out_height),
        (Action::Resized, 2048, 11)
    );
    let (_, _, components, _) = decode_jpeg(&out.bytes);
    assert_eq!(components, 1);

    // CMYK (0, 255, 255, 0) is red (Pillow agrees); the output is a 3-component JPEG.
    let cmyk: Vec<u8> = (0..32 * 32).flat_map(|_| [0u8, 255, 255, 0]).collect();
    let mut input = Vec::new();
    jpeg_encoder::Encoder::new(&mut input, 95)
        .encode(&cmyk, 32, 32, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert_eq!(out.action, Action::Recompressed);
    let (w, _, components, px) = decode_jpeg(&out.bytes);
    assert_eq!(components, 3);
    assert_close(rgb_at(&px, w, 16, 16), RED, 6, "cmyk red");
}

#[test]
fn gif_first_frame_with_transparency() {
    let mut input = Vec::new();
    {
        let palette = [255, 0, 0, 0, 0, 255];
        let mut enc = gif::Encoder::new(&mut input, 32, 32, &palette).unwrap();
        // Left half red, right half transparent (index 1).
        let pixels: Vec<u8> = (0..32 * 32).map(|i| u8::from(i % 32 >= 16)).collect();
        let mut frame = gif::Frame::from_indexed_pixels(32, 32, pixels, Some(1));
        enc.write_frame(&frame).unwrap();
        // A second, blue frame that must be ignored.
        frame.buffer = vec![1u8; 32 * 32].into();
        frame.transparent = None;
        enc.write_frame(&frame).unwrap();
    }
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert_eq!(
        (out.in_format, out.action),
        (ImageFormat::Gif, Action::Converted)
    );
    let (w, _, _, px) = decode_jpeg(&out.bytes);
    assert_close(rgb_at(&px, w, 4, 16), RED, 20, "gif opaque");
    assert_close(rgb_at(&px, w, 27, 16), WHITE, 20, "gif transparent");
}

/// A bottom-up BMP with a 40-byte header.
fn bmp(width: u32, height: u32, bpp: u16, compression: u32, extra: &[u8], rows: &[u8]) -> Vec<u8> {
    let offset = 14 + 40 + extra.len() as u32;
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&(offset + rows.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&(width as i32).to_le_bytes());
    b.extend_from_slice(&(height as i32).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&bpp.to_le_bytes());
    b.extend_from_slice(&compression.to_le_bytes());
    b.extend_from_slice(&[0; 20]);
    b.extend_from_slice(extra);
    b.extend_from_slice(rows);
    b
}

#[test]
fn bmp_variants() {
    // 17×16, bottom row stored first: bottom half blue, top half red. 24-bit rows pad to 52.
    let (w, h) = (17u32, 16u32);
    let row = |bgr: [u8; 3], bytes_pp: usize, stride: usize| {
        let mut r: Vec<u8> = (0..w)
            .flat_map(|_| {
                let mut p = bgr.to_vec();
                p.resize(bytes_pp, 0);
                p
            })
            .collect();
        r.resize(stride, 0);
        r
    };
    let image = |bytes_pp: usize, stride: usize, blue: [u8; 3], red: [u8; 3]| -> Vec<u8> {
        (0..h)
            .flat_map(|y| row(if y < h / 2 { blue } else { red }, bytes_pp, stride))
            .collect()
    };
    let b24 = bmp(w, h, 24, 0, &[], &image(3, 52, [255, 0, 0], [0, 0, 255]));
    let b32 = bmp(w, h, 32, 0, &[], &image(4, 68, [255, 0, 0], [0, 0, 255]));
    // Bit fields with R in the low byte: pixel bytes are R, G, B, X.
    let masks: Vec<u8> = [0xFFu32, 0xFF00, 0xFF_0000]
        .iter()
        .flat_map(|m| m.to_le_bytes())
        .collect();
    let b32_fields = bmp(w, h, 32, 3, &masks, &image(4, 68, [0, 0, 255], [255, 0, 0]));
    // 8-bit palette: index 0 red, 1 blue.
    let palette = [0u8, 0, 255, 0, 255, 0, 0, 0];
    let rows8: Vec<u8> = (0..h)
        .flat_map(|y| {
            let mut r = vec![u8::from(y < h / 2); w as usize];
            r.resize(20, 0);
            r
        })
        .collect();
    let b8 = bmp(w, h, 8, 0, &palette, &rows8);
    let mut optimizer = Optimizer::new(Options::default());
    for (what, input) in [
        ("24", b24),
        ("32", b32),
        ("32 bit fields", b32_fields),
        ("8", b8),
    ] {
        let out = optimizer
            .optimize(&input)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            (out.in_format, out.out_width, out.out_height),
            (ImageFormat::Bmp, w, h)
        );
        let (_, _, _, px) = decode_jpeg(&out.bytes);
        assert_close(rgb_at(&px, w, 8, 2), RED, 30, what);
        assert_close(rgb_at(&px, w, 8, 13), BLUE, 30, what);
    }
    // RLE is refused with a reason.
    let rle = bmp(w, h, 8, 1, &palette, &rows8);
    let err = optimizer.optimize(&rle).unwrap_err();
    assert!(err.to_string().contains("compression method 1"), "{err}");
}

#[test]
fn webp_lossless_with_alpha() {
    let rgba: Vec<u8> = (0..40 * 40)
        .flat_map(|i| {
            if i % 40 < 20 {
                [0, 255, 0, 255]
            } else {
                [0, 0, 0, 0]
            }
        })
        .collect();
    let mut input = Vec::new();
    image_webp::WebPEncoder::new(&mut input)
        .encode(&rgba, 40, 40, image_webp::ColorType::Rgba8)
        .unwrap();
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert_eq!(
        (out.in_format, out.action),
        (ImageFormat::Webp, Action::Converted)
    );
    let (w, _, _, px) = decode_jpeg(&out.bytes);
    assert_close(rgb_at(&px, w, 5, 20), GREEN, 30, "webp opaque");
    assert_close(rgb_at(&px, w, 35, 20), WHITE, 30, "webp transparent");
}

#[test]
fn never_upscaled() {
    let input = std::fs::read(imggo_testkit::corpus_file("car-plate3.jpg")).unwrap();
    let mut optimizer = Optimizer::new(Options {
        max_side: 4000,
        lossless_fast_path: false,
        never_larger: false,
        ..Options::default()
    });
    let out = optimizer.optimize(&input).unwrap();
    assert_eq!(
        (out.action, out.out_width, out.out_height),
        (Action::Recompressed, 200, 137)
    );
}

#[test]
fn broken_input_gives_typed_errors() {
    let mut optimizer = Optimizer::new(Options::default());
    assert_eq!(optimizer.optimize(b""), Err(OptimizeError::Empty));
    // Deterministic pseudo-random bytes.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    assert!(matches!(
        optimizer.optimize(&random),
        Err(OptimizeError::Unsupported { .. })
    ));
    for (magic, format) in [
        (&[0xFF, 0xD8, 0xFF][..], ImageFormat::Jpeg),
        (b"\x89PNG\r\n\x1a\n", ImageFormat::Png),
        (b"GIF89a\x10\0\x10\0", ImageFormat::Gif),
    ] {
        let mut garbage = magic.to_vec();
        garbage.extend_from_slice(&random);
        match optimizer.optimize(&garbage) {
            Err(OptimizeError::Decode { format: f, .. }) => assert_eq!(f, format),
            other => panic!("{format} with random body: {other:?}"),
        }
    }
    // Cut-off files, including one that would otherwise take the lossless path and a
    // progressive one; strict decoding refuses them instead of filling with grey.
    for (name, format) in [
        ("inventory1.jpg", ImageFormat::Jpeg),
        ("car-plate1.jpg", ImageFormat::Jpeg),
        ("invoice2.jpg", ImageFormat::Jpeg),
        ("resume1.png", ImageFormat::Png),
    ] {
        let full = std::fs::read(imggo_testkit::corpus_file(name)).unwrap();
        let cut = &full[..full.len() * 6 / 10];
        match optimizer.optimize(cut) {
            Err(OptimizeError::Decode { format: f, reason }) => {
                assert_eq!(f, format, "{name}");
                assert!(!reason.is_empty());
            }
            other => panic!("{name} cut off: {other:?}"),
        }
    }
    // Limits.
    let input = std::fs::read(imggo_testkit::corpus_file("car-plate3.jpg")).unwrap();
    let mut small = Optimizer::new(Options {
        max_input_bytes: 1000,
        ..Options::default()
    });
    assert!(matches!(
        small.optimize(&input),
        Err(OptimizeError::TooLarge { limit: 1000, .. })
    ));
    let mut few = Optimizer::new(Options {
        max_pixels: 200 * 136,
        ..Options::default()
    });
    assert!(matches!(
        few.optimize(&input),
        Err(OptimizeError::TooManyPixels {
            width: 200,
            height: 137,
            ..
        })
    ));
    let mut bad = Optimizer::new(Options {
        quality: 0,
        ..Options::default()
    });
    assert!(matches!(
        bad.optimize(&input),
        Err(OptimizeError::InvalidOptions { .. })
    ));
}
