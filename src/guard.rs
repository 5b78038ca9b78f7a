//! The guest guard: what a guest may send into its tap, enforced by one
//! nf_tables table per tap, made in one atomic batch (docs/guard-design.md).
//!
//! [`ruleset`] is a pure function from a [`GuardSpec`] to the batch;
//! [`apply`] sends it. Stale tables (their tap gone without a downscript)
//! are found by the pure [`stale_tables`] and removed by [`sweep`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::kernel::{
    NFPROTO_NETDEV, NFT_META_IIF, NFT_META_IIFTYPE, NFT_META_L4PROTO, NFT_META_PROTOCOL,
    NFT_PAYLOAD_LL_HEADER as LL, NFT_PAYLOAD_NETWORK_HEADER as NH,
    NFT_PAYLOAD_TRANSPORT_HEADER as TH, NF_ACCEPT, NF_DROP, NF_NETDEV_INGRESS,
};
use crate::mac::Mac;
use crate::name::TapName;
use crate::nft::expr::{Expr, Verdict};
use crate::nft::msg::{self, Elem, Hook, KeyType, Msg, SetDef};
use crate::nft::{Nft, Table};
use crate::rate::Rate;

pub use crate::nft::ack::{NftError, Refusal};

/// Tables of the guard are named this and the tap's ifindex: unique among
/// the live devices of a network namespace, stable across a rename, and
/// never reused for another tap while the old one exists.
pub const TABLE_PREFIX: &str = "kvmnet-guard-";
/// The table's comment records the tap's name after this, for the sweep.
pub const COMMENT_PREFIX: &str = "kvmnet guard tap=";
/// Addresses or prefixes per family, MACs per guest: far more than a guest
/// has, few enough that a set's elements fit a handful of messages.
pub const MAX_ENTRIES: usize = 1024;

const FAMILY: u8 = NFPROTO_NETDEV;

// Chains and sets. The base chain is "guest": what the guest sends.
const BASE: &str = "guest";
const ARP: &str = "guest-arp";
const RARP: &str = "guest-rarp";
const IPV4: &str = "guest-ipv4";
const NA: &str = "guest-na";
const IPV6: &str = "guest-ipv6";
const MACS: &str = "macs";
const IPV4_SRC: &str = "ipv4-src";
const IPV6_SRC: &str = "ipv6-src";
const NA_TARGETS: &str = "na-targets";
const NA_LLADDR: &str = "na-lladdr";

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
    fn range(&self) -> (u128, u128) {
        let host = if self.len >= self.width() {
            0
        } else {
            (1u128 << (self.width() - self.len)) - 1
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

    fn pins_ip(&self) -> bool {
        self.ipv4.is_some() || self.ipv6.is_some()
    }

    fn check(&self) -> Result<(), GuardError> {
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
        if self.macs.len() > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} MAC addresses")));
        }
        Ok(())
    }
}

/// The guard table's name for the tap with this ifindex.
pub fn table_name(ifindex: u32) -> String {
    format!("{TABLE_PREFIX}{ifindex}")
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("guard for {tap}: {msg}")]
    Spec { tap: String, msg: String },
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

/// The elements of an interval set holding `prefixes`, as nft writes them:
/// sorted; overlapping ones merged (nft refuses them), adjacent ones kept
/// apart; each interval a start and the first key past it (flagged as an
/// end), the first preceded by an end at 0 unless it starts there, and one
/// reaching the top of the key space flagged open instead of ended.
fn interval_elems(prefixes: &[Prefix], width: u8) -> Vec<Elem> {
    let mut ranges: Vec<(u128, u128, String)> = prefixes
        .iter()
        .map(|p| {
            let (a, b) = p.range();
            (a, b, format!("element {p}"))
        })
        .collect();
    ranges.sort();
    let mut merged: Vec<(u128, u128, String)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.0 <= last.1 => {
                if r.1 > last.1 {
                    last.1 = r.1;
                    last.2 = format!("{} (merged with {})", last.2, r.2);
                }
            }
            _ => merged.push(r),
        }
    }
    let max = if width == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let key = |v: u128| -> Vec<u8> {
        let b = v.to_be_bytes();
        b[16 - usize::from(width / 8)..].to_vec()
    };
    let mut out = Vec::with_capacity(merged.len() * 2 + 1);
    if merged.first().is_some_and(|r| r.0 != 0) {
        out.push(Elem {
            key: key(0),
            end: true,
            open: false,
            what: "the interval end at 0".into(),
        });
    }
    for (first, last, what) in merged {
        out.push(Elem {
            key: key(first),
            end: false,
            open: last == max,
            what: what.clone(),
        });
        if last != max {
            out.push(Elem {
                key: key(last + 1),
                end: true,
                open: false,
                what: format!("the end of {what}"),
            });
        }
    }
    out
}

fn plain_elems(keys: impl IntoIterator<Item = (Vec<u8>, String)>) -> Vec<Elem> {
    let mut v: Vec<(Vec<u8>, String)> = keys.into_iter().collect();
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v.into_iter()
        .map(|(key, what)| Elem {
            key,
            end: false,
            open: false,
            what,
        })
        .collect()
}

// The pieces rules are made of, with the dependencies nft puts in front of
// the same matches (so that nft reads the rules back as it wrote them).
fn cmp(eq: bool, data: &[u8]) -> Expr {
    Expr::Cmp {
        eq,
        data: data.to_vec(),
    }
}
fn load(base: u32, offset: u32, len: u32) -> Expr {
    Expr::Payload { base, offset, len }
}
fn lookup(set: &str, set_id: u32, inv: bool) -> Expr {
    Expr::Lookup {
        set: set.into(),
        set_id,
        inv,
    }
}
/// `meta iiftype ether`: nft's dependency of every `ether` match here.
fn ether() -> [Expr; 2] {
    [
        Expr::Meta(NFT_META_IIFTYPE),
        cmp(true, &(libc::ARPHRD_ETHER).to_ne_bytes()),
    ]
}
/// `meta protocol P`: nft's dependency of matches on the network header.
fn proto(p: u16) -> [Expr; 2] {
    [Expr::Meta(NFT_META_PROTOCOL), cmp(true, &p.to_be_bytes())]
}
/// `meta l4proto P`: nft's dependency of matches on the transport header.
fn l4(p: u8) -> [Expr; 2] {
    [Expr::Meta(NFT_META_L4PROTO), cmp(true, &[p])]
}
fn ether_type(t: u16) -> Vec<Expr> {
    let mut v = ether().to_vec();
    v.extend([load(LL, 12, 2), cmp(true, &t.to_be_bytes())]);
    v
}
fn icmpv6_type(t: u8) -> Vec<Expr> {
    let mut v = proto(ETH_P_IPV6).to_vec();
    v.extend(l4(IPPROTO_ICMPV6));
    v.extend([load(TH, 0, 1), cmp(true, &[t])]);
    v
}
fn then(mut v: Vec<Expr>, verdict: Verdict) -> Vec<Expr> {
    v.push(Expr::Verdict(verdict));
    v
}
fn with(a: impl IntoIterator<Item = Expr>, b: impl IntoIterator<Item = Expr>) -> Vec<Expr> {
    a.into_iter().chain(b).collect()
}

