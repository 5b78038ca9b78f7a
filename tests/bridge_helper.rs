//! `kvmnet-bridge-helper`, QEMU's `helper=` protocol, end to end.
//!
//! Three kinds of test, each in a network namespace of its own:
//!
//! - A fake QEMU side in Rust (fast): a unix socket pair, the helper run as
//!   root in the namespace with one end as `--fd=N`, the tap's descriptor
//!   received on the other end with `recvmsg` (SCM_RIGHTS, one byte), frames
//!   written into it and seen on another tap of the same bridge; then the
//!   descriptor is closed and the tap must vanish. Also every way the
//!   arguments or the descriptor can be wrong.
//! - The parent's reading order with stderr on a pipe: libvirt's (its
//!   stderr reader forced late, the error buffer read the moment the socket
//!   ends without a descriptor: the reason must already be in it) and
//!   QEMU's (receive, close, wait; stderr read meanwhile or after the exit).
//! - A real, unprivileged QEMU (`-netdev bridge,br=br0,helper=COPY`) run as
//!   the numeric uid 4242 inside a [`Jail`] (private mount namespace with an
//!   overlay /etc holding /etc/kvmnet/kvmnet.toml and /etc/qemu/bridge.conf),
//!   with a copy of the helper given `setcap cap_net_admin+ep` (or setuid
//!   root): a guest (QEMU's iPXE, TCG) gets a DHCP lease from dnsmasq on br0,
//!   and every ACL combination of kvmnet.toml and bridge.conf either admits
//!   QEMU or makes it fail to start with the helper's one line.
//!
//! The descriptors handed to the helper are created close-on-exec and made
//! inheritable only in the helper's own child (`pre_exec`): the tests run in
//! parallel, and an inheritable socket or tap descriptor would leak into
//! whatever another test spawns at that moment (a QEMU living for seconds),
//! keeping "closed" sockets open and "closed" taps alive.
//!
//! Needs root, qemu-system-x86_64 with the iPXE ROMs, dnsmasq, setcap,
//! unshare, nsenter and setpriv. Missing any of them is a failure, never a skip.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::qemu::{
    self, bridge_ns, find_program, proc_status, read, Proc, BRIDGE, BRIDGE_MAC, MTU, QEMU_ARGS,
    ROM_HINT, VETH,
};
use common::{
    lines_with, privileged_copy, recv_fds_once, spawn_inheriting, tap_of, tun_sysfs, Grant, Jail,
    Netns, Run, TempDir,
};

const HELPER: &str = env!("CARGO_BIN_EXE_kvmnet-bridge-helper");
const PROG: &str = "kvmnet-bridge-helper: ";
/// The unprivileged user QEMU runs as: numeric, no passwd entry needed.
const USER: u32 = 4242;

/// A helper run never takes longer than this (it is a few netlink calls).
const HELPER_LIMIT: Duration = Duration::from_secs(20);
/// QEMU's start (the helper included) or its exit after SIGTERM.
const QEMU_LIMIT: Duration = Duration::from_secs(30);
const LEASE_TIMEOUT: Duration = Duration::from_secs(60);

/// <linux/if_tun.h>
const IFF_TAP: u32 = libc::IFF_TAP as u32;
const IFF_PERSIST: u32 = libc::IFF_PERSIST as u32;
const IFF_NO_PI: u32 = libc::IFF_NO_PI as u32;
const IFF_VNET_HDR: u32 = libc::IFF_VNET_HDR as u32;
/// sizeof(struct virtio_net_hdr): what a tap with IFF_VNET_HDR expects in
/// front of every frame unless TUNSETVNETHDRSZ changed it.
const VNET_HDR_LEN: usize = 10;

// ---------------------------------------------------------------------------
// Shared helpers

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    qemu::poll_every(Duration::from_millis(20), limit, f)
}

/// What the helper must have made: a non-persistent tap of `owner` on br0,
/// up, with br0's MTU and an `fe:` MAC, and br0 unchanged.
#[track_caller]
fn assert_helper_tap(ns: &Netns, tap: &str, owner: u32, vnet: bool) {
    let s = ns
        .state(tap)
        .unwrap_or_else(|| panic!("tap {tap} does not exist"));
    assert_eq!(s.master.as_deref(), Some(BRIDGE), "{tap}: {s:?}");
    assert!(s.up, "{tap} not up: {s:?}");
    assert_eq!(s.mtu, MTU, "{tap} must have br0's MTU: {s:?}");
    assert!(s.mac.starts_with("fe:"), "{tap} MAC must start fe: {s:?}");
    let (flags, uid) = tun_sysfs(ns, tap);
    assert_eq!(flags & IFF_TAP, IFF_TAP, "{tap} is not a tap: {flags:#x}");
    assert_eq!(flags & IFF_PERSIST, 0, "{tap} must not persist: {flags:#x}");
    assert_eq!(
        flags & IFF_VNET_HDR != 0,
        vnet,
        "{tap} IFF_VNET_HDR (--use-vnet given: {vnet}): {flags:#x}"
    );
    assert_eq!(uid, Some(owner), "{tap} owner");
    let br = ns.state(BRIDGE).unwrap();
    assert_eq!((br.mtu, br.mac.as_str()), (MTU, BRIDGE_MAC), "br0: {br:?}");
}

// ---------------------------------------------------------------------------
// The fake QEMU side

/// QEMU's end of the socket pair (a helper that sends nothing cannot hang
/// the test beyond this) and the helper's end; see [`common::socket_pair`].
fn socket_pair() -> (UnixStream, OwnedFd) {
    common::socket_pair(Duration::from_secs(5))
}

/// Runs `cmd` with the descriptors `pass` inherited (at their numbers), like
/// QEMU's fork + exec. They are made inheritable only in this child, between
/// fork and exec; the parent's copies are closed right after the spawn. The
/// run is bounded by [`HELPER_LIMIT`] (killed and failed after that).
/// Its output is read while it runs, as a terminal or QEMU's log reader
/// would: a refusal waits for its line to be read (see
/// [`libvirt_reads_the_reason_even_when_its_stderr_reader_is_late`]).
fn run_bounded(mut cmd: Command, pass: Vec<OwnedFd>) -> Run {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_inheriting(&mut cmd, pass);
    let stdout = read_meanwhile(child.stdout.take().unwrap());
    let stderr = read_meanwhile(child.stderr.take().unwrap());
    let status = poll(HELPER_LIMIT, || child.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} still running after {HELPER_LIMIT:?}; killed");
    };
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Reads `from` to its end on a thread of its own.
fn read_meanwhile(from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || std::io::read_to_string(from).unwrap())
}

