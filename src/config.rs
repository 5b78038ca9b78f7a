//! /etc/kvmnet/kvmnet.toml: load and validate. Any unknown key or bad value is
//! an error that names the file, the line and the key, and nothing is touched.

use std::io;
use std::path::{Path, PathBuf};

use crate::acl::{Acl, BridgePattern, Principal, Rule, Verdict};
use std::net::IpAddr;

use crate::guard::Prefix;
use crate::name::BridgeName;
use crate::net::def::Network;
use crate::rate::Rate;
use crate::settings::{
    self, Glob, GuestMac, HostMac, Layer, MtuPolicy, NetMode, Settings, TapRule, VlanRange,
};
use crate::vxlan::{Remote, Vxlan};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

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

/// A value as written, and the line it is on.
struct At<T> {
    line: usize,
    v: T,
}

/// The per-tap keys, as written: the top level holds them (the defaults) and
/// so does every `[[rule]]`.
const LAYER_KEYS: [&str; 29] = [
    "bridge",
    "create_bridge",
    "mode",
    "mtu",
    "host_mac",
    "group",
    "vlan",
    "trunk",
    "isolated",
    "learning",
    "flooding",
    "addresses",
    "guard",
    "guest_mac",
    "guest_ipv4",
    "guest_ipv6",
    "rate_out",
    "burst_out",
    "rate_in",
    "burst_in",
    "vxlan_vni",
    "vxlan_peers",
    "vxlan_group",
    "vxlan_dev",
    "vxlan_local",
    "vxlan_port",
    "vxlan_learning",
    "evpn",
    "ovs_iface_id",
];
const TOP_KEYS: [&str; 8] = [
    "helper_tap",
    "max_ports_per_user",
    "ovs_db",
    "ovs_timeout",
    "allow",
    "deny",
    "rule",
    "network",
];
const RULE_KEYS: [&str; 3] = ["match", "match_bridge", "network"];
const NETWORK_KEYS: [&str; 8] = [
    "name",
    "bridge",
    "ipv4",
    "dhcp_range",
    "nat",
    "uplink",
    "ipv6",
    "domain",
];
const ACL_KEYS: [&str; 3] = ["users", "groups", "bridges"];

struct RawLayer {
    bridge: Option<At<String>>,
    create_bridge: Option<bool>,
    mode: Option<At<String>>,
    mtu: Option<At<RawMtu>>,
    host_mac: Option<At<String>>,
    group: Option<At<RawId>>,
    vlan: Option<At<i64>>,
    trunk: Option<Vec<At<RawVlans>>>,
    isolated: Option<bool>,
    learning: Option<bool>,
    flooding: Option<bool>,
    addresses: Option<Vec<At<String>>>,
    guard: Option<bool>,
    guest_mac: Option<Vec<At<String>>>,
    guest_ipv4: Option<Vec<At<String>>>,
    guest_ipv6: Option<Vec<At<String>>>,
    rate_out: Option<At<String>>,
    burst_out: Option<At<String>>,
    rate_in: Option<At<String>>,
    burst_in: Option<At<String>>,
    vxlan_vni: Option<At<i64>>,
    vxlan_peers: Option<Vec<At<String>>>,
    vxlan_group: Option<At<String>>,
    vxlan_dev: Option<At<String>>,
    vxlan_local: Option<At<String>>,
    vxlan_port: Option<At<i64>>,
    vxlan_learning: Option<At<bool>>,
    evpn: Option<At<bool>>,
    ovs_iface_id: Option<At<String>>,
}

/// `mtu`: "bridge" or a number.
enum RawMtu {
    Number(i64),
    Word(String),
}

/// `trunk` entries: 20 or "20" or "30-39".
enum RawVlans {
    Number(i64),
    Text(String),
}

/// `users`/`groups` entries: a name, "*", or a numeric id (integer or string).
enum RawId {
    Id(u32),
    Name(String),
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
    /// How many ports of one bridge a caller other than root may own.
    pub max_ports_per_user: u32,
    /// ovsdb-server's socket (`ovs_db`), for mode = "ovs".
    pub ovs_db: PathBuf,
    /// How long an OVS attach may take, waiting for ovs-vswitchd included.
    pub ovs_timeout: std::time::Duration,
    /// `[[network]]`: private networks `kvmnet net up` makes.
    pub networks: Vec<Network>,
}

pub const DEFAULT_HELPER_TAP: &str = "tap%d";
/// A Linux bridge holds 1,023 ports; one user may fill an eighth of it.
pub const DEFAULT_MAX_PORTS_PER_USER: u32 = 128;

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            defaults: Layer::default(),
            rules: Vec::new(),
            acl: Acl::default(),
            helper_tap: DEFAULT_HELPER_TAP.to_owned(),
            max_ports_per_user: DEFAULT_MAX_PORTS_PER_USER,
            ovs_db: PathBuf::from(crate::ovsdb::DEFAULT_SOCKET),
            ovs_timeout: crate::ovsdb::DEFAULT_TIMEOUT,
            networks: Vec::new(),
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
            use crate::trust::Opened;
            // Root's own choice of file (KVMNET_CONFIG), but still only a
            // regular file: a FIFO there would hang every VM start.
            match crate::trust::open_regular(path) {
                Ok(opened) => Some(opened),
                Err(Opened::Io(e)) if e.kind() == io::ErrorKind::NotFound => None,
                Err(Opened::Io(e)) => return Err(read_err(e)),
                Err(Opened::NotRegular(what)) => {
                    return Err(crate::trust::TrustError::NotRegular {
                        path: path.to_owned(),
                        what,
                    }
                    .into())
                }
            }
        };
        let Some((file, meta)) = opened else {
            return Ok(Config::default());
        };
        let bytes = crate::trust::read_whole(file, &meta, MAX_SIZE)
            .map_err(read_err)?
            .ok_or_else(|| ConfigError::TooLarge {
                path: path.to_owned(),
            })?;
        // TOML is UTF-8: anything else is refused, never read in part.
        let text = String::from_utf8(bytes).map_err(|e| {
            read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it is not UTF-8 text (an invalid byte at offset {}); write it in UTF-8",
                    e.utf8_error().valid_up_to()
                ),
            ))
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let lines = Lines::of(text);
        let root = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |s| lines.line(s.start)),
            // toml's message can quote a key the file spelled with escapes:
            // keep the one line free of control and invisible characters.
            message: crate::name::printable(e.message().trim_end()),
        })?;
        Parser { path, lines }.config(root.get_ref())
    }

    /// The effective settings for one tap name (rules with `match_bridge`
    /// are judged against the top-level bridge).
    pub fn settings_for(&self, tap: &str) -> Settings {
        let bridge = self.defaults.bridge.as_ref().map(|b| b.as_str());
        settings::resolve(&self.defaults, &self.rules, tap, bridge)
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The effective settings for a tap known to go to `bridge`.
    pub fn settings_on(&self, tap: &str, bridge: &str) -> Settings {
        settings::resolve(&self.defaults, &self.rules, tap, Some(bridge))
    }
}

