//! Network modes as drivers, in the shape of netavark's network drivers: one
//! file per mode ([`bridge`], [`routed`]) owns the mode's preconditions
//! (checked before the first change), its target, its policy and the undo of
//! that policy. `kvmnet-ifup`, `kvmnet-ifdown` and the bridge helper drive a
//! mode through [`Mode`], [`run`] and [`roll_back`]; a new mode is one file.

pub mod bridge;
pub mod ovs;
pub mod routed;

use crate::access;
use crate::acl::{Identity, Principal, Resolve, System};
use crate::error::Error;
use crate::guard::{GuardSpec, Prefix};
use crate::link::{Link, LinkChange};
use crate::mac::Mac;
use crate::name::TapName;
use crate::netlink::Netlink;
use crate::plan::{Attach, Step, Wanted};
use crate::settings::Settings;

/// One network mode, prepared for one tap: its constructor has checked
/// every precondition that can refuse without changing anything.
pub trait Mode {
    /// Where the tap should end up, for [`crate::plan::attach`].
    fn wanted(&self) -> Wanted<'_>;
    /// Runs at the plan's [`Step::Policy`]; `tap` carries the name the tap
    /// has at that point.
    fn set_policy(&self, nl: &Netlink, tap: &Link, attach: &Attach) -> Result<(), Error>;
    /// Puts back what `set_policy` did on a tap that stays (not one that is
    /// deleted: the kernel removes its routes and settings with it).
    fn undo_policy(&self, nl: &Netlink, tap: &Link, attach: &Attach);
    /// For the log line: `bridge=br0 mtu=9000`, `route=192.0.2.10`.
    fn describe(&self) -> String;
    /// Host-wide changes made along the way, for the log line.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// The bridge the tap joins, if any.
    fn bridge(&self) -> Option<&Link> {
        None
    }
}

/// The tap a mode is prepared for, as kvmnet-ifup found it.
pub struct ForTap<'a> {
    pub name: &'a TapName,
    /// The caller, when not root: the ACL and limits apply to them.
    pub who: Option<&'a Identity>,
    /// The tap as it is, if it exists (admitted already).
    pub existing: Option<&'a Link>,
}

