//! How privilege arrived, and dropping everything but CAP_NET_ADMIN before any
//! input other than argv and the credentials is looked at.
//!
//! Modes (what the kernel gave us at exec):
//! - root: real and effective uid 0 (plain root, or root through sudo);
//! - setuid: effective uid 0, real uid not 0 (the binary is setuid root);
//! - file capability: CAP_NET_ADMIN in the permitted set without uid 0
//!   (`setcap cap_net_admin+ep`);
//! - none: nothing kvmnet could use.

use std::fmt;

use caps::{CapSet, Capability, CapsHashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Root,
    Setuid,
    FileCaps,
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Root => "root",
            Mode::Setuid => "setuid",
            Mode::FileCaps => "file-capability",
            Mode::None => "none",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "cannot drop privileges ({step}: {reason}); refusing to run with more than CAP_NET_ADMIN"
    )]
    Drop { step: &'static str, reason: String },
}

/// Pure classification, from the credentials and whether CAP_NET_ADMIN is
/// in the permitted set.
pub fn classify(ruid: u32, euid: u32, net_admin_permitted: bool) -> Mode {
    match (ruid, euid) {
        (0, 0) => Mode::Root,
        (_, 0) => Mode::Setuid,
        _ if net_admin_permitted => Mode::FileCaps,
        _ => Mode::None,
    }
}

pub fn detect() -> Mode {
    let euid = nix::unistd::geteuid().as_raw();
    // Only a run without uid 0 is classified by its capabilities.
    let net_admin = euid != 0
        && caps::has_cap(None, CapSet::Permitted, Capability::CAP_NET_ADMIN).unwrap_or(false);
    classify(nix::unistd::getuid().as_raw(), euid, net_admin)
}

/// Leaves the process with CAP_NET_ADMIN in its effective and permitted sets
/// and nothing else: inheritable and ambient empty, no_new_privs set. A setuid
/// process also becomes its real user (as qemu-bridge-helper does), so that
/// nothing it touches afterwards is touched as root.
///
/// The bounding set is left alone. It only limits what an execve may grant;
/// kvmnet never execs, and under no_new_privs an execve grants nothing, not
/// even to root (tests/privilege.rs checks that kernel rule). Emptying it took
/// 41 prctl calls at every VM start, each copying the process credentials
/// (docs/performance.md), for no protection no_new_privs lacks.
pub fn drop_to_net_admin(mode: Mode) -> Result<(), PrivilegeError> {
    let fail = |step: &'static str| {
        move |e: &dyn fmt::Display| PrivilegeError::Drop {
            step,
            reason: e.to_string(),
        }
    };
    if mode == Mode::None {
        return Ok(());
    }
    let only_net_admin: CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();

    if mode == Mode::Setuid {
        let ruid = nix::unistd::getuid();
        let rgid = nix::unistd::getgid();
        nix::sys::prctl::set_keepcaps(true).map_err(|e| fail("PR_SET_KEEPCAPS")(&e))?;
        nix::unistd::setgroups(&[]).map_err(|e| fail("setgroups")(&e))?;
        nix::unistd::setresgid(rgid, rgid, rgid).map_err(|e| fail("setresgid")(&e))?;
        nix::unistd::setresuid(ruid, ruid, ruid).map_err(|e| fail("setresuid")(&e))?;
        nix::sys::prctl::set_keepcaps(false).map_err(|e| fail("PR_SET_KEEPCAPS")(&e))?;
        if nix::unistd::geteuid() != ruid || nix::unistd::getegid() != rgid {
            return Err(PrivilegeError::Drop {
                step: "setresuid",
                reason: "still root afterwards".into(),
            });
        }
    }
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &only_net_admin).map_err(|e| fail("effective set")(&e))?;
    caps::set(None, CapSet::Permitted, &only_net_admin).map_err(|e| fail("permitted set")(&e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable set")(&e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient set")(&e))?;
    // kvmnet never execs; this makes sure nothing it could be tricked into
    // running would gain privilege either (see above).
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("PR_SET_NO_NEW_PRIVS")(&e))?;

    let kept = caps::read(None, CapSet::Permitted).map_err(|e| fail("reading back")(&e))?;
    if kept != only_net_admin {
        return Err(PrivilegeError::Drop {
            step: "reading back",
            reason: format!("permitted set is {kept:?}"),
        });
    }
    Ok(())
}

