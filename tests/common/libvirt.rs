//! The libvirt lab of tests/libvirt.rs: a real `libvirtd` (system or session
//! mode) in the test's own network and mount namespaces, bridge br0 with
//! dnsmasq on it ([`super::qemu`]'s lab), and iPXE guests booted by libvirt.
//!
//! Nothing outside the namespaces changes. libvirtd runs under `ip netns
//! exec` (which mounts a sysfs of the namespace, so no cgroup hierarchy is
//! visible and libvirt creates no cgroups) plus a private mount namespace in
//! which, before libvirtd starts:
//! - /etc and /var are overlays whose upper layers are in the lab's directory
//!   (the lab's own users live there);
//! - /etc/kvmnet, /etc/qemu and /etc/sudoers.d hold exactly the test's
//!   policy, and /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt,
//!   /var/log/libvirt and /run are the lab's, all bind mounts of its
//!   directories: libvirt neither reads the machine's libvirt configuration
//!   (a `default` network marked for autostart included) nor reaches its
//!   D-Bus, systemd or machined;
//! - /dev is a tmpfs with the usual nodes, a 0666 /dev/net/tun (the mode
//!   distributions ship) and a /dev/log socket the test reads.
//!
//! System libvirtd insists on its build-time user `libvirt-qemu` even when
//! qemu.conf says `user = "root"`: that user exists only in the lab's /etc.
//! The session user is the numeric uid [`USER`], likewise named only there.
//!
//! Every process of the lab (libvirtd, the QEMUs it daemonized, helpers,
//! dnsmasq) lives in the network namespace: [`Lab`]'s drop kills them all
//! and waits until they are gone, also when the test panics.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::qemu::{self, bridge_ns, read, Proc, BRIDGE, VETH};
use crate::common::{Netns, Run, TempDir};

pub const INSTALL_HINT: &str = "install them: apt-get install --no-install-recommends \
     libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 ipxe-qemu \
     dnsmasq-base sudo util-linux libcap2-bin (this test never skips)";

/// The ordinary user of the session daemon and of the sudo rule: a numeric
/// uid, named [`USER_NAME`] only in the lab's own /etc.
pub const USER: u32 = 4242;
pub const USER_NAME: &str = "kvmuser";
/// The user system libvirtd looks up at start (Debian's build), lab-only.
const QEMU_USER: &str = "libvirt-qemu";
const QEMU_UID: u32 = 64055;

