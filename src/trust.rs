//! Is a config file safe to obey for a caller who is not root? Like sudo with
//! sudoers: the file and every directory above it must be owned by root and
//! writable by nobody else, and the checks are made on the opened file, so
//! there is no gap between check and use.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("refusing {path}: {what} {shown} must be owned by root (it is owned by uid {uid}); chown root:root {shown}")]
    NotRootOwned {
        path: PathBuf,
        what: &'static str,
        shown: String,
        uid: u32,
    },
    #[error("refusing {path}: {what} {shown} is writable by {by}; chmod go-w {shown}")]
    Writable {
        path: PathBuf,
        what: &'static str,
        shown: String,
        by: &'static str,
    },
    #[error("refusing {path}: it is {what}, not a regular file")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("cannot check {path}: {}", crate::error::plain(source))]
    Io { path: PathBuf, source: io::Error },
}

/// Opens `path` after checking it (only a regular file, see [`open_regular`]);
/// `Ok(None)` when it does not exist.
pub fn open_trusted(path: &Path) -> Result<Option<(File, Metadata)>, TrustError> {
    let io_err = |source| TrustError::Io {
        path: path.to_owned(),
        source,
    };
    // Check the directories the file really lives in, not those of a link.
    let real = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(io_err)?;
        check(path, "directory", dir, &meta)?;
    }
    let (file, meta) = match open_regular(&real) {
        Ok(opened) => opened,
        Err(Opened::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(Opened::Io(e)) => return Err(io_err(e)),
        Err(Opened::NotRegular(what)) => {
            return Err(TrustError::NotRegular {
                path: path.to_owned(),
                what,
            })
        }
    };
    check(path, "file", &real, &meta)?;
    Ok(Some((file, meta)))
}

/// Why [`open_regular`] did not give a file.
#[derive(Debug)]
pub enum Opened {
    Io(io::Error),
    /// What it is instead ("a FIFO", "a directory", ...).
    NotRegular(&'static str),
}

/// Opens a policy file for reading, whole or not at all: only a regular file.
/// A FIFO would block the open (or the read) until someone writes to it, and
/// opening a device can act on the device, so the path is looked at first
/// and anything else is refused without being opened; the flags keep even a
/// file swapped in after that look from blocking the open or becoming the
/// controlling terminal, and the opened file is checked again (fstat).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), Opened> {
    let meta = std::fs::metadata(path).map_err(Opened::Io)?;
    if !meta.is_file() {
        return Err(Opened::NotRegular(kind(&meta)));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(Opened::Io)?;
    let meta = file.metadata().map_err(Opened::Io)?;
    if !meta.is_file() {
        return Err(Opened::NotRegular(kind(&meta)));
    }
    Ok((file, meta))
}

/// Reads an opened regular file whole: `Ok(None)` when it holds more than
/// `max` bytes. Never truncated: the size is checked before reading and again
/// by what the read returned, since the file can grow in between.
pub fn read_whole(mut file: File, meta: &Metadata, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    if meta.len() > max {
        return Ok(None);
    }
    // Sized from the file so that it is read in one go (plus the read that
    // sees the end).
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    (&mut file).take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// "a FIFO", "a directory", ... for refusals.
pub fn kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

fn check(path: &Path, what: &'static str, at: &Path, meta: &Metadata) -> Result<(), TrustError> {
    let shown = at.display().to_string();
    if meta.uid() != 0 {
        return Err(TrustError::NotRootOwned {
            path: path.to_owned(),
            what,
            shown,
            uid: meta.uid(),
        });
    }
    let mode = meta.mode();
    let by = if mode & 0o002 != 0 {
        "others"
    } else if mode & 0o020 != 0 {
        "its group"
    } else {
        return Ok(());
    };
    Err(TrustError::Writable {
        path: path.to_owned(),
        what,
        shown,
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_file_is_none() {
        assert!(open_trusted(Path::new("/nonexistent/kvmnet.toml"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn world_writable_tmp_is_refused() {
        // /tmp is root-owned but writable by others (sticky or not, a user
        // could have planted the file there)
        let dir = std::env::temp_dir().join(format!("kvmnet-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("kvmnet.toml");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = open_trusted(&f);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("writable by others") || e.contains("must be owned by root"),
            "{e}"
        );
    }

    #[test]
    fn only_regular_files_are_opened_and_read_whole_or_refused() {
        let dir = std::env::temp_dir().join(format!("kvmnet-trust-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "12345").unwrap();
        // a FIFO without a writer: refused at once (an open would block)
        let kinds: Vec<_> = [fifo.as_path(), Path::new("/dev/null"), dir.as_path()]
            .iter()
            .map(|p| match open_regular(p) {
                Err(Opened::NotRegular(what)) => what,
                other => panic!("{p:?}: {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["a FIFO", "a character device", "a directory"]);
        let read = |max| {
            let (f, meta) = open_regular(&file).unwrap();
            read_whole(f, &meta, max).unwrap()
        };
        assert_eq!(read(5).as_deref(), Some(&b"12345"[..]));
        assert_eq!(read(4), None);
        // grown after the size was taken: still refused, not cut
        let stale = std::fs::metadata("/dev/null").unwrap();
        let (f, _) = open_regular(&file).unwrap();
        assert_eq!(read_whole(f, &stale, 4).unwrap(), None);
        let r = open_trusted(&fifo);
        std::fs::remove_dir_all(&dir).unwrap();
        // /tmp is not root's alone: refused for that, or for the FIFO
        assert!(r.is_err());
    }

    #[test]
    fn system_files_pass() {
        // root-owned, 0644, in root-owned 0755 directories: readable by anyone
        assert!(open_trusted(Path::new("/etc/passwd")).unwrap().is_some());
    }
}
