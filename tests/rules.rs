//! Per-tap rules on the host lane: rule order, routed mode, port isolation,
//! learning and flooding flags, MTU / host MAC / tun group policies. (VLANs
//! need a kernel with bridge VLAN filtering: tests/vlan.rs.)

mod common;

use std::time::Duration;

use common::{
    broadcast_frame, in_netns, kernel_filters_vlans, open_tap, read_frames, seen, Netns, TempDir,
};

const RULES: &str = r#"bridge = "br0"
[[rule]]
match = "lab-*"
bridge = "br-lab"
isolated = true
[[rule]]
match = "lab-open*"
bridge = "never-used"
[[rule]]
match = "rt-*"
mode = "route"
addresses = ["192.0.2.10", "2001:db8::10"]
[[rule]]
match = "big-*"
mtu = 4000
host_mac = "keep"
group = 4300
[[rule]]
match = "quiet-*"
learning = false
flooding = false
"#;

fn ns_with_bridges() -> Netns {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    ns.ip("link add br-lab up type bridge");
    ns
}

fn slave(ns: &Netns, tap: &str) -> serde_json::Value {
    ns.link(tap).unwrap()["linkinfo"]["info_slave_data"].clone()
}

#[test]
fn first_matching_rule_wins() {
    let ns = ns_with_bridges();
    let dir = TempDir::new();
    let c = dir.config(RULES);
    ns.ifup("lab-open1", Some(&c)).ok();
    ns.ifup("web0", Some(&c)).ok();
    assert_eq!(
        ns.state("lab-open1").unwrap().master.as_deref(),
        Some("br-lab")
    );
    assert_eq!(ns.state("web0").unwrap().master.as_deref(), Some("br0"));
    let r = ns.ifup("lab-2", Some(&c));
    r.ok();
    assert!(r.stderr.contains("rule=\"rule 1 (lab-*) at "), "{r:?}");
}

#[test]
fn isolated_ports_do_not_reach_each_other_but_reach_the_rest() {
    let ns = ns_with_bridges();
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br-lab\"\n[[rule]]\nmatch = \"iso*\"\nisolated = true\n");
    for t in ["iso1", "iso2", "open1"] {
        ns.ifup(t, Some(&c)).ok();
    }
    assert_eq!(slave(&ns, "iso1")["isolated"], true);
    assert_eq!(slave(&ns, "open1")["isolated"], false);
    let mut iso1 = open_tap(&ns, "iso1");
    let mut iso2 = open_tap(&ns, "iso2");
    let mut open1 = open_tap(&ns, "open1");
    // ports forward once their queue is attached (carrier up)
    std::thread::sleep(Duration::from_millis(200));
    for f in [&mut iso1, &mut iso2, &mut open1] {
        read_frames(f, Duration::from_millis(50));
    }
    use std::io::Write;
    iso1.write_all(&broadcast_frame([0x02, 0, 0, 0, 0, 0x11], b"from-iso1"))
        .unwrap();
    let at_iso2 = read_frames(&mut iso2, Duration::from_millis(400));
    let at_open = read_frames(&mut open1, Duration::from_millis(400));
    assert!(
        seen(&at_open, b"from-iso1"),
        "an isolated port reaches a normal one"
    );
    assert!(
        !seen(&at_iso2, b"from-iso1"),
        "isolated ports must not reach each other"
    );
    // and a normal port reaches both
    open1
        .write_all(&broadcast_frame([0x02, 0, 0, 0, 0, 0x12], b"from-open1"))
        .unwrap();
    assert!(seen(
        &read_frames(&mut iso1, Duration::from_millis(400)),
        b"from-open1"
    ));
    assert!(seen(
        &read_frames(&mut iso2, Duration::from_millis(400)),
        b"from-open1"
    ));
}

#[test]
fn learning_and_flooding_flags() {
    let ns = ns_with_bridges();
    let dir = TempDir::new();
    let c = dir.config(RULES);
    ns.ifup("quiet-1", Some(&c)).ok();
    ns.ifup("web0", Some(&c)).ok();
    let q = slave(&ns, "quiet-1");
    assert_eq!(
        (q["learning"].clone(), q["flood"].clone()),
        (false.into(), false.into())
    );
    assert_eq!(
        (q["mcast_flood"].clone(), q["bcast_flood"].clone()),
        (false.into(), false.into())
    );
    let w = slave(&ns, "web0");
    assert_eq!(
        (w["learning"].clone(), w["flood"].clone()),
        (true.into(), true.into()),
        "defaults untouched"
    );
}

#[test]
fn fixed_mtu_kept_mac_and_tun_group() {
    let ns = ns_with_bridges();
    let dir = TempDir::new();
    let c = dir.config(RULES);
    ns.ip("tuntap add big-q mode tap");
    ns.ip("link set big-q address 52:54:00:00:00:42");
    ns.ifup("big-q", Some(&c)).ok();
    let s = ns.state("big-q").unwrap();
    assert_eq!((s.mtu, s.mac.as_str()), (4000, "52:54:00:00:00:42"));
    // group applies to taps kvmnet creates
    ns.ifup("big-new", Some(&c)).ok();
    assert_eq!(ns.sys("/sys/class/net/big-new/group"), "4300");
    assert_eq!(ns.state("big-new").unwrap().mtu, 4000);
    ns.ifdown("big-q", Some(&c)).ok();
    assert_eq!(ns.state("big-q").unwrap().mtu, 1500);
}

