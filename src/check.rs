//! `kvmnet check`: diagnose the host and the config, one finding per line,
//! each with its fix.
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
//! - kernel VLAN filtering: a bridge's IFLA_INFO_DATA carries
//!   IFLA_BR_VLAN_DEFAULT_PVID / IFLA_BR_VLAN_PROTOCOL only when the kernel
//!   has CONFIG_BRIDGE_VLAN_FILTERING; IFLA_BR_VLAN_FILTERING itself is
//!   reported (as 0) by kernels without it too. With no bridge in the
//!   namespace, any bridge in sysfs answers (a kernel fact, the same in every
//!   namespace): `bridge/vlan_filtering` exists only with the feature.
//! - files (config, binaries, /dev/net/tun, the sudo rule): the paths in
//!   [`CheckOptions`].

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rtnetlink::packet_route::link::{InfoBridge, InfoData, LinkAttribute, LinkInfo, LinkMessage};

use crate::acl::Verdict;
use crate::config::{Config, ConfigError};
use crate::name::{BridgeName, TapName};
use crate::netlink::Link;
use crate::plan::{BridgeChoice, BridgeReason};
use crate::settings::{MtuPolicy, NetMode, Settings};
use crate::sysctl::Family;
use crate::trust::TrustError;

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
    let mut out = Out::default();
    let config = check_config(opts, &mut out);
    let bins = [
        Binary::inspect(&opts.ifup, &opts.sudoers),
        Binary::inspect(&opts.ifdown, &opts.sudoers),
    ];
    let users_run_it = bins.iter().any(Binary::runs_as_user);
    if let Some(c) = &config {
        check_config_readable(opts, c, &bins, &mut out);
    }
    check_install(opts, config.as_ref(), &bins, &mut out);
    check_tun(&opts.tun_device, users_run_it, &mut out);
    let targets = config.as_ref().map(targets).unwrap_or_default();
    let cfg_name = config_name(opts);
    match Host::read(opts, &targets) {
        Ok(host) => {
            if let Some(c) = &config {
                check_bridges(opts, c, &targets, &host, &cfg_name, &mut out);
            }
            if let (Some(tap), Some(c)) = (&opts.tap, &config) {
                check_tap(tap, c, &host, &cfg_name, &mut out);
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
    check_br_netfilter(&opts.proc_sys, &mut out);
    check_forwarding(&opts.proc_sys, &targets, &mut out);
    out.0
}

#[derive(Default)]
struct Out(Vec<Finding>);

impl Out {
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

fn config_name(opts: &CheckOptions) -> String {
    opts.config_path.display().to_string()
}

// ---------------------------------------------------------------- config

/// Parse, then trust (as ifup checks it for every caller but plain root).
/// Returns the config the other checks work from: the built-in defaults when
/// there is no file, `None` when it does not load.
fn check_config(opts: &CheckOptions, out: &mut Out) -> Option<Config> {
    let path = &opts.config_path;
    let shown = path.display();
    let config = match Config::load(path, false) {
        Ok(c) if c.source.is_none() => {
            out.warn(
                "config",
                format!(
                    "no config file at {shown}: kvmnet works like Debian's /etc/qemu-ifup: taps join the bridge that carries the IPv4 default route, else br0, created on demand; everyone but root is denied"
                ),
                format!("write {shown} to name the bridge and who may use it (README: Configuration)"),
            );
            return Some(c);
        }
        Ok(c) => Some(c),
        Err(e) => {
            let fix = match &e {
                ConfigError::Syntax { line, .. } | ConfigError::Value { line, .. } => format!(
                    "correct line {line} of {shown}; until then every kvmnet-ifup fails without changing anything"
                ),
                ConfigError::TooLarge { .. } => {
                    format!("a kvmnet config is a few hundred bytes: replace {shown} with the real one")
                }
                ConfigError::Read { source, .. }
                    if source.kind() == io::ErrorKind::PermissionDenied =>
                {
                    "run kvmnet check as root".into()
                }
                _ => format!("make {shown} a readable regular file, or remove it for the built-in defaults"),
            };
            out.error("config", e.to_string(), fix);
            None
        }
    };
    check_trust(path, out);
    let c = config?;
    let rules = c.rules.len();
    let acl = c.acl.rules.len();
    out.ok(
        "config",
        format!("{shown} parses: {rules} [[rule]] table(s), {acl} [[allow]]/[[deny]] rule(s)"),
    );
    Some(c)
}

fn check_trust(path: &Path, out: &mut Out) {
    let shown = path.display();
    let refused = "would be refused for every caller but plain root (sudo, setuid and file-capability runs check it)";
    match crate::trust::open_trusted(path) {
        Ok(None) => {}
        Ok(Some(_)) => out.ok(
            "config",
            format!("{shown} and its directories are root's and writable only by root"),
        ),
        Err(TrustError::NotRootOwned {
            what,
            shown: at,
            uid,
            ..
        }) => out.error(
            "config",
            format!("{shown} {refused}: {what} {at} is owned by uid {uid}, not root"),
            format!("chown root:root {at}"),
        ),
        Err(TrustError::Writable {
            what,
            shown: at,
            by,
            ..
        }) => out.error(
            "config",
            format!("{shown} {refused}: {what} {at} is writable by {by}"),
            format!("chmod go-w {at}"),
        ),
        Err(TrustError::NotRegular { .. }) => out.error(
            "config",
            format!("{shown} {refused}: it is not a regular file"),
            format!("replace {shown} with a regular file"),
        ),
        Err(e @ TrustError::Io { .. }) => {
            out.error("config", e.to_string(), "run kvmnet check as root".into())
        }
    }
}

/// A setuid or file-capability kvmnet reads the config as the user (every
/// capability but CAP_NET_ADMIN is gone by then): when users are meant to
/// run it (`[[allow]]` rules), the file must be readable by others and its
/// directories searchable.
fn check_config_readable(opts: &CheckOptions, config: &Config, bins: &[Binary], out: &mut Out) {
    let users_allowed = config.acl.rules.iter().any(|r| r.verdict == Verdict::Allow);
    if config.source.is_none() || !users_allowed || !bins.iter().any(Binary::runs_as_user) {
        return;
    }
    let Ok(real) = std::fs::canonicalize(&opts.config_path) else {
        return;
    };
    let mut dirs: Vec<&Path> = real.ancestors().skip(1).collect();
    dirs.reverse();
    let blocked = dirs
        .into_iter()
        .filter(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 == 0))
        .map(|d| (d, "o+x", "is not searchable by others"))
        .chain(
            std::fs::metadata(&real)
                .is_ok_and(|m| m.mode() & 0o004 == 0)
                .then_some((real.as_path(), "o+r", "is not readable by others")),
        );
    for (at, mode, what) in blocked {
        out.error(
            "config",
            format!(
                "{} {what}, but setuid and file-capability kvmnet read the config as the calling user: the users of the [[allow]] rules are refused",
                at.display()
            ),
            format!("chmod {mode} {}", at.display()),
        );
    }
}

// ---------------------------------------------------------------- targets

/// One place in the config that decides taps' settings: the top level or a
/// `[[rule]]`, with its effective settings.
struct Target {
    who: String,
    settings: Settings,
}

fn targets(config: &Config) -> Vec<Target> {
    let top = if config.source.is_some() {
        "the top level"
    } else {
        "the built-in defaults (no config file)"
    };
    let mut out = vec![Target {
        who: top.into(),
        // the settings of a tap that matches no rule
        settings: crate::settings::effective(&config.defaults, None),
    }];
    for (i, rule) in config.rules.iter().enumerate() {
        let settings = crate::settings::effective(&config.defaults, Some((i, rule)));
        let who = settings.rule.clone().unwrap_or_default();
        out.push(Target { who, settings });
    }
    out
}

fn bridge_choice(
    settings: &Settings,
    config_file: bool,
    default_route_bridge: Option<&BridgeName>,
) -> BridgeChoice {
    crate::plan::configured_bridge(settings).unwrap_or_else(|| {
        crate::plan::fallback_bridge(config_file, settings, default_route_bridge.cloned())
    })
}

// ---------------------------------------------------------------- host facts

/// Does the kernel filter VLANs on bridges?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VlanSupport {
    Yes,
    No,
    Unknown,
}

const VLAN_FEATURE: &str = "CONFIG_BRIDGE_VLAN_FILTERING";

/// What a bridge's IFLA_INFO_DATA says beyond [`Link`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct BridgeInfo {
    /// The kernel reported its VLAN attributes (default pvid, protocol).
    vlan_attrs: bool,
    /// The bridge's own br_netfilter switches that are on: "iptables", ...
    nf_call: Vec<&'static str>,
}