/// libvirtd's start: its socket appears after its drivers loaded.
const START_LIMIT: Duration = Duration::from_secs(60);
/// From `virsh start` to the guest's DHCPACK (iPXE under TCG, two cores
/// shared with other builds).
pub const LEASE_LIMIT: Duration = Duration::from_secs(90);

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The absolute path of a program the lab needs; missing is a failure with
/// the packages to install.
pub fn require(name: &str) -> PathBuf {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
    .unwrap_or_else(|| panic!("{name} is missing: {INSTALL_HINT}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `qemu:///system`: libvirtd as root, QEMU as root (qemu.conf).
    System,
    /// `qemu:///session`: libvirtd and QEMU as [`USER`], XDG directories in
    /// the lab's directory.
    Session,
}

impl Mode {
    /// The daemon's user.
    fn uid(self) -> u32 {
        match self {
            Mode::System => 0,
            Mode::Session => USER,
        }
    }
}

/// What the lab's /etc holds besides libvirt's own configuration.
#[derive(Default)]
pub struct Policy {
    /// /etc/kvmnet/kvmnet.toml (none: no file).
    pub kvmnet: Option<String>,
    /// /etc/qemu/bridge.conf (none: no file).
    pub bridge_conf: Option<String>,
    /// /etc/sudoers.d/kvmnet-test (none: no file).
    pub sudoers: Option<String>,
    /// Lines added to the daemon's qemu.conf (the session's
    /// `bridge_helper`).
    pub qemu_conf: String,
}

/// A directory created with `mode`, owned by `uid`:`uid` (root: 0).
fn mkdir(p: &Path, mode: u32, uid: u32) -> PathBuf {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    chown(p, Some(uid), Some(uid)).unwrap();
    p.to_owned()
}

/// A file written with `mode`, owned by `uid`:`uid`.
fn write(p: &Path, text: &str, mode: u32, uid: u32) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    chown(p, Some(uid), Some(uid)).unwrap();
}

/// The machine's user database file `name` with `extra` appended, as the
/// lab's /etc/`name` (same mode).
fn extend_db(upper: &Path, name: &str, extra: &str) {
    let src = Path::new("/etc").join(name);
    let mut text = fs::read_to_string(&src).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(extra);
    let mode = fs::metadata(&src).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    write(&upper.join(name), &text, mode, 0);
}

/// Mounts the lab's world (module doc), then runs "$@" as $LAB_UID.
const LAUNCH: &str = r#"set -e
D=$LAB_DIR
mount -t overlay kvmnet-lab-etc -o lowerdir=/etc,upperdir=$D/etc,workdir=$D/etc.work /etc
mount -t overlay kvmnet-lab-var -o lowerdir=/var,upperdir=$D/var,workdir=$D/var.work /var
for d in kvmnet qemu sudoers.d; do
    mkdir -p /etc/$d && mount --bind $D/policy/$d /etc/$d
done
mkdir -p /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
mount --bind $D/libvirt/etc /etc/libvirt
mount --bind $D/libvirt/lib /var/lib/libvirt
mount --bind $D/libvirt/cache /var/cache/libvirt
mount --bind $D/libvirt/log /var/log/libvirt
mount --bind $D/run /run
mount -t tmpfs -o mode=755 kvmnet-lab-dev /dev
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9; do
    name=${n%%:*}; nums=${n#*:}
    mknod -m 666 /dev/$name c ${nums%:*} ${nums#*:}
done
mkdir /dev/net /dev/pts /dev/shm
mknod -m 666 /dev/net/tun c 10 200
mount -t devpts -o newinstance,ptmxmode=0666 kvmnet-lab-pts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 kvmnet-lab-shm /dev/shm
touch /dev/log && mount --bind $D/log /dev/log
exec setpriv --reuid=$LAB_UID --regid=$LAB_UID --init-groups -- "$@"
"#;

/// The directories of a lab that the test reads.
struct Layout {
    /// The session user's home (its ~/.config/libvirt, ~/.cache/libvirt).
    home: PathBuf,
    xdg_runtime: PathBuf,
    /// The daemon's own log and stderr, writable by its user.
    daemon_dir: PathBuf,
}

/// Writes the lab's files into `dir` for a daemon in `mode`: the upper
/// layers and bind-mount sources of [`LAUNCH`], the users, `policy`, and
/// libvirtd's and QEMU's configuration.
fn lay_out(dir: &Path, mode: Mode, policy: &Policy) -> Layout {
    let uid = mode.uid();
    let home = mkdir(&dir.join("home"), 0o700, USER);
    let xdg_runtime = mkdir(&dir.join("xdg-runtime"), 0o700, USER);
    let daemon_dir = mkdir(&dir.join("daemon"), 0o755, uid);
    for sub in ["etc.work", "var", "var.work", "run", "libvirt"] {
        mkdir(&dir.join(sub), 0o755, 0);
    }
    for sub in ["etc", "lib", "cache", "log"] {
        mkdir(&dir.join("libvirt").join(sub), 0o755, 0);
    }

    // The overlay's upper layer is /etc's root directory: root's, 0755.
    let etc = mkdir(&dir.join("etc"), 0o755, 0);
    extend_db(
        &etc,
        "passwd",
        &format!(
            "{QEMU_USER}:x:{QEMU_UID}:{QEMU_UID}::/nonexistent:/usr/sbin/nologin\n\
             {USER_NAME}:x:{USER}:{USER}::{}:/usr/sbin/nologin\n",
            home.display()
        ),
    );
    extend_db(
        &etc,
        "group",
        &format!("{QEMU_USER}:x:{QEMU_UID}:\n{USER_NAME}:x:{USER}:\n"),
    );
    extend_db(
        &etc,
        "shadow",
        &format!("{USER_NAME}:*:19000:0:99999:7:::\n"),
    );
    // Exactly the policy given, whatever the machine's /etc holds.
    let files = [
        ("kvmnet", 0o755, "kvmnet.toml", 0o644, &policy.kvmnet),
        ("qemu", 0o755, "bridge.conf", 0o644, &policy.bridge_conf),
        ("sudoers.d", 0o750, "kvmnet-test", 0o440, &policy.sudoers),
    ];
    for (sub, dir_mode, file, mode, text) in files {
        let d = mkdir(&dir.join("policy").join(sub), dir_mode, 0);
        if let Some(text) = text {
            write(&d.join(file), text, mode, 0);
        }
    }

    let libvirtd_conf = format!(
        "log_outputs = \"3:file:{}\"\n\
         auth_unix_ro = \"none\"\n\
         auth_unix_rw = \"none\"\n",
        daemon_dir.join("libvirtd.log").display()
    );
    // virtlogd is started by systemd on a real host: QEMU's output goes to
    // a file instead.
    let mut qemu_conf = "stdio_handler = \"file\"\n".to_owned();
    let conf = match mode {
        Mode::System => {
            // QEMU as root, without the per-VM /dev namespace, cgroups,
            // relabelling or a security driver: none of them is what is
            // tested here, and each needs a host set up for it.
            qemu_conf.push_str(
                "user = \"root\"\ngroup = \"root\"\n\
                 dynamic_ownership = 0\nremember_owner = 0\n\
                 security_driver = \"none\"\nnamespaces = [ ]\n\
                 cgroup_controllers = [ ]\n",
            );
            dir.join("libvirt/etc")
        }
        Mode::Session => mkdir(
            &mkdir(&home.join(".config"), 0o700, USER).join("libvirt"),
            0o700,
            USER,
        ),
    };
    qemu_conf.push_str(&policy.qemu_conf);
    write(&conf.join("libvirtd.conf"), &libvirtd_conf, 0o644, uid);
    write(&conf.join("qemu.conf"), &qemu_conf, 0o644, uid);
    Layout {
        home,
        xdg_runtime,
        daemon_dir,
    }
}

/// A running libvirtd in its namespaces.
pub struct Libvirtd {
    pub mode: Mode,
    daemon: Proc,
    /// The /dev/log stand-in, non-blocking; [`Libvirtd::syslog`] drains it.
    log: UnixDatagram,
    syslog: std::cell::RefCell<Vec<String>>,
    /// The lab's directory (module doc).
    dir: PathBuf,
    layout: Layout,
}

impl Libvirtd {
    fn start(ns: &Netns, dir: &Path, mode: Mode, policy: &Policy) -> Libvirtd {
        let libvirtd = require("libvirtd");
        for tool in ["virsh", "setpriv", "nsenter", "unshare"] {
            require(tool);
        }
        let layout = lay_out(dir, mode, policy);
        let log_path = dir.join("log");
        let log = UnixDatagram::bind(&log_path).unwrap();
        fs::set_permissions(&log_path, fs::Permissions::from_mode(0o666)).unwrap();
        log.set_nonblocking(true).unwrap();

        let mut cmd = ns.cmd("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            LAUNCH,
            "lab",
        ])
        .arg("env")
        .arg("-i")
        .arg(PATH)
        .args(layout.env(mode))
        .arg(&libvirtd)
        .env("LAB_DIR", dir)
        .env("LAB_UID", mode.uid().to_string())
        .stdout(Stdio::null())
        .stderr(fs::File::create(layout.daemon_dir.join("libvirtd.err")).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut d = Libvirtd {
            mode,
            daemon: Proc(child),
            log,
            syslog: Default::default(),
            dir: dir.to_owned(),
            layout,
        };
        let socket = match mode {
            Mode::System => dir.join("run/libvirt/libvirt-sock"),
            Mode::Session => d.layout.xdg_runtime.join("libvirt/libvirt-sock"),
        };
        let up = qemu::poll_every(Duration::from_millis(50), START_LIMIT, || {
            if let Some(st) = d.daemon.0.try_wait().unwrap() {
                panic!(
                    "libvirtd exited at start ({st}):\n{}\n{INSTALL_HINT}",
                    d.diagnostics()
                );
            }
            socket.exists().then_some(())
        });
        assert!(
            up.is_some(),
            "libvirtd made no socket {} within {START_LIMIT:?}:\n{}",
            socket.display(),
            d.diagnostics()
        );
        let version = d.virsh(&["version"]);
        assert!(
            version.code == Some(0) && version.stdout.contains("Running hypervisor: QEMU"),
            "libvirtd runs, but its QEMU driver does not answer: {version:?}\n{}\n{INSTALL_HINT}",
            d.diagnostics()
        );
        d
    }

    fn pid(&self) -> u32 {
        self.daemon.0.id()
    }

    /// `argv` in libvirtd's namespaces, as `uid` (0: root) with only PATH
    /// (and, for the session user, its XDG directories) in the environment.
    pub fn command(&self, uid: u32, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.pid()))
            .args(["--mount", "--net", "--"]);
        if uid != 0 {
            c.arg("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .args(["--init-groups", "--"]);
        }
        let mode = if uid == 0 {
            Mode::System
        } else {
            Mode::Session
        };
        c.args(["env", "-i", PATH])
            .args(self.layout.env(mode))
            .args(argv)
            .stdin(Stdio::null());
        c
    }

    /// `virsh -c URI ARGS` as the daemon's user.
    pub fn virsh(&self, args: &[&str]) -> Run {
        let uri = match self.mode {
            Mode::System => "qemu:///system",
            Mode::Session => "qemu:///session",
        };
        let mut argv = vec!["virsh", "-q", "-c", uri];
        argv.extend(args);
        Run::from(crate::common::sh(&mut self.command(self.mode.uid(), &argv)))
    }

    /// `virsh ARGS`, which must succeed; its stdout.
    #[track_caller]
    pub fn virsh_ok(&self, args: &[&str]) -> String {
        let run = self.virsh(args);
        assert_eq!(
            run.code,
            Some(0),
            "virsh {args:?} failed: {run:?}\n{}",
            self.diagnostics()
        );
        run.stdout
    }

    /// Every line received on the lab's /dev/log so far, without the
    /// `<PRI>` prefix, in order.
    pub fn syslog(&self) -> Vec<String> {
        let mut lines = self.syslog.borrow_mut();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.log.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    let line = text.split_once('>').map_or(&*text, |(_, rest)| rest);
                    lines.push(line.trim_end().to_owned());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading the lab's /dev/log: {e}"),
            }
        }
        lines.clone()
    }

    /// The syslog lines of `ident` (`kvmnet-ifup`, ...) that mention `tap=TAP `.
    pub fn kvmnet_lines(&self, ident: &str, tap: &str) -> Vec<String> {
        let (ident, tap) = (format!("{ident}["), format!("tap={tap} "));
        self.syslog()
            .into_iter()
            .filter(|l| l.starts_with(&ident) && l.contains(&tap))
            .collect()
    }

    /// QEMU's log of domain `name` (its command line and stderr).
    pub fn qemu_log(&self, name: &str) -> String {
        let dir = match self.mode {
            Mode::System => self.dir.join("libvirt/log/qemu"),
            Mode::Session => self.layout.home.join(".cache/libvirt/qemu/log"),
        };
        read(&dir.join(format!("{name}.log")))
    }

    /// libvirtd's own log (warnings and errors) and stderr.
    pub fn daemon_log(&self) -> String {
        read(&self.layout.daemon_dir.join("libvirtd.log"))
    }

    /// What a failure message shows about the daemon.
    pub fn diagnostics(&self) -> String {
        format!(
            "libvirtd log:\n{}\nlibvirtd stderr:\n{}",
            self.daemon_log(),
            read(&self.layout.daemon_dir.join("libvirtd.err"))
        )
    }
}

