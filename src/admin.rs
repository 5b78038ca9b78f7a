//! `kvmnet`: the unprivileged admin command (check, mac, explain, status).
//! It never needs privilege and drops any it was given at start (root keeps
//! CAP_NET_ADMIN alone, to read nf_tables).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::access::User;
use crate::acl::{Identity, System};
use crate::check::{self, CheckOptions};
use crate::config::Config;
use crate::link::Link;
use crate::mac::Mac;
use crate::netlink::Netlink;
use crate::plan::{self, BridgeChoice, BridgeReason};
use crate::record::Record;
use crate::settings::{HostMac, MtuPolicy, NetMode, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "kvmnet",
    version,
    about = "Inspect and diagnose kvmnet: the tap helpers QEMU runs as script=/downscript=",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Diagnose the host and the config; one line per finding with its fix.
    /// Exits 1 when any finding is an error, else 3 when something could not
    /// be checked as this user (run it as root to check everything).
    Check {
        /// Also check what kvmnet-ifup would do for this tap name.
        #[arg(long, value_name = "NAME")]
        tap: Option<String>,
        /// The config file to check.
        #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Print the findings as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print a MAC address for a guest's NIC (`-device ...,mac=`).
    Mac {
        /// Derive a stable address from this name, so the VM keeps its MAC
        /// across restarts.
        #[arg(long, value_name = "VM")]
        name: Option<String>,
        /// Use this vendor prefix (e.g. QEMU's 52:54:00) instead of a locally
        /// administered address with 46 random bits.
        #[arg(long, value_name = "XX:XX:XX")]
        oui: Option<String>,
    },
    /// Show the effective settings for a tap name: which rule matched, bridge,
    /// VLANs, mode, MTU policy, and whether a user would be allowed.
    Explain {
        /// The tap name, as QEMU would pass it.
        tap: String,
        /// The config file to read.
        #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Judge the ACL for this user (name or uid) instead of the caller.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Also print the guard's program: annotated, and as the bytecode
        /// `tc filter add ... bpf bytecode '...'` takes.
        #[arg(long)]
        guard_program: bool,
    },
    /// List the taps kvmnet manages now, with bridge, VLANs, mode, owner, state.
    Status {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Private networks of the config's [[network]] tables: a bridge with
    /// DHCP, DNS and NAT, like libvirt's default network (root only for up
    /// and down).
    Net {
        #[command(subcommand)]
        action: NetAction,
        /// The config file to read.
        #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH, global = true)]
        config: PathBuf,
    },
    /// Write man pages or shell completions (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Directory to write into.
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetAction {
    /// Make the network: bridge and address, forwarding, NAT rules, dnsmasq.
    /// Running it again changes nothing, or finishes what an interrupted run
    /// left.
    Up { name: String },
    /// Remove exactly what `up` made (forwarding stays on).
    Down {
        name: String,
        /// Also when VMs' taps are still ports of its bridge.
        #[arg(long)]
        force: bool,
    },
    /// The networks of the config and their state.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// `kvmnet`'s main: returns the exit code.
pub fn main() -> std::process::ExitCode {
    // Only real root's `net up` and `net down` keep privilege (they start
    // dnsmasq and write /run/kvmnet); anyone else
    // (a setuid or capability install included) loses it before the
    // command line is parsed.
    let root = nix::unistd::getuid().is_root() && nix::unistd::geteuid().is_root();
    if !root {
        drop_all_privilege();
    }
    let cli = Cli::parse();
    let changes_networks = matches!(
        &cli.command,
        Command::Net {
            action: NetAction::Up { .. } | NetAction::Down { .. },
            ..
        }
    );
    if changes_networks && !root {
        eprintln!("kvmnet: `kvmnet net up` and `down` change the host's networking: run them as root (sudo kvmnet net …)");
        return std::process::ExitCode::FAILURE;
    }
    if !changes_networks {
        drop_all_privilege();
    }
    match run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            // anyhow's alternate form: the context, then the cause, one line
            eprintln!("kvmnet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The admin command reads only what its caller may read. Should it have
/// been installed setuid or with capabilities by mistake, it gives them up.
/// Root keeps CAP_NET_ADMIN alone: the kernel asks for it to read nf_tables
/// (the guard column of `status`), and root has it anyway.
fn drop_all_privilege() {
    let ruid = nix::unistd::getuid();
    let rgid = nix::unistd::getgid();
    if nix::unistd::geteuid() != ruid || nix::unistd::getegid() != rgid {
        let _ = nix::unistd::setresgid(rgid, rgid, rgid);
        let _ = nix::unistd::setresuid(ruid, ruid, ruid);
    }
    for set in [caps::CapSet::Inheritable, caps::CapSet::Ambient] {
        let _ = caps::clear(None, set);
    }
    let keep: caps::CapsHashSet = if ruid.is_root() {
        [caps::Capability::CAP_NET_ADMIN].into_iter().collect()
    } else {
        caps::CapsHashSet::new()
    };
    for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
        let _ = caps::set(None, set, &keep);
    }
}

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Net { action, config } => net(action, &config),
        Command::Check { tap, config, json } => {
            let opts = CheckOptions {
                config_path: config,
                tap,
                ..CheckOptions::default()
            };
            let findings = check::run(&opts);
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                for f in &findings {
                    println!("{f}");
                }
            }
            Ok(check::exit_code(&findings))
        }
        Command::Mac { name, oui } => {
            let oui = oui
                .map(|o| parse_oui(&o))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let mac = match name {
                Some(n) => stable_mac(&n, oui),
                None => random_mac(oui).context("reading random bytes from the kernel")?,
            };
            println!("{mac}");
            Ok(0)
        }
        Command::Explain {
            tap,
            config,
            user,
            guard_program,
        } => {
            crate::name::TapName::new(&tap)?;
            let cfg = Config::load(&config, false)?;
            let who = match user {
                None => caller_identity(),
                Some(u) => identity_of(&u).map_err(anyhow::Error::msg)?,
            };
            let nl = Netlink::open().ok();
            print!("{}", explain(&cfg, &tap, &who, nl.as_ref()));
            if guard_program {
                print!("{}", explain_program(&cfg.settings_for(&tap), &tap));
            }
            Ok(0)
        }
        Command::Status { json } => {
            let nl = Netlink::open().context("listing the taps")?;
            let rows = status(&nl)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", status_table(&rows));
            }
            Ok(0)
        }
        Command::GenerateDocs { out } => {
            generate_docs(&out).with_context(|| {
                format!("writing man pages and completions to {}", out.display())
            })?;
            Ok(0)
        }
    }
}

fn parse_oui(s: &str) -> Result<[u8; 3], String> {
    let full: Result<Mac, ()> = format!("{s}:00:00:00").parse();
    let m = full.map_err(|_| format!("--oui {s:?}: expected three hex bytes like 52:54:00"))?;
    if m.0[0] & 1 == 1 {
        return Err(format!(
            "--oui {s}: a multicast prefix cannot address one NIC"
        ));
    }
    Ok([m.0[0], m.0[1], m.0[2]])
}

/// A random guest MAC: with an OUI, its 24 remaining bits are random;
/// without, a unicast, locally administered address with 46 random bits
/// (the how-to's DE:AD:BE:EF:xx:xx has 16: a 50 % chance of a clash among
/// about 300 VMs; 46 bits reach that only around 9.8 million).
pub fn random_mac(oui: Option<[u8; 3]>) -> Result<Mac, getrandom::Error> {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b)?;
    Ok(finish(b, oui))
}

