//! Logs: a `tracing` subscriber filtered by `RUST_LOG`, as text or JSON lines, on stderr
//! or appended to `--log-file`.
//!
//! Without `RUST_LOG`, nothing is logged to stderr (what the commands print there stays
//! as it is) and a `--log-file` gets warnings. The libraries log with module-path targets
//! (`imggo_batch::pipeline`, `imggo_cache::redis`, ...); an `EnvFilter` target is a plain
//! prefix of those, so `RUST_LOG=imggo=debug` turns on every imggo crate's debug logs.
//! The fields they log hold no API key, webhook secret or Redis password (keys are
//! `Secret`s, Redis URLs are logged through `redact_url`).

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, spans with their fields, message, fields.
    Text,
    /// One JSON object a line, with the current span and the list of spans.
    Json,
}

/// The logging flags, global: they go before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Append logs to this file instead of writing them to stderr. What is logged is set by
    /// RUST_LOG (e.g. `imggo=debug`: one span per input, with its job id); without it,
    /// warnings and errors.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Format of the log lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Installs the subscriber the flags and `RUST_LOG` ask for (none when there is nothing
/// to log). Errors: the log file cannot be opened.
pub fn init(args: &LogArgs) -> Result<(), String> {
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let directives = match (&rust_log, &args.log_file) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => "warn".to_owned(),
        // Stderr belongs to the commands' own messages unless logs are asked for.
        (None, None) => return Ok(()),
    };
    let filter = EnvFilter::builder().parse_lossy(directives);
    match &args.log_file {
        Some(path) => {
            let file = open(path)?;
            install(filter, args.log_format, Mutex::new(file), false);
        }
        None => {
            let ansi = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            install(filter, args.log_format, std::io::stderr, ansi);
        }
    }
    Ok(())
}

/// `path` opened for appending (created if missing).
fn open(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))
}

fn install<W>(filter: EnvFilter, format: LogFormat, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    // Another subscriber already installed (none is, in the binary) leaves that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
