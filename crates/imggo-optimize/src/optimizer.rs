//! The pipeline: guards, decode, orient, flatten, crop, resize, encode.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decode::{self, Decoded, Layout};
use crate::encode::Encoder;
use crate::error::OptimizeError;
use crate::format::ImageFormat;
use crate::geometry;
use crate::options::Options;
use crate::probe::probe;
use crate::resize::Resize;

/// What the optimizer did to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The input is returned unchanged.
    Passthrough,
    /// The input JPEG is kept, with metadata segments removed byte-wise (no re-encode).
    Stripped,
    /// A JPEG was decoded and re-encoded at the same size (orientation may be applied).
    Recompressed,
    /// The image was shrunk (or cropped) and encoded as JPEG.
    Resized,
    /// A non-JPEG input was encoded as JPEG at the same size.
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
    /// Format of the output: JPEG, except for a kept non-JPEG input ([`Action::Passthrough`]).
    pub out_format: ImageFormat,
    /// Stored width of the input.
    pub in_width: u32,
    /// Stored height of the input.
    pub in_height: u32,
    /// Width of the output.
    pub out_width: u32,
    /// Height of the output.
    pub out_height: u32,
    /// Input size in bytes.
    pub in_bytes: usize,
    /// Output size in bytes (`bytes.len()`).
    pub out_bytes: usize,
}

/// Turns input images into upload-ready ones. Holds the resizer and scratch buffers, so
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
        let opts = &self.options;
        opts.validate()?;
        if input.is_empty() {
            return Err(OptimizeError::Empty);
        }
        if input.len() > opts.max_input_bytes {
            return Err(OptimizeError::TooLarge {
                size: input.len(),
                limit: opts.max_input_bytes,
            });
        }
        let info = probe(input)?;
        if info.pixels() > opts.max_pixels {
            return Err(OptimizeError::TooManyPixels {
                width: info.width,
                height: info.height,
                pixels: info.pixels(),
                limit: opts.max_pixels,
            });
        }
        let decoded = match info.format {
            ImageFormat::Jpeg => decode::jpeg(input)?,
            ImageFormat::Png => decode::png(input)?,
            ImageFormat::Webp => decode::webp(input)?,
            ImageFormat::Gif | ImageFormat::Bmp => {
                return Err(OptimizeError::Unsupported {
                    reason: format!("{} decoding is not available yet", info.format),
                })
            }
        };
        let img = geometry::flatten(decoded, opts.background);
        let (out_w, out_h) = geometry::thumbnail_size(img.width, img.height, opts.max_side)
            .unwrap_or((img.width, img.height));
        let resized = out_w != img.width || out_h != img.height;
        let img = if resized {
            self.resize.resize(&img, out_w, out_h)?
        } else {
            img
        };
        let bytes = self.encoder.encode(&img, opts.quality)?;
        let action = if resized {
            Action::Resized
        } else if info.format == ImageFormat::Jpeg {
            Action::Recompressed
        } else {
            Action::Converted
        };
        Ok(Optimized {
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
        })
    }
}

impl Decoded {
    pub(crate) fn is_gray(&self) -> bool {
        self.layout == Layout::Gray
    }
}
