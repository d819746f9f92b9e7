//! Lanczos3 shrinking with fast_image_resize (SIMD picked at runtime), resizer reused.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{U8x3, U8};
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use crate::decode::{Decoded, Layout};
use crate::error::OptimizeError;

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

    /// Resizes gray or RGB pixels to `w`×`h`.
    pub(crate) fn resize(
        &mut self,
        img: &Decoded,
        w: u32,
        h: u32,
    ) -> Result<Decoded, OptimizeError> {
        let err = |e: &dyn std::fmt::Display| OptimizeError::Resize {
            reason: e.to_string(),
        };
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        let mut data = vec![0u8; w as usize * h as usize * img.layout.channels()];
        match img.layout {
            Layout::Rgb => {
                let src = TypedImageRef::<U8x3>::from_buffer(img.width, img.height, &img.data)
                    .map_err(|e| err(&e))?;
                let mut dst =
                    TypedImage::<U8x3>::from_buffer(w, h, &mut data).map_err(|e| err(&e))?;
                self.resizer
                    .resize_typed(&src, &mut dst, &options)
                    .map_err(|e| err(&e))?;
            }
            Layout::Gray => {
                let src = TypedImageRef::<U8>::from_buffer(img.width, img.height, &img.data)
                    .map_err(|e| err(&e))?;
                let mut dst =
                    TypedImage::<U8>::from_buffer(w, h, &mut data).map_err(|e| err(&e))?;
                self.resizer
                    .resize_typed(&src, &mut dst, &options)
                    .map_err(|e| err(&e))?;
            }
            other => {
                return Err(OptimizeError::Resize {
                    reason: format!("{other:?} pixels must be flattened first"),
                })
            }
        }
        Ok(Decoded {
            width: w,
            height: h,
            layout: img.layout,
            data,
        })
    }
}