/// The helper as root in `ns` (through `ip netns exec`, which keeps inherited
/// descriptors), with `config` as its kvmnet.toml (none: a path that does not
/// exist, i.e. built-in defaults).
fn helper_cmd(ns: &Netns, config: Option<&Path>) -> Command {
    let mut c = ns.cmd(HELPER);
    c.env_remove("SUDO_UID").env_remove("SUDO_GID").env(
        "KVMNET_CONFIG",
        config.unwrap_or(Path::new("/nonexistent/kvmnet.toml")),
    );
    c
}

/// The helper sent nothing and closed its end: EOF, no descriptor.
#[track_caller]
fn assert_nothing_sent(sock: &UnixStream, what: &str) {
    let (bytes, fds) = recv_fds_once(sock);
    assert!(
        bytes.is_empty() && fds.is_empty(),
        "{what}: QEMU's end got {} bytes and {} fds, expected EOF",
        bytes.len(),
        fds.len()
    );
}

/// One complete exchange, as QEMU does it: exactly one descriptor with a
/// one-byte payload, then EOF; the helper exited 0. Returns the tap's name
/// and its queue (non-blocking, as QEMU sets it).
fn receive_tap(sock: &UnixStream, run: &Run) -> (String, File) {
    assert_eq!(run.code, Some(0), "helper failed: {run:?}");
    assert!(run.stdout.is_empty(), "helper wrote to stdout: {run:?}");
    let (bytes, mut fds) = recv_fds_once(sock);
    assert_eq!(bytes.len(), 1, "payload must be one byte: {bytes:?}");
    assert_eq!(fds.len(), 1, "exactly one descriptor");
    assert_nothing_sent(sock, "after the descriptor");
    let fd = fds.pop().unwrap();
    let (name, flags) = tap_of(&fd);
    assert_eq!(
        flags & (IFF_TAP | IFF_NO_PI),
        IFF_TAP | IFF_NO_PI,
        "{name}: {flags:#x}"
    );
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).unwrap());
    fcntl(&fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).unwrap();
    // The success line goes to syslog when there is one, else to stderr.
    if !Path::new("/dev/log").exists() {
        let want = format!("tap={name} bridge={BRIDGE} mtu={MTU} user=0 result=sent-to-qemu");
        assert!(run.stderr.contains(&want), "{want:?} in {:?}", run.stderr);
    }
    (name, File::from(fd))
}

/// Writes a broadcast frame with `marker` into `from` (with an empty virtio
/// header when the tap has IFF_VNET_HDR) and asserts it arrives at `to`.
#[track_caller]
fn assert_frame_crosses(from: (&str, &mut File, bool), to: (&str, &mut File), marker: &[u8]) {
    let (from_name, from_file, vnet) = from;
    let mut frame = if vnet {
        vec![0; VNET_HDR_LEN]
    } else {
        Vec::new()
    };
    frame.extend(common::broadcast_frame(
        [0x02, 0, 0, 0x4b, 0x42, 0x01],
        marker,
    ));
    from_file.write_all(&frame).expect("writing into the tap");
    let frames = common::read_frames(to.1, Duration::from_millis(700));
    assert!(
        common::seen(&frames, marker),
        "frame written into {from_name} not seen on {} ({} other frames)",
        to.0,
        frames.len()
    );
}

