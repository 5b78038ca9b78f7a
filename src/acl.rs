//! Who may attach to which bridge: `[[allow]]` and `[[deny]]` rules from
//! kvmnet.toml, qemu-bridge-helper's semantics: deny by default for anyone but
//! plain root, and a matching deny beats any allow.

use std::fmt;

use crate::name::BridgeName;
use crate::sys::nss;

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
    /// Why this user's groups could not be established (a sudo user whose
    /// entry or group list did not resolve). Every decision for such an
    /// identity is a refusal with this reason: a `[[deny]]` by group would
    /// otherwise silently stop matching.
    pub lookup_failure: Option<String>,
}

/// A user or group look-up that failed, as opposed to one that found no
/// entry: the errno of the reentrant NSS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("looking up {what} failed: {} ({:?})", nix::errno::Errno::from_raw(*errno).desc(), nix::errno::Errno::from_raw(*errno))]
pub struct LookupError {
    /// "user alice", "uid 1000", "group kvm", "gid 108".
    pub what: String,
    pub errno: i32,
}

/// Name look-ups, behind a trait so that the rules are tested without a
/// user database. `Ok(None)` is "no such entry", `Err` a look-up that failed.
pub trait Resolve {
    fn user_id(&self, name: &str) -> Result<Option<u32>, LookupError>;
    fn group_id(&self, name: &str) -> Result<Option<u32>, LookupError>;
    /// Whether `uid` has an entry. A "no such user" for a name can only be
    /// trusted when the caller's own entries resolve (see [`Acl::decide`]).
    fn has_user(&self, uid: u32) -> Result<bool, LookupError>;
    fn has_group(&self, gid: u32) -> Result<bool, LookupError>;
}

/// The system's user and group databases (NSS).
pub struct System;

/// A user's entry: what a sudo caller's group list is looked up with.
/// A user's database entry: the name (for getgrouplist) and primary gid.
pub type UserEntry = crate::sys::nss::Passwd;

impl System {
    /// The entry of `uid` (getpwuid_r).
    pub fn user_entry(&self, uid: u32) -> Result<Option<UserEntry>, LookupError> {
        nss::user_by_uid(uid).map_err(|errno| LookupError {
            what: format!("uid {uid}"),
            errno,
        })
    }
}

