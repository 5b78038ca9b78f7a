//! The undo record: what `kvmnet-ifup` changed on a tap, so that `kvmnet-ifdown`
//! can undo exactly that and nothing more.
//!
//! It is kept in the tap's own interface alias (IFLA_IFALIAS, `ip link show`
//! prints it), not in a file under /run:
//! - it lives and dies with the link: no stale files when QEMU closes a
//!   non-persistent tap, no confusion when a name or ifindex is reused;
//! - ifdown reads it over netlink, which works where QEMU runs the downscript
//!   inside a chroot with no /run, and costs no extra system call (RTM_GETLINK
//!   returns it with the rest of the link);
//! - only CAP_NET_ADMIN can change it, so the tap's unprivileged owner cannot
//!   forge "kvmnet created this" to make ifdown delete something.
//!
//! Format: `kvmnet:v1 [pending] [created] [attached=BR] [ovs=BR] [up] [mtu=N] [mac=M] [route=A,…] [parp] [pndp] [guard|policed] [rate_in=BPS/BURST] [rate=BPS/BURST] [alias=REST]`.
//! `mtu`/`mac` hold the values *before* ifup; `up` means ifup brought it up;
//! `alias=` must be last and keeps an alias the tap had before (restored later).
//! `pending` is written by the first change of a run whose policy takes more
//! than one request and removed by its last: a run killed in between leaves a
//! down tap that says so, which the next ifup completes and ifdown undoes.

use std::net::IpAddr;

use crate::mac::Mac;

pub const PREFIX: &str = "kvmnet:v1";
/// The kernel refuses aliases of IFALIASZ (256) bytes or more.
pub const MAX_ALIAS: usize = 255;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The run that wrote this did not finish: policy may be missing.
    pub pending: bool,
    pub created: bool,
    pub attached: Option<String>,
    /// ifup added the tap as a port of this Open vSwitch bridge (one OVSDB
    /// transaction; ifdown deletes that port).
    pub ovs: Option<String>,
    pub brought_up: bool,
    pub old_mtu: Option<u32>,
    pub old_mac: Option<Mac>,
    /// Host routes to the guest that ifup added (routed mode).
    pub routes: Vec<IpAddr>,
    /// ifup switched proxy ARP / proxy NDP on (routed mode).
    pub proxy_arp: bool,
    pub proxy_ndp: bool,
    /// The tap has a guest guard (its nf_tables table, which outlives the
    /// tap and is removed by ifdown).
    pub guard: bool,
    /// That table only polices `rate_in` (written `policed` instead of
    /// `guard`).
    pub police_only: bool,
    /// The guest->host limit in that table: (bytes per second, burst).
    pub rate_in: Option<(u64, u32)>,
    /// ifup put a tbf on the tap: (bytes per second, burst in bytes), what
    /// ifdown needs to recognise it as its own.
    pub rate_out: Option<(u64, u32)>,
    pub prior_alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("its kvmnet record (interface alias) is damaged at {at:?}; inspect it with `ip link show {tap}` and clear it with `ip link set {tap} alias \"\"`")]
    Damaged { tap: String, at: String },
    #[error("its undo record would exceed the kernel's 255-byte interface alias (its own alias is {len} bytes, or too many routed addresses); shorten or clear the alias (`ip link set {tap} alias \"\"`) or route fewer addresses")]
    AliasTooLong { tap: String, len: usize },
}

impl Record {
    /// The parts of the guard this record says the tap has.
    pub fn guard_parts(&self) -> crate::guard::Parts {
        crate::guard::Parts {
            checks: self.guard && !self.police_only,
            limit: self.guard && self.rate_in.is_some(),
        }
    }

