//! End to end with a real QEMU: `-netdev tap,script=kvmnet-ifup,downscript=kvmnet-ifdown`
//! in a private network namespace with a bridge and dnsmasq as DHCP server. The
//! guest is QEMU's own iPXE firmware (no OS): it asks for a DHCP lease, which can
//! only arrive if kvmnet-ifup really put the tap on the bridge.
//!
//! QEMU's privilege drop: QEMU runs `script=` with its starting credentials
//! but `downscript=` after `-runas`, so kvmnet-ifdown then runs as a user
//! without privilege who may not own the tap. The `runas_*` tests start QEMU
//! as root with `-runas 4242:4242` (numeric uid:gid, which QEMU 7.2 accepts
//! without a passwd entry: no user is added anywhere) and check both kinds of
//! tap: QEMU's own non-persistent one, and a persistent one made beforehand.
//!
//! Needs root, qemu-system-x86_64 with the iPXE ROMs, dnsmasq and setcap.
//! Missing any of them is a failure, never a skip. No KVM needed (TCG).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use common::qemu::{
    self, bridge_ns, find_program, proc_status, read, Proc, BRIDGE, BRIDGE_MAC, MTU, QEMU_ARGS,
    ROM_HINT, VETH,
};
use common::{
    lines_with, privileged_copy, tun_sysfs, Grant, Jail, LinkState, Netns, RootOnlyDir, TempDir,
    IFDOWN, IFUP,
};

const LEASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    qemu::poll_every(Duration::from_millis(50), limit, f)
}

/// A namespace with bridge br0 (fixed MAC, MTU 9000, 10.77.0.1/24, one veth
/// port) and, with [`Lab::new`], dnsmasq serving DHCP on br0 only.
///
/// Field order is drop order: processes die first (killed and reaped, so
/// that a failing test leaves nothing running even before the namespace is
/// deleted), then the files go, then the namespace.
struct Lab {
    dnsmasq: Option<Proc>,
    qemu: Option<Proc>,
    dir: TempDir,
    ns: Netns,
    qemu_bin: PathBuf,
    veth: &'static str,
}

/// How QEMU is started: its tap, scripts and credentials.
struct QemuNet<'a> {
    tap: &'a str,
    mac: &'a str,
    /// Passed as KVMNET_CONFIG, which kvmnet honours only from real root, so
    /// only `script=` (run before QEMU drops privileges) reads it.
    config: &'a Path,
    script: &'a Path,
    downscript: &'a Path,
    /// `-runas` (QEMU 7.2 spelling: a user name, or numeric `uid:gid`).
    runas: Option<&'a str>,
}

impl<'a> QemuNet<'a> {
    /// The plain test binaries as script=/downscript=, QEMU stays root.
    fn new(tap: &'a str, mac: &'a str, config: &'a Path) -> QemuNet<'a> {
        QemuNet {
            tap,
            mac,
            config,
            script: Path::new(IFUP),
            downscript: Path::new(IFDOWN),
            runas: None,
        }
    }
}

/// QEMU's arguments: [`QEMU_ARGS`], then `net`'s tap, scripts and NIC.
fn qemu_args(net: &QemuNet) -> Vec<String> {
    let netdev = format!(
        "tap,id=n0,ifname={},script={},downscript={}",
        net.tap,
        net.script.display(),
        net.downscript.display()
    );
    let device = format!("virtio-net-pci,netdev=n0,mac={}", net.mac);
    let mut args: Vec<String> = QEMU_ARGS.iter().map(|a| a.to_string()).collect();
    args.extend(["-netdev".into(), netdev, "-device".into(), device]);
    args
}

impl Lab {
    /// Bridge and dnsmasq.
    fn new() -> Lab {
        Lab::setup(true)
    }

    /// Bridge only, for tests that need no guest traffic.
    fn without_dhcp() -> Lab {
        Lab::setup(false)
    }

    fn setup(dhcp: bool) -> Lab {
        common::require_root();
        let qemu_bin = find_program("qemu-system-x86_64");
        let dnsmasq = dhcp.then(|| find_program("dnsmasq"));
        let ns = bridge_ns();
        let dir = TempDir::new();
        let dnsmasq = dnsmasq.map(|d| qemu::start_dnsmasq(&ns, &d, dir.path()));
        Lab {
            dnsmasq,
            qemu: None,
            dir,
            ns,
            qemu_bin,
            veth: VETH,
        }
    }

    /// A file in the test's directory ("" while it does not exist yet).
    fn file(&self, name: &str) -> String {
        read(&self.dir.path().join(name))
    }

    fn qemu_child(&mut self) -> &mut Child {
        &mut self.qemu.as_mut().expect("QEMU started").0
    }

