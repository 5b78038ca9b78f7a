//! Who may attach to which bridge: `[[allow]]` and `[[deny]]` rules from
//! kvmnet.toml, qemu-bridge-helper's semantics: deny by default for anyone but
//! plain root, and a matching deny beats any allow.

use std::fmt;

use crate::name::BridgeName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Any,
    Id(u32),
    Name(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Any => f.write_str("*"),
            Principal::Id(i) => write!(f, "{i}"),
            Principal::Name(n) => f.write_str(n),
        }
    }
}

impl Principal {
    /// Names as in useradd(8): ASCII, start with a letter or '_', then
    /// letters, digits, '_', '-', '.', an optional trailing '$'; at most 32.
    pub fn parse(s: &str) -> Result<Principal, String> {
        if s == "*" {
            return Ok(Principal::Any);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Principal::Id)
                .map_err(|_| format!("{s:?} is not a valid numeric id"));
        }
        let body = s.strip_suffix('$').unwrap_or(s);
        let ok_first = body
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        let ok_rest = body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if s.len() <= 32 && ok_first && ok_rest {
            Ok(Principal::Name(s.to_owned()))
        } else {
            Err(format!(
                "{} is not a user or group name or a numeric id",
                crate::name::escape(s)
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgePattern {
    Any,
    Name(BridgeName),
}

impl BridgePattern {
    pub fn parse(s: &str) -> Result<BridgePattern, String> {
        if s == "*" {
            Ok(BridgePattern::Any)
        } else {
            BridgeName::new(s)
                .map(BridgePattern::Name)
                .map_err(|e| e.to_string())
        }
    }
    fn matches(&self, bridge: &str) -> bool {
        match self {
            BridgePattern::Any => true,
            BridgePattern::Name(n) => n.as_str() == bridge,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub verdict: Verdict,
    /// Where it stands, for messages: "/etc/kvmnet/kvmnet.toml line 7".
    pub location: String,
    pub users: Vec<Principal>,
    pub groups: Vec<Principal>,
    pub bridges: Vec<BridgePattern>,
}

/// The invoking user as the ACL sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    /// Primary and supplementary groups.
    pub groups: Vec<u32>,
}

/// Name look-ups, behind a trait so that the rules are tested without a
/// user database.
pub trait Resolve {
    fn uid(&self, name: &str) -> Option<u32>;
    fn gid(&self, name: &str) -> Option<u32>;
}

/// The system's user and group databases (NSS).
pub struct System;

impl Resolve for System {
    fn uid(&self, name: &str) -> Option<u32> {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }
    fn gid(&self, name: &str) -> Option<u32> {
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// A `[[deny]]` rule decided (not just the default).
    pub denied_by_rule: bool,
    /// The rule that decided, in words.
    pub rule: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub rules: Vec<Rule>,
}

impl Rule {
    /// The principal that makes this rule apply to `who`, if any.
    fn matching_principal(&self, who: &Identity, r: &dyn Resolve) -> Option<String> {
        let user = self.users.iter().find(|p| match p {
            Principal::Any => true,
            Principal::Id(u) => *u == who.uid,
            Principal::Name(n) => r.uid(n) == Some(who.uid),
        });
        if let Some(p) = user {
            return Some(format!("user {p}"));
        }
        let group = self.groups.iter().find(|p| match p {
            Principal::Any => true,
            Principal::Id(g) => who.groups.contains(g),
            Principal::Name(n) => r.gid(n).is_some_and(|g| who.groups.contains(&g)),
        });
        group.map(|p| format!("group {p}"))
    }
}

impl Acl {
    /// May `who` (not plain root: the caller handles that) use `bridge`?
    pub fn decide(&self, who: &Identity, bridge: &str, r: &dyn Resolve) -> Decision {
        let hit = |verdict| {
            self.rules
                .iter()
                .filter(|rule| rule.verdict == verdict)
                .filter(|rule| rule.bridges.iter().any(|b| b.matches(bridge)))
                .find_map(|rule| rule.matching_principal(who, r).map(|p| (rule, p)))
        };
        if let Some((rule, p)) = hit(Verdict::Deny) {
            return Decision {
                allowed: false,
                denied_by_rule: true,
                rule: format!("deny rule at {} ({p})", rule.location),
            };
        }
        if let Some((rule, p)) = hit(Verdict::Allow) {
            return Decision {
                allowed: true,
                denied_by_rule: false,
                rule: format!("allow rule at {} ({p})", rule.location),
            };
        }
        Decision {
            allowed: false,
            denied_by_rule: false,
            rule: "no [[allow]] rule matches (deny by default)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Resolve for Fake {
        fn uid(&self, name: &str) -> Option<u32> {
            match name {
                "alice" => Some(1000),
                "guest" => Some(1001),
                _ => None,
            }
        }
        fn gid(&self, name: &str) -> Option<u32> {
            match name {
                "kvm" => Some(108),
                _ => None,
            }
        }
    }

    fn rule(
        verdict: Verdict,
        line: usize,
        users: &[&str],
        groups: &[&str],
        bridges: &[&str],
    ) -> Rule {
        Rule {
            verdict,
            location: format!("kvmnet.toml line {line}"),
            users: users.iter().map(|s| Principal::parse(s).unwrap()).collect(),
            groups: groups
                .iter()
                .map(|s| Principal::parse(s).unwrap())
                .collect(),
            bridges: bridges
                .iter()
                .map(|s| BridgePattern::parse(s).unwrap())
                .collect(),
        }
    }

    fn acl() -> Acl {
        Acl {
            rules: vec![
                rule(Verdict::Allow, 2, &[], &["kvm"], &["br0", "br-lab"]),
                rule(Verdict::Deny, 5, &["guest"], &[], &["*"]),
                rule(Verdict::Allow, 8, &["2000"], &[], &["*"]),
            ],
        }
    }

    fn who(uid: u32, groups: &[u32]) -> Identity {
        Identity {
            uid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn deny_by_default() {
        let d = Acl::default().decide(&who(1000, &[1000]), "br0", &Fake);
        assert!(!d.allowed);
        assert!(d.rule.contains("deny by default"));
    }

    #[test]
    fn group_allow_names_the_rule() {
        let d = acl().decide(&who(1000, &[1000, 108]), "br-lab", &Fake);
        assert!(d.allowed);
        assert_eq!(d.rule, "allow rule at kvmnet.toml line 2 (group kvm)");
        assert!(
            !acl()
                .decide(&who(1000, &[1000, 108]), "br-prod", &Fake)
                .allowed
        );
        assert!(!acl().decide(&who(1000, &[1000]), "br0", &Fake).allowed);
    }

    #[test]
    fn deny_wins_over_allow_wherever_it_stands() {
        let d = acl().decide(&who(1001, &[1001, 108]), "br0", &Fake);
        assert!(!d.allowed);
        assert_eq!(d.rule, "deny rule at kvmnet.toml line 5 (user guest)");
    }

    #[test]
    fn numeric_ids_and_unknown_names() {
        assert!(acl().decide(&who(2000, &[]), "anything", &Fake).allowed);
        let a = Acl {
            rules: vec![rule(
                Verdict::Allow,
                1,
                &["nosuchuser"],
                &["nosuchgroup"],
                &["*"],
            )],
        };
        assert!(!a.decide(&who(1000, &[108]), "br0", &Fake).allowed);
    }

    #[test]
    fn principal_syntax() {
        assert_eq!(
            Principal::parse("alice"),
            Ok(Principal::Name("alice".into()))
        );
        assert_eq!(Principal::parse("1000"), Ok(Principal::Id(1000)));
        assert_eq!(Principal::parse("*"), Ok(Principal::Any));
        assert_eq!(
            Principal::parse("machine$"),
            Ok(Principal::Name("machine$".into()))
        );
        for bad in [
            "",
            "-x",
            "a b",
            "99999999999",
            "al:ice",
            "ä",
            &"a".repeat(33),
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad:?}");
        }
    }
}