const ETH_P_IP: u16 = libc::ETH_P_IP as u16;
const ETH_P_ARP: u16 = libc::ETH_P_ARP as u16;
const ETH_P_RARP: u16 = libc::ETH_P_RARP as u16;
const ETH_P_IPV6: u16 = libc::ETH_P_IPV6 as u16;
const ETH_P_8021Q: u16 = libc::ETH_P_8021Q as u16;
const ETH_P_8021AD: u16 = libc::ETH_P_8021AD as u16;
const IPPROTO_ICMP: u8 = libc::IPPROTO_ICMP as u8;
const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;
const IPPROTO_ICMPV6: u8 = libc::IPPROTO_ICMPV6 as u8;
// ARP operations (RFC 826, RFC 903), ICMP and ICMPv6 types (RFC 792, 4861,
// 3810), ports (RFC 2131, 8415).
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;
const ARPOP_RREQUEST: u16 = 3;
const ICMP_REDIRECT: u8 = 5;
const ND_ROUTER_SOLICIT: u8 = 133;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
const MLD2_LISTENER_REPORT: u8 = 143;
const ND_OPT_TARGET_LLADDR: u8 = 2;
const BOOTPS: u16 = 67;
const BOOTPC: u16 = 68;
const DHCPV6_SERVER: u16 = 547;

/// One rule: the chain it goes to, what it stops or lets through (for
/// errors and the design note), its expressions.
pub(crate) struct Rule {
    pub chain: &'static str,
    pub why: &'static str,
    pub exprs: Vec<Expr>,
}

/// The first rules of the base chain, which every guard has: the tap's own
/// frames only, then the rate limit, so that a flood is dropped before any
/// other rule looks at it.
fn entry_rules(spec: &GuardSpec) -> Vec<Rule> {
    // A table left behind by a deleted tap must never filter another
    // device that the kernel binds to its hook by name.
    let mut out = vec![Rule {
        chain: BASE,
        why: "not this tap (a stale table never filters another device)",
        exprs: then(
            vec![
                Expr::Meta(NFT_META_IIF),
                cmp(false, &spec.ifindex.to_ne_bytes()),
            ],
            Verdict::Accept,
        ),
    }];
    if let Some(r) = &spec.rate_in {
        out.push(Rule {
            chain: BASE,
            why: "guest->host traffic over rate_in",
            exprs: then(
                vec![Expr::Limit {
                    bytes_per_sec: r.bytes_per_sec(),
                    burst: ingress_burst(r),
                    over: true,
                }],
                Verdict::Drop,
            ),
        });
    }
    out
}

