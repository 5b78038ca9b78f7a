//! `kvmnet-bridge-helper`: QEMU's `helper=` protocol. QEMU (often running as
//! an ordinary user: libvirt session mode, GNOME Boxes) runs
//! `HELPER --use-vnet --fd=N --br=BR` with a unix stream socket as fd N; the
//! helper creates a tap, puts it on BR, and sends the tap's descriptor back
//! over the socket (SCM_RIGHTS, one byte of payload). The tap is not
//! persistent: it disappears when QEMU closes it, so there is no downscript.
//!
//! A refusal keeps the socket open until its parent has read the reason off
//! stderr (see [`hand_over_reason`]): libvirt reports only what it has read
//! by the time the socket ends.

use std::fmt;
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::access;
use crate::config::Config;
use crate::error::Error;
use crate::mode::{self, bridge, Mode};
use crate::name::BridgeName;
use crate::netlink::Netlink;
use crate::plan::{self, Origin};
use crate::settings::NetMode;
use crate::Invocation;

/// The longest a refusal waits for its parent to read the reason off a pipe.
pub const READER_WAIT: Duration = Duration::from_secs(2);
/// Once the reason is read and stderr closed, the socket stays open this
/// much longer: the reader still has to store what it read and see the end.
const READER_GRACE: Duration = Duration::from_millis(50);

pub const USAGE: &str = "usage: kvmnet-bridge-helper [--use-vnet] --br=BRIDGE --fd=UNIXFD
QEMU runs this for -netdev bridge,br=BRIDGE[,helper=PATH] and -netdev tap,helper=PATH.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub use_vnet: bool,
    pub fd: RawFd,
    pub bridge: BridgeName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Args),
    Help,
    Version,
}

/// QEMU's arguments, strictly: each once, nothing else.
pub fn parse_args(args: &[std::ffi::OsString]) -> Result<Parsed, Error> {
    let usage = |why: String| Error::HelperUsage { why };
    let (mut vnet, mut fd, mut br) = (false, None, None);
    for a in args {
        let a = a.to_str().ok_or(Error::NotUtf8)?;
        match a {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            "--use-vnet" if !vnet => vnet = true,
            _ if a.starts_with("--fd=") && fd.is_none() => {
                let n = &a[5..];
                fd =
                    Some(n.parse::<RawFd>().ok().filter(|n| *n > 2).ok_or_else(|| {
                        usage(format!("--fd={n}: not a descriptor number above 2"))
                    })?);
            }
            _ if a.starts_with("--br=") && br.is_none() => br = Some(BridgeName::new(&a[5..])?),
            _ => {
                return Err(usage(format!(
                    "unexpected argument {} (each of --use-vnet, --fd=, --br= at most once)",
                    crate::name::escape(a)
                )))
            }
        }
    }
    match (fd, br) {
        (Some(fd), Some(bridge)) => Ok(Parsed::Run(Args {
            use_vnet: vnet,
            fd,
            bridge,
        })),
        (None, _) => Err(usage("--fd=N is missing".into())),
        (_, None) => Err(usage("--br=BRIDGE is missing".into())),
    }
}

/// The descriptor number of `--fd=` even when the other arguments are wrong,
/// so that start-up keeps the socket open while the reason is handed over.
fn socket_arg(args: &[std::ffi::OsString]) -> Option<RawFd> {
    args.iter()
        .filter_map(|a| a.to_str()?.strip_prefix("--fd=")?.parse::<RawFd>().ok())
        .find(|n| *n > 2)
}

/// Checks that QEMU's socket, `owned` (adopted as `--fd=fd`, `None` when
/// that is not open), is what the protocol needs: a unix stream socket.
fn check_socket(fd: RawFd, owned: Option<&OwnedFd>) -> Result<&OwnedFd, Error> {
    let bad = |why: &str| Error::HelperUsage {
        why: format!("--fd={fd}: {why}"),
    };
    let owned = owned.ok_or_else(|| bad("not an open descriptor"))?;
    let st = nix::sys::stat::fstat(owned).map_err(|e| bad(&e.desc().to_lowercase()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(bad(
            "not a socket (QEMU passes one end of a unix socket pair)",
        ));
    }
    use nix::sys::socket::{
        getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
    };
    let ty = getsockopt(owned, sockopt::SockType).map_err(|e| bad(e.desc()))?;
    let domain = getsockname::<SockaddrStorage>(owned.as_raw_fd())
        .map_err(|e| bad(e.desc()))?
        .family();
    if ty != SockType::Stream || domain != Some(AddressFamily::Unix) {
        return Err(bad("not a unix stream socket"));
    }
    Ok(owned)
}

/// What a successful run did, for the log line.
#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    pub bridge: String,
    pub mtu: u32,
    pub user: u32,
    pub privilege: crate::privilege::Mode,
    pub acl: String,
    pub rule: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tap={} bridge={} mtu={} user={} result=sent-to-qemu privilege={} caps={} acl=\"{}\" rule=\"{}\"",
            self.tap,
            self.bridge,
            self.mtu,
            self.user,
            self.privilege,
            crate::privilege::caps_for_log(self.privilege),
            self.acl,
            self.rule.as_deref().unwrap_or("defaults")
        )
    }
}

