//! `kvmnet-ifup TAP`: make TAP a port of its bridge (or route to it), creating
//! the tap (and the bridge, where allowed) when missing. Either everything is
//! done, or everything this run changed is undone.

use std::fmt;
use std::net::IpAddr;

use crate::access;
use crate::acl::{Identity, Principal, Resolve, System};
use crate::attach::{self, Policy, PortPolicy, RoutePolicy};
use crate::caller::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::log::Log;
use crate::mac::Mac;
use crate::name::{BridgeName, TapName};
use crate::netlink::{Link, Netlink};
use crate::plan::{self, BridgeChoice, Origin, Target};
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
    log: &mut Log,
) -> Result<Report, Error> {
    let settings = match &requested {
        Some(b) => config.settings_on(name.as_str(), b.as_str()),
        None => config.settings_for(name.as_str()),
    };
    let caller = &inv.caller;
    let identity = (!caller.is_root()).then(|| caller.identity());
    let existing = match nl.link_by_name(name.as_str())? {
        Some(l) => Some(admit(l, name, identity.as_ref())?),
        None => None,
    };
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
    let mut run = Run {
        nl,
        caller,
        identity: identity.as_ref(),
        name,
        group,
        log,
        started: false,
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
            let (bridge, created_bridge) = resolve_bridge(&mut run, &choice, config, &settings)?;
            let joins = existing
                .as_ref()
                .is_none_or(|t| t.master != Some(bridge.index));
            if let (Some(who), true) = (&identity, joins) {
                let ports = nl.ports_of(bridge.index)?;
                access::check_port_quota(who, &ports, &bridge.name, config.max_ports_per_user)?;
            }
            let target = Target::on_bridge(&bridge, &settings);
            let policy = PortPolicy {
                settings: &settings,
                bridge: &bridge,
            };
            let (created, changed) = run.configure(existing, &target, &policy)?;
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
                port_policy: false,
                routes: &settings.addresses,
                proxy,
            };
            let policy = RoutePolicy::default();
            let (created, changed) = run.configure(existing, &target, &policy)?;
            let list: Vec<String> = settings.addresses.iter().map(IpAddr::to_string).collect();
            report.target = format!("route={}", list.join(","));
            report.created_tap = created;
            report.changed = changed;
            report.notes = policy.notes.into_inner();
        }
    }
    Ok(report)
}

/// The checks every tap passes before kvmnet changes it, made on the
/// kernel's own answer for that ifindex: after every look-up by name, the
/// same ones.
pub(crate) fn admit(link: Link, asked: &TapName, who: Option<&Identity>) -> Result<Link, Error> {
    require_tap(&link)?;
    // An alternative name (`ip link property add … altname`) finds the
    // link too; rules and records are about its own name.
    if link.name != asked.as_str() {
        return Err(Error::AltName {
            asked: asked.to_string(),
            name: link.name.clone(),
        });
    }
    if let Some(who) = who {
        access::check_tap_owner(who, &link, None)?;
    }
    Ok(link)
}

/// The tun group for a tap kvmnet creates (`group = "kvm"`).
pub(crate) fn tun_group(settings: &Settings) -> Result<Option<u32>, Error> {
    let rule = || {
        settings
            .rule
            .clone()
            .unwrap_or_else(|| "the top level".into())
    };
    match &settings.group {
        None | Some(Principal::Any) => Ok(None),
        Some(Principal::Id(g)) => Ok(Some(*g)),
        Some(Principal::Name(n)) => match System.group_id(n) {
            Ok(Some(g)) => Ok(Some(g)),
            Ok(None) => Err(Error::UnknownGroup {
                group: n.clone(),
                rule: rule(),
            }),
            Err(e) => Err(Error::GroupLookup {
                group: n.clone(),
                rule: rule(),
                cause: e.to_string(),
            }),
        },
    }
}

/// One ifup's state: what it acts on, and whether it has logged that it
/// is about to change something.
struct Run<'a> {
    nl: &'a Netlink,
    caller: &'a Caller,
    identity: Option<&'a Identity>,
    name: &'a TapName,
    group: Option<u32>,
    log: &'a mut Log,
    started: bool,
}

enum Created {
    Yes,
    LostRace,
}

