//! Who invoked kvmnet, and whether anything they control (the environment) may
//! steer it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::acl::{Resolve, System};
use crate::config::DEFAULT_PATH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub ruid: u32,
    pub euid: u32,
    /// The user on whose behalf kvmnet acts: the real uid, or SUDO_UID when
    /// sudo ran kvmnet itself as root. Taps it creates are owned by this user.
    pub uid: u32,
    pub gid: u32,
    pub via_sudo: bool,
    /// AT_SECURE was set: the exec gained privilege (setuid, setgid, file
    /// capabilities, an LSM domain change).
    pub elevated: bool,
    /// The groups of the user kvmnet acts for, or why they could not be
    /// established (then every access decision refuses with that reason).
    /// A direct caller's are the process's at start (before a setuid drop
    /// clears them). A sudo user's come from the user database on first use
    /// ([`Caller::identity`]): after the privilege drop, so that NSS modules
    /// never run with more than CAP_NET_ADMIN, and only when a decision needs
    /// them. Plain root's are never asked for.
    groups: OnceLock<Result<Vec<u32>, String>>,
}

/// The environment variables kvmnet reads, all read at one place.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub sudo_uid: Option<OsString>,
    pub sudo_gid: Option<OsString>,
    /// The command sudo ran: its path as the sudo user typed it (or as sudo
    /// found it in PATH), then the arguments, space-separated.
    pub sudo_command: Option<OsString>,
    pub config: Option<OsString>,
    /// KVMNET_BRIDGE: a bridge the caller asks for; honoured only when the
    /// ACL allows them that bridge.
    pub bridge: Option<OsString>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            sudo_uid: std::env::var_os("SUDO_UID"),
            sudo_gid: std::env::var_os("SUDO_GID"),
            sudo_command: std::env::var_os("SUDO_COMMAND"),
            config: std::env::var_os("KVMNET_CONFIG"),
            bridge: std::env::var_os("KVMNET_BRIDGE"),
        }
    }
}

impl Caller {
    pub fn detect(env: &Env) -> Caller {
        let mut c = Caller::from_parts(
            nix::unistd::getuid().as_raw(),
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getgid().as_raw(),
            at_secure(),
            env,
            sudo_ran_another_program,
        );
        if !c.is_root() && !c.via_sudo {
            // Read now, before a setuid drop clears them. Plain root's are
            // never needed: nix sizes the list from sysconf(_SC_NGROUPS_MAX),
            // which glibc reads from /proc at every root VM start.
            let groups = nix::unistd::getgroups()
                .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
                .map_err(|e| format!("cannot read your groups: {}", e.desc()));
            c.groups = OnceLock::from(groups);
        }
        c
    }

    /// Plain root (not root acting for a sudo user): unrestricted.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The user and all their groups, for the ACL and tap ownership. When
    /// they could not be looked up, the identity carries the reason and every
    /// decision refuses with it.
    pub fn identity(&self) -> crate::acl::Identity {
        let found = self.groups.get_or_init(|| {
            if self.via_sudo {
                sudo_user_groups(self.uid, self.gid, &System)
            } else {
                Ok(Vec::new())
            }
        });
        let (mut groups, lookup_failure) = match found {
            Ok(groups) => (groups.clone(), None),
            Err(why) => (Vec::new(), Some(why.clone())),
        };
        groups.push(self.gid);
        groups.sort_unstable();
        groups.dedup();
        crate::acl::Identity {
            uid: self.uid,
            groups,
            lookup_failure,
        }
    }

