//! kvmnet: the library behind its four binaries, each one call in `bin/`:
//! `kvmnet-ifup TAP` and `kvmnet-ifdown TAP` (QEMU's `script=` and
//! `downscript=`: [`run_ifup`] and [`run_ifdown`], through [`main`]),
//! `kvmnet-bridge-helper` (QEMU's `helper=`: [`bridge_helper::main`]) and the
//! unprivileged admin command `kvmnet` ([`admin::main`]).
//!
//! The three privileged binaries begin alike ([`start`]: a clean process, who
//! called, every capability but CAP_NET_ADMIN dropped before the config or any
//! interface is looked at). Then data flows one way: argv -> [`name`] ->
//! [`config`] and the access rules (`access`) -> facts from [`netlink`] -> the
//! tap's network mode (`mode`) and a pure plan -> applied with rollback ->
//! one line to [`log`].
//!
//! The public modules are what the binaries, the tests and the fuzz targets
//! use; the rest is the crate's own. `unsafe` lives in `sys` alone.

#![deny(unsafe_code)]

pub(crate) mod access;
pub mod acl;
pub mod admin;
pub mod bridge_helper;
pub mod caller;
pub mod check;
pub mod config;
pub mod error;
pub mod guard;
pub(crate) mod hardening;
pub mod ifdown;
pub mod ifup;
pub(crate) mod kernel;
pub mod link;
pub mod linkmsg;
pub mod log;
pub mod mac;
pub(crate) mod mode;
pub mod name;
pub mod net;
pub mod netlink;
pub(crate) mod nft;
pub(crate) mod nlreq;
pub(crate) mod nlsock;
pub(crate) mod os_error;
pub mod ovsdb;
pub(crate) mod plan;
pub mod privilege;
pub(crate) mod qemu_acl;
pub(crate) mod random;
pub mod rate;
pub mod record;
pub mod routemsg;
pub mod settings;
pub mod shape;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub(crate) mod sysctl;
pub(crate) mod tap;
pub(crate) mod tc;
pub(crate) mod trust;
pub mod vxlan;

use std::ffi::OsString;

pub use error::Error;

/// The tap name from argv: exactly one argument.
pub fn tap_arg(prog: &'static str, args: &[OsString]) -> Result<name::TapName, Error> {
    match args {
        [one] => {
            let s = one.to_str().ok_or(Error::NotUtf8)?;
            if matches!(s, "-h" | "--help" | "--version") {
                return Err(Error::Usage { prog });
            }
            Ok(name::TapName::new(s)?)
        }
        _ => Err(Error::Usage { prog }),
    }
}

/// What every privileged binary establishes first, in this order: a clean
/// process, who called, how privilege arrived; then everything but
/// CAP_NET_ADMIN is dropped, before the config or any interface is looked at.
pub struct Invocation {
    pub env: caller::Env,
    pub caller: caller::Caller,
    pub mode: privilege::Mode,
}

pub fn start() -> Result<Invocation, Error> {
    start_keeping(None)
}

/// [`start`], keeping one inherited descriptor open (the bridge helper's
/// socket to QEMU).
pub fn start_keeping(keep: Option<std::os::fd::RawFd>) -> Result<Invocation, Error> {
    hardening::sanitize_process(keep);
    let env = caller::Env::from_process();
    let caller = caller::Caller::detect(&env);
    let mode = privilege::detect();
    privilege::drop_to_net_admin(mode)?;
    Ok(Invocation { env, caller, mode })
}

/// Everything `kvmnet-ifup` does after start-up.
pub fn run_ifup(
    args: &[OsString],
    inv: &Invocation,
    log: &mut log::Log,
) -> Result<ifup::Report, Error> {
    let tap = tap_arg("kvmnet-ifup", args)?;
    if inv.mode == privilege::Mode::None {
        return Err(no_privilege("kvmnet-ifup"));
    }
    let config = config::Config::load(
        &inv.caller.config_path(&inv.env),
        !inv.caller.trusts_environment(),
    )?;
    let requested = match &inv.env.bridge {
        Some(b) => Some(name::BridgeName::new(b.to_str().ok_or(Error::NotUtf8)?)?),
        None => None,
    };
    let nl = netlink::Netlink::open()?;
    ifup::ifup(&nl, inv, &config, requested, &tap, log)
}

/// Everything `kvmnet-ifdown` does after start-up. It reads no config: the
/// tap's own record says what to undo, and QEMU may run it in a chroot.
pub fn run_ifdown(
    args: &[OsString],
    inv: &Invocation,
    log: &mut log::Log,
) -> Result<ifdown::Report, Error> {
    let tap = tap_arg("kvmnet-ifdown", args)?;
    let nl = netlink::Netlink::open()?;
    ifdown::ifdown(&nl, inv, &tap, log)
}

pub fn no_privilege(prog: &'static str) -> Error {
    let exe = std::env::current_exe().ok();
    let grant = exe
        .as_deref()
        .map_or(privilege::FileGrant::Nothing, privilege::FileGrant::of);
    let no_new_privs = nix::sys::prctl::get_no_new_privs().unwrap_or(false);
    Error::no_privilege(prog, exe.as_deref(), grant, no_new_privs)
}

/// Defines a binary's C `main` (the binary says `#![no_main]`) as `$body`, an
/// `i32` exit status: see [`main`] for why not std's.
#[macro_export]
macro_rules! c_main {
    ($body:expr) => {
        // std::env::args needs glibc here: it hands argv to std through an
        // .init_array hook; with another libc std learns it in the std `main`
        // this replaces, and every run would look like one without arguments.
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        compile_error!("kvmnet's binaries need Linux with glibc (see kvmnet::c_main!)");

        #[no_mangle]
        extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $body
        }
    };
}

/// The shared `main` of the binaries: start-up, run, one log line, and the
/// exit status for the C `main` in bin/.
///
/// The binaries define `main` themselves (`#![no_main]`) instead of letting
/// std wrap it (why: docs/design.md); [`hardening`] does the part of std's
/// set-up that matters for a privileged program. glibc still runs std's
/// argument capture (an `.init_array` hook), so `std::env::args_os` works as
/// usual.
pub fn main<R: std::fmt::Display>(
    prog: &'static str,
    run: fn(&[OsString], &Invocation, &mut log::Log) -> Result<R, Error>,
) -> i32 {
    let inv = start();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Opened only now, with privileges dropped.
    let mut log = log::Log::open(prog);
    let result = inv.and_then(|inv| run(&args, &inv, &mut log));
    conclude(&mut log, result.map(Some))
}

/// One log line for the outcome (none for `Ok(None)`: --help and the like)
/// and the exit status: success, or one line saying what to do.
pub fn conclude<R: std::fmt::Display>(log: &mut log::Log, result: Result<Option<R>, Error>) -> i32 {
    let status = match result {
        Ok(report) => {
            if let Some(r) = report {
                log.info(&r.to_string());
            }
            0
        }
        Err(e) => {
            match e.refusal_details() {
                Some(details) => log.refusal(details, &e.to_string()),
                None => log.error(&e.to_string()),
            }
            1
        }
    };
    // Returning from a C `main` skips std's clean-up, which flushes stdout.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    status
}
