//! Property tests for the parsers that take hostile input: interface names
//! (argv, $QEMU_BRIDGE), the config file, the undo record in a tap's alias,
//! and the ACL's user/group/bridge syntax. No privileges needed.
//!
//! The invariants themselves live in `fuzz/src/lib.rs` (module `checks`),
//! shared with the cargo-fuzz targets, so that `fuzz_regressions_replay`
//! runs every input kept in `fuzz/regressions/<target>/` through exactly the
//! checks the fuzzer applies. See .ci/fuzz for turning a crash into one.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::net::IpAddr;
use std::path::Path;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use kvmnet::acl::{Acl, BridgePattern, Principal, Rule, Verdict};
use kvmnet::config::{Config, DEFAULT_HELPER_TAP, DEFAULT_MAX_PORTS_PER_USER};
use kvmnet::mac::Mac;
use kvmnet::name::{self, BridgeName, NameError, TapName, MAX_LEN};
use kvmnet::record::{Record, RecordError, MAX_ALIAS, PREFIX};
use kvmnet::settings::{Glob, HostMac, Layer, MtuPolicy, TapRule, VlanRange};

use checks::{name_rule, CONFIG_PATH, IFNAMSIZ, RECORD_TAP};

/// `n` cases unless PROPTEST_CASES says otherwise (for a longer local run).
/// Failures are not persisted to a file next to this one: a failure found
/// here becomes a fixed test case (or a file in fuzz/regressions/).
fn cases(n: u32) -> ProptestConfig {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: from_env.unwrap_or(n),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- strategies

const NAME_CHARS: &str = "[A-Za-z0-9._-]";

/// A string strategy from a regex built at run time.
fn re(regex: &str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(regex).unwrap()
}

/// Names that pass the documented rule.
fn valid_name() -> impl Strategy<Value = String> {
    re(&format!("{NAME_CHARS}{{1,15}}"))
        .prop_filter("reserved", |s| s != "." && s != "..")
        .prop_filter("an option", |s| !s.starts_with('-'))
}

/// Any character, control and non-ASCII ones included (proptest biases
/// towards the edges of the Unicode ranges).
fn any_text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max).prop_map(|v| v.into_iter().collect())
}

