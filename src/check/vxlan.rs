//! VXLAN bridges: a VNI given to two bridges, peers the host has no route
//! to, and a bridge whose MTU its underlay cannot carry.

use std::collections::BTreeMap;

use super::host::Host;
use super::Findings;
use crate::config::Config;
use crate::netlink::Netlink;
use crate::settings::effective;
use crate::vxlan::{fitting_mtu, Remote, Vxlan};

/// Each VXLAN the config gives a bridge (the top level and every rule), with
/// where it is set.
fn uplinks(config: &Config) -> Vec<(String, Vxlan, String)> {
    let top = effective(&config.defaults, None);
    let mut out = Vec::new();
    if let (Some(b), Some(vx)) = (&top.bridge, &config.defaults.vxlan) {
        out.push((b.to_string(), vx.clone(), "the top level".to_owned()));
    }
    for (i, r) in config.rules.iter().enumerate() {
        let s = effective(&config.defaults, Some((i, r)));
        if let (Some(b), Some(vx)) = (&s.bridge, &s.vxlan) {
            out.push((b.to_string(), vx.clone(), r.location.clone()));
        }
    }
    out
}

pub(super) fn check(config: Option<&Config>, host: Option<&Host>, out: &mut Findings) {
    let Some(config) = config else { return };
    let all = uplinks(config);
    if all.is_empty() {
        return;
    }
    let mut by_vni: BTreeMap<u32, Vec<&(String, Vxlan, String)>> = BTreeMap::new();
    for u in &all {
        by_vni.entry(u.1.vni).or_default().push(u);
    }
    for (vni, users) in &by_vni {
        let mut bridges: Vec<&str> = users.iter().map(|u| u.0.as_str()).collect();
        bridges.sort_unstable();
        bridges.dedup();
        if bridges.len() > 1 {
            out.error(
                "vxlan",
                format!(
                    "VNI {vni} is given to bridges {}: one VNI is one network, and its device \
                     kvx{vni} can sit on one bridge only",
                    bridges.join(" and ")
                ),
                "give each bridge a VNI of its own (vxlan_vni)".into(),
            );
        }
    }
    let nl = Netlink::open().ok();
    let mut seen = Vec::new();
    for (bridge, vx, at) in &all {
        if seen.contains(&(bridge, vx.vni)) {
            continue;
        }
        seen.push((bridge, vx.vni));
        let peers: Vec<_> = match &vx.remote {
            Remote::Peers(p) => p.clone(),
            Remote::Group(_) | Remote::Evpn => Vec::new(),
        };
        let mut unreachable = Vec::new();
        if let Some(nl) = &nl {
            for p in &peers {
                if let Ok(None) = nl.route_to(*p) {
                    unreachable.push(p.to_string());
                }
            }
        }
        if !unreachable.is_empty() {
            out.warn(
                "vxlan",
                format!(
                    "{vx} of bridge {bridge} ({at}): no route to {}: frames for that host go nowhere",
                    unreachable.join(", ")
                ),
                format!("add a route to it (ip route get {} says why)", unreachable[0]),
            );
        }
        let Some(host) = host else { continue };
        let link = |name: &str| host.links.iter().find(|l| l.name == name);
        let underlay = vx.dev.as_deref().and_then(link);
        if let (Some(dev), None) = (&vx.dev, underlay) {
            out.error(
                "vxlan",
                format!("{vx} of bridge {bridge} ({at}): its underlay {dev} does not exist"),
                "fix vxlan_dev, or create the device".into(),
            );
            continue;
        }
        let (Some(br), Some(u)) = (link(bridge), underlay) else {
            continue;
        };
        let fits = fitting_mtu(vx, u.mtu);
        if br.mtu > fits {
            out.error(
                "vxlan",
                format!(
                    "bridge {bridge} has MTU {}, but {vx} carries at most {fits} over {} (MTU {} \
                     less {} bytes of VXLAN): larger frames are dropped",
                    br.mtu,
                    u.name,
                    u.mtu,
                    vx.overhead()
                ),
                format!(
                    "raise {}'s MTU to {} or more, or lower the bridge's ports to {fits}",
                    u.name,
                    br.mtu + vx.overhead()
                ),
            );
        } else if unreachable.is_empty() {
            out.ok(
                "vxlan",
                format!(
                    "{vx} of bridge {bridge}: MTU {} fits {} ({}){}",
                    br.mtu,
                    u.name,
                    u.mtu,
                    if peers.is_empty() {
                        String::new()
                    } else {
                        ", every peer has a route".to_owned()
                    }
                ),
            );
        }
    }
}
