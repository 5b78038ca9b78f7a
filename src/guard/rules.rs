//! What the guard loads: a shard's shared sets and chains (made once for up
//! to [`super::SHARD_SIZE`] taps), and each tap's own base chain and set
//! elements, keyed by its interface index (docs/guard-design.md).

use std::net::{IpAddr, Ipv6Addr};

use crate::kernel::{
    NFT_META_IIF, NFT_META_IIFTYPE, NFT_META_L4PROTO, NFT_META_PROTOCOL,
    NFT_PAYLOAD_LL_HEADER as LL, NFT_PAYLOAD_NETWORK_HEADER as NH,
    NFT_PAYLOAD_TRANSPORT_HEADER as TH, NFT_REG32_01, NFT_REG_1, NF_ACCEPT, NF_DROP,
    NF_NETDEV_INGRESS,
};
use crate::nft::expr::{Expr, Verdict};
use crate::nft::msg::{
    self, Elem, Field, Hook, Msg, SetDef, TYPE_ETHERADDR, TYPE_IFINDEX, TYPE_IP6ADDR, TYPE_IPADDR,
};

use super::{
    chain_name, eui64_link_local, ingress_burst, shard_name, GuardError, GuardSpec, Prefix,
    COMMENT_PREFIX, FAMILY, SHARD_COMMENT,
};

pub(super) const ENTRY: &str = "guest";
pub(super) const ARP: &str = "guest-arp";
pub(super) const RARP: &str = "guest-rarp";
pub(super) const IPV4: &str = "guest-ipv4";
pub(super) const NA: &str = "guest-na";
pub(super) const IPV6: &str = "guest-ipv6";

/// The shard's chains in the order they are made (a chain is made before
/// the chains that jump to it) and deleted in reverse.
pub(super) const CHAINS: [&str; 6] = [ARP, RARP, IPV4, NA, IPV6, ENTRY];

const IIF: Field = Field::Meta {
    key: NFT_META_IIF,
    len: 4,
    dtype: TYPE_IFINDEX,
};

/// A set of the shard: every key starts with the tap's interface index, so
/// one set serves all the shard's taps and a tap's rules never name it.
pub(super) struct SetSpec {
    pub name: &'static str,
    pub key: &'static [Field],
    /// Holds ranges (prefixes): pipapo, whose keys hold the interface
    /// index in network byte order.
    pub interval: bool,
}

pub(super) const MACS: SetSpec = SetSpec {
    name: "macs",
    key: &[
        IIF,
        // nft's `ether saddr`: PROTO_DESC_ETHER's ETHHDR_SADDR
        Field::Payload {
            desc: 17,
            tmpl: 2,
            len: 6,
            dtype: TYPE_ETHERADDR,
        },
    ],
    interval: false,
};
pub(super) const IPV4_SRC: SetSpec = SetSpec {
    name: "ipv4-src",
    key: &[
        IIF,
        // `ip saddr`: PROTO_DESC_IP's IPHDR_SADDR
        Field::Payload {
            desc: 12,
            tmpl: 11,
            len: 4,
            dtype: TYPE_IPADDR,
        },
    ],
    interval: true,
};
pub(super) const IPV6_SRC: SetSpec = SetSpec {
    name: "ipv6-src",
    key: &[
        IIF,
        // `ip6 saddr`: PROTO_DESC_IP6's IP6HDR_SADDR
        Field::Payload {
            desc: 13,
            tmpl: 8,
            len: 16,
            dtype: TYPE_IP6ADDR,
        },
    ],
    interval: true,
};
/// A neighbour advertisement's target (nft has no typed name for it that
/// comes without a dependency on the ICMPv6 type).
pub(super) const NA_TARGETS: SetSpec = SetSpec {
    name: "na-targets",
    key: &[
        IIF,
        Field::Raw {
            base: TH,
            offset: 64,
            len: 128,
        },
    ],
    interval: true,
};
/// The MAC in a neighbour advertisement's target link-layer option.
pub(super) const NA_LLADDR: SetSpec = SetSpec {
    name: "na-lladdr",
    key: &[
        IIF,
        Field::Raw {
            base: TH,
            offset: 208,
            len: 48,
        },
    ],
    interval: false,
};