#[test]
fn fake_qemu_receives_taps_that_forward_on_the_bridge_and_vanish_on_close() {
    let started = Instant::now();
    let ns = bridge_ns();
    let links_before = ns.all_links();

    // QEMU's execv form: HELPER --use-vnet --fd=N --br=BR
    let (qa, ha) = socket_pair();
    let mut c = helper_cmd(&ns, None);
    c.args(["--use-vnet", &format!("--fd={}", ha.as_raw_fd())])
        .arg(format!("--br={BRIDGE}"));
    let run = run_bounded(c, vec![ha]);
    let (a, mut fa) = receive_tap(&qa, &run);

    // QEMU's sh -c form for helper="HELPER --br=br0": the user's --br first,
    // no --br= appended by QEMU (hence the trailing space).
    let (qb, hb) = socket_pair();
    let line = format!("{HELPER} --br={BRIDGE} --use-vnet --fd={} ", hb.as_raw_fd());
    let mut c = ns.cmd("/bin/sh");
    c.args(["-c", &line])
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .env("KVMNET_CONFIG", "/nonexistent/kvmnet.toml");
    let run = run_bounded(c, vec![hb]);
    let (b, mut fb) = receive_tap(&qb, &run);

    // Without --use-vnet: no virtio header on the tap.
    let (qc, hc) = socket_pair();
    let mut c = helper_cmd(&ns, None);
    c.arg(format!("--fd={}", hc.as_raw_fd()))
        .arg(format!("--br={BRIDGE}"));
    let run = run_bounded(c, vec![hc]);
    let (cn, mut fc) = receive_tap(&qc, &run);

    let mut names = vec![a.clone(), b.clone(), cn.clone()];
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "three distinct taps: {a} {b} {cn}");
    assert_helper_tap(&ns, &a, 0, true);
    assert_helper_tap(&ns, &b, 0, true);
    assert_helper_tap(&ns, &cn, 0, false);
    let mut ports = ns.ports(BRIDGE);
    ports.sort();
    let mut want = vec![a.clone(), b.clone(), cn.clone(), VETH.to_owned()];
    want.sort();
    assert_eq!(ports, want, "br0 ports");

    // The received descriptors are the taps' queues: a frame the "guest"
    // writes into one reaches the others through br0.
    let marker_a = format!("kvmnet-helper-from-a-{}", std::process::id());
    assert_frame_crosses((&a, &mut fa, true), (&b, &mut fb), marker_a.as_bytes());
    let marker_c = format!("kvmnet-helper-from-c-{}", std::process::id());
    assert_frame_crosses((&cn, &mut fc, false), (&a, &mut fa), marker_c.as_bytes());
    assert_frame_crosses((&b, &mut fb, true), (&cn, &mut fc), b"kvmnet-helper-from-b");

    // Closing the only descriptor removes the tap and its port: nothing is
    // left behind (there is no downscript in this mode).
    drop(fa);
    let gone = poll(Duration::from_secs(5), || (!ns.exists(&a)).then_some(()));
    assert!(gone.is_some(), "{a} still exists after close");
    assert!(ns.exists(&b) && ns.exists(&cn));
    drop((fb, fc));
    let clean = poll(Duration::from_secs(5), || {
        (ns.all_links() == links_before).then_some(())
    });
    assert!(
        clean.is_some(),
        "links after closing every tap: {:?}, before: {links_before:?}",
        ns.all_links()
    );
    assert_eq!(ns.ports(BRIDGE), vec![VETH.to_owned()]);
    eprintln!(
        "bridge helper, fake QEMU: taps {a} {b} {cn} received, frames crossed, all gone; {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// What to hand the helper as its descriptor.
#[derive(Debug, Clone, Copy)]
enum Give {
    /// Nothing (the arguments are wrong before any descriptor matters).
    Nothing,
    /// One end of a unix stream pair, as QEMU does; the other end must see
    /// EOF and nothing else.
    Socket,
    /// A regular file.
    File,
    /// A unix datagram socket.
    UnixDgram,
    /// A UDP socket.
    Udp,
    /// A TCP (AF_INET stream) socket.
    Tcp,
}

#[test]
fn fake_qemu_bad_arguments_and_descriptors_fail_with_one_line_and_leave_nothing() {
    let started = Instant::now();
    let ns = bridge_ns();
    let dir = TempDir::new();
    let links_before = ns.all_links();
    let br = format!("--br={BRIDGE}");
    let long = format!("--br={}", "b".repeat(20));
    let veth = format!("--br={VETH}");
    let not_a_bridge = format!("QEMU's br={VETH} is a veth device, not a bridge");
    fn case(args: &[&str], give: Give, needle: &str) -> (Vec<String>, Give, String) {
        let args = args.iter().map(|a| a.to_string()).collect();
        (args, give, needle.to_owned())
    }
    let cases = vec![
        case(
            &["--frobnicate"],
            Give::Nothing,
            "unexpected argument \"--frobnicate\"",
        ),
        case(
            &["--use-vnet", "--fd={fd}"],
            Give::Socket,
            "--br=BRIDGE is missing",
        ),
        case(&["--use-vnet", &br], Give::Nothing, "--fd=N is missing"),
        case(
            &["--fd=x", &br],
            Give::Nothing,
            "--fd=x: not a descriptor number above 2",
        ),
        case(
            &["--fd=2", &br],
            Give::Nothing,
            "--fd=2: not a descriptor number above 2",
        ),
        case(
            &["--fd=-1", &br],
            Give::Nothing,
            "not a descriptor number above 2",
        ),
        case(
            &["--fd={fd}", &br, "--br=br1"],
            Give::Socket,
            "unexpected argument \"--br=br1\"",
        ),
        case(
            &["--fd={fd}", &br, "--fd=7"],
            Give::Socket,
            "unexpected argument \"--fd=7\"",
        ),
        // A number that is not open in the helper.
        case(
            &["--fd=900", &br],
            Give::Nothing,
            "--fd=900: not an open descriptor",
        ),
        case(&["--fd={fd}", &br], Give::File, ": not a socket"),
        case(
            &["--fd={fd}", &br],
            Give::UnixDgram,
            ": not a unix stream socket",
        ),
        case(&["--fd={fd}", &br], Give::Udp, ": not a unix stream socket"),
        case(&["--fd={fd}", &br], Give::Tcp, ": not a unix stream socket"),
        // CVE-2019-13164: a bridge name longer than IFNAMSIZ.
        case(
            &["--fd={fd}", &long],
            Give::Socket,
            "Linux allows at most 15",
        ),
        case(&["--fd={fd}", "--br=br0;x"], Give::Socket, "contains"),
        case(
            &["--fd={fd}", "--br=nobr"],
            Give::Socket,
            "QEMU's br=nobr does not exist; the bridge helper never creates bridges",
        ),
        case(&["--fd={fd}", &veth], Give::Socket, &not_a_bridge),
    ];
    let mut report = Vec::new();
    for (args, give, needle) in &cases {
        let mut keep_peer = None;
        let mut pass = Vec::new();
        match give {
            Give::Nothing => {}
            Give::Socket => {
                let (q, h) = socket_pair();
                keep_peer = Some(q);
                pass.push(h);
            }
            Give::File => {
                let p = dir.path().join("regular");
                std::fs::write(&p, "x").unwrap();
                pass.push(OwnedFd::from(File::open(&p).unwrap()));
            }
            Give::UnixDgram => {
                let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
                pass.push(OwnedFd::from(a));
            }
            Give::Udp => {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                pass.push(OwnedFd::from(s));
            }
            Give::Tcp => {
                let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                pass.push(OwnedFd::from(s));
            }
        }
        let fd = pass.first().map(|f| f.as_raw_fd().to_string());
        let argv: Vec<String> = args
            .iter()
            .map(|a| a.replace("{fd}", fd.as_deref().unwrap_or("?")))
            .collect();
        let mut c = helper_cmd(&ns, None);
        c.args(&argv);
        let run = run_bounded(c, pass);
        let what = format!("{argv:?} with {give:?}");
        assert_eq!(run.code, Some(1), "{what}: {run:?}");
        assert!(run.stdout.is_empty(), "{what}: {run:?}");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line expected: {run:?}");
        assert!(
            lines[0].starts_with(PROG) && lines[0].contains(needle.as_str()),
            "{what}: expected {needle:?} in {:?}",
            lines[0]
        );
        if let Some(q) = &keep_peer {
            assert_nothing_sent(q, &what);
        }
        assert_eq!(ns.all_links(), links_before, "{what}: links changed");
        assert_eq!(ns.ports(BRIDGE), vec![VETH.to_owned()], "{what}");
        report.push(lines[0].to_owned());
    }
    eprintln!(
        "bridge helper: {} refusals in {:.2} s, e.g.\n  {}",
        cases.len(),
        started.elapsed().as_secs_f64(),
        report.join("\n  ")
    );
}

#[test]
fn help_and_version_exit_0() {
    for arg in ["--help", "-h"] {
        let r = Run::from(common::sh(Command::new(HELPER).arg(arg)));
        r.ok();
        assert!(
            r.stdout
                .starts_with("usage: kvmnet-bridge-helper [--use-vnet] --br=BRIDGE --fd=UNIXFD"),
            "{r:?}"
        );
        assert!(r.stderr.is_empty(), "{r:?}");
    }
    for arg in ["--version", "-V"] {
        let r = Run::from(common::sh(Command::new(HELPER).arg(arg)));
        r.ok();
        assert_eq!(
            r.stdout.trim(),
            format!("kvmnet-bridge-helper {}", env!("CARGO_PKG_VERSION")),
            "{r:?}"
        );
    }
}

/// QEMU died (closed its end) before the helper could send: EPIPE, not
/// SIGPIPE; the helper says so in one line and the tap it made is gone.
#[test]
fn fake_qemu_gone_before_the_send_fails_cleanly_and_leaves_no_tap() {
    let ns = bridge_ns();
    let links_before = ns.all_links();
    let (q, h) = socket_pair();
    drop(q);
    let mut c = helper_cmd(&ns, None);
    c.args(["--use-vnet", &format!("--fd={}", h.as_raw_fd())])
        .arg(format!("--br={BRIDGE}"));
    let run = run_bounded(c, vec![h]);
    run.fails_with("cannot send the tap to QEMU over its socket: broken pipe");
    assert!(run.stderr.starts_with(PROG), "{run:?}");
    let clean = poll(Duration::from_secs(5), || {
        (ns.all_links() == links_before).then_some(())
    });
    assert!(clean.is_some(), "links left: {:?}", ns.all_links());
    assert_eq!(ns.ports(BRIDGE), vec![VETH.to_owned()]);
    eprintln!("bridge helper, QEMU gone: {}", run.stderr.trim());
}

/// `helper_tap` in kvmnet.toml names the taps the helper makes.
#[test]
fn fake_qemu_tap_name_follows_helper_tap() {
    let ns = bridge_ns();
    let dir = TempDir::new();
    let config = dir.config("helper_tap = \"vmh%d\"\n");
    let (q, h) = socket_pair();
    let mut c = helper_cmd(&ns, Some(&config));
    c.args(["--use-vnet", &format!("--fd={}", h.as_raw_fd())])
        .arg(format!("--br={BRIDGE}"));
    let run = run_bounded(c, vec![h]);
    let (name, f) = receive_tap(&q, &run);
    assert_eq!(name, "vmh0");
    assert_helper_tap(&ns, &name, 0, true);
    drop(f);
    let gone = poll(Duration::from_secs(5), || (!ns.exists(&name)).then_some(()));
    assert!(gone.is_some(), "{name} still exists after close");
}

/// The bridge helper's taps get the guard too (a `match_bridge` rule names
/// the guests' MACs: the helper learns no tap name in advance). Its taps
/// have no downscript: the checks go with a tap when QEMU closes it; a
/// `rate_in` limit chain that outlives it (this kernel keeps a netdev chain
/// past its device) is removed by the next run with a limit.
#[test]
fn helper_taps_are_guarded_and_a_gone_taps_guard_is_collected() {
    let ns = bridge_ns();
    let dir = TempDir::new();
    let config = dir.config(&format!(
        "helper_tap = \"vmh%d\"\n[[rule]]\nmatch_bridge = \"{BRIDGE}\"\nguard = true\n\
         guest_mac = [\"52:54:00:12:34:56\", \"52:54:00:12:34:57\"]\nrate_in = \"100mbit\"\n"
    ));
    let helper = || {
        let (q, h) = socket_pair();
        let mut c = helper_cmd(&ns, Some(&config));
        c.arg(format!("--fd={}", h.as_raw_fd()))
            .arg(format!("--br={BRIDGE}"));
        let run = run_bounded(c, vec![h]);
        receive_tap(&q, &run)
    };
    let (first, f) = helper();
    let index = |name: &str| ns.link(name).unwrap()["ifindex"].as_u64().unwrap();
    let first_index = index(&first);
    assert_eq!(ns.checks(&first), "on");
    assert_eq!(ns.guards(), format!("tap-{first_index}"));
    drop(f);
    let gone = poll(Duration::from_secs(5), || {
        (!ns.exists(&first)).then_some(())
    });
    assert!(gone.is_some(), "{first} still exists after close");
    let left = || ns.guard_left(first_index as u32, "52:54:00:12:34:56");
    // Each run with a limit collects one time in 16: the bound on what gone
    // helper taps leave.
    let mut held = Vec::new();
    while left() {
        assert!(
            held.len() < 300,
            "300 guarded runs did not collect the chain"
        );
        held.push(helper());
    }
    eprintln!("collected after {} helper runs", held.len());
    for (name, _) in &held {
        let own = format!("tap-{}", index(name));
        assert!(
            ns.guards().lines().any(|l| l == own),
            "{name} lost its limit"
        );
        assert_eq!(ns.checks(name), "on", "{name} lost its checks");
    }
}

// ---------------------------------------------------------------------------
// The parent's reading order: libvirt's and QEMU's, with stderr on a pipe

/// How late the libvirt-like parent's stderr reader is in
/// [`libvirt_parent`]: far longer than a helper needs between its line and
/// its exit, and well inside the helper's wait for its reader.
fn late_reader() -> Duration {
    kvmnet::bridge_helper::READER_WAIT / 4
}

/// What a libvirt-like parent saw of one helper run.
struct LibvirtSaw {
    /// The descriptor, when one came.
    fd: Option<OwnedFd>,
    /// The error buffer as libvirt reads it for its message: when the socket
    /// ended without a descriptor, right after virCommandAbort; after a
    /// descriptor, everything (virCommandWait joins the reader).
    errbuf: String,
    /// Nothing held the helper's stderr open any more when the socket ended.
    stderr_closed_first: bool,
    status: ExitStatus,
}

/// Runs the helper as libvirt 9.0 does in `qemuCreateInBridgePortWithHelper`
/// (src/qemu/qemu_interface.c): stdout on /dev/null, stderr on a pipe that
/// `virCommandDoAsyncIO` has a thread of its own drain into the error buffer
/// (`virCommandProcessIO`, src/util/vircommand.c), while the calling thread
/// blocks in `virSocketRecvFD`. When that returns no descriptor, libvirt
/// calls `virCommandAbort` (`virProcessAbort`: reap if the child has ended,
/// else SIGTERM, a pause, reap, else SIGKILL) and then reads the buffer once,
/// as it is, for "failed to communicate with bridge helper". With a
/// descriptor it calls `virCommandWait`, which joins the reader.
///
/// The race libvirt leaves open is forced to its worst side: the reader
/// starts reading only once the buffer has been read for the message, or
/// [`late_reader`] after the pipe became readable, whichever comes first; a
/// helper that lets its socket end before its reader had its line loses the
/// line every time.
fn libvirt_parent(mut cmd: Command, pass: Vec<OwnedFd>, sock: &UnixStream) -> LibvirtSaw {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::sync::{mpsc, Arc, Mutex};
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = spawn_inheriting(&mut cmd, pass);
    let err = OwnedFd::from(child.stderr.take().unwrap());
    let watch = err.try_clone().unwrap();
    let errbuf = Arc::new(Mutex::new(Vec::new()));
    let (go, late) = mpsc::channel::<()>();
    let late_by = late_reader();
    let reader = {
        let errbuf = Arc::clone(&errbuf);
        std::thread::spawn(move || {
            let mut readable = [PollFd::new(err.as_fd(), PollFlags::POLLIN)];
            nix::poll::poll(&mut readable, PollTimeout::NONE).unwrap();
            let _ = late.recv_timeout(late_by);
            let mut err = File::from(err);
            let mut chunk = [0u8; 1024];
            loop {
                match err.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => errbuf.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("reading the helper's stderr: {e}"),
                }
            }
        })
    };
    let (bytes, mut fds) = recv_fds_once(sock);
    if fds.is_empty() {
        assert!(bytes.is_empty(), "bytes without a descriptor: {bytes:?}");
        let mut hup = [PollFd::new(watch.as_fd(), PollFlags::empty())];
        nix::poll::poll(&mut hup, PollTimeout::ZERO).unwrap();
        let stderr_closed_first = hup[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP));
        let status = virprocess_abort(&mut child);
        let seen = errbuf.lock().unwrap().clone();
        let _ = go.send(());
        reader.join().unwrap();
        return LibvirtSaw {
            fd: None,
            errbuf: String::from_utf8_lossy(&seen).into_owned(),
            stderr_closed_first,
            status,
        };
    }
    assert_eq!((bytes.len(), fds.len()), (1, 1), "one byte, one descriptor");
    let status = child.wait().unwrap();
    drop(go);
    reader.join().unwrap();
    let all = errbuf.lock().unwrap().clone();
    LibvirtSaw {
        fd: fds.pop(),
        errbuf: String::from_utf8_lossy(&all).into_owned(),
        stderr_closed_first: true,
        status,
    }
}

