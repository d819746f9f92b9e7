//! `imggo`: push large batches of images through the ImgGo API, fast and dependably.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses flags and
//! dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod logging;
mod synth;

/// Exit code for usage and configuration errors (the library's, so both agree).
pub use imggo::report::EXIT_USAGE;

#[derive(Debug, Parser)]
#[command(name = "imggo", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success, 1 some inputs failed, 2 usage or configuration error, 3 an alert fired."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: logging::LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every input through a pattern: optimise, upload, wait, cache (the main job).
    Run(Box<cmd::run::Args>),
    /// The whole pipeline on the embedded emulator with a generated corpus (no network).
    Demo(cmd::demo::Args),
    /// Draw the HTML report (charts, no scripts, no network) of an existing results file.
    Report(cmd::report::Args),
    /// Sweep concurrency levels and recommend the one at the throughput knee.
    Tune(cmd::tune::Args),
    /// Patterns: list, get, create, update, delete.
    Patterns(cmd::api::PatternsArgs),
    /// Jobs: get one (JSON or another result format).
    Jobs(cmd::api::JobsArgs),
    /// Webhook registrations: list, create, delete.
    Webhooks(cmd::api::WebhooksArgs),
    /// Receive webhook deliveries and print the verified events.
    Webhook(cmd::api::WebhookArgs),
    /// The result cache: stats, clear a pattern.
    Cache(cmd::cache::Args),
    /// Show the content hash and idempotency key imggo derives for files.
    Hash(cmd::hash::Args),
    /// Optimize images locally (orient, flatten, shrink, re-encode) and write them to a directory.
    Optimize(cmd::optimize::Args),
    /// Run a local ImgGo API server with seeded fault injection, for tests and benchmarks.
    Emulator(Box<cmd::emulator::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.log) {
        return cmd::common::usage_error(&e);
    }
    match cli.command {
        Command::Run(args) => cmd::run::run(*args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Tune(args) => cmd::tune::run(args),
        Command::Patterns(args) => cmd::api::patterns(args),
        Command::Jobs(args) => cmd::api::jobs(args),
        Command::Webhooks(args) => cmd::api::webhooks(args),
        Command::Webhook(args) => cmd::api::webhook(args),
        Command::Cache(args) => cmd::cache::run(args),
        Command::Hash(args) => cmd::hash::run(args),
        Command::Optimize(args) => cmd::optimize::run(args),
        Command::Emulator(args) => cmd::emulator::run(*args),
    }
}
