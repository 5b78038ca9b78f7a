//! The routed mode: no bridge; host routes to the guest's addresses via the
//! tap, proxy ARP/NDP on it, and forwarding on (the how-to's "Routing with
//! iptables"). Root only: a host route steers traffic for the whole host.

use std::cell::RefCell;
use std::net::IpAddr;

use crate::access;
use crate::error::Error;
use crate::link::Link;
use crate::name::TapName;
use crate::netlink::Netlink;
use crate::plan::{Attach, Wanted};
use crate::settings::{HostMac, MtuPolicy, Settings};
use crate::sysctl::{self, Family};

use super::{ForTap, Mode};

pub struct Routed {
    settings: Settings,
    /// The tap's own name, for its sysctl paths.
    tap: TapName,
    /// Proxy ARP/NDP families to switch on (they are off now).
    proxy: Vec<Family>,
    notes: RefCell<Vec<String>>,
}

impl Routed {
    /// Refused for a caller other than root; an existing tap's proxy
    /// switches may be on already.
    pub fn for_ifup(settings: Settings, tap: &ForTap<'_>) -> Result<Routed, Error> {
        if let Some(who) = tap.who {
            return Err(access::routed_is_root_only(
                who,
                tap.name.as_str(),
                settings.rule.as_deref(),
            ));
        }
        let existing = tap.existing;
        let mut proxy = Vec::new();
        for family in [Family::V4, Family::V6] {
            if settings.addresses.iter().any(|a| Family::of(a) == family) {
                let already = existing.is_some()
                    && sysctl::is_on(&sysctl::proxy_path(family, tap.name)).unwrap_or(false);
                if !already {
                    proxy.push(family);
                }
            }
        }
        Ok(Routed {
            settings,
            tap: tap.name.clone(),
            proxy,
            notes: RefCell::new(Vec::new()),
        })
    }
}

impl Mode for Routed {
    fn wanted(&self) -> Wanted<'_> {
        wanted(&self.settings, self.proxy.clone())
    }

    fn set_policy(&self, nl: &Netlink, tap: &Link, attach: &Attach) -> Result<(), Error> {
        for &family in &attach.proxy {
            let path = sysctl::proxy_path(family, &self.tap);
            sysctl::set(&path, true).map_err(|e| sysctl_error(&path, e))?;
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
                if !sysctl::is_on(path).map_err(|e| sysctl_error(path, e))? {
                    sysctl::set(path, true).map_err(|e| sysctl_error(path, e))?;
                    self.notes
                        .borrow_mut()
                        .push(format!("switched {} forwarding on ({path})", family.name()));
                }
            }
        }
        Ok(())
    }

    fn undo_policy(&self, nl: &Netlink, tap: &Link, attach: &Attach) {
        // Best effort: the rollback's error names the cause, and the record
        // (still there) lets ifdown finish what this leaves.
        let _ = remove(nl, tap, &self.tap, &attach.routes, &attach.proxy, true);
    }

    fn describe(&self) -> String {
        let list: Vec<String> = self
            .settings
            .addresses
            .iter()
            .map(IpAddr::to_string)
            .collect();
        format!("route={}", list.join(","))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.borrow().clone()
    }
}

/// What a routed tap should become, switching the `proxy` families on.
pub fn wanted(settings: &Settings, proxy: Vec<Family>) -> Wanted<'_> {
    Wanted {
        bridge: None,
        ovs: None,
        datapath: None,
        mtu: match settings.mtu {
            MtuPolicy::Bridge => None,
            MtuPolicy::Fixed(n) => Some(n),
        },
        fe_mac: settings.host_mac == HostMac::Fe,
        port_policy: false,
        routes: &settings.addresses,
        proxy,
        guard: settings.guard_table(),
        shape: settings.rate_out,
        police_only: !settings.guard,
        rate_in: settings.rate_in,
    }
}

/// The one undo of routed mode's policy, for a failed run's rollback and for
/// kvmnet-ifdown: the host routes to `routes` via this tap, then the proxy
/// switches of `proxy`. A missing /proc (QEMU's `-chroot`) is no error when
/// `proc_optional`: a tap that is not persistent takes its switches with it.
pub fn remove(
    nl: &Netlink,
    tap: &Link,
    name: &TapName,
    routes: &[IpAddr],
    proxy: &[Family],
    proc_optional: bool,
) -> Result<(), Error> {
    for addr in routes {
        nl.del_host_route(*addr, tap.index, &tap.name)?;
    }
    for &family in proxy {
        let path = sysctl::proxy_path(family, name);
        match sysctl::set(&path, false) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && proc_optional => {}
            r => r.map_err(|e| sysctl_error(&path, e))?,
        }
    }
    Ok(())
}

fn sysctl_error(path: &str, e: std::io::Error) -> Error {
    Error::Sysctl {
        path: path.to_owned(),
        cause: crate::os_error::describe(&e),
    }
}
