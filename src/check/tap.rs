//! `kvmnet check --tap NAME`: what kvmnet-ifup, run by root, would do with
//! that tap now. Its refusals come from the runtime's own decisions, in the
//! runtime's order: the tap's kind, the bridge (missing, not a bridge, its
//! VLAN precondition), then the attach plan (a tap on another bridge, a
//! damaged record).

use super::bridges::{bridge_choice, vlan_refusal};
use super::config::top_level;
use super::host::{Host, VlanSupport, VLAN_FEATURE};
use super::{as_whom, CheckOptions, Findings};
use crate::config::Config;
use crate::link::Link;
use crate::name::TapName;
use crate::plan::{Origin, PlanError, Wanted};
use crate::settings::{NetMode, Settings};

/// Who the tap is and where its settings come from, for the messages.
struct Subject<'a> {
    tap: &'a str,
    settings: Settings,
    /// "rule 1 (…)" or "the top level", for the fixes.
    rule: String,
    /// "matches rule 1 (…)" or "matches no [[rule]] (… apply)".
    matches: String,
    existing: Option<&'a Link>,
}

pub(super) fn check(
    opts: &CheckOptions,
    tap: &str,
    config: &Config,
    host: &Host,
    out: &mut Findings,
) {
    let name = match TapName::new(tap) {
        Ok(n) => n,
        Err(e) => {
            out.error(
                "tap",
                e.to_string(),
                "tap names are 1-15 of A-Z a-z 0-9 - _ . and do not start with -".into(),
            );
            return;
        }
    };
    let settings = config.settings_for(name.as_str());
    let top = top_level(config);
    let subject = Subject {
        tap,
        rule: settings.rule.clone().unwrap_or_else(|| top.to_owned()),
        matches: match &settings.rule {
            Some(r) => format!("matches {r}"),
            None => format!("matches no [[rule]] ({top} apply)"),
        },
        existing: host.by_name(name.as_str()),
        settings,
    };
    if let Some(l) = subject.existing.filter(|l| !l.is_tap()) {
        out.error(
            "tap",
            format!(
                "{tap} is {}; kvmnet-ifup only configures tap devices and would refuse it",
                l.kind.describe()
            ),
            format!(
                "give QEMU another ifname= than {tap}, or configure that device without kvmnet"
            ),
        );
        return;
    }
    match subject.settings.mode {
        NetMode::Route => routed(&subject, host, out),
        NetMode::Ovs => ovs(&subject, config, out),
        NetMode::Bridge => {
            let cfg = opts.config_path.display().to_string();
            bridged(&subject, config, host, &cfg, out)
        }
    }
}

fn routed(t: &Subject<'_>, host: &Host, out: &mut Findings) {
    let tap = t.tap;
    let addrs: Vec<String> = t.settings.addresses.iter().map(|a| a.to_string()).collect();
    out.ok(
        "tap",
        format!(
            "tap {tap} {}: routed mode, host routes to {} via {tap} with proxy ARP/NDP; only plain root may set it up",
            t.matches,
            addrs.join(", ")
        ),
    );
    if let Some(tap_link) = t.existing {
        if let Some((m, f)) = plan_refusal(
            tap_link,
            &crate::mode::routed::wanted(&t.settings, Vec::new()),
            host,
            "",
        ) {
            out.error("tap", m, f);
        }
    }
}

/// An OVS port: its bridge, asked of ovsdb-server (read only).
fn ovs(t: &Subject<'_>, config: &Config, out: &mut Findings) {
    let tap = t.tap;
    let Some(br) = t.settings.bridge.as_ref() else {
        return;
    };
    let db = config.ovs_db.display();
    let ask = crate::ovsdb::Ovsdb::connect(&config.ovs_db, config.ovs_timeout).and_then(|mut c| {
        c.transact(vec![serde_json::json!({"op": "select", "table": "Bridge",
            "where": [["name", "==", br.as_str()]], "columns": ["name"]})])
    });
    match ask {
        Ok(r) if !crate::ovsdb::rows(&r[0]).is_empty() => out.ok(
            "tap",
            format!(
                "tap {tap} {}: a port of Open vSwitch bridge {br} (iface-id {})",
                t.matches,
                t.settings.iface_id(tap)
            ),
        ),
        Ok(_) => out.error(
            "tap",
            format!(
                "tap {tap} {}, whose Open vSwitch bridge {br} does not exist ({db})",
                t.matches
            ),
            format!("ovs-vsctl add-br {br}"),
        ),
        Err(e) => out.error(
            "tap",
            format!("tap {tap} {} (mode = \"ovs\"), but {e}", t.matches),
            "start Open vSwitch, or set ovs_db to its socket".into(),
        ),
    }
}

/// The `--tap` line for a bridged tap.
enum Line {
    Works(String),
    /// Cannot tell yet: (message, fix).
    Unsure(String, String),
    /// This user may not look at what would tell.
    Unchecked(String),
    /// kvmnet-ifup would refuse it: (message, fix).
    Refused(String, String),
}

fn bridged(t: &Subject<'_>, config: &Config, host: &Host, cfg: &str, out: &mut Findings) {
    match bridged_line(t, config, host, cfg) {
        Line::Works(m) => out.ok("tap", m),
        Line::Unsure(m, f) => out.warn("tap", m, f),
        Line::Unchecked(m) => out.unchecked("tap", m),
        Line::Refused(m, f) => out.error("tap", m, f),
    }
}

