//! Interface names. The only way to get a [`TapName`] or [`BridgeName`] is to pass
//! [`validate`], so every name that reaches netlink or an ioctl has been checked.

use std::fmt;

/// The kernel's IFNAMSIZ is 16 including the terminating NUL.
pub const MAX_LEN: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "interface name is empty; pass the tap name as the only argument (QEMU does this itself)"
    )]
    Empty,
    #[error("interface name {shown} is {len} bytes; Linux allows at most {MAX_LEN}")]
    TooLong { shown: String, len: usize },
    #[error("interface name {shown} is reserved by the kernel; choose another name")]
    Reserved { shown: String },
    #[error(
        "interface name {shown} contains {bad}; use only ASCII letters, digits, '-', '_' and '.'"
    )]
    BadChar { shown: String, bad: String },
    #[error("interface name {shown} starts with '-', which command-line tools (ip, sudo, kvmnet-ifup itself) read as an option; start it with a letter, digit, '_' or '.'")]
    LeadingDash { shown: String },
}

/// Checks a name against the kernel's rules (`dev_valid_name`) and kvmnet's
/// stricter set. The stricter set keeps names safe to print in one log line and to
/// match with globs: no shell metacharacters, no `%` (the kernel would expand it
/// into a number when creating a link), no non-ASCII look-alikes; and no
/// leading `-`, so that a name is never taken for an option: `kvmnet-ifup -h`
/// prints its usage, and `-x` must not be a tap instead.
pub fn validate(raw: &str) -> Result<&str, NameError> {
    let shown = escape(raw);
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX_LEN {
        return Err(NameError::TooLong {
            shown,
            len: raw.len(),
        });
    }
    if raw == "." || raw == ".." {
        return Err(NameError::Reserved { shown });
    }
    if let Some(c) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let bad = match c {
            '/' => "'/'".to_string(),
            ':' => "':'".to_string(),
            c if c.is_whitespace() => "whitespace".to_string(),
            c => format!("{:?}", c),
        };
        return Err(NameError::BadChar { shown, bad });
    }
    if raw.starts_with('-') {
        return Err(NameError::LeadingDash { shown });
    }
    Ok(raw)
}

/// Quotes a name for an error message so that control characters and invisible
/// bytes in hostile input cannot forge log lines.
pub fn escape(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len() + 2);
    s.push('"');
    for c in raw.chars().take(64) {
        s.extend(c.escape_default());
    }
    if raw.chars().count() > 64 {
        s.push_str("...");
    }
    s.push('"');
    s
}

/// `text` with every control, line-breaking and invisible formatting
/// character (bidi overrides, zero-width ones) escaped, so it stays one
/// honest line in a terminal or a log.
pub fn printable(text: &str) -> String {
    // Controls, the line and paragraph separators, and every format
    // character (Unicode category Cf, as of Unicode 15): bidi marks and
    // overrides, zero-width ones, the BOM, soft hyphen, tags.
    let risky = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{ad}'
                    | '\u{600}'..='\u{605}'
                    | '\u{61c}'
                    | '\u{6dd}'
                    | '\u{70f}'
                    | '\u{890}'..='\u{891}'
                    | '\u{8e2}'
                    | '\u{180e}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{206f}'
                    | '\u{feff}'
                    | '\u{fff9}'..='\u{fffb}'
                    | '\u{110bd}'
                    | '\u{110cd}'
                    | '\u{13430}'..='\u{1343f}'
                    | '\u{1bca0}'..='\u{1bca3}'
                    | '\u{1d173}'..='\u{1d17a}'
                    | '\u{e0000}'..='\u{e007f}'
            )
    };
    text.chars()
        .map(|c| {
            if risky(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A validated interface name of either kind: what the kernel look-ups and
/// changes take, so that no unchecked string reaches them.
pub trait IfName: fmt::Display {
    fn as_str(&self) -> &str;
}

macro_rules! ifname_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(raw: &str) -> Result<Self, NameError> {
                validate(raw).map(|s| Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl IfName for $name {
            fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
    };
}

ifname_type!(
    /// A validated name for a tap device.
    TapName
);
ifname_type!(
    /// A validated name for a bridge.
    BridgeName
);
ifname_type!(
    /// A validated name for any other interface kvmnet looks up or makes
    /// (a VXLAN's underlay, its vxlan device).
    IfaceName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["tap0", "vm-web_1", "a", "tap.100", "ABCDEFGHIJKLMNO", "br0"] {
            assert_eq!(validate(n), Ok(n), "{n}");
        }
    }

    #[test]
    fn rejects_kernel_invalid_names() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert!(matches!(validate("."), Err(NameError::Reserved { .. })));
        assert!(matches!(validate(".."), Err(NameError::Reserved { .. })));
        assert!(matches!(
            validate("abcdefghijklmnop"),
            Err(NameError::TooLong { len: 16, .. })
        ));
        for n in ["a/b", "a:b", "a b", "a\tb", "a\nb", "\u{0}"] {
            assert!(
                matches!(validate(n), Err(NameError::BadChar { .. })),
                "{n:?}"
            );
        }
    }

    #[test]
    fn rejects_names_the_kernel_would_take_but_kvmnet_does_not() {
        for n in [
            "tap%d",
            "tap*",
            "t$(id)",
            "tap;",
            "tapé",
            "tap\u{200b}",
            "t'",
        ] {
            assert!(
                matches!(validate(n), Err(NameError::BadChar { .. })),
                "{n:?}"
            );
        }
    }

    #[test]
    fn a_leading_dash_is_refused_with_the_reason() {
        for n in ["-", "-x", "-h", "--help", "-tap0"] {
            assert_eq!(
                validate(n).unwrap_err().to_string(),
                format!(
                    "interface name {} starts with '-', which command-line tools (ip, sudo, \
                     kvmnet-ifup itself) read as an option; start it with a letter, digit, '_' \
                     or '.'",
                    escape(n)
                ),
                "{n:?}"
            );
        }
        // a bad character is named first; a dash elsewhere is fine
        assert!(matches!(validate("-a b"), Err(NameError::BadChar { .. })));
        for n in ["tap-", "a-b", "_x", ".x", "0-"] {
            assert_eq!(validate(n), Ok(n));
        }
    }

    #[test]
    fn length_counts_bytes_not_chars() {
        // 8 two-byte characters: 16 bytes, too long, even though it is 8 chars
        let n = "éééééééé";
        assert!(matches!(
            validate(n),
            Err(NameError::TooLong { len: 16, .. })
        ));
    }

    #[test]
    fn printable_escapes_only_what_is_risky() {
        assert_eq!(
            printable("unknown field `a\u{1b}[31m`"),
            "unknown field `a\\u{1b}[31m`"
        );
        assert_eq!(printable("x\u{202e}y\nz"), "x\\u{202e}y\\u{a}z");
        assert_eq!(printable("plain – ok é"), "plain – ok é");
        // format characters the fuzzer put in a key: Arabic letter mark, tag
        assert_eq!(printable("a\u{61c}\u{e0041}"), "a\\u{61c}\\u{e0041}");
    }

    #[test]
    fn error_messages_escape_control_characters() {
        let e = validate("a\nforged log line").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("\\n"), "{e}");
    }
}
