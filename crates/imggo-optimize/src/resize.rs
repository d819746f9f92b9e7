//! Lanczos3 shrinking with fast_image_resize (SIMD picked at runtime); one resizer is
//! kept per optimizer so its internal buffers are reused across calls.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::decode::{Decoded, Layout};
use crate::error::OptimizeError;

/// A source rectangle in stored pixel coordinates: x, y, width, height.
pub(crate) type Region = (u32, u32, u32, u32);

/// A reusable resizer.
pub(crate) struct Resize {
    resizer: Resizer,
}

impl Resize {
    pub(crate) fn new() -> Self {
        Resize {
            resizer: Resizer::new(),
        }
    }

    /// Resizes `region` (default: all) of gray or RGB pixels to `w`×`h`.
    pub(crate) fn resize(
        &mut self,
        img: &Decoded,
        region: Option<Region>,
        w: u32,
        h: u32,
    ) -> Result<Decoded, OptimizeError> {
        let err = |e: &dyn std::fmt::Display| OptimizeError::Resize {
            reason: e.to_string(),
        };
        let mut options =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        if let Some((x, y, rw, rh)) = region {
            options = options.crop(f64::from(x), f64::from(y), f64::from(rw), f64::from(rh));
        }
        let pixels = match img.layout {
            Layout::Rgb => PixelType::U8x3,
            Layout::Gray => PixelType::U8,
            other => {
                return Err(OptimizeError::Resize {
                    reason: format!("{other:?} pixels must be flattened first"),
                })
            }
        };
        let mut data = vec![0u8; w as usize * h as usize * img.layout.channels()];
        let src = ImageRef::new(img.width, img.height, &img.data, pixels).map_err(|e| err(&e))?;
        let mut dst = Image::from_slice_u8(w, h, &mut data, pixels).map_err(|e| err(&e))?;
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| err(&e))?;
        Ok(Decoded {
            width: w,
            height: h,
            data,
            ..*img
        })
    }
}
