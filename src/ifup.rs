//! `kvmnet-ifup TAP`: make TAP a port of its bridge (or route to it), creating
//! the tap (and the bridge, where allowed) when missing. Either everything is
//! done, or everything this run changed is undone.

use std::fmt;
use std::net::IpAddr;

use crate::access;
use crate::acl::{Principal, Resolve, System};
use crate::caller::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::mac::Mac;
use crate::name::{BridgeName, TapName};
use crate::netlink::{Link, LinkChange, Netlink};
use crate::plan::{self, Attach, BridgeChoice, Target};
use crate::settings::{HostMac, MtuPolicy, NetMode, Settings};
use crate::sysctl::{self, Family};
use crate::tap::{self, NewTap, TapError};
use crate::Invocation;

/// What a successful run did, for the log line.
#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    /// "bridge=br0 mtu=9000" or "route=192.0.2.10".
    pub target: String,
    pub user: u32,
    pub privilege: crate::privilege::Mode,
    /// Which rule let a non-root caller use the bridge ("root" for root).
    pub acl: String,
    /// Which `[[rule]]` matched the tap name, if any.
    pub rule: Option<String>,
    pub created_tap: bool,
    pub created_bridge: bool,
    pub changed: bool,
    /// Host-wide changes made along the way (forwarding switched on).
    pub notes: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b| if b { "yes" } else { "no" };
        write!(
            f,
            "tap={} {} user={} created_tap={} created_bridge={} result={} privilege={} caps={} acl=\"{}\" rule=\"{}\"",
            self.tap,
            self.target,
            self.user,
            yn(self.created_tap),
            yn(self.created_bridge),
            if self.changed { "attached" } else { "unchanged" },
            self.privilege,
            crate::privilege::kept(self.privilege),
            self.acl,
            self.rule.as_deref().unwrap_or("defaults"),
        )?;
        for n in &self.notes {
            write!(f, " note=\"{n}\"")?;
        }
        Ok(())
    }
}

pub fn ifup(
    nl: &Netlink,
    inv: &Invocation,
    config: &Config,
    requested: Option<BridgeName>,
    name: &TapName,
) -> Result<Report, Error> {
    let settings = match &requested {
        Some(b) => config.settings_on(name.as_str(), b.as_str()),
        None => config.settings_for(name.as_str()),
    };
    let caller = &inv.caller;
    let identity = (!caller.is_root()).then(|| caller.identity());
    let existing = nl.link_by_name(name.as_str())?;
    if let Some(l) = &existing {
        require_tap(l)?;
        if let Some(who) = &identity {
            access::check_tap_owner(who, l, None)?;
        }
    }
    let group = tun_group(&settings)?;
    let mut report = Report {
        tap: name.to_string(),
        target: String::new(),
        user: caller.uid,
        privilege: inv.mode,
        acl: "root".into(),
        rule: settings.rule.clone(),
        created_tap: false,
        created_bridge: false,
        changed: false,
        notes: Vec::new(),
    };

    // Everything that can be refused without changing anything is checked
    // before the first change.
    match settings.mode {
        NetMode::Bridge => {
            let choice = match (requested, plan::configured_bridge(&settings)) {
                (Some(name), _) => BridgeChoice {
                    name,
                    create: false,
                    reason: plan::BridgeReason::Requested,
                },
                (None, Some(c)) => c,
                (None, None) => plan::fallback_bridge(
                    config.source.is_some(),
                    &settings,
                    default_route_bridge(nl)?,
                ),
            };
            if let Some(who) = &identity {
                report.acl =
                    access::check_bridge(who, &config.acl, name.as_str(), choice.name.as_str())?;
            }
            let (bridge, created_bridge) = resolve_bridge(nl, &choice, config, &settings)?;
            let target = Target::on_bridge(&bridge, &settings);
            let steps = PortSteps {
                nl,
                settings: &settings,
                bridge: &bridge,
            };
            let (created, changed) = configure(nl, caller, name, existing, group, &target, &steps)?;
            report.target = format!(
                "bridge={} mtu={}",
                bridge.name,
                target.mtu.unwrap_or(bridge.mtu)
            );
            report.created_bridge = created_bridge;
            report.created_tap = created;
            report.changed = changed;
        }
        NetMode::Route => {
            if let Some(who) = &identity {
                return Err(access::routed_is_root_only(
                    who,
                    name.as_str(),
                    settings.rule.as_deref(),
                ));
            }
            let mut proxy = Vec::new();
            for family in [Family::V4, Family::V6] {
                if settings.addresses.iter().any(|a| Family::of(a) == family) {
                    let already = existing
                        .as_ref()
                        .map(|t| {
                            sysctl::is_on(&sysctl::proxy_path(family, &t.name)).unwrap_or(false)
                        })
                        .unwrap_or(false);
                    if !already {
                        proxy.push(family);
                    }
                }
            }
            let target = Target {
                bridge: None,
                mtu: match settings.mtu {
                    MtuPolicy::Bridge => None,
                    MtuPolicy::Fixed(n) => Some(n),
                },
                fe_mac: settings.host_mac == HostMac::Fe,
                routes: &settings.addresses,
                proxy: proxy.clone(),
            };
            let steps = RouteSteps {
                nl,
                name: name.as_str(),
                proxy: &proxy,
                notes: std::cell::RefCell::new(Vec::new()),
            };
            let (created, changed) = configure(nl, caller, name, existing, group, &target, &steps)?;
            let list: Vec<String> = settings.addresses.iter().map(IpAddr::to_string).collect();
            report.target = format!("route={}", list.join(","));
            report.created_tap = created;
            report.changed = changed;
            report.notes = steps.notes.into_inner();
        }
    }
    Ok(report)
}

