//! mode = "ovs": taps become ports of an Open vSwitch bridge in one OVSDB
//! transaction. Each test runs its own ovsdb-server and ovs-vswitchd (the
//! userspace datapath, which needs only TUN: this kernel has no openvswitch
//! module) with a private run directory and database, ovs-vswitchd inside
//! the test's network namespace. `ovs-vsctl` is the oracle; kvmnet never
//! runs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{broadcast_frame, ok, open_tap, read_frames, seen, Jail, Netns, Run, TempDir};

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// The kernel datapath where the openvswitch module is loaded (the guest
/// kernel lane loads it), else the userspace one.
fn datapath() -> &'static str {
    if Path::new("/sys/module/openvswitch").exists() {
        "system"
    } else {
        "netdev"
    }
}

/// Open vSwitch of a test's own, with bridge `sw0`.
struct Ovs {
    ns: Netns,
    dir: TempDir,
}

fn require(prog: &str) {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .any(|d| d.join(prog).exists());
    assert!(
        found && Path::new(SCHEMA).exists(),
        "{prog} is missing: apt-get install openvswitch-switch (CI={:?})",
        std::env::var("CI").ok()
    );
}

impl Ovs {
    fn new() -> Ovs {
        for p in ["ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"] {
            require(p);
        }
        let ns = Netns::new();
        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let ovs = Ovs { ns, dir };
        ok(Command::new("ovsdb-tool")
            .arg("create")
            .arg(d.join("conf.db"))
            .arg(SCHEMA));
        ok(ovs
            .daemon("ovsdb-server")
            .arg(d.join("conf.db"))
            .arg(format!("--remote=punix:{}", ovs.socket().display())));
        ovs.vsctl(&["--no-wait", "init"]);
        ok(ovs
            .daemon("ovs-vswitchd")
            .arg(format!("unix:{}", ovs.socket().display())));
        let dp = format!("datapath_type={}", datapath());
        ovs.vsctl(&["add-br", "sw0", "--", "set", "bridge", "sw0", &dp]);
        ovs
    }

    /// A daemon started detached in the namespace, its files in the
    /// test's directory.
    fn daemon(&self, prog: &str) -> Command {
        let d = self.dir.path();
        // the OVN databases run in an ovsdb-server of their own
        let exe = if prog == "ovn-ovsdb-server" {
            "ovsdb-server"
        } else {
            prog
        };
        let mut c = self.ns.cmd(exe);
        c.arg(format!(
            "--pidfile={}",
            d.join(format!("{prog}.pid")).display()
        ))
        .arg(format!(
            "--log-file={}",
            d.join(format!("{prog}.log")).display()
        ))
        .arg("--detach");
        // ovn-controller has no --unixctl: its socket goes to OVN_RUNDIR
        if prog != "ovn-controller" {
            c.arg(format!(
                "--unixctl={}",
                d.join(format!("{prog}.ctl")).display()
            ));
        }
        for v in [
            "OVS_RUNDIR",
            "OVS_LOGDIR",
            "OVS_DBDIR",
            "OVN_RUNDIR",
            "OVN_LOGDIR",
            "OVN_DBDIR",
        ] {
            c.env(v, d);
        }
        c
    }