/// The guard's rules, in order, chain by chain. `ids` are the batch's set
/// ids: (macs, ipv4-src, ipv6-src, na-targets, na-lladdr); `None` when the
/// spec does not enforce, and only the base chain's entry rules are made.
fn rules(spec: &GuardSpec, ids: Option<&SetIds>) -> Vec<Rule> {
    use Verdict::{Accept, Drop, Jump, Return};
    let Some(ids) = ids else {
        return entry_rules(spec);
    };
    let mut out = Vec::new();
    let mut rule = |chain, why, exprs| out.push(Rule { chain, why, exprs });

    // ARP: a well-formed request or reply, its sender MAC and IP the
    // guest's (an ARP probe's sender IP is 0.0.0.0).
    let arp = |exprs: Vec<Expr>| with(proto(ETH_P_ARP), exprs);
    rule(
        ARP,
        "ARP hardware type other than Ethernet",
        then(
            arp(vec![load(NH, 0, 2), cmp(false, &1u16.to_be_bytes())]),
            Drop,
        ),
    );
    rule(
        ARP,
        "ARP protocol type other than IPv4",
        then(
            arp(vec![load(NH, 2, 2), cmp(false, &ETH_P_IP.to_be_bytes())]),
            Drop,
        ),
    );
    rule(
        ARP,
        "ARP hardware address length other than 6",
        then(arp(vec![load(NH, 4, 1), cmp(false, &[6])]), Drop),
    );
    rule(
        ARP,
        "ARP protocol address length other than 4",
        then(arp(vec![load(NH, 5, 1), cmp(false, &[4])]), Drop),
    );
    rule(
        ARP,
        "ARP operation other than request and reply",
        then(
            arp(vec![
                load(NH, 6, 2),
                cmp(false, &ARPOP_REQUEST.to_be_bytes()),
                load(NH, 6, 2),
                cmp(false, &ARPOP_REPLY.to_be_bytes()),
            ]),
            Drop,
        ),
    );
    rule(
        ARP,
        "ARP sender MAC not the guest's",
        then(
            arp(vec![load(NH, 8, 6), lookup(MACS, ids.macs, true)]),
            Drop,
        ),
    );
    match ids.ipv4 {
        Some(id) => {
            rule(
                ARP,
                "ARP probe (sender IP 0.0.0.0)",
                then(arp(vec![load(NH, 14, 4), cmp(true, &[0; 4])]), Accept),
            );
            rule(
                ARP,
                "ARP from the guest's IPv4 addresses",
                then(
                    arp(vec![load(NH, 14, 4), lookup(IPV4_SRC, id, false)]),
                    Accept,
                ),
            );
            rule(
                ARP,
                "ARP with a sender IP not the guest's",
                vec![Expr::Verdict(Drop)],
            );
        }
        None => rule(ARP, "ARP, IPv4 not pinned", vec![Expr::Verdict(Accept)]),
    }

    // RARP: only QEMU's announcement after a migration (a reverse request;
    // its source MAC is checked in the base chain; no kernel reads the rest).
    rule(
        RARP,
        "RARP reverse request (QEMU's announce)",
        then(
            vec![load(NH, 6, 2), cmp(true, &ARPOP_RREQUEST.to_be_bytes())],
            Accept,
        ),
    );
    rule(
        RARP,
        "RARP other than a reverse request",
        vec![Expr::Verdict(Drop)],
    );

    // IPv4: never a DHCP server or a redirect; a DHCP client without an
    // address; otherwise the guest's addresses.
    rule(
        IPV4,
        "DHCP server or relay traffic (udp sport 67)",
        then(
            with(
                l4(IPPROTO_UDP),
                [load(TH, 0, 2), cmp(true, &BOOTPS.to_be_bytes())],
            ),
            Drop,
        ),
    );
    rule(
        IPV4,
        "ICMP redirect",
        then(
            with(
                with(proto(ETH_P_IP), l4(IPPROTO_ICMP)),
                [load(TH, 0, 1), cmp(true, &[ICMP_REDIRECT])],
            ),
            Drop,
        ),
    );
    match ids.ipv4 {
        Some(id) => {
            let mut ports = BOOTPC.to_be_bytes().to_vec();
            ports.extend_from_slice(&BOOTPS.to_be_bytes());
            rule(
                IPV4,
                "DHCP client without an address (0.0.0.0, udp 68 to 67)",
                then(
                    with(
                        with(proto(ETH_P_IP), [load(NH, 12, 4), cmp(true, &[0; 4])]),
                        with(l4(IPPROTO_UDP), [load(TH, 0, 4), cmp(true, &ports)]),
                    ),
                    Accept,
                ),
            );
            rule(
                IPV4,
                "IPv4 from the guest's addresses",
                then(
                    with(
                        proto(ETH_P_IP),
                        [load(NH, 12, 4), lookup(IPV4_SRC, id, false)],
                    ),
                    Accept,
                ),
            );
            rule(
                IPV4,
                "IPv4 from an address not the guest's",
                vec![Expr::Verdict(Drop)],
            );
        }
        None => rule(IPV4, "IPv4, not pinned", vec![Expr::Verdict(Accept)]),
    }

    // Neighbour advertisements: no extension header in front, a target
    // the guest's, and no link-layer address but the guest's.
    let ip6 = |exprs: Vec<Expr>| with(proto(ETH_P_IPV6), exprs);
    rule(
        NA,
        "neighbour advertisement behind an extension header",
        then(
            ip6(vec![load(NH, 6, 1), cmp(false, &[IPPROTO_ICMPV6])]),
            Drop,
        ),
    );
    if let Some(id) = ids.na_targets {
        rule(
            NA,
            "neighbour advertisement for a target not the guest's",
            then(vec![load(TH, 8, 16), lookup(NA_TARGETS, id, true)], Drop),
        );
    }
    rule(
        NA,
        "neighbour advertisement without options",
        then(
            ip6(vec![load(NH, 4, 2), cmp(true, &24u16.to_be_bytes())]),
            Return,
        ),
    );
    rule(
        NA,
        "neighbour advertisement with more than one option",
        then(
            ip6(vec![load(NH, 4, 2), cmp(false, &32u16.to_be_bytes())]),
            Drop,
        ),
    );
    rule(
        NA,
        "neighbour advertisement whose option is not a target link-layer address",
        then(
            vec![load(TH, 24, 2), cmp(false, &[ND_OPT_TARGET_LLADDR, 1])],
            Drop,
        ),
    );
    rule(
        NA,
        "neighbour advertisement naming a MAC not the guest's",
        then(
            vec![load(TH, 26, 6), lookup(NA_LLADDR, ids.na_lladdr, true)],
            Drop,
        ),
    );

    // IPv6: never a router, a redirect or a DHCPv6 server; NAs checked;
    // duplicate address detection from ::; otherwise the guest's addresses
    // and any link-local one.
    rule(
        IPV6,
        "router advertisement",
        then(icmpv6_type(ND_ROUTER_ADVERT), Drop),
    );
    rule(
        IPV6,
        "ICMPv6 redirect",
        then(icmpv6_type(ND_REDIRECT), Drop),
    );
    rule(
        IPV6,
        "DHCPv6 server or relay traffic (udp sport 547)",
        then(
            with(
                l4(IPPROTO_UDP),
                [load(TH, 0, 2), cmp(true, &DHCPV6_SERVER.to_be_bytes())],
            ),
            Drop,
        ),
    );
    rule(
        IPV6,
        "neighbour advertisement: checked in guest-na",
        then(icmpv6_type(ND_NEIGHBOR_ADVERT), Jump(NA.into())),
    );
    match ids.ipv6 {
        Some(id) => {
            for (t, why) in [
                (
                    ND_NEIGHBOR_SOLICIT,
                    "duplicate address detection (neighbour solicitation from ::)",
                ),
                (ND_ROUTER_SOLICIT, "router solicitation from ::"),
                (
                    MLD2_LISTENER_REPORT,
                    "MLDv2 report from :: (joining the solicited-node group)",
                ),
            ] {
                let mut v = ip6(vec![load(NH, 8, 16), cmp(true, &[0; 16])]);
                v.extend(l4(IPPROTO_ICMPV6));
                v.extend([load(TH, 0, 1), cmp(true, &[t])]);
                rule(IPV6, why, then(v, Accept));
            }
            rule(
                IPV6,
                "IPv6 from the guest's addresses or a link-local one",
                then(
                    ip6(vec![load(NH, 8, 16), lookup(IPV6_SRC, id, false)]),
                    Accept,
                ),
            );
            rule(
                IPV6,
                "IPv6 from an address not the guest's",
                vec![Expr::Verdict(Drop)],
            );
        }
        None => rule(IPV6, "IPv6, not pinned", vec![Expr::Verdict(Accept)]),
    }

    // The base chain: its entry rules, then what the guest may send.
    for r in entry_rules(spec) {
        rule(r.chain, r.why, r.exprs);
    }
    rule(
        BASE,
        "802.1Q VLAN-tagged frame",
        then(ether_type(ETH_P_8021Q), Drop),
    );
    rule(
        BASE,
        "802.1ad VLAN-tagged frame",
        then(ether_type(ETH_P_8021AD), Drop),
    );
    rule(
        BASE,
        "source MAC not the guest's",
        then(
            with(ether(), [load(LL, 6, 6), lookup(MACS, ids.macs, true)]),
            Drop,
        ),
    );
    rule(
        BASE,
        "ARP: checked in guest-arp",
        then(ether_type(ETH_P_ARP), Jump(ARP.into())),
    );
    rule(
        BASE,
        "RARP: checked in guest-rarp",
        then(ether_type(ETH_P_RARP), Jump(RARP.into())),
    );
    rule(
        BASE,
        "IPv4: checked in guest-ipv4",
        then(ether_type(ETH_P_IP), Jump(IPV4.into())),
    );
    rule(
        BASE,
        "IPv6: checked in guest-ipv6",
        then(ether_type(ETH_P_IPV6), Jump(IPV6.into())),
    );
    if !spec.pins_ip() {
        rule(
            BASE,
            "other protocols, no address pinned",
            vec![Expr::Verdict(Accept)],
        );
    }
    out
}

/// The batch's set ids (nft numbers sets from 1 in the order it makes
/// them); `None` for a set the spec does not need.
struct SetIds {
    macs: u32,
    ipv4: Option<u32>,
    ipv6: Option<u32>,
    na_targets: Option<u32>,
    na_lladdr: u32,
}

/// The chains in the order they are made; rules go in the same order.
const CHAINS: [&str; 6] = [ARP, RARP, IPV4, NA, IPV6, BASE];