impl Resolve for System {
    fn user_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
        let fail = |errno| LookupError {
            what: format!("user {name}"),
            errno,
        };
        let c = std::ffi::CString::new(name).map_err(|_| fail(libc::EINVAL))?;
        nss::user_by_name(&c)
            .map(|e| e.map(|pw| pw.uid))
            .map_err(fail)
    }
    fn group_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
        let fail = |errno| LookupError {
            what: format!("group {name}"),
            errno,
        };
        let c = std::ffi::CString::new(name).map_err(|_| fail(libc::EINVAL))?;
        nss::group_by_name(&c).map_err(fail)
    }
    fn has_user(&self, uid: u32) -> Result<bool, LookupError> {
        self.user_entry(uid).map(|e| e.is_some())
    }
    fn has_group(&self, gid: u32) -> Result<bool, LookupError> {
        nss::group_by_gid(gid)
            .map(|g| g.is_some())
            .map_err(|errno| LookupError {
                what: format!("gid {gid}"),
                errno,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Refused by a `[[deny]]` rule, or because one could not be evaluated
    /// (not just the default): no allow anywhere else may override it.
    pub denied_by_rule: bool,
    /// The rule that decided, in words.
    pub rule: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub rules: Vec<Rule>,
}

/// How a rule's principals relate to the caller.
enum Fit {
    /// This principal names the caller.
    Match(String),
    /// None does. `unknown`: a name that has no entry, which is only
    /// trusted once the caller's own entries resolve.
    NoMatch { unknown: Option<String> },
    /// A look-up failed: whether the rule names the caller is not known.
    Unknown(LookupError),
}

impl Rule {
    fn fit(&self, who: &Identity, r: &dyn Resolve) -> Fit {
        let mut failed = None;
        let mut unknown = None;
        let mut judge = |kind: &str, found: Result<Option<bool>, LookupError>, p: &Principal| {
            match found {
                Ok(Some(true)) => return Some(format!("{kind} {p}")),
                Ok(Some(false)) => {}
                Ok(None) => {
                    unknown.get_or_insert_with(|| format!("{kind} {p}"));
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
            None
        };
        for p in &self.users {
            let found = match p {
                Principal::Any => Ok(Some(true)),
                Principal::Id(u) => Ok(Some(*u == who.uid)),
                Principal::Name(n) => r.user_id(n).map(|u| u.map(|u| u == who.uid)),
            };
            if let Some(m) = judge("user", found, p) {
                return Fit::Match(m);
            }
        }
        for p in &self.groups {
            let found = match p {
                Principal::Any => Ok(Some(true)),
                Principal::Id(g) => Ok(Some(who.groups.contains(g))),
                Principal::Name(n) => r.group_id(n).map(|g| g.map(|g| who.groups.contains(&g))),
            };
            if let Some(m) = judge("group", found, p) {
                return Fit::Match(m);
            }
        }
        match failed {
            Some(e) => Fit::Unknown(e),
            None => Fit::NoMatch { unknown },
        }
    }
}

/// Whether the caller's own user and every one of their groups resolve: if
/// they do not, the user database is failing, and its "no such user" for a
/// name in a `[[deny]]` may be a failed source followed by one that knows
/// nothing (`passwd: files systemd` with `files` out of descriptors).
fn own_entries_resolve(who: &Identity, r: &dyn Resolve) -> Result<(), String> {
    match r.has_user(who.uid) {
        Ok(true) => {}
        Ok(false) => return Err(format!("uid {} has no entry", who.uid)),
        Err(e) => return Err(e.to_string()),
    }
    for &g in &who.groups {
        match r.has_group(g) {
            Ok(true) => {}
            Ok(false) => return Err(format!("gid {g} has no entry")),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

impl Acl {
    /// May `who` (not plain root: the caller handles that) use `bridge`?
    /// Fails closed: a `[[deny]]` rule for this bridge that cannot be
    /// evaluated refuses, and so does one that names a user or group with no
    /// entry while the caller's own entries do not resolve. An `[[allow]]`
    /// rule that cannot be evaluated just does not match, and the refusal
    /// says why.
    pub fn decide(&self, who: &Identity, bridge: &str, r: &dyn Resolve) -> Decision {
        let refuse = |rule: String| Decision {
            allowed: false,
            denied_by_rule: true,
            rule,
        };
        if let Some(why) = &who.lookup_failure {
            return refuse(why.clone());
        }
        let rules = |verdict| {
            self.rules
                .iter()
                .filter(move |rule| rule.verdict == verdict)
                .filter(|rule| rule.bridges.iter().any(|b| b.matches(bridge)))
        };
        let mut failed = None;
        let mut unknown = None;
        for rule in rules(Verdict::Deny) {
            match rule.fit(who, r) {
                Fit::Match(p) => return refuse(format!("deny rule at {} ({p})", rule.location)),
                Fit::Unknown(e) => {
                    failed.get_or_insert((rule, e));
                }
                Fit::NoMatch { unknown: Some(p) } => {
                    unknown.get_or_insert((rule, p));
                }
                Fit::NoMatch { unknown: None } => {}
            }
        }
        if let Some((rule, e)) = failed {
            return refuse(format!(
                "the deny rule at {} cannot be evaluated: {e}; refusing rather than guessing (check the user and group databases: nsswitch.conf, sssd/LDAP)",
                rule.location
            ));
        }
        if let Some((rule, p)) = unknown {
            if let Err(why) = own_entries_resolve(who, r) {
                return refuse(format!(
                    "cannot look up your own user and groups ({why}); refusing because the deny rule at {} names {p}, which has no entry, and that answer cannot be trusted while yours do not resolve (check nsswitch.conf and the user and group databases)",
                    rule.location
                ));
            }
        }
        let mut failed = None;
        for rule in rules(Verdict::Allow) {
            match rule.fit(who, r) {
                Fit::Match(p) => {
                    return Decision {
                        allowed: true,
                        denied_by_rule: false,
                        rule: format!("allow rule at {} ({p})", rule.location),
                    }
                }
                Fit::Unknown(e) => {
                    failed.get_or_insert((rule, e));
                }
                Fit::NoMatch { .. } => {}
            }
        }
        let rule = match failed {
            None => "no [[allow]] rule matches (deny by default)".into(),
            Some((rule, e)) => format!(
                "no [[allow]] rule matches (deny by default; the allow rule at {} could not be evaluated: {e})",
                rule.location
            ),
        };
        Decision {
            allowed: false,
            denied_by_rule: false,
            rule,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Resolve for Fake {
        fn user_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
            Ok(match name {
                "alice" => Some(1000),
                "guest" => Some(1001),
                _ => None,
            })
        }
        fn group_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
            Ok(match name {
                "kvm" => Some(108),
                _ => None,
            })
        }
        fn has_user(&self, _: u32) -> Result<bool, LookupError> {
            Ok(true)
        }
        fn has_group(&self, _: u32) -> Result<bool, LookupError> {
            Ok(true)
        }
    }

    /// A user database in trouble: every look-up fails with this errno, or,
    /// with 0, finds no one at all (a `files` source out of descriptors
    /// followed by one that knows nobody).
    struct Broken(i32);
    impl Broken {
        fn answer<T>(&self, what: String) -> Result<Option<T>, LookupError> {
            match self.0 {
                0 => Ok(None),
                errno => Err(LookupError { what, errno }),
            }
        }
    }
    impl Resolve for Broken {
        fn user_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
            self.answer(format!("user {name}"))
        }
        fn group_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
            self.answer(format!("group {name}"))
        }
        fn has_user(&self, uid: u32) -> Result<bool, LookupError> {
            self.answer::<()>(format!("uid {uid}")).map(|e| e.is_some())
        }
        fn has_group(&self, gid: u32) -> Result<bool, LookupError> {
            self.answer::<()>(format!("gid {gid}")).map(|e| e.is_some())
        }
    }

    /// Names resolve, but one of the caller's own groups does not.
    struct OwnGroupMissing;
    impl Resolve for OwnGroupMissing {
        fn user_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
            Fake.user_id(name)
        }
        fn group_id(&self, name: &str) -> Result<Option<u32>, LookupError> {
            Fake.group_id(name)
        }
        fn has_user(&self, _: u32) -> Result<bool, LookupError> {
            Ok(true)
        }
        fn has_group(&self, gid: u32) -> Result<bool, LookupError> {
            Ok(gid != 108)
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
            lookup_failure: None,
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

    const EMFILE: i32 = libc::EMFILE;

    /// An allow for group 108 by number (so it needs no look-up) and one deny.
    fn allow_108_and_deny(users: &[&str], groups: &[&str]) -> Acl {
        Acl {
            rules: vec![
                rule(Verdict::Allow, 1, &[], &["108"], &["*"]),
                rule(Verdict::Deny, 4, users, groups, &["br0"]),
            ],
        }
    }

    #[test]
    fn every_deny_form_naming_the_caller_refuses_when_look_ups_fail() {
        let alice = who(1000, &[1000, 108]);
        for (users, groups) in [
            (&["alice"][..], &[][..]),
            (&["1000"], &[]),
            (&[], &["kvm"]),
            (&[], &["108"]),
            (&["*"], &[]),
            (&[], &["*"]),
        ] {
            let acl = allow_108_and_deny(users, groups);
            let d = acl.decide(&alice, "br0", &Fake);
            assert!(
                !d.allowed && d.denied_by_rule,
                "{users:?} {groups:?}: {d:?}"
            );
            assert!(
                d.rule.starts_with("deny rule at kvmnet.toml line 4 ("),
                "{d:?}"
            );
            for db in [Broken(EMFILE), Broken(0)] {
                let d = acl.decide(&alice, "br0", &db);
                assert!(
                    !d.allowed && d.denied_by_rule,
                    "{users:?} {groups:?} errno {}: {d:?}",
                    db.0
                );
            }
            // the deny is for br0 only
            assert!(acl.decide(&alice, "br1", &Broken(EMFILE)).allowed);
        }
    }

    #[test]
    fn a_deny_by_name_that_cannot_be_evaluated_refuses_and_says_why() {
        let alice = who(1000, &[1000, 108]);
        for (users, groups, what) in [
            (&["guest"][..], &[][..], "user guest"),
            (&[], &["wheel"], "group wheel"),
        ] {
            let acl = allow_108_and_deny(users, groups);
            // look-ups work: guest and wheel are not alice
            assert!(acl.decide(&alice, "br0", &Fake).allowed, "{what}");
            let d = acl.decide(&alice, "br0", &Broken(EMFILE));
            assert!(!d.allowed && d.denied_by_rule, "{d:?}");
            assert_eq!(
                d.rule,
                format!(
                    "the deny rule at kvmnet.toml line 4 cannot be evaluated: looking up {what} failed: \
                     Too many open files (EMFILE); refusing rather than guessing (check the user and \
                     group databases: nsswitch.conf, sssd/LDAP)"
                )
            );
            // "no such user" from a database that cannot find the caller either
            let d = acl.decide(&alice, "br0", &Broken(0));
            assert!(!d.allowed && d.denied_by_rule, "{d:?}");
            assert!(
                d.rule.starts_with(
                    "cannot look up your own user and groups (uid 1000 has no entry); refusing \
                     because the deny rule at kvmnet.toml line 4 names "
                ),
                "{d:?}"
            );
        }
        // one of the caller's own groups does not resolve: a name without an
        // entry (mallory) is not believed, one with an entry (guest) is
        let d = allow_108_and_deny(&["mallory"], &[]).decide(&alice, "br0", &OwnGroupMissing);
        assert!(!d.allowed && d.denied_by_rule, "{d:?}");
        assert!(d.rule.contains("(gid 108 has no entry)"), "{d:?}");
        assert!(
            d.rule.contains("names user mallory, which has no entry"),
            "{d:?}"
        );
        let acl = allow_108_and_deny(&["guest"], &[]);
        assert!(acl.decide(&alice, "br0", &OwnGroupMissing).allowed);
        // with the caller's own entries resolving, "no such user" is believed
        let acl = allow_108_and_deny(&["nosuchuser"], &["nosuchgroup"]);
        assert!(acl.decide(&alice, "br0", &Fake).allowed);
    }

    #[test]
    fn numeric_rules_need_no_look_up() {
        let alice = who(1000, &[1000, 108]);
        let acl = allow_108_and_deny(&["1001"], &["109"]);
        for db in [Broken(EMFILE), Broken(0)] {
            assert!(acl.decide(&alice, "br0", &db).allowed);
        }
    }

    #[test]
    fn an_allow_that_cannot_be_evaluated_does_not_match_and_says_so() {
        let acl = Acl {
            rules: vec![rule(Verdict::Allow, 2, &[], &["kvm"], &["*"])],
        };
        let d = acl.decide(&who(1000, &[108]), "br0", &Broken(EMFILE));
        assert!(!d.allowed && !d.denied_by_rule, "{d:?}");
        assert_eq!(
            d.rule,
            "no [[allow]] rule matches (deny by default; the allow rule at kvmnet.toml line 2 \
             could not be evaluated: looking up group kvm failed: Too many open files (EMFILE))"
        );
    }

    #[test]
    fn an_identity_that_could_not_be_established_is_refused_everything() {
        let acl = Acl {
            rules: vec![rule(Verdict::Allow, 1, &["*"], &[], &["*"])],
        };
        let mut w = who(1000, &[1000]);
        assert!(acl.decide(&w, "br0", &Fake).allowed);
        w.lookup_failure = Some("the sudo user has no entry".into());
        let d = acl.decide(&w, "br0", &Fake);
        assert!(!d.allowed && d.denied_by_rule);
        assert_eq!(d.rule, "the sudo user has no entry");
    }

    #[test]
    fn the_system_database_tells_no_entry_from_an_entry() {
        assert_eq!(System.user_id("root"), Ok(Some(0)));
        assert_eq!(System.group_id("root"), Ok(Some(0)));
        assert_eq!(System.has_user(0), Ok(true));
        assert_eq!(System.has_group(0), Ok(true));
        assert_eq!(System.user_entry(0).unwrap().unwrap().gid, 0);
        assert_eq!(System.user_id("no-such-user-kvmnet"), Ok(None));
        assert_eq!(System.group_id("no-such-group-kvmnet"), Ok(None));
        // a name with a NUL cannot be asked for: an error, not "no such user"
        assert!(System.user_id("a\0b").is_err());
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
