//! Reading an input file whole, never more than a limit, and never from anything but a
//! regular file.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// Reads the regular file at `path` whole, failing when it holds more than `limit` bytes.
///
/// The file is opened without blocking (a FIFO opened for reading would otherwise wait for
/// a writer), and the opened handle's metadata must say "regular file": a FIFO, a device
/// such as `/dev/zero`, a socket or a directory is refused without a single byte read,
/// and a file swapped for one of them after an earlier check is caught too. The read
/// itself stops after `limit + 1` bytes, so a file that grows while it is read cannot make
/// it unbounded either. Errors are [`io::ErrorKind::InvalidInput`] for a file that is not
/// regular and [`io::ErrorKind::FileTooLarge`] for one over the limit.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused: {}, not a regular file", file_kind(&meta)),
        ));
    }
    let too_large = |len: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{len} bytes is over the {limit}-byte limit"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    // The size said now is a hint for the buffer, not a bound on the read.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK changes nothing for the reads of a regular file.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).open(path)
}

/// What a file that is not a regular file is, in words for an error message.
pub(crate) fn file_kind(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_dir() {
        return "a directory";
    }
    if ft.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    if ft.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_up_to_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap(), b"12345");
        let e = read_bounded(&p, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("4-byte limit"), "{e}");
        assert_eq!(
            read_bounded(&d.path().join("missing"), 5)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        let e = read_bounded(d.path(), 5).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_reading() {
        // /dev/zero never ends: reading it at all would fill memory.
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("character device"), "{e}");
        // A FIFO without a writer: opening it for reading would block forever.
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let e = read_bounded(&fifo, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    /// A regular file that cannot be read (even by root) is an error, not a panic.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_unreadable_regular_file_is_an_error() {
        // Address 0 of this process is not mapped: reading it fails with EIO.
        assert!(read_bounded(Path::new("/proc/self/mem"), 1 << 20).is_err());
    }

    /// A file whose size says less than it holds (as a file that grows after a size
    /// check would) is still read no further than the limit.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_read_is_bounded_whatever_the_size_said() {
        let p = Path::new("/proc/self/status"); // size 0, about 1 KiB of text
        assert_eq!(std::fs::metadata(p).unwrap().len(), 0);
        let e = read_bounded(p, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(read_bounded(p, 1 << 20).unwrap().len() > 100);
    }
}
