//! A private network's nf_tables table: what libvirt's default network
//! (virbr0) installs, masquerading of the IPv4 subnet and forwarding that
//! lets the network's own traffic out and only replies in, in one inet
//! table per network made and replaced by one atomic batch.
//!
//! The rules are those nft writes for [`nft_text`], byte for byte, so `nft
//! list ruleset` reads them back as that text.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::kernel::{
    NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFT_CT_STATE, NFT_META_IIFNAME, NFT_META_NFPROTO,
    NFT_META_OIFNAME, NFT_PAYLOAD_NETWORK_HEADER, NFT_REG_1, NF_ACCEPT, NF_CT_STATE_ESTABLISHED,
    NF_CT_STATE_RELATED, NF_INET_FORWARD, NF_INET_POST_ROUTING, NF_IP_PRI_FILTER,
    NF_IP_PRI_NAT_SRC,
};
use crate::nft::expr::{Expr, Verdict};
use crate::nft::msg::{self, BaseChain, ChainType, Msg};
use crate::nft::{Nft, NftError, Table};

/// What a network's table enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSpec<'a> {
    /// The network's name: `[a-z0-9_-]{1,15}`.
    pub network: &'a str,
    /// The network's bridge.
    pub bridge: &'a str,
    /// The IPv4 subnet: its address (host bits are ignored) and prefix
    /// length.
    pub v4: (Ipv4Addr, u8),
    /// The IPv6 subnet, when the network has one (never masqueraded).
    pub v6: Option<(Ipv6Addr, u8)>,
    /// Masquerade IPv4 leaving the subnet; without it the network is
    /// routed, and the subnets are let in as they are let out.
    pub nat: bool,
    /// Masquerade only what leaves by this interface; `None`: by any
    /// interface but the bridge.
    pub uplink: Option<&'a str>,
}

/// One inet table per network: a packet of either IP family meets its
/// rules in one place.
pub const FAMILY: u8 = NFPROTO_INET;
/// A network's table is named this and the network's name.
pub const TABLE_PREFIX: &str = "kvmnet-net-";
/// The comment (nft's userdata) that marks a network table as kvmnet's.
pub const COMMENT: &str = "kvmnet network";
/// The chains, named after their hooks.
pub const POSTROUTING: &str = "postrouting";
pub const FORWARD: &str = "forward";

const NETWORK_MAX: usize = 15;

/// The name of `network`'s table.
pub fn table_name(network: &str) -> String {
    format!("{TABLE_PREFIX}{network}")
}

impl NatSpec<'_> {
    /// What [`up_batch`] needs of the spec: names the kernel and nft take
    /// (interface names as kvmnet takes them, [`crate::name::validate`]),
    /// prefix lengths within their family.
    pub fn check(&self) -> Result<(), String> {
        let n = self.network;
        if n.is_empty()
            || n.len() > NETWORK_MAX
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "network name {n:?}: 1 to {NETWORK_MAX} of a-z, 0-9, _ and -"
            ));
        }
        for (what, name) in [("bridge", Some(self.bridge)), ("uplink", self.uplink)] {
            if let Some(name) = name {
                crate::name::validate(name).map_err(|e| format!("{what}: {e}"))?;
            }
        }
        if self.uplink == Some(self.bridge) {
            return Err(format!(
                "uplink {:?}: the network's own bridge",
                self.bridge
            ));
        }
        if self.v4.1 > 32 {
            return Err(format!("IPv4 prefix length {}: at most 32", self.v4.1));
        }
        if let Some((_, len)) = self.v6 {
            if len > 128 {
                return Err(format!("IPv6 prefix length {len}: at most 128"));
            }
        }
        Ok(())
    }
}

/// A subnet as the rules match it: its address bytes with the host bits
/// cleared, and its prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subnet {
    bytes: Vec<u8>,
    len: u8,
}

impl Subnet {
    fn new(addr: &[u8], len: u8) -> Subnet {
        let bytes = addr
            .iter()
            .zip(mask(addr.len(), len))
            .map(|(a, m)| a & m)
            .collect();
        Subnet { bytes, len }
    }

    fn v4(s: (Ipv4Addr, u8)) -> Subnet {
        Subnet::new(&s.0.octets(), s.1)
    }

