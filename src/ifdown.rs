//! `kvmnet-ifdown TAP`: undo exactly what kvmnet-ifup did to TAP, as written in
//! the tap's record, and nothing more.

use std::fmt;

use crate::access;
use crate::error::Error;
use crate::name::TapName;
use crate::netlink::Netlink;
use crate::plan::{self, Detach};
use crate::privilege::Mode;
use crate::Invocation;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Gone already: QEMU closes non-persistent taps itself.
    Missing,
    NotOurs,
    /// Not persistent, and this caller may not change it (QEMU's downscript
    /// after `-runas`): the kernel removes it with its bridge port when QEMU
    /// closes it a moment later, so leaving it is the complete undo.
    LeftToQemu,
    Deleted,
    Restored,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    pub user: u32,
    pub outcome: Outcome,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = match self.outcome {
            Outcome::Missing => "missing (nothing to do)",
            Outcome::NotOurs => "untouched (no kvmnet record: kvmnet-ifup changed nothing here)",
            Outcome::LeftToQemu => "untouched (not persistent and this user may not change it: it disappears with its bridge port when QEMU closes it)",
            Outcome::Deleted => "deleted (kvmnet-ifup had created it)",
            Outcome::Restored => "detached and restored",
        };
        write!(f, "tap={} user={} result={}", self.tap, self.user, result)
    }
}

pub fn ifdown(
    nl: &Netlink,
    inv: &Invocation,
    name: &TapName,
    log: &mut crate::log::Log,
) -> Result<Report, Error> {
    let caller = &inv.caller;
    let report = |outcome| Report {
        tap: name.to_string(),
        user: caller.uid,
        outcome,
    };
    let Some(tap) = nl.link_by_name(name)? else {
        // Gone before its downscript (libvirt deletes the tap first): if it
        // had a guard, its chain is left; collect what is stale.
        if inv.mode != Mode::None {
            crate::mode::sweep_guards(1);
        }
        // and its reservation, if it had one, goes too (harmless for a tap
        // that is not there: its next ifup makes it again). Only for root
        // itself: a reservation exists before its tap does (ifup writes it
        // first), so a sudo user naming another VM's tap that is starting
        // could otherwise take that guest's fixed address away.
        if inv.mode == Mode::Root && !caller.via_sudo && caller.uid == 0 {
            crate::net::release(name);
        }
        return Ok(report(Outcome::Missing));
    };
    let tap = crate::mode::admit(tap, name, None)?;
    let persistent = tap.tun().is_some_and(|t| t.persist);
    if inv.mode == Mode::None {
        return if persistent {
            Err(crate::no_privilege("kvmnet-ifdown"))
        } else {
            Ok(report(Outcome::LeftToQemu))
        };
    }
    let master_name = match tap.master {
        Some(i) => nl.link_by_index(i)?.map(|l| l.name),
        None => None,
    };
    if !caller.is_root() {
        if let Err(refused) =
            access::check_tap_owner(&caller.identity(), &tap, master_name.as_deref())
        {
            return if persistent {
                Err(refused)
            } else {
                Ok(report(Outcome::LeftToQemu))
            };
        }
    }
    let plan = plan::detach(&tap, master_name.as_deref())?;
    if plan != Detach::NotOurs {
        log.starting(&tap.name, caller.uid, &format!("ifindex={}", tap.index));
    }
    // The guard goes once the tap carries nothing any more (deleted, or
    // detached and down); its limit chain outlives a deleted tap.
    let record = crate::record::Record::parse(&tap.name, tap.alias.as_deref())
        .ok()
        .flatten();
    let parts = record.as_ref().map_or(
        crate::guard::Parts::NONE,
        crate::record::Record::guard_parts,
    );
    // An Open vSwitch port goes first, so that the tap carries nothing
    // while the rest is undone. Only such taps make ifdown read the config
    // (for ovsdb-server's socket).
    let ovs = record.as_ref().and_then(|r| r.ovs.clone());
    let unswitch = || -> Result<(), Error> {
        let Some(bridge) = &ovs else { return Ok(()) };
        let config = crate::config::Config::load(
            &caller.config_path(&inv.env),
            !caller.trusts_environment(),
        )?;
        crate::mode::ovs::detach(nl, &config, &tap.name, bridge)
    };
    // A tap that is deleted takes its qdisc with it; one that stays gets
    // back its own.
    let rate_out = record.as_ref().and_then(|r| r.rate_out);
    // A deleted tap took its checks' filters with it.
    let unguard = |deleted: bool| -> Result<(), Error> {
        let parts = crate::guard::Parts {
            checks: parts.checks && !deleted,
            ..parts
        };
        if parts.checks || parts.limit {
            crate::mode::remove_guard(nl, tap.index, parts)?;
        }
        if parts.limit {
            crate::mode::sweep_guards(1);
        }
        Ok(())
    };
    match plan {
        Detach::NotOurs => Ok(report(Outcome::NotOurs)),
        Detach::Delete => {
            // The tap goes even when its port cannot: a port of kvmnet's
            // whose tap is gone is collected by the next OVS attach or
            // detach.
            let switched = unswitch();
            nl.delete_link(tap.index, &format!("deleting tap {}", tap.name))?;
            unguard(true)?;
            if let Err(e) = switched {
                return Err(Error::RolledBack {
                    cause: Box::new(e),
                    rollback: format!("tap {} was deleted; its Open vSwitch port is removed by the next kvmnet-ifup or -ifdown of an OVS tap", tap.name),
                });
            }
            crate::net::release(name);
            Ok(report(Outcome::Deleted))
        }
        Detach::Restore {
            detach,
            restore,
            routes,
            proxy_off,
        } => {
            // Nothing changes before the port is gone: the record stays
            // for an ifdown that can reach ovsdb-server.
            unswitch()?;
            crate::mode::routed::remove(nl, &tap, name, &routes, &proxy_off, !persistent)?;
            nl.set_link(tap.index, &detach, &format!("detaching tap {}", tap.name))?;
            unguard(false)?;
            if let Some(limit) = rate_out {
                crate::mode::clear_shape(nl, &tap, limit)?;
            }
            nl.set_link(tap.index, &restore, &format!("restoring tap {}", tap.name))?;
            crate::net::release(name);
            Ok(report(Outcome::Restored))
        }
    }
}