pub use crate::mac::stable_mac;
use crate::mac::with_oui as finish;

pub(crate) fn caller_identity() -> Identity {
    let uid = nix::unistd::getuid().as_raw();
    let mut groups: Vec<u32> = nix::unistd::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.push(nix::unistd::getgid().as_raw());
    groups.sort_unstable();
    groups.dedup();
    Identity {
        uid,
        groups,
        lookup_failure: None,
    }
}

fn identity_of(user: &str) -> Result<Identity, String> {
    let u = match user.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(Ok)
            .unwrap_or(Err(uid)),
        Err(_) => nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .ok_or(0)
            .map_err(|_| u32::MAX),
    };
    match u {
        Ok(u) => {
            let name = std::ffi::CString::new(u.name.clone()).map_err(|e| e.to_string())?;
            let groups = nix::unistd::getgrouplist(&name, u.gid)
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_else(|_| vec![u.gid.as_raw()]);
            Ok(Identity {
                uid: u.uid.as_raw(),
                groups,
                lookup_failure: None,
            })
        }
        // a numeric uid without an entry: judged by its uid alone
        Err(uid) if uid != u32::MAX => Ok(Identity {
            uid,
            groups: Vec::new(),
            lookup_failure: None,
        }),
        Err(_) => Err(format!("--user {user:?}: no such user")),
    }
}

