//! The guest guard against a real kernel: each test in its own network
//! namespace, kvmnet loading the guard from a thread that entered it; `tc`
//! reading the checks' filters back and `nft --json` the limit's chain are
//! the oracles.

mod common;

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use common::{guest, in_netns, ok, open_tap, read_frames, Netns};
use kvmnet::guard::{self, bpf, GuardSpec};
use kvmnet::mac::Mac;
use kvmnet::name::TapName;
use kvmnet::rate::Rate;

const GUEST: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const OTHER: Mac = Mac([0x52, 0x54, 0x00, 0x66, 0x66, 0x66]);
const BCAST: Mac = Mac([0xff; 6]);

fn spec(ifindex: u32) -> GuardSpec {
    GuardSpec {
        tap: TapName::new("vm0").unwrap(),
        ifindex,
        macs: vec![GUEST],
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

fn ifindex(ns: &Netns, dev: &str) -> u32 {
    ns.link(dev).unwrap()["ifindex"].as_u64().unwrap() as u32
}

/// `nft --json list ruleset` in `ns`, handles removed (they count objects
/// in the order of their making).
fn ruleset_json(ns: &Netns) -> serde_json::Value {
    let out = ok(ns.cmd("nft").args(["--json", "list", "ruleset"]));
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("handle");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn apply_in(ns: &Netns, s: &GuardSpec) -> Result<(), String> {
    let s = s.clone();
    in_netns(ns, move || guard::apply(&s).map_err(|e| e.to_string()))
}

/// A spec with only the guest->host rate limit.
fn rate_only(ifindex: u32, rate: &str, burst: Option<&str>) -> GuardSpec {
    GuardSpec::rate_only(
        TapName::new("vm0").unwrap(),
        ifindex,
        Rate::parse(rate, burst).unwrap(),
    )
}

/// (a) The limit kvmnet loads is what nft loads from its text: the same
/// ruleset read back by nft, structure for structure, for a rate alone and
/// for a rate with the checks (which are not nf_tables'). nft reads the
/// rate back as a byte limit over the rate, in the base chain right behind
/// the tap's own frames, which accepts what is under it.
#[test]
fn the_loaded_limit_reads_back_as_nft_loads_its_text() {
    let mut specs = vec![rate_only(0, "10mbit", None)];
    specs.push(rate_only(0, "100mbit", Some("256kb")));
    let mut s = spec(0);
    s.rate_in = Some(Rate::parse("100mbit", None).unwrap());
    specs.push(s);
    for mut s in specs {
        let (ours, theirs) = (Netns::new(), Netns::new());
        for ns in [&ours, &theirs] {
            ns.ip("tuntap add vm0 mode tap");
        }
        s.ifindex = ifindex(&ours, "vm0");
        assert_eq!(s.ifindex, ifindex(&theirs, "vm0"));
        apply_in(&ours, &s).unwrap();
        // The shard kvmnet made for the tap's first guard, then the tap's
        // own part.
        let limit = rate_only(s.ifindex, "1mbit", None);
        let limit = GuardSpec {
            rate_in: s.rate_in,
            ..limit
        };
        let text =
            guard::shard_text(guard::shard_of(s.ifindex)) + &guard::nft_text(&limit).unwrap();
        let mut nft = theirs.cmd("nft");
        nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
        let mut child = nft.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f refused\n{text}");
        let (a, b) = (ruleset_json(&ours), ruleset_json(&theirs));
        assert_eq!(a, b, "kvmnet's and nft's loading of\n{text}");
        // The reading is the guard: one netdev table (the shard), its six
        // chains and five sets, and the tap's chain on vm0's ingress.
        let objs = a["nftables"].as_array().unwrap();
        let chains: Vec<&serde_json::Value> = objs.iter().filter_map(|o| o.get("chain")).collect();
        assert_eq!(chains.len(), 7, "{a}");
        let sets = objs.iter().filter(|o| o.get("set").is_some()).count();
        assert_eq!(sets, 5, "{a}");
        let chain = guard::chain_name(s.ifindex);
        let base = chains.iter().find(|c| c["name"] == chain.as_str()).unwrap();
        assert_eq!(
            (&base["family"], &base["hook"], &base["policy"]),
            (
                &serde_json::json!("netdev"),
                &serde_json::json!("ingress"),
                &serde_json::json!("accept")
            ),
            "{base}"
        );
        let base_rules: Vec<&serde_json::Value> = objs
            .iter()
            .filter_map(|o| o.get("rule"))
            .filter(|r| r["chain"] == chain.as_str())
            .collect();
        let limits: Vec<usize> = base_rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r["expr"][0].get("limit").is_some())
            .map(|(i, _)| i)
            .collect();
        if let Some(rate) = s.rate_in {
            assert_eq!(limits, [1], "the limit is the second rule: {a}");
            let rule = &base_rules[1]["expr"];
            let limit = &rule[0]["limit"];
            assert_eq!(limit["inv"], true, "{limit}");
            assert_eq!(limit["per"], "second", "{limit}");
            assert_eq!(rule[1], serde_json::json!({"drop": null}), "{rule}");
            // nft shows bytes in the largest binary unit that keeps them whole.
            let bytes = |n: &serde_json::Value, unit: &serde_json::Value| {
                let scale = match unit.as_str().unwrap() {
                    "bytes" => 1,
                    "kbytes" => 1024,
                    "mbytes" => 1024 * 1024,
                    u => panic!("unit {u}"),
                };
                n.as_u64().unwrap() * scale
            };
            assert_eq!(
                bytes(&limit["rate"], &limit["rate_unit"]),
                rate.bytes_per_sec(),
                "{limit}"
            );
            assert_eq!(
                bytes(&limit["burst"], &limit["burst_unit"]),
                u64::from(guard::ingress_burst(&rate)),
                "{limit}"
            );
            eprintln!("rate_in {rate} (enforce: {}): {}", s.enforce, rule);
        } else {
            assert!(limits.is_empty(), "{a}");
        }
        // nft 1.0.6's JSON leaves out a netdev chain's device; its text has it.
        let table = guard::shard_name(guard::shard_of(s.ifindex));
        let listed = ok(ours
            .cmd("nft")
            .args(["list", "chain", "netdev", &table, &chain]));
        assert!(listed.contains("hook ingress device \"vm0\""), "{listed}");
    }
}

/// (a') The checks on the tap are kvmnet's program, as tc reads it back,
/// in front of a filter that drops the rest; tc loading the program's
/// bytecode text reads back the same. A new spec replaces the program, and
/// removing the guard leaves the tap without filters or ingress qdisc. A
/// clsact qdisc someone made is used as it is.
/// nf_tables is not touched without a rate.
#[test]
fn the_checks_on_the_tap_are_the_program_as_tc_reads_it_back() {
    let mut specs = vec![spec(0)];
    let mut s = spec(0);
    s.ipv4 = None;
    specs.push(s);
    let mut s = spec(0);
    s.ipv6 = None;
    s.macs.push(OTHER);
    specs.push(s);
    let mut s = spec(0);
    s.ipv4 = None;
    s.ipv6 = None;
    specs.push(s);
    let mut s = spec(0);
    s.ipv4 = Some(Vec::new());
    s.ipv6 = Some(vec!["ff00::/8".parse().unwrap(), "::/0".parse().unwrap()]);
    specs.push(s);
    let (ours, theirs) = (Netns::new(), Netns::new());
    for ns in [&ours, &theirs] {
        ns.ip("tuntap add vm0 mode tap");
    }
    ok(theirs
        .cmd("tc")
        .args(["qdisc", "add", "dev", "vm0", "clsact"]));
    let index = ifindex(&ours, "vm0");
    let program = |s: &GuardSpec| -> Vec<[u64; 4]> {
        bpf::program(s)
            .0
            .iter()
            .map(|i| [i.code.into(), i.jt.into(), i.jf.into(), i.k.into()])
            .collect()
    };
    for mut s in specs {
        s.ifindex = index;
        apply_in(&ours, &s).unwrap();
        let filters = ours.ingress_filters("vm0");
        assert_eq!(
            filters,
            [(1, false, program(&s)), (2, true, vec![[6, 0, 0, 2]])],
            "{s:?}"
        );
        assert_eq!(ours.checks("vm0"), "on");
        let qdiscs = ok(ours.cmd("tc").args(["qdisc", "show", "dev", "vm0"]));
        assert!(qdiscs.contains("qdisc ingress ffff:"), "{qdiscs}");
        let want = s.clone();
        let read: Result<bool, String> = in_netns(&ours, move || {
            let nl = kvmnet::netlink::Netlink::open().map_err(|e| e.to_string())?;
            let on = guard::checks::read(&nl, index).map_err(|e| e.to_string())?;
            Ok(on.is_some_and(|on| on.is(&want)))
        });
        assert_eq!(read, Ok(true));
        let code = bpf::bytecode(&bpf::program(&s).0);
        ok(theirs.cmd("tc").args([
            "filter", "replace", "dev", "vm0", "ingress", "pref", "1", "handle", "1", "bpf",
            "bytecode", &code,
        ]));
        assert_eq!(theirs.ingress_filters("vm0")[0], filters[0]);
    }
    assert_eq!(tables(&ours), "", "nf_tables touched without a rate");
    in_netns(&ours, move || {
        guard::remove(index).map_err(|e| e.to_string())
    })
    .unwrap();
    assert_eq!(ours.ingress_filters("vm0"), []);
    let qdiscs = ok(ours.cmd("tc").args(["qdisc", "show", "dev", "vm0"]));
    assert!(!qdiscs.contains("qdisc ingress"), "{qdiscs}");
    // none there: fine
    in_netns(&ours, move || {
        guard::remove(index).map_err(|e| e.to_string())
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// Frames, as a guest writes them into its tap

fn eth(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An 802.1Q or 802.1ad tag in front of an ethertype and payload.
fn tagged(tpid: u16, vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vid.to_be_bytes().to_vec();
    p.extend_from_slice(&ethertype.to_be_bytes());
    p.extend_from_slice(payload);
    eth(BCAST, GUEST, tpid, &p)
}

fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha.0);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha.0);
    p.extend_from_slice(&tpa.octets());
    p
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let sum = !fold(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn fold(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A BOOTP/DHCP message (RFC 2131): operation, Ethernet hardware type and
/// length, the client hardware address, the DHCP magic cookie.
fn bootp(op: u8, chaddr: Mac) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[..3].copy_from_slice(&[op, 1, 6]);
    b[28..34].copy_from_slice(&chaddr.0);
    b[236..].copy_from_slice(&[99, 130, 83, 99]);
    b
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 255]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An ICMPv6 message of `kind` with `body` after the 4-byte header
/// (checksum left 0: nothing on the path verifies it).
fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    ipv6(src, dst, 58, &m)
}

/// NS or NA body: flags/reserved, target, then options.
fn nd(flags: u8, target: Ipv6Addr, opt: Option<(u8, Mac)>) -> Vec<u8> {
    let mut b = vec![flags, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    if let Some((kind, mac)) = opt {
        b.extend_from_slice(&[kind, 1]);
        b.extend_from_slice(&mac.0);
    }
    b
}

const ETH_IP: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_RARP: u16 = 0x8035;
const ETH_IP6: u16 = 0x86dd;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// (name, frame, passes with the guard on). Every frame is broadcast, so the
/// bridge floods it to the peer whatever it learnt.
/// A router advertisement's ICMPv6 message (type 134), checksum left 0.
const RA: [u8; 16] = [134, 0, 0, 0, 64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0];

fn matrix() -> Vec<(&'static str, Vec<u8>, bool)> {
    let me4 = v4("192.0.2.10");
    let gw4 = v4("192.0.2.1");
    let any4 = v4("0.0.0.0");
    let all4 = v4("255.255.255.255");
    let ll = v6("fe80::5054:ff:fe12:3456");
    let privacy_ll = v6("fe80::1234:abcd:5678:9");
    let me6 = v6("2001:db8::10");
    let unspec = Ipv6Addr::UNSPECIFIED;
    let all_nodes = v6("ff02::1");
    let all_routers = v6("ff02::2");
    let ip6 = |src, dst, next, p: &[u8]| eth(BCAST, GUEST, ETH_IP6, &ipv6(src, dst, next, p));
    let icmp6 =
        |src, dst, kind, body: &[u8]| eth(BCAST, GUEST, ETH_IP6, &icmpv6(src, dst, kind, body));
    let ip4 = |src, dst, proto, p: &[u8]| eth(BCAST, GUEST, ETH_IP, &ipv4(src, dst, proto, p));
    vec![
        // spoofed or forbidden: dropped
        (
            "source MAC not the guest's",
            eth(BCAST, OTHER, ETH_IP, &ipv4(me4, all4, 17, &udp(9, 9, b""))),
            false,
        ),
        (
            "ARP sender MAC forged",
            eth(BCAST, GUEST, ETH_ARP, &arp(1, OTHER, me4, Mac([0; 6]), gw4)),
            false,
        ),
        (
            "ARP sender IP forged (the gateway's)",
            eth(BCAST, GUEST, ETH_ARP, &arp(2, GUEST, gw4, BCAST, gw4)),
            false,
        ),
        (
            "ARP operation 4 (RARP reply) in ARP",
            eth(BCAST, GUEST, ETH_ARP, &arp(4, GUEST, me4, GUEST, me4)),
            false,
        ),
        (
            "IPv4 source forged",
            ip4(v4("10.9.9.9"), all4, 17, &udp(9, 9, b"")),
            false,
        ),
        (
            "IPv4 source just outside the prefix",
            ip4(v4("198.51.101.0"), all4, 17, &udp(9, 9, b"")),
            false,
        ),
        (
            "DHCP server reply (udp 67 to 68)",
            ip4(me4, all4, 17, &udp(67, 68, &bootp(2, OTHER))),
            false,
        ),
        (
            "ICMP redirect",
            ip4(me4, all4, 1, &[5, 1, 0, 0, 192, 0, 2, 10]),
            false,
        ),
        (
            "IPv6 source forged",
            ip6(v6("2001:db8:2::1"), all_nodes, 17, &udp(9, 9, b"")),
            false,
        ),
        (
            "NA with a forged target (global)",
            icmp6(ll, all_nodes, 136, &nd(0x20, v6("2001:db8::1"), None)),
            false,
        ),
        (
            "NA with a forged target (the router's link-local)",
            icmp6(
                ll,
                all_nodes,
                136,
                &nd(0x20, v6("fe80::1"), Some((2, GUEST))),
            ),
            false,
        ),
        (
            "NA with a forged target link-layer address",
            icmp6(ll, all_nodes, 136, &nd(0x20, me6, Some((2, OTHER)))),
            false,
        ),
        (
            "NA with a source link-layer option instead",
            icmp6(ll, all_nodes, 136, &nd(0x20, me6, Some((1, GUEST)))),
            false,
        ),
        (
            "router advertisement",
            icmp6(ll, all_nodes, 134, &[64, 0, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0]),
            false,
        ),
        (
            "ICMPv6 redirect",
            icmp6(ll, all_nodes, 137, &[0; 36]),
            false,
        ),
        (
            "DHCPv6 advertise (udp 547 to 546)",
            ip6(ll, v6("fe80::99"), 17, &udp(547, 546, &[2; 40])),
            false,
        ),
        (
            "802.1Q-tagged IPv4",
            tagged(0x8100, 5, ETH_IP, &ipv4(me4, all4, 17, &udp(9, 9, b""))),
            false,
        ),
        (
            "802.1ad-tagged IPv4",
            tagged(0x88a8, 5, ETH_IP, &ipv4(me4, all4, 17, &udp(9, 9, b""))),
            false,
        ),
        (
            "unknown ethertype",
            eth(BCAST, GUEST, 0x88b5, &[0; 46]),
            false,
        ),
        (
            "RARP reply (op 4)",
            eth(BCAST, GUEST, ETH_RARP, &arp(4, GUEST, any4, GUEST, me4)),
            false,
        ),
        (
            "NS from :: that is not DAD's type (echo request)",
            icmp6(unspec, all_nodes, 128, &[0; 4]),
            false,
        ),
        (
            "DHCP server reply behind IPv4 options",
            {
                let mut p = ipv4(
                    me4,
                    all4,
                    17,
                    &[&[1, 1, 1, 1][..], &udp(67, 68, &[2; 240])].concat(),
                );
                p[0] = 0x46;
                eth(BCAST, GUEST, ETH_IP, &p)
            },
            false,
        ),
        (
            "IPv4 header length past the frame's end",
            {
                let mut p = ipv4(me4, all4, 17, &udp(9, 9, b""));
                p[0] = 0x4f;
                eth(BCAST, GUEST, ETH_IP, &p)
            },
            false,
        ),
        (
            "router advertisement behind a hop-by-hop header",
            ip6(
                ll,
                all_nodes,
                0,
                &[&[58, 0, 1, 4, 0, 0, 0, 0][..], &RA].concat(),
            ),
            false,
        ),
        (
            "router advertisement in a first fragment",
            ip6(
                ll,
                all_nodes,
                44,
                &[&[58, 0, 0, 0, 0, 0, 0, 1][..], &RA].concat(),
            ),
            false,
        ),
        (
            "router advertisement behind a routing and an AH header",
            ip6(
                ll,
                all_nodes,
                43,
                &[
                    &[51, 0, 0, 0, 0, 0, 0, 0][..],
                    &[58, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    &RA,
                ]
                .concat(),
            ),
            false,
        ),
        (
            "more extension headers than the guard walks",
            ip6(
                ll,
                all_nodes,
                60,
                &[
                    [60, 0, 1, 4, 0, 0, 0, 0].repeat(4),
                    vec![17, 0, 1, 4, 0, 0, 0, 0],
                    udp(9, 9, b""),
                ]
                .concat(),
            ),
            false,
        ),
        (
            "IPv6 extension header running past the frame's end",
            ip6(me6, all_nodes, 0, &[17, 255, 1, 4, 0, 0, 0, 0]),
            false,
        ),
        (
            "DHCP server reply from another source port (udp 1067 to 68)",
            ip4(me4, all4, 17, &udp(1067, 68, &bootp(2, OTHER))),
            false,
        ),
        (
            "DHCPv6 reply from another source port (udp 1000 to 546)",
            ip6(ll, v6("fe80::99"), 17, &udp(1000, 546, &[7; 40])),
            false,
        ),
        (
            "DHCP DISCOVER from 0.0.0.0 for another client's MAC (lease starvation)",
            ip4(any4, all4, 17, &udp(68, 67, &bootp(1, OTHER))),
            false,
        ),
        (
            "IPv4 header shorter than 20 bytes (IHL 4) posing as DHCP",
            {
                let mut f = ip4(any4, v4("0.68.0.67"), 17, &udp(68, 67, &bootp(1, GUEST)));
                f[14] = 0x44;
                f
            },
            false,
        ),
        (
            "RARP announce naming another MAC",
            eth(BCAST, GUEST, ETH_RARP, &arp(3, OTHER, any4, OTHER, any4)),
            false,
        ),
        (
            "ICMP router advertisement",
            ip4(
                me4,
                all4,
                1,
                &[9, 0, 0, 0, 1, 2, 0, 30, 192, 0, 2, 1, 0, 0, 0, 0],
            ),
            false,
        ),
        (
            "RA hidden behind bytes past the IPv6 payload length (a split first fragment)",
            {
                let mut f = ip6(
                    ll,
                    all_nodes,
                    44,
                    &[60, 0, 0, 1, 0, 0, 0, 1, 58, 0, 1, 4, 0, 0, 0, 0],
                );
                f.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
                f
            },
            false,
        ),
        // what a guest needs: passes
        (
            "MLDv2 report from its link-local behind a hop-by-hop header (router alert)",
            ip6(
                ll,
                v6("ff02::16"),
                0,
                &[58, 0, 5, 2, 0, 0, 1, 0, 143, 0, 0, 0, 0, 0, 0, 0],
            ),
            true,
        ),
        (
            "a later IPv6 fragment from its address",
            ip6(me6, all_nodes, 44, &[17, 0, 0, 8, 0, 0, 0, 1, 9, 9, 9, 9]),
            true,
        ),
        (
            "a later IPv4 fragment from its address",
            {
                let mut f = ip4(me4, all4, 17, &[9; 16]);
                f[20] = 0x00;
                f[21] = 0x10;
                f
            },
            true,
        ),
        (
            "DHCP DISCOVER from 0.0.0.0",
            ip4(any4, all4, 17, &udp(68, 67, &bootp(1, GUEST))),
            true,
        ),
        (
            "DHCP REQUEST from 0.0.0.0 to a server",
            ip4(any4, gw4, 17, &udp(68, 67, &bootp(1, GUEST))),
            true,
        ),
        (
            "DHCP renewal from its address",
            ip4(me4, gw4, 17, &udp(68, 67, &bootp(1, GUEST))),
            true,
        ),
        (
            "own ARP request",
            eth(BCAST, GUEST, ETH_ARP, &arp(1, GUEST, me4, Mac([0; 6]), gw4)),
            true,
        ),
        (
            "gratuitous ARP request",
            eth(BCAST, GUEST, ETH_ARP, &arp(1, GUEST, me4, BCAST, me4)),
            true,
        ),
        (
            "gratuitous ARP reply",
            eth(BCAST, GUEST, ETH_ARP, &arp(2, GUEST, me4, BCAST, me4)),
            true,
        ),
        (
            "ARP probe (sender IP 0.0.0.0)",
            eth(
                BCAST,
                GUEST,
                ETH_ARP,
                &arp(1, GUEST, any4, Mac([0; 6]), me4),
            ),
            true,
        ),
        (
            "RARP announce from its MAC (QEMU after migration)",
            eth(BCAST, GUEST, ETH_RARP, &arp(3, GUEST, any4, GUEST, any4)),
            true,
        ),
        (
            "IPv4 from its address",
            ip4(me4, all4, 17, &udp(9, 9, b"")),
            true,
        ),
        (
            "IPv4 from its prefix",
            ip4(v4("198.51.100.77"), all4, 17, &udp(9, 9, b"")),
            true,
        ),
        (
            "DAD: NS from ::",
            icmp6(unspec, v6("ff02::1:ff12:3456"), 135, &nd(0, ll, None)),
            true,
        ),
        (
            "MLDv2 report from ::",
            icmp6(unspec, v6("ff02::16"), 143, &[0, 0, 0, 0]),
            true,
        ),
        ("RS from ::", icmp6(unspec, all_routers, 133, &[0; 4]), true),
        (
            "RS from its link-local",
            icmp6(
                ll,
                all_routers,
                133,
                &[0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56],
            ),
            true,
        ),
        (
            "link-local NS from a privacy link-local",
            icmp6(
                privacy_ll,
                v6("ff02::1:ff00:1"),
                135,
                &nd(0, v6("fe80::1"), Some((1, GUEST))),
            ),
            true,
        ),
        (
            "link-local NA for its EUI-64 address with its MAC",
            icmp6(ll, v6("fe80::1"), 136, &nd(0x60, ll, Some((2, GUEST)))),
            true,
        ),
        (
            "NA for its global address without options",
            icmp6(me6, v6("fe80::1"), 136, &nd(0x60, me6, None)),
            true,
        ),
        (
            "NA for an address of its prefix",
            icmp6(
                ll,
                all_nodes,
                136,
                &nd(0x20, v6("2001:db8:1::5"), Some((2, GUEST))),
            ),
            true,
        ),
        (
            "IPv6 from its address",
            ip6(me6, all_nodes, 17, &udp(9, 9, b"")),
            true,
        ),
        (
            "IPv6 from its prefix",
            ip6(v6("2001:db8:1::abcd"), all_nodes, 17, &udp(9, 9, b"")),
            true,
        ),
        (
            "IPv6 from a privacy link-local",
            ip6(privacy_ll, all_nodes, 17, &udp(9, 9, b"")),
            true,
        ),
        (
            "DHCPv6 SOLICIT (udp 546 to 547)",
            ip6(ll, v6("ff02::1:2"), 17, &udp(546, 547, &[1; 40])),
            true,
        ),
    ]
}

/// A namespace with bridge br0 and two taps on it, each held open by a
/// descriptor as QEMU holds it: vm0 (the guest) and vm1 (its peer).
struct Lab {
    ns: Netns,
    guest: File,
    peer: File,
}

impl Lab {
    fn new() -> Lab {
        let ns = Netns::new();
        ns.ip("link add br0 type bridge");
        // No multicast snooping: every frame here is flooded as broadcast.
        ns.ip("link set br0 type bridge mcast_snooping 0");
        ns.ip("link set br0 up");
        // br_netfilter (built into this kernel) would trim each frame to the
        // length its IP header states, cutting off the test's marker.
        ok(ns.cmd("sysctl").args([
            "-qw",
            "net.bridge.bridge-nf-call-iptables=0",
            "net.bridge.bridge-nf-call-ip6tables=0",
            "net.bridge.bridge-nf-call-arptables=0",
        ]));
        for t in ["vm0", "vm1"] {
            ns.ip(&format!("tuntap add {t} mode tap"));
            ns.ip(&format!("link set {t} master br0 up"));
        }
        let guest = open_tap(&ns, "vm0");
        let peer = open_tap(&ns, "vm1");
        Lab { ns, guest, peer }
    }

    /// Writes each frame, with a marker of its own appended (past every
    /// length a header states), into the guest's descriptor; which ones the
    /// peer received.
    fn send(&mut self, frames: &[(&str, Vec<u8>, bool)], round: u8) -> Vec<bool> {
        read_frames(&mut self.peer, Duration::from_millis(50));
        let marker = |i: usize| [b'K', b'V', b'M', round, i as u8, 0x5a, 0xa5, 0x42];
        for (i, (name, f, _)) in frames.iter().enumerate() {
            let mut f = f.clone();
            f.extend_from_slice(&marker(i));
            f.resize(f.len().max(60), 0);
            self.guest
                .write_all(&f)
                .unwrap_or_else(|e| panic!("writing {name}: {e}"));
        }
        let got = read_frames(&mut self.peer, Duration::from_millis(400));
        (0..frames.len())
            .map(|i| common::seen(&got, &marker(i)))
            .collect()
    }
}

fn report(
    frames: &[(&str, Vec<u8>, bool)],
    passed: &[bool],
    want: impl Fn(bool) -> bool,
) -> String {
    frames
        .iter()
        .zip(passed)
        .filter(|((_, _, legit), p)| **p != want(*legit))
        .map(|((name, _, _), p)| format!("{name}: {}", if *p { "passed" } else { "dropped" }))
        .collect::<Vec<_>>()
        .join("\n")
}

/// (b) The forged-frame matrix: without the guard every frame reaches the
/// peer; with it (applied twice: (c) re-applying changes nothing) every
/// spoof is dropped and everything a guest needs passes.
#[test]
fn forged_frames_are_dropped_and_a_guests_own_traffic_passes() {
    let mut lab = Lab::new();
    let frames = matrix();
    let spoofs = frames.iter().filter(|f| !f.2).count();
    eprintln!(
        "the matrix: {spoofs} spoofed or forbidden frames, {} legitimate ones",
        frames.len() - spoofs
    );
    assert!(spoofs >= 12);
    let open = lab.send(&frames, 0);
    let wrong = report(&frames, &open, |_| true);
    assert!(
        wrong.is_empty(),
        "without the guard, every frame must pass:\n{wrong}"
    );

    let s = spec(ifindex(&lab.ns, "vm0"));
    apply_in(&lab.ns, &s).unwrap();
    let once = lab.ns.ingress_filters("vm0");
    apply_in(&lab.ns, &s).unwrap();
    assert_eq!(
        once,
        lab.ns.ingress_filters("vm0"),
        "re-applying changed the filters"
    );
    let guarded = lab.send(&frames, 1);
    let wrong = report(&frames, &guarded, |legit| legit);
    assert!(wrong.is_empty(), "with the guard:\n{wrong}");
    assert_eq!(lab.ns.checks("vm0"), "on");
    assert_eq!(tables(&lab.ns), "");

    // The widest spec a guest may have: the guest's own MAC and prefixes
    // come last, so its program's jumps to them are longer than an 8-bit
    // offset reaches.
    let mut wide = s.clone();
    wide.macs = (0..guard::MAX_MACS as u8 - 1)
        .map(|i| Mac([0x52, 0x54, 0, 0xaa, 0, i]))
        .chain([GUEST])
        .collect();
    let mut v4: Vec<guard::Prefix> = (0..guard::MAX_ENTRIES - 2)
        .map(|i| format!("100.{i}.0.0/16").parse().unwrap())
        .collect();
    v4.extend(s.ipv4.clone().unwrap());
    wide.ipv4 = Some(v4);
    let mut v6: Vec<guard::Prefix> = (0..guard::MAX_ENTRIES - 2)
        .map(|i| format!("2001:db8:{:x}::/48", 0x100 + i).parse().unwrap())
        .collect();
    v6.extend(s.ipv6.clone().unwrap());
    wide.ipv6 = Some(v6);
    let len = bpf::program(&wide).0.len();
    assert!(len > 1000, "{len} instructions");
    apply_in(&lab.ns, &wide).unwrap();
    let passed = lab.send(&frames, 2);
    let wrong = report(&frames, &passed, |legit| legit);
    assert!(
        wrong.is_empty(),
        "with the widest guard ({len} instructions):\n{wrong}"
    );
}

/// (d) A tap deleted without its guard being removed: its checks go with
/// it (traffic control belongs to the device), its limit chain stays (this
/// kernel keeps a netdev chain, and its hook, past the device; 6.1 deletes
/// it) but never filters a new tap of the same name, and the sweep removes
/// it while keeping the new tap's own.
#[test]
fn a_gone_taps_checks_go_with_it_and_its_stale_limit_is_swept() {
    let mut lab = Lab::new();
    let old = ifindex(&lab.ns, "vm0");
    let with_rate = |index| GuardSpec {
        rate_in: Some(Rate::parse("100mbit", None).unwrap()),
        ..spec(index)
    };
    apply_in(&lab.ns, &with_rate(old)).unwrap();
    assert_eq!(lab.ns.checks("vm0"), "on");
    drop(std::mem::replace(
        &mut lab.guest,
        File::open("/dev/null").unwrap(),
    ));
    lab.ns.ip("link del vm0");
    lab.ns.ip("tuntap add vm0 mode tap");
    lab.ns.ip("link set vm0 master br0 up");
    lab.guest = open_tap(&lab.ns, "vm0");
    let new = ifindex(&lab.ns, "vm0");
    assert_ne!(old, new);
    assert_eq!(lab.ns.checks("vm0"), "", "the checks outlived their tap");
    let stays = guards(&lab.ns) == format!("tap-{old}");
    let frames = matrix();
    let passed = lab.send(&frames, 2);
    let wrong = report(&frames, &passed, |_| true);
    assert!(
        wrong.is_empty(),
        "the stale guard filtered the new vm0:\n{wrong}"
    );

    // The new tap's guard is kept, the stale chain goes; a second sweep
    // finds nothing.
    apply_in(&lab.ns, &with_rate(new)).unwrap();
    let swept = in_netns(&lab.ns, || guard::sweep(64, 0).map_err(|e| e.to_string())).unwrap();
    if stays {
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(
            swept[0].name(),
            format!("{}/tap-{old}", guard::shard_name(guard::shard_of(old)))
        );
        assert_eq!(swept[0].why, format!("no interface has index {old}"));
    } else {
        assert!(swept.is_empty(), "{swept:?}");
    }
    assert_eq!(guards(&lab.ns), format!("tap-{new}"));
    assert!(!leftover(&lab.ns, old));
    let again = in_netns(&lab.ns, || guard::sweep(64, 0).map_err(|e| e.to_string())).unwrap();
    assert!(again.is_empty(), "{again:?}");
    let guarded = lab.send(&frames, 3);
    let wrong = report(&frames, &guarded, |legit| legit);
    assert!(wrong.is_empty(), "the new tap's guard:\n{wrong}");
}

/// The kernel fact the guard's first rule exists for: a netdev base chain
/// whose device was deleted is bound again to a new device of the same
/// name (this kernel), so without that rule a stale drop-all chain would
/// filter the new tap. On a kernel that deletes the chain with its device
/// (6.1), the chain is gone instead; either way no stale table filters.
#[test]
fn kernel_fact_a_netdev_chain_outlives_its_device_and_rebinds_by_name() {
    let mut lab = Lab::new();
    let script = "table netdev probe {\n chain c {\n type filter hook ingress device \"vm0\" priority 0; policy drop;\n }\n}\n";
    let mut nft = lab.ns.cmd("nft");
    nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let frame = vec![("probe", eth(BCAST, GUEST, 0x88b5, &[0; 46]), false)];
    assert_eq!(
        lab.send(&frame, 4),
        [false],
        "the drop-all chain did not drop"
    );
    drop(std::mem::replace(
        &mut lab.guest,
        File::open("/dev/null").unwrap(),
    ));
    lab.ns.ip("link del vm0");
    let listed = ok(lab.ns.cmd("nft").args(["list", "ruleset"]));
    let chain_kept = listed.contains("chain c");
    assert!(listed.contains("table netdev probe"), "{listed}");
    lab.ns.ip("tuntap add vm0 mode tap");
    lab.ns.ip("link set vm0 master br0 up");
    lab.guest = open_tap(&lab.ns, "vm0");
    let passed = lab.send(&frame, 5)[0];
    let kernel = ok(Command::new("uname").arg("-r"));
    eprintln!(
        "kernel {}: chain kept after its device went: {chain_kept}; new vm0 filtered by it: {}",
        kernel.trim(),
        !passed
    );
    // Kept and rebound (6.16 and later), or deleted with the device.
    assert_eq!(
        chain_kept, !passed,
        "a kept chain that does not filter, or a deleted one that does"
    );
}

/// The config that asks kvmnet-ifup for [`spec`]'s guard.
const GUARD_CONFIG: &str = "bridge = \"br0\"\nguard = true\n\
     guest_mac = [\"52:54:00:12:34:56\"]\n\
     guest_ipv4 = [\"192.0.2.10\", \"198.51.100.0/24\"]\n\
     guest_ipv6 = [\"2001:db8::10\", \"2001:db8:1::/64\"]\n";

fn tables(ns: &Netns) -> String {
    ok(ns.cmd("nft").args(["list", "tables"])).trim().to_owned()
}

fn guards(ns: &Netns) -> String {
    ns.guards()
}

fn leftover(ns: &Netns, index: u32) -> bool {
    ns.guard_left(index, "52:54:00:12:34:56")
}

/// The guard as users get it: kvmnet-ifup on QEMU's tap (held open) puts
/// exactly [`spec`]'s guard on it, the matrix holds, the record says so;
/// kvmnet-ifdown lifts it and every frame passes again.
#[test]
fn kvmnet_ifup_guards_the_tap_as_configured_and_ifdown_lifts_it() {
    let mut lab = Lab::new();
    let dir = common::TempDir::new();
    let c = dir.config(GUARD_CONFIG);
    let frames = matrix();
    lab.ns.ifup("vm0", Some(&c)).ok();
    let s = spec(ifindex(&lab.ns, "vm0"));
    let by_kvmnet = lab.ns.ingress_filters("vm0");
    // the same guard loaded directly (the unit tc reads back as the program)
    lab.ns.ifdown("vm0", Some(&c)).ok();
    assert_eq!(lab.ns.ingress_filters("vm0"), [], "ifdown left the guard");
    apply_in(&lab.ns, &s).unwrap();
    assert_eq!(by_kvmnet, lab.ns.ingress_filters("vm0"));
    assert_eq!(tables(&lab.ns), "");
    let index = s.ifindex;
    in_netns(&lab.ns, move || {
        guard::remove(index).map_err(|e| e.to_string())
    })
    .unwrap();
    assert_eq!(lab.ns.checks("vm0"), "");
    let r = lab.ns.ifup("vm0", Some(&c));
    r.ok();
    let state = lab.ns.state("vm0").unwrap();
    assert!(
        state.alias.as_deref().unwrap_or("").ends_with(" guard"),
        "{state:?}"
    );
    let guarded = lab.send(&frames, 0);
    let wrong = report(&frames, &guarded, |legit| legit);
    assert!(wrong.is_empty(), "with kvmnet's guard:\n{wrong}");

    lab.ns.ifdown("vm0", Some(&c)).ok();
    assert_eq!(lab.ns.checks("vm0"), "");
    let qdiscs = ok(lab.ns.cmd("tc").args(["qdisc", "show", "dev", "vm0"]));
    assert!(
        !qdiscs.contains("qdisc ingress"),
        "ifdown left its qdisc: {qdiscs}"
    );
    let open = lab.send(&frames, 1);
    let wrong = report(&frames, &open, |_| true);
    assert!(
        wrong.is_empty(),
        "after ifdown, every frame passes:\n{wrong}"
    );
}

/// A tap kvmnet creates gets its guard before it carries anything, ifdown
/// deletes both; a tap that vanished without its downscript (QEMU killed)
/// takes its checks along and leaves its limit chain, which the next run
/// that has a limit removes; turning the guard off removes it at the next
/// ifup, with the record.
#[test]
fn guard_state_goes_with_ifdown_with_the_next_run_or_with_the_setting() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let dir = common::TempDir::new();
    let c = dir.config(GUARD_CONFIG);
    ns.ifup("vm0", Some(&c)).ok();
    assert_eq!(ns.checks("vm0"), "on");
    assert_eq!(tables(&ns), "", "nf_tables touched without a rate");
    assert_eq!(
        ns.state("vm0").unwrap().alias.as_deref(),
        Some("kvmnet:v1 created attached=br0 guard")
    );
    let kvmnet = env!("CARGO_BIN_EXE_kvmnet");
    let status = |ns: &Netns| -> serde_json::Value {
        serde_json::from_str(&ok(ns.cmd(kvmnet).args(["status", "--json"]))).unwrap()
    };
    assert_eq!(status(&ns)[0]["guard"], "on");
    let explained = ok(ns.cmd(kvmnet).args(["explain", "vm0", "--config"]).arg(&c));
    assert!(
        explained.contains(
            "guard:      on: MAC 52:54:00:12:34:56; IPv4 from 192.0.2.10, 198.51.100.0/24"
        ),
        "{explained}"
    );
    let check = |ns: &Netns, c: &std::path::Path| -> String {
        // exit 1 when a finding is an error; its findings on stdout
        let out = common::sh(ns.cmd(kvmnet).args(["check", "--config"]).arg(c));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let found = check(&ns, &c);
    // Read from the kernel's module lists, which this machine's kernel
    // does not ship (Debian's, in the guest lane, does).
    let release = ok(Command::new("uname").arg("-r"));
    let lists = std::path::Path::new("/lib/modules")
        .join(release.trim())
        .join("modules.builtin")
        .exists();
    assert!(
        if lists {
            found.contains("ok: this kernel has sch_ingress and cls_bpf (ingress qdisc, classic BPF filters) for guard = true")
        } else {
            found.contains("unchecked: cannot tell whether this kernel has sch_ingress and cls_bpf")
        },
        "{found}"
    );
    // someone deleted the tap's ingress qdisc: status and check say so, the
    // next ifup puts the guard back
    ok(ns.cmd("tc").args(["qdisc", "del", "dev", "vm0", "ingress"]));
    assert_eq!(status(&ns)[0]["guard"], "missing");
    let found = check(&ns, &c);
    assert!(
        found.contains(
            "error: tap vm0 is recorded as guarded but the guard's filters on it are gone"
        ) && found.contains("fix: kvmnet-ifup vm0 puts them back"),
        "{found}"
    );
    ns.ifup("vm0", Some(&c)).ok();
    assert_eq!(status(&ns)[0]["guard"], "on");
    assert_eq!(ns.checks("vm0"), "on");
    ns.ifdown("vm0", Some(&c)).ok();
    assert!(!ns.exists("vm0"));
    assert_eq!(tables(&ns), "");

    // vanished without ifdown (QEMU killed; or libvirt, which deletes the
    // tap before its downscript runs): the checks went with it; its limit
    // chain stays until the downscript that finds it gone collects it, as
    // does any later ifdown
    let rc = dir.config(&format!("{GUARD_CONFIG}rate_in = \"100mbit\"\n"));
    ns.ifup("vm0", Some(&rc)).ok();
    assert_eq!(ns.checks("vm0"), "on");
    let stale = ifindex(&ns, "vm0");
    assert_eq!(guards(&ns), format!("tap-{stale}"));
    let found = check(&ns, &rc);
    assert!(
        found.contains("ok: nf_tables with the netdev family is there for rate_in"),
        "{found}"
    );
    ns.ip("link del vm0");
    // This kernel keeps a netdev chain past its device; 6.1 deletes it,
    // and with it all the limit had.
    let kept = leftover(&ns, stale);
    let found = check(&ns, &rc);
    assert_eq!(
        found.contains(&format!(
            "warning: guard state {}/tap-{stale} is stale: ",
            guard::shard_name(guard::shard_of(stale))
        )),
        kept,
        "{found}"
    );
    ns.ifup("vm1", Some(&rc)).ok();
    let vm1 = ifindex(&ns, "vm1");
    ns.ifdown("vm0", Some(&rc)).ok();
    assert_eq!(guards(&ns), format!("tap-{vm1}"));
    assert!(!leftover(&ns, stale));
    // and one start with a limit in 16 (SWEEP_EVERY), wherever it is run
    ns.ifup("vm0", Some(&rc)).ok();
    let stale = ifindex(&ns, "vm0");
    ns.ip("link del vm0");
    let mut runs = 0;
    while leftover(&ns, stale) {
        runs += 1;
        assert!(runs < 400, "400 limited starts did not collect {stale}");
        ns.ifup("vm1", Some(&rc)).ok();
    }
    eprintln!("the stale chain went after {runs} re-runs");

    // the guard switched off in the config: the next ifup lifts it
    let off = dir.config("bridge = \"br0\"\n");
    ns.ifup("vm1", Some(&off)).ok();
    assert_eq!(guards(&ns), "");
    assert_eq!(ns.checks("vm1"), "");
    assert_eq!(
        ns.state("vm1").unwrap().alias.as_deref(),
        Some("kvmnet:v1 created attached=br0")
    );
    ns.ifdown("vm1", Some(&off)).ok();
    assert!(!ns.exists("vm1"));
}

/// Routed taps are guarded too, pinned by default to their routed
/// addresses; the guest's MAC can be the one `kvmnet mac --name` derives.
#[test]
fn a_routed_tap_is_pinned_to_its_routes_and_a_derived_mac() {
    let ns = Netns::new();
    let dir = common::TempDir::new();
    let c = dir.config(
        "[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.10\", \"2001:db8::10\"]\n\
         guard = true\nguest_mac = [\"derived\"]\n",
    );
    ns.ip("link set lo up");
    ns.ifup("rt-web", Some(&c)).ok();
    let derived = ok(Command::new(env!("CARGO_BIN_EXE_kvmnet")).args(["mac", "--name", "rt-web"]));
    let want = GuardSpec {
        tap: TapName::new("rt-web").unwrap(),
        ifindex: ifindex(&ns, "rt-web"),
        macs: vec![derived.trim().parse().unwrap()],
        ipv4: Some(vec!["192.0.2.10".parse().unwrap()]),
        ipv6: Some(vec!["2001:db8::10".parse().unwrap()]),
        enforce: true,
        rate_in: None,
    };
    let program: Vec<[u64; 4]> = bpf::program(&want)
        .0
        .iter()
        .map(|i| [i.code.into(), i.jt.into(), i.jf.into(), i.k.into()])
        .collect();
    assert_eq!(ns.ingress_filters("rt-web")[0], (1, false, program));
    assert_eq!(ns.checks("rt-web"), "on");
    ns.ifdown("rt-web", Some(&c)).ok();
    assert!(!ns.exists("rt-web"));
    assert_eq!(tables(&ns), "");
}

/// What cannot be enforced, or would enforce nothing, is refused when the
/// config is read, with its line.
#[test]
fn guard_settings_that_cannot_hold_are_refused_with_their_line() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let dir = common::TempDir::new();
    for (text, want) in [
        (
            "bridge = \"br0\"\nguard = true\n",
            "guard: needs guest_mac",
        ),
        (
            "bridge = \"br0\"\nguest_ipv4 = [\"192.0.2.10\"]\n",
            "guest_ipv4: only applies with guard = true",
        ),
        (
            "bridge = \"br0\"\nguard = true\nguest_mac = [\"01:00:5e:00:00:01\"]\n",
            "multicast",
        ),
        (
            "bridge = \"br0\"\nguard = true\nguest_mac = [\"derived\"]\nguest_ipv4 = [\"192.0.2.1/24\"]\n",
            "host bits set under its prefix; write 192.0.2.0/24",
        ),
        (
            "bridge = \"br0\"\nguard = true\nguest_mac = [\"derived\"]\nguest_ipv6 = [\"192.0.2.1\"]\n",
            "192.0.2.1 is not an IPv6 address",
        ),
    ] {
        let c = dir.config(text);
        ns.ifup("vm0", Some(&c)).fails_with(want);
        assert!(!ns.exists("vm0"));
        assert_eq!(tables(&ns), "");
    }
}

/// Every other test of this file in the kernel most users run (Debian's
/// 6.1): it releases a netdev base chain with its device, where this
/// machine's kernel keeps it and binds it to the next device of that name.
#[test]
fn guest_kernel_lane() {
    let exe = std::env::current_exe().unwrap();
    let expected: Vec<String> = guest::tests_of(&exe, false)
        .into_iter()
        .filter(|t| t != "guest_kernel_lane")
        .collect();
    assert!(
        expected.len() >= 8,
        "the guest lane expects the guard tests: {expected:?}"
    );
    guest::Lane {
        what: "guard tests",
        // Debian builds these as modules; br_netfilter is built in here,
        // and the matrix switches it off in its namespace.
        modules: &[
            "tun",
            "bridge",
            "br_netfilter",
            "nf_tables",
            "nft_limit",
            "sch_ingress",
            "cls_bpf",
        ],
        tools: &["ip", "nft", "sysctl", "tc"],
        args: &["--skip", "guest_kernel_lane"],
        expected: &expected,
    }
    .run();
}
