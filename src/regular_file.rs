//! Opening a file a user named: a regular file only, read no further than
//! the size it had when it was opened.
//!
//! A named pipe would block a reader forever and `/dev/zero` never ends, so
//! every reader of a user's file (movies, trees, checkpoints, models,
//! configs, lists, tokens) opens it here. The path is looked up first, so a
//! device is refused before it is opened (opening one can have effects);
//! the file is then opened without blocking and checked again on the handle,
//! so what was swapped in between is refused too. Symlinks to regular files
//! are followed: trees are often linked across disks.

use std::fs::{File, FileType};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// An opened regular file and its size at opening.
#[derive(Debug)]
pub struct Regular {
    pub file: File,
    pub len: u64,
}

/// Opens `path` for reading if it is a regular file (or a symlink to one);
/// otherwise an `InvalidInput` error that says what it is instead.
pub fn open(path: &Path) -> io::Result<Regular> {
    let before = std::fs::metadata(path)?;
    refuse_unless_regular(path, before.file_type())?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    refuse_unless_regular(path, meta.file_type())?;
    clear_nonblocking(&file)?;
    Ok(Regular {
        file,
        len: meta.len(),
    })
}

/// The whole file, at most the size it had when opened.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let regular = open(path)?;
    regular.read_all()
}

/// The whole file as UTF-8 text, at most the size it had when opened.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

impl Regular {
    /// The file's bytes up to its size at opening (fewer if it shrank).
    pub fn read_all(self) -> io::Result<Vec<u8>> {
        let capacity = usize::try_from(self.len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut bytes = Vec::with_capacity(capacity);
        self.file.take(self.len).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The file's bytes, mapped read-only (a copy of tens of megabytes
    /// saved per movie). An empty file cannot be mapped: check `len` first.
    ///
    /// A file truncated by another process while mapped would fault on
    /// access; lgss replaces files (temp file, then rename) rather than
    /// rewriting them in place.
    pub fn map(&self) -> io::Result<memmap2::Mmap> {
        // SAFETY: the mapping is only read, and regular files only (see above).
        unsafe { memmap2::MmapOptions::new().len(self.len as usize).map(&self.file) }
    }
}

fn refuse_unless_regular(path: &Path, kind: FileType) -> io::Result<()> {
    if kind.is_file() {
        return Ok(());
    }
    let what = describe(kind);
    let what = match std::fs::read_link(path) {
        Ok(target) => format!("a symbolic link to {what} ({})", target.display()),
        Err(_) => what.to_string(),
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file"),
    ))
}

/// What a file that is not a regular file is, in words.
pub fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Reads block again once the file is known to be regular (the flag only
/// kept the open of a FIFO from waiting for a writer).
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(path: &Path) -> String {
        match open(path) {
            Ok(_) => panic!("{} was opened", path.display()),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn special_files_are_refused_at_once_by_kind() {
        let dir = std::env::temp_dir().join(format!("lgss-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe.npy");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string naming a new path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(refusal(&fifo), "a named pipe (FIFO), not a regular file");
        let zero = dir.join("zero.npy");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(
            refusal(&zero),
            "a symbolic link to a character device (/dev/zero), not a regular file"
        );
        assert_eq!(refusal(&dir), "a directory, not a regular file");
        let sock = dir.join("sock.pkl");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(refusal(&sock), "a socket, not a regular file");

        let file = dir.join("real.txt");
        std::fs::write(&file, b"abc").unwrap();
        let link = dir.join("link.txt");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link).unwrap(), b"abc");
        assert_eq!(read_to_string(&file).unwrap(), "abc");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
