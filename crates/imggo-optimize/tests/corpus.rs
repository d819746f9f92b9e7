//! Every real corpus image through the default optimizer.

mod common;

use imggo_optimize::{Action, ImageFormat, Optimizer, Options};

use common::{decode_jpeg, header_markers, scan_data};

/// (file, action, output width, output height). Resized sizes equal Pillow 13's
/// `thumbnail((2048, 2048))`.
const EXPECTED: [(&str, Action, u32, u32); 47] = [
    ("car-plate1.jpg", Action::Stripped, 460, 350),
    ("car-plate2.jpg", Action::Stripped, 460, 350),
    ("car-plate3.jpg", Action::Recompressed, 200, 137),
    ("car-plate4.jpg", Action::Recompressed, 1700, 858),
    ("car-plate5.jpg", Action::Passthrough, 416, 416),
    ("city-buildings1.jpg", Action::Stripped, 543, 360),
    ("construction1.jpg", Action::Stripped, 768, 500),
    ("construction2.jpg", Action::Passthrough, 1300, 958),
    ("construction3.jpg", Action::Stripped, 612, 408),
    ("construction4.jpg", Action::Stripped, 480, 360),
    ("construction5.jpg", Action::Passthrough, 1920, 1080),
    ("dices1.jpg", Action::Recompressed, 1280, 853),
    (
        "document-classification1.png",
        Action::Passthrough,
        767,
        832,
    ),
    ("document-classification2.png", Action::Converted, 768, 994),
    ("document-classification3.png", Action::Converted, 786, 1028),
    (
        "document-classification4.jpg",
        Action::Passthrough,
        686,
        386,
    ),
    ("document-classification5.png", Action::Stripped, 932, 657),
    ("inventory1.jpg", Action::Resized, 1536, 2048),
    ("inventory2.jpg", Action::Resized, 1150, 2048),
    ("inventory3.jpg", Action::Resized, 1536, 2048),
    ("inventory4.jpg", Action::Resized, 1536, 2048),
    ("inventory5.jpg", Action::Resized, 1536, 2048),
    ("invoice1.jpg", Action::Stripped, 830, 1080),
    ("invoice2.jpg", Action::Resized, 1825, 2048),
    ("invoice3.jpg", Action::Passthrough, 736, 952),
    ("invoice4.jpg", Action::Passthrough, 736, 807),
    ("invoice5.jpg", Action::Passthrough, 816, 1056),
    ("parking1.jpg", Action::Recompressed, 512, 384),
    ("parking2.jpg", Action::Passthrough, 1200, 1200),
    ("parking3.jpg", Action::Stripped, 1300, 1056),
    ("parking4.jpg", Action::Recompressed, 640, 360),
    ("parking5.jpg", Action::Passthrough, 1280, 720),
    ("prescription1.jpg", Action::Converted, 850, 1164),
    ("prescription2.jpg", Action::Stripped, 576, 608),
    ("prescription3.jpg", Action::Stripped, 1227, 1600),
    ("prescription4.jpg", Action::Recompressed, 960, 1280),
    ("prescription5.jpg", Action::Passthrough, 712, 554),
    ("resume1.png", Action::Converted, 1200, 1200),
    ("resume2.png", Action::Resized, 1448, 2048),
    ("resume3.jpg", Action::Stripped, 320, 320),
    ("resume4.png", Action::Converted, 917, 1292),
    ("resume5.png", Action::Passthrough, 1410, 1995),
    ("vin1.jpg", Action::Recompressed, 2048, 1365),
    ("vin2.jpg", Action::Stripped, 800, 600),
    ("vin3.jpg", Action::Passthrough, 845, 633),
    ("vin4.jpg", Action::Passthrough, 640, 480),
    ("vin5.jpg", Action::Passthrough, 640, 480),
];

#[test]
fn every_corpus_image_has_the_expected_action_and_size() {
    let files = imggo_testkit::corpus_files();
    assert_eq!(files.len(), EXPECTED.len(), "corpus changed");
    let mut optimizer = Optimizer::new(Options::default());
    let (mut total_in, mut total_out) = (0, 0);
    for (name, action, w, h) in EXPECTED {
        let input = std::fs::read(imggo_testkit::corpus_file(name)).unwrap();
        let out = optimizer
            .optimize(&input)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (out.action, out.out_width, out.out_height),
            (action, w, h),
            "{name}"
        );
        assert_eq!(out.in_bytes, input.len());
        assert_eq!(out.out_bytes, out.bytes.len());
        assert!(
            out.out_bytes <= out.in_bytes,
            "{name}: output larger than input"
        );
        assert!(out.out_width.max(out.out_height) <= 2048, "{name}");
        assert!(
            out.out_width <= out.in_width && out.out_height <= out.in_height,
            "{name}: upscaled"
        );
        total_in += out.in_bytes;
        total_out += out.out_bytes;
        check_output(name, &input, &out);
    }
    // Pillow's recipe gives 0.705 on this corpus; the target is 0.9 of that.
    let ratio = total_out as f64 / total_in as f64;
    assert!(ratio < 0.705 * 0.9, "output/input bytes {ratio:.3}");
}

