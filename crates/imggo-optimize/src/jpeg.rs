//! Byte-level JPEG structure: one walk over the marker segments gives the EXIF
//! orientation, the quantisation tables (for a quality estimate), the frame type, any ICC
//! profile and the end-of-image position; [`strip`] then copies the file without its
//! metadata segments, leaving the entropy-coded data byte-identical.

use std::ops::Range;

/// What the marker walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JpegLayout {
    /// EXIF orientation 1–8 (1 when absent or invalid).
    pub orientation: u8,
    /// IJG quality (1–100) that best explains the luma quantisation table.
    pub quality: Option<u8>,
    /// Number of colour components in the frame (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK).
    pub components: u8,
    /// SOF marker (0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...).
    pub sof: u8,
    /// Whether an ICC profile is present and does not name itself sRGB.
    pub foreign_icc: bool,
    /// Segments to drop in [`strip`] (APPn except JFIF APP0 and Adobe APP14, COM).
    pub metadata: Vec<Range<usize>>,
    /// Index just past the EOI marker (0 when the walk did not reach it).
    pub end: usize,
    /// Whether the walk reached EOI through well-formed segments. Only a complete file may
    /// be kept byte-wise; the fields above are still filled as far as the walk got.
    pub complete: bool,
}

impl JpegLayout {
    /// Huffman-coded baseline, extended or progressive: what every decoder handles.
    pub(crate) fn is_common_frame(&self) -> bool {
        matches!(self.sof, 0xC0..=0xC2)
    }

    /// Size of the output of [`strip`].
    pub(crate) fn stripped_len(&self) -> usize {
        let removed: usize = self.metadata.iter().map(|r| r.len()).sum();
        self.end.saturating_sub(removed)
    }
}

/// Walks the whole file. When the structure is broken or there is no EOI the layout is
/// marked incomplete (such a file is left to the strict decoder to judge), but what the
/// walk saw before (orientation above all) is still reported.
pub(crate) fn parse(b: &[u8]) -> JpegLayout {
    let mut layout = JpegLayout {
        orientation: 1,
        quality: None,
        components: 0,
        sof: 0,
        foreign_icc: false,
        metadata: Vec::new(),
        end: 0,
        complete: false,
    };
    let mut luma_table: Option<[u16; 64]> = None;
    let mut icc = Vec::new();
    layout.complete = walk(b, &mut layout, &mut luma_table, &mut icc).is_ok() && layout.sof != 0;
    layout.quality = luma_table.map(|t| estimate_quality(&t));
    layout.foreign_icc = !icc.is_empty() && !is_srgb_profile(&icc);
    layout
}

fn walk(
    b: &[u8],
    layout: &mut JpegLayout,
    luma_table: &mut Option<[u16; 64]>,
    icc: &mut Vec<u8>,
) -> Result<(), String> {
    let mut at = 2;
    loop {
        if b.get(at) != Some(&0xFF) {
            return Err(format!("expected a marker at byte {at}"));
        }
        let marker = *b.get(at + 1).ok_or("cut off")?;
        match marker {
            0xFF => {
                at += 1;
                continue;
            }
            0xD9 => {
                layout.end = at + 2;
                break;
            }
            0x01 | 0xD0..=0xD8 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([
            *b.get(at + 2).ok_or("cut off")?,
            *b.get(at + 3).ok_or("cut off")?,
        ]));
        let seg_end = at + 2 + len;
        if len < 2 || seg_end > b.len() {
            return Err(format!("segment at byte {at} runs past the end"));
        }
        let body = &b[at + 4..seg_end];
        match marker {
            0xE0 if body.starts_with(b"JFIF\0") => {}
            0xEE if body.starts_with(b"Adobe") => {}
            0xE0..=0xEF | 0xFE => {
                if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
                    layout.orientation = exif_orientation(&body[6..]).unwrap_or(1);
                }
                if marker == 0xE2 && body.starts_with(b"ICC_PROFILE\0") && body.len() > 14 {
                    icc.extend_from_slice(&body[14..]);
                }
                layout.metadata.push(at..seg_end);
            }
            0xDB => read_dqt(body, luma_table)?,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                layout.sof = marker;
                layout.components = *body.get(5).ok_or("short frame header")?;
            }
            _ => {}
        }
        at = seg_end;
        if marker == 0xDA {
            at = skip_entropy_data(b, at).ok_or("cut off: no end-of-image marker")?;
        }
    }
    Ok(())
}

