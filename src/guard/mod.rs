//! The guest guard: what a guest may send into its tap, enforced with
//! nf_tables on the tap's ingress (docs/guard-design.md).
//!
//! Taps are grouped in shards of [`SHARD_SIZE`] consecutive interface
//! indexes, one table each: the shard holds the checks and sets keyed by
//! `meta iif`, made once ([`rules::shard_batch`]); a tap adds its own base
//! chain and set elements in one atomic batch ([`rules::tap_batch`]), so a
//! guarded start costs a handful of messages whatever the number of guarded
//! taps. [`apply`] and [`remove`] change one tap; [`sweep`] collects what
//! taps gone without a downscript left, and empty shards.

pub mod bpf;
pub mod checks;
mod rules;
mod state;
mod text;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::kernel::NFPROTO_NETDEV;
use crate::mac::Mac;
use crate::name::TapName;
use crate::netlink::Netlink;
use crate::nft::Nft;
use crate::rate::Rate;

pub use crate::nft::ack::{NftError, Refusal};
pub(crate) use rules::{shard_batch, tap_batch};
pub use state::{
    installed, stale, survey, sweep, Installed, LinkFact, ShardView, Stale, StaleKind,
};
pub use text::{nft_text, nft_text_in, shard_text, shard_text_named};

/// Shard tables are named this and the shard's number (the interface
/// index divided by [`SHARD_SIZE`]).
pub const TABLE_PREFIX: &str = "kvmnet-guard-s";
/// The comment of a shard table.
pub const SHARD_COMMENT: &str = "kvmnet guard shard";
/// A tap's chain is named this and its interface index: unique among the
/// live devices of a network namespace, stable across a rename, and never
/// reused for another tap while the old one exists.
pub const CHAIN_PREFIX: &str = "tap-";
/// A tap chain's comment records the tap's name after this, for the sweep.
pub const COMMENT_PREFIX: &str = "kvmnet guard tap=";
/// Taps per shard: the kernel validates a whole table when a rule with a
/// verdict changes in it, so a tap's batch walks its shard's base chains,
/// and finds its table in a list of shards.
pub const SHARD_SIZE: u32 = 64;
/// Addresses or prefixes per family, MACs per guest: far more than a guest
/// has, few enough that the checks' program stays well inside the longest
/// one the kernel takes ([`bpf::MAX_INSNS`]) and short to run.
pub const MAX_ENTRIES: usize = 64;
pub const MAX_MACS: usize = 16;

const FAMILY: u8 = NFPROTO_NETDEV;

/// The shard of the tap with this interface index.
pub fn shard_of(ifindex: u32) -> u32 {
    ifindex / SHARD_SIZE
}

/// The name of shard `shard`'s table.
pub fn shard_name(shard: u32) -> String {
    format!("{TABLE_PREFIX}{shard}")
}

/// The name of the tap's chain in its shard.
pub fn chain_name(ifindex: u32) -> String {
    format!("{CHAIN_PREFIX}{ifindex}")
}

/// An address and a prefix length (32 or 128 for one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn host(addr: IpAddr) -> Prefix {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Prefix { addr, len }
    }

    fn width(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u32::from(a).into(),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    /// The first and last address, as numbers of the family's width.
    pub(crate) fn range(&self) -> (u128, u128) {
        let host = match 1u128.checked_shl(u32::from(self.width() - self.len.min(self.width()))) {
            Some(n) => n - 1,
            // ::/0: every bit is a host bit
            None => u128::MAX,
        };
        (self.bits() & !host, self.bits() | host)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == self.width() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    /// `ADDR` or `ADDR/LEN`, without host bits under the prefix.
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))?;
        let mut p = Prefix::host(addr);
        if !l.is_empty() {
            p.len =
                l.parse().ok().filter(|n| *n <= p.width()).ok_or_else(|| {
                    format!("{s:?}: the prefix length must be 0 to {}", p.width())
                })?;
        }
        let (first, _) = p.range();
        if first != p.bits() {
            let net = Prefix {
                addr: from_bits(first, p.addr.is_ipv4()),
                len: p.len,
            };
            return Err(format!(
                "{s:?} has host bits set under its prefix; write {net}"
            ));
        }
        Ok(p)
    }
}

fn from_bits(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

/// The burst the guest->host limit gets when none is configured: the
/// largest frame a guest can write into its tap (a TSO frame with a virtio
/// header), so that the kernel's bucket holds any frame at any rate
/// (docs/rate-design.md, "rate_in").
pub const INGRESS_BURST_DEFAULT: u32 = 64 * 1024;
/// What a full-size frame of the standard MTU counts at the tap's ingress,
/// where the Ethernet header is not counted: the least the bucket must hold.
const INGRESS_FULL_FRAME: u64 = libc::ETH_DATA_LEN as u64;

/// What a guest may send, and how fast. `None` for a family: its source
/// addresses are not pinned (the protocol rules still hold: no DHCP server,
/// no router advertisements, no redirects, neighbour advertisements naming
/// its MACs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpec {
    pub tap: TapName,
    pub ifindex: u32,
    pub macs: Vec<Mac>,
    pub ipv4: Option<Vec<Prefix>>,
    pub ipv6: Option<Vec<Prefix>>,
    /// The anti-spoofing rules. Without them the MACs and addresses are
    /// not used (and may be empty): only the rate applies, and what it
    /// lets through is accepted.
    pub enforce: bool,
    /// The guest->host rate limit, policed at the tap's ingress before any
    /// other rule ([`ingress_burst`] for its burst).
    pub rate_in: Option<Rate>,
}

