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
            let mut out = vec![0u8; img.data.len() / 4 * 3];
            flatten_rgba(&img.data, &mut out, background);
            (Layout::Rgb, out)
        }
    };
    Decoded {
        layout,
        data,
        ..img
    }
}

/// RGBA onto `background` into RGB, with the same formula as [`flatten`] (exact for
/// a = 255 too, so opaque pixels need no branch and the loop vectorises).
fn flatten_rgba(rgba: &[u8], rgb: &mut [u8], background: [u8; 3]) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { flatten_rgba_avx2(rgba, rgb, background) };
        return;
    }
    flatten_rgba_plain(rgba, rgb, background);
}

/// [`flatten_rgba_plain`] compiled for AVX2.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
fn flatten_rgba_avx2(rgba: &[u8], rgb: &mut [u8], background: [u8; 3]) {
    flatten_rgba_plain(rgba, rgb, background);
}

#[inline(always)]
fn flatten_rgba_plain(rgba: &[u8], rgb: &mut [u8], background: [u8; 3]) {
    let [br, bg, bb] = background.map(u32::from);
    for (o, p) in rgb.chunks_exact_mut(3).zip(rgba.chunks_exact(4)) {
        let a = u32::from(p[3]);
        let na = 255 - a;
        o[0] = ((u32::from(p[0]) * a + br * na + 127) / 255) as u8;
        o[1] = ((u32::from(p[1]) * a + bg * na + 127) / 255) as u8;
        o[2] = ((u32::from(p[2]) * a + bb * na + 127) / 255) as u8;
    }
}

/// Whether EXIF orientation `o` swaps width and height (5–8).
pub(crate) fn swaps_axes(o: u8) -> bool {
    (5..=8).contains(&o)
}

/// Maps a point of the oriented image back to the stored image: for an oriented pixel
/// (`x`, `y`) of an oriented image `ow`×`oh`, the stored pixel it comes from.
pub(crate) fn oriented_to_stored(o: u8, x: u32, y: u32, ow: u32, oh: u32) -> (u32, u32) {
    match o {
        2 => (ow - 1 - x, y),
        3 => (ow - 1 - x, oh - 1 - y),
        4 => (x, oh - 1 - y),
        5 => (y, x),
        6 => (y, ow - 1 - x),
        7 => (oh - 1 - y, ow - 1 - x),
        8 => (oh - 1 - y, x),
        _ => (x, y),
    }
}

/// Applies EXIF orientation `o` (1–8): the stored pixels become the displayed ones.
pub(crate) fn orient(img: Decoded, o: u8) -> Decoded {
    if !(2..=8).contains(&o) {
        return img;
    }
    let (width, height, ch) = (img.width, img.height, img.layout.channels());
    let (ow, oh) = if swaps_axes(o) {
        (height, width)
    } else {
        (width, height)
    };
    let mut data = vec![0u8; img.data.len()];
    let stride = width as usize * ch;
    for (y, row) in data.chunks_exact_mut(ow as usize * ch).enumerate() {
        for (x, px) in row.chunks_exact_mut(ch).enumerate() {
            let (sx, sy) = oriented_to_stored(o, x as u32, y as u32, ow, oh);
            let src = sy as usize * stride + sx as usize * ch;
            px.copy_from_slice(&img.data[src..src + ch]);
        }
    }
    Decoded {
        width: ow,
        height: oh,
        data,
        ..img
    }
}

