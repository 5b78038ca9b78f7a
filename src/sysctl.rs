//! The few /proc/sys knobs routed mode needs. Paths are built only from
//! validated interface names, so a name cannot walk elsewhere in /proc/sys.

use std::io;
use std::net::IpAddr;

use crate::name::TapName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: &IpAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// proxy_arp (IPv4) or proxy_ndp (IPv6) of one tap: built from the
/// validated name (no `/`, no `..`), never from a name the kernel reported.
pub fn proxy_path(family: Family, tap: &TapName) -> String {
    let dev = tap.as_str();
    match family {
        Family::V4 => format!("/proc/sys/net/ipv4/conf/{dev}/proxy_arp"),
        Family::V6 => format!("/proc/sys/net/ipv6/conf/{dev}/proxy_ndp"),
    }
}

/// accept_ra (0, 1 or 2) of one interface, by a validated name.
pub fn accept_ra(dev: &crate::name::IfaceName) -> io::Result<u8> {
    let path = format!("/proc/sys/net/ipv6/conf/{}/accept_ra", dev.as_str());
    std::fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn forwarding_path(family: Family) -> &'static str {
    match family {
        Family::V4 => "/proc/sys/net/ipv4/ip_forward",
        Family::V6 => "/proc/sys/net/ipv6/conf/all/forwarding",
    }
}

pub fn is_on(path: &str) -> io::Result<bool> {
    Ok(std::fs::read_to_string(path)?.trim() != "0")
}

pub fn set(path: &str, on: bool) -> io::Result<()> {
    std::fs::write(path, if on { "1\n" } else { "0\n" })
}