#[test]
fn routed_mode_adds_routes_proxy_arp_forwarding_and_ifdown_removes_them() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let c = dir.config(RULES);
    ns.ip("tuntap add rt-web mode tap");
    let r = ns.ifup("rt-web", Some(&c));
    r.ok();
    assert!(r.stderr.contains("route=192.0.2.10,2001:db8::10"), "{r:?}");
    assert!(r.stderr.contains("switched IPv4 forwarding on"), "{r:?}");
    let routes4 = ns.ip("-4 route show dev rt-web");
    let routes6 = ns.ip("-6 route show dev rt-web");
    assert!(routes4.contains("192.0.2.10"), "{routes4}");
    assert!(routes6.contains("2001:db8::10"), "{routes6}");
    assert_eq!(ns.sys("/proc/sys/net/ipv4/conf/rt-web/proxy_arp"), "1");
    assert_eq!(ns.sys("/proc/sys/net/ipv6/conf/rt-web/proxy_ndp"), "1");
    assert_eq!(ns.sys("/proc/sys/net/ipv4/ip_forward"), "1");
    let s = ns.state("rt-web").unwrap();
    assert!(s.up && s.master.is_none());

    // a packet to the guest address leaves through the tap: the host asks
    // for the guest's MAC (ARP) on it
    ns.ip("addr add 198.51.100.1/32 dev lo"); // a source address to ARP from
    let mut q = open_tap(&ns, "rt-web");
    std::thread::sleep(Duration::from_millis(100));
    read_frames(&mut q, Duration::from_millis(50));
    in_netns(&ns, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"hello guest", "192.0.2.10:9").unwrap();
    });
    let frames = read_frames(&mut q, Duration::from_millis(500));
    let arp_for_guest = frames
        .iter()
        .any(|f| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[38..42] == [192, 0, 2, 10]);
    assert!(
        arp_for_guest,
        "no ARP for 192.0.2.10 on the tap: {} frames",
        frames.len()
    );
    drop(q);

    // idempotent
    let again = ns.ifup("rt-web", Some(&c));
    again.ok();
    assert!(again.stderr.contains("result=unchanged"), "{again:?}");

    ns.ifdown("rt-web", Some(&c)).ok();
    assert!(!ns.ip("-4 route show dev rt-web").contains("192.0.2.10"));
    assert!(!ns.ip("-6 route show dev rt-web").contains("2001:db8::10"));
    assert_eq!(ns.sys("/proc/sys/net/ipv4/conf/rt-web/proxy_arp"), "0");
    assert_eq!(ns.sys("/proc/sys/net/ipv6/conf/rt-web/proxy_ndp"), "0");
    assert!(!ns.state("rt-web").unwrap().up);
    // forwarding is host-wide and stays on (documented)
    assert_eq!(ns.sys("/proc/sys/net/ipv4/ip_forward"), "1");
}

#[test]
fn routed_mode_creates_and_deletes_its_tap_and_refuses_a_foreign_route() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let c = dir.config(RULES);
    ns.ifup("rt-new", Some(&c)).ok();
    assert!(ns.ip("-4 route show dev rt-new").contains("192.0.2.10"));
    ns.ifdown("rt-new", Some(&c)).ok();
    assert!(!ns.exists("rt-new"));
    assert!(!ns.ip("-4 route show").contains("192.0.2.10"));

    // someone else's route to the guest address: refused, rolled back
    ns.ip("link add up0 up type veth peer name up1");
    ns.ip("route add 192.0.2.10/32 dev up0");
    let links = ns.all_links();
    ns.ifup("rt-x", Some(&c))
        .fails_with("a route to 192.0.2.10 already exists")
        .fails_with("tap rt-x was removed again");
    assert_eq!(ns.all_links(), links);
    assert!(ns.ip("-4 route show").contains("192.0.2.10 dev up0"));
}

#[test]
fn vlan_rule_on_this_kernel_names_the_missing_feature() {
    // The guest-kernel lane (tests/vlan.rs) covers kernels that can filter
    // VLANs; here, a kernel that cannot must give a clear refusal.
    let ns = Netns::new();
    if kernel_filters_vlans(&ns) {
        eprintln!("this kernel filters VLANs; the refusal is not testable here (tests/vlan.rs covers VLANs)");
        return;
    }
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br-v\"\ncreate_bridge = true\nvlan = 10\n");
    let links = ns.all_links();
    ns.ifup("v0", Some(&c))
        .fails_with("CONFIG_BRIDGE_VLAN_FILTERING");
    assert_eq!(ns.all_links(), links);
}

#[test]
fn vlan_rule_on_an_existing_bridge_of_this_kernel_names_the_missing_feature() {
    let ns = Netns::new();
    if kernel_filters_vlans(&ns) {
        eprintln!("this kernel filters VLANs; the refusal is not testable here (tests/vlan.rs covers VLANs)");
        return;
    }
    ns.ip("link add br-v up type bridge");
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br-v\"\nvlan = 10\n");
    let links = ns.all_links();
    ns.ifup("v0", Some(&c))
        .fails_with("CONFIG_BRIDGE_VLAN_FILTERING");
    assert_eq!(ns.all_links(), links);
}
