//! `imggo report RESULTS.jsonl --out report.html`: the HTML report of an existing results
//! file (the one `imggo run --report` writes at the end of a run).

use std::path::PathBuf;
use std::process::ExitCode;

use imggo::HtmlReport;

/// Flags of `imggo report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results file (JSON Lines written by `imggo run --out`). Lines that cannot be
    /// read (cut by a kill, damaged) are skipped and counted.
    results: PathBuf,
    /// Where to write the HTML report.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
}

/// Draws the report; exit 1 when the results file cannot be read or the report written.
pub fn run(args: Args) -> ExitCode {
    let report = match HtmlReport::from_file(&args.results) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imggo: {e}");
            return ExitCode::from(1);
        }
    };
    if report.skipped() > 0 {
        eprintln!(
            "imggo: warning: skipped {} unreadable lines of {} (cut by a kill or damaged)",
            report.skipped(),
            args.results.display()
        );
    }
    if let Err(e) = report.write(&args.out) {
        eprintln!("imggo: {e}");
        return ExitCode::from(1);
    }
    eprintln!(
        "imggo: report of {} result lines written to {}",
        report.lines(),
        args.out.display()
    );
    ExitCode::SUCCESS
}
