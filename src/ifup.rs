//! `kvmnet-ifup TAP`: make TAP a port of the configured bridge, creating the tap
//! (and the bridge, where allowed) when missing. Either everything is done, or
//! everything this run changed is undone.

use std::fmt;

use crate::access;
use crate::caller::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::mac::Mac;
use crate::name::{BridgeName, TapName};
use crate::netlink::{Link, LinkChange, Netlink};
use crate::plan::{self, BridgeChoice};
use crate::tap::{self, NewTap, TapError};
use crate::Invocation;

/// What a successful run did, for the log line.
#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    pub bridge: String,
    pub mtu: u32,
    pub user: u32,
    pub privilege: crate::privilege::Mode,
    /// Which rule let a non-root caller use the bridge ("root" for root).
    pub rule: String,
    pub created_tap: bool,
    pub created_bridge: bool,
    pub changed: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b| if b { "yes" } else { "no" };
        write!(
            f,
            "tap={} bridge={} mtu={} user={} created_tap={} created_bridge={} result={} privilege={} caps={} acl=\"{}\"",
            self.tap,
            self.bridge,
            self.mtu,
            self.user,
            yn(self.created_tap),
            yn(self.created_bridge),
            if self.changed { "attached" } else { "unchanged" },
            self.privilege,
            crate::privilege::kept(),
            self.rule,
        )
    }
}

pub fn ifup(
    nl: &Netlink,
    inv: &Invocation,
    config: &Config,
    requested: Option<BridgeName>,
    name: &TapName,
) -> Result<Report, Error> {
    let caller = &inv.caller;
    let identity = (!caller.is_root()).then(|| caller.identity());
    let existing = nl.link_by_name(name.as_str())?;
    if let Some(l) = &existing {
        require_tap(l)?;
        if let Some(who) = &identity {
            access::check_tap_owner(who, l, None)?;
        }
    }

    // Everything that can be refused without changing anything is checked
    // before the first change.
    let choice = match (requested, plan::configured_bridge(config)) {
        (Some(name), _) => BridgeChoice {
            name,
            create: false,
            reason: plan::BridgeReason::Requested,
        },
        (None, Some(c)) => c,
        (None, None) => plan::fallback_bridge(config, default_route_bridge(nl)?),
    };
    let rule = match &identity {
        None => "root".to_owned(),
        Some(who) => access::check_bridge(who, &config.acl, name.as_str(), choice.name.as_str())?,
    };
    let (bridge, created_bridge) = resolve_bridge(nl, &choice, config)?;

    let report = |changed, created_tap| Report {
        tap: name.to_string(),
        bridge: bridge.name.clone(),
        mtu: bridge.mtu,
        user: caller.uid,
        privilege: inv.mode,
        rule: rule.clone(),
        created_tap,
        created_bridge,
        changed,
    };
    let tap = match existing {
        Some(tap) => tap,
        None => match create_and_attach(nl, caller, name, &bridge)? {
            Created::Yes => return Ok(report(true, true)),
            // A concurrent run (or QEMU, or an admin) took the name first: treat
            // it like any existing tap.
            Created::LostRace => {
                let tap = nl
                    .link_by_name(name.as_str())?
                    .ok_or_else(|| Error::NotATap {
                        name: name.to_string(),
                        what: "created and deleted again by another process meanwhile".into(),
                    })?;
                require_tap(&tap)?;
                tap
            }
        },
    };
    let attach = plan::attach(&tap, &bridge, false)?;
    if let Err(e) = apply(nl, &tap, &bridge, &attach.change) {
        return Err(roll_back(nl, &tap, Undo::Change(&attach.undo), e));
    }
    Ok(report(!attach.change.is_empty(), false))
}

enum Created {
    Yes,
    LostRace,
}

/// Creates the tap under a private temporary name, writes its record, MTU and
/// MAC, and only then renames it to `name` while attaching it and bringing it
/// up. So a tap named `name` is never visible without its "created" record: a
/// concurrent run cannot mistake it for a foreign tap and overwrite the record,
/// which would make ifdown leave a persistent tap behind.
fn create_and_attach(
    nl: &Netlink,
    caller: &Caller,
    name: &TapName,
    bridge: &Link,
) -> Result<Created, Error> {
    let temp = create_temp_tap(caller)?;
    let tap = match nl.link_by_name(temp.as_str())? {
        Some(l) => l,
        None => {
            return Err(Error::NotATap {
                name: temp.to_string(),
                what: "gone right after kvmnet created it".into(),
            })
        }
    };
    let result = plan::attach(&tap, bridge, true)
        .map_err(Error::from)
        .and_then(|a| {
            let (before, visible) = a.change.split_for_creation(name.as_str());
            nl.set_link(tap.index, &before, &format!("configuring new tap {}", name))?;
            match apply(nl, &tap, bridge, &visible) {
                Err(Error::Netlink(e)) if e.errno() == Some(libc::EEXIST) => Ok(Created::LostRace),
                Err(e) => Err(e),
                Ok(()) => Ok(Created::Yes),
            }
        });
    match result {
        Ok(Created::Yes) => Ok(Created::Yes),
        Ok(Created::LostRace) => {
            nl.delete_link(tap.index, &format!("deleting temporary tap {temp}"))?;
            Ok(Created::LostRace)
        }
        Err(e) => Err(roll_back(
            nl,
            &Link {
                name: name.to_string(),
                ..tap
            },
            Undo::Delete,
            e,
        )),
    }
}

