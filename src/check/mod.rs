//! `kvmnet check`: diagnose the host and the config, one finding per line,
//! each with its fix.
//!
//! A finding that predicts a refusal is computed by the function the runtime
//! refuses with (the trust rule, the bridge choice, the VLAN precondition,
//! the attach plan), so that check and kvmnet-ifup cannot disagree; check
//! adds the facts the runtime need not know (the kernel's VLAN support
//! before a bridge exists, sysctls, wireless ports, the installation).
//!
//! Where each fact comes from, so that every check can be pointed at a test
//! namespace and temporary files:
//! - links (bridges, ports, MTUs, VLAN filtering): rtnetlink, on the calling
//!   thread's socket, so a thread that entered a network namespace sees that
//!   namespace. One link dump: this is the admin command, not the ifup path.
//! - `/proc/sys/net/...` ([`CheckOptions::proc_sys`]): the kernel answers for
//!   the network namespace of the thread that opens the file.
//! - wireless ports ([`CheckOptions::sys_class_net`]): `X/phy80211` (cfg80211)
//!   or `X/wireless` (wireless extensions). sysfs shows the namespace of
//!   whoever mounted it, not the caller's, so the entry counts only when its
//!   `ifindex` is the index netlink gave (`ip netns exec` remounts /sys).
//! - kernel VLAN filtering: a bridge's `vlan_filtering` is known (as the
//!   runtime reads it) only when the kernel has CONFIG_BRIDGE_VLAN_FILTERING.
//!   With no bridge in the namespace, any bridge in sysfs answers (a kernel
//!   fact, the same in every namespace): `bridge/vlan_filtering` exists only
//!   with the feature.
//! - files (config, binaries, /dev/net/tun, the sudo rule, bridge.conf,
//!   QEMU's helper, libvirt's per-user qemu.conf): the paths in
//!   [`CheckOptions`].
//!
//! check runs as whoever starts it, and an ordinary user cannot read
//! everything it looks at (the 0440 sudo rule, an include of bridge.conf
//! meant for another user). What it could not read is said as such, a
//! finding of its own ([`Severity::Unchecked`]: "cannot read P as user alice
//! (uid 1001)", run it as root), never taken for a missing or good file.
//!
//! One module a subject: [`config`] (the file, its trust, the scopes that
//! decide taps' settings), [`host`] (facts read from the kernel), [`bridges`],
//! [`tap`] (`--tap`), [`install`] (binaries and the sudo rule), [`helper`]
//! (kvmnet-bridge-helper, bridge.conf, whom it admits), [`libvirt`] (which
//! helper QEMU and libvirt run by default), [`tun`] (/dev/net/tun),
//! [`guard`] (nf_tables for the guest guard, stale and missing guard state)
//! [`net`] (`[[network]]`s: bridge, rules, dnsmasq, forwarding, overlapping
//! routes) and [`sysctl`] (br_netfilter, forwarding).

mod bridges;
mod config;
mod guard;
mod helper;
mod host;
mod install;
mod libvirt;
mod net;
mod sysctl;
mod tap;
mod tun;
mod vxlan;

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    /// Not checked: the user check runs as may not read what it needs. Not a
    /// fault of the host, and not a pass either: root can check it.
    Unchecked,
    Error,
}

impl Severity {
    /// How a finding's line starts: "ok", "warning", "unchecked", "error".
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Unchecked => "unchecked",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Short name of the check: "config", "bridge", "br_netfilter", ...
    pub check: &'static str,
    pub message: String,
    /// What to do about it, when there is something to do.
    pub fix: Option<String>,
}

/// The line `kvmnet check` prints: "error: MESSAGE; fix: FIX".
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.severity.label(), self.message)?;
        match &self.fix {
            Some(fix) => write!(f, "; fix: {fix}"),
            None => Ok(()),
        }
    }
}

/// `kvmnet check`'s exit status: 1 when a finding is an error; otherwise 3
/// when something could not be checked as this user (as monitoring plugins
/// say "unknown"), so that a partial check never passes for a clean one;
/// else 0.
pub fn exit_code(findings: &[Finding]) -> u8 {
    let worst = findings.iter().map(|f| f.severity).max();
    match worst {
        Some(Severity::Error) => 1,
        Some(Severity::Unchecked) => 3,
        _ => 0,
    }
}