impl Run<'_> {
    /// The audit line, sent before the first change: a run killed half-way
    /// still leaves a trace of what it set out to do.
    fn starting(&mut self, what: &str) {
        if !self.started {
            self.started = true;
            self.log.starting(self.name.as_str(), self.caller.uid, what);
        }
    }

    /// Brings the tap (existing or new) to `target` with the mode's policy;
    /// on any failure puts back what this run changed. Returns (created,
    /// changed).
    fn configure(
        &mut self,
        existing: Option<Link>,
        target: &Target<'_>,
        policy: &dyn Policy,
    ) -> Result<(bool, bool), Error> {
        let tap = match existing {
            Some(tap) => tap,
            None => match self.create_and_attach(target, policy)? {
                Created::Yes => return Ok((true, true)),
                // A concurrent run (or QEMU, or an admin) took the name first:
                // that tap is judged like any existing one.
                Created::LostRace => {
                    let found = self.nl.link_by_name(self.name.as_str())?;
                    let found = found.ok_or_else(|| Error::TapVanished {
                        tap: self.name.to_string(),
                    })?;
                    let found = admit(found, self.name, self.identity)?;
                    // The name was free when this run looked: it adopts only
                    // what it set out to create, a tap of the caller's own
                    // (a concurrent run for the same caller), even for root.
                    let owner = found.tun().and_then(|t| t.owner);
                    if owner != Some(self.caller.uid) {
                        return Err(Error::NameTaken {
                            tap: self.name.to_string(),
                            owner: owner.map_or("nobody".into(), |u| format!("uid {u}")),
                        });
                    }
                    found
                }
            },
        };
        let attach = plan::attach(&tap, target, Origin::Existing)?;
        if !attach.changes_anything() {
            return Ok((false, false));
        }
        self.starting(&format!("ifindex={}", tap.index));
        match attach::run(self.nl, &tap, target.bridge, &attach, policy) {
            Ok(()) => Ok((false, true)),
            Err(failed) => Err(attach::roll_back(self.nl, &attach, policy, *failed)),
        }
    }

    /// Creates the tap under a private temporary name, not persistent, so
    /// that it disappears with this process until the very last step. It
    /// gets its record, MTU and MAC (and, with port policy, joins the bridge
    /// down and gets that policy) under the temporary name; one change then
    /// names it, brings it up (and attaches it); making it persistent comes
    /// last. So a tap named `name` is never visible without its "created"
    /// record, and a run that dies leaves no tap.
    fn create_and_attach(
        &mut self,
        target: &Target<'_>,
        policy: &dyn Policy,
    ) -> Result<Created, Error> {
        self.starting("create=yes");
        let (held, temp) = create_temp_tap(self.caller, self.group)?;
        let tap = match self.nl.link_by_name(temp.as_str())? {
            Some(l) if l.is_tap() && l.name == temp.as_str() => l,
            _ => {
                return Err(Error::TapVanished {
                    tap: temp.to_string(),
                })
            }
        };
        let gone = |cause: Error| Error::RolledBack {
            cause: Box::new(cause),
            rollback: format!("tap {} was removed again", self.name),
        };
        let attach = plan::attach(&tap, target, Origin::Created(Some(self.name.as_str())))
            .map_err(|e| gone(e.into()))?;
        match attach::run(self.nl, &tap, target.bridge, &attach, policy) {
            // Dropping `held` below deletes the temporary tap.
            Err(f)
                if f.renaming
                    && matches!(&f.error, Error::Netlink(e) if e.errno() == Some(libc::EEXIST)) =>
            {
                Ok(Created::LostRace)
            }
            Err(f) => Err(gone(f.error)),
            Ok(()) => match held.persist() {
                Ok(()) => Ok(Created::Yes),
                Err(e) => Err(gone(e.into())),
            },
        }
    }
}

/// A tap under a random temporary name: `kvmnet` and 36 random bits. A
/// clash (another run's temporary tap) is retried.
fn create_temp_tap(caller: &Caller, group: Option<u32>) -> Result<(tap::Held, TapName), Error> {
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
            Ok(held) => return Ok((held, temp)),
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
    run: &mut Run<'_>,
    choice: &BridgeChoice,
    config: &Config,
    settings: &Settings,
) -> Result<(Link, bool), Error> {
    let nl = run.nl;
    let name = choice.name.as_str();
    let vlans = settings.needs_vlan_filtering();
    // Judged by the kernel's own answer: a bridge found under another of
    // its names is refused, since the ACL and rules spoke of `name`.
    let as_bridge = |l: Link| {
        if !l.is_bridge() {
            return Err(Error::NotABridge {
                name: l.name.clone(),
                what: l.kind.describe(),
                config: config_name(config),
            });
        }
        if l.name != name {
            return Err(Error::AltName {
                asked: name.to_owned(),
                name: l.name.clone(),
            });
        }
        attach::check_vlan_support(&l, settings)?;
        Ok(l)
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
    run.starting(&format!("create_bridge={name}"));
    // EEXIST means a concurrent ifup created it first: use theirs.
    let created = match nl.create_bridge(name, Mac::random_local(), vlans) {
        Err(e) if vlans && e.errno() == Some(libc::EOPNOTSUPP) => {
            return Err(Error::NoVlanSupport {
                rule: attach::vlan_rule(settings),
            })
        }
        r => r?,
    };
    let l = nl.link_by_name(name)?.ok_or_else(|| Error::BridgeMissing {
        bridge: name.to_owned(),
        config: config_name(config),
    })?;
    Ok((as_bridge(l)?, created))
}