/// The tun group for a tap kvmnet creates (`group = "kvm"`).
pub(crate) fn tun_group(settings: &Settings) -> Result<Option<u32>, Error> {
    match &settings.group {
        None => Ok(None),
        Some(Principal::Id(g)) => Ok(Some(*g)),
        Some(Principal::Name(n)) => System.gid(n).map(Some).ok_or_else(|| Error::UnknownGroup {
            group: n.clone(),
            rule: settings
                .rule
                .clone()
                .unwrap_or_else(|| "the top level".into()),
        }),
        Some(Principal::Any) => Ok(None),
    }
}

/// What follows the link change in a mode: port VLANs and flags, or routes.
/// `run` happens only after the tap's change was applied; `undo` must put
/// back whatever `run` did on a tap that existed before.
pub(crate) trait Steps {
    fn run(&self, tap: &Link, attach: &Attach) -> Result<(), Error>;
    fn undo(&self, tap: &Link, attach: &Attach);
}

pub(crate) struct PortSteps<'a> {
    pub nl: &'a Netlink,
    pub settings: &'a Settings,
    pub bridge: &'a Link,
}

impl Steps for PortSteps<'_> {
    fn run(&self, tap: &Link, attach: &Attach) -> Result<(), Error> {
        // Port settings belong to the joining: a tap that was a port already
        // keeps what it has (re-running ifup changes nothing).
        if attach.change.master.is_none() || !self.settings.has_port_settings() {
            return Ok(());
        }
        let s = self.settings;
        if s.needs_vlan_filtering() {
            self.nl
                .set_port_vlans(tap.index, &tap.name, s.vlan, &s.trunk)?;
        }
        self.nl
            .set_port_flags(tap.index, &tap.name, s.isolated, s.learning, s.flooding)
            .map_err(|e| Error::PortSettings {
                tap: tap.name.clone(),
                bridge: self.bridge.name.clone(),
                cause: e.to_string(),
            })
    }

    fn undo(&self, _tap: &Link, _attach: &Attach) {
        // leaving the bridge (the link undo) drops the port's VLANs and flags
    }
}

struct RouteSteps<'a> {
    nl: &'a Netlink,
    name: &'a str,
    proxy: &'a [Family],
    notes: std::cell::RefCell<Vec<String>>,
}

impl Steps for RouteSteps<'_> {
    fn run(&self, tap: &Link, attach: &Attach) -> Result<(), Error> {
        let sys = |path: &str, e: std::io::Error| Error::Sysctl {
            path: path.to_owned(),
            cause: crate::error::plain(&e),
        };
        for &family in self.proxy {
            let path = sysctl::proxy_path(family, self.name);
            sysctl::set(&path, true).map_err(|e| sys(&path, e))?;
        }
        for addr in &attach.new_routes {
            if !self.nl.add_host_route(*addr, tap.index, self.name)? {
                return Err(Error::RouteExists {
                    addr: *addr,
                    tap: self.name.to_owned(),
                });
            }
        }
        // Routing to a guest is pointless without forwarding; switching it on
        // is host-wide, so it is logged and never switched off again.
        for family in [Family::V4, Family::V6] {
            if attach.record.routes.iter().any(|a| Family::of(a) == family) {
                let path = sysctl::forwarding_path(family);
                if !sysctl::is_on(path).map_err(|e| sys(path, e))? {
                    sysctl::set(path, true).map_err(|e| sys(path, e))?;
                    self.notes
                        .borrow_mut()
                        .push(format!("switched {} forwarding on ({path})", family.name()));
                }
            }
        }
        Ok(())
    }

    fn undo(&self, tap: &Link, attach: &Attach) {
        for addr in &attach.new_routes {
            let _ = self.nl.del_host_route(*addr, tap.index, self.name);
        }
        for &family in self.proxy {
            let _ = sysctl::set(&sysctl::proxy_path(family, self.name), false);
        }
    }
}

