//! The installed binaries: trusted as the runtime trusts its config (the
//! one rule in [`crate::trust`]), no file capability beyond cap_net_admin,
//! and a way for users to run them when the config admits users (a file
//! capability, the setuid bit or a sudo rule in a drop-in the same rule
//! trusts). The sudo drop-in is 0440 root's: as an ordinary user, whether
//! it holds a rule is unchecked, never "missing".

use std::ffi::CStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{as_whom, denied, CheckOptions, Findings};
use crate::acl::Verdict;
use crate::config::Config;
use crate::trust::TrustError;

/// Capabilities in a file's `security.capability` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FileCaps {
    permitted: u64,
    inheritable: u64,
    effective: bool,
}

const CAP_NET_ADMIN_BIT: u64 = 1 << 12;
const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// Parses `struct vfs_cap_data` (<linux/capability.h>): revision 1 holds 32
/// bits, revisions 2 and 3 (namespaced root id appended) hold 64.
fn parse_file_caps(raw: &[u8]) -> Result<FileCaps, String> {
    let word = |i: usize| -> Option<u32> {
        raw.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = word(0).ok_or("too short")?;
    let (words, size) = match magic & VFS_CAP_REVISION_MASK {
        0x0100_0000 => (1, 12),
        0x0200_0000 => (2, 20),
        0x0300_0000 => (2, 24),
        r => return Err(format!("unknown revision {:#x}", r >> 24)),
    };
    if raw.len() != size {
        return Err(format!("{} bytes, expected {size}", raw.len()));
    }
    let mut caps = FileCaps {
        effective: magic & VFS_CAP_FLAGS_EFFECTIVE != 0,
        ..FileCaps::default()
    };
    for i in 0..words {
        let p = u64::from(word(1 + 2 * i).unwrap_or(0));
        let inh = u64::from(word(2 + 2 * i).unwrap_or(0));
        caps.permitted |= p << (32 * i);
        caps.inheritable |= inh << (32 * i);
    }
    Ok(caps)
}

/// "cap_net_admin,cap_sys_admin" for a capability mask.
fn cap_names(mask: u64) -> String {
    let mut names = Vec::new();
    for bit in 0..64u8 {
        if mask & (1 << bit) != 0 {
            let known = caps::all().into_iter().find(|c| c.index() == bit);
            names
                .push(known.map_or_else(|| format!("cap_{bit}"), |c| c.to_string().to_lowercase()));
        }
    }
    names.join(",")
}

const XATTR_CAPS: &CStr = c"security.capability";

/// The raw `security.capability` attribute, `None` when the file has none.
fn read_file_caps(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 64];
    Ok(crate::sys::xattr::get(path, XATTR_CAPS, true, &mut buf)?.map(|n| buf[..n].to_vec()))
}

/// Whether a sudoers text has a rule that names `path` (or its directory,
/// written with a trailing '/', which sudo reads as every file in it).
fn sudoers_mentions(text: &str, path: &Path) -> bool {
    let want = path.to_string_lossy();
    let dir = path
        .parent()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("@include"))
        .flat_map(|l| {
            l.split(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '=' | '(' | ')'))
        })
        .any(|tok| tok == want || (!dir.is_empty() && tok == dir))
}

/// An installed kvmnet binary, as far as check needs it.
pub(super) struct Binary {
    pub path: PathBuf,
    pub meta: Result<std::fs::Metadata, io::Error>,
    caps: Result<Option<FileCaps>, Unread>,
    sudo: Sudo,
}

/// Why the file capabilities are not known.
enum Unread {
    /// This user may not look.
    Denied,
    Failed(String),
}

enum Sudo {
    None,
    Rule,
    /// The file names the binary, but does not count: why, and the fix.
    Ignored {
        why: String,
        fix: String,
    },
    /// This user may not read the file (or look at its directory).
    Unknown,
}

