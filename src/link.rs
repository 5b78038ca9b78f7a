//! What kvmnet knows about a link and how it changes one: plain data,
//! filled in by [`crate::linkmsg`] from the kernel's answers and sent by
//! [`crate::netlink`]; no I/O here.

use crate::mac::Mac;

/// Tun/tap specific facts (IFLA_INFO_DATA of kind "tun").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunInfo {
    pub tap_mode: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub persist: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Tun(TunInfo),
    Bridge,
    /// A vxlan device, with its VNI.
    Vxlan(u32),
    /// Any other `rtnl_link_ops` kind: "veth", "dummy", "vxlan", ...
    Other(String),
    /// No IFLA_LINKINFO at all: physical NICs, loopback, wireless.
    Unknown,
}

impl LinkKind {
    /// For error messages: "a veth device", "a tun-mode device", ...
    pub fn describe(&self) -> String {
        match self {
            LinkKind::Tun(t) if t.tap_mode => "a tap device".into(),
            LinkKind::Tun(_) => "a tun-mode (layer 3) device, not a tap".into(),
            LinkKind::Bridge => "a bridge".into(),
            LinkKind::Vxlan(vni) => format!("a vxlan device (VNI {vni})"),
            LinkKind::Other(k) => format!("a {k} device"),
            LinkKind::Unknown => "a physical or other non-virtual device".into(),
        }
    }
}

/// What kvmnet needs to know about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub mac: Option<Mac>,
    pub master: Option<u32>,
    pub up: bool,
    /// Carrier: for a tap, someone (QEMU) has its queue open.
    pub carrier: bool,
    pub alias: Option<String>,
    /// Bridges only: `None` when the kernel does not report it (built
    /// without CONFIG_BRIDGE_VLAN_FILTERING).
    pub vlan_filtering: Option<bool>,
}

impl Link {
    pub fn tun(&self) -> Option<&TunInfo> {
        match &self.kind {
            LinkKind::Tun(t) => Some(t),
            _ => None,
        }
    }
    pub fn is_tap(&self) -> bool {
        self.tun().is_some_and(|t| t.tap_mode)
    }
    pub fn is_bridge(&self) -> bool {
        self.kind == LinkKind::Bridge
    }
}

/// One VLAN of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

/// One RTM_SETLINK: every field that is `Some` is changed, all in one request so
/// that the kernel applies them under one rtnl lock in its fixed order (address,
/// MTU, alias, flags, master): the MTU is right before the port joins the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub alias: Option<String>,
    pub up: Option<bool>,
    /// `Some(0)` detaches from any master.
    pub master: Option<u32>,
}

impl LinkChange {
    pub fn is_empty(&self) -> bool {
        *self == LinkChange::default()
    }
}