    /// Starts QEMU in the namespace as root, with `net`'s tap and scripts.
    /// Its stderr goes to `qemu.err`.
    fn start_qemu(&mut self, net: &QemuNet) -> Instant {
        let mut cmd = self.ns.cmd(self.qemu_bin.to_str().unwrap());
        cmd.args(qemu_args(net))
            // QEMU hands its environment to script=; SUDO_UID would make kvmnet
            // ignore KVMNET_CONFIG (it trusts the environment only from real root).
            .env("KVMNET_CONFIG", net.config)
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID");
        if let Some(runas) = net.runas {
            cmd.args(["-runas", runas]);
        }
        let (child, start) = qemu::spawn_qemu(&mut cmd, self.dir.path());
        self.qemu = Some(Proc(child));
        start
    }

    /// Starts QEMU as root in `jail` (its own /etc: kvmnet reads the jail's
    /// kvmnet.toml and user database) with only `env` in its environment.
    fn start_qemu_in(&mut self, jail: &Jail, env: &[String], net: &QemuNet) -> Instant {
        // env(1) in the chain, since the jail's own variables cannot hold spaces
        let mut argv = vec!["/usr/bin/env".to_owned()];
        argv.extend(env.iter().cloned());
        argv.push(self.qemu_bin.display().to_string());
        argv.extend(qemu_args(net));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (child, start) = qemu::spawn_qemu(&mut jail.command(&self.ns, &argv), self.dir.path());
        self.qemu = Some(Proc(child));
        start
    }

    fn qemu_stderr(&self) -> String {
        self.file("qemu.err")
    }

    /// Waits (bounded) for QEMU to exit.
    fn wait_qemu(&mut self, limit: Duration) -> Option<ExitStatus> {
        qemu::wait_exit(self.qemu_child(), limit)
    }

    /// QEMU's pid, once `ip netns exec` has exec'd it in place (10 s at most).
    fn qemu_pid(&mut self) -> u32 {
        qemu::qemu_pid(&self.qemu.as_ref().unwrap().0, || self.qemu_stderr())
    }

    /// Waits (30 s at most) until QEMU has dropped privileges to `uid`:`gid`
    /// (which it does after setting up its netdevs, so script= has run), and
    /// returns its /proc/PID/status at that moment.
    fn wait_for_runas(&mut self, uid: u32, gid: u32) -> HashMap<String, String> {
        let pid = self.qemu_pid();
        let want_uid = vec![uid.to_string(); 4].join(" ");
        let want_gid = vec![gid.to_string(); 4].join(" ");
        let status = poll(Duration::from_secs(30), || {
            if let Some(st) = self.qemu_child().try_wait().unwrap() {
                panic!(
                    "QEMU exited before dropping privileges ({st}); stderr:\n{}\n{ROM_HINT}",
                    self.qemu_stderr()
                );
            }
            let s = proc_status(pid);
            (s.get("Uid") == Some(&want_uid) && s.get("Gid") == Some(&want_gid)).then_some(s)
        });
        status.unwrap_or_else(|| {
            panic!(
                "QEMU did not switch to {uid}:{gid} within 30 s: {:?}\nstderr:\n{}",
                proc_status(pid),
                self.qemu_stderr()
            )
        })
    }

    /// Waits until dnsmasq acknowledged a lease for the guest `mac` (on
    /// `tap`), which proves the tap forwards on br0; returns the IP.
    fn wait_for_lease(&mut self, tap: &str, mac: &str) -> String {
        let ns = &self.ns;
        qemu::wait_for_lease(
            &mut self.qemu.as_mut().unwrap().0,
            self.dir.path(),
            mac,
            LEASE_TIMEOUT,
            &format!("\n{ROM_HINT}"),
            || {
                format!(
                    "br0 ports: {:?}\ntap: {:?}\n",
                    ns.ports(BRIDGE),
                    ns.link(tap)
                )
            },
        )
    }

    /// SIGTERM makes QEMU exit cleanly, which runs downscript=.
    fn stop_qemu(&mut self) -> ExitStatus {
        let pid = self.qemu_pid();
        qemu::sigterm(pid);
        self.wait_qemu(Duration::from_secs(30)).unwrap_or_else(|| {
            panic!(
                "QEMU still running 30 s after SIGTERM: {}",
                self.qemu_stderr()
            )
        })
    }

    /// The pids of all processes in the namespace.
    fn pids(&self) -> Vec<u32> {
        let out = common::ok(Command::new("ip").args(["netns", "pids", &self.ns.name]));
        let mut v: Vec<u32> = out.split_whitespace().map(|p| p.parse().unwrap()).collect();
        v.sort();
        v
    }

