//! The bridges the config's scopes put taps on: chosen as kvmnet-ifup
//! chooses them, refused as it refuses them (missing, not a bridge, VLANs),
//! and what else makes a bridge work badly (down, an address that follows its
//! ports, br_netfilter, ports' MTUs, wireless ports).

use std::collections::BTreeMap;

use super::config::Scope;
use super::host::{follows_ports, is_wireless, Host, VlanSupport, VLAN_FEATURE};
use super::{as_whom, CheckOptions, Findings};
use crate::config::Config;
use crate::error::Error;
use crate::link::Link;
use crate::name::BridgeName;
use crate::plan::{BridgeChoice, BridgeReason, Wanted};
use crate::settings::{NetMode, Settings};

/// The bridge the runtime chooses ([`crate::mode::bridge::choose`]) for
/// `settings` without KVMNET_BRIDGE (check does not model it), given the
/// default-route bridge the host was read with.
pub(super) fn bridge_choice(
    settings: &Settings,
    config_file: bool,
    default_route_bridge: Option<&BridgeName>,
) -> BridgeChoice {
    crate::mode::bridge::choose(None, settings, config_file, || {
        Ok(default_route_bridge.cloned())
    })
    .expect("a known default-route bridge is no look-up that can fail")
}

/// The runtime's VLAN precondition on an existing bridge
/// ([`crate::mode::bridge::check_vlan_support`]), for `settings`: when it refuses,
/// (message, fix) naming `who` (the scopes that set vlan/trunk).
pub(super) fn vlan_refusal(
    bridge: &Link,
    settings: &Settings,
    who: &str,
) -> Option<(String, String)> {
    let b = &bridge.name;
    match crate::mode::bridge::check_vlan_support(bridge, settings) {
        Ok(()) => None,
        Err(Error::VlanFilteringOff { .. }) => Some((
            format!(
                "bridge {b} has VLAN filtering off, but {who} sets vlan/trunk; its taps would be refused"
            ),
            format!("ip link set {b} type bridge vlan_filtering 1"),
        )),
        // NoVlanSupport: the bridge reports no VLAN filtering at all
        Err(_) => Some((
            format!(
                "this kernel cannot filter VLANs on bridges (built without {VLAN_FEATURE}), but {who} sets vlan/trunk on bridge {b}; its taps would be refused"
            ),
            format!(
                "boot a kernel built with {VLAN_FEATURE}=y (distribution kernels are), or drop vlan/trunk from {who}"
            ),
        )),
    }
}

/// One scope that puts taps on a bridge.
struct BridgeUser<'a> {
    scope: &'a Scope,
    create: bool,
    reason: BridgeReason,
}

impl BridgeUser<'_> {
    fn vlans(&self) -> bool {
        self.scope.settings.needs_vlan_filtering()
    }
}

/// The scopes using one bridge.
struct Users<'a>(Vec<BridgeUser<'a>>);

impl Users<'_> {
    /// "rule 1 (…), rule 2 (…)": the users `f` selects.
    fn list(&self, f: impl Fn(&BridgeUser<'_>) -> bool) -> String {
        let who: Vec<&str> = self
            .0
            .iter()
            .filter(|u| f(u))
            .map(|u| u.scope.who.as_str())
            .collect();
        who.join(", ")
    }

    /// Why this bridge, when it was not configured.
    fn why(&self) -> &'static str {
        if self
            .0
            .iter()
            .any(|u| u.reason == BridgeReason::DefaultRoute)
        {
            " (it carries the IPv4 default route: Debian's rule)"
        } else if self.0.iter().any(|u| u.reason == BridgeReason::Fallback) {
            " (no bridge set and none carries the IPv4 default route: Debian's rule)"
        } else {
            ""
        }
    }
}