/// `sock`: the descriptor `--fd=` names, adopted (`None` when not open).
pub fn run(
    args: &Args,
    sock: Option<&OwnedFd>,
    inv: &Invocation,
    log: &mut crate::log::Log,
) -> Result<Report, Error> {
    if inv.mode == crate::privilege::Mode::None {
        return Err(crate::no_privilege("kvmnet-bridge-helper"));
    }
    let sock = check_socket(args.fd, sock)?;
    let caller = &inv.caller;
    let config = Config::load(
        &inv.caller.config_path(&inv.env),
        !caller.trusts_environment(),
    )?;
    let bridge_name = args.bridge.as_str();
    let mut acl = "root".to_owned();
    if !caller.is_root() {
        // bridge.conf is read as qemu-bridge-helper run by the caller would
        // read it: with the caller's rights (see qemu_acl::load).
        let who = caller.identity();
        let qemu = crate::qemu_acl::load(
            std::path::Path::new(crate::qemu_acl::DEFAULT_PATH),
            who.uid,
            &who.groups,
        )
        .map_err(|e| Error::QemuAcl(e.to_string()))?;
        acl = access::check_bridge_helper(&who, &config.acl, qemu.as_deref(), "-", bridge_name)?;
    }
    let nl = Netlink::open()?;
    let bridge = nl
        .link_by_name(&args.bridge)?
        .ok_or_else(|| Error::HelperBridge {
            bridge: bridge_name.to_owned(),
            problem: "does not exist".into(),
        })?;
    // Judged before the tap exists; again, with the tap's settings, below.
    let bridge =
        bridge::Port::for_helper(bridge, bridge_name, config.settings_on("", bridge_name))?
            .into_bridge();
    if !caller.is_root() {
        let ports = nl.ports_of(bridge.index)?;
        access::check_port_quota(
            &caller.identity(),
            &ports,
            &bridge.name,
            config.max_ports_per_user,
        )?;
    }

    // From here the tap exists only through `queue`: any early return, or
    // a kill, drops it and the kernel removes the tap (and its bridge port)
    // with it.
    let first = config.settings_on("", bridge_name);
    let group = mode::tun_group(&first)?;
    log.starting(
        &config.helper_tap,
        caller.uid,
        &format!("bridge={bridge_name}"),
    );
    let (queue, tap_name) =
        crate::tap::open_queue(&config.helper_tap, caller.uid, group, args.use_vnet)?;
    let settings = config.settings_on(&tap_name, bridge_name);
    // The helper's contract is a Linux bridge port (QEMU's own helper's).
    let other = match settings.mode {
        NetMode::Bridge => None,
        NetMode::Route => Some("route"),
        NetMode::Ovs => Some("ovs"),
    };
    if let Some(mode) = other {
        return Err(Error::HelperMode {
            rule: settings.rule.clone().unwrap_or_default(),
            mode,
        });
    }
    let rule = settings.rule.clone();
    let valid_name = crate::name::TapName::new(&tap_name)?;
    let guard = mode::Guard::wanted(&settings, &valid_name);
    let port = bridge::Port::for_helper(bridge, bridge_name, settings)?;
    let tap = match nl.link_by_name(&valid_name)? {
        Some(l) if l.is_tap() && l.name == tap_name => l,
        _ => return Err(Error::TapVanished { tap: tap_name }),
    };
    let attach = plan::attach(&tap, &port.wanted(), Origin::Created)?;
    // On any error the queue's descriptor deletes the tap (and its
    // checks' filters); its limit chain, which outlives it, goes explicitly.
    mode::run(&nl, &tap, &attach, &port, guard.as_ref()).map_err(|f| {
        f.unguard(&attach);
        f.error
    })?;
    send_fd(sock, &queue).inspect_err(|_| {
        if guard.is_some() {
            let _ = crate::guard::remove(tap.index);
        }
    })?;
    if guard.as_ref().is_some_and(mode::Guard::limits) {
        mode::sweep_guards(mode::SWEEP_EVERY);
    }
    let bridge = port.bridge().expect("a port has a bridge");
    Ok(Report {
        tap: tap_name,
        bridge: bridge.name.clone(),
        mtu: port.wanted().mtu.unwrap_or(bridge.mtu),
        user: caller.uid,
        privilege: inv.mode,
        acl,
        rule,
    })
}

/// One byte of payload and the tap's descriptor, as QEMU's recv_fd expects.
fn send_fd(sock: &OwnedFd, queue: &File) -> Result<(), Error> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [queue.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&[0u8])];
    // MSG_NOSIGNAL: a QEMU that died must give an error here, not SIGPIPE.
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map(|_| ())
        .map_err(|e| Error::HelperSend {
            cause: e.desc().to_lowercase(),
        })
}

