//! Is a file safe to obey? Like sudo with sudoers: the file and every
//! directory above it must pass [`only_root_can_change`], the one rule kvmnet
//! has for this. The runtime applies it to the config ([`open_trusted`], on
//! the opened file, so there is no gap between check and use) and to the
//! program sudo says it ran; `kvmnet check` applies the same rule, through
//! the same functions, to the config, the sudoers drop-in and the installed
//! binaries, so that what it reports is what the runtime would refuse.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A class of a mode's permission bits that is not the file's owner (the
/// owner is judged by who it is: root, or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Group,
    Others,
}

/// One permission of a class (execute is search for a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Read,
    Write,
    Execute,
}

/// The mode bit that gives `who` the permission `perm`: `mode_bit(Who::Group,
/// Perm::Write)` says what `0o020` only encodes.
pub const fn mode_bit(who: Who, perm: Perm) -> u32 {
    let bit = match perm {
        Perm::Read => 4,
        Perm::Write => 2,
        Perm::Execute => 1,
    };
    let shift = match who {
        Who::Group => 3,
        Who::Others => 0,
    };
    bit << shift
}

/// Why someone other than root could change a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    NotRootOwned {
        uid: u32,
    },
    /// `by`: "others" or "its group".
    Writable {
        by: &'static str,
    },
}

/// The rule: owned by root, and writable neither by others nor by its group.
///
/// - The owner can change the mode at will, so it must be root.
/// - Its group may not write it whatever the group is, group 0 included
///   (sudo and sudo-rs accept that one): group root can have members other
///   than uid 0, and those others are exactly kvmnet's callers.
/// - The sticky bit does not save a directory writable by others (/tmp): it
///   stops a user from removing other users' entries, not from adding their
///   own, and a name that does not exist yet (a config file that is absent)
///   can then be theirs, such as a symlink to a root-owned file they chose.
pub fn only_root_can_change(meta: &Metadata) -> Result<(), Problem> {
    let mode = meta.mode();
    if meta.uid() != 0 {
        Err(Problem::NotRootOwned { uid: meta.uid() })
    } else if mode & mode_bit(Who::Others, Perm::Write) != 0 {
        Err(Problem::Writable { by: "others" })
    } else if mode & mode_bit(Who::Group, Perm::Write) != 0 {
        Err(Problem::Writable { by: "its group" })
    } else {
        Ok(())
    }
}

/// A file or directory that fails [`only_root_can_change`]: what it is, where,
/// and why. Its text is the runtime's refusal, without the file asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distrust {
    /// "file" or "directory".
    pub what: &'static str,
    pub at: PathBuf,
    pub problem: Problem,
}

impl std::fmt::Display for Distrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, at) = (self.what, self.at.display());
        match self.problem {
            Problem::NotRootOwned { uid } => {
                write!(
                    f,
                    "{what} {at} must be owned by root (it is owned by uid {uid})"
                )
            }
            Problem::Writable { by } => write!(f, "{what} {at} is writable by {by}"),
        }
    }
}

impl Distrust {
    /// The command that makes it pass.
    pub fn fix(&self) -> String {
        let at = self.at.display();
        match self.problem {
            Problem::NotRootOwned { .. } => format!("chown root:root {at}"),
            Problem::Writable { .. } => format!("chmod go-w {at}"),
        }
    }
}