/// The guard's batch for `spec`, without the lines that first remove a
/// table of the same name: table, chains, sets and their elements, rules,
/// in the order nft sends the same ruleset (docs/guard-design.md).
pub(crate) fn ruleset(spec: &GuardSpec) -> Result<Vec<Msg>, GuardError> {
    spec.check()?;
    let table = table_name(spec.ifindex);
    let mut msgs = vec![msg::new_table(
        FAMILY,
        &table,
        &format!("{COMMENT_PREFIX}{}", spec.tap),
    )];
    // Without the guard's rules, only the base chain, which accepts what
    // the rate lets through.
    let (chains, policy): (&[&str], i32) = if spec.enforce {
        (&CHAINS, NF_DROP)
    } else {
        (&[BASE], NF_ACCEPT)
    };
    for &chain in chains {
        let hook = (chain == BASE).then_some(Hook {
            hooknum: NF_NETDEV_INGRESS,
            priority: 0,
            device: spec.tap.as_str(),
            policy,
        });
        msgs.push(msg::new_chain(FAMILY, &table, chain, hook.as_ref()));
    }

    let ids = spec.enforce.then(|| sets(spec, &table, &mut msgs));
    let all = rules(spec, ids.as_ref());
    for &chain in chains {
        for r in all.iter().filter(|r| r.chain == chain) {
            msgs.push(msg::new_rule(FAMILY, &table, r.chain, &r.exprs, r.why));
        }
    }
    Ok(msgs)
}

/// The sets of an enforcing guard and their elements, appended to `msgs`;
/// their ids in the batch.
fn sets(spec: &GuardSpec, table: &str, msgs: &mut Vec<Msg>) -> SetIds {
    // Sets, numbered as made.
    let mut next = 0;
    let mut id = || {
        next += 1;
        next
    };
    let macs_id = id();
    let ipv4_id = spec.ipv4.as_ref().map(|_| id());
    let ipv6_id = spec.ipv6.as_ref().map(|_| id());
    let na_id = spec.ipv6.as_ref().map(|_| id());
    let ids = SetIds {
        macs: macs_id,
        ipv4: ipv4_id,
        ipv6: ipv6_id,
        na_targets: na_id,
        na_lladdr: id(),
    };
    let mac_elems = || {
        plain_elems(
            spec.macs
                .iter()
                .map(|m| (m.0.to_vec(), format!("element {m}"))),
        )
    };
    let mut sets: Vec<(SetDef, Vec<Elem>)> = vec![(
        SetDef {
            table,
            name: MACS,
            id: ids.macs,
            key: KeyType::Named(msg::TYPE_ETHERADDR),
            key_len: 6,
            interval: false,
        },
        mac_elems(),
    )];
    if let (Some(id), Some(list)) = (ids.ipv4, &spec.ipv4) {
        sets.push((
            SetDef {
                table,
                name: IPV4_SRC,
                id,
                key: KeyType::Named(msg::TYPE_IPADDR),
                key_len: 4,
                interval: true,
            },
            interval_elems(list, 32),
        ));
    }
    if let (Some(id), Some(list)) = (ids.ipv6, &spec.ipv6) {
        let mut src = list.clone();
        src.push(Prefix {
            addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
            len: 10,
        });
        sets.push((
            SetDef {
                table,
                name: IPV6_SRC,
                id,
                key: KeyType::Named(msg::TYPE_IP6ADDR),
                key_len: 16,
                interval: true,
            },
            interval_elems(&src, 128),
        ));
    }
    if let (Some(id), Some(list)) = (ids.na_targets, &spec.ipv6) {
        let mut targets = list.clone();
        targets.extend(
            spec.macs
                .iter()
                .map(|m| Prefix::host(IpAddr::V6(eui64_link_local(*m)))),
        );
        sets.push((
            SetDef {
                table,
                name: NA_TARGETS,
                id,
                key: KeyType::RawPayload {
                    base: TH,
                    offset: 64,
                    len: 128,
                },
                key_len: 16,
                interval: true,
            },
            interval_elems(&targets, 128),
        ));
    }
    sets.push((
        SetDef {
            table,
            name: NA_LLADDR,
            id: ids.na_lladdr,
            key: KeyType::RawPayload {
                base: TH,
                offset: 208,
                len: 48,
            },
            key_len: 6,
            interval: false,
        },
        mac_elems(),
    ));
    for (def, elems) in &sets {
        msgs.push(msg::new_set(FAMILY, def));
        msgs.extend(msg::set_elems(FAMILY, def, elems));
    }
    ids
}

/// The whole batch [`apply`] sends: the table of that name made sure to
/// exist, deleted, and made anew with `ruleset`. Deleting a table that does
/// not exist would fail the batch; NEWTABLE without NLM_F_EXCL first makes
/// the delete always valid (what `nft` scripts do to replace a table; the
/// kernel's DESTROYTABLE, new in 6.3, is not needed).
pub(crate) fn replace_batch(spec: &GuardSpec) -> Result<Vec<Msg>, GuardError> {
    let table = table_name(spec.ifindex);
    let mut msgs = vec![
        msg::ensure_table(FAMILY, &table),
        msg::delete_table(FAMILY, &table, None),
    ];
    msgs.extend(ruleset(spec)?);
    Ok(msgs)
}

/// Puts the guard described by `spec` on its tap, replacing the tap's
/// previous guard (if any) atomically: the kernel switches from the old
/// ruleset to the new one with no moment without either. Works in the
/// calling thread's network namespace.
pub fn apply(spec: &GuardSpec) -> Result<(), GuardError> {
    let mut nft = Nft::open()?;
    let op = format!("guarding {}", spec.tap);
    // Deleting a table makes the kernel's commit wait for an RCU grace
    // period, far longer than everything else an ifup does: a tap without a
    // guard (every first run) gets its table created, and only a table that
    // is there already is replaced (EEXIST on the exclusive create).
    let mut create = ruleset(spec)?;
    create[0].flags |= crate::nlsock::NLM_F_EXCL;
    match nft.apply(&op, &create) {
        Err(NftError::Rejected { refusals, .. })
            if refusals.first().is_some_and(|r| r.errno == libc::EEXIST) =>
        {
            nft.apply(&op, &replace_batch(spec)?)?;
            Ok(())
        }
        r => Ok(r?),
    }
}

/// Removes the guard table of the tap with this ifindex; one that is not
/// there is fine.
pub fn remove(ifindex: u32) -> Result<(), GuardError> {
    let table = table_name(ifindex);
    let msgs = [
        msg::ensure_table(FAMILY, &table),
        msg::delete_table(FAMILY, &table, None),
    ];
    let mut nft = Nft::open()?;
    nft.apply(&format!("removing {table}"), &msgs)?;
    Ok(())
}

/// What a network namespace says about an interface index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFact {
    Missing,
    Tap {
        name: String,
    },
    /// Something else now has the index.
    Other {
        name: String,
    },
}

/// A guard table whose tap is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleTable {
    pub name: String,
    pub handle: u64,
    pub why: String,
}