    /// What may still run in the namespace after QEMU is gone.
    fn expected_pids(&self) -> Vec<u32> {
        self.dnsmasq.iter().map(|p| p.0.id()).collect()
    }
}

fn link_field(l: &serde_json::Value, key: &str) -> String {
    match &l[key] {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

#[test]
fn qemu_guest_gets_dhcp_through_kvmnet_and_exit_cleans_up() {
    let mut lab = Lab::new();
    let tap = "vmq0";
    let mac = "52:54:00:4b:4e:01";
    let config = lab.dir.config(&format!("bridge = \"{BRIDGE}\"\n"));
    let links_before = lab.ns.all_links();
    let br_before = lab.ns.link(BRIDGE).unwrap();
    assert_eq!(link_field(&br_before, "address"), BRIDGE_MAC);
    assert_eq!(lab.ns.ports(BRIDGE), vec![lab.veth.to_owned()]);

    let start = lab.start_qemu(&QemuNet::new(tap, mac, &config));
    let ip = lab.wait_for_lease(tap, mac);
    let lease_time = start.elapsed();

    // While QEMU runs: the tap is a port of br0, looks like a bridge port
    // should, and br0 kept its identity.
    let mut ports = lab.ns.ports(BRIDGE);
    ports.sort();
    let mut want = vec![tap.to_owned(), lab.veth.to_owned()];
    want.sort();
    assert_eq!(ports, want, "br0 ports while QEMU runs");
    let t = lab.ns.link(tap).expect("tap exists while QEMU runs");
    let br = lab.ns.link(BRIDGE).unwrap();
    assert_eq!(
        t["mtu"], br["mtu"],
        "tap MTU must equal br0's: tap {t}\nbr0 {br}"
    );
    assert_eq!(t["mtu"].as_u64(), Some(MTU));
    let tap_mac = link_field(&t, "address");
    assert!(
        tap_mac.starts_with("fe:"),
        "tap MAC {tap_mac} must start with fe:"
    );
    assert_eq!(link_field(&br, "address"), BRIDGE_MAC, "br0's MAC changed");
    assert!(
        t["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "tap is not up: {t}"
    );
    let stderr = lab.qemu_stderr();
    assert!(
        !stderr.contains("failed"),
        "QEMU reported a failure: {stderr}"
    );

    eprintln!(
        "qemu e2e: guest {mac} got lease {ip} {:.1} s after QEMU start (tap {tap} mtu {} mac {tap_mac})",
        lease_time.as_secs_f64(),
        t["mtu"]
    );

    // Clean exit: downscript= runs, then QEMU closes the (non-persistent) tap.
    let stop = Instant::now();
    let status = lab.stop_qemu();
    let stop_time = stop.elapsed();
    let stderr = lab.qemu_stderr();
    assert!(
        status.success(),
        "QEMU exit after SIGTERM: {status}; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("failed"), "downscript failed: {stderr}");
    let gone = poll(Duration::from_secs(5), || {
        (!lab.ns.exists(tap)).then_some(())
    });
    assert!(
        gone.is_some(),
        "tap {tap} still exists after QEMU exit: {:?}",
        lab.ns.link(tap)
    );
    assert_eq!(
        lab.ns.ports(BRIDGE),
        vec![lab.veth.to_owned()],
        "br0 ports after QEMU exit"
    );
    assert_eq!(lab.ns.all_links(), links_before, "links after QEMU exit");
    assert_eq!(
        link_field(&lab.ns.link(BRIDGE).unwrap(), "address"),
        BRIDGE_MAC
    );
    assert_eq!(
        lab.pids(),
        lab.expected_pids(),
        "only dnsmasq may be left running"
    );
    eprintln!(
        "qemu e2e: QEMU exited {:.2} s after SIGTERM; br0 ports left: {:?}",
        stop_time.as_secs_f64(),
        lab.ns.ports(BRIDGE)
    );
}

/// The guest guard on: iPXE's DHCP (DISCOVER and REQUEST from 0.0.0.0)
/// still gets its lease through it; the guard's filters are on the tap
/// while QEMU runs and go with the downscript.
#[test]
fn qemu_guest_gets_dhcp_with_the_guard_on_and_exit_removes_the_guard() {
    let mut lab = Lab::new();
    let tap = "vmg0";
    let mac = "52:54:00:4b:4e:02";
    let config = lab.dir.config(&format!(
        "bridge = \"{BRIDGE}\"\nguard = true\nguest_mac = [\"{mac}\"]\n\
         guest_ipv4 = [\"10.77.0.0/24\"]\nguest_ipv6 = []\n"
    ));
    let start = lab.start_qemu(&QemuNet::new(tap, mac, &config));
    let ip = lab.wait_for_lease(tap, mac);
    eprintln!(
        "qemu guard: guest {mac} got lease {ip} {:.1} s after QEMU start",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(lab.ns.checks(tap), "on");
    let status = lab.stop_qemu();
    assert!(status.success(), "{}", lab.qemu_stderr());
    // ifdown deleted the tap, and its checks with it
    assert!(!lab.ns.exists(tap));
    assert_eq!(lab.ns.checks(tap), "", "the guard outlived the VM");
}

#[test]
fn qemu_refuses_to_start_when_the_configured_bridge_is_missing() {
    let mut lab = Lab::new();
    let tap = "vmq1";
    let mac = "52:54:00:4b:4e:02";
    let config = lab.dir.config("bridge = \"nobr\"\ncreate_bridge = false\n");
    let links_before = lab.ns.all_links();
    let br_before = lab.ns.state(BRIDGE);

    let start = lab.start_qemu(&QemuNet::new(tap, mac, &config));
    let status = lab
        .wait_qemu(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("QEMU still running after 30 s: {}", lab.qemu_stderr()));
    let took = start.elapsed();
    let stderr = lab.qemu_stderr();
    assert!(
        !status.success(),
        "QEMU must fail to start: {status}; stderr:\n{stderr}"
    );
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("kvmnet-ifup:"))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "expected one kvmnet-ifup line in QEMU's stderr:\n{stderr}"
    );
    assert!(
        ours[0].contains("bridge nobr does not exist"),
        "kvmnet-ifup line: {:?}",
        ours[0]
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("kvmnet-ifdown:")),
        "downscript must not run: {stderr}"
    );

    assert_eq!(
        lab.ns.all_links(),
        links_before,
        "links after the failed start"
    );
    assert!(!lab.ns.exists(tap) && !lab.ns.exists("nobr"));
    assert_eq!(lab.ns.state(BRIDGE), br_before, "br0 changed");
    assert_eq!(lab.ns.ports(BRIDGE), vec![lab.veth.to_owned()]);
    assert_eq!(
        lab.pids(),
        lab.expected_pids(),
        "only dnsmasq may be left running"
    );
    eprintln!(
        "qemu e2e: with a missing bridge QEMU failed ({status}) after {:.2} s: {}",
        took.as_secs_f64(),
        ours[0]
    );
}

/// QEMU's `-runas` target in the tests below: numeric, with no passwd entry
/// (QEMU 7.2 accepts `uid:gid` when no user has that name).
const RUNAS_UID: u32 = 4242;
const RUNAS_GID: u32 = 4242;
const RUNAS: &str = "4242:4242";
/// A tap owner that is not the `-runas` user.
const OTHER_UID: u32 = 1000;
/// <linux/if_tun.h>
const IFF_TAP: u32 = libc::IFF_TAP as u32;
const IFF_PERSIST: u32 = libc::IFF_PERSIST as u32;

/// QEMU after `-runas 4242:4242`: that uid and gid, no supplementary group
/// but 4242, and no capability left.
///
/// QEMU 7.2's -runas is setgid + setgroups + setuid and nothing more: it sets
/// no_new_privs (and installs seccomp) only with `-sandbox on`. That is why a
/// `setcap cap_net_admin+ep` downscript gets CAP_NET_ADMIN at exec although
/// QEMU itself has no capability; with no_new_privs set the file capability
/// would be ignored and ifdown would fail like a plain copy ("no privilege").
/// Asserted here so that a QEMU that changes this fails with this reason.
fn assert_dropped(status: &HashMap<String, String>) {
    let get = |k: &str| status.get(k).map(String::as_str).unwrap_or("?");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(get(cap), "0000000000000000", "QEMU's {cap}: {status:?}");
    }
    assert_eq!(get("Groups"), RUNAS_GID.to_string(), "{status:?}");
    assert_eq!(
        get("NoNewPrivs"),
        "0",
        "no_new_privs after -runas: {status:?}"
    );
    assert_eq!(get("Seccomp"), "0", "seccomp after -runas: {status:?}");
}

/// The tun part of a link: (persistent, owner uid).
fn tun_info(ns: &Netns, tap: &str) -> (bool, Option<u32>) {
    let (flags, owner) = tun_sysfs(ns, tap);
    assert_eq!(flags & IFF_TAP, IFF_TAP, "{tap} is not a tap: {flags:#x}");
    (flags & IFF_PERSIST != 0, owner)
}

/// What kvmnet-ifup must have done to a tap that existed before it ran.
#[track_caller]
fn assert_attached_by_kvmnet(ns: &Netns, tap: &str, before: &LinkState, during: &LinkState) {
    assert_eq!(during.master.as_deref(), Some(BRIDGE), "{tap}: {during:?}");
    assert!(during.up, "{tap} not up: {during:?}");
    assert_eq!(during.mtu, MTU, "{tap}: {during:?}");
    assert!(during.mac.starts_with("fe:"), "{tap}: {during:?}");
    let record = during.alias.as_deref().unwrap_or("");
    assert!(
        record.starts_with("kvmnet:v1 ") && !record.contains("created"),
        "{tap}: expected kvmnet's record of an existing tap, got {record:?}"
    );
    if let Some(old) = &before.alias {
        assert!(record.ends_with(&format!(" alias={old}")), "{record:?}");
    }
    let mut ports = ns.ports(BRIDGE);
    ports.sort();
    assert!(ports.contains(&tap.to_owned()), "br0 ports: {ports:?}");
}

/// A persistent tap as an admin would make it for QEMU: owned by `owner`,
/// MTU 1400 (so that restoring it is visible) and an alias of its own.
fn persistent_tap(ns: &Netns, tap: &str, owner: u32) -> LinkState {
    ns.ip(&format!("tuntap add {tap} mode tap user {owner}"));
    ns.ip(&format!("link set {tap} mtu 1400 alias customer-42"));
    assert_eq!(tun_info(ns, tap), (true, Some(owner)));
    let s = ns.state(tap).unwrap();
    assert_eq!(
        (s.mtu, s.up, s.master.as_deref(), s.alias.as_deref()),
        (1400, false, None, Some("customer-42"))
    );
    s
}

/// QEMU as root with `-runas 4242:4242` on the persistent `tap` (`before`:
/// its state), br0 as the bridge and a copy of kvmnet-ifdown with
/// `cap_net_admin+ep` as downscript. Waits until QEMU has dropped
/// privileges, checks the drop and that ifup attached the tap. Returns QEMU's
/// start, how long the drop took, the tap while QEMU runs and the downscript.
fn runas_on_persistent_tap(
    lab: &mut Lab,
    tap: &str,
    mac: &str,
    before: &LinkState,
) -> (Instant, Duration, LinkState, PathBuf) {
    let config = lab.dir.config(&format!("bridge = \"{BRIDGE}\"\n"));
    let ifdown = privileged_copy(lab.dir.path(), IFDOWN, Grant::FileCap);
    let start = lab.start_qemu(&QemuNet {
        runas: Some(RUNAS),
        downscript: &ifdown,
        ..QemuNet::new(tap, mac, &config)
    });
    let status = lab.wait_for_runas(RUNAS_UID, RUNAS_GID);
    let drop_time = start.elapsed();
    assert_dropped(&status);
    let during = lab.ns.state(tap).unwrap();
    assert_attached_by_kvmnet(&lab.ns, tap, before, &during);
    (start, drop_time, during, ifdown)
}

/// QEMU's own tap (created by QEMU as root, not persistent): the downscript
/// runs as 4242 without any capability, may not change it, and must succeed
/// without touching it; the kernel removes the tap and its bridge port when
/// QEMU closes it right after.
#[test]
fn runas_ifdown_leaves_qemus_own_tap_to_qemu_and_says_why() {
    // The point of the numeric spelling: QEMU needs no user database entry,
    // and this test adds none.
    let uid = nix::unistd::Uid::from_raw(RUNAS_UID);
    assert!(
        matches!(nix::unistd::User::from_uid(uid), Ok(None)),
        "uid {RUNAS_UID} must have no passwd entry for this test"
    );
    let mut lab = Lab::new();
    let tap = "vmr0";
    let mac = "52:54:00:4b:4e:03";
    let config = lab.dir.config(&format!("bridge = \"{BRIDGE}\"\n"));
    let links_before = lab.ns.all_links();

    let start = lab.start_qemu(&QemuNet {
        runas: Some(RUNAS),
        ..QemuNet::new(tap, mac, &config)
    });
    let status = lab.wait_for_runas(RUNAS_UID, RUNAS_GID);
    let drop_time = start.elapsed();
    assert_dropped(&status);

    // script= ran as root, before the drop: the tap is on br0.
    assert_eq!(tun_info(&lab.ns, tap), (false, None), "QEMU's own tap");
    let mut ports = lab.ns.ports(BRIDGE);
    ports.sort();
    let mut want = vec![tap.to_owned(), lab.veth.to_owned()];
    want.sort();
    assert_eq!(ports, want, "br0 ports while QEMU runs");
    let during = lab.ns.state(tap).unwrap();
    assert!(during.up && during.mtu == MTU, "{during:?}");
    let record = during.alias.clone().unwrap_or_default();
    assert!(record.starts_with("kvmnet:v1 "), "record: {record:?}");
    // ... and the guest, running as 4242, gets its lease through it.
    let ip = lab.wait_for_lease(tap, mac);
    let lease_time = start.elapsed();

    let stop = Instant::now();
    let exit = lab.stop_qemu();
    let stop_time = stop.elapsed();
    let stderr = lab.qemu_stderr();
    assert!(exit.success(), "QEMU exit after SIGTERM: {exit}\n{stderr}");
    assert!(
        !stderr.contains("failed with status"),
        "downscript failed:\n{stderr}"
    );
    // No /dev/log here, so the success line is on stderr (QEMU's).
    let ifdown = lines_with(&stderr, "kvmnet-ifdown:");
    assert_eq!(ifdown.len(), 1, "one kvmnet-ifdown line:\n{stderr}");
    for want in [
        format!("tap={tap} "),
        format!("user={RUNAS_UID} "),
        "result=untouched".to_owned(),
        "not persistent".to_owned(),
    ] {
        assert!(ifdown[0].contains(&want), "{want:?} in {:?}", ifdown[0]);
    }

    let gone = poll(Duration::from_secs(5), || {
        (!lab.ns.exists(tap)).then_some(())
    });
    assert!(
        gone.is_some(),
        "tap {tap} still exists after QEMU exit: {:?}",
        lab.ns.link(tap)
    );
    assert_eq!(lab.ns.ports(BRIDGE), vec![lab.veth.to_owned()]);
    assert_eq!(lab.ns.all_links(), links_before, "links after QEMU exit");
    assert_eq!(lab.pids(), lab.expected_pids(), "left running");
    eprintln!(
        "qemu -runas: dropped to {RUNAS} {:.2} s after start, lease {ip} after {:.1} s, \
         exit {:.2} s after SIGTERM: {}",
        drop_time.as_secs_f64(),
        lease_time.as_secs_f64(),
        stop_time.as_secs_f64(),
        ifdown[0]
    );
}

/// A persistent tap owned by the `-runas` user, downscript a copy of
/// kvmnet-ifdown with `cap_net_admin+ep`: ifdown as 4242 owns the tap and has
/// the capability, so it undoes ifup's changes; the tap stays (kvmnet did not
/// create it), as it was before.
#[test]
fn runas_ifdown_with_the_capability_restores_its_users_persistent_tap() {
    let mut lab = Lab::without_dhcp();
    let tap = "vmr1";
    let before = persistent_tap(&lab.ns, tap, RUNAS_UID);
    let links_before = lab.ns.all_links();
    let (start, drop_time, _, _) =
        runas_on_persistent_tap(&mut lab, tap, "52:54:00:4b:4e:04", &before);

    let exit = lab.stop_qemu();
    let stderr = lab.qemu_stderr();
    assert!(exit.success(), "QEMU exit after SIGTERM: {exit}\n{stderr}");
    assert!(!stderr.contains("failed"), "downscript failed:\n{stderr}");
    let lines = lines_with(&stderr, "kvmnet-ifdown:");
    assert_eq!(lines.len(), 1, "one kvmnet-ifdown line:\n{stderr}");
    assert!(
        lines[0].contains(&format!(
            "tap={tap} user={RUNAS_UID} result=detached and restored"
        )),
        "{:?}",
        lines[0]
    );

    assert_eq!(
        lab.ns.state(tap).as_ref(),
        Some(&before),
        "tap after QEMU exit"
    );
    assert_eq!(
        tun_info(&lab.ns, tap),
        (true, Some(RUNAS_UID)),
        "still persistent and 4242's"
    );
    assert_eq!(lab.ns.ports(BRIDGE), vec![lab.veth.to_owned()]);
    assert_eq!(lab.ns.all_links(), links_before, "links after QEMU exit");
    assert_eq!(lab.pids(), lab.expected_pids(), "left running");
    eprintln!(
        "qemu -runas, persistent tap of {RUNAS_UID}: dropped after {:.2} s, total {:.2} s: {}",
        drop_time.as_secs_f64(),
        start.elapsed().as_secs_f64(),
        lines[0]
    );
}

/// The same, but the persistent tap belongs to uid 1000: root's ifup attaches
/// it, but ifdown as 4242 (even with CAP_NET_ADMIN) may not change another
/// user's tap. It refuses, QEMU reports the downscript as failed, and the tap
/// stays exactly as ifup left it, still on br0.
#[test]
fn runas_ifdown_refuses_another_users_persistent_tap() {
    let mut lab = Lab::without_dhcp();
    let tap = "vmr2";
    let before = persistent_tap(&lab.ns, tap, OTHER_UID);
    let (start, _, during, ifdown) =
        runas_on_persistent_tap(&mut lab, tap, "52:54:00:4b:4e:05", &before);

    let exit = lab.stop_qemu();
    let stderr = lab.qemu_stderr();
    // The downscript's status is only reported: QEMU still exits 0.
    assert!(exit.success(), "QEMU exit after SIGTERM: {exit}\n{stderr}");
    let lines = lines_with(&stderr, "kvmnet-ifdown:");
    assert_eq!(lines.len(), 1, "one kvmnet-ifdown line:\n{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "kvmnet-ifdown: tap {tap} belongs to uid {OTHER_UID}, not to user {RUNAS_UID}"
        )),
        "{:?}",
        lines[0]
    );
    let failed = format!("network script {} failed with status 256", ifdown.display());
    assert_eq!(
        stderr.matches(&failed).count(),
        1,
        "QEMU must report {failed:?}:\n{stderr}"
    );