/// Characters that look harmless to a human and are not in the name set.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        any::<char>(),
        prop::sample::select(vec![
            '\0',
            '\n',
            '\r',
            '\t',
            ' ',
            '/',
            ':',
            '%',
            '*',
            '?',
            '$',
            ';',
            '\'',
            '"',
            '\\',
            '\u{7f}',
            '\u{85}',
            '\u{a0}',
            '\u{ad}',
            '\u{200b}',
            '\u{200e}',
            '\u{202e}',
            '\u{2028}',
            '\u{2066}',
            '\u{feff}',
            'é',
            'İ',
            'ı',
            '\u{ff41}',
            '\u{1b}',
            '\u{e0041}',
            '\u{10ffff}',
        ]),
    ]
    .prop_filter("in the name set", |c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// Inputs for `validate`: arbitrary text, valid names, names with one bad
/// character, and names around the 15-byte and 64-character boundaries.
fn name_input() -> impl Strategy<Value = String> {
    prop_oneof![
        any_text(24),
        valid_name(),
        (valid_name(), nasty_char(), any::<prop::sample::Index>()).prop_map(|(n, c, i)| {
            let mut v: Vec<char> = n.chars().collect();
            v.insert(i.index(v.len() + 1), c);
            v.into_iter().collect()
        }),
        re(&format!("{NAME_CHARS}{{14,17}}")),
        "[.]{1,3}",
        any_text(80),
        "[a-zé\u{200b}\n]{60,70}",
    ]
}

/// A user or group as written in the config, and what it must parse to.
fn principal_entry() -> impl Strategy<Value = (String, Principal)> {
    prop_oneof![
        Just(("\"*\"".to_string(), Principal::Any)),
        any::<u32>().prop_map(|n| (n.to_string(), Principal::Id(n))),
        (any::<u32>(), 0..3usize)
            .prop_map(|(n, z)| (format!("\"{}{n}\"", "0".repeat(z)), Principal::Id(n))),
        "[A-Za-z_][A-Za-z0-9_.-]{0,30}[$]?".prop_map(|s| (format!("\"{s}\""), Principal::Name(s))),
    ]
}

// ----------------------------------------------------------------- names

proptest! {
    #![proptest_config(cases(256))]

    /// validate accepts exactly the documented rule, the types agree with it,
    /// and every error is one bounded, escaped line (see checks::check_name_str).
    #[test]
    fn validate_is_exactly_the_documented_rule(s in name_input()) {
        checks::check_name_str(&s);
    }

    #[test]
    fn valid_names_are_accepted_and_fit_ifnamsiz(s in valid_name()) {
        prop_assert_eq!(name::validate(&s), Ok(s.as_str()));
        let tap = TapName::new(&s).unwrap();
        let mut ifr_name = [0u8; IFNAMSIZ];
        // what tap.rs does with it: copy into ifr_name, NUL-terminated
        ifr_name[..tap.as_str().len()].copy_from_slice(tap.as_str().as_bytes());
        prop_assert_eq!(ifr_name[IFNAMSIZ - 1], 0);
        let bridge = BridgeName::new(&s).unwrap();
        prop_assert_eq!(bridge.as_str(), s.as_str());
    }

    #[test]
    fn one_bad_character_anywhere_is_refused(
        n in re(&format!("{NAME_CHARS}{{0,13}}")),
        c in nasty_char(),
        i in any::<prop::sample::Index>(),
    ) {
        let mut v: Vec<char> = n.chars().collect();
        v.insert(i.index(v.len() + 1), c);
        let s: String = v.into_iter().collect();
        match name::validate(&s) {
            Err(NameError::BadChar { .. }) => {}
            Err(NameError::TooLong { .. }) if s.len() > MAX_LEN => {}
            other => prop_assert!(false, "{:?} -> {:?}", s, other),
        }
        checks::check_name_str(&s);
    }

    /// escape is quoted printable ASCII, bounded, and lossless up to 64 chars.
    #[test]
    fn escape_is_safe_and_lossless(s in prop_oneof![any_text(100), ".{0,100}"]) {
        checks::check_escape(&s);
    }

    #[test]
    fn bridge_patterns_are_star_or_a_valid_name(s in name_input()) {
        match BridgePattern::parse(&s) {
            Ok(BridgePattern::Any) => prop_assert_eq!(s.as_str(), "*"),
            Ok(BridgePattern::Name(n)) => {
                prop_assert!(name_rule(&s));
                prop_assert_eq!(n.as_str(), s.as_str());
            }
            Err(m) => {
                prop_assert!(!name_rule(&s) && s != "*");
                checks::assert_one_safe_line("BridgePattern::parse", &m);
            }
        }
    }
}

// ------------------------------------------------------------- principals

/// Principal syntax as documented, written as a scan rather than like the
/// implementation: "*"; a string of digits that fits a u32; or at most 32
/// bytes matching `[A-Za-z_][A-Za-z0-9_.-]*[$]?`.
fn principal_rule(s: &str) -> Option<Principal> {
    if s == "*" {
        return Some(Principal::Any);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Principal::Id);
    }
    if s.len() > 32 {
        return None;
    }
    let b = s.as_bytes();
    let last = b.len().checked_sub(1)?;
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            0 => c.is_ascii_alphabetic() || c == b'_',
            _ if i == last && c == b'$' => true,
            _ => c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'),
        };
        if !ok {
            return None;
        }
    }
    Some(Principal::Name(s.to_owned()))
}

