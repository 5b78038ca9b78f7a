//! The guard's pure parts: specs, elements, rules, what is stale.

use std::collections::BTreeSet;

use super::*;
use crate::nft::expr::{Expr, Verdict};
use crate::nft::msg::Msg;

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

fn chain(ifindex: u32, tap: Option<&str>) -> Installed {
    Installed {
        ifindex,
        tap: tap.map(str::to_owned),
        handle: u64::from(ifindex) + 100,
    }
}

fn view(shard: u32, chains: Vec<Installed>, elems: &[u32]) -> ShardView {
    ShardView {
        shard,
        handle: u64::from(shard) + 1000,
        chains,
        elem_indexes: elems.iter().copied().collect::<BTreeSet<u32>>(),
    }
}

#[test]
fn stale_taps_are_those_whose_tap_is_gone_or_replaced_and_empty_shards_go() {
    let shards = [
        view(
            0,
            vec![
                chain(2, Some("vm0")),
                chain(3, Some("vm1")),
                chain(4, Some("vm2")),
                chain(5, None),
            ],
            &[2, 3, 9],
        ),
        view(1, vec![chain(70, Some("vm70"))], &[70]),
        view(2, Vec::new(), &[]),
    ];
    let found = stale(&shards, links, 100, 0);
    let got: Vec<(String, &str)> = found.iter().map(|s| (s.name(), s.why.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                "kvmnet-guard-s0/tap-3".into(),
                "interface 3 is now tap vm9, not vm1"
            ),
            (
                "kvmnet-guard-s0/tap-4".into(),
                "interface 4 is now eth0, not a tap"
            ),
            ("kvmnet-guard-s0/tap-5".into(), "no interface has index 5"),
            (
                "kvmnet-guard-s0/tap-9".into(),
                "set elements of interface 9 without its chain"
            ),
            ("kvmnet-guard-s1".into(), "no live tap left in it (1 stale)"),
            ("kvmnet-guard-s1/tap-70".into(), "no interface has index 70"),
            ("kvmnet-guard-s2".into(), "an empty shard"),
        ]
    );
    assert!(matches!(
        found[3].kind,
        StaleKind::Tap {
            ifindex: 9,
            handle: None
        }
    ));
}

/// Each run looks up at most about `budget` interfaces (a shard is judged
/// whole), from the `start`-th shard on, round the list.
#[test]
fn the_sweep_looks_up_at_most_its_budget() {
    let shards: Vec<ShardView> = (0..10)
        .map(|s| view(s, vec![chain(s * 64 + 1, Some("gone"))], &[]))
        .collect();
    let mut asked = Vec::new();
    let found = stale(
        &shards,
        |i| {
            asked.push(i);
            LinkFact::Missing
        },
        3,
        8,
    );
    assert_eq!(asked, [8 * 64 + 1, 9 * 64 + 1, 1]);
    assert_eq!(found.len(), 6);
    assert!(stale(&shards, |_| LinkFact::Missing, 0, 0).is_empty());
    assert!(stale(&[], |_| LinkFact::Missing, 5, 3).is_empty());
}

#[test]
fn shard_and_chain_names_follow_the_index() {
    assert_eq!(shard_of(63), 0);
    assert_eq!(shard_of(64), 1);
    assert_eq!(shard_name(shard_of(4000)), "kvmnet-guard-s62");
    assert_eq!(chain_name(4000), "tap-4000");
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

/// Range elements: the index in network byte order, then the first and
/// the last key; overlaps merged, adjacent ranges kept apart; a family the
/// spec does not pin is its whole space; MAC keys hold the index in host
/// order, padded to whole registers.
#[test]
fn elements_are_keyed_by_the_interface_index() {
    let p = |s: &str| s.parse::<Prefix>().unwrap();
    let mut s = tests::spec(7);
    s.ipv4 = Some(vec![p("10.0.0.128/25"), p("10.0.0.0/25"), p("10.0.0.7")]);
    s.ipv6 = None;
    let elems = rules::elements(&s);
    let names: Vec<&str> = elems.iter().map(|(s, _)| s.name).collect();
    assert_eq!(
        names,
        ["macs", "ipv4-src", "ipv6-src", "na-targets", "na-lladdr"]
    );
    let v4: Vec<(Vec<u8>, Vec<u8>)> = elems[1]
        .1
        .iter()
        .map(|e| (e.key.clone(), e.key_end.clone().unwrap()))
        .collect();
    assert_eq!(
        v4,
        [
            (
                vec![0, 0, 0, 7, 10, 0, 0, 0],
                vec![0, 0, 0, 7, 10, 0, 0, 127]
            ),
            (
                vec![0, 0, 0, 7, 10, 0, 0, 128],
                vec![0, 0, 0, 7, 10, 0, 0, 255]
            ),
        ]
    );
    let v6 = &elems[2].1;
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].key[4..], [0; 16]);
    assert_eq!(v6[0].key_end.as_ref().unwrap()[4..], [0xff; 16]);
    let mut mac = 7u32.to_ne_bytes().to_vec();
    mac.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0]);
    assert_eq!(elems[0].1[0].key, mac);
    assert_eq!(elems[0].1[0].key_end, None);
    assert_eq!(rules::elem_index(&rules::MACS, &mac), Some(7));
    assert_eq!(
        rules::elem_index(&rules::IPV4_SRC, &elems[1].1[0].key),
        Some(7)
    );
    assert!(rules::elements(&tests::rate_only(7, "10mbit", None)).is_empty());
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
    assert!(tap_batch(&base).is_ok());
    let mut s = base.clone();
    s.macs.clear();
    assert!(tap_batch(&s)
        .unwrap_err()
        .to_string()
        .contains("no allowed MAC"));
    let mut s = base.clone();
    s.macs = vec![Mac([1, 0, 0x5e, 0, 0, 1])];
    assert!(tap_batch(&s).unwrap_err().to_string().contains("multicast"));
    let mut s = base.clone();
    s.ipv4 = Some(vec!["2001:db8::1".parse().unwrap()]);
    assert!(tap_batch(&s)
        .unwrap_err()
        .to_string()
        .contains("not an IPv4"));
    let mut s = base.clone();
    s.ipv6 = Some(vec!["192.0.2.1".parse().unwrap(); MAX_ENTRIES + 1]);
    assert!(tap_batch(&s).is_err());
}

