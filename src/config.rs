//! /etc/kvmnet/kvmnet.toml: load and validate. Any unknown key or bad value is
//! an error that names the file, the line and the key, and nothing is touched.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::acl::{Acl, BridgePattern, Principal, Rule, Verdict};
use crate::name::BridgeName;
use crate::settings::{
    self, Glob, HostMac, Layer, MtuPolicy, NetMode, Settings, TapRule, VlanRange,
};

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

/// Defines the raw (as written) form of the per-tap keys for both the top
/// level and `[[rule]]`: serde cannot combine `flatten` with
/// `deny_unknown_fields`, so the list is written once here and spliced in.
macro_rules! raw_with_layer {
    ($(#[$m:meta])* struct $name:ident { $($extra:tt)* }) => {
        $(#[$m])*
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            bridge: Option<Spanned<String>>,
            create_bridge: Option<bool>,
            mode: Option<Spanned<String>>,
            mtu: Option<Spanned<RawMtu>>,
            host_mac: Option<Spanned<String>>,
            group: Option<Spanned<RawId>>,
            vlan: Option<Spanned<i64>>,
            trunk: Option<Vec<Spanned<RawVlans>>>,
            isolated: Option<bool>,
            learning: Option<bool>,
            flooding: Option<bool>,
            addresses: Option<Vec<Spanned<String>>>,
        }

        impl $name {
            fn layer(&self, p: &Parser<'_>) -> Result<Layer, ConfigError> {
                layer(
                    p,
                    RawLayer {
                        bridge: &self.bridge,
                        create_bridge: self.create_bridge,
                        mode: &self.mode,
                        mtu: &self.mtu,
                        host_mac: &self.host_mac,
                        group: &self.group,
                        vlan: &self.vlan,
                        trunk: &self.trunk,
                        isolated: self.isolated,
                        learning: self.learning,
                        flooding: self.flooding,
                        addresses: &self.addresses,
                    },
                )
            }
        }
    };
}

raw_with_layer!(
    struct RawConfig {
        helper_tap: Option<Spanned<String>>,
        #[serde(default)]
        allow: Vec<Spanned<RawRule>>,
        #[serde(default)]
        deny: Vec<Spanned<RawRule>>,
        #[serde(default)]
        rule: Vec<Spanned<RawTapRule>>,
    }
);

raw_with_layer!(
    struct RawTapRule {
        #[serde(rename = "match")]
        pattern: Option<Spanned<String>>,
        match_bridge: Option<Spanned<String>>,
    }
);

struct RawLayer<'a> {
    bridge: &'a Option<Spanned<String>>,
    create_bridge: Option<bool>,
    mode: &'a Option<Spanned<String>>,
    mtu: &'a Option<Spanned<RawMtu>>,
    host_mac: &'a Option<Spanned<String>>,
    group: &'a Option<Spanned<RawId>>,
    vlan: &'a Option<Spanned<i64>>,
    trunk: &'a Option<Vec<Spanned<RawVlans>>>,
    isolated: Option<bool>,
    learning: Option<bool>,
    flooding: Option<bool>,
    addresses: &'a Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMtu {
    Number(i64),
    Word(String),
}