/// The bridge kvmnet-ifup would take for settings `s` now, chosen as it
/// chooses (KVMNET_BRIDGE aside): the configured one, else the first
/// bridge with an IPv4 default route, else br0. `Err`: why the routes could
/// not be read.
fn ifup_bridge(cfg: &Config, s: &Settings, nl: Option<&Netlink>) -> Result<BridgeChoice, String> {
    if let Some(c) = plan::configured_bridge(s) {
        return Ok(c);
    }
    let nl = nl.ok_or("no netlink socket to read the routes with")?;
    let found = crate::mode::bridge::default_route_bridge(nl)
        .map_err(|e| format!("the default route could not be read ({e})"))?;
    Ok(plan::fallback_bridge(cfg.source.is_some(), s, found))
}

/// The human-readable explanation (pure but for the optional netlink look-ups
/// that say whether the bridge exists and which one carries the default
/// route).
pub fn explain(cfg: &Config, tap: &str, who: &Identity, nl: Option<&Netlink>) -> String {
    let s = cfg.settings_for(tap);
    let mut o = String::new();
    let source = cfg.source.as_ref().map_or(
        "no config file (Debian drop-in behaviour)".to_owned(),
        |p| p.display().to_string(),
    );
    let _ = writeln!(o, "tap:        {tap}");
    let _ = writeln!(o, "config:     {source}");
    let _ = writeln!(
        o,
        "rule:       {}",
        s.rule
            .as_deref()
            .unwrap_or("none matched: the top-level defaults apply")
    );
    let choice = ifup_bridge(cfg, &s, nl);
    match s.mode {
        NetMode::Bridge => explain_bridge(&mut o, cfg, &s, &choice, nl),
        NetMode::Route => {
            let list: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(o, "mode:       route (no bridge)");
            let _ = writeln!(
                o,
                "routes:     host routes to {} via {tap}, proxy ARP/NDP on {tap}",
                list.join(", ")
            );
        }
        NetMode::Ovs => {
            let br = s.bridge.as_ref().map_or("-", |b| b.as_str());
            let _ = writeln!(
                o,
                "mode:       ovs (a port of Open vSwitch bridge {br}, one transaction on {})",
                cfg.ovs_db.display()
            );
            let mut ids = format!("iface-id={}", s.iface_id(tap));
            if let Some(m) = s.guest_mac.first() {
                ids.push_str(&format!(" attached-mac={}", m.for_tap(tap)));
            }
            let _ = writeln!(o, "ovs ids:    {ids} iface-status=active");
        }
    }
    let mtu = match (s.mtu, s.mode) {
        (MtuPolicy::Fixed(n), _) => n.to_string(),
        (MtuPolicy::Bridge, NetMode::Bridge | NetMode::Ovs) => "the bridge's".into(),
        (MtuPolicy::Bridge, NetMode::Route) => "left as it is".into(),
    };
    let _ = writeln!(o, "mtu:        {mtu}");
    let mac = match s.host_mac {
        HostMac::Fe => "first byte set to fe (never the bridge's address)",
        HostMac::Keep => "kept as QEMU or the admin set it",
    };
    let _ = writeln!(o, "host MAC:   {mac}");
    if let Some(g) = &s.group {
        let _ = writeln!(o, "tun group:  {g} (for taps kvmnet creates)");
    }
    let _ = writeln!(o, "guard:      {}", explain_guard(&s, tap));
    let _ = writeln!(
        o,
        "rate in:    {}",
        s.rate_in.map_or("unlimited".to_owned(), |r| format!(
            "{r} (guest to host, an nf_tables limit on the tap)"
        ))
    );
    let _ = writeln!(
        o,
        "rate out:   {}",
        s.rate_out.map_or("unlimited".to_owned(), |r| format!(
            "{r} (host to guest, a tbf on the tap)"
        ))
    );
    let user = User::of(who.uid);
    let verdict = if who.uid == 0 {
        "allowed (root is unrestricted)".to_owned()
    } else if s.mode == NetMode::Route {
        "refused: routed mode is for root only".to_owned()
    } else {
        match &choice {
            Ok(c) => {
                let d = cfg.acl.decide(who, c.name.as_str(), &System);
                let mut v = format!(
                    "{} by {}",
                    if d.allowed { "allowed" } else { "refused" },
                    d.rule
                );
                if !d.allowed && !d.denied_by_rule {
                    let _ = write!(v, "; to admit: {}", user.allow_rule(c.name.as_str()));
                }
                if c.reason == BridgeReason::Fallback {
                    v = format!(
                        "depends on the bridge found at run time: no bridge carries an IPv4 default route now, so kvmnet-ifup would use {}: {v}",
                        c.name
                    );
                }
                v
            }
            Err(why) => format!("depends on the bridge found at run time: {why}"),
        }
    };
    let _ = writeln!(o, "{user}:  {verdict}");
    o
}