/// Where to look; every path can be redirected so that each check is
/// testable (a namespace for the links, a temp dir for files).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub config_path: PathBuf,
    /// Check what would happen for this tap name.
    pub tap: Option<String>,
    pub proc_sys: PathBuf,
    pub sys_class_net: PathBuf,
    pub tun_device: PathBuf,
    pub ifup: PathBuf,
    pub ifdown: PathBuf,
    pub sudoers: PathBuf,
    pub bridge_helper: PathBuf,
    /// QEMU's bridge ACL, as kvmnet-bridge-helper reads it.
    pub bridge_conf: PathBuf,
    /// The helper QEMU's `-netdev bridge` and libvirt run when not told
    /// otherwise (Debian's path).
    pub qemu_helper: PathBuf,
    /// libvirt's QEMU daemons: is libvirt installed?
    pub libvirt_daemons: Vec<PathBuf>,
    /// The qemu.conf of the user's session libvirt, where `bridge_helper`
    /// is set; `None` when check runs as root (root's libvirt runs in system
    /// mode, which creates taps itself) or there is no home directory.
    pub session_qemu_conf: Option<PathBuf>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            config_path: PathBuf::from(crate::config::DEFAULT_PATH),
            tap: None,
            proc_sys: PathBuf::from("/proc/sys"),
            sys_class_net: PathBuf::from("/sys/class/net"),
            tun_device: PathBuf::from(crate::tap::TUN_PATH),
            ifup: PathBuf::from("/usr/libexec/kvmnet-ifup"),
            ifdown: PathBuf::from("/usr/libexec/kvmnet-ifdown"),
            sudoers: PathBuf::from("/etc/sudoers.d/kvmnet"),
            bridge_helper: PathBuf::from("/usr/libexec/kvmnet-bridge-helper"),
            bridge_conf: PathBuf::from(crate::qemu_acl::DEFAULT_PATH),
            qemu_helper: PathBuf::from(libvirt::DEBIAN_QEMU_HELPER),
            libvirt_daemons: ["/usr/sbin/virtqemud", "/usr/sbin/libvirtd"]
                .map(PathBuf::from)
                .to_vec(),
            session_qemu_conf: libvirt::session_qemu_conf(),
        }
    }
}

/// Runs every check; the caller prints the findings and exits with
/// [`exit_code`].
pub fn run(opts: &CheckOptions) -> Vec<Finding> {
    let mut out = Findings::default();
    let loaded = config::check(opts, &mut out);
    let config = loaded.as_ref().ok();
    let bins = [
        install::Binary::inspect(&opts.ifup, Some(&opts.sudoers)),
        install::Binary::inspect(&opts.ifdown, Some(&opts.sudoers)),
    ];
    let helper = install::Binary::inspect(&opts.bridge_helper, None);
    // QEMU runs the bridge helper as the user: privileged, it reads the
    // config and opens /dev/net/tun as them, as a setuid or file-capability
    // kvmnet-ifup does.
    let users_run_it = bins
        .iter()
        .chain([&helper])
        .any(install::Binary::runs_as_user);
    if let Some(c) = config {
        config::check_readable(opts, c, users_run_it, &mut out);
    }
    install::check(opts, config, &bins, &mut out);
    tun::check(&opts.tun_device, users_run_it, &mut out);
    let scopes = config.map(config::scopes).unwrap_or_default();
    let host = match host::Host::read(opts, &scopes) {
        Ok(host) => {
            if let Some(c) = config {
                bridges::check(opts, c, &scopes, &host, &mut out);
            }
            if let (Some(tap), Some(c)) = (&opts.tap, config) {
                tap::check(opts, tap, c, &host, &mut out);
            }
            Some(host)
        }
        Err(e) if e.denied => {
            out.unchecked(
                "netlink",
                format!(
                    "cannot list the network interfaces {}: {}",
                    as_whom(),
                    e.message
                ),
            );
            None
        }
        Err(e) => {
            out.error(
                "netlink",
                format!("cannot list the network interfaces: {}", e.message),
                "run kvmnet check on a host (or namespace) with rtnetlink; see dmesg".into(),
            );
            None
        }
    };
    match (&opts.tap, loaded.as_ref().err()) {
        (Some(_), Some(config::Unloaded::Unreadable)) => out.unchecked(
            "tap",
            format!(
                "cannot tell what would happen to the tap: cannot read {} {}",
                opts.config_path.display(),
                as_whom()
            ),
        ),
        (Some(_), Some(config::Unloaded::Invalid)) => out.error(
            "tap",
            "cannot tell what would happen to the tap: the config does not load".into(),
            "fix the config error above first".into(),
        ),
        _ => {}
    }
    helper::check(opts, config, &helper, host.as_ref(), &mut out);
    guard::check(config, host.as_ref(), &mut out);
    vxlan::check(config, host.as_ref(), &mut out);
    libvirt::check(opts, &helper, &mut out);
    if let Some(c) = config {
        net::check(c, &opts.proc_sys, &mut out);
    }
    sysctl::check_br_netfilter(&opts.proc_sys, &mut out);
    sysctl::check_forwarding(&opts.proc_sys, &scopes, &mut out);
    out.0
}

