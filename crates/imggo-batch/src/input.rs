//! What a batch is made of: files, directories, list files, stdin and URLs, expanded lazily
//! so that a million inputs never sit in memory at once.
//!
//! Hostile inputs each become one [`Input::Broken`] (one failed result line) instead of a
//! hang, a loop or a silent loss:
//!
//! - FIFOs, sockets and devices, named directly or found in a directory, are refused
//!   without being opened (opening a FIFO waits for a writer; a device may never end).
//! - Symbolic links are followed, to files and to directories, including links that
//!   lead out of the tree being walked. A link to a directory that is already on the
//!   current walk path (`a -> .`, `b -> ..`), found by its (device, inode), is a loop and
//!   is skipped without a line: every file is still reached once through the real path.
//!   A dangling link, or a directory that cannot be read, is one broken input.
//! - File names that are not valid UTF-8 are processed like any other, with a lossless
//!   label (see [`path_label`]).
//! - List files (`@list.txt`) are read as bytes, a line at a time: a line that is not
//!   valid UTF-8, or longer than [`MAX_LIST_LINE`] bytes, is one broken input, and the
//!   lines after it are still read. A list may be a regular file or a pipe (`@<(cmd)`),
//!   not a device. A list that names itself, directly or through other lists, is refused
//!   where it is named again.
//! - Files that cannot be read fail when the pipeline reads them
//!   ([`crate::read_bounded`]), each with its own failed line.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::read::file_kind;

/// One item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// A local image file.
    File(PathBuf),
    /// An image URL: sent to the API by URL, never downloaded here.
    Url(String),
    /// An input that could not even be listed (unreadable directory or list file, a line
    /// of a list that is not text, a FIFO or device); it becomes one failed result line.
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

    /// The text that names this input in result lines (and keys `--resume`): a URL as
    /// given, a path as [`path_label`] writes it.
    pub fn label(&self) -> String {
        match self {
            Self::File(p) => path_label(p),
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

/// The label of a path, lossless: its text as is, except that a backslash is written
/// `\\` and each byte that is not part of valid UTF-8 is written `\xHH` (two lower-case
/// hex digits). A UTF-8 name without backslashes is its own label; [`label_bytes`] turns
/// any label back into the exact bytes of the name.
pub fn path_label(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_encoded_bytes())
}

/// Undoes [`path_label`]: the bytes of the name a label stands for, or `None` for text
/// that no name labels (a lone backslash, `\x` without two hex digits).
pub fn label_bytes(label: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(label.len());
    let mut rest = label.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', hi, lo, tail @ ..] => {
                let hex = |c: u8| (c as char).to_digit(16);
                out.push((hex(*hi)? * 16 + hex(*lo)?) as u8);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(out)
}

fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The longest line of a list file taken (64 KiB): a longer one is one broken input, and
/// reading goes on after it without holding it in memory.
pub const MAX_LIST_LINE: usize = 64 * 1024;

/// (device, inode): what a loop or a recursive list is recognised by.
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(meta: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Metadata) -> Option<FileId> {
    None
}

/// The directories on the walk path above an entry, innermost first.
struct Ancestors {
    id: Option<FileId>,
    parent: Option<Arc<Ancestors>>,
}

fn on_path(mut at: Option<&Arc<Ancestors>>, id: FileId) -> bool {
    while let Some(a) = at {
        if a.id == Some(id) {
            return true;
        }
        at = a.parent.as_ref();
    }
    false
}

enum Pending {
    /// A command-line argument or a list line: a path, a URL, `@list` or `-`.
    Arg(String),
    /// An entry found in a directory: always a path. `regular` when the directory said
    /// so (no need to look at it again).
    Walked {
        path: PathBuf,
        regular: bool,
        ancestors: Option<Arc<Ancestors>>,
        /// The directory argument it was found under.
        root: Arc<PathBuf>,
    },
    /// A list being read.
    Lines {
        label: String,
        id: Option<FileId>,
        reader: Box<dyn BufRead + Send>,
        number: u64,
    },
}

/// One line of a list file, as bytes.
enum Line {
    Text(Vec<u8>),
    TooLong,
    End,
}

/// Reads up to the next `\n` (or the end), keeping at most [`MAX_LIST_LINE`] bytes.
fn next_line(reader: &mut dyn BufRead) -> io::Result<Line> {
    let (mut line, mut too_long, mut any) = (Vec::new(), false, false);
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Text(line),
            });
        }
        any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let part = &buf[..newline.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + part.len() > MAX_LIST_LINE {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(part);
            }
        }
        let used = newline.map_or(buf.len(), |n| n + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            });
        }
    }
}

