//! The config file: does it load, would the runtime trust it, can the users
//! it admits read it; and the scopes in it that decide taps' settings.

use std::path::Path;

use super::{as_whom, denied, CheckOptions, Findings};
use crate::acl::Verdict;
use crate::config::{Config, ConfigError};
use crate::settings::Settings;
use crate::trust::{mode_bit, Perm, TrustError, Who};

/// Why there is no config to check the rest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unloaded {
    /// This user may not read it.
    Unreadable,
    /// It does not load (an error says why).
    Invalid,
}

/// Parse, then trust (as ifup checks it for every caller but plain root).
/// Returns the config the other checks work from: the built-in defaults when
/// there is no file.
pub(super) fn check(opts: &CheckOptions, out: &mut Findings) -> Result<Config, Unloaded> {
    let path = &opts.config_path;
    let shown = path.display();
    let config = match Config::load(path, false) {
        Ok(c) if c.source.is_none() => {
            out.warn(
                "config",
                format!(
                    "no config file at {shown}: kvmnet works like Debian's /etc/qemu-ifup: taps join the bridge that carries the IPv4 default route, else br0, created on demand; everyone but root is denied"
                ),
                format!("write {shown} to name the bridge and who may use it (README: Configuration)"),
            );
            return Ok(c);
        }
        Ok(c) => Ok(c),
        Err(ConfigError::Read { source, .. }) if denied(&source) => {
            out.unchecked(
                "config",
                format!(
                    "cannot read {shown} {}, so neither its settings nor who it admits are checked",
                    as_whom()
                ),
            );
            Err(Unloaded::Unreadable)
        }
        Err(e) => {
            let fix = match &e {
                ConfigError::Syntax { line, .. } | ConfigError::Value { line, .. } => format!(
                    "correct line {line} of {shown}; until then every kvmnet-ifup fails without changing anything"
                ),
                ConfigError::TooLarge { .. } => {
                    format!("a kvmnet config is a few hundred bytes: replace {shown} with the real one")
                }
                _ => format!("make {shown} a readable regular file, or remove it for the built-in defaults"),
            };
            out.error("config", e.to_string(), fix);
            Err(Unloaded::Invalid)
        }
    };
    check_trust(path, out);
    let c = config?;
    let rules = c.rules.len();
    let acl = c.acl.rules.len();
    out.ok(
        "config",
        format!("{shown} parses: {rules} [[rule]] table(s), {acl} [[allow]]/[[deny]] rule(s)"),
    );
    Ok(c)
}

/// The runtime's own trust check ([`crate::trust::open_trusted`], what
/// `Config::load` does for every caller but plain root), its refusal said as
/// a finding.
fn check_trust(path: &Path, out: &mut Findings) {
    let shown = path.display();
    let refused = "would be refused for every caller but plain root (sudo, setuid and file-capability runs check it)";
    let verdict = match crate::trust::open_trusted(path) {
        // Judging needs no reading: the same rule on what this user may
        // look at (the owners and modes of the file and its directories).
        Err(TrustError::Io { source, .. }) if denied(&source) => {
            crate::trust::check_path(path).map(|m| m.map(drop))
        }
        opened => opened.map(|o| o.map(drop)),
    };
    match verdict {
        Ok(None) => {}
        Ok(Some(())) => out.ok(
            "config",
            format!("{shown} and its directories are root's and writable only by root"),
        ),
        Err(TrustError::Untrusted { why, .. }) => {
            out.error("config", format!("{shown} {refused}: {why}"), why.fix())
        }
        Err(TrustError::NotRegular { .. }) => out.error(
            "config",
            format!("{shown} {refused}: it is not a regular file"),
            format!("replace {shown} with a regular file"),
        ),
        Err(TrustError::Io { source, .. }) if denied(&source) => out.unchecked(
            "config",
            format!(
                "cannot look at {shown} and its directories {}, so whether only root can change them is unchecked",
                as_whom()
            ),
        ),
        Err(e @ TrustError::Io { .. }) => out.error(
            "config",
            e.to_string(),
            format!("make {shown} a readable regular file, or remove it for the built-in defaults"),
        ),
    }
}