/// `trunk` entries: 20 or "20" or "30-39".
#[derive(Deserialize)]
#[serde(untagged)]
enum RawVlans {
    Number(i64),
    Text(String),
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

/// A config text without its whole-line comments, and where each of its lines
/// was in the file.
struct Stripped {
    text: String,
    /// `line[i]`: the file's line number of line i + 1 of `text`, plus one
    /// entry for the end of the text.
    line: Vec<usize>,
}

/// Drops the lines that are only a comment, or returns `None` when there are
/// none, or when a line opens a multi-line string (in which a line starting
/// with `#` is text, not a comment).
///
/// The shipped file is ~5 KB, nearly all comments, and parsing it took
/// 8.1 µs at every VM start, warm (toml's lexer spends ~1.7 ns on a comment
/// byte; a fresh process pays more); with this pass first, 3.7 µs. The
/// result means exactly what the file means: outside a string, a line that
/// starts with `#` is a comment, which TOML treats as the empty line it ends
/// (the line before keeps its own newline), and a string can only span lines
/// as a multi-line string, which this refuses to touch. A comment line with a
/// control character stays, for toml to refuse as it would anyway, and a
/// text with a byte-order mark is left alone.
fn strip_comment_lines(text: &str) -> Option<Stripped> {
    // A byte-order mark is only one at the very start: dropping the lines
    // before one would turn it from an error into a BOM.
    if !text.contains('#') || text.contains('\u{feff}') {
        return None;
    }
    let mut kept = Stripped {
        text: String::with_capacity(256),
        line: Vec::with_capacity(32),
    };
    let mut dropped = false;
    let mut n = 0;
    for line in text.split_inclusive('\n') {
        n += 1;
        if line.trim_start_matches([' ', '\t']).starts_with('#') && !has_control(line) {
            dropped = true;
            continue;
        }
        if line.contains(r#"""""#) || line.contains("'''") {
            return None;
        }
        kept.text.push_str(line);
        kept.line.push(n);
    }
    // the end of the text: after the last line, or on it when it has no newline
    kept.line.push(if text.ends_with('\n') {
        n + 1
    } else {
        n.max(1)
    });
    dropped.then_some(kept)
}

/// A control character other than tab in `line` (its CRLF or LF ending
/// aside): toml refuses those in comments, so such a line is left for it to
/// report.
fn has_control(line: &str) -> bool {
    let body = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    // A fold without early exit, which the compiler vectorises: most of a
    // config is comment bytes, and this runs over all of them.
    body.bytes().fold(false, |bad, b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from; `None` when there was none (Debian drop-in mode).
    pub source: Option<PathBuf>,
    /// The top-level per-tap keys: defaults for every tap.
    pub defaults: Layer,
    /// `[[rule]]` tables in file order; the first whose glob matches wins.
    pub rules: Vec<TapRule>,
    /// Who may use which bridge (applies to everyone but plain root).
    pub acl: Acl,
    /// Name template of the taps kvmnet-bridge-helper creates.
    pub helper_tap: String,
}

pub const DEFAULT_HELPER_TAP: &str = "tap%d";

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            defaults: Layer::default(),
            rules: Vec::new(),
            acl: Acl::default(),
            helper_tap: DEFAULT_HELPER_TAP.to_owned(),
        }
    }
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
        // Sized from the file, so that it is read in one go rather than in
        // 32-byte-and-doubling steps (ten reads for the shipped 5 KB file).
        let size = file.metadata().map_or(0, |m| m.len()).min(MAX_SIZE);
        let mut text = String::with_capacity(size as usize + 1);
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
        match strip_comment_lines(text) {
            Some(s) => Config::parse_lines(path, &s.text, Some(&s.line)),
            None => Config::parse_lines(path, text, None),
        }
    }

    /// [`Config::parse`] without dropping comment lines first: what it must
    /// always agree with (the `config` fuzz target and the tests check).
    #[doc(hidden)]
    pub fn parse_verbatim(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_lines(path, text, None)
    }

    /// `file_line`: the file's line number of each line of `text`, when
    /// lines were dropped from it.
    fn parse_lines(
        path: &Path,
        text: &str,
        file_line: Option<&[usize]>,
    ) -> Result<Config, ConfigError> {
        let line_of = |offset: usize| {
            let n = text[..offset.min(text.len())].matches('\n').count() + 1;
            file_line.map_or(n, |l| l.get(n - 1).copied().unwrap_or(n))
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |s| line_of(s.start)),
            // toml's message is multi-line with a source excerpt; keep its first line
            // The message can quote a key the file spelled with escapes:
            // keep the one line free of control and invisible characters.
            message: crate::name::printable(e.message().trim_end()),
        })?;
        let p = Parser {
            path,
            line_of: &line_of,
        };
        let defaults = raw.layer(&p)?;
        let top = settings::effective(&defaults, None);
        if let Some((key, message)) = settings::contradiction(&defaults, &top) {
            return Err(p.err(1, key, message));
        }
        let mut rules = Vec::new();
        for r in &raw.rule {
            let line = line_of(r.span().start);
            let body = r.get_ref();
            let pattern = body
                .pattern
                .as_ref()
                .map(|g| Glob::new(g.get_ref()).map_err(|m| p.err(p.line(g), "match", m)))
                .transpose()?;
            let on_bridge = body
                .match_bridge
                .as_ref()
                .map(|b| {
                    BridgeName::new(b.get_ref())
                        .map_err(|e| p.err(p.line(b), "match_bridge", e.to_string()))
                })
                .transpose()?;
            if pattern.is_none() && on_bridge.is_none() {
                return Err(p.err(
                    line,
                    "match",
                    "a [[rule]] needs `match = \"GLOB\"` (tap names) and/or `match_bridge = \"BRIDGE\"`".into(),
                ));
            }
            let layer = body.layer(&p)?;
            let rule = TapRule {
                pattern,
                on_bridge,
                location: format!("{} line {line}", path.display()),
                layer,
            };
            let eff = settings::effective(&defaults, Some((rules.len(), &rule)));
            if let Some((key, message)) = settings::contradiction(&rule.layer, &eff) {
                return Err(p.err(line, key, message));
            }
            rules.push(rule);
        }
        let mut acl = Vec::new();
        for (verdict, list) in [(Verdict::Allow, raw.allow), (Verdict::Deny, raw.deny)] {
            for r in list {
                acl.push(acl_rule(path, &line_of, verdict, r)?);
            }
        }
        let helper_tap = match &raw.helper_tap {
            None => DEFAULT_HELPER_TAP.to_owned(),
            Some(t) => {
                let text = t.get_ref();
                let base = text.replacen("%d", "0", 1);
                if !text.contains("%d") || text.len() > 13 || crate::name::validate(&base).is_err()
                {
                    return Err(p.err(
                        p.line(t),
                        "helper_tap",
                        format!("{text:?} must be up to 13 interface-name characters with one %d, like \"tap%d\""),
                    ));
                }
                text.clone()
            }
        };
        Ok(Config {
            source: Some(path.to_owned()),
            defaults,
            rules,
            acl: Acl { rules: acl },
            helper_tap,
        })
    }

    /// The effective settings for one tap name (rules with `match_bridge`
    /// are judged against the top-level bridge).
    pub fn settings_for(&self, tap: &str) -> Settings {
        let bridge = self.defaults.bridge.as_ref().map(|b| b.as_str());
        settings::resolve(&self.defaults, &self.rules, tap, bridge)
    }

    /// The effective settings for a tap known to go to `bridge`.
    pub fn settings_on(&self, tap: &str, bridge: &str) -> Settings {
        settings::resolve(&self.defaults, &self.rules, tap, Some(bridge))
    }
}

