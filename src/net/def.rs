//! A `[[network]]` of the config: what `kvmnet net up NAME` makes, read and
//! checked before anything is changed.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::name::BridgeName;

/// Where a network's state lives: dnsmasq's pid, lease and hosts files, and
/// the marks of what `up` made.
pub const RUN_DIR: &str = "/run/kvmnet/net";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub bridge: BridgeName,
    /// The host's address on the bridge, and the subnet's prefix length.
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// DHCP hands out this range (inclusive).
    pub dhcp: (Ipv4Addr, Ipv4Addr),
    /// Masquerade what leaves the subnet.
    pub nat: bool,
    /// Masquerade only out of this interface; `None`: out of any (the
    /// default route's, whichever it is when a packet leaves).
    pub uplink: Option<String>,
    /// The host's IPv6 address on the bridge (a /64, announced by router
    /// advertisements for SLAAC).
    pub ipv6: Option<(Ipv6Addr, u8)>,
    pub domain: Option<String>,
    /// "/etc/kvmnet/kvmnet.toml line 7"
    pub location: String,
}

impl Network {
    pub fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    /// The subnet's network address.
    pub fn subnet(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.subnet())
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn ipv6_prefix(&self) -> Option<(Ipv6Addr, u8)> {
        self.ipv6.map(|(a, len)| {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (Ipv6Addr::from(u128::from(a) & m), len)
        })
    }

    /// `/run/kvmnet/net/NAME`.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(&self.name)
    }

    /// The hosts directory dnsmasq reads fixed addresses from (one file per
    /// tap, `MAC,IP`).
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir().join("hosts.d")
    }

    /// Whether two networks' subnets share an address.
    pub fn overlaps(&self, other: &Network) -> bool {
        self.overlaps_prefix(other.address, other.prefix)
    }

    /// Whether the subnet shares an address with `addr/len`.
    pub fn overlaps_prefix(&self, addr: Ipv4Addr, len: u8) -> bool {
        let m = mask(self.prefix.min(len));
        u32::from(self.address) & m == u32::from(addr) & m
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// A network's name: it names a directory, an nf_tables table and a
/// systemd instance (`kvmnet-net@NAME`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} must be 1 to 15 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            crate::name::printable(name)
        ))
    }
}

/// `ipv4 = "192.168.122.1/24"`: the host's address and the subnet.
pub fn parse_ipv4(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let hint =
        || format!("{s:?} must be the host's address and prefix length, like \"192.168.122.1/24\"");
    let (a, len) = s.split_once('/').ok_or_else(hint)?;
    let a: Ipv4Addr = a.parse().map_err(|_| hint())?;
    let len: u8 = len.parse().map_err(|_| hint())?;
    if !(8..=30).contains(&len) {
        return Err(format!(
            "{s:?}: a prefix length of 8 to 30 leaves room for guests"
        ));
    }
    let m = mask(len);
    let host = u32::from(a) & !m;
    if host == 0 || host == !m {
        return Err(format!(
            "{s:?} is the subnet's network or broadcast address; give the host's own, like \"{}/{len}\"",
            Ipv4Addr::from((u32::from(a) & m) + 1)
        ));
    }
    Ok((a, len))
}

/// `ipv6 = "fd00:122::1/64"`: router advertisements announce a /64.
pub fn parse_ipv6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let hint =
        || format!("{s:?} must be the host's IPv6 address with /64, like \"fd00:122::1/64\"");
    let (a, len) = s.split_once('/').ok_or_else(hint)?;
    let a: Ipv6Addr = a.parse().map_err(|_| hint())?;
    if len != "64" {
        return Err(format!(
            "{s:?}: guests configure themselves (SLAAC) only from a /64"
        ));
    }
    if a.is_multicast()
        || a.is_loopback()
        || a.is_unspecified()
        || (a.segments()[0] & 0xffc0) == 0xfe80
    {
        return Err(format!("{s:?} is not a unicast address a network can use"));
    }
    Ok((a, 64))
}