/// The burst kvmnet gives nf_tables' `limit` for `rate`: the configured one,
/// or [`INGRESS_BURST_DEFAULT`]. Either is on top of the second of the rate
/// the kernel's byte bucket always holds (docs/rate-design.md).
pub fn ingress_burst(rate: &Rate) -> u32 {
    rate.configured_burst().unwrap_or(INGRESS_BURST_DEFAULT)
}

impl GuardSpec {
    /// A table that only polices the guest->host rate: none of the guard's
    /// checks (what `rate_in` without `guard = true` gets).
    pub fn rate_only(tap: TapName, ifindex: u32, rate: Rate) -> GuardSpec {
        GuardSpec {
            tap,
            ifindex,
            macs: Vec::new(),
            ipv4: None,
            ipv6: None,
            enforce: false,
            rate_in: Some(rate),
        }
    }

    pub(crate) fn pins_ip(&self) -> bool {
        self.ipv4.is_some() || self.ipv6.is_some()
    }

    pub(crate) fn check(&self) -> Result<(), GuardError> {
        let bad = |msg: String| GuardError::Spec {
            tap: self.tap.as_str().to_owned(),
            msg,
        };
        if self.ifindex == 0 {
            return Err(bad("interface index 0".into()));
        }
        if let Some(r) = &self.rate_in {
            // The kernel's bucket is a second of the rate plus the burst: a
            // frame larger than it never passes.
            let bucket = r.bytes_per_sec() + u64::from(ingress_burst(r));
            if bucket < INGRESS_FULL_FRAME {
                return Err(bad(format!(
                    "rate_in {r}: a second of the rate plus the burst is {bucket} bytes, \
                     less than one full-size frame ({INGRESS_FULL_FRAME} bytes as the tap's \
                     ingress counts it); raise the burst"
                )));
            }
        }
        if !self.enforce {
            if self.rate_in.is_none() {
                return Err(bad(
                    "neither the guard's rules nor a rate limit: nothing to put on the tap".into(),
                ));
            }
            return Ok(());
        }
        if self.macs.is_empty() {
            return Err(bad("no allowed MAC address; give the guest's MAC".into()));
        }
        if let Some(m) = self.macs.iter().find(|m| m.0[0] & 1 != 0) {
            return Err(bad(format!(
                "{m} is a multicast address, which no guest may send from"
            )));
        }
        for (list, v4, name) in [(&self.ipv4, true, "IPv4"), (&self.ipv6, false, "IPv6")] {
            let list = list.as_deref().unwrap_or_default();
            if let Some(p) = list.iter().find(|p| p.addr.is_ipv4() != v4) {
                return Err(bad(format!("{p} is not an {name} address")));
            }
            if list.len() > MAX_ENTRIES {
                return Err(bad(format!(
                    "{} {name} entries; at most {MAX_ENTRIES} (use prefixes)",
                    list.len()
                )));
            }
        }
        if self.macs.len() > MAX_MACS {
            return Err(bad(format!("more than {MAX_MACS} MAC addresses")));
        }
        let len = bpf::program(self).0.len();
        if len > bpf::MAX_INSNS {
            return Err(bad(format!(
                "the checks take {len} instructions, more than the kernel's {}; use fewer, wider prefixes",
                bpf::MAX_INSNS
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("guard for {tap}: {msg}")]
    Spec { tap: String, msg: String },
    #[error(
        "guard for {tap}: this kernel has no {what}, which the guard's checks need; \
         modprobe {module}, or turn guard off"
    )]
    Unsupported {
        tap: String,
        what: &'static str,
        module: &'static str,
    },
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
}

/// The EUI-64 link-local address SLAAC derives from `mac` (RFC 4291).
pub fn eui64_link_local(mac: Mac) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// How often [`apply`] and [`remove`] start again when another run changed
/// the shard between their reading and their batch (each attempt is one
/// atomic batch, so a lost race changes nothing).
const ATTEMPTS: usize = 4;

fn refused_with(r: &Result<(), NftError>, errno: i32) -> bool {
    matches!(r, Err(NftError::Rejected { refusals, .. })
        if refusals.first().is_some_and(|f| f.errno == errno))
}

/// What a tap had of the guard before a run: [`apply_with`] and
/// [`remove_with`] touch only what may be there, so that a new tap's
/// guard costs no reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The checks' filters on the tap ([`checks`]).
    pub checks: bool,
    /// The guest->host limit's chain in nf_tables.
    pub limit: bool,
}

impl Parts {
    /// Whatever may be there.
    pub const ALL: Parts = Parts {
        checks: true,
        limit: true,
    };
    /// Nothing: a tap this run created.
    pub const NONE: Parts = Parts {
        checks: false,
        limit: false,
    };
}

/// Puts the guard described by `spec` on its tap, replacing what was
/// there; works in the calling thread's network namespace.
pub fn apply(spec: &GuardSpec) -> Result<(), GuardError> {
    apply_with(&Netlink::open()?, spec, Parts::ALL)
}

/// [`apply`], on `nl`, for a tap that had `before` of the guard: the
/// checks go on the tap as its traffic-control filters ([`checks`]), the
/// guest->host limit in its nf_tables chain ([`limit_apply`]); a part the
/// spec no longer has is taken off.
pub fn apply_with(nl: &Netlink, spec: &GuardSpec, before: Parts) -> Result<(), GuardError> {
    spec.check()?;
    if spec.enforce {
        checks::install(nl, spec)?;
    } else if before.checks {
        checks::lift(nl, spec.ifindex)?;
    }
    match spec.rate_in {
        Some(rate) => limit_apply(&GuardSpec::rate_only(spec.tap.clone(), spec.ifindex, rate))?,
        None if before.limit => limit_remove(spec.ifindex)?,
        None => {}
    }
    Ok(())
}

/// Removes the guard of the tap with this ifindex, whatever part of it is
/// there (none is fine).
pub fn remove(ifindex: u32) -> Result<(), GuardError> {
    remove_with(&Netlink::open()?, ifindex, Parts::ALL)
}

/// [`remove`], on `nl`, of the parts `before` names.
pub fn remove_with(nl: &Netlink, ifindex: u32, before: Parts) -> Result<(), GuardError> {
    if before.checks {
        checks::lift(nl, ifindex)?;
    }
    if before.limit {
        limit_remove(ifindex)?;
    }
    Ok(())
}

/// Puts the guest->host limit of `spec` (a spec without the checks) in its
/// tap's chain, replacing the chain there (if any) atomically: the kernel
/// switches from the old chain and elements to the new ones with no moment
/// without either. Works in the calling thread's network namespace.
///
/// The first attempt assumes the common case, a tap without a chain in an
/// existing shard: one batch, no reading. A missing shard (ENOENT) is made
/// first; a chain already there (EEXIST) is read and replaced.
fn limit_apply(spec: &GuardSpec) -> Result<(), GuardError> {
    let mut nft = Nft::open()?;
    let op = format!("guarding {}", spec.tap);
    let mut create = tap_batch(spec)?;
    // The chain made exclusively: an existing one means a guard to replace.
    create[0].flags |= crate::nlsock::NLM_F_EXCL;
    let shard = shard_of(spec.ifindex);
    let mut last = Ok(());
    for _ in 0..ATTEMPTS {
        let r = nft.apply(&op, &create);
        if refused_with(&r, libc::ENOENT) {
            make_shard(&mut nft, shard)?;
            last = r;
            continue;
        }
        if !refused_with(&r, libc::EEXIST) {
            return Ok(r?);
        }
        // Replace: what is there goes in the same batch as what comes.
        let mut msgs = state::removal(&mut nft, spec.ifindex)?;
        msgs.extend(tap_batch(spec)?);
        let r = nft.apply(&op, &msgs);
        if !(refused_with(&r, libc::ENOENT) || refused_with(&r, libc::EEXIST)) {
            return Ok(r?);
        }
        last = r;
    }
    Ok(last?)
}

/// Makes shard `shard` in one exclusive batch; another run's shard made
/// meanwhile (EEXIST) is as good.
fn make_shard(nft: &mut Nft, shard: u32) -> Result<(), GuardError> {
    let mut msgs = shard_batch(shard);
    msgs[0].flags |= crate::nlsock::NLM_F_EXCL;
    let r = nft.apply(&format!("making guard shard {}", shard_name(shard)), &msgs);
    if refused_with(&r, libc::EEXIST) {
        return Ok(());
    }
    Ok(r?)
}

/// Removes the limit chain of the tap with this ifindex (its chain and its
/// elements, in one batch); none there is fine.
fn limit_remove(ifindex: u32) -> Result<(), GuardError> {
    let mut nft = Nft::open()?;
    let op = format!("removing the guard of interface {ifindex}");
    let mut last = Ok(());
    for _ in 0..ATTEMPTS {
        let msgs = state::removal(&mut nft, ifindex)?;
        if msgs.is_empty() {
            return Ok(());
        }
        // Another run removed a part meanwhile: read again.
        let r = nft.apply(&op, &msgs);
        if !refused_with(&r, libc::ENOENT) {
            return Ok(r?);
        }
        last = r;
    }
    Ok(last?)
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod pure_tests;
