//! Carrying out an [`Attach`] plan on one tap, by ifindex, in the plan's
//! order, and putting back what a failed run changed. Shared by
//! `kvmnet-ifup` and the bridge helper; the mode's policy (port VLANs and
//! flags, or proxy ARP/NDP and host routes) is a [`Policy`].

use std::cell::RefCell;

use crate::error::Error;
use crate::netlink::{Link, LinkChange, Netlink};
use crate::plan::{Attach, Step};
use crate::settings::Settings;
use crate::sysctl::{self, Family};

/// What a mode sets between the link changes of an attach.
pub trait Policy {
    /// Runs at the plan's [`Step::Policy`]; `tap` carries the name the tap
    /// has at that point.
    fn set(&self, nl: &Netlink, tap: &Link, attach: &Attach) -> Result<(), Error>;
    /// Puts back what `set` did on a tap that stays (not one that is
    /// deleted: the kernel removes its routes and settings with it).
    fn undo(&self, nl: &Netlink, tap: &Link, attach: &Attach);
}

/// A bridge port's policy: VLANs, isolation, learning, flooding.
pub struct PortPolicy<'a> {
    pub settings: &'a Settings,
    pub bridge: &'a Link,
}

impl Policy for PortPolicy<'_> {
    fn set(&self, nl: &Netlink, tap: &Link, _attach: &Attach) -> Result<(), Error> {
        let s = self.settings;
        if s.needs_vlan_filtering() {
            nl.set_port_vlans(tap.index, &tap.name, s.vlan, &s.trunk)?;
        }
        nl.set_port_flags(tap.index, &tap.name, s.isolated, s.learning, s.flooding)
            .map_err(|e| Error::PortSettings {
                tap: tap.name.clone(),
                bridge: self.bridge.name.clone(),
                cause: e.to_string(),
            })
    }

    fn undo(&self, _nl: &Netlink, _tap: &Link, _attach: &Attach) {
        // leaving the bridge (the link undo) drops the port's VLANs and flags
    }
}

/// Refuses a bridge that cannot carry the VLANs `settings` ask for.
pub fn check_vlan_support(bridge: &Link, settings: &Settings) -> Result<(), Error> {
    if !settings.needs_vlan_filtering() {
        return Ok(());
    }
    let rule = || vlan_rule(settings);
    match bridge.vlan_filtering {
        Some(true) => Ok(()),
        None => Err(Error::NoVlanSupport { rule: rule() }),
        Some(false) => Err(Error::VlanFilteringOff {
            bridge: bridge.name.clone(),
            rule: rule(),
        }),
    }
}

/// Which part of the config asks for VLANs, for messages.
pub fn vlan_rule(settings: &Settings) -> String {
    settings
        .rule
        .clone()
        .unwrap_or_else(|| "the top-level vlan/trunk".into())
}

/// Routed mode's policy: proxy ARP/NDP on the tap, host routes via it, and
/// forwarding on.
#[derive(Default)]
pub struct RoutePolicy {
    /// Host-wide changes made along the way, for the log line.
    pub notes: RefCell<Vec<String>>,
}

impl Policy for RoutePolicy {
    fn set(&self, nl: &Netlink, tap: &Link, attach: &Attach) -> Result<(), Error> {
        let sys = |path: &str, e: std::io::Error| Error::Sysctl {
            path: path.to_owned(),
            cause: crate::error::plain(&e),
        };
        for &family in &attach.proxy {
            let path = sysctl::proxy_path(family, &tap.name);
            sysctl::set(&path, true).map_err(|e| sys(&path, e))?;
        }
        for addr in &attach.routes {
            // A run that was interrupted may have added it already: only a
            // route via this very tap is replaced.
            if attach.resume {
                nl.del_host_route(*addr, tap.index, &tap.name)?;
            }
            if !nl.add_host_route(*addr, tap.index, &tap.name)? {
                return Err(Error::RouteExists {
                    addr: *addr,
                    tap: tap.name.clone(),
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

    fn undo(&self, nl: &Netlink, tap: &Link, attach: &Attach) {
        for addr in &attach.routes {
            let _ = nl.del_host_route(*addr, tap.index, &tap.name);
        }
        for &family in &attach.proxy {
            let _ = sysctl::set(&sysctl::proxy_path(family, &tap.name), false);
        }
    }
}

/// How far [`run`] got before it failed.
pub struct Failed {
    pub error: Error,
    /// The policy step ran (at least in part).
    pub policy_started: bool,
    /// The failed step was the one that renames the tap.
    pub renaming: bool,
    /// The tap under its name at the failure.
    pub tap: Link,
}

/// Carries out `attach` on `tap` (by its ifindex), step by step.
pub fn run(
    nl: &Netlink,
    tap: &Link,
    bridge: Option<&Link>,
    attach: &Attach,
    policy: &dyn Policy,
) -> Result<(), Box<Failed>> {
    let mut now = tap.clone();
    let mut policy_started = false;
    for step in &attach.steps {
        let renaming = matches!(step, Step::Link(c) if c.name.is_some());
        let result = match step {
            Step::Link(change) => {
                let r = set(nl, &now, bridge, change);
                if let (Ok(()), Some(name)) = (&r, &change.name) {
                    now.name = name.clone();
                }
                r
            }
            Step::Policy => {
                policy_started = true;
                policy.set(nl, &now, attach)
            }
        };
        if let Err(error) = result {
            return Err(Box::new(Failed {
                error,
                policy_started,
                renaming,
                tap: now,
            }));
        }
    }
    Ok(())
}

/// Puts an existing tap back as it was before `attach` and says so in the
/// error. Should the rollback fail too (or the run die during it), the
/// record the first change wrote stays: ifdown undoes it, ifup completes it.
pub fn roll_back(nl: &Netlink, attach: &Attach, policy: &dyn Policy, failed: Failed) -> Error {
    let tap = &failed.tap;
    if failed.policy_started {
        policy.undo(nl, tap, attach);
    }
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
