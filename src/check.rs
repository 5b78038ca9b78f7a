//! `kvmnet check`: diagnose the host and the config, one finding per line,
//! each with its fix. (Being filled in.)

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
pub fn run(_opts: &CheckOptions) -> Vec<Finding> {
    Vec::new()
}