    fn v6(s: (Ipv6Addr, u8)) -> Subnet {
        Subnet::new(&s.0.octets(), s.1)
    }

    /// nft's spelling: the address alone for a single address.
    fn text(&self) -> String {
        let addr = match <[u8; 4]>::try_from(self.bytes.as_slice()) {
            Ok(b) => Ipv4Addr::from(b).to_string(),
            Err(_) => {
                let b: [u8; 16] = self.bytes.as_slice().try_into().expect("an IPv6 address");
                Ipv6Addr::from(b).to_string()
            }
        };
        if usize::from(self.len) == self.bytes.len() * 8 {
            addr
        } else {
            format!("{addr}/{}", self.len)
        }
    }
}

/// The first `len` bits set, of `bytes` bytes.
fn mask(bytes: usize, len: u8) -> Vec<u8> {
    (0..bytes)
        .map(|i| {
            let bits = usize::from(len).saturating_sub(i * 8).min(8);
            (0xff00u16 >> bits) as u8
        })
        .collect()
}

/// One match of a rule, in nft's words and as expressions, and the IP
/// family it needs (nft puts `meta nfproto` in front of it in an inet
/// table, once per rule).
struct Match {
    text: String,
    family: Option<u8>,
    exprs: Vec<Expr>,
}

fn cmp(eq: bool, data: &[u8]) -> Expr {
    Expr::Cmp {
        eq,
        data: data.to_vec(),
    }
}

fn op(eq: bool) -> &'static str {
    if eq {
        ""
    } else {
        "!= "
    }
}

/// `iifname`/`oifname [!=] NAME`: the name NUL-padded to IFNAMSIZ, as nft
/// compares it (the whole name, not a prefix).
fn ifname(out: bool, eq: bool, name: &str) -> Match {
    let mut padded = [0u8; libc::IFNAMSIZ];
    padded[..name.len()].copy_from_slice(name.as_bytes());
    let (key, word) = if out {
        (NFT_META_OIFNAME, "oifname")
    } else {
        (NFT_META_IIFNAME, "iifname")
    };
    Match {
        text: format!("{word} {}\"{name}\"", op(eq)),
        family: None,
        exprs: vec![Expr::Meta(key), cmp(eq, &padded)],
    }
}

/// `ip`/`ip6 saddr`/`daddr [!=] SUBNET`, as nft 1.0.6 writes it: a prefix
/// of whole bytes loads only those bytes; one ending inside a byte loads
/// the whole address and masks it.
fn addr(dst: bool, eq: bool, s: &Subnet) -> Match {
    let v4 = s.bytes.len() == 4;
    let offset = match (v4, dst) {
        (true, false) => 12,
        (true, true) => 16,
        (false, false) => 8,
        (false, true) => 24,
    };
    let load = |len: usize| Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset,
        len: len as u32,
        dreg: NFT_REG_1,
    };
    let exprs = if s.len > 0 && s.len % 8 == 0 {
        let n = usize::from(s.len / 8);
        vec![load(n), cmp(eq, &s.bytes[..n])]
    } else {
        vec![
            load(s.bytes.len()),
            Expr::Mask(mask(s.bytes.len(), s.len)),
            cmp(eq, &s.bytes),
        ]
    };
    let (proto, family) = if v4 {
        ("ip", NFPROTO_IPV4)
    } else {
        ("ip6", NFPROTO_IPV6)
    };
    let field = if dst { "daddr" } else { "saddr" };
    Match {
        text: format!("{proto} {field} {}{}", op(eq), s.text()),
        family: Some(family),
        exprs,
    }
}

/// `ct state established,related`: conntrack's state bits, any of them.
fn replies() -> Match {
    let bits = NF_CT_STATE_ESTABLISHED | NF_CT_STATE_RELATED;
    Match {
        text: "ct state established,related".into(),
        family: None,
        exprs: vec![
            Expr::Ct(NFT_CT_STATE),
            Expr::Mask(bits.to_ne_bytes().to_vec()),
            cmp(false, &0u32.to_ne_bytes()),
        ],
    }
}

/// One rule: its chain, why it is there (for errors), in nft's words, and
/// its expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    chain: &'static str,
    why: &'static str,
    text: String,
    exprs: Vec<Expr>,
}