impl Layout {
    /// The environment of a process of `mode`'s user besides PATH: the
    /// session user's home and XDG directories (libvirt's ~/.config/libvirt,
    /// ~/.cache/libvirt and $XDG_RUNTIME_DIR/libvirt).
    fn env(&self, mode: Mode) -> Vec<String> {
        if mode == Mode::System {
            return Vec::new();
        }
        vec![
            format!("HOME={}", self.home.display()),
            format!("XDG_CONFIG_HOME={}", self.home.join(".config").display()),
            format!("XDG_CACHE_HOME={}", self.home.join(".cache").display()),
            format!("XDG_RUNTIME_DIR={}", self.xdg_runtime.display()),
        ]
    }
}

/// `<interface type='KIND'>` with the guest's `mac`, a virtio NIC and
/// `inner` (its source, target, scripts).
pub fn interface(kind: &str, mac: &str, inner: &str) -> String {
    format!(
        "<interface type='{kind}'><mac address='{mac}'/>{inner}<model type='virtio'/></interface>"
    )
}

/// A domain that boots from its one NIC `interface` (QEMU's iPXE, TCG),
/// without the devices libvirt would add by default that the guest does not
/// need.
pub fn domain_xml(name: &str, interface: &str) -> String {
    let emulator = qemu::find_program("qemu-system-x86_64");
    format!(
        "<domain type='qemu'>\n\
         \x20 <name>{name}</name>\n\
         \x20 <memory unit='MiB'>128</memory>\n\
         \x20 <vcpu>1</vcpu>\n\
         \x20 <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='network'/></os>\n\
         \x20 <devices>\n\
         \x20   <emulator>{}</emulator>\n\
         \x20   {interface}\n\
         \x20   <controller type='usb' model='none'/>\n\
         \x20   <memballoon model='none'/>\n\
         \x20 </devices>\n\
         </domain>\n",
        emulator.display()
    )
}