fn bridged_line(t: &Subject<'_>, config: &Config, host: &Host, cfg: &str) -> Line {
    let (tap, s) = (t.tap, &t.settings);
    let choice = bridge_choice(
        s,
        config.source.is_some(),
        host.default_route_bridge.as_ref(),
    );
    let b = choice.name.as_str();
    let what = format!("tap {tap} {}: it would join bridge {b}", t.matches);
    let refused = |(m, f)| Line::Refused(m, f);
    match host.by_name(b) {
        None if !choice.create => Line::Refused(
            format!("{what}, which does not exist: kvmnet-ifup would refuse it"),
            match &s.network {
                Some(n) => format!("kvmnet net up {n}: the bridge is network {n}'s"),
                None => format!("create it (ip link add {b} up type bridge) or set create_bridge = true in {cfg}"),
            },
        ),
        None => match (s.needs_vlan_filtering(), host.kernel_vlan) {
            (true, VlanSupport::No) => Line::Refused(
                format!("{what}, which kvmnet-ifup would create with VLAN filtering, but this kernel cannot filter VLANs (built without {VLAN_FEATURE})"),
                format!("boot a kernel built with {VLAN_FEATURE}=y, or drop vlan/trunk from {}", t.rule),
            ),
            (true, VlanSupport::Unchecked) => Line::Unchecked(format!(
                "{what}, which kvmnet-ifup would create with VLAN filtering; whether this kernel can filter VLANs ({VLAN_FEATURE}) is unknown: cannot look at sysfs {}",
                as_whom()
            )),
            (true, VlanSupport::Unknown) => Line::Unsure(
                format!("{what}, which kvmnet-ifup would create with VLAN filtering; whether this kernel can filter VLANs ({VLAN_FEATURE}) shows only once a bridge exists"),
                format!("create it now to find out: ip link add {b} up type bridge vlan_filtering 1"),
            ),
            // A bridge created now has a new index: a tap on any bridge is
            // on another one, which the plan refuses once it exists.
            _ => match t.existing.and_then(|l| l.master) {
                Some(m) => refused(elsewhere(&what, tap, host, m)),
                None => Line::Works(format!("{what}, which kvmnet-ifup creates on first use")),
            },
        },
        Some(l) if !l.is_bridge() => Line::Refused(
            format!("{what}, but {b} is {}, not a bridge: kvmnet-ifup would refuse it", l.kind.describe()),
            format!("set bridge = \"NAME\" in {cfg} to a bridge"),
        ),
        Some(br) => {
            let target = Wanted::on_bridge(br, s);
            let refusal = vlan_refusal(br, s, &t.rule)
                .map(|(m, f)| (format!("{what}: {m}"), f))
                .or_else(|| t.existing.and_then(|l| plan_refusal(l, &target, host, &what)));
            match refusal {
                Some(r) => refused(r),
                None => {
                    let mtu = target.mtu.unwrap_or(br.mtu);
                    Line::Works(format!("{what} (exists), with MTU {mtu}{}: that works now", vlans(s)))
                }
            }
        }
    }
}

/// ", VLANs untagged 10, tagged 20-29" for a port with VLANs.
fn vlans(s: &Settings) -> String {
    if !s.needs_vlan_filtering() {
        return String::new();
    }
    let mut v: Vec<String> = s.vlan.iter().map(|p| format!("untagged {p}")).collect();
    v.extend(s.trunk.iter().map(|r| format!("tagged {r}")));
    format!(", VLANs {}", v.join(", "))
}

/// The runtime's attach plan ([`crate::plan::attach`]) for the existing
/// `tap`: its refusal as (message, fix). `what` leads a bridged tap's
/// message ("" for a routed one).
fn plan_refusal(
    tap: &Link,
    target: &Wanted<'_>,
    host: &Host,
    what: &str,
) -> Option<(String, String)> {
    let name = &tap.name;
    match crate::plan::attach(tap, target, Origin::Existing) {
        Ok(_) => None,
        Err(PlanError::AttachedElsewhere { master, .. }) if target.bridge.is_none() => Some((
            format!(
                "tap {name} is a port of {}; a routed tap must not be on a bridge",
                host.name_of(master)
            ),
            format!("ip link set {name} nomaster"),
        )),
        Err(PlanError::AttachedElsewhere { master, .. }) => {
            Some(elsewhere(what, name, host, master))
        }
        Err(e @ (PlanError::OvsElsewhere { .. } | PlanError::OvsLeft { .. })) => Some((
            format!("kvmnet-ifup would refuse it: {e}"),
            format!("kvmnet-ifdown {name}"),
        )),
        Err(e @ PlanError::Record { .. }) => {
            let lead = if what.is_empty() {
                String::new()
            } else {
                format!("{what}, but ")
            };
            Some((
                format!("{lead}kvmnet-ifup would refuse it: {e}"),
                format!("as it says: look at the alias (ip link show {name}), then shorten or clear it (ip link set {name} alias \"\")"),
            ))
        }
    }
}

/// A tap already on another bridge than the one it would join.
fn elsewhere(what: &str, tap: &str, host: &Host, master: u32) -> (String, String) {
    (
        format!(
            "{what}, but it is already a port of {}; kvmnet-ifup does not move it and would refuse it",
            host.name_of(master)
        ),
        format!("ip link set {tap} nomaster"),
    )
}
