//! Pure decisions: from the caller, the config and the facts read from the
//! kernel to the exact netlink changes, their undo and the record. No I/O here,
//! so every rule is unit-tested without privileges.

use std::net::IpAddr;

use crate::link::{Link, LinkChange};
use crate::name::BridgeName;
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
    #[error("tap {tap} is recorded as a port of Open vSwitch bridge {was}, not {bridge}; kvmnet does not move it: run kvmnet-ifdown {tap} first")]
    OvsElsewhere {
        tap: String,
        was: String,
        bridge: String,
    },
    #[error("tap {tap} is recorded as a port of Open vSwitch bridge {was}, and its rule no longer says mode = \"ovs\"; kvmnet does not move it: run kvmnet-ifdown {tap} first")]
    OvsLeft { tap: String, was: String },
}

/// One step of an attach, in the order the steps must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// One RTM_SETLINK on the tap's ifindex.
    Link(LinkChange),
    /// The mode's policy: the port's VLANs and flags, or proxy ARP/NDP and
    /// host routes ([`Attach::routes`], [`Attach::proxy`]).
    Policy,
    /// The guest guard, on the tap while it is down (and, bridged, before it
    /// is up on the bridge): nothing passes unchecked.
    Guard,
    /// The host->guest limit ([`Attach::shape`]), in place before the tap
    /// is up.
    Shape,
}

/// What ifup will do to one tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// Empty when the tap is already as wanted.
    ///
    /// A port goes live (up, or onto the bridge) only in the last link
    /// change, after [`Step::Policy`]: a tap that joins a bridge with port
    /// policy joins it down, and a down port forwards nothing. When policy
    /// takes several requests on a tap that outlives the run, the first
    /// change writes the record with `pending` and the last removes it.
    pub steps: Vec<Step>,
    /// Reverts every link change on an existing tap, in order: leaving the
    /// bridge comes first, so that a tap that was up is never up on the
    /// bridge without its policy.
    pub undo: Vec<LinkChange>,
    /// The record after this run.
    pub record: Record,
    /// Host routes the policy step adds (routed mode).
    pub routes: Vec<IpAddr>,
    /// The policy step replaces routes to these addresses via the tap that
    /// an interrupted run may have added already.
    pub resume: bool,
    /// Proxy ARP/NDP families the policy step switches on.
    pub proxy: Vec<crate::sysctl::Family>,
    /// The tap had a guard before this run (a rollback leaves it).
    pub guard_before: bool,
    /// Which parts of it, as its record says.
    pub guard_parts_before: crate::guard::Parts,
    /// The limit of [`Step::Shape`] (its burst resolved for the tap's MTU)
    /// and that MTU.
    pub shape: Option<(crate::rate::Rate, u32)>,
    /// The limit the record had before this run (a rollback leaves it).
    pub shape_before: Option<(u64, u32)>,
}