/// A lazy iterator over the inputs named on a command line:
///
/// - a file path → that file;
/// - a directory → every file under it, recursively, in sorted order (hidden entries
///   skipped; symbolic links followed, loops skipped);
/// - `@list.txt` → each non-empty line (a path or a URL; `#` starts a comment);
/// - `-` → the same, read from standard input;
/// - `http://…` / `https://…` → a URL input.
///
/// See the [module docs](self) for what happens to FIFOs, devices, loops, names that are
/// not UTF-8 and lists that are not text.
pub struct Inputs {
    stack: Vec<Pending>,
    ready: VecDeque<RoutedInput>,
    /// The list files being read, outermost first (a list's id leaves when it ends).
    open_lists: Vec<FileId>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("pending", &self.stack.len())
            .field("ready", &self.ready.len())
            .field("open_lists", &self.open_lists.len())
            .finish()
    }
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
            open_lists: Vec::new(),
        }
    }

    fn broken(&mut self, label: String, reason: String) {
        self.ready
            .push_back(RoutedInput::from(Input::Broken { label, reason }));
    }

    /// The same inputs, each with its route name (see [`RoutedInput`]).
    pub fn routed(self) -> RoutedInputs {
        RoutedInputs(self)
    }

    fn next_routed(&mut self) -> Option<RoutedInput> {
        loop {
            if let Some(i) = self.ready.pop_front() {
                return Some(i);
            }
            match self.stack.pop()? {
                Pending::Arg(a) => self.expand_arg(a),
                Pending::Walked {
                    path,
                    regular,
                    ancestors,
                    root,
                } => self.expand_walked(path, regular, ancestors, root),
                Pending::Lines {
                    label,
                    id,
                    reader,
                    number,
                } => self.read_list(label, id, reader, number),
            }
        }
    }

    /// A file found under the directory argument `root`: routed by its relative path.
    fn push_found(&mut self, path: PathBuf, root: Option<&Path>) {
        let route_name = root
            .and_then(|r| path.strip_prefix(r).ok())
            .map(relative_name);
        match route_name {
            Some(route_name) => self.ready.push_back(RoutedInput {
                input: Input::File(path),
                route_name,
            }),
            None => self.ready.push_back(RoutedInput::from(Input::File(path))),
        }
    }

    fn expand_arg(&mut self, arg: String) {
        if arg == "-" {
            self.stack.push(Pending::Lines {
                label: "-".into(),
                id: None,
                reader: Box::new(BufReader::new(io::stdin())),
                number: 0,
            });
        } else if let Some(list) = arg.strip_prefix('@') {
            self.open_list(list, &arg);
        } else {
            match Input::parse(&arg) {
                Input::File(p) => match fs::metadata(&p) {
                    Ok(meta) => self.expand_path(p, &meta, None, None),
                    // A missing file fails when it is read, like any unreadable one.
                    Err(_) => self.push_found(p, None),
                },
                url => self.ready.push_back(RoutedInput::from(url)),
            }
        }
    }

    fn open_list(&mut self, list: &str, arg: &str) {
        let opened = File::open(list).and_then(|f| {
            let meta = f.metadata()?;
            Ok((f, meta))
        });
        let (file, meta) = match opened {
            Ok(x) => x,
            Err(e) => return self.broken(arg.into(), format!("cannot read list file {list}: {e}")),
        };
        let ft = meta.file_type();
        if !ft.is_file() && !is_fifo(&meta) {
            let kind = file_kind(&meta);
            return self.broken(
                arg.into(),
                format!("refused list file {list}: {kind}, not a regular file or a pipe"),
            );
        }
        let id = file_id(&meta);
        if let Some(id) = id {
            if self.open_lists.contains(&id) {
                return self.broken(
                    arg.into(),
                    format!(
                        "refused list file {list}: it is already being read (a list that \
                         names itself, directly or through another list)"
                    ),
                );
            }
            self.open_lists.push(id);
        }
        self.stack.push(Pending::Lines {
            label: arg.into(),
            id,
            reader: Box::new(BufReader::new(file)),
            number: 0,
        });
    }

    /// A path that exists, with its metadata (links followed).
    fn expand_path(
        &mut self,
        path: PathBuf,
        meta: &Metadata,
        ancestors: Option<Arc<Ancestors>>,
        root: Option<Arc<PathBuf>>,
    ) {
        if meta.is_dir() {
            self.expand_dir(path, meta, ancestors, root);
        } else if meta.is_file() {
            self.push_found(path, root.as_deref().map(PathBuf::as_path));
        } else {
            let kind = file_kind(meta);
            self.broken(
                path_label(&path),
                format!("refused: {kind}, not a regular file (not opened)"),
            );
        }
    }

    fn expand_dir(
        &mut self,
        dir: PathBuf,
        meta: &Metadata,
        ancestors: Option<Arc<Ancestors>>,
        root: Option<Arc<PathBuf>>,
    ) {
        let id = file_id(meta);
        if id.is_some_and(|id| on_path(ancestors.as_ref(), id)) {
            // A link back to a directory being walked: its files come through the real path.
            return;
        }
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => return self.broken(path_label(&dir), format!("cannot read directory: {e}")),
        };
        let mut found = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    if e.file_name().as_encoded_bytes().starts_with(b".") {
                        continue;
                    }
                    let regular = e.file_type().is_ok_and(|t| t.is_file());
                    found.push((e.path(), regular));
                }
                Err(e) => self.broken(
                    path_label(&dir),
                    format!("cannot read a directory entry: {e}"),
                ),
            }
        }
        found.sort();
        let here = Some(Arc::new(Ancestors {
            id,
            parent: ancestors,
        }));
        // The directory argument: entries are routed by their path relative to it.
        let root = root.unwrap_or_else(|| Arc::new(dir.clone()));
        // Files and subdirectories interleave in sorted order: push in reverse so the
        // smallest name comes off the stack first.
        for (path, regular) in found.into_iter().rev() {
            self.stack.push(Pending::Walked {
                path,
                regular,
                ancestors: here.clone(),
                root: root.clone(),
            });
        }
    }

    fn expand_walked(
        &mut self,
        path: PathBuf,
        regular: bool,
        ancestors: Option<Arc<Ancestors>>,
        root: Arc<PathBuf>,
    ) {
        if regular {
            return self.push_found(path, Some(&root));
        }
        // A directory, a link (followed here) or a special file.
        match fs::metadata(&path) {
            Ok(meta) => self.expand_path(path, &meta, ancestors, Some(root)),
            Err(e) => {
                let what = if fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                    "dangling symbolic link"
                } else {
                    "cannot read"
                };
                self.broken(path_label(&path), format!("{what}: {e}"));
            }
        }
    }

    /// Reads the next line of the list on top of the stack.
    fn read_list(
        &mut self,
        label: String,
        id: Option<FileId>,
        mut reader: Box<dyn BufRead + Send>,
        number: u64,
    ) {
        let number = number + 1;
        let line = match next_line(&mut *reader) {
            Ok(Line::Text(bytes)) => Ok(bytes),
            Ok(Line::TooLong) => Err((
                format!("{label}:{number}"),
                format!("line {number} of {label} is longer than {MAX_LIST_LINE} bytes"),
            )),
            Ok(Line::End) => return self.close_list(id),
            Err(e) => {
                self.close_list(id);
                return self.broken(label, format!("cannot read list: {e}"));
            }
        };
        let text = line.and_then(|line| match std::str::from_utf8(line.trim_ascii()) {
            Ok(t) => Ok(t.trim().to_owned()),
            Err(_) => Err((
                escape_bytes(line.trim_ascii()),
                format!("line {number} of {label} is not valid UTF-8"),
            )),
        });
        // The rest of the list stays on the stack: a bad line never drops the ones after it.
        self.stack.push(Pending::Lines {
            label,
            id,
            reader,
            number,
        });
        match text {
            Err((input, why)) => self.broken(input, why),
            // A list names files or URLs; a directory or a list in a list expands too.
            Ok(text) if !text.is_empty() && !text.starts_with('#') => self.expand_arg(text),
            Ok(_) => {}
        }
    }

    fn close_list(&mut self, id: Option<FileId>) {
        if id.is_some() {
            // Lists nest: the one ending is the innermost still open.
            self.open_lists.pop();
        }
    }
}