/// Brings the tap (existing or new) to `target`, then runs the mode's steps;
/// on any failure puts back what this run changed. Returns (created, changed).
fn configure(
    nl: &Netlink,
    caller: &Caller,
    name: &TapName,
    existing: Option<Link>,
    group: Option<u32>,
    target: &Target<'_>,
    steps: &dyn Steps,
) -> Result<(bool, bool), Error> {
    let tap = match existing {
        Some(tap) => tap,
        None => match create_and_attach(nl, caller, name, group, target, steps)? {
            Created::Yes => return Ok((true, true)),
            // A concurrent run (or QEMU, or an admin) took the name first: treat
            // it like any existing tap.
            Created::LostRace => {
                let tap = nl
                    .link_by_name(name.as_str())?
                    .ok_or_else(|| Error::NotATap {
                        name: name.to_string(),
                        what: "created and deleted again by another process meanwhile".into(),
                    })?;
                require_tap(&tap)?;
                tap
            }
        },
    };
    let attach = plan::attach(&tap, target, false)?;
    if let Err(e) = apply(nl, &tap, target.bridge, &attach.change) {
        return Err(roll_back(nl, &tap, Undo::Change(&attach.undo), e));
    }
    if let Err(e) = steps.run(&tap, &attach) {
        steps.undo(&tap, &attach);
        return Err(roll_back(nl, &tap, Undo::Change(&attach.undo), e));
    }
    Ok((
        false,
        !attach.change.is_empty() || !attach.new_routes.is_empty(),
    ))
}

enum Created {
    Yes,
    LostRace,
}

/// Creates the tap under a private temporary name, writes its record, MTU and
/// MAC, and only then renames it to `name` while attaching it and bringing it
/// up. So a tap named `name` is never visible without its "created" record: a
/// concurrent run cannot mistake it for a foreign tap and overwrite the record,
/// which would make ifdown leave a persistent tap behind.
fn create_and_attach(
    nl: &Netlink,
    caller: &Caller,
    name: &TapName,
    group: Option<u32>,
    target: &Target<'_>,
    steps: &dyn Steps,
) -> Result<Created, Error> {
    let temp = create_temp_tap(caller, group)?;
    let tap = match nl.link_by_name(temp.as_str())? {
        Some(l) => l,
        None => {
            return Err(Error::NotATap {
                name: temp.to_string(),
                what: "gone right after kvmnet created it".into(),
            })
        }
    };
    let result = plan::attach(&tap, target, true)
        .map_err(Error::from)
        .and_then(|a| {
            let (before, visible) = a.change.clone().split_for_creation(name.as_str());
            nl.set_link(tap.index, &before, &format!("configuring new tap {name}"))?;
            match apply(nl, &tap, target.bridge, &visible) {
                Err(Error::Netlink(e)) if e.errno() == Some(libc::EEXIST) => Ok(Created::LostRace),
                Err(e) => Err(e),
                Ok(()) => {
                    let named = Link {
                        name: name.to_string(),
                        ..tap.clone()
                    };
                    steps.run(&named, &a).map(|()| Created::Yes)
                }
            }
        });
    match result {
        Ok(Created::Yes) => Ok(Created::Yes),
        Ok(Created::LostRace) => {
            nl.delete_link(tap.index, &format!("deleting temporary tap {temp}"))?;
            Ok(Created::LostRace)
        }
        // Deleting the tap also removes its port settings, routes and sysctls.
        Err(e) => Err(roll_back(
            nl,
            &Link {
                name: name.to_string(),
                ..tap
            },
            Undo::Delete,
            e,
        )),
    }
}

