//! The QEMU lab shared by tests/qemu.rs, tests/bridge_helper.rs and
//! tests/packaging.rs: programs found in PATH and sbin, bridge br0 in a
//! namespace, dnsmasq serving DHCP on it, QEMU's common arguments, waiting
//! for QEMU's exec, its SIGTERM handler, its exit and the guest's lease, and
//! child processes killed on drop.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Netns;

pub const INSTALL_HINT: &str =
    "install them: apt-get install qemu-system-x86 ipxe-qemu dnsmasq-base \
                                (this test never skips)";
pub const BRIDGE: &str = "br0";
pub const BRIDGE_MAC: &str = "02:00:00:00:00:01";
/// Not 1500, so that "tap MTU = bridge MTU" proves the tap's MTU was copied.
pub const MTU: u64 = 9000;
/// The bridge's one port that is not a QEMU tap.
pub const VETH: &str = "vport0";
/// What a guest's missing firmware looks like on QEMU's stderr.
pub const ROM_HINT: &str = "(a missing ROM such as efi-virtio.rom means ipxe-qemu is missing: \
                            install them: apt-get install qemu-system-x86 ipxe-qemu dnsmasq-base \
                            (this test never skips))";

/// dnsmasq as a DHCP server on br0 only: no DNS, not the host's config.
pub const DNSMASQ_ARGS: [&str; 9] = [
    "--keep-in-foreground",  // unlike --no-daemon, writes the pid file
    "--conf-file=/dev/null", // not the host's /etc/dnsmasq.conf
    "--port=0",              // no DNS
    "--bind-interfaces",
    "--interface=br0",
    "--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h",
    "--user=root",
    "--group=root",
    "--log-dhcp",
];

/// QEMU's arguments before `-netdev`: a TCG q35 guest with no devices of its
/// own that boots from the network (QEMU's iPXE).
pub const QEMU_ARGS: [&str; 14] = [
    "-machine",
    "q35,accel=tcg",
    "-m",
    "128",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "none",
    "-monitor",
    "none",
    "-boot",
    "n",
];