    fn pid(&self, prog: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join(format!("{prog}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn signal(&self, prog: &str, sig: nix::sys::signal::Signal) {
        let pid = self
            .pid(prog)
            .unwrap_or_else(|| panic!("{prog} has no pid file"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("db.sock")
    }

    fn vsctl(&self, args: &[&str]) -> String {
        ok(Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.socket().display()))
            .arg("--timeout=10")
            .args(args)
            .env("OVS_RUNDIR", self.dir.path()))
        .trim()
        .to_owned()
    }

    fn ports(&self) -> Vec<String> {
        self.vsctl(&["list-ports", "sw0"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn get(&self, table: &str, row: &str, column: &str) -> String {
        self.vsctl(&["get", table, row, column])
    }

    /// A config for bridge `sw0` on this Open vSwitch, with `extra` lines.
    fn config(&self, extra: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("kvmnet-{}.toml", common::unique("c")));
        let text = format!(
            "mode = \"ovs\"\nbridge = \"sw0\"\novs_db = \"{}\"\n{extra}\n",
            self.socket().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ifup(&self, tap: &str, config: &Path) -> Run {
        self.ns.ifup(tap, Some(config))
    }

    fn ifdown(&self, tap: &str, config: &Path) -> Run {
        self.ns.ifdown(tap, Some(config))
    }
}

impl Ovs {
    /// A single-node OVN on this Open vSwitch: northbound and southbound
    /// databases (one ovsdb-server), ovn-northd, and ovn-controller, which
    /// makes and programs `br-int`.
    fn ovn(&self) {
        for p in ["ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl"] {
            require(p);
        }
        let d = self.dir.path();
        for (db, schema) in [("nb", "ovn-nb"), ("sb", "ovn-sb")] {
            ok(Command::new("ovsdb-tool")
                .arg("create")
                .arg(d.join(format!("{db}.db")))
                .arg(format!("/usr/share/ovn/{schema}.ovsschema")));
        }
        let sock = format!("unix:{}", d.join("ovn.sock").display());
        ok(self
            .daemon("ovn-ovsdb-server")
            .arg(d.join("nb.db"))
            .arg(d.join("sb.db"))
            .arg(format!("--remote=p{sock}")));
        ok(self
            .daemon("ovn-northd")
            .arg(format!("--ovnnb-db={sock}"))
            .arg(format!("--ovnsb-db={sock}")));
        self.vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "external_ids:system-id=chassis-1",
            &format!("external_ids:ovn-remote={sock}"),
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            &format!("external_ids:ovn-bridge-datapath-type={}", datapath()),
        ]);
        ok(self
            .daemon("ovn-controller")
            .arg(format!("unix:{}", self.socket().display())));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.vsctl(&["list-br"]).lines().any(|b| b == "br-int") {
            assert!(Instant::now() < deadline, "ovn-controller made no br-int");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn nbctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}", self.dir.path().join("ovn.sock").display());
        ok(Command::new("ovn-nbctl").arg(db).args(args))
            .trim()
            .to_owned()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for prog in [
            "ovn-controller",
            "ovn-northd",
            "ovn-ovsdb-server",
            "ovs-vswitchd",
            "ovsdb-server",
        ] {
            if let Some(pid) = self.pid(prog) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Two guests on VLAN 10 exchange frames through OVS, a third on VLAN 20
/// sees none of them; each port carries what libvirt sets (iface-id from
/// the template, attached-mac, iface-status) and the VLAN settings; ifdown
/// removes exactly kvmnet's ports.
#[test]
fn taps_exchange_frames_through_ovs_and_ifdown_removes_their_ports() {
    let o = Ovs::new();
    let c = o.config(
        "vlan = 10\nguest_mac = [\"derived\"]\novs_iface_id = \"lsp-{tap}\"\n\
         [[rule]]\nmatch = \"vm3\"\nvlan = 20\n\
         [[rule]]\nmatch = \"vm4\"\ntrunk = [\"30-31\"]\n",
    );
    for t in ["vm1", "vm2", "vm3", "vm4"] {
        let r = o.ifup(t, &c);
        r.ok();
        assert!(r.stderr.contains(&format!("tap={t} ovs=sw0")), "{r:?}");
    }
    assert_eq!(o.ports(), ["vm1", "vm2", "vm3", "vm4"]);
    let mac = ok(Command::new(env!("CARGO_BIN_EXE_kvmnet")).args(["mac", "--name", "vm1"]));
    let ids = o.get("Interface", "vm1", "external_ids");
    for want in [
        "iface-id=lsp-vm1".to_owned(),
        format!("attached-mac=\"{}\"", mac.trim()),
        "iface-status=active".to_owned(),
    ] {
        assert!(ids.contains(&want), "{want} not in {ids}");
    }
    assert!(o.get("Interface", "vm1", "ofport").parse::<i64>().unwrap() > 0);
    assert_eq!(o.get("Interface", "vm1", "mtu_request"), "1500");
    assert_eq!(o.get("Port", "vm1", "tag"), "10");
    assert_eq!(o.get("Port", "vm1", "vlan_mode"), "access");
    assert_eq!(o.get("Port", "vm3", "tag"), "20");
    assert_eq!(o.get("Port", "vm4", "trunks"), "[30, 31]");
    // the top-level vlan is its untagged one
    assert_eq!(o.get("Port", "vm4", "vlan_mode"), "native-untagged");
    assert!(o
        .get("Port", "vm1", "external_ids")
        .contains("kvmnet-owner=\"0\""));

    let mut t1 = open_tap(&o.ns, "vm1");
    let mut t2 = open_tap(&o.ns, "vm2");
    let mut t3 = open_tap(&o.ns, "vm3");
    // OVS notices the carrier QEMU's descriptor gives: let it
    std::thread::sleep(Duration::from_millis(500));
    let src = [0x52, 0x54, 0, 0, 0, 1];
    use std::io::Write;
    for i in 0..5 {
        let marker = format!("kvmnet-ovs-{i}");
        t1.write_all(&broadcast_frame(src, marker.as_bytes()))
            .unwrap();
        let got = read_frames(&mut t2, Duration::from_millis(400));
        if seen(&got, marker.as_bytes()) {
            assert!(
                !seen(
                    &read_frames(&mut t3, Duration::from_millis(300)),
                    b"kvmnet-ovs-"
                ),
                "a frame crossed from VLAN 10 to VLAN 20"
            );
            break;
        }
        assert!(i < 4, "no frame from vm1 reached vm2: {got:?}");
    }
    drop((t1, t2, t3));

    // a tap QEMU made (persistent here) stays, without its port
    o.ns.ip("tuntap add qemu0 mode tap");
    o.ifup("qemu0", &c).ok();
    assert!(o.ports().contains(&"qemu0".to_owned()));
    o.ifdown("qemu0", &c).ok();
    assert!(o.ns.exists("qemu0"));
    assert!(o.ns.link("qemu0").unwrap().get("ifalias").is_none());

    for t in ["vm1", "vm2", "vm3", "vm4"] {
        o.ifdown(t, &c).ok();
        assert!(!o.ns.exists(t));
    }
    assert!(o.ports().is_empty(), "{:?}", o.ports());
    assert_eq!(
        o.vsctl(&[
            "--columns=name",
            "find",
            "Interface",
            "external_ids:kvmnet-managed=true"
        ]),
        ""
    );
}

/// What kvmnet refuses changes nothing: a bridge OVS does not have, a port
/// another tool added under the tap's name.
#[test]
fn a_missing_bridge_or_another_tools_port_is_refused_and_nothing_changes() {
    let o = Ovs::new();
    let missing = o.config("").to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&missing)
        .unwrap()
        .replace("bridge = \"sw0\"", "bridge = \"nosuch\"");
    std::fs::write(&missing, text).unwrap();
    o.ifup("vm1", Path::new(&missing))
        .fails_with("ovs-vsctl add-br nosuch");
    assert!(!o.ns.exists("vm1"));

    o.ns.ip("tuntap add theirs mode tap");
    o.vsctl(&["add-port", "sw0", "theirs"]);
    let c = o.config("");
    o.ifup("theirs", &c).fails_with("kvmnet did not add");
    assert_eq!(o.ports(), ["theirs"]);
    assert!(o.ns.link("theirs").unwrap().get("ifalias").is_none());
    // and ifdown leaves it to that tool
    o.ifdown("theirs", &c).ok();
    assert_eq!(o.ports(), ["theirs"]);

    // a port kvmnet added and another tool then replaced is theirs: ifdown
    // removes the tap it made and leaves the port
    o.ifup("vm1", &c).ok();
    o.vsctl(&["del-port", "vm1", "--", "add-port", "sw0", "vm1"]);
    o.ifdown("vm1", &c).ok();
    assert!(!o.ns.exists("vm1"));
    assert_eq!(o.ports(), ["theirs", "vm1"]);

    // an interface of that name in another port (a bond), or a logical port
    // another interface claims
    o.vsctl(&["add-bond", "sw0", "bond0", "b1", "vm2"]);
    o.ifup("vm2", &c)
        .fails_with("interface named vm2 already exists in a port kvmnet did not add");
    assert!(!o.ns.exists("vm2"));
    o.vsctl(&["set", "Interface", "b1", "external_ids:iface-id=vm3"]);
    o.ifup("vm3", &c)
        .fails_with("OVN logical port vm3 (ovs_iface_id) is already claimed on this host by Open vSwitch interface b1");
    assert!(!o.ns.exists("vm3"));
    assert_eq!(o.ports(), ["bond0", "theirs", "vm1"]);
}

/// Runs started together on one bridge each get their port; two runs for
/// one tap leave one port, whatever their order.
#[test]
fn concurrent_runs_each_get_their_port_and_one_tap_gets_one() {
    let o = Ovs::new();
    let c = o.config("");
    let taps = ["vm1", "vm2", "vm3", "vm4", "vm5", "vm6"];
    std::thread::scope(|s| {
        for t in taps {
            let (o, c) = (&o, &c);
            s.spawn(move || {
                o.ifup(t, c).ok();
            });
        }
    });
    assert_eq!(o.ports(), taps);
    for t in taps {
        assert!(o.get("Interface", t, "ofport").parse::<i64>().unwrap() > 0);
    }
    // the same tap twice: a QEMU-made one, as QEMU hands it over
    o.ns.ip("tuntap add q1 mode tap");
    let runs: Vec<Run> = std::thread::scope(|s| {
        let h: Vec<_> = (0..2)
            .map(|_| {
                let (o, c) = (&o, &c);
                s.spawn(move || o.ifup("q1", c))
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(runs.iter().any(|r| r.code == Some(0)), "{runs:?}");
    for r in runs.iter().filter(|r| r.code != Some(0)) {
        assert!(
            r.stderr.contains("changed while kvmnet was adding it"),
            "{r:?}"
        );
    }
    // whichever failed, a run now completes and there is one port
    o.ifup("q1", &c).ok();
    assert_eq!(
        o.ports().iter().filter(|p| *p == "q1").count(),
        1,
        "{:?}",
        o.ports()
    );
    assert!(o.get("Interface", "q1", "ofport").parse::<i64>().unwrap() > 0);
    let link = o.ns.link("q1").unwrap();
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
}

/// ovsdb-server hung, ovsdb-server gone, ovs-vswitchd hung: a one-line
/// error within the bound, and no tap, no port left.
#[test]
fn ovs_down_or_hung_is_a_clear_error_within_the_bound_and_leaves_nothing() {
    use nix::sys::signal::Signal;
    let o = Ovs::new();
    let c = o.config("ovs_timeout = 1\n");

    o.signal("ovs-vswitchd", Signal::SIGSTOP);
    let t = Instant::now();
    o.ifup("vm1", &c)
        .fails_with("ovs-vswitchd did not take tap vm1");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!o.ns.exists("vm1"));
    o.signal("ovs-vswitchd", Signal::SIGCONT);
    assert!(o.ports().is_empty(), "{:?}", o.ports());

    o.signal("ovsdb-server", Signal::SIGSTOP);
    let t = Instant::now();
    o.ifup("vm1", &c).fails_with("did not answer within 1 s");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!o.ns.exists("vm1"));
    o.signal("ovsdb-server", Signal::SIGCONT);
    assert!(o.ports().is_empty(), "{:?}", o.ports());

    o.signal("ovsdb-server", Signal::SIGKILL);
    o.ifup("vm1", &c).fails_with("cannot reach ovsdb-server");
    assert!(!o.ns.exists("vm1"));
}

/// A tap that vanished without its downscript (QEMU killed) leaves its
/// port in the database; the next OVS attach collects it.
#[test]
fn the_port_of_a_vanished_tap_is_collected_by_the_next_attach() {
    let o = Ovs::new();
    let c = o.config("");
    o.ifup("vm1", &c).ok();
    o.ns.ip("link del vm1");
    // ovs-vswitchd marks the interface as lost: ifindex 0 (userspace
    // datapath) or ofport -1 (kernel datapath)
    let deadline = Instant::now() + Duration::from_secs(10);
    while o.get("Interface", "vm1", "ifindex") != "0" && o.get("Interface", "vm1", "ofport") != "-1"
    {
        assert!(
            Instant::now() < deadline,
            "OVS never noticed vm1 was gone: {}",
            o.vsctl(&["list", "Interface", "vm1"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = o.ifup("vm2", &c);
    r.ok();
    assert!(r.stderr.contains("vanished taps: vm1"), "{r:?}");
    assert_eq!(o.ports(), ["vm2"]);
    // the name comes back before anything collected its port: that port is
    // kvmnet's and is replaced in the attach's one transaction
    o.ifup("vm1", &c).ok();
    assert_eq!(o.ports(), ["vm1", "vm2"]);
    let before = o.get("Port", "vm1", "_uuid");
    o.ns.ip("link del vm1");
    o.ns.ip("tuntap add vm1 mode tap");
    o.ifup("vm1", &c).ok();
    assert_eq!(o.ports(), ["vm1", "vm2"]);
    assert_ne!(o.get("Port", "vm1", "_uuid"), before);
    assert!(o.get("Interface", "vm1", "ofport").parse::<i64>().unwrap() > 0);
}

/// Killed at every step of an attach (the OVSDB transaction's write
/// included), the next ifup completes it and ifdown then leaves nothing.
#[test]
fn ifup_killed_at_every_step_is_completed_by_the_next_run() {
    use common::trace::Tracee;
    let o = Ovs::new();
    let c = o.config("guest_mac = [\"derived\"]\n");
    let mut k = 1;
    loop {
        let mut cmd = Command::new(common::IFUP);
        cmd.arg("vm1").env("KVMNET_CONFIG", &c);
        for v in ["SUDO_UID", "SUDO_GID", "SUDO_USER", "SUDO_COMMAND"] {
            cmd.env_remove(v);
        }
        let t = Tracee::new(cmd, common::IFUP).netns(&o.ns).kill_at(k);
        if !t.reached() {
            assert_eq!(t.code(), Some(0), "the whole run: {}", t.stderr);
            break;
        }
        assert!(t.killed(), "step {k}: {:?} {}", t.end, t.stderr);
        let left = o.ports();
        o.ifup("vm1", &c).ok();
        assert_eq!(o.ports(), ["vm1"], "killed at step {k}, OVS had {left:?}");
        assert!(
            o.get("Interface", "vm1", "ofport").parse::<i64>().unwrap() > 0,
            "step {k}"
        );
        let link = o.ns.link("vm1").unwrap();
        assert!(
            link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "step {k}"
        );
        assert!(
            !link["ifalias"].as_str().unwrap().contains("pending"),
            "step {k}"
        );
        o.ifdown("vm1", &c).ok();
        assert!(o.ports().is_empty() && !o.ns.exists("vm1"), "step {k}");
        k += 1;
    }
    eprintln!("killed at each of {} steps", k - 1);
    assert!(k > 6, "only {} steps to kill at", k - 1);
}

/// Through the sudo rule a user's tap is theirs on OVS too: the ACL names
/// the bridges they may use, the port carries their uid, and
/// max_ports_per_user counts their ports on the bridge.
#[test]
fn a_sudo_user_is_held_to_the_acl_and_the_port_limit() {
    let o = Ovs::new();
    o.vsctl(&[
        "add-br",
        "sw1",
        "--",
        "set",
        "bridge",
        "sw1",
        "datapath_type=netdev",
    ]);
    let config = |bridge: &str| {
        format!(
            "mode = \"ovs\"\nbridge = \"{bridge}\"\novs_db = \"{}\"\nmax_ports_per_user = 1\n\
             [[allow]]\nusers = [\"kvmtest\"]\nbridges = [\"sw0\"]\n",
            o.socket().display()
        )
    };
    let users = "printf 'passwd: files\\ngroup: files\\n' > /etc/nsswitch.conf\n\
                 echo 'kvmtest:x:4242:4242::/nonexistent:/usr/sbin/nologin' >> /etc/passwd\n\
                 echo 'kvmtest:x:4242:' >> /etc/group\n";
    let run = |bridge: &str, tap: &str| {
        let mut jail = Jail::new(0, 0, &[]).config(&config(bridge));
        jail.setup = users.into();
        jail.run(
            &o.ns,
            &[
                "/usr/bin/env",
                "SUDO_UID=4242",
                "SUDO_GID=4242",
                "SUDO_USER=kvmtest",
                common::IFUP,
                tap,
            ],
        )
    };
    run("sw1", "vm1").fails_with("may not attach vm1 to bridge sw1");
    assert!(!o.ns.exists("vm1"));
    run("sw0", "vm1").ok();
    assert!(o
        .get("Port", "vm1", "external_ids")
        .contains("kvmnet-owner=\"4242\""));
    assert_eq!(
        o.ns.link("vm1").unwrap()["linkinfo"]["info_data"]["user"],
        4242
    );
    run("sw0", "vm2").fails_with("already owns 1 port of bridge sw0");
    assert!(!o.ns.exists("vm2"));
    assert_eq!(o.ports(), ["vm1"]);
}

/// OVN: kvmnet's iface-id makes ovn-controller bind the logical ports to
/// this chassis (`ovn-installed`, the port up in the northbound database);
/// frames flow between the two guests of one logical switch and not to a
/// guest of another; ifdown unbinds.
#[test]
fn ovn_binds_the_logical_ports_kvmnet_names_and_frames_flow() {
    let o = Ovs::new();
    o.ovn();
    for (ls, lsp, mac) in [
        ("ls0", "lsp-vm1", "52:54:00:00:00:01 10.0.0.1"),
        ("ls0", "lsp-vm2", "52:54:00:00:00:02 10.0.0.2"),
        ("ls1", "lsp-vm3", "52:54:00:00:00:03 10.0.1.3"),
    ] {
        if !o.nbctl(&["ls-list"]).contains(ls) {
            o.nbctl(&["ls-add", ls]);
        }
        o.nbctl(&["lsp-add", ls, lsp]);
        o.nbctl(&["lsp-set-addresses", lsp, mac]);
    }
    let c = o.config(
        "ovs_iface_id = \"lsp-{tap}\"\n\
         [[rule]]\nmatch = \"vm1\"\nguest_mac = [\"52:54:00:00:00:01\"]\n\
         [[rule]]\nmatch = \"vm2\"\nguest_mac = [\"52:54:00:00:00:02\"]\n\
         [[rule]]\nmatch = \"vm3\"\nguest_mac = [\"52:54:00:00:00:03\"]\n",
    );
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("bridge = \"sw0\"", "bridge = \"br-int\"");
    std::fs::write(&c, text).unwrap();
    for t in ["vm1", "vm2", "vm3"] {
        o.ifup(t, &c).ok();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (t, lsp) in [("vm1", "lsp-vm1"), ("vm2", "lsp-vm2"), ("vm3", "lsp-vm3")] {
        loop {
            let ids = o.get("Interface", t, "external_ids");
            if ids.contains("ovn-installed=\"true\"") && o.nbctl(&["lsp-get-up", lsp]) == "up" {
                break;
            }
            assert!(Instant::now() < deadline, "{lsp} never bound: {ids}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut t1 = open_tap(&o.ns, "vm1");
    let mut t2 = open_tap(&o.ns, "vm2");
    let mut t3 = open_tap(&o.ns, "vm3");
    std::thread::sleep(Duration::from_millis(500));
    use std::io::Write;
    let src = [0x52, 0x54, 0, 0, 0, 1];
    let mut crossed = false;
    for i in 0..10 {
        let marker = format!("kvmnet-ovn-{i}");
        t1.write_all(&broadcast_frame(src, marker.as_bytes()))
            .unwrap();
        if seen(
            &read_frames(&mut t2, Duration::from_millis(400)),
            marker.as_bytes(),
        ) {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no frame from lsp-vm1 reached lsp-vm2");
    assert!(
        !seen(
            &read_frames(&mut t3, Duration::from_millis(300)),
            b"kvmnet-ovn-"
        ),
        "a frame crossed to another logical switch"
    );
    drop((t1, t2, t3));
    o.ifdown("vm1", &c).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while o.nbctl(&["lsp-get-up", "lsp-vm1"]) != "down" {
        assert!(Instant::now() < deadline, "lsp-vm1 stayed up after ifdown");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!o.vsctl(&["list-ports", "br-int"]).contains("vm1"));
}

/// ovs-vswitchd resets the traffic control of a port it adds (a tbf, as
/// rate_out would put there, is gone afterwards): the reason the guard and
/// the rates, which kvmnet keeps there, are refused in mode = "ovs" by the
/// config, before anything changes. Should OVS stop doing so, this test
/// says it is time to look again.
#[test]
fn the_guard_and_rates_are_refused_on_ovs_ports_whose_traffic_control_ovs_resets() {
    let o = Ovs::new();
    o.ns.ip("tuntap add own0 mode tap");
    ok(o.ns.cmd("tc").args([
        "qdisc", "add", "dev", "own0", "root", "tbf", "rate", "10mbit", "burst", "10kb", "latency",
        "50ms",
    ]));
    o.vsctl(&["add-port", "sw0", "own0"]);
    let qdisc = ok(o.ns.cmd("tc").args(["qdisc", "show", "dev", "own0"]));
    assert!(!qdisc.contains("tbf"), "OVS kept the tbf: {qdisc}");

    for keys in [
        "guard = true\nguest_mac = [\"derived\"]\n",
        "rate_in = \"10mbit\"\n",
        "rate_out = \"10mbit\"\n",
    ] {
        let c = o.config(keys);
        o.ifup("vm1", &c)
            .fails_with("ovs-vswitchd resets the traffic control of its ports");
        assert!(!o.ns.exists("vm1"));
    }
    assert_eq!(o.ports(), ["own0"]);
}

/// Every test of this file but OVN's (its daemons under TCG are too slow
/// to be worth it) and the sudo one, in the kernel most users run (Debian's
/// 6.1), on the kernel datapath (the openvswitch module; this host's kernel
/// has none), where a port's master is the datapath device.
#[test]
fn guest_kernel_lane() {
    let exe = std::env::current_exe().unwrap();
    let mut expected: Vec<String> = common::guest::tests_of(&exe, false);
    // The sudo test's jail mounts an overlay on /etc, which the guest's
    // 9p root does not take.
    expected.retain(|t| {
        t != "guest_kernel_lane" && !t.starts_with("ovn_") && !t.starts_with("a_sudo_user")
    });
    assert!(
        expected.len() >= 5,
        "the guest lane expects the OVS tests: {expected:?}"
    );
    common::guest::Lane {
        what: "Open vSwitch tests on the kernel datapath",
        modules: &["tun", "openvswitch"],
        tools: &[
            "ip",
            "tc",
            "ovsdb-tool",
            "ovsdb-server",
            "ovs-vswitchd",
            "ovs-vsctl",
        ],
        args: &[
            "--skip",
            "guest_kernel_lane",
            "--skip",
            "ovn_",
            "--skip",
            "a_sudo_user",
        ],
        expected: &expected,
    }
    .run();
}
