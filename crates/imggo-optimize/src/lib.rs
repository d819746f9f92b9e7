//! # imggo-optimize
//!
//! The image pipeline imggo runs before an upload: sniff the format from the bytes, refuse
//! bombs from the header, decode (JPEG, PNG, WebP, GIF first frame, BMP), apply EXIF
//! orientation, composite transparency onto a background, crop, shrink to a longest side
//! with Lanczos3, and encode a metadata-free baseline JPEG. JPEGs that need nothing but
//! metadata removal are kept byte-wise without decoding.
//!
//! ```
//! use imggo_optimize::{Action, Optimizer, Options};
//!
//! # let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/real/car-plate3.jpg")).unwrap();
//! let mut optimizer = Optimizer::new(Options::default());
//! let out = optimizer.optimize(&bytes).unwrap();
//! assert!(out.out_bytes <= out.in_bytes);
//! println!("{}: {}x{} -> {}x{}", out.action, out.in_width, out.in_height, out.out_width, out.out_height);
//! ```

#![deny(missing_docs, missing_debug_implementations)]

mod decode;
mod encode;
mod error;
mod geometry;
mod jpeg;
mod optimizer;
mod options;
mod png_meta;
mod probe;
mod resize;

pub use error::OptimizeError;
/// The format sniffer, shared with the rest of imggo (from imggo-core).
pub use imggo_core::format::{sniff, ImageFormat};
pub use optimizer::{Action, Optimized, Optimizer};
pub use options::{CropBox, Options};
pub use probe::{probe, ImageInfo};
