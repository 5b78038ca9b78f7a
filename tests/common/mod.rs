//! Shared harness for the integration tests: every test that changes links
//! gets its own network namespace, removed on drop (also when the test panics).
//! Tests may use `ip`; the binaries under test never do.
#![allow(dead_code)]

pub mod guest;
pub mod qemu;
pub mod trace;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const IFUP: &str = env!("CARGO_BIN_EXE_kvmnet-ifup");
pub const IFDOWN: &str = env!("CARGO_BIN_EXE_kvmnet-ifdown");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Privileged tests cannot pass without root: fail loudly, never skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (network namespaces, taps); run the suite as root: \
             sudo -E cargo test (CI={:?})",
            std::env::var("CI").ok()
        );
    }
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn sh(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn ok(cmd: &mut Command) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts all `cmds` at once (stderr piped), then waits for each: their
/// outputs, in order.
pub fn run_parallel(cmds: impl IntoIterator<Item = Command>) -> Vec<Output> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
        })
        .collect();
    children
        .into_iter()
        .map(|ch| ch.wait_with_output().unwrap())
        .collect()
}

/// Runs `prog TAP` in `ns` with KVMNET_CONFIG=`config` for all `taps` at
/// once ([`run_parallel`]) and asserts that every run succeeded; a failure
/// shows `context` before the run's stderr.
pub fn parallel_ok(
    ns: &Netns,
    prog: &str,
    config: &Path,
    taps: impl IntoIterator<Item = String>,
    context: &str,
) {
    let outs = run_parallel(taps.into_iter().map(|tap| {
        let mut cmd = ns.cmd(prog);
        cmd.arg(tap).env("KVMNET_CONFIG", config);
        cmd
    }));
    for out in outs {
        assert!(
            out.status.success(),
            "{context}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("kvmnet-test-"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Writes a config file and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.0.join("kvmnet.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        require_root();
        let name = unique("kvmnet-t");
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// `ip -n NS ARGS...`, which must succeed.
    pub fn ip(&self, args: &str) -> String {
        ok(Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace()))
    }

    /// Runs many `ip` commands in one process (fast set-up of big topologies).
    pub fn ip_batch(&self, lines: &str) {
        let dir = TempDir::new();
        let f = dir.path().join("batch");
        std::fs::write(&f, lines).unwrap();
        ok(Command::new("ip")
            .args(["-n", &self.name, "-batch"])
            .arg(&f));
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a kvmnet binary in the namespace with the given config (or with a
    /// path that does not exist, for the no-config mode).
    pub fn kvmnet(&self, bin: &str, tap: &str, config: Option<&Path>) -> Run {
        let mut c = self.cmd(bin);
        c.arg(tap);
        c.env_remove("SUDO_UID").env_remove("SUDO_GID");
        c.env(
            "KVMNET_CONFIG",
            config.unwrap_or(Path::new("/nonexistent/kvmnet.toml")),
        );
        Run::from(sh(&mut c))
    }

    pub fn ifup(&self, tap: &str, config: Option<&Path>) -> Run {
        self.kvmnet(IFUP, tap, config)
    }

    pub fn ifdown(&self, tap: &str, config: Option<&Path>) -> Run {
        self.kvmnet(IFDOWN, tap, config)
    }

    /// `ip -d -j link show NAME`, or None when it does not exist.
    pub fn link(&self, name: &str) -> Option<serde_json::Value> {
        let out =
            sh(Command::new("ip")
                .args(["-n", &self.name, "-d", "-j", "link", "show", "dev", name]));
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().and_then(|a| a.first().cloned())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.link(name).is_some()
    }

    /// The taps with a kvmnet guard chain (`tap-N` in a guard shard: a
    /// `rate_in` limit), as sorted "tap-N" lines; "" when none.
    pub fn guards(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&ok(self
            .cmd("nft")
            .args(["-j", "list", "chains", "netdev"])))
        .unwrap();
        let mut names: Vec<String> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("chain"))
            .filter(|c| {
                c["table"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(kvmnet::guard::TABLE_PREFIX))
            })
            .filter_map(|c| c["name"].as_str())
            .filter(|n| n.starts_with(kvmnet::guard::CHAIN_PREFIX))
            .map(str::to_owned)
            .collect();
        names.sort();
        names.join("\n")
    }

    /// The classic BPF filters on `dev`'s ingress, as tc reads them back:
    /// (priority, direct-action, instructions as code/jt/jf/k).
    pub fn ingress_filters(&self, dev: &str) -> Vec<(u64, bool, Vec<[u64; 4]>)> {
        let out = self
            .cmd("tc")
            .args(["-j", "filter", "show", "dev", dev, "ingress"])
            .output()
            .unwrap();
        // no clsact qdisc, or no such device: no filters
        if !out.status.success() || out.stdout.trim_ascii().is_empty() {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "bpf")
            .filter_map(|f| {
                let o = f.get("options")?;
                let insns = o["bytecode"]["insns"]
                    .as_array()?
                    .iter()
                    .map(|i| ["code", "jt", "jf", "k"].map(|k| i[k].as_u64().unwrap()))
                    .collect();
                Some((
                    f["pref"].as_u64().unwrap(),
                    o["direct-action"] == true,
                    insns,
                ))
            })
            .collect()
    }

    /// The guard's checks on `dev`: "on" (the checks' filter and the drop
    /// filter behind it), "drop only" (a run stopped between the two, or
    /// while lifting them: the tap passes nothing), "checks only" (never
    /// wanted: frames the checks do not allow would pass), "" (none).
    pub fn checks(&self, dev: &str) -> &'static str {
        let f = self.ingress_filters(dev);
        let checks = f.iter().any(|(p, da, _)| *p == 1 && !da);
        let drop = f
            .iter()
            .any(|(p, da, i)| *p == 2 && *da && i.as_slice() == [[6, 0, 0, 2]]);
        match (checks, drop) {
            (true, true) => "on",
            (false, true) => "drop only",
            (true, false) => "checks only",
            (false, false) => "",
        }
    }

    /// Guard state of the interface with this index is still there: its
    /// chain, or elements naming `mac` for it (nft shows the index of a
    /// gone interface as a number).
    pub fn guard_left(&self, index: u32, mac: &str) -> bool {
        let listed = ok(self.cmd("nft").args(["list", "ruleset"]));
        self.guards().lines().any(|l| l == format!("tap-{index}"))
            || listed.contains(&format!(" {index} . {mac}"))
    }

    /// The comparable state of a link: what ifup may change and ifdown restore.
    pub fn state(&self, name: &str) -> Option<LinkState> {
        self.link(name).map(|l| LinkState {
            mtu: l["mtu"].as_u64().unwrap(),
            mac: l["address"].as_str().unwrap_or("").to_owned(),
            master: l["master"].as_str().map(str::to_owned),
            up: l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            alias: l["ifalias"].as_str().map(str::to_owned),
        })
    }

    /// Names of the ports of a bridge.
    pub fn ports(&self, bridge: &str) -> Vec<String> {
        let out =
            ok(Command::new("ip").args(["-n", &self.name, "-j", "link", "show", "master", bridge]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::json!([]));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|l| l["ifname"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// All link names in the namespace (to prove "nothing else changed").
    pub fn all_links(&self) -> Vec<String> {
        let out = ok(Command::new("ip").args(["-n", &self.name, "-j", "link", "show"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    pub fn sys(&self, path: &str) -> String {
        ok(self.cmd("cat").arg(path)).trim().to_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill anything still running in it (dnsmasq, QEMU) before deleting it.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub mtu: u64,
    pub mac: String,
    pub master: Option<String>,
    pub up: bool,
    pub alias: Option<String>,
}

/// The result of running a binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
        self
    }
    /// A failure with exactly one line on stderr, containing `needle`.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Run {
        assert_eq!(self.code, Some(1), "expected exit 1: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line: {self:?}");
        assert!(
            lines[0].contains(needle),
            "expected {needle:?} in {:?}",
            lines[0]
        );
        self
    }
}

/// How a test copy of a binary gets its privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `setcap cap_net_admin+ep`
    FileCap,
    /// owned by root, mode 4755
    Setuid,
    /// a plain copy
    Plain,
}

/// Copies a built binary into `dir` and grants it privilege the way an admin
/// would. The copy lives on the root filesystem (xattrs, no nosuid).
pub fn privileged_copy(dir: &Path, bin: &str, grant: Grant) -> PathBuf {
    let name = Path::new(bin).file_name().unwrap();
    let sub = dir.join(format!("{grant:?}").to_lowercase());
    std::fs::create_dir_all(&sub).unwrap();
    let dst = sub.join(name);
    std::fs::copy(bin, &dst).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [dir, sub.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    match grant {
        Grant::FileCap => {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
            ok(Command::new("setcap").arg("cap_net_admin+ep").arg(&dst));
        }
        Grant::Setuid => {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o4755)).unwrap();
        }
        Grant::Plain => {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    dst
}

/// A private mount namespace around one run: its own /etc (an overlay, so
/// the machine's /etc is never written), /etc/kvmnet/kvmnet.toml as given,
/// a fresh /dev with a 0666 /dev/net/tun (distributions ship 0666; this
/// machine's is 0600) and optionally a /dev/log socket the test listens on;
/// then the network namespace and the user's numeric credentials.
pub struct Jail {
    pub dir: TempDir,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub config: Option<String>,
    pub config_mode: u32,
    pub env: Vec<(String, String)>,
    /// Shell lines run as root inside the mount namespace before the switch.
    pub setup: String,
    pub log_socket: Option<PathBuf>,
}

impl Jail {
    pub fn new(uid: u32, gid: u32, groups: &[u32]) -> Jail {
        let dir = TempDir::new();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Jail {
            dir,
            uid,
            gid,
            groups: groups.to_vec(),
            config: None,
            config_mode: 0o644,
            env: Vec::new(),
            setup: String::new(),
            log_socket: None,
        }
    }

    pub fn config(mut self, text: &str) -> Jail {
        self.config = Some(text.to_owned());
        self
    }

    /// The command that runs `argv` in the jail inside `ns`.
    pub fn command(&self, ns: &Netns, argv: &[&str]) -> Command {
        let d = self.dir.path();
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        if let Some(c) = &self.config {
            std::fs::write(d.join("kvmnet.toml"), c).unwrap();
        }
        let script = r#"set -e
D=$KVMNET_JAIL
mount -t overlay kvmnet-test-etc -o lowerdir=/etc,upperdir=$D/upper,workdir=$D/work /etc
mkdir -p /etc/kvmnet
if [ -f $D/kvmnet.toml ]; then
    cp $D/kvmnet.toml /etc/kvmnet/kvmnet.toml
    chmod $KVMNET_JAIL_CFGMODE /etc/kvmnet/kvmnet.toml
fi
mount -t tmpfs -o mode=755 kvmnet-test-dev /dev
for n in null:1:3 zero:1:5 urandom:1:9 random:1:8; do
    IFS=: read name maj min <<EOF2
$n
EOF2
    mknod -m 666 /dev/$name c $maj $min
done
mkdir /dev/net && mknod -m 666 /dev/net/tun c 10 200
if [ -n "$KVMNET_JAIL_LOG" ]; then touch /dev/log && mount --bind "$KVMNET_JAIL_LOG" /dev/log; fi
eval "$KVMNET_JAIL_SETUP"
exec nsenter --net=/run/netns/$KVMNET_JAIL_NS setpriv --reuid=$KVMNET_JAIL_UID --regid=$KVMNET_JAIL_GID $KVMNET_JAIL_GROUPS -- env -i $KVMNET_JAIL_ENV "$@"
"#;
        let groups = if self.groups.is_empty() {
            "--clear-groups".to_owned()
        } else {
            format!(
                "--groups={}",
                self.groups
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "jail",
        ])
        .args(argv)
        .env("KVMNET_JAIL", d)
        .env("KVMNET_JAIL_CFGMODE", format!("{:o}", self.config_mode))
        .env("KVMNET_JAIL_NS", &ns.name)
        .env("KVMNET_JAIL_UID", self.uid.to_string())
        .env("KVMNET_JAIL_GID", self.gid.to_string())
        .env("KVMNET_JAIL_GROUPS", groups)
        .env("KVMNET_JAIL_ENV", env.join(" "))
        .env("KVMNET_JAIL_SETUP", &self.setup)
        .env(
            "KVMNET_JAIL_LOG",
            self.log_socket.as_deref().unwrap_or(Path::new("")),
        )
        .stdin(Stdio::null());
        c
    }

    pub fn run(&self, ns: &Netns, argv: &[&str]) -> Run {
        Run::from(sh(&mut self.command(ns, argv)))
    }
}

nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, [u8; 40]);

/// Opens the queue of an existing persistent tap in `ns`, as QEMU would:
/// frames written to it enter the host as if sent by the guest, frames the
/// host sends to the guest can be read from it. Non-blocking.
pub fn open_tap(ns: &Netns, tap: &str) -> std::fs::File {
    let path = format!("/run/netns/{}", ns.name);
    let tap = tap.to_owned();
    // setns changes only the calling thread's namespace: do it in a thread of
    // its own; the descriptor it returns is bound to the device for good.
    std::thread::spawn(move || {
        let nsf = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&nsf, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .unwrap();
        let mut req = [0u8; 40];
        req[..tap.len()].copy_from_slice(tap.as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: `req` is a 40-byte, zero-padded struct ifreq with a
        // NUL-terminated name and the flags at offset 16; `f` is an open
        // /dev/net/tun descriptor that outlives the call.
        unsafe { tun_set_iff(f.as_raw_fd(), &req) }
            .unwrap_or_else(|e| panic!("attaching to tap {tap}: {e}"));
        f
    })
    .join()
    .unwrap()
}

/// Frames read from a tap within `wait`.
pub fn read_frames(tap: &mut std::fs::File, wait: std::time::Duration) -> Vec<Vec<u8>> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + wait;
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < deadline {
        match tap.read(&mut buf) {
            Ok(n) => frames.push(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("reading tap: {e}"),
        }
    }
    frames
}

/// An Ethernet broadcast frame with a marker payload (an unused ethertype,
/// so the host's stack ignores it and only the bridge forwards it).
pub fn broadcast_frame(src: [u8; 6], marker: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend_from_slice(marker);
    f.resize(f.len().max(60), 0);
    f
}

/// Whether any frame contains `marker`.
pub fn seen(frames: &[Vec<u8>], marker: &[u8]) -> bool {
    frames
        .iter()
        .any(|f| f.windows(marker.len()).any(|w| w == marker))
}

/// Runs `f` on a thread that entered `ns` (setns affects only that thread).
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let nsf = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&nsf, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Tries to create a VLAN-filtering bridge `br-probe` in `ns`.
pub fn add_vlan_probe_bridge(ns: &Netns) -> Output {
    sh(Command::new("ip").args([
        "-n",
        &ns.name,
        "link",
        "add",
        "br-probe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]))
}

/// Whether this kernel can filter VLANs on a bridge: the probe must either
/// work (the probe bridge is removed again) or fail with EOPNOTSUPP (the
/// feature is compiled out), nothing else.
pub fn kernel_filters_vlans(ns: &Netns) -> bool {
    let out = add_vlan_probe_bridge(ns);
    if out.status.success() {
        ns.ip("link del br-probe");
        return true;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation not supported"),
        "the VLAN probe failed for another reason than a missing kernel feature: {err}"
    );
    assert!(!ns.exists("br-probe"));
    false
}

// ---------------------------------------------------------------------------
// QEMU's side of the bridge helper's socket

/// A unix stream socket pair as QEMU makes it for `helper=`: QEMU's end,
/// with `read_timeout` so a helper that sends nothing cannot hang the test,
/// and the helper's end. Both close-on-exec: tests run in parallel, and an
/// inheritable end would leak into whatever another test spawns meanwhile,
/// keeping a "closed" socket open. See [`spawn_inheriting`].
pub fn socket_pair(read_timeout: Duration) -> (UnixStream, OwnedFd) {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (qemu, helper) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let qemu = UnixStream::from(qemu);
    qemu.set_read_timeout(Some(read_timeout)).unwrap();
    (qemu, helper)
}

/// Spawns `cmd` with the descriptors `pass` inherited at their numbers, like
/// QEMU's fork + exec: they stay close-on-exec here and are made inheritable
/// only in this child, between fork and exec; the parent's copies are closed
/// once the child exists. `cmd` keeps the hook: do not spawn it again.
pub fn spawn_inheriting(cmd: &mut Command, pass: Vec<OwnedFd>) -> Child {
    let raw: Vec<RawFd> = pass.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls fcntl (async-signal-safe) on descriptors that `pass` keeps open
    // until after the spawn, and it does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raw {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    drop(pass);
    child
}

/// What one `recvmsg` on QEMU's end got: the bytes (empty at EOF) and the
/// descriptors (SCM_RIGHTS), received close-on-exec so that a tap cannot leak
/// into other tests' children and outlive our close. Any other control
/// message, or more than 8 descriptors, fails the test.
pub fn recv_fds_once(sock: &UnixStream) -> (Vec<u8>, Vec<OwnedFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap_or_else(|e| {
        let limit = sock.read_timeout().ok().flatten();
        panic!("recvmsg on QEMU's end (timeout {limit:?}): {e}")
    });
    let mut fds = Vec::new();
    for c in msg
        .cmsgs()
        .expect("control data truncated (more than 8 fds?)")
    {
        match c {
            ControlMessageOwned::ScmRights(v) => {
                // SAFETY: SCM_RIGHTS just installed these descriptors in this
                // process; nothing else owns them.
                fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
            }
            other => panic!("unexpected control message {other:?}"),
        }
    }
    let n = msg.bytes;
    (buf[..n].to_vec(), fds)
}

/// Everything QEMU's end gets until EOF (every copy of the helper's end
/// closed, i.e. the helper has ended): the number of bytes and the
/// descriptors.
pub fn recv_fds_until_eof(sock: &UnixStream) -> (usize, Vec<OwnedFd>) {
    let (mut total, mut all) = (0, Vec::new());
    loop {
        let (bytes, fds) = recv_fds_once(sock);
        all.extend(fds);
        if bytes.is_empty() {
            return (total, all);
        }
        total += bytes.len();
    }
}

nix::ioctl_read_bad!(tun_get_iff, libc::TUNGETIFF, [u8; 40]);

/// TUNGETIFF on a tap descriptor QEMU's end received: the tap's name and
/// its tun flags.
pub fn tap_of(fd: &OwnedFd) -> (String, u32) {
    let mut req = [0u8; 40];
    // SAFETY: `req` is a writable 40-byte struct ifreq; `fd` is open.
    unsafe { tun_get_iff(fd.as_raw_fd(), &mut req) }
        .unwrap_or_else(|e| panic!("TUNGETIFF on the received descriptor: {e}"));
    let len = req[..16].iter().position(|b| *b == 0).unwrap_or(16);
    let name = String::from_utf8(req[..len].to_vec()).unwrap();
    let flags = u16::from_ne_bytes([req[16], req[17]]) as u32;
    (name, flags)
}

/// The lines of `text` that start with `prefix`.
pub fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The tun part of a link from sysfs: (tun_flags, owner uid). sysfs gives
/// the owner as a number (`ip -j` prints a user name when there is one).
pub fn tun_sysfs(ns: &Netns, tap: &str) -> (u32, Option<u32>) {
    let flags = ns.sys(&format!("/sys/class/net/{tap}/tun_flags"));
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("{tap} tun_flags {flags:?}: {e}"));
    let owner = ns.sys(&format!("/sys/class/net/{tap}/owner"));
    (flags, owner.parse().ok())
}

/// A directory kvmnet's trust rule accepts: root's, 0755, below /run (root's,
/// 0755), removed on drop. A temp dir under /tmp never passes it (/tmp is
/// world-writable, and the sticky bit does not count), and a checkout may
/// be anywhere: tests that need binaries or files at root-only paths use
/// this.
pub struct RootOnlyDir(pub PathBuf);

impl RootOnlyDir {
    pub fn new() -> RootOnlyDir {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let run = std::fs::metadata("/run").expect("/run");
        assert!(
            run.uid() == 0 && run.mode() & 0o022 == 0,
            "these tests need /run owned by root and writable only by root (uid {}, mode {:o})",
            run.uid(),
            run.mode()
        );
        let p = Path::new("/run").join(unique("kvmnet-test-"));
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        RootOnlyDir(p)
    }

    /// A plain copy (0755) of the binary `bin` in this directory.
    pub fn copy(&self, bin: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dst = self.0.join(Path::new(bin).file_name().unwrap());
        std::fs::copy(bin, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        dst
    }
}

impl Drop for RootOnlyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