/// The final statement of a rule.
enum Then {
    Accept,
    Drop,
    Return,
    Masquerade,
}

fn rule(chain: &'static str, why: &'static str, matches: Vec<Match>, then: Then) -> Rule {
    let mut text = Vec::new();
    let mut exprs = Vec::new();
    let mut family = None;
    for m in matches {
        if let Some(f) = m.family.filter(|f| family != Some(*f)) {
            family = Some(f);
            exprs.extend([Expr::Meta(NFT_META_NFPROTO), cmp(true, &[f])]);
        }
        text.push(m.text);
        exprs.extend(m.exprs);
    }
    let (word, last) = match then {
        Then::Accept => ("accept", Expr::Verdict(Verdict::Accept)),
        Then::Drop => ("drop", Expr::Verdict(Verdict::Drop)),
        Then::Return => ("return", Expr::Verdict(Verdict::Return)),
        Then::Masquerade => ("masquerade", Expr::Masquerade),
    };
    text.push(word.into());
    exprs.push(last);
    Rule {
        chain,
        why,
        text: text.join(" "),
        exprs,
    }
}

/// A chain of the table: its name, its hook, and the hook in nft's words.
struct Chain {
    name: &'static str,
    base: BaseChain<'static>,
    text: &'static str,
}

/// The chains of the table: the NAT chain only when the network
/// masquerades (a routed network needs no NAT, so no NAT hook sees its
/// packets).
fn chains(spec: &NatSpec) -> Vec<Chain> {
    let base = |kind, hooknum, priority| BaseChain {
        kind,
        hooknum,
        priority,
        device: None,
        policy: NF_ACCEPT,
    };
    let mut out = Vec::new();
    if spec.nat {
        out.push(Chain {
            name: POSTROUTING,
            base: base(ChainType::Nat, NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC),
            text: "type nat hook postrouting priority srcnat; policy accept;",
        });
    }
    out.push(Chain {
        name: FORWARD,
        base: base(ChainType::Filter, NF_INET_FORWARD, NF_IP_PRI_FILTER),
        text: "type filter hook forward priority filter; policy accept;",
    });
    out
}

/// The rules, chain by chain, in order.
fn rules(spec: &NatSpec) -> Vec<Rule> {
    let br = spec.bridge;
    let v4 = Subnet::v4(spec.v4);
    let v6 = spec.v6.map(Subnet::v6);
    let mut out = Vec::new();
    if spec.nat {
        let from = || addr(false, true, &v4);
        // Multicast and broadcast stay on the link: as libvirt, no
        // masquerading of what never leaves it.
        let local_multicast = Subnet::v4((Ipv4Addr::new(224, 0, 0, 0), 24));
        let broadcast = Subnet::v4((Ipv4Addr::BROADCAST, 32));
        out.push(rule(
            POSTROUTING,
            "link-local multicast is not masqueraded",
            vec![from(), addr(true, true, &local_multicast)],
            Then::Return,
        ));
        out.push(rule(
            POSTROUTING,
            "broadcast is not masqueraded",
            vec![from(), addr(true, true, &broadcast)],
            Then::Return,
        ));
        let out_of = match spec.uplink {
            Some(up) => ifname(true, true, up),
            None => ifname(true, false, br),
        };
        out.push(rule(
            POSTROUTING,
            "masquerading what leaves the subnet",
            vec![out_of, from(), addr(true, false, &v4)],
            Then::Masquerade,
        ));
    }
    let iif = || ifname(false, true, br);
    let oif = || ifname(true, true, br);
    out.push(rule(
        FORWARD,
        "between the network's own ports",
        vec![iif(), oif()],
        Then::Accept,
    ));
    // With an uplink, guests leave through it alone: not into a VPN or a
    // management LAN behind another interface, with their private source.
    let out_to = |from: Match| {
        let mut m = vec![iif()];
        m.extend(spec.uplink.map(|up| ifname(true, true, up)));
        m.push(from);
        m
    };
    out.push(rule(
        FORWARD,
        "out of the network from its IPv4 subnet",
        out_to(addr(false, true, &v4)),
        Then::Accept,
    ));
    if let Some(v6) = &v6 {
        out.push(rule(
            FORWARD,
            "out of the network from its IPv6 subnet",
            out_to(addr(false, true, v6)),
            Then::Accept,
        ));
    }
    // and what comes in, comes in through it alone
    let in_from = |then: Match| {
        let mut m: Vec<Match> = spec
            .uplink
            .map(|up| ifname(false, true, up))
            .into_iter()
            .collect();
        m.push(oif());
        m.push(then);
        m
    };
    out.push(rule(
        FORWARD,
        "replies into the network",
        in_from(replies()),
        Then::Accept,
    ));
    if !spec.nat {
        out.push(rule(
            FORWARD,
            "into the routed network's IPv4 subnet",
            in_from(addr(true, true, &v4)),
            Then::Accept,
        ));
        if let Some(v6) = &v6 {
            out.push(rule(
                FORWARD,
                "into the routed network's IPv6 subnet",
                in_from(addr(true, true, v6)),
                Then::Accept,
            ));
        }
    }
    out.push(rule(
        FORWARD,
        "out of the network from another address",
        vec![iif()],
        Then::Drop,
    ));
    out.push(rule(
        FORWARD,
        "into the network unasked",
        vec![oif()],
        Then::Drop,
    ));
    out
}