struct Host {
    links: Vec<Link>,
    /// Bridges by index.
    bridges: HashMap<u32, BridgeInfo>,
    kernel_vlan: VlanSupport,
    default_route_bridge: Option<BridgeName>,
}

impl Host {
    fn read(opts: &CheckOptions, targets: &[Target]) -> Result<Host, String> {
        let msgs = dump_links()?;
        let mut bridges = HashMap::new();
        let mut links = Vec::with_capacity(msgs.len());
        for (l, m) in msgs {
            let info = bridge_info(&m);
            if l.is_bridge() {
                bridges.insert(l.index, info);
            }
            links.push(l);
        }
        let kernel_vlan = if bridges.values().any(|b| b.vlan_attrs) {
            VlanSupport::Yes
        } else if !bridges.is_empty() {
            VlanSupport::No
        } else {
            sysfs_vlan_support(&opts.sys_class_net)
        };
        // Only needed (a route dump) when some tap has no bridge configured.
        let needs_fallback = targets
            .iter()
            .any(|t| t.settings.mode == NetMode::Bridge && t.settings.bridge.is_none());
        let default_route_bridge = if needs_fallback {
            default_route_bridge(&links)
        } else {
            None
        };
        Ok(Host {
            links,
            bridges,
            kernel_vlan,
            default_route_bridge,
        })
    }

    fn by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    fn ports(&self, bridge: &Link) -> impl Iterator<Item = &Link> {
        let index = bridge.index;
        self.links.iter().filter(move |l| l.master == Some(index))
    }

    fn name_of(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| format!("interface #{index}"), |l| l.name.clone())
    }

    /// VLAN support as seen on this bridge (falls back to the kernel-wide
    /// answer for a bridge the dump did not classify).
    fn bridge_vlan(&self, bridge: &Link) -> VlanSupport {
        match (
            self.bridges.get(&bridge.index).map(|b| b.vlan_attrs),
            bridge.vlan_filtering,
        ) {
            (Some(true), Some(_)) => VlanSupport::Yes,
            (Some(_), _) => VlanSupport::No,
            (None, _) => self.kernel_vlan,
        }
    }
}

fn dump_links() -> Result<Vec<(Link, LinkMessage)>, String> {
    crate::netlink::Netlink::open()
        .and_then(|nl| nl.dump_links())
        .map_err(|e| e.to_string())
}

