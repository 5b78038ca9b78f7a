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
    #[error("refusing {path}: it is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("cannot check {path}: {}", crate::error::plain(source))]
    Io { path: PathBuf, source: io::Error },
}

/// Opens `path` after checking it; `Ok(None)` when it does not exist.
pub fn open_trusted(path: &Path) -> Result<Option<File>, TrustError> {
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
    let file = match OpenOptions::new()
        .read(true)
        // a FIFO or device must not block or be touched by opening it
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&real)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(TrustError::NotRegular {
            path: path.to_owned(),
        });
    }
    check(path, "file", &real, &meta)?;
    Ok(Some(file))
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
    fn system_files_pass() {
        // root-owned, 0644, in root-owned 0755 directories: readable by anyone
        assert!(open_trusted(Path::new("/etc/passwd")).unwrap().is_some());
    }
}
