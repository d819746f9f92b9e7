//! The results file: one JSON line per input, appended and flushed as each input ends, and
//! read back by `--resume`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use imggo_core::{Error, Outcome};
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
    /// HTTP attempts made for the ingest (0 when cached, duplicate or failed before upload).
    pub attempts: u32,
    /// Wall time from the start of this input to its result.
    pub latency_ms: u64,
    /// Size of the input.
    pub bytes_in: u64,
    /// Bytes uploaded (after optimisation; 0 when nothing was uploaded).
    pub bytes_sent: u64,
}

/// Appends result lines to a file, one `write` per line, flushed immediately, so a killed
/// run loses at most the line being written.
pub struct Journal {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Journal {
    /// Opens `path`. With `resume`, existing lines are kept and the inputs they finished
    /// (any status but `failed`) are returned; otherwise the file starts empty.
    pub fn open(path: &Path, resume: bool) -> Result<(Self, HashSet<String>), Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut done = HashSet::new();
        let file = if resume && path.exists() {
            let mut f = OpenOptions::new()
                .read(true)
                .append(true)
                .open(path)
                .map_err(io)?;
            for line in BufReader::new(&mut f).lines() {
                let line = line.map_err(io)?;
                // A line cut by a kill does not parse and is simply not done.
                if let Ok(r) = serde_json::from_str::<ResultLine>(&line) {
                    if r.status != Outcome::Failed {
                        done.insert(r.input);
                    } else {
                        done.remove(&r.input);
                    }
                }
            }
            // Make sure the next line does not glue onto a cut one.
            let len = f.seek(SeekFrom::End(0)).map_err(io)?;
            if len > 0 {
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
                f.read_exact(&mut last).map_err(io)?;
                if last[0] != b'\n' {
                    f.write_all(b"\n").map_err(io)?;
                }
            }
            f
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(io)?;
            OpenOptions::new().append(true).open(path).map_err(io)?
        };
        Ok((
            Self {
                file,
                path: path.to_owned(),
                buf: Vec::with_capacity(1024),
            },
            done,
        ))
    }

    /// Appends one line and flushes it to the OS.
    pub fn append(&mut self, line: &ResultLine) -> Result<(), Error> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, line).map_err(|e| Error::Decode {
            what: "result line".into(),
            message: e.to_string(),
        })?;
        self.buf.push(b'\n');
        self.file.write_all(&self.buf).map_err(|source| Error::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &str, status: Outcome) -> ResultLine {
        ResultLine {
            input: input.into(),
            content_hash: None,
            pattern_id: "p".into(),
            job_id: None,
            status,
            manifest: None,
            error: None,
            attempts: 1,
            latency_ms: 1,
            bytes_in: 1,
            bytes_sent: 1,
        }
    }

    #[test]
    fn resume_skips_finished_and_survives_a_cut_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out/results.jsonl");
        let (mut j, done) = Journal::open(&p, true).unwrap();
        assert!(done.is_empty());
        j.append(&line("a", Outcome::Succeeded)).unwrap();
        j.append(&line("b", Outcome::Failed)).unwrap();
        j.append(&line("c", Outcome::Cached)).unwrap();
        drop(j);
        // Simulate a kill in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"input":"d","status":"succ"#).unwrap();
        drop(f);
        let (mut j, done) = Journal::open(&p, true).unwrap();
        assert_eq!(done, HashSet::from(["a".to_string(), "c".to_string()]));
        j.append(&line("b", Outcome::Succeeded)).unwrap();
        drop(j);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with("\n"));
        let parsed = text
            .lines()
            .filter(|l| serde_json::from_str::<ResultLine>(l).is_ok())
            .count();
        assert_eq!(parsed, 4);
        let (_, done) = Journal::open(&p, true).unwrap();
        assert!(done.contains("b"));
        // Without --resume the file starts over.
        let (_, done) = Journal::open(&p, false).unwrap();
        assert!(done.is_empty());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
