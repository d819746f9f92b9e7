//! `imggo hash FILE... [--pattern ID]`: content hashes and idempotency keys, the values
//! that key the cache and make re-runs safe.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use imggo_core::{ContentHash, IdempotencyKey};

/// Flags of `imggo hash`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to hash.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also print the idempotency key an upload of each file to this pattern would use.
    #[arg(long)]
    pattern: Option<String>,
}

/// Prints `HASH  [KEY  ]PATH` per file; exit 1 if any file could not be read.
pub fn run(args: Args) -> ExitCode {
    let mut failed = false;
    for path in &args.files {
        match File::open(path).and_then(|f| ContentHash::from_reader(BufReader::new(f))) {
            Ok(hash) => match &args.pattern {
                Some(p) => println!(
                    "{hash}  {}  {}",
                    IdempotencyKey::derive(p, &hash, None),
                    path.display()
                ),
                None => println!("{hash}  {}", path.display()),
            },
            Err(e) => {
                eprintln!("imggo: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    ExitCode::from(u8::from(failed))
}
