//! A VXLAN uplink for a bridge kvmnet creates: one L2 network across hosts
//! with the kernel's own VXLAN (static peers by head-end replication, a
//! multicast group, or EVPN with FRR owning the FDB). kvmnet makes sure the
//! bridge's vxlan device exists, sits on the bridge, is up, and has a
//! flood entry per static peer; idempotently, and safely when several
//! ifups race to do it (docs/vxlan-design.md).

use std::fmt;
use std::net::IpAddr;

use crate::link::{Link, LinkKind};
use crate::name::BridgeName;
use crate::netlink::{Netlink, NetlinkError};

/// The standard VXLAN UDP port (RFC 7348).
pub const DEFAULT_PORT: u16 = 4789;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Where the bridge's broadcast, unknown-unicast and multicast frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Head-end replication: one all-zeros FDB entry per peer.
    Peers(Vec<IpAddr>),
    /// A multicast group on the underlay device.
    Group(IpAddr),
    /// EVPN: FRR (BGP) fills the FDB; kvmnet turns learning off and
    /// neighbour suppression on.
    Evpn,
}

/// A bridge's VXLAN uplink as the config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub remote: Remote,
    /// The underlay device: needed for a multicast group; gives the MTU.
    pub dev: Option<String>,
    /// The local tunnel address (the source of the UDP packets).
    pub local: Option<IpAddr>,
    pub port: u16,
    /// The vxlan device learns remote MACs from what it receives (off
    /// with EVPN, where FRR installs them).
    pub learning: bool,
}

impl Vxlan {
    /// The vxlan device kvmnet keeps for this VNI: `kvx` and the VNI.
    pub fn device(&self) -> String {
        device_name(self.vni)
    }

    /// Whether the underlay is IPv6 (its outer header is 20 bytes more).
    fn ipv6(&self) -> bool {
        let first = match &self.remote {
            Remote::Peers(p) => p.first().copied(),
            Remote::Group(g) => Some(*g),
            Remote::Evpn => None,
        };
        first.or(self.local).is_some_and(|a| a.is_ipv6())
    }

    /// What VXLAN adds to each frame on the underlay: outer IP, UDP, VXLAN
    /// header and the inner Ethernet header (RFC 7348).
    pub fn overhead(&self) -> u32 {
        if self.ipv6() {
            70
        } else {
            50
        }
    }

    /// Contradictions of the setting itself; `None` when it holds.
    pub fn problem(&self) -> Option<String> {
        if self.vni == 0 || self.vni > MAX_VNI {
            return Some(format!("VNI {} is not 1 to {MAX_VNI}", self.vni));
        }
        let family = |a: &IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        let mut all: Vec<IpAddr> = self.local.into_iter().collect();
        match &self.remote {
            Remote::Peers(p) if p.is_empty() => {
                return Some("vxlan_peers is empty: give at least one peer".into())
            }
            Remote::Peers(p) => {
                if let Some(m) = p.iter().find(|a| a.is_multicast() || a.is_unspecified()) {
                    return Some(format!(
                        "peer {m} is not a unicast address (a multicast group goes in vxlan_group)"
                    ));
                }
                all.extend(p);
            }
            Remote::Group(g) => {
                if !g.is_multicast() {
                    return Some(format!("vxlan_group {g} is not a multicast address"));
                }
                if self.dev.is_none() {
                    return Some(format!(
                        "vxlan_group {g} needs vxlan_dev: the underlay device to join it on"
                    ));
                }
                all.push(*g);
            }
            Remote::Evpn => {}
        }
        if let Some(a) = all.iter().find(|a| a.is_ipv4() != all[0].is_ipv4()) {
            return Some(format!(
                "{a} is {}, {} is {}: one underlay family per VXLAN",
                family(a),
                all[0],
                family(&all[0])
            ));
        }
        None
    }
}

/// The vxlan device kvmnet keeps for VNI `vni`.
pub fn device_name(vni: u32) -> String {
    format!("kvx{vni}")
}

