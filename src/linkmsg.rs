//! Reads the few attributes kvmnet needs straight from an RTM_NEWLINK message
//! (why not netlink-packet-route's parser: docs/design.md). The admin command,
//! which needs more, uses the full parser; a unit test holds this one to the
//! same answers, and the `linkmsg` fuzz target runs it on corrupt input.

use crate::kernel::{
    IFF_TAP, IFF_UP, IFLA_ADDRESS, IFLA_BR_VLAN_DEFAULT_PVID, IFLA_BR_VLAN_FILTERING, IFLA_CARRIER,
    IFLA_IFALIAS, IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MASTER,
    IFLA_MTU, IFLA_TUN_GROUP, IFLA_TUN_OWNER, IFLA_TUN_PERSIST, IFLA_TUN_TYPE, IFLA_VXLAN_ID,
    NLA_TYPE_MASK, RTM_NEWLINK,
};
use crate::link::{Link, LinkKind, TunInfo};
use crate::mac::Mac;
use crate::nlsock::NLMSG_HDRLEN;

const IFINFOMSG_LEN: usize = 16;

/// The attributes in `buf` as (type, payload); ends at the first malformed one.
pub(crate) struct Attrs<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        // Attributes are padded to 4 bytes; the last one may not be.
        self.0 = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, &b[4..len]))
    }
}