/// A value of the document and where it starts.
type Item<'i> = Spanned<DeValue<'i>>;

/// Where each line of the text starts: toml gives byte offsets, messages
/// give lines. Worked out once, when the first line is asked for (a config
/// that sets nothing never asks).
struct Lines<'t> {
    text: &'t str,
    /// The offset of every newline.
    newlines: std::cell::OnceCell<Vec<usize>>,
}

impl<'t> Lines<'t> {
    fn of(text: &'t str) -> Lines<'t> {
        Lines {
            text,
            newlines: std::cell::OnceCell::new(),
        }
    }

    /// The line (from 1) of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let newlines = self
            .newlines
            .get_or_init(|| self.text.match_indices('\n').map(|(i, _)| i).collect());
        newlines.partition_point(|&n| n < offset) + 1
    }
}

/// Reads the document's tables into the schema's types: every key known,
/// every value of the type its key takes, each error on its line.
struct Parser<'a> {
    path: &'a Path,
    lines: Lines<'a>,
}

impl Parser<'_> {
    fn config(&self, root: &DeTable<'_>) -> Result<Config, ConfigError> {
        let (p, path) = (self, self.path);
        p.known_keys(root, &[&TOP_KEYS, &LAYER_KEYS])?;
        let mut networks: Vec<Network> = Vec::new();
        for (table, line) in p.tables(root, "network")? {
            let n = network(p, table, line)?;
            for other in &networks {
                let clash = if other.name == n.name {
                    Some(("name", format!("{:?} names another network too", n.name)))
                } else if other.bridge == n.bridge {
                    Some((
                        "bridge",
                        format!("{} is network {}'s bridge already", n.bridge, other.name),
                    ))
                } else if other.overlaps(&n) {
                    Some((
                        "ipv4",
                        format!(
                            "{}/{} overlaps network {}'s {}/{}",
                            n.subnet(),
                            n.prefix,
                            other.name,
                            other.subnet(),
                            other.prefix
                        ),
                    ))
                } else {
                    None
                };
                if let Some((key, m)) = clash {
                    return Err(p.err(line, key, m));
                }
            }
            networks.push(n);
        }
        let defaults = layer(p, &p.raw_layer(root)?)?;
        if let Some((key, message)) =
            network_clash(&settings::effective(&defaults, None), &networks)
        {
            return Err(p.err(1, key, message));
        }
        let top = settings::effective(&defaults, None);
        if let Some((key, message)) = settings::contradiction(&defaults, &top) {
            return Err(p.err(1, key, message));
        }
        let mut rules = Vec::new();
        for (table, line) in p.tables(root, "rule")? {
            p.known_keys(table, &[&RULE_KEYS, &LAYER_KEYS])?;
            let pattern = p
                .string(table, "match")?
                .map(|g| Glob::new(&g.v).map_err(|m| p.err(g.line, "match", m)))
                .transpose()?;
            let on_bridge = p
                .string(table, "match_bridge")?
                .map(|b| {
                    BridgeName::new(&b.v).map_err(|e| p.err(b.line, "match_bridge", e.to_string()))
                })
                .transpose()?;
            if pattern.is_none() && on_bridge.is_none() {
                return Err(p.err(
                    line,
                    "match",
                    "a [[rule]] needs `match = \"GLOB\"` (tap names) and/or `match_bridge = \"BRIDGE\"`".into(),
                ));
            }
            let mut layer = layer(p, &p.raw_layer(table)?)?;
            if let Some(net) = p.string(table, "network")? {
                join_network(p, &mut layer, &net, &networks)?;
            }
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
            if let Some((key, message)) = network_clash(&eff, &networks) {
                return Err(p.err(line, key, message));
            }
            rules.push(rule);
        }
        let mut acl = Vec::new();
        for (verdict, key) in [(Verdict::Allow, "allow"), (Verdict::Deny, "deny")] {
            for (table, line) in p.tables(root, key)? {
                acl.push(acl_rule(p, verdict, table, line)?);
            }
        }
        let helper_tap = match p.string(root, "helper_tap")? {
            None => DEFAULT_HELPER_TAP.to_owned(),
            Some(t) => {
                let base = t.v.replacen("%d", "0", 1);
                if !t.v.contains("%d") || t.v.len() > 13 || crate::name::validate(&base).is_err() {
                    return Err(p.err(
                        t.line,
                        "helper_tap",
                        format!("{:?} must be up to 13 interface-name characters with one %d, like \"tap%d\"", t.v),
                    ));
                }
                t.v
            }
        };
        let max_ports_per_user = match root.get("max_ports_per_user") {
            None => DEFAULT_MAX_PORTS_PER_USER,
            Some(item) => match p.int("max_ports_per_user", item, "a number of ports")? {
                n @ 1..=1023 => n as u32,
                n => {
                    return Err(p.err(
                        p.line(item),
                        "max_ports_per_user",
                        format!("{n} is outside 1-1023 (a bridge holds at most 1023 ports)"),
                    ))
                }
            },
        };
        let ovs_db = match p.string(root, "ovs_db")? {
            None => PathBuf::from(crate::ovsdb::DEFAULT_SOCKET),
            Some(t) if t.v.starts_with('/') && !t.v.contains('\0') => PathBuf::from(t.v),
            Some(t) => {
                return Err(p.err(
                    t.line,
                    "ovs_db",
                    format!(
                        "{:?} must be the absolute path of ovsdb-server's socket",
                        t.v
                    ),
                ))
            }
        };
        let ovs_timeout = match root.get("ovs_timeout") {
            None => crate::ovsdb::DEFAULT_TIMEOUT,
            Some(item) => match p.int("ovs_timeout", item, "a number of seconds")? {
                n @ 1..=60 => std::time::Duration::from_secs(n as u64),
                n => {
                    return Err(p.err(
                        p.line(item),
                        "ovs_timeout",
                        format!("{n} is outside 1-60 seconds"),
                    ))
                }
            },
        };
        Ok(Config {
            source: Some(path.to_owned()),
            defaults,
            rules,
            acl: Acl { rules: acl },
            helper_tap,
            max_ports_per_user,
            ovs_db,
            ovs_timeout,
            networks,
        })
    }

    fn err(&self, line: usize, key: &'static str, message: String) -> ConfigError {
        ConfigError::Value {
            path: self.path.to_owned(),
            line,
            key,
            message,
        }
    }

    /// The line an item of the document starts on.
    fn line(&self, item: &Item<'_>) -> usize {
        self.lines.line(item.span().start)
    }

    /// Refuses the first key of `table` (in the order written) that is not in
    /// `known`, listing them.
    fn known_keys(
        &self,
        table: &DeTable<'_>,
        known: &[&[&'static str]],
    ) -> Result<(), ConfigError> {
        let names = known.iter().flat_map(|k| k.iter());
        let first_unknown = table
            .keys()
            .filter(|key| !names.clone().any(|k| *k == key.get_ref()))
            .min_by_key(|key| key.span().start);
        let Some(key) = first_unknown else {
            return Ok(());
        };
        let list: Vec<String> = names.map(|k| format!("`{k}`")).collect();
        Err(ConfigError::Syntax {
            path: self.path.to_owned(),
            line: self.lines.line(key.span().start),
            message: format!(
                "unknown key `{}`, expected one of {}",
                crate::name::printable(key.get_ref()),
                list.join(", ")
            ),
        })
    }

    fn type_err(&self, key: &'static str, item: &Item<'_>, expected: &str) -> ConfigError {
        let found = match item.get_ref() {
            DeValue::String(_) => "a string",
            DeValue::Integer(_) => "an integer",
            DeValue::Float(_) => "a float",
            DeValue::Boolean(_) => "a boolean",
            DeValue::Datetime(_) => "a date-time",
            DeValue::Array(_) => "an array",
            DeValue::Table(_) => "a table",
        };
        self.err(
            self.line(item),
            key,
            format!("expected {expected}, found {found}"),
        )
    }

    /// An integer as a number: TOML's are 64-bit, and toml reads any length.
    fn int(&self, key: &'static str, item: &Item<'_>, expected: &str) -> Result<i64, ConfigError> {
        match item.get_ref() {
            DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix()).map_err(|_| {
                self.err(self.line(item), key, format!("{n} does not fit in 64 bits"))
            }),
            _ => Err(self.type_err(key, item, expected)),
        }
    }

    fn string(
        &self,
        t: &DeTable<'_>,
        key: &'static str,
    ) -> Result<Option<At<String>>, ConfigError> {
        t.get(key).map(|i| self.string_item(key, i)).transpose()
    }

    fn string_item(&self, key: &'static str, item: &Item<'_>) -> Result<At<String>, ConfigError> {
        match item.get_ref() {
            DeValue::String(s) => Ok(At {
                line: self.line(item),
                v: s.to_string(),
            }),
            _ => Err(self.type_err(key, item, "a string")),
        }
    }

    fn boolean(&self, t: &DeTable<'_>, key: &'static str) -> Result<Option<bool>, ConfigError> {
        t.get(key)
            .map(|i| match i.get_ref() {
                DeValue::Boolean(b) => Ok(*b),
                _ => Err(self.type_err(key, i, "true or false")),
            })
            .transpose()
    }

    /// An integer or a string: `Ok(Err(n))` or `Ok(Ok(s))`.
    fn int_or_string(
        &self,
        key: &'static str,
        item: &Item<'_>,
        expected: &str,
    ) -> Result<At<Result<String, i64>>, ConfigError> {
        let v = match item.get_ref() {
            DeValue::String(s) => Ok(s.to_string()),
            _ => Err(self.int(key, item, expected)?),
        };
        Ok(At {
            line: self.line(item),
            v,
        })
    }

    fn list<'t, 'i>(
        &self,
        t: &'t DeTable<'i>,
        key: &'static str,
    ) -> Result<Option<&'t [Item<'i>]>, ConfigError> {
        t.get(key)
            .map(|i| match i.get_ref() {
                DeValue::Array(items) => Ok(&items[..]),
                _ => Err(self.type_err(key, i, "an array")),
            })
            .transpose()
    }

    /// The `[[key]]` tables (or `key = [{…}, …]`), each with its line.
    fn tables<'t, 'i>(
        &self,
        root: &'t DeTable<'i>,
        key: &'static str,
    ) -> Result<Vec<(&'t DeTable<'i>, usize)>, ConfigError> {
        if let Some(i) = root.get(key).filter(|i| i.get_ref().is_table()) {
            // a [rule] section, or `rule = {…}`
            return Err(self.type_err(key, i, &format!("[[{key}]] tables, with two brackets")));
        }
        self.list(root, key)?
            .unwrap_or_default()
            .iter()
            .map(|i| match i.get_ref() {
                DeValue::Table(t) => Ok((t, self.line(i))),
                _ => Err(self.type_err(key, i, "a table")),
            })
            .collect()
    }

    fn id(&self, key: &'static str, item: &Item<'_>) -> Result<At<RawId>, ConfigError> {
        let raw = self.int_or_string(key, item, "a name or a numeric id")?;
        let v =
            match raw.v {
                Ok(name) => RawId::Name(name),
                Err(n) => RawId::Id(u32::try_from(n).map_err(|_| {
                    self.err(raw.line, key, format!("{n} is not a user or group id"))
                })?),
            };
        Ok(At { line: raw.line, v })
    }

    fn raw_layer(&self, t: &DeTable<'_>) -> Result<RawLayer, ConfigError> {
        Ok(RawLayer {
            bridge: self.string(t, "bridge")?,
            create_bridge: self.boolean(t, "create_bridge")?,
            mode: self.string(t, "mode")?,
            mtu: t
                .get("mtu")
                .map(|i| {
                    let raw = self.int_or_string("mtu", i, "\"bridge\" or a number")?;
                    Ok::<_, ConfigError>(At {
                        line: raw.line,
                        v: raw.v.map_or_else(RawMtu::Number, RawMtu::Word),
                    })
                })
                .transpose()?,
            host_mac: self.string(t, "host_mac")?,
            group: t.get("group").map(|i| self.id("group", i)).transpose()?,
            vlan: t
                .get("vlan")
                .map(|i| {
                    Ok::<_, ConfigError>(At {
                        line: self.line(i),
                        v: self.int("vlan", i, "a number")?,
                    })
                })
                .transpose()?,
            trunk: self
                .list(t, "trunk")?
                .map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            let raw = self.int_or_string("trunk", i, "a VLAN number or range")?;
                            Ok::<_, ConfigError>(At {
                                line: raw.line,
                                v: raw.v.map_or_else(RawVlans::Number, RawVlans::Text),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            isolated: self.boolean(t, "isolated")?,
            learning: self.boolean(t, "learning")?,
            flooding: self.boolean(t, "flooding")?,
            addresses: self.strings(t, "addresses")?,
            guard: self.boolean(t, "guard")?,
            guest_mac: self.strings(t, "guest_mac")?,
            guest_ipv4: self.strings(t, "guest_ipv4")?,
            guest_ipv6: self.strings(t, "guest_ipv6")?,
            rate_out: self.string(t, "rate_out")?,
            burst_out: self.string(t, "burst_out")?,
            rate_in: self.string(t, "rate_in")?,
            burst_in: self.string(t, "burst_in")?,
            vxlan_vni: self.number(t, "vxlan_vni")?,
            vxlan_peers: self.strings(t, "vxlan_peers")?,
            vxlan_group: self.string(t, "vxlan_group")?,
            vxlan_dev: self.string(t, "vxlan_dev")?,
            vxlan_local: self.string(t, "vxlan_local")?,
            vxlan_port: self.number(t, "vxlan_port")?,
            vxlan_learning: self.flag(t, "vxlan_learning")?,
            evpn: self.flag(t, "evpn")?,
            ovs_iface_id: self.string(t, "ovs_iface_id")?,
        })
    }

    /// An integer key, with its line.
    fn number(&self, t: &DeTable<'_>, key: &'static str) -> Result<Option<At<i64>>, ConfigError> {
        t.get(key)
            .map(|i| {
                Ok(At {
                    line: self.line(i),
                    v: self.int(key, i, "a number")?,
                })
            })
            .transpose()
    }

    /// A boolean key, with its line.
    fn flag(&self, t: &DeTable<'_>, key: &'static str) -> Result<Option<At<bool>>, ConfigError> {
        let line = t.get(key).map(|i| self.line(i));
        Ok(self.boolean(t, key)?.map(|v| At {
            line: line.unwrap_or(0),
            v,
        }))
    }

    /// An array of strings, each with its line.
    fn strings(
        &self,
        t: &DeTable<'_>,
        key: &'static str,
    ) -> Result<Option<Vec<At<String>>>, ConfigError> {
        self.list(t, key)?
            .map(|items| {
                items
                    .iter()
                    .map(|i| self.string_item(key, i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    }
}

fn layer(p: &Parser<'_>, raw: &RawLayer) -> Result<Layer, ConfigError> {
    let word =
        |key: &'static str, v: &At<String>, choices: &[&str]| -> Result<usize, ConfigError> {
            choices.iter().position(|c| *c == v.v).ok_or_else(|| {
                let list: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
                p.err(
                    v.line,
                    key,
                    format!("{:?} is not {}", v.v, list.join(" or ")),
                )
            })
        };
    let bridge = raw
        .bridge
        .as_ref()
        .map(|b| BridgeName::new(&b.v).map_err(|e| p.err(b.line, "bridge", e.to_string())))
        .transpose()?;
    let mode = raw
        .mode
        .as_ref()
        .map(|m| {
            word("mode", m, &["bridge", "route", "ovs"])
                .map(|i| [NetMode::Bridge, NetMode::Route, NetMode::Ovs][i])
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
        .map(|m| match &m.v {
            RawMtu::Word(w) if w == "bridge" => Ok(MtuPolicy::Bridge),
            RawMtu::Number(n) if (68..=65521).contains(n) => Ok(MtuPolicy::Fixed(*n as u32)),
            RawMtu::Number(n) => Err(p.err(m.line, "mtu", format!("{n} is outside 68-65521"))),
            RawMtu::Word(w) => Err(p.err(
                m.line,
                "mtu",
                format!("{w:?} is not \"bridge\" or a number"),
            )),
        })
        .transpose()?;
    let group = raw
        .group
        .as_ref()
        .map(|g| match &g.v {
            RawId::Id(n) => Ok(Principal::Id(*n)),
            RawId::Name(s) if s == "*" => Err(p.err(g.line, "group", "must name one group".into())),
            RawId::Name(s) => Principal::parse(s).map_err(|m| p.err(g.line, "group", m)),
        })
        .transpose()?;
    let vlan = raw
        .vlan
        .as_ref()
        .map(|v| {
            u16::try_from(v.v)
                .map_err(|_| format!("VLAN {} is outside 1-4094", v.v))
                .and_then(settings::check_vid)
                .map_err(|m| p.err(v.line, "vlan", m))
        })
        .transpose()?;
    let trunk = raw
        .trunk
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|t| {
                    let text = match &t.v {
                        RawVlans::Number(n) => n.to_string(),
                        RawVlans::Text(s) => s.clone(),
                    };
                    VlanRange::parse(&text).map_err(|m| p.err(t.line, "trunk", m))
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
                    let ip: std::net::IpAddr = a.v.parse().map_err(|_| {
                        p.err(
                            a.line,
                            "addresses",
                            format!("{:?} is not an IP address", a.v),
                        )
                    })?;
                    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
                        return Err(p.err(
                            a.line,
                            "addresses",
                            format!("{ip} cannot be a guest's address"),
                        ));
                    }
                    Ok(ip)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let guest_mac = raw
        .guest_mac
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|m| GuestMac::parse(&m.v).map_err(|e| p.err(m.line, "guest_mac", e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let prefixes = |key: &'static str, list: &Option<Vec<At<String>>>| {
        list.as_ref()
            .map(|list| {
                list.iter()
                    .map(|a| a.v.parse::<Prefix>().map_err(|e| p.err(a.line, key, e)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    };
    let rate = |key: &'static str,
                burst_key: &'static str,
                rate: &Option<At<String>>,
                burst: &Option<At<String>>|
     -> Result<Option<Rate>, ConfigError> {
        match (rate, burst) {
            (Some(r), burst) => Rate::parse(&r.v, burst.as_ref().map(|b| b.v.as_str()))
                .map(Some)
                .map_err(|e| p.err(r.line, key, e.to_string())),
            (None, Some(b)) => Err(p.err(
                b.line,
                burst_key,
                format!("goes with {key} in the same table"),
            )),
            (None, None) => Ok(None),
        }
    };
    let rate_out = rate("rate_out", "burst_out", &raw.rate_out, &raw.burst_out)?;
    let rate_in = rate("rate_in", "burst_in", &raw.rate_in, &raw.burst_in)?;
    let guest_ipv4 = prefixes("guest_ipv4", &raw.guest_ipv4)?;
    let guest_ipv6 = prefixes("guest_ipv6", &raw.guest_ipv6)?;
    let vxlan = vxlan(p, raw)?;
    let ovs_iface_id = raw
        .ovs_iface_id
        .as_ref()
        .map(|t| check_iface_id(&t.v).map_err(|m| p.err(t.line, "ovs_iface_id", m)))
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
        guard: raw.guard,
        guest_mac,
        guest_ipv4,
        guest_ipv6,
        rate_out,
        rate_in,
        vxlan,
        ovs_iface_id,
        network: None,
    })
}

/// One `[[network]]` table.
fn network(p: &Parser<'_>, t: &DeTable<'_>, line: usize) -> Result<Network, ConfigError> {
    use crate::net::def;
    p.known_keys(t, &[&NETWORK_KEYS])?;
    let need = |key: &'static str| -> Result<At<String>, ConfigError> {
        p.string(t, key)?
            .ok_or_else(|| p.err(line, key, format!("a [[network]] needs `{key}`")))
    };
    let name = need("name")?;
    def::check_name(&name.v).map_err(|m| p.err(name.line, "name", m))?;
    let bridge = need("bridge")?;
    let bridge_name =
        BridgeName::new(&bridge.v).map_err(|e| p.err(bridge.line, "bridge", e.to_string()))?;
    let ipv4 = need("ipv4")?;
    let (address, prefix) = def::parse_ipv4(&ipv4.v).map_err(|m| p.err(ipv4.line, "ipv4", m))?;
    let dhcp = match p.strings(t, "dhcp_range")? {
        None => def::default_range(address, prefix),
        Some(v) if v.len() == 2 => {
            let ip = |a: &At<String>| {
                a.v.parse::<std::net::Ipv4Addr>().map_err(|_| {
                    p.err(
                        a.line,
                        "dhcp_range",
                        format!("{:?} is not an IPv4 address", a.v),
                    )
                })
            };
            let r = (ip(&v[0])?, ip(&v[1])?);
            def::check_range(address, prefix, r).map_err(|m| p.err(v[0].line, "dhcp_range", m))?;
            r
        }
        Some(v) => {
            return Err(p.err(
                v.first().map_or(line, |a| a.line),
                "dhcp_range",
                "must be [\"FIRST\", \"LAST\"]".into(),
            ))
        }
    };
    let uplink = match p.string(t, "uplink")? {
        None => None,
        Some(u) if u.v == "default" => None,
        Some(u) => {
            crate::name::IfaceName::new(&u.v)
                .map_err(|e| p.err(u.line, "uplink", e.to_string()))?;
            Some(u.v)
        }
    };
    if let Some(u) = uplink.as_deref().filter(|u| *u == bridge_name.as_str()) {
        return Err(p.err(line, "uplink", format!("{u:?} is the network's own bridge")));
    }
    let ipv6 = p
        .string(t, "ipv6")?
        .map(|a| def::parse_ipv6(&a.v).map_err(|m| p.err(a.line, "ipv6", m)))
        .transpose()?;
    let domain = p
        .string(t, "domain")?
        .map(|d| {
            def::check_domain(&d.v)
                .map(|()| d.v.clone())
                .map_err(|m| p.err(d.line, "domain", m))
        })
        .transpose()?;
    Ok(Network {
        name: name.v,
        bridge: bridge_name,
        address,
        prefix,
        dhcp,
        nat: p.boolean(t, "nat")?.unwrap_or(true),
        uplink,
        ipv6,
        domain,
        location: format!("{} line {line}", p.path.display()),
    })
}

/// A tap's settings against the networks: a bridge kvmnet-ifup would
/// create that is a network's (which `kvmnet net up` must make), and a
/// fixed address DHCP could not keep for the guest.
fn network_clash(eff: &Settings, networks: &[Network]) -> Option<(&'static str, String)> {
    if let (Some(b), true, None) = (&eff.bridge, eff.create_bridge, &eff.network) {
        if let Some(n) = networks.iter().find(|n| n.bridge == *b) {
            return Some((
                "create_bridge",
                format!("{b} is network {}'s bridge, which `kvmnet net up {}` makes: join it with network = {:?} instead", n.name, n.name, n.name),
            ));
        }
    }
    let n = networks
        .iter()
        .find(|n| Some(&n.name) == eff.network.as_ref())?;
    let v4 = eff.guest_ipv4.as_ref()?;
    let [p] = v4.as_slice() else { return None };
    let (32, std::net::IpAddr::V4(ip)) = (p.len, p.addr) else {
        return None;
    };
    let (first, last) = n.dhcp;
    let bcast = std::net::Ipv4Addr::from(u32::from(n.subnet()) | !n.mask());
    let why = if !n.contains(ip) {
        format!(
            "is outside network {}'s {}/{}",
            n.name,
            n.subnet(),
            n.prefix
        )
    } else if ip == n.address || ip == n.subnet() || ip == bcast {
        format!("is network {}'s own, network or broadcast address", n.name)
    } else if (u32::from(first)..=u32::from(last)).contains(&u32::from(ip)) {
        format!("lies in network {}'s dhcp_range {first} - {last}, where dnsmasq may lease it to another guest while this one is off: pick one outside it, or narrow the range", n.name)
    } else {
        return None;
    };
    Some(("guest_ipv4", format!("{ip} {why}")))
}

/// A rule's `network = "NAME"`: its taps are ports of that network's
/// bridge, which `kvmnet net up` makes (ifup never creates it).
fn join_network(
    p: &Parser<'_>,
    layer: &mut Layer,
    net: &At<String>,
    networks: &[Network],
) -> Result<(), ConfigError> {
    let Some(n) = networks.iter().find(|n| n.name == net.v) else {
        let known: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        return Err(p.err(
            net.line,
            "network",
            format!(
                "no [[network]] is named {:?}{}",
                crate::name::printable(&net.v),
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" (there are: {})", known.join(", "))
                }
            ),
        ));
    };
    let clash = |key: &'static str| {
        p.err(
            net.line,
            key,
            format!(
                "does not go with network = {:?}, which sets the bridge",
                n.name
            ),
        )
    };
    if layer.bridge.is_some() {
        return Err(clash("bridge"));
    }
    if layer.create_bridge == Some(true) {
        return Err(clash("create_bridge"));
    }
    if layer.vxlan.is_some() {
        return Err(clash("vxlan_vni"));
    }
    match layer.mode {
        None | Some(NetMode::Bridge) => {}
        Some(_) => return Err(clash("mode")),
    }
    layer.bridge = Some(n.bridge.clone());
    layer.create_bridge = Some(false);
    layer.mode = Some(NetMode::Bridge);
    layer.network = Some(n.name.clone());
    Ok(())
}

/// An `ovs_iface_id` template: printable, and short enough for an OVN
/// logical port name once `{tap}` is replaced.
fn check_iface_id(t: &str) -> Result<String, String> {
    if t.is_empty() || t.len() > 200 {
        return Err("must be 1 to 200 characters".into());
    }
    if let Some(c) = t.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{c:?} has no place in an OVN logical port name"));
    }
    // Without it every tap of the rule would claim one logical port.
    if !t.contains("{tap}") {
        return Err(format!(
            "{t:?} has no {{tap}}: every tap of this rule would claim the same OVN logical port; write e.g. \"{t}-{{tap}}\""
        ));
    }
    Ok(t.to_owned())
}

/// The `vxlan_*` keys and `evpn` of one table: they go together, with
/// `vxlan_vni`.
fn vxlan(p: &Parser<'_>, raw: &RawLayer) -> Result<Option<Vxlan>, ConfigError> {
    let Some(vni) = &raw.vxlan_vni else {
        let others = [
            (
                "vxlan_peers",
                raw.vxlan_peers
                    .as_ref()
                    .and_then(|l| l.first())
                    .map(|a| a.line),
            ),
            ("vxlan_group", raw.vxlan_group.as_ref().map(|a| a.line)),
            ("vxlan_dev", raw.vxlan_dev.as_ref().map(|a| a.line)),
            ("vxlan_local", raw.vxlan_local.as_ref().map(|a| a.line)),
            ("vxlan_port", raw.vxlan_port.as_ref().map(|a| a.line)),
            (
                "vxlan_learning",
                raw.vxlan_learning.as_ref().map(|a| a.line),
            ),
            ("evpn", raw.evpn.as_ref().map(|a| a.line)),
        ];
        return match others.into_iter().find_map(|(k, l)| Some((k, l?))) {
            Some((key, line)) => {
                Err(p.err(line, key, "goes with vxlan_vni in the same table".into()))
            }
            None => Ok(None),
        };
    };
    let addr = |key: &'static str, a: &At<String>| {
        a.v.parse::<IpAddr>().map_err(|_| {
            p.err(
                a.line,
                key,
                format!("{:?} is not an IPv4 or IPv6 address", a.v),
            )
        })
    };
    let evpn = raw.evpn.as_ref().is_some_and(|e| e.v);
    let remote = match (&raw.vxlan_peers, &raw.vxlan_group, evpn) {
        (Some(peers), None, false) => Remote::Peers(
            peers
                .iter()
                .map(|a| addr("vxlan_peers", a))
                .collect::<Result<_, _>>()?,
        ),
        (None, Some(g), false) => Remote::Group(addr("vxlan_group", g)?),
        (None, None, true) => Remote::Evpn,
        (None, None, false) => {
            return Err(p.err(
                vni.line,
                "vxlan_vni",
                "needs vxlan_peers (the other hosts' addresses), vxlan_group (a multicast \
                 group) or evpn = true (FRR fills the FDB)"
                    .into(),
            ))
        }
        _ => {
            return Err(p.err(
                vni.line,
                "vxlan_vni",
                "takes one of vxlan_peers, vxlan_group and evpn = true".into(),
            ))
        }
    };
    let port = match &raw.vxlan_port {
        Some(at) => u16::try_from(at.v)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| p.err(at.line, "vxlan_port", format!("{} is not a UDP port", at.v)))?,
        None => crate::vxlan::DEFAULT_PORT,
    };
    let learning = match (&raw.vxlan_learning, evpn) {
        (Some(l), true) if l.v => {
            return Err(p.err(
                l.line,
                "vxlan_learning",
                "is off with evpn = true: FRR installs the remote MACs".into(),
            ))
        }
        (Some(l), _) => l.v,
        (None, e) => !e,
    };
    let dev = raw
        .vxlan_dev
        .as_ref()
        .map(|d| {
            crate::name::IfaceName::new(&d.v)
                .map(|n| n.as_str().to_owned())
                .map_err(|e| p.err(d.line, "vxlan_dev", e.to_string()))
        })
        .transpose()?;
    let vx = Vxlan {
        vni: u32::try_from(vni.v).unwrap_or(0),
        remote,
        dev,
        local: raw
            .vxlan_local
            .as_ref()
            .map(|a| addr("vxlan_local", a))
            .transpose()?,
        port,
        learning,
    };
    match vx.problem() {
        Some(m) => Err(p.err(vni.line, "vxlan_vni", m)),
        None => Ok(Some(vx)),
    }
}

/// One `[[allow]]` or `[[deny]]` table, which starts on `line`.
fn acl_rule(
    p: &Parser<'_>,
    verdict: Verdict,
    table: &DeTable<'_>,
    line: usize,
) -> Result<Rule, ConfigError> {
    let name = if verdict == Verdict::Allow {
        "[[allow]]"
    } else {
        "[[deny]]"
    };
    p.known_keys(table, &[&ACL_KEYS])?;
    let ids = |key: &'static str| -> Result<Vec<Principal>, ConfigError> {
        p.list(table, key)?
            .unwrap_or_default()
            .iter()
            .map(|item| {
                let id = p.id(key, item)?;
                match id.v {
                    RawId::Id(n) => Ok(Principal::Id(n)),
                    RawId::Name(s) => Principal::parse(&s).map_err(|m| p.err(id.line, key, m)),
                }
            })
            .collect()
    };
    let users = ids("users")?;
    let groups = ids("groups")?;
    let bridges = p
        .list(table, "bridges")?
        .unwrap_or_default()
        .iter()
        .map(|item| {
            let b = p.string_item("bridges", item)?;
            BridgePattern::parse(&b.v).map_err(|m| p.err(b.line, "bridges", m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if users.is_empty() && groups.is_empty() {
        return Err(p.err(
            line,
            "users",
            format!(
                "this {name} rule names no users or groups; use users = [\"*\"] to mean everyone"
            ),
        ));
    }
    if bridges.is_empty() {
        return Err(p.err(
            line,
            "bridges",
            format!("this {name} rule names no bridges; use bridges = [\"*\"] to mean all"),
        ));
    }
    Ok(Rule {
        verdict,
        location: format!("{} line {line}", p.path.display()),
        users,
        groups,
        bridges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::NetMode;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/kvmnet/kvmnet.toml"), t)
    }

    #[test]
    fn vxlan_keys_make_one_uplink_with_defaults_where_left_out() {
        let c = parse(
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 0x64\n\
             vxlan_peers = [\"192.0.2.2\", \"192.0.2.3\"]\nvxlan_dev = \"eth1\"\n",
        )
        .unwrap();
        let vx = c.defaults.vxlan.unwrap();
        assert_eq!(vx.vni, 100);
        assert_eq!(
            vx.remote,
            Remote::Peers(vec![
                "192.0.2.2".parse().unwrap(),
                "192.0.2.3".parse().unwrap()
            ])
        );
        assert_eq!((vx.port, vx.learning), (4789, true));
        assert_eq!(vx.dev.as_deref(), Some("eth1"));
        let c = parse(
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 7\nevpn = true\n\
             vxlan_local = \"2001:db8::1\"\nvxlan_port = 8472\n",
        )
        .unwrap();
        let vx = c.defaults.vxlan.unwrap();
        assert_eq!(
            (vx.remote, vx.learning, vx.port),
            (Remote::Evpn, false, 8472)
        );
        let e = parse(
            "bridge = \"brv\"\ncreate_bridge = true\nvxlan_vni = 7\nevpn = true\nvxlan_port = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 5: vxlan_port: 0 is not a UDP port"), "{e}");
    }

    #[test]
    fn shipped_config_and_lines_after_comments() {
        let shipped = include_str!("../packaging/kvmnet.toml");
        parse(shipped).unwrap();
        let e = parse(&format!("{shipped}bridge = \"br0\"\nmtu = 12\n"))
            .unwrap_err()
            .to_string();
        let line = shipped.lines().count() + 2;
        assert!(
            e.starts_with(&format!("/etc/kvmnet/kvmnet.toml line {line}: ")),
            "{e}"
        );
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
            ("[[rule]]\nmatch = \"x\"\nbogus = 1\n", "line 3: unknown key `bogus`, expected one of `match`"),
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
    fn ovs_keys_with_their_defaults_and_what_does_not_apply() {
        let c = parse(
            "ovs_db = \"/var/run/ovs/db.sock\"\novs_timeout = 2\n\
             [[rule]]\nmatch = \"vm*\"\nmode = \"ovs\"\nbridge = \"br-int\"\n\
             ovs_iface_id = \"lsp-{tap}\"\nguest_mac = [\"derived\"]\nvlan = 10\n",
        )
        .unwrap();
        assert_eq!(c.ovs_db, Path::new("/var/run/ovs/db.sock"));
        assert_eq!(c.ovs_timeout, std::time::Duration::from_secs(2));
        let s = c.settings_for("vm1");
        assert_eq!(s.mode, NetMode::Ovs);
        assert_eq!(s.iface_id("vm1"), "lsp-vm1");
        assert_eq!(Config::default().settings_for("x").iface_id("x"), "x");
        assert_eq!(
            Config::default().ovs_db,
            Path::new("/run/openvswitch/db.sock")
        );
        let ovs = "mode = \"ovs\"\nbridge = \"ovsbr0\"\n";
        for (text, needle) in [
            ("ovs_db = \"db.sock\"\n".to_owned(), "line 1: ovs_db:"),
            (
                "ovs_timeout = 0\n".into(),
                "line 1: ovs_timeout: 0 is outside 1-60",
            ),
            ("mode = \"ovs\"\n".into(), "mode = \"ovs\" needs bridge"),
            (
                format!("{ovs}create_bridge = true\n"),
                "kvmnet does not create Open vSwitch bridges",
            ),
            (
                format!("{ovs}isolated = true\n"),
                "isolated: does not apply to mode = \"ovs\"",
            ),
            (
                format!("{ovs}guard = true\nguest_mac = [\"derived\"]\n"),
                "guard: does not apply",
            ),
            (
                format!("{ovs}rate_out = \"1mbit\"\n"),
                "rate_out: does not apply",
            ),
            (
                "ovs_iface_id = \"x-{tap}\"\n".into(),
                "ovs_iface_id: only applies to mode = \"ovs\"",
            ),
            (
                format!("{ovs}ovs_iface_id = \"web\"\n"),
                "every tap of this rule would claim the same OVN logical port",
            ),
            (
                format!("{ovs}ovs_iface_id = \"a b\"\n"),
                "line 3: ovs_iface_id:",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn networks_and_the_rules_that_join_them() {
        let net =
            "[[network]]\nname = \"default\"\nbridge = \"kvbr0\"\nipv4 = \"192.168.122.1/24\"\n\
                   dhcp_range = [\"192.168.122.100\", \"192.168.122.200\"]\n";
        let c = parse(&format!(
            "{net}[[rule]]\nmatch = \"vm*\"\nnetwork = \"default\"\nguest_mac = [\"derived\"]\nguest_ipv4 = [\"192.168.122.10\"]\n"
        ))
        .unwrap();
        let s = c.settings_for("vm1");
        assert_eq!(s.bridge.unwrap().as_str(), "kvbr0");
        assert_eq!(s.network.as_deref(), Some("default"));
        assert!(!s.create_bridge);
        for (text, needle) in [
            (format!("{net}[[rule]]\nmatch = \"x\"\nnetwork = \"nosuch\"\n"), "no [[network]] is named \"nosuch\" (there are: default)"),
            (format!("{net}[[rule]]\nmatch = \"x\"\nnetwork = \"default\"\nbridge = \"br0\"\n"), "bridge: does not go with network"),
            (format!("{net}[[rule]]\nmatch = \"x\"\nnetwork = \"default\"\nmode = \"route\"\n"), "mode: does not go with network"),
            (format!("{net}[[rule]]\nmatch = \"x\"\nnetwork = \"default\"\nguest_ipv4 = [\"192.168.122.150\"]\n"), "lies in network default's dhcp_range"),
            (format!("{net}[[rule]]\nmatch = \"x\"\nnetwork = \"default\"\nguest_ipv4 = [\"192.168.122.1\"]\n"), "network default's own, network or broadcast address"),
            (format!("{net}[[rule]]\nmatch = \"x\"\nnetwork = \"default\"\nguest_ipv4 = [\"10.0.0.5\"]\n"), "is outside network default's 192.168.122.0/24"),
            (format!("bridge = \"kvbr0\"\ncreate_bridge = true\n{net}"), "kvbr0 is network default's bridge"),
            (format!("{net}{net}"), "\"default\" names another network too"),
            (format!("{net}[[network]]\nname = \"b\"\nbridge = \"kvbr1\"\nipv4 = \"192.168.0.1/16\"\n"), "overlaps network default's"),
            ("[[network]]\nname = \"n\"\nbridge = \"kvbr0\"\nipv4 = \"10.0.0.1/24\"\nuplink = \"kvbr0\"\n".into(), "the network's own bridge"),
            ("[[network]]\nname = \"n\"\nbridge = \"kvbr0\"\n".into(), "a [[network]] needs `ipv4`"),
        ] {
            let e = parse(&text).unwrap_err().to_string();
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
        assert!(e.contains("line 2: unknown key `user`"), "{e}");
        let e = parse("[[allow]]\nusers = [-1]\nbridges = [\"*\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    /// Each text is refused with a message that contains its needle.
    fn refused_with(cases: &[(&str, &str)]) {
        for (text, needle) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_first_unknown_key_written_is_the_one_reported() {
        // toml's tables are sorted by key: "alpha" comes first there
        refused_with(&[
            (
                "bridge = \"br0\"\nzeta = 1\nalpha = 2\n",
                "line 2: unknown key `zeta`",
            ),
            (
                "[[rule]]\nmatch = \"x\"\nzz = 1\naa = 2\n",
                "line 3: unknown key `zz`",
            ),
        ]);
    }

    #[test]
    fn what_no_key_takes_is_refused_on_its_line() {
        refused_with(&[
            ("bridge = \"br0\"\na.b = 1\n", "line 2: unknown key `a`"),
            (
                "bridge.name = \"br0\"\n",
                "line 1: bridge: expected a string, found a table",
            ),
            (
                "\n[rule]\nmatch = \"x\"\n",
                "line 2: rule: expected [[rule]] tables, with two brackets, found a table",
            ),
            ("[[x]]\n", "line 1: unknown key `x`"),
            (
                "mtu = 1500.0\n",
                "line 1: mtu: expected \"bridge\" or a number, found a float",
            ),
            (
                "vlan = 1979-05-27\n",
                "line 1: vlan: expected a number, found a date-time",
            ),
            (
                "vlan = 9223372036854775808\n",
                "line 1: vlan: 9223372036854775808 does not fit in 64 bits",
            ),
            (
                "[[allow]]\nusers = [0x1_0000_0000]\n",
                "line 2: users: 4294967296 is not a user or group id",
            ),
            (
                "max_ports_per_user = 0b1\nmax_ports_per_user = 2\n",
                "line 2: duplicate key",
            ),
        ]);
    }

    #[test]
    fn lines_count_every_newline_of_the_file() {
        refused_with(&[
            ("bridge = \"\"\"\nbr0\"\"\"\r\nmtu = 12\r\n", "line 3: mtu:"),
            (
                "trunk = [\n  \"20\", # PVID\n  \"40-30\",\n]\n",
                "line 3: trunk:",
            ),
            (
                "allow = [\n  { users = [\"*\"], bridges = [\"b r\"] },\n]\n",
                "line 2: bridges:",
            ),
            ("bridge = \"br0\"\n\n\nbridge = ", "line 4: "),
            // an error at the newline that ends its line
            ("bridge =\nmtu = 1500\n", "line 1: "),
            ("bridge = \"br0\r\nmtu = 1500\n", "line 1: "),
        ]);
        let c = parse(
            "\n\n[[rule]]\nmatch = \"a\"\n# x\n[[deny]]\nusers = [\"*\"]\nbridges = [\"*\"]\n",
        )
        .unwrap();
        assert_eq!(c.rules[0].location, "/etc/kvmnet/kvmnet.toml line 3");
        assert_eq!(c.acl.rules[0].location, "/etc/kvmnet/kvmnet.toml line 6");
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
