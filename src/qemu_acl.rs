//! QEMU's bridge ACL, `/etc/qemu/bridge.conf`, read the way qemu-bridge-helper
//! reads it (`parse_acl_file` in QEMU's qemu-bridge-helper.c), so that an
//! installation that worked with QEMU's helper keeps working, and stricter
//! wherever QEMU's reading could admit someone the file's author did not mean
//! to admit or lose a `deny`:
//!
//! - Bytes, not text: a name or comment that is not UTF-8 is read as QEMU
//!   reads it, never a reason to skip the file.
//! - A line is: leading whitespace skipped (space, \t, \n, \f, \r); empty
//!   or `#` lines ignored; the command ends at the first space, or when the
//!   line has none at the first tab; no space and no tab makes the file
//!   invalid; the argument is the rest with whitespace trimmed at both ends
//!   (so `allow br0 br1` names one bridge that cannot exist). `allow`/`deny`
//!   take `all` or a name; a name of 16 bytes or more makes the file invalid
//!   (CVE-2019-13164), an empty one matches no bridge. Any other command
//!   makes the file invalid. Deny by default; a deny anywhere beats any allow.
//! - An include that does not exist, or that the caller cannot read, is
//!   skipped (that is how sites give per-user ACLs with file permissions).
//!
//! Deliberately stricter than QEMU (each refuses everyone, with its reason):
//! - an error inside an include: QEMU keeps the lines before it and silently
//!   drops the rest of that include, `deny` lines included;
//! - any other failure to open or read a file (descriptors exhausted, I/O
//!   error, a symlink loop): QEMU takes it for an unreadable include, and
//!   loses its denies;
//! - a line longer than QEMU's 4095-byte line buffer: QEMU reads the rest of
//!   it as a line of its own, so text that looks like part of a comment
//!   becomes a rule;
//! - a NUL byte: QEMU ignores the rest of its line, which then means
//!   something else than it shows;
//! - a vertical tab outside a comment: QEMU before 5.0 reads it as a blank,
//!   later versions as part of a word;
//! - a FIFO, device or directory as the file or an include (QEMU blocks on a
//!   FIFO until someone writes to it, reads a directory as empty and a
//!   device as whatever it yields), a file over 64 KiB, includes nested more
//!   than 8 deep (QEMU follows a loop until it runs out of descriptors) or
//!   more than 256 files in all.
//!
//! And one deliberate difference: a relative `include` is resolved against
//! the directory of the file that includes it. QEMU resolves it against the
//! caller's working directory, so a user could start QEMU in a directory of
//! their own holding `allow all` under that name; kvmnet reads the file the
//! author of the ACL put next to it (what QEMU reads when started there).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::trust::Opened;

pub const DEFAULT_PATH: &str = "/etc/qemu/bridge.conf";
const MAX_DEPTH: usize = 8;
const MAX_FILES: usize = 256;
const MAX_FILE: u64 = 64 * 1024;
/// qemu-bridge-helper reads lines with `fgets` into 4096 bytes: at most 4095
/// bytes a time. A line of up to 4095 bytes before its newline is read whole.
const LINE_MAX: usize = 4095;
/// IFNAMSIZ: QEMU refuses names of this length or longer.
const IFNAMSIZ: usize = 16;
/// The vertical tab: blank to QEMU before 5.0 (isspace), part of the name or
/// command since (g_ascii_isspace), so `deny br0\v` denies br0 to one and
/// nothing to the other. A line that holds one is refused.
const VT: u8 = 0x0b;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    /// The name as bytes (QEMU compares bytes; Linux allows any but a few).
    Bridge(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub allow: bool,
    pub target: Target,
    /// "/etc/qemu/bridge.conf line 3"
    pub location: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QemuAclError {
    #[error("{location}: cannot parse {line:?}; QEMU's bridge ACL takes `allow BRIDGE`, `allow all`, `deny BRIDGE`, `deny all`, `include PATH` and `#` comments")]
    Syntax { location: String, line: String },
    #[error(
        "{location}: bridge name {name:?} is longer than 15 bytes; QEMU rejects such a file too"
    )]
    NameTooLong { location: String, name: String },
    #[error("{location}: the line is longer than {LINE_MAX} bytes; qemu-bridge-helper would read the rest of it as a line of its own, so it is refused: shorten it")]
    LineTooLong { location: String },
    #[error("{location}: the line holds a NUL byte; qemu-bridge-helper ignores what follows it, so it is refused: remove it")]
    Nul { location: String },
    #[error("{location}: the line holds a vertical tab (\\v), which QEMU versions read differently (blank before QEMU 5.0, part of the word since), so it is refused: remove it")]
    VerticalTab { location: String },
    #[error("{path}: includes nest deeper than {MAX_DEPTH} levels (an include loop?)")]
    TooDeep { path: String },
    #[error("{path}: more than {MAX_FILES} files are included in all (an include loop?)")]
    TooMany { path: String },
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("refusing {path}: it is {what}, not a regular file; the bridge ACL and its includes must be regular files")]
    NotRegular { path: String, what: &'static str },
    #[error("refusing {path}: {why}, and a bridge ACL that a user can change lets that user allow themselves any bridge; {}", why.fix())]
    Untrusted {
        path: String,
        why: crate::trust::Distrust,
    },
    #[error("refusing {path}: it is larger than {} KiB; a bridge ACL is a few lines", MAX_FILE / 1024)]
    TooLarge { path: String },
    #[error("cannot read {path} ({cause}), but user {uid} may be able to, and qemu-bridge-helper run by that user would obey its `deny` lines: refused rather than skipped; give kvmnet-bridge-helper a file capability (setcap cap_net_admin+ep), which reads as the user, or make the file unreadable to that user")]
    Hidden {
        path: String,
        cause: String,
        uid: u32,
    },
}