pub(crate) fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated kernel string; bytes that are not UTF-8 are replaced
/// (no valid tap or bridge name has any, and the name checks refuse them).
fn string_of(v: &[u8]) -> String {
    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// Parses one whole netlink message (header included) that answers an
/// RTM_GETLINK.
pub fn parse_link(msg: &[u8]) -> Result<Link, String> {
    let start = NLMSG_HDRLEN + IFINFOMSG_LEN;
    if msg.len() < start {
        return Err(format!("a {}-byte link message is too short", msg.len()));
    }
    let kind = u16::from_ne_bytes([msg[4], msg[5]]);
    if kind != RTM_NEWLINK {
        return Err(format!(
            "expected a link (type {RTM_NEWLINK}), got type {kind}"
        ));
    }
    let len = (u32_of(msg).unwrap_or(0) as usize).min(msg.len());
    let index = u32_of(&msg[NLMSG_HDRLEN + 4..]).unwrap_or(0);
    let flags = u32_of(&msg[NLMSG_HDRLEN + 8..]).unwrap_or(0);
    let mut link = Link {
        index,
        name: String::new(),
        kind: LinkKind::Unknown,
        mtu: 0,
        mac: None,
        master: None,
        up: flags & IFF_UP != 0,
        // IFF_LOWER_UP is reported only while the link is up; QEMU's
        // tap is down when its script runs.
        carrier: false,
        alias: None,
        vlan_filtering: None,
    };
    for (kind, v) in Attrs(msg.get(start..len).unwrap_or(&[])) {
        match kind {
            IFLA_IFNAME => link.name = string_of(v),
            IFLA_MTU => link.mtu = u32_of(v).unwrap_or(0),
            IFLA_CARRIER => link.carrier = v.first().is_some_and(|&b| b != 0),
            IFLA_ADDRESS => link.mac = Mac::from_slice(v),
            IFLA_MASTER => link.master = u32_of(v).filter(|&i| i != 0),
            IFLA_IFALIAS => link.alias = Some(string_of(v)).filter(|a| !a.is_empty()),
            IFLA_LINKINFO => link_info(v, &mut link),
            _ => {}
        }
    }
    Ok(link)
}

fn link_info(v: &[u8], link: &mut Link) {
    let mut kind = None;
    let mut data: &[u8] = &[];
    for (k, v) in Attrs(v) {
        match k {
            IFLA_INFO_KIND => kind = Some(string_of(v)),
            IFLA_INFO_DATA => data = v,
            _ => {}
        }
    }
    link.kind = match kind.as_deref() {
        None => LinkKind::Unknown,
        Some("tun") => {
            let mut tun = TunInfo::default();
            for (k, v) in Attrs(data) {
                match k {
                    IFLA_TUN_OWNER => tun.owner = u32_of(v),
                    IFLA_TUN_GROUP => tun.group = u32_of(v),
                    IFLA_TUN_TYPE => tun.tap_mode = v.first() == Some(&IFF_TAP),
                    IFLA_TUN_PERSIST => tun.persist = v.first().is_some_and(|&b| b != 0),
                    _ => {}
                }
            }
            LinkKind::Tun(tun)
        }
        Some("bridge") => {
            // A kernel without CONFIG_BRIDGE_VLAN_FILTERING still reports
            // vlan_filtering (as 0) but never a default PVID: that is the
            // sign of support.
            let mut filtering = None;
            let mut supported = false;
            for (k, v) in Attrs(data) {
                match k {
                    IFLA_BR_VLAN_FILTERING => filtering = v.first().map(|&b| b != 0),
                    IFLA_BR_VLAN_DEFAULT_PVID => supported = true,
                    _ => {}
                }
            }
            link.vlan_filtering = filtering.filter(|_| supported);
            LinkKind::Bridge
        }
        Some("vxlan") => {
            let vni = Attrs(data)
                .find(|(k, _)| *k == IFLA_VXLAN_ID)
                .and_then(|(_, v)| u32_of(v));
            match vni {
                Some(vni) => LinkKind::Vxlan(vni),
                None => LinkKind::Other("vxlan".into()),
            }
        }
        Some(other) => LinkKind::Other(other.to_owned()),
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::link::{
        InfoBridge, InfoData, InfoKind, InfoTun, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    };
    use netlink_packet_route::RouteNetlinkMessage;

    /// The same reading through netlink-packet-route: the oracle.
    fn oracle(msg: LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: LinkKind::Unknown,
            mtu: 0,
            mac: None,
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            carrier: false,
            alias: None,
            vlan_filtering: None,
        };
        let mut tun = TunInfo::default();
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Mtu(m) => link.mtu = m,
                LinkAttribute::Carrier(c) => link.carrier = c != 0,
                LinkAttribute::Address(a) => link.mac = Mac::from_slice(&a),
                LinkAttribute::Controller(i) if i != 0 => link.master = Some(i),
                LinkAttribute::IfAlias(a) if !a.is_empty() => link.alias = Some(a),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(InfoKind::Tun) => {
                                link.kind = LinkKind::Tun(TunInfo::default())
                            }
                            LinkInfo::Kind(InfoKind::Bridge) => link.kind = LinkKind::Bridge,
                            LinkInfo::Kind(k) => link.kind = LinkKind::Other(k.to_string()),
                            LinkInfo::Data(InfoData::Tun(nlas)) => parse_tun(&nlas, &mut tun),
                            LinkInfo::Data(InfoData::Bridge(infos)) => {
                                // A kernel without CONFIG_BRIDGE_VLAN_FILTERING
                                // still reports vlan_filtering (as 0) but never
                                // a default PVID: that is the sign of support.
                                let supported = infos
                                    .iter()
                                    .any(|i| matches!(i, InfoBridge::VlanDefaultPvid(_)));
                                link.vlan_filtering = infos
                                    .iter()
                                    .find_map(|i| match i {
                                        InfoBridge::VlanFiltering(v) => Some(*v),
                                        _ => None,
                                    })
                                    .filter(|_| supported);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if let LinkKind::Tun(t) = &mut link.kind {
            *t = tun;
        }
        link
    }

    fn parse_tun(nlas: &[InfoTun], out: &mut TunInfo) {
        use netlink_packet_core::Nla;
        for nla in nlas {
            let mut v = vec![0u8; nla.value_len()];
            nla.emit_value(&mut v);
            let u32v = || {
                v.get(..4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            };
            match nla.kind() {
                IFLA_TUN_OWNER => out.owner = u32v(),
                IFLA_TUN_GROUP => out.group = u32v(),
                IFLA_TUN_TYPE => out.tap_mode = v.first() == Some(&IFF_TAP),
                IFLA_TUN_PERSIST => out.persist = v.first().is_some_and(|b| *b != 0),
                _ => {}
            }
        }
    }

    fn wire(m: LinkMessage) -> Vec<u8> {
        encode(RouteNetlinkMessage::NewLink(m))
    }

    /// One answer message as the kernel sends it, built by
    /// netlink-packet-route (the oracle the readers are held to).
    pub(crate) fn encode(payload: RouteNetlinkMessage) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(payload));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        out
    }

    fn tun_attr(kind: u16, v: &[u8]) -> InfoTun {
        InfoTun::Other(netlink_packet_core::DefaultNla::new(kind, v.to_vec()))
    }

    /// The links the kernel describes, built with netlink-packet-route and
    /// read back by both parsers: they must agree.
    #[test]
    fn agrees_with_netlink_packet_route() {
        let mut tap = LinkMessage::default();
        tap.header.index = 7;
        tap.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        tap.attributes = vec![
            LinkAttribute::IfName("vm0".into()),
            LinkAttribute::Mtu(9000),
            LinkAttribute::Carrier(1),
            LinkAttribute::Address(vec![0xfe, 0x54, 0, 1, 2, 3]),
            LinkAttribute::Controller(3),
            LinkAttribute::IfAlias("kvmnet:v1 created attached=br0".into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Tun),
                LinkInfo::Data(InfoData::Tun(vec![
                    tun_attr(IFLA_TUN_OWNER, &4242u32.to_ne_bytes()),
                    tun_attr(IFLA_TUN_GROUP, &100u32.to_ne_bytes()),
                    tun_attr(IFLA_TUN_TYPE, &[IFF_TAP]),
                    tun_attr(IFLA_TUN_PERSIST, &[1]),
                ])),
            ]),
        ];
        let mut bridge = LinkMessage::default();
        bridge.header.index = 3;
        bridge.attributes = vec![
            LinkAttribute::IfName("br0".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(vec![
                    InfoBridge::VlanFiltering(true),
                    InfoBridge::VlanDefaultPvid(1),
                ])),
            ]),
        ];
        let mut old_bridge = bridge.clone();
        old_bridge.attributes[2] = LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(false)])),
        ]);
        let mut veth = LinkMessage::default();
        veth.header.index = 9;
        veth.attributes = vec![
            LinkAttribute::IfName("v".into()),
            LinkAttribute::Controller(0),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let mut nic = LinkMessage::default();
        nic.header.index = 2;
        nic.attributes = vec![LinkAttribute::IfName("eth0".into())];
        for m in [tap, bridge, old_bridge, veth, nic] {
            let ours = parse_link(&wire(m.clone())).unwrap();
            assert_eq!(ours, oracle(m));
        }
    }

    /// Real answers of this machine's kernel (fuzz/seeds/linkmsg/, captured
    /// with one RTM_GETLINK each): both parsers read the same link.
    #[test]
    fn agrees_on_real_kernel_answers() {
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/linkmsg");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let decode = |b: &[u8]| match NetlinkMessage::<RouteNetlinkMessage>::deserialize(b)
            .unwrap()
            .payload
        {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => oracle(m),
            other => panic!("{other:?}"),
        };
        for name in [
            "tap-persistent-owned-attached",
            "bridge",
            "veth",
            "loopback",
        ] {
            let bytes = read(name);
            assert_eq!(parse_link(&bytes).unwrap(), decode(&bytes), "{name}");
        }
        let tap = parse_link(&read("tap-persistent-owned-attached")).unwrap();
        assert!(tap.is_tap());
        assert_eq!(tap.tun().unwrap().owner, Some(4242));
        assert!(tap.tun().unwrap().persist);
        assert!(tap.master.is_some());
        assert_eq!(
            tap.alias.as_deref(),
            Some("kvmnet:v1 attached=br0 up mtu=1500")
        );
        assert!(parse_link(&read("bridge")).unwrap().is_bridge());
        assert_eq!(
            parse_link(&read("veth")).unwrap().kind,
            LinkKind::Other("veth".into())
        );
        assert_eq!(
            parse_link(&read("loopback")).unwrap().kind,
            LinkKind::Unknown
        );
    }

    #[test]
    fn truncated_or_garbage_never_panics() {
        let mut tap = LinkMessage::default();
        tap.attributes = vec![
            LinkAttribute::IfName("vm0".into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Tun)]),
        ];
        let full = wire(tap);
        for n in 0..full.len() {
            let _ = parse_link(&full[..n]);
        }
        let mut bad = full.clone();
        bad[NLMSG_HDRLEN + IFINFOMSG_LEN] = 0xff; // attribute length past the end
        assert_eq!(parse_link(&bad).unwrap().name, "");
        assert!(parse_link(&[0u8; 8]).is_err());
    }
}