/// The guard a tap would get, in words.
fn explain_guard(s: &Settings, tap: &str) -> String {
    let Ok(name) = crate::name::TapName::new(tap) else {
        return "unknown (not a valid tap name)".into();
    };
    let Some(g) = crate::mode::Guard::wanted(s, &name).filter(|_| s.guard) else {
        return "off (the guest may send from any MAC or address)".into();
    };
    let spec = g.spec(&name, 1);
    let macs: Vec<String> = spec.macs.iter().map(|m| m.to_string()).collect();
    let family = |list: &Option<Vec<crate::guard::Prefix>>| match list {
        None => "any (not pinned)".to_owned(),
        Some(l) if l.is_empty() => "none".to_owned(),
        Some(l) => l
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "on: MAC {}; IPv4 from {} (and DHCP from 0.0.0.0); IPv6 from {} (and fe80::/10, :: for DAD); no DHCP server, router advertisements, redirects or VLAN tags (a classic BPF program of {} instructions on the tap's ingress; --guard-program shows it)",
        macs.join(", "),
        family(&spec.ipv4),
        family(&spec.ipv6),
        crate::guard::bpf::program(&spec).0.len()
    )
}

/// The guard's program for `tap` (as if its ifindex were 1: the program
/// does not depend on it).
fn explain_program(s: &Settings, tap: &str) -> String {
    let Ok(name) = crate::name::TapName::new(tap) else {
        return String::new();
    };
    let Some(g) = crate::mode::Guard::wanted(s, &name).filter(|_| s.guard) else {
        return "\nno guard program: guard is off for this tap\n".into();
    };
    let spec = g.spec(&name, 1);
    let (prog, _) = crate::guard::bpf::program(&spec);
    format!(
        "\nguard program (classic BPF on {tap}'s ingress, filter 1; a frame it does not allow meets filter 2, which drops it):\n{}\nas tc bytecode:\n{}\n",
        crate::guard::bpf::listing(&spec),
        crate::guard::bpf::bytecode(&prog)
    )
}