pub(super) fn check(
    opts: &CheckOptions,
    config: &Config,
    scopes: &[Scope],
    host: &Host,
    out: &mut Findings,
) {
    let cfg = opts.config_path.display().to_string();
    let mut by_bridge: BTreeMap<String, Users<'_>> = BTreeMap::new();
    for s in scopes.iter().filter(|s| s.settings.mode == NetMode::Bridge) {
        let choice = bridge_choice(
            &s.settings,
            config.source.is_some(),
            host.default_route_bridge.as_ref(),
        );
        by_bridge
            .entry(choice.name.as_str().to_owned())
            .or_insert_with(|| Users(Vec::new()))
            .0
            .push(BridgeUser {
                scope: s,
                create: choice.create,
                reason: choice.reason,
            });
    }
    for (name, users) in &by_bridge {
        match host.by_name(name) {
            None => match config.networks.iter().find(|n| n.bridge.as_str() == name) {
                // a network's bridge is `kvmnet net up`'s to make
                Some(n) => out.error(
                    "bridge",
                    format!("bridge {name} of network {} does not exist: the network is down, and taps joining it would be refused", n.name),
                    format!("kvmnet net up {} (or systemctl enable --now kvmnet-net@{})", n.name, n.name),
                ),
                None => missing(opts, name, users, host, &cfg, out),
            },
            Some(l) if !l.is_bridge() => out.error(
                "bridge",
                format!("{name} is {}, not a bridge, but {} uses it as the bridge", l.kind.describe(), users.list(|_| true)),
                format!("set bridge = \"NAME\" in {cfg} to a bridge, or replace {name} by one (ip link del {name}; ip link add {name} up type bridge)"),
            ),
            Some(br) => {
                existing(opts, host, br, users, out);
                check_ports(opts, config, host, br, out);
            }
        }
    }
}

/// A bridge that does not exist: refused (the runtime's BridgeMissing) or
/// created on first use, with VLAN filtering if a creator needs it.
fn missing(
    opts: &CheckOptions,
    name: &str,
    users: &Users<'_>,
    host: &Host,
    cfg: &str,
    out: &mut Findings,
) {
    let why = users.why();
    let creators = users.list(|u| u.create);
    let refused = users.list(|u| !u.create);
    if creators.is_empty() {
        out.error(
            "bridge",
            format!("bridge {name} does not exist{why}; taps of {refused} would be refused"),
            format!("create it (ip link add {name} up type bridge) or set create_bridge = true in {cfg}"),
        );
        return;
    }
    let vlan_creators = users.list(|u| u.create && u.vlans());
    if !vlan_creators.is_empty() {
        match host.kernel_vlan {
            VlanSupport::No => out.error(
                "vlan",
                format!(
                    "this kernel cannot filter VLANs on bridges (built without {VLAN_FEATURE}), but {vlan_creators} sets vlan/trunk and would create bridge {name} with VLAN filtering; its taps would be refused"
                ),
                format!(
                    "boot a kernel built with {VLAN_FEATURE}=y (distribution kernels are), or drop vlan/trunk from {vlan_creators}"
                ),
            ),
            VlanSupport::Unknown => out.warn(
                "vlan",
                format!(
                    "bridge {name} does not exist yet and no other bridge shows whether this kernel can filter VLANs ({VLAN_FEATURE}), which {vlan_creators} needs"
                ),
                format!("create it now to find out: ip link add {name} up type bridge vlan_filtering 1"),
            ),
            VlanSupport::Unchecked => out.unchecked(
                "vlan",
                format!(
                    "cannot look at {} {}, so whether this kernel can filter VLANs ({VLAN_FEATURE}) for bridge {name}, which {vlan_creators} needs, is unknown",
                    opts.sys_class_net.display(),
                    as_whom()
                ),
            ),
            VlanSupport::Yes => {}
        }
    }
    if refused.is_empty() {
        out.ok(
            "bridge",
            format!("bridge {name} does not exist yet{why}; kvmnet-ifup creates it on first use for {creators} (a private bridge: no ports, no address)"),
        );
    } else {
        out.warn(
            "bridge",
            format!("bridge {name} does not exist yet: taps of {creators} create it, but taps of {refused} are refused until then"),
            format!("create it now (ip link add {name} up type bridge) or set create_bridge = true for those in {cfg}"),
        );
    }
}