/// The binary's C `main`: like [`crate::main`], but QEMU's socket descriptor
/// survives the start-up hygiene.
pub fn main() -> i32 {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let parsed = parse_args(&argv);
    let keep = match &parsed {
        Ok(Parsed::Run(a)) => Some(a.fd),
        Ok(_) => None,
        Err(_) => socket_arg(&argv),
    };
    let inv = crate::start_keeping(keep);
    let sock = keep.and_then(crate::sys::fd::adopt_inherited);
    let mut log = crate::log::Log::open("kvmnet-bridge-helper");
    let result = parsed.and_then(|p| match p {
        Parsed::Help => {
            println!("{USAGE}");
            Ok(None)
        }
        Parsed::Version => {
            println!("kvmnet-bridge-helper {}", env!("CARGO_PKG_VERSION"));
            Ok(None)
        }
        Parsed::Run(a) => inv
            .and_then(|inv| run(&a, sock.as_ref(), &inv, &mut log))
            .map(Some),
    });
    let status = crate::conclude(&mut log, result);
    if status != 0 {
        hand_over_reason();
    }
    // Closed by the exit itself, after stderr (see `hand_over_reason`).
    let _ = sock.map(IntoRawFd::into_raw_fd);
    status
}

/// After a failure's line is on stderr, and before the socket closes: waits
/// until the parent has read that line off the pipe (at most
/// [`READER_WAIT`]), then closes stderr and waits [`READER_GRACE`]. Nothing
/// to wait for when stderr is not a pipe (a terminal, a log file) or when
/// nothing reads it any more.
fn hand_over_reason() {
    // why: libvirt (session mode, `bridge_helper`) drains the helper's stderr
    // pipe on a thread of its own while its main thread waits on the socket;
    // when the socket ends without a descriptor it aborts the helper and
    // builds its error from whatever that thread has stored by then, never
    // looking again (qemuCreateInBridgePortWithHelper after
    // virSocketRecvFD). A socket that ends first loses the reason to a
    // thread that was not scheduled yet. So the socket outlives the line:
    // until the pipe is empty, then stderr is closed so that the reader sees
    // its end and finishes its buffer, and only after a grace does the exit
    // close the socket. QEMU reads the socket and then waits for the exit,
    // so it sees the same exchange, later by that wait. Bounded: a parent
    // that reads stderr only after the exit still gets a refusal, later.
    let deadline = Instant::now() + READER_WAIT;
    let mut pause = Duration::from_micros(100);
    let read = loop {
        match crate::sys::fd::pipe_unread(std::io::stderr().as_fd()) {
            None => return,
            Some(0) => break true,
            Some(_) if Instant::now() >= deadline => break false,
            Some(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    };
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stderr(null);
    }
    if read {
        std::thread::sleep(READER_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, Error> {
        let v: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        parse_args(&v)
    }

    #[test]
    fn qemus_arguments() {
        let r = p(&["--use-vnet", "--fd=5", "--br=br0"]).unwrap();
        assert_eq!(
            r,
            Parsed::Run(Args {
                use_vnet: true,
                fd: 5,
                bridge: BridgeName::new("br0").unwrap()
            })
        );
        // through sh -c with the user's --br first; no --use-vnet
        assert!(matches!(p(&["--br=br-lab", "--fd=9"]), Ok(Parsed::Run(_))));
        assert_eq!(p(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(p(&["--version"]).unwrap(), Parsed::Version);
    }

    #[test]
    fn the_socket_is_kept_through_wrong_arguments() {
        let v = |a: &[&str]| {
            a.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            socket_arg(&v(&["--br=averyveryverylongbridge", "--fd=7"])),
            Some(7)
        );
        assert_eq!(socket_arg(&v(&["--fd=2", "--fd=x", "--fd=9"])), Some(9));
        assert_eq!(socket_arg(&v(&["--fd", "7", "--br=br0"])), None);
    }

    /// What [`hand_over_reason`] waits on: the bytes a pipe's reader has not
    /// taken yet; nothing for a pipe nobody reads any more, or a file.
    #[test]
    fn unread_bytes_of_a_pipe() {
        use crate::sys::fd::pipe_unread;
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        // close-on-exec: a child another test spawns meanwhile must not
        // hold either end.
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (mut r, mut w) = (File::from(r), File::from(w));
        assert_eq!(pipe_unread(w.as_fd()), Some(0));
        w.write_all(b"refused\n").unwrap();
        assert_eq!(pipe_unread(w.as_fd()), Some(8));
        let mut got = [0u8; 3];
        r.read_exact(&mut got).unwrap();
        assert_eq!(pipe_unread(w.as_fd()), Some(5));
        drop(r);
        assert_eq!(pipe_unread(w.as_fd()), None);
        let file = File::open("/proc/self/status").unwrap();
        assert_eq!(pipe_unread(file.as_fd()), None);
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            &["--fd=5"][..],
            &["--br=br0"],
            &["--fd=x", "--br=br0"],
            &["--fd=1", "--br=br0"],
            &["--fd=5", "--br=br0", "--br=br1"],
            &["--fd=5", "--br=br0", "--fd=6"],
            &["--fd=5", "--br=averyveryverylongbridge"],
            &["--fd=5", "--br=br0", "--use-vnet", "--use-vnet"],
            &["--fd=5", "--br=br0", "extra"],
            &["--fd", "5", "--br=br0"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