impl Binary {
    /// `sudoers`: the drop-in whose rule may let users run it, if any.
    pub fn inspect(path: &Path, sudoers: Option<&Path>) -> Binary {
        let meta = std::fs::metadata(path);
        let caps = if meta.is_ok() {
            read_file_caps(path)
                .map_err(|e| {
                    if denied(&e) {
                        Unread::Denied
                    } else {
                        Unread::Failed(crate::os_error::describe(&e))
                    }
                })
                .and_then(|raw| {
                    raw.map(|r| parse_file_caps(&r).map_err(Unread::Failed))
                        .transpose()
                })
        } else {
            Ok(None)
        };
        Binary {
            path: path.to_owned(),
            meta,
            caps,
            sudo: sudoers.map_or(Sudo::None, |s| sudo_rule(s, path)),
        }
    }

    pub fn setuid_root(&self) -> bool {
        self.meta
            .as_ref()
            .is_ok_and(|m| m.uid() == 0 && m.mode() & libc::S_ISUID != 0)
    }

    pub fn net_admin_cap(&self) -> bool {
        matches!(&self.caps, Ok(Some(c)) if c.permitted & CAP_NET_ADMIN_BIT != 0)
    }

    /// Runs with the caller's uid while it creates taps and reads the config.
    pub fn runs_as_user(&self) -> bool {
        self.setuid_root() || self.net_admin_cap()
    }
}

/// Whether the rule for `bin` in `sudoers` counts as a way to run it. The
/// file (and every directory above it) must pass kvmnet's trust rule, which
/// is stricter than sudo's own (sudo lets group 0 write): a rule someone
/// other than root can rewrite is no way to run kvmnet but a way to become
/// root.
fn sudo_rule(sudoers: &Path, bin: &Path) -> Sudo {
    let shown = sudoers.display();
    let text = match std::fs::read_to_string(sudoers) {
        Ok(text) => text,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Sudo::None
        }
        Err(e) if denied(&e) => return Sudo::Unknown,
        Err(e) => {
            return Sudo::Ignored {
                why: format!("sudo cannot read it either: {}", crate::os_error::describe(&e)),
                fix: format!("make {shown} a regular file only root can change, and check it with visudo -cf {shown}"),
            }
        }
    };
    if !sudoers_mentions(&text, bin) {
        return Sudo::None;
    }
    let file = sudoers
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match crate::trust::check_path(sudoers) {
        Ok(None) => Sudo::None,
        Err(TrustError::Untrusted { why, .. }) => Sudo::Ignored {
            why: why.to_string(),
            fix: why.fix(),
        },
        Err(TrustError::Io { source, .. }) if denied(&source) => Sudo::Unknown,
        Err(e) => Sudo::Ignored {
            why: e.to_string(),
            fix: format!("make {shown} a regular file only root can change"),
        },
        Ok(Some(_)) if file.contains('.') || file.ends_with('~') => Sudo::Ignored {
            why: format!("sudo skips files in sudoers.d whose name has a '.' or ends in '~'; fix: rename {shown}"),
            fix: "see sudoers(5)".into(),
        },
        Ok(Some(_)) => Sudo::Rule,
    }
}

pub(super) fn check(
    opts: &CheckOptions,
    config: Option<&Config>,
    bins: &[Binary],
    out: &mut Findings,
) {
    let allow_rules =
        config.is_some_and(|c| c.acl.rules.iter().any(|r| r.verdict == Verdict::Allow));
    let unknown: Vec<String> = bins
        .iter()
        .filter(|b| matches!(b.sudo, Sudo::Unknown))
        .map(|b| b.path.display().to_string())
        .collect();
    if !unknown.is_empty() {
        out.unchecked(
            "install",
            format!(
                "cannot read {} {}, so whether its sudo rule lets users run {} is unknown",
                opts.sudoers.display(),
                as_whom(),
                unknown.join(" and ")
            ),
        );
    }
    for bin in bins {
        check_binary(opts, allow_rules, bin, out);
    }
}