/// One atomic batch that leaves `spec.network`'s table exactly as `spec`
/// wants, whether it exists or not: the table made if absent (a NEWTABLE
/// without EXCL changes nothing in one that exists), deleted with all it
/// holds, and made anew with its chains and rules. The kernel applies it
/// whole or not at all, so the old rules hold until the new ones do. A
/// table of that name is replaced whoever made it: names under
/// [`TABLE_PREFIX`] are kvmnet's.
///
/// # Panics
///
/// When [`NatSpec::check`] refuses `spec`: the caller checks it first.
pub fn up_batch(spec: &NatSpec) -> Vec<Msg> {
    if let Err(e) = spec.check() {
        panic!("up_batch of an unchecked network spec: {e}");
    }
    let table = table_name(spec.network);
    let mut ensure = msg::new_table(FAMILY, &table, COMMENT);
    ensure.what = format!("creating table {table} if absent");
    let mut clear = msg::delete_table(FAMILY, &table, None);
    clear.what = format!("deleting table {table} to replace it");
    let mut msgs = vec![ensure, clear, msg::new_table(FAMILY, &table, COMMENT)];
    for c in chains(spec) {
        msgs.push(msg::new_base_chain(FAMILY, &table, c.name, &c.base, None));
    }
    for r in rules(spec) {
        msgs.push(msg::new_rule(FAMILY, &table, r.chain, &r.exprs, r.why));
    }
    msgs
}

/// The batch that removes `network`'s table and only it: by `handle` when
/// given (then never a table made since under the same name), else by
/// name. The kernel refuses it (ENOENT) when the table is not there.
pub fn down_batch(network: &str, handle: Option<u64>) -> Vec<Msg> {
    vec![msg::delete_table(FAMILY, &table_name(network), handle)]
}

/// `network`'s table, when kvmnet's is there: the name and kvmnet's
/// comment (a table of that name that kvmnet did not make is not
/// reported, so a removal by its handle never deletes it).
pub fn installed(nft: &mut Nft, network: &str) -> Result<Option<Table>, NftError> {
    let name = table_name(network);
    Ok(nft
        .tables(FAMILY)?
        .into_iter()
        .find(|t| t.name == name && t.comment.as_deref() == Some(COMMENT)))
}

