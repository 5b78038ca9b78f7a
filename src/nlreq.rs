//! The bytes of the few rtnetlink requests kvmnet sends, written directly
//! (why: docs/design.md). Each is a family header and a few attributes; a
//! unit test holds every one to the bytes rtnetlink's builders produce for the
//! same arguments.

use std::net::IpAddr;

use crate::kernel::{
    AF_BRIDGE, AF_INET, AF_INET6, AF_UNSPEC, BRIDGE_VLAN_INFO_RANGE_BEGIN,
    BRIDGE_VLAN_INFO_RANGE_END, IFF_UP, IFLA_ADDRESS, IFLA_AF_SPEC, IFLA_BRIDGE_VLAN_INFO,
    IFLA_BRPORT_BCAST_FLOOD, IFLA_BRPORT_ISOLATED, IFLA_BRPORT_LEARNING, IFLA_BRPORT_MCAST_FLOOD,
    IFLA_BRPORT_UNICAST_FLOOD, IFLA_BR_VLAN_FILTERING, IFLA_EXT_MASK, IFLA_IFALIAS, IFLA_IFNAME,
    IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_INFO_SLAVE_DATA, IFLA_INFO_SLAVE_KIND, IFLA_LINKINFO,
    IFLA_MASTER, IFLA_MTU, RTA_DST, RTA_OIF, RTEXT_FILTER_BRVLAN, RTEXT_FILTER_SKIP_STATS,
    RTM_DELLINK, RTM_GETLINK, RTM_GETROUTE, RTM_NEWLINK, RTM_SETLINK, RTN_UNICAST, RTPROT_STATIC,
    RT_SCOPE_LINK, RT_TABLE_MAIN,
};
use crate::kernel::{
    IFLA_BRPORT_NEIGH_SUPPRESS, IFLA_VXLAN_GROUP, IFLA_VXLAN_GROUP6, IFLA_VXLAN_ID,
    IFLA_VXLAN_LEARNING, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6, IFLA_VXLAN_PORT,
    NDA_DST, NDA_LLADDR, NTF_SELF, NUD_PERMANENT, RTM_NEWNEIGH,
};
use crate::mac::Mac;

/// One request: its message type and everything after the netlink header
/// (the family header and the attributes). [`crate::nlsock`] adds the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: u16,
    pub body: Vec<u8>,
}

impl Request {
    /// A link request: `struct ifinfomsg`.
    fn link(kind: u16, family: u8, index: u32, flags: u32, change: u32) -> Request {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&[family, 0]);
        body.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&change.to_ne_bytes());
        Request { kind, body }
    }

    /// A route request: `struct rtmsg`.
    fn route(
        kind: u16,
        family: u8,
        dst_len: u8,
        table: u8,
        proto: u8,
        scope: u8,
        rtype: u8,
    ) -> Request {
        let mut body = Vec::with_capacity(48);
        // dst_len, src_len, tos, table, protocol, scope, type, then flags
        body.extend_from_slice(&[family, dst_len, 0, 0, table, proto, scope, rtype]);
        body.extend_from_slice(&0u32.to_ne_bytes());
        Request { kind, body }
    }

    pub(crate) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Request {
        let len = 4 + data.len();
        // No attribute of ours comes near 64 KiB: names are 15 bytes, aliases
        // 255, and a VLAN list at most 2,047 disjoint ranges, ~22 KB (the
        // config merges repeated and overlapping entries: settings::merge_vlans).
        let len16 = u16::try_from(len).expect("netlink attribute over 64 KiB");
        self.body.extend_from_slice(&len16.to_ne_bytes());
        self.body.extend_from_slice(&kind.to_ne_bytes());
        self.body.extend_from_slice(data);
        self.body
            .resize(self.body.len() + (len.next_multiple_of(4) - len), 0);
        self
    }

    pub(crate) fn u32(&mut self, kind: u16, v: u32) -> &mut Request {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn u8(&mut self, kind: u16, v: bool) -> &mut Request {
        self.attr(kind, &[u8::from(v)])
    }

    /// A NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING
    /// policies take it.
    pub(crate) fn string(&mut self, kind: u16, s: &str) -> &mut Request {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(kind, &v)
    }

    /// An attribute holding the attributes `fill` adds.
    pub(crate) fn nest(&mut self, kind: u16, fill: impl FnOnce(&mut Request)) -> &mut Request {
        let start = self.body.len();
        self.attr(kind, &[]);
        fill(self);
        let len = u16::try_from(self.body.len() - start).expect("netlink attribute over 64 KiB");
        self.body[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }
}

/// RTM_GETLINK for one link, by name (`index` 0) or by index, with
/// RTEXT_FILTER_SKIP_STATS: the kernel leaves out the per-family and VF
/// statistics (IPv6's are summed over every CPU); the link's own counters
/// (IFLA_STATS64) still come.
pub fn get_link(name: Option<&str>, index: u32) -> Request {
    let mut r = Request::link(RTM_GETLINK, AF_UNSPEC, index, 0, 0);
    if let Some(name) = name {
        r.string(IFLA_IFNAME, name);
    }
    r.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    r
}

/// RTM_GETLINK for a dump of every link (`bridge_vlans`: of every bridge
/// port, with its VLANs).
pub fn dump_links(bridge_vlans: bool) -> Request {
    if bridge_vlans {
        let mut r = Request::link(RTM_GETLINK, AF_BRIDGE, 0, 0, 0);
        r.u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN);
        r
    } else {
        Request::link(RTM_GETLINK, AF_UNSPEC, 0, 0, 0)
    }
}

