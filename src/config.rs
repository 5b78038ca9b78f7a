//! /etc/kvmnet/kvmnet.toml: load and validate. Any unknown key or bad value is
//! an error that names the file, the line and the key, and nothing is touched.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::acl::{Acl, BridgePattern, Principal, Rule, Verdict};
use crate::name::BridgeName;

pub const DEFAULT_PATH: &str = "/etc/kvmnet/kvmnet.toml";
/// A real config is a few hundred bytes; the cap bounds what a hostile or
/// corrupt file can make a privileged process read and parse.
pub const MAX_SIZE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is larger than {} KiB; it cannot be a kvmnet config", MAX_SIZE / 1024)]
    TooLarge { path: PathBuf },
    #[error("{path} line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    #[error("{path} line {line}: {key}: {message}")]
    Value {
        path: PathBuf,
        line: usize,
        key: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    bridge: Option<Spanned<String>>,
    create_bridge: Option<bool>,
    #[serde(default)]
    allow: Vec<Spanned<RawRule>>,
    #[serde(default)]
    deny: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    users: Vec<Spanned<RawId>>,
    #[serde(default)]
    groups: Vec<Spanned<RawId>>,
    #[serde(default)]
    bridges: Vec<Spanned<String>>,
}

/// `users`/`groups` entries: a name, "*", or a numeric id (integer or string).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawId {
    Id(u32),
    Name(String),
}

/// The effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The file it came from; `None` when there was none (Debian drop-in mode).
    pub source: Option<PathBuf>,
    /// `None`: use the bridge that carries the default route, else `br0`.
    pub bridge: Option<BridgeName>,
    /// Create a missing bridge as a private bridge and bring it up.
    pub create_bridge: bool,
    /// Who may use which bridge (applies to everyone but plain root).
    pub acl: Acl,
}

impl Config {
    /// Loads `path`; a missing file is not an error but the built-in defaults.
    /// With `check_trust` (callers other than plain root), the file and its
    /// directories must pass [`crate::trust::open_trusted`].
    pub fn load(path: &Path, check_trust: bool) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let opened = if check_trust {
            crate::trust::open_trusted(path)?
        } else {
            match File::open(path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(read_err(e)),
            }
        };
        let Some(file) = opened else {
            return Ok(Config::default());
        };
        let mut text = String::new();
        file.take(MAX_SIZE + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_SIZE {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |s| line_of(s.start)),
            // toml's message is multi-line with a source excerpt; keep its first line
            message: e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_owned(),
        })?;
        let bridge = match raw.bridge {
            None => None,
            Some(b) => Some(
                BridgeName::new(b.get_ref()).map_err(|e| ConfigError::Value {
                    path: path.to_owned(),
                    line: line_of(b.span().start),
                    key: "bridge",
                    message: e.to_string(),
                })?,
            ),
        };
        let mut rules = Vec::new();
        for (verdict, list) in [(Verdict::Allow, raw.allow), (Verdict::Deny, raw.deny)] {
            for r in list {
                rules.push(rule(path, &line_of, verdict, r)?);
            }
        }
        Ok(Config {
            source: Some(path.to_owned()),
            bridge,
            create_bridge: raw.create_bridge.unwrap_or(false),
            acl: Acl { rules },
        })
    }
}

