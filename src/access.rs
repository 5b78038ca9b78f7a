//! The access decisions for callers other than plain root, turned into
//! refusals that name the user, the tap, the bridge and the rule.

use crate::acl::{Acl, Identity, Principal, System};
use crate::error::Error;
use crate::link::Link;

/// The config file every caller but real root is held to.
const CONFIG: &str = crate::config::DEFAULT_PATH;

/// A user as refusals name them: "user alice (uid 1001)", or "user 1001"
/// when the user database has no usable name for the uid or the look-up
/// fails (a refusal never fails for want of a name).
pub struct User {
    pub uid: u32,
    /// The name, when it is one a config rule can hold (useradd's syntax).
    pub name: Option<String>,
}

impl User {
    pub fn of(uid: u32) -> User {
        let name = System
            .user_entry(uid)
            .ok()
            .flatten()
            .and_then(|pw| pw.name.into_string().ok())
            .filter(|n| matches!(Principal::parse(n), Ok(Principal::Name(_))));
        User { uid, name }
    }

    /// The `[[allow]]` rule that admits this user to `bridge`, as one line
    /// an admin can paste into a shell: the rule's three lines appended to
    /// the config. Only validated names and bridge names go into it, so it
    /// needs no quoting beyond its own.
    pub fn allow_rule(&self, bridge: &str) -> String {
        let user = match &self.name {
            Some(n) => format!("\"{n}\""),
            None => self.uid.to_string(),
        };
        format!(
            r#"printf '[[allow]]\nusers = [{user}]\nbridges = ["{bridge}"]\n' | sudo tee -a {CONFIG}"#
        )
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "user {n} (uid {})", self.uid),
            None => write!(f, "user {}", self.uid),
        }
    }
}

/// May `who` use `bridge` for `tap`? Returns the rule that allowed it.
pub fn check_bridge(who: &Identity, acl: &Acl, tap: &str, bridge: &str) -> Result<String, Error> {
    let d = acl.decide(who, bridge, &System);
    if d.allowed {
        return Ok(d.rule);
    }
    let user = User::of(who.uid);
    // An [[allow]] helps against the default only, not against a deny or a
    // look-up that failed.
    let hint = if d.denied_by_rule {
        String::new()
    } else {
        format!(
            "; an admin can admit them with: {}",
            user.allow_rule(bridge)
        )
    };
    Err(Error::Denied {
        message: format!(
            "{user} may not attach {tap} to bridge {bridge}: {}{hint}",
            d.rule
        ),
        details: format!(
            "uid={} tap={tap} bridge={bridge} decision=denied rule=\"{}\"",
            who.uid, d.rule
        ),
    })
}

/// A non-root caller may only touch a tap owned by them or by one of their
/// groups (the tun device's owner and group, as the kernel itself checks
/// when QEMU opens it). `bridge` is for the log line only.
pub fn check_tap_owner(who: &Identity, tap: &Link, bridge: Option<&str>) -> Result<(), Error> {
    if let Some(why) = &who.lookup_failure {
        return Err(Error::Denied {
            message: format!(
                "{} may not configure tap {}: {why}",
                User::of(who.uid),
                tap.name
            ),
            details: format!(
                "uid={} tap={} bridge={} decision=denied rule=\"{why}\"",
                who.uid,
                tap.name,
                bridge.unwrap_or("-")
            ),
        });
    }
    let tun = tap.tun().cloned().unwrap_or_default();
    let by_owner = tun.owner == Some(who.uid);
    let by_group = tun.group.is_some_and(|g| who.groups.contains(&g));
    if by_owner || by_group {
        return Ok(());
    }
    let whose = match (tun.owner, tun.group) {
        (None, None) => "has no owner, so only root may configure it".to_owned(),
        (Some(u), None) => format!("belongs to uid {u}"),
        (None, Some(g)) => format!("belongs to group {g}"),
        (Some(u), Some(g)) => format!("belongs to uid {u} and group {g}"),
    };
    Err(Error::Denied {
        message: format!(
            "tap {} {whose}, not to {}; use a tap of your own (kvmnet-ifup creates one owned by you when the name is free)",
            tap.name,
            User::of(who.uid)
        ),
        details: format!(
            "uid={} tap={} bridge={} decision=denied rule=\"tap ownership: {whose}\"",
            who.uid,
            tap.name,
            bridge.unwrap_or("-")
        ),
    })
}

/// Routed mode adds host routes, which steer traffic for the whole host: a
/// user who could pick the tap name could take over an address. Root only.
pub fn routed_is_root_only(who: &Identity, tap: &str, rule: Option<&str>) -> Error {
    let rule = rule.unwrap_or("the top-level mode = \"route\"");
    Error::Denied {
        message: format!(
            "tap {tap} is routed ({rule}); routed mode adds host routes and is for root only, not {}",
            User::of(who.uid)
        ),
        details: format!(
            "uid={} tap={tap} bridge=- decision=denied rule=\"routed mode is root-only ({rule})\"",
            who.uid
        ),
    }
}

