//! What a batch is made of: files, directories, list files, stdin and URLs, expanded lazily
//! so that a million inputs never sit in memory at once.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// One item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// A local image file.
    File(PathBuf),
    /// An image URL: sent to the API by URL, never downloaded here.
    Url(String),
    /// An input that could not even be listed (unreadable directory or list file); it
    /// becomes one failed result line.
    Broken {
        /// What the user named.
        label: String,
        /// Why it could not be read.
        reason: String,
    },
}

impl Input {
    /// Classifies one path-or-URL text.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("http://") || text.starts_with("https://") {
            Self::Url(text.to_owned())
        } else {
            Self::File(PathBuf::from(text))
        }
    }

    /// The text that names this input in result lines (and keys `--resume`).
    pub fn label(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Url(u) => u.clone(),
            Self::Broken { label, .. } => label.clone(),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

enum Pending {
    Arg(String),
    Dir(PathBuf),
    Lines {
        label: String,
        lines: Box<dyn Iterator<Item = std::io::Result<String>> + Send>,
    },
}

/// A lazy iterator over the inputs named on a command line:
///
/// - a file path → that file;
/// - a directory → every file under it, recursively, in sorted order (hidden entries
///   skipped);
/// - `@list.txt` → each non-empty line (a path or a URL; `#` starts a comment);
/// - `-` → the same, read from standard input;
/// - `http://…` / `https://…` → a URL input.
pub struct Inputs {
    stack: Vec<Pending>,
    ready: VecDeque<Input>,
}

impl Inputs {
    /// Expands `args` lazily, in order.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut stack: Vec<Pending> = args.into_iter().map(|a| Pending::Arg(a.into())).collect();
        stack.reverse();
        Self {
            stack,
            ready: VecDeque::new(),
        }
    }

    fn expand_arg(&mut self, arg: String) {
        if arg == "-" {
            let lines = BufReader::new(std::io::stdin()).lines();
            self.stack.push(Pending::Lines {
                label: "-".into(),
                lines: Box::new(lines),
            });
        } else if let Some(list) = arg.strip_prefix('@') {
            match fs::File::open(list) {
                Ok(f) => self.stack.push(Pending::Lines {
                    label: arg.clone(),
                    lines: Box::new(BufReader::new(f).lines()),
                }),
                Err(e) => self.ready.push_back(Input::Broken {
                    label: arg.clone(),
                    reason: format!("cannot read list file {list}: {e}"),
                }),
            }
        } else {
            match Input::parse(&arg) {
                Input::File(p) if p.is_dir() => self.stack.push(Pending::Dir(p)),
                other => self.ready.push_back(other),
            }
        }
    }

    fn expand_dir(&mut self, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.ready.push_back(Input::Broken {
                    label: dir.display().to_string(),
                    reason: format!("cannot read directory: {e}"),
                });
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        paths.sort();
        // Files and subdirectories interleave in sorted order: push in reverse so the
        // smallest name comes off the stack first.
        for p in paths.into_iter().rev() {
            if p.is_dir() {
                self.stack.push(Pending::Dir(p));
            } else {
                self.stack.push(Pending::Arg(p.display().to_string()));
            }
        }
    }
}

impl Iterator for Inputs {
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        loop {
            if let Some(i) = self.ready.pop_front() {
                return Some(i);
            }
            match self.stack.pop()? {
                Pending::Arg(a) => self.expand_arg(a),
                Pending::Dir(d) => self.expand_dir(&d),
                Pending::Lines { label, mut lines } => match lines.next() {
                    None => {}
                    Some(Ok(line)) => {
                        let t = line.trim().to_owned();
                        self.stack.push(Pending::Lines { label, lines });
                        if !t.is_empty() && !t.starts_with('#') {
                            // A list names files or URLs; a directory in a list expands too.
                            self.expand_arg(t);
                        }
                    }
                    Some(Err(e)) => self.ready.push_back(Input::Broken {
                        reason: format!("cannot read list: {e}"),
                        label,
                    }),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_dirs_sorted_recursively_lists_and_urls() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("b/inner")).unwrap();
        for f in ["a.jpg", "c.png", "b/z.jpg", "b/inner/y.jpg", ".hidden.jpg"] {
            fs::write(root.join(f), b"x").unwrap();
        }
        let list = root.join("list.txt");
        fs::write(
            &list,
            format!(
                "# comment\n\nhttps://example.test/i.jpg\n{}\n",
                root.join("a.jpg").display()
            ),
        )
        .unwrap();
        let args = vec![
            root.join("b").display().to_string(),
            format!("@{}", list.display()),
            "@/nonexistent/list.txt".to_string(),
        ];
        let got: Vec<String> = Inputs::new(args).map(|i| i.label()).collect();
        let r = |p: &str| root.join(p).display().to_string();
        assert_eq!(
            got,
            vec![
                r("b/inner/y.jpg"),
                r("b/z.jpg"),
                "https://example.test/i.jpg".to_string(),
                r("a.jpg"),
                "@/nonexistent/list.txt".to_string(),
            ]
        );
        let all: Vec<Input> = Inputs::new([root.display().to_string()]).collect();
        assert_eq!(all.len(), 5, "{all:?}"); // a.jpg, b/inner/y.jpg, b/z.jpg, c.png, list.txt
        assert!(all.iter().all(|i| !i.label().contains(".hidden")));
        assert!(matches!(Input::parse("https://x/y.png"), Input::Url(_)));
    }
}