/// The ports of bridge `master`: the kernel filters the dump itself
/// (IFLA_MASTER in a dump request), so the answer grows with the bridge, not
/// with the host's interfaces.
pub fn dump_ports(master: u32) -> Request {
    let mut r = Request::link(RTM_GETLINK, AF_UNSPEC, 0, 0, 0);
    r.u32(IFLA_MASTER, master);
    r.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    r
}

/// What one RTM_SETLINK changes; `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetLink<'a> {
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub alias: Option<&'a str>,
    pub up: Option<bool>,
    /// 0 detaches from any master.
    pub master: Option<u32>,
}

pub fn set_link(index: u32, s: &SetLink) -> Request {
    let (flags, change) = match s.up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let mut r = Request::link(RTM_SETLINK, AF_UNSPEC, index, flags, change);
    if let Some(mtu) = s.mtu {
        r.u32(IFLA_MTU, mtu);
    }
    if let Some(mac) = s.mac {
        r.attr(IFLA_ADDRESS, &mac.0);
    }
    if let Some(alias) = s.alias {
        r.string(IFLA_IFALIAS, alias);
    }
    if let Some(master) = s.master {
        r.u32(IFLA_MASTER, master);
    }
    r
}

/// RTM_NEWLINK creating an up bridge with a fixed address.
pub fn new_bridge(name: &str, mac: Mac, vlan_filtering: bool) -> Request {
    let mut r = Request::link(RTM_NEWLINK, AF_UNSPEC, 0, IFF_UP, IFF_UP);
    r.string(IFLA_IFNAME, name).attr(IFLA_ADDRESS, &mac.0);
    r.nest(IFLA_LINKINFO, |r| {
        r.string(IFLA_INFO_KIND, "bridge");
        if vlan_filtering {
            r.nest(IFLA_INFO_DATA, |r| {
                r.u8(IFLA_BR_VLAN_FILTERING, true);
            });
        }
    });
    r
}

fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// RTM_NEWLINK creating the vxlan device `name` for `vx`, up, on the bridge
/// with index `master`, over the underlay `link` (if any), with `mtu` (if
/// known: the underlay's less the overhead).
pub fn new_vxlan(
    name: &str,
    vx: &crate::vxlan::Vxlan,
    master: u32,
    link: Option<u32>,
    mtu: Option<u32>,
) -> Request {
    use crate::vxlan::Remote;
    let mut r = Request::link(RTM_NEWLINK, AF_UNSPEC, 0, IFF_UP, IFF_UP);
    r.string(IFLA_IFNAME, name);
    r.u32(IFLA_MASTER, master);
    if let Some(mtu) = mtu {
        r.u32(IFLA_MTU, mtu);
    }
    r.nest(IFLA_LINKINFO, |r| {
        r.string(IFLA_INFO_KIND, "vxlan");
        r.nest(IFLA_INFO_DATA, |r| {
            r.u32(IFLA_VXLAN_ID, vx.vni);
            if let Some(l) = link {
                r.u32(IFLA_VXLAN_LINK, l);
            }
            if let Some(local) = &vx.local {
                let kind = if local.is_ipv4() {
                    IFLA_VXLAN_LOCAL
                } else {
                    IFLA_VXLAN_LOCAL6
                };
                r.attr(kind, &ip_bytes(local));
            }
            if let Remote::Group(g) = &vx.remote {
                let kind = if g.is_ipv4() {
                    IFLA_VXLAN_GROUP
                } else {
                    IFLA_VXLAN_GROUP6
                };
                r.attr(kind, &ip_bytes(g));
            }
            r.attr(IFLA_VXLAN_PORT, &vx.port.to_be_bytes());
            r.u8(IFLA_VXLAN_LEARNING, vx.learning);
        });
    });
    r
}

