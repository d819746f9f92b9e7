//! `imggo optimize <INPUT>... --out DIR`: run images through the upload optimizer locally
//! (no API calls) and write the results, to preview what `imggo run` would send.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use imggo::optimize::{Action, ImageFormat, Optimized, Optimizer, Options};
use imggo::report::{EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE};
use imggo::{Input, Inputs};

/// Flags of `imggo optimize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image files or directories (searched recursively, hidden entries skipped).
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Output directory (created if missing). Each input becomes `DIR/<stem>.jpg`
    /// (`.png` for a PNG kept as is); equal stems get `-2`, `-3`, ... in input order.
    #[arg(long)]
    out: PathBuf,
    /// Longest side of the output in pixels (never enlarged).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=65535))]
    max_side: u32,
    /// JPEG quality of re-encoded images.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Output size ceiling in bytes.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_bytes: u64,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Print one JSON line per input instead of the summary.
    #[arg(long)]
    json: bool,
}

/// One input, with the output name reserved for it.
struct Job {
    input: Input,
    stem: String,
}

/// What happened to one input.
struct Outcome {
    label: String,
    result: Result<(Optimized, PathBuf), String>,
}

/// Optimizes every input; exit 0 if all succeeded, 1 if any failed, 2 on usage errors.
pub fn run(args: Args) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("imggo: cannot create {}: {e}", args.out.display());
        return ExitCode::from(EXIT_USAGE);
    }
    let options = Options {
        max_side: args.max_side,
        quality: args.quality,
        max_bytes: usize::try_from(args.max_bytes).unwrap_or(usize::MAX),
        ..Options::default()
    };
    let jobs = plan(Inputs::new(args.inputs.iter().cloned()));
    let workers = match args.jobs {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
    .min(jobs.len().max(1));

    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
    let mut summary = Summary::default();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, next, options, out) = (&jobs, &next, &options, &args.out);
            scope.spawn(move || {
                let mut optimizer = Optimizer::new(options.clone());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    if tx.send((i, process(&mut optimizer, job, out))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Print in input order as results arrive.
        let mut waiting = BTreeMap::new();
        let mut printed = 0;
        for (i, outcome) in rx {
            waiting.insert(i, outcome);
            while let Some(outcome) = waiting.remove(&printed) {
                summary.report(&outcome, args.json);
                printed += 1;
            }
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    if !args.json {
        summary.print(elapsed);
    }
    ExitCode::from(if summary.failed > 0 {
        EXIT_FAILED_INPUTS
    } else {
        EXIT_OK
    })
}

/// Expands the inputs and reserves a distinct output stem for each, in input order, so
/// names do not depend on which worker finishes first.
fn plan(inputs: Inputs) -> Vec<Job> {
    let mut taken = HashSet::new();
    inputs
        .map(|input| {
            let base = match &input {
                Input::File(p) => p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "image".to_string()),
                _ => "image".to_string(),
            };
            let mut stem = base.clone();
            let mut n = 1;
            while !taken.insert(stem.to_lowercase()) {
                n += 1;
                stem = format!("{base}-{n}");
            }
            Job { input, stem }
        })
        .collect()
}

fn process(optimizer: &mut Optimizer, job: &Job, out_dir: &Path) -> Outcome {
    let label = job.input.label();
    let result = match &job.input {
        Input::File(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| optimizer.optimize(&bytes).map_err(|e| e.to_string()))
            .and_then(|optimized| {
                let name = format!("{}.{}", job.stem, optimized.out_format.extension());
                let path = out_dir.join(name);
                std::fs::write(&path, &optimized.bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok((optimized, path))
            }),
        Input::Url(_) => Err("URLs are not optimized locally; download the image first".into()),
        Input::Broken { reason, .. } => Err(reason.clone()),
    };
    Outcome { label, result }
}

/// One `--json` line; the field names and order are the documented contract.
#[derive(Default, serde::Serialize)]
struct JsonLine<'a> {
    input: &'a str,
    output: Option<String>,
    action: Option<Action>,
    format: Option<ImageFormat>,
    in_bytes: Option<usize>,
    out_bytes: Option<usize>,
    in_width: Option<u32>,
    in_height: Option<u32>,
    out_width: Option<u32>,
    out_height: Option<u32>,
    error: Option<&'a str>,
}

fn print_json(line: &JsonLine<'_>) {
    match serde_json::to_string(line) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("imggo: cannot serialize a result line: {e}"),
    }
}

#[derive(Default)]
struct Summary {
    files: usize,
    failed: usize,
    in_bytes: u64,
    out_bytes: u64,
    megapixels: f64,
}

impl Summary {
    fn report(&mut self, outcome: &Outcome, json: bool) {
        self.files += 1;
        match &outcome.result {
            Ok((o, path)) => {
                self.in_bytes += o.in_bytes as u64;
                self.out_bytes += o.out_bytes as u64;
                self.megapixels += f64::from(o.in_width) * f64::from(o.in_height) / 1e6;
                if json {
                    print_json(&JsonLine {
                        input: &outcome.label,
                        output: Some(path.display().to_string()),
                        action: Some(o.action),
                        format: Some(o.in_format),
                        in_bytes: Some(o.in_bytes),
                        out_bytes: Some(o.out_bytes),
                        in_width: Some(o.in_width),
                        in_height: Some(o.in_height),
                        out_width: Some(o.out_width),
                        out_height: Some(o.out_height),
                        error: None,
                    });
                }
            }
            Err(reason) => {
                self.failed += 1;
                eprintln!("imggo: {}: {reason}", outcome.label);
                if json {
                    print_json(&JsonLine {
                        input: &outcome.label,
                        error: Some(reason),
                        ..JsonLine::default()
                    });
                }
            }
        }
    }

    fn print(&self, seconds: f64) {
        let ok = self.files - self.failed;
        let reduction = if self.in_bytes > 0 {
            100.0 * (1.0 - self.out_bytes as f64 / self.in_bytes as f64)
        } else {
            0.0
        };
        let seconds = seconds.max(1e-9);
        println!(
            "{} files ({ok} optimized, {} failed), {} -> {} bytes ({reduction:.1}% smaller), {:.1} images/s, {:.1} MP/s",
            self.files,
            self.failed,
            self.in_bytes,
            self.out_bytes,
            ok as f64 / seconds,
            self.megapixels / seconds,
        );
    }
}