/// The entries of `path` and its includes, in order, as QEMU's helper run by
/// user `uid` with `groups` (its primary group included) would see them;
/// `Ok(None)` when the file does not exist (no QEMU ACL on this host).
///
/// QEMU's helper reads with the caller's credentials, and so does kvmnet when
/// the process has exactly those (a file-capability run). Otherwise (root
/// acting for a sudo user; a setuid run, which gave up its supplementary
/// groups) the process's own "permission denied" or success is not the
/// caller's: which files the caller may read is then worked out from the
/// permission bits, and where that cannot be told (an access ACL on the
/// file or a directory, a symbolic link or `..` on the way) a file kvmnet can
/// read counts only for its denies, and one it cannot read refuses everyone.
pub fn load(path: &Path, uid: u32, groups: &[u32]) -> Result<Option<Vec<Entry>>, QemuAclError> {
    Ok(load_traced(path, uid, groups)?.map(|(entries, _)| entries))
}

/// The files [`load`] read, and the includes it skipped because the caller
/// cannot read them: what `kvmnet check` judges by the trust rule, and what
/// it could not check as the user it runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Every file read, bridge.conf first, in the order read.
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
}

/// An include skipped because the caller cannot read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// "PATH (included at FILE line N)"
    pub shown: String,
    pub cause: String,
}

/// [`load`], with the [`Trace`] of what it read and skipped.
pub fn load_traced(
    path: &Path,
    uid: u32,
    groups: &[u32],
) -> Result<Option<(Vec<Entry>, Trace)>, QemuAclError> {
    read(path, uid, groups, crate::trust::check_directories)
}

/// How the directories a policy file lives in are judged: the trust rule,
/// except in unit tests, whose scratch directories sit under a world-writable
/// /tmp.
type DirRule = fn(&Path, &Path) -> Result<(), crate::trust::TrustError>;

fn read(
    path: &Path,
    uid: u32,
    groups: &[u32],
    dirs: DirRule,
) -> Result<Option<(Vec<Entry>, Trace)>, QemuAclError> {
    let mut r = Reader {
        uid,
        groups,
        same: same_credentials(uid, groups),
        dirs,
        trace: Trace::default(),
        out: Vec::new(),
    };
    match r.file(path, path.display().to_string(), 0, Sight::Full)? {
        Found::Missing => Ok(None),
        Found::Skipped(cause) => Err(QemuAclError::Read {
            path: path.display().to_string(),
            cause,
        }),
        Found::Read => Ok(Some((r.out, r.trace))),
    }
}

/// What bridge.conf says about `bridge`: `Some((allowed, entry))` for the
/// deciding entry (a deny anywhere wins), `None` when nothing matches.
pub fn decide<'a>(entries: &'a [Entry], bridge: &str) -> Option<(bool, &'a Entry)> {
    let matches = |e: &&Entry| match &e.target {
        Target::All => true,
        Target::Bridge(b) => b == bridge.as_bytes(),
    };
    if let Some(e) = entries.iter().filter(matches).find(|e| !e.allow) {
        return Some((false, e));
    }
    entries
        .iter()
        .filter(matches)
        .find(|e| e.allow)
        .map(|e| (true, e))
}

/// Which of a file's lines count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sight {
    Full,
    /// The caller may or may not be able to read it: its denies hold, its
    /// allows do not.
    DeniesOnly,
}

/// Could the caller read a file (QEMU's helper being the caller)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sees {
    Yes,
    No,
    Unknown,
}