/// br0 (MTU 9000, one veth port) in a namespace of its own, optionally
/// dnsmasq on it, and libvirtd. Field order is drop order after [`Drop`]
/// has killed every process of the namespace: the daemon's handle, then
/// the files, then the namespace.
pub struct Lab {
    pub libvirtd: Libvirtd,
    dnsmasq: Option<Proc>,
    pub dir: TempDir,
    pub ns: Netns,
    /// Host paths libvirt would write on a machine set up for it, and
    /// whether each existed before the lab started.
    host_before: Vec<(PathBuf, bool)>,
}

/// Where system libvirtd writes on a host (and machined, cgroups) and where
/// the package's configuration lives: none of it may change.
const HOST_PATHS: [&str; 9] = [
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
    "/etc/libvirt/libvirtd.conf",
    "/etc/libvirt/qemu.conf",
    "/etc/libvirt/qemu",
    "/sys/fs/cgroup/machine",
    "/sys/fs/cgroup/cpu/machine",
];

impl Lab {
    pub fn new(mode: Mode, dhcp: bool, policy: &Policy) -> Lab {
        crate::common::require_root();
        let dnsmasq_bin = dhcp.then(|| qemu::find_program("dnsmasq"));
        qemu::find_program("qemu-system-x86_64");
        let host_before = HOST_PATHS
            .iter()
            .map(|p| (PathBuf::from(p), Path::new(p).exists()))
            .collect();
        let ns = bridge_ns();
        let dir = TempDir::new();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dnsmasq = dnsmasq_bin.map(|d| qemu::start_dnsmasq(&ns, &d, dir.path()));
        let libvirtd = Libvirtd::start(&ns, dir.path(), mode, policy);
        Lab {
            libvirtd,
            dnsmasq,
            dir,
            ns,
            host_before,
        }
    }

