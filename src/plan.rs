//! Pure decisions: from the caller, the config and the facts read from the
//! kernel to the exact netlink changes, their undo and the record. No I/O here,
//! so every rule is unit-tested without privileges.

use std::net::IpAddr;

use crate::name::BridgeName;
use crate::netlink::{Link, LinkChange};
use crate::record::{Record, RecordError};
use crate::settings::Settings;

/// The private bridge used when nothing else is configured or found.
pub const FALLBACK_BRIDGE: &str = "br0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeReason {
    /// KVMNET_BRIDGE, after the ACL allowed it.
    Requested,
    Config,
    DefaultRoute,
    Fallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeChoice {
    pub name: BridgeName,
    pub create: bool,
    pub reason: BridgeReason,
}

/// The configured bridge, if the settings name one. Checked before
/// [`fallback_bridge`] so that the route dump happens only without one.
pub fn configured_bridge(settings: &Settings) -> Option<BridgeChoice> {
    settings.bridge.clone().map(|name| BridgeChoice {
        name,
        create: settings.create_bridge,
        reason: BridgeReason::Config,
    })
}

/// Debian's qemu-ifup behaviour: the first default-route interface that is a
/// bridge; otherwise the private bridge `br0`, created on demand (unless a
/// config file exists and says `create_bridge = false`).
pub fn fallback_bridge(
    config_file: bool,
    settings: &Settings,
    default_route_bridge: Option<BridgeName>,
) -> BridgeChoice {
    match default_route_bridge {
        Some(name) => BridgeChoice {
            name,
            create: false,
            reason: BridgeReason::DefaultRoute,
        },
        None => BridgeChoice {
            name: BridgeName::new(FALLBACK_BRIDGE).expect("valid constant"),
            create: !config_file || settings.create_bridge,
            reason: BridgeReason::Fallback,
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("tap {tap} is already a port of another bridge (interface #{master}); kvmnet does not move it: detach it (`ip link set {tap} nomaster`) or configure that bridge")]
    AttachedElsewhere { tap: String, master: u32 },
    #[error("cannot use tap {tap}: {source}")]
    Record { tap: String, source: RecordError },
}

/// What ifup will do to one tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// One RTM_SETLINK; empty when the tap is already as wanted.
    pub change: LinkChange,
    /// Reverts exactly `change` (used when it fails half-way on an existing tap).
    pub undo: LinkChange,
    /// The record after this run, as written into the alias by `change`.
    pub record: Record,
    /// Routes to add after `change` (routed mode).
    pub new_routes: Vec<IpAddr>,
}

/// Where a tap should end up.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// `None` in routed mode.
    pub bridge: Option<&'a Link>,
    /// The MTU to set, if any.
    pub mtu: Option<u32>,
    /// Give the tap a `fe:` host-side address.
    pub fe_mac: bool,
    /// Host routes this run will add (routed mode), recorded up front so that
    /// an interrupted run is still undone completely.
    pub routes: &'a [IpAddr],
    /// Proxy ARP/NDP families this run switches on (they were off).
    pub proxy: Vec<crate::sysctl::Family>,
}

