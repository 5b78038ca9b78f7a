//! The bridge-port mode: the tap becomes a port of a bridge (the how-to's
//! private and public bridges), with the port's own policy (VLANs, isolation,
//! learning, flooding). Used by `kvmnet-ifup` (the bridge is configured,
//! asked for, or Debian's fallback, created where allowed) and by the bridge
//! helper (QEMU's `br=`, which must exist).

use crate::access;
use crate::config::Config;
use crate::error::Error;
use crate::link::Link;
use crate::mac::Mac;
use crate::name::BridgeName;
use crate::netlink::Netlink;
use crate::plan::{self, Attach, BridgeChoice, Wanted};
use crate::settings::Settings;

use super::{ForTap, Mode};

/// A bridge port, with its bridge resolved and every precondition checked.
pub struct Port {
    settings: Settings,
    bridge: Link,
    /// This run created the bridge.
    pub created_bridge: bool,
    /// Which rule let a caller other than root use the bridge.
    pub acl: String,
}

impl Port {
    /// kvmnet-ifup's port: the requested (KVMNET_BRIDGE), configured or
    /// fallback bridge, judged by the ACL for `who` (callers other than
    /// root), created when the config allows it (`starting` is called
    /// first: creating it is the run's first change), with the caller's
    /// share of its ports checked when the tap joins it.
    pub fn for_ifup(
        nl: &Netlink,
        config: &Config,
        settings: Settings,
        requested: Option<BridgeName>,
        tap: &ForTap<'_>,
        starting: &mut dyn FnMut(&str),
    ) -> Result<Port, Error> {
        let who = tap.who;
        let choice = choose(requested, &settings, config.source.is_some(), || {
            default_route_bridge(nl)
        })?;
        let acl = match who {
            Some(who) => {
                access::check_bridge(who, &config.acl, tap.name.as_str(), choice.name.as_str())?
            }
            None => "root".into(),
        };
        let (bridge, created_bridge) = resolve(nl, &choice, config, &settings, starting)?;
        let joins = tap.existing.is_none_or(|t| t.master != Some(bridge.index));
        if let (Some(who), true) = (who, joins) {
            let ports = nl.ports_of(bridge.index)?;
            access::check_port_quota(who, &ports, &bridge.name, config.max_ports_per_user)?;
        }
        Ok(Port {
            settings,
            bridge,
            created_bridge,
            acl,
        })
    }

    /// The bridge helper's port: `bridge` is what the kernel found under
    /// QEMU's `br=` (`asked`); the helper never creates bridges.
    pub fn for_helper(bridge: Link, asked: &str, settings: Settings) -> Result<Port, Error> {
        if !bridge.is_bridge() {
            return Err(Error::HelperBridge {
                bridge: bridge.name.clone(),
                problem: format!("is {}, not a bridge", bridge.kind.describe()),
            });
        }
        judge_by_own_name(&bridge, asked)?;
        check_vlan_support(&bridge, &settings)?;
        Ok(Port {
            settings,
            bridge,
            created_bridge: false,
            acl: String::new(),
        })
    }

    pub fn into_bridge(self) -> Link {
        self.bridge
    }
}

impl Mode for Port {
    fn wanted(&self) -> Wanted<'_> {
        Wanted::on_bridge(&self.bridge, &self.settings)
    }

    fn set_policy(&self, nl: &Netlink, tap: &Link, _attach: &Attach) -> Result<(), Error> {
        let s = &self.settings;
        if s.needs_vlan_filtering() {
            nl.set_port_vlans(tap.index, &tap.name, s.vlan, &s.trunk)?;
        }
        nl.set_port_flags(tap.index, &tap.name, s.isolated, s.learning, s.flooding)
            .map_err(|e| Error::PortSettings {
                tap: tap.name.clone(),
                bridge: self.bridge.name.clone(),
                cause: e.to_string(),
            })
    }

    fn undo_policy(&self, _nl: &Netlink, _tap: &Link, _attach: &Attach) {
        // leaving the bridge (the link undo) drops the port's VLANs and flags
    }

    fn describe(&self) -> String {
        let mtu = self.wanted().mtu.unwrap_or(self.bridge.mtu);
        format!("bridge={} mtu={mtu}", self.bridge.name)
    }

    fn bridge(&self) -> Option<&Link> {
        Some(&self.bridge)
    }
}

/// Which bridge a tap goes to: the one asked for (KVMNET_BRIDGE, after the
/// ACL), the configured one, or Debian's fallback. `default_route` is asked
/// only when nothing else decides (it dumps the routes).
pub fn choose(
    requested: Option<BridgeName>,
    settings: &Settings,
    config_file: bool,
    default_route: impl FnOnce() -> Result<Option<BridgeName>, Error>,
) -> Result<BridgeChoice, Error> {
    Ok(match (requested, plan::configured_bridge(settings)) {
        (Some(name), _) => BridgeChoice {
            name,
            create: false,
            reason: plan::BridgeReason::Requested,
        },
        (None, Some(c)) => c,
        (None, None) => plan::fallback_bridge(config_file, settings, default_route()?),
    })
}

/// Refuses a bridge that cannot carry the VLANs `settings` ask for.
pub fn check_vlan_support(bridge: &Link, settings: &Settings) -> Result<(), Error> {
    if !settings.needs_vlan_filtering() {
        return Ok(());
    }
    match bridge.vlan_filtering {
        Some(true) => Ok(()),
        None => Err(Error::NoVlanSupport {
            rule: vlan_rule(settings),
        }),
        Some(false) => Err(Error::VlanFilteringOff {
            bridge: bridge.name.clone(),
            rule: vlan_rule(settings),
        }),
    }
}