/// [`up_batch`] in nft's syntax: `nft -f` of it sends the same batch,
/// message for message and byte for byte.
///
/// # Panics
///
/// As [`up_batch`].
pub fn nft_text(spec: &NatSpec) -> String {
    if let Err(e) = spec.check() {
        panic!("nft_text of an unchecked network spec: {e}");
    }
    let table = table_name(spec.network);
    let rules = rules(spec);
    let mut t = format!(
        "table inet {table} {{ comment \"{COMMENT}\"; }}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\tcomment \"{COMMENT}\"\n"
    );
    for c in chains(spec) {
        t += &format!("\tchain {} {{\n\t\t{}\n", c.name, c.text);
        for r in rules.iter().filter(|r| r.chain == c.name) {
            t += &format!("\t\t{}\n", r.text);
        }
        t += "\t}\n";
    }
    t += "}\n";
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWTABLE};

    pub(super) fn spec() -> NatSpec<'static> {
        NatSpec {
            network: "t1",
            bridge: "virbr0",
            v4: ("192.168.122.0".parse().unwrap(), 24),
            v6: Some(("2001:db8:1::".parse().unwrap(), 64)),
            nat: true,
            uplink: Some("eth0"),
        }
    }

    fn kinds(msgs: &[Msg]) -> Vec<u8> {
        msgs.iter().map(|m| m.req.kind as u8).collect()
    }

    /// The chains' and rules' names as the messages carry them.
    fn rule_chains(msgs: &[Msg]) -> Vec<String> {
        msgs.iter()
            .filter(|m| m.req.kind as u8 == NFT_MSG_NEWRULE)
            .map(|m| {
                m.what
                    .rsplit(" to chain ")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_nat_network_replaces_its_table_with_two_chains() {
        let msgs = up_batch(&spec());
        let k = kinds(&msgs);
        assert_eq!(
            k[..5],
            [
                NFT_MSG_NEWTABLE,
                NFT_MSG_DELTABLE,
                NFT_MSG_NEWTABLE,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWCHAIN
            ]
        );
        assert!(k[5..].iter().all(|k| *k == NFT_MSG_NEWRULE), "{k:?}");
        for m in &msgs {
            assert_eq!(m.req.body[0], NFPROTO_INET, "{}", m.what);
        }
        assert_eq!(msgs[0].what, "creating table kvmnet-net-t1 if absent");
        assert_eq!(msgs[1].what, "deleting table kvmnet-net-t1 to replace it");
        assert_eq!(msgs[2].what, "creating table kvmnet-net-t1");
        assert_eq!(msgs[3].what, "creating chain postrouting");
        assert_eq!(msgs[4].what, "creating chain forward");
        let chains = rule_chains(&msgs);
        assert_eq!(chains.iter().filter(|c| *c == POSTROUTING).count(), 3);
        assert_eq!(chains.iter().filter(|c| *c == FORWARD).count(), 6);
        // Every NAT rule comes before the forward chain's.
        assert!(chains.is_sorted_by_key(|c| c != POSTROUTING), "{chains:?}");
    }

    /// Rules per chain (postrouting, forward) for each way of the spec.
    #[test]
    fn the_rules_follow_nat_ipv6_and_the_uplink() {
        let count = |s: &NatSpec| {
            let r = rules(s);
            let n = |c| r.iter().filter(|r| r.chain == c).count();
            (chains(s).len(), n(POSTROUTING), n(FORWARD))
        };
        let full = spec();
        assert_eq!(count(&full), (2, 3, 6));
        let v4_only = NatSpec { v6: None, ..spec() };
        assert_eq!(count(&v4_only), (2, 3, 5));
        let any_uplink = NatSpec {
            uplink: None,
            ..spec()
        };
        assert_eq!(count(&any_uplink), (2, 3, 6));
        let routed = NatSpec {
            nat: false,
            ..spec()
        };
        assert_eq!(count(&routed), (1, 0, 8));
        let routed_v4 = NatSpec {
            nat: false,
            v6: None,
            ..spec()
        };
        assert_eq!(count(&routed_v4), (1, 0, 6));
        assert_eq!(up_batch(&routed_v4).len(), 3 + 1 + 6);
        assert_eq!(kinds(&up_batch(&routed_v4))[3], NFT_MSG_NEWCHAIN);
        assert_eq!(up_batch(&routed_v4)[3].what, "creating chain forward");
    }

    /// The masquerading rule, out of the uplink or out of anything but
    /// the bridge.
    #[test]
    fn masquerading_is_limited_to_the_uplink_or_keeps_off_the_bridge() {
        let masq = |s: &NatSpec| rules(s).remove(2).text;
        assert_eq!(
            masq(&spec()),
            "oifname \"eth0\" ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade"
        );
        let any = NatSpec {
            uplink: None,
            ..spec()
        };
        assert_eq!(
            masq(&any),
            "oifname != \"virbr0\" ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 \
             masquerade"
        );
    }

    /// The whole batch in nft's words, for the spec of the kernel test;
    /// that test holds the batch to what nft sends for this text.
    #[test]
    fn the_text_is_the_ruleset_of_the_brief() {
        let want = "table inet kvmnet-net-t1 { comment \"kvmnet network\"; }
delete table inet kvmnet-net-t1
table inet kvmnet-net-t1 {
\tcomment \"kvmnet network\"
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 return
\t\tip saddr 192.168.122.0/24 ip daddr 255.255.255.255 return
\t\toifname \"eth0\" ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"virbr0\" oifname \"virbr0\" accept
\t\tiifname \"virbr0\" oifname \"eth0\" ip saddr 192.168.122.0/24 accept
\t\tiifname \"virbr0\" oifname \"eth0\" ip6 saddr 2001:db8:1::/64 accept
\t\tiifname \"eth0\" oifname \"virbr0\" ct state established,related accept
\t\tiifname \"virbr0\" drop
\t\toifname \"virbr0\" drop
\t}
}
";
        assert_eq!(nft_text(&spec()), want);
        let routed = NatSpec {
            nat: false,
            ..spec()
        };
        let text = nft_text(&routed);
        assert!(!text.contains("postrouting"), "{text}");
        assert!(
            text.contains(
                "\t\tiifname \"eth0\" oifname \"virbr0\" ip daddr 192.168.122.0/24 accept\n\
                 \t\tiifname \"eth0\" oifname \"virbr0\" ip6 daddr 2001:db8:1::/64 accept\n\
                 \t\tiifname \"virbr0\" drop\n"
            ),
            "{text}"
        );
    }

    fn load(offset: u32, len: u32) -> Expr {
        Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset,
            len,
            dreg: NFT_REG_1,
        }
    }

    /// Prefixes as `nft --debug=netlink` shows nft 1.0.6 writing them: a
    /// prefix of whole bytes loads those bytes (host bits dropped), one
    /// ending inside a byte (`/0` too) the whole address and masks it, a
    /// single address is the whole address, unmasked.
    #[test]
    fn prefixes_are_matched_as_nft_matches_them() {
        let v4 = |a: [u8; 4], len| addr(false, true, &Subnet::new(&a, len)).exprs;
        assert_eq!(v4([10, 1, 2, 3], 24), [load(12, 3), cmp(true, &[10, 1, 2])]);
        assert_eq!(
            v4([10, 1, 0, 0], 20),
            [
                load(12, 4),
                Expr::Mask(vec![0xff, 0xff, 0xf0, 0]),
                cmp(true, &[10, 1, 0, 0])
            ]
        );
        assert_eq!(
            v4([10, 1, 2, 3], 31),
            [
                load(12, 4),
                Expr::Mask(vec![0xff, 0xff, 0xff, 0xfe]),
                cmp(true, &[10, 1, 2, 2])
            ]
        );
        assert_eq!(
            v4([0; 4], 0),
            [load(12, 4), Expr::Mask(vec![0; 4]), cmp(true, &[0; 4])]
        );
        assert_eq!(
            v4([10, 1, 2, 3], 32),
            [load(12, 4), cmp(true, &[10, 1, 2, 3])]
        );
        let db8: Ipv6Addr = "2001:db8::".parse().unwrap();
        let v6 = |len| addr(true, false, &Subnet::v6((db8, len)));
        let m = v6(52);
        assert_eq!(m.text, "ip6 daddr != 2001:db8::/52");
        assert_eq!(m.family, Some(NFPROTO_IPV6));
        let mut mask52 = vec![0xff; 6];
        mask52.extend([0xf0]);
        mask52.resize(16, 0);
        assert_eq!(
            m.exprs,
            [load(24, 16), Expr::Mask(mask52), cmp(false, &db8.octets())]
        );
        assert_eq!(v6(64).exprs, [load(24, 8), cmp(false, &db8.octets()[..8])]);
    }

    /// The masquerading rule as `nft --debug=netlink` shows nft 1.0.6
    /// writing it: the interface name NUL-padded to sixteen bytes, one
    /// `meta nfproto ipv4` in front of both address matches.
    #[test]
    fn the_masquerading_rule_is_nfts() {
        let r = rules(&spec()).remove(2);
        let mut eth0 = b"eth0".to_vec();
        eth0.resize(16, 0);
        assert_eq!(
            r.exprs,
            [
                Expr::Meta(NFT_META_OIFNAME),
                cmp(true, &eth0),
                Expr::Meta(NFT_META_NFPROTO),
                cmp(true, &[NFPROTO_IPV4]),
                load(12, 3),
                cmp(true, &[192, 168, 122]),
                load(16, 3),
                cmp(false, &[192, 168, 122]),
                Expr::Masquerade,
            ]
        );
        let replies = rules(&spec())
            .into_iter()
            .find(|r| r.why == "replies into the network")
            .unwrap();
        assert_eq!(
            replies.exprs[4..],
            [
                Expr::Ct(NFT_CT_STATE),
                Expr::Mask(6u32.to_ne_bytes().to_vec()),
                cmp(false, &[0; 4]),
                Expr::Verdict(Verdict::Accept),
            ]
        );
    }

    #[test]
    fn specs_the_kernel_or_nft_would_refuse_are_refused() {
        let bad = [
            NatSpec {
                network: "Default",
                ..spec()
            },
            NatSpec {
                network: "a-name-of-16-chr",
                ..spec()
            },
            NatSpec {
                bridge: "a-bridge-of-16ch",
                ..spec()
            },
            NatSpec {
                uplink: Some(""),
                ..spec()
            },
            NatSpec {
                uplink: Some("virbr0"),
                ..spec()
            },
            NatSpec {
                v4: (Ipv4Addr::UNSPECIFIED, 33),
                ..spec()
            },
            NatSpec {
                v6: Some((Ipv6Addr::UNSPECIFIED, 129)),
                ..spec()
            },
        ];
        for s in &bad {
            assert!(s.check().is_err(), "{s:?}");
        }
        let longest = NatSpec {
            network: "a-name-of-15-ch",
            bridge: "a-bridge-of-15c",
            ..spec()
        };
        longest.check().unwrap();
        assert_eq!(
            up_batch(&longest)[2].what,
            "creating table kvmnet-net-a-name-of-15-ch"
        );
    }

    #[test]
    fn down_deletes_the_table_by_handle_or_name() {
        let by_handle = down_batch("t1", Some(7));
        let by_name = down_batch("t1", None);
        assert_eq!(by_handle.len(), 1);
        assert_eq!(by_handle[0].req.kind as u8, NFT_MSG_DELTABLE);
        assert_eq!(by_handle[0].what, "deleting table kvmnet-net-t1");
        assert!(by_handle[0]
            .req
            .body
            .windows(8)
            .any(|w| w == 7u64.to_be_bytes()));
        assert!(by_name[0]
            .req
            .body
            .windows(13)
            .any(|w| w == b"kvmnet-net-t1"));
    }
}

