//! The access decisions for callers other than plain root, turned into
//! refusals that name the user, the tap, the bridge and the rule.

use crate::acl::{Acl, Identity, System};
use crate::error::Error;
use crate::link::Link;

/// May `who` use `bridge` for `tap`? Returns the rule that allowed it.
pub fn check_bridge(who: &Identity, acl: &Acl, tap: &str, bridge: &str) -> Result<String, Error> {
    let d = acl.decide(who, bridge, &System);
    if d.allowed {
        return Ok(d.rule);
    }
    // An [[allow]] helps against the default only, not against a deny or a
    // look-up that failed.
    let hint = if d.denied_by_rule {
        ""
    } else {
        "; an admin can add an [[allow]] rule for it to /etc/kvmnet/kvmnet.toml"
    };
    Err(Error::Denied {
        message: format!(
            "user {} may not attach {tap} to bridge {bridge}: {}{hint}",
            who.uid, d.rule
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
            message: format!("user {} may not configure tap {}: {why}", who.uid, tap.name),
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
            "tap {} {whose}, not to user {}; use a tap of your own (kvmnet-ifup creates one owned by you when the name is free)",
            tap.name, who.uid
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
            "tap {tap} is routed ({rule}); routed mode adds host routes and is for root only, not user {}",
            who.uid
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
    let refuse = |rule: String| Error::Denied {
        message: format!(
            "user {} may not attach a tap to bridge {bridge}: {rule}",
            who.uid
        ),
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
            "neither an [[allow]] rule in /etc/kvmnet/kvmnet.toml nor {} allows it; add `allow {bridge}` to {} or an [[allow]] rule for this user",
            if qemu.is_some() { "a line in /etc/qemu/bridge.conf" } else { "/etc/qemu/bridge.conf (absent)" },
            crate::qemu_acl::DEFAULT_PATH
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
            "user {} already owns {owned} ports of bridge {bridge}, the most max_ports_per_user in /etc/kvmnet/kvmnet.toml allows; stop a VM (kvmnet-ifdown its tap) or ask an admin to raise the limit",
            who.uid
        ),
        details: format!(
            "uid={} tap=- bridge={bridge} decision=denied rule=\"max_ports_per_user = {max} ({owned} owned)\"",
            who.uid
        ),
    })
}
