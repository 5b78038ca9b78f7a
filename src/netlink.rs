//! rtnetlink: one blocking socket ([`crate::nlsock`]), look-ups by name or
//! index only (a dump would make ifup's cost grow with the number of interfaces
//! on the host), and every wait for an answer bounded so that a lost reply can
//! never hang a VM start (QEMU waits for its script with no timeout).

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_route::link::{BridgeVlanInfoFlags, LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::kernel;
use crate::link::{Link, LinkChange, PortVlan};
use crate::mac::Mac;
use crate::name::{BridgeName, IfName};
use crate::nlreq::{self, Request, SetLink, Vlan};
use crate::nlsock::{Channel, WireError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use crate::settings::VlanRange;

/// Long enough for a loaded host (deleting a link waits for an RCU grace
/// period; docs/performance.md has its cost), short enough that a wedged
/// request fails the VM start visibly.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(io::Error),
    #[error("{op}: the kernel did not answer within {} s; check `dmesg` for a stuck driver", TIMEOUT.as_secs())]
    Timeout { op: String },
    #[error("{op}: {}", crate::os_error::describe(source))]
    Kernel { op: String, source: io::Error },
    /// sendmsg/recvmsg on the socket failed: no answer from the kernel.
    #[error(
        "{op}: the netlink socket failed: {}",
        crate::os_error::describe(source)
    )]
    Io { op: String, source: io::Error },
    #[error("{op}: unexpected netlink reply: {msg}")]
    Protocol { op: String, msg: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, if it did.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A link from a listing, with what only the admin command reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub link: Link,
    /// A bridge's own nf_call_* switches that are on ("iptables", ...).
    pub nf_call: Vec<&'static str>,
}

pub struct Netlink {
    chan: RefCell<Channel>,
}

/// How a request is answered: `ACK` for changes, a dump for listings.
const CHANGE: u16 = NLM_F_ACK;
const CREATE: u16 = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

