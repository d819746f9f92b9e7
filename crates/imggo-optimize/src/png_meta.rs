//! Byte-level PNG metadata removal, for a PNG kept as is by the never-larger rule.

/// Chunks kept: everything needed to render the image the same way. Text, EXIF, time,
/// ICC and animation chunks are dropped.
const KEEP: [&[u8; 4]; 9] = [
    b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"sBIT",
];

/// The PNG without ancillary metadata chunks, up to IEND, or `None` if the chunk
/// structure is broken.
pub(crate) fn strip(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(b.get(..8)?);
    let mut at = 8;
    loop {
        let len = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        let kind = b.get(at + 4..at + 8)?;
        let end = at.checked_add(12)?.checked_add(len)?;
        let chunk = b.get(at..end)?;
        if KEEP.iter().any(|k| k.as_slice() == kind) {
            out.extend_from_slice(chunk);
        }
        if kind == b"IEND" {
            return Some(out);
        }
        at = end;
    }
}

/// Whether the PNG can carry transparency: a colour type with alpha, or a tRNS chunk.
pub(crate) fn has_transparency(b: &[u8]) -> bool {
    // tRNS must come before the first IDAT.
    let header_end = b.windows(4).position(|w| w == b"IDAT").unwrap_or(b.len());
    matches!(b.get(25), Some(4 | 6)) || b[..header_end].windows(4).any(|w| w == b"tRNS")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0, 0, 0, 0]);
        c
    }

    #[test]
    fn drops_text_and_exif_keeps_image_chunks() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (b"IHDR", &[1u8; 13][..]),
            (b"tEXt", b"GPS secret"),
            (b"eXIf", b"MM\0*"),
            (b"IDAT", b"pixels"),
            (b"IEND", b""),
        ] {
            png.extend(chunk(kind, data));
        }
        png.extend_from_slice(b"trailing");
        let out = strip(&png).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("secret") && !text.contains("eXIf"));
        assert!(text.contains("IDATpixels") && out.ends_with(b"IEND\0\0\0\0"));
        assert_eq!(strip(&png[..30]), None);
    }
}
