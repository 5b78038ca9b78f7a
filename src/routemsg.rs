//! Reads the output interfaces of the IPv4 default routes from an
//! RTM_GETROUTE dump: what Debian's qemu-ifup takes from `ip route ls` when no
//! bridge is configured.
//!
//! Like [`crate::linkmsg`], it walks the attributes it needs (table, output
//! interface, next hops) itself; a unit test holds it to
//! netlink-packet-route's parser.

use crate::kernel::{
    RTA_MULTIPATH, RTA_OIF, RTA_TABLE, RTM_NEWROUTE, RTN_UNICAST, RTPROT_RA, RT_TABLE_MAIN,
};
use crate::linkmsg::{u32_of, Attrs};
use crate::nlsock::NLMSG_HDRLEN;

const RTMSG_LEN: usize = 12;
const RTNEXTHOP_LEN: usize = 8;

/// The output interfaces of the default unicast routes of the main table, in
/// the kernel's order; `msgs` are the whole messages of the dump (headers
/// included). Messages that are not routes are skipped.
pub fn default_oifs(msgs: &[Vec<u8>]) -> Result<Vec<u32>, String> {
    defaults(msgs, None)
}

/// As [`default_oifs`], only the default routes learned from router
/// advertisements (protocol `ra`): what turning IPv6 forwarding on drops
/// on an interface whose `accept_ra` is not 2.
pub fn ra_default_oifs(msgs: &[Vec<u8>]) -> Result<Vec<u32>, String> {
    defaults(msgs, Some(RTPROT_RA))
}

