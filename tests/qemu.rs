//! End to end with a real QEMU: `-netdev tap,script=kvmnet-ifup,downscript=kvmnet-ifdown`
//! in a private network namespace with a bridge and dnsmasq as DHCP server. The
//! guest is QEMU's own iPXE firmware (no OS): it asks for a DHCP lease, which can
//! only arrive if kvmnet-ifup really put the tap on the bridge.
//!
//! Needs root, qemu-system-x86_64 with the iPXE ROMs, and dnsmasq. Missing any
//! of them is a failure, never a skip. No KVM needed (TCG).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Netns, TempDir, IFDOWN, IFUP};

const INSTALL_HINT: &str = "install them: apt-get install qemu-system-x86 ipxe-qemu dnsmasq-base \
                            (this test never skips)";
const BRIDGE: &str = "br0";
const BRIDGE_MAC: &str = "02:00:00:00:00:01";
/// Not 1500, so that "tap MTU = bridge MTU" proves kvmnet-ifup copied it.
const MTU: u64 = 9000;
const LEASE_TIMEOUT: Duration = Duration::from_secs(60);

/// The absolute path of a program, looked up in PATH and the sbin directories
/// (`dnsmasq` lives in /usr/sbin, which a non-login PATH may lack).
fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| panic!("{name} not found in PATH or sbin: {INSTALL_HINT}"))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A file in the test's directory ("" while it does not exist yet).
fn file(dir: &TempDir, name: &str) -> String {
    read(&dir.path().join(name))
}