/// libvirt 9.0's `virProcessAbort` (src/util/virprocess.c).
fn virprocess_abort(child: &mut std::process::Child) -> ExitStatus {
    if let Some(ended) = child.try_wait().unwrap() {
        return ended;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(10));
    if let Some(ended) = child.try_wait().unwrap() {
        return ended;
    }
    let _ = child.kill();
    child.wait().unwrap()
}

/// libvirt's argument order: `--use-vnet --br=BR --fd=N`.
fn libvirt_cmd(ns: &Netns, br: &str, fd: &OwnedFd) -> Command {
    let mut c = helper_cmd(ns, None);
    c.args(["--use-vnet", &format!("--br={br}")])
        .arg(format!("--fd={}", fd.as_raw_fd()));
    c
}

#[test]
fn libvirt_reads_the_reason_even_when_its_stderr_reader_is_late() {
    let ns = bridge_ns();
    let links_before = ns.all_links();
    // A refusal at run time, and one of the arguments (a bridge name from
    // the domain XML that cannot exist): the socket outlives both lines.
    for (br, needle) in [
        ("nobr", "QEMU's br=nobr does not exist"),
        ("averyveryverylongbridge", "Linux allows at most 15"),
    ] {
        let (q, h) = socket_pair();
        let c = libvirt_cmd(&ns, br, &h);
        let saw = libvirt_parent(c, vec![h], &q);
        let libvirt_says = format!(
            "failed to communicate with bridge helper: {}: Transport endpoint is not connected",
            if saw.errbuf.is_empty() {
                String::new()
            } else {
                format!("stderr={}", saw.errbuf.trim_end())
            }
        );
        assert!(saw.fd.is_none(), "{br}: a descriptor was sent");
        let lines: Vec<&str> = saw.errbuf.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with(PROG) && lines[0].contains(needle),
            "{br}: libvirt's error would read {libvirt_says:?}; expected {needle:?} in it"
        );
        assert!(
            saw.stderr_closed_first,
            "{br}: the socket ended while the helper still held its stderr"
        );
        assert_eq!(saw.status.code(), Some(1), "{br}: {}", saw.status);
        assert_eq!(ns.all_links(), links_before, "{br}: links changed");
        eprintln!("bridge helper, libvirt's order (reader late): {libvirt_says}");
    }

    // Admitted: the descriptor, exit 0, and nothing waited for.
    let (q, h) = socket_pair();
    let c = libvirt_cmd(&ns, BRIDGE, &h);
    let saw = libvirt_parent(c, vec![h], &q);
    assert!(saw.status.success(), "{saw:?}");
    let fd = saw.fd.expect("a descriptor");
    let (tap, _) = tap_of(&fd);
    assert_helper_tap(&ns, &tap, 0, true);
    drop(fd);
    let clean = poll(Duration::from_secs(5), || {
        (ns.all_links() == links_before).then_some(())
    });
    assert!(clean.is_some(), "links left: {:?}", ns.all_links());
}