    /// Writes a domain's XML where the daemon's user can read it.
    pub fn xml_file(&self, name: &str, xml: &str) -> String {
        let p = self.dir.path().join(format!("{name}.xml"));
        write(&p, xml, 0o644, 0);
        p.display().to_string()
    }

    /// `virsh define` + `virsh start` of `xml` (domain `name`).
    pub fn define_and_start(&self, name: &str, xml: &str) -> Instant {
        let file = self.xml_file(name, xml);
        self.libvirtd.virsh_ok(&["define", &file]);
        let start = Instant::now();
        self.libvirtd.virsh_ok(&["start", name]);
        start
    }

    /// `virsh destroy` + `virsh undefine`; afterwards libvirt knows no
    /// domain.
    pub fn destroy_and_undefine(&self, name: &str) {
        self.libvirtd.virsh_ok(&["destroy", name]);
        self.libvirtd.virsh_ok(&["undefine", name]);
        let left = self.libvirtd.virsh_ok(&["list", "--all", "--name"]);
        assert_eq!(left.trim(), "", "domains left after undefine");
    }

    /// Waits until dnsmasq acknowledged a lease for the guest `mac` of
    /// domain `name` and wrote it to its lease file; returns the IP. Fails
    /// when the domain stops running first.
    pub fn wait_for_lease(&self, name: &str, mac: &str) -> String {
        let file = |f: &str| read(&self.dir.path().join(f));
        let mut checked = Instant::now();
        let ip = qemu::poll_every(Duration::from_millis(100), LEASE_LIMIT, || {
            if checked.elapsed() > Duration::from_secs(2) {
                checked = Instant::now();
                let state = self.libvirtd.virsh(&["domstate", name]);
                assert!(
                    state.stdout.trim() == "running",
                    "domain {name} is not running before its lease: {state:?}\nQEMU log:\n{}\n{}",
                    self.libvirtd.qemu_log(name),
                    self.libvirtd.diagnostics()
                );
            }
            qemu::acked_ip(&file("dnsmasq.log"), mac)
        });
        let Some(ip) = ip else {
            panic!(
                "no DHCPACK for {mac} within {LEASE_LIMIT:?}; br0 ports {:?}\ndnsmasq log:\n{}\n\
                 QEMU log:\n{}\n{}",
                self.ns.ports(BRIDGE),
                file("dnsmasq.log"),
                self.libvirtd.qemu_log(name),
                self.libvirtd.diagnostics()
            )
        };
        assert!(
            file("leases").contains(&format!("{mac} {ip} ")),
            "lease file lacks {mac} {ip}: {}",
            file("leases")
        );
        ip
    }