/// The binary's metadata, or the finding that says why there is none.
/// `then`: what installing it takes after the copy ("" for nothing);
/// `check`: the findings' name.
pub(super) fn installed<'a>(
    check: &'static str,
    bin: &'a Binary,
    prog: &str,
    then: &str,
    out: &mut Findings,
) -> Option<&'a std::fs::Metadata> {
    let p = bin.path.display();
    match &bin.meta {
        Ok(m) if m.is_file() => Some(m),
        Ok(_) => {
            out.error(
                check,
                format!("{p} is not a regular file"),
                format!("install the {prog} binary at {p}"),
            );
            None
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            out.warn(
                check,
                format!("{p} does not exist: kvmnet is not installed there"),
                format!("cargo build --release && install -o root -g root -m 0755 target/release/{prog} {p}{then}"),
            );
            None
        }
        Err(e) if denied(e) => {
            out.unchecked(check, format!("cannot look at {p} {}", as_whom()));
            None
        }
        Err(e) => {
            out.error(
                check,
                format!("cannot look at {p}: {}", crate::os_error::describe(e)),
                format!("see what is there: ls -lL {p}"),
            );
            None
        }
    }
}

fn check_binary(opts: &CheckOptions, allow_rules: bool, bin: &Binary, out: &mut Findings) {
    let p = bin.path.display();
    let prog = bin
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(meta) = installed("install", bin, &prog, "", out) else {
        return;
    };
    let trusted = check_trust("install", bin, meta, out);
    let caps_ok = check_caps("install", bin, out);
    if let Sudo::Ignored { why, fix } = &bin.sudo {
        out.warn(
            "install",
            format!("the sudo rule for {p} does not count: {why}"),
            fix.clone(),
        );
    }
    let mut ways = Vec::new();
    if bin.net_admin_cap() {
        ways.push("the file capability cap_net_admin".to_owned());
    }
    if bin.setuid_root() {
        ways.push("the setuid bit".to_owned());
    }
    if matches!(bin.sudo, Sudo::Rule) {
        ways.push(format!("the sudo rule in {}", opts.sudoers.display()));
    }
    let sudoers = opts.sudoers.display();
    let sudo_unknown = matches!(bin.sudo, Sudo::Unknown);
    if ways.is_empty() && allow_rules && !sudo_unknown {
        out.warn(
            "install",
            format!("users cannot run {p}: it has neither cap_net_admin, nor the setuid bit, nor a sudo rule in {sudoers}, so the [[allow]] rules in {} help nobody", opts.config_path.display()),
            format!("one of the three ways: setcap cap_net_admin+ep {p}, or chmod u+s {p}, or a rule in {sudoers} (%kvm ALL=(root) NOPASSWD: {p})"),
        );
    } else if trusted && caps_ok {
        let how = if ways.is_empty() && sudo_unknown {
            format!("no setuid bit or capability; users run it only if the sudo rule in {sudoers}, unreadable here, lets them")
        } else if ways.is_empty() {
            "root only (no [[allow]] rules, no setuid bit, capability or sudo rule)".to_owned()
        } else {
            format!("users run it through {}", ways.join(" and "))
        };
        out.ok(
            "install",
            format!("{p} is root's, mode {:04o}: {how}", meta.mode() & 0o7777),
        );
    }
}

/// kvmnet's trust rule on the binary and on every directory above it (where
/// it really lives): whoever else could change them decides what root, sudo
/// or QEMU run.
pub(super) fn check_trust(
    check: &'static str,
    bin: &Binary,
    meta: &std::fs::Metadata,
    out: &mut Findings,
) -> bool {
    let p = bin.path.display();
    let mut sound = true;
    if let Err(why) = crate::trust::judge("file", &bin.path, meta) {
        sound = false;
        out.error(
            check,
            format!("{why}, so someone other than root can change what root, sudo or QEMU run"),
            why.fix(),
        );
    }
    let dirs = std::fs::canonicalize(&bin.path)
        .map_err(|source| TrustError::Io {
            path: bin.path.clone(),
            source,
        })
        .and_then(|real| crate::trust::check_directories(&bin.path, &real));
    match dirs {
        Ok(()) => {}
        Err(TrustError::Untrusted { why, .. }) => {
            sound = false;
            out.error(
                check,
                format!("{p}: {why}, so {p} can be replaced"),
                why.fix(),
            );
        }
        Err(TrustError::Io { source, .. }) if denied(&source) => {
            sound = false;
            out.unchecked(
                check,
                format!("cannot look at the directories above {p} {}", as_whom()),
            );
        }
        Err(e) => {
            sound = false;
            out.error(
                check,
                e.to_string(),
                format!("make every directory above {p} one root can search"),
            );
        }
    }
    sound
}