fn create_temp_tap(caller: &Caller) -> Result<TapName, Error> {
    let mut tries = 0;
    loop {
        let temp = TapName::new(&format!(
            "kvmnet{:09x}",
            rand::random::<u64>() & 0xf_ffff_ffff
        ))
        .expect("15 safe characters");
        let new = NewTap {
            name: &temp,
            owner: caller.uid,
            group: None,
        };
        match tap::create(&new) {
            Ok(()) => return Ok(temp),
            Err(TapError::Exists { .. }) if tries < 3 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

fn require_tap(l: &Link) -> Result<(), Error> {
    if l.is_tap() {
        Ok(())
    } else {
        Err(Error::NotATap {
            name: l.name.clone(),
            what: l.kind.describe(),
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

/// The first IPv4 default-route interface that is a bridge (Debian's rule).
fn default_route_bridge(nl: &Netlink) -> Result<Option<BridgeName>, Error> {
    for index in nl.default_route_oifs()? {
        if let Some(l) = nl.link_by_index(index)? {
            if l.is_bridge() {
                if let Ok(name) = BridgeName::new(&l.name) {
                    return Ok(Some(name));
                }
            }
        }
    }
    Ok(None)
}

fn resolve_bridge(
    nl: &Netlink,
    choice: &BridgeChoice,
    config: &Config,
) -> Result<(Link, bool), Error> {
    let name = choice.name.as_str();
    let as_bridge = |l: Link| {
        if l.is_bridge() {
            Ok(l)
        } else {
            Err(Error::NotABridge {
                name: l.name.clone(),
                what: l.kind.describe(),
                config: config_name(config),
            })
        }
    };
    if let Some(l) = nl.link_by_name(name)? {
        return Ok((as_bridge(l)?, false));
    }
    if !choice.create {
        return Err(Error::BridgeMissing {
            bridge: name.to_owned(),
            config: config_name(config),
        });
    }
    // EEXIST means a concurrent ifup created it first: use theirs.
    let created = nl.create_bridge(name, Mac::random_local())?;
    let l = nl.link_by_name(name)?.ok_or_else(|| Error::BridgeMissing {
        bridge: name.to_owned(),
        config: config_name(config),
    })?;
    Ok((as_bridge(l)?, created))
}

fn apply(nl: &Netlink, tap: &Link, bridge: &Link, change: &LinkChange) -> Result<(), Error> {
    let what = format!("attaching {} to bridge {}", tap.name, bridge.name);
    match nl.set_link(tap.index, change, &what) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::EXFULL) => Err(Error::BridgeFull {
            bridge: bridge.name.clone(),
        }),
        Err(_)
            if change.master.is_some()
                && !matches!(nl.link_by_index(bridge.index), Ok(Some(_))) =>
        {
            Err(Error::BridgeVanished {
                bridge: bridge.name.clone(),
                tap: tap.name.clone(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

enum Undo<'a> {
    Delete,
    Change(&'a LinkChange),
}

/// Puts back what this run changed and says so in the error. A bridge this run
/// created stays: it is shared, complete, and a concurrent ifup may be using it.
fn roll_back(nl: &Netlink, tap: &Link, undo: Undo<'_>, cause: Error) -> Error {
    let (result, done) = match undo {
        Undo::Delete => (
            nl.delete_link(tap.index, &format!("deleting tap {}", tap.name)),
            format!("tap {} was removed again", tap.name),
        ),
        Undo::Change(c) => (
            nl.set_link(tap.index, c, &format!("restoring tap {}", tap.name)),
            format!("tap {} was left as it was", tap.name),
        ),
    };
    let rollback = match result {
        Ok(()) => done,
        Err(e) => format!(
            "rolling back failed too ({e}); check `ip -d link show {}`",
            tap.name
        ),
    };
    Error::RolledBack {
        cause: Box::new(cause),
        rollback,
    }
}