fn explain_bridge(
    o: &mut String,
    cfg: &Config,
    s: &Settings,
    choice: &Result<BridgeChoice, String>,
    nl: Option<&Netlink>,
) {
    let _ = writeln!(o, "mode:       bridge");
    let found = |name: &crate::name::BridgeName| -> String {
        match nl.map(|n| n.link_by_name(name)) {
            Some(Ok(Some(l))) if l.is_bridge() => "exists".into(),
            Some(Ok(Some(l))) => format!("is {}, not a bridge", l.kind.describe()),
            Some(Ok(None)) => "does not exist".into(),
            _ => "unknown".into(),
        }
    };
    let create = |c: bool| {
        if c {
            "created on demand"
        } else {
            "never created by kvmnet"
        }
    };
    let _ = match choice {
        Ok(c) => match c.reason {
            BridgeReason::Config | BridgeReason::Requested => writeln!(
                o,
                "bridge:     {} ({}; {})",
                c.name,
                found(&c.name),
                create(c.create)
            ),
            BridgeReason::DefaultRoute => writeln!(
                o,
                "bridge:     {} (not configured: the first bridge with an IPv4 default route, found now; {}; {})",
                c.name,
                found(&c.name),
                create(c.create)
            ),
            BridgeReason::Fallback => writeln!(
                o,
                "bridge:     {} (not configured, and no bridge carries an IPv4 default route now; {}; {})",
                c.name,
                found(&c.name),
                create(c.create)
            ),
        },
        Err(why) => writeln!(
            o,
            "bridge:     not configured: the first bridge with an IPv4 default route, else {} ({}); which one cannot be told now: {why}",
            plan::FALLBACK_BRIDGE,
            create(cfg.source.is_none() || s.create_bridge)
        ),
    };
    if let Some(vx) = &s.vxlan {
        let _ = writeln!(
            o,
            "uplink:     {vx}, on the bridge kvmnet creates (made or completed at every ifup)"
        );
    }
    let mut v = Vec::new();
    if let Some(p) = s.vlan {
        v.push(format!("{p} untagged (PVID)"));
    }
    if !s.trunk.is_empty() {
        let t: Vec<String> = s.trunk.iter().map(|r| r.to_string()).collect();
        v.push(format!("tagged {}", t.join(", ")));
    }
    let _ = writeln!(
        o,
        "vlans:      {}",
        if v.is_empty() {
            "none set (the bridge's default)".into()
        } else {
            v.join("; ")
        }
    );
    let flag = |f: Option<bool>| match f {
        Some(true) => "on",
        Some(false) => "off",
        None => "bridge default",
    };
    let _ = writeln!(
        o,
        "port:       isolated {}, learning {}, flooding {}",
        flag(s.isolated),
        flag(s.learning),
        flag(s.flooding)
    );
}

/// One VLAN of a port, for `kvmnet status --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VlanRow {
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

impl From<crate::link::PortVlan> for VlanRow {
    fn from(v: crate::link::PortVlan) -> VlanRow {
        VlanRow {
            vid: v.vid,
            pvid: v.pvid,
            untagged: v.untagged,
        }
    }
}

/// One managed tap, for `kvmnet status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusRow {
    pub tap: String,
    pub mode: &'static str,
    pub bridge: Option<String>,
    pub vlans: Vec<VlanRow>,
    pub routes: Vec<String>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub persistent: bool,
    pub created_by_kvmnet: bool,
    pub up: bool,
    /// Its queue is open (a running QEMU).
    pub in_use: bool,
    pub mtu: u32,
    /// "on", "rate_in only", "missing" (the record says guarded, but its
    /// filters or limit chain are gone: the next kvmnet-ifup puts them
    /// back), "unknown" (they could not be read) or "off".
    pub guard: &'static str,
    /// `rate_in` and `rate_out` as recorded.
    pub rate_in: Option<String>,
    pub rate_out: Option<String>,
}