/// RTM_NEWNEIGH of a bridge FDB entry on the vxlan device `index` that
/// sends broadcast, unknown-unicast and multicast frames to `dst` (the
/// all-zeros MAC: head-end replication). The caller's NLM_F_APPEND adds
/// `dst` to the entry's remotes, keeping those there.
pub fn fdb_flood(index: u32, dst: &IpAddr) -> Request {
    let mut body = Vec::with_capacity(40);
    body.extend_from_slice(&[AF_BRIDGE, 0, 0, 0]);
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
    body.extend_from_slice(&[NTF_SELF, 0]);
    let mut r = Request {
        kind: RTM_NEWNEIGH,
        body,
    };
    r.attr(NDA_LLADDR, &[0; 6]);
    r.attr(NDA_DST, &ip_bytes(dst));
    r
}

/// Neighbour suppression on the bridge port `port` (EVPN: the bridge
/// answers ARP and ND from the entries FRR installs).
pub fn port_neigh_suppress(port: u32) -> Request {
    let mut r = Request::link(RTM_NEWLINK, AF_UNSPEC, port, 0, 0);
    r.nest(IFLA_LINKINFO, |r| {
        r.string(IFLA_INFO_SLAVE_KIND, "bridge");
        r.nest(IFLA_INFO_SLAVE_DATA, |r| {
            r.u8(IFLA_BRPORT_NEIGH_SUPPRESS, true);
            r.u8(IFLA_BRPORT_LEARNING, false);
        });
    });
    r
}

/// RTM_GETROUTE of the route the kernel would take to `addr` (as `ip route
/// get`): a get, not a dump.
pub fn get_route(addr: IpAddr) -> Request {
    let (family, len) = match addr {
        IpAddr::V4(_) => (AF_INET, 32),
        IpAddr::V6(_) => (AF_INET6, 128),
    };
    let mut r = Request::route(RTM_GETROUTE, family, len, 0, 0, 0, 0);
    r.attr(RTA_DST, &ip_bytes(&addr));
    r
}

pub fn del_link(index: u32) -> Request {
    Request::link(RTM_DELLINK, AF_UNSPEC, index, 0, 0)
}

/// One entry of a port's VLAN list: a single VLAN, or the first or last of
/// a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vlan {
    One(u16, u16),
    Range(u16, u16, u16),
}

/// RTM_SETLINK (add) or RTM_DELLINK (remove) of VLANs on a bridge port;
/// `flags` are BRIDGE_VLAN_INFO_PVID and _UNTAGGED.
pub fn port_vlans(kind: u16, port: u32, vlans: &[Vlan]) -> Request {
    let mut r = Request::link(kind, AF_BRIDGE, port, 0, 0);
    let info = |r: &mut Request, flags: u16, vid: u16| {
        let mut v = [0u8; 4];
        v[..2].copy_from_slice(&flags.to_ne_bytes());
        v[2..].copy_from_slice(&vid.to_ne_bytes());
        r.attr(IFLA_BRIDGE_VLAN_INFO, &v);
    };
    r.nest(IFLA_AF_SPEC, |r| {
        for v in vlans {
            match *v {
                Vlan::One(vid, flags) => info(r, flags, vid),
                Vlan::Range(first, last, flags) => {
                    info(r, flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, first);
                    info(r, flags | BRIDGE_VLAN_INFO_RANGE_END, last);
                }
            }
        }
    });
    r
}