fn principal_input() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z_][A-Za-z0-9_.-]{0,33}[$]?",
        "[0-9]{1,12}",
        "[A-Za-z0-9_.$*-]{0,34}",
        Just("*".to_string()),
        any_text(40),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn principal_accepts_exactly_its_syntax(s in principal_input()) {
        let got = Principal::parse(&s);
        prop_assert_eq!(got.clone().ok(), principal_rule(&s), "{:?} -> {:?}", s, got);
        match got {
            Ok(p) => prop_assert_eq!(Principal::parse(&p.to_string()), Ok(p)),
            Err(m) => {
                checks::assert_one_safe_line("Principal::parse", &m);
                prop_assert!(m.len() <= checks::MAX_NAME_MESSAGE, "{} bytes", m.len());
            }
        }
    }

    #[test]
    fn documented_user_names_are_accepted(s in "[A-Za-z_][A-Za-z0-9_.-]{0,30}[$]?") {
        prop_assert_eq!(Principal::parse(&s), Ok(Principal::Name(s.clone())));
    }
}

// ----------------------------------------------------------------- config

/// Lines of TOML-ish text from the config's own vocabulary, valid or not.
fn tomlish_line() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
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
        "users",
        "groups",
        "bridges",
        "match",
        "allow",
        "deny",
        "rule",
        "\"bridge\"",
        "'br'",
        "a.b",
        "\"\\u001b[31m\"",
        "\"a\\nb\"",
        "\"a\\rb\"",
        "\"\\u202e\"",
        "é",
        "",
    ]);
    let values = prop::sample::select(vec![
        "\"br0\"",
        "\"br-lab\"",
        "\"*\"",
        "\"a b\"",
        "\"route\"",
        "\"bridge\"",
        "\"keep\"",
        "\"fe\"",
        "true",
        "false",
        "yes",
        "0",
        "-1",
        "68",
        "4094",
        "4095",
        "65521",
        "99999999999999999999",
        "1.5",
        "nan",
        "inf",
        "1979-05-27",
        "[]",
        "[\"20\", \"30-39\"]",
        "[10, \"x\"]",
        "[\"192.0.2.10\", \"2001:db8::10\"]",
        "[\"kvm\", 108, \"*\"]",
        "[[[]]]",
        "{}",
        "{ a = 1 }",
        "\"\"\"\nmulti\nline\"\"\"",
        "'''\n'''",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"é\u{200b}\"",
        "\"",
        "[",
        "",
    ]);
    prop_oneof![
        4 => (keys.clone(), values).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(vec![
            "[[allow]]", "[[deny]]", "[[rule]]", "[rule]", "[allow]", "[[x]]", "[", "]]",
            "# comment", "", "\r", "\t", "é", "\u{feff}",
        ])
        .prop_map(str::to_owned),
        1 => (keys, any_text(6)).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => any_text(12),
    ]
}

/// A config that must parse, and the value it must parse to.
#[derive(Debug, Clone)]
struct Generated {
    text: String,
    expected: Config,
}

#[derive(Debug, Clone)]
enum Table {
    Acl {
        verdict: Verdict,
        users: Vec<(String, Principal)>,
        groups: Vec<(String, Principal)>,
        bridges: Vec<Option<String>>,
    },
    Tap {
        pattern: Option<String>,
        on_bridge: Option<String>,
        bridge: Option<String>,
        create_bridge: Option<bool>,
        mtu: Option<u32>,
        isolated: Option<bool>,
    },
}

fn acl_table() -> impl Strategy<Value = Table> {
    (
        prop::bool::ANY,
        vec(principal_entry(), 0..3),
        vec(principal_entry(), 0..3),
        vec(option::of(valid_name()), 1..4),
    )
        .prop_filter("names no one", |(_, u, g, _)| {
            !(u.is_empty() && g.is_empty())
        })
        .prop_map(|(allow, users, groups, bridges)| Table::Acl {
            verdict: if allow { Verdict::Allow } else { Verdict::Deny },
            users,
            groups,
            bridges,
        })
}

fn tap_table() -> impl Strategy<Value = Table> {
    (
        option::of("[A-Za-z0-9._*?-]{1,20}"),
        option::of(valid_name()),
        option::of(valid_name()),
        option::of(any::<bool>()),
        option::of(68u32..=65521),
        option::of(any::<bool>()),
    )
        .prop_filter("matches nothing", |t| t.0.is_some() || t.1.is_some())
        .prop_map(
            |(pattern, on_bridge, bridge, create_bridge, mtu, isolated)| Table::Tap {
                pattern,
                on_bridge,
                bridge,
                create_bridge,
                mtu,
                isolated,
            },
        )
}

