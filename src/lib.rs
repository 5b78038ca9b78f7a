//! kvmnet: the library behind `kvmnet-ifup` and `kvmnet-ifdown`.
//!
//! Data flows one way: argv -> [`name`] -> [`caller`] -> [`config`] -> facts
//! from [`netlink`] -> [`plan`] (pure) -> apply with rollback ([`ifup`],
//! [`ifdown`]) -> [`log`]. The binaries in `bin/` only call [`run_ifup`] and
//! [`run_ifdown`].

pub mod caller;
pub mod config;
pub mod error;
pub mod ifdown;
pub mod ifup;
pub mod log;
pub mod mac;
pub mod name;
pub mod netlink;
pub mod plan;
pub mod record;
pub mod tap;

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

/// Everything `kvmnet-ifup` does after argv is split off.
pub fn run_ifup(args: &[OsString], env: &caller::Env) -> Result<ifup::Report, Error> {
    let tap = tap_arg("kvmnet-ifup", args)?;
    let caller = caller::Caller::detect(env);
    let config = config::Config::load(&caller.config_path(env))?;
    let nl = netlink::Netlink::open()?;
    ifup::ifup(&nl, &caller, &config, &tap)
}

/// Everything `kvmnet-ifdown` does after argv is split off. It reads no
/// config: the tap's own record says what to undo.
pub fn run_ifdown(args: &[OsString], env: &caller::Env) -> Result<ifdown::Report, Error> {
    let tap = tap_arg("kvmnet-ifdown", args)?;
    let caller = caller::Caller::detect(env);
    let nl = netlink::Netlink::open()?;
    ifdown::ifdown(&nl, caller.uid, &tap)
}
