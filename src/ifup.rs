//! `kvmnet-ifup TAP`: make TAP a port of its bridge (or route to it), creating
//! the tap (and the bridge, where allowed) when missing. Either everything is
//! done, or everything this run changed is undone.

use std::fmt;

use crate::acl::Identity;
use crate::caller::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::link::Link;
use crate::log::Log;
use crate::mode::{self, bridge, ovs, routed, ForTap, Mode};
use crate::name::{BridgeName, TapName};
use crate::netlink::Netlink;
use crate::plan::{self, Origin, Step, Wanted};
use crate::settings::NetMode;
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
            crate::privilege::caps_for_log(self.privilege),
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
    let existing = match look_up(nl, name)? {
        Some(l) => Some(mode::admit(l, name, identity.as_ref())?),
        None => None,
    };
    let mut run = Run {
        nl,
        caller,
        identity: identity.as_ref(),
        name,
        group: mode::tun_group(&settings)?,
        log,
        started: false,
        guard: mode::Guard::wanted(&settings, name),
    };
    let rule = settings.rule.clone();
    // A tap of a [[network]]: its fixed address, if the rule gives one, is
    // in dnsmasq's hosts before the port carries anything.
    let network = settings
        .network
        .as_deref()
        .and_then(|n| config.network(n))
        .cloned();
    let reservation = crate::net::reservation(&settings, name.as_str());
    // KVMNET_BRIDGE must not move a network's tap elsewhere while it keeps
    // the network's fixed address
    if let (Some(n), Some(b)) = (&network, &requested) {
        if *b != n.bridge {
            return Err(Error::Denied {
                message: format!("tap {name} joins network {} (bridge {}), not bridge {b}: unset KVMNET_BRIDGE or change the tap's rule", n.name, n.bridge),
                details: format!("tap={name} bridge={b} decision=denied rule=\"network = {}\"", n.name),
            });
        }
    }
    let tap = ForTap {
        name,
        who: identity.as_ref(),
        existing: existing.as_ref(),
    };
    // The mode's constructor checks everything that can refuse without
    // changing anything, before the first change.
    let (mode, acl, created_bridge): (Box<dyn Mode>, String, bool) = match settings.mode {
        NetMode::Bridge => {
            let port = bridge::Port::for_ifup(nl, config, settings, requested, &tap, &mut |what| {
                run.starting(what)
            })
            .map_err(|e| match (e, &network) {
                (Error::BridgeMissing { .. }, Some(n)) => crate::net::NetError::Down {
                    net: n.name.clone(),
                    bridge: n.bridge.to_string(),
                }
                .into(),
                (e, _) => e,
            })?;
            let (acl, created) = (port.acl.clone(), port.created_bridge);
            (Box::new(port), acl, created)
        }
        NetMode::Route => {
            let routed = routed::Routed::for_ifup(settings, &tap)?;
            (Box::new(routed), "root".into(), false)
        }
        NetMode::Ovs => {
            let port = ovs::OvsPort::for_ifup(nl, config, settings, &tap, caller.uid)?;
            let acl = port.acl.clone();
            (Box::new(port), acl, false)
        }
    };
    let reserved = match (&network, reservation) {
        (Some(n), Some(_)) if inv.mode != crate::privilege::Mode::Root => {
            return Err(crate::net::NetError::ReserveUnprivileged {
                tap: name.to_string(),
                net: n.name.clone(),
                mode: inv.mode,
            }
            .into())
        }
        (Some(n), Some((mac, ip))) => {
            run.starting(&format!("network={} reserve={mac},{ip}", n.name));
            crate::net::reserve(n, name, mac, ip)?
        }
        _ => None,
    };
    let (created_tap, changed) = match run.configure(existing, mode.as_ref()) {
        Ok(done) => done,
        Err(e) => {
            if let Some(r) = reserved {
                r.undo();
            }
            return Err(e);
        }
    };
    let mut notes = mode.notes();
    if run.guard.as_ref().is_some_and(mode::Guard::limits) {
        notes.extend(mode::sweep_guards(mode::SWEEP_EVERY));
    }
    Ok(Report {
        tap: name.to_string(),
        target: mode.describe(),
        user: caller.uid,
        privilege: inv.mode,
        acl,
        rule,
        created_tap,
        created_bridge,
        changed,
        notes,
    })
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
    guard: Option<mode::Guard>,
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
        mode: &dyn Mode,
    ) -> Result<(bool, bool), Error> {
        let target = mode.wanted();
        let tap = match existing {
            Some(tap) => tap,
            None => match self.create_and_attach(&target, mode)? {
                Created::Yes => return Ok((true, true)),
                // A concurrent run (or QEMU, or an admin) took the name first:
                // that tap is judged like any existing one.
                Created::LostRace => {
                    let found = look_up(self.nl, self.name)?;
                    let found = found.ok_or_else(|| Error::TapVanished {
                        tap: self.name.to_string(),
                    })?;
                    let found = mode::admit(found, self.name, self.identity)?;
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
        let attach = plan::attach(&tap, &target, origin_of(&tap))?;
        // A guard that stays is put back every run, also when nothing else
        // changes (a ruleset flushed by someone else comes back); one that is
        // switched off goes before the record stops saying so. A new guard
        // is a step of the plan, taken while the tap carries nothing.
        // The same for the host->guest limit.
        let refresh = self.guard.is_some() && !attach.steps.contains(&Step::Guard);
        let reshape = attach.shape.is_some() && !attach.steps.contains(&Step::Shape);
        let unshape = attach.shape.is_none() && attach.shape_before.is_some();
        if refresh || reshape || unshape || (self.guard.is_none() && attach.guard_before) {
            self.starting(&format!("ifindex={}", tap.index));
        }
        match &self.guard {
            Some(g) if refresh => {
                g.apply(self.nl, self.name, tap.index, attach.guard_parts_before)?
            }
            None if attach.guard_before => {
                mode::remove_guard(self.nl, tap.index, attach.guard_parts_before)?
            }
            _ => {}
        }
        match (&attach.shape, attach.shape_before) {
            (Some((rate, mtu)), _) if reshape => mode::set_shape(self.nl, tap.index, *mtu, rate)?,
            (None, Some(before)) => mode::clear_shape(self.nl, &tap, before)?,
            _ => {}
        }
        if !attach.changes_anything() {
            return Ok((false, false));
        }
        self.starting(&format!("ifindex={}", tap.index));
        match mode::run(self.nl, &tap, &attach, mode, self.guard.as_ref()) {
            Ok(()) => Ok((false, true)),
            Err(failed) => Err(mode::roll_back(self.nl, &attach, mode, *failed)),
        }
    }

    /// Creates the tap, not persistent, so that it disappears with this
    /// process until the very last step: it gets its record, MTU and MAC
    /// (and, with port policy, joins the bridge down and gets that policy),
    /// then goes live; making it persistent comes last. A run that dies
    /// leaves no tap.
    ///
    /// It is created under its own name, not a temporary one renamed at the
    /// end: a rename makes the kernel register the interface's sysctl tables
    /// a second time, the largest cost of a create. A concurrent run for the
    /// same name that finds the tap between this creation and its record
    /// recognises it as a creation in progress ([`origin_of`]) and records
    /// it as created; its changes are the same ones, and the tap still dies
    /// with this run until it is made persistent.
    fn create_and_attach(
        &mut self,
        target: &Wanted<'_>,
        mode: &dyn Mode,
    ) -> Result<Created, Error> {
        self.starting("create=yes");
        let new = NewTap {
            name: self.name,
            owner: self.caller.uid,
            group: self.group,
        };
        let held = match tap::create(&new) {
            Err(TapError::Exists { .. }) => return Ok(Created::LostRace),
            r => r?,
        };
        let vanished = || Error::TapVanished {
            tap: self.name.to_string(),
        };
        // The link found by name is the held tap only if the held tap still
        // has that name after the look-up (it could have been deleted and
        // the name reused in between).
        let tap = match self.nl.link_by_name(self.name)? {
            Some(l) if l.is_tap() && l.name == self.name.as_str() => l,
            _ => return Err(vanished()),
        };
        if held.name().ok().as_deref() != Some(self.name.as_str()) {
            return Err(vanished());
        }
        let gone = |cause: Error| Error::RolledBack {
            cause: Box::new(cause),
            rollback: format!("tap {} was removed again", self.name),
        };
        let attach = plan::attach(&tap, target, Origin::Created).map_err(|e| gone(e.into()))?;
        // Dropping `held` on an error deletes the tap, but not a guard
        // table, which outlives it: that goes explicitly (a kill leaves it to
        // the sweep).
        // The same for policy kept outside the kernel (an Open vSwitch port).
        mode::run(self.nl, &tap, &attach, mode, self.guard.as_ref()).map_err(|f| {
            f.unguard(&attach);
            if f.policy_started {
                mode.undo_policy(self.nl, &f.tap, &attach);
            }
            gone(f.error)
        })?;
        held.persist().map_err(|e| {
            if self.guard.is_some() {
                let _ = crate::guard::remove(tap.index);
            }
            mode.undo_policy(self.nl, &tap, &attach);
            gone(e.into())
        })?;
        Ok(Created::Yes)
    }
}

/// The link named `name`. A tap another run has just created has no owner
/// for the instant until its next ioctl: it is looked at again then, for a
/// bounded time, rather than judged as nobody's.
fn look_up(nl: &Netlink, name: &TapName) -> Result<Option<Link>, Error> {
    for _ in 0..20 {
        match nl.link_by_name(name)? {
            Some(l)
                if origin_of(&l) == Origin::Created
                    && l.tun().is_some_and(|t| t.owner.is_none()) =>
            {
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            found => return Ok(found),
        }
    }
    nl.link_by_name(name).map_err(Error::from)
}

/// A tap found by name is QEMU's (or an earlier run's), unless another
/// kvmnet-ifup is creating it right now: not persistent yet, created without
/// carrier, and its record not written yet. Such a tap is completed as that
/// run's creation, so that whichever of the two writes the record last, it
/// says "created" and ifdown deletes the tap.
fn origin_of(tap: &Link) -> Origin {
    let held_by_a_run = tap.tun().is_some_and(|t| !t.persist) && !tap.carrier;
    let unrecorded = matches!(
        crate::record::Record::parse(&tap.name, tap.alias.as_deref()),
        Ok(None)
    );
    if held_by_a_run && unrecorded {
        Origin::Created
    } else {
        Origin::Existing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{LinkKind, TunInfo};

    fn tap(persist: bool, carrier: bool, alias: Option<&str>) -> Link {
        Link {
            index: 7,
            name: "vm0".into(),
            kind: LinkKind::Tun(TunInfo {
                tap_mode: true,
                owner: Some(1000),
                group: None,
                persist,
            }),
            mtu: 1500,
            mac: None,
            master: None,
            up: false,
            carrier,
            alias: alias.map(str::to_owned),
            vlan_filtering: None,
        }
    }

    #[test]
    fn only_a_tap_still_being_created_counts_as_another_runs_creation() {
        // held by a run, created without carrier, no record yet
        assert_eq!(origin_of(&tap(false, false, None)), Origin::Created);
        // QEMU's tap: QEMU's descriptor gives it carrier
        assert_eq!(origin_of(&tap(false, true, None)), Origin::Existing);
        // made persistent: that run has finished (or it was never one)
        assert_eq!(origin_of(&tap(true, false, None)), Origin::Existing);
        // the record is written: the plan reads "created" from it
        let recorded = tap(false, false, Some("kvmnet:v1 created attached=br0"));
        assert_eq!(origin_of(&recorded), Origin::Existing);
        // someone else's alias is no record
        assert_eq!(
            origin_of(&tap(false, false, Some("uplink"))),
            Origin::Created
        );
    }
}