/// RTM_NEWLINK with bridge port options (IFLA_INFO_SLAVE_DATA, which only
/// RTM_NEWLINK applies; `ip link set … type bridge_slave` sends the same).
pub fn port_flags(
    port: u32,
    isolated: Option<bool>,
    learning: Option<bool>,
    flooding: Option<bool>,
) -> Request {
    let mut r = Request::link(RTM_NEWLINK, AF_UNSPEC, port, 0, 0);
    r.nest(IFLA_LINKINFO, |r| {
        r.string(IFLA_INFO_SLAVE_KIND, "bridge");
        if isolated.is_none() && learning.is_none() && flooding.is_none() {
            return;
        }
        r.nest(IFLA_INFO_SLAVE_DATA, |r| {
            if let Some(v) = isolated {
                r.u8(IFLA_BRPORT_ISOLATED, v);
            }
            if let Some(v) = learning {
                r.u8(IFLA_BRPORT_LEARNING, v);
            }
            if let Some(v) = flooding {
                // unknown unicast, multicast and broadcast alike
                r.u8(IFLA_BRPORT_UNICAST_FLOOD, v)
                    .u8(IFLA_BRPORT_MCAST_FLOOD, v)
                    .u8(IFLA_BRPORT_BCAST_FLOOD, v);
            }
        });
    });
    r
}

/// RTM_NEWROUTE or RTM_DELROUTE of a static host route in the main table,
/// to `addr` through interface `oif`.
pub fn host_route(kind: u16, addr: IpAddr, oif: u32) -> Request {
    let (family, len, bytes) = match addr {
        IpAddr::V4(a) => (AF_INET, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, 128, a.octets().to_vec()),
    };
    let mut r = Request::route(
        kind,
        family,
        len,
        RT_TABLE_MAIN as u8,
        RTPROT_STATIC,
        RT_SCOPE_LINK,
        RTN_UNICAST,
    );
    r.attr(RTA_DST, &bytes).u32(RTA_OIF, oif);
    r
}

/// RTM_NEWADDR: `addr/len` on interface `index`, IPv4 with its broadcast
/// address, IPv6 without duplicate address detection (the network's own
/// address: dnsmasq's router advertisements need it usable at once).
pub fn new_addr(index: u32, addr: IpAddr, len: u8) -> Request {
    let (family, flags) = match addr {
        IpAddr::V4(_) => (libc::AF_INET as u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6 as u8, libc::IFA_F_NODAD as u8),
    };
    let mut body = Vec::with_capacity(48);
    // ifa_family, ifa_prefixlen, ifa_flags, ifa_scope (universe)
    body.extend_from_slice(&[family, len, flags, 0]);
    body.extend_from_slice(&index.to_ne_bytes());
    let mut r = Request {
        kind: libc::RTM_NEWADDR,
        body,
    };
    let bytes = ip_bytes(&addr);
    r.attr(libc::IFA_LOCAL, &bytes)
        .attr(libc::IFA_ADDRESS, &bytes);
    if let IpAddr::V4(a) = addr {
        let host = if len == 0 { u32::MAX } else { u32::MAX >> len };
        let bcast = std::net::Ipv4Addr::from(u32::from(a) | host);
        r.attr(libc::IFA_BROADCAST, &bcast.octets());
    }
    r
}

/// RTM_GETROUTE for a dump of the IPv4 routes.
pub fn dump_ipv4_routes() -> Request {
    // A dump request's rtmsg only selects the family.
    Request::route(RTM_GETROUTE, AF_INET, 0, 0, 0, 0, 0)
}