/// [`only_root_can_change`] for `meta`, which belongs to the `what` at `at`.
pub fn judge(what: &'static str, at: &Path, meta: &Metadata) -> Result<(), Distrust> {
    only_root_can_change(meta).map_err(|problem| Distrust {
        what,
        at: at.to_owned(),
        problem,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("refusing {path}: {why}; {}", why.fix())]
    Untrusted { path: PathBuf, why: Distrust },
    #[error("refusing {path}: it is {what}, not a regular file")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("cannot check {path}: {}", crate::os_error::describe(source))]
    Io { path: PathBuf, source: io::Error },
}

/// Opens `path` after checking it (only a regular file, see [`open_regular`]);
/// `Ok(None)` when it does not exist.
pub fn open_trusted(path: &Path) -> Result<Option<(File, Metadata)>, TrustError> {
    let Some(real) = resolve(path)? else {
        return Ok(None);
    };
    check_directories(path, &real)?;
    let (file, meta) = match open_regular(&real) {
        Ok(opened) => opened,
        Err(Opened::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(Opened::Io(e)) => return Err(io_error(path, e)),
        Err(Opened::NotRegular(what)) => {
            return Err(TrustError::NotRegular {
                path: path.to_owned(),
                what,
            })
        }
    };
    check_file(path, &real, &meta)?;
    Ok(Some((file, meta)))
}

/// [`open_trusted`]'s checks without opening (any kind of file): its
/// metadata, `Ok(None)` when it does not exist.
pub fn check_path(path: &Path) -> Result<Option<Metadata>, TrustError> {
    let Some(real) = resolve(path)? else {
        return Ok(None);
    };
    check_directories(path, &real)?;
    let meta = match std::fs::metadata(&real) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    check_file(path, &real, &meta)?;
    Ok(Some(meta))
}

/// Every directory above `at` (each looked up as it stands, symlinks
/// followed) passes [`only_root_can_change`]; refusals name `path`. Checks
/// the directories a file really lives in when `at` is its resolved path.
pub fn check_directories(path: &Path, at: &Path) -> Result<(), TrustError> {
    for dir in at.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| io_error(path, e))?;
        judge("directory", dir, &meta).map_err(|why| TrustError::Untrusted {
            path: path.to_owned(),
            why,
        })?;
    }
    Ok(())
}

fn check_file(path: &Path, real: &Path, meta: &Metadata) -> Result<(), TrustError> {
    judge("file", real, meta).map_err(|why| TrustError::Untrusted {
        path: path.to_owned(),
        why,
    })
}

/// The path with every symlink resolved, so that the directories checked are
/// those the file really lives in; `None` when it does not exist.
fn resolve(path: &Path) -> Result<Option<PathBuf>, TrustError> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn io_error(path: &Path, source: io::Error) -> TrustError {
    TrustError::Io {
        path: path.to_owned(),
        source,
    }
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
    fn the_rule_spares_neither_group_0_nor_a_sticky_directory() {
        assert_eq!(mode_bit(Who::Group, Perm::Write), 0o020);
        assert_eq!(mode_bit(Who::Others, Perm::Execute), 0o001);
        let dir = std::env::temp_dir().join(format!("kvmnet-trust-rule-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, "").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let judged = |mode: u32, uid: u32| {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&f, Some(uid), Some(0)).unwrap();
            only_root_can_change(&std::fs::metadata(&f).unwrap())
        };
        let verdicts = [
            judged(0o644, me),
            // group 0: still a group, whose members need not be root
            judged(0o664, me),
            judged(0o646, me),
            // the sticky bit changes nothing
            judged(0o1777, me),
            judged(0o644, 4242),
        ];
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(me, 0, "this test chowns files: run it as root");
        let others = Err(Problem::Writable { by: "others" });
        assert_eq!(
            verdicts,
            [
                Ok(()),
                Err(Problem::Writable { by: "its group" }),
                others,
                others,
                Err(Problem::NotRootOwned { uid: 4242 })
            ]
        );
    }

    #[test]
    fn the_refusal_is_the_distrust_and_its_fix() {
        let why = Distrust {
            what: "directory",
            at: PathBuf::from("/etc/kvmnet"),
            problem: Problem::NotRootOwned { uid: 1000 },
        };
        assert_eq!(why.fix(), "chown root:root /etc/kvmnet");
        let e = TrustError::Untrusted {
            path: PathBuf::from("/etc/kvmnet/kvmnet.toml"),
            why,
        };
        assert_eq!(
            e.to_string(),
            "refusing /etc/kvmnet/kvmnet.toml: directory /etc/kvmnet must be owned by root (it is owned by uid 1000); chown root:root /etc/kvmnet"
        );
    }

    #[test]
    fn system_files_pass() {
        // root-owned, 0644, in root-owned 0755 directories: readable by anyone
        assert!(open_trusted(Path::new("/etc/passwd")).unwrap().is_some());
    }
}
