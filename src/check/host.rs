//! Facts read from the kernel (one link dump, the default route) and from
//! sysfs, for the bridge and tap findings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::Scope;
use super::{denied, CheckOptions};
use crate::link::Link;
use crate::name::BridgeName;
use crate::netlink::Netlink;
use crate::settings::NetMode;

/// Can the kernel filter VLANs on bridges?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VlanSupport {
    Yes,
    No,
    Unknown,
    /// No bridge in the namespace, and this user may not look at sysfs.
    Unchecked,
}

pub(super) const VLAN_FEATURE: &str = "CONFIG_BRIDGE_VLAN_FILTERING";

pub(super) struct Host {
    pub links: Vec<Link>,
    /// The bridges' own br_netfilter switches that are on ("iptables", ...),
    /// by bridge index.
    pub nf_call: HashMap<u32, Vec<&'static str>>,
    /// For a bridge kvmnet-ifup would create: whether it could filter VLANs.
    pub kernel_vlan: VlanSupport,
    /// Debian's rule, read only when some scope needs it.
    pub default_route_bridge: Option<BridgeName>,
}

/// Why the host's links could not be read.
pub(super) struct HostError {
    pub message: String,
    /// The kernel refused this user.
    pub denied: bool,
}

impl From<crate::netlink::NetlinkError> for HostError {
    fn from(e: crate::netlink::NetlinkError) -> HostError {
        let denied = match &e {
            crate::netlink::NetlinkError::Socket(io) => denied(io),
            _ => matches!(e.errno(), Some(libc::EACCES | libc::EPERM)),
        };
        HostError {
            message: e.to_string(),
            denied,
        }
    }
}

impl From<crate::error::Error> for HostError {
    fn from(e: crate::error::Error) -> HostError {
        HostError {
            denied: matches!(e, crate::error::Error::NotPermitted { .. }),
            message: e.to_string(),
        }
    }
}

impl Host {
    pub fn read(opts: &CheckOptions, scopes: &[Scope]) -> Result<Host, HostError> {
        let nl = Netlink::open()?;
        let listed = nl.dump_links()?;
        let mut nf_call = HashMap::new();
        let mut links = Vec::with_capacity(listed.len());
        for l in listed {
            if l.link.is_bridge() {
                nf_call.insert(l.link.index, l.nf_call);
            }
            links.push(l.link);
        }
        // The runtime reads a bridge's vlan_filtering only from a kernel
        // that can filter VLANs (see linkmsg): any bridge answers for all.
        let mut bridges = links.iter().filter(|l| l.is_bridge()).peekable();
        let kernel_vlan = if bridges.peek().is_none() {
            sysfs_vlan_support(&opts.sys_class_net)
        } else if bridges.any(|b| b.vlan_filtering.is_some()) {
            VlanSupport::Yes
        } else {
            VlanSupport::No
        };
        // Only needed (a route dump) when some tap has no bridge configured.
        let needs_fallback = scopes
            .iter()
            .any(|s| s.settings.mode == NetMode::Bridge && s.settings.bridge.is_none());
        let default_route_bridge = if needs_fallback {
            crate::mode::bridge::default_route_bridge(&nl)?
        } else {
            None
        };
        Ok(Host {
            links,
            nf_call,
            kernel_vlan,
            default_route_bridge,
        })
    }

    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn ports(&self, bridge: &Link) -> impl Iterator<Item = &Link> {
        let index = bridge.index;
        self.links.iter().filter(move |l| l.master == Some(index))
    }

    pub fn name_of(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| format!("interface #{index}"), |l| l.name.clone())
    }
}

/// A sysfs fact this user may not read: `Err` names the path.
pub(super) type Seen<T> = Result<T, PathBuf>;

/// Whether `path` exists; `Err(path)` when this user may not look. Any
/// other failure counts as absent, as a missing sysfs entry does.
fn present(path: &Path) -> Seen<bool> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if denied(&e) => Err(path.to_owned()),
        Err(_) => Ok(false),
    }
}