/// The shard's sets in the order they are made; a set's id in a batch is
/// its place here plus one (as nft numbers them).
pub(super) const SETS: [&SetSpec; 5] = [&MACS, &IPV4_SRC, &IPV6_SRC, &NA_TARGETS, &NA_LLADDR];

fn set_id(s: &SetSpec) -> u32 {
    SETS.iter()
        .position(|x| x.name == s.name)
        .expect("a shard set") as u32
        + 1
}

pub(super) fn set_def<'a>(table: &'a str, s: &SetSpec) -> SetDef<'a> {
    SetDef {
        table,
        name: s.name,
        id: set_id(s),
        key: s.key,
        interval: s.interval,
    }
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
    Expr::Payload {
        base,
        offset,
        len,
        dreg: NFT_REG_1,
    }
}
/// `meta iif . <len bytes at base+offset> [!=] @set`: the tap's index and
/// the field, looked up together.
fn lookup(set: &SetSpec, base: u32, offset: u32, len: u32, inv: bool) -> Vec<Expr> {
    let mut v = vec![Expr::Meta(NFT_META_IIF)];
    if set.interval {
        v.push(Expr::Hton32);
    }
    v.push(Expr::Payload {
        base,
        offset,
        len,
        dreg: NFT_REG32_01,
    });
    v.push(Expr::Lookup {
        set: set.name.into(),
        set_id: set_id(set),
        inv,
    });
    v
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

/// The shard's rules, in order, chain by chain: the same for every tap,
/// which differ only by their set elements (a family a tap does not pin
/// holds its whole address space).
pub(crate) fn shard_rules() -> Vec<Rule> {
    use Verdict::{Accept, Drop, Jump, Return};
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
        then(arp(lookup(&MACS, NH, 8, 6, true)), Drop),
    );
    rule(
        ARP,
        "ARP probe (sender IP 0.0.0.0)",
        then(arp(vec![load(NH, 14, 4), cmp(true, &[0; 4])]), Accept),
    );
    rule(
        ARP,
        "ARP from the guest's IPv4 addresses",
        then(arp(lookup(&IPV4_SRC, NH, 14, 4, false)), Accept),
    );
    rule(
        ARP,
        "ARP with a sender IP not the guest's",
        vec![Expr::Verdict(Drop)],
    );

    // RARP: only QEMU's announcement after a migration (a reverse request;
    // its source MAC is checked in the entry chain; no kernel reads the
    // rest).
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
            with(proto(ETH_P_IP), lookup(&IPV4_SRC, NH, 12, 4, false)),
            Accept,
        ),
    );
    rule(
        IPV4,
        "IPv4 from an address not the guest's",
        vec![Expr::Verdict(Drop)],
    );

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
    rule(
        NA,
        "neighbour advertisement for a target not the guest's",
        then(lookup(&NA_TARGETS, TH, 8, 16, true), Drop),
    );
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
        then(lookup(&NA_LLADDR, TH, 26, 6, true), Drop),
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
        then(ip6(lookup(&IPV6_SRC, NH, 8, 16, false)), Accept),
    );
    rule(
        IPV6,
        "IPv6 from an address not the guest's",
        vec![Expr::Verdict(Drop)],
    );

    // The entry chain every tap's chain jumps to; what it does not decide
    // meets the tap chain's policy.
    rule(
        ENTRY,
        "802.1Q VLAN-tagged frame",
        then(ether_type(ETH_P_8021Q), Drop),
    );
    rule(
        ENTRY,
        "802.1ad VLAN-tagged frame",
        then(ether_type(ETH_P_8021AD), Drop),
    );
    rule(
        ENTRY,
        "source MAC not the guest's",
        then(with(ether(), lookup(&MACS, LL, 6, 6, true)), Drop),
    );
    rule(
        ENTRY,
        "ARP: checked in guest-arp",
        then(ether_type(ETH_P_ARP), Jump(ARP.into())),
    );
    rule(
        ENTRY,
        "RARP: checked in guest-rarp",
        then(ether_type(ETH_P_RARP), Jump(RARP.into())),
    );
    rule(
        ENTRY,
        "IPv4: checked in guest-ipv4",
        then(ether_type(ETH_P_IP), Jump(IPV4.into())),
    );
    rule(
        ENTRY,
        "IPv6: checked in guest-ipv6",
        then(ether_type(ETH_P_IPV6), Jump(IPV6.into())),
    );
    out
}

