//! One module per subcommand.

pub mod api;
pub mod cache;
pub mod common;
pub mod demo;
pub mod emulator;
pub mod hash;
pub mod optimize;
pub mod progress;
pub mod report;
pub mod run;
pub mod tune;