    /// br0's ports other than the lab's veth, sorted.
    pub fn guest_ports(&self) -> Vec<String> {
        let mut ports: Vec<String> = self
            .ns
            .ports(BRIDGE)
            .into_iter()
            .filter(|p| p != VETH)
            .collect();
        ports.sort();
        ports
    }

    /// Waits (5 s at most: the kernel removes a closed tap's port
    /// asynchronously) until br0 has no port but the veth and `tap` is gone.
    #[track_caller]
    pub fn assert_no_guest_port_left(&self, tap: &str) {
        let clean = qemu::poll_every(Duration::from_millis(50), Duration::from_secs(5), || {
            (self.guest_ports().is_empty() && !self.ns.exists(tap)).then_some(())
        });
        assert!(
            clean.is_some(),
            "br0 ports left: {:?}; {tap}: {:?}",
            self.guest_ports(),
            self.ns.link(tap)
        );
    }

    /// The processes in the namespace: libvirtd, dnsmasq and whatever they
    /// started (none when `ip` fails: [`Drop`] must not panic).
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.ns.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Only libvirtd and dnsmasq run: no QEMU, no helper left.
    #[track_caller]
    pub fn assert_only_daemons_run(&self) {
        let mut want = vec![self.libvirtd.pid()];
        want.extend(self.dnsmasq.iter().map(|p| p.0.id()));
        want.sort();
        let settled = qemu::poll_every(Duration::from_millis(50), Duration::from_secs(10), || {
            let mut pids = self.pids();
            pids.sort();
            (pids == want).then_some(())
        });
        let comm = |p: &u32| {
            read(Path::new(&format!("/proc/{p}/comm")))
                .trim()
                .to_owned()
        };
        assert!(
            settled.is_some(),
            "processes left in the namespace: {:?}, expected only libvirtd and dnsmasq {want:?}",
            self.pids().iter().map(|p| (p, comm(p))).collect::<Vec<_>>()
        );
    }

    /// Nothing libvirt writes on a host appeared or vanished outside the
    /// namespaces.
    #[track_caller]
    pub fn assert_host_untouched(&self) {
        for (p, existed) in &self.host_before {
            assert_eq!(
                p.exists(),
                *existed,
                "{} changed on the machine during the test",
                p.display()
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Every process of the lab is in the namespace: QEMU was daemonized
        // by libvirtd and is no child of ours. Kill them all and wait until
        // they are gone, so that no QEMU outlives the test or holds its files.
        use nix::sys::signal::{kill, Signal};
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