/// Copies the file up to EOI without its metadata segments.
pub(crate) fn strip(b: &[u8], layout: &JpegLayout) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout.stripped_len());
    let mut at = 0;
    for r in &layout.metadata {
        out.extend_from_slice(&b[at..r.start]);
        at = r.end;
    }
    out.extend_from_slice(&b[at..layout.end]);
    out
}

/// Returns the index of the next marker after entropy-coded data (skipping stuffed
/// `FF 00`, fill bytes and restart markers).
fn skip_entropy_data(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let i = at + find_ff(b.get(at..)?)?;
        match *b.get(i + 1)? {
            0x00 | 0xD0..=0xD7 => at = i + 2,
            0xFF => at = i + 1,
            _ => return Some(i),
        }
    }
}

/// Index of the first `0xFF` byte, eight bytes at a time (entropy-coded data is most of a
/// JPEG, and `0xFF` is rare in it).
fn find_ff(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        // A byte of !w is zero exactly where w has 0xFF ("has a zero byte" test).
        let x = !w;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        at += 8;
    }
    b[at..].iter().position(|&x| x == 0xFF).map(|i| at + i)
}

fn read_dqt(mut body: &[u8], luma: &mut Option<[u16; 64]>) -> Result<(), String> {
    while let Some((&pq_tq, rest)) = body.split_first() {
        let sixteen = pq_tq >> 4 != 0;
        let size = if sixteen { 128 } else { 64 };
        let values = rest.get(..size).ok_or("short quantisation table")?;
        if pq_tq & 0x0F == 0 {
            let mut t = [0u16; 64];
            for (k, v) in t.iter_mut().enumerate() {
                *v = if sixteen {
                    u16::from_be_bytes([values[2 * k], values[2 * k + 1]])
                } else {
                    u16::from(values[k])
                };
            }
            *luma = Some(t);
        }
        body = &rest[size..];
    }
    Ok(())
}

/// The IJG (libjpeg) luminance table, in the zigzag order tables are stored in.
const STD_LUMA_ZIGZAG: [u16; 64] = [
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37,
    29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81,
    87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
];

/// The IJG table for `quality`, as `jpeg_set_quality` with baseline clamping computes it.
pub(crate) fn ijg_luma_table(quality: u8) -> [u16; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    let mut t = [0u16; 64];
    for (out, &base) in t.iter_mut().zip(STD_LUMA_ZIGZAG.iter()) {
        *out = ((u32::from(base) * scale + 50) / 100).clamp(1, 255) as u16;
    }
    t
}

/// The IJG quality whose luma table is closest (sum of absolute differences) to `table`.
/// Exact for files written by libjpeg-compatible encoders; the nearest fit otherwise.
pub(crate) fn estimate_quality(table: &[u16; 64]) -> u8 {
    (1..=100u8)
        .min_by_key(|&q| {
            ijg_luma_table(q)
                .iter()
                .zip(table.iter())
                .map(|(&a, &b)| u32::from(a.abs_diff(b)))
                .sum::<u32>()
        })
        .unwrap_or(100)
}

/// Orientation (tag 0x0112 in IFD0) from a TIFF blob (`II*\0` or `MM\0*`).
pub(crate) fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let little = match tiff.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let s: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let s: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    for i in 0..count {
        let entry = ifd + 2 + 12 * i;
        if u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3 {
            let value = u16_at(entry + 8)?;
            return (1..=8).contains(&value).then_some(value as u8);
        }
    }
    None
}

/// Whether an ICC profile describes sRGB: its description says so ("sRGB IEC61966-2.1",
/// "sRGB built-in", ...), or its colorants are sRGB's (compact profiles such as "c2ci").
pub(crate) fn is_srgb_profile(icc: &[u8]) -> bool {
    icc.windows(4).any(|w| w == b"sRGB") || has_srgb_colorants(icc)
}

/// sRGB's red, green and blue colorants adapted to D50, as in every sRGB ICC profile.
const SRGB_COLORANTS: [(&[u8; 4], [f64; 3]); 3] = [
    (b"rXYZ", [0.4361, 0.2225, 0.0139]),
    (b"gXYZ", [0.3851, 0.7169, 0.0971]),
    (b"bXYZ", [0.1431, 0.0606, 0.7141]),
];

