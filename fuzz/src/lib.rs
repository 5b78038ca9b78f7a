//! The invariants the fuzz targets check, written once for two users:
//! - the fuzz targets in `fuzz/fuzz_targets/` (crate `kvmnet_fuzz`);
//! - `tests/properties.rs`, which includes this file as a module
//!   (`#[path = "../fuzz/src/lib.rs"]`) to replay every input kept in
//!   `fuzz/regressions/<target>/` through exactly the same checks, and to
//!   reuse them in its property tests.
//!
//! Every check panics (assert) when an invariant is broken; a panic is what
//! libFuzzer records as a crash. Only `kvmnet`'s public API and `std` are
//! used here, so the file compiles in both places.

use std::path::Path;

use kvmnet::config::{Config, ConfigError};
use kvmnet::name::{self, BridgeName, NameError, TapName, MAX_LEN};
use kvmnet::record::{Record, RecordError, MAX_ALIAS, PREFIX};

/// The kernel's IFNAMSIZ: the name and its terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// The path every fuzzed config claims to come from; messages must name it.
pub const CONFIG_PATH: &str = "/etc/kvmnet/kvmnet.toml";

/// The tap whose alias the fuzzed records come from.
pub const RECORD_TAP: &str = "tap0";

/// Upper bound for an error message about a name: the fixed text plus
/// `escape`'s output (at most 64 characters of 10 bytes each, quotes, "...").
pub const MAX_NAME_MESSAGE: usize = 1024;

/// The documented rule, written independently of `name::validate`: 1 to 15
/// bytes of ASCII letters, digits, '-', '_' and '.', not "." or "..", and
/// not starting with '-'.
pub fn name_rule(s: &str) -> bool {
    (1..=MAX_LEN).contains(&s.len())
        && s != "."
        && s != ".."
        && name_chars(s)
        && !s.starts_with('-')
}