impl std::fmt::Debug for LibvirtSaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtSaw")
            .field("fd", &self.fd.is_some())
            .field("errbuf", &self.errbuf)
            .field("stderr_closed_first", &self.stderr_closed_first)
            .field("status", &self.status)
            .finish()
    }
}

/// QEMU's `net_bridge_run_helper` (net/tap.c): receive (again on EINTR),
/// close its end, wait for the helper; stderr is inherited, here a pipe,
/// read meanwhile (a terminal, QEMU's log reader) or only once the helper
/// has exited (a reader that never comes in time).
fn qemu_parent(
    mut cmd: Command,
    pass: Vec<OwnedFd>,
    sock: UnixStream,
    read_meanwhile_: bool,
) -> (Option<OwnedFd>, ExitStatus, String) {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = spawn_inheriting(&mut cmd, pass);
    let err = child.stderr.take().unwrap();
    let (meanwhile, after) = if read_meanwhile_ {
        (Some(read_meanwhile(err)), None)
    } else {
        (None, Some(err))
    };
    let (_, mut fds) = recv_fds_once(&sock);
    drop(sock);
    let status = child.wait().unwrap();
    let stderr = match (meanwhile, after) {
        (Some(t), _) => t.join().unwrap(),
        (_, Some(err)) => std::io::read_to_string(err).unwrap(),
        _ => unreachable!(),
    };
    (fds.pop(), status, stderr)
}