/// The capabilities the process holds now, for the log line, in a process
/// that went through [`drop_to_net_admin`] with `mode`. Except in mode
/// `None` (nothing was dropped) that is CAP_NET_ADMIN alone: the drop set the
/// effective set to it and read the permitted set back. Reading the sets
/// again here would cost every VM start what the caps crate does to answer:
/// build a hash set of all 41 capabilities (docs/performance.md).
pub fn caps_for_log(mode: Mode) -> String {
    if mode != Mode::None {
        return "cap_net_admin".into();
    }
    let mut names: Vec<String> = caps::read(None, CapSet::Effective)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.to_string().to_lowercase())
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// What a binary's file grants the runs started from it, for telling a
/// user why a run that looked privileged has nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileGrant {
    Nothing,
    /// Owned by root with the setuid bit.
    SetuidRoot,
    /// CAP_NET_ADMIN in the permitted set of its file capability.
    NetAdminCap,
}

impl FileGrant {
    /// Read from the file; anything that cannot be read grants nothing.
    pub fn of(path: &std::path::Path) -> FileGrant {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.uid() == 0 && m.mode() & libc::S_ISUID != 0 {
                return FileGrant::SetuidRoot;
            }
        }
        let mut raw = [0u8; 24];
        match crate::sys::xattr::get(path, c"security.capability", true, &mut raw) {
            Ok(Some(n)) if permits_net_admin(&raw[..n]) => FileGrant::NetAdminCap,
            _ => FileGrant::Nothing,
        }
    }
}

/// Whether a `security.capability` value (struct vfs_cap_data, any
/// revision: a magic word, then the low 32 bits of the permitted set) has
/// CAP_NET_ADMIN in its permitted set.
fn permits_net_admin(raw: &[u8]) -> bool {
    let bit = 1u32 << Capability::CAP_NET_ADMIN.index();
    raw.get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .is_some_and(|w| u32::from_le_bytes(w) & bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(0, 0, true), Mode::Root);
        assert_eq!(classify(1000, 0, true), Mode::Setuid);
        assert_eq!(classify(1000, 1000, true), Mode::FileCaps);
        assert_eq!(classify(1000, 1000, false), Mode::None);
        // root that lost CAP_NET_ADMIN is still classified root; the kernel
        // then answers EPERM and the error says what is missing
        assert_eq!(classify(0, 0, false), Mode::Root);
    }

    #[test]
    fn the_net_admin_bit_of_a_file_capability() {
        // cap_net_admin+ep as setcap writes it (revision 2: effective flag,
        // permitted and inheritable words for capabilities 0-31 and 32-63)
        let mut v2 = vec![0x01, 0x00, 0x00, 0x02];
        v2.extend([0x00, 0x10, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(permits_net_admin(&v2));
        // cap_net_raw only, and a value cut short
        v2[5] = 0x20;
        assert!(!permits_net_admin(&v2));
        assert!(!permits_net_admin(&[0x01, 0x00, 0x00, 0x02, 0x00]));
    }

    #[test]
    fn a_file_without_setuid_or_capability_grants_nothing() {
        let me = std::env::current_exe().unwrap();
        assert_eq!(FileGrant::of(&me), FileGrant::Nothing);
        assert_eq!(
            FileGrant::of(std::path::Path::new("/nonexistent/kvmnet-ifup")),
            FileGrant::Nothing
        );
    }
}