impl<'a> Target<'a> {
    /// A bridge port as `settings` want it: MTU policy and host MAC policy.
    pub fn on_bridge(bridge: &'a Link, settings: &crate::settings::Settings) -> Target<'a> {
        use crate::settings::{HostMac, MtuPolicy};
        Target {
            bridge: Some(bridge),
            mtu: Some(match settings.mtu {
                MtuPolicy::Bridge => bridge.mtu,
                MtuPolicy::Fixed(n) => n,
            }),
            fe_mac: settings.host_mac == HostMac::Fe,
            routes: &[],
            proxy: Vec::new(),
        }
    }
}

pub fn attach(tap: &Link, target: &Target<'_>, created: bool) -> Result<Attach, PlanError> {
    let rec_err = |source| PlanError::Record {
        tap: tap.name.clone(),
        source,
    };
    match (tap.master, target.bridge) {
        (Some(m), Some(b)) if m != b.index => {
            return Err(PlanError::AttachedElsewhere {
                tap: tap.name.clone(),
                master: m,
            })
        }
        (Some(m), None) => {
            return Err(PlanError::AttachedElsewhere {
                tap: tap.name.clone(),
                master: m,
            })
        }
        _ => {}
    }
    let existing = Record::parse(&tap.name, tap.alias.as_deref()).map_err(rec_err)?;
    let mut record = existing.clone().unwrap_or_else(|| Record {
        prior_alias: tap.alias.clone(),
        ..Record::default()
    });
    // A tap this run created is deleted as a whole on undo, so it needs no
    // "previous value" fields: only the fact that kvmnet created it.
    record.created |= created;
    let keep_old = !record.created;

    let mut change = LinkChange::default();
    let mut undo = LinkChange::default();
    if let Some(mtu) = target.mtu.filter(|m| *m != tap.mtu) {
        change.mtu = Some(mtu);
        undo.mtu = Some(tap.mtu);
        if keep_old && record.old_mtu.is_none() {
            record.old_mtu = Some(tap.mtu);
        }
    }
    if let Some(host) = tap
        .mac
        .and_then(|m| m.host_side())
        .filter(|_| target.fe_mac)
    {
        change.mac = Some(host);
        undo.mac = tap.mac;
        if keep_old && record.old_mac.is_none() {
            record.old_mac = tap.mac;
        }
    }
    if !tap.up {
        change.up = Some(true);
        undo.up = Some(false);
        record.brought_up |= keep_old;
    }
    if let (None, Some(bridge)) = (tap.master, target.bridge) {
        change.master = Some(bridge.index);
        undo.master = Some(0);
        record.attached = Some(bridge.name.clone());
    }
    let new_routes: Vec<IpAddr> = target
        .routes
        .iter()
        .filter(|a| !record.routes.contains(a))
        .copied()
        .collect();
    record.routes.extend(&new_routes);
    record.proxy_arp |= target.proxy.contains(&crate::sysctl::Family::V4);
    record.proxy_ndp |= target.proxy.contains(&crate::sysctl::Family::V6);
    if !change.is_empty() || !new_routes.is_empty() {
        let alias = record.encode(&tap.name).map_err(rec_err)?;
        if tap.alias.as_deref() != Some(alias.as_str()) {
            change.alias = Some(alias);
            undo.alias = Some(tap.alias.clone().unwrap_or_default());
        }
    }
    Ok(Attach {
        change,
        undo,
        record,
        new_routes,
    })
}

/// What ifdown will do to one tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detach {
    /// No kvmnet record: ifup changed nothing here, so ifdown changes nothing.
    NotOurs,
    /// ifup created it: delete it.
    Delete,
    /// ifup configured an existing tap: detach and set down first, then restore
    /// MTU, MAC and alias (after leaving the bridge, so that restoring a smaller
    /// MTU cannot pull an auto-MTU bridge down with it).
    Restore {
        detach: LinkChange,
        restore: LinkChange,
        /// Host routes ifup added (routed mode), to delete first.
        routes: Vec<IpAddr>,
        /// Proxy ARP/NDP that ifup switched on, to switch off.
        proxy_off: Vec<crate::sysctl::Family>,
    },
}