/// The guard tables among `tables` whose tap is gone, looking up at most
/// `budget` of them, from the `start`-th guard table on (round the list):
/// each run's cost is bounded, and runs that start elsewhere cover the
/// rest. A table is stale when no interface has its index, or another
/// interface than the tap its comment records: a tap of another name, or
/// no tap. Tables without kvmnet's comment are judged by the index alone
/// (stale only when it names no tap). Other tables are not looked at.
pub fn stale_tables(
    tables: &[Table],
    mut lookup: impl FnMut(u32) -> LinkFact,
    budget: usize,
    start: usize,
) -> Vec<StaleTable> {
    let guards: Vec<(&Table, u32)> = tables
        .iter()
        .filter_map(|t| {
            let n = t.name.strip_prefix(TABLE_PREFIX)?;
            // Only the canonical spelling kvmnet writes.
            let i: u32 = n.parse().ok().filter(|i: &u32| i.to_string() == n)?;
            Some((t, i))
        })
        .collect();
    if guards.is_empty() {
        return Vec::new();
    }
    let first = start % guards.len();
    let mut out = Vec::new();
    for k in 0..guards.len().min(budget) {
        let (t, index) = guards[(first + k) % guards.len()];
        let recorded = t
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix(COMMENT_PREFIX));
        let why = match (lookup(index), recorded) {
            (LinkFact::Missing, _) => Some(format!("no interface has index {index}")),
            (LinkFact::Other { name }, _) => {
                Some(format!("interface {index} is now {name}, not a tap"))
            }
            (LinkFact::Tap { name }, Some(r)) if name != r => {
                Some(format!("interface {index} is now tap {name}, not {r}"))
            }
            (LinkFact::Tap { .. }, _) => None,
        };
        if let Some(why) = why {
            out.push(StaleTable {
                name: t.name.clone(),
                handle: t.handle,
                why,
            });
        }
    }
    out
}

/// Finds stale guard tables ([`stale_tables`], looking up at most `budget`
/// interfaces from the `start`-th guard table) and deletes them, each by
/// its handle in a batch of its own: a table removed meanwhile by another
/// run (ENOENT) counts as removed. Returns what it removed.
pub fn sweep(budget: usize, start: usize) -> Result<Vec<StaleTable>, GuardError> {
    let mut nft = Nft::open()?;
    let tables = nft.tables(FAMILY)?;
    let nl = crate::netlink::Netlink::open()?;
    let mut failed = None;
    let stale = stale_tables(
        &tables,
        |i| match nl.link_by_index(i) {
            Ok(None) => LinkFact::Missing,
            Ok(Some(l)) if l.is_tap() => LinkFact::Tap { name: l.name },
            Ok(Some(l)) => LinkFact::Other { name: l.name },
            Err(e) => {
                // Not knowing is not "gone": nothing is deleted below.
                failed.get_or_insert(e);
                LinkFact::Tap {
                    name: String::new(),
                }
            }
        },
        budget,
        start,
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    // All in one batch: each commit that deletes a table waits for an RCU
    // grace period. Should another run have removed one meanwhile (ENOENT
    // refuses the whole batch), each goes in a batch of its own.
    let all: Vec<Msg> = stale
        .iter()
        .map(|s| msg::delete_table(FAMILY, &s.name, Some(s.handle)))
        .collect();
    if all.is_empty() {
        return Ok(stale);
    }
    let gone = |r: Result<(), NftError>| match r {
        Err(NftError::Rejected { refusals, .. })
            if refusals.iter().all(|r| r.errno == libc::ENOENT) =>
        {
            Err(())
        }
        r => Ok(r),
    };
    if let Ok(r) = gone(nft.apply("removing stale guard tables", &all)) {
        r?;
        return Ok(stale);
    }
    for s in &stale {
        let del = [msg::delete_table(FAMILY, &s.name, Some(s.handle))];
        if let Ok(r) = gone(nft.apply(&format!("removing stale {} ({})", s.name, s.why), &del)) {
            r?;
        }
    }
    Ok(stale)
}

/// The interval elements of `prefixes` in nft's syntax: merged as
/// [`interval_elems`] merges them, each a single address or a range.
fn interval_text(prefixes: &[Prefix], raw: bool) -> String {
    let v4 = prefixes.first().is_some_and(|p| p.addr.is_ipv4());
    let mut ranges: Vec<(u128, u128)> = prefixes.iter().map(Prefix::range).collect();
    ranges.sort();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => merged.push(r),
        }
    }
    let show = |v: u128| {
        if raw {
            format!("{v:#034x}")
        } else {
            from_bits(v, v4).to_string()
        }
    };
    let width = if v4 { 32 } else { 128 };
    let items: Vec<String> = merged
        .iter()
        .map(|&(a, b)| {
            // A block of 2^k addresses aligned on its size is a prefix.
            let span = b - a;
            let block = span.checked_add(1).is_none_or(u128::is_power_of_two) && a & span == 0;
            if a == b {
                show(a)
            } else if block && !raw {
                format!("{}/{}", show(a), width - (128 - span.leading_zeros()))
            } else {
                format!("{}-{}", show(a), show(b))
            }
        })
        .collect();
    items.join(", ")
}