/// Which part of the config asks for VLANs, for messages.
pub fn vlan_rule(settings: &Settings) -> String {
    settings
        .rule
        .clone()
        .unwrap_or_else(|| "the top-level vlan/trunk".into())
}

/// The first IPv4 default-route interface that is a bridge (Debian's rule).
pub fn default_route_bridge(nl: &Netlink) -> Result<Option<BridgeName>, Error> {
    for index in nl.default_route_oifs()? {
        if let Some(l) = nl.link_by_index(index)? {
            if l.is_bridge() {
                // Debian's rule takes the first such bridge; skipping one
                // kvmnet cannot name would silently pick another (or create
                // br0), so it is a refusal instead.
                return BridgeName::new(&l.name).map(Some).map_err(|cause| {
                    Error::DefaultRouteBridge {
                        bridge: l.name.escape_debug().to_string(),
                        cause,
                    }
                });
            }
        }
    }
    Ok(None)
}

/// A bridge found under another of its names (an altname) is refused: the
/// ACL and rules spoke of `asked`.
fn judge_by_own_name(bridge: &Link, asked: &str) -> Result<(), Error> {
    if bridge.name == asked {
        Ok(())
    } else {
        Err(Error::AltName {
            asked: asked.to_owned(),
            name: bridge.name.clone(),
        })
    }
}

fn config_name(config: &Config) -> String {
    config
        .source
        .as_deref()
        .unwrap_or(std::path::Path::new(crate::config::DEFAULT_PATH))
        .display()
        .to_string()
}

/// The chosen bridge as the kernel has it, created if missing and allowed.
fn resolve(
    nl: &Netlink,
    choice: &BridgeChoice,
    config: &Config,
    settings: &Settings,
    starting: &mut dyn FnMut(&str),
) -> Result<(Link, bool), Error> {
    let name = choice.name.as_str();
    let vlans = settings.needs_vlan_filtering();
    let as_bridge = |l: Link| {
        if !l.is_bridge() {
            return Err(Error::NotABridge {
                name: l.name.clone(),
                what: l.kind.describe(),
                config: config_name(config),
            });
        }
        judge_by_own_name(&l, name)?;
        check_vlan_support(&l, settings)?;
        Ok(l)
    };
    if let Some(l) = nl.link_by_name(&choice.name)? {
        let l = as_bridge(l)?;
        return Ok((uplink(nl, choice, settings, l)?, false));
    }
    if !choice.create {
        return Err(Error::BridgeMissing {
            bridge: name.to_owned(),
            config: config_name(config),
        });
    }
    starting(&format!("create_bridge={name}"));
    // EEXIST means a concurrent ifup created it first: use theirs.
    let created = match nl.create_bridge(&choice.name, Mac::random_local(), vlans) {
        Err(e) if vlans && e.errno() == Some(libc::EOPNOTSUPP) => {
            return Err(Error::NoVlanSupport {
                rule: vlan_rule(settings),
            })
        }
        r => r?,
    };
    let l = nl
        .link_by_name(&choice.name)?
        .ok_or_else(|| Error::BridgeMissing {
            bridge: name.to_owned(),
            config: config_name(config),
        })?;
    let l = as_bridge(l)?;
    Ok((uplink(nl, choice, settings, l)?, created))
}

/// A bridge kvmnet may create gets its VXLAN uplink (again, if a run died
/// before it was complete: every step is idempotent); the bridge as it is
/// then, its MTU following the uplink's. A fixed tap MTU the uplink cannot
/// carry is refused with the numbers.
fn uplink(
    nl: &Netlink,
    choice: &BridgeChoice,
    settings: &Settings,
    bridge: Link,
) -> Result<Link, Error> {
    let Some(vx) = settings.vxlan.as_ref().filter(|_| choice.create) else {
        return Ok(bridge);
    };
    let fits = crate::vxlan::ensure(nl, &bridge, &choice.name, vx)?;
    if let crate::settings::MtuPolicy::Fixed(mtu) = settings.mtu {
        if mtu > fits {
            return Err(crate::vxlan::VxlanError::Mtu {
                mtu,
                vx: vx.to_string(),
                underlay: fits + vx.overhead(),
                overhead: vx.overhead(),
                fits,
            }
            .into());
        }
    }
    Ok(nl.link_by_name(&choice.name)?.unwrap_or(bridge))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LinkKind;

    fn bridge(name: &str, vlan_filtering: Option<bool>) -> Link {
        crate::mode::test_bridge(name, vlan_filtering)
    }

    #[test]
    fn the_helper_judges_a_bridge_by_its_own_name_and_kind() {
        let s = Settings::default();
        assert!(Port::for_helper(bridge("br0", None), "br0", s.clone()).is_ok());
        let e = Port::for_helper(bridge("br-real", None), "br-alias", s.clone())
            .err()
            .unwrap();
        assert!(matches!(e, Error::AltName { .. }), "{e}");
        let mut veth = bridge("br0", None);
        veth.kind = LinkKind::Other("veth".into());
        let e = Port::for_helper(veth, "br0", s).err().unwrap();
        assert!(e.to_string().contains("not a bridge"), "{e}");
    }

    #[test]
    fn vlans_need_a_filtering_bridge() {
        let vlan = Settings {
            vlan: Some(10),
            ..Settings::default()
        };
        assert!(check_vlan_support(&bridge("br0", Some(true)), &vlan).is_ok());
        assert!(matches!(
            check_vlan_support(&bridge("br0", Some(false)), &vlan),
            Err(Error::VlanFilteringOff { .. })
        ));
        assert!(matches!(
            check_vlan_support(&bridge("br0", None), &vlan),
            Err(Error::NoVlanSupport { .. })
        ));
        assert!(check_vlan_support(&bridge("br0", None), &Settings::default()).is_ok());
    }
}