fn check_output(name: &str, input: &[u8], out: &imggo_optimize::Optimized) {
    if out.out_format == ImageFormat::Png {
        assert_eq!(out.in_format, ImageFormat::Png, "{name}");
        assert!(
            matches!(out.action, Action::Passthrough | Action::Stripped),
            "{name}"
        );
        for chunk in [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"] {
            assert!(
                !out.bytes.windows(4).any(|w| w == chunk),
                "{name}: {chunk:?} kept"
            );
        }
        return;
    }
    assert_eq!(out.out_format, ImageFormat::Jpeg, "{name}");
    let (w, h, _, _) = decode_jpeg(&out.bytes);
    assert_eq!((w, h), (out.out_width, out.out_height), "{name}");
    let (markers, sos) = header_markers(&out.bytes);
    for banned in [0xE1, 0xE2, 0xED, 0xFE] {
        assert!(
            !markers.contains(&banned),
            "{name}: marker FF{banned:02X} in output"
        );
    }
    let header = &out.bytes[..sos];
    assert!(!header.windows(3).any(|w| w == b"GPS"), "{name}: GPS bytes");
    assert!(
        !header.windows(4).any(|w| w == b"Exif"),
        "{name}: EXIF bytes"
    );
    if matches!(out.action, Action::Passthrough | Action::Stripped) {
        // The lossless path leaves the entropy-coded data byte-identical.
        assert_eq!(scan_data(&out.bytes), scan_data(input), "{name}");
        assert_eq!(
            (out.out_width, out.out_height),
            (out.in_width, out.in_height)
        );
    } else {
        // Re-encoded output is baseline, 4:2:0-or-gray, with optimized tables.
        assert!(markers.contains(&0xC0), "{name}: not baseline");
    }
}

#[test]
fn the_metadata_of_a_stripped_file_is_really_gone() {
    // city-buildings1.jpg carries EXIF, Photoshop IRB and XMP; add a comment and an EXIF
    // segment with a GPS IFD text so their removal can be seen.
    let original = std::fs::read(imggo_testkit::corpus_file("city-buildings1.jpg")).unwrap();
    let mut input = original[..2].to_vec();
    for (marker, body) in [
        (0xFE_u8, &b"secret comment"[..]),
        (0xE1, b"Exif\0\0MM\0*GPSLatitude"),
    ] {
        input.extend_from_slice(&[0xFF, marker]);
        input.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        input.extend_from_slice(body);
    }
    input.extend_from_slice(&original[2..]);
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert_eq!(out.action, Action::Stripped);
    let (markers, sos) = header_markers(&out.bytes);
    assert_eq!(markers[0], 0xE0, "JFIF header kept");
    let header = &out.bytes[..sos];
    for needle in [
        &b"GPS"[..],
        b"secret",
        b"Exif",
        b"http://ns.adobe.com",
        b"Photoshop",
    ] {
        assert!(
            !header.windows(needle.len()).any(|w| w == needle),
            "{needle:?} kept"
        );
    }
    assert_eq!(scan_data(&out.bytes), scan_data(&original));
}

#[test]
fn trailing_padding_after_eoi_is_dropped() {
    // vin1.jpg: a complete JPEG followed by 162,793 zero bytes.
    let input = std::fs::read(imggo_testkit::corpus_file("vin1.jpg")).unwrap();
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert!(out.bytes.ends_with(&[0xFF, 0xD9]));
    assert!(out.out_bytes < 362_000);
}

#[test]
fn the_file_name_is_not_trusted() {
    // prescription1.jpg is a PNG.
    let input = std::fs::read(imggo_testkit::corpus_file("prescription1.jpg")).unwrap();
    let out = Optimizer::new(Options::default()).optimize(&input).unwrap();
    assert_eq!(out.in_format, ImageFormat::Png);
    assert_eq!(out.out_format, ImageFormat::Jpeg);
}

#[test]
fn a_small_max_side_and_max_bytes_are_honoured() {
    let input = std::fs::read(imggo_testkit::corpus_file("dices1.jpg")).unwrap();
    let mut optimizer = Optimizer::new(Options {
        max_side: 640,
        max_bytes: 30_000,
        ..Options::default()
    });
    let out = optimizer.optimize(&input).unwrap();
    assert_eq!(out.action, Action::Resized);
    assert!(out.out_bytes <= 30_000, "{}", out.out_bytes);
    assert!(out.out_width.max(out.out_height) <= 640);
    // Too small a ceiling is a typed error, not a tiny image.
    let mut optimizer = Optimizer::new(Options {
        max_bytes: 500,
        ..Options::default()
    });
    assert!(matches!(
        optimizer.optimize(&input),
        Err(imggo_optimize::OptimizeError::CannotFit { max_bytes: 500, .. })
    ));
}