/// The bridge attributes [`Link`] leaves out: whether the kernel reports
/// the VLAN attributes only a kernel with CONFIG_BRIDGE_VLAN_FILTERING has,
/// and the bridge's own nf_call_* switches.
fn bridge_info(msg: &LinkMessage) -> BridgeInfo {
    let mut out = BridgeInfo::default();
    for a in &msg.attributes {
        let LinkAttribute::LinkInfo(infos) = a else {
            continue;
        };
        for i in infos {
            let LinkInfo::Data(InfoData::Bridge(b)) = i else {
                continue;
            };
            for x in b {
                match x {
                    InfoBridge::VlanDefaultPvid(_) | InfoBridge::VlanProtocol(_) => {
                        out.vlan_attrs = true
                    }
                    InfoBridge::NfCallIpTables(true) => out.nf_call.push("iptables"),
                    InfoBridge::NfCallIp6Tables(true) => out.nf_call.push("ip6tables"),
                    InfoBridge::NfCallArpTables(true) => out.nf_call.push("arptables"),
                    _ => {}
                }
            }
        }
    }
    out
}

/// Whether the bridge's address follows its ports: only an address set
/// explicitly (addr_assign_type 3, NET_ADDR_SET) stays put. Unknown (no
/// sysfs) counts as fixed: the finding would be a guess.
fn follows_ports(sys_class_net: &Path, bridge: &str) -> bool {
    std::fs::read_to_string(sys_class_net.join(bridge).join("addr_assign_type"))
        .is_ok_and(|t| t.trim() != "3")
}

/// Any bridge in sysfs: `bridge/vlan_filtering` exists only with the feature.
fn sysfs_vlan_support(sys_class_net: &Path) -> VlanSupport {
    let Ok(entries) = std::fs::read_dir(sys_class_net) else {
        return VlanSupport::Unknown;
    };
    let mut seen_bridge = false;
    for e in entries.flatten() {
        let bridge = e.path().join("bridge");
        if bridge.is_dir() {
            if bridge.join("vlan_filtering").exists() {
                return VlanSupport::Yes;
            }
            seen_bridge = true;
        }
    }
    if seen_bridge {
        VlanSupport::No
    } else {
        VlanSupport::Unknown
    }
}

/// Debian's rule, as ifup applies it: the first IPv4 default-route interface
/// that is a bridge.
fn default_route_bridge(links: &[Link]) -> Option<BridgeName> {
    let nl = crate::netlink::Netlink::open().ok()?;
    let oifs = nl.default_route_oifs().ok()?;
    oifs.iter().find_map(|i| {
        links
            .iter()
            .find(|l| l.index == *i && l.is_bridge())
            .and_then(|l| BridgeName::new(&l.name).ok())
    })
}

/// Whether sysfs says `name` (interface `index`) is wireless.
fn is_wireless(sys_class_net: &Path, name: &str, index: u32) -> bool {
    let dir = sys_class_net.join(name);
    let same_device = std::fs::read_to_string(dir.join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(index);
    same_device && (dir.join("phy80211").exists() || dir.join("wireless").exists())
}

// ---------------------------------------------------------------- bridges

/// A problem of a bridge for taps that need VLAN filtering: (message, fix).
fn vlan_problem(
    bridge: &str,
    support: VlanSupport,
    filtering: Option<bool>,
    who: &str,
) -> Option<(String, String)> {
    match (support, filtering) {
        (VlanSupport::No, _) | (_, None) => Some((
            format!(
                "this kernel cannot filter VLANs on bridges (built without {VLAN_FEATURE}), but {who} sets vlan/trunk on bridge {bridge}; its taps would be refused"
            ),
            format!(
                "boot a kernel built with {VLAN_FEATURE}=y (distribution kernels are), or drop vlan/trunk from {who}"
            ),
        )),
        (_, Some(false)) => Some((
            format!(
                "bridge {bridge} has VLAN filtering off, but {who} sets vlan/trunk; its taps would be refused"
            ),
            format!("ip link set {bridge} type bridge vlan_filtering 1"),
        )),
        (_, Some(true)) => None,
    }
}

struct Use<'a> {
    who: &'a str,
    create: bool,
    vlans: bool,
    reason: BridgeReason,
}