/// The checks every tap passes before kvmnet changes it, made on the
/// kernel's own answer for that ifindex: after every look-up by name, the
/// same ones.
pub fn admit(link: Link, asked: &TapName, who: Option<&Identity>) -> Result<Link, Error> {
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

fn require_tap(l: &Link) -> Result<(), Error> {
    if l.is_tap() {
        Ok(())
    } else {
        Err(Error::NotATap {
            name: l.name.clone(),
            what: l.kind.describe(),
        })
    }
}

/// The tun group for a tap kvmnet creates (`group = "kvm"`).
pub fn tun_group(settings: &Settings) -> Result<Option<u32>, Error> {
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

/// The guest guard a tap gets (`guard = true`), whatever its mode: it sits
/// on the tap, so bridged, routed and bridge-helper taps get the same one.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The guard's checks are on (`guard = true`); without, the table only
    /// polices `rate_in`.
    enforce: bool,
    macs: Vec<Mac>,
    ipv4: Option<Vec<Prefix>>,
    ipv6: Option<Vec<Prefix>>,
    rate_in: Option<crate::rate::Rate>,
}

/// Interfaces looked up per sweep, from a random shard on:
/// runs that start elsewhere cover the rest (docs/guard-design.md).
const SWEEP_BUDGET: usize = 64;
/// A guarded start sweeps one time in this many: reading the guard shards
/// costs in proportion to their number, which a VM start must not pay.
/// Every kvmnet-ifdown sweeps.
pub const SWEEP_EVERY: u64 = 16;

impl Guard {
    /// `None` when `settings` want no guard for tap `tap`.
    pub fn wanted(settings: &Settings, tap: &TapName) -> Option<Guard> {
        // OVS ports get none: ovs-vswitchd owns their traffic control (the
        // config refuses a guard there; rates set above the rule are not
        // applied, so not recorded either).
        let ovs = settings.mode == crate::settings::NetMode::Ovs;
        (settings.guard_table() && !ovs).then(|| {
            let (ipv4, ipv6) = settings.guard_addresses();
            let mut macs: Vec<Mac> = settings
                .guest_mac
                .iter()
                .map(|m| m.for_tap(tap.as_str()))
                .collect();
            macs.sort_unstable_by_key(|m| m.0);
            macs.dedup();
            Guard {
                enforce: settings.guard,
                macs,
                ipv4,
                ipv6,
                rate_in: settings.rate_in,
            }
        })
    }

    pub fn spec(&self, tap: &TapName, ifindex: u32) -> GuardSpec {
        GuardSpec {
            tap: tap.clone(),
            ifindex,
            macs: self.macs.clone(),
            ipv4: self.ipv4.clone(),
            ipv6: self.ipv6.clone(),
            enforce: self.enforce,
            rate_in: self.rate_in,
        }
    }

    /// Puts the guard on the tap with this ifindex, replacing what it had
    /// (`before`).
    pub fn apply(
        &self,
        nl: &Netlink,
        tap: &TapName,
        ifindex: u32,
        before: crate::guard::Parts,
    ) -> Result<(), Error> {
        crate::guard::apply_with(nl, &self.spec(tap, ifindex), before).map_err(Error::from)
    }

    /// The guard has a guest->host limit, whose nf_tables chain outlives a
    /// tap deleted without its downscript (the checks go with the tap).
    pub fn limits(&self) -> bool {
        self.rate_in.is_some()
    }
}

/// Removes the parts `before` of the guard of the tap with this ifindex
/// (none there is fine).
pub fn remove_guard(nl: &Netlink, ifindex: u32, before: crate::guard::Parts) -> Result<(), Error> {
    crate::guard::remove_with(nl, ifindex, before).map_err(Error::from)
}

/// Removes guard state whose tap is gone without a downscript (QEMU
/// killed; bridge-helper taps, which have none), one time in `one_in`, a
/// bounded number of look-ups each; for the log line.
pub fn sweep_guards(one_in: u64) -> Option<String> {
    let draw = crate::random::os_u64();
    if draw % one_in != 0 {
        return None;
    }
    let start = (draw / one_in) as usize;
    match crate::guard::sweep(SWEEP_BUDGET, start) {
        Ok(gone) if gone.is_empty() => None,
        Ok(gone) => Some(format!(
            "removed stale guard state: {}",
            gone.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
        )),
        // Another tap's leftovers never fail this tap's run.
        Err(e) => Some(format!("guard sweep failed: {e}")),
    }
}

/// Puts the host->guest limit on the tap (again: the same limit changes
/// nothing).
pub fn set_shape(
    nl: &Netlink,
    ifindex: u32,
    mtu: u32,
    rate: &crate::rate::Rate,
) -> Result<(), Error> {
    crate::shape::set(nl, ifindex, mtu, rate).map_err(|e| Error::Shape(Box::new(e)))
}

/// Removes the limit a record says ifup put on `tap` (bytes per second,
/// burst), and only that one.
pub fn clear_shape(nl: &Netlink, tap: &Link, (bps, burst): (u64, u32)) -> Result<(), Error> {
    let shape = |e| Error::Shape(Box::new(e));
    let rate = crate::rate::Rate::new(bps, Some(burst.into())).map_err(|e| {
        shape(crate::shape::ShapeError::Protocol {
            ifindex: tap.index,
            msg: format!("its record's limit {bps}/{burst}: {e}"),
        })
    })?;
    crate::shape::clear(nl, tap.index, tap.mtu, &rate).map_err(shape)?;
    Ok(())
}

/// How far [`run`] got before it failed.
pub struct Failed {
    pub error: Error,
    /// The policy step ran (at least in part).
    pub policy_started: bool,
    /// The guard step ran (its batch is all or nothing, but a rollback
    /// removes what may be there).
    pub guard_started: bool,
    /// The limit step ran.
    pub shape_started: bool,
    /// The tap under its name at the failure.
    pub tap: Link,
}

impl Failed {
    /// Removes a guard this run put on a tap that had none: for a tap that
    /// is deleted on failure too, as its table would outlive it.
    pub fn unguard(&self, attach: &Attach) {
        if self.guard_started && !attach.guard_before {
            let _ = crate::guard::remove(self.tap.index);
        }
    }

    /// Removes a limit this run put on a tap that had none (a tap that is
    /// deleted takes its qdisc with it).
    fn unshape(&self, nl: &Netlink, attach: &Attach) {
        if let (true, None, Some((rate, mtu))) =
            (self.shape_started, attach.shape_before, &attach.shape)
        {
            let _ = crate::shape::clear(nl, self.tap.index, *mtu, rate);
        }
    }
}

/// Carries out `attach` on `tap` (by its ifindex), step by step; `guard` is
/// the guard of the plan's [`Step::Guard`].
pub fn run(
    nl: &Netlink,
    tap: &Link,
    attach: &Attach,
    mode: &dyn Mode,
    guard: Option<&Guard>,
) -> Result<(), Box<Failed>> {
    let mut policy_started = false;
    let mut guard_started = false;
    let mut shape_started = false;
    let name = TapName::new(&tap.name);
    for step in &attach.steps {
        let result = match step {
            Step::Link(change) => set(nl, tap, mode.bridge(), change),
            Step::Policy => {
                policy_started = true;
                mode.set_policy(nl, tap, attach)
            }
            Step::Guard => {
                guard_started = true;
                match (guard, &name) {
                    (Some(g), Ok(name)) => g.apply(nl, name, tap.index, attach.guard_parts_before),
                    (None, _) => Err(Error::Guard(crate::guard::GuardError::Spec {
                        tap: tap.name.clone(),
                        msg: "the plan has a guard step but no guard was given".into(),
                    })),
                    (_, Err(e)) => Err(e.clone().into()),
                }
            }
            Step::Shape => {
                shape_started = true;
                match &attach.shape {
                    Some((rate, mtu)) => crate::shape::set(nl, tap.index, *mtu, rate)
                        .map_err(|e| Error::Shape(Box::new(e))),
                    None => Err(Error::Shape(Box::new(crate::shape::ShapeError::Protocol {
                        ifindex: tap.index,
                        msg: "the plan has a limit step but no limit".into(),
                    }))),
                }
            }
        };
        if let Err(error) = result {
            return Err(Box::new(Failed {
                error,
                policy_started,
                guard_started,
                shape_started,
                tap: tap.clone(),
            }));
        }
    }
    Ok(())
}

/// Puts an existing tap back as it was before `attach` and says so in the
/// error. Should the rollback fail too (or the run die during it), the
/// record the first change wrote stays: ifdown undoes it, ifup completes it.
pub fn roll_back(nl: &Netlink, attach: &Attach, mode: &dyn Mode, failed: Failed) -> Error {
    let tap = &failed.tap;
    if failed.policy_started {
        mode.undo_policy(nl, tap, attach);
    }
    failed.unguard(attach);
    failed.unshape(nl, attach);
    let mut result = Ok(());
    for change in &attach.undo {
        result = result
            .and_then(|()| nl.set_link(tap.index, change, &format!("restoring tap {}", tap.name)));
    }
    let rollback = match result {
        Ok(()) => format!("tap {} was left as it was", tap.name),
        Err(e) => format!(
            "rolling back failed too ({e}); kvmnet-ifdown {} undoes what is left",
            tap.name
        ),
    };
    Error::RolledBack {
        cause: Box::new(failed.error),
        rollback,
    }
}

/// One link change on the tap, with the errors a bridge can cause said in
/// its terms.
fn set(nl: &Netlink, tap: &Link, bridge: Option<&Link>, change: &LinkChange) -> Result<(), Error> {
    let what = match (bridge, change.master) {
        (Some(b), Some(_)) => format!("attaching {} to bridge {}", tap.name, b.name),
        _ => format!("configuring {}", tap.name),
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

/// A bridge as the kernel would report it, for unit tests here and in check.
#[cfg(test)]
pub(crate) fn test_bridge(name: &str, vlan_filtering: Option<bool>) -> Link {
    Link {
        index: 3,
        name: name.into(),
        kind: crate::link::LinkKind::Bridge,
        mtu: 1500,
        mac: None,
        master: None,
        up: true,
        carrier: true,
        alias: None,
        vlan_filtering,
    }
}
