//! /etc/kvmnet/kvmnet.toml: load and validate. Any unknown key or bad value is
//! an error that names the file, the line and the key, and nothing is touched.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

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
}

impl Config {
    /// Loads `path`; a missing file is not an error but the built-in defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(read_err(e)),
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
        Ok(Config {
            source: Some(path.to_owned()),
            bridge,
            create_bridge: raw.create_bridge.unwrap_or(false),
        })
    }
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
    fn missing_file_is_defaults_and_too_large_is_refused() {
        let c = Config::load(Path::new("/nonexistent/kvmnet.toml")).unwrap();
        assert_eq!(c, Config::default());
        let dir = std::env::temp_dir().join(format!("kvmnet-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_SIZE as usize + 1)).unwrap();
        let r = Config::load(&big);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(r, Err(ConfigError::TooLarge { .. })));
    }
}
