//! The pipeline: guards, decode, orient, flatten, crop, resize, encode, size ceiling.

use std::fmt;

use serde::{Deserialize, Serialize};

use imggo_core::format::ImageFormat;

use crate::decode::{self, Decoded};
use crate::encode::Encoder;
use crate::error::OptimizeError;
use crate::geometry;
use crate::jpeg::{self, JpegLayout};
use crate::options::Options;
use crate::png_meta;
use crate::probe::{probe, ImageInfo};
use crate::resize::{Region, Resize};

/// What the optimizer did to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The input is returned byte for byte.
    Passthrough,
    /// The input is kept with its metadata (EXIF, XMP, ICC, comments, text chunks) removed
    /// byte-wise; the compressed image data is untouched.
    Stripped,
    /// A JPEG was decoded and re-encoded at the same size (orientation may be applied).
    Recompressed,
    /// The image was shrunk or cropped, then encoded as JPEG.
    Resized,
    /// A non-JPEG input was encoded as JPEG at the same size (orientation may be applied).
    Converted,
}

impl Action {
    /// The snake_case name, as in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Passthrough => "passthrough",
            Action::Stripped => "stripped",
            Action::Recompressed => "recompressed",
            Action::Resized => "resized",
            Action::Converted => "converted",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of [`Optimizer::optimize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Optimized {
    /// The output image.
    pub bytes: Vec<u8>,
    /// What was done.
    pub action: Action,
    /// Format of the input.
    pub in_format: ImageFormat,
    /// Format of the output: JPEG, or PNG when a PNG input was kept (never-larger rule).
    pub out_format: ImageFormat,
    /// Stored width of the input.
    pub in_width: u32,
    /// Stored height of the input.
    pub in_height: u32,
    /// Width of the output (after orientation, crop and resize).
    pub out_width: u32,
    /// Height of the output.
    pub out_height: u32,
    /// Input size in bytes.
    pub in_bytes: usize,
    /// Output size in bytes (`bytes.len()`).
    pub out_bytes: usize,
    /// The input carried an ICC profile that is not sRGB. It is not in the output and the
    /// colours were not converted, so they may look slightly different.
    pub foreign_icc: bool,
}

/// Turns input images into upload-ready ones. Holds the resizer and encoder state, so
/// keep one per worker thread and reuse it; creating one is cheap and there is no global
/// state.
pub struct Optimizer {
    options: Options,
    resize: Resize,
    encoder: Encoder,
}

impl fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Optimizer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Geometry planned from the header, before any pixel is decoded.
struct Plan {
    orientation: u8,
    /// Crop in stored coordinates.
    region: Option<Region>,
    /// Output size in stored orientation (before orientation is applied).
    stored_out: (u32, u32),
    /// Whether the output differs from the input in orientation, crop or size.
    geometric: bool,
    shrinks: bool,
}

/// Lowest quality the size ceiling tries before it shrinks the image.
const MIN_CEILING_QUALITY: u8 = 40;
/// Quality used while shrinking to fit the size ceiling.
const SHRINK_QUALITY: u8 = 70;
/// Shrinking to fit stops when the longest side would drop below this.
const MIN_CEILING_SIDE: u32 = 256;

impl Optimizer {
    /// An optimizer with these options.
    pub fn new(options: Options) -> Self {
        Optimizer {
            options,
            resize: Resize::new(),
            encoder: Encoder::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Optimizes one image held in memory.
    ///
    /// # Errors
    /// A typed [`OptimizeError`] for empty, oversized, unsupported or undecodable input, a
    /// crop box outside the image, or an output that cannot fit `max_bytes`.
    pub fn optimize(&mut self, input: &[u8]) -> Result<Optimized, OptimizeError> {
        self.options.validate()?;
        if input.is_empty() {
            return Err(OptimizeError::Empty);
        }
        if input.len() > self.options.max_input_bytes {
            return Err(OptimizeError::TooLarge {
                size: input.len(),
                limit: self.options.max_input_bytes,
            });
        }
        let info = probe(input)?;
        if info.pixels() > self.options.max_pixels {
            return Err(OptimizeError::TooManyPixels {
                width: info.width,
                height: info.height,
                pixels: info.pixels(),
                limit: self.options.max_pixels,
            });
        }
        let layout = match info.format {
            ImageFormat::Jpeg => Some(jpeg::parse(input)),
            _ => None,
        };
        let plan = self.plan(&info, layout.as_ref())?;
        if let Some(kept) = self.lossless(input, &info, layout.as_ref(), &plan) {
            return Ok(kept);
        }

        let decoded = match info.format {
            ImageFormat::Jpeg => decode::jpeg(input)?,
            ImageFormat::Png => decode::png(input)?,
            ImageFormat::Webp => decode::webp(input)?,
            ImageFormat::Gif => decode::gif(input)?,
            ImageFormat::Bmp => decode::bmp(input)?,
        };
        let foreign_icc = decoded.foreign_icc || layout.as_ref().is_some_and(|l| l.foreign_icc);
        let img = geometry::flatten(decoded, self.options.background);
        let (sw, sh) = plan.stored_out;
        let img = match plan.region {
            _ if plan.shrinks => self.resize.resize(&img, plan.region, sw, sh)?,
            Some((x, y, w, h)) => geometry::crop(&img, x, y, w, h),
            None => img,
        };
        let img = geometry::orient(img, plan.orientation);
        // Re-encoding a JPEG above its own quality only spends bytes on its artifacts.
        let quality = match layout.as_ref().and_then(|l| l.quality) {
            Some(q) => q.min(self.options.quality),
            None => self.options.quality,
        };
        let (bytes, out_w, out_h, shrunk_to_fit) = self.encode_to_fit(&img, quality)?;

        let action = if plan.region.is_some() || plan.shrinks || shrunk_to_fit {
            Action::Resized
        } else if info.format == ImageFormat::Jpeg {
            Action::Recompressed
        } else {
            Action::Converted
        };
        let mut out = Optimized {
            out_bytes: bytes.len(),
            bytes,
            action,
            in_format: info.format,
            out_format: ImageFormat::Jpeg,
            in_width: info.width,
            in_height: info.height,
            out_width: out_w,
            out_height: out_h,
            in_bytes: input.len(),
            foreign_icc,
        };
        if !plan.geometric && self.options.never_larger {
            if let Some(kept) = self.keep_input(input, &info, layout.as_ref(), out.out_bytes) {
                out = Optimized {
                    foreign_icc,
                    ..kept
                };
            }
        }
        Ok(out)
    }

    /// Orientation, crop and output size, from headers only.
    fn plan(&self, info: &ImageInfo, layout: Option<&JpegLayout>) -> Result<Plan, OptimizeError> {
        let orientation = layout.map_or(1, |l| l.orientation);
        let swaps = geometry::swaps_axes(orientation);
        let (ow, oh) = if swaps {
            (info.height, info.width)
        } else {
            (info.width, info.height)
        };
        let (region, (rw, rh)) = match self.options.crop {
            None => (None, (ow, oh)),
            Some(c) => {
                let fits = u64::from(c.x) + u64::from(c.width) <= u64::from(ow)
                    && u64::from(c.y) + u64::from(c.height) <= u64::from(oh);
                if !fits {
                    return Err(OptimizeError::CropOutside {
                        crop: c,
                        width: ow,
                        height: oh,
                    });
                }
                let a = geometry::oriented_to_stored(orientation, c.x, c.y, ow, oh);
                let b = geometry::oriented_to_stored(
                    orientation,
                    c.x + c.width - 1,
                    c.y + c.height - 1,
                    ow,
                    oh,
                );
                let (x, y) = (a.0.min(b.0), a.1.min(b.1));
                let (w, h) = (a.0.abs_diff(b.0) + 1, a.1.abs_diff(b.1) + 1);
                (Some((x, y, w, h)), (c.width, c.height))
            }
        };
        let target = geometry::thumbnail_size(rw, rh, self.options.max_side);
        let (tw, th) = target.unwrap_or((rw, rh));
        Ok(Plan {
            orientation,
            region,
            stored_out: if swaps { (th, tw) } else { (tw, th) },
            geometric: orientation != 1 || region.is_some() || target.is_some(),
            shrinks: target.is_some(),
        })
    }

    /// The lossless fast path: a JPEG that needs no geometric change, whose quality is at
    /// most the target and that fits the ceiling is kept with its metadata stripped.
    fn lossless(
        &self,
        input: &[u8],
        info: &ImageInfo,
        layout: Option<&JpegLayout>,
        plan: &Plan,
    ) -> Option<Optimized> {
        let layout = layout?;
        let quality_ok = layout.quality.is_some_and(|q| q <= self.options.quality);
        if !self.options.lossless_fast_path || plan.geometric || !quality_ok {
            return None;
        }
        self.keep_jpeg(input, info, layout)
    }

    /// The stripped JPEG, if it is safe to send as is and fits the ceiling.
    fn keep_jpeg(&self, input: &[u8], info: &ImageInfo, layout: &JpegLayout) -> Option<Optimized> {
        let usable = layout.complete
            && layout.is_common_frame()
            && matches!(layout.components, 1 | 3)
            && !layout.foreign_icc
            && layout.stripped_len() <= self.options.max_bytes;
        if !usable {
            return None;
        }
        let bytes = jpeg::strip(input, layout);
        Some(kept(input, info, bytes, ImageFormat::Jpeg))
    }

    /// The never-larger rule: the (stripped) input when it is no larger than `encoded_len`.
    fn keep_input(
        &self,
        input: &[u8],
        info: &ImageInfo,
        layout: Option<&JpegLayout>,
        encoded_len: usize,
    ) -> Option<Optimized> {
        match info.format {
            ImageFormat::Jpeg => {
                let layout = layout?;
                (layout.complete && layout.stripped_len() <= encoded_len)
                    .then(|| self.keep_jpeg(input, info, layout))
                    .flatten()
            }
            // A transparent PNG must be flattened onto the background, so it is not kept.
            ImageFormat::Png if !png_meta::has_transparency(input) => {
                let bytes = png_meta::strip(input)?;
                (bytes.len() <= encoded_len && bytes.len() <= self.options.max_bytes)
                    .then(|| kept(input, info, bytes, ImageFormat::Png))
            }
            _ => None,
        }
    }

    /// Encodes at `quality`; over `max_bytes`, lowers the quality in steps of 10 down to
    /// 40, then shrinks by 3/4 per step at quality 70 (or `quality` if lower).
    /// Returns the bytes, the output size and whether it had to shrink.
    fn encode_to_fit(
        &mut self,
        img: &Decoded,
        start_quality: u8,
    ) -> Result<(Vec<u8>, u32, u32, bool), OptimizeError> {
        let max = self.options.max_bytes;
        let mut quality = start_quality;
        let mut bytes = self.encoder.encode(img, quality)?;
        while bytes.len() > max && quality > MIN_CEILING_QUALITY {
            quality = quality.saturating_sub(10).max(MIN_CEILING_QUALITY);
            bytes = self.encoder.encode(img, quality)?;
        }
        if bytes.len() <= max {
            return Ok((bytes, img.width, img.height, false));
        }
        let quality = start_quality.min(SHRINK_QUALITY);
        let (mut w, mut h) = (img.width, img.height);
        while bytes.len() > max {
            (w, h) = ((w * 3 / 4).max(1), (h * 3 / 4).max(1));
            if w.max(h) < MIN_CEILING_SIDE {
                return Err(OptimizeError::CannotFit {
                    max_bytes: max,
                    smallest: bytes.len(),
                });
            }
            let small = self.resize.resize(img, None, w, h)?;
            bytes = self.encoder.encode(&small, quality)?;
        }
        Ok((bytes, w, h, true))
    }
}

fn kept(input: &[u8], info: &ImageInfo, bytes: Vec<u8>, format: ImageFormat) -> Optimized {
    let action = if bytes.as_slice() == input {
        Action::Passthrough
    } else {
        Action::Stripped
    };
    Optimized {
        out_bytes: bytes.len(),
        bytes,
        action,
        in_format: info.format,
        out_format: format,
        in_width: info.width,
        in_height: info.height,
        out_width: info.width,
        out_height: info.height,
        in_bytes: input.len(),
        foreign_icc: false,
    }
}