fn toml_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn generated_config() -> impl Strategy<Value = Generated> {
    let top = (
        option::of(valid_name()),
        option::of(any::<bool>()),
        option::of(prop_oneof![Just(None), (68u32..=65521).prop_map(Some)]),
        option::of(any::<bool>()),
        option::of(1u16..=4094),
        vec((1u16..=4094, 0u16..20), 0..3),
        option::of(principal_entry().prop_filter("group = \"*\"", |(_, p)| *p != Principal::Any)),
        (option::of(any::<bool>()), option::of(any::<bool>())),
        (
            option::of(
                ("[A-Za-z0-9._-]{0,11}", "[A-Za-z0-9._-]{0,11}")
                    .prop_map(|(a, b)| format!("{a}%d{b}"))
                    .prop_filter("too long", |t| t.len() <= 13)
                    .prop_filter("an option", |t| !t.starts_with('-')),
            ),
            option::of(1u32..=1023),
        ),
    );
    let tables = vec(prop_oneof![acl_table(), tap_table()], 0..6);
    let padding = vec(0usize..3, 16);
    (top, tables, padding).prop_map(|(top, tables, padding)| {
        let (
            bridge,
            create_bridge,
            mtu,
            host_keep,
            vlan,
            trunk,
            group,
            (learning, flooding),
            (helper_tap, max_ports),
        ) = top;
        let trunk: Vec<VlanRange> = trunk
            .into_iter()
            .map(|(first, extra)| VlanRange {
                first,
                last: first.saturating_add(extra).min(4094),
            })
            .filter(|r| vlan.is_none_or(|v| !(r.first..=r.last).contains(&v)))
            .collect();
        let mut pad = padding.into_iter().cycle();
        let mut lines: Vec<String> = Vec::new();
        let mut blank = |lines: &mut Vec<String>| {
            for i in 0..pad.next().unwrap() {
                lines.push(if i % 2 == 0 {
                    String::new()
                } else {
                    "# note".into()
                });
            }
        };
        let mut defaults = Layer::default();
        blank(&mut lines);
        if let Some(b) = &bridge {
            lines.push(format!("bridge = \"{b}\""));
            defaults.bridge = Some(BridgeName::new(b).unwrap());
        }
        if let Some(c) = create_bridge {
            lines.push(format!("create_bridge = {c}"));
            defaults.create_bridge = Some(c);
        }
        if let Some(m) = mtu {
            match m {
                Some(n) => lines.push(format!("mtu = {n}")),
                None => lines.push("mtu = \"bridge\"".into()),
            }
            defaults.mtu = Some(m.map_or(MtuPolicy::Bridge, MtuPolicy::Fixed));
        }
        blank(&mut lines);
        if let Some(k) = host_keep {
            lines.push(format!("host_mac = \"{}\"", if k { "keep" } else { "fe" }));
            defaults.host_mac = Some(if k { HostMac::Keep } else { HostMac::Fe });
        }
        if let Some(v) = vlan {
            lines.push(format!("vlan = {v}"));
            defaults.vlan = Some(v);
        }
        if !trunk.is_empty() {
            let items: Vec<String> = trunk
                .iter()
                .enumerate()
                .map(|(i, r)| match (r.first == r.last, i % 2) {
                    (true, 0) => r.first.to_string(),
                    _ => format!("\"{r}\""),
                })
                .collect();
            lines.push(format!("trunk = {}", toml_list(&items)));
            defaults.trunk = Some(as_ranges(&trunk));
        }
        if let Some((text, p)) = &group {
            lines.push(format!("group = {text}"));
            defaults.group = Some(p.clone());
        }
        if let Some(l) = learning {
            lines.push(format!("learning = {l}"));
            defaults.learning = Some(l);
        }
        if let Some(f) = flooding {
            lines.push(format!("flooding = {f}"));
            defaults.flooding = Some(f);
        }
        if let Some(t) = &helper_tap {
            lines.push(format!("helper_tap = \"{t}\""));
        }
        if let Some(n) = max_ports {
            lines.push(format!("max_ports_per_user = {n}"));
        }
        let mut rules = Vec::new();
        let (mut allows, mut denies) = (Vec::new(), Vec::new());
        for t in tables {
            blank(&mut lines);
            let location = format!("{CONFIG_PATH} line {}", lines.len() + 1);
            match t {
                Table::Acl {
                    verdict,
                    users,
                    groups,
                    bridges,
                } => {
                    lines.push(
                        if verdict == Verdict::Allow {
                            "[[allow]]"
                        } else {
                            "[[deny]]"
                        }
                        .into(),
                    );
                    let (ut, up): (Vec<String>, Vec<Principal>) = users.into_iter().unzip();
                    let (gt, gp): (Vec<String>, Vec<Principal>) = groups.into_iter().unzip();
                    if !ut.is_empty() {
                        lines.push(format!("users = {}", toml_list(&ut)));
                    }
                    blank(&mut lines);
                    if !gt.is_empty() {
                        lines.push(format!("groups = {}", toml_list(&gt)));
                    }
                    let bt: Vec<String> = bridges
                        .iter()
                        .map(|b| format!("\"{}\"", b.as_deref().unwrap_or("*")))
                        .collect();
                    lines.push(format!("bridges = {}", toml_list(&bt)));
                    let rule = Rule {
                        verdict,
                        location,
                        users: up,
                        groups: gp,
                        bridges: bridges
                            .iter()
                            .map(|b| match b {
                                None => BridgePattern::Any,
                                Some(n) => BridgePattern::Name(BridgeName::new(n).unwrap()),
                            })
                            .collect(),
                    };
                    if verdict == Verdict::Allow {
                        allows.push(rule);
                    } else {
                        denies.push(rule);
                    }
                }
                Table::Tap {
                    pattern,
                    on_bridge,
                    bridge,
                    create_bridge,
                    mtu,
                    isolated,
                } => {
                    lines.push("[[rule]]".into());
                    if let Some(p) = &pattern {
                        lines.push(format!("match = \"{p}\""));
                    }
                    if let Some(b) = &on_bridge {
                        lines.push(format!("match_bridge = \"{b}\""));
                    }
                    let mut layer = Layer::default();
                    if let Some(b) = &bridge {
                        lines.push(format!("bridge = \"{b}\""));
                        layer.bridge = Some(BridgeName::new(b).unwrap());
                    }
                    if let Some(c) = create_bridge {
                        lines.push(format!("create_bridge = {c}"));
                        layer.create_bridge = Some(c);
                    }
                    if let Some(m) = mtu {
                        lines.push(format!("mtu = {m}"));
                        layer.mtu = Some(MtuPolicy::Fixed(m));
                    }
                    if let Some(i) = isolated {
                        lines.push(format!("isolated = {i}"));
                        layer.isolated = Some(i);
                    }
                    rules.push(TapRule {
                        pattern: pattern.map(|p| Glob::new(&p).unwrap()),
                        on_bridge: on_bridge.map(|b| BridgeName::new(&b).unwrap()),
                        location,
                        layer,
                    });
                }
            }
        }
        blank(&mut lines);
        allows.extend(denies);
        let mut text = lines.join("\n");
        text.push('\n');
        Generated {
            text,
            expected: Config {
                source: Some(CONFIG_PATH.into()),
                defaults,
                rules,
                acl: Acl { rules: allows },
                helper_tap: helper_tap.unwrap_or_else(|| DEFAULT_HELPER_TAP.into()),
                max_ports_per_user: max_ports.unwrap_or(DEFAULT_MAX_PORTS_PER_USER),
                ..Config::default()
            },
        }
    })
}