/// The bridge helper's policy: kvmnet's ACL and, when it exists, QEMU's
/// /etc/qemu/bridge.conf. A deny in either wins; otherwise an allow in
/// either admits (so an installation that worked with qemu-bridge-helper
/// keeps working); otherwise refused.
pub fn check_bridge_helper(
    who: &Identity,
    acl: &Acl,
    qemu: Option<&[crate::qemu_acl::Entry]>,
    tap: &str,
    bridge: &str,
) -> Result<String, Error> {
    let kv = acl.decide(who, bridge, &System);
    let q = qemu.and_then(|e| crate::qemu_acl::decide(e, bridge));
    let user = || User::of(who.uid);
    let refuse = |rule: String| Error::Denied {
        message: format!("{} may not attach a tap to bridge {bridge}: {rule}", user()),
        details: format!(
            "uid={} tap={tap} bridge={bridge} decision=denied rule=\"{rule}\"",
            who.uid
        ),
    };
    if kv.denied_by_rule {
        return Err(refuse(kv.rule));
    }
    match q {
        Some((false, e)) => Err(refuse(format!("`deny` at {}", e.location))),
        _ if kv.allowed => Ok(kv.rule),
        Some((true, e)) => Ok(format!("`allow` at {}", e.location)),
        None => Err(refuse(format!(
            "neither an [[allow]] rule in {CONFIG} nor {} allows it; add `allow {bridge}` to {} or an [[allow]] rule for this user: {}",
            if qemu.is_some() { "a line in /etc/qemu/bridge.conf" } else { "/etc/qemu/bridge.conf (absent)" },
            crate::qemu_acl::DEFAULT_PATH,
            user().allow_rule(bridge)
        ))),
    }
}

/// A caller other than root may own at most `max` ports of one bridge
/// (`max_ports_per_user`), so that one user cannot fill a shared bridge to
/// its 1,023-port limit. Counted from the bridge's ports, by tap owner.
/// Concurrent runs of one user can each see the last free place: the
/// limit can be exceeded by the number of runs racing for it.
pub fn check_port_quota(
    who: &Identity,
    ports: &[Link],
    bridge: &str,
    max: u32,
) -> Result<(), Error> {
    let owned = ports
        .iter()
        .filter(|p| p.tun().is_some_and(|t| t.owner == Some(who.uid)))
        .count();
    if owned < max as usize {
        return Ok(());
    }
    Err(Error::Denied {
        message: format!(
            "{} already owns {owned} port{} of bridge {bridge}, the most max_ports_per_user in {CONFIG} allows; stop a VM (kvmnet-ifdown its tap) or ask an admin to raise the limit (now {max})",
            User::of(who.uid),
            if owned == 1 { "" } else { "s" }
        ),
        details: format!(
            "uid={} tap=- bridge={bridge} decision=denied rule=\"max_ports_per_user = {max} ({owned} owned)\"",
            who.uid
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// What the printf in a suggested rule appends to the config.
    fn appended(rule: &str) -> String {
        let body = rule
            .strip_prefix("printf '")
            .and_then(|r| r.strip_suffix(&format!("' | sudo tee -a {CONFIG}")))
            .unwrap_or_else(|| panic!("not a printf | tee line: {rule}"));
        assert!(!body.contains(['\'', '%', '\n']), "{body}");
        body.replace("\\n", "\n")
    }

    fn who(uid: u32) -> Identity {
        Identity {
            uid,
            groups: vec![],
            lookup_failure: None,
        }
    }

    #[test]
    fn a_user_is_named_with_their_uid_or_by_the_uid_alone() {
        let root = User::of(0);
        assert_eq!(root.to_string(), "user root (uid 0)");
        let nobody = User {
            uid: 4_000_000_000,
            name: None,
        };
        assert_eq!(nobody.to_string(), "user 4000000000");
        // a uid without an entry: the uid, not a failure
        let none = User::of(4_000_000_001);
        assert_eq!(none.to_string(), "user 4000000001");
    }

    #[test]
    fn the_suggested_rule_admits_exactly_that_user_to_that_bridge() {
        // by name (resolved by the system's database), and by uid
        for (user, rule) in [
            (
                User::of(0),
                "[[allow]]\nusers = [\"root\"]\nbridges = [\"br-lab\"]\n",
            ),
            (
                User {
                    uid: 4242,
                    name: None,
                },
                "[[allow]]\nusers = [4242]\nbridges = [\"br-lab\"]\n",
            ),
        ] {
            let text = appended(&user.allow_rule("br-lab"));
            assert_eq!(text, rule);
            // appended to a file with settings and rules of its own
            let file = format!("bridge = \"br0\"\n[[rule]]\nmatch = \"x*\"\nmtu = 1400\n{text}");
            let cfg = Config::parse(std::path::Path::new(CONFIG), &file).unwrap();
            assert!(cfg.acl.decide(&who(user.uid), "br-lab", &System).allowed);
            assert!(!cfg.acl.decide(&who(user.uid), "br0", &System).allowed);
            assert!(!cfg.acl.decide(&who(4343), "br-lab", &System).allowed);
        }
    }

    #[test]
    fn a_refusal_by_default_carries_the_rule_and_one_by_a_deny_does_not() {
        let cfg = Config::parse(
            std::path::Path::new(CONFIG),
            "[[deny]]\nusers = [4242]\nbridges = [\"br-x\"]\n",
        )
        .unwrap();
        let e = check_bridge(&who(4242), &cfg.acl, "vm0", "br0").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "user 4242 may not attach vm0 to bridge br0: no [[allow]] rule matches (deny by \
                 default); an admin can admit them with: printf '[[allow]]\\nusers = \
                 [4242]\\nbridges = [\"br0\"]\\n' | sudo tee -a {CONFIG}"
            )
        );
        let e = check_bridge(&who(4242), &cfg.acl, "vm0", "br-x").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("user 4242 may not attach vm0 to bridge br-x: deny rule at {CONFIG} line 1 (user 4242)")
        );
        assert_eq!(e.to_string().lines().count(), 1);
    }
}