enum Found {
    Read,
    Missing,
    /// Not read because the caller cannot read it; why.
    Skipped(String),
}

struct Reader<'a> {
    uid: u32,
    groups: &'a [u32],
    /// The process reads with exactly the caller's credentials.
    same: bool,
    dirs: DirRule,
    trace: Trace,
    out: Vec<Entry>,
}

impl Reader<'_> {
    /// Reads `path` (`shown` in messages) into `self.out`.
    fn file(
        &mut self,
        path: &Path,
        shown: String,
        depth: usize,
        sight: Sight,
    ) -> Result<Found, QemuAclError> {
        let read_err = |e: &std::io::Error| QemuAclError::Read {
            path: shown.clone(),
            cause: crate::os_error::describe(e),
        };
        let opened = match crate::trust::open_regular(path) {
            Ok(opened) => Ok(opened),
            Err(Opened::NotRegular(what)) => {
                return Err(QemuAclError::NotRegular { path: shown, what })
            }
            Err(Opened::Io(e)) => match e.raw_os_error() {
                // Nobody can read what is not there, QEMU's helper included.
                Some(libc::ENOENT | libc::ENOTDIR) => return Ok(Found::Missing),
                Some(libc::EACCES) => Err(e),
                // Anything else is a failure of this run, not the caller's
                // lack of permission: skipping it could drop a deny.
                _ => return Err(read_err(&e)),
            },
        };
        let sees = if self.same {
            if opened.is_ok() {
                Sees::Yes
            } else {
                Sees::No
            }
        } else {
            caller_sees(path, self.uid, self.groups)
        };
        let (file, meta) = match (opened, sees) {
            (Err(e), Sees::No) => return Ok(Found::Skipped(crate::os_error::describe(&e))),
            (Err(e), _) => {
                return Err(QemuAclError::Hidden {
                    path: shown,
                    cause: crate::os_error::describe(&e),
                    uid: self.uid,
                })
            }
            (Ok(_), Sees::No) => {
                return Ok(Found::Skipped(format!(
                    "user {} has no permission to read it",
                    self.uid
                )))
            }
            (Ok(opened), _) => opened,
        };
        let sight = if sees == Sees::Unknown {
            Sight::DeniesOnly
        } else {
            sight
        };
        // QEMU's helper obeys any file it can read; kvmnet's refuses one that
        // someone other than root could have written (the one trust rule, as
        // for kvmnet's own config), and the directories it lives in.
        let untrusted = |why| QemuAclError::Untrusted {
            path: shown.clone(),
            why,
        };
        crate::trust::judge("file", path, &meta).map_err(&untrusted)?;
        // The directories the file really lives in, symlinks resolved.
        let real = std::fs::canonicalize(path).map_err(|e| read_err(&e))?;
        (self.dirs)(path, &real).map_err(|e| match e {
            crate::trust::TrustError::Untrusted { why, .. } => untrusted(why),
            other => QemuAclError::Read {
                path: shown.clone(),
                cause: other.to_string(),
            },
        })?;
        self.trace.files.push(path.to_owned());
        if self.trace.files.len() > MAX_FILES {
            return Err(QemuAclError::TooMany { path: shown });
        }
        let text = crate::trust::read_whole(file, &meta, MAX_FILE)
            .map_err(|e| read_err(&e))?
            .ok_or_else(|| QemuAclError::TooLarge {
                path: shown.clone(),
            })?;
        self.parse(path, &text, depth, sight)?;
        Ok(Found::Read)
    }

    fn parse(
        &mut self,
        path: &Path,
        text: &[u8],
        depth: usize,
        sight: Sight,
    ) -> Result<(), QemuAclError> {
        for (i, raw) in text.split_inclusive(|b| *b == b'\n').enumerate() {
            let location = || format!("{} line {}", path.display(), i + 1);
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            if raw.len() > LINE_MAX {
                return Err(QemuAclError::LineTooLong {
                    location: location(),
                });
            }
            if raw.contains(&0) {
                return Err(QemuAclError::Nul {
                    location: location(),
                });
            }
            let line = trim_start(raw);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            if line.contains(&VT) {
                return Err(QemuAclError::VerticalTab {
                    location: location(),
                });
            }
            let syntax = || QemuAclError::Syntax {
                location: location(),
                line: String::from_utf8_lossy(raw).chars().take(80).collect(),
            };
            // QEMU: strchr(' '), and only when there is none strchr('\t'); so
            // in "allow\tbr0 x" the command is "allow\tbr0".
            let at = line
                .iter()
                .position(|b| *b == b' ')
                .or_else(|| line.iter().position(|b| *b == b'\t'))
                .ok_or_else(syntax)?;
            let (cmd, arg) = (&line[..at], trim_end(trim_start(&line[at + 1..])));
            if cmd != b"include" && arg.len() >= IFNAMSIZ {
                return Err(QemuAclError::NameTooLong {
                    location: location(),
                    name: String::from_utf8_lossy(arg).chars().take(40).collect(),
                });
            }
            match cmd {
                b"allow" | b"deny" => {
                    let allow = cmd == b"allow";
                    if allow && sight == Sight::DeniesOnly {
                        continue;
                    }
                    let target = if arg == b"all" {
                        Target::All
                    } else {
                        Target::Bridge(arg.to_vec())
                    };
                    self.out.push(Entry {
                        allow,
                        target,
                        location: location(),
                    });
                }
                // fopen("") fails: nothing to read (joining "" would name the
                // directory).
                b"include" if arg.is_empty() => {}
                b"include" => {
                    let arg = Path::new(OsStr::from_bytes(arg));
                    // Against the including file's directory, not the
                    // caller's working directory (see the module comment).
                    let inc: PathBuf = match path.parent() {
                        Some(dir) if arg.is_relative() => dir.join(arg),
                        _ => arg.to_owned(),
                    };
                    let shown = format!("{} (included at {})", inc.display(), location());
                    if depth + 1 > MAX_DEPTH {
                        return Err(QemuAclError::TooDeep { path: shown });
                    }
                    // Missing or unreadable by the caller: skipped, as QEMU
                    // skips it. Every other failure is an error (in `file`).
                    if let Found::Skipped(cause) =
                        self.file(&inc, shown.clone(), depth + 1, sight)?
                    {
                        self.trace.skipped.push(Skipped { shown, cause });
                    }
                }
                _ => return Err(syntax()),
            }
        }
        Ok(())
    }
}