proptest! {
    #![proptest_config(cases(512))]

    /// Never panics; errors are one safe line "PATH line N: ..." with N a line
    /// of the text (see checks::check_config_str).
    #[test]
    fn config_parse_is_total_on_arbitrary_text(text in any_text(200)) {
        checks::check_config_str(&text);
    }

    #[test]
    fn config_parse_is_total_on_tomlish_text(lines in vec(tomlish_line(), 0..12)) {
        checks::check_config_str(&lines.join("\n"));
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn generated_configs_parse_to_their_values(g in generated_config()) {
        let got = Config::parse(Path::new(CONFIG_PATH), &g.text);
        prop_assert_eq!(got.as_ref().ok(), Some(&g.expected), "{}\n{:?}", g.text, got);
        checks::check_config_str(&g.text);
    }

    /// A valid config with one value broken fails on the broken line.
    #[test]
    fn a_bad_value_is_reported_on_its_line(
        g in generated_config(),
        bad in prop::sample::select(vec![
            "bridge = \"br0;reboot\"",
            "bridge = \"a-very-long-bridge\"",
            "mtu = 67",
            "vlan = 4095",
            "mode = \"nat\"",
            "create_bridge = \"yes\"",
            "brigde = \"br0\"",
        ]),
    ) {
        // put it before the first table, where a top-level key may stand
        let mut lines: Vec<&str> = g.text.lines().collect();
        let at = lines.iter().position(|l| l.starts_with('[')).unwrap_or(lines.len());
        let key = bad.split(' ').next().unwrap();
        // a key may only be set once: drop the generated one
        if let Some(i) = lines[..at].iter().position(|l| l.starts_with(&format!("{key} ="))) {
            lines[i] = "";
        }
        lines.insert(at, bad);
        let text = lines.join("\n");
        let e = Config::parse(Path::new(CONFIG_PATH), &text).unwrap_err().to_string();
        let want = format!("{CONFIG_PATH} line {}: ", at + 1);
        prop_assert!(e.starts_with(&want), "{}\n---\n{}", e, text);
        checks::check_config_str(&text);
    }
}

// ----------------------------------------------------------------- record

fn record() -> impl Strategy<Value = Record> {
    (
        (any::<bool>(), any::<bool>()),
        (option::of(valid_name()), option::of(valid_name())),
        any::<bool>(),
        option::of(any::<u32>()),
        option::of(any::<[u8; 6]>().prop_map(Mac)),
        vec(any::<IpAddr>(), 0..4),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        option::of((any::<u64>(), any::<u32>())),
        option::of((any::<u64>(), any::<u32>())),
        option::of(prop_oneof![any_text(40), ".{0,250}"]),
    )
        .prop_map(
            |(
                (pending, created),
                (attached, ovs),
                brought_up,
                old_mtu,
                old_mac,
                routes,
                (parp, pndp, guard, police_only),
                rate_in,
                rate_out,
                prior,
            )| Record {
                pending,
                created,
                attached,
                ovs,
                brought_up,
                old_mtu,
                old_mac,
                routes,
                proxy_arp: parp,
                proxy_ndp: pndp,
                guard,
                police_only: guard && police_only,
                rate_in,
                rate_out,
                prior_alias: prior,
            },
        )
}

fn record_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "pending",
            "created",
            "up",
            "parp",
            "pndp",
            "guard",
            "policed",
            "rate_in=1250000/65536",
            "rate=1250000/12500",
            "rate=1250000",
            "rate=/5",
            "rate=+1/2",
            "attached=br0",
            "ovs=ovsbr0",
            "ovs=a/b",
            "attached=",
            "attached=a/b",
            "mtu=1500",
            "mtu=+1",
            "mtu=-1",
            "mtu=4294967296",
            "mac=52:54:00:aa:bb:cc",
            "mac=52:54:00:aa:bb",
            "mac=zz:54:00:aa:bb:cc",
            "mac=+5:54:00:aa:bb:cc",
            "route=192.0.2.1",
            "route=2001:db8::1,192.0.2.1",
            "route=::ffff:0:0",
            "route=",
            "route=,",
            "alias=",
            "alias=kvmnet:v1 created",
            "",
            "=",
            "created=",
            "deleted",
        ])
        .prop_map(str::to_owned),
        any_text(8),
        (
            prop::sample::select(vec!["attached=", "mtu=", "mac=", "route=", "alias="]),
            any_text(20)
        )
            .prop_map(|(k, v)| format!("{k}{v}")),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn record_encode_parse_roundtrips(r in record()) {
        match r.encode(RECORD_TAP) {
            Ok(s) => {
                prop_assert!(s.starts_with(PREFIX) && s.len() <= MAX_ALIAS, "{:?}", s);
                prop_assert_eq!(Record::parse(RECORD_TAP, Some(&s)), Ok(Some(r.clone())), "{:?}", s);
            }
            Err(RecordError::AliasTooLong { len, .. }) => {
                prop_assert_eq!(len, r.prior_alias.as_ref().map_or(0, String::len));
                // without a prior alias and with few routes it always fits
                prop_assert!(r.prior_alias.is_some() || r.routes.len() > 2, "{:?}", r);
            }
            Err(e) => prop_assert!(false, "{:?}", e),
        }
    }

    #[test]
    fn record_parse_is_total(
        alias in prop_oneof![
            any_text(60),
            vec(record_word(), 0..8).prop_map(|w| format!("{PREFIX} {}", w.join(" "))),
            (vec(record_word(), 0..8), "[ ]{0,3}")
                .prop_map(|(w, sep)| format!("{PREFIX}{sep}{}", w.join(&sep))),
        ]
    ) {
        checks::check_record_str(&alias);
    }
}