impl Attach {
    pub fn changes_anything(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// Where a tap should end up.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// `None` in routed and OVS mode.
    pub bridge: Option<&'a Link>,
    /// The Open vSwitch bridge the tap becomes a port of (mode = "ovs"): its
    /// policy step is that OVSDB transaction.
    pub ovs: Option<&'a str>,
    /// The Open vSwitch kernel datapath (`ovs-system`) the tap is a port of
    /// already: its master then, not another bridge.
    pub datapath: Option<u32>,
    /// The MTU to set, if any.
    pub mtu: Option<u32>,
    /// Give the tap a `fe:` host-side address.
    pub fe_mac: bool,
    /// The port has settings of its own (VLANs, isolation, learning, flooding).
    pub port_policy: bool,
    /// Host routes this run will add (routed mode), recorded up front so that
    /// an interrupted run is still undone completely.
    pub routes: &'a [IpAddr],
    /// Proxy ARP/NDP families this run switches on (they were off).
    pub proxy: Vec<crate::sysctl::Family>,
    /// The tap has a guest guard after this run (the driver puts it in place
    /// before the first change; the record says so for ifdown).
    pub guard: bool,
    /// The host->guest limit the tap has after this run.
    pub shape: Option<crate::rate::Rate>,
    /// What the guard holds, for the record: only `rate_in` (no
    /// checks), and that limit.
    pub police_only: bool,
    pub rate_in: Option<crate::rate::Rate>,
}

impl<'a> Wanted<'a> {
    /// A bridge port as `settings` want it: MTU policy and host MAC policy.
    pub fn on_bridge(bridge: &'a Link, settings: &crate::settings::Settings) -> Wanted<'a> {
        use crate::settings::{HostMac, MtuPolicy};
        Wanted {
            bridge: Some(bridge),
            ovs: None,
            datapath: None,
            mtu: Some(match settings.mtu {
                MtuPolicy::Bridge => bridge.mtu,
                MtuPolicy::Fixed(n) => n,
            }),
            fe_mac: settings.host_mac == HostMac::Fe,
            port_policy: settings.has_port_settings(),
            routes: &[],
            proxy: Vec::new(),
            guard: settings.guard_table(),
            shape: settings.rate_out,
            police_only: !settings.guard,
            rate_in: settings.rate_in,
        }
    }
}

/// How the tap came to be in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It existed before (QEMU's, or an earlier run's).
    Existing,
    /// This run created it, and it dies with the run until it is made
    /// persistent: it needs no `pending`, and no undo but its deletion.
    Created,
}

pub fn attach(tap: &Link, wanted: &Wanted<'_>, origin: Origin) -> Result<Attach, PlanError> {
    if let Some(master) = tap
        .master
        .filter(|m| wanted.bridge.is_none_or(|b| b.index != *m) && wanted.datapath != Some(*m))
    {
        return Err(PlanError::AttachedElsewhere {
            tap: tap.name.clone(),
            master,
        });
    }
    let created = origin == Origin::Created;
    let mut d = draft(tap, wanted, created)?;
    let policy = match (wanted.bridge, wanted.ovs) {
        (Some(_), _) => wanted.port_policy && (d.joining.is_some() || d.resume),
        // The port is added (again, when an interrupted run may have left
        // it half-way) while the tap is down.
        (None, Some(_)) => d.joining_ovs || d.resume,
        (None, None) => !d.routes.is_empty() || !wanted.proxy.is_empty(),
    };
    // A guard or limit already in place needs no step (the driver re-applies
    // it); a new one, or one an interrupted run may not have finished, does.
    let mut extra = Vec::new();
    if wanted.guard && (!d.guard_before || d.resume) {
        extra.push(Step::Guard);
    }
    if d.record.rate_out.is_some() && (d.record.rate_out != d.shape_before || d.resume) {
        extra.push(Step::Shape);
    }
    let switched = wanted.bridge.is_some() || wanted.ovs.is_some();
    let mut steps = order(tap, &d, switched, policy, &extra);
    // A guard or limit that is already there is put back by the driver
    // without a plan (re-applying is atomic); on its own it changes nothing
    // here.
    let changes = |s: &Step| match s {
        Step::Link(c) => !c.is_empty(),
        Step::Policy => true,
        Step::Guard | Step::Shape => false,
    };
    // A tap that is already as wanted gets no record either: ifdown then
    // leaves it as it is; unless its guard comes or goes, which the record
    // must say (ifdown removes the guard by it).
    if !d.resume
        && !d.guard_changed
        && d.record.rate_out == d.shape_before
        && !steps.iter().any(changes)
    {
        steps.clear();
    } else {
        write_records(
            tap,
            &mut steps,
            &d.record,
            (policy || !extra.is_empty()) && !created,
        )?;
        let any =
            |f: fn(&LinkChange) -> bool| steps.iter().any(|s| matches!(s, Step::Link(c) if f(c)));
        if any(|c| c.alias.is_some()) {
            d.undo.alias = Some(tap.alias.clone().unwrap_or_default());
        }
        if any(|c| c.up.is_some()) {
            d.undo.up = Some(tap.up);
        }
        steps.retain(|s| changes(s) || matches!(s, Step::Guard | Step::Shape));
    }
    Ok(Attach {
        steps,
        undo: vec![d.undo_detach, d.undo],
        record: d.record,
        routes: d.routes,
        resume: d.resume,
        proxy: wanted.proxy.clone(),
        guard_before: d.guard_before,
        guard_parts_before: d.guard_parts_before,
        shape: wanted.shape.map(|r| (resolved(r, d.mtu), d.mtu)),
        shape_before: d.shape_before,
    })
}

/// What an attach changes and records, before it is put in order.
struct Draft {
    record: Record,
    /// MTU and MAC: the first change.
    first: LinkChange,
    undo_detach: LinkChange,
    undo: LinkChange,
    /// The bridge's ifindex, when the tap joins it in this run.
    joining: Option<u32>,
    /// The tap joins its Open vSwitch bridge in this run.
    joining_ovs: bool,
    /// Routes the policy step adds.
    routes: Vec<IpAddr>,
    /// An interrupted run's record (`pending`) is being completed.
    resume: bool,
    /// The guard comes or goes in this run.
    guard_changed: bool,
    guard_before: bool,
    guard_parts_before: crate::guard::Parts,
    shape_before: Option<(u64, u32)>,
    /// The tap's MTU after this run.
    mtu: u32,
}

/// `rate` with its burst made explicit for a link of this MTU: what the
/// record keeps, so that ifdown recognises the tbf whatever the MTU is then.
fn resolved(rate: crate::rate::Rate, mtu: u32) -> crate::rate::Rate {
    crate::rate::Rate::new(rate.bytes_per_sec(), Some(rate.burst(mtu).into())).unwrap_or(rate)
}

fn draft(tap: &Link, wanted: &Wanted<'_>, created: bool) -> Result<Draft, PlanError> {
    let existing =
        Record::parse(&tap.name, tap.alias.as_deref()).map_err(|source| PlanError::Record {
            tap: tap.name.clone(),
            source,
        })?;
    let resume = existing.as_ref().is_some_and(|r| r.pending);
    let guard_before = existing.as_ref().is_some_and(|r| r.guard);
    let guard_parts_before = existing
        .as_ref()
        .map_or(crate::guard::Parts::NONE, Record::guard_parts);
    let shape_before = existing.as_ref().and_then(|r| r.rate_out);
    let mtu = wanted.mtu.unwrap_or(tap.mtu);
    let limit_in = wanted
        .rate_in
        .filter(|_| wanted.guard)
        .map(|r| (r.bytes_per_sec(), crate::guard::ingress_burst(&r)));
    let police_only = wanted.guard && wanted.police_only;
    let guard_changed = existing.as_ref().map_or((false, false, None), |r| {
        (r.guard, r.police_only, r.rate_in)
    }) != (wanted.guard, police_only, limit_in);
    let mut record = existing.unwrap_or_else(|| Record {
        prior_alias: tap.alias.clone(),
        ..Record::default()
    });
    record.pending = false;
    // A tap this run created is deleted as a whole on undo, so it needs no
    // "previous value" fields: only the fact that kvmnet created it.
    record.created |= created;
    record.guard = wanted.guard;
    record.police_only = police_only;
    record.rate_in = limit_in;
    record.rate_out = wanted.shape.map(|r| {
        let r = resolved(r, mtu);
        (r.bytes_per_sec(), r.burst(mtu))
    });
    let keep_old = !record.created;

    let mut first = LinkChange::default();
    let mut undo = LinkChange::default();
    if let Some(mtu) = wanted.mtu.filter(|m| *m != tap.mtu) {
        first.mtu = Some(mtu);
        undo.mtu = Some(tap.mtu);
        if keep_old && record.old_mtu.is_none() {
            record.old_mtu = Some(tap.mtu);
        }
    }
    if let Some(host) = tap
        .mac
        .and_then(|m| m.host_side())
        .filter(|_| wanted.fe_mac)
    {
        first.mac = Some(host);
        undo.mac = tap.mac;
        if keep_old && record.old_mac.is_none() {
            record.old_mac = tap.mac;
        }
    }
    // An interrupted run took the tap down itself: whether ifup brought it
    // up is what that run recorded.
    if !tap.up && !resume {
        record.brought_up |= keep_old;
    }
    let mut undo_detach = LinkChange::default();
    let joining = match (tap.master, wanted.bridge) {
        (None, Some(bridge)) => {
            record.attached = Some(bridge.name.clone());
            undo_detach.master = Some(0);
            Some(bridge.index)
        }
        _ => None,
    };
    let joining_ovs = match (&record.ovs, wanted.ovs) {
        (None, Some(br)) => {
            record.ovs = Some(br.to_owned());
            true
        }
        (Some(was), Some(br)) if was != br => {
            return Err(PlanError::OvsElsewhere {
                tap: tap.name.clone(),
                was: was.clone(),
                bridge: br.to_owned(),
            })
        }
        (Some(was), None) => {
            return Err(PlanError::OvsLeft {
                tap: tap.name.clone(),
                was: was.clone(),
            })
        }
        _ => false,
    };
    let new_routes: Vec<IpAddr> = wanted
        .routes
        .iter()
        .filter(|a| !record.routes.contains(a))
        .copied()
        .collect();
    record.routes.extend(&new_routes);
    record.proxy_arp |= wanted.proxy.contains(&crate::sysctl::Family::V4);
    record.proxy_ndp |= wanted.proxy.contains(&crate::sysctl::Family::V6);
    let routes = if resume {
        record.routes.clone()
    } else {
        new_routes
    };
    Ok(Draft {
        record,
        first,
        undo_detach,
        undo,
        joining,
        joining_ovs,
        routes,
        resume,
        guard_changed,
        guard_before,
        guard_parts_before,
        shape_before,
        mtu,
    })
}

/// The draft's changes in the order that keeps a port from forwarding
/// before its policy is in place.
fn order(tap: &Link, d: &Draft, bridged: bool, policy: bool, extra: &[Step]) -> Vec<Step> {
    let mut first = d.first.clone();
    let mut last = LinkChange::default();
    match (bridged, policy || !extra.is_empty()) {
        // Onto the bridge down, guard, limit and policy, then up: forwarding
        // starts only with the last change.
        (true, true) => {
            first.up = tap.up.then_some(false);
            first.master = d.joining;
            last.up = Some(true);
            let mut steps = vec![Step::Link(first)];
            steps.extend_from_slice(extra);
            if policy {
                steps.push(Step::Policy);
            }
            steps.push(Step::Link(last));
            steps
        }
        // Nothing but link attributes: one request, applied at once.
        (true, false) => {
            first.up = (!tap.up).then_some(true);
            first.master = d.joining;
            vec![Step::Link(first)]
        }
        // Routed with a guard or limit: those while the tap is down (a
        // routed tap reaches the host), then up, then routes, which need it
        // up.
        (false, true) if !extra.is_empty() => {
            first.up = tap.up.then_some(false);
            let up = LinkChange {
                up: Some(true),
                ..LinkChange::default()
            };
            let mut steps = vec![Step::Link(first)];
            steps.extend_from_slice(extra);
            steps.push(Step::Link(up));
            if policy {
                steps.extend([Step::Policy, Step::Link(last)]);
            }
            steps
        }
        // Routes need the tap up; what they open is the guest's own
        // traffic, so the tap may be up before they are in place.
        (false, _) => {
            first.up = (!tap.up).then_some(true);
            if policy {
                vec![Step::Link(first), Step::Policy, Step::Link(last)]
            } else {
                vec![Step::Link(first)]
            }
        }
    }
}

/// The record goes with the first link change (`pending` first when the
/// policy takes several requests, cleared by the last).
fn write_records(
    tap: &Link,
    steps: &mut [Step],
    record: &Record,
    pending: bool,
) -> Result<(), PlanError> {
    let encode = |r: &Record| {
        r.encode(&tap.name).map_err(|source| PlanError::Record {
            tap: tap.name.clone(),
            source,
        })
    };
    let done = encode(record)?;
    let mut links = steps.iter_mut().filter_map(|s| match s {
        Step::Link(c) => Some(c),
        Step::Policy | Step::Guard | Step::Shape => None,
    });
    let head = links.next().expect("every order has a link change");
    if pending {
        head.alias = Some(encode(&Record {
            pending: true,
            ..record.clone()
        })?);
        links
            .last()
            .expect("a pending record has a last change")
            .alias = Some(done);
    } else {
        head.alias = Some(done);
    }
    for s in steps.iter_mut() {
        if let Step::Link(c) = s {
            if c.alias.as_deref() == tap.alias.as_deref() {
                c.alias = None;
            }
        }
    }
    Ok(())
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
    // An interrupted ifup took a tap that was up down while it joined.
    if record.pending && !record.brought_up && !tap.up {
        restore.up = Some(true);
    }
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
    use crate::link::{LinkKind, TunInfo};

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

    /// The attach of `t` as a port of `br` with `settings`.
    fn port(t: &Link, br: &Link, settings: &Settings, origin: Origin) -> Attach {
        attach(t, &Wanted::on_bridge(br, settings), origin).unwrap()
    }

    /// All link changes of an attach folded into one (later ones win).
    fn merged(a: &Attach) -> LinkChange {
        let mut m = LinkChange::default();
        for s in &a.steps {
            if let Step::Link(c) = s {
                m.mtu = c.mtu.or(m.mtu);
                m.mac = c.mac.or(m.mac);
                m.alias = c.alias.clone().or(m.alias);
                m.up = c.up.or(m.up);
                m.master = c.master.or(m.master);
            }
        }
        m
    }

    /// The link after every link step of `a`, in order.
    fn after(l: Link, a: &Attach) -> Link {
        a.steps.iter().fold(l, |l, s| match s {
            Step::Link(c) => applied(l, c),
            Step::Policy | Step::Guard | Step::Shape => l,
        })
    }

    fn undone(l: Link, a: &Attach) -> Link {
        a.undo.iter().fold(l, applied)
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
        let target = Wanted {
            bridge: None,
            ovs: None,
            datapath: None,
            mtu: None,
            fe_mac: true,
            port_policy: false,
            routes: &addrs,
            proxy: vec![crate::sysctl::Family::V4, crate::sysctl::Family::V6],
            guard: false,
            shape: None,
            police_only: false,
            rate_in: None,
        };
        let a = attach(&t, &target, Origin::Existing).unwrap();
        assert_eq!(merged(&a).master, None);
        assert_eq!(a.routes, addrs);
        assert!(a.steps.contains(&Step::Policy));
        assert!(merged(&a)
            .alias
            .as_deref()
            .unwrap()
            .contains("route=192.0.2.10,2001:db8::10 parp pndp"));
        // re-run (the proxy sysctls are on now): routes already recorded
        // are not added again
        let target = Wanted {
            proxy: Vec::new(),
            ..target
        };
        let again = attach(&after(t, &a), &target, Origin::Existing).unwrap();
        assert!(
            again.routes.is_empty() && !again.changes_anything(),
            "{again:?}"
        );
    }

    #[test]
    fn an_ovs_port_stays_one_until_ifdown() {
        let t = tap("vm0");
        let ovs = Wanted {
            bridge: None,
            ovs: Some("br-int"),
            datapath: None,
            mtu: None,
            fe_mac: false,
            port_policy: false,
            routes: &[],
            proxy: Vec::new(),
            guard: false,
            shape: None,
            police_only: false,
            rate_in: None,
        };
        let a = attach(&t, &ovs, Origin::Existing).unwrap();
        assert!(a.steps.contains(&Step::Policy));
        let t = after(t, &a);
        assert!(!attach(&t, &ovs, Origin::Existing)
            .unwrap()
            .changes_anything());
        let other = Wanted {
            ovs: Some("br-ex"),
            ..ovs.clone()
        };
        assert!(matches!(
            attach(&t, &other, Origin::Existing),
            Err(PlanError::OvsElsewhere { .. })
        ));
        // its rule now bridges or routes it: still OVS's until ifdown
        let br = bridge(1500);
        assert!(matches!(
            attach(
                &t,
                &Wanted::on_bridge(&br, &Settings::default()),
                Origin::Existing
            ),
            Err(PlanError::OvsLeft { .. })
        ));
        let routed = Wanted { ovs: None, ..ovs };
        assert!(matches!(
            attach(&t, &routed, Origin::Existing),
            Err(PlanError::OvsLeft { .. })
        ));
    }

    #[test]
    fn qemu_tap_gets_mtu_mac_up_master_and_record_in_one_change() {
        let t = tap("vm0");
        let a = port(&t, &bridge(9000), &Settings::default(), Origin::Existing);
        assert_eq!(merged(&a).mtu, Some(9000));
        assert_eq!(merged(&a).mac.unwrap().to_string(), "fe:54:00:01:02:03");
        assert_eq!(merged(&a).up, Some(true));
        assert_eq!(merged(&a).master, Some(3));
        assert_eq!(
            merged(&a).alias.as_deref(),
            Some("kvmnet:v1 attached=br0 up mtu=1500 mac=52:54:00:01:02:03")
        );
        assert_eq!(undone(after(t.clone(), &a), &a), t);
    }

    #[test]
    fn second_run_changes_nothing() {
        let t = tap("vm0");
        let br = bridge(9000);
        let a = port(&t, &br, &Settings::default(), Origin::Existing);
        let b = attach(
            &after(t, &a),
            &Wanted::on_bridge(&br, &Settings::default()),
            Origin::Existing,
        )
        .unwrap();
        assert!(!b.changes_anything(), "{b:?}");
    }

    #[test]
    fn created_tap_records_only_creation() {
        let mut t = tap("vm0");
        t.mac = Some("fe:11:22:33:44:55".parse().unwrap());
        let a = port(&t, &bridge(1500), &Settings::default(), Origin::Created);
        assert_eq!(merged(&a).mac, None);
        assert_eq!(merged(&a).mtu, None);
        assert_eq!(
            merged(&a).alias.as_deref(),
            Some("kvmnet:v1 created attached=br0")
        );
        let done = after(t, &a);
        assert_eq!(detach(&done, Some("br0")).unwrap(), Detach::Delete);
    }

    #[test]
    fn tap_already_configured_by_someone_else_is_left_alone_both_ways() {
        let mut t = tap("vm0");
        t.mac = Some("fe:11:22:33:44:55".parse().unwrap());
        t.up = true;
        t.master = Some(3);
        let a = port(&t, &bridge(1500), &Settings::default(), Origin::Existing);
        assert!(merged(&a).is_empty(), "{a:?}");
        assert_eq!(detach(&t, Some("br0")).unwrap(), Detach::NotOurs);
    }

    #[test]
    fn tap_on_another_bridge_is_refused() {
        let mut t = tap("vm0");
        t.master = Some(99);
        assert!(matches!(
            attach(
                &t,
                &Wanted::on_bridge(&bridge(1500), &Settings::default()),
                Origin::Existing
            ),
            Err(PlanError::AttachedElsewhere { master: 99, .. })
        ));
    }

    #[test]
    fn ifdown_restores_exactly_what_ifup_changed() {
        let mut t = tap("vm0");
        t.alias = Some("customer 42".into());
        let a = port(&t, &bridge(9000), &Settings::default(), Origin::Existing);
        let up = after(t.clone(), &a);
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
        let a = port(&t, &bridge(1500), &Settings::default(), Origin::Existing);
        let moved = after(t, &a);
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
        let a = port(&t, &bridge(1500), &Settings::default(), Origin::Existing);
        assert_eq!(merged(&a).up, Some(true));
        assert_eq!(merged(&a).master, None);
        assert_eq!(a.record.attached, None);
        let Detach::Restore {
            detach: d, restore, ..
        } = detach(&after(t.clone(), &a), Some("br0")).unwrap()
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
                &Wanted::on_bridge(&bridge(1500), &Settings::default()),
                Origin::Existing
            ),
            Err(PlanError::Record { .. })
        ));
        assert!(detach(&t, None).is_err());
    }

    fn isolated() -> Settings {
        Settings {
            isolated: Some(true),
            ..Settings::default()
        }
    }

    fn link_steps(a: &Attach) -> Vec<&LinkChange> {
        a.steps
            .iter()
            .filter_map(|s| match s {
                Step::Link(c) => Some(c),
                Step::Policy | Step::Guard | Step::Shape => None,
            })
            .collect()
    }

    #[test]
    fn a_port_with_policy_joins_down_and_goes_up_last() {
        let mut t = tap("vm0");
        t.up = true;
        let br = bridge(1500);
        let a = port(&t, &br, &isolated(), Origin::Existing);
        assert!(matches!(a.steps[1], Step::Policy), "{a:?}");
        let [first, last] = link_steps(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!((first.up, first.master), (Some(false), Some(3)));
        assert!(first
            .alias
            .as_deref()
            .unwrap()
            .starts_with("kvmnet:v1 pending"));
        assert_eq!(last.up, Some(true));
        assert!(!last.alias.as_deref().unwrap().contains("pending"));
        // what the first change leaves is down and says it is pending
        let killed = applied(t.clone(), first);
        assert!(!killed.up && killed.master == Some(3));
        // the next run completes it: policy again, then up
        let again = port(&killed, &br, &isolated(), Origin::Existing);
        assert!(
            again.resume && again.steps.contains(&Step::Policy),
            "{again:?}"
        );
        let done = after(killed.clone(), &again);
        assert!(done.up);
        assert_eq!(done, after(t.clone(), &a));
        // ifdown of the interrupted run: off the bridge, and up again as it was
        let Detach::Restore {
            detach: d, restore, ..
        } = detach(&killed, Some("br0")).unwrap()
        else {
            panic!()
        };
        assert_eq!(applied(applied(killed, &d), &restore), t);
        // undo leaves the bridge before it restores "up"
        assert_eq!(a.undo[0].master, Some(0));
        assert_eq!(a.undo[0].up, None);
        assert_eq!(undone(after(t.clone(), &a), &a), t);
    }

    #[test]
    fn a_created_tap_with_policy_joins_down_and_is_brought_up_last() {
        let t = tap("vm0");
        let br = bridge(1500);
        let a = port(&t, &br, &isolated(), Origin::Created);
        let [first, last] = link_steps(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!((first.master, first.up), (Some(3), None));
        assert_eq!(
            first.alias.as_deref(),
            Some("kvmnet:v1 created attached=br0")
        );
        assert_eq!((last.up, last.alias.as_deref()), (Some(true), None));
        assert_eq!(a.steps[1], Step::Policy);
    }

    #[test]
    fn without_policy_a_created_tap_is_configured_in_one_request() {
        let t = tap("vm0");
        let a = port(&t, &bridge(1500), &Settings::default(), Origin::Created);
        let [only] = link_steps(&a)[..] else {
            panic!("{a:?}")
        };
        assert_eq!((only.master, only.up), (Some(3), Some(true)));
        assert_eq!(
            only.alias.as_deref(),
            Some("kvmnet:v1 created attached=br0")
        );
        assert!(!a.steps.contains(&Step::Policy));
    }

    #[test]
    fn a_port_that_is_already_complete_gets_no_policy_again() {
        let t = tap("vm0");
        let br = bridge(1500);
        let a = port(&t, &br, &isolated(), Origin::Existing);
        let b = attach(
            &after(t, &a),
            &Wanted::on_bridge(&br, &isolated()),
            Origin::Existing,
        )
        .unwrap();
        assert!(!b.changes_anything(), "{b:?}");
    }

    #[test]
    fn an_interrupted_routed_run_is_resumed_with_all_its_routes() {
        let t = tap("rt0");
        let addrs: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap()];
        let target = Wanted {
            bridge: None,
            ovs: None,
            datapath: None,
            mtu: None,
            fe_mac: false,
            port_policy: false,
            routes: &addrs,
            proxy: vec![crate::sysctl::Family::V4],
            guard: false,
            shape: None,
            police_only: false,
            rate_in: None,
        };
        let a = attach(&t, &target, Origin::Existing).unwrap();
        let first = link_steps(&a)[0];
        assert!(first.alias.as_deref().unwrap().contains("pending"));
        assert_eq!(first.up, Some(true));
        let killed = applied(t, first);
        let target = Wanted {
            proxy: Vec::new(),
            ..target
        };
        let again = attach(&killed, &target, Origin::Existing).unwrap();
        assert!(again.resume);
        assert_eq!(again.routes, addrs, "re-added even though recorded");
        assert!(!after(killed, &again).alias.unwrap().contains("pending"));
    }

    #[test]
    fn mac_without_address_is_left_alone() {
        let mut t = tap("vm0");
        t.mac = None;
        let a = port(&t, &bridge(1500), &Settings::default(), Origin::Existing);
        assert_eq!(merged(&a).mac, None);
    }

    /// The guard comes while the tap carries nothing: bridged, it joins
    /// down, is guarded, then goes up; routed, it is guarded down, then up,
    /// then routed. A kill between the steps leaves a down tap whose record
    /// says `pending guard`. A guard already there is no step of its own
    /// (the driver re-applies it), and switching it off is a record change.
    #[test]
    fn the_guard_is_a_step_before_the_tap_carries_anything() {
        let guarded = Settings {
            guard: true,
            ..Settings::default()
        };
        let t = tap("vm0");
        let a = port(&t, &bridge(1500), &guarded, Origin::Existing);
        assert_eq!(a.steps.len(), 3, "{a:?}");
        let Step::Link(first) = &a.steps[0] else {
            panic!("{a:?}")
        };
        assert_eq!((first.master, first.up), (Some(3), None));
        assert!(first.alias.as_deref().unwrap().contains("pending"));
        assert_eq!(a.steps[1], Step::Guard);
        let Step::Link(last) = &a.steps[2] else {
            panic!("{a:?}")
        };
        assert_eq!(last.up, Some(true));
        assert!(last.alias.as_deref().unwrap().ends_with(" guard"));
        assert!(!a.guard_before);

        // again: nothing to do, the guard is the driver's to refresh
        let again = port(
            &after(t.clone(), &a),
            &bridge(1500),
            &guarded,
            Origin::Existing,
        );
        assert!(!again.changes_anything() && again.guard_before, "{again:?}");

        // switched off: one change, the record without `guard`
        let done = after(t.clone(), &a);
        let off = port(&done, &bridge(1500), &Settings::default(), Origin::Existing);
        assert!(!off.steps.contains(&Step::Guard), "{off:?}");
        assert!(!merged(&off).alias.unwrap().contains("guard"));
        assert!(off.guard_before);

        // routed: guard down, up, routes
        let addrs: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap()];
        let mut up = tap("rt0");
        up.up = true;
        let target = Wanted {
            bridge: None,
            ovs: None,
            datapath: None,
            mtu: None,
            fe_mac: false,
            port_policy: false,
            routes: &addrs,
            proxy: Vec::new(),
            guard: true,
            shape: None,
            police_only: false,
            rate_in: None,
        };
        let r = attach(&up, &target, Origin::Existing).unwrap();
        let kinds: Vec<String> = r
            .steps
            .iter()
            .map(|s| match s {
                Step::Link(c) => format!("link up={:?}", c.up),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "link up=Some(false)",
                "Guard",
                "link up=Some(true)",
                "Policy",
                "link up=None"
            ],
            "{r:?}"
        );
    }
}
