//! `kvmnet-bridge-helper`: QEMU's `helper=` protocol. QEMU (often running as
//! an ordinary user: libvirt session mode, GNOME Boxes) runs
//! `HELPER --use-vnet --fd=N --br=BR` with a unix stream socket as fd N; the
//! helper creates a tap, puts it on BR, and sends the tap's descriptor back
//! over the socket (SCM_RIGHTS, one byte of payload). The tap is not
//! persistent: it disappears when QEMU closes it, so there is no downscript.

use std::fmt;
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::access;
use crate::config::Config;
use crate::error::Error;
use crate::mode::{self, bridge, Mode};
use crate::name::BridgeName;
use crate::netlink::Netlink;
use crate::plan::{self, Origin};
use crate::settings::NetMode;
use crate::Invocation;

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

/// Takes ownership of QEMU's socket and checks it is what the protocol
/// needs: an open unix stream socket.
fn adopt_socket(fd: RawFd) -> Result<OwnedFd, Error> {
    let bad = |why: &str| Error::HelperUsage {
        why: format!("--fd={fd}: {why}"),
    };
    let owned = crate::sys::fd::adopt_inherited(fd).ok_or_else(|| bad("not an open descriptor"))?;
    let st = nix::sys::stat::fstat(&owned).map_err(|e| bad(&e.desc().to_lowercase()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(bad(
            "not a socket (QEMU passes one end of a unix socket pair)",
        ));
    }
    use nix::sys::socket::{
        getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
    };
    let ty = getsockopt(&owned, sockopt::SockType).map_err(|e| bad(e.desc()))?;
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

pub fn run(args: &Args, inv: &Invocation, log: &mut crate::log::Log) -> Result<Report, Error> {
    if inv.mode == crate::privilege::Mode::None {
        return Err(crate::no_privilege("kvmnet-bridge-helper"));
    }
    let sock = adopt_socket(args.fd)?;
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
    if settings.mode == NetMode::Route {
        return Err(Error::HelperRouted {
            rule: settings.rule.clone().unwrap_or_default(),
        });
    }
    let rule = settings.rule.clone();
    let port = bridge::Port::for_helper(bridge, bridge_name, settings)?;
    let tap = match nl.link_by_name(&crate::name::TapName::new(&tap_name)?)? {
        Some(l) if l.is_tap() && l.name == tap_name => l,
        _ => return Err(Error::TapVanished { tap: tap_name }),
    };
    let attach = plan::attach(&tap, &port.wanted(), Origin::Created)?;
    mode::run(&nl, &tap, &attach, &port).map_err(|f| f.error)?;
    send_fd(&sock, &queue)?;
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
        _ => None,
    };
    let inv = crate::start_keeping(keep);
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
        Parsed::Run(a) => inv.and_then(|inv| run(&a, &inv, &mut log)).map(Some),
    });
    crate::conclude(&mut log, result)
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
