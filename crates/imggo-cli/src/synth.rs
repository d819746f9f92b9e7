//! A synthetic corpus for `imggo demo`, tests and benches: document-like scans with text
//! strokes, large photo-like images, an RGBA PNG, an EXIF-rotated JPEG and exact
//! duplicates. Deterministic for a seed; needs no network and no files.

use std::io;
use std::path::{Path, PathBuf};

use jpeg_encoder::{ColorType, Encoder};

/// What [`write_corpus`] produced.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Every file written, in name order (duplicates included).
    pub files: Vec<PathBuf>,
    /// How many of them are byte-identical copies of another.
    pub duplicates: usize,
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

/// A white page with dark "text lines" made of random word strokes, like a receipt scan.
pub fn document_rgb(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (w, h) = (width as usize, height as usize);
    let mut px = vec![250u8; w * h * 3];
    let line_h = (height / 40).max(8);
    let mut y = line_h * 2;
    while y + line_h < height - line_h {
        let mut x = width / 12;
        let end = width - width / 12 - rng.below(width / 3);
        while x < end {
            let word = 8 + rng.below(line_h * 4);
            for yy in y..(y + line_h * 2 / 3) {
                for xx in x..(x + word).min(end) {
                    // Strokes: a vertical bar every few pixels, like glyph stems.
                    if (xx + yy / 3) % 5 < 2 || yy == y + line_h / 3 {
                        let i = (yy as usize * w + xx as usize) * 3;
                        px[i..i + 3].copy_from_slice(&[20, 20, 30]);
                    }
                }
            }
            x += word + line_h / 2;
        }
        y += line_h + line_h / 2;
    }
    px
}

/// A smooth colour field with noise, like a phone photo.
pub fn photo_rgb(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let (w, h) = (width as usize, height as usize);
    let mut px = Vec::with_capacity(w * h * 3);
    let (fr, fg) = (1 + rng.below(5) as usize, 1 + rng.below(5) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = (rng.next() & 15) as usize;
            px.push(((x * 200 * fr / w + n) % 256) as u8);
            px.push(((y * 180 * fg / h + n) % 256) as u8);
            px.push((((x + y) * 120 / (w + h)) + n) as u8);
        }
    }
    px
}

/// Encodes RGB pixels as a baseline JPEG; `orientation` (2..=8) adds an EXIF APP1 segment.
pub fn jpeg(rgb: &[u8], width: u32, height: u32, quality: u8, orientation: Option<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, quality);
    if let Some(o) = orientation {
        enc.add_app_segment(1, exif_orientation(o))
            .expect("APP1 segment is small");
    }
    enc.encode(rgb, width as u16, height as u16, ColorType::Rgb)
        .expect("synthetic image dimensions fit JPEG");
    out
}

/// A minimal big-endian EXIF block with one IFD0 entry: Orientation = `o`.
pub fn exif_orientation(o: u16) -> Vec<u8> {
    let mut e = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    e.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    e.extend_from_slice(&o.to_be_bytes());
    e.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    e
}

/// Encodes RGBA pixels as PNG.
pub fn png_rgba(rgba: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().expect("png header");
    w.write_image_data(rgba).expect("png data");
    w.finish().expect("png finish");
    out
}

/// Writes the demo corpus into `dir`: `docs` document scans, `photos` large photos, one
/// RGBA PNG, one EXIF-rotated JPEG, and `duplicates` exact copies of earlier files.
pub fn write_corpus(
    dir: &Path,
    docs: usize,
    photos: usize,
    duplicates: usize,
    seed: u64,
) -> io::Result<Corpus> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let put = |files: &mut Vec<PathBuf>, name: String, bytes: &[u8]| -> io::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes)?;
        files.push(p);
        Ok(())
    };
    for i in 0..docs {
        let (w, h) = (1240 + (i as u32 % 3) * 100, 1754);
        let px = document_rgb(w, h, seed + i as u64);
        put(
            &mut files,
            format!("doc-{i:03}.jpg"),
            &jpeg(&px, w, h, 92, None),
        )?;
    }
    for i in 0..photos {
        let (w, h) = (3264, 2448);
        let px = photo_rgb(w, h, seed + 1000 + i as u64);
        put(
            &mut files,
            format!("photo-{i:03}.jpg"),
            &jpeg(&px, w, h, 95, None),
        )?;
    }
    let (w, h) = (800, 1000);
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for (i, c) in document_rgb(w, h, seed + 77).chunks_exact(3).enumerate() {
        rgba.extend_from_slice(c);
        rgba.push(if (i as u32 % w) < w / 4 { 0 } else { 255 });
    }
    put(&mut files, "scan-rgba.png".into(), &png_rgba(&rgba, w, h))?;
    let px = document_rgb(1600, 1200, seed + 99);
    put(
        &mut files,
        "rotated-exif6.jpg".into(),
        &jpeg(&px, 1600, 1200, 90, Some(6)),
    )?;
    let originals = files.len();
    for i in 0..duplicates {
        let src = files[i % originals].clone();
        let bytes = std::fs::read(&src)?;
        put(&mut files, format!("zz-duplicate-{i:03}.jpg"), &bytes)?;
    }
    files.sort();
    Ok(Corpus { files, duplicates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_has_duplicates() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ca = write_corpus(a.path(), 2, 0, 2, 7).unwrap();
        let cb = write_corpus(b.path(), 2, 0, 2, 7).unwrap();
        assert_eq!(ca.files.len(), 6);
        for (x, y) in ca.files.iter().zip(&cb.files) {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        }
        let dup = std::fs::read(a.path().join("zz-duplicate-000.jpg")).unwrap();
        assert_eq!(dup, std::fs::read(a.path().join("doc-000.jpg")).unwrap());
        let rot = std::fs::read(a.path().join("rotated-exif6.jpg")).unwrap();
        assert!(rot.windows(6).any(|w| w == b"Exif\0\0"));
        assert_eq!(
            &std::fs::read(a.path().join("scan-rgba.png")).unwrap()[..4],
            b"\x89PNG"
        );
    }
}