/// `master_name`: the name of the tap's current master, if it has one.
pub fn detach(tap: &Link, master_name: Option<&str>) -> Result<Detach, PlanError> {
    let record =
        Record::parse(&tap.name, tap.alias.as_deref()).map_err(|source| PlanError::Record {
            tap: tap.name.clone(),
            source,
        })?;
    let Some(record) = record else {
        return Ok(Detach::NotOurs);
    };
    if record.created {
        return Ok(Detach::Delete);
    }
    let mut detach = LinkChange::default();
    // Only leave the bridge kvmnet attached it to: if an admin moved the tap
    // since, that is theirs now.
    if record.attached.is_some() && record.attached.as_deref() == master_name {
        detach.master = Some(0);
    }
    if record.brought_up && tap.up {
        detach.up = Some(false);
    }
    let mut restore = LinkChange {
        alias: Some(record.restored_alias().to_owned()),
        ..LinkChange::default()
    };
    if let Some(mtu) = record.old_mtu.filter(|m| *m != tap.mtu) {
        restore.mtu = Some(mtu);
    }
    if let Some(mac) = record.old_mac.filter(|m| Some(*m) != tap.mac) {
        restore.mac = Some(mac);
    }
    let mut proxy_off = Vec::new();
    if record.proxy_arp {
        proxy_off.push(crate::sysctl::Family::V4);
    }
    if record.proxy_ndp {
        proxy_off.push(crate::sysctl::Family::V6);
    }
    Ok(Detach::Restore {
        detach,
        restore,
        routes: record.routes.clone(),
        proxy_off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{LinkKind, TunInfo};

    fn tap(name: &str) -> Link {
        Link {
            index: 7,
            name: name.into(),
            kind: LinkKind::Tun(TunInfo {
                tap_mode: true,
                ..Default::default()
            }),
            mtu: 1500,
            mac: Some("52:54:00:01:02:03".parse().unwrap()),
            master: None,
            up: false,
            carrier: false,
            alias: None,
            vlan_filtering: None,
        }
    }

    fn bridge(mtu: u32) -> Link {
        Link {
            index: 3,
            name: "br0".into(),
            kind: LinkKind::Bridge,
            mtu,
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
            master: None,
            up: true,
            carrier: true,
            alias: None,
            vlan_filtering: Some(false),
        }
    }

    /// The link as the kernel would report it after `c` was applied.
    fn applied(mut l: Link, c: &LinkChange) -> Link {
        if let Some(m) = c.mtu {
            l.mtu = m;
        }
        if let Some(m) = c.mac {
            l.mac = Some(m);
        }
        if let Some(a) = &c.alias {
            l.alias = (!a.is_empty()).then(|| a.clone());
        }
        if let Some(u) = c.up {
            l.up = u;
        }
        if let Some(m) = c.master {
            l.master = (m != 0).then_some(m);
        }
        l
    }

    #[test]
    fn bridge_choice() {
        let none = Settings::default();
        let named = Settings {
            bridge: Some(BridgeName::new("br-lab").unwrap()),
            ..Settings::default()
        };
        assert_eq!(configured_bridge(&none), None);
        assert_eq!(configured_bridge(&named).unwrap().name.as_str(), "br-lab");
        assert!(!configured_bridge(&named).unwrap().create);
        let br = BridgeName::new("br-uplink").unwrap();
        let c = fallback_bridge(false, &none, Some(br.clone()));
        assert_eq!(
            (c.name, c.create, c.reason),
            (br, false, BridgeReason::DefaultRoute)
        );
        let c = fallback_bridge(false, &none, None);
        assert_eq!((c.name.as_str(), c.create), ("br0", true));
        // a config file that leaves out the bridge keeps create_bridge = false
        assert!(!fallback_bridge(true, &none, None).create);
    }

    #[test]
    fn routed_target_records_routes_and_sets_no_master() {
        let t = tap("rt0");
        let addrs: Vec<IpAddr> = vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ];
        let target = Target {
            bridge: None,
            mtu: None,
            fe_mac: true,
            routes: &addrs,
            proxy: vec![crate::sysctl::Family::V4, crate::sysctl::Family::V6],
        };
        let a = attach(&t, &target, false).unwrap();
        assert_eq!(a.change.master, None);
        assert_eq!(a.new_routes, addrs);
        assert!(a
            .change
            .alias
            .as_deref()
            .unwrap()
            .contains("route=192.0.2.10,2001:db8::10 parp pndp"));
        // re-run: routes already recorded are not added again
        let again = attach(&applied(t, &a.change), &target, false).unwrap();
        assert!(
            again.new_routes.is_empty() && again.change.is_empty(),
            "{again:?}"
        );
    }

    #[test]
    fn qemu_tap_gets_mtu_mac_up_master_and_record_in_one_change() {
        let t = tap("vm0");
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(9000), &Settings::default()),
            false,
        )
        .unwrap();
        assert_eq!(a.change.mtu, Some(9000));
        assert_eq!(a.change.mac.unwrap().to_string(), "fe:54:00:01:02:03");
        assert_eq!(a.change.up, Some(true));
        assert_eq!(a.change.master, Some(3));
        assert_eq!(
            a.change.alias.as_deref(),
            Some("kvmnet:v1 attached=br0 up mtu=1500 mac=52:54:00:01:02:03")
        );
        assert_eq!(applied(applied(t.clone(), &a.change), &a.undo), t);
    }

    #[test]
    fn second_run_changes_nothing() {
        let t = tap("vm0");
        let br = bridge(9000);
        let a = attach(&t, &Target::on_bridge(&br, &Settings::default()), false).unwrap();
        let b = attach(
            &applied(t, &a.change),
            &Target::on_bridge(&br, &Settings::default()),
            false,
        )
        .unwrap();
        assert!(b.change.is_empty(), "{b:?}");
    }

    #[test]
    fn created_tap_records_only_creation() {
        let mut t = tap("vm0");
        t.mac = Some("fe:11:22:33:44:55".parse().unwrap());
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(1500), &Settings::default()),
            true,
        )
        .unwrap();
        assert_eq!(a.change.mac, None);
        assert_eq!(a.change.mtu, None);
        assert_eq!(
            a.change.alias.as_deref(),
            Some("kvmnet:v1 created attached=br0")
        );
        let done = applied(t, &a.change);
        assert_eq!(detach(&done, Some("br0")).unwrap(), Detach::Delete);
    }

    #[test]
    fn tap_already_configured_by_someone_else_is_left_alone_both_ways() {
        let mut t = tap("vm0");
        t.mac = Some("fe:11:22:33:44:55".parse().unwrap());
        t.up = true;
        t.master = Some(3);
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(1500), &Settings::default()),
            false,
        )
        .unwrap();
        assert!(a.change.is_empty(), "{a:?}");
        assert_eq!(detach(&t, Some("br0")).unwrap(), Detach::NotOurs);
    }

    #[test]
    fn tap_on_another_bridge_is_refused() {
        let mut t = tap("vm0");
        t.master = Some(99);
        assert!(matches!(
            attach(
                &t,
                &Target::on_bridge(&bridge(1500), &Settings::default()),
                false
            ),
            Err(PlanError::AttachedElsewhere { master: 99, .. })
        ));
    }

    #[test]
    fn ifdown_restores_exactly_what_ifup_changed() {
        let mut t = tap("vm0");
        t.alias = Some("customer 42".into());
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(9000), &Settings::default()),
            false,
        )
        .unwrap();
        let up = applied(t.clone(), &a.change);
        let Detach::Restore {
            detach: d, restore, ..
        } = detach(&up, Some("br0")).unwrap()
        else {
            panic!("expected restore")
        };
        assert_eq!(applied(applied(up, &d), &restore), t);
    }

    #[test]
    fn ifdown_keeps_a_tap_an_admin_moved_to_another_bridge() {
        let t = tap("vm0");
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(1500), &Settings::default()),
            false,
        )
        .unwrap();
        let moved = applied(t, &a.change);
        let Detach::Restore { detach: d, .. } = detach(&moved, Some("br-other")).unwrap() else {
            panic!()
        };
        assert_eq!(d.master, None);
    }

    #[test]
    fn partial_prior_state_records_only_the_difference() {
        let mut t = tap("vm0");
        t.master = Some(3);
        t.mac = Some("fe:00:00:00:00:01".parse().unwrap());
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(1500), &Settings::default()),
            false,
        )
        .unwrap();
        assert_eq!(a.change.up, Some(true));
        assert_eq!(a.change.master, None);
        assert_eq!(a.record.attached, None);
        let Detach::Restore {
            detach: d, restore, ..
        } = detach(&applied(t.clone(), &a.change), Some("br0")).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.master, None, "it was attached before ifup");
        assert_eq!(d.up, Some(false));
        assert_eq!((restore.mtu, restore.mac), (None, None));
    }

    #[test]
    fn damaged_record_is_an_error() {
        let mut t = tap("vm0");
        t.alias = Some("kvmnet:v1 bogus".into());
        assert!(matches!(
            attach(
                &t,
                &Target::on_bridge(&bridge(1500), &Settings::default()),
                false
            ),
            Err(PlanError::Record { .. })
        ));
        assert!(detach(&t, None).is_err());
    }

    #[test]
    fn mac_without_address_is_left_alone() {
        let mut t = tap("vm0");
        t.mac = None;
        let a = attach(
            &t,
            &Target::on_bridge(&bridge(1500), &Settings::default()),
            false,
        )
        .unwrap();
        assert_eq!(a.change.mac, None);
    }
}