fn has_srgb_colorants(icc: &[u8]) -> bool {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(icc.get(at..at + 4)?.try_into().ok()?))
    };
    let tag = |sig: &[u8; 4]| -> Option<[f64; 3]> {
        let count = be32(128)? as usize;
        let entry = (0..count.min(256))
            .map(|i| 132 + 12 * i)
            .find(|&at| icc.get(at..at + 4) == Some(sig.as_slice()))?;
        let offset = be32(entry + 4)? as usize;
        if icc.get(offset..offset + 4)? != b"XYZ " {
            return None;
        }
        let fixed = |i: usize| be32(offset + 8 + 4 * i).map(|v| f64::from(v as i32) / 65536.0);
        Some([fixed(0)?, fixed(1)?, fixed(2)?])
    };
    SRGB_COLORANTS.iter().all(|(sig, want)| {
        tag(sig).is_some_and(|got| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.01))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_ff_agrees_with_a_plain_search() {
        let mut b = vec![0x12u8; 40];
        assert_eq!(find_ff(&b), None);
        assert_eq!(find_ff(&[]), None);
        for at in [0, 1, 7, 8, 9, 15, 16, 33, 39] {
            b.fill(0xFE);
            b[at] = 0xFF;
            assert_eq!(find_ff(&b), Some(at), "0xFF at {at}");
            if at + 3 < b.len() {
                b[at + 3] = 0xFF;
                assert_eq!(find_ff(&b), Some(at), "two, first at {at}");
            }
        }
    }

    #[test]
    fn estimates_ijg_quality_exactly() {
        for q in [10u8, 50, 75, 85, 90, 95, 100] {
            assert_eq!(estimate_quality(&ijg_luma_table(q)), q);
        }
    }

    #[test]
    fn orientation_in_both_byte_orders() {
        let mut le = b"II*\0\x08\0\0\0\x01\0".to_vec();
        le.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(exif_orientation(&le), Some(6));
        let mut be = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        be.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0]);
        assert_eq!(exif_orientation(&be), Some(8));
        assert_eq!(exif_orientation(b"II*\0\xff\xff\0\0"), None);
        assert_eq!(exif_orientation(b"XX"), None);
    }

    #[test]
    fn a_cut_file_still_reports_its_orientation() {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE1, 0, 30];
        b.extend_from_slice(b"Exif\0\0MM\0*\0\0\0\x08\0\x01");
        b.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
        b.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
        b.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0, 0x12, 0x34]);
        let layout = parse(&b);
        assert!(!layout.complete);
        assert_eq!(
            (layout.orientation, layout.sof, layout.components),
            (6, 0xC0, 1)
        );
        b.extend_from_slice(&[0xFF, 0xD9, 0, 0, 0]);
        let layout = parse(&b);
        assert!(layout.complete);
        assert_eq!(layout.end, b.len() - 3);
    }

    #[test]
    fn entropy_skip_honours_stuffing_and_restarts() {
        let data = [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xFF, 0xD9];
        assert_eq!(skip_entropy_data(&data, 0), Some(8));
        assert_eq!(skip_entropy_data(&data[..6], 0), None);
    }

    #[test]
    fn srgb_profiles_by_name_or_colorants() {
        let corpus = |name: &str| {
            let b = std::fs::read(format!(
                "{}/../../../shared/corpus/real/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let at = b.windows(12).position(|w| w == b"ICC_PROFILE\0").unwrap();
            let len = usize::from(u16::from_be_bytes([b[at - 2], b[at - 1]]));
            b[at + 14..at - 2 + len].to_vec()
        };
        // "c2ci" is a compact sRGB profile without "sRGB" in its description.
        let compact = corpus("construction4.jpg");
        assert!(!compact.windows(4).any(|w| w == b"sRGB"));
        assert!(is_srgb_profile(&compact));
        assert!(is_srgb_profile(&corpus("resume3.jpg")));
        // Same profile with the red colorant moved (a wide-gamut profile) is foreign.
        let mut wide = compact.clone();
        let at = wide.windows(4).position(|w| w == b"rXYZ").unwrap();
        let offset = u32::from_be_bytes(wide[at + 4..at + 8].try_into().unwrap()) as usize;
        wide[offset + 8..offset + 12].copy_from_slice(&(40_000i32).to_be_bytes());
        assert!(!is_srgb_profile(&wide));
    }
}