/// The batch that makes shard `shard`: table, chains, sets, rules, in the
/// order nft sends the same ruleset ([`super::text::shard_text`]).
pub(crate) fn shard_batch(shard: u32) -> Vec<Msg> {
    let table = shard_name(shard);
    let mut msgs = vec![msg::new_table(FAMILY, &table, SHARD_COMMENT)];
    for chain in CHAINS {
        msgs.push(msg::new_chain(FAMILY, &table, chain, None, None));
    }
    for s in SETS {
        msgs.push(msg::new_set(FAMILY, &set_def(&table, s)));
    }
    let all = shard_rules();
    for chain in CHAINS {
        for r in all.iter().filter(|r| r.chain == chain) {
            msgs.push(msg::new_rule(FAMILY, &table, r.chain, &r.exprs, r.why));
        }
    }
    msgs
}

/// The rules of a tap's own chain: its frames only, the rate limit (a
/// flood is dropped before any other rule looks at it), then the shard's
/// checks.
pub(crate) fn tap_rules(spec: &GuardSpec) -> Vec<(&'static str, Vec<Expr>)> {
    // A chain left behind by a deleted tap must never filter another
    // device that the kernel binds to its hook by name.
    let mut out = vec![(
        "not this tap (a stale chain never filters another device)",
        then(
            vec![
                Expr::Meta(NFT_META_IIF),
                cmp(false, &spec.ifindex.to_ne_bytes()),
            ],
            Verdict::Accept,
        ),
    )];
    if let Some(r) = &spec.rate_in {
        out.push((
            "guest->host traffic over rate_in",
            then(
                vec![Expr::Limit {
                    bytes_per_sec: r.bytes_per_sec(),
                    burst: ingress_burst(r),
                    over: true,
                }],
                Verdict::Drop,
            ),
        ));
    }
    if spec.enforce {
        out.push((
            "the guard's checks",
            vec![Expr::Verdict(Verdict::Jump(ENTRY.into()))],
        ));
    }
    out
}

/// What the tap's chain does with what no rule decides: drop when the
/// guard pins an address family (other ethertypes are refused), accept
/// otherwise.
pub(super) fn policy(spec: &GuardSpec) -> i32 {
    if spec.enforce && spec.pins_ip() {
        NF_DROP
    } else {
        NF_ACCEPT
    }
}