impl fmt::Display for Vxlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VXLAN {} ({}", self.vni, self.device())?;
        match &self.remote {
            Remote::Peers(p) => {
                let p: Vec<String> = p.iter().map(|a| a.to_string()).collect();
                write!(f, ", peers {}", p.join(" "))?;
            }
            Remote::Group(g) => write!(f, ", group {g}")?,
            Remote::Evpn => write!(f, ", EVPN")?,
        }
        if let Some(d) = &self.dev {
            write!(f, ", via {d}")?;
        }
        write!(f, ", port {})", self.port)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error(
        "{device} exists but is {what}, not kvmnet's VXLAN {vni}; rename or delete it, or pick \
         another vxlan_vni"
    )]
    Foreign {
        device: String,
        what: String,
        vni: u32,
    },
    #[error(
        "{device} (VXLAN {vni}) is a port of another bridge (interface #{master}), not {bridge}; \
         one VNI belongs to one bridge"
    )]
    OtherBridge {
        device: String,
        vni: u32,
        master: u32,
        bridge: String,
    },
    #[error("vxlan_dev {dev} does not exist; name the underlay device (ip link shows it)")]
    NoUnderlay { dev: String },
    #[error(
        "mtu {mtu} does not fit {vx}: its underlay's MTU {underlay} less the {overhead} bytes \
         VXLAN adds is {fits}; set mtu = \"bridge\" or at most {fits}, or raise the underlay's MTU"
    )]
    Mtu {
        mtu: u32,
        vx: String,
        underlay: u32,
        overhead: u32,
        fits: u32,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// The underlay MTU assumed when neither `vxlan_dev` nor a route to the
/// first peer names the underlay device.
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;

/// The MTU of the device the kernel routes `vx`'s first peer or group
/// through; `None` without a route (or without a peer, as with EVPN).
fn routed_mtu(nl: &Netlink, vx: &Vxlan) -> Result<Option<u32>, NetlinkError> {
    let first = match &vx.remote {
        Remote::Peers(p) => p.first().copied(),
        Remote::Group(g) => Some(*g),
        Remote::Evpn => None,
    };
    let Some(addr) = first else { return Ok(None) };
    match nl.route_to(addr)? {
        Some(oif) => Ok(nl.link_by_index(oif)?.map(|l| l.mtu)),
        None => Ok(None),
    }
}

/// The MTU a bridge port may have over `vx` on an underlay of MTU
/// `underlay`.
pub fn fitting_mtu(vx: &Vxlan, underlay: u32) -> u32 {
    underlay.saturating_sub(vx.overhead())
}

/// Makes sure `bridge` has `vx` as its uplink: the vxlan device exists
/// (created up, on the bridge, with the underlay's MTU less the overhead),
/// is kvmnet's for this VNI, sits on this bridge and is up, and has a flood
/// entry per static peer (added with NLM_F_APPEND: one already there is
/// kept). A device another run created meanwhile (EEXIST) is as good. Every
/// step is idempotent, so a run that died half-way is completed by the
/// next. The vxlan device's MTU.
pub fn ensure(
    nl: &Netlink,
    bridge: &Link,
    bridge_name: &BridgeName,
    vx: &Vxlan,
) -> Result<u32, VxlanError> {
    let name = vx.device();
    let underlay = match &vx.dev {
        Some(d) => {
            let name = crate::name::IfaceName::new(d)
                .map_err(|_| VxlanError::NoUnderlay { dev: d.clone() })?;
            Some(
                nl.link_by_name(&name)?
                    .ok_or_else(|| VxlanError::NoUnderlay { dev: d.clone() })?,
            )
        }
        None => None,
    };
    let dev_name = crate::name::IfaceName::new(&name).expect("kvx and at most 8 digits");
    let mut link = nl.link_by_name(&dev_name)?;
    if link.is_none() {
        // The kernel gives a vxlan device without an underlay device the
        // full 1500, which no 1500 underlay carries: the MTU is worked out
        // from the device the first peer (or group) is routed through.
        let underlay_mtu = match &underlay {
            Some(u) => u.mtu,
            None => routed_mtu(nl, vx)?.unwrap_or(DEFAULT_UNDERLAY_MTU),
        };
        let req = crate::nlreq::new_vxlan(
            &name,
            vx,
            bridge.index,
            underlay.as_ref().map(|u| u.index),
            Some(fitting_mtu(vx, underlay_mtu)),
        );
        match nl.create_link(|| format!("creating {name} for bridge {bridge_name}"), req) {
            Ok(()) => {}
            // another run made it first: judged below like any existing one
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        link = nl.link_by_name(&dev_name)?;
    }
    let link = link.ok_or_else(|| VxlanError::Foreign {
        device: name.clone(),
        what: "gone again".into(),
        vni: vx.vni,
    })?;
    match &link.kind {
        LinkKind::Vxlan(v) if *v == vx.vni => {}
        other => {
            return Err(VxlanError::Foreign {
                device: name,
                what: other.describe(),
                vni: vx.vni,
            })
        }
    }
    match link.master {
        Some(m) if m == bridge.index => {}
        Some(m) => {
            return Err(VxlanError::OtherBridge {
                device: name,
                vni: vx.vni,
                master: m,
                bridge: bridge_name.to_string(),
            })
        }
        None => {}
    }
    if link.master.is_none() || !link.up {
        let change = crate::link::LinkChange {
            master: Some(bridge.index),
            up: Some(true),
            ..Default::default()
        };
        nl.set_link(
            link.index,
            &change,
            &format!("putting {name} on {bridge_name}"),
        )?;
    }
    if vx.remote == Remote::Evpn {
        nl.set_port_neigh_suppress(link.index, &name)?;
    }
    if let Remote::Peers(peers) = &vx.remote {
        for p in peers {
            nl.fdb_append_flood(link.index, *p, &name)?;
        }
    }
    Ok(link.mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vx(remote: Remote) -> Vxlan {
        Vxlan {
            vni: 100,
            remote,
            dev: Some("eth1".into()),
            local: None,
            port: DEFAULT_PORT,
            learning: true,
        }
    }

    #[test]
    fn the_settings_that_cannot_hold_are_named() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(vx(Remote::Peers(vec![ip("192.0.2.2")])).problem(), None);
        assert!(vx(Remote::Peers(vec![]))
            .problem()
            .unwrap()
            .contains("at least one peer"));
        assert!(vx(Remote::Peers(vec![ip("239.1.1.1")]))
            .problem()
            .unwrap()
            .contains("vxlan_group"));
        assert!(vx(Remote::Group(ip("192.0.2.2")))
            .problem()
            .unwrap()
            .contains("not a multicast"));
        let mut g = vx(Remote::Group(ip("239.1.1.1")));
        assert_eq!(g.problem(), None);
        g.dev = None;
        assert!(g.problem().unwrap().contains("needs vxlan_dev"));
        let mut mixed = vx(Remote::Peers(vec![ip("192.0.2.2"), ip("2001:db8::2")]));
        assert!(mixed.problem().unwrap().contains("one underlay family"));
        mixed.remote = Remote::Peers(vec![ip("2001:db8::2")]);
        mixed.local = Some(ip("192.0.2.1"));
        assert!(mixed.problem().unwrap().contains("one underlay family"));
        let mut big = vx(Remote::Evpn);
        big.vni = MAX_VNI + 1;
        assert!(big.problem().unwrap().contains("not 1 to 16777215"));
    }

    #[test]
    fn mtu_arithmetic_follows_the_underlay_family() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let v4 = vx(Remote::Peers(vec![ip("192.0.2.2")]));
        let v6 = vx(Remote::Peers(vec![ip("2001:db8::2")]));
        assert_eq!(fitting_mtu(&v4, 1500), 1450);
        assert_eq!(fitting_mtu(&v6, 1500), 1430);
        assert_eq!(fitting_mtu(&v4, 9000), 8950);
        assert_eq!(v4.device(), "kvx100");
        assert_eq!(device_name(MAX_VNI).len(), 11);
    }
}