/// The table in the kernel, in a throwaway network namespace, with nft as
/// the oracle.
#[cfg(test)]
mod kernel_tests {
    use super::tests::spec;
    use super::*;
    use crate::guard::tests::{in_fresh_netns, run, strip_handles};
    use crate::nft::mnl_batch;

    /// A table as nft lists it, in JSON without handles and in its syntax
    /// (which shows the table's comment).
    type Listing = (serde_json::Value, String);
    /// Messages as [`mnl_batch`] reads them.
    type Batch = Vec<(u16, Vec<u8>)>;

    fn listing(network: &str) -> Listing {
        let table = table_name(network);
        let json = run("nft", &["--json", "list", "table", "inet", &table], "");
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        strip_handles(&mut v);
        (v, run("nft", &["list", "table", "inet", &table], ""))
    }

    /// What nft makes of [`nft_text`] in a namespace of its own: the
    /// batch it sends, and the table as it lists it.
    fn nfts(spec: &NatSpec<'static>) -> (Batch, Listing) {
        let spec = spec.clone();
        in_fresh_netns(move || {
            let dump = run("nft", &["--debug=mnl", "-f", "-"], &nft_text(&spec));
            (mnl_batch(&dump), listing(spec.network))
        })
    }

    fn same_batch(ours: &[Msg], theirs: &Batch, text: &str) {
        assert_eq!(ours.len(), theirs.len(), "{text}");
        for (i, (a, (kind, body))) in ours.iter().zip(theirs).enumerate() {
            assert_eq!(
                (a.req.kind, &a.req.body),
                (*kind, body),
                "message {i} ({}) differs for\n{text}",
                a.what
            );
        }
    }