fn rule(
    path: &Path,
    line_of: &dyn Fn(usize) -> usize,
    verdict: Verdict,
    raw: Spanned<RawRule>,
) -> Result<Rule, ConfigError> {
    let table = if verdict == Verdict::Allow {
        "[[allow]]"
    } else {
        "[[deny]]"
    };
    let line = line_of(raw.span().start);
    let err = |line: usize, key: &'static str, message: String| ConfigError::Value {
        path: path.to_owned(),
        line,
        key,
        message,
    };
    let raw = raw.into_inner();
    let ids = |key: &'static str, list: Vec<Spanned<RawId>>| {
        list.into_iter()
            .map(|id| {
                let at = line_of(id.span().start);
                match id.into_inner() {
                    RawId::Id(n) => Ok(Principal::Id(n)),
                    RawId::Name(s) => Principal::parse(&s).map_err(|m| err(at, key, m)),
                }
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let users = ids("users", raw.users)?;
    let groups = ids("groups", raw.groups)?;
    let bridges = raw
        .bridges
        .into_iter()
        .map(|b| {
            let at = line_of(b.span().start);
            BridgePattern::parse(b.get_ref()).map_err(|m| err(at, "bridges", m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if users.is_empty() && groups.is_empty() {
        return Err(err(
            line,
            "users",
            format!(
                "this {table} rule names no users or groups; use users = [\"*\"] to mean everyone"
            ),
        ));
    }
    if bridges.is_empty() {
        return Err(err(
            line,
            "bridges",
            format!("this {table} rule names no bridges; use bridges = [\"*\"] to mean all"),
        ));
    }
    Ok(Rule {
        verdict,
        location: format!("{} line {line}", path.display()),
        users,
        groups,
        bridges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/kvmnet/kvmnet.toml"), t)
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.bridge, None);
        assert!(!c.create_bridge);
        assert!(c.source.is_some());
    }

    #[test]
    fn bridge_and_create() {
        let c = parse("# comment\nbridge = \"br-lab\"\ncreate_bridge = true\n").unwrap();
        assert_eq!(c.bridge.unwrap().as_str(), "br-lab");
        assert!(c.create_bridge);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("bridge = \"br0\"\n\nbrigde = \"br1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/kvmnet/kvmnet.toml line 3: "), "{e}");
        assert!(e.contains("brigde"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn malformed_toml_is_one_line_with_line_number() {
        let e = parse("bridge = \"br0\"\ncreate_bridge = yes\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/kvmnet/kvmnet.toml line 2: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn wrong_type_and_bad_bridge_name() {
        let e = parse("create_bridge = \"yes\"\n").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("\nbridge = \"br0;reboot\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: bridge: "), "{e}");
        let e = parse("bridge = \"a-very-long-bridge-name\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 15"), "{e}");
    }

    #[test]
    fn acl_rules_with_lines() {
        let c = parse(
            "bridge = \"br0\"\n[[allow]]\ngroups = [\"kvm\", 108]\nbridges = [\"br0\", \"br-lab\"]\n\n[[deny]]\nusers = [\"guest\", \"1001\"]\nbridges = [\"*\"]\n",
        )
        .unwrap();
        let r = &c.acl.rules;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].verdict, Verdict::Allow);
        assert_eq!(r[0].location, "/etc/kvmnet/kvmnet.toml line 2");
        assert_eq!(
            r[0].groups,
            vec![Principal::Name("kvm".into()), Principal::Id(108)]
        );
        assert_eq!(r[1].verdict, Verdict::Deny);
        assert_eq!(r[1].location, "/etc/kvmnet/kvmnet.toml line 6");
        assert_eq!(r[1].users[1], Principal::Id(1001));
        assert_eq!(r[1].bridges, vec![BridgePattern::Any]);
    }

    #[test]
    fn bad_acl_rules_are_errors_with_lines() {
        let e = parse("[[allow]]\nbridges = [\"br0\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1: users: this [[allow]] rule names no users"),
            "{e}"
        );
        let e = parse("[[deny]]\nusers = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: bridges:"), "{e}");
        let e = parse("[[allow]]\nusers = [\"x\"]\nbridges = [\"br0\", \"b r\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3: bridges:"), "{e}");
        let e = parse("[[allow]]\nusers = [\"bad name\"]\nbridges = [\"*\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: users:"), "{e}");
        let e = parse("[[allow]]\nuser = [\"x\"]\nbridges = [\"*\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `user`"), "{e}");
        let e = parse("[[allow]]\nusers = [-1]\nbridges = [\"*\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn missing_file_is_defaults_and_too_large_is_refused() {
        let c = Config::load(Path::new("/nonexistent/kvmnet.toml"), true).unwrap();
        assert_eq!(c, Config::default());
        let dir = std::env::temp_dir().join(format!("kvmnet-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_SIZE as usize + 1)).unwrap();
        let r = Config::load(&big, false);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(r, Err(ConfigError::TooLarge { .. })));
    }
}