pub fn status(nl: &Netlink) -> Result<Vec<StatusRow>, crate::netlink::NetlinkError> {
    let links = nl.all_links()?;
    let vlans = nl.port_vlans().unwrap_or_default();
    let name_of = |i: u32| links.iter().find(|l| l.index == i).map(|l| l.name.clone());
    // The limit chains in one dump, only when a tap has a limit.
    let any_limit = links
        .iter()
        .filter_map(|l| Record::parse(&l.name, l.alias.as_deref()).ok()?)
        .any(|r| r.guard_parts().limit);
    let limited: Option<Vec<u32>> = if any_limit {
        crate::guard::installed()
            .ok()
            .map(|t| t.into_iter().map(|t| t.ifindex).collect())
    } else {
        Some(Vec::new())
    };
    let guard_of = |rec: &Record, index: u32| {
        let parts = rec.guard_parts();
        if !rec.guard {
            return "off";
        }
        let limit = match (&limited, parts.limit) {
            (_, false) => Some(true),
            (None, true) => None,
            (Some(t), true) => Some(t.contains(&index)),
        };
        let checks = if parts.checks {
            crate::guard::checks::read(nl, index)
                .ok()
                .map(|on| on.is_some_and(|on| on.drop))
        } else {
            Some(true)
        };
        match (checks, limit) {
            (Some(false), _) | (_, Some(false)) => "missing",
            (None, _) | (_, None) => "unknown",
            _ if rec.police_only => "rate_in only",
            _ => "on",
        }
    };
    let show = |limit: Option<(u64, u32)>| {
        limit.and_then(|(bps, burst)| {
            crate::rate::Rate::new(bps, Some(burst.into()))
                .ok()
                .map(|r| r.to_string())
        })
    };
    let mut rows: Vec<StatusRow> = links
        .iter()
        .filter(|l| l.is_tap())
        .filter_map(|l| Some((l, Record::parse(&l.name, l.alias.as_deref()).ok()??)))
        .map(|(l, rec): (&Link, Record)| {
            let tun = l.tun().cloned().unwrap_or_default();
            StatusRow {
                tap: l.name.clone(),
                mode: match (&rec.ovs, rec.routes.is_empty()) {
                    (Some(_), _) => "ovs",
                    (None, true) => "bridge",
                    (None, false) => "route",
                },
                // an OVS port's master is the kernel datapath (or none)
                bridge: rec.ovs.clone().or_else(|| l.master.and_then(name_of)),
                vlans: vlans
                    .get(&l.index)
                    .map(|v| v.iter().copied().map(VlanRow::from).collect())
                    .unwrap_or_default(),
                routes: rec.routes.iter().map(|a| a.to_string()).collect(),
                owner: tun.owner,
                group: tun.group,
                persistent: tun.persist,
                created_by_kvmnet: rec.created,
                up: l.up,
                in_use: l.carrier,
                mtu: l.mtu,
                guard: guard_of(&rec, l.index),
                rate_in: show(rec.rate_in),
                rate_out: show(rec.rate_out),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.tap.cmp(&b.tap));
    Ok(rows)
}

pub fn status_table(rows: &[StatusRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<15} {:<6} {:<15} {:<18} {:>6} {:>6} {:<5} {:<6} {:<8} {:<12} RATE IN/OUT",
        "TAP",
        "MODE",
        "BRIDGE/ROUTES",
        "VLANS",
        "OWNER",
        "MTU",
        "STATE",
        "IN USE",
        "CREATED",
        "GUARD",
    );
    for r in rows {
        let target = match r.mode {
            "route" => r.routes.join(","),
            _ => r.bridge.clone().unwrap_or_else(|| "-".into()),
        };
        let vlans: Vec<String> = r
            .vlans
            .iter()
            .map(|v| format!("{}{}", v.vid, if v.pvid { "*" } else { "" }))
            .collect();
        let _ = writeln!(
            o,
            "{:<15} {:<6} {:<15} {:<18} {:>6} {:>6} {:<5} {:<6} {:<8} {:<12} {}/{}",
            r.tap,
            r.mode,
            target,
            if vlans.is_empty() {
                "-".into()
            } else {
                vlans.join(",")
            },
            r.owner.map_or("-".into(), |u| u.to_string()),
            r.mtu,
            if r.up { "up" } else { "down" },
            if r.in_use { "yes" } else { "no" },
            if r.created_by_kvmnet {
                "kvmnet"
            } else {
                "other"
            },
            r.guard,
            r.rate_in.as_deref().unwrap_or("-"),
            r.rate_out.as_deref().unwrap_or("-"),
        );
    }
    if rows.is_empty() {
        o.push_str("(no taps carry a kvmnet record)\n");
    }
    o
}

/// Man pages for every binary (clap_mangen for the CLIs) and completions.
fn generate_docs(out: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(out)?;
    // kvmnet.1, and one page per visible subcommand (kvmnet-check.1, ...),
    // which kvmnet.1's SUBCOMMANDS section refers to.
    let cmd = Cli::command().disable_help_subcommand(true);
    let source = format!("kvmnet {}", env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(cmd.clone())
        .source(source.clone())
        .generate_to(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = sub
            .clone()
            .display_name(format!("kvmnet-{}", sub.get_name()))
            .bin_name(format!("kvmnet {}", sub.get_name()));
        clap_mangen::Man::new(page)
            .source(source.clone())
            .generate_to(out)?;
    }
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let mut cmd = Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "kvmnet", out)?;
    }
    Ok(())
}