    /// For a NAT network with an uplink and IPv6, one masquerading out of
    /// anything but its bridge with a prefix ending inside a byte, and a
    /// routed one: the batch is byte for byte the one nft sends for
    /// [`nft_text`]; applied, nft lists the table as it lists its own
    /// load of that text; applied again over a table changed by hand or
    /// made for another spec, the table is again exactly the spec's;
    /// `installed` finds it, and the removal by handle leaves nothing.
    #[test]
    fn up_makes_and_replaces_the_table_nft_makes_and_down_removes_it() {
        let specs = [
            spec(),
            NatSpec {
                v4: ("10.1.0.0".parse().unwrap(), 20),
                v6: None,
                uplink: None,
                ..spec()
            },
            NatSpec {
                nat: false,
                v6: Some(("2001:db8:1::".parse().unwrap(), 56)),
                ..spec()
            },
        ];
        let expected: Vec<_> = specs.iter().map(nfts).collect();
        for (s, (theirs, _)) in specs.iter().zip(&expected) {
            same_batch(&up_batch(s), theirs, &nft_text(s));
        }
        let applied = specs.clone();
        let (got, left) = in_fresh_netns(move || {
            let mut nft = Nft::open().unwrap();
            assert_eq!(installed(&mut nft, "t1").unwrap(), None);
            let mut got = Vec::new();
            let mut handles = Vec::new();
            for s in &applied {
                // Over the previous spec's table, changed by hand.
                if let Some(t) = installed(&mut nft, "t1").unwrap() {
                    run(
                        "nft",
                        &["add rule inet kvmnet-net-t1 forward ip saddr 0.0.0.0/0 accept"],
                        "",
                    );
                    handles.push(t.handle);
                }
                nft.apply("net up t1", &up_batch(s)).unwrap();
                let first = listing("t1");
                nft.apply("net up t1 again", &up_batch(s)).unwrap();
                assert_eq!(listing("t1"), first, "a second up changed the table");
                let t = installed(&mut nft, "t1").unwrap().expect("the table");
                assert_eq!(t.comment.as_deref(), Some(COMMENT));
                assert!(!handles.contains(&t.handle), "{t:?} was not replaced");
                handles.push(t.handle);
                got.push(first);
            }
            let t = installed(&mut nft, "t1").unwrap().unwrap();
            nft.apply("net down t1", &down_batch("t1", Some(t.handle)))
                .unwrap();
            assert_eq!(installed(&mut nft, "t1").unwrap(), None);
            (got, run("nft", &["list", "ruleset"], ""))
        });
        assert_eq!(left.trim(), "", "down left {left}");
        for ((s, (_, theirs)), ours) in specs.iter().zip(&expected).zip(&got) {
            assert_eq!(ours, theirs, "for\n{}", nft_text(s));
        }
    }

    /// A table of a network's name without kvmnet's comment is not
    /// kvmnet's; the removal by name needs the table to be there.
    #[test]
    fn installed_knows_kvmnets_table_and_down_by_name_needs_one() {
        in_fresh_netns(|| {
            let mut nft = Nft::open().unwrap();
            run("nft", &["add table inet kvmnet-net-t2"], "");
            assert_eq!(installed(&mut nft, "t2").unwrap(), None);
            run("nft", &["delete table inet kvmnet-net-t2"], "");
            let err = nft
                .apply("net down t2", &down_batch("t2", None))
                .unwrap_err();
            let NftError::Rejected { refusals, .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(refusals[0].errno, libc::ENOENT, "{err}");
            let s = NatSpec {
                network: "t2",
                ..spec()
            };
            nft.apply("net up t2", &up_batch(&s)).unwrap();
            assert!(installed(&mut nft, "t2").unwrap().is_some());
            nft.apply("net down t2", &down_batch("t2", None)).unwrap();
            assert_eq!(run("nft", &["list", "ruleset"], "").trim(), "");
        });
    }
}