/// g_ascii_isspace(), which qemu-bridge-helper uses since QEMU 5.0: not the
/// vertical tab, which C's isspace() (older QEMU) counts (see [`VT`]).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0c | b'\r')
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| is_space(**b)).count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|b| is_space(**b)).count();
    &s[..s.len() - n]
}

/// Does this process read files with exactly the caller's credentials?
fn same_credentials(uid: u32, groups: &[u32]) -> bool {
    if nix::unistd::geteuid().as_raw() != uid {
        return false;
    }
    let Ok(mine) = nix::unistd::getgroups() else {
        return false;
    };
    let mut mine: Vec<u32> = mine.into_iter().map(|g| g.as_raw()).collect();
    mine.push(nix::unistd::getegid().as_raw());
    mine.sort_unstable();
    mine.dedup();
    let mut theirs = groups.to_vec();
    theirs.sort_unstable();
    theirs.dedup();
    mine == theirs
}

/// Could user `uid` with `groups` open `path` for reading, by the permission
/// bits of every directory on the way and of the file? Walked from `/` down,
/// so that a directory the caller cannot search answers "no" even where this
/// process cannot look further; a symbolic link or `..` on the way makes the
/// walk one this cannot follow for certain: unknown.
fn caller_sees(path: &Path, uid: u32, groups: &[u32]) -> Sees {
    use std::path::Component;
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Sees::Unknown;
    }
    let n = path.components().count();
    let mut at = PathBuf::new();
    let mut seen = Sees::Yes;
    for (i, c) in path.components().enumerate() {
        at.push(c);
        let Ok(meta) = std::fs::symlink_metadata(&at) else {
            return Sees::Unknown;
        };
        if meta.file_type().is_symlink() {
            return Sees::Unknown;
        }
        let want = if i + 1 == n { 0o4 } else { 0o1 };
        match permits(&meta, has_access_acl(&at), uid, groups, want) {
            Sees::No => return Sees::No,
            Sees::Unknown => seen = Sees::Unknown,
            Sees::Yes => {}
        }
    }
    seen
}

/// The kernel's permission check (generic_permission) for a caller without
/// capabilities: the owner's bits for the owner, else the group's for a
/// member, else the others'. With an access ACL, users and groups named in
/// it and its mask decide for everyone but the owner: not worked out here.
fn permits(meta: &std::fs::Metadata, acl: bool, uid: u32, groups: &[u32], want: u32) -> Sees {
    let mode = meta.mode();
    let bits = if meta.uid() == uid {
        mode >> 6
    } else if acl {
        return Sees::Unknown;
    } else if groups.contains(&meta.gid()) {
        mode >> 3
    } else {
        mode
    };
    if bits & want == want {
        Sees::Yes
    } else {
        Sees::No
    }
}