    /// `Ok(None)` when the alias is not kvmnet's (or absent): nothing to undo.
    pub fn parse(tap: &str, alias: Option<&str>) -> Result<Option<Record>, RecordError> {
        let Some(alias) = alias else { return Ok(None) };
        let Some(rest) = alias.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let damaged = |at: &str| RecordError::Damaged {
            tap: tap.to_owned(),
            at: at.chars().take(40).collect(),
        };
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return Err(damaged(rest));
        }
        let mut r = Record::default();
        let mut rest = rest.trim_start_matches(' ');
        while !rest.is_empty() {
            if let Some(prior) = rest.strip_prefix("alias=") {
                r.prior_alias = Some(prior.to_owned());
                break;
            }
            let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            rest = tail;
            match word.split_once('=') {
                None if word == "pending" => r.pending = true,
                None if word == "created" => r.created = true,
                None if word == "up" => r.brought_up = true,
                None if word == "parp" => r.proxy_arp = true,
                None if word == "pndp" => r.proxy_ndp = true,
                None if word == "guard" => r.guard = true,
                None if word == "policed" => {
                    r.guard = true;
                    r.police_only = true;
                }
                Some(("route", list)) => {
                    for a in list.split(',') {
                        r.routes.push(a.parse().map_err(|_| damaged(word))?);
                    }
                }
                Some(("attached", br)) if crate::name::validate(br).is_ok() => {
                    r.attached = Some(br.to_owned())
                }
                Some(("ovs", br)) if crate::name::validate(br).is_ok() => {
                    r.ovs = Some(br.to_owned())
                }
                Some(("mtu", n)) => r.old_mtu = Some(n.parse().map_err(|_| damaged(word))?),
                Some(("mac", m)) => r.old_mac = Some(m.parse().map_err(|_| damaged(word))?),
                Some(("rate", v)) => r.rate_out = Some(limit(v).ok_or_else(|| damaged(word))?),
                Some(("rate_in", v)) => r.rate_in = Some(limit(v).ok_or_else(|| damaged(word))?),
                _ => return Err(damaged(word)),
            }
        }
        Ok(Some(r))
    }

    pub fn encode(&self, tap: &str) -> Result<String, RecordError> {
        let mut s = String::from(PREFIX);
        if self.pending {
            s.push_str(" pending");
        }
        if self.created {
            s.push_str(" created");
        }
        if let Some(br) = &self.attached {
            s.push_str(" attached=");
            s.push_str(br);
        }
        if let Some(br) = &self.ovs {
            s.push_str(" ovs=");
            s.push_str(br);
        }
        if self.brought_up {
            s.push_str(" up");
        }
        if let Some(m) = self.old_mtu {
            s.push_str(&format!(" mtu={m}"));
        }
        if let Some(m) = self.old_mac {
            s.push_str(&format!(" mac={m}"));
        }
        if !self.routes.is_empty() {
            let list: Vec<String> = self.routes.iter().map(|a| a.to_string()).collect();
            s.push_str(" route=");
            s.push_str(&list.join(","));
        }
        if self.proxy_arp {
            s.push_str(" parp");
        }
        if self.proxy_ndp {
            s.push_str(" pndp");
        }
        match (self.guard, self.police_only) {
            (true, false) => s.push_str(" guard"),
            (true, true) => s.push_str(" policed"),
            (false, _) => {}
        }
        if let Some((bps, burst)) = self.rate_in {
            s.push_str(&format!(" rate_in={bps}/{burst}"));
        }
        if let Some((bps, burst)) = self.rate_out {
            s.push_str(&format!(" rate={bps}/{burst}"));
        }
        if let Some(a) = &self.prior_alias {
            s.push_str(" alias=");
            s.push_str(a);
        }
        if s.len() > MAX_ALIAS {
            return Err(RecordError::AliasTooLong {
                tap: tap.to_owned(),
                len: self.prior_alias.as_ref().map_or(0, |a| a.len()),
            });
        }
        Ok(s)
    }

    /// The alias to put back when the record is removed.
    pub fn restored_alias(&self) -> &str {
        self.prior_alias.as_deref().unwrap_or("")
    }
}

/// `BPS/BURST`, decimal digits only.
fn limit(v: &str) -> Option<(u64, u32)> {
    let num = |t: &str| {
        t.parse::<u64>()
            .ok()
            .filter(|_| t.bytes().all(|b| b.is_ascii_digit()))
    };
    let (bps, burst) = v.split_once('/')?;
    Some((num(bps)?, u32::try_from(num(burst)?).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Record {
        Record {
            pending: false,
            created: false,
            attached: Some("br-lab".into()),
            ovs: None,
            brought_up: true,
            old_mtu: Some(1500),
            old_mac: Some("52:54:00:aa:bb:cc".parse().unwrap()),
            routes: vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
            proxy_arp: true,
            proxy_ndp: false,
            guard: true,
            police_only: false,
            rate_in: Some((1_250_000, 65_536)),
            rate_out: Some((12_500_000, 15_000)),
            prior_alias: Some("web vm = prod".into()),
        }
    }

    #[test]
    fn roundtrip() {
        for r in [
            Record::default(),
            full(),
            Record {
                created: true,
                attached: Some("br0".into()),
                ..Default::default()
            },
            Record {
                pending: true,
                ..full()
            },
            Record {
                created: true,
                ovs: Some("ovsbr0".into()),
                pending: true,
                ..Default::default()
            },
        ] {
            let s = r.encode("t").unwrap();
            assert!(s.starts_with(PREFIX));
            assert_eq!(Record::parse("t", Some(&s)).unwrap(), Some(r));
        }
    }

    #[test]
    fn foreign_or_absent_alias_is_no_record() {
        assert_eq!(Record::parse("t", None).unwrap(), None);
        assert_eq!(Record::parse("t", Some("my vm")).unwrap(), None);
        assert_eq!(Record::parse("t", Some("kvmnet")).unwrap(), None);
    }

    #[test]
    fn damaged_records_are_errors_not_guesses() {
        for bad in [
            "kvmnet:v1x",
            "kvmnet:v1 created=yes",
            "kvmnet:v1 mtu=abc",
            "kvmnet:v1 mac=zz",
            "kvmnet:v1 attached=a/b",
            "kvmnet:v1 ovs=a/b",
            "kvmnet:v1 deleted",
        ] {
            assert!(Record::parse("t", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn too_long_prior_alias_is_refused() {
        let r = Record {
            prior_alias: Some("x".repeat(250)),
            attached: Some("br0".into()),
            ..Default::default()
        };
        assert!(matches!(
            r.encode("t"),
            Err(RecordError::AliasTooLong { len: 250, .. })
        ));
    }
}
