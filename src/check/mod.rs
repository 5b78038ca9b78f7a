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
//! - files (config, binaries, /dev/net/tun, the sudo rule): the paths in
//!   [`CheckOptions`].
//!
//! One module a subject: [`config`] (the file, its trust, the scopes that
//! decide taps' settings), [`host`] (facts read from the kernel), [`bridges`],
//! [`tap`] (`--tap`), [`install`] (binaries and the sudo rule), [`tun`]
//! (/dev/net/tun) and [`sysctl`] (br_netfilter, forwarding).

mod bridges;
mod config;
mod host;
mod install;
mod sysctl;
mod tap;
mod tun;

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Error,
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
        }
    }
}

/// Runs every check; the caller prints the findings and exits non-zero
/// when any is an error.
pub fn run(opts: &CheckOptions) -> Vec<Finding> {
    let mut out = Findings::default();
    let config = config::check(opts, &mut out);
    let bins = [
        install::Binary::inspect(&opts.ifup, &opts.sudoers),
        install::Binary::inspect(&opts.ifdown, &opts.sudoers),
    ];
    let users_run_it = bins.iter().any(install::Binary::runs_as_user);
    if let Some(c) = &config {
        config::check_readable(opts, c, users_run_it, &mut out);
    }
    install::check(opts, config.as_ref(), &bins, &mut out);
    tun::check(&opts.tun_device, users_run_it, &mut out);
    let scopes = config.as_ref().map(config::scopes).unwrap_or_default();
    match host::Host::read(opts, &scopes) {
        Ok(host) => {
            if let Some(c) = &config {
                bridges::check(opts, c, &scopes, &host, &mut out);
            }
            if let (Some(tap), Some(c)) = (&opts.tap, &config) {
                tap::check(opts, tap, c, &host, &mut out);
            }
        }
        Err(e) => out.error(
            "netlink",
            format!("cannot list the network interfaces: {e}"),
            "run kvmnet check on a host (or namespace) with rtnetlink; see dmesg".into(),
        ),
    }
    if opts.tap.is_some() && config.is_none() {
        out.error(
            "tap",
            "cannot tell what would happen to the tap: the config does not load".into(),
            "fix the config error above first".into(),
        );
    }
    sysctl::check_br_netfilter(&opts.proc_sys, &mut out);
    sysctl::check_forwarding(&opts.proc_sys, &scopes, &mut out);
    out.0
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
}

/// A fresh directory for one unit test's fake /proc/sys or sysfs tree.
#[cfg(test)]
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvmnet-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