struct Parser<'a> {
    path: &'a Path,
    line_of: &'a dyn Fn(usize) -> usize,
}

impl Parser<'_> {
    fn err(&self, line: usize, key: &'static str, message: String) -> ConfigError {
        ConfigError::Value {
            path: self.path.to_owned(),
            line,
            key,
            message,
        }
    }
    fn line<T>(&self, v: &Spanned<T>) -> usize {
        (self.line_of)(v.span().start)
    }
}

fn layer(p: &Parser<'_>, raw: RawLayer<'_>) -> Result<Layer, ConfigError> {
    let word =
        |key: &'static str, v: &Spanned<String>, choices: &[&str]| -> Result<usize, ConfigError> {
            choices
                .iter()
                .position(|c| c == v.get_ref())
                .ok_or_else(|| {
                    let list: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                    p.err(
                        p.line(v),
                        key,
                        format!("{:?} is not {}", v.get_ref(), list.join(" or ")),
                    )
                })
        };
    let bridge = raw
        .bridge
        .as_ref()
        .map(|b| {
            BridgeName::new(b.get_ref()).map_err(|e| p.err(p.line(b), "bridge", e.to_string()))
        })
        .transpose()?;
    let mode = raw
        .mode
        .as_ref()
        .map(|m| {
            word("mode", m, &["bridge", "route"]).map(|i| [NetMode::Bridge, NetMode::Route][i])
        })
        .transpose()?;
    let host_mac = raw
        .host_mac
        .as_ref()
        .map(|m| word("host_mac", m, &["fe", "keep"]).map(|i| [HostMac::Fe, HostMac::Keep][i]))
        .transpose()?;
    let mtu = raw
        .mtu
        .as_ref()
        .map(|m| match m.get_ref() {
            RawMtu::Word(w) if w == "bridge" => Ok(MtuPolicy::Bridge),
            RawMtu::Number(n) if (68..=65521).contains(n) => Ok(MtuPolicy::Fixed(*n as u32)),
            RawMtu::Number(n) => Err(p.err(p.line(m), "mtu", format!("{n} is outside 68-65521"))),
            RawMtu::Word(w) => Err(p.err(
                p.line(m),
                "mtu",
                format!("{w:?} is not \"bridge\" or a number"),
            )),
        })
        .transpose()?;
    let group = raw
        .group
        .as_ref()
        .map(|g| match g.get_ref() {
            RawId::Id(n) => Ok(Principal::Id(*n)),
            RawId::Name(s) if s == "*" => {
                Err(p.err(p.line(g), "group", "must name one group".into()))
            }
            RawId::Name(s) => Principal::parse(s).map_err(|m| p.err(p.line(g), "group", m)),
        })
        .transpose()?;
    let vlan = raw
        .vlan
        .as_ref()
        .map(|v| {
            u16::try_from(*v.get_ref())
                .map_err(|_| format!("VLAN {} is outside 1-4094", v.get_ref()))
                .and_then(settings::check_vid)
                .map_err(|m| p.err(p.line(v), "vlan", m))
        })
        .transpose()?;
    let trunk = raw
        .trunk
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|t| {
                    let text = match t.get_ref() {
                        RawVlans::Number(n) => n.to_string(),
                        RawVlans::Text(s) => s.clone(),
                    };
                    VlanRange::parse(&text).map_err(|m| p.err(p.line(t), "trunk", m))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(settings::merge_vlans)
        })
        .transpose()?;
    let addresses = raw
        .addresses
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|a| {
                    let ip: std::net::IpAddr = a.get_ref().parse().map_err(|_| {
                        p.err(
                            p.line(a),
                            "addresses",
                            format!("{:?} is not an IP address", a.get_ref()),
                        )
                    })?;
                    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
                        return Err(p.err(
                            p.line(a),
                            "addresses",
                            format!("{ip} cannot be a guest's address"),
                        ));
                    }
                    Ok(ip)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Layer {
        bridge,
        create_bridge: raw.create_bridge,
        mode,
        mtu,
        host_mac,
        group,
        vlan,
        trunk,
        isolated: raw.isolated,
        learning: raw.learning,
        flooding: raw.flooding,
        addresses,
    })
}

