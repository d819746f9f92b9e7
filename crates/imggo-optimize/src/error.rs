//! The optimizer's one error type.

use imggo_core::format::ImageFormat;

use crate::options::CropBox;

/// Why an image could not be optimized. The optimizer never sees file names; callers
/// prefix the input's name (`path: reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimizeError {
    /// The input has zero bytes.
    #[error("empty input (0 bytes)")]
    Empty,
    /// The bytes are not a supported image (unknown magic bytes, or a variant of a known
    /// format that is not handled, such as RLE-compressed BMP).
    #[error("unsupported image: {reason}")]
    Unsupported {
        /// What was found.
        reason: String,
    },
    /// The header announces more pixels than [`Options::max_pixels`](crate::Options::max_pixels).
    #[error("image is {width}x{height} ({pixels} pixels), over the limit of {limit} pixels")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// `width * height`.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The input is larger than [`Options::max_input_bytes`](crate::Options::max_input_bytes).
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The image is damaged, cut off or otherwise undecodable.
    #[error("cannot decode {format}: {reason}")]
    Decode {
        /// The sniffed format.
        format: ImageFormat,
        /// The decoder's reason.
        reason: String,
    },
    /// The crop box does not lie inside the (oriented) image.
    #[error("crop box {crop} lies outside the {width}x{height} image")]
    CropOutside {
        /// The requested box.
        crop: CropBox,
        /// Oriented width.
        width: u32,
        /// Oriented height.
        height: u32,
    },
    /// Resizing failed (should not happen with valid dimensions).
    #[error("cannot resize: {reason}")]
    Resize {
        /// The resizer's reason.
        reason: String,
    },
    /// JPEG encoding failed.
    #[error("cannot encode JPEG: {reason}")]
    Encode {
        /// The encoder's reason.
        reason: String,
    },
    /// No quality and size down to the smallest allowed still fit under `max_bytes`.
    #[error("cannot fit the output under {max_bytes} bytes (smallest attempt: {smallest} bytes)")]
    CannotFit {
        /// The configured ceiling.
        max_bytes: usize,
        /// Size of the smallest encoding tried.
        smallest: usize,
    },
    /// The options are inconsistent (for example `max_side` 0 or quality 0).
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
}

impl OptimizeError {
    pub(crate) fn decode(format: ImageFormat, reason: impl std::fmt::Display) -> Self {
        OptimizeError::Decode {
            format,
            reason: reason.to_string(),
        }
    }
}