/// The guard of `spec` in nft's syntax: what [`apply`] loads, for people
/// (`kvmnet explain`) and as the tests' oracle (`nft -f` of this text makes
/// the very same kernel objects as [`ruleset`], byte for byte).
pub fn nft_text(spec: &GuardSpec) -> Result<String, GuardError> {
    spec.check()?;
    let mut t = format!(
        "table netdev {} {{\n\tcomment \"{COMMENT_PREFIX}{}\"\n",
        table_name(spec.ifindex),
        spec.tap
    );
    let chain = |name: &str, lines: &[&str]| {
        let mut c = format!("\tchain {name} {{\n");
        for l in lines {
            c += &format!("\t\t{l}\n");
        }
        c + "\t}\n"
    };
    let policy = if spec.enforce { "drop" } else { "accept" };
    let hook = format!(
        "type filter hook ingress device \"{}\" priority 0; policy {policy};",
        spec.tap
    );
    let iif = format!("meta iif != {} accept", spec.ifindex);
    let limit = spec.rate_in.map(|r| {
        format!(
            "limit rate over {} bytes/second burst {} bytes drop",
            r.bytes_per_sec(),
            ingress_burst(&r)
        )
    });
    let mut base = vec![hook.as_str(), iif.as_str()];
    base.extend(limit.as_deref());
    if !spec.enforce {
        t += &chain(BASE, &base);
        t += "}\n";
        return Ok(t);
    }
    let mut macs: Vec<Mac> = spec.macs.clone();
    macs.sort();
    macs.dedup();
    let mac_list = macs
        .iter()
        .map(Mac::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let raw_macs = macs
        .iter()
        .map(|m| {
            format!(
                "0x{}",
                m.0.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    t += &format!("\tset {MACS} {{ type ether_addr; elements = {{ {mac_list} }} }}\n");
    if let Some(v4) = &spec.ipv4 {
        let e = if v4.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }}", interval_text(v4, false))
        };
        t += &format!("\tset {IPV4_SRC} {{ type ipv4_addr; flags interval;{e} }}\n");
    }
    if let Some(v6) = &spec.ipv6 {
        let mut src = v6.clone();
        src.push("fe80::/10".parse().expect("a prefix"));
        t += &format!(
            "\tset {IPV6_SRC} {{ type ipv6_addr; flags interval; elements = {{ {} }} }}\n",
            interval_text(&src, false)
        );
        let mut targets = v6.clone();
        targets.extend(
            macs.iter()
                .map(|m| Prefix::host(IpAddr::V6(eui64_link_local(*m)))),
        );
        t += &format!(
            "\tset {NA_TARGETS} {{ typeof @th,64,128; flags interval; elements = {{ {} }} }}\n",
            interval_text(&targets, true)
        );
    }
    t += &format!("\tset {NA_LLADDR} {{ typeof @th,208,48; elements = {{ {raw_macs} }} }}\n");
    let mut arp = vec![
        "arp htype != 1 drop",
        "arp ptype != ip drop",
        "arp hlen != 6 drop",
        "arp plen != 4 drop",
        "arp operation != request arp operation != reply drop",
        "arp saddr ether != @macs drop",
    ];
    let mut ipv4 = vec!["udp sport 67 drop", "icmp type redirect drop"];
    if spec.ipv4.is_some() {
        arp.extend([
            "arp saddr ip 0.0.0.0 accept",
            "arp saddr ip @ipv4-src accept",
            "drop",
        ]);
        ipv4.extend([
            "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
            "ip saddr @ipv4-src accept",
            "drop",
        ]);
    } else {
        arp.push("accept");
        ipv4.push("accept");
    }
    let mut na = vec!["ip6 nexthdr != ipv6-icmp drop"];
    if spec.ipv6.is_some() {
        na.push("@th,64,128 != @na-targets drop");
    }
    na.extend([
        "ip6 length 24 return",
        "ip6 length != 32 drop",
        "@th,192,16 != 0x0201 drop",
        "@th,208,48 != @na-lladdr drop",
    ]);
    let mut ipv6 = vec![
        "icmpv6 type nd-router-advert drop",
        "icmpv6 type nd-redirect drop",
        "udp sport 547 drop",
        "icmpv6 type nd-neighbor-advert jump guest-na",
    ];
    if spec.ipv6.is_some() {
        ipv6.extend([
            "ip6 saddr :: icmpv6 type nd-neighbor-solicit accept",
            "ip6 saddr :: icmpv6 type nd-router-solicit accept",
            "ip6 saddr :: icmpv6 type mld2-listener-report accept",
            "ip6 saddr @ipv6-src accept",
            "drop",
        ]);
    } else {
        ipv6.push("accept");
    }
    base.extend([
        "ether type 8021q drop",
        "ether type 8021ad drop",
        "ether saddr != @macs drop",
        "ether type arp jump guest-arp",
        "ether type 0x8035 jump guest-rarp",
        "ether type ip jump guest-ipv4",
        "ether type ip6 jump guest-ipv6",
    ]);
    if !spec.pins_ip() {
        base.push("accept");
    }
    t += &chain(ARP, &arp);
    t += &chain(RARP, &["@nh,48,16 3 accept", "drop"]);
    t += &chain(IPV4, &ipv4);
    t += &chain(NA, &na);
    t += &chain(IPV6, &ipv6);
    t += &chain(BASE, &base);
    t += "}\n";
    Ok(t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs `f` in a thread of its own network namespace, which the kernel
    /// removes when the thread ends, passed or panicked; programs the
    /// thread starts run in it too.
    pub(crate) fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (a network namespace, a tap, nf_tables); run the suite as root"
        );
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Runs `prog args` (in the calling thread's namespace); its stdout,
    /// or a panic with its stderr.
    pub(crate) fn run(prog: &str, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {prog} (the oracle; apt-get install nftables): {e}")
            });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Makes tap `name` in the calling thread's namespace; its ifindex.
    pub(crate) fn tap(name: &str) -> u32 {
        run("ip", &["tuntap", "add", name, "mode", "tap"], "");
        let out = run("ip", &["-j", "link", "show", "dev", name], "");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["ifindex"].as_u64().unwrap() as u32
    }

    pub(crate) fn spec(ifindex: u32) -> GuardSpec {
        GuardSpec {
            tap: TapName::new("vm0").unwrap(),
            ifindex,
            macs: vec!["52:54:00:12:34:56".parse().unwrap()],
            ipv4: Some(vec![
                "192.0.2.10".parse().unwrap(),
                "198.51.100.0/24".parse().unwrap(),
            ]),
            ipv6: Some(vec![
                "2001:db8::10".parse().unwrap(),
                "2001:db8:1::/64".parse().unwrap(),
            ]),
            enforce: true,
            rate_in: None,
        }
    }

    /// The messages of the batch nft sends, as `nft --debug=mnl` prints
    /// them: (type, everything after the netlink header), BATCH_BEGIN and
    /// END left out. The dump shows each 4-byte word of a message after the
    /// header on a line: attribute headers as length, flags (N: nested, B:
    /// network byte order) and type, the rest as hex bytes.
    fn nft_batch(dump: &str) -> Vec<(u16, Vec<u8>)> {
        let mut msgs: Vec<(u16, Vec<u8>)> = Vec::new();
        for raw in dump.lines() {
            // Attribute headers come coloured (ANSI escapes ending in 'm').
            let mut line = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    chars.by_ref().find(|c| *c == 'm');
                } else {
                    line.push(c);
                }
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if line.contains("|  type | flags  |") {
                msgs.push((cells[1].parse().unwrap(), Vec::new()));
            } else if line.contains("|len |flags| type|") {
                let len: u16 = cells[1].parse().unwrap();
                let mut kind: u16 = cells[3].parse().unwrap();
                if cells[2].contains('N') {
                    kind |= 0x8000;
                }
                if cells[2].contains('B') {
                    kind |= 0x4000;
                }
                let body = &mut msgs.last_mut().unwrap().1;
                body.extend_from_slice(&len.to_ne_bytes());
                body.extend_from_slice(&kind.to_ne_bytes());
            } else if line.contains("|      data      |") || line.contains("|  extra header  |") {
                let body = &mut msgs.last_mut().unwrap().1;
                body.extend(
                    cells[1]
                        .split_whitespace()
                        .map(|b| u8::from_str_radix(b, 16).unwrap()),
                );
            }
        }
        let begin = msgs.iter().position(|(k, _)| *k == 16).expect("a batch");
        let end = msgs
            .iter()
            .rposition(|(k, _)| *k == 17)
            .expect("a batch end");
        msgs[begin + 1..end].to_vec()
    }

    /// A spec with only the guest->host rate, for tap vm0.
    pub(crate) fn rate_only(ifindex: u32, rate: &str, burst: Option<&str>) -> GuardSpec {
        GuardSpec::rate_only(
            TapName::new("vm0").unwrap(),
            ifindex,
            Rate::parse(rate, burst).unwrap(),
        )
    }

    /// The byte oracle: nft 1.0.6 loading [`nft_text`] sends exactly the
    /// messages [`ruleset`] makes, for a guard pinning both families, for
    /// one pinning nothing but the MAC, for a rate alone (default burst,
    /// a configured one, the highest rate with the largest burst, a spec
    /// whose MACs and addresses go unused) and for a rate with the guard.
    #[test]
    fn the_batch_is_byte_for_byte_what_nft_sends_for_the_same_ruleset() {
        in_fresh_netns(|| {
            let index = tap("vm0");
            let mut only_mac = spec(index);
            only_mac.ipv4 = None;
            only_mac.ipv6 = None;
            let mut two_macs_v4_empty = spec(index);
            two_macs_v4_empty
                .macs
                .push("02:00:00:00:00:02".parse().unwrap());
            two_macs_v4_empty.ipv4 = Some(Vec::new());
            two_macs_v4_empty.ipv6 = Some(vec!["ff00::/8".parse().unwrap()]);
            let mut unused_addresses = spec(index);
            unused_addresses.enforce = false;
            unused_addresses.rate_in = Some(Rate::parse("10mbit", None).unwrap());
            let mut rate_and_guard = spec(index);
            rate_and_guard.rate_in = Some(Rate::parse("100mbit", Some("256kb")).unwrap());
            let mut rate_and_mac = only_mac.clone();
            rate_and_mac.rate_in = Some(Rate::parse("8kbit", None).unwrap());
            let highest = GuardSpec {
                rate_in: Some(
                    Rate::new(crate::rate::MAX_BYTES_PER_SEC, Some(crate::rate::MAX_BURST))
                        .unwrap(),
                ),
                ..rate_only(index, "10mbit", None)
            };
            for s in [
                spec(index),
                only_mac,
                two_macs_v4_empty,
                rate_only(index, "10mbit", None),
                rate_only(index, "1.5mbit", Some("3028")),
                highest,
                unused_addresses,
                rate_and_guard,
                rate_and_mac,
            ] {
                let text = nft_text(&s).unwrap();
                let dump = run("nft", &["--debug=mnl", "-f", "-"], &text);
                let theirs = nft_batch(&dump);
                run("nft", &["flush", "ruleset"], "");
                let ours: Vec<(u16, Vec<u8>)> = ruleset(&s)
                    .unwrap()
                    .into_iter()
                    .map(|m| (m.req.kind, m.req.body))
                    .collect();
                assert_eq!(ours.len(), theirs.len(), "{text}");
                for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                    assert_eq!(a, b, "message {i} differs for\n{text}");
                }
            }
        });
    }

    /// Applying twice leaves one table, as the first made it; removing
    /// leaves none, and removing again is fine.
    #[test]
    fn apply_replaces_and_remove_is_idempotent() {
        in_fresh_netns(|| {
            let index = tap("vm0");
            apply(&spec(index)).unwrap();
            let first = run("nft", &["--json", "list", "ruleset"], "");
            apply(&spec(index)).unwrap();
            let second = run("nft", &["--json", "list", "ruleset"], "");
            let strip = |s: &str| {
                let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
                strip_handles(&mut v);
                v
            };
            assert_eq!(strip(&first), strip(&second));
            remove(index).unwrap();
            remove(index).unwrap();
            let left = run("nft", &["list", "ruleset"], "");
            assert_eq!(left.trim(), "");
        });
    }

    /// Handles number objects in the order of their making; they differ
    /// between two loads of the same ruleset.
    pub(crate) fn strip_handles(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("handle");
                m.values_mut().for_each(strip_handles);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_handles),
            _ => {}
        }
    }
}

