//! `kvmnet net`: private networks with DHCP, DNS and NAT. Each test has its
//! own network namespace (the host), an "outside" namespace standing for
//! the internet where it needs one, and its own /run (a directory of the
//! test bound over /run in a private mount namespace of every command), so
//! that /run/kvmnet/net/… and dnsmasq's files are the test's.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::qemu::{find_program, Proc, QEMU_ARGS, ROM_HINT};
use common::{ok, sh, Netns, Run, TempDir};

const KVMNET: &str = env!("CARGO_BIN_EXE_kvmnet");

const CONFIG: &str = r#"
[[network]]
name = "default"
bridge = "kvbr0"
ipv4 = "192.168.122.1/24"
dhcp_range = ["192.168.122.100", "192.168.122.199"]
ipv6 = "fd00:122::1/64"
domain = "vm"

[[network]]
name = "lab"
bridge = "kvlab0"
ipv4 = "10.55.0.1/24"
nat = false

[[rule]]
match = "fix*"
network = "default"
guest_mac = ["derived"]
guest_ipv4 = ["192.168.122.50"]

[[rule]]
match = "vm*"
network = "default"
"#;

/// The host: a namespace, a /run of its own, the config.
struct Lab {
    ns: Netns,
    run: TempDir,
    config: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let ns = Netns::new();
        let run = TempDir::new();
        let config = run.config(CONFIG);
        Lab { ns, run, config }
    }

    /// `prog args…` in the namespace with the lab's /run.
    fn cmd(&self, prog: &str) -> Command {
        let mut c = self.ns.cmd("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /run && exec \"$@\"",
                self.run.path().display()
            ))
            .args(["sh", prog])
            .env("KVMNET_CONFIG", &self.config)
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID");
        c
    }

    fn net(&self, args: &str) -> Run {
        let mut c = self.cmd(KVMNET);
        c.arg("net").args(args.split_whitespace());
        c.arg("--config").arg(&self.config);
        Run::from(sh(&mut c))
    }

    fn kvmnet(&self, bin: &str, tap: &str) -> Run {
        let mut c = self.cmd(bin);
        c.arg(tap);
        Run::from(sh(&mut c))
    }

    fn dir(&self, net: &str) -> PathBuf {
        self.run.path().join("kvmnet/net").join(net)
    }

    fn dnsmasq_pid(&self, net: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir(net).join("dnsmasq.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (!cmdline.is_empty()).then_some(pid)
    }

    fn nft(&self, args: &str) -> Run {
        let mut c = self.ns.cmd("nft");
        c.args(args.split_whitespace());
        Run::from(sh(&mut c))
    }

    fn table(&self, net: &str) -> Option<String> {
        let r = self.nft(&format!("list table inet kvmnet-net-{net}"));
        (r.code == Some(0)).then_some(r.stdout)
    }

    fn list(&self) -> serde_json::Value {
        let r = self.net("list --json");
        r.ok();
        serde_json::from_str(&r.stdout).unwrap()
    }

    fn state(&self, net: &str) -> String {
        let l = self.list();
        let n = l
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == net)
            .unwrap();
        n["state"].as_str().unwrap().to_owned()
    }

    /// The dnsmasq processes of network `net` in this lab's namespace,
    /// whether or not they wrote their pid file.
    fn dnsmasqs(&self, net: &str) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::metadata(format!("/run/netns/{}", self.ns.name)).unwrap();
        let arg = format!("--pid-file=/run/kvmnet/net/{net}/dnsmasq.pid");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == ns.ino())
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
            })
            .collect()
    }

    /// Nothing of network `net` is left: no bridge, table, dnsmasq, files.
    fn assert_gone(&self, net: &str, bridge: &str) {
        assert!(!self.ns.exists(bridge), "{bridge} left");
        assert!(self.table(net).is_none(), "table of {net} left");
        assert_eq!(self.dnsmasqs(net), [0; 0], "dnsmasq of {net} still runs");
        assert!(!self.dir(net).exists(), "{} left", self.dir(net).display());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // dnsmasq outlives the commands that started it
        for net in ["default", "lab"] {
            for pid in self.dnsmasqs(net) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// `up` makes the bridge with its addresses, forwarding, the table and
/// dnsmasq; again it changes nothing; two networks coexist; `down` removes
/// exactly one, and again is a no-op.
#[test]
fn up_is_idempotent_networks_coexist_and_down_leaves_nothing() {
    let lab = Lab::new();
    let r = lab.net("up default");
    r.ok();
    assert!(r.stdout.contains("created bridge kvbr0"), "{r:?}");
    let addrs = lab.ns.ip("-j addr show dev kvbr0");
    assert!(
        addrs.contains("192.168.122.1") && addrs.contains("fd00:122::1"),
        "{addrs}"
    );
    assert_eq!(lab.ns.sys("/proc/sys/net/ipv4/ip_forward").trim(), "1");
    assert_eq!(
        lab.ns.sys("/proc/sys/net/ipv6/conf/all/forwarding").trim(),
        "1"
    );
    let table = lab.table("default").expect("no table");
    for want in [
        "masquerade",
        "192.168.122.0/24",
        "iifname \"kvbr0\"",
        "ct state established,related accept",
    ] {
        assert!(table.contains(want), "{want} not in\n{table}");
    }
    let pid = lab.dnsmasq_pid("default").expect("no dnsmasq");
    assert_eq!(lab.state("default"), "up");

    let again = lab.net("up default");
    again.ok();
    assert!(again.stdout.contains("is up already"), "{again:?}");
    assert_eq!(lab.dnsmasq_pid("default"), Some(pid));

    lab.net("up lab").ok();
    assert_eq!(lab.state("lab"), "up");
    assert!(!lab.table("lab").unwrap().contains("masquerade"));
    // each dnsmasq serves its own bridge
    let lab_pid = lab.dnsmasq_pid("lab").unwrap();
    assert_ne!(lab_pid, pid);

    // a VM's port keeps the network up, unless forced
    lab.ns.ip("link add p0 type veth peer name p1");
    lab.ns.ip("link set p0 master kvbr0");
    lab.net("down default").fails_with("still has ports (p0)");
    assert_eq!(lab.state("default"), "up");
    lab.ns.ip("link del p0");

    let r = lab.net("down default");
    r.ok();
    lab.assert_gone("default", "kvbr0");
    assert_eq!(lab.state("default"), "down");
    assert_eq!(lab.state("lab"), "up");
    lab.net("down default").ok();
    lab.net("down lab").ok();
    lab.assert_gone("lab", "kvlab0");

    // a bridge it did not make is refused, and left
    lab.ns.ip("link add kvbr0 type bridge");
    lab.net("up default")
        .fails_with("kvbr0 exists and is not network default's");
    lab.net("down default").ok();
    assert!(lab.ns.exists("kvbr0"));
}

/// A network that is up keeps its bridge and addresses when the config
/// changes under it: `up` refuses to take another bridge over, and `down`
/// removes what `up` made even when the config no longer has the network.
#[test]
fn a_config_change_never_moves_a_network_and_down_works_from_what_up_made() {
    let lab = Lab::new();
    lab.net("up default").ok();
    // an admin's own bridge, which a config edit now names
    lab.ns.ip("link add br9 type bridge");
    std::fs::write(&lab.config, CONFIG.replace("\"kvbr0\"", "\"br9\"")).unwrap();
    lab.net("up default")
        .fails_with("network default is up with bridge kvbr0, 192.168.122.1/24 fd00:122::1/64, and its [[network]] now says bridge br9");
    let addrs = lab.ns.ip("-j addr show dev br9");
    assert!(!addrs.contains("192.168.122.1"), "{addrs}");
    // the network leaves the config: list still shows it, and down still
    // takes it down; br9 stays
    std::fs::write(&lab.config, "").unwrap();
    let l = lab.list();
    assert_eq!(l[0]["name"], "default", "{l}");
    assert_eq!(l[0]["bridge"], "kvbr0", "{l}");
    assert!(
        l[0]["state"].as_str().unwrap().starts_with("orphaned"),
        "{l}"
    );
    lab.net("down default").ok();
    assert_eq!(lab.list(), serde_json::json!([]));
    lab.assert_gone("default", "kvbr0");
    assert!(lab.ns.exists("br9"));
}

/// Sends one router advertisement (router lifetime 1800 s, no options) to
/// all nodes out of the interface named by argv[1]; the kernel fills in the
/// ICMPv6 checksum.
const SEND_RA: &str = r#"
import socket, struct, sys
dev = sys.argv[1]
idx = socket.if_nametoindex(dev)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0), ("ff02::1", 0, 0, idx))
"#;

