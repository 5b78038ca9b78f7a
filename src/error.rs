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
    #[error("{op}: operation not permitted; kvmnet needs CAP_NET_ADMIN: run it as root, through sudo, or give it the capability (setcap cap_net_admin+ep)")]
    NotPermitted { op: String },
    #[error(
        "{name} is {what}; kvmnet only configures tap devices (check the ifname= given to QEMU)"
    )]
    NotATap { name: String, what: String },
    #[error("{asked} is another name of interface {name} (an altname); kvmnet decides on an interface's own name: use {name}")]
    AltName { asked: String, name: String },
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
    #[error("{prog} has no privilege to change network interfaces; give it CAP_NET_ADMIN in one of three ways: the sudo rule from packaging/ (sudo {prog} TAP), `setcap cap_net_admin+ep {path}`, or run it as root")]
    NoPrivilege { prog: &'static str, path: String },
    #[error(transparent)]
    Privilege(#[from] crate::privilege::PrivilegeError),
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
    #[error("{rule} sets mode = \"route\", which QEMU's bridge helper cannot do; use kvmnet-ifup as script= for routed taps")]
    HelperRouted { rule: String },
    #[error("cannot send the tap to QEMU over its socket: {cause} (did QEMU exit?); the tap was removed")]
    HelperSend { cause: String },
    /// A failure after something was changed, and what the rollback did.
    #[error("{cause}; {rollback}")]
    RolledBack { cause: Box<Error>, rollback: String },
}

impl Error {
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