#[cfg(test)]
mod pure_tests {
    use super::*;

    fn table(name: &str, handle: u64, tap: Option<&str>) -> Table {
        Table {
            name: name.into(),
            handle,
            comment: tap.map(|t| format!("{COMMENT_PREFIX}{t}")),
        }
    }

    fn links(i: u32) -> LinkFact {
        match i {
            2 => LinkFact::Tap { name: "vm0".into() },
            3 => LinkFact::Tap { name: "vm9".into() },
            4 => LinkFact::Other {
                name: "eth0".into(),
            },
            _ => LinkFact::Missing,
        }
    }

    #[test]
    fn stale_tables_are_those_whose_tap_is_gone_or_replaced() {
        let tables = [
            table("kvmnet-guard-2", 10, Some("vm0")),
            table("kvmnet-guard-3", 11, Some("vm1")),
            table("kvmnet-guard-4", 12, Some("vm2")),
            table("kvmnet-guard-5", 13, Some("vm3")),
            table("kvmnet-guard-6", 14, None),
            table("kvmnet-guard-3", 15, None),
            table("kvmnet-guard-007", 16, None),
            table("kvmnet-guard-x", 17, None),
            table("filter", 18, None),
        ];
        let stale = stale_tables(&tables, links, 100, 0);
        let got: Vec<(u64, &str)> = stale.iter().map(|s| (s.handle, s.why.as_str())).collect();
        assert_eq!(
            got,
            [
                (11, "interface 3 is now tap vm9, not vm1"),
                (12, "interface 4 is now eth0, not a tap"),
                (13, "no interface has index 5"),
                (14, "no interface has index 6"),
            ]
        );
    }

    /// Each run looks up at most `budget` tables; runs starting further on
    /// cover the rest, round the list.
    #[test]
    fn the_sweep_looks_up_at_most_its_budget() {
        let tables: Vec<Table> = (10..20)
            .map(|i| table(&table_name(i), u64::from(i), Some("gone")))
            .collect();
        let mut asked = Vec::new();
        let stale = stale_tables(
            &tables,
            |i| {
                asked.push(i);
                LinkFact::Missing
            },
            3,
            8,
        );
        assert_eq!(asked, [18, 19, 10]);
        assert_eq!(stale.len(), 3);
        assert!(stale_tables(&tables, |_| LinkFact::Missing, 0, 0).is_empty());
        assert!(stale_tables(&[], |_| LinkFact::Missing, 5, 3).is_empty());
    }

    #[test]
    fn prefixes_parse_and_refuse_host_bits_and_bad_lengths() {
        let p: Prefix = "198.51.100.0/24".parse().unwrap();
        assert_eq!(p.range(), (0xc633_6400, 0xc633_64ff));
        assert_eq!(p.to_string(), "198.51.100.0/24");
        assert_eq!("2001:db8::10".parse::<Prefix>().unwrap().len, 128);
        let e = "198.51.100.1/24".parse::<Prefix>().unwrap_err();
        assert!(e.contains("write 198.51.100.0/24"), "{e}");
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("fe80::/129".parse::<Prefix>().is_err());
        assert!("vm0".parse::<Prefix>().is_err());
        assert_eq!(
            "0.0.0.0/0".parse::<Prefix>().unwrap().range(),
            (0, 0xffff_ffff)
        );
    }

    /// Interval elements as nft writes them: a leading end at 0, a start
    /// and the key past the end for each, overlaps merged, adjacent
    /// intervals kept apart, an interval up to the top left open.
    #[test]
    fn interval_elements_follow_nfts_layout() {
        let p = |s: &str| s.parse::<Prefix>().unwrap();
        let e = interval_elems(&[p("10.0.0.128/25"), p("10.0.0.0/25"), p("10.0.0.7")], 32);
        let keys: Vec<(Vec<u8>, bool, bool)> =
            e.iter().map(|e| (e.key.clone(), e.end, e.open)).collect();
        assert_eq!(
            keys,
            [
                (vec![0, 0, 0, 0], true, false),
                (vec![10, 0, 0, 0], false, false),
                (vec![10, 0, 0, 128], true, false),
                (vec![10, 0, 0, 128], false, false),
                (vec![10, 0, 1, 0], true, false),
            ]
        );
        let e = interval_elems(&[p("0.0.0.0/1"), p("255.0.0.0/8")], 32);
        let keys: Vec<(Vec<u8>, bool, bool)> =
            e.iter().map(|e| (e.key.clone(), e.end, e.open)).collect();
        assert_eq!(
            keys,
            [
                (vec![0, 0, 0, 0], false, false),
                (vec![128, 0, 0, 0], true, false),
                (vec![255, 0, 0, 0], false, true),
            ]
        );
    }