    /// The pure part of [`Caller::detect`]. `ran_another_program` judges
    /// SUDO_COMMAND, and is asked only when SUDO_UID would count.
    pub fn from_parts(
        ruid: u32,
        euid: u32,
        rgid: u32,
        elevated: bool,
        env: &Env,
        ran_another_program: impl FnOnce(&OsStr) -> bool,
    ) -> Caller {
        let parse = |v: &Option<OsString>| v.as_ref()?.to_str()?.parse::<u32>().ok();
        // SUDO_UID only means something when sudo really made us root; from any
        // other caller it is just a string they chose. For real root it can
        // only narrow what kvmnet does (act for that user instead of root).
        let sudo = if ruid == 0 && euid == 0 && !elevated {
            parse(&env.sudo_uid).filter(|&u| u != 0)
        } else {
            None
        };
        // `sudo qemu-system-x86_64 … -netdev tap` runs QEMU as root, and QEMU
        // hands sudo's variables down to its script=: that is root running
        // kvmnet, not sudo. Only a SUDO_COMMAND that provably names another
        // program makes it plain root. A missing SUDO_COMMAND (sudo always
        // sets it, so something else set SUDO_UID or removed it) or one that
        // cannot be judged acts for the sudo user: the narrower reading, so a
        // wrong guess refuses instead of admitting.
        let sudo = sudo.filter(|_| match &env.sudo_command {
            Some(cmd) => !ran_another_program(cmd),
            None => true,
        });
        match sudo {
            Some(uid) => Caller {
                ruid,
                euid,
                uid,
                gid: parse(&env.sudo_gid).unwrap_or(uid),
                via_sudo: true,
                elevated,
                groups: OnceLock::new(),
            },
            None => Caller {
                ruid,
                euid,
                uid: ruid,
                gid: rgid,
                via_sudo: false,
                elevated,
                groups: OnceLock::new(),
            },
        }
    }

    /// Only a real root, not elevated and not acting for a sudo user, may point
    /// kvmnet elsewhere through the environment (tests do, with KVMNET_CONFIG).
    pub fn trusts_environment(&self) -> bool {
        self.ruid == 0 && self.euid == 0 && !self.elevated && !self.via_sudo
    }

    pub fn config_path(&self, env: &Env) -> PathBuf {
        match &env.config {
            Some(p) if self.trusts_environment() && !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }
}

/// Whether SUDO_COMMAND's program is provably not this one. sudo records the
/// path as the user typed it, which can run through a directory or symlink
/// of theirs that they re-point the moment sudo has checked it; so the path
/// counts only when it is absolute and every directory on it, and on what it
/// resolves to, is root's and writable by nobody else. Then it must be a
/// different file from /proc/self/exe, by inode and by path (a binary
/// replaced by an upgrade reads "… (deleted)" there). Anything unclear: not
/// proven.
fn sudo_ran_another_program(command: &OsStr) -> bool {
    let first = command
        .as_bytes()
        .split(|&b| b == b' ')
        .next()
        .unwrap_or(b"");
    let path = Path::new(OsStr::from_bytes(first));
    if !path.is_absolute() {
        return false;
    }
    let Ok(resolved) = std::fs::canonicalize(path) else {
        return false;
    };
    if !only_root_can_change(path) || !only_root_can_change(&resolved) {
        return false;
    }
    let (Ok(ours), Ok(theirs)) = (
        std::fs::metadata("/proc/self/exe"),
        std::fs::metadata(&resolved),
    ) else {
        return false;
    };
    if (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()) {
        return false;
    }
    match std::fs::read_link("/proc/self/exe") {
        Ok(exe) => {
            let exe = exe.as_os_str().as_bytes();
            let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
            exe != resolved.as_os_str().as_bytes()
        }
        Err(_) => false,
    }
}

/// Every directory above `path` (symlinks followed) passes kvmnet's one
/// trust rule ([`crate::trust::only_root_can_change`]).
fn only_root_can_change(path: &Path) -> bool {
    crate::trust::check_directories(path, path).is_ok()
}

/// The groups of the user sudo acted for, from the user database. Refused
/// (Err, the reason) unless their entry and each of the groups resolve:
/// glibc's getgrouplist skips a group source that fails and returns what the
/// others found, so a list whose groups do not resolve may be missing some,
/// and a `[[deny]]` by one of them would silently stop matching.
fn sudo_user_groups(uid: u32, gid: u32, db: &System) -> Result<Vec<u32>, String> {
    let entry = match db.user_entry(uid) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return Err(format!(
                "the sudo user (SUDO_UID={uid}) has no entry in the user database, so their groups are unknown"
            ))
        }
        Err(e) => return Err(format!("cannot look up the sudo user: {e}")),
    };
    let name = entry.name.to_string_lossy().into_owned();
    let groups: Vec<u32> = nix::unistd::getgrouplist(&entry.name, nix::unistd::Gid::from_raw(gid))
        .map_err(|e| format!("cannot list the groups of sudo user {name}: {}", e.desc()))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    for &g in groups.iter().chain([&gid]) {
        match db.has_group(g) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "group {g} of sudo user {name} has no entry in the group database, so their group list cannot be trusted"
                ))
            }
            Err(e) => return Err(format!("cannot check the groups of sudo user {name}: {e}")),
        }
    }
    Ok(groups)
}