/// A spec must put something on the tap; a guard needs MACs even with a
/// rate; a rate alone needs none; the kernel's bucket must hold a
/// full-size frame. nft_text refuses what tap_batch refuses.
#[test]
fn specs_that_limit_nothing_or_cannot_pass_a_frame_are_refused() {
    let refused = |s: &GuardSpec, needle: &str| {
        let e = tap_batch(s).unwrap_err().to_string();
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
    assert!(tap_batch(&rate_alone).is_ok());
    // Unused without the guard's rules: neither checked nor loaded.
    rate_alone.macs = vec![Mac([1, 0, 0x5e, 0, 0, 1])];
    assert!(tap_batch(&rate_alone).is_ok());
    let mut tiny = rate_alone.clone();
    tiny.rate_in = Some(Rate::parse("8kbit", Some("499")).unwrap());
    refused(&tiny, "less than one full-size frame");
    tiny.rate_in = Some(Rate::parse("8kbit", Some("500")).unwrap());
    assert!(tap_batch(&tiny).is_ok());
    let mut no_index = rate_alone;
    no_index.ifindex = 0;
    refused(&no_index, "interface index 0");
}

/// The tap's chain: its own frames only, the limit second (ahead of every
/// check), then the jump to the shard's checks; without the guard's rules
/// a chain that accepts, with no jump and no elements.
#[test]
fn the_rate_is_policed_before_any_other_rule() {
    let mut s = tests::spec(7);
    s.rate_in = Some(Rate::parse("10mbit", None).unwrap());
    let whats: Vec<String> = tap_batch(&s).unwrap().into_iter().map(|m| m.what).collect();
    assert_eq!(
        whats[..4],
        [
            "creating chain tap-7",
            "adding rule \"not this tap (a stale chain never filters another device)\" to chain tap-7",
            "adding rule \"guest->host traffic over rate_in\" to chain tap-7",
            "adding rule \"the guard's checks\" to chain tap-7",
        ]
    );
    assert_eq!(
        rules::tap_rules(&s)[1].1,
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
    let whats: Vec<String> = tap_batch(&alone)
        .unwrap()
        .into_iter()
        .map(|m| m.what)
        .collect();
    assert_eq!(whats.len(), 3, "{whats:?}");
    let text = nft_text(&alone).unwrap();
    assert!(text.contains("policy accept;"), "{text}");
    assert!(
        text.contains("limit rate over 12500000 bytes/second burst 262144 bytes drop"),
        "{text}"
    );
    assert!(!text.contains("element"), "{text}");
    // Pinning an address family drops other ethertypes; MACs alone do not.
    assert!(nft_text(&tests::spec(7)).unwrap().contains("policy drop;"));
    let mut mac_only = tests::spec(7);
    mac_only.ipv4 = None;
    mac_only.ipv6 = None;
    assert!(nft_text(&mac_only).unwrap().contains("policy accept;"));
}

/// A tap's rules do not grow with its addresses (sets hold them), a
/// thousand addresses still fit messages of the batch, and the shard's
/// rules are the same whatever its taps.
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
    let small = tap_batch(&spec(1)).unwrap();
    let big = tap_batch(&spec(MAX_ENTRIES as u32)).unwrap();
    assert_eq!(rules(&small), rules(&big));
    assert_eq!(rules(&small), 2);
    assert_eq!(small.len(), 8, "a chain, two rules, five sets' elements");
    assert!(big.iter().all(|m| m.req.body.len() < 64 * 1024));
    assert_eq!(shard_batch(0).len(), shard_batch(5).len());
}

#[test]
fn eui64_link_local_flips_the_universal_bit() {
    assert_eq!(
        eui64_link_local(Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
        "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
    );
}