/// The default DHCP range: the subnet's addresses after the host's, or
/// before it when the host's is the last.
pub fn default_range(address: Ipv4Addr, prefix: u8) -> (Ipv4Addr, Ipv4Addr) {
    let m = mask(prefix);
    let net = u32::from(address) & m;
    let first = net + 1;
    let last = (net | !m) - 1;
    let a = u32::from(address);
    if a < last {
        (Ipv4Addr::from(a + 1), Ipv4Addr::from(last))
    } else {
        (Ipv4Addr::from(first), Ipv4Addr::from(a - 1))
    }
}

/// A `dhcp_range` inside the subnet, in order, without the host's address.
pub fn check_range(
    address: Ipv4Addr,
    prefix: u8,
    (a, b): (Ipv4Addr, Ipv4Addr),
) -> Result<(), String> {
    let m = mask(prefix);
    let net = u32::from(address) & m;
    let inside = |x: Ipv4Addr| {
        let x = u32::from(x);
        x & m == net && x != net && x != net | !m
    };
    if !inside(a) || !inside(b) {
        return Err(format!(
            "{a} - {b} must lie inside {}/{prefix}, without its network and broadcast addresses",
            Ipv4Addr::from(net)
        ));
    }
    if u32::from(a) > u32::from(b) {
        return Err(format!("{a} comes after {b}: give the first address first"));
    }
    if (u32::from(a)..=u32::from(b)).contains(&u32::from(address)) {
        return Err(format!(
            "{a} - {b} holds the host's own address {address}; leave it out"
        ));
    }
    Ok(())
}

/// `domain = "vm.internal"`: DNS labels.
pub fn check_domain(d: &str) -> Result<(), String> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if d.len() <= 253 && d.split('.').all(label) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a DNS domain (labels of a-z, 0-9 and '-', joined by dots)",
            crate::name::printable(d)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(a: &str) -> Network {
        let (address, prefix) = parse_ipv4(a).unwrap();
        Network {
            name: "n".into(),
            bridge: BridgeName::new("kvbr0").unwrap(),
            address,
            prefix,
            dhcp: default_range(address, prefix),
            nat: true,
            uplink: None,
            ipv6: None,
            domain: None,
            location: String::new(),
        }
    }

    #[test]
    fn addresses_ranges_and_overlaps() {
        let n = net("192.168.122.1/24");
        assert_eq!(n.subnet(), Ipv4Addr::new(192, 168, 122, 0));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(
            n.dhcp,
            (
                Ipv4Addr::new(192, 168, 122, 2),
                Ipv4Addr::new(192, 168, 122, 254)
            )
        );
        assert_eq!(
            default_range(Ipv4Addr::new(10, 0, 0, 254), 24),
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 253))
        );
        assert!(n.overlaps(&net("192.168.0.1/16")));
        assert!(!n.overlaps(&net("192.168.123.1/24")));
        for bad in [
            "192.168.122.0/24",
            "192.168.122.255/24",
            "10.0.0.1/31",
            "10.0.0.1",
            "x/24",
        ] {
            assert!(parse_ipv4(bad).is_err(), "{bad}");
        }
        let r = |a: &str, b: &str| (a.parse().unwrap(), b.parse().unwrap());
        let h = n.address;
        assert!(check_range(h, 24, r("192.168.122.10", "192.168.122.20")).is_ok());
        assert!(check_range(h, 24, r("192.168.122.1", "192.168.122.20")).is_err());
        assert!(check_range(h, 24, r("192.168.122.20", "192.168.122.10")).is_err());
        assert!(check_range(h, 24, r("192.168.122.10", "192.168.123.20")).is_err());
        assert!(parse_ipv6("fd00:1::1/64").is_ok());
        assert!(parse_ipv6("fd00:1::1/48").is_err());
        assert!(parse_ipv6("fe80::1/64").is_err());
        assert!(check_name("default").is_ok());
        assert!(check_name("../x").is_err() && check_name("").is_err());
        assert!(check_domain("vm.internal").is_ok() && check_domain("a..b").is_err());
    }
}