/// The elements of the tap's guard, set by set (none without the guard's
/// checks): sorted, overlapping prefixes merged (pipapo refuses overlaps),
/// a family the spec does not pin as its whole address space.
pub(crate) fn elements(spec: &GuardSpec) -> Vec<(&'static SetSpec, Vec<Elem>)> {
    if !spec.enforce {
        return Vec::new();
    }
    let index = spec.ifindex;
    let mut macs = spec.macs.clone();
    macs.sort();
    macs.dedup();
    let mac_elems = || -> Vec<Elem> {
        macs.iter()
            .map(|m| {
                let mut key = index.to_ne_bytes().to_vec();
                key.extend_from_slice(&m.0);
                key.extend_from_slice(&[0, 0]);
                Elem::new(key, None, format!("element {m}"))
            })
            .collect()
    };
    let all4: Prefix = "0.0.0.0/0".parse().expect("a prefix");
    let all6: Prefix = "::/0".parse().expect("a prefix");
    let link_local = Prefix {
        addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        len: 10,
    };
    let v4 = spec.ipv4.clone().unwrap_or_else(|| vec![all4]);
    let (v6, targets) = match &spec.ipv6 {
        Some(list) => {
            let mut src = list.clone();
            src.push(link_local);
            let mut targets = list.clone();
            targets.extend(
                macs.iter()
                    .map(|m| Prefix::host(IpAddr::V6(eui64_link_local(*m)))),
            );
            (src, targets)
        }
        None => (vec![all6], vec![all6]),
    };
    vec![
        (&MACS, mac_elems()),
        (&IPV4_SRC, range_elems(index, &v4, 32)),
        (&IPV6_SRC, range_elems(index, &v6, 128)),
        (&NA_TARGETS, range_elems(index, &targets, 128)),
        (&NA_LLADDR, mac_elems()),
    ]
}

/// `prefixes` merged into sorted, disjoint ranges: (first, last, what).
pub(super) fn merged(prefixes: &[Prefix]) -> Vec<(u128, u128, String)> {
    let mut ranges: Vec<(u128, u128, String)> = prefixes
        .iter()
        .map(|p| {
            let (a, b) = p.range();
            (a, b, format!("element {p}"))
        })
        .collect();
    ranges.sort();
    let mut out: Vec<(u128, u128, String)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.0 <= last.1 => {
                if r.1 > last.1 {
                    last.1 = r.1;
                    last.2 = format!("{} (merged with {})", last.2, r.2);
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// Interval elements of `index . prefix` (the index in network byte
/// order, as the rules' lookups put it): each range its first and last key.
fn range_elems(index: u32, prefixes: &[Prefix], width: u8) -> Vec<Elem> {
    let key = |v: u128| -> Vec<u8> {
        let mut k = index.to_be_bytes().to_vec();
        k.extend_from_slice(&v.to_be_bytes()[16 - usize::from(width / 8)..]);
        k
    };
    merged(prefixes)
        .into_iter()
        .map(|(a, b, what)| Elem::new(key(a), Some(key(b)), what))
        .collect()
}

/// The interface index an element of `set` is for (the first four bytes
/// of its key, in the byte order the set's lookups use).
pub(super) fn elem_index(set: &SetSpec, key: &[u8]) -> Option<u32> {
    let b: [u8; 4] = key.get(..4)?.try_into().ok()?;
    Some(if set.interval {
        u32::from_be_bytes(b)
    } else {
        u32::from_ne_bytes(b)
    })
}

/// The messages that put the tap's guard into its (existing) shard: its
/// base chain on the tap's ingress, the chain's rules, and its elements.
pub(crate) fn tap_batch(spec: &GuardSpec) -> Result<Vec<Msg>, GuardError> {
    spec.check()?;
    let table = shard_name(super::shard_of(spec.ifindex));
    let chain = chain_name(spec.ifindex);
    let hook = Hook {
        hooknum: NF_NETDEV_INGRESS,
        priority: 0,
        device: spec.tap.as_str(),
        policy: policy(spec),
    };
    let comment = format!("{COMMENT_PREFIX}{}", spec.tap);
    let mut msgs = vec![msg::new_chain(
        FAMILY,
        &table,
        &chain,
        Some(&hook),
        Some(&comment),
    )];
    for (why, exprs) in tap_rules(spec) {
        msgs.push(msg::new_rule(FAMILY, &table, &chain, &exprs, why));
    }
    for (set, elems) in elements(spec) {
        if !elems.is_empty() {
            msgs.extend(msg::set_elems(FAMILY, &set_def(&table, set), &elems));
        }
    }
    Ok(msgs)
}