    assert_eq!(
        lab.ns.state(tap).as_ref(),
        Some(&during),
        "ifdown changed a tap it had refused"
    );
    assert_eq!(tun_info(&lab.ns, tap), (true, Some(OTHER_UID)));
    let mut ports = lab.ns.ports(BRIDGE);
    ports.sort();
    let mut want = vec![tap.to_owned(), lab.veth.to_owned()];
    want.sort();
    assert_eq!(ports, want, "the tap stays on br0");
    assert_eq!(lab.pids(), lab.expected_pids(), "left running");
    eprintln!(
        "qemu -runas, persistent tap of {OTHER_UID}: refused in {:.2} s: {}",
        start.elapsed().as_secs_f64(),
        lines[0]
    );
}

/// `sudo qemu-system-x86_64 …` as sudo leaves it for QEMU, and QEMU for its
/// script=: sudo's variables for user 1000, SUDO_COMMAND as given.
fn sudo_env(sudo_command: String) -> Vec<String> {
    vec![
        "SUDO_UID=1000".into(),
        "SUDO_GID=1000".into(),
        "SUDO_USER=someone".into(),
        format!("SUDO_COMMAND={sudo_command}"),
    ]
}

/// Root in a jail whose /etc holds `config` and a user 1000 ("someone").
fn sudo_jail(config: &str) -> Jail {
    let mut jail = Jail::new(0, 0, &[]).config(config);
    jail.setup = "echo 'someone:x:1000:1000::/nonexistent:/usr/sbin/nologin' >> /etc/passwd\n\
                  echo 'someone:x:1000:' >> /etc/group\n"
        .into();
    jail
}