/// A tap under a random temporary name: `kvmnet` and 36 random bits. A
/// clash (another run's temporary tap) is retried.
fn create_temp_tap(caller: &Caller, group: Option<u32>) -> Result<TapName, Error> {
    use rand::TryRng;
    let mut tries = 0;
    loop {
        // One getrandom call: rand's thread generator would seed a ChaCha
        // state first (two getrandom calls and its set-up code, cold at every
        // VM start) for these 8 bytes. Without entropy, the pid and time
        // still make a clash unlikely, and a clash is retried.
        let bits = rand::rngs::SysRng.try_next_u64().unwrap_or_else(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            now ^ (u64::from(std::process::id()) << 32)
        });
        let temp = TapName::new(&format!("kvmnet{:09x}", bits & 0xf_ffff_ffff))
            .expect("15 safe characters");
        let new = NewTap {
            name: &temp,
            owner: caller.uid,
            group,
        };
        match tap::create(&new) {
            Ok(()) => return Ok(temp),
            Err(TapError::Exists { .. }) if tries < 3 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn require_tap(l: &Link) -> Result<(), Error> {
    if l.is_tap() {
        Ok(())
    } else {
        Err(Error::NotATap {
            name: l.name.clone(),
            what: l.kind.describe(),
        })
    }
}

fn config_name(config: &Config) -> String {
    config
        .source
        .as_deref()
        .unwrap_or(std::path::Path::new(crate::config::DEFAULT_PATH))
        .display()
        .to_string()
}

/// The first IPv4 default-route interface that is a bridge (Debian's rule).
fn default_route_bridge(nl: &Netlink) -> Result<Option<BridgeName>, Error> {
    for index in nl.default_route_oifs()? {
        if let Some(l) = nl.link_by_index(index)? {
            if l.is_bridge() {
                if let Ok(name) = BridgeName::new(&l.name) {
                    return Ok(Some(name));
                }
            }
        }
    }
    Ok(None)
}

fn resolve_bridge(
    nl: &Netlink,
    choice: &BridgeChoice,
    config: &Config,
    settings: &Settings,
) -> Result<(Link, bool), Error> {
    let name = choice.name.as_str();
    let vlans = settings.needs_vlan_filtering();
    let rule = || {
        settings
            .rule
            .clone()
            .unwrap_or_else(|| "the top-level vlan/trunk".into())
    };
    let as_bridge = |l: Link| {
        if !l.is_bridge() {
            return Err(Error::NotABridge {
                name: l.name.clone(),
                what: l.kind.describe(),
                config: config_name(config),
            });
        }
        match (vlans, l.vlan_filtering) {
            (true, None) => Err(Error::NoVlanSupport { rule: rule() }),
            (true, Some(false)) => Err(Error::VlanFilteringOff {
                bridge: l.name.clone(),
                rule: rule(),
            }),
            _ => Ok(l),
        }
    };
    if let Some(l) = nl.link_by_name(name)? {
        return Ok((as_bridge(l)?, false));
    }
    if !choice.create {
        return Err(Error::BridgeMissing {
            bridge: name.to_owned(),
            config: config_name(config),
        });
    }
    // EEXIST means a concurrent ifup created it first: use theirs.
    let created = match nl.create_bridge(name, Mac::random_local(), vlans) {
        Err(e) if vlans && e.errno() == Some(libc::EOPNOTSUPP) => {
            return Err(Error::NoVlanSupport { rule: rule() })
        }
        r => r?,
    };
    let l = nl.link_by_name(name)?.ok_or_else(|| Error::BridgeMissing {
        bridge: name.to_owned(),
        config: config_name(config),
    })?;
    Ok((as_bridge(l)?, created))
}

pub(crate) fn apply(
    nl: &Netlink,
    tap: &Link,
    bridge: Option<&Link>,
    change: &LinkChange,
) -> Result<(), Error> {
    let what = match bridge {
        Some(b) => format!("attaching {} to bridge {}", tap.name, b.name),
        None => format!("configuring {}", tap.name),
    };
    match (nl.set_link(tap.index, change, &what), bridge) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(b)) if e.errno() == Some(libc::EXFULL) => Err(Error::BridgeFull {
            bridge: b.name.clone(),
        }),
        (Err(_), Some(b))
            if change.master.is_some() && !matches!(nl.link_by_index(b.index), Ok(Some(_))) =>
        {
            Err(Error::BridgeVanished {
                bridge: b.name.clone(),
                tap: tap.name.clone(),
            })
        }
        (Err(e), _) => Err(e.into()),
    }
}

enum Undo<'a> {
    Delete,
    Change(&'a LinkChange),
}

/// Puts back what this run changed and says so in the error. A bridge this run
/// created stays: it is shared, complete, and a concurrent ifup may be using it.
fn roll_back(nl: &Netlink, tap: &Link, undo: Undo<'_>, cause: Error) -> Error {
    let (result, done) = match undo {
        Undo::Delete => (
            nl.delete_link(tap.index, &format!("deleting tap {}", tap.name)),
            format!("tap {} was removed again", tap.name),
        ),
        Undo::Change(c) => (
            nl.set_link(tap.index, c, &format!("restoring tap {}", tap.name)),
            format!("tap {} was left as it was", tap.name),
        ),
    };
    let rollback = match result {
        Ok(()) => done,
        Err(e) => format!(
            "rolling back failed too ({e}); check `ip -d link show {}`",
            tap.name
        ),
    };
    Error::RolledBack {
        cause: Box::new(cause),
        rollback,
    }
}
