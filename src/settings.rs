//! Per-tap settings: the config's top-level keys are the defaults, and the
//! first `[[rule]]` whose `match` glob fits the tap name overrides them.
//! Pure: this is what `kvmnet explain` prints and what ifup acts on.

use std::fmt;
use std::net::IpAddr;

use crate::acl::Principal;
use crate::guard::Prefix;
use crate::mac::Mac;
use crate::name::BridgeName;
use crate::rate::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    /// A port of a bridge (the how-to's private and public bridges).
    #[default]
    Bridge,
    /// No bridge: host routes to the guest's addresses via the tap, proxy
    /// ARP/NDP on it (the how-to's "Routing with iptables").
    Route,
    /// A port of an Open vSwitch bridge, added over OVSDB (docs/ovs-design.md).
    Ovs,
}

impl NetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Bridge => "bridge",
            NetMode::Route => "route",
            NetMode::Ovs => "ovs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtuPolicy {
    /// The bridge's MTU (in routed mode: leave the tap's as it is).
    #[default]
    Bridge,
    Fixed(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostMac {
    /// First byte 0xFE, so the tap never becomes the bridge's address.
    #[default]
    Fe,
    Keep,
}

/// A guest MAC the guard allows (`guest_mac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMac {
    Fixed(Mac),
    /// The MAC `kvmnet mac --name TAP` derives from the tap's name: one rule
    /// covers many taps, each guest started with `mac=$(kvmnet mac --name TAP)`.
    Derived,
}

impl GuestMac {
    pub fn parse(s: &str) -> Result<GuestMac, String> {
        if s == "derived" {
            return Ok(GuestMac::Derived);
        }
        let m: Mac = s.parse().map_err(|_| {
            format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff) or \"derived\"")
        })?;
        if m.0[0] & 1 != 0 {
            return Err(format!(
                "{s} is a multicast address, which no guest sends from"
            ));
        }
        if m.0 == [0; 6] {
            return Err(format!("{s} is not a guest's address"));
        }
        Ok(GuestMac::Fixed(m))
    }

    /// The address for the tap named `tap`.
    pub fn for_tap(self, tap: &str) -> Mac {
        match self {
            GuestMac::Fixed(m) => m,
            GuestMac::Derived => crate::mac::derived(tap),
        }
    }
}

impl fmt::Display for GuestMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestMac::Fixed(m) => write!(f, "{m}"),
            GuestMac::Derived => f.write_str("derived"),
        }
    }
}

/// An inclusive VLAN range; a single VLAN is `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRange {
    pub first: u16,
    pub last: u16,
}

impl VlanRange {
    pub fn parse(s: &str) -> Result<VlanRange, String> {
        let vid = |p: &str| -> Result<u16, String> {
            let v: u16 = p
                .trim()
                .parse()
                .map_err(|_| format!("{p:?} is not a VLAN id"))?;
            check_vid(v)
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (vid(a)?, vid(b)?),
            None => (vid(s)?, vid(s)?),
        };
        if first > last {
            return Err(format!("{s:?}: the range runs backwards"));
        }
        Ok(VlanRange { first, last })
    }
}

/// The same VLANs as disjoint, sorted ranges: overlapping and adjacent
/// entries are joined. A trunk list then holds at most 2,047 ranges whatever
/// the file repeats, so its netlink request stays far below the 64 KiB an
/// attribute can hold ("2-3" repeated 4,096 times, a 25 KB file, would not
/// fit, and kvmnet-ifup would stop short of setting the port's VLANs).
pub fn merge_vlans(mut v: Vec<VlanRange>) -> Vec<VlanRange> {
    v.sort_unstable_by_key(|r| (r.first, r.last));
    let mut out: Vec<VlanRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(l) if r.first <= l.last.saturating_add(1) => l.last = l.last.max(r.last),
            _ => out.push(r),
        }
    }
    out
}

pub fn check_vid(v: u16) -> Result<u16, String> {
    if (1..=4094).contains(&v) {
        Ok(v)
    } else {
        Err(format!("VLAN {v} is outside 1-4094"))
    }
}