/// Child processes of a test, killed (SIGKILL) and reaped on drop, so that a
/// failing test leaves nothing running even before the namespace is deleted.
#[derive(Default)]
struct Procs(Vec<(&'static str, Child)>);

impl Procs {
    fn add(&mut self, what: &'static str, c: Child) -> u32 {
        let pid = c.id();
        self.0.push((what, c));
        pid
    }

    fn get(&mut self, what: &str) -> &mut Child {
        &mut self.0.iter_mut().find(|(w, _)| *w == what).unwrap().1
    }

    /// Waits (bounded) for `what` to exit.
    fn wait(&mut self, what: &str, limit: Duration) -> Option<ExitStatus> {
        let c = self.get(what);
        poll(limit, || c.try_wait().expect("try_wait"))
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A namespace with bridge br0 (fixed MAC, MTU 9000, 10.77.0.1/24, one veth
/// port) and dnsmasq serving DHCP on br0 only.
///
/// Field order is drop order: processes die first, then the files go, then
/// the namespace.
struct Lab {
    procs: Procs,
    dir: TempDir,
    ns: Netns,
    qemu: PathBuf,
    dnsmasq_pid: u32,
    veth: &'static str,
}

impl Lab {
    fn new() -> Lab {
        common::require_root();
        let qemu = find_program("qemu-system-x86_64");
        let dnsmasq = find_program("dnsmasq");
        let ns = Netns::new();
        let dir = TempDir::new();
        let veth = "vport0";
        ns.ip_batch(&format!(
            "link add {BRIDGE} type bridge\n\
             link set {BRIDGE} address {BRIDGE_MAC} mtu {MTU}\n\
             link add {veth} mtu {MTU} type veth peer name vpeer0 mtu {MTU}\n\
             link set {veth} master {BRIDGE} up\n\
             link set vpeer0 up\n\
             link set {BRIDGE} up\n\
             addr add 10.77.0.1/24 dev {BRIDGE}\n"
        ));

        let d = dir.path();
        let mut procs = Procs::default();
        let child = ns
            .cmd(dnsmasq.to_str().unwrap())
            .args([
                "--keep-in-foreground",  // unlike --no-daemon, writes the pid file
                "--conf-file=/dev/null", // not the host's /etc/dnsmasq.conf
                "--port=0",              // no DNS
                "--bind-interfaces",
                "--interface=br0",
                "--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h",
                "--user=root",
                "--group=root",
                "--log-dhcp",
            ])
            .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
            .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
            .arg(format!(
                "--log-facility={}",
                d.join("dnsmasq.log").display()
            ))
            .stdout(File::create(d.join("dnsmasq.out")).unwrap())
            .stderr(File::create(d.join("dnsmasq.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        let dnsmasq_pid = procs.add("dnsmasq", child);
        let mut lab = Lab {
            procs,
            dir,
            ns,
            qemu,
            dnsmasq_pid,
            veth,
        };
        let ready = poll(Duration::from_secs(10), || {
            if let Some(st) = lab.procs.get("dnsmasq").try_wait().unwrap() {
                panic!(
                    "dnsmasq exited at start ({st}): {}{}",
                    file(&lab.dir, "dnsmasq.err"),
                    file(&lab.dir, "dnsmasq.log")
                );
            }
            let bound = file(&lab.dir, "dnsmasq.log")
                .contains("sockets bound exclusively to interface br0");
            (bound && !file(&lab.dir, "dnsmasq.pid").is_empty()).then_some(())
        });
        assert!(
            ready.is_some(),
            "dnsmasq not ready after 10 s: {}",
            lab.file("dnsmasq.log")
        );
        lab
    }

    fn file(&self, name: &str) -> String {
        file(&self.dir, name)
    }

    /// Starts QEMU in the namespace with kvmnet as script=/downscript= and the
    /// given kvmnet config. Its stderr goes to `qemu.err`.
    fn start_qemu(&mut self, tap: &str, mac: &str, config: &Path) -> Instant {
        let netdev = format!("tap,id=n0,ifname={tap},script={IFUP},downscript={IFDOWN}");
        let device = format!("virtio-net-pci,netdev=n0,mac={mac}");
        let err = File::create(self.dir.path().join("qemu.err")).unwrap();
        let mut cmd = self.ns.cmd(self.qemu.to_str().unwrap());
        cmd.args([
            "-machine",
            "q35,accel=tcg",
            "-m",
            "128",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-display", "none", "-serial", "none", "-monitor", "none", "-boot", "n",
        ])
        .args(["-netdev", &netdev, "-device", &device])
        // QEMU hands its environment to script=; SUDO_UID would make kvmnet
        // ignore KVMNET_CONFIG (it trusts the environment only from real root).
        .env("KVMNET_CONFIG", config)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .stdout(Stdio::null())
        .stderr(err);
        let start = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        self.procs.add("qemu", child);
        start
    }

    fn qemu_stderr(&self) -> String {
        self.file("qemu.err")
    }

    /// SIGTERM makes QEMU exit cleanly, which runs downscript=.
    fn stop_qemu(&mut self) -> ExitStatus {
        let pid = self.procs.get("qemu").id();
        // `ip netns exec` execs QEMU in place, so the child pid is QEMU's.
        let comm = read(Path::new(&format!("/proc/{pid}/comm")));
        assert!(
            comm.starts_with("qemu-system"),
            "pid {pid} is {comm:?}, not QEMU"
        );
        common::ok(Command::new("kill").args(["-TERM", &pid.to_string()]));
        self.procs
            .wait("qemu", Duration::from_secs(30))
            .unwrap_or_else(|| {
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
}

/// The IP dnsmasq acknowledged for `mac`, from its log line
/// "... DHCPACK(br0) 10.77.0.158 52:54:00:12:34:56 ...".
fn acked_ip(log: &str, mac: &str) -> Option<String> {
    log.lines().find_map(|l| {
        let rest = &l[l.find("DHCPACK(")?..];
        let mut words = rest.split_whitespace().skip(1);
        let (ip, m) = (words.next()?, words.next()?);
        (m.eq_ignore_ascii_case(mac)).then(|| ip.to_owned())
    })
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

    let start = lab.start_qemu(tap, mac, &config);
    let ip = poll(LEASE_TIMEOUT, || {
        if let Some(st) = lab.procs.get("qemu").try_wait().unwrap() {
            panic!(
                "QEMU exited before the guest got a lease ({st}); stderr:\n{}\n\
                 (a missing ROM such as efi-virtio.rom means ipxe-qemu is missing: {INSTALL_HINT})",
                file(&lab.dir, "qemu.err")
            );
        }
        acked_ip(&file(&lab.dir, "dnsmasq.log"), mac)
    });
    let lease_time = start.elapsed();
    let Some(ip) = ip else {
        panic!(
            "no DHCPACK for {mac} within {LEASE_TIMEOUT:?}\nbr0 ports: {:?}\ntap: {:?}\n\
             dnsmasq log:\n{}\nQEMU stderr:\n{}",
            lab.ns.ports(BRIDGE),
            lab.ns.link(tap),
            lab.file("dnsmasq.log"),
            lab.qemu_stderr()
        )
    };
    assert!(
        lab.file("leases").contains(&format!("{mac} {ip} ")),
        "lease file lacks {mac} {ip}: {}",
        lab.file("leases")
    );

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
        vec![lab.dnsmasq_pid],
        "only dnsmasq may be left running"
    );
    eprintln!(
        "qemu e2e: QEMU exited {:.2} s after SIGTERM; br0 ports left: {:?}",
        stop_time.as_secs_f64(),
        lab.ns.ports(BRIDGE)
    );
}

#[test]
fn qemu_refuses_to_start_when_the_configured_bridge_is_missing() {
    let mut lab = Lab::new();
    let tap = "vmq1";
    let mac = "52:54:00:4b:4e:02";
    let config = lab.dir.config("bridge = \"nobr\"\ncreate_bridge = false\n");
    let links_before = lab.ns.all_links();
    let br_before = lab.ns.state(BRIDGE);

    let start = lab.start_qemu(tap, mac, &config);
    let status = lab
        .procs
        .wait("qemu", Duration::from_secs(30))
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
        vec![lab.dnsmasq_pid],
        "only dnsmasq may be left running"
    );
    eprintln!(
        "qemu e2e: with a missing bridge QEMU failed ({status}) after {:.2} s: {}",
        took.as_secs_f64(),
        ours[0]
    );
}