/// A sysfs file's text; `Ok(None)` when it cannot be read for another
/// reason than this user's permission (absent: another namespace's sysfs).
fn sysfs_text(path: PathBuf) -> Seen<Option<String>> {
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if denied(&e) => Err(path),
        Err(_) => Ok(None),
    }
}

/// Whether the bridge's address follows its ports: only an address set
/// explicitly (addr_assign_type 3, NET_ADDR_SET) stays put. Unknown (no
/// sysfs) counts as fixed: the finding would be a guess.
pub(super) fn follows_ports(sys_class_net: &Path, bridge: &str) -> Seen<bool> {
    let text = sysfs_text(sys_class_net.join(bridge).join("addr_assign_type"))?;
    Ok(text.is_some_and(|t| t.trim() != "3"))
}

/// Any bridge in sysfs: `bridge/vlan_filtering` exists only with the feature.
fn sysfs_vlan_support(sys_class_net: &Path) -> VlanSupport {
    let entries = match std::fs::read_dir(sys_class_net) {
        Ok(entries) => entries,
        Err(e) if denied(&e) => return VlanSupport::Unchecked,
        Err(_) => return VlanSupport::Unknown,
    };
    let mut seen_bridge = false;
    let mut unseen = false;
    for e in entries.flatten() {
        let bridge = e.path().join("bridge");
        match (present(&bridge), present(&bridge.join("vlan_filtering"))) {
            (_, Ok(true)) => return VlanSupport::Yes,
            (Ok(true), Ok(false)) => seen_bridge = true,
            (Ok(false), _) => {}
            _ => unseen = true,
        }
    }
    if unseen && !seen_bridge {
        return VlanSupport::Unchecked;
    }
    if seen_bridge {
        VlanSupport::No
    } else {
        VlanSupport::Unknown
    }
}

/// Whether sysfs says `name` (interface `index`) is wireless.
pub(super) fn is_wireless(sys_class_net: &Path, name: &str, index: u32) -> Seen<bool> {
    let dir = sys_class_net.join(name);
    let same_device =
        sysfs_text(dir.join("ifindex"))?.and_then(|s| s.trim().parse::<u32>().ok()) == Some(index);
    Ok(same_device && (present(&dir.join("phy80211"))? || present(&dir.join("wireless"))?))
}

#[cfg(test)]
mod tests {
    use super::super::temp;
    use super::*;

    #[test]
    fn wireless_from_a_sysfs_tree() {
        let d = temp("wl");
        for (dev, index, marker) in [
            ("wlan0", "7", "phy80211"),
            ("wlan1", "8", "wireless"),
            ("eth0", "9", ""),
        ] {
            std::fs::create_dir_all(d.join(dev)).unwrap();
            std::fs::write(d.join(dev).join("ifindex"), format!("{index}\n")).unwrap();
            if !marker.is_empty() {
                std::fs::create_dir_all(d.join(dev).join(marker)).unwrap();
            }
        }
        let r = [
            is_wireless(&d, "wlan0", 7),
            is_wireless(&d, "wlan1", 8),
            is_wireless(&d, "eth0", 9),
            // another namespace's wlan0 (sysfs mounted elsewhere): not this one
            is_wireless(&d, "wlan0", 3),
            is_wireless(&d, "nope", 1),
        ]
        .map(Result::unwrap);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(r, [true, true, false, false, false]);
    }

    #[test]
    fn vlan_support_from_sysfs() {
        let d = temp("vlan");
        assert_eq!(sysfs_vlan_support(&d), VlanSupport::Unknown);
        std::fs::create_dir_all(d.join("br0/bridge")).unwrap();
        assert_eq!(sysfs_vlan_support(&d), VlanSupport::No);
        std::fs::write(d.join("br0/bridge/vlan_filtering"), "0\n").unwrap();
        let r = sysfs_vlan_support(&d);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(r, VlanSupport::Yes);
    }
}
