//! Who invoked kvmnet, and whether anything they control (the environment) may
//! steer it.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::DEFAULT_PATH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub ruid: u32,
    pub euid: u32,
    /// The user on whose behalf kvmnet acts: the real uid, or SUDO_UID when
    /// root runs it through sudo. Taps it creates are owned by this user.
    pub uid: u32,
    pub gid: u32,
    pub via_sudo: bool,
    /// AT_SECURE was set: the exec gained privilege (setuid, setgid, file
    /// capabilities, an LSM domain change).
    pub elevated: bool,
    /// The process's groups at start (before a setuid drop clears them), for
    /// callers that are neither root nor sudo users: root's are never needed,
    /// and for a sudo caller they would be root's, so [`Caller::identity`]
    /// looks the user's own up instead.
    pub process_groups: Vec<u32>,
}

/// The environment variables kvmnet reads, all read at one place.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub sudo_uid: Option<OsString>,
    pub sudo_gid: Option<OsString>,
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
        );
        // Only a non-root caller's own groups are ever asked for (plain root
        // is unrestricted, a sudo user's are looked up by name). nix sizes the
        // list from sysconf(_SC_NGROUPS_MAX), which glibc reads from /proc:
        // ~0.02 ms of a root VM start saved by not asking.
        if !c.is_root() && !c.via_sudo {
            c.process_groups = nix::unistd::getgroups()
                .unwrap_or_default()
                .into_iter()
                .map(|g| g.as_raw())
                .collect();
        }
        c
    }

    /// Plain root (not root acting for a sudo user): unrestricted.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The user and all their groups, for the ACL and tap ownership.
    pub fn identity(&self) -> crate::acl::Identity {
        let mut groups = if self.via_sudo {
            sudo_user_groups(self.uid, self.gid)
        } else {
            self.process_groups.clone()
        };
        groups.push(self.gid);
        groups.sort_unstable();
        groups.dedup();
        crate::acl::Identity {
            uid: self.uid,
            groups,
        }
    }

    /// The pure part of [`Caller::detect`].
    pub fn from_parts(ruid: u32, euid: u32, rgid: u32, elevated: bool, env: &Env) -> Caller {
        let parse = |v: &Option<OsString>| v.as_ref()?.to_str()?.parse::<u32>().ok();
        // SUDO_UID only means something when sudo really made us root; from any
        // other caller it is just a string they chose.
        let sudo = if ruid == 0 && euid == 0 && !elevated {
            parse(&env.sudo_uid).filter(|&u| u != 0)
        } else {
            None
        };
        match sudo {
            Some(uid) => Caller {
                ruid,
                euid,
                uid,
                gid: parse(&env.sudo_gid).unwrap_or(uid),
                via_sudo: true,
                elevated,
                process_groups: Vec::new(),
            },
            None => Caller {
                ruid,
                euid,
                uid: ruid,
                gid: rgid,
                via_sudo: false,
                elevated,
                process_groups: Vec::new(),
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

/// The groups of the user sudo acted for, from the user database; only their
/// primary group when they have no entry.
fn sudo_user_groups(uid: u32, gid: u32) -> Vec<u32> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    let Some(user) = user else { return vec![gid] };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return vec![gid];
    };
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid))
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![gid])
}

/// AT_SECURE from the auxiliary vector the kernel passed at exec. glibc's
/// getauxval reads the copy it keeps; /proc/self/auxv said the same for
/// 0.03 ms more per run (opening a /proc file is that slow here).
fn at_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector glibc saved at start
    // (it takes and returns integers, and is thread-safe).
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sudo_uid: Option<&str>, config: Option<&str>) -> Env {
        Env {
            sudo_uid: sudo_uid.map(Into::into),
            sudo_gid: sudo_uid.map(Into::into),
            config: config.map(Into::into),
            bridge: None,
        }
    }

    #[test]
    fn plain_user_is_the_real_uid() {
        let c = Caller::from_parts(1000, 1000, 1000, false, &env(Some("5"), None));
        assert_eq!((c.uid, c.via_sudo), (1000, false));
    }

    #[test]
    fn sudo_uid_counts_only_for_real_root() {
        let c = Caller::from_parts(0, 0, 0, false, &env(Some("1000"), None));
        assert_eq!((c.uid, c.gid, c.via_sudo), (1000, 1000, true));
        // setuid root started by user 1000 who set SUDO_UID=0 to look like root
        let c = Caller::from_parts(1000, 0, 1000, true, &env(Some("0"), None));
        assert_eq!((c.uid, c.via_sudo), (1000, false));
        // garbage is ignored
        let c = Caller::from_parts(0, 0, 0, false, &env(Some("-1"), None));
        assert_eq!((c.uid, c.via_sudo), (0, false));
    }

    #[test]
    fn config_override_needs_real_unelevated_root() {
        let e = env(None, Some("/tmp/evil.toml"));
        let root = Caller::from_parts(0, 0, 0, false, &e);
        assert_eq!(root.config_path(&e), PathBuf::from("/tmp/evil.toml"));
        for c in [
            Caller::from_parts(1000, 1000, 1000, false, &e),
            Caller::from_parts(1000, 0, 1000, true, &e),
            Caller::from_parts(0, 0, 0, true, &e),
        ] {
            assert_eq!(c.config_path(&e), PathBuf::from(DEFAULT_PATH), "{c:?}");
        }
        let e = env(Some("1000"), Some("/tmp/evil.toml"));
        let sudo = Caller::from_parts(0, 0, 0, false, &e);
        assert_eq!(sudo.config_path(&e), PathBuf::from(DEFAULT_PATH));
    }

    #[test]
    fn this_test_process_was_not_elevated() {
        assert!(!at_secure());
    }
}
