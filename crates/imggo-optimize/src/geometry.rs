//! Output dimensions (Pillow's `Image.thumbnail` rounding) and the pixel operations that
//! need no resampling: alpha compositing, EXIF orientation.

use crate::decode::{Decoded, Layout};

/// The size Pillow's `Image.thumbnail((max_side, max_side))` produces for a `w`×`h`
/// image, or `None` when it fits already (Pillow then leaves it untouched).
///
/// Mirrors `preserve_aspect_ratio` in Pillow's `Image.thumbnail`: the scaled side is
/// floor or ceil of the exact value, whichever keeps the aspect ratio closer (floor on a tie),
/// and at least 1.
pub(crate) fn thumbnail_size(w: u32, h: u32, max_side: u32) -> Option<(u32, u32)> {
    let (x, y) = (f64::from(max_side), f64::from(max_side));
    if max_side >= w && max_side >= h {
        return None;
    }
    let aspect = f64::from(w) / f64::from(h);
    let round_aspect = |number: f64, key: &dyn Fn(f64) -> f64| -> u32 {
        let (lo, hi) = (number.floor(), number.ceil());
        // Python's min() keeps the first of equal keys.
        let best = if key(hi) < key(lo) { hi } else { lo };
        (best as u32).max(1)
    };
    if x / y >= aspect {
        let nx = round_aspect(y * aspect, &|n| (aspect - n / y).abs());
        Some((nx, max_side))
    } else {
        let ny = round_aspect(x / aspect, &|n| {
            if n == 0.0 {
                0.0
            } else {
                (aspect - x / n).abs()
            }
        });
        Some((max_side, ny))
    }
}

/// Composites alpha onto `background`, returning gray or RGB pixels. Gray stays gray when
/// the background is a gray level.
pub(crate) fn flatten(img: Decoded, background: [u8; 3]) -> Decoded {
    let [br, bg, bb] = background;
    let blend = |c: u8, a: u8, b: u8| -> u8 {
        let (c, a, b) = (u32::from(c), u32::from(a), u32::from(b));
        ((c * a + b * (255 - a) + 127) / 255) as u8
    };
    let gray_bg = br == bg && bg == bb;
    let (layout, data) = match img.layout {
        Layout::Gray | Layout::Rgb => return img,
        Layout::GrayAlpha if gray_bg => (
            Layout::Gray,
            img.data
                .chunks_exact(2)
                .map(|p| blend(p[0], p[1], br))
                .collect(),
        ),
        Layout::GrayAlpha => {
            let mut out = Vec::with_capacity(img.data.len() / 2 * 3);
            for p in img.data.chunks_exact(2) {
                out.extend_from_slice(&[
                    blend(p[0], p[1], br),
                    blend(p[0], p[1], bg),
                    blend(p[0], p[1], bb),
                ]);
            }
            (Layout::Rgb, out)
        }
        Layout::Rgba => {
            let mut out = Vec::with_capacity(img.data.len() / 4 * 3);
            for p in img.data.chunks_exact(4) {
                let a = p[3];
                if a == 255 {
                    out.extend_from_slice(&p[..3]);
                } else {
                    out.extend_from_slice(&[
                        blend(p[0], a, br),
                        blend(p[1], a, bg),
                        blend(p[2], a, bb),
                    ]);
                }
            }
            (Layout::Rgb, out)
        }
    };
    Decoded {
        width: img.width,
        height: img.height,
        layout,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_matches_pillow_examples() {
        // Values computed with Pillow 11 `Image.new("RGB", (w, h)).thumbnail((2048, 2048))`.
        assert_eq!(thumbnail_size(2448, 3264, 2048), Some((1536, 2048)));
        assert_eq!(thumbnail_size(3264, 2448, 2048), Some((2048, 1536)));
        assert_eq!(thumbnail_size(2048, 2048, 2048), None);
        assert_eq!(thumbnail_size(2049, 1, 2048), Some((2048, 1)));
        assert_eq!(thumbnail_size(1, 5000, 2048), Some((1, 2048)));
        assert_eq!(thumbnail_size(2000, 1000, 2048), None);
    }

    #[test]
    fn flatten_is_exact() {
        let img = Decoded {
            width: 2,
            height: 1,
            layout: Layout::Rgba,
            data: vec![255, 0, 0, 0, 10, 20, 30, 128],
        };
        let out = flatten(img, [255, 255, 255]);
        assert_eq!(out.layout, Layout::Rgb);
        // (10*128 + 255*127 + 127) / 255 = 132, (20*128+255*127+127)/255 = 137, ...
        assert_eq!(out.data, vec![255, 255, 255, 132, 137, 142]);
    }
}
