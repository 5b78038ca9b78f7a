//! The error a run ends with: one line that says what happened and what to do.

use crate::config::ConfigError;
use crate::name::NameError;
use crate::netlink::NetlinkError;
use crate::plan::PlanError;
use crate::tap::TapError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "usage: {prog} TAP (QEMU passes the tap name when it runs this as script= or downscript=)"
    )]
    Usage { prog: &'static str },
    #[error("interface name is not valid UTF-8; use only ASCII letters, digits, '-', '_' and '.'")]
    NotUtf8,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Netlink(NetlinkError),
    #[error("{op}: operation not permitted, although kvmnet holds CAP_NET_ADMIN; the kernel refused it here: the network namespace belongs to another user namespace (a container), or a security module (AppArmor, SELinux) forbids it; see dmesg")]
    NotPermitted { op: String },
    #[error(
        "{name} is {what}; kvmnet only configures tap devices (check the ifname= given to QEMU)"
    )]
    NotATap { name: String, what: String },
    #[error("{asked} is another name of interface {name} (an altname); kvmnet decides on an interface's own name: use {name}")]
    AltName { asked: String, name: String },
    #[error("the default route leaves through bridge {bridge}, which kvmnet cannot use: {cause}; name the bridge to use in /etc/kvmnet/kvmnet.toml (bridge = \"...\")")]
    DefaultRouteBridge { bridge: String, cause: NameError },
    #[error("tap {tap} was created by another process (owned by {owner}) while kvmnet was creating it; kvmnet adopts only a tap of its caller's: pick another name or start again")]
    NameTaken { tap: String, owner: String },
    #[error("tap {tap} disappeared while kvmnet was configuring it (deleted by another process); start the VM again")]
    TapVanished { tap: String },
    #[error("bridge {bridge} does not exist; create it (ip link add {bridge} up type bridge) or set create_bridge = true in {config}")]
    BridgeMissing { bridge: String, config: String },
    #[error("{name} is {what}, not a bridge; set bridge = \"NAME\" in {config} to a bridge")]
    NotABridge {
        name: String,
        what: String,
        config: String,
    },
    #[error("bridge {bridge} is full (a Linux bridge holds at most 1023 ports); put this tap on another bridge")]
    BridgeFull { bridge: String },
    #[error("bridge {bridge} disappeared while tap {tap} was being attached; recreate the bridge and start the VM again")]
    BridgeVanished { bridge: String, tap: String },
    /// Started without root, setuid or a file capability: [`Error::no_privilege`].
    #[error("{prog}{at} has no privilege to change network interfaces{advice}")]
    NoPrivilege {
        prog: &'static str,
        /// " at PATH" when the binary is not the installed one.
        at: String,
        advice: String,
    },
    #[error(transparent)]
    Privilege(#[from] crate::privilege::PrivilegeError),
    #[error(transparent)]
    Guard(#[from] crate::guard::GuardError),
    #[error(transparent)]
    Vxlan(#[from] crate::vxlan::VxlanError),
    #[error(transparent)]
    Ovs(#[from] crate::mode::ovs::OvsError),
    #[error("rate_out: {0}")]
    Shape(Box<crate::shape::ShapeError>),
    /// Refused by the access rules; `details` goes to the security log.
    #[error("{message}")]
    Denied { message: String, details: String },
    #[error("group {group:?} ({rule}) does not exist; create it or fix `group =`")]
    UnknownGroup { group: String, rule: String },
    #[error("group {group:?} ({rule}) could not be looked up: {cause}; kvmnet creates no tap with an unknown group: check the group database (nsswitch.conf, sssd/LDAP) and retry")]
    GroupLookup {
        group: String,
        rule: String,
        cause: String,
    },
    #[error("bridge {bridge} has VLAN filtering off, but {rule} sets vlan/trunk; enable it: ip link set {bridge} type bridge vlan_filtering 1")]
    VlanFilteringOff { bridge: String, rule: String },
    #[error("this kernel cannot filter VLANs on bridges (it was built without CONFIG_BRIDGE_VLAN_FILTERING / 802.1Q support), but {rule} sets vlan/trunk; use a distribution kernel or drop vlan/trunk")]
    NoVlanSupport { rule: String },
    #[error("setting bridge port options of {tap} on {bridge}: {cause}")]
    PortSettings {
        tap: String,
        bridge: String,
        cause: String,
    },
    #[error("a route to {addr} already exists and is not kvmnet's for {tap}; kvmnet will not replace it: remove it (ip route del {addr}) or fix `addresses`")]
    RouteExists { addr: std::net::IpAddr, tap: String },
    #[error("cannot set {path}: {cause}")]
    Sysctl { path: String, cause: String },
    #[error("{why}; usage: kvmnet-bridge-helper [--use-vnet] --br=BRIDGE --fd=UNIXFD (QEMU passes these itself)")]
    HelperUsage { why: String },
    #[error("{0}")]
    QemuAcl(String),
    #[error("QEMU's br={bridge} {problem}; the bridge helper never creates bridges: create it (ip link add {bridge} up type bridge) or give QEMU an existing one")]
    HelperBridge { bridge: String, problem: String },
    #[error("{rule} sets mode = \"{mode}\", which QEMU's bridge helper cannot do; use kvmnet-ifup as script= for such taps")]
    HelperMode { rule: String, mode: &'static str },
    #[error("cannot send the tap to QEMU over its socket: {cause} (did QEMU exit?); the tap was removed")]
    HelperSend { cause: String },
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// A failure after something was changed, and what the rollback did.
    #[error("{cause}; {rollback}")]
    RolledBack { cause: Box<Error>, rollback: String },
}

/// Where the package installs the privileged binaries.
pub const LIBEXEC: &str = "/usr/libexec";

impl Error {
    /// `prog` has no privilege: what works for it, naming the installed
    /// paths and the exact command. The binary's own path (`exe`) decides
    /// what applies: the sudo rule names only the installed path. A file
    /// that is setuid root or has the capability, and still gave none, was
    /// overruled by the kernel (`no_new_privs`: set by the caller).
    pub fn no_privilege(
        prog: &'static str,
        exe: Option<&std::path::Path>,
        grant: crate::privilege::FileGrant,
        no_new_privs: bool,
    ) -> Error {
        use crate::privilege::FileGrant;
        let installed = format!("{LIBEXEC}/{prog}");
        let path = exe.map_or(installed.clone(), |p| p.display().to_string());
        let at = if path == installed {
            String::new()
        } else {
            format!(" at {path}")
        };
        let has = match grant {
            FileGrant::SetuidRoot => Some("is setuid root"),
            FileGrant::NetAdminCap => Some("has cap_net_admin+ep"),
            FileGrant::Nothing => None,
        };
        let advice = match (has, prog) {
            (Some(has), _) if no_new_privs => format!(
                ": the file {has}, but its caller set no_new_privs, which makes the kernel ignore that (QEMU's -sandbox elevateprivileges=deny, systemd's NoNewPrivileges=, a container's policy); start it from a caller without it"
            ),
            (Some(has), _) => format!(
                ": the file {has}, but the kernel ignored that: its file system is mounted nosuid, or this runs in a user namespace that does not own it; install it on a file system mounted without nosuid"
            ),
            (None, "kvmnet-bridge-helper") if at.is_empty() => format!(
                "; QEMU and libvirt run it as the calling user, never through sudo, so it needs the file capability the package gives it: setcap cap_net_admin+ep {installed} (or chmod u+s {installed} on a file system without extended attributes)"
            ),
            (None, "kvmnet-bridge-helper") => format!(
                "; QEMU and libvirt run it as the calling user, never through sudo: point them at the installed {installed} (QEMU's helper=, libvirt's bridge_helper in qemu.conf), or give this copy the capability: setcap cap_net_admin+ep {path}"
            ),
            _ if at.is_empty() => format!(
                "; members of group kvm run it through the sudo rule in /etc/sudoers.d/kvmnet: sudo -n {installed} TAP; root may run it directly; or an admin gives it the capability: setcap cap_net_admin+ep {installed}"
            ),
            _ => format!(
                "; the sudo rule in /etc/sudoers.d/kvmnet covers only the installed {installed} (sudo -n {installed} TAP); this copy needs root (sudo {path} TAP) or the capability: setcap cap_net_admin+ep {path}"
            ),
        };
        Error::NoPrivilege { prog, at, advice }
    }

    /// The security-log line for an access refusal.
    pub fn refusal_details(&self) -> Option<&str> {
        match self {
            Error::Denied { details, .. } => Some(details),
            _ => None,
        }
    }
}

impl From<NetlinkError> for Error {
    fn from(e: NetlinkError) -> Error {
        match (e.errno(), &e) {
            (Some(libc::EPERM | libc::EACCES), NetlinkError::Kernel { op, .. }) => {
                Error::NotPermitted { op: op.clone() }
            }
            _ => Error::Netlink(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::FileGrant;
    use std::path::Path;

    fn msg(prog: &'static str, exe: &str, grant: FileGrant, nnp: bool) -> String {
        let m = Error::no_privilege(prog, Some(Path::new(exe)), grant, nnp).to_string();
        assert_eq!(m.lines().count(), 1, "{m}");
        m
    }

    #[test]
    fn the_installed_tap_helpers_point_at_the_sudo_rule_by_their_full_path() {
        for prog in ["kvmnet-ifup", "kvmnet-ifdown"] {
            let exe = format!("/usr/libexec/{prog}");
            assert_eq!(
                msg(prog, &exe, FileGrant::Nothing, false),
                format!(
                    "{prog} has no privilege to change network interfaces; members of group kvm \
                     run it through the sudo rule in /etc/sudoers.d/kvmnet: sudo -n {exe} TAP; \
                     root may run it directly; or an admin gives it the capability: setcap \
                     cap_net_admin+ep {exe}"
                )
            );
        }
        // the path is known even when /proc is not
        assert_eq!(
            Error::no_privilege("kvmnet-ifup", None, FileGrant::Nothing, false).to_string(),
            msg(
                "kvmnet-ifup",
                "/usr/libexec/kvmnet-ifup",
                FileGrant::Nothing,
                false
            )
        );
    }

    #[test]
    fn a_copy_elsewhere_is_told_what_applies_to_its_own_path() {
        assert_eq!(
            msg("kvmnet-ifdown", "/home/a/kvmnet/target/debug/kvmnet-ifdown", FileGrant::Nothing, false),
            "kvmnet-ifdown at /home/a/kvmnet/target/debug/kvmnet-ifdown has no privilege to change \
             network interfaces; the sudo rule in /etc/sudoers.d/kvmnet covers only the installed \
             /usr/libexec/kvmnet-ifdown (sudo -n /usr/libexec/kvmnet-ifdown TAP); this copy needs \
             root (sudo /home/a/kvmnet/target/debug/kvmnet-ifdown TAP) or the capability: setcap \
             cap_net_admin+ep /home/a/kvmnet/target/debug/kvmnet-ifdown"
        );
    }

    #[test]
    fn the_bridge_helper_is_told_about_its_capability_never_sudo() {
        let installed = msg(
            "kvmnet-bridge-helper",
            "/usr/libexec/kvmnet-bridge-helper",
            FileGrant::Nothing,
            false,
        );
        assert_eq!(
            installed,
            "kvmnet-bridge-helper has no privilege to change network interfaces; QEMU and libvirt \
             run it as the calling user, never through sudo, so it needs the file capability the \
             package gives it: setcap cap_net_admin+ep /usr/libexec/kvmnet-bridge-helper (or chmod \
             u+s /usr/libexec/kvmnet-bridge-helper on a file system without extended attributes)"
        );
        assert_eq!(
            msg(
                "kvmnet-bridge-helper",
                "/opt/kb/kvmnet-bridge-helper",
                FileGrant::Nothing,
                false
            ),
            "kvmnet-bridge-helper at /opt/kb/kvmnet-bridge-helper has no privilege to change \
             network interfaces; QEMU and libvirt run it as the calling user, never through sudo: \
             point them at the installed /usr/libexec/kvmnet-bridge-helper (QEMU's helper=, \
             libvirt's bridge_helper in qemu.conf), or give this copy the capability: setcap \
             cap_net_admin+ep /opt/kb/kvmnet-bridge-helper"
        );
        assert!(!installed.contains("sudo -n"), "{installed}");
    }

    #[test]
    fn a_grant_the_kernel_ignored_is_named_with_the_reason() {
        let e = msg(
            "kvmnet-bridge-helper",
            "/usr/libexec/kvmnet-bridge-helper",
            FileGrant::NetAdminCap,
            true,
        );
        assert_eq!(
            e,
            "kvmnet-bridge-helper has no privilege to change network interfaces: the file has \
             cap_net_admin+ep, but its caller set no_new_privs, which makes the kernel ignore \
             that (QEMU's -sandbox elevateprivileges=deny, systemd's NoNewPrivileges=, a \
             container's policy); start it from a caller without it"
        );
        let e = msg(
            "kvmnet-ifup",
            "/mnt/k/kvmnet-ifup",
            FileGrant::SetuidRoot,
            false,
        );
        assert_eq!(
            e,
            "kvmnet-ifup at /mnt/k/kvmnet-ifup has no privilege to change network interfaces: the \
             file is setuid root, but the kernel ignored that: its file system is mounted nosuid, \
             or this runs in a user namespace that does not own it; install it on a file system \
             mounted without nosuid"
        );
    }
}