fn net(action: NetAction, path: &std::path::Path) -> anyhow::Result<u8> {
    let cfg = Config::load(path, false).with_context(|| format!("reading {}", path.display()))?;
    let find = |name: &str| {
        cfg.network(name)
            .ok_or_else(|| crate::net::NetError::Unknown {
                name: name.to_owned(),
                config: path.display().to_string(),
            })
    };
    match action {
        NetAction::Up { name } => {
            let n = find(&name)?;
            let r = crate::net::up(n)?;
            if r.changed.is_empty() {
                println!("network {name} is up already (dnsmasq pid {})", r.dnsmasq);
            } else {
                println!("network {name} is up: {}", r.changed.join("; "));
            }
        }
        NetAction::Down { name, force } => {
            // from what `up` recorded: the network may have left the config
            let done = crate::net::down(&name, force)?;
            if done.is_empty() {
                println!("network {name} is down already");
            } else {
                println!("network {name} is down: {}", done.join("; "));
            }
        }
        NetAction::List { json } => {
            let l = crate::net::list(&cfg.networks)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else if l.is_empty() {
                println!("no [[network]] in {}", path.display());
            } else {
                println!(
                    "{:<15} {:<15} {:<18} {:<5} {:<8} {:<7} STATE",
                    "NETWORK", "BRIDGE", "IPV4", "NAT", "DNSMASQ", "LEASES"
                );
                for n in l {
                    println!(
                        "{:<15} {:<15} {:<18} {:<5} {:<8} {:<7} {}",
                        n.name,
                        n.bridge,
                        n.ipv4,
                        if n.nat { "yes" } else { "no" },
                        n.dnsmasq.map_or("-".to_owned(), |p| p.to_string()),
                        n.leases,
                        n.state
                    );
                }
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 (Steele, Lea and Flood, 2014): a fixed sequence of
    /// well-mixed bytes, so that the statistics below cannot flake.
    struct SplitMix(u64);

    impl SplitMix {
        fn bytes(&mut self) -> [u8; 6] {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let b = (z ^ (z >> 31)).to_le_bytes();
            [b[0], b[1], b[2], b[3], b[4], b[5]]
        }
    }

    #[test]
    fn random_macs_are_unicast_local_and_use_46_random_bits() {
        let mut rng = SplitMix(42);
        let n = 20_000;
        let macs: Vec<Mac> = (0..n).map(|_| finish(rng.bytes(), None)).collect();
        let mut ones = [0u32; 48];
        for m in &macs {
            assert_eq!(m.0[0] & 0x01, 0, "unicast: {m}");
            assert_eq!(m.0[0] & 0x02, 0x02, "locally administered: {m}");
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += u32::from(m.0[bit / 8] >> (7 - bit % 8) & 1);
            }
        }
        // the two fixed bits are the low bits of the first byte (positions 6, 7)
        for (bit, &count) in ones.iter().enumerate() {
            if bit == 6 || bit == 7 {
                continue;
            }
            let share = f64::from(count) / n as f64;
            assert!((0.47..0.53).contains(&share), "bit {bit} set in {share}");
        }
        let mut sorted = macs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), macs.len(), "no repeats among {n}");
    }

    #[test]
    fn oui_prefix_and_stable_names() {
        let m = random_mac(Some([0x52, 0x54, 0x00])).unwrap();
        assert_eq!(&m.0[..3], &[0x52, 0x54, 0x00]);
        // the kernel's bytes: 46 of 48 bits random, two draws never agree
        let (a, b) = (random_mac(None).unwrap(), random_mac(None).unwrap());
        assert_ne!(a, b);
        assert_eq!(a.0[0] & 0x03, 0x02, "unicast, locally administered: {a}");
        assert_eq!(stable_mac("web1", None), stable_mac("web1", None));
        assert_ne!(stable_mac("web1", None), stable_mac("web2", None));
        // pinned: the derivation is a promise to users, it must never change
        assert_eq!(stable_mac("web1", None).to_string(), stable_mac_pinned());
        let q = stable_mac("web1", Some([0x52, 0x54, 0x00]));
        assert_eq!(&q.0[..3], &[0x52, 0x54, 0x00]);
        assert_eq!(q.0[3..], stable_mac("web1", None).0[3..]);
        assert!(parse_oui("53:54:00").is_err(), "multicast");
        assert!(parse_oui("52:54").is_err());
        assert_eq!(parse_oui("52:54:00"), Ok([0x52, 0x54, 0x00]));
    }

    fn stable_mac_pinned() -> String {
        // FNV-1a 64 of "kvmnet-mac\0web1", bytes 2..8, first byte made
        // unicast + locally administered.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in b"kvmnet-mac\0web1" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        let v = h.to_be_bytes();
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            (v[2] & 0xfc) | 2,
            v[3],
            v[4],
            v[5],
            v[6],
            v[7]
        )
    }

    #[test]
    fn explain_names_the_rule_bridge_vlans_and_verdict() {
        let cfg = Config::parse(
            std::path::Path::new("/etc/kvmnet/kvmnet.toml"),
            "bridge = \"br0\"\n[[allow]]\ngroups = [108]\nbridges = [\"br-lab\"]\n[[rule]]\nmatch = \"lab-*\"\nbridge = \"br-lab\"\nvlan = 10\ntrunk = [\"20\", \"30-39\"]\nisolated = true\n[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.10\"]\n",
        )
        .unwrap();
        let member = Identity {
            uid: 1000,
            groups: vec![108],
            lookup_failure: None,
        };
        let e = explain(&cfg, "lab-1", &member, None);
        assert!(
            e.contains("rule:       rule 1 (lab-*) at /etc/kvmnet/kvmnet.toml line 5"),
            "{e}"
        );
        assert!(e.contains("bridge:     br-lab"), "{e}");
        assert!(
            e.contains("vlans:      10 untagged (PVID); tagged 20, 30-39"),
            "{e}"
        );
        assert!(e.contains("isolated on"), "{e}");
        // named as the user database names uid 1000 (or by the uid alone)
        assert!(
            e.contains(&format!(
                "{}:  allowed by allow rule at /etc/kvmnet/kvmnet.toml line 2 (group 108)\n",
                User::of(1000)
            )),
            "{e}"
        );
        let stranger = Identity {
            uid: 2000,
            groups: vec![2000],
            lookup_failure: None,
        };
        assert!(
            explain(&cfg, "web0", &stranger, None).contains("refused by no [[allow]] rule matches")
        );
        // no bridge configured, and no netlink to find the default route's
        let bare = Config::parse(std::path::Path::new("/etc/kvmnet/kvmnet.toml"), "").unwrap();
        let e = explain(&bare, "vm0", &stranger, None);
        assert!(
            e.ends_with(
                ":  depends on the bridge found at run time: no netlink socket to read the routes with\n"
            ),
            "{e}"
        );
        assert!(
            e.contains("bridge:     not configured: the first bridge with an IPv4 default route, else br0 (never created by kvmnet); which one cannot be told now: no netlink socket"),
            "{e}"
        );
        let e = explain(&cfg, "rt-web", &member, None);
        assert!(
            e.contains("mode:       route") && e.contains("routed mode is for root only"),
            "{e}"
        );
    }
}