impl Netlink {
    pub fn open() -> Result<Netlink, NetlinkError> {
        let chan = Channel::open(netlink_sys::protocols::NETLINK_ROUTE, TIMEOUT)
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink {
            chan: RefCell::new(chan),
        })
    }

    fn call(
        &self,
        op: impl Fn() -> String,
        req: Request,
        flags: u16,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        // A dump the kernel marks as interrupted (the list changed while it
        // was read) is read again, as `ip` advises; a change is never resent.
        let mut retries = if flags & NLM_F_DUMP == NLM_F_DUMP {
            2
        } else {
            0
        };
        loop {
            return match self.chan.borrow_mut().request(&req, flags) {
                Ok(answer) => Ok(answer),
                Err(WireError::Interrupted) if retries > 0 => {
                    retries -= 1;
                    continue;
                }
                Err(WireError::Interrupted) => Err(NetlinkError::Protocol {
                    op: op(),
                    msg: "the list kept changing while the kernel sent it; try again".into(),
                }),
                Err(WireError::Kernel(source)) => Err(NetlinkError::Kernel { op: op(), source }),
                Err(WireError::Io(source)) => Err(NetlinkError::Io { op: op(), source }),
                Err(WireError::Timeout) => Err(NetlinkError::Timeout { op: op() }),
                Err(WireError::Protocol(msg)) => Err(NetlinkError::Protocol { op: op(), msg }),
            };
        }
    }

    fn change(
        &self,
        op: impl Fn() -> String,
        req: Request,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        self.call(op, req, flags).map(drop)
    }

    /// Looks one link up by name with a single non-dump RTM_GETLINK.
    pub fn link_by_name(&self, name: &impl IfName) -> Result<Option<Link>, NetlinkError> {
        self.get_one(
            || format!("looking up {name}"),
            nlreq::get_link(Some(name.as_str()), 0),
        )
    }

    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetlinkError> {
        self.get_one(
            || format!("looking up interface #{index}"),
            nlreq::get_link(None, index),
        )
    }

    fn get_one(&self, op: impl Fn() -> String, req: Request) -> Result<Option<Link>, NetlinkError> {
        match self.call(&op, req, 0) {
            // A missing link is ENODEV; an answer without a link is not one.
            Ok(answer) => match answer.first() {
                Some(bytes) => crate::linkmsg::parse_link(bytes)
                    .map(Some)
                    .map_err(|msg| NetlinkError::Protocol { op: op(), msg }),
                None => Err(NetlinkError::Protocol {
                    op: op(),
                    msg: "no link in the answer".into(),
                }),
            },
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn set_link(
        &self,
        index: u32,
        change: &LinkChange,
        what: &str,
    ) -> Result<(), NetlinkError> {
        if change.is_empty() {
            return Ok(());
        }
        let req = nlreq::set_link(
            index,
            &SetLink {
                mtu: change.mtu,
                mac: change.mac,
                alias: change.alias.as_deref(),
                up: change.up,
                master: change.master,
            },
        );
        self.change(|| what.to_owned(), req, CHANGE)
    }

    /// Creates an up bridge with a fixed address. Returns `false` when another
    /// process created the name first (EEXIST): the caller re-checks what it is.
    pub fn create_bridge(
        &self,
        name: &BridgeName,
        mac: Mac,
        vlan_filtering: bool,
    ) -> Result<bool, NetlinkError> {
        // A bridge whose address was never set follows its lowest port address,
        // so it would change as guests come and go; a set address stays put.
        match self.change(
            || format!("creating bridge {name}"),
            nlreq::new_bridge(name.as_str(), mac, vlan_filtering),
            CREATE,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a link (`NLM_F_EXCL`: an existing one is EEXIST, which the
    /// caller judges).
    pub fn create_link(&self, op: impl Fn() -> String, req: Request) -> Result<(), NetlinkError> {
        self.change(op, req, CREATE)
    }

    /// Adds `dst` to the flood entry of the vxlan device `index` (an entry
    /// already there is kept: NLM_F_APPEND).
    pub fn fdb_append_flood(
        &self,
        index: u32,
        dst: IpAddr,
        name: &str,
    ) -> Result<(), NetlinkError> {
        self.change(
            || format!("adding VXLAN peer {dst} to {name}"),
            nlreq::fdb_flood(index, &dst),
            NLM_F_ACK | NLM_F_CREATE | kernel::NLM_F_APPEND,
        )
    }

    /// The interface the kernel would send to `addr` on; `None` when it has
    /// no route there (ENETUNREACH, EHOSTUNREACH).
    pub fn route_to(&self, addr: IpAddr) -> Result<Option<u32>, NetlinkError> {
        let op = || format!("looking up the route to {addr}");
        match self.call(op, nlreq::get_route(addr), 0) {
            Ok(answer) => Ok(answer.iter().find_map(|m| crate::routemsg::oif(m))),
            Err(e) if matches!(e.errno(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Turns on neighbour suppression and off learning on the bridge port
    /// `port` (EVPN).
    pub fn set_port_neigh_suppress(&self, port: u32, name: &str) -> Result<(), NetlinkError> {
        self.change(
            || format!("setting neighbour suppression on {name}"),
            nlreq::port_neigh_suppress(port),
            CHANGE,
        )
    }

    /// Deletes a link; one that is already gone counts as deleted.
    pub fn delete_link(&self, index: u32, what: &str) -> Result<(), NetlinkError> {
        match self.change(|| what.to_owned(), nlreq::del_link(index), CHANGE) {
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Makes a port's VLANs exactly `pvid` (untagged) plus `trunk` (tagged):
    /// the bridge's default VLAN 1, which every new port gets, is removed
    /// unless asked for. One RTM_SETLINK (AF_BRIDGE) for the additions.
    pub fn set_port_vlans(
        &self,
        port: u32,
        port_name: &str,
        pvid: Option<u16>,
        trunk: &[VlanRange],
    ) -> Result<(), NetlinkError> {
        let wants =
            |v: u16| pvid == Some(v) || trunk.iter().any(|r| (r.first..=r.last).contains(&v));
        if !wants(1) {
            match self.change(
                || format!("removing default VLAN 1 from {port_name}"),
                nlreq::port_vlans(kernel::RTM_DELLINK, port, &[Vlan::One(1, 0)]),
                CHANGE,
            ) {
                // not there (bridge default_pvid 0 or another value): fine
                Err(e) if e.errno() == Some(libc::ENOENT) || e.errno() == Some(libc::EINVAL) => {}
                r => r?,
            }
        }
        let access = kernel::BRIDGE_VLAN_INFO_PVID | kernel::BRIDGE_VLAN_INFO_UNTAGGED;
        let vlans: Vec<Vlan> = pvid
            .map(|v| Vlan::One(v, access))
            .into_iter()
            .chain(trunk.iter().map(|r| {
                if r.first == r.last {
                    Vlan::One(r.first, 0)
                } else {
                    Vlan::Range(r.first, r.last, 0)
                }
            }))
            .collect();
        if vlans.is_empty() {
            return Ok(());
        }
        self.change(
            || format!("setting VLANs on {port_name}"),
            nlreq::port_vlans(kernel::RTM_SETLINK, port, &vlans),
            CHANGE,
        )
    }

    /// Bridge port flags; `None` leaves a flag as the bridge made it.
    pub fn set_port_flags(
        &self,
        port: u32,
        port_name: &str,
        isolated: Option<bool>,
        learning: Option<bool>,
        flooding: Option<bool>,
    ) -> Result<(), NetlinkError> {
        if isolated.is_none() && learning.is_none() && flooding.is_none() {
            return Ok(());
        }
        self.change(
            || format!("setting bridge port flags on {port_name}"),
            nlreq::port_flags(port, isolated, learning, flooding),
            CHANGE,
        )
    }

    /// Adds a host route to `addr` via `oif`. `Ok(false)` when that exact
    /// route exists already (EEXIST).
    pub fn add_host_route(&self, addr: IpAddr, oif: u32, dev: &str) -> Result<bool, NetlinkError> {
        match self.change(
            || format!("adding a route to {addr} via {dev}"),
            nlreq::host_route(kernel::RTM_NEWROUTE, addr, oif),
            CREATE,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/len` to interface `index`; `Ok(false)` when it has it
    /// already (EEXIST).
    pub fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        len: u8,
        dev: &str,
    ) -> Result<bool, NetlinkError> {
        match self.change(
            || format!("adding {addr}/{len} to {dev}"),
            nlreq::new_addr(index, addr, len),
            CREATE,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the host route to `addr` via `oif`; a missing one is fine.
    pub fn del_host_route(&self, addr: IpAddr, oif: u32, dev: &str) -> Result<(), NetlinkError> {
        match self.change(
            || format!("removing the route to {addr} via {dev}"),
            nlreq::host_route(kernel::RTM_DELROUTE, addr, oif),
            CHANGE,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::ESRCH) | Some(libc::ENODEV)) => Ok(()),
            r => r,
        }
    }

    /// The ports of the bridge with ifindex `bridge`. A dump the kernel
    /// filters by master; kvmnet filters again, for kernels that ignore the
    /// filter.
    pub fn ports_of(&self, bridge: u32) -> Result<Vec<Link>, NetlinkError> {
        let op = || format!("listing the ports of interface #{bridge}");
        let answer = self.call(op, nlreq::dump_ports(bridge), NLM_F_DUMP)?;
        let mut out = Vec::new();
        for bytes in answer {
            let link = crate::linkmsg::parse_link(&bytes)
                .map_err(|msg| NetlinkError::Protocol { op: op(), msg })?;
            if link.master == Some(bridge) {
                out.push(link);
            }
        }
        Ok(out)
    }

    /// Every link, read both ways: what kvmnet needs ([`Link`]) and the whole
    /// message. A dump, for the admin command only (never on the ifup path,
    /// whose cost must not grow with the number of interfaces).
    pub fn dump_links(&self) -> Result<Vec<Listed>, NetlinkError> {
        let msgs =
            self.dump_links_with(|| "listing interfaces".to_owned(), nlreq::dump_links(false))?;
        Ok(msgs
            .into_iter()
            .map(|(link, m)| Listed {
                nf_call: if link.is_bridge() {
                    bridge_nf_call(&m)
                } else {
                    Vec::new()
                },
                link,
            })
            .collect())
    }

    fn dump_links_with(
        &self,
        op: impl Fn() -> String,
        req: Request,
    ) -> Result<Vec<(Link, LinkMessage)>, NetlinkError> {
        let answer = self.call(&op, req, NLM_F_DUMP)?;
        let protocol = |msg: String| NetlinkError::Protocol { op: op(), msg };
        let mut out = Vec::with_capacity(answer.len());
        for bytes in answer {
            let link = crate::linkmsg::parse_link(&bytes).map_err(protocol)?;
            match decode(&bytes).map_err(protocol)? {
                RouteNetlinkMessage::NewLink(m) => out.push((link, m)),
                other => return Err(protocol(format!("expected a link, got {other:?}"))),
            }
        }
        Ok(out)
    }

    /// Every link: a dump, for the admin command only.
    pub fn all_links(&self) -> Result<Vec<Link>, NetlinkError> {
        Ok(self.dump_links()?.into_iter().map(|l| l.link).collect())
    }

    /// VLANs of every bridge port, by port index: (vid, pvid, untagged). A
    /// dump, for the admin command only.
    pub fn port_vlans(
        &self,
    ) -> Result<std::collections::HashMap<u32, Vec<PortVlan>>, NetlinkError> {
        use netlink_packet_route::link::AfSpecBridge;
        let msgs = self.dump_links_with(
            || "listing bridge port VLANs".to_owned(),
            nlreq::dump_links(true),
        )?;
        let mut out = std::collections::HashMap::new();
        for (_, m) in msgs {
            let index = m.header.index;
            for a in m.attributes {
                if let LinkAttribute::AfSpecBridge(specs) = a {
                    let vlans: Vec<PortVlan> = specs
                        .iter()
                        .filter_map(|s| match s {
                            AfSpecBridge::VlanInfo(v) => Some(PortVlan {
                                vid: v.vid,
                                pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                                untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                            }),
                            _ => None,
                        })
                        .collect();
                    out.insert(index, vlans);
                }
            }
        }
        Ok(out)
    }

    /// Output interfaces of the IPv4 default routes in the main table, in the
    /// kernel's order (what Debian's qemu-ifup reads from `ip route ls`). This is
    /// a route dump, used only when no bridge is configured.
    pub fn default_route_oifs(&self) -> Result<Vec<u32>, NetlinkError> {
        let op = || "reading the default route".to_owned();
        let answer = self.call(op, nlreq::dump_ipv4_routes(), NLM_F_DUMP)?;
        crate::routemsg::default_oifs(&answer)
            .map_err(|msg| NetlinkError::Protocol { op: op(), msg })
    }

    /// Output interfaces of the IPv6 default routes learned from router
    /// advertisements. A dump, for the admin command only.
    pub fn ra_default_oifs(&self) -> Result<Vec<u32>, NetlinkError> {
        let op = || "reading the IPv6 default routes".to_owned();
        let answer = self.call(op, nlreq::dump_ipv6_routes(), NLM_F_DUMP)?;
        crate::routemsg::ra_default_oifs(&answer)
            .map_err(|msg| NetlinkError::Protocol { op: op(), msg })
    }

    /// The IPv4 routes of the main table but the default one: destination,
    /// prefix length, output interface. A dump, for the admin command only.
    pub fn ipv4_routes(&self) -> Result<Vec<(std::net::Ipv4Addr, u8, Option<u32>)>, NetlinkError> {
        let op = || "listing the IPv4 routes".to_owned();
        let answer = self.call(op, nlreq::dump_ipv4_routes(), NLM_F_DUMP)?;
        Ok(crate::routemsg::ipv4_routes(&answer))
    }

    /// A traffic-control request ([`crate::shape`]): the messages of its
    /// answer, undecoded.
    pub(crate) fn tc(
        &self,
        op: impl Fn() -> String,
        req: Request,
        flags: u16,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.call(op, req, flags)
    }
}

/// A bridge's own nf_call_* switches that are on (a bridge attribute the
/// runtime does not read).
fn bridge_nf_call(msg: &LinkMessage) -> Vec<&'static str> {
    use netlink_packet_route::link::{InfoBridge, InfoData, LinkInfo};
    let mut out = Vec::new();
    for a in &msg.attributes {
        let LinkAttribute::LinkInfo(infos) = a else {
            continue;
        };
        for i in infos {
            let LinkInfo::Data(InfoData::Bridge(b)) = i else {
                continue;
            };
            for x in b {
                match x {
                    InfoBridge::NfCallIpTables(true) => out.push("iptables"),
                    InfoBridge::NfCallIp6Tables(true) => out.push("ip6tables"),
                    InfoBridge::NfCallArpTables(true) => out.push("arptables"),
                    _ => {}
                }
            }
        }
    }
    out
}

/// The full netlink-packet-route reading of one answer message, for the
/// admin command and the default-route fallback.
fn decode(bytes: &[u8]) -> Result<RouteNetlinkMessage, String> {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(m),
            ..
        }) => Ok(m),
        Ok(other) => Err(format!(
            "unexpected message type {}",
            other.header.message_type
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{InfoBridge, InfoData, InfoKind, LinkInfo};

    #[test]
    fn nf_call_switches_in_a_bridge_message() {
        let msg = |data: Vec<InfoBridge>| {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Bridge),
                LinkInfo::Data(InfoData::Bridge(data)),
            ]));
            m
        };
        assert!(bridge_nf_call(&msg(vec![
            InfoBridge::VlanFiltering(false),
            InfoBridge::NfCallIpTables(false)
        ]))
        .is_empty());
        assert_eq!(
            bridge_nf_call(&msg(vec![
                InfoBridge::VlanDefaultPvid(1),
                InfoBridge::NfCallIp6Tables(true),
                InfoBridge::NfCallArpTables(true),
            ])),
            ["ip6tables", "arptables"]
        );
        assert!(bridge_nf_call(&LinkMessage::default()).is_empty());
    }
}