/// A setuid or file-capability kvmnet reads the config as the user (every
/// capability but CAP_NET_ADMIN is gone by then): when users are meant to
/// run it (`[[allow]]` rules), the file must be readable by others and its
/// directories searchable.
pub(super) fn check_readable(
    opts: &CheckOptions,
    config: &Config,
    users_run_it: bool,
    out: &mut Findings,
) {
    let users_allowed = config.acl.rules.iter().any(|r| r.verdict == Verdict::Allow);
    if config.source.is_none() || !users_allowed || !users_run_it {
        return;
    }
    let Ok(real) = std::fs::canonicalize(&opts.config_path) else {
        return;
    };
    let lacks = |p: &Path, bit: u32| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.mode() & bit == 0
        })
    };
    let mut dirs: Vec<&Path> = real.ancestors().skip(1).collect();
    dirs.reverse();
    let blocked = dirs
        .into_iter()
        .filter(|d| lacks(d, mode_bit(Who::Others, Perm::Execute)))
        .map(|d| (d, "o+x", "is not searchable by others"))
        .chain(lacks(&real, mode_bit(Who::Others, Perm::Read)).then_some((
            real.as_path(),
            "o+r",
            "is not readable by others",
        )));
    for (at, mode, what) in blocked {
        out.error(
            "config",
            format!(
                "{} {what}, but setuid and file-capability kvmnet read the config as the calling user: the users of the [[allow]] rules are refused",
                at.display()
            ),
            format!("chmod {mode} {}", at.display()),
        );
    }
}

/// One place in the config that decides taps' settings: the top level or a
/// `[[rule]]`, with its effective settings.
pub(super) struct Scope {
    /// "the top level", "rule 1 (lab-*) at PATH line 2", ...
    pub who: String,
    pub settings: Settings,
}

pub(super) fn scopes(config: &Config) -> Vec<Scope> {
    let top = if config.source.is_some() {
        "the top level"
    } else {
        "the built-in defaults (no config file)"
    };
    let mut out = vec![Scope {
        who: top.into(),
        // the settings of a tap that matches no rule
        settings: crate::settings::effective(&config.defaults, None),
    }];
    for (i, rule) in config.rules.iter().enumerate() {
        let settings = crate::settings::effective(&config.defaults, Some((i, rule)));
        let who = settings.rule.clone().unwrap_or_default();
        out.push(Scope { who, settings });
    }
    out
}

/// How `--tap` and the bridge findings name where a tap's settings come from
/// when no `[[rule]]` matches.
pub(super) fn top_level(config: &Config) -> &'static str {
    if config.source.is_some() {
        "the top level"
    } else {
        "the built-in defaults"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::NetMode;

    #[test]
    fn scopes_name_their_rule_and_resolve_against_the_top_level() {
        let c = Config::parse(
            Path::new("/etc/kvmnet/kvmnet.toml"),
            "bridge = \"br0\"\n[[rule]]\nmatch = \"lab-*\"\nvlan = 10\n[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.1\"]\n",
        )
        .unwrap();
        let t = scopes(&c);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].who, "the top level");
        assert_eq!(t[1].who, "rule 1 (lab-*) at /etc/kvmnet/kvmnet.toml line 2");
        assert_eq!(t[1].settings.bridge.as_ref().unwrap().as_str(), "br0");
        assert!(t[1].settings.needs_vlan_filtering());
        assert_eq!(t[2].who, "rule 2 (rt-*) at /etc/kvmnet/kvmnet.toml line 5");
        assert_eq!(t[2].settings.mode, NetMode::Route);
        let none = scopes(&Config::default());
        assert_eq!(none[0].who, "the built-in defaults (no config file)");
        let choice = super::super::bridges::bridge_choice(&none[0].settings, false, None);
        assert_eq!((choice.name.as_str(), choice.create), ("br0", true));
    }
}