#[test]
fn qemu_order_with_stderr_on_a_pipe_admits_and_refuses_as_before() {
    let ns = bridge_ns();
    let links_before = ns.all_links();
    let qemu_cmd = |br: &str, fd: &OwnedFd| {
        let mut c = helper_cmd(&ns, None);
        c.args(["--use-vnet", &format!("--fd={}", fd.as_raw_fd())])
            .arg(format!("--br={br}"));
        c
    };

    let (q, h) = socket_pair();
    let (fd, status, err) = qemu_parent(qemu_cmd(BRIDGE, &h), vec![h], q, true);
    assert!(status.success(), "{status}: {err}");
    let fd = fd.expect("a descriptor");
    let (tap, _) = tap_of(&fd);
    assert_helper_tap(&ns, &tap, 0, true);
    drop(fd);

    // Refused, with stderr read meanwhile, and with stderr read by nobody
    // until the helper has exited: it does not wait for ever for a reader.
    for meanwhile in [true, false] {
        let (q, h) = socket_pair();
        let (fd, status, err) = qemu_parent(qemu_cmd("nobr", &h), vec![h], q, meanwhile);
        assert!(fd.is_none(), "a descriptor was sent");
        assert_eq!(status.code(), Some(1), "{status}: {err}");
        Run {
            code: Some(1),
            stdout: String::new(),
            stderr: err,
        }
        .fails_with("QEMU's br=nobr does not exist");
    }
    let clean = poll(Duration::from_secs(5), || {
        (ns.all_links() == links_before).then_some(())
    });
    assert!(clean.is_some(), "links left: {:?}", ns.all_links());
}

// ---------------------------------------------------------------------------
// A real, unprivileged QEMU

/// br0 in its own namespace, optionally dnsmasq on it, and at most one QEMU
/// at a time. Field order is drop order: processes die first, then the jail
/// and the files go, then the namespace.
struct Lab {
    qemu: Option<Proc>,
    dnsmasq: Option<Proc>,
    jail: Option<Jail>,
    dir: TempDir,
    ns: Netns,
    qemu_bin: PathBuf,
    links_before: Vec<String>,
}

impl Lab {
    fn new(dhcp: bool) -> Lab {
        common::require_root();
        let qemu_bin = find_program("qemu-system-x86_64");
        let dnsmasq = dhcp.then(|| find_program("dnsmasq"));
        for tool in ["setcap", "unshare", "nsenter", "setpriv"] {
            find_program(tool);
        }
        let ns = bridge_ns();
        let links_before = ns.all_links();
        let mut lab = Lab {
            qemu: None,
            dnsmasq: None,
            jail: None,
            dir: TempDir::new(),
            ns,
            qemu_bin,
            links_before,
        };
        if let Some(d) = dnsmasq {
            lab.dnsmasq = Some(qemu::start_dnsmasq(&lab.ns, &d, lab.dir.path()));
        }
        lab
    }

    fn file(&self, name: &str) -> String {
        read(&self.dir.path().join(name))
    }

    /// A copy of the helper with `grant`, in the lab's directory.
    fn helper(&self, grant: Grant) -> PathBuf {
        privileged_copy(self.dir.path(), HELPER, grant)
    }

    /// Starts QEMU as `jail`'s user inside the namespace, with
    /// `-netdev bridge,id=n0,br=br0,helper=HELPER`; stderr to qemu.err.
    fn start_qemu(&mut self, jail: Jail, mac: &str, helper: &str) -> Instant {
        assert!(self.qemu.is_none(), "one QEMU at a time");
        let netdev = format!("bridge,id=n0,br={BRIDGE},helper={helper}");
        let device = format!("virtio-net-pci,netdev=n0,mac={mac}");
        let mut argv = vec![self.qemu_bin.to_str().unwrap()];
        argv.extend(QEMU_ARGS);
        argv.extend(["-netdev", &netdev, "-device", &device]);
        let mut cmd = jail.command(&self.ns, &argv);
        let (child, start) = qemu::spawn_qemu(&mut cmd, self.dir.path());
        self.qemu = Some(Proc(child));
        self.jail = Some(jail);
        start
    }

    fn qemu_stderr(&self) -> String {
        self.file("qemu.err")
    }

    fn qemu_exited(&mut self) -> Option<ExitStatus> {
        self.qemu.as_mut().unwrap().0.try_wait().unwrap()
    }

    /// Waits (bounded) until QEMU has exited.
    fn wait_qemu(&mut self, limit: Duration) -> ExitStatus {
        qemu::wait_exit(&mut self.qemu.as_mut().unwrap().0, limit).unwrap_or_else(|| {
            panic!(
                "QEMU still running after {limit:?}; stderr:\n{}",
                self.qemu_stderr()
            )
        })
    }

    /// QEMU's pid once the jail's chain of execs has reached it.
    fn qemu_pid(&mut self) -> u32 {
        qemu::qemu_pid(&self.qemu.as_ref().unwrap().0, || self.qemu_stderr())
    }

    /// The helper's tap on br0, once it is there (QEMU must still run).
    fn wait_for_tap(&mut self) -> String {
        let tap = poll(QEMU_LIMIT, || {
            if let Some(st) = self.qemu_exited() {
                panic!(
                    "QEMU exited before its tap appeared on br0 ({st}); stderr:\n{}\n{ROM_HINT}",
                    self.qemu_stderr()
                );
            }
            self.ns.ports(BRIDGE).into_iter().find(|p| p != VETH)
        });
        tap.unwrap_or_else(|| {
            panic!(
                "no tap on br0 {QEMU_LIMIT:?} after QEMU's start; stderr:\n{}",
                self.qemu_stderr()
            )
        })
    }

    /// The helper's one line on QEMU's stderr (the jail has no /dev/log).
    fn helper_line(&self) -> String {
        let line = poll(Duration::from_secs(5), || {
            let err = self.qemu_stderr();
            let ours = lines_with(&err, PROG);
            (!ours.is_empty()).then(|| {
                assert_eq!(ours.len(), 1, "one helper line expected:\n{err}");
                ours[0].to_owned()
            })
        });
        line.unwrap_or_else(|| panic!("no helper line in QEMU's stderr:\n{}", self.qemu_stderr()))
    }

    /// Waits until dnsmasq acknowledged a lease for `mac`; returns the IP.
    fn wait_for_lease(&mut self, mac: &str) -> String {
        let ns = &self.ns;
        qemu::wait_for_lease(
            &mut self.qemu.as_mut().unwrap().0,
            self.dir.path(),
            mac,
            LEASE_TIMEOUT,
            "",
            || format!("br0 ports: {:?}\n", ns.ports(BRIDGE)),
        )
    }

