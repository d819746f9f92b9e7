//! `imggo cache stats|clear [--pattern ID]`: look at or empty the result cache.

use std::process::ExitCode;

use super::common::{default_cache, open_cache, runtime, usage_error};

/// Flags of `imggo cache`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: CacheCmd,
    /// The cache: memory, file:DIR, redis://... (default: the file cache `imggo run` uses).
    #[arg(long, env = "IMGGO_CACHE", hide_env_values = true, global = true)]
    cache: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum CacheCmd {
    /// Hits, misses, entries and bytes, as JSON.
    Stats,
    /// Drop the entries of one pattern (O(1): its generation moves on).
    Clear {
        /// The pattern whose results to drop.
        #[arg(long)]
        pattern: String,
    },
}

/// Runs `imggo cache`.
pub fn run(args: Args) -> ExitCode {
    let spec = args.cache.unwrap_or_else(default_cache);
    runtime().block_on(async move {
        let cache = match open_cache(&spec).await {
            Ok(Some(c)) => c,
            Ok(None) => return usage_error(&"the cache is off"),
            Err(e) => {
                return usage_error(&format!("--cache {}: {e}", imggo::core::redact_url(&spec)))
            }
        };
        match args.cmd {
            CacheCmd::Stats => {
                let s = cache.stats().await;
                println!("{}", serde_json::to_string(&s).expect("stats serialise"));
                ExitCode::SUCCESS
            }
            CacheCmd::Clear { pattern } => match cache.invalidate_pattern(&pattern).await {
                Ok(inv) => {
                    println!("{}", serde_json::to_string(&inv).expect("serialises"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("imggo: {e}");
                    ExitCode::from(1)
                }
            },
        }
    })
}