/// Only ASCII letters, digits, '-', '_' and '.'.
fn name_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Characters that must never reach a log line raw: anything that ends or
/// rewrites a line (C0/C1 controls, DEL, U+2028/U+2029) and invisible format
/// characters that reorder or hide text (bidi controls, zero-width ones, BOM,
/// soft hyphen, tag characters).
pub fn forges_log(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// One printable line: what every message kvmnet logs must be.
pub fn assert_one_safe_line(what: &str, msg: &str) {
    if let Some(c) = msg.chars().find(|&c| forges_log(c)) {
        panic!("{what}: message contains raw {c:?}: {msg:?}");
    }
}

/// Reverses `char::escape_default` (what `name::escape` uses); `None` when `s`
/// is not something it produces.
pub fn unescape_default(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            if !(' '..='~').contains(&c) || c == '\'' || c == '"' {
                return None;
            }
            out.push(c);
            continue;
        }
        match it.next()? {
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'n' => out.push('\n'),
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'u' => {
                if it.next()? != '{' {
                    return None;
                }
                let mut hex = String::new();
                loop {
                    match it.next()? {
                        '}' => break,
                        h => hex.push(h),
                    }
                }
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `name::escape`: quoted, pure printable ASCII, bounded, and lossless for
/// the first 64 characters.
pub fn check_escape(raw: &str) {
    let e = name::escape(raw);
    assert!(
        e.len() >= 2 && e.starts_with('"') && e.ends_with('"'),
        "escape({raw:?}) = {e:?} is not quoted"
    );
    assert!(
        e.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "escape({raw:?}) = {e:?} is not printable ASCII"
    );
    assert!(
        e.len() <= 2 + 64 * "\\u{10ffff}".len() + 3,
        "escape({raw:?}) is {} bytes",
        e.len()
    );
    let inner = &e[1..e.len() - 1];
    let long = raw.chars().count() > 64;
    let (body, cut) = match inner.strip_suffix("...") {
        Some(b) if long => (b, true),
        _ => (inner, false),
    };
    assert_eq!(cut, long, "escape({raw:?}) = {e:?}: '...' iff truncated");
    let shown: String = raw.chars().take(64).collect();
    assert_eq!(
        unescape_default(body).as_deref(),
        Some(shown.as_str()),
        "escape({raw:?}) = {e:?} does not decode to the name"
    );
}

/// `name::validate`, `TapName`, `BridgeName` against the documented rule, in
/// both directions, and the shape of every error.
pub fn check_name_str(raw: &str) {
    check_escape(raw);
    let got = name::validate(raw);
    assert_eq!(
        got.is_ok(),
        name_rule(raw),
        "validate({raw:?}) = {got:?} disagrees with the documented rule"
    );
    let tap = TapName::new(raw);
    let bridge = BridgeName::new(raw);
    match got {
        Ok(v) => {
            assert_eq!(v, raw);
            let tap = tap.expect("validate accepted it");
            assert_eq!(tap.as_str(), raw);
            assert_eq!(tap.to_string(), raw);
            assert!(tap.as_str().len() < IFNAMSIZ, "{raw:?} with NUL > IFNAMSIZ");
            assert!(!tap.as_str().contains('\0'));
            assert_eq!(raw.parse::<TapName>().as_ref(), Ok(&tap));
            assert_eq!(bridge.expect("validate accepted it").as_str(), raw);
        }
        Err(e) => {
            assert_eq!(tap, Err(e.clone()));
            assert_eq!(bridge, Err(e.clone()));
            let expected = if raw.is_empty() {
                "Empty"
            } else if raw.len() > MAX_LEN {
                "TooLong"
            } else if raw == "." || raw == ".." {
                "Reserved"
            } else if name_chars(raw) {
                "LeadingDash"
            } else {
                "BadChar"
            };
            let kind = match &e {
                NameError::Empty => "Empty",
                NameError::TooLong { len, .. } => {
                    assert_eq!(*len, raw.len(), "TooLong counts bytes");
                    "TooLong"
                }
                NameError::Reserved { .. } => "Reserved",
                NameError::BadChar { .. } => "BadChar",
                NameError::LeadingDash { .. } => "LeadingDash",
            };
            assert_eq!(kind, expected, "validate({raw:?}) = {e:?}");
            let msg = e.to_string();
            assert_one_safe_line("validate", &msg);
            assert!(
                msg.len() <= MAX_NAME_MESSAGE,
                "validate({raw:?}): {}-byte message",
                msg.len()
            );
            if !raw.is_empty() {
                assert!(
                    msg.contains(&name::escape(raw)),
                    "validate({raw:?}): message does not show the name: {msg}"
                );
            }
        }
    }
}

/// Fuzz target `name`: arbitrary bytes as the tap name argv gives.
pub fn check_name(data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(s) => check_name_str(s),
        // argv need not be UTF-8 (`tap_arg` refuses it); still exercise the
        // checks with what a lossy conversion would make of it
        Err(_) => check_name_str(&String::from_utf8_lossy(data)),
    }
}

/// The number of lines a message may point at: a file "a\nb\n" has lines 1-3
/// (the editor's empty last line, where an unexpected end of file is).
pub fn line_count(text: &str) -> usize {
    text.matches('\n').count() + 1
}

/// `"{path} line N"` at the start of `s`: returns N and the rest.
fn located<'a>(what: &str, s: &'a str, text: &str) -> (usize, &'a str) {
    let rest = s
        .strip_prefix(CONFIG_PATH)
        .and_then(|r| r.strip_prefix(" line "))
        .unwrap_or_else(|| panic!("{what} does not start with \"{CONFIG_PATH} line \": {s:?}"));
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n: usize = rest[..digits]
        .parse()
        .unwrap_or_else(|_| panic!("{what}: no line number: {s:?}"));
    assert!(
        (1..=line_count(text)).contains(&n),
        "{what}: line {n} is outside 1-{} of {text:?}: {s:?}",
        line_count(text)
    );
    (n, &rest[digits..])
}

/// `Config::parse` on one text: never panics; an error is one safe line
/// "PATH line N: ..." with N a line of the text; a success locates every
/// rule on a line of the text; parsing is deterministic; lines are counted
/// right (see [`check_lines_follow_the_text`]).
pub fn check_config_str(text: &str) {
    let path = Path::new(CONFIG_PATH);
    check_lines_follow_the_text(path, text);
    match Config::parse(path, text) {
        Ok(c) => {
            assert_eq!(c.source.as_deref(), Some(path));
            for r in &c.rules {
                let (_, rest) = located("[[rule]] location", &r.location, text);
                assert!(rest.is_empty(), "{:?}", r.location);
            }
            for r in &c.acl.rules {
                let (_, rest) = located("acl rule location", &r.location, text);
                assert!(rest.is_empty(), "{:?}", r.location);
            }
            let again = Config::parse(path, text).expect("parsed once");
            assert_eq!(c, again, "parsing is not deterministic");
        }
        Err(e) => {
            assert!(
                matches!(e, ConfigError::Syntax { .. } | ConfigError::Value { .. }),
                "parse can only fail on syntax or a value: {e:?}"
            );
            let msg = e.to_string();
            assert_one_safe_line("Config::parse", &msg);
            let (_, rest) = located("Config::parse error", &msg, text);
            let what = rest
                .strip_prefix(": ")
                .unwrap_or_else(|| panic!("no ': ' after the line number: {msg:?}"));
            assert!(!what.trim().is_empty(), "empty message: {msg:?}");
        }
    }
}

/// toml reports byte offsets and kvmnet turns them into the lines its
/// messages and rule locations name. Whatever toml makes of a text, the same
/// text one line further down (after a blank line) must give the same
/// result, every line one more: the same config with each rule one line
/// lower, or the same error one line lower. The one line that stays is line
/// 1 for a contradiction among the top-level keys, which belongs to no line
/// of its own.
pub fn check_lines_follow_the_text(path: &Path, text: &str) {
    // a byte-order mark is one only at the very start
    let lower = match text.strip_prefix('\u{feff}') {
        Some(rest) => format!("\u{feff}\n{rest}"),
        None => format!("\n{text}"),
    };
    let one_lower = |what: &str, s: &str| -> String {
        let (n, rest) = located(what, s, text);
        format!("{CONFIG_PATH} line {}{rest}", n + 1)
    };
    match (Config::parse(path, text), Config::parse(path, &lower)) {
        (Ok(mut want), Ok(got)) => {
            for r in &mut want.rules {
                r.location = one_lower("[[rule]] location", &r.location);
            }
            for r in &mut want.acl.rules {
                r.location = one_lower("acl rule location", &r.location);
            }
            assert_eq!(want, got, "{text:?}, one line lower");
        }
        (Err(e), Err(got)) => {
            let (msg, got) = (e.to_string(), got.to_string());
            let top_level = matches!(e, ConfigError::Value { line: 1, .. }) && got == msg;
            if !top_level {
                assert_eq!(
                    one_lower("Config::parse error", &msg),
                    got,
                    "{text:?}, one line lower"
                );
            }
        }
        (a, b) => panic!("{text:?}: {a:?}, but one line lower: {b:?}"),
    }
}

/// Fuzz target `config`: `Config::load` reads at most 64 KiB of UTF-8 and
/// hands it to `Config::parse`; anything else never reaches the parser.
pub fn check_config(data: &[u8]) {
    if data.len() as u64 > kvmnet::config::MAX_SIZE {
        return;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_config_str(text);
    }
}

/// `Record::parse` on one alias: never panics; foreign aliases are no record;
/// errors are one safe line; what parses re-encodes (when it fits) to a
/// canonical record that parses back equal.
pub fn check_record_str(alias: &str) {
    let parsed = Record::parse(RECORD_TAP, Some(alias));
    if !alias.starts_with(PREFIX) {
        assert_eq!(parsed, Ok(None), "foreign alias {alias:?}");
        return;
    }
    match parsed {
        Ok(None) => panic!("{alias:?} starts with {PREFIX} but is no record"),
        Ok(Some(r)) => {
            if let Some(br) = &r.attached {
                assert!(name_rule(br), "attached={br:?} is not a valid name");
            }
            match r.encode(RECORD_TAP) {
                Ok(enc) => {
                    assert!(enc.len() <= MAX_ALIAS, "encoded {} bytes", enc.len());
                    let back = Record::parse(RECORD_TAP, Some(&enc));
                    assert_eq!(back, Ok(Some(r.clone())), "{alias:?} -> {enc:?}");
                    assert_eq!(r.encode(RECORD_TAP).as_ref(), Ok(&enc));
                }
                Err(RecordError::AliasTooLong { .. }) => {}
                Err(e) => panic!("encode can only fail on length: {e:?}"),
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert_one_safe_line("Record::parse", &msg);
            assert!(msg.len() <= 1024, "{}-byte message", msg.len());
        }
    }
}

/// Fuzz target `record`: the alias arrives over netlink as a string.
pub fn check_record(data: &[u8]) {
    if let Ok(alias) = std::str::from_utf8(data) {
        check_record_str(alias);
        // the same text behind the prefix, so most inputs are records
        check_record_str(&format!("{PREFIX} {alias}"));
    }
}

/// The readers of kernel answers on any bytes (truncated or corrupt):
/// `kvmnet::linkmsg::parse_link` and `kvmnet::routemsg::default_oifs` never
/// panic, and whatever they read comes from inside the input.
pub fn check_linkmsg(data: &[u8]) {
    if let Ok(oifs) = kvmnet::routemsg::default_oifs(&[data.to_vec()]) {
        // each interface index is four bytes of the input
        assert!(oifs.len() * 4 <= data.len(), "{oifs:?}");
    }
    if let Ok(link) = kvmnet::linkmsg::parse_link(data) {
        assert!(!link.name.contains('\0'), "{link:?}");
        // Each input byte gives at most one character: a byte that is not
        // UTF-8 becomes U+FFFD, three bytes long (fuzz/regressions/linkmsg/).
        assert!(link.name.chars().count() <= data.len(), "{link:?}");
        assert!(link
            .alias
            .as_ref()
            .is_none_or(|a| !a.is_empty() && !a.contains('\0')));
        assert_ne!(link.master, Some(0), "master 0 means none");
    }
}