fn defaults(msgs: &[Vec<u8>], protocol: Option<u8>) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for msg in msgs {
        if msg.len() < NLMSG_HDRLEN + 4 {
            return Err(format!("a {}-byte message is too short", msg.len()));
        }
        if u16::from_ne_bytes([msg[4], msg[5]]) != RTM_NEWROUTE {
            continue;
        }
        if msg.len() < NLMSG_HDRLEN + RTMSG_LEN {
            return Err(format!("a {}-byte route message is too short", msg.len()));
        }
        let Some((0, attrs)) = main_unicast(msg) else {
            continue;
        };
        if protocol.is_some_and(|p| msg[NLMSG_HDRLEN + 5] != p) {
            continue;
        }
        for (kind, v) in Attrs(attrs) {
            match kind {
                RTA_OIF => out.extend(u32_of(v)),
                RTA_MULTIPATH => next_hops(v, &mut out),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A unicast route of the main table: its destination's prefix length and
/// its attributes; `None` for any other message.
fn main_unicast(msg: &[u8]) -> Option<(u8, &[u8])> {
    if msg.len() < NLMSG_HDRLEN + RTMSG_LEN || u16::from_ne_bytes([msg[4], msg[5]]) != RTM_NEWROUTE
    {
        return None;
    }
    let len = (u32_of(msg).unwrap_or(0) as usize).min(msg.len());
    let rtm = &msg[NLMSG_HDRLEN..NLMSG_HDRLEN + RTMSG_LEN];
    let (dst_len, header_table, rtype) = (rtm[1], rtm[4], rtm[7]);
    let attrs = msg.get(NLMSG_HDRLEN + RTMSG_LEN..len).unwrap_or(&[]);
    // Tables above 255 only fit RTA_TABLE; the kernel always sends it.
    let table = Attrs(attrs)
        .find(|&(k, _)| k == RTA_TABLE)
        .and_then(|(_, v)| u32_of(v))
        .unwrap_or(u32::from(header_table));
    (table == RT_TABLE_MAIN && rtype == RTN_UNICAST).then_some((dst_len, attrs))
}

/// The IPv4 unicast routes of the main table with a destination (the
/// default route aside): destination, prefix length, output interface.
pub fn ipv4_routes(msgs: &[Vec<u8>]) -> Vec<(std::net::Ipv4Addr, u8, Option<u32>)> {
    let mut out = Vec::new();
    for msg in msgs {
        let Some((dst_len @ 1.., attrs)) = main_unicast(msg) else {
            continue;
        };
        let dst = Attrs(attrs)
            .find(|&(k, _)| k == crate::kernel::RTA_DST)
            .and_then(|(_, v)| <[u8; 4]>::try_from(v).ok())
            .map(std::net::Ipv4Addr::from);
        let oif = Attrs(attrs)
            .find(|&(k, _)| k == RTA_OIF)
            .and_then(|(_, v)| u32_of(v));
        out.extend(dst.map(|d| (d, dst_len, oif)));
    }
    out
}

/// The output interface of one RTM_NEWROUTE message (whole, header
/// included), as the answer to a route get has it.
pub fn oif(msg: &[u8]) -> Option<u32> {
    if msg.len() < NLMSG_HDRLEN + RTMSG_LEN || u16::from_ne_bytes([msg[4], msg[5]]) != RTM_NEWROUTE
    {
        return None;
    }
    let len = (u32_of(msg).unwrap_or(0) as usize).min(msg.len());
    Attrs(msg.get(NLMSG_HDRLEN + RTMSG_LEN..len)?)
        .find(|&(k, _)| k == RTA_OIF)
        .and_then(|(_, v)| u32_of(v))
}

/// The interfaces of a multipath route's `struct rtnexthop` list; stops at
/// the first malformed entry.
fn next_hops(mut v: &[u8], out: &mut Vec<u32>) {
    while v.len() >= RTNEXTHOP_LEN {
        let len = usize::from(u16::from_ne_bytes([v[0], v[1]]));
        if len < RTNEXTHOP_LEN || len > v.len() {
            return;
        }
        out.extend(u32_of(&v[4..8]));
        v = v.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::route::{
        RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteType,
    };
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

    /// The same reading through netlink-packet-route: the oracle.
    fn oracle(routes: &[RouteMessage]) -> Vec<u32> {
        let mut out = Vec::new();
        for r in routes {
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(r.header.table as u32);
            if r.header.destination_prefix_length != 0
                || table != RT_TABLE_MAIN
                || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            for a in &r.attributes {
                match a {
                    RouteAttribute::Oif(i) => out.push(*i),
                    RouteAttribute::MultiPath(hops) => {
                        out.extend(hops.iter().map(|h| h.interface_index))
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn wire(m: RouteMessage) -> Vec<u8> {
        crate::linkmsg::tests::encode(RouteNetlinkMessage::NewRoute(m))
    }

    fn route(dst_len: u8, table: u8, kind: RouteType, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = dst_len;
        r.header.table = table;
        r.header.kind = kind;
        r.attributes = attrs;
        r
    }

    fn hop(index: u32, gw: [u8; 4]) -> RouteNextHop {
        let mut h = RouteNextHop::default();
        h.interface_index = index;
        h.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gw.into()))];
        h
    }

    #[test]
    fn agrees_with_netlink_packet_route() {
        use RouteAttribute::{Oif, Table};
        let gw = RouteAttribute::Gateway(RouteAddress::Inet([192, 0, 2, 1].into()));
        let routes = vec![
            // default via 192.0.2.1 dev #2
            route(
                0,
                254,
                RouteType::Unicast,
                vec![Table(254), gw.clone(), Oif(2)],
            ),
            // a subnet route: not a default
            route(24, 254, RouteType::Unicast, vec![Table(254), Oif(3)]),
            // a default in another table, one in a table above 255
            route(0, 100, RouteType::Unicast, vec![Table(100), Oif(4)]),
            route(0, 252, RouteType::Unicast, vec![Table(1000), Oif(5)]),
            // an unreachable default
            route(0, 254, RouteType::Unreachable, vec![Table(254)]),
            // a multipath default over #6 and #7
            route(
                0,
                254,
                RouteType::Unicast,
                vec![
                    Table(254),
                    RouteAttribute::MultiPath(vec![
                        hop(6, [192, 0, 2, 1]),
                        hop(7, [198, 51, 100, 1]),
                    ]),
                ],
            ),
            // no RTA_TABLE: the header's table counts
            route(0, 254, RouteType::Unicast, vec![Oif(8)]),
        ];
        let msgs: Vec<Vec<u8>> = routes.iter().cloned().map(wire).collect();
        assert_eq!(default_oifs(&msgs).unwrap(), oracle(&routes));
        assert_eq!(default_oifs(&msgs).unwrap(), [2, 6, 7, 8]);
    }

    /// A dump of this machine's kernel (fuzz/seeds/linkmsg/route-*): a
    /// multipath default over d1 (#3) and d2 (#5), a second default through
    /// d2 with metric 50, a default in table 1000 and a subnet route.
    #[test]
    fn agrees_on_a_real_kernel_dump() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/linkmsg");
        let msgs: Vec<Vec<u8>> = [
            "route-default-table-1000",
            "route-default-multipath",
            "route-default-metric",
            "route-subnet",
        ]
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
        let decoded: Vec<RouteMessage> = msgs
            .iter()
            .map(|b| {
                match NetlinkMessage::<RouteNetlinkMessage>::deserialize(b)
                    .unwrap()
                    .payload
                {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => r,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(default_oifs(&msgs).unwrap(), oracle(&decoded));
        assert_eq!(default_oifs(&msgs).unwrap(), [3, 5, 5]);
    }

    #[test]
    fn router_advertisement_defaults_by_their_protocol() {
        use netlink_packet_route::route::RouteProtocol;
        let v6 = |oif: u32, protocol| {
            let mut r = route(0, 254, RouteType::Unicast, vec![RouteAttribute::Oif(oif)]);
            r.header.address_family = AddressFamily::Inet6;
            r.header.protocol = protocol;
            r
        };
        let mut subnet = v6(9, RouteProtocol::Ra);
        subnet.header.destination_prefix_length = 64;
        let routes = [
            v6(2, RouteProtocol::Ra),
            v6(3, RouteProtocol::Static),
            v6(4, RouteProtocol::Boot),
            subnet,
            v6(5, RouteProtocol::Ra),
        ];
        let msgs: Vec<Vec<u8>> = routes.iter().cloned().map(wire).collect();
        assert_eq!(ra_default_oifs(&msgs).unwrap(), [2, 5]);
        assert_eq!(default_oifs(&msgs).unwrap(), [2, 3, 4, 5]);
    }

    #[test]
    fn other_messages_are_skipped_and_garbage_never_panics() {
        let full = wire(route(
            0,
            254,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(2)],
        ));
        let mut link = full.clone();
        link[4] = 16; // RTM_NEWLINK
        assert_eq!(default_oifs(&[link]).unwrap(), Vec::<u32>::new());
        for n in 0..full.len() {
            let _ = default_oifs(&[full[..n].to_vec()]);
        }
        assert!(default_oifs(&[vec![0u8; 8]]).is_err());
        let mut hops = wire(route(
            0,
            254,
            RouteType::Unicast,
            vec![RouteAttribute::MultiPath(vec![hop(6, [192, 0, 2, 1])])],
        ));
        // an rtnexthop claiming more than is there
        let at = NLMSG_HDRLEN + RTMSG_LEN + 4;
        hops[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(default_oifs(&[hops]).unwrap(), Vec::<u32>::new());
    }
}
