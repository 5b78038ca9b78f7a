//! VXLAN bridges across hosts: two network namespaces stand for two hosts,
//! joined by a veth "underlay"; kvmnet-ifup on each makes its bridge's
//! VXLAN uplink. `ip` and `bridge` are the oracles.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{broadcast_frame, ok, open_tap, read_frames, seen, Netns, TempDir};

/// Two "hosts" and the underlay between them: `ul0` in each, 10.99.0.1 and
/// 10.99.0.2 (MTU 1500).
struct Hosts {
    a: Netns,
    b: Netns,
    dir: TempDir,
}

const A: &str = "10.99.0.1";
const B: &str = "10.99.0.2";

impl Hosts {
    fn new() -> Hosts {
        let (a, b) = (Netns::new(), Netns::new());
        ok(std::process::Command::new("ip").args([
            "link", "add", "ul0", "netns", &a.name, "type", "veth", "peer", "name", "ul0", "netns",
            &b.name,
        ]));
        for (ns, addr) in [(&a, A), (&b, B)] {
            ns.ip(&format!("addr add {addr}/24 dev ul0"));
            ns.ip("link set ul0 up");
        }
        Hosts {
            a,
            b,
            dir: TempDir::new(),
        }
    }

    /// A config with two VXLAN bridges: `brv` (VNI 100, taps `vm*`) and
    /// `brw` (VNI 200, taps `other*`), both reaching `peer`.
    fn config(&self, host: &str, peer: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{host}.toml"));
        let text = format!(
            "[[rule]]\nmatch = \"vm*\"\nbridge = \"brv\"\ncreate_bridge = true\n\
             vxlan_vni = 100\nvxlan_peers = [\"{peer}\"]\nvxlan_dev = \"ul0\"\n{extra}\n\
             [[rule]]\nmatch = \"other*\"\nbridge = \"brw\"\ncreate_bridge = true\n\
             vxlan_vni = 200\nvxlan_peers = [\"{peer}\"]\nvxlan_dev = \"ul0\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn mtu(ns: &Netns, dev: &str) -> u64 {
    ns.link(dev).unwrap()["mtu"].as_u64().unwrap()
}

/// The flood entries of `dev` (`bridge fdb` lines with the all-zeros MAC).
fn flood_entries(ns: &Netns, dev: &str) -> Vec<String> {
    ok(ns.cmd("bridge").args(["fdb", "show", "dev", dev]))
        .lines()
        .filter(|l| l.starts_with("00:00:00:00:00:00"))
        .map(str::to_owned)
        .collect()
}

/// A frame a guest on host A sends reaches a guest on host B on the same
/// VNI and not one on another VNI; the uplink is made once, with the MTU
/// its underlay leaves, and a second tap changes nothing of it.
#[test]
fn frames_cross_the_underlay_to_the_same_vni_only() {
    let h = Hosts::new();
    let (ca, cb) = (h.config("a", B, ""), h.config("b", A, ""));
    h.a.ifup("vm-a", Some(&ca)).ok();
    h.b.ifup("vm-b", Some(&cb)).ok();
    h.b.ifup("other-b", Some(&cb)).ok();

    let kvx = h.a.link("kvx100").expect("the VXLAN device on host A");
    assert_eq!(kvx["master"], "brv", "{kvx}");
    let info = &kvx["linkinfo"]["info_data"];
    assert_eq!(info["id"], 100, "{kvx}");
    assert_eq!(info["port"], 4789, "{kvx}");
    assert_eq!(info["link"], "ul0", "{kvx}");
    // 1500 - 50 on the underlay, and the bridge and its taps follow
    for dev in ["kvx100", "brv", "vm-a"] {
        assert_eq!(mtu(&h.a, dev), 1450, "{dev}");
    }
    assert_eq!(
        flood_entries(&h.a, "kvx100"),
        [format!("00:00:00:00:00:00 dst {B} self permanent")]
    );
    assert_eq!(h.b.link("kvx200").unwrap()["master"], "brw");

    let mut sender = open_tap(&h.a, "vm-a");
    let mut same = open_tap(&h.b, "vm-b");
    let mut other = open_tap(&h.b, "other-b");
    read_frames(&mut same, Duration::from_millis(50));
    read_frames(&mut other, Duration::from_millis(50));
    let marker = *b"KVM-VXLAN-100";
    use std::io::Write;
    sender
        .write_all(&broadcast_frame([0x52, 0x54, 0, 0, 0, 0xa], &marker))
        .unwrap();
    let got = read_frames(&mut same, Duration::from_millis(600));
    assert!(seen(&got, &marker), "VNI 100 on host B did not get it");
    let leaked = read_frames(&mut other, Duration::from_millis(200));
    assert!(!seen(&leaked, &marker), "VNI 200 got a VNI 100 frame");

    // a second tap: the uplink is there, its flood entry not doubled
    h.a.ifup("vm-a2", Some(&ca)).ok();
    assert_eq!(flood_entries(&h.a, "kvx100").len(), 1);
    assert_eq!(
        ok(h.a.cmd("ip").args(["-o", "link", "show", "type", "vxlan"]))
            .lines()
            .count(),
        1
    );
}

/// A fixed tap MTU the uplink cannot carry is refused with the numbers;
/// a device of kvmnet's name that is not its VXLAN is refused, untouched;
/// a VNI's device on another bridge is refused.
#[test]
fn what_the_uplink_cannot_be_is_refused_with_what_to_do() {
    let h = Hosts::new();
    let c = h.config("a", B, "mtu = 1500\n");
    h.a.ifup("vm-a", Some(&c))
        .fails_with("mtu 1500 does not fit VXLAN 100 (kvx100, peers 10.99.0.2, via ul0, port 4789)")
        .fails_with("its underlay's MTU 1500 less the 50 bytes VXLAN adds is 1450");
    assert!(!h.a.exists("vm-a"), "the refused tap was left");

    let h = Hosts::new();
    h.a.ip("link add kvx100 type veth peer name kvx100p");
    let c = h.config("a", B, "");
    h.a.ifup("vm-a", Some(&c))
        .fails_with("kvx100 exists but is a veth device, not kvmnet's VXLAN 100");
    assert!(h.a.link("kvx100").unwrap()["master"].is_null());

    let h = Hosts::new();
    h.a.ip("link add brx type bridge");
    h.a.ip(&format!(
        "link add kvx100 type vxlan id 100 remote {B} dstport 4789 dev ul0"
    ));
    h.a.ip("link set kvx100 master brx");
    let c = h.config("a", B, "");
    h.a.ifup("vm-a", Some(&c))
        .fails_with("kvx100 (VXLAN 100) is a port of another bridge");

    let h = Hosts::new();
    let c = h.dir.config(&format!(
        "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 100\nvxlan_peers = [\"{B}\"]\n\
         vxlan_dev = \"nosuch0\"\n"
    ));
    h.a.ifup("vm-a", Some(&c))
        .fails_with("vxlan_dev nosuch0 does not exist");
}

/// Config mistakes are refused when it is read, with their line.
#[test]
fn vxlan_settings_that_cannot_hold_are_refused_with_their_line() {
    let ns = Netns::new();
    let dir = TempDir::new();
    for (text, want) in [
        (
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_peers = [\"10.0.0.2\"]\n",
            "line 3: vxlan_peers: goes with vxlan_vni in the same table",
        ),
        (
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 100\n",
            "vxlan_vni: needs vxlan_peers",
        ),
        (
            "bridge = \"brv\"\nvxlan_vni = 100\nvxlan_peers = [\"10.0.0.2\"]\n",
            "vxlan_vni: only applies to a bridge kvmnet creates",
        ),
        (
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 100\nvxlan_group = \"239.1.1.1\"\n",
            "needs vxlan_dev",
        ),
        (
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 16777216\nevpn = true\n",
            "VNI 16777216 is not 1 to 16777215",
        ),
        (
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 1\nvxlan_peers = [\"10.0.0.2\", \"2001:db8::2\"]\n",
            "one underlay family per VXLAN",
        ),
        (
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 1\nevpn = true\nvxlan_learning = true\n",
            "vxlan_learning: is off with evpn = true",
        ),
    ] {
        let c = dir.config(text);
        ns.ifup("vm0", Some(&c)).fails_with(want);
        assert!(!ns.exists("vm0"));
        assert!(!ns.exists("brv"));
    }
}

/// Two ifups that race to make the same bridge and uplink both succeed,
/// with one of each; so does a run after one that died having made the
/// device but not put it on the bridge.
#[test]
fn racing_and_interrupted_runs_end_with_one_complete_uplink() {
    let h = Hosts::new();
    let c = h.config("a", B, "");
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let (name, c) = (h.a.name.clone(), c.clone());
            std::thread::spawn(move || {
                let ns = Netns { name };
                let r = ns.ifup(&format!("vm-{i}"), Some(&c));
                std::mem::forget(ns);
                r
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap().ok();
    }
    assert_eq!(h.a.link("kvx100").unwrap()["master"], "brv");
    assert_eq!(flood_entries(&h.a, "kvx100").len(), 1);

    // a device made by a run that died before the bridge took it: the
    // next run completes it
    let h = Hosts::new();
    h.a.ip("link add brv type bridge");
    h.a.ip("link set brv up");
    h.a.ip("link add kvx100 type vxlan id 100 dstport 4789 dev ul0");
    let c = h.config("a", B, "");
    h.a.ifup("vm-a", Some(&c)).ok();
    let kvx = h.a.link("kvx100").unwrap();
    assert_eq!(kvx["master"], "brv");
    assert!(kvx["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        flood_entries(&h.a, "kvx100"),
        [format!("00:00:00:00:00:00 dst {B} self permanent")]
    );
}

/// The issue's end-to-end case: a real QEMU guest (iPXE, TCG) on host A,
/// started with kvmnet-ifup as its script, gets its DHCP lease from
/// dnsmasq on host B, across the VXLAN kvmnet made on both hosts.
#[test]
fn a_qemu_guest_on_host_a_gets_its_lease_from_dnsmasq_on_host_b() {
    use common::qemu;
    let h = Hosts::new();
    let config = |host: &str, peer: &str| {
        let path = h.dir.path().join(format!("q{host}.toml"));
        std::fs::write(
            &path,
            format!(
                "bridge = \"br0\"\ncreate_bridge = true\nvxlan_vni = 4242\n\
                 vxlan_peers = [\"{peer}\"]\nvxlan_dev = \"ul0\"\n"
            ),
        )
        .unwrap();
        path
    };
    let (ca, cb) = (config("a", B), config("b", A));
    // host B: kvmnet makes br0 and its uplink for a tap of its own; the
    // DHCP server sits on br0
    h.b.ifup("vm-b", Some(&cb)).ok();
    h.b.ip("addr add 10.77.0.1/24 dev br0");
    let dnsmasq_bin = qemu::find_program("dnsmasq");
    let _dnsmasq = qemu::start_dnsmasq(&h.b, &dnsmasq_bin, h.dir.path());
    // host A: QEMU, whose script= makes br0 and the uplink there
    let mac = "52:54:00:4b:4e:42";
    let qemu_bin = qemu::find_program("qemu-system-x86_64");
    let mut cmd = h.a.cmd(qemu_bin.to_str().unwrap());
    cmd.args(qemu::QEMU_ARGS)
        .args([
            "-netdev",
            &format!(
                "tap,id=n0,ifname=vmq,script={},downscript={}",
                common::IFUP,
                common::IFDOWN
            ),
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={mac}"),
        ])
        .env("KVMNET_CONFIG", &ca)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID");
    let (child, start) = qemu::spawn_qemu(&mut cmd, h.dir.path());
    let mut qemu_proc = qemu::Proc(child);
    let ip = qemu::wait_for_lease(
        &mut qemu_proc.0,
        h.dir.path(),
        mac,
        Duration::from_secs(90),
        &format!("\n{}", qemu::ROM_HINT),
        || {
            format!(
                "host A kvx4242: {:?}\nhost B kvx4242: {:?}\n",
                h.a.link("kvx4242"),
                h.b.link("kvx4242")
            )
        },
    );
    eprintln!(
        "vxlan: guest {mac} on host A got {ip} from host B {:.1} s after QEMU start",
        start.elapsed().as_secs_f64()
    );
    assert!(ip.starts_with("10.77.0."), "{ip}");
    assert_eq!(h.a.link("vmq").unwrap()["master"], "br0");
    assert_eq!(mtu(&h.a, "vmq"), 1450);
}

/// EVPN: kvmnet leaves the FDB to FRR, and sets what FRR expects of the
/// port: no learning on the vxlan device nor on its bridge port, neighbour
/// suppression on.
#[test]
fn evpn_leaves_the_fdb_to_frr_and_sets_the_port_as_frr_expects() {
    let h = Hosts::new();
    let c = h.dir.config(&format!(
        "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 100\nevpn = true\n\
         vxlan_local = \"{A}\"\nvxlan_dev = \"ul0\"\n"
    ));
    h.a.ifup("vm-a", Some(&c)).ok();
    let kvx = h.a.link("kvx100").unwrap();
    assert_eq!(kvx["linkinfo"]["info_data"]["learning"], false, "{kvx}");
    assert_eq!(kvx["linkinfo"]["info_data"]["local"], A, "{kvx}");
    let port = &kvx["linkinfo"]["info_slave_data"];
    assert_eq!(port["neigh_suppress"], true, "{kvx}");
    assert_eq!(port["learning"], false, "{kvx}");
    assert!(flood_entries(&h.a, "kvx100").is_empty());
    // again: nothing changes, nothing fails
    h.a.ifup("vm-a2", Some(&c)).ok();
    let again = h.a.link("kvx100").unwrap();
    let port = &again["linkinfo"]["info_slave_data"];
    assert_eq!(
        (&port["neigh_suppress"], &port["learning"]),
        (&true.into(), &false.into())
    );
}

/// kvmnet-ifup killed at each of its steps while it makes the bridge, the
/// uplink and the port: whatever it left, the next run completes to the
/// state of an uninterrupted one (the uplink on the bridge, up, with its
/// one flood entry and MTU; the tap on the bridge).
#[test]
fn ifup_killed_at_every_step_of_the_uplink_is_completed_by_the_next_run() {
    use common::trace::Tracee;
    let mut k = 1;
    loop {
        let h = Hosts::new();
        let c = h.config("a", B, "");
        let mut cmd = std::process::Command::new(common::IFUP);
        cmd.arg("vm-a").env("KVMNET_CONFIG", &c);
        for v in ["SUDO_UID", "SUDO_GID", "SUDO_USER", "SUDO_COMMAND"] {
            cmd.env_remove(v);
        }
        let t = Tracee::new(cmd, common::IFUP).netns(&h.a).kill_at(k);
        if !t.reached() {
            assert_eq!(t.code(), Some(0), "the whole run: {}", t.stderr);
            break;
        }
        assert!(t.killed(), "step {k}: {:?} {}", t.end, t.stderr);
        let left = ok(h.a.cmd("ip").args(["-br", "link"]));
        h.a.ifup("vm-a", Some(&c)).ok();
        let kvx =
            h.a.link("kvx100")
                .unwrap_or_else(|| panic!("step {k}: no uplink"));
        assert_eq!(kvx["master"], "brv", "killed at step {k}, it left:\n{left}");
        assert!(kvx["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
        assert_eq!(mtu(&h.a, "kvx100"), 1450);
        assert_eq!(flood_entries(&h.a, "kvx100").len(), 1, "step {k}");
        assert_eq!(h.a.link("vm-a").unwrap()["master"], "brv", "step {k}");
        k += 1;
    }
    eprintln!("killed at each of {} steps", k - 1);
    assert!(k > 6, "only {} steps to kill at", k - 1);
}

/// `kvmnet check` on a VXLAN host: fine when it is; a VNI given to two
/// bridges, a peer without a route, an underlay whose MTU no longer fits.
#[test]
fn check_reports_a_shared_vni_an_unreachable_peer_and_an_mtu_that_does_not_fit() {
    let h = Hosts::new();
    let c = h.config("a", B, "");
    h.a.ifup("vm-a", Some(&c)).ok();
    let kvmnet = env!("CARGO_BIN_EXE_kvmnet");
    let check = |c: &std::path::Path| -> String {
        let out = common::sh(h.a.cmd(kvmnet).args(["check", "--config"]).arg(c));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let found = check(&c);
    assert!(
        found.contains(&format!(
            "ok: VXLAN 100 (kvx100, peers {B}, via ul0, port 4789) of bridge brv: MTU 1450 fits ul0 (1500), every peer has a route"
        )),
        "{found}"
    );
    h.a.ip("link set ul0 mtu 1400");
    let found = check(&c);
    assert!(
        found.contains("error: bridge brv has MTU 1450, but VXLAN 100")
            && found.contains("carries at most 1350 over ul0 (MTU 1400 less 50 bytes of VXLAN)")
            && found.contains("fix: raise ul0's MTU to 1500 or more"),
        "{found}"
    );
    let shared = h.dir.config(
        "[[rule]]\nmatch = \"a*\"\nbridge = \"br1\"\ncreate_bridge = true\nvxlan_vni = 7\n\
         vxlan_peers = [\"10.99.0.2\"]\n[[rule]]\nmatch = \"b*\"\nbridge = \"br2\"\n\
         create_bridge = true\nvxlan_vni = 7\nvxlan_peers = [\"198.51.100.9\"]\n",
    );
    let found = check(&shared);
    assert!(
        found.contains("error: VNI 7 is given to bridges br1 and br2"),
        "{found}"
    );
    assert!(
        found.contains("no route to 198.51.100.9: frames for that host go nowhere"),
        "{found}"
    );
}

/// Every other test of this file but the QEMU one (QEMU under TCG inside a
/// TCG guest is too slow to be worth it) in the kernel most users run
/// (Debian's 6.1), where vxlan, veth and the bridge are modules.
#[test]
fn guest_kernel_lane() {
    let exe = std::env::current_exe().unwrap();
    let expected: Vec<String> = common::guest::tests_of(&exe, false)
        .into_iter()
        .filter(|t| t != "guest_kernel_lane" && !t.contains("qemu"))
        .collect();
    assert!(
        expected.len() >= 6,
        "the guest lane expects the VXLAN tests: {expected:?}"
    );
    common::guest::Lane {
        what: "VXLAN tests",
        modules: &["tun", "bridge", "veth", "vxlan"],
        tools: &["ip", "bridge", "sysctl"],
        args: &[
            "--skip",
            "guest_kernel_lane",
            "--skip",
            "a_qemu_guest_on_host_a_gets_its_lease_from_dnsmasq_on_host_b",
        ],
        expected: &expected,
    }
    .run();
}

/// Without `vxlan_dev`, the MTU comes from the device the first peer is
/// routed through (the kernel alone would give the device the full 1500).
#[test]
fn without_an_underlay_device_the_mtu_follows_the_route_to_the_first_peer() {
    let h = Hosts::new();
    h.a.ip("link set ul0 mtu 9000");
    let c = h.dir.config(&format!(
        "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 100\nvxlan_peers = [\"{B}\"]\n"
    ));
    h.a.ifup("vm-a", Some(&c)).ok();
    assert_eq!(mtu(&h.a, "kvx100"), 8950);
    assert_eq!(mtu(&h.a, "vm-a"), 8950);
    assert!(h.a.link("kvx100").unwrap()["linkinfo"]["info_data"]["link"].is_null());
}