    #[test]
    fn specs_that_cannot_be_enforced_are_refused() {
        let base = GuardSpec {
            tap: TapName::new("vm0").unwrap(),
            ifindex: 7,
            macs: vec![Mac([0x52, 0x54, 0, 1, 2, 3])],
            ipv4: None,
            ipv6: None,
            enforce: true,
            rate_in: None,
        };
        assert!(ruleset(&base).is_ok());
        let mut s = base.clone();
        s.macs.clear();
        assert!(ruleset(&s)
            .unwrap_err()
            .to_string()
            .contains("no allowed MAC"));
        let mut s = base.clone();
        s.macs = vec![Mac([1, 0, 0x5e, 0, 0, 1])];
        assert!(ruleset(&s).unwrap_err().to_string().contains("multicast"));
        let mut s = base.clone();
        s.ipv4 = Some(vec!["2001:db8::1".parse().unwrap()]);
        assert!(ruleset(&s).unwrap_err().to_string().contains("not an IPv4"));
        let mut s = base.clone();
        s.ipv6 = Some(vec!["192.0.2.1".parse().unwrap(); MAX_ENTRIES + 1]);
        assert!(ruleset(&s).is_err());
    }

    /// A spec must put something on the tap; a guard needs MACs even with a
    /// rate; a rate alone needs none; the kernel's bucket must hold a
    /// full-size frame. nft_text refuses what ruleset refuses.
    #[test]
    fn specs_that_limit_nothing_or_cannot_pass_a_frame_are_refused() {
        let refused = |s: &GuardSpec, needle: &str| {
            let e = ruleset(s).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert_eq!(nft_text(s).unwrap_err().to_string(), e);
        };
        let nothing = GuardSpec {
            tap: TapName::new("vm0").unwrap(),
            ifindex: 7,
            macs: vec![Mac([0x52, 0x54, 0, 1, 2, 3])],
            ipv4: None,
            ipv6: None,
            enforce: false,
            rate_in: None,
        };
        refused(&nothing, "nothing to put on the tap");
        let rate = Rate::parse("10mbit", None).unwrap();
        let mut no_macs = nothing.clone();
        no_macs.macs.clear();
        no_macs.enforce = true;
        no_macs.rate_in = Some(rate);
        refused(&no_macs, "no allowed MAC");
        let mut rate_alone = no_macs.clone();
        rate_alone.enforce = false;
        assert!(ruleset(&rate_alone).is_ok());
        // Unused without the guard's rules: neither checked nor loaded.
        rate_alone.macs = vec![Mac([1, 0, 0x5e, 0, 0, 1])];
        assert!(ruleset(&rate_alone).is_ok());
        let mut tiny = rate_alone.clone();
        tiny.rate_in = Some(Rate::parse("8kbit", Some("499")).unwrap());
        refused(&tiny, "less than one full-size frame");
        tiny.rate_in = Some(Rate::parse("8kbit", Some("500")).unwrap());
        assert!(ruleset(&tiny).is_ok());
        let mut no_index = rate_alone;
        no_index.ifindex = 0;
        refused(&no_index, "interface index 0");
    }

    /// The limit is the base chain's second rule, behind the tap's own
    /// frames and ahead of every other rule; without the guard's rules the
    /// table is one base chain that accepts, with no set; the burst is the
    /// configured one or the default.
    #[test]
    fn the_rate_is_policed_before_any_other_rule() {
        let rules_of = |msgs: &[Msg], chain: &str| -> Vec<String> {
            msgs.iter()
                .filter(|m| m.what.ends_with(&format!("to chain {chain}")))
                .map(|m| m.what.clone())
                .collect()
        };
        let mut s = tests::spec(7);
        s.rate_in = Some(Rate::parse("10mbit", None).unwrap());
        let msgs = ruleset(&s).unwrap();
        let base = rules_of(&msgs, BASE);
        assert!(base[0].contains("not this tap"), "{base:?}");
        assert!(base[1].contains("over rate_in"), "{base:?}");
        assert_eq!(
            base.len(),
            rules_of(&ruleset(&tests::spec(7)).unwrap(), BASE).len() + 1
        );
        assert_eq!(
            entry_rules(&s)[1].exprs,
            [
                Expr::Limit {
                    bytes_per_sec: 1_250_000,
                    burst: INGRESS_BURST_DEFAULT,
                    over: true
                },
                Expr::Verdict(Verdict::Drop)
            ]
        );

        let alone = tests::rate_only(7, "100mbit", Some("256kb"));
        let msgs = ruleset(&alone).unwrap();
        let kinds: Vec<&str> = msgs.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "creating table kvmnet-guard-7",
                "creating chain guest",
                "adding rule \"not this tap (a stale table never filters another device)\" to chain guest",
                "adding rule \"guest->host traffic over rate_in\" to chain guest",
            ]
        );
        let text = nft_text(&alone).unwrap();
        assert!(text.contains("policy accept;"), "{text}");
        assert!(
            text.contains("limit rate over 12500000 bytes/second burst 262144 bytes drop"),
            "{text}"
        );
        assert!(!text.contains("set "), "{text}");
    }

    /// The number of rules does not grow with the addresses (sets hold
    /// them), and a thousand addresses still fit messages of the batch.
    #[test]
    fn rules_do_not_grow_with_addresses() {
        let spec = |n: u32| GuardSpec {
            tap: TapName::new("vm0").unwrap(),
            ifindex: 7,
            macs: vec![Mac([0x52, 0x54, 0, 1, 2, 3])],
            ipv4: Some(
                (0..n)
                    .map(|i| Prefix::host(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 2 * i))))
                    .collect(),
            ),
            ipv6: Some(
                (0..n)
                    .map(|i| {
                        Prefix::host(IpAddr::V6(Ipv6Addr::from(
                            0x2001_0db8_u128 << 96 | u128::from(2 * i),
                        )))
                    })
                    .collect(),
            ),
            enforce: true,
            rate_in: None,
        };
        let rules = |m: &[Msg]| {
            m.iter()
                .filter(|m| m.what.starts_with("adding rule"))
                .count()
        };
        let small = ruleset(&spec(1)).unwrap();
        let big = ruleset(&spec(MAX_ENTRIES as u32)).unwrap();
        assert_eq!(rules(&small), rules(&big));
        assert!(big.iter().all(|m| m.req.body.len() < 64 * 1024));
    }

    #[test]
    fn eui64_link_local_flips_the_universal_bit() {
        assert_eq!(
            eui64_link_local(Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }
}