/// File capabilities beyond cap_net_admin; false when there are.
pub(super) fn check_caps(check: &'static str, bin: &Binary, out: &mut Findings) -> bool {
    let p = bin.path.display();
    match &bin.caps {
        Err(Unread::Denied) => out.unchecked(
            check,
            format!("cannot read the file capabilities of {p} {}", as_whom()),
        ),
        Err(Unread::Failed(e)) => out.warn(
            check,
            format!("cannot read the file capabilities of {p}: {e}"),
            format!("check them with getcap {p}"),
        ),
        Ok(Some(c)) if (c.permitted | c.inheritable) & !CAP_NET_ADMIN_BIT != 0 => {
            out.error(
                check,
                format!(
                    "{p} has file capabilities beyond cap_net_admin: {}",
                    cap_names((c.permitted | c.inheritable) & !CAP_NET_ADMIN_BIT)
                ),
                format!("setcap cap_net_admin+ep {p}"),
            );
            return false;
        }
        Ok(_) => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_blob(magic: u32, words: &[(u32, u32)], rootid: Option<u32>) -> Vec<u8> {
        let mut v = magic.to_le_bytes().to_vec();
        for (p, i) in words {
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&i.to_le_bytes());
        }
        if let Some(r) = rootid {
            v.extend_from_slice(&r.to_le_bytes());
        }
        v
    }

    #[test]
    fn file_caps_revisions() {
        // what `setcap cap_net_admin+ep` writes (revision 2)
        let c = parse_file_caps(&caps_blob(0x0200_0001, &[(1 << 12, 0), (0, 0)], None)).unwrap();
        assert_eq!(
            c,
            FileCaps {
                permitted: CAP_NET_ADMIN_BIT,
                inheritable: 0,
                effective: true
            }
        );
        assert_eq!(cap_names(c.permitted), "cap_net_admin");
        // revision 3 (user-namespaced root id), high word: CAP_BPF (39)
        let c = parse_file_caps(&caps_blob(
            0x0300_0000,
            &[(1 << 12, 1 << 21), (1 << 7, 0)],
            Some(0),
        ))
        .unwrap();
        assert!(!c.effective);
        assert_eq!(c.permitted, CAP_NET_ADMIN_BIT | 1 << 39);
        assert_eq!(cap_names(c.permitted & !CAP_NET_ADMIN_BIT), "cap_bpf");
        assert_eq!(cap_names(c.inheritable), "cap_sys_admin");
        // revision 1: 32 bits
        let c = parse_file_caps(&caps_blob(0x0100_0001, &[(1 << 12, 0)], None)).unwrap();
        assert_eq!(c.permitted, CAP_NET_ADMIN_BIT);
        for bad in [
            vec![],
            vec![1, 2],
            caps_blob(0x0200_0001, &[(1, 0)], None),
            caps_blob(0x0400_0000, &[(1, 0), (0, 0)], None),
        ] {
            assert!(parse_file_caps(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(cap_names(1 << 63), "cap_63");
    }

    #[test]
    fn sudoers_rules() {
        let p = Path::new("/usr/libexec/kvmnet-ifup");
        assert!(sudoers_mentions(
            "%kvm ALL=(root) NOPASSWD: /usr/libexec/kvmnet-ifup, /usr/libexec/kvmnet-ifdown\n",
            p
        ));
        assert!(sudoers_mentions("alice ALL=/usr/libexec/kvmnet-ifup\n", p));
        assert!(sudoers_mentions(
            "alice ALL=(root) NOPASSWD: /usr/libexec/\n",
            p
        ));
        assert!(!sudoers_mentions(
            "# %kvm ALL=(root) NOPASSWD: /usr/libexec/kvmnet-ifup\n",
            p
        ));
        assert!(!sudoers_mentions(
            "%kvm ALL=(root) NOPASSWD: /usr/libexec/kvmnet-ifup2\n",
            p
        ));
        assert!(!sudoers_mentions(
            "%kvm ALL=(root) NOPASSWD: /usr/local/libexec/kvmnet-ifup\n",
            p
        ));
        assert!(!sudoers_mentions("", p));
    }
}