/// A bridge that exists: its state, address, VLAN filtering (as the
/// runtime judges it) and br_netfilter switches.
fn existing(opts: &CheckOptions, host: &Host, br: &Link, users: &Users<'_>, out: &mut Findings) {
    let name = &br.name;
    let ports = host.ports(br).count();
    out.ok(
        "bridge",
        format!(
            "bridge {name} exists{} (mtu {}, {ports} port(s)), used by {}",
            users.why(),
            br.mtu,
            users.list(|_| true)
        ),
    );
    if !br.up {
        out.warn(
            "bridge",
            format!("bridge {name} is down: its guests get no traffic (kvmnet-ifup does not bring it up)"),
            format!("ip link set {name} up"),
        );
    }
    match follows_ports(&opts.sys_class_net, name) {
        Ok(true) => {
            let now = br.mac.map(|m| m.to_string()).unwrap_or_default();
            out.warn(
                "bridge",
                format!("bridge {name} takes its address from its lowest port, and a tap's owner can set their tap's address without privilege: a guest's user can change the bridge's address"),
                format!("give it a fixed address: ip link set {name} address {now} (kvmnet does so for the bridges it creates)"),
            );
        }
        Ok(false) => {}
        Err(at) => out.unchecked(
            "bridge",
            format!(
                "cannot read {} {}, so whether bridge {name} takes its address from its ports is unknown",
                at.display(),
                as_whom()
            ),
        ),
    }
    let vlan_users = users.list(|u| u.vlans());
    // The precondition depends on the bridge only: any scope that sets
    // vlan/trunk stands for them all.
    if let Some(u) = users.0.iter().find(|u| u.vlans()) {
        let settings = &u.scope.settings;
        match vlan_refusal(br, settings, &vlan_users) {
            Some((m, f)) => out.error("vlan", m, f),
            None => out.ok(
                "vlan",
                format!("bridge {name} filters VLANs, as {vlan_users} needs"),
            ),
        }
    }
    let nf_call = host
        .nf_call
        .get(&br.index)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if opts.proc_sys.join("net/bridge").is_dir() {
        for table in nf_call {
            out.warn(
                "br_netfilter",
                format!("bridge {name} has nf_call_{table} on: its guest traffic passes the host's {table} firewall whatever net.bridge.bridge-nf-call-{table} says"),
                format!("if guests get no traffic, set it 0 (ip link set {name} type bridge nf_call_{table} 0) or allow it in the firewall"),
            );
        }
    }
}

fn check_ports(opts: &CheckOptions, config: &Config, host: &Host, br: &Link, out: &mut Findings) {
    let b = &br.name;
    let (mut mtu_ok, mut radio_ok) = (true, true);
    for p in host.ports(br) {
        // a tap at the MTU kvmnet-ifup gives it (`mtu = N`) is as configured
        let wanted =
            p.is_tap() && Wanted::on_bridge(br, &config.settings_on(&p.name, b)).mtu == Some(p.mtu);
        if p.mtu != br.mtu && !wanted {
            mtu_ok = false;
            out.warn(
                "mtu",
                format!(
                    "port {} of bridge {b} has MTU {}, the bridge {}: frames larger than the smaller one are dropped between them",
                    p.name, p.mtu, br.mtu
                ),
                format!(
                    "ip link set {} mtu {} (or give {b} and all its ports the same MTU)",
                    p.name, br.mtu
                ),
            );
        }
        let wireless = match is_wireless(&opts.sys_class_net, &p.name, p.index) {
            Ok(w) => w,
            Err(at) => {
                radio_ok = false;
                out.unchecked(
                    "wireless",
                    format!(
                        "cannot look at {} {}, so whether port {} of bridge {b} is wireless is unknown",
                        at.display(),
                        as_whom(),
                        p.name
                    ),
                );
                false
            }
        };
        if wireless {
            radio_ok = false;
            out.warn(
                "wireless",
                format!(
                    "port {} of bridge {b} is a wireless interface: most wireless drivers cannot bridge (the access point accepts only the station's own MAC), so guests get no traffic through it",
                    p.name
                ),
                format!(
                    "take it off the bridge (ip link set {} nomaster) and route the guests instead (mode = \"route\") or use NAT",
                    p.name
                ),
            );
        }
    }
    if mtu_ok {
        out.ok(
            "mtu",
            format!("every port of bridge {b} has its MTU ({})", br.mtu),
        );
    }
    if radio_ok {
        out.ok("wireless", format!("bridge {b} has no wireless port"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(vlan_filtering: Option<bool>) -> Link {
        crate::mode::test_bridge("br-lab", vlan_filtering)
    }

    #[test]
    fn vlan_refusals_follow_the_runtime() {
        let who = "rule 1 (lab-*) at cfg line 2";
        let vlan = Settings {
            vlan: Some(10),
            ..Settings::default()
        };
        // a kernel without the feature: the runtime reads no vlan_filtering
        let (m, f) = vlan_refusal(&bridge(None), &vlan, who).unwrap();
        assert!(m.contains(VLAN_FEATURE) && m.contains(who), "{m}");
        assert!(
            f.contains(VLAN_FEATURE) && !f.contains("vlan_filtering 1"),
            "{f}"
        );
        let (m, f) = vlan_refusal(&bridge(Some(false)), &vlan, who).unwrap();
        assert!(m.contains("VLAN filtering off"), "{m}");
        assert_eq!(f, "ip link set br-lab type bridge vlan_filtering 1");
        assert_eq!(vlan_refusal(&bridge(Some(true)), &vlan, who), None);
        // no vlan/trunk: nothing to refuse, whatever the bridge
        assert_eq!(vlan_refusal(&bridge(None), &Settings::default(), who), None);
    }
}