/// What `up` and `down` do not trust: a bridge of the network's name that
/// is not the one `up` made (deleted and made again by someone else), a
/// process of an ordinary user posing as the network's dnsmasq, and IPv6
/// forwarding that would drop the host's default route learned from
/// router advertisements.
#[test]
fn impostors_are_not_the_network_and_ipv6_forwarding_keeps_ra_routes() {
    let lab = Lab::new();
    let sysctl = |kv: &str| ok(lab.ns.cmd("sysctl").args(["-qw", kv]));
    // a default route the kernel learned from a router advertisement sent
    // from d0p into d0 (accept_ra 1)...
    lab.ns.ip("link add d0 type veth peer name d0p");
    sysctl("net.ipv6.conf.d0p.accept_dad=0");
    lab.ns.ip("link set d0p up");
    lab.ns.ip("link set d0 up");
    let t = Instant::now();
    while !lab
        .ns
        .ip("-6 route show default")
        .contains("dev d0 proto ra")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no route from the RA"
        );
        ok(lab.ns.cmd("python3").arg("-c").arg(SEND_RA).arg("d0p"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...and one a network manager added on e0 (accept_ra 0), which
    // forwarding leaves alone
    lab.ns.ip("link add e0 type veth peer name e0p");
    sysctl("net.ipv6.conf.e0.accept_ra=0");
    lab.ns.ip("link set e0p up");
    lab.ns.ip("link set e0 up");
    lab.ns
        .ip("-6 route add default via fe80::2 dev e0 proto ra metric 2000");
    lab.net("up default").fails_with(
        "would drop the default route this host learned from router advertisements on d0 (accept_ra is 1 there): `sysctl -w net.ipv6.conf.d0.accept_ra=2`",
    );
    assert!(!lab.ns.exists("kvbr0"));
    assert!(!lab.dir("default").exists());
    sysctl("net.ipv6.conf.d0.accept_ra=2");
    lab.net("up default").ok();
    let routes = lab.ns.ip("-6 route show default");
    assert!(
        routes.contains("dev d0 proto ra") && routes.contains("dev e0 proto ra"),
        "{routes}"
    );

    // the bridge deleted and made again by an admin: not the network's
    lab.ns.ip("link del kvbr0");
    lab.ns.ip("link add kvbr0 type bridge");
    lab.net("up default")
        .fails_with("interface kvbr0 exists and is not network default's");
    assert_eq!(
        lab.state("default"),
        "partial: no bridge (kvbr0 is another interface)"
    );
    lab.net("down --force default").ok();
    assert!(lab.ns.exists("kvbr0"), "down deleted the admin's bridge");
    assert_eq!(
        lab.state("default"),
        "down; kvbr0 is another interface, which kvmnet net up refuses"
    );
    lab.ns.ip("link del kvbr0");

    // uid 1000 runs something with dnsmasq's command line in the namespace
    let mut fake = lab.ns.cmd("setpriv");
    fake.args(["--reuid=1000", "--regid=1000", "--clear-groups", "--"])
        .args(["bash", "-c", "exec -a /usr/sbin/dnsmasq python3 -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)' \"$@\"", "sh"])
        .arg("--pid-file=/run/kvmnet/net/default/dnsmasq.pid")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut fake = Proc(fake.spawn().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let up = lab.net("up default");
    up.ok();
    assert!(up.stdout.contains("started dnsmasq"), "{}", up.stdout);
    let real = lab
        .dnsmasq_pid("default")
        .expect("a dnsmasq of the network's");
    assert_ne!(real as u32, fake.0.id());
    let t = Instant::now();
    lab.net("down default").ok();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "down took {:?}",
        t.elapsed()
    );
    assert!(
        matches!(fake.0.try_wait(), Ok(None)),
        "down signalled the user's process"
    );
    drop(fake);
    lab.assert_gone("default", "kvbr0");
}

/// A killed `up`, at every step, is completed by the next `up`, and a
/// killed one is undone by `down`.
#[test]
fn up_killed_at_every_step_is_completed_by_up_or_undone_by_down() {
    use common::trace::Tracee;
    let lab = Lab::new();
    let mut k = 1;
    loop {
        let mut c = lab.cmd(KVMNET);
        c.args(["net", "up", "default", "--config"])
            .arg(&lab.config);
        let t = Tracee::new(c, KVMNET).kill_at(k);
        if !t.reached() {
            assert_eq!(t.code(), Some(0), "the whole run: {}", t.stderr);
            break;
        }
        assert!(t.killed(), "step {k}: {:?} {}", t.end, t.stderr);
        if k % 2 == 1 {
            lab.net("up default").ok();
            assert_eq!(lab.state("default"), "up", "killed at step {k}");
        }
        lab.net("down default").ok();
        lab.assert_gone("default", "kvbr0");
        k += 1;
    }
    lab.net("down default").ok();
    lab.assert_gone("default", "kvbr0");
    eprintln!("killed at each of {} steps", k - 1);
    assert!(k > 6, "only {} steps to kill at", k - 1);
}

/// A guest's packet to the outside leaves the uplink with the uplink's
/// address as its source, and the answer comes back to the guest.
#[test]
fn guests_reach_the_outside_through_nat_and_the_answers_come_back() {
    let lab = Lab::new();
    let outside = Netns::new();
    let guest = Netns::new();
    // the uplink: host 10.99.0.1 <-> outside 10.99.0.2, which holds the
    // "internet" address 198.51.100.1 and has no route to the guests
    ok(Command::new("ip").args([
        "-n",
        &lab.ns.name,
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "wan0",
        "netns",
        &outside.name,
    ]));
    lab.ns.ip("addr add 10.99.0.1/24 dev up0");
    lab.ns.ip("link set up0 up");
    lab.ns.ip("route add default via 10.99.0.2");
    outside.ip("addr add 10.99.0.2/24 dev wan0");
    outside.ip("link set wan0 up");
    outside.ip("addr add 198.51.100.1/32 dev lo");
    lab.net("up default").ok();
    // a guest behind a veth port of the network's bridge
    ok(Command::new("ip").args([
        "-n",
        &lab.ns.name,
        "link",
        "add",
        "gport",
        "type",
        "veth",
        "peer",
        "name",
        "g0",
        "netns",
        &guest.name,
    ]));
    lab.ns.ip("link set gport master kvbr0");
    lab.ns.ip("link set gport up");
    guest.ip("addr add 192.168.122.77/24 dev g0");
    guest.ip("link set g0 up");
    guest.ip("route add default via 192.168.122.1");

    let server = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('198.51.100.1', 9999))\n\
        s.settimeout(20)\n\
        data, peer = s.recvfrom(100)\n\
        s.sendto(peer[0].encode(), peer)\n\
        print(peer[0])\n";
    let srv = outside
        .cmd("python3")
        .args(["-c", server])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _srv = Proc(srv);
    let client = "import socket, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.settimeout(1)\n\
        for i in range(15):\n\
        \x20   s.sendto(b'hello', ('198.51.100.1', 9999))\n\
        \x20   try:\n\
        \x20       print(s.recvfrom(100)[0].decode()); break\n\
        \x20   except socket.timeout:\n\
        \x20       pass\n";
    let seen = ok(guest.cmd("python3").args(["-c", client]));
    assert_eq!(
        seen.trim(),
        "10.99.0.1",
        "the outside saw the guest as {seen:?}, not as the uplink's address"
    );
    // DNS on the network's address: the host's names, and the network's
    // own domain answered locally (never forwarded)
    let dns = "import socket, struct, sys\n\
        def ask(name):\n\
        \x20   q = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'\n\
        \x20   q += b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\x00\\x00\\x01\\x00\\x01'\n\
        \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        \x20   s.settimeout(3)\n\
        \x20   s.sendto(q, ('192.168.122.1', 53))\n\
        \x20   r = s.recv(512)\n\
        \x20   return r[3] & 15, struct.unpack('>H', r[6:8])[0]\n\
        print(ask('localhost'), ask('nosuch.vm'))\n";
    let answers = ok(guest.cmd("python3").args(["-c", dns]));
    assert_eq!(
        answers.trim(),
        "(0, 1) (3, 0)",
        "DNS answers (rcode, answers) for localhost and nosuch.vm"
    );
    // IPv6: the network's router advertisements give the guest an address
    // of its /64 (SLAAC)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = guest.ip("-6 addr show dev g0");
        if a.contains("fd00:122:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no SLAAC address from the network's RAs: {a}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.net("down --force default").ok();
}

/// A real QEMU guest (iPXE, TCG) started with kvmnet-ifup as its script
/// gets its lease from the network's dnsmasq; a tap whose rule fixes the
/// guest's address gets that address; ifdown takes the reservation away.
#[test]
fn qemu_guests_get_leases_and_a_fixed_address_is_honoured() {
    let lab = Lab::new();
    lab.net("up default").ok();
    let qemu_bin = find_program("qemu-system-x86_64");
    let mac_of = |name: &str| {
        ok(Command::new(KVMNET).args(["mac", "--name", name]))
            .trim()
            .to_owned()
    };
    let mut guests = Vec::new();
    for (tap, mac) in [
        ("vm1", "52:54:00:12:34:01".to_owned()),
        ("fix1", mac_of("fix1")),
    ] {
        let mut c = lab.cmd(qemu_bin.to_str().unwrap());
        c.args(QEMU_ARGS)
            .arg("-netdev")
            .arg(format!(
                "tap,id=n0,ifname={tap},script={},downscript={}",
                common::IFUP,
                common::IFDOWN
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lab.run.path().join(format!("{tap}.err"))).unwrap());
        guests.push((tap, mac, Proc(c.spawn().unwrap())));
    }
    let hosts = lab.dir("default").join("hosts.d/fix1");
    let leases = lab.dir("default").join("leases");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = Vec::new();
    for (tap, mac, qemu) in &mut guests {
        let ip = loop {
            if let Some(st) = qemu.0.try_wait().unwrap() {
                panic!(
                    "QEMU of {tap} exited ({st}): {}\n{ROM_HINT}",
                    std::fs::read_to_string(lab.run.path().join(format!("{tap}.err")))
                        .unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&leases).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(mac.as_str())) {
                break l.split_whitespace().nth(2).unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no lease for {tap} ({mac}): leases {text:?}, hosts {:?}",
                std::fs::read_to_string(&hosts)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        got.push((tap.to_string(), ip));
    }
    let dynamic: std::net::Ipv4Addr = got[0].1.parse().unwrap();
    assert!(
        (100..=199).contains(&dynamic.octets()[3]),
        "vm1 got {dynamic}, outside dhcp_range"
    );
    assert_eq!(
        got[1].1, "192.168.122.50",
        "fix1's reservation was not honoured"
    );
    assert_eq!(
        std::fs::read_to_string(&hosts).unwrap(),
        format!("{},192.168.122.50\n", mac_of("fix1"))
    );
    assert_eq!(lab.list()[0]["leases"], 2);
    // QEMU's exit runs kvmnet-ifdown: the reservation goes with the tap
    for (_, _, qemu) in &mut guests {
        let pid = nix::unistd::Pid::from_raw(qemu.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let _ = common::qemu::wait_exit(&mut qemu.0, Duration::from_secs(20));
    }
    assert!(!hosts.exists(), "fix1's reservation outlived its tap");
    assert!(!lab.ns.exists("fix1") && !lab.ns.exists("vm1"));
    lab.net("down default").ok();
}

/// A tap of a network that is not up, and a reservation another tap holds,
/// are refused before anything changes.
#[test]
fn taps_of_a_network_that_is_down_or_of_a_taken_address_are_refused() {
    let lab = Lab::new();
    lab.kvmnet(common::IFUP, "vm1").fails_with(
        "network default is not up (its bridge kvbr0 does not exist): `kvmnet net up default`",
    );
    assert!(!lab.ns.exists("vm1"));
    lab.net("up default").ok();
    lab.kvmnet(common::IFUP, "fix1").ok();
    assert!(lab.dir("default").join("hosts.d/fix1").exists());
    lab.kvmnet(common::IFUP, "fix2")
        .fails_with("192.168.122.50 is reserved for tap fix1 on network default already");
    assert!(!lab.ns.exists("fix2"));
    assert!(!lab.dir("default").join("hosts.d/fix2").exists());
    // a run refused after it rewrote a reservation (fix1 is a port of
    // another bridge now) puts back what the file held
    let held = lab.dir("default").join("hosts.d/fix1");
    std::fs::write(&held, "52:54:00:00:00:60,192.168.122.60\n").unwrap();
    lab.ns.ip("link add other0 type bridge");
    lab.ns.ip("link set fix1 nomaster");
    lab.ns.ip("link set fix1 master other0");
    lab.kvmnet(common::IFUP, "fix1")
        .fails_with("tap fix1 is already a port of another bridge");
    assert_eq!(
        std::fs::read_to_string(&held).unwrap(),
        "52:54:00:00:00:60,192.168.122.60\n"
    );
    lab.ns.ip("link set fix1 nomaster");
    lab.ns.ip("link del other0");
    lab.kvmnet(common::IFDOWN, "fix1").ok();
    assert!(!lab.dir("default").join("hosts.d/fix1").exists());
    lab.kvmnet(common::IFUP, "fix2").ok();
    lab.kvmnet(common::IFDOWN, "fix2").ok();

    // taps asking for the one address at once: exactly one gets it
    let taps = ["fix3", "fix4", "fix5", "fix6"];
    let runs: Vec<Run> = std::thread::scope(|s| {
        let h: Vec<_> = taps
            .iter()
            .map(|t| {
                let lab = &lab;
                s.spawn(move || lab.kvmnet(common::IFUP, t))
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<&str> = taps
        .iter()
        .zip(&runs)
        .filter(|(_, r)| r.code == Some(0))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(won.len(), 1, "{runs:?}");
    let files: Vec<String> = std::fs::read_dir(lab.dir("default").join("hosts.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, won, "reservations after the race");
    lab.kvmnet(common::IFDOWN, won[0]).ok();
    lab.net("down default").ok();
}

/// `kvmnet check` reports a network whose dnsmasq died, forwarding switched
/// off, and a subnet the host routes elsewhere.
#[test]
fn check_reports_a_network_without_dnsmasq_forwarding_or_its_own_subnet() {
    let lab = Lab::new();
    let check = || {
        let mut c = lab.cmd(KVMNET);
        c.arg("check").arg("--config").arg(&lab.config);
        Run::from(sh(&mut c)).stdout
    };
    let text = check();
    assert!(text.contains("ok: network default is down"), "{text}");
    lab.net("up default").ok();
    let text = check();
    assert!(text.contains("ok: network default: dnsmasq runs"), "{text}");
    assert!(!text.contains("error: network"), "{text}");

    let pid = lab.dnsmasq_pid("default").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.dnsmasq_pid("default").is_some() {
        assert!(Instant::now() < deadline, "dnsmasq {pid} does not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(lab.ns.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=0"]));
    // no dummy driver here: one end of a veth pair stands for an interface
    lab.ns.ip("link add d0 type veth peer name d1");
    lab.ns.ip("link set d0 up");
    lab.ns.ip("route add 192.168.122.128/25 dev d0");
    let text = check();
    for want in [
        "error: network default: its dnsmasq is not running",
        "error: network default: IPv4 forwarding is off",
        "error: network default's subnet 192.168.122.0/24 overlaps the host's route to 192.168.122.128/25 via d0",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    // `up` completes it: dnsmasq again, forwarding on
    lab.net("up default").ok();
    let text = check();
    assert!(
        !text.contains("error: network default: its dnsmasq"),
        "{text}"
    );
    assert!(!text.contains("IPv4 forwarding is off"), "{text}");
    lab.net("down default").ok();
}