/// RTM_GETROUTE for a dump of the IPv6 routes.
pub fn dump_ipv6_routes() -> Request {
    Request::route(RTM_GETROUTE, AF_INET6, 0, 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{
        BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED, RTM_DELROUTE, RTM_NEWROUTE,
    };
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::link::{
        BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, LinkMessage,
    };
    use netlink_packet_route::route::{RouteProtocol, RouteScope, RouteType};
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    use rtnetlink::{LinkBridge, LinkBridgePort, LinkBridgeVlan, LinkUnspec, RouteMessageBuilder};

    /// What netlink-packet-route emits for `msg`, without the netlink header:
    /// the oracle.
    fn emitted(msg: RouteNetlinkMessage) -> Request {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        Request {
            kind: m.header.message_type,
            body: out[16..].to_vec(),
        }
    }

    const MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    #[test]
    fn link_lookups_match_rtnetlink() {
        for name in ["t", "tap0", "br-guests", "fifteen-chars-x"] {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(name.into()));
            m.attributes
                .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
            assert_eq!(
                get_link(Some(name), 0),
                emitted(RouteNetlinkMessage::GetLink(m))
            );
        }
        let mut m = LinkMessage::default();
        m.header.index = 4097;
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        assert_eq!(
            get_link(None, 4097),
            emitted(RouteNetlinkMessage::GetLink(m))
        );

        assert_eq!(
            dump_links(false),
            emitted(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        );
        let mut m = LinkMessage::default();
        m.header.interface_family = AddressFamily::Bridge;
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        assert_eq!(dump_links(true), emitted(RouteNetlinkMessage::GetLink(m)));
    }

    #[test]
    fn set_link_matches_rtnetlink_for_every_combination() {
        // Every subset of the five fields, with lengths that need padding.
        for bits in 0u32..32 {
            let on = |i: u32| bits & (1 << i) != 0;
            let s = SetLink {
                mtu: on(0).then_some(9000),
                mac: on(1).then_some(MAC),
                alias: on(2).then_some("kvmnet:uid=1000"),
                up: on(3).then_some(bits & 1 == 0),
                master: on(4).then_some(if bits & 2 == 0 { 0 } else { 7 }),
            };
            let mut b = LinkUnspec::new_with_index(42);
            if let Some(m) = s.mtu {
                b = b.mtu(m);
            }
            if let Some(m) = s.mac {
                b = b.address(m.0.to_vec());
            }
            if let Some(a) = s.alias {
                b = b.alias(a);
            }
            match s.up {
                Some(true) => b = b.up(),
                Some(false) => b = b.down(),
                None => {}
            }
            if let Some(m) = s.master {
                b = b.controller(m);
            }
            assert_eq!(
                set_link(42, &s),
                emitted(RouteNetlinkMessage::SetLink(b.build())),
                "{s:?}"
            );
        }
    }

    #[test]
    fn bridge_creation_and_deletion_match_rtnetlink() {
        for filtering in [false, true] {
            let mut b = LinkBridge::new("br-lab").address(MAC.0.to_vec());
            if filtering {
                b = b.vlan_filtering(true);
            }
            assert_eq!(
                new_bridge("br-lab", MAC, filtering),
                emitted(RouteNetlinkMessage::NewLink(b.build()))
            );
        }
        let mut m = LinkMessage::default();
        m.header.index = 9;
        assert_eq!(del_link(9), emitted(RouteNetlinkMessage::DelLink(m)));
    }

    #[test]
    fn vxlan_requests_match_rtnetlink() {
        use crate::vxlan::{Remote, Vxlan};
        use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkFlags, LinkInfo};
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        };
        let vx = Vxlan {
            vni: 100,
            remote: Remote::Group("239.1.1.1".parse().unwrap()),
            dev: Some("eth1".into()),
            local: Some("192.0.2.1".parse().unwrap()),
            port: 4789,
            learning: false,
        };
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes = vec![
            LinkAttribute::IfName("kvx100".into()),
            LinkAttribute::Controller(7),
            LinkAttribute::Mtu(1450),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(100),
                    InfoVxlan::Link(3),
                    InfoVxlan::Local("192.0.2.1".parse().unwrap()),
                    InfoVxlan::Group("239.1.1.1".parse().unwrap()),
                    InfoVxlan::Port(4789),
                    InfoVxlan::Learning(false),
                ])),
            ]),
        ];
        assert_eq!(
            new_vxlan("kvx100", &vx, 7, Some(3), Some(1450)),
            emitted(RouteNetlinkMessage::NewLink(m))
        );
        for dst in ["192.0.2.2", "2001:db8::2"] {
            let dst: IpAddr = dst.parse().unwrap();
            let mut n = NeighbourMessage::default();
            n.header.family = AddressFamily::Bridge;
            n.header.ifindex = 9;
            n.header.state = NeighbourState::Permanent;
            n.header.flags = NeighbourFlags::Own;
            n.attributes = vec![
                NeighbourAttribute::LinkLayerAddress(vec![0; 6]),
                NeighbourAttribute::Destination(match dst {
                    IpAddr::V4(a) => NeighbourAddress::Inet(a),
                    IpAddr::V6(a) => NeighbourAddress::Inet6(a),
                }),
            ];
            assert_eq!(
                fdb_flood(9, &dst),
                emitted(RouteNetlinkMessage::NewNeighbour(n))
            );
        }
    }

    #[test]
    fn port_vlans_match_rtnetlink() {
        let none = BridgeVlanInfoFlags::empty();
        let access = BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged;
        let b = LinkBridgeVlan::new(5).vlan(1, none).build();
        assert_eq!(
            port_vlans(RTM_DELLINK, 5, &[Vlan::One(1, 0)]),
            emitted(RouteNetlinkMessage::DelLink(b))
        );
        let b = LinkBridgeVlan::new(5)
            .vlan(10, access)
            .vlan(20, none)
            .vlan_range_start(100, none)
            .vlan_range_end(4094, none)
            .build();
        let ours = port_vlans(
            RTM_SETLINK,
            5,
            &[
                Vlan::One(10, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED),
                Vlan::One(20, 0),
                Vlan::Range(100, 4094, 0),
            ],
        );
        assert_eq!(ours, emitted(RouteNetlinkMessage::SetLink(b)));
    }

    /// The largest VLAN list a config can give, once merged: every other
    /// VLAN (2,047 single entries) or 1,365 two-VLAN ranges, both well within
    /// an attribute's 64 KiB.
    #[test]
    fn the_longest_merged_vlan_lists_fit_one_attribute() {
        let singles: Vec<Vlan> = (1..=4094).step_by(2).map(|v| Vlan::One(v, 0)).collect();
        let pairs: Vec<Vlan> = (1..=4093)
            .step_by(3)
            .map(|v| Vlan::Range(v, v + 1, 0))
            .collect();
        for list in [singles, pairs] {
            let r = port_vlans(RTM_SETLINK, 5, &list);
            assert!(r.body.len() < 32 * 1024, "{} bytes", r.body.len());
        }
    }

    #[test]
    fn port_flags_match_rtnetlink_for_every_combination() {
        let choices = [None, Some(false), Some(true)];
        for isolated in choices {
            for learning in choices {
                for flooding in choices {
                    let mut b = LinkBridgePort::new(3);
                    if let Some(v) = isolated {
                        b = b.isolated(v);
                    }
                    if let Some(v) = learning {
                        b = b.learning(v);
                    }
                    if let Some(v) = flooding {
                        b = b.flood(v).mcast_flood(v).bcast_flood(v);
                    }
                    assert_eq!(
                        port_flags(3, isolated, learning, flooding),
                        emitted(RouteNetlinkMessage::NewLink(b.build())),
                        "{isolated:?} {learning:?} {flooding:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn host_routes_match_rtnetlink() {
        for addr in ["192.0.2.7", "2001:db8::7"] {
            let addr: IpAddr = addr.parse().unwrap();
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            let build = || {
                RouteMessageBuilder::<IpAddr>::new()
                    .destination_prefix(addr, prefix)
                    .unwrap()
                    .output_interface(12)
                    .table_id(RT_TABLE_MAIN)
                    .protocol(RouteProtocol::Static)
                    .scope(RouteScope::Link)
                    .kind(RouteType::Unicast)
                    .build()
            };
            assert_eq!(
                host_route(RTM_NEWROUTE, addr, 12),
                emitted(RouteNetlinkMessage::NewRoute(build()))
            );
            assert_eq!(
                host_route(RTM_DELROUTE, addr, 12),
                emitted(RouteNetlinkMessage::DelRoute(build()))
            );
        }
        let mut m = netlink_packet_route::route::RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        assert_eq!(
            dump_ipv4_routes(),
            emitted(RouteNetlinkMessage::GetRoute(m.clone()))
        );
        m.header.address_family = AddressFamily::Inet6;
        assert_eq!(
            dump_ipv6_routes(),
            emitted(RouteNetlinkMessage::GetRoute(m))
        );
    }
}
