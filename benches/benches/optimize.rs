//! imggo-optimize: the pipeline's stages (decode, resize, encode) with the same calls and
//! settings the optimizer makes, and end-to-end `Optimizer::optimize` per image class:
//! small JPEG (parking1.jpg, 512×384, re-encoded), 8 MP JPEG (inventory1.jpg, 2448×3264 →
//! 1536×2048), RGBA PNG (resume2.png, 2479×3506 → 1448×2048), the lossless path
//! (car-plate1.jpg, stripped) and a 60000×60000 bomb header (refused).
//!
//! `encode` times jpeg-encoder's own RGB path. The optimizer feeds RGB through its own row
//! fill instead (byte-identical output, fewer instructions), which `end_to_end` includes.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use imggo_optimize::{Optimizer, Options};
use zune_core::bytestream::ZCursor;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(imggo_testkit::corpus_file(name)).unwrap()
}

fn decode_jpeg(bytes: &[u8]) -> Vec<u8> {
    let options = DecoderOptions::default().set_strict_mode(true);
    JpegDecoder::new_with_options(ZCursor::new(bytes), options)
        .decode()
        .unwrap()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("optimize/decode");
    for name in ["parking1.jpg", "inventory1.jpg"] {
        let bytes = corpus(name);
        g.bench_function(name, |b| b.iter(|| decode_jpeg(black_box(&bytes))));
    }
    let png_bytes = corpus("resume2.png");
    g.bench_function("resume2.png", |b| {
        b.iter(|| {
            let mut d = png::Decoder::new(Cursor::new(black_box(&png_bytes[..])));
            d.set_transformations(png::Transformations::normalize_to_color8());
            let mut r = d.read_info().unwrap();
            let mut buf = vec![0; r.output_buffer_size().unwrap()];
            r.next_frame(&mut buf).unwrap();
            buf
        })
    });
    g.finish();
}

fn resize(c: &mut Criterion) {
    let rgb = decode_jpeg(&corpus("inventory1.jpg"));
    let mut g = c.benchmark_group("optimize/resize");
    g.throughput(Throughput::Elements(2448 * 3264));
    let mut resizer = Resizer::new();
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut out = vec![0u8; 1536 * 2048 * 3];
    g.bench_function("lanczos3_2448x3264_to_1536x2048", |b| {
        b.iter(|| {
            let src = TypedImageRef::<U8x3>::from_buffer(2448, 3264, &rgb).unwrap();
            let mut dst = TypedImage::<U8x3>::from_buffer(1536, 2048, &mut out).unwrap();
            resizer.resize_typed(&src, &mut dst, &options).unwrap();
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let rgb = decode_jpeg(&corpus("inventory1.jpg"));
    let small = &rgb[..1536 * 2048 * 3];
    let mut g = c.benchmark_group("optimize/encode");
    g.throughput(Throughput::Elements(1536 * 2048));
    g.bench_function("q85_420_1536x2048", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1 << 20);
            let mut e = jpeg_encoder::Encoder::new(&mut out, 85);
            e.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
            e.encode(black_box(small), 1536, 2048, jpeg_encoder::ColorType::Rgb)
                .unwrap();
            out
        })
    });
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("optimize/end_to_end");
    let mut optimizer = Optimizer::new(Options::default());
    for name in [
        "parking1.jpg",
        "inventory1.jpg",
        "resume2.png",
        "car-plate1.jpg",
    ] {
        let bytes = corpus(name);
        g.bench_function(name, |b| {
            b.iter(|| optimizer.optimize(black_box(&bytes)).unwrap())
        });
    }
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bomb.extend_from_slice(&60000u32.to_be_bytes());
    bomb.extend_from_slice(&60000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    g.bench_function("refuse_bomb_60000x60000", |b| {
        b.iter(|| optimizer.optimize(black_box(&bomb)).unwrap_err())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = decode, resize, encode, end_to_end
}
criterion_main!(benches);