/// Does `path` (not a symbolic link) carry a POSIX access ACL? Errors count
/// as yes.
fn has_access_acl(path: &Path) -> bool {
    !matches!(
        crate::sys::xattr::get(path, c"system.posix_acl_access", false, &mut []),
        Ok(None)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn parse(text: &[u8]) -> Result<Vec<Entry>, QemuAclError> {
        parse_as(text, Sight::Full)
    }

    fn parse_as(text: &[u8], sight: Sight) -> Result<Vec<Entry>, QemuAclError> {
        let mut r = Reader {
            uid: 4242,
            groups: &[],
            same: true,
            dirs: crate::trust::check_directories,
            trace: Trace::default(),
            out: Vec::new(),
        };
        r.parse(Path::new("/etc/qemu/bridge.conf"), text, 0, sight)
            .map(|()| r.out)
    }

    fn admits(e: &[Entry], bridge: &str) -> bool {
        matches!(decide(e, bridge), Some((true, _)))
    }

    /// A directory of its own under /tmp, removed on drop.
    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("kvmnet-qacl-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
        fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The trust rule for the directories below the scratch root; /tmp and
    /// above are world-writable or not this test's to judge.
    fn dirs_below_tmp(path: &Path, real: &Path) -> Result<(), crate::trust::TrustError> {
        let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        for dir in real.ancestors().skip(1).take_while(|d| *d != tmp) {
            let meta = std::fs::metadata(dir).unwrap();
            crate::trust::judge("directory", dir, &meta).map_err(|why| {
                crate::trust::TrustError::Untrusted {
                    path: path.to_owned(),
                    why,
                }
            })?;
        }
        Ok(())
    }

    fn load_as(p: &Path, uid: u32, groups: &[u32]) -> Result<Option<Vec<Entry>>, QemuAclError> {
        Ok(read(p, uid, groups, dirs_below_tmp)?.map(|(entries, _)| entries))
    }

    fn load_here(p: &Path) -> Result<Option<Vec<Entry>>, QemuAclError> {
        let me = nix::unistd::geteuid().as_raw();
        let mut groups: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        groups.push(nix::unistd::getegid().as_raw());
        load_as(p, me, &groups)
    }

    #[test]
    fn qemu_semantics() {
        let e = parse(b"# comment\n\nallow br0\nallow all\ndeny br-prod\n").unwrap();
        assert!(admits(&e, "br0"));
        assert_eq!(
            decide(&e, "br-x").unwrap().1.location,
            "/etc/qemu/bridge.conf line 4"
        );
        let (ok, why) = decide(&e, "br-prod").unwrap();
        assert!(!ok);
        assert_eq!(why.location, "/etc/qemu/bridge.conf line 5");
        assert_eq!(decide(&parse(b"allow br0\n").unwrap(), "br1"), None);
        // a deny beats an allow wherever each stands
        for text in [
            "allow br0\ndeny all\n",
            "deny br0\nallow br0\n",
            "allow br0\ndeny br0",
        ] {
            assert!(!admits(&parse(text.as_bytes()).unwrap(), "br0"), "{text}");
        }
        // `all` is a keyword only in full
        let e = parse(b"allow ALL\nallow all0\n").unwrap();
        assert!(!admits(&e, "br0") && admits(&e, "ALL"));
    }

    #[test]
    fn anything_else_is_an_error_with_the_line() {
        for bad in ["alow br0", "allow", "include", "permit all", "allow\tbr0 x"] {
            let e = parse(format!("allow x\n{bad}\n").as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("/etc/qemu/bridge.conf line 2: cannot parse"),
                "{e}"
            );
        }
        // no space and no tab: invalid, whatever other whitespace there is
        for bad in ["allow\r\n", "allow\x0cbr0\n", "deny\n"] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(QemuAclError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn whitespace_as_qemu_splits_it() {
        // CRLF, tabs, trailing and leading whitespace of every kind
        let e = parse(b" \t\x0callow\t\tbr0\t\x0c\r\n\tdeny br1 \r\n").unwrap();
        assert!(admits(&e, "br0"));
        assert!(!admits(&e, "br1"));
        // the command ends at the first space: "allow\tbr0" is not a command
        assert!(parse(b"allow\tbr0 \n").is_err());
        // the rest of the line is one name: it matches nothing
        let e = parse(b"allow br0 br1\nallow br2 # a comment\n").unwrap();
        assert!(!admits(&e, "br0") && !admits(&e, "br1") && !admits(&e, "br2"));
        // "allow " names the empty bridge: valid, admits nobody
        let e = parse(b"allow \ndeny\t\n").unwrap();
        assert_eq!(e.len(), 2);
        assert!(!admits(&e, "br0"));
        // a comment starts only at the first non-blank byte
        assert!(parse(b"  # allow all\n").unwrap().is_empty());
    }

    #[test]
    fn a_vertical_tab_refuses_the_file_except_in_a_comment() {
        for bad in [
            &b"allow all\ndeny br0\x0b\n"[..],
            b"\x0ballow br0\n",
            b"allow\x0bbr0\n",
            b"\x0b# comment\n",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("vertical tab"), "{e}");
        }
        assert!(parse(b" # a\x0bb\nallow br0\n").is_ok());
    }

    #[test]
    fn names_of_15_bytes_count_and_16_invalidate_the_file() {
        let e = parse(b"allow b23456789012345\n").unwrap();
        assert!(admits(&e, "b23456789012345"));
        for cmd in ["allow", "deny", "frobnicate"] {
            let e = parse(format!("{cmd} b234567890123456\n").as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("line 1: bridge name") && e.contains("longer than 15"),
                "{e}"
            );
        }
        // the length is counted after trimming
        assert!(parse(b"allow b23456789012345 \t \r\n").is_ok());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_not_skipped() {
        // a Latin-1 comment does not hide the deny after it
        let e = parse(b"allow all\n# caf\xe9\ndeny br1\n").unwrap();
        assert!(admits(&e, "br0") && !admits(&e, "br1"));
        let e = parse(b"deny br\xff\nallow br0\n").unwrap();
        assert_eq!(e[0].target, Target::Bridge(b"br\xff".to_vec()));
        assert!(admits(&e, "br0"));
        let e = parse(b"\xff\xfe br0\n").unwrap_err().to_string();
        assert!(e.contains("line 1: cannot parse"), "{e}");
    }

    #[test]
    fn a_line_longer_than_qemus_buffer_refuses_the_file() {
        // 4095 bytes: QEMU reads it whole
        let ok = format!("#{}\nallow br0\n", "x".repeat(LINE_MAX - 1));
        assert!(admits(&parse(ok.as_bytes()).unwrap(), "br0"));
        let ok = format!("allow br0{}\n", " ".repeat(LINE_MAX - 9));
        assert!(admits(&parse(ok.as_bytes()).unwrap(), "br0"));
        // one more and QEMU would take "allow all" for a line of its own
        let hidden = format!("#{}allow all\n", "x".repeat(LINE_MAX - 1));
        let e = parse(hidden.as_bytes()).unwrap_err();
        assert_eq!(
            e,
            QemuAclError::LineTooLong {
                location: "/etc/qemu/bridge.conf line 1".into()
            }
        );
        // without a final newline too
        let hidden = format!("allow br1\n#{}deny br1", "x".repeat(LINE_MAX));
        assert!(matches!(
            parse(hidden.as_bytes()),
            Err(QemuAclError::LineTooLong { .. })
        ));
    }

    #[test]
    fn a_nul_byte_refuses_the_file() {
        for text in [&b"allow br0\0junk\n"[..], b"allow all\n\0deny br0\n"] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("NUL byte"), "{e}");
        }
    }

    #[test]
    fn denies_only_sight_drops_allows_keeps_denies() {
        let e = parse_as(b"allow all\ndeny br1\n", Sight::DeniesOnly).unwrap();
        assert_eq!(e.len(), 1);
        assert!(!e[0].allow);
    }

    #[test]
    fn includes_nest_and_missing_or_unreadable_ones_are_skipped() {
        let d = Dir::new("nest");
        let inc = d.write("alice.conf", "allow br-alice\n");
        let main = d.write(
            "bridge.conf",
            format!(
                "include {}\ninclude {}/missing.conf\ninclude \ninclude /etc/passwd/x\n",
                inc.display(),
                d.0.display()
            ),
        );
        let e = load_here(&main).unwrap().unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].location.ends_with("alice.conf line 1"), "{e:?}");
        assert_eq!(
            load_here(Path::new("/nonexistent/bridge.conf")).unwrap(),
            None
        );
        // nested, with an empty include on the way
        d.write("b.conf", "deny br1\n");
        d.write("empty.conf", "");
        d.write(
            "a.conf",
            format!(
                "include {0}/empty.conf\ninclude {0}/b.conf\n",
                d.0.display()
            ),
        );
        d.write(
            "bridge.conf",
            format!("allow all\ninclude {}/a.conf\n", d.0.display()),
        );
        let e = load_here(&main).unwrap().unwrap();
        assert!(admits(&e, "br0") && !admits(&e, "br1"), "{e:?}");
    }

    #[test]
    fn unreadable_include_is_skipped_for_the_caller_it_is_hidden_from() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (files of other owners)");
        }
        let d = Dir::new("perm");
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = d.write("secret.conf", "deny br0\nallow br9\n");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&secret, Some(0), Some(4243)).unwrap();
        let main = d.write(
            "bridge.conf",
            format!("allow all\ninclude {}\n", secret.display()),
        );
        // This process (root, no DAC override needed: owner) can read it; user
        // 4242 cannot: skipped, as QEMU's helper run by 4242 skips it.
        let e = load_as(&main, 4242, &[4242]).unwrap().unwrap();
        assert!(admits(&e, "br0"), "{e:?}");
        // A member of group 4243 can: its deny holds and its allow counts.
        let e = load_as(&main, 4242, &[4242, 4243]).unwrap().unwrap();
        assert!(!admits(&e, "br0") && admits(&e, "br9"), "{e:?}");
        // The owner's bits decide for the owner, even when others may read.
        std::os::unix::fs::chown(&secret, Some(4242), Some(4243)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o044)).unwrap();
        let e = load_as(&main, 4242, &[4242, 4243]).unwrap().unwrap();
        assert!(admits(&e, "br0"), "{e:?}");
        // A directory the caller cannot search hides what is in it.
        let sub = d.0.join("private");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(sub.join("x.conf"), "deny br0\n").unwrap();
        d.write(
            "bridge.conf",
            format!("allow all\ninclude {}/x.conf\n", sub.display()),
        );
        assert!(admits(
            &load_as(&main, 4242, &[4242]).unwrap().unwrap(),
            "br0"
        ));
        // Through a symbolic link the walk cannot be checked: denies only.
        std::os::unix::fs::chown(&secret, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&secret, "deny br0\nallow br9\n").unwrap();
        std::os::unix::fs::symlink(&secret, d.0.join("link.conf")).unwrap();
        d.write(
            "bridge.conf",
            format!("include {}/link.conf\n", d.0.display()),
        );
        let e = load_as(&main, 4242, &[4242]).unwrap().unwrap();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(!e[0].allow);
        // bridge.conf itself hidden from the caller: refused, as QEMU's
        // helper fails on it.
        let top = d.write("top.conf", "allow all\n");
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_as(&top, 4242, &[4242]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read {}", top.display())),
            "{e}"
        );
    }

    #[test]
    fn the_trace_names_the_files_read_and_the_includes_skipped() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (a file only root can read)");
        }
        let d = Dir::new("trace");
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let inc = d.write("inc.conf", "allow br1\n");
        let secret = d.write("secret.conf", "deny br1\n");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let main = d.write(
            "bridge.conf",
            format!(
                "include {}\ninclude {}\ninclude {}/missing.conf\n",
                inc.display(),
                secret.display(),
                d.0.display()
            ),
        );
        let (entries, trace) = read(&main, 4242, &[4242], dirs_below_tmp).unwrap().unwrap();
        assert!(admits(&entries, "br1"), "{entries:?}");
        assert_eq!(trace.files, [main.clone(), inc]);
        assert_eq!(
            trace.skipped,
            [Skipped {
                shown: format!(
                    "{} (included at {} line 2)",
                    secret.display(),
                    main.display()
                ),
                cause: "user 4242 has no permission to read it".into(),
            }]
        );
        // what load returns is the same reading
        assert_eq!(load_as(&main, 4242, &[4242]).unwrap().unwrap(), entries);
    }

    #[test]
    fn permission_bits_as_the_kernel_reads_them() {
        let d = Dir::new("bits");
        let f = d.write("f", "");
        let meta = |mode| {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::metadata(&f).unwrap()
        };
        let (owner, group) = {
            let m = std::fs::metadata(&f).unwrap();
            (m.uid(), m.gid())
        };
        let other = owner + 1;
        assert_eq!(permits(&meta(0o400), false, owner, &[], 4), Sees::Yes);
        // the owner class decides for the owner, even against the others
        assert_eq!(permits(&meta(0o044), false, owner, &[group], 4), Sees::No);
        assert_eq!(permits(&meta(0o040), false, other, &[group], 4), Sees::Yes);
        assert_eq!(permits(&meta(0o404), false, other, &[group], 4), Sees::No);
        assert_eq!(permits(&meta(0o004), false, other, &[], 4), Sees::Yes);
        assert_eq!(permits(&meta(0o006), false, other, &[], 1), Sees::No);
        // with an ACL only the owner's answer is known
        assert_eq!(permits(&meta(0o000), true, other, &[], 4), Sees::Unknown);
        assert_eq!(permits(&meta(0o400), true, owner, &[], 4), Sees::Yes);
    }

    #[test]
    fn a_relative_include_is_read_next_to_the_including_file() {
        let d = Dir::new("rel");
        std::fs::create_dir(d.0.join("sub")).unwrap();
        d.write("sub/inner.conf", "allow br-inner\n");
        d.write("sub/outer.conf", "include inner.conf\n");
        let main = d.write("bridge.conf", "include sub/outer.conf\n");
        // a file of the same name in the working directory is not read
        let cwd = std::env::current_dir().unwrap();
        assert!(!cwd.join("sub/outer.conf").exists());
        let e = load_here(&main).unwrap().unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].location,
            format!("{}/sub/inner.conf line 1", d.0.display())
        );
    }

    #[test]
    fn errors_inside_includes_refuse_everyone() {
        let d = Dir::new("incerr");
        let main = d.write(
            "bridge.conf",
            format!("allow all\ninclude {}/bad.conf\n", d.0.display()),
        );
        // QEMU would keep `deny br0` and silently lose `deny br1`
        for bad in [
            "deny br0\nbogus\ndeny br1\n",
            "deny br0\ndeny b234567890123456\n",
        ] {
            d.write("bad.conf", bad);
            let e = load_here(&main).unwrap_err().to_string();
            assert!(e.contains("bad.conf line 2"), "{e}");
        }
        // a self-include is a loop, caught by the depth limit
        d.write("bridge.conf", format!("include {}\n", main.display()));
        let r = load_here(&main);
        assert!(matches!(r, Err(QemuAclError::TooDeep { .. })), "{r:?}");
        // many includes of one file
        d.write("one.conf", "deny br0\n");
        let many = format!("include {}/one.conf\n", d.0.display()).repeat(MAX_FILES + 1);
        d.write("bridge.conf", many);
        let r = load_here(&main);
        assert!(matches!(r, Err(QemuAclError::TooMany { .. })), "{r:?}");
    }

    #[test]
    fn policy_files_are_regular_whole_and_never_block() {
        let d = Dir::new("kinds");
        let main = d.0.join("bridge.conf");
        let fifo = d.0.join("fifo.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let big = d.write(
            "big.conf",
            format!("allow br0\n{}", "#\n".repeat(MAX_FILE as usize / 2)),
        );
        for (inc, want) in [
            (fifo.as_path(), "it is a FIFO, not a regular file"),
            (Path::new("/dev/null"), "it is a character device"),
            (d.0.as_path(), "it is a directory"),
            (big.as_path(), "larger than 64 KiB"),
        ] {
            // as an include (QEMU: blocks, reads nothing, reads nothing,
            // reads it all) and as the file itself
            std::fs::write(&main, format!("allow all\ninclude {}\n", inc.display())).unwrap();
            for (path, prefix) in [
                (
                    main.as_path(),
                    format!("refusing {} (included at", inc.display()),
                ),
                (inc, format!("refusing {}:", inc.display())),
            ] {
                let e = load_here(path).unwrap_err().to_string();
                assert!(e.starts_with(&prefix) && e.contains(want), "{e}");
                assert_eq!(e.lines().count(), 1, "{e}");
            }
        }
        // exactly the bound is read whole
        let edge = d.write("edge.conf", {
            let mut t = b"deny br0\n".to_vec();
            while t.len() + 2 <= MAX_FILE as usize {
                t.extend(b"#\n");
            }
            t.resize(MAX_FILE as usize, b'\n');
            t
        });
        assert!(!admits(&load_here(&edge).unwrap().unwrap(), "br0"));
    }

    #[test]
    fn a_file_or_directory_others_could_change_refuses_everyone() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (the trust rule wants root-owned files)");
        }
        let d = Dir::new("trust");
        let inc = d.write("inc.conf", "deny br1\n");
        let main = d.write(
            "bridge.conf",
            format!("allow all\ninclude {}\n", inc.display()),
        );
        assert!(load_here(&main).unwrap().is_some());
        // an include its group could rewrite to "allow all"
        std::fs::set_permissions(&inc, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = load_here(&main).unwrap_err();
        assert!(
            matches!(&e, QemuAclError::Untrusted { path, .. } if path.contains("inc.conf (included at")),
            "{e:?}"
        );
        std::fs::set_permissions(&inc, std::fs::Permissions::from_mode(0o644)).unwrap();
        // the runtime's own rule judges every directory up to /: a scratch
        // directory under a world-writable /tmp is refused
        let tmp = std::fs::metadata(std::env::temp_dir()).unwrap();
        assert!(
            tmp.permissions().mode() & 0o002 != 0,
            "this test expects a world-writable {}",
            std::env::temp_dir().display()
        );
        let e = load(&main, 4242, &[4242]).unwrap_err();
        assert!(matches!(&e, QemuAclError::Untrusted { .. }), "{e:?}");
        assert!(e.to_string().contains("writable by others"), "{e}");
    }
}