#[cfg(unix)]
fn is_fifo(meta: &Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &Metadata) -> bool {
    false
}

impl Iterator for Inputs {
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        self.next_routed().map(|r| r.input)
    }
}

/// An input and the name `--route` globs are matched against:
///
/// - a file found under a directory argument: its path relative to that directory, with
///   `/` between components (`2024/invoice-1.jpg`);
/// - a file named directly (or in a list): its file name;
/// - a URL: its path without the leading `/`, the query and the fragment
///   (`scans/invoice-1.jpg` for `https://host/scans/invoice-1.jpg?x=1`);
/// - a broken input: its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedInput {
    /// The input.
    pub input: Input,
    /// Its route name.
    pub route_name: String,
}

impl From<Input> for RoutedInput {
    /// The route name of an input not found under a directory argument.
    fn from(input: Input) -> Self {
        let route_name = match &input {
            Input::File(p) => p
                .file_name()
                .map_or_else(|| path_label(p), |n| escape_bytes(n.as_encoded_bytes())),
            Input::Url(u) => url_path(u),
            Input::Broken { label, .. } => label.clone(),
        };
        Self { input, route_name }
    }
}

/// [`Inputs`] with the route name of each input: what [`Inputs::routed`] returns.
#[derive(Debug)]
pub struct RoutedInputs(Inputs);