impl fmt::Display for VlanRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A shell-style glob over interface names: `*` any run, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(p: &str) -> Result<Glob, String> {
        let ok = !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?'));
        if ok {
            Ok(Glob(p.to_owned()))
        } else {
            Err(format!(
                "{} is not a pattern of interface-name characters, '*' and '?'",
                crate::name::escape(p)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative glob matching with single-star backtracking: linear in
/// practice, no recursion a hostile pattern could blow up.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// One level of settings: the top level, or one `[[rule]]`. `None` means
/// "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub bridge: Option<BridgeName>,
    pub create_bridge: Option<bool>,
    pub mode: Option<NetMode>,
    pub mtu: Option<MtuPolicy>,
    pub host_mac: Option<HostMac>,
    pub group: Option<Principal>,
    pub vlan: Option<u16>,
    pub trunk: Option<Vec<VlanRange>>,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
    pub flooding: Option<bool>,
    pub addresses: Option<Vec<IpAddr>>,
    pub guard: Option<bool>,
    pub guest_mac: Option<Vec<GuestMac>>,
    pub guest_ipv4: Option<Vec<Prefix>>,
    pub guest_ipv6: Option<Vec<Prefix>>,
    pub rate_out: Option<Rate>,
    pub rate_in: Option<Rate>,
    /// The VXLAN uplink of the bridge kvmnet creates.
    pub vxlan: Option<crate::vxlan::Vxlan>,
    /// OVS `external_ids:iface-id` template (`{tap}` is the tap name).
    pub ovs_iface_id: Option<String>,
    /// The `[[network]]` a rule's taps join (its bridge is set with it).
    pub network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRule {
    /// `match`: a glob over the tap name; `None` matches any name.
    pub pattern: Option<Glob>,
    /// `match_bridge`: the rule applies only to taps on this bridge (for the
    /// bridge helper, whose bridge is QEMU's `br=`).
    pub on_bridge: Option<BridgeName>,
    /// "/etc/kvmnet/kvmnet.toml line 7"
    pub location: String,
    pub layer: Layer,
}

/// The effective settings for one tap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Which rule matched and why, for `kvmnet explain` and the log.
    pub rule: Option<String>,
    pub bridge: Option<BridgeName>,
    pub create_bridge: bool,
    pub mode: NetMode,
    pub mtu: MtuPolicy,
    pub host_mac: HostMac,
    pub group: Option<Principal>,
    pub vlan: Option<u16>,
    pub trunk: Vec<VlanRange>,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
    pub flooding: Option<bool>,
    pub addresses: Vec<IpAddr>,
    /// The guest guard is on (docs/guard-design.md).
    pub guard: bool,
    pub guest_mac: Vec<GuestMac>,
    /// `None`: the family's source addresses are not pinned.
    pub guest_ipv4: Option<Vec<Prefix>>,
    pub guest_ipv6: Option<Vec<Prefix>>,
    /// Host->guest limit: a tbf on the tap (`rate_out`, `burst_out`).
    pub rate_out: Option<Rate>,
    /// Guest->host limit: an nf_tables limit in a chain of the tap's own
    /// (`rate_in`, `burst_in`), with or without the guard's checks.
    pub rate_in: Option<Rate>,
    /// The VXLAN uplink of the bridge kvmnet creates.
    pub vxlan: Option<crate::vxlan::Vxlan>,
    /// OVS `external_ids:iface-id` template; `None`: the tap name.
    pub ovs_iface_id: Option<String>,
    /// The `[[network]]` the tap joins.
    pub network: Option<String>,
}

/// What `{tap}` becomes in an `ovs_iface_id` template.
pub const TAP_PLACEHOLDER: &str = "{tap}";

impl Settings {
    /// The OVN logical port name of tap `tap` (`external_ids:iface-id`).
    pub fn iface_id(&self, tap: &str) -> String {
        self.ovs_iface_id
            .as_deref()
            .unwrap_or(TAP_PLACEHOLDER)
            .replace(TAP_PLACEHOLDER, tap)
    }

    /// The tap gets a guard: the checks (a program on its ingress), the
    /// rate_in limit (an nf_tables chain), or both.
    pub fn guard_table(&self) -> bool {
        self.guard || self.rate_in.is_some()
    }

    /// The source addresses the guard allows per family: as set, and in
    /// routed mode by default the guest's routed addresses (a routed guest
    /// has no other address that reaches anything).
    pub fn guard_addresses(&self) -> (Option<Vec<Prefix>>, Option<Vec<Prefix>>) {
        let routed = |v4: bool| -> Option<Vec<Prefix>> {
            (self.mode == NetMode::Route).then(|| {
                self.addresses
                    .iter()
                    .filter(|a| a.is_ipv4() == v4)
                    .map(|a| Prefix::host(*a))
                    .collect()
            })
        };
        (
            self.guest_ipv4.clone().or_else(|| routed(true)),
            self.guest_ipv6.clone().or_else(|| routed(false)),
        )
    }

    pub fn needs_vlan_filtering(&self) -> bool {
        self.vlan.is_some() || !self.trunk.is_empty()
    }

    pub fn has_port_settings(&self) -> bool {
        self.needs_vlan_filtering()
            || self.isolated.is_some()
            || self.learning.is_some()
            || self.flooding.is_some()
    }
}

impl TapRule {
    pub fn matches(&self, tap: &str, bridge: Option<&str>) -> bool {
        self.pattern.as_ref().is_none_or(|g| g.matches(tap))
            && self
                .on_bridge
                .as_ref()
                .is_none_or(|b| Some(b.as_str()) == bridge)
    }

    fn describe(&self) -> String {
        match (&self.pattern, &self.on_bridge) {
            (Some(g), None) => g.as_str().to_owned(),
            (None, Some(b)) => format!("on bridge {b}"),
            (Some(g), Some(b)) => format!("{} on bridge {b}", g.as_str()),
            (None, None) => "any tap".to_owned(),
        }
    }
}

/// Defaults overridden by the first matching rule. `bridge` is the bridge
/// the tap is known to go to, for rules with `match_bridge`: QEMU's `br=`
/// for the bridge helper; for ifup, KVMNET_BRIDGE or the top-level bridge.
pub fn resolve(defaults: &Layer, rules: &[TapRule], tap: &str, bridge: Option<&str>) -> Settings {
    effective(
        defaults,
        rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(tap, bridge)),
    )
}

/// The defaults overridden by `hit` (the rule's index and the rule).
pub fn effective(defaults: &Layer, hit: Option<(usize, &TapRule)>) -> Settings {
    let empty = Layer::default();
    let top = hit.map_or(&empty, |(_, r)| &r.layer);
    macro_rules! pick {
        ($f:ident) => {
            top.$f.clone().or_else(|| defaults.$f.clone())
        };
    }
    Settings {
        rule: hit.map(|(i, r)| {
            // no quotes: it is quoted itself in the log line
            format!("rule {} ({}) at {}", i + 1, r.describe(), r.location)
        }),
        bridge: pick!(bridge),
        create_bridge: pick!(create_bridge).unwrap_or(false),
        mode: pick!(mode).unwrap_or_default(),
        mtu: pick!(mtu).unwrap_or_default(),
        host_mac: pick!(host_mac).unwrap_or_default(),
        group: pick!(group),
        vlan: pick!(vlan),
        trunk: pick!(trunk).unwrap_or_default(),
        isolated: pick!(isolated),
        learning: pick!(learning),
        flooding: pick!(flooding),
        addresses: pick!(addresses).unwrap_or_default(),
        guard: pick!(guard).unwrap_or(false),
        guest_mac: pick!(guest_mac).unwrap_or_default(),
        guest_ipv4: pick!(guest_ipv4),
        guest_ipv6: pick!(guest_ipv6),
        rate_out: pick!(rate_out),
        rate_in: pick!(rate_in),
        vxlan: pick!(vxlan),
        ovs_iface_id: pick!(ovs_iface_id),
        network: pick!(network),
    }
}

/// Contradictions within what one level sets, and in the effective result
/// of a rule; `None` when consistent.
pub fn contradiction(layer: &Layer, effective: &Settings) -> Option<(&'static str, String)> {
    let route_keys = layer.mode == Some(NetMode::Route);
    if route_keys {
        for (key, set) in [
            ("bridge", layer.bridge.is_some()),
            ("vlan", layer.vlan.is_some()),
            ("trunk", layer.trunk.is_some()),
            ("isolated", layer.isolated.is_some()),
            ("learning", layer.learning.is_some()),
            ("flooding", layer.flooding.is_some()),
        ] {
            if set {
                return Some((key, "does not apply to mode = \"route\"".into()));
            }
        }
    }
    if layer.vxlan.is_some() && !(effective.create_bridge && effective.mode == NetMode::Bridge) {
        return Some((
            "vxlan_vni",
            "only applies to a bridge kvmnet creates (create_bridge = true, mode = \"bridge\")"
                .into(),
        ));
    }
    if let Some(c) = ovs_contradiction(layer, effective) {
        return Some(c);
    }
    if layer.addresses.is_some() && effective.mode != NetMode::Route {
        return Some(("addresses", "only applies to mode = \"route\"".into()));
    }
    if effective.mode == NetMode::Route && effective.addresses.is_empty() {
        return Some((
            "addresses",
            "mode = \"route\" needs the guest's addresses, e.g. addresses = [\"192.0.2.10\"]"
                .into(),
        ));
    }
    if effective.guard && effective.guest_mac.is_empty() {
        return Some((
            "guard",
            "needs guest_mac: the guest's MAC addresses, or [\"derived\"] for the one \
             `kvmnet mac --name TAP` gives"
                .into(),
        ));
    }
    if !effective.guard {
        // An OVS port's attached-mac is the guest's MAC too; on a
        // [[network]], MAC and IPv4 address make the guest's DHCP
        // reservation.
        let network = effective.network.is_some();
        let mac_used = effective.mode == NetMode::Ovs || network;
        for (key, set) in [
            ("guest_mac", layer.guest_mac.is_some() && !mac_used),
            ("guest_ipv4", layer.guest_ipv4.is_some() && !network),
            ("guest_ipv6", layer.guest_ipv6.is_some()),
        ] {
            if set {
                return Some((
                    key,
                    "only applies with guard = true (without it nothing is enforced), mode = \"ovs\" or network"
                        .into(),
                ));
            }
        }
    }
    for (key, list, v4) in [
        ("guest_ipv4", &layer.guest_ipv4, true),
        ("guest_ipv6", &layer.guest_ipv6, false),
    ] {
        if let Some(p) = list.iter().flatten().find(|p| p.addr.is_ipv4() != v4) {
            return Some((
                key,
                format!("{p} is not an IPv{} address", if v4 { 4 } else { 6 }),
            ));
        }
    }
    if let Some(pvid) = effective.vlan {
        if effective
            .trunk
            .iter()
            .any(|r| (r.first..=r.last).contains(&pvid))
        {
            return Some((
                "trunk",
                format!("VLAN {pvid} is the untagged vlan and cannot also be tagged"),
            ));
        }
    }
    None
}

/// Keys that mean nothing on an Open vSwitch port, and what it needs.
fn ovs_contradiction(layer: &Layer, effective: &Settings) -> Option<(&'static str, String)> {
    if effective.mode != NetMode::Ovs {
        return layer
            .ovs_iface_id
            .is_some()
            .then(|| ("ovs_iface_id", "only applies to mode = \"ovs\"".to_owned()));
    }
    for (key, set, why) in [
        (
            "create_bridge",
            effective.create_bridge,
            "kvmnet does not create Open vSwitch bridges: create it once with `ovs-vsctl add-br BRIDGE`",
        ),
        ("isolated", layer.isolated.is_some(), "is a Linux bridge port setting; use OpenFlow rules on an OVS bridge"),
        ("learning", layer.learning.is_some(), "is a Linux bridge port setting; use OpenFlow rules on an OVS bridge"),
        ("flooding", layer.flooding.is_some(), "is a Linux bridge port setting; use OpenFlow rules on an OVS bridge"),
        ("vxlan_vni", layer.vxlan.is_some(), "is for Linux bridges kvmnet creates; add a vxlan port to the OVS bridge instead"),
    ] {
        if set {
            return Some((key, format!("does not apply to mode = \"ovs\": it {why}")));
        }
    }
    // ovs-vswitchd resets the traffic control of every port it adds (and
    // again when it restarts): the ingress qdisc holding the guard's checks
    // and rate_in, and a root qdisc such as rate_out's tbf, would be gone
    // without a word. Refused rather than left to fail open.
    // A guard inherited from the top level must be switched off in the rule
    // (`guard = false`): silence would be a guard that is not there. Rates
    // set above the rule are not applied to its OVS ports.
    for (key, set) in [
        ("guard", effective.guard),
        ("rate_in", layer.rate_in.is_some()),
        ("rate_out", layer.rate_out.is_some()),
    ] {
        if set {
            return Some((
                key,
                "does not apply to mode = \"ovs\": ovs-vswitchd resets the traffic control of its \
                 ports, where kvmnet would put it; use OVN port security \
                 (`ovn-nbctl lsp-set-port-security`) or OpenFlow rules, and the Interface's \
                 ingress_policing_rate or a QoS row for rates"
                    .into(),
            ));
        }
    }
    if effective.bridge.is_none() {
        return Some((
            "mode",
            "mode = \"ovs\" needs bridge = the Open vSwitch bridge, e.g. bridge = \"ovsbr0\""
                .into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn vlan_lists_merge_into_disjoint_sorted_ranges() {
        let r = |s: &str| VlanRange::parse(s).unwrap();
        let merged = merge_vlans(vec![
            r("30-39"),
            r("20"),
            r("35-40"),
            r("41"),
            r("20"),
            r("5-6"),
        ]);
        let shown: Vec<String> = merged.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["5-6", "20", "30-41"]);
        assert_eq!(merge_vlans(vec![r("2-3"); 4096]), [r("2-3")]);
        assert_eq!(merge_vlans(vec![r("4094"), r("1-4093")]), [r("1-4094")]);
        assert!(merge_vlans(Vec::new()).is_empty());
    }

    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str| Glob::new(p).unwrap();
        assert!(g("lab-*").matches("lab-1"));
        assert!(g("lab-*").matches("lab-"));
        assert!(!g("lab-*").matches("xlab-1"));
        assert!(g("*").matches("anything"));
        assert!(g("t?p*").matches("tap0"));
        assert!(!g("t?p").matches("tp"));
        assert!(g("*-*-*").matches("a-b-c"));
        assert!(!g("*-*-*").matches("a-b"));
        assert!(g("a*b*c").matches("aXbYbZc"));
        for bad in ["", "a b", "a/b", "[ab]", &"*".repeat(65)] {
            assert!(Glob::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vlan_ranges() {
        assert_eq!(
            VlanRange::parse("20"),
            Ok(VlanRange {
                first: 20,
                last: 20
            })
        );
        assert_eq!(
            VlanRange::parse("30-39"),
            Ok(VlanRange {
                first: 30,
                last: 39
            })
        );
        for bad in ["0", "4095", "39-30", "x", "1-", "-5"] {
            assert!(VlanRange::parse(bad).is_err(), "{bad}");
        }
    }

    fn rule(p: &str, layer: Layer) -> TapRule {
        TapRule {
            pattern: Some(Glob::new(p).unwrap()),
            on_bridge: None,
            location: "cfg line 1".into(),
            layer,
        }
    }

    #[test]
    fn first_match_wins_and_overrides_defaults() {
        let defaults = Layer {
            bridge: Some(BridgeName::new("br0").unwrap()),
            isolated: Some(false),
            ..Layer::default()
        };
        let rules = vec![
            rule(
                "lab-*",
                Layer {
                    bridge: Some(BridgeName::new("br-lab").unwrap()),
                    vlan: Some(10),
                    ..Layer::default()
                },
            ),
            rule(
                "lab-x*",
                Layer {
                    bridge: Some(BridgeName::new("never").unwrap()),
                    ..Layer::default()
                },
            ),
        ];
        let s = resolve(&defaults, &rules, "lab-x1", None);
        assert_eq!(s.bridge.unwrap().as_str(), "br-lab");
        assert_eq!(s.vlan, Some(10));
        assert_eq!(s.isolated, Some(false), "inherited from the top level");
        assert_eq!(s.rule.as_deref(), Some("rule 1 (lab-*) at cfg line 1"));
        let s = resolve(&defaults, &rules, "web0", None);
        assert_eq!((s.bridge.unwrap().as_str(), s.rule), ("br0", None));
    }

    #[test]
    fn rules_can_match_on_the_bridge() {
        let r = TapRule {
            pattern: None,
            on_bridge: Some(BridgeName::new("br-lab").unwrap()),
            location: "cfg line 9".into(),
            layer: Layer {
                vlan: Some(7),
                ..Layer::default()
            },
        };
        let s = resolve(
            &Layer::default(),
            std::slice::from_ref(&r),
            "tap3",
            Some("br-lab"),
        );
        assert_eq!(s.vlan, Some(7));
        assert_eq!(
            s.rule.as_deref(),
            Some("rule 1 (on bridge br-lab) at cfg line 9")
        );
        assert_eq!(
            resolve(&Layer::default(), &[r], "tap3", Some("br0")).vlan,
            None
        );
    }

    #[test]
    fn contradictions() {
        let route = Layer {
            mode: Some(NetMode::Route),
            vlan: Some(5),
            ..Layer::default()
        };
        let eff = resolve(&Layer::default(), &[], "x", None);
        assert_eq!(contradiction(&route, &eff).unwrap().0, "vlan");
        let route = Layer {
            mode: Some(NetMode::Route),
            ..Layer::default()
        };
        let eff = resolve(&Layer::default(), &[rule("*", route.clone())], "x", None);
        assert_eq!(contradiction(&route, &eff).unwrap().0, "addresses");
        let both = Layer {
            vlan: Some(20),
            trunk: Some(vec![VlanRange::parse("10-30").unwrap()]),
            ..Layer::default()
        };
        let eff = resolve(&both, &[], "x", None);
        assert_eq!(contradiction(&both, &eff).unwrap().0, "trunk");
    }
}
