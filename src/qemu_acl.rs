//! QEMU's bridge ACL, `/etc/qemu/bridge.conf`, with qemu-bridge-helper's
//! semantics so that an existing installation keeps working unchanged:
//! lines `allow NAME|all`, `deny NAME|all`, `include PATH`, `#` comments;
//! any other line is an error; deny by default; a deny anywhere beats any
//! allow. It is read with the caller's own rights (after the privilege
//! drop), and an unreadable `include` is skipped: that is how sites give
//! per-user ACLs with file permissions.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/qemu/bridge.conf";
const MAX_DEPTH: usize = 8;
const MAX_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Bridge(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub allow: bool,
    pub target: Target,
    /// "/etc/qemu/bridge.conf line 3"
    pub location: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QemuAclError {
    #[error("{location}: cannot parse {line:?}; QEMU's bridge ACL takes `allow BRIDGE`, `allow all`, `deny BRIDGE`, `deny all`, `include PATH` and `#` comments")]
    Syntax { location: String, line: String },
    #[error(
        "{location}: bridge name {name:?} is longer than 15 bytes; QEMU rejects such a file too"
    )]
    NameTooLong { location: String, name: String },
    #[error("{path}: includes nest deeper than {MAX_DEPTH} levels (an include loop?)")]
    TooDeep { path: String },
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: String },
}

/// The entries of `path` and its includes, in order; `Ok(None)` when the
/// file does not exist (no QEMU ACL on this host).
pub fn load(path: &Path) -> Result<Option<Vec<Entry>>, QemuAclError> {
    let mut out = Vec::new();
    match read(path)? {
        None => Ok(None),
        Some(text) => {
            parse_into(path, &text, 0, &mut out)?;
            Ok(Some(out))
        }
    }
}

fn read(path: &Path) -> Result<Option<String>, QemuAclError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(QemuAclError::Read {
                path: path.display().to_string(),
                cause: crate::error::plain(&e),
            })
        }
    };
    let mut text = String::new();
    f.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| QemuAclError::Read {
            path: path.display().to_string(),
            cause: crate::error::plain(&e),
        })?;
    Ok(Some(text))
}

fn parse_into(
    path: &Path,
    text: &str,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), QemuAclError> {
    if depth > MAX_DEPTH {
        return Err(QemuAclError::TooDeep {
            path: path.display().to_string(),
        });
    }
    for (i, raw) in text.lines().enumerate() {
        let location = format!("{} line {}", path.display(), i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        let syntax = || QemuAclError::Syntax {
            location: location.clone(),
            line: raw.chars().take(80).collect(),
        };
        match cmd {
            "allow" | "deny" => {
                // Like QEMU: the rest of the line is the name (so "allow br0
                // br1" names a bridge that can never exist), and a name longer
                // than IFNAMSIZ makes the whole file invalid (CVE-2019-13164).
                if arg.is_empty() {
                    return Err(syntax());
                }
                if arg.len() >= 16 {
                    return Err(QemuAclError::NameTooLong {
                        location,
                        name: arg.chars().take(40).collect(),
                    });
                }
                let target = if arg == "all" {
                    Target::All
                } else {
                    Target::Bridge(arg.to_owned())
                };
                out.push(Entry {
                    allow: cmd == "allow",
                    target,
                    location,
                });
            }
            "include" if !arg.is_empty() => {
                let inc = PathBuf::from(arg);
                // qemu-bridge-helper skips includes it cannot open; that is
                // the mechanism for per-user ACLs via file permissions. It
                // also keeps going after an error inside an include, with
                // what that include gave until then: same here.
                if let Ok(Some(text)) = read(&inc) {
                    if let Err(e @ QemuAclError::TooDeep { .. }) =
                        parse_into(&inc, &text, depth + 1, out)
                    {
                        return Err(e);
                    }
                }
            }
            _ => return Err(syntax()),
        }
    }
    Ok(())
}

/// What bridge.conf says about `bridge`: `Some((allowed, entry))` for the
/// deciding entry (a deny anywhere wins), `None` when nothing matches.
pub fn decide<'a>(entries: &'a [Entry], bridge: &str) -> Option<(bool, &'a Entry)> {
    let matches = |e: &&Entry| match &e.target {
        Target::All => true,
        Target::Bridge(b) => b == bridge,
    };
    if let Some(e) = entries.iter().filter(matches).find(|e| !e.allow) {
        return Some((false, e));
    }
    entries
        .iter()
        .filter(matches)
        .find(|e| e.allow)
        .map(|e| (true, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Entry>, QemuAclError> {
        let mut out = Vec::new();
        parse_into(Path::new("/etc/qemu/bridge.conf"), text, 0, &mut out).map(|()| out)
    }

    #[test]
    fn qemu_semantics() {
        let e = parse("# comment\n\nallow br0\nallow all\ndeny br-prod\n").unwrap();
        assert!(decide(&e, "br0").unwrap().0);
        assert_eq!(
            decide(&e, "br-x").unwrap().1.location,
            "/etc/qemu/bridge.conf line 4"
        );
        let (ok, why) = decide(&e, "br-prod").unwrap();
        assert!(!ok);
        assert_eq!(why.location, "/etc/qemu/bridge.conf line 5");
        assert_eq!(decide(&parse("allow br0\n").unwrap(), "br1"), None);
        // deny all beats allow br0, wherever it stands
        assert!(
            !decide(&parse("allow br0\ndeny all\n").unwrap(), "br0")
                .unwrap()
                .0
        );
    }

    #[test]
    fn anything_else_is_an_error_with_the_line() {
        for bad in ["alow br0", "allow", "include", "permit all"] {
            let e = parse(&format!("allow x\n{bad}\n")).unwrap_err().to_string();
            assert!(
                e.starts_with("/etc/qemu/bridge.conf line 2: cannot parse"),
                "{e}"
            );
        }
    }

    #[test]
    fn quirks_kept_from_qemu() {
        // the rest of the line is one name: it matches nothing
        let e = parse("allow br0 br1\nallow br0\n").unwrap();
        assert!(decide(&e, "br0").unwrap().0);
        assert_eq!(decide(&e, "br1"), None);
        let e = parse(&format!("deny {}\n", "x".repeat(24)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1: bridge name") && e.contains("longer than 15"),
            "{e}"
        );
    }

    #[test]
    fn includes_nest_and_unreadable_ones_are_skipped() {
        let dir = std::env::temp_dir().join(format!("kvmnet-qacl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inc = dir.join("alice.conf");
        std::fs::write(&inc, "allow br-alice\n").unwrap();
        let main = dir.join("bridge.conf");
        std::fs::write(
            &main,
            format!(
                "include {}\ninclude {}/missing.conf\n",
                inc.display(),
                dir.display()
            ),
        )
        .unwrap();
        let e = load(&main).unwrap().unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].location.ends_with("alice.conf line 1"), "{e:?}");
        // a self-include is a loop, caught by the depth limit
        std::fs::write(&main, format!("include {}\n", main.display())).unwrap();
        let r = load(&main);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(r, Err(QemuAclError::TooDeep { .. })), "{r:?}");
        assert_eq!(load(Path::new("/nonexistent/bridge.conf")).unwrap(), None);
    }
}
