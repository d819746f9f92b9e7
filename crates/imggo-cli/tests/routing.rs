//! `imggo run --route` and `--classify`: the real binary against the emulator over
//! loopback, with the real corpus.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use imggo::core::{ContentHash, Outcome};
use imggo::emulator::{Config, Emulator, Handle};
use imggo::ResultLine;
use serde_json::json;

use common::{imggo_run_routed, lines, output, stderr};

const KEY: &str = "imggo_routing_test_key";

/// The classes of the classification pattern's `doc_type` enum, in order.
const CLASSES: [&str; 5] = ["invoice", "receipt", "prescription", "resume", "other"];

async fn emulator() -> Handle {
    Emulator::start(Config::default().api_key(KEY))
        .await
        .unwrap()
}

fn pattern(handle: &Handle, name: &str) -> String {
    handle.create_pattern(name, None).id
}

fn classifier(handle: &Handle) -> String {
    let schema = json!({"type": "object", "properties": {
        "doc_type": {"type": "string", "enum": CLASSES}
    }});
    handle.create_pattern("doc classifier", Some(schema)).id
}

/// `imggo run` that classifies with `classify` by its `doc_type`, quietly, plus `extra`.
fn run_classified(handle: &Handle, out: &Path, classify: &str, extra: &[&str]) -> Command {
    let mut args = vec![
        "--classify",
        classify,
        "--class-field",
        "doc_type",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    imggo_run_routed(&handle.base_url(), KEY, out, &args)
}

/// The pattern that made a line's manifest, as the emulator wrote it there.
fn made_by(line: &ResultLine) -> String {
    line.manifest.as_ref().unwrap()["_emulator"]["pattern_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn by_name(lines: Vec<ResultLine>) -> BTreeMap<String, ResultLine> {
    lines
        .into_iter()
        .map(|l| {
            let name = Path::new(&l.input)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, l)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_glob_first_match_wins_and_no_route_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let staged = imggo_testkit::corpus_variants(&dir.path().join("staged"), 5, 0);
    let root = dir.path().join("in");
    let names = [
        "invoices/a.jpg",
        "invoices/2024/b.jpg",
        "receipts/c.jpg",
        "misc/d.jpg",
    ];
    for (from, to) in staged.iter().zip(names) {
        std::fs::create_dir_all(root.join(to).parent().unwrap()).unwrap();
        std::fs::rename(from, root.join(to)).unwrap();
    }
    // A file argument is routed by its file name alone.
    let loose = dir.path().join("receipt-loose.jpg");
    std::fs::rename(&staged[4], &loose).unwrap();

    let handle = emulator().await;
    let (inv, rec, any) = (
        pattern(&handle, "invoices"),
        pattern(&handle, "receipts"),
        pattern(&handle, "any jpg"),
    );
    let out = dir.path().join("results.jsonl");
    let routes = [
        format!("invoices/**={inv}"),
        // `receipts/c.jpg` and `receipt-loose.jpg`; never `invoices/…` (first match wins).
        format!("receipt*/**={rec}"),
        format!("receipt-*={rec}"),
        format!("invoices/*.jpg={any}"),
    ];
    let mut args: Vec<&str> = Vec::new();
    for r in &routes {
        args.extend(["--route", r]);
    }
    let root_arg = root.display().to_string();
    let loose_arg = loose.display().to_string();
    args.extend(["--quiet", &root_arg, &loose_arg]);
    let o = output(imggo_run_routed(&handle.base_url(), KEY, &out, &args)).await;
    // One input had no route: a failed line, exit 1; the others ran.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    let got = lines(&out);
    assert_eq!(got.len(), 5, "one line per input: {got:?}");
    let got = by_name(got);
    for (name, want) in [
        ("a.jpg", &inv),
        ("b.jpg", &inv),
        ("c.jpg", &rec),
        ("receipt-loose.jpg", &rec),
    ] {
        let l = &got[name];
        assert_eq!(l.status, Outcome::Succeeded, "{l:?}");
        assert_eq!(&l.pattern_id, want, "{name}");
        assert_eq!(&made_by(l), want, "{name}: the job ran with its pattern");
        assert_eq!(l.class, None);
    }
    let d = &got["d.jpg"];
    assert_eq!(d.status, Outcome::Failed);
    let e = d.error.as_ref().unwrap();
    assert_eq!(e.code, "NO_ROUTE");
    assert!(e.message.contains("misc/d.jpg"), "names the input: {e:?}");
    assert_eq!(d.job_id, None);
    // Nothing was sent for it.
    assert_eq!(handle.stats().jobs_created, 4);
    handle.shutdown().await;
}

/// The 47 corpus images, named so the emulator's stand-in classifies most by name: the
/// corpus's own `invoice…`, `prescription…` and `resume…` files, the
/// `document-classification…` files as `receipt-…`; the rest (cars, VINs, parking…) have
/// no class word and get the class their content hash picks.
fn classified_corpus(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let root = dir.join("corpus");
    std::fs::create_dir_all(&root).unwrap();
    let mut want = BTreeMap::new();
    for src in imggo_testkit::corpus_files() {
        let orig = src.file_name().unwrap().to_string_lossy().into_owned();
        let name = if orig.starts_with("document-classification") {
            format!("receipt-{orig}")
        } else {
            orig
        };
        let bytes = std::fs::read(&src).unwrap();
        std::fs::write(root.join(&name), &bytes).unwrap();
        let class = CLASSES
            .iter()
            .find(|c| name.contains(*c))
            .map(|c| c.to_string())
            .unwrap_or_else(|| {
                // The stand-in's rule: the hash's leading 64 bits modulo the classes.
                let hash = ContentHash::of(&bytes).to_string();
                let lead = u64::from_str_radix(&hash["xxh3-".len()..][..16], 16).unwrap();
                CLASSES[(lead % CLASSES.len() as u64) as usize].to_string()
            });
        want.insert(name, class);
    }
    assert_eq!(want.len(), 47, "the corpus has 47 images");
    (root, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_routes_the_47_corpus_images_by_class_and_caches_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let (root, want) = classified_corpus(dir.path());
    let handle = emulator().await;
    let classify = classifier(&handle);
    let per_class: BTreeMap<&str, String> = CLASSES[..4]
        .iter()
        .map(|c| (*c, pattern(&handle, &format!("extract {c}"))))
        .collect();
    let fallback = pattern(&handle, "fallback");
    let cache = format!("file:{}", dir.path().join("cache").display());
    let out = dir.path().join("results.jsonl");
    let run = |out: &Path, per_class: &BTreeMap<&str, String>| {
        let mut args: Vec<String> = vec![
            "--pattern".into(),
            fallback.clone(),
            "--cache".into(),
            cache.clone(),
            "--no-optimize".into(),
        ];
        for (c, p) in per_class {
            args.extend(["--route-class".into(), format!("{c}={p}")]);
        }
        args.push(root.display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_classified(&handle, out, &classify, &args)
    };

    let o = output(run(&out, &per_class)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = by_name(lines(&out));
    assert_eq!(got.len(), 47);
    let mut seen = BTreeMap::<String, usize>::new();
    for (name, class) in &want {
        let l = &got[name];
        assert_eq!(l.status, Outcome::Succeeded, "{l:?}");
        assert_eq!(l.class.as_ref(), Some(class), "{name}");
        let pattern = per_class.get(class.as_str()).unwrap_or(&fallback);
        assert_eq!(&l.pattern_id, pattern, "{name} of class {class}");
        assert_eq!(
            &made_by(l),
            pattern,
            "{name}: extracted with its class's pattern"
        );
        assert_eq!(l.attempts, 1, "the extraction's attempts: {l:?}");
        let cj = l.classify_job_id.as_ref().expect("classify_job_id");
        assert_ne!(Some(cj), l.job_id.as_ref());
        *seen.entry(class.clone()).or_default() += 1;
    }
    // Every class occurs, "other" through the content hash, run with the fallback.
    assert_eq!(seen.len(), 5, "{seen:?}");
    // Two jobs per image: its classification and its extraction.
    let jobs = handle.stats().jobs_created;
    assert_eq!(jobs, 94);

    // Receipts now go to a new pattern: their classification comes from the cache, so
    // only their extractions are new jobs; every other image is answered from the cache.
    let mut moved = per_class.clone();
    let receipts2 = pattern(&handle, "extract receipt v2");
    moved.insert("receipt", receipts2.clone());
    let out2 = dir.path().join("results2.jsonl");
    let o = output(run(&out2, &moved)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = by_name(lines(&out2));
    let receipts = want.values().filter(|c| *c == "receipt").count();
    assert!(receipts >= 5);
    assert_eq!(handle.stats().jobs_created, jobs + receipts as u64);
    for (name, class) in &want {
        let l = &got[name];
        assert_eq!(l.class.as_ref(), Some(class), "{name}");
        if class == "receipt" {
            assert_eq!(l.status, Outcome::Succeeded, "{l:?}");
            assert_eq!(l.pattern_id, receipts2);
            assert_eq!(made_by(l), receipts2);
        } else {
            assert_eq!(l.status, Outcome::Cached, "{l:?}");
        }
        assert!(l.classify_job_id.is_some(), "{name}");
    }
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_class_without_fallback_fails_no_route_naming_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let staged = imggo_testkit::corpus_variants(&dir.path().join("staged"), 2, 0);
    let root = dir.path().join("in");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::rename(&staged[0], root.join("invoice-1.jpg")).unwrap();
    std::fs::rename(&staged[1], root.join("receipt-1.jpg")).unwrap();
    let handle = emulator().await;
    let classify = classifier(&handle);
    let inv = pattern(&handle, "invoices");
    let out = dir.path().join("results.jsonl");
    let route = format!("invoice={inv}");
    let root_arg = root.display().to_string();
    let args = ["--route-class", &route, &root_arg];
    let o = output(run_classified(&handle, &out, &classify, &args)).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let got = by_name(lines(&out));
    assert_eq!(got.len(), 2);
    let ok = &got["invoice-1.jpg"];
    assert_eq!(ok.status, Outcome::Succeeded, "{ok:?}");
    assert_eq!(ok.pattern_id, inv);
    let bad = &got["receipt-1.jpg"];
    assert_eq!(bad.status, Outcome::Failed);
    assert_eq!(bad.class.as_deref(), Some("receipt"));
    assert!(bad.classify_job_id.is_some());
    assert_eq!(bad.pattern_id, classify, "the classification is what ran");
    assert_eq!(bad.job_id, None);
    let e = bad.error.as_ref().unwrap();
    assert_eq!(e.code, "NO_ROUTE");
    assert!(e.message.contains("\"receipt\""), "names the class: {e:?}");
    assert!(
        e.message.contains("receipt-1.jpg"),
        "names the input: {e:?}"
    );
    // Two classifications and one extraction.
    assert_eq!(handle.stats().jobs_created, 3);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifications_pass_the_rate_limit_like_every_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("in");
    imggo_testkit::corpus_variants(&root, 8, 0);
    let handle = emulator().await;
    let classify = classifier(&handle);
    let fallback = pattern(&handle, "fallback");
    let out = dir.path().join("results.jsonl");
    let root_arg = root.display().to_string();
    let args = ["--pattern", &fallback, "--rps", "8", &root_arg];
    let started = std::time::Instant::now();
    let o = output(run_classified(&handle, &out, &classify, &args)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // 16 ingests (8 classifications, 8 extractions), one per 125 ms at most: a closed
    // one-second window holds at most 9 (both of its ends).
    let stats = handle.stats();
    assert_eq!(stats.ingests_accepted, 16);
    assert!(stats.max_ingests_per_second <= 9, "{stats:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(15 * 125));
    assert!(lines(&out)
        .iter()
        .all(|l| l.class.is_some() && l.pattern_id == fallback));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_routes_by_class_fires_and_clears_an_alert_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("demo.html");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imggo"));
    cmd.args(["demo", "--docs", "24", "--photos", "0", "--duplicates", "2"])
        .args(["--latency", "20", "--fail-503", "0", "--report"])
        .arg(&report)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let o = output(cmd).await;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", stderr(&o));
    for class in ["invoice", "receipt", "menu"] {
        assert!(stdout.contains(&format!("class {class}")), "{stdout}");
    }
    assert!(stdout.contains("firing, resolved"), "{stdout}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("data-key=\"class\""));
    assert!(html.matches("<svg").count() >= 5, "the charts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_carry_the_base_name_even_a_hostile_one() {
    let dir = tempfile::tempdir().unwrap();
    let staged = imggo_testkit::corpus_variants(&dir.path().join("staged"), 1, 0);
    let root = dir.path().join("in");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    // Quotes, CR and LF would break the multipart header if they were sent as they are.
    let hostile = root.join("sub/a \"quoted\"\r\nX-Evil: 1 other.jpg");
    std::fs::rename(&staged[0], &hostile).unwrap();
    let handle = emulator().await;
    let classify = classifier(&handle);
    let fallback = pattern(&handle, "fallback");
    let out = dir.path().join("results.jsonl");
    let root_arg = root.display().to_string();
    let args = ["--pattern", &fallback, &root_arg];
    let o = output(run_classified(&handle, &out, &classify, &args)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = lines(&out);
    assert_eq!(got.len(), 1);
    // The emulator read the class from the name it received: the file's, not image.jpg.
    assert_eq!(got[0].class.as_deref(), Some("other"), "{:?}", got[0]);
    assert_eq!(got[0].pattern_id, fallback);
    assert_eq!(handle.stats().jobs_created, 2);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_skips_inputs_a_routed_run_finished() {
    let dir = tempfile::tempdir().unwrap();
    let staged = imggo_testkit::corpus_variants(&dir.path().join("staged"), 3, 0);
    let root = dir.path().join("in");
    std::fs::create_dir_all(&root).unwrap();
    for (i, (from, name)) in staged.iter().zip(["invoice", "receipt", "x"]).enumerate() {
        std::fs::rename(from, root.join(format!("{name}-{i}.jpg"))).unwrap();
    }
    let handle = emulator().await;
    let classify = classifier(&handle);
    let (inv, fallback) = (pattern(&handle, "invoices"), pattern(&handle, "fallback"));
    let out = dir.path().join("results.jsonl");
    let route_class = format!("invoice={inv}");
    let glob = format!("x-*={fallback}");
    let root_arg = root.display().to_string();
    let args = [
        "--route",
        &glob,
        "--route-class",
        &route_class,
        "--pattern",
        &fallback,
        "--resume",
        &root_arg,
    ];
    let o = output(run_classified(&handle, &out, &classify, &args)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = by_name(lines(&out));
    assert_eq!(first["invoice-0.jpg"].pattern_id, inv);
    assert_eq!(first["receipt-1.jpg"].pattern_id, fallback);
    // Routed by its glob: never classified.
    assert_eq!(first["x-2.jpg"].pattern_id, fallback);
    assert_eq!(first["x-2.jpg"].class, None);
    assert_eq!(first["x-2.jpg"].classify_job_id, None);
    let jobs = handle.stats().jobs_created;
    assert_eq!(jobs, 5);

    // The cache is off: only the results file says these are done.
    let o = output(run_classified(&handle, &out, &classify, &args)).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(handle.stats().jobs_created, jobs, "nothing sent again");
    assert_eq!(lines(&out).len(), 3);
    handle.shutdown().await;
}
