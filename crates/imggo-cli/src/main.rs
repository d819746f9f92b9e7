//! `imggo`: push large batches of images through the ImgGo API, fast and dependably.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses flags and
//! dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "imggo", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success, 1 some inputs failed, 2 usage or configuration error, 3 an alert fired."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the content hash and idempotency key imggo derives for files.
    Hash(cmd::hash::Args),
    /// Run a local ImgGo API server with seeded fault injection, for tests and benchmarks.
    Emulator(Box<cmd::emulator::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hash(args) => cmd::hash::run(args),
        Command::Emulator(args) => cmd::emulator::run(*args),
    }
}