fn acl_rule(
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
    use crate::settings::NetMode;

    /// Every test input also checks that dropping comment lines changes
    /// nothing: the same config, or the same error on the same line.
    fn parse(t: &str) -> Result<Config, ConfigError> {
        let path = Path::new("/etc/kvmnet/kvmnet.toml");
        let fast = Config::parse(path, t);
        let verbatim = Config::parse_verbatim(path, t);
        match (&fast, &verbatim) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{t:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{t:?}"),
            _ => panic!("{t:?}: {fast:?} but verbatim {verbatim:?}"),
        }
        fast
    }

    #[test]
    fn comment_lines_are_dropped_without_moving_line_numbers() {
        let shipped = include_str!("../packaging/kvmnet.toml");
        assert!(strip_comment_lines(shipped).is_some());
        parse(shipped).unwrap();
        // an error after 130 comment lines is still reported on its own line
        let e = parse(&format!("{shipped}bridge = \"br0\"\nmtu = 12\n"))
            .unwrap_err()
            .to_string();
        let line = shipped.lines().count() + 2;
        assert!(
            e.starts_with(&format!("/etc/kvmnet/kvmnet.toml line {line}: ")),
            "{e}"
        );
        for text in [
            // comments inside a multi-line array, indented, with CRLF
            "bridge = \"br0\"\r\n[[rule]]\r\n  # about it\r\nmatch = \"vm*\"\r\ntrunk = [\r\n\t# web\r\n  \"20\",\r\n  # db\r\n  \"30-39\",\r\n]\r\n",
            // a comment line last, without a newline; one that is only "#"
            "bridge = \"br0\"\n#\n# end",
            // errors just before, just after, and at the end after comments
            "# a\nbrigde = \"br0\"\n# b\n",
            "# a\n# b\nbridge = \n# c\n",
            "# a\nbridge = \"br0\"\n# b\n[[rule]]\n# c",
            "# a\nbridge = [\"br0\",\n# b\n",
            // not comments: inside a multi-line string (never stripped)
            "# a\nhelper_tap = \"\"\"\n# not a comment\n\"\"\"\n",
            "# a\nhelper_tap = '''\n# not a comment\n'''\n",
            // a # that does not start the line
            "bridge = \"br#0\" # trailing\n# whole\n",
        ] {
            let _ = parse(text);
        }
        assert!(strip_comment_lines("helper_tap = \"\"\"\n# x\n\"\"\"\n").is_none());
        assert!(strip_comment_lines("bridge = \"br0\"\n").is_none());
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.defaults, Layer::default());
        assert!(c.rules.is_empty());
        assert!(c.source.is_some());
    }

    #[test]
    fn bridge_and_create() {
        let c = parse("# comment\nbridge = \"br-lab\"\ncreate_bridge = true\n").unwrap();
        let s = c.settings_for("any");
        assert_eq!(s.bridge.unwrap().as_str(), "br-lab");
        assert!(s.create_bridge);
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
    fn the_issues_example_rules() {
        let c = parse(
            r#"bridge = "br0"
[[rule]]
match = "lab-*"
bridge = "br-lab"
vlan = 10
trunk = ["20", "30-39"]
isolated = true
[[rule]]
match = "rt-*"
mode = "route"
addresses = ["192.0.2.10", "2001:db8::10"]
"#,
        )
        .unwrap();
        let lab = c.settings_for("lab-7");
        assert_eq!(lab.bridge.unwrap().as_str(), "br-lab");
        assert_eq!(lab.vlan, Some(10));
        assert_eq!(lab.trunk.len(), 2);
        assert_eq!(lab.trunk[1].to_string(), "30-39");
        assert_eq!(lab.isolated, Some(true));
        assert_eq!(
            lab.rule.as_deref(),
            Some("rule 1 (lab-*) at /etc/kvmnet/kvmnet.toml line 2")
        );
        let rt = c.settings_for("rt-web");
        assert_eq!(rt.mode, NetMode::Route);
        assert_eq!(rt.addresses.len(), 2);
        let other = c.settings_for("web0");
        assert_eq!((other.bridge.unwrap().as_str(), other.rule), ("br0", None));
    }

    #[test]
    fn per_tap_keys_are_validated_with_lines() {
        for (text, needle) in [
            ("vlan = 4095\n", "line 1: vlan: VLAN 4095 is outside 1-4094"),
            ("vlan = 0\n", "line 1: vlan:"),
            ("trunk = [\"40-30\"]\n", "line 1: trunk:"),
            ("mtu = 20\n", "line 1: mtu: 20 is outside 68-65521"),
            ("mtu = \"jumbo\"\n", "line 1: mtu:"),
            ("mode = \"nat\"\n", "line 1: mode: \"nat\" is not \"bridge\" or \"route\""),
            ("host_mac = \"random\"\n", "line 1: host_mac:"),
            ("[[rule]]\nmatch = \"a b\"\n", "line 2: match:"),
            ("[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\n", "line 1: addresses: mode = \"route\" needs"),
            ("[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.1\"]\nvlan = 3\n", "line 1: vlan: does not apply"),
            ("[[rule]]\nmatch = \"x\"\naddresses = [\"192.0.2.1\"]\n", "addresses: only applies"),
            ("[[rule]]\nmatch = \"x\"\nmode = \"route\"\naddresses = [\"224.0.0.1\"]\n", "line 4: addresses: 224.0.0.1 cannot"),
            ("[[rule]]\nmatch = \"x\"\nmode = \"route\"\naddresses = [\"nope\"]\n", "line 4: addresses:"),
            ("vlan = 10\ntrunk = [\"5-15\"]\n", "trunk: VLAN 10 is the untagged"),
            ("[[rule]]\nmatch = \"x\"\nbogus = 1\n", "unknown field `bogus`"),
            ("[[rule]]\nbridge = \"br0\"\n", "line 1: match: a [[rule]] needs"),
            ("helper_tap = \"vm\"\n", "line 1: helper_tap:"),
            ("helper_tap = \"tap%d%d-long-name\"\n", "line 1: helper_tap:"),
            ("group = \"*\"\n", "line 1: group:"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
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