fn check_bridges(
    opts: &CheckOptions,
    config: &Config,
    targets: &[Target],
    host: &Host,
    cfg: &str,
    out: &mut Out,
) {
    let mut uses: BTreeMap<String, Vec<Use<'_>>> = BTreeMap::new();
    for t in targets
        .iter()
        .filter(|t| t.settings.mode == NetMode::Bridge)
    {
        let choice = bridge_choice(
            &t.settings,
            config.source.is_some(),
            host.default_route_bridge.as_ref(),
        );
        uses.entry(choice.name.as_str().to_owned())
            .or_default()
            .push(Use {
                who: &t.who,
                create: choice.create,
                vlans: t.settings.needs_vlan_filtering(),
                reason: choice.reason,
            });
    }
    for (name, uses) in &uses {
        let list = |f: &dyn Fn(&Use<'_>) -> bool| -> String {
            uses.iter()
                .filter(|u| f(u))
                .map(|u| u.who)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all = list(&|_| true);
        let why = if uses.iter().any(|u| u.reason == BridgeReason::DefaultRoute) {
            " (it carries the IPv4 default route: Debian's rule)"
        } else if uses.iter().any(|u| u.reason == BridgeReason::Fallback) {
            " (no bridge set and none carries the IPv4 default route: Debian's rule)"
        } else {
            ""
        };
        match host.by_name(name) {
            None => {
                let creators = list(&|u| u.create);
                let refused = list(&|u| !u.create);
                if creators.is_empty() {
                    out.error(
                        "bridge",
                        format!("bridge {name} does not exist{why}; taps of {refused} would be refused"),
                        format!("create it (ip link add {name} up type bridge) or set create_bridge = true in {cfg}"),
                    );
                    continue;
                }
                let vlan_creators = list(&|u| u.create && u.vlans);
                if !vlan_creators.is_empty() {
                    match host.kernel_vlan {
                        VlanSupport::No => out.error(
                            "vlan",
                            format!(
                                "this kernel cannot filter VLANs on bridges (built without {VLAN_FEATURE}), but {vlan_creators} sets vlan/trunk and would create bridge {name} with VLAN filtering; its taps would be refused"
                            ),
                            format!(
                                "boot a kernel built with {VLAN_FEATURE}=y (distribution kernels are), or drop vlan/trunk from {vlan_creators}"
                            ),
                        ),
                        VlanSupport::Unknown => out.warn(
                            "vlan",
                            format!(
                                "bridge {name} does not exist yet and no other bridge shows whether this kernel can filter VLANs ({VLAN_FEATURE}), which {vlan_creators} needs"
                            ),
                            format!("create it now to find out: ip link add {name} up type bridge vlan_filtering 1"),
                        ),
                        VlanSupport::Yes => {}
                    }
                }
                if refused.is_empty() {
                    out.ok(
                        "bridge",
                        format!("bridge {name} does not exist yet{why}; kvmnet-ifup creates it on first use for {creators} (a private bridge: no ports, no address)"),
                    );
                } else {
                    out.warn(
                        "bridge",
                        format!("bridge {name} does not exist yet: taps of {creators} create it, but taps of {refused} are refused until then"),
                        format!("create it now (ip link add {name} up type bridge) or set create_bridge = true for those in {cfg}"),
                    );
                }
            }
            Some(l) if !l.is_bridge() => out.error(
                "bridge",
                format!("{name} is {}, not a bridge, but {all} uses it as the bridge", l.kind.describe()),
                format!("set bridge = \"NAME\" in {cfg} to a bridge, or replace {name} by one (ip link del {name}; ip link add {name} up type bridge)"),
            ),
            Some(br) => {
                let ports = host.ports(br).count();
                out.ok(
                    "bridge",
                    format!("bridge {name} exists{why} (mtu {}, {ports} port(s)), used by {all}", br.mtu),
                );
                if !br.up {
                    out.warn(
                        "bridge",
                        format!("bridge {name} is down: its guests get no traffic (kvmnet-ifup does not bring it up)"),
                        format!("ip link set {name} up"),
                    );
                }
                if follows_ports(&opts.sys_class_net, name) {
                    let now = br.mac.map(|m| m.to_string()).unwrap_or_default();
                    out.warn(
                        "bridge",
                        format!("bridge {name} takes its address from its lowest port, and a tap's owner can set their tap's address without privilege: a guest's user can change the bridge's address"),
                        format!("give it a fixed address: ip link set {name} address {now} (kvmnet does so for the bridges it creates)"),
                    );
                }
                let vlan_users = list(&|u| u.vlans);
                if !vlan_users.is_empty() {
                    match vlan_problem(name, host.bridge_vlan(br), br.vlan_filtering, &vlan_users) {
                        Some((m, f)) => out.error("vlan", m, f),
                        None => out.ok(
                            "vlan",
                            format!("bridge {name} filters VLANs, as {vlan_users} needs"),
                        ),
                    }
                }
                let nf_call = host.bridges.get(&br.index).map(|b| b.nf_call.as_slice()).unwrap_or_default();
                if opts.proc_sys.join("net/bridge").is_dir() {
                    for table in nf_call {
                        out.warn(
                            "br_netfilter",
                            format!("bridge {name} has nf_call_{table} on: its guest traffic passes the host's {table} firewall whatever net.bridge.bridge-nf-call-{table} says"),
                            format!("if guests get no traffic, set it 0 (ip link set {name} type bridge nf_call_{table} 0) or allow it in the firewall"),
                        );
                    }
                }
                check_ports(opts, config, host, br, out);
            }
        }
    }
}

fn check_ports(opts: &CheckOptions, config: &Config, host: &Host, br: &Link, out: &mut Out) {
    let b = &br.name;
    let (mut mtu_ok, mut radio_ok) = (true, true);
    for p in host.ports(br) {
        // a tap kvmnet gave a fixed MTU on purpose (`mtu = N`) is as configured
        let wanted = p.is_tap() && config.settings_on(&p.name, b).mtu == MtuPolicy::Fixed(p.mtu);
        if p.mtu != br.mtu && !wanted {
            mtu_ok = false;
            out.warn(
                "mtu",
                format!(
                    "port {} of bridge {b} has MTU {}, the bridge {}: frames larger than the smaller one are dropped between them",
                    p.name, p.mtu, br.mtu
                ),
                format!(
                    "ip link set {} mtu {} (or give {b} and all its ports the same MTU)",
                    p.name, br.mtu
                ),
            );
        }
        if is_wireless(&opts.sys_class_net, &p.name, p.index) {
            radio_ok = false;
            out.warn(
                "wireless",
                format!(
                    "port {} of bridge {b} is a wireless interface: most wireless drivers cannot bridge (the access point accepts only the station's own MAC), so guests get no traffic through it",
                    p.name
                ),
                format!(
                    "take it off the bridge (ip link set {} nomaster) and route the guests instead (mode = \"route\") or use NAT",
                    p.name
                ),
            );
        }
    }
    if mtu_ok {
        out.ok(
            "mtu",
            format!("every port of bridge {b} has its MTU ({})", br.mtu),
        );
    }
    if radio_ok {
        out.ok("wireless", format!("bridge {b} has no wireless port"));
    }
}

// ---------------------------------------------------------------- --tap

fn check_tap(tap: &str, config: &Config, host: &Host, cfg: &str, out: &mut Out) {
    let name = match TapName::new(tap) {
        Ok(n) => n,
        Err(e) => {
            out.error(
                "tap",
                e.to_string(),
                "tap names are 1-15 of A-Z a-z 0-9 - _ .".into(),
            );
            return;
        }
    };
    let s = config.settings_for(name.as_str());
    let top = if config.source.is_some() {
        "the top level"
    } else {
        "the built-in defaults"
    };
    // for the fixes: where the settings come from
    let rule = s.rule.clone().unwrap_or_else(|| top.to_owned());
    let matches = match &s.rule {
        Some(r) => format!("matches {r}"),
        None => format!("matches no [[rule]] ({top} apply)"),
    };
    let existing = host.by_name(name.as_str());
    if let Some(l) = existing {
        if !l.is_tap() {
            out.error(
                "tap",
                format!(
                    "{tap} is {}; kvmnet-ifup only configures tap devices and would refuse it",
                    l.kind.describe()
                ),
                format!(
                    "give QEMU another ifname= than {tap}, or configure that device without kvmnet"
                ),
            );
            return;
        }
    }
    match s.mode {
        NetMode::Route => {
            let addrs: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
            out.ok(
                "tap",
                format!(
                    "tap {tap} {matches}: routed mode, host routes to {} via {tap} with proxy ARP/NDP; only plain root may set it up",
                    addrs.join(", ")
                ),
            );
            if let Some(m) = existing.and_then(|l| l.master) {
                out.error(
                    "tap",
                    format!(
                        "tap {tap} is a port of {}; a routed tap must not be on a bridge",
                        host.name_of(m)
                    ),
                    format!("ip link set {tap} nomaster"),
                );
            }
        }
        NetMode::Bridge => {
            let choice = bridge_choice(
                &s,
                config.source.is_some(),
                host.default_route_bridge.as_ref(),
            );
            let b = choice.name.as_str();
            let what = format!("tap {tap} {matches}: it would join bridge {b}");
            let elsewhere = existing
                .and_then(|l| l.master)
                .filter(|m| host.by_name(b).is_none_or(|br| br.index != *m));
            if let Some(m) = elsewhere {
                out.error(
                    "tap",
                    format!("{what}, but it is already a port of {}; kvmnet-ifup does not move it and would refuse it", host.name_of(m)),
                    format!("ip link set {tap} nomaster"),
                );
                return;
            }
            match host.by_name(b) {
                None if !choice.create => out.error(
                    "tap",
                    format!("{what}, which does not exist: kvmnet-ifup would refuse it"),
                    format!("create it (ip link add {b} up type bridge) or set create_bridge = true in {cfg}"),
                ),
                None => match (s.needs_vlan_filtering(), host.kernel_vlan) {
                    (true, VlanSupport::No) => out.error(
                        "tap",
                        format!("{what}, which kvmnet-ifup would create with VLAN filtering, but this kernel cannot filter VLANs (built without {VLAN_FEATURE})"),
                        format!("boot a kernel built with {VLAN_FEATURE}=y, or drop vlan/trunk from {rule}"),
                    ),
                    (true, VlanSupport::Unknown) => out.warn(
                        "tap",
                        format!("{what}, which kvmnet-ifup would create with VLAN filtering; whether this kernel can filter VLANs ({VLAN_FEATURE}) shows only once a bridge exists"),
                        format!("create it now to find out: ip link add {b} up type bridge vlan_filtering 1"),
                    ),
                    _ => out.ok("tap", format!("{what}, which kvmnet-ifup creates on first use")),
                },
                Some(l) if !l.is_bridge() => out.error(
                    "tap",
                    format!("{what}, but {b} is {}, not a bridge: kvmnet-ifup would refuse it", l.kind.describe()),
                    format!("set bridge = \"NAME\" in {cfg} to a bridge"),
                ),
                Some(br) => {
                    let problem = s
                        .needs_vlan_filtering()
                        .then(|| vlan_problem(b, host.bridge_vlan(br), br.vlan_filtering, &rule))
                        .flatten();
                    match problem {
                        Some((m, f)) => out.error("tap", format!("{what}: {m}"), f),
                        None => {
                            let mtu = match s.mtu {
                                MtuPolicy::Bridge => br.mtu,
                                MtuPolicy::Fixed(n) => n,
                            };
                            let vlans = if s.needs_vlan_filtering() {
                                let mut v: Vec<String> =
                                    s.vlan.iter().map(|p| format!("untagged {p}")).collect();
                                v.extend(s.trunk.iter().map(|r| format!("tagged {r}")));
                                format!(", VLANs {}", v.join(", "))
                            } else {
                                String::new()
                            };
                            out.ok("tap", format!("{what} (exists), with MTU {mtu}{vlans}: that works now"));
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- sysctls

/// A sysctl's boolean value: `Some(true)` for anything but 0.
fn sysctl_value(text: &str) -> Option<bool> {
    text.trim().parse::<i64>().ok().map(|v| v != 0)
}

const BR_NF: [(&str, &str); 3] = [
    ("bridge-nf-call-iptables", "iptables"),
    ("bridge-nf-call-ip6tables", "ip6tables"),
    ("bridge-nf-call-arptables", "arptables"),
];

fn check_br_netfilter(proc_sys: &Path, out: &mut Out) {
    let dir = proc_sys.join("net/bridge");
    if !dir.is_dir() {
        out.ok(
            "br_netfilter",
            "br_netfilter is not loaded: bridged guest traffic does not pass the host's firewall"
                .into(),
        );
        return;
    }
    for (file, table) in BR_NF {
        let path = dir.join(file);
        let key = format!("net.bridge.{file}");
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.ok(
                "br_netfilter",
                format!("{key} does not exist: bridged traffic skips {table}"),
            ),
            Err(e) => out.warn(
                "br_netfilter",
                format!(
                    "cannot read {}: {}",
                    path.display(),
                    crate::error::plain(&e)
                ),
                "run kvmnet check as root".into(),
            ),
            Ok(t) => {
                match sysctl_value(&t) {
                    Some(true) => {
                        let allow = if table == "arptables" {
                            "let arptables accept it".to_owned()
                        } else {
                            format!("allow it ({table} -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT)")
                        };
                        out.warn(
                        "br_netfilter",
                        format!("{key} = 1: bridged guest traffic passes the host's {table} firewall"),
                        format!("if guests get no traffic, set 0 (sysctl -w {key}=0) or {allow}"),
                    );
                    }
                    Some(false) => out.ok(
                        "br_netfilter",
                        format!("{key} = 0: bridged traffic skips {table}"),
                    ),
                    None => out.warn(
                        "br_netfilter",
                        format!("{} holds {:?}, not a number", path.display(), t.trim()),
                        format!("sysctl -w {key}=0"),
                    ),
                }
            }
        }
    }
}

fn forwarding_file(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("net/ipv4/ip_forward", "net.ipv4.ip_forward"),
        Family::V6 => (
            "net/ipv6/conf/all/forwarding",
            "net.ipv6.conf.all.forwarding",
        ),
    }
}

fn check_forwarding(proc_sys: &Path, targets: &[Target], out: &mut Out) {
    for family in [Family::V4, Family::V6] {
        let users: Vec<&str> = targets
            .iter()
            .filter(|t| {
                t.settings.mode == NetMode::Route
                    && t.settings.addresses.iter().any(|a| Family::of(a) == family)
            })
            .map(|t| t.who.as_str())
            .collect();
        if users.is_empty() {
            continue;
        }
        let users = users.join(", ");
        let (file, key) = forwarding_file(family);
        let path = proc_sys.join(file);
        let fam = family.name();
        match std::fs::read_to_string(&path).map(|t| sysctl_value(&t)) {
            Ok(Some(true)) => out.ok("forwarding", format!("{fam} forwarding is on ({key} = 1), as {users} needs")),
            Ok(_) => out.warn(
                "forwarding",
                format!("{fam} forwarding is off ({key} = 0) and {users} routes guests: kvmnet-ifup switches it on at the first routed tap and logs it"),
                format!("to have it on from boot: sysctl -w {key}=1 and put {key} = 1 in /etc/sysctl.d/kvmnet.conf"),
            ),
            Err(e) => out.error(
                "forwarding",
                format!("cannot read {}: {}; {users} routes {fam} guests and kvmnet-ifup would fail", path.display(), crate::error::plain(&e)),
                format!("enable {fam} in the kernel, or drop the {fam} addresses from {users}"),
            ),
        }
    }
}

// ---------------------------------------------------------------- /dev/net/tun

const TUN_MAJOR: u64 = 10;
const TUN_MINOR: u64 = 200;

fn check_tun(path: &Path, users_run_it: bool, out: &mut Out) {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            out.error(
                "tun",
                format!("{shown} does not exist: kvmnet-ifup cannot create taps"),
                format!("modprobe tun (if it is still missing: mkdir -p {} && mknod -m 0666 {shown} c 10 200)", path.parent().unwrap_or(Path::new("/")).display()),
            );
            return;
        }
        Err(e) => {
            out.error(
                "tun",
                format!("cannot look at {shown}: {}", crate::error::plain(&e)),
                "run kvmnet check as root".into(),
            );
            return;
        }
    };
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    if !meta.file_type().is_char_device() || (major, minor) != (TUN_MAJOR, TUN_MINOR) {
        out.error(
            "tun",
            format!("{shown} is not the TUN device (character device 10:200)"),
            format!("rm {shown}; modprobe tun (or mknod -m 0666 {shown} c 10 200)"),
        );
        return;
    }
    let mode = meta.mode() & 0o7777;
    if users_run_it && mode & 0o006 != 0o006 {
        out.warn(
            "tun",
            format!("{shown} is mode {mode:04o}: a setuid or file-capability kvmnet-ifup runs as the calling user and cannot open it to create taps"),
            format!("chmod 0666 {shown} (the distribution default; creating a tap still needs CAP_NET_ADMIN)"),
        );
    } else {
        out.ok(
            "tun",
            format!("{shown} is the TUN device (mode {mode:04o})"),
        );
    }
}

// ---------------------------------------------------------------- installation

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
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut buf = [0u8; 64];
    // SAFETY: `c` and XATTR_CAPS are NUL-terminated strings that live across
    // the call; `buf` is writable for `buf.len()` bytes, and the kernel
    // writes at most that many (ERANGE otherwise). getxattr keeps no pointer.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            XATTR_CAPS.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(buf[..n as usize].to_vec()))
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
struct Binary {
    path: PathBuf,
    meta: Result<std::fs::Metadata, io::Error>,
    caps: Result<Option<FileCaps>, String>,
    sudo: Sudo,
}

enum Sudo {
    None,
    Rule,
    /// The file names the binary, but sudo would ignore the file: why.
    Ignored(String),
}

impl Binary {
    fn inspect(path: &Path, sudoers: &Path) -> Binary {
        let meta = std::fs::metadata(path);
        let caps = if meta.is_ok() {
            read_file_caps(path)
                .map_err(|e| crate::error::plain(&e))
                .and_then(|raw| raw.map(|r| parse_file_caps(&r)).transpose())
        } else {
            Ok(None)
        };
        Binary {
            path: path.to_owned(),
            meta,
            caps,
            sudo: sudo_rule(sudoers, path),
        }
    }

    fn setuid_root(&self) -> bool {
        self.meta
            .as_ref()
            .is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0)
    }

    fn net_admin_cap(&self) -> bool {
        matches!(&self.caps, Ok(Some(c)) if c.permitted & CAP_NET_ADMIN_BIT != 0)
    }

    /// Runs with the caller's uid while it creates taps and reads the config.
    fn runs_as_user(&self) -> bool {
        self.setuid_root() || self.net_admin_cap()
    }
}

fn sudo_rule(sudoers: &Path, bin: &Path) -> Sudo {
    let Ok(text) = std::fs::read_to_string(sudoers) else {
        return Sudo::None;
    };
    if !sudoers_mentions(&text, bin) {
        return Sudo::None;
    }
    let Ok(meta) = std::fs::metadata(sudoers) else {
        return Sudo::None;
    };
    let file = sudoers
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = sudoers.display();
    if meta.uid() != 0 {
        Sudo::Ignored(format!(
            "{shown} is owned by uid {}, not root; fix: chown root:root {shown}",
            meta.uid()
        ))
    } else if meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && meta.gid() != 0) {
        Sudo::Ignored(format!(
            "{shown} is writable by others or a group; fix: chmod 0440 {shown}"
        ))
    } else if file.contains('.') || file.ends_with('~') {
        Sudo::Ignored(format!("sudo skips files in sudoers.d whose name has a '.' or ends in '~'; fix: rename {shown}"))
    } else {
        Sudo::Rule
    }
}

fn check_install(opts: &CheckOptions, config: Option<&Config>, bins: &[Binary], out: &mut Out) {
    let allow_rules =
        config.is_some_and(|c| c.acl.rules.iter().any(|r| r.verdict == Verdict::Allow));
    let cfg = config_name(opts);
    for bin in bins {
        let p = bin.path.display();
        let prog = bin
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = match &bin.meta {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.warn(
                    "install",
                    format!("{p} does not exist: kvmnet is not installed there"),
                    format!("cargo build --release && install -o root -g root -m 0755 target/release/{prog} {p}"),
                );
                continue;
            }
            Err(e) => {
                out.error(
                    "install",
                    format!("cannot look at {p}: {}", crate::error::plain(e)),
                    "run kvmnet check as root".into(),
                );
                continue;
            }
        };
        let mut sound = true;
        if !meta.is_file() {
            out.error(
                "install",
                format!("{p} is not a regular file"),
                format!("install the {prog} binary at {p}"),
            );
            continue;
        }
        if meta.uid() != 0 {
            sound = false;
            out.error(
                "install",
                format!("{p} is owned by uid {}, not root: that user can change what root, sudo or QEMU run", meta.uid()),
                format!("chown root:root {p}"),
            );
        }
        if meta.mode() & 0o022 != 0 {
            sound = false;
            let by = if meta.mode() & 0o002 != 0 {
                "others"
            } else {
                "its group"
            };
            out.error(
                "install",
                format!("{p} is writable by {by}: they can change what root, sudo or QEMU run"),
                format!("chmod go-w {p}"),
            );
        }
        if let Some((dir, why, fix)) = unsafe_directory(&bin.path) {
            sound = false;
            out.error(
                "install",
                format!(
                    "{p}: directory {} {why}, so {p} can be replaced",
                    dir.display()
                ),
                fix,
            );
        }
        match &bin.caps {
            Err(e) => out.warn(
                "install",
                format!("cannot read the file capabilities of {p}: {e}"),
                format!("check them with getcap {p}"),
            ),
            Ok(Some(c)) if (c.permitted | c.inheritable) & !CAP_NET_ADMIN_BIT != 0 => {
                sound = false;
                out.error(
                    "install",
                    format!(
                        "{p} has file capabilities beyond cap_net_admin: {}",
                        cap_names((c.permitted | c.inheritable) & !CAP_NET_ADMIN_BIT)
                    ),
                    format!("setcap cap_net_admin+ep {p}"),
                );
            }
            Ok(_) => {}
        }
        if let Sudo::Ignored(why) = &bin.sudo {
            out.warn(
                "install",
                format!("the sudo rule for {p} does not count: {why}"),
                "see sudoers(5)".into(),
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
        if ways.is_empty() && allow_rules {
            out.warn(
                "install",
                format!("users cannot run {p}: it has neither cap_net_admin, nor the setuid bit, nor a sudo rule in {}, so the [[allow]] rules in {cfg} help nobody", opts.sudoers.display()),
                format!("one of the three ways: setcap cap_net_admin+ep {p}, or chmod u+s {p}, or a rule in {} (%kvm ALL=(root) NOPASSWD: {p})", opts.sudoers.display()),
            );
        } else if sound {
            let how = if ways.is_empty() {
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
}

/// A directory above `path` that a user could use to replace the file: not
/// root's, or writable by group/others without the sticky bit.
fn unsafe_directory(path: &Path) -> Option<(PathBuf, &'static str, String)> {
    let real = std::fs::canonicalize(path).ok()?;
    for dir in real.ancestors().skip(1) {
        let m = std::fs::metadata(dir).ok()?;
        let shown = dir.display();
        if m.uid() != 0 {
            return Some((
                dir.to_owned(),
                "is not owned by root",
                format!("chown root:root {shown}"),
            ));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Some((
                dir.to_owned(),
                "is writable by others than root",
                format!("chmod go-w {shown}"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kvmnet-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

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

    #[test]
    fn sysctl_values() {
        assert_eq!(sysctl_value("1\n"), Some(true));
        assert_eq!(sysctl_value("0\n"), Some(false));
        assert_eq!(sysctl_value(" 2 "), Some(true));
        assert_eq!(sysctl_value("on"), None);
        assert_eq!(sysctl_value(""), None);
    }

    #[test]
    fn br_netfilter_from_a_proc_sys_tree() {
        let d = temp("brnf");
        // module not loaded: no net/bridge at all
        let mut out = Out::default();
        check_br_netfilter(&d, &mut out);
        assert_eq!(out.0.len(), 1);
        assert_eq!(out.0[0].severity, Severity::Ok);
        assert!(
            out.0[0].message.contains("br_netfilter is not loaded"),
            "{:?}",
            out.0
        );
        // loaded: iptables on, ip6tables off, arptables missing
        std::fs::create_dir_all(d.join("net/bridge")).unwrap();
        std::fs::write(d.join("net/bridge/bridge-nf-call-iptables"), "1\n").unwrap();
        std::fs::write(d.join("net/bridge/bridge-nf-call-ip6tables"), "0\n").unwrap();
        let mut out = Out::default();
        check_br_netfilter(&d, &mut out);
        std::fs::remove_dir_all(&d).unwrap();
        let sev: Vec<(Severity, bool)> = out
            .0
            .iter()
            .map(|f| (f.severity, f.fix.is_some()))
            .collect();
        assert_eq!(
            sev,
            [
                (Severity::Warning, true),
                (Severity::Ok, false),
                (Severity::Ok, false)
            ],
            "{:?}",
            out.0
        );
        assert!(out.0[0].message.contains("bridge-nf-call-iptables = 1"));
        assert!(out.0[0].message.contains("firewall"));
        assert!(out.0[0].fix.as_ref().unwrap().contains("set 0"));
        assert!(out.0[2]
            .message
            .contains("bridge-nf-call-arptables does not exist"));
    }

    #[test]
    fn wireless_from_a_sysfs_tree() {
        let d = temp("wl");
        for (dev, index, marker) in [
            ("wlan0", "7", "phy80211"),
            ("wlan1", "8", "wireless"),
            ("eth0", "9", ""),
        ] {
            std::fs::create_dir_all(d.join(dev)).unwrap();
            std::fs::write(d.join(dev).join("ifindex"), format!("{index}\n")).unwrap();
            if !marker.is_empty() {
                std::fs::create_dir_all(d.join(dev).join(marker)).unwrap();
            }
        }
        let r = [
            is_wireless(&d, "wlan0", 7),
            is_wireless(&d, "wlan1", 8),
            is_wireless(&d, "eth0", 9),
            // another namespace's wlan0 (sysfs mounted elsewhere): not this one
            is_wireless(&d, "wlan0", 3),
            is_wireless(&d, "nope", 1),
        ];
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(r, [true, true, false, false, false]);
    }

    #[test]
    fn vlan_support_from_sysfs() {
        let d = temp("vlan");
        assert_eq!(sysfs_vlan_support(&d), VlanSupport::Unknown);
        std::fs::create_dir_all(d.join("br0/bridge")).unwrap();
        assert_eq!(sysfs_vlan_support(&d), VlanSupport::No);
        std::fs::write(d.join("br0/bridge/vlan_filtering"), "0\n").unwrap();
        let r = sysfs_vlan_support(&d);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(r, VlanSupport::Yes);
    }

    #[test]
    fn vlan_attributes_in_a_bridge_message() {
        let msg = |data: Vec<InfoBridge>| {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(rtnetlink::packet_route::link::InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(data)),
            ]));
            m
        };
        // a kernel without the feature still reports vlan_filtering 0
        assert_eq!(
            bridge_info(&msg(vec![
                InfoBridge::VlanFiltering(false),
                InfoBridge::NfCallIpTables(false)
            ])),
            BridgeInfo::default()
        );
        assert_eq!(
            bridge_info(&msg(vec![
                InfoBridge::VlanFiltering(false),
                InfoBridge::VlanDefaultPvid(1),
                InfoBridge::NfCallIp6Tables(true),
                InfoBridge::NfCallArpTables(true),
            ])),
            BridgeInfo {
                vlan_attrs: true,
                nf_call: vec!["ip6tables", "arptables"]
            }
        );
        assert_eq!(bridge_info(&LinkMessage::default()), BridgeInfo::default());
    }

    #[test]
    fn vlan_problems() {
        let who = "rule 1 (lab-*) at cfg line 2";
        let (m, f) = vlan_problem("br-lab", VlanSupport::No, Some(false), who).unwrap();
        assert!(m.contains(VLAN_FEATURE) && m.contains(who), "{m}");
        assert!(f.contains(VLAN_FEATURE), "{f}");
        // a kernel too old to report vlan_filtering at all
        let (m, _) = vlan_problem("br-lab", VlanSupport::Yes, None, who).unwrap();
        assert!(m.contains(VLAN_FEATURE), "{m}");
        let (m, f) = vlan_problem("br-lab", VlanSupport::Yes, Some(false), who).unwrap();
        assert!(m.contains("VLAN filtering off"), "{m}");
        assert_eq!(f, "ip link set br-lab type bridge vlan_filtering 1");
        assert_eq!(
            vlan_problem("br-lab", VlanSupport::Yes, Some(true), who),
            None
        );
    }

    #[test]
    fn targets_name_their_rule_and_resolve_against_the_top_level() {
        let c = Config::parse(
            Path::new("/etc/kvmnet/kvmnet.toml"),
            "bridge = \"br0\"\n[[rule]]\nmatch = \"lab-*\"\nvlan = 10\n[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.1\"]\n",
        )
        .unwrap();
        let t = targets(&c);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].who, "the top level");
        assert_eq!(t[1].who, "rule 1 (lab-*) at /etc/kvmnet/kvmnet.toml line 2");
        assert_eq!(t[1].settings.bridge.as_ref().unwrap().as_str(), "br0");
        assert!(t[1].settings.needs_vlan_filtering());
        assert_eq!(t[2].who, "rule 2 (rt-*) at /etc/kvmnet/kvmnet.toml line 5");
        assert_eq!(t[2].settings.mode, NetMode::Route);
        let none = targets(&Config::default());
        assert_eq!(none[0].who, "the built-in defaults (no config file)");
        let choice = bridge_choice(&none[0].settings, false, None);
        assert_eq!((choice.name.as_str(), choice.create), ("br0", true));
    }
}