/// The absolute path of a program, looked up in PATH and the sbin directories
/// (`dnsmasq` lives in /usr/sbin, which a non-login PATH may lack).
pub fn find_program(name: &str) -> PathBuf {
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

/// Polls `f` every `every` until it returns `Some`, for at most `limit`.
pub fn poll_every<T>(
    every: Duration,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

fn poll<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(Duration::from_millis(20), limit, f)
}

/// A file's text ("" while it does not exist yet).
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A child process killed (SIGKILL) and reaped on drop, so that a failing
/// test leaves nothing running even before the namespace is deleted.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A namespace with bridge br0 (fixed MAC, MTU 9000, 10.77.0.1/24) and one
/// veth port [`VETH`], so the bridge has carrier and a port that is not QEMU's.
pub fn bridge_ns() -> Netns {
    let ns = Netns::new();
    ns.ip_batch(&format!(
        "link add {BRIDGE} type bridge\n\
         link set {BRIDGE} address {BRIDGE_MAC} mtu {MTU}\n\
         link add {VETH} mtu {MTU} type veth peer name vpeer0 mtu {MTU}\n\
         link set {VETH} master {BRIDGE} up\n\
         link set vpeer0 up\n\
         link set {BRIDGE} up\n\
         addr add 10.77.0.1/24 dev {BRIDGE}\n"
    ));
    ns
}

/// Starts `dnsmasq` in `ns` with [`DNSMASQ_ARGS`], its files in `dir`
/// (leases, dnsmasq.pid, dnsmasq.log, dnsmasq.out, dnsmasq.err), and waits
/// (10 s at most) until it has bound br0 and written its pid file.
pub fn start_dnsmasq(ns: &Netns, dnsmasq: &Path, dir: &Path) -> Proc {
    let child = ns
        .cmd(dnsmasq.to_str().unwrap())
        .args(DNSMASQ_ARGS)
        .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .arg(format!(
            "--log-facility={}",
            dir.join("dnsmasq.log").display()
        ))
        .stdout(File::create(dir.join("dnsmasq.out")).unwrap())
        .stderr(File::create(dir.join("dnsmasq.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
    let mut proc = Proc(child);
    let file = |name: &str| read(&dir.join(name));
    let ready = poll(Duration::from_secs(10), || {
        if let Some(st) = proc.0.try_wait().unwrap() {
            panic!(
                "dnsmasq exited at start ({st}): {}{}",
                file("dnsmasq.err"),
                file("dnsmasq.log")
            );
        }
        let bound = file("dnsmasq.log").contains("sockets bound exclusively to interface br0");
        (bound && !file("dnsmasq.pid").is_empty()).then_some(())
    });
    assert!(
        ready.is_some(),
        "dnsmasq not ready after 10 s: {}",
        file("dnsmasq.log")
    );
    proc
}

/// The IP dnsmasq acknowledged for `mac`, from its log line
/// "... DHCPACK(br0) 10.77.0.158 52:54:00:12:34:56 ...".
pub fn acked_ip(log: &str, mac: &str) -> Option<String> {
    log.lines().find_map(|l| {
        let rest = &l[l.find("DHCPACK(")?..];
        let mut words = rest.split_whitespace().skip(1);
        let (ip, m) = (words.next()?, words.next()?);
        m.eq_ignore_ascii_case(mac).then(|| ip.to_owned())
    })
}

/// /proc/PID/status as key -> value, whitespace-normalised ("Uid" ->
/// "4242 4242 4242 4242"); empty when the process is gone.
pub fn proc_status(pid: u32) -> HashMap<String, String> {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((
                k.to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}

/// QEMU's pid, once the chain of execs that starts it (`ip netns exec`, a
/// jail) has reached QEMU (10 s at most).
pub fn qemu_pid(qemu: &Child, stderr: impl Fn() -> String) -> u32 {
    let pid = qemu.id();
    let comm = || read(Path::new(&format!("/proc/{pid}/comm")));
    let is_qemu = poll(Duration::from_secs(10), || {
        comm().starts_with("qemu-system").then_some(())
    });
    assert!(
        is_qemu.is_some(),
        "pid {pid} is {:?}, not QEMU; stderr:\n{}",
        comm(),
        stderr()
    );
    pid
}

/// Waits (`limit` at most) until QEMU `pid` has installed its SIGTERM
/// handler (SigCgt in /proc/PID/status). QEMU does so only after setting up
/// its netdevs, so its tap can be on br0 while SIGTERM would still kill it
/// outright.
pub fn wait_for_sigterm_handler(pid: u32, limit: Duration, stderr: impl Fn() -> String) {
    let sigterm = 1u64 << (libc::SIGTERM - 1);
    let caught = poll(limit, || {
        let st = proc_status(pid);
        let mask = u64::from_str_radix(st.get("SigCgt")?, 16).ok()?;
        (mask & sigterm != 0).then_some(())
    });
    assert!(
        caught.is_some(),
        "QEMU did not install its SIGTERM handler within {limit:?}: {:?}\n{}",
        proc_status(pid),
        stderr()
    );
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    super::ok(Command::new("kill").args(["-TERM", &pid.to_string()]));
}

/// Waits (`limit` at most) until `child` has exited.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll(limit, || child.try_wait().expect("try_wait"))
}

/// Waits (`limit` at most) until dnsmasq, with its files in `dir`,
/// acknowledged a lease for the guest `mac` and wrote it to its lease file,
/// which proves the guest's tap forwards on br0; returns the IP. Fails if
/// QEMU exits first. `exit_note` follows QEMU's stderr in that failure;
/// `timeout_diag` precedes the logs when no lease came.
pub fn wait_for_lease(
    qemu: &mut Child,
    dir: &Path,
    mac: &str,
    limit: Duration,
    exit_note: &str,
    timeout_diag: impl Fn() -> String,
) -> String {
    let file = |name: &str| read(&dir.join(name));
    let ip = poll(limit, || {
        if let Some(st) = qemu.try_wait().unwrap() {
            panic!(
                "QEMU exited before the guest got a lease ({st}); stderr:\n{}{exit_note}",
                file("qemu.err")
            );
        }
        acked_ip(&file("dnsmasq.log"), mac)
    });
    let Some(ip) = ip else {
        panic!(
            "no DHCPACK for {mac} within {limit:?}\n{}dnsmasq log:\n{}\nQEMU stderr:\n{}",
            timeout_diag(),
            file("dnsmasq.log"),
            file("qemu.err")
        )
    };
    assert!(
        file("leases").contains(&format!("{mac} {ip} ")),
        "lease file lacks {mac} {ip}: {}",
        file("leases")
    );
    ip
}

/// Spawns QEMU as `cmd` with stdout discarded and stderr to `dir/qemu.err`;
/// returns it and the moment it started.
pub fn spawn_qemu(cmd: &mut Command, dir: &Path) -> (Child, Instant) {
    cmd.stdout(Stdio::null())
        .stderr(File::create(dir.join("qemu.err")).unwrap());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    (child, start)
}