    /// SIGTERM: QEMU exits cleanly and closes the tap, once its SIGTERM
    /// handler is installed (see [`qemu::wait_for_sigterm_handler`]).
    fn stop_qemu(&mut self) -> ExitStatus {
        let pid = self.qemu_pid();
        qemu::wait_for_sigterm_handler(pid, QEMU_LIMIT, || self.qemu_stderr());
        qemu::sigterm(pid);
        self.wait_qemu(QEMU_LIMIT)
    }

    /// After QEMU is gone: no tap, br0 as before, nothing running but dnsmasq.
    #[track_caller]
    fn assert_clean(&mut self) {
        let clean = poll(Duration::from_secs(5), || {
            (self.ns.all_links() == self.links_before).then_some(())
        });
        assert!(
            clean.is_some(),
            "links after QEMU: {:?}, before: {:?}",
            self.ns.all_links(),
            self.links_before
        );
        assert_eq!(self.ns.ports(BRIDGE), vec![VETH.to_owned()], "br0 ports");
        let br = self.ns.state(BRIDGE).unwrap();
        assert_eq!((br.mtu, br.mac.as_str()), (MTU, BRIDGE_MAC), "br0: {br:?}");
        let out = common::ok(Command::new("ip").args(["netns", "pids", &self.ns.name]));
        let mut pids: Vec<u32> = out.split_whitespace().map(|p| p.parse().unwrap()).collect();
        pids.sort();
        let want: Vec<u32> = self.dnsmasq.iter().map(|p| p.0.id()).collect();
        assert_eq!(pids, want, "only dnsmasq may be left running");
        self.qemu = None;
        self.jail = None;
    }
}

/// The access policy of one QEMU run: /etc/kvmnet/kvmnet.toml and the files
/// under /etc/qemu (path, lines, mode; created by root in the jail's overlay).
/// No files: /etc/qemu/bridge.conf does not exist.
struct Policy<'a> {
    kvmnet: Option<&'a str>,
    qemu: &'a [(&'a str, &'a str, u32)],
}

const KVMNET_ALLOW: &str = "[[allow]]\nusers = [\"4242\"]\nbridges = [\"br0\"]\n";
const KVMNET_DENY: &str = "[[deny]]\nusers = [\"4242\"]\nbridges = [\"br0\"]\n";

fn jail_for(policy: &Policy) -> Jail {
    let mut jail = Jail::new(USER, USER, &[]);
    jail.config = policy.kvmnet.map(str::to_owned);
    if !policy.qemu.is_empty() {
        jail.setup = "mkdir -p /etc/qemu\n".into();
    }
    for (path, text, mode) in policy.qemu {
        let lines: Vec<String> = text.lines().map(|l| format!("'{l}'")).collect();
        jail.setup += &format!(
            "printf '%s\\n' {} > {path}\nchown 0:0 {path}\nchmod {mode:o} {path}\n",
            lines.join(" ")
        );
    }
    jail
}

/// QEMU as uid 4242 with the helper copy must fail to start; the helper's
/// one line contains `needle`; nothing is left in the namespace.
fn qemu_refused(grant: Grant, policy: Policy, needle: &str) {
    let mut lab = Lab::new(false);
    let helper = lab.helper(grant);
    let start = lab.start_qemu(
        jail_for(&policy),
        "52:54:00:4b:48:10",
        helper.to_str().unwrap(),
    );
    let status = lab.wait_qemu(QEMU_LIMIT);
    let took = start.elapsed();
    let err = lab.qemu_stderr();
    assert!(
        !status.success(),
        "QEMU must fail to start: {status}\n{err}"
    );
    let line = lab.helper_line();
    assert!(line.contains(needle), "expected {needle:?} in {line:?}");
    let qemu_says = lines_with(&err, "qemu-system-x86_64:");
    assert!(
        !qemu_says.is_empty(),
        "QEMU's own error line is missing:\n{err}"
    );
    lab.assert_clean();
    eprintln!(
        "bridge helper, QEMU refused ({grant:?}) in {:.2} s:\n  {line}\n  {}",
        took.as_secs_f64(),
        qemu_says.join("\n  ")
    );
}

/// QEMU as uid 4242 starts: its tap is on br0, owned by 4242, and the
/// helper's line names the deciding rule `acl`; after SIGTERM nothing is left.
fn qemu_admitted(grant: Grant, policy: Policy, acl: &str, helper_args: &str) {
    let mut lab = Lab::new(false);
    let helper = lab.helper(grant);
    let helper_value = format!("{}{helper_args}", helper.display());
    let start = lab.start_qemu(jail_for(&policy), "52:54:00:4b:48:11", &helper_value);
    let tap = lab.wait_for_tap();
    let took = start.elapsed();
    assert_helper_tap(&lab.ns, &tap, USER, true);
    let line = lab.helper_line();
    let privilege = match grant {
        Grant::Setuid => "privilege=setuid",
        _ => "privilege=file-capability",
    };
    for want in [
        format!("tap={tap} bridge={BRIDGE} mtu={MTU} user={USER} result=sent-to-qemu"),
        privilege.to_owned(),
        format!("acl=\"{acl}\""),
    ] {
        assert!(line.contains(&want), "{want:?} in {line:?}");
    }
    assert!(lab.qemu_exited().is_none(), "QEMU exited");
    let status = lab.stop_qemu();
    let err = lab.qemu_stderr();
    assert!(status.success(), "QEMU exit after SIGTERM: {status}\n{err}");
    lab.assert_clean();
    eprintln!(
        "bridge helper, QEMU admitted ({grant:?}), tap {tap} on br0 after {:.2} s: {line}",
        took.as_secs_f64()
    );
}