/// AT_SECURE: the exec gained privilege. glibc's getauxval reads the copy
/// it keeps; /proc/self/auxv says the same, at the price of opening a /proc
/// file at every run (docs/performance.md).
fn at_secure() -> bool {
    crate::sys::at_secure()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sudo_uid: Option<&str>, config: Option<&str>) -> Env {
        Env {
            sudo_uid: sudo_uid.map(Into::into),
            sudo_gid: sudo_uid.map(Into::into),
            sudo_command: Some("/usr/libexec/kvmnet-ifup vm0".into()),
            config: config.map(Into::into),
            bridge: None,
        }
    }

    /// What `sudo_ran_another_program` answers in these tests: QEMU's path
    /// is another program, anything else is not proven to be one.
    fn judge(cmd: &OsStr) -> bool {
        cmd.as_bytes().starts_with(b"/usr/bin/qemu-system-x86_64")
    }

    fn parts(ruid: u32, euid: u32, rgid: u32, elevated: bool, e: &Env) -> Caller {
        Caller::from_parts(ruid, euid, rgid, elevated, e, judge)
    }

    #[test]
    fn plain_user_is_the_real_uid() {
        let c = parts(1000, 1000, 1000, false, &env(Some("5"), None));
        assert_eq!((c.uid, c.via_sudo), (1000, false));
    }

    #[test]
    fn sudo_uid_counts_only_for_real_root() {
        let c = parts(0, 0, 0, false, &env(Some("1000"), None));
        assert_eq!((c.uid, c.gid, c.via_sudo), (1000, 1000, true));
        // setuid root started by user 1000 who set SUDO_UID=0 to look like root
        let c = parts(1000, 0, 1000, true, &env(Some("0"), None));
        assert_eq!((c.uid, c.via_sudo), (1000, false));
        // garbage is ignored
        let c = parts(0, 0, 0, false, &env(Some("-1"), None));
        assert_eq!((c.uid, c.via_sudo), (0, false));
    }

    #[test]
    fn sudo_running_another_program_that_runs_kvmnet_is_plain_root() {
        let mut e = env(Some("1000"), None);
        e.sudo_command = Some("/usr/bin/qemu-system-x86_64 -m 128 -netdev tap,id=n0".into());
        let c = parts(0, 0, 0, false, &e);
        assert_eq!((c.uid, c.via_sudo, c.is_root()), (0, false, true));
        // sudo ran kvmnet itself, or something not proven to be another
        // program, or sudo's command is missing: act for the sudo user
        for cmd in [
            Some("/usr/libexec/kvmnet-ifup vm0"),
            Some("./qemu-system-x86_64 -m 128"),
            Some(""),
            None,
        ] {
            e.sudo_command = cmd.map(Into::into);
            let c = parts(0, 0, 0, false, &e);
            assert_eq!((c.uid, c.via_sudo), (1000, true), "{cmd:?}");
        }
    }

    #[test]
    fn sudo_command_is_neither_read_nor_judged_unless_sudo_uid_counts() {
        let mut e = env(Some("1000"), None);
        e.sudo_command = Some("/usr/bin/qemu-system-x86_64".into());
        let panics = |_: &OsStr| -> bool { panic!("SUDO_COMMAND judged") };
        // no SUDO_UID, SUDO_UID=0, a non-root or an elevated caller
        for (ruid, euid, elevated, uid) in [
            (1000, 1000, false, Some("1000")),
            (1000, 0, true, Some("1000")),
            (0, 0, true, Some("1000")),
            (0, 0, false, None),
            (0, 0, false, Some("0")),
        ] {
            e.sudo_uid = uid.map(Into::into);
            let c = Caller::from_parts(ruid, euid, 0, elevated, &e, panics);
            assert_eq!(c.uid, ruid);
            assert!(!c.via_sudo);
            // a non-root caller stays exactly themselves: never root
            assert_eq!(c.is_root(), ruid == 0);
        }
    }

    #[test]
    fn config_override_needs_real_unelevated_root() {
        let e = env(None, Some("/tmp/evil.toml"));
        let root = parts(0, 0, 0, false, &e);
        assert_eq!(root.config_path(&e), PathBuf::from("/tmp/evil.toml"));
        for c in [
            parts(1000, 1000, 1000, false, &e),
            parts(1000, 0, 1000, true, &e),
            parts(0, 0, 0, true, &e),
        ] {
            assert_eq!(c.config_path(&e), PathBuf::from(DEFAULT_PATH), "{c:?}");
        }
        let e = env(Some("1000"), Some("/tmp/evil.toml"));
        let sudo = parts(0, 0, 0, false, &e);
        assert_eq!(sudo.config_path(&e), PathBuf::from(DEFAULT_PATH));
    }

    #[test]
    fn another_program_only_at_a_path_only_root_can_change() {
        let other = |s: &str| sudo_ran_another_program(OsStr::new(s));
        // /usr/bin/env: root's directories, not this test binary
        assert!(other("/usr/bin/env -i X=1"));
        // this very program, by its path or through a symlink to it
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(!other(&format!("{} --flag", me.display())));
        // beside this test binary: in CI a root-owned tree (/tmp is sticky
        // and world-writable, which never counts)
        let dir = me
            .parent()
            .unwrap()
            .join(format!("kvmnet-caller-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&me, dir.join("me")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", dir.join("lnk")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root_only_above = me
            .ancestors()
            .skip(1)
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
            && nix::unistd::geteuid().is_root();
        assert!(!other(&format!("{}/me", dir.display())));
        // another program, but through a directory a user may change
        // (re-pointed after sudo checked it): not proven
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!other(&format!("{}/lnk/env", dir.display())));
        // ... the same path once only root can change the directory
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            other(&format!("{}/lnk/env", dir.display())),
            root_only_above
        );
        // relative, missing, empty
        for s in ["env", "./env", "/nonexistent/qemu", "", " /usr/bin/env"] {
            assert!(!other(s), "{s:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sudo_user_without_an_entry_gets_an_identity_that_refuses() {
        let c = parts(0, 0, 0, false, &env(Some("4000000000"), None));
        assert!(c.via_sudo);
        let id = c.identity();
        assert_eq!(
            id.lookup_failure.as_deref(),
            Some(
                "the sudo user (SUDO_UID=4000000000) has no entry in the user database, so \
                 their groups are unknown"
            )
        );
        assert_eq!(id.groups, [4_000_000_000]);
        // a direct caller's groups are the process's, never looked up
        let mut c = parts(1000, 1000, 1000, false, &env(None, None));
        c.groups = OnceLock::from(Ok(vec![108]));
        let id = c.identity();
        assert_eq!((id.groups, id.lookup_failure), (vec![108, 1000], None));
    }

    #[test]
    fn this_test_process_was_not_elevated() {
        assert!(!at_secure());
    }
}
