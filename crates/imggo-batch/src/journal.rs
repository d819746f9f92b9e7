//! The results file: one JSON line per input, appended and flushed as each input ends, and
//! read back by `--resume`, which counts an input as done only from lines of the same
//! pattern ([`ResumeKey`]) and skips lines it cannot read.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use imggo_core::Error;

use crate::metrics::Outcome;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{code, message}` of a failed input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable code (`INVALID_IMAGE`, `TIMEOUT`, `HTTP_502`, ...).
    pub code: String,
    /// Human-readable message naming the input or the cause.
    pub message: String,
}

impl From<&Error> for ErrorInfo {
    fn from(e: &Error) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// One result line. Field names and the `status` values are a contract for scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    /// The input as named (path or URL).
    pub input: String,
    /// `xxh3-<32 hex>` of the input bytes (the URL text for URL inputs).
    pub content_hash: Option<String>,
    /// The pattern.
    pub pattern_id: String,
    /// The job, when one was created or reused.
    pub job_id: Option<String>,
    /// `succeeded`, `failed`, `cached` or `duplicate`.
    pub status: Outcome,
    /// The manifest, when there is one.
    pub manifest: Option<Value>,
    /// The error of a failed input.
    pub error: Option<ErrorInfo>,
    /// HTTP attempts made for the ingest (0 when cached, duplicate or failed before upload);
    /// for a classified input, the extraction's ingest (the classification's, when it
    /// ended there).
    pub attempts: u32,
    /// Wall time from the start of this input to its result.
    pub latency_ms: u64,
    /// Size of the input.
    pub bytes_in: u64,
    /// Bytes uploaded (after optimisation; 0 when nothing was uploaded).
    pub bytes_sent: u64,
    /// The pattern's version the input ran with (absent in lines of older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_version: Option<u32>,
    /// Fingerprint (16 hex digits) of the settings that shape the result, such as the
    /// optimiser's options (absent in lines of older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<String>,
    /// Present when the input was sent with a salted idempotency key (`--retry-failed`
    /// after a job of it failed): the salt, so the same retry is recognisable later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_salt: Option<String>,
    /// When the input's result was ready, RFC 3339 UTC with milliseconds
    /// (`2026-01-15T10:00:00.123Z`); absent in lines of older releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// 429 answers (rate limit or quota) the input's ingest met, each waited out and
    /// sent again (absent in lines of older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<u32>,
    /// Milliseconds the input waited for its turn: the rate limiters and the
    /// `Retry-After` of 429s (absent in lines of older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    /// The input's class, read by the classification pattern (`--classify`); absent
    /// when the run does not classify or the input was not classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The classification job of the input (`--classify`); `job_id` stays the job that
    /// produced the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classify_job_id: Option<String>,
}

/// What a line of an earlier run must match for `--resume` to count its input as done:
/// the pattern, its version and the settings it ran with. A run with another pattern, a
/// new version of it, or other optimiser options redoes every input. Lines written before
/// versions and settings were recorded match on the pattern alone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumeKey {
    /// The pattern of this run.
    pub pattern_id: String,
    /// The pattern's version of this run, when known.
    pub pattern_version: Option<u32>,
    /// The settings fingerprint of this run (as in [`ResultLine::settings`]), when known.
    pub settings: Option<String>,
    /// With routing (`--route`, `--classify`): the other patterns of the run and their
    /// versions; a line of any of them counts too.
    pub routed: Vec<(String, u32)>,
}

impl ResumeKey {
    /// The key of a run with `pattern_id` (any version, any settings).
    pub fn new(pattern_id: impl Into<String>) -> Self {
        Self {
            pattern_id: pattern_id.into(),
            pattern_version: None,
            settings: None,
            routed: Vec::new(),
        }
    }

    /// Also counts lines of these patterns, each at its version (a routed run).
    pub fn routed(mut self, patterns: impl IntoIterator<Item = (String, u32)>) -> Self {
        self.routed.extend(patterns);
        self
    }

    /// Also requires the pattern's `version`.
    pub fn version(mut self, version: u32) -> Self {
        self.pattern_version = Some(version);
        self
    }

    /// Also requires the settings fingerprint `settings`.
    pub fn settings(mut self, settings: impl Into<String>) -> Self {
        self.settings = Some(settings.into());
        self
    }

    fn matches(&self, line: &ResultLine) -> bool {
        let agree = |want: Option<&str>, got: Option<&str>| match (want, got) {
            (Some(w), Some(g)) => w == g,
            _ => true,
        };
        let version = |want: Option<u32>| {
            agree(
                want.map(|v| v.to_string()).as_deref(),
                line.pattern_version.map(|v| v.to_string()).as_deref(),
            )
        };
        let pattern = (line.pattern_id == self.pattern_id && version(self.pattern_version))
            || self
                .routed
                .iter()
                .any(|(p, v)| line.pattern_id == *p && version(Some(*v)));
        pattern && agree(self.settings.as_deref(), line.settings.as_deref())
    }
}

/// Appends result lines to a file, one `write` per line, flushed immediately, so a killed
/// run loses at most the line being written.
///
/// Opening reads (with `--resume`) but changes nothing: the file is created, emptied
/// (without `--resume`) or given the line break a cut last line lacks only by
/// [`Journal::start`] (or the first [`Journal::append`]), so that a run refused before it
/// starts (a bad flag, an unknown pattern) leaves an earlier results file as it was.
pub struct Journal {
    path: PathBuf,
    /// Keep the lines already there.
    resume: bool,
    /// Set by `start`.
    file: Option<File>,
    torn: u64,
    /// Per input: failed lines that name a job (the service ran it and it failed).
    failed_jobs: HashMap<String, u32>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("resume", &self.resume)
            .field("started", &self.file.is_some())
            .field("torn", &self.torn)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens `path` without changing it. With `resume`, the inputs its lines show
    /// finished for that key (the last line of an input has any status but `failed`) are
    /// returned; lines that do not parse (cut by a kill, not UTF-8, not a result line) are
    /// skipped and counted ([`Journal::torn_lines`]). Without `resume` the set is empty
    /// and `start` empties the file.
    pub fn open(path: &Path, resume: Option<&ResumeKey>) -> Result<(Self, HashSet<String>), Error> {
        let mut done = HashSet::new();
        let mut torn = 0;
        let mut failed_jobs: HashMap<String, u32> = HashMap::new();
        // Only a regular file holds earlier results: a device or a pipe (`/dev/stdout`)
        // is not read back (a FIFO would block, `/dev/zero` never end).
        let regular = std::fs::metadata(path).map_or(true, |m| m.is_file());
        if let Some(key) = resume.filter(|_| regular) {
            match File::open(path) {
                Ok(f) => {
                    for line in result_lines(BufReader::new(f)) {
                        match line.map_err(|source| io_error(path, source))? {
                            Some(r) if key.matches(&r) => {
                                if r.status != Outcome::Failed {
                                    done.insert(r.input);
                                } else {
                                    done.remove(&r.input);
                                    if r.job_id.is_some() {
                                        *failed_jobs.entry(r.input).or_default() += 1;
                                    }
                                }
                            }
                            Some(_) => {}
                            None => torn += 1,
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io_error(path, source)),
            }
        }
        Ok((
            Self {
                path: path.to_owned(),
                resume: resume.is_some(),
                file: None,
                torn,
                failed_jobs,
                buf: Vec::with_capacity(1024),
            },
            done,
        ))
    }

    /// Lines of the file that `open` could not read and skipped: a line cut by a kill, or
    /// one damaged otherwise. Worth a warning; the inputs they named run again.
    pub fn torn_lines(&self) -> u64 {
        self.torn
    }

    /// With `resume`: per input not finished, how many of its lines name a job that
    /// failed on the service. Such an input sent again with its usual idempotency key is
    /// answered with the same failed job; `--retry-failed` sends it with a new key.
    pub fn failed_jobs(&self) -> &HashMap<String, u32> {
        &self.failed_jobs
    }

    /// Creates the file (and its directory), empties it unless resuming, and ends a cut
    /// last line so that the next line does not glue onto it. Call it once the run is
    /// sure to start; [`Journal::append`] calls it when it was not. Calling it again does
    /// nothing.
    pub fn start(&mut self) -> Result<(), Error> {
        file(&mut self.file, &self.path, self.resume).map(|_| ())
    }

    /// Appends one line and flushes it to the OS (starting the file first if needed).
    pub fn append(&mut self, line: &ResultLine) -> Result<(), Error> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, line).map_err(|e| Error::Decode {
            what: "result line".into(),
            message: e.to_string(),
        })?;
        self.buf.push(b'\n');
        file(&mut self.file, &self.path, self.resume)?
            .write_all(&self.buf)
            .map_err(|source| io_error(&self.path, source))
    }
}

/// The journal's file, created (see [`Journal::start`]) by the first call.
/// The lines of a results file: `Some` for a result line, `None` for one that does not
/// parse (cut by a kill, not UTF-8, damaged); blank lines are left out.
pub fn result_lines(
    reader: impl BufRead,
) -> impl Iterator<Item = std::io::Result<Option<ResultLine>>> {
    reader.split(b'\n').filter_map(|line| match line {
        Err(e) => Some(Err(e)),
        Ok(l) if l.trim_ascii().is_empty() => None,
        Ok(l) => Some(Ok(serde_json::from_slice(&l).ok())),
    })
}

fn file<'a>(slot: &'a mut Option<File>, path: &Path, resume: bool) -> Result<&'a mut File, Error> {
    let file = match slot.take() {
        Some(f) => f,
        None => create(path, resume)?,
    };
    Ok(slot.insert(file))
}

fn create(path: &Path, resume: bool) -> Result<File, Error> {
    let io = |source| io_error(path, source);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    if !f.metadata().map_err(io)?.is_file() {
        // `/dev/stdout`, a pipe, a device: nothing to empty or to repair.
        return Ok(f);
    }
    if !resume {
        f.set_len(0).map_err(io)?;
    }
    let len = f.seek(SeekFrom::End(0)).map_err(io)?;
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        f.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            f.write_all(b"\n").map_err(io)?;
        }
    }
    Ok(f)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &str, status: Outcome) -> ResultLine {
        line_with(input, "p", status)
    }

    fn line_with(input: &str, pattern: &str, status: Outcome) -> ResultLine {
        ResultLine {
            input: input.into(),
            content_hash: None,
            pattern_id: pattern.into(),
            job_id: None,
            status,
            manifest: None,
            error: None,
            attempts: 1,
            latency_ms: 1,
            bytes_in: 1,
            bytes_sent: 1,
            pattern_version: None,
            settings: None,
            idempotency_salt: None,
            finished_at: None,
            rate_limited: None,
            waited_ms: None,
            class: None,
            classify_job_id: None,
        }
    }

    fn append(p: &Path, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(p)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn resume_skips_finished_and_survives_a_cut_line() {
        let key = ResumeKey::new("p");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out/results.jsonl");
        let (mut j, done) = Journal::open(&p, Some(&key)).unwrap();
        assert!(done.is_empty());
        j.append(&line("a", Outcome::Succeeded)).unwrap();
        j.append(&line("b", Outcome::Failed)).unwrap();
        j.append(&line("c", Outcome::Cached)).unwrap();
        drop(j);
        // Simulate a kill in the middle of a line.
        append(&p, br#"{"input":"d","status":"succ"#);
        let (mut j, done) = Journal::open(&p, Some(&key)).unwrap();
        assert_eq!(done, HashSet::from(["a".to_string(), "c".to_string()]));
        assert_eq!(j.torn_lines(), 1);
        j.append(&line("b", Outcome::Succeeded)).unwrap();
        drop(j);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with("\n"));
        let parsed = text
            .lines()
            .filter(|l| serde_json::from_str::<ResultLine>(l).is_ok())
            .count();
        assert_eq!(parsed, 4);
        let (_, done) = Journal::open(&p, Some(&key)).unwrap();
        assert!(done.contains("b"));
        // Without --resume the file starts over, once the run starts.
        let (mut j, done) = Journal::open(&p, None).unwrap();
        assert!(done.is_empty());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        j.start().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn a_last_line_cut_inside_a_utf8_character_is_skipped_and_counted() {
        let key = ResumeKey::new("p");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.jsonl");
        let (mut j, _) = Journal::open(&p, None).unwrap();
        j.append(&line("é.jpg", Outcome::Succeeded)).unwrap();
        drop(j);
        let mut whole = serde_json::to_vec(&line("ü.jpg", Outcome::Succeeded)).unwrap();
        let cut = whole.iter().position(|&b| b == 0xc3).unwrap() + 1;
        whole.truncate(cut); // ends inside the two bytes of ü
        append(&p, &whole);
        append(&p, b"\n\xff\xfe garbage\nnot json\n");
        append(&p, &whole);
        let (mut j, done) = Journal::open(&p, Some(&key)).unwrap();
        assert_eq!(done, HashSet::from(["é.jpg".to_string()]));
        assert_eq!(j.torn_lines(), 4);
        j.append(&line("ü.jpg", Outcome::Succeeded)).unwrap();
        drop(j);
        let (j, done) = Journal::open(&p, Some(&key)).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(j.torn_lines(), 4);
    }

    #[test]
    fn resume_counts_only_lines_of_the_same_pattern() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.jsonl");
        let (mut j, _) = Journal::open(&p, None).unwrap();
        j.append(&line_with("a", "p1", Outcome::Succeeded)).unwrap();
        j.append(&line_with("b", "p1", Outcome::Succeeded)).unwrap();
        j.append(&line_with("b", "p2", Outcome::Cached)).unwrap();
        drop(j);
        let (_, done) = Journal::open(&p, Some(&ResumeKey::new("p2"))).unwrap();
        assert_eq!(done, HashSet::from(["b".to_string()]));
        let (_, done) = Journal::open(&p, Some(&ResumeKey::new("p1"))).unwrap();
        assert_eq!(done.len(), 2);
        let (_, done) = Journal::open(&p, Some(&ResumeKey::new("p3"))).unwrap();
        assert!(done.is_empty());
    }

    #[test]
    fn opening_changes_nothing_until_the_run_starts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("new/results.jsonl");
        let (j, _) = Journal::open(&p, None).unwrap();
        drop(j);
        assert!(!p.exists() && !p.parent().unwrap().exists());
        let (mut j, _) = Journal::open(&p, Some(&ResumeKey::new("p"))).unwrap();
        j.start().unwrap();
        j.start().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn lines_of_older_releases_without_the_new_fields_still_parse_and_resume() {
        let old = br#"{"input":"a.jpg","content_hash":null,"pattern_id":"p","job_id":"j1","status":"succeeded","manifest":null,"error":null,"attempts":1,"latency_ms":5,"bytes_in":10,"bytes_sent":8}"#;
        let l: ResultLine = serde_json::from_slice(old).unwrap();
        assert_eq!(
            (l.finished_at, l.rate_limited, l.waited_ms),
            (None, None, None)
        );
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.jsonl");
        std::fs::write(&p, [&old[..], b"\n"].concat()).unwrap();
        let (j, done) = Journal::open(&p, Some(&ResumeKey::new("p"))).unwrap();
        assert_eq!(j.torn_lines(), 0);
        assert!(done.contains("a.jpg"));
        // The new fields are written, with the old ones under their old names.
        let mut l = line("b.jpg", Outcome::Succeeded);
        l.finished_at = Some("2026-01-15T10:00:00.123Z".into());
        l.rate_limited = Some(2);
        l.waited_ms = Some(1500);
        let v: Value = serde_json::to_value(&l).unwrap();
        assert_eq!(v["finished_at"], "2026-01-15T10:00:00.123Z");
        assert_eq!(v["rate_limited"], 2);
        assert_eq!(v["waited_ms"], 1500);
        assert_eq!(v["latency_ms"], 1);
    }
}