#[test]
fn qemu_as_a_user_gets_a_lease_through_the_helper_and_its_tap_goes_with_it() {
    let mut lab = Lab::new(true);
    let helper = lab.helper(Grant::FileCap);
    let mac = "52:54:00:4b:48:01";
    let jail = jail_for(&Policy {
        kvmnet: Some(KVMNET_ALLOW),
        qemu: &[],
    });
    let start = lab.start_qemu(jail, mac, helper.to_str().unwrap());

    // QEMU itself runs as 4242 without any capability.
    let pid = lab.qemu_pid();
    let tap = lab.wait_for_tap();
    let st = proc_status(pid);
    assert_eq!(
        st.get("Uid").map(String::as_str),
        Some("4242 4242 4242 4242"),
        "{st:?}"
    );
    assert_eq!(
        st.get("CapEff").map(String::as_str),
        Some("0000000000000000"),
        "{st:?}"
    );
    // Its tap: on br0, owned by 4242, like ifup's (MTU, fe: MAC), with the
    // virtio header QEMU asked for with --use-vnet.
    assert_helper_tap(&lab.ns, &tap, USER, true);
    let line = lab.helper_line();
    for want in [
        format!("tap={tap} bridge={BRIDGE} mtu={MTU} user={USER} result=sent-to-qemu"),
        "privilege=file-capability caps=cap_net_admin ".to_owned(),
        "acl=\"allow rule at /etc/kvmnet/kvmnet.toml line 1 (user 4242)\"".to_owned(),
    ] {
        assert!(line.contains(&want), "{want:?} in {line:?}");
    }

    let ip = lab.wait_for_lease(mac);
    let lease_time = start.elapsed();
    let mut ports = lab.ns.ports(BRIDGE);
    ports.sort();
    let mut want = vec![tap.clone(), VETH.to_owned()];
    want.sort();
    assert_eq!(ports, want, "br0 ports while QEMU runs");

    let stop = Instant::now();
    let status = lab.stop_qemu();
    let err = lab.qemu_stderr();
    assert!(status.success(), "QEMU exit after SIGTERM: {status}\n{err}");
    assert!(!err.contains("failed"), "QEMU reported a failure:\n{err}");
    lab.assert_clean();
    eprintln!(
        "bridge helper, QEMU as {USER}: lease {ip} after {:.1} s through {tap}; \
         exit and tap gone {:.2} s after SIGTERM: {line}",
        lease_time.as_secs_f64(),
        stop.elapsed().as_secs_f64()
    );
}

#[test]
fn qemu_refused_when_nothing_allows_the_bridge() {
    qemu_refused(
        Grant::FileCap,
        Policy {
            kvmnet: None,
            qemu: &[],
        },
        "user 4242 may not attach a tap to bridge br0: neither an [[allow]] rule in \
         /etc/kvmnet/kvmnet.toml nor /etc/qemu/bridge.conf (absent) allows it; \
         add `allow br0` to /etc/qemu/bridge.conf or an [[allow]] rule for this user",
    );
}

#[test]
fn qemu_refused_when_bridge_conf_allows_only_another_bridge() {
    qemu_refused(
        Grant::FileCap,
        Policy {
            kvmnet: Some("bridge = \"br0\"\n"),
            qemu: &[("/etc/qemu/bridge.conf", "allow br-other", 0o644)],
        },
        "nor a line in /etc/qemu/bridge.conf allows it; add `allow br0` to /etc/qemu/bridge.conf",
    );
}

#[test]
fn qemu_refused_by_a_bridge_conf_deny_despite_a_kvmnet_allow() {
    qemu_refused(
        Grant::FileCap,
        Policy {
            kvmnet: Some(KVMNET_ALLOW),
            qemu: &[(
                "/etc/qemu/bridge.conf",
                "# site policy\nallow all\ndeny br0",
                0o644,
            )],
        },
        "user 4242 may not attach a tap to bridge br0: `deny` at /etc/qemu/bridge.conf line 3",
    );
}

#[test]
fn qemu_refused_by_a_kvmnet_deny_despite_bridge_conf_allow_all() {
    qemu_refused(
        Grant::FileCap,
        Policy {
            kvmnet: Some(KVMNET_DENY),
            qemu: &[("/etc/qemu/bridge.conf", "allow all", 0o644)],
        },
        "user 4242 may not attach a tap to bridge br0: deny rule at /etc/kvmnet/kvmnet.toml line 1 (user 4242)",
    );
}

#[test]
fn qemu_refused_when_bridge_conf_is_malformed() {
    qemu_refused(
        Grant::FileCap,
        Policy {
            kvmnet: Some(KVMNET_ALLOW),
            qemu: &[("/etc/qemu/bridge.conf", "allow br0\nalow br1", 0o644)],
        },
        "/etc/qemu/bridge.conf line 2: cannot parse \"alow br1\"",
    );
}

/// An existing qemu-bridge-helper installation keeps working unchanged.
#[test]
fn qemu_admitted_by_bridge_conf_alone() {
    qemu_admitted(
        Grant::FileCap,
        Policy {
            kvmnet: None,
            qemu: &[("/etc/qemu/bridge.conf", "allow br0", 0o644)],
        },
        "`allow` at /etc/qemu/bridge.conf line 1",
        "",
    );
}

/// Per-user ACLs by file permissions: an include the user cannot read is
/// skipped, so its `allow` does not count. The setuid copy must read it as
/// the real user too (not as root).
fn unreadable_include(grant: Grant) {
    qemu_refused(
        grant,
        Policy {
            kvmnet: None,
            qemu: &[
                (
                    "/etc/qemu/bridge.conf",
                    "include /etc/qemu/4242.conf",
                    0o644,
                ),
                ("/etc/qemu/4242.conf", "allow br0", 0o600),
            ],
        },
        "nor a line in /etc/qemu/bridge.conf allows it",
    );
}

#[test]
fn qemu_refused_when_the_allowing_include_is_unreadable_file_capability() {
    unreadable_include(Grant::FileCap);
}

#[test]
fn qemu_refused_when_the_allowing_include_is_unreadable_setuid() {
    unreadable_include(Grant::Setuid);
}

#[test]
fn qemu_admitted_by_a_readable_include() {
    qemu_admitted(
        Grant::Setuid,
        Policy {
            kvmnet: None,
            qemu: &[
                (
                    "/etc/qemu/bridge.conf",
                    "include /etc/qemu/4242.conf",
                    0o644,
                ),
                ("/etc/qemu/4242.conf", "# for 4242\nallow br0", 0o644),
            ],
        },
        "`allow` at /etc/qemu/4242.conf line 2",
        "",
    );
}

/// helper="PATH --br=br0": QEMU runs it through /bin/sh -c.
#[test]
fn qemu_runs_a_helper_with_arguments_through_sh() {
    qemu_admitted(
        Grant::FileCap,
        Policy {
            kvmnet: Some(KVMNET_ALLOW),
            qemu: &[],
        },
        "allow rule at /etc/kvmnet/kvmnet.toml line 1 (user 4242)",
        " --br=br0",
    );
}

/// A bridge.conf the user cannot read might hold a `deny`: refused, as
/// qemu-bridge-helper refuses, even though kvmnet.toml allows.
#[test]
fn qemu_refused_when_bridge_conf_itself_is_unreadable() {
    qemu_refused(
        Grant::FileCap,
        Policy {
            kvmnet: Some(KVMNET_ALLOW),
            qemu: &[("/etc/qemu/bridge.conf", "allow br0", 0o600)],
        },
        "cannot read /etc/qemu/bridge.conf",
    );
}