/// Whether an error is the kernel refusing this user, as opposed to the
/// thing being absent or broken: what only a check as root can get past.
fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// "as user alice (uid 1001)", or "as uid 1001" when the name does not
/// resolve: whom a check that could not be done was refused to.
fn as_whom() -> &'static str {
    static WHOM: OnceLock<String> = OnceLock::new();
    WHOM.get_or_init(|| {
        let uid = nix::unistd::geteuid().as_raw();
        match crate::acl::System.user_entry(uid) {
            Ok(Some(pw)) => format!("as user {} (uid {uid})", pw.name.to_string_lossy()),
            _ => format!("as uid {uid}"),
        }
    })
}

/// The findings so far, in the order they are made.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        severity: Severity,
        check: &'static str,
        message: String,
        fix: Option<String>,
    ) {
        debug_assert!(!message.contains('\n'), "{message}");
        self.0.push(Finding {
            severity,
            check,
            message,
            fix,
        });
    }
    fn ok(&mut self, check: &'static str, message: String) {
        self.push(Severity::Ok, check, message, None);
    }
    fn warn(&mut self, check: &'static str, message: String, fix: String) {
        self.push(Severity::Warning, check, message, Some(fix));
    }
    fn error(&mut self, check: &'static str, message: String, fix: String) {
        self.push(Severity::Error, check, message, Some(fix));
    }
    /// Something this user may not read or look at: `message` says what (and
    /// [`as_whom`]), the fix is to run the check as root.
    fn unchecked(&mut self, check: &'static str, message: String) {
        let fix = if nix::unistd::geteuid().is_root() {
            "find out what refuses root here (a security module, a mount option), then run kvmnet check again"
        } else {
            "run as root to check it: sudo kvmnet check"
        };
        self.push(Severity::Unchecked, check, message, Some(fix.into()));
    }
}

/// A fresh directory for one unit test's fake /proc/sys or sysfs tree.
#[cfg(test)]
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvmnet-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity, fix: Option<&str>) -> Finding {
        Finding {
            severity,
            check: "x",
            message: "m".into(),
            fix: fix.map(str::to_owned),
        }
    }

    #[test]
    fn a_check_left_undone_is_neither_clean_nor_a_failure() {
        let ok = finding(Severity::Ok, None);
        let warning = finding(Severity::Warning, Some("f"));
        let unchecked = finding(Severity::Unchecked, Some("f"));
        let error = finding(Severity::Error, Some("f"));
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[ok.clone(), warning.clone()]), 0);
        assert_eq!(exit_code(&[ok.clone(), unchecked.clone(), warning]), 3);
        assert_eq!(exit_code(&[error.clone(), unchecked.clone()]), 1);
        assert_eq!(ok.to_string(), "ok: m");
        assert_eq!(unchecked.to_string(), "unchecked: m; fix: f");
        assert_eq!(error.to_string(), "error: m; fix: f");
        assert_eq!(
            serde_json::to_value(&unchecked).unwrap()["severity"],
            "unchecked"
        );
    }
}