/// The how-to's way to start a VM, `sudo qemu-system-x86_64 … -netdev tap`:
/// QEMU runs as root and hands sudo's variables down to script=, which must
/// see root running it (not a sudo call of its own for user 1000, who could
/// not configure QEMU's ownerless tap) and attach the tap; downscript= then
/// takes it down as root too.
#[test]
fn sudo_started_qemu_gets_its_tap_attached_as_root() {
    let mut lab = Lab::without_dhcp();
    let tap = "vms0";
    let jail = sudo_jail(&format!("bridge = \"{BRIDGE}\"\n"));
    let net = QemuNet::new(tap, "52:54:00:4b:4e:06", Path::new("/nonexistent"));
    let sudo_command = format!("{} {}", lab.qemu_bin.display(), qemu_args(&net).join(" "));
    let links_before = lab.ns.all_links();

    let start = lab.start_qemu_in(&jail, &sudo_env(sudo_command), &net);
    let pid = lab.qemu_pid();
    qemu::wait_for_sigterm_handler(pid, Duration::from_secs(30), || lab.qemu_stderr());
    let up_time = start.elapsed();
    let stderr = lab.qemu_stderr();
    let ifup = lines_with(&stderr, "kvmnet-ifup:");
    assert_eq!(ifup.len(), 1, "one kvmnet-ifup line:\n{stderr}");
    for want in [
        format!("tap={tap} "),
        " user=0 ".to_owned(),
        "result=attached".to_owned(),
    ] {
        assert!(ifup[0].contains(&want), "{want:?} in {:?}", ifup[0]);
    }
    assert_eq!(tun_info(&lab.ns, tap), (false, None), "QEMU's own tap");
    let during = lab.ns.state(tap).unwrap();
    assert_eq!(during.master.as_deref(), Some(BRIDGE), "{during:?}");
    assert!(during.up && during.mtu == MTU, "{during:?}");

    let exit = lab.stop_qemu();
    let stderr = lab.qemu_stderr();
    assert!(exit.success(), "QEMU exit after SIGTERM: {exit}\n{stderr}");
    assert!(!stderr.contains("failed"), "a script failed:\n{stderr}");
    let ifdown = lines_with(&stderr, "kvmnet-ifdown:");
    assert_eq!(ifdown.len(), 1, "one kvmnet-ifdown line:\n{stderr}");
    assert!(
        ifdown[0].contains(&format!("tap={tap} user=0 ")),
        "{:?}",
        ifdown[0]
    );
    let gone = poll(Duration::from_secs(5), || {
        (!lab.ns.exists(tap)).then_some(())
    });
    assert!(gone.is_some(), "tap {tap} left: {:?}", lab.ns.link(tap));
    assert_eq!(lab.ns.all_links(), links_before, "links after QEMU exit");
    assert_eq!(lab.pids(), lab.expected_pids(), "left running");
    eprintln!(
        "sudo qemu: tap attached as root {:.2} s after start: {}",
        up_time.as_secs_f64(),
        ifup[0]
    );
}