/// Copies the `w`×`h` rectangle at (`x`, `y`) out of `img`; the caller checked bounds.
pub(crate) fn crop(img: &Decoded, x: u32, y: u32, w: u32, h: u32) -> Decoded {
    let ch = img.layout.channels();
    let stride = img.width as usize * ch;
    let mut data = Vec::with_capacity(w as usize * h as usize * ch);
    for row in y..y + h {
        let start = row as usize * stride + x as usize * ch;
        data.extend_from_slice(&img.data[start..start + w as usize * ch]);
    }
    Decoded {
        width: w,
        height: h,
        data,
        ..*img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_matches_pillow() {
        // (w, h, max_side, Pillow's w, Pillow's h) from Pillow 13.0.0:
        // `im = Image.new("1", (w, h)); im.thumbnail((m, m)); im.size`.
        let cases: [(u32, u32, u32, u32, u32); 48] = [
            (2448, 3264, 2048, 1536, 2048),
            (2336, 4160, 2048, 1150, 2048),
            (1920, 2560, 2048, 1536, 2048),
            (2524, 2833, 2048, 1825, 2048),
            (2479, 3506, 2048, 1448, 2048),
            (3264, 2448, 2048, 2048, 1536),
            (4160, 2336, 2048, 2048, 1150),
            (2049, 2049, 2048, 2048, 2048),
            (2049, 1, 2048, 2048, 1),
            (1, 2049, 2048, 1, 2048),
            (3000, 7, 2048, 2048, 5),
            (7, 3000, 2048, 5, 2048),
            (4097, 4096, 2048, 2048, 2048),
            (10000, 3, 1024, 1024, 1),
            (3, 10000, 1024, 1, 1024),
            (1001, 999, 1000, 1000, 998),
            (999, 1001, 1000, 998, 1000),
            (5000, 3333, 1600, 1600, 1067),
            (1234, 5678, 100, 22, 100),
            (65535, 65535, 2048, 2048, 2048),
            (60000, 1, 2048, 2048, 1),
            (2048, 2049, 2048, 2047, 2048),
            (3, 2, 1, 1, 1),
            (1500, 1000, 999, 999, 666),
            (9365, 2472, 1600, 1600, 422),
            (2840, 1187, 2048, 2048, 856),
            (4543, 11983, 3000, 1137, 3000),
            (3951, 16628, 3000, 713, 3000),
            (1332, 705, 1024, 1024, 542),
            (8900, 1145, 2048, 2048, 263),
            (1768, 4515, 1024, 401, 1024),
            (3017, 9265, 2048, 667, 2048),
            (1427, 2584, 512, 283, 512),
            (4014, 12999, 3000, 926, 3000),
            (1418, 191, 512, 512, 69),
            (17066, 4364, 3000, 3000, 767),
            (5034, 2364, 1600, 1600, 751),
            (4930, 10109, 3000, 1463, 3000),
            (16372, 5923, 3000, 3000, 1085),
            (2895, 2340, 512, 512, 414),
            (4075, 799, 1024, 1024, 201),
            (14668, 2058, 3000, 3000, 421),
            (3977, 6749, 3000, 1768, 3000),
            (10760, 7006, 2048, 2048, 1333),
            (5415, 9594, 1600, 903, 1600),
            (7973, 4912, 2048, 2048, 1262),
            (2497, 5727, 1024, 446, 1024),
            (1695, 4706, 1024, 369, 1024),
        ];
        for (w, h, m, pw, ph) in cases {
            assert_eq!(thumbnail_size(w, h, m), Some((pw, ph)), "{w}x{h} max {m}");
        }
        // Pillow leaves images that fit alone.
        assert_eq!(thumbnail_size(2048, 2048, 2048), None);
        assert_eq!(thumbnail_size(2000, 1000, 2048), None);
        assert_eq!(thumbnail_size(200, 137, 2048), None);
    }

    #[test]
    fn flatten_is_exact() {
        let img = Decoded::new(2, 1, Layout::Rgba, vec![255, 0, 0, 0, 10, 20, 30, 128]);
        let out = flatten(img, [255, 255, 255]);
        assert_eq!(out.layout, Layout::Rgb);
        // (10*128 + 255*127 + 127) / 255 = 132, (20*128+255*127+127)/255 = 137, ...
        assert_eq!(out.data, vec![255, 255, 255, 132, 137, 142]);
    }

    #[test]
    fn rgba_flattening_matches_the_per_pixel_formula() {
        // Every alpha and many colours, on three backgrounds, through the dispatching path
        // (AVX2 here when available) and the portable one.
        let rgba: Vec<u8> = (0..256 * 37)
            .flat_map(|i: u32| [(i * 7) as u8, (i / 3) as u8, (i * 131) as u8, i as u8])
            .collect();
        for bg in [[255, 255, 255], [255, 0, 0], [3, 200, 77]] {
            let want: Vec<u8> = rgba
                .chunks_exact(4)
                .flat_map(|p| {
                    let blend = |c: u8, b: u8| {
                        let (c, a, b) = (u32::from(c), u32::from(p[3]), u32::from(b));
                        ((c * a + b * (255 - a) + 127) / 255) as u8
                    };
                    [blend(p[0], bg[0]), blend(p[1], bg[1]), blend(p[2], bg[2])]
                })
                .collect();
            let mut got = vec![0; want.len()];
            flatten_rgba(&rgba, &mut got, bg);
            assert!(got == want, "background {bg:?}");
            flatten_rgba_plain(&rgba, &mut got, bg);
            assert!(got == want, "background {bg:?}, portable");
            // Opaque pixels are copied unchanged.
            assert_eq!(&got[255 * 3..256 * 3], &rgba[255 * 4..255 * 4 + 3]);
        }
    }

    #[test]
    fn orientation_maps_corners() {
        // 2x1 gray image: stored pixels A=1, B=2.
        let img = || Decoded::new(2, 1, Layout::Gray, vec![1, 2]);
        let dims = |d: &Decoded| (d.width, d.height);
        assert_eq!(orient(img(), 1).data, vec![1, 2]);
        assert_eq!(orient(img(), 2).data, vec![2, 1]);
        assert_eq!(orient(img(), 3).data, vec![2, 1]);
        assert_eq!(orient(img(), 4).data, vec![1, 2]);
        let o6 = orient(img(), 6);
        assert_eq!((dims(&o6), o6.data), ((1, 2), vec![1, 2]));
        let o8 = orient(img(), 8);
        assert_eq!((dims(&o8), o8.data), ((1, 2), vec![2, 1]));
    }
}