// ------------------------------------------------------------ fixed cases

/// Found by `config_parse_is_total_on_tomlish_text`: the "unknown key"
/// message quotes the key as written, and a quoted TOML key may hold any
/// character through an escape, so the one-line error (and the log line it
/// becomes) carried raw ESC, CR, TAB and bidi overrides.
#[test]
fn config_errors_do_not_echo_raw_control_characters_in_keys() {
    for text in [
        "\"\\u001b[31m\" = 1\n",
        "\"a\\rb\" = 1\n",
        "\"\\u202e\" = 1\n",
        "[[allow]]\n\"a\tb\" = 1\n",
        "[[rule]]\nmatch = \"x\"\n\"\\u0085\" = 1\n",
    ] {
        checks::check_config_str(text);
    }
}

// ----------------------------------------------------- fuzz regressions

/// Every file in fuzz/regressions/<target>/ is an input a fuzz target once
/// failed on (see .ci/fuzz): it must now pass that target's checks. The
/// fuzzer's seeds in fuzz/seeds/<target>/ must pass them too.
#[test]
fn fuzz_regressions_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    assert!(
        fuzz.join("regressions").is_dir(),
        "{} is missing",
        fuzz.join("regressions").display()
    );
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 4] = [
        ("name", checks::check_name),
        ("config", checks::check_config),
        ("record", checks::check_record),
        ("linkmsg", checks::check_linkmsg),
    ];
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (target, check) in targets {
        for kind in ["regressions", "seeds"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                let skip = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') || n.ends_with(".md"));
                if skip || !f.is_file() {
                    continue;
                }
                let data = std::fs::read(&f).unwrap();
                replayed += 1;
                if std::panic::catch_unwind(|| check(&data)).is_err() {
                    failed.push(format!("{target}: {}", f.display()));
                }
            }
        }
    }
    assert!(replayed > 0, "no seeds found under {}", fuzz.display());
    assert!(
        failed.is_empty(),
        "{} of {replayed} fuzz inputs fail their target's checks (the panics above say why):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The VLANs of `list` as kvmnet keeps them: the set of ids, as sorted
/// disjoint ranges (worked out from the ids themselves, not with kvmnet's
/// own merge).
fn as_ranges(list: &[VlanRange]) -> Vec<VlanRange> {
    let ids: std::collections::BTreeSet<u16> = list.iter().flat_map(|r| r.first..=r.last).collect();
    let mut out: Vec<VlanRange> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some(r) if r.last + 1 == id => r.last = id,
            _ => out.push(VlanRange {
                first: id,
                last: id,
            }),
        }
    }
    out
}