/// The same variables, but SUDO_COMMAND naming kvmnet-ifup itself, as the
/// shipped sudo rule leaves them: kvmnet acts for user 1000 and applies
/// that user's ACL. The tap is a persistent one of 1000's, so that its
/// owner is not what decides: without an allow rule QEMU cannot start; with
/// one, the tap is attached and downscript= restores it.
#[test]
fn sudo_command_naming_kvmnet_itself_still_applies_the_sudo_users_acl() {
    let mut lab = Lab::without_dhcp();
    let tap = "vms1";
    let before = persistent_tap(&lab.ns, tap, OTHER_UID);
    // The binaries at root-only paths, wherever the checkout is: kvmnet
    // believes SUDO_COMMAND names another program only through such paths.
    let bins = RootOnlyDir::new();
    let (ifup, ifdown) = (bins.copy(IFUP), bins.copy(IFDOWN));
    let mut net = QemuNet::new(tap, "52:54:00:4b:4e:07", Path::new("/nonexistent"));
    net.script = &ifup;
    net.downscript = &ifdown;
    let env = sudo_env(format!("{} {tap}", ifup.display()));

    let jail = sudo_jail(&format!("bridge = \"{BRIDGE}\"\n"));
    lab.start_qemu_in(&jail, &env, &net);
    let exit = lab
        .wait_qemu(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("QEMU still running after 30 s: {}", lab.qemu_stderr()));
    let stderr = lab.qemu_stderr();
    assert!(!exit.success(), "QEMU must fail to start: {exit}\n{stderr}");
    // the jail's entry for 1000: the machine's, else sudo_jail's "someone"
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(OTHER_UID))
        .ok()
        .flatten()
        .map_or("someone".to_owned(), |u| u.name);
    assert_eq!(
        lines_with(&stderr, "kvmnet-ifup:"),
        [format!(
            "kvmnet-ifup: user {name} (uid {OTHER_UID}) may not attach {tap} to bridge {BRIDGE}: \
             no [[allow]] rule matches (deny by default); an admin can admit them with: printf \
             '[[allow]]\\nusers = [\"{name}\"]\\nbridges = [\"{BRIDGE}\"]\\n' | sudo tee -a \
             /etc/kvmnet/kvmnet.toml"
        )],
        "{stderr}"
    );
    assert_eq!(
        lab.ns.state(tap).as_ref(),
        Some(&before),
        "refused, yet changed"
    );

    let allow = format!(
        "bridge = \"{BRIDGE}\"\n[[allow]]\nusers = [\"{OTHER_UID}\"]\nbridges = [\"{BRIDGE}\"]\n"
    );
    // (the jail's directory must outlive QEMU)
    let jail = sudo_jail(&allow);
    lab.start_qemu_in(&jail, &env, &net);
    let pid = lab.qemu_pid();
    qemu::wait_for_sigterm_handler(pid, Duration::from_secs(30), || lab.qemu_stderr());
    let stderr = lab.qemu_stderr();
    let ifup = lines_with(&stderr, "kvmnet-ifup:");
    assert_eq!(ifup.len(), 1, "one kvmnet-ifup line:\n{stderr}");
    assert!(
        ifup[0].contains(&format!(" user={OTHER_UID} ")) && ifup[0].contains("acl=\"allow rule"),
        "{:?}",
        ifup[0]
    );
    let during = lab.ns.state(tap).unwrap();
    assert_attached_by_kvmnet(&lab.ns, tap, &before, &during);
    let exit = lab.stop_qemu();
    let stderr = lab.qemu_stderr();
    assert!(exit.success(), "QEMU exit after SIGTERM: {exit}\n{stderr}");
    // SUDO_COMMAND names kvmnet-ifup, a program at a root-only path that is
    // not kvmnet-ifdown: sudo did not run ifdown, so it runs as root.
    let ifdown = lines_with(&stderr, "kvmnet-ifdown:");
    assert_eq!(ifdown.len(), 1, "one kvmnet-ifdown line:\n{stderr}");
    assert!(
        ifdown[0].contains(&format!("tap={tap} user=0 result=detached and restored")),
        "{:?}",
        ifdown[0]
    );
    assert_eq!(
        lab.ns.state(tap).as_ref(),
        Some(&before),
        "tap after QEMU exit"
    );
}
