//! The guard in nft's syntax: what [`super::apply`] loads, for people
//! (`kvmnet explain`) and as the tests' oracle (`nft -f` of this text sends
//! the very same messages as [`super::rules`], byte for byte).

use crate::mac::Mac;

use super::rules::{policy, ARP, ENTRY, IPV4, IPV6, NA, RARP};
use super::{
    chain_name, from_bits, ingress_burst, shard_name, shard_of, GuardError, GuardSpec,
    COMMENT_PREFIX, SHARD_COMMENT,
};

/// One range of a set element: a single key, a prefix, or first-last
/// (raw keys in hex, as nft writes an integer).
fn range_text(a: u128, b: u128, v4: bool, raw: bool) -> String {
    let show = |v: u128| {
        if raw {
            format!("{v:#034x}")
        } else {
            from_bits(v, v4).to_string()
        }
    };
    let width = if v4 { 32 } else { 128 };
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
}

/// Shard `shard`'s table, sets and chains.
pub fn shard_text(shard: u32) -> String {
    shard_text_named(&shard_name(shard))
}

/// The shard's text for a table named `table` (the benchmark loads a
/// shard's worth of checks per tap, as peers load a table per tap).
pub fn shard_text_named(table: &str) -> String {
    let mut t = format!("table netdev {table} {{\n\tcomment \"{SHARD_COMMENT}\"\n");
    t += "\tset macs { typeof meta iif . ether saddr; }\n";
    t += "\tset ipv4-src { typeof meta iif . ip saddr; flags interval; }\n";
    t += "\tset ipv6-src { typeof meta iif . ip6 saddr; flags interval; }\n";
    t += "\tset na-targets { typeof meta iif . @th,64,128; flags interval; }\n";
    t += "\tset na-lladdr { typeof meta iif . @th,208,48; }\n";
    let chain = |name: &str, lines: &[&str]| {
        let mut c = format!("\tchain {name} {{\n");
        for l in lines {
            c += &format!("\t\t{l}\n");
        }
        c + "\t}\n"
    };
    t += &chain(
        ARP,
        &[
            "arp htype != 1 drop",
            "arp ptype != ip drop",
            "arp hlen != 6 drop",
            "arp plen != 4 drop",
            "arp operation != request arp operation != reply drop",
            "meta iif . arp saddr ether != @macs drop",
            "arp saddr ip 0.0.0.0 accept",
            "meta iif . arp saddr ip @ipv4-src accept",
            "drop",
        ],
    );
    t += &chain(RARP, &["@nh,48,16 3 accept", "drop"]);
    t += &chain(
        IPV4,
        &[
            "udp sport 67 drop",
            "icmp type redirect drop",
            "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
            "meta iif . ip saddr @ipv4-src accept",
            "drop",
        ],
    );
    t += &chain(
        NA,
        &[
            "ip6 nexthdr != ipv6-icmp drop",
            "meta iif . @th,64,128 != @na-targets drop",
            "ip6 length 24 return",
            "ip6 length != 32 drop",
            "@th,192,16 != 0x0201 drop",
            "meta iif . @th,208,48 != @na-lladdr drop",
        ],
    );
    t += &chain(
        IPV6,
        &[
            "icmpv6 type nd-router-advert drop",
            "icmpv6 type nd-redirect drop",
            "udp sport 547 drop",
            "icmpv6 type nd-neighbor-advert jump guest-na",
            "ip6 saddr :: icmpv6 type nd-neighbor-solicit accept",
            "ip6 saddr :: icmpv6 type nd-router-solicit accept",
            "ip6 saddr :: icmpv6 type mld2-listener-report accept",
            "meta iif . ip6 saddr @ipv6-src accept",
            "drop",
        ],
    );
    t += &chain(
        ENTRY,
        &[
            "ether type 8021q drop",
            "ether type 8021ad drop",
            "meta iif . ether saddr != @macs drop",
            "ether type arp jump guest-arp",
            "ether type 0x8035 jump guest-rarp",
            "ether type ip jump guest-ipv4",
            "ether type ip6 jump guest-ipv6",
        ],
    );
    t + "}\n"
}

/// The tap's own part of the guard in nft's syntax, in its shard: its
/// chain, rules and elements (what [`super::tap_batch`] sends).
pub fn nft_text(spec: &GuardSpec) -> Result<String, GuardError> {
    nft_text_in(spec, &shard_name(shard_of(spec.ifindex)))
}

/// [`nft_text`] into the shard table named `table`.
pub fn nft_text_in(spec: &GuardSpec, table: &str) -> Result<String, GuardError> {
    spec.check()?;
    let n = spec.ifindex;
    let chain = chain_name(n);
    let policy = if policy(spec) == crate::kernel::NF_DROP {
        "drop"
    } else {
        "accept"
    };
    let mut t = format!(
        "add chain netdev {table} {chain} {{ type filter hook ingress device \"{}\" priority 0; \
         policy {policy}; comment \"{COMMENT_PREFIX}{}\"; }}\n",
        spec.tap, spec.tap
    );
    let mut rules = vec![format!("meta iif != {n} accept")];
    if let Some(r) = &spec.rate_in {
        rules.push(format!(
            "limit rate over {} bytes/second burst {} bytes drop",
            r.bytes_per_sec(),
            ingress_burst(r)
        ));
    }
    if spec.enforce {
        rules.push(format!("jump {ENTRY}"));
    }
    for r in rules {
        t += &format!("add rule netdev {table} {chain} {r}\n");
    }
    if !spec.enforce {
        return Ok(t);
    }
    let mut macs: Vec<Mac> = spec.macs.clone();
    macs.sort();
    macs.dedup();
    let mac_list = |raw: bool| {
        macs.iter()
            .map(|m| {
                if raw {
                    let hex: String = m.0.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{n} . 0x{hex}")
                } else {
                    format!("{n} . {m}")
                }
            })
            .collect::<Vec<_>>()
    };
    for (set, elems) in super::rules::elements(spec) {
        let items: Vec<String> = match set.name {
            "macs" => mac_list(false),
            "na-lladdr" => mac_list(true),
            name => {
                let v4 = name == "ipv4-src";
                let raw = name == "na-targets";
                elems
                    .iter()
                    .map(|e| {
                        let num = |k: &[u8]| {
                            k[4..]
                                .iter()
                                .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
                        };
                        let (a, b) = (num(&e.key), num(e.key_end.as_deref().unwrap_or(&e.key)));
                        format!("{n} . {}", range_text(a, b, v4, raw))
                    })
                    .collect()
            }
        };
        if !items.is_empty() {
            t += &format!(
                "add element netdev {table} {} {{ {} }}\n",
                set.name,
                items.join(", ")
            );
        }
    }
    Ok(t)
}