impl Iterator for RoutedInputs {
    type Item = RoutedInput;

    fn next(&mut self) -> Option<RoutedInput> {
        self.0.next_routed()
    }
}

/// A relative path as a route name: its components joined by `/`, each written like a
/// [`path_label`].
fn relative_name(rel: &Path) -> String {
    rel.components()
        .map(|c| escape_bytes(c.as_os_str().as_encoded_bytes()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of a URL: what follows the host and its `/`, without query or fragment.
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.find('/') {
        Some(i) => rest[i + 1..].to_owned(),
        None => String::new(),
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

    #[cfg(unix)]
    #[test]
    fn fifos_sockets_and_devices_are_refused_without_opening() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::write(root.join("a.jpg"), b"x").unwrap();
        let fifo = root.join("b-pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let _socket = std::os::unix::net::UnixListener::bind(root.join("c-socket")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("d-zero")).unwrap();
        let got: Vec<Input> = Inputs::new([
            root.display().to_string(),
            fifo.display().to_string(),
            "/dev/null".to_string(),
        ])
        .collect();
        let reason = |i: &Input| match i {
            Input::Broken { reason, .. } => reason.clone(),
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[0], Input::File(root.join("a.jpg")));
        assert!(reason(&got[1]).contains("FIFO"), "{got:?}");
        assert!(reason(&got[2]).contains("socket"), "{got:?}");
        assert!(reason(&got[3]).contains("character device"), "{got:?}");
        assert!(reason(&got[4]).contains("FIFO"), "{got:?}");
        assert!(reason(&got[5]).contains("character device"), "{got:?}");
        assert_eq!(got[1].label(), fifo.display().to_string());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end_and_links_out_of_the_tree_are_followed() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("in");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(d.path().join("out")).unwrap();
        fs::write(root.join("x.jpg"), b"x").unwrap();
        fs::write(root.join("sub/y.jpg"), b"y").unwrap();
        fs::write(d.path().join("out/o.jpg"), b"o").unwrap();
        symlink(".", root.join("a")).unwrap();
        symlink(".", root.join("b")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        symlink("../out", root.join("z-out")).unwrap();
        symlink("x.jpg", root.join("w.jpg")).unwrap();
        symlink("missing.jpg", root.join("v.jpg")).unwrap();
        let got: Vec<Input> = Inputs::new([root.display().to_string()])
            .take(1000)
            .collect();
        let r = |p: &str| root.join(p).display().to_string();
        let labels: Vec<String> = got.iter().map(Input::label).collect();
        assert_eq!(
            labels,
            vec![
                r("sub/y.jpg"),
                r("v.jpg"),
                r("w.jpg"),
                r("x.jpg"),
                r("z-out/o.jpg")
            ]
        );
        assert!(
            matches!(&got[1], Input::Broken { reason, .. } if reason.contains("dangling")),
            "{got:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn names_that_are_not_utf8_keep_their_bytes_and_a_lossless_label() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9 \\x41.jpg");
        fs::write(d.path().join(name), b"x").unwrap();
        let got: Vec<Input> = Inputs::new([d.path().display().to_string()]).collect();
        assert_eq!(got, vec![Input::File(d.path().join(name))]);
        let label = got[0].label();
        assert!(label.ends_with("caf\\xe9 \\\\x41.jpg"), "{label}");
        assert!(!label.contains('\u{fffd}'));
        assert_eq!(
            label_bytes(&label).unwrap(),
            d.path().join(name).as_os_str().as_bytes()
        );
        // UTF-8 names without backslashes are their own labels.
        assert_eq!(path_label(Path::new("dir/é.jpg")), "dir/é.jpg");
        assert_eq!(label_bytes("dir/é.jpg").unwrap(), "dir/é.jpg".as_bytes());
        assert_eq!(label_bytes("a\\"), None);
        assert_eq!(label_bytes("a\\xZZ"), None);
    }

    #[test]
    fn a_list_line_that_is_not_utf8_fails_alone() {
        let d = tempfile::tempdir().unwrap();
        let list = d.path().join("list.txt");
        let mut text = b"https://example.test/1.jpg\n\xff\xfe.jpg\r\n".to_vec();
        text.extend_from_slice(format!("{}\n", "y".repeat(MAX_LIST_LINE + 1)).as_bytes());
        text.extend_from_slice(b"https://example.test/2.jpg\nhttps://example.test/3.jpg");
        fs::write(&list, text).unwrap();
        let arg = format!("@{}", list.display());
        let got: Vec<Input> = Inputs::new([arg.clone()]).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], Input::Url("https://example.test/1.jpg".into()));
        match &got[1] {
            Input::Broken { label, reason } => {
                assert_eq!(label, "\\xff\\xfe.jpg");
                assert!(
                    reason.contains("line 2") && reason.contains("UTF-8"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[2].label(), format!("{arg}:3"));
        assert_eq!(got[3], Input::Url("https://example.test/2.jpg".into()));
        assert_eq!(got[4], Input::Url("https://example.test/3.jpg".into()));
    }

    #[test]
    fn recursive_lists_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, me) = (
            d.path().join("a.txt"),
            d.path().join("b.txt"),
            d.path().join("me.txt"),
        );
        fs::write(&a, format!("@{}\nhttps://x.test/a.jpg\n", b.display())).unwrap();
        fs::write(&b, format!("@{}\nhttps://x.test/b.jpg\n", a.display())).unwrap();
        fs::write(&me, format!("@{}\n", me.display())).unwrap();
        let args = vec![
            format!("@{}", a.display()),
            format!("@{}", me.display()),
            format!("@{}", b.display()),
        ];
        let got: Vec<Input> = Inputs::new(args).take(100).collect();
        let refused = |i: &Input, list: &Path| {
            matches!(i, Input::Broken { label, reason }
                if *label == format!("@{}", list.display()) && reason.contains("already being read"))
        };
        assert_eq!(got.len(), 7, "{got:?}");
        assert!(refused(&got[0], &a), "{got:?}");
        assert_eq!(got[1].label(), "https://x.test/b.jpg");
        assert_eq!(got[2].label(), "https://x.test/a.jpg");
        assert!(refused(&got[3], &me), "{got:?}");
        // b, named again after it ended, is read again (that is not recursion); inside
        // it, a names b: refused.
        assert!(refused(&got[4], &b), "{got:?}");
        assert_eq!(got[5].label(), "https://x.test/a.jpg");
        assert_eq!(got[6].label(), "https://x.test/b.jpg");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_refused_as_lists() {
        let got: Vec<Input> = Inputs::new(["@/dev/zero"]).collect();
        assert!(
            matches!(&got[..], [Input::Broken { reason, .. }] if reason.contains("character device")),
            "{got:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_directories_are_one_broken_input() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let locked = d.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::write(locked.join("a.jpg"), b"x").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(&locked).is_ok() {
            // Running as root: permissions do not stop a read; nothing to test here.
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
            return;
        }
        let got: Vec<Input> = Inputs::new([d.path().display().to_string()]).collect();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            matches!(&got[..], [Input::Broken { reason, .. }] if reason.contains("cannot read directory")),
            "{got:?}"
        );
    }

    #[test]
    fn route_names() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("in");
        fs::create_dir_all(root.join("2024")).unwrap();
        fs::write(root.join("a.jpg"), b"x").unwrap();
        fs::write(root.join("2024/invoice-1.jpg"), b"y").unwrap();
        let file = root.join("a.jpg").display().to_string();
        let got: Vec<(Input, String)> = Inputs::new([
            root.display().to_string(),
            file.clone(),
            "https://h.example/scans/r-1.jpg?sig=x".to_string(),
        ])
        .routed()
        .map(|r| (r.input, r.route_name))
        .collect();
        let names: Vec<&str> = got.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            ["2024/invoice-1.jpg", "a.jpg", "a.jpg", "scans/r-1.jpg"]
        );
        assert_eq!(got[0].0, Input::File(root.join("2024/invoice-1.jpg")));
        assert_eq!(got[2].0, Input::File(PathBuf::from(file)));
    }
}
