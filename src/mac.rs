//! MAC addresses: formatting, parsing and the host-side rules kvmnet applies.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// First byte of every tap's host-side MAC. A Linux bridge whose address was not
/// set by hand takes the numerically lowest port address; 0xFE sorts above every
/// vendor (globally administered) address, so a guest tap joining or leaving never
/// changes the host's bridge address. QEMU's bridge helper and libvirt do the same.
pub const HOST_TAP_FIRST_BYTE: u8 = 0xfe;

impl Mac {
    pub fn from_slice(b: &[u8]) -> Option<Mac> {
        <[u8; 6]>::try_from(b).ok().map(Mac)
    }

    /// The address kvmnet gives a tap: the same bytes with the first one set to
    /// 0xFE (unicast, locally administered). `None` when it already is.
    pub fn host_side(self) -> Option<Mac> {
        if self.0[0] == HOST_TAP_FIRST_BYTE {
            return None;
        }
        let mut m = self.0;
        m[0] = HOST_TAP_FIRST_BYTE;
        Some(Mac(m))
    }

    /// A random unicast, locally administered address (46 random bits).
    pub fn random_local() -> Mac {
        let b = crate::random::os_u64().to_le_bytes();
        Mac::local([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// `bytes` made a unicast, locally administered address: the two low
    /// bits of the first byte are fixed, the other 46 kept.
    pub fn local(bytes: [u8; 6]) -> Mac {
        let mut m = bytes;
        m[0] = (m[0] & 0xfc) | 0x02;
        Mac(m)
    }
}

/// A MAC derived from a VM name: the same name always gives the same
/// address (on any host, with any kvmnet version: FNV-1a 64 of
/// "kvmnet-mac\0" + name, a fixed, documented function), so a VM keeps its
/// MAC, and with it its DHCP lease, across restarts.
pub fn stable_mac(name: &str, oui: Option<[u8; 3]>) -> Mac {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"kvmnet-mac\0".iter().chain(name.as_bytes()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let v = h.to_be_bytes();
    with_oui([v[2], v[3], v[4], v[5], v[6], v[7]], oui)
}

/// `b` with the OUI as its first three bytes, or, without one, made a
/// locally administered unicast address.
pub fn with_oui(mut b: [u8; 6], oui: Option<[u8; 3]>) -> Mac {
    match oui {
        Some(o) => {
            b[..3].copy_from_slice(&o);
            Mac(b)
        }
        None => Mac::local(b),
    }
}

/// The MAC a guard's `guest_mac = ["derived"]` allows for tap `tap`: what
/// `kvmnet mac --name TAP` prints.
pub fn derived(tap: &str) -> Mac {
    stable_mac(tap, None)
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = ();
    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            let p = parts.next().ok_or(())?;
            if p.len() != 2 {
                return Err(());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_sets_first_byte_only() {
        let m: Mac = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(m.host_side().unwrap().to_string(), "fe:54:00:12:34:56");
        assert_eq!(m.host_side().unwrap().host_side(), None);
    }

    #[test]
    fn parse_roundtrip_and_rejects() {
        let m: Mac = "fe:00:0a:ff:10:01".parse().unwrap();
        assert_eq!(m.to_string(), "fe:00:0a:ff:10:01");
        for bad in [
            "",
            "fe:00:0a:ff:10",
            "fe:00:0a:ff:10:01:02",
            "fe:0:0a:ff:10:01",
            "zz:00:0a:ff:10:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn random_local_is_unicast_and_locally_administered() {
        for _ in 0..1000 {
            let m = Mac::random_local();
            assert_eq!(m.0[0] & 0x01, 0, "unicast");
            assert_eq!(m.0[0] & 0x02, 0x02, "locally administered");
        }
    }
}
