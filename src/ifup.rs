//! `kvmnet-ifup TAP`: make TAP a port of the configured bridge, creating the tap
//! (and the bridge, where allowed) when missing. Either everything is done, or
//! everything this run changed is undone.

use std::fmt;
use std::time::{Duration, Instant};

use crate::caller::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::mac::Mac;
use crate::name::{BridgeName, TapName};
use crate::netlink::{Link, LinkChange, Netlink};
use crate::plan::{self, BridgeChoice};
use crate::tap::{self, NewTap, TapError};

/// How long a loser of a creation race waits for the winner's record.
const RACE_WAIT: Duration = Duration::from_secs(2);

/// What a successful run did, for the log line.
#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    pub bridge: String,
    pub mtu: u32,
    pub user: u32,
    pub created_tap: bool,
    pub created_bridge: bool,
    pub changed: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b| if b { "yes" } else { "no" };
        write!(
            f,
            "tap={} bridge={} mtu={} user={} created_tap={} created_bridge={} result={}",
            self.tap,
            self.bridge,
            self.mtu,
            self.user,
            yn(self.created_tap),
            yn(self.created_bridge),
            if self.changed { "attached" } else { "unchanged" }
        )
    }
}

pub fn ifup(nl: &Netlink, caller: &Caller, config: &Config, name: &TapName) -> Result<Report, Error> {
    let existing = nl.link_by_name(name.as_str())?;
    if let Some(l) = &existing {
        require_tap(l)?;
    }

    // Everything that can be refused without changing anything is checked
    // before the first change.
    let choice = match plan::configured_bridge(config) {
        Some(c) => c,
        None => plan::fallback_bridge(config, default_route_bridge(nl)?),
    };
    let (bridge, created_bridge) = resolve_bridge(nl, &choice, config)?;

    let (tap, created_tap) = match existing {
        Some(l) => (l, false),
        None => create_tap(nl, caller, name)?,
    };

    let attach = match plan::attach(&tap, &bridge, created_tap) {
        Ok(a) => a,
        Err(e) => return Err(roll_back(nl, &tap, created_tap, None, e.into())),
    };
    if let Err(e) = apply(nl, &tap, &bridge, &attach.change) {
        return Err(roll_back(nl, &tap, created_tap, Some(&attach.undo), e));
    }
    Ok(Report {
        tap: tap.name.clone(),
        bridge: bridge.name.clone(),
        mtu: bridge.mtu,
        user: caller.uid,
        created_tap,
        created_bridge,
        changed: !attach.change.is_empty(),
    })
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

fn resolve_bridge(nl: &Netlink, choice: &BridgeChoice, config: &Config) -> Result<(Link, bool), Error> {
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

fn create_tap(nl: &Netlink, caller: &Caller, name: &TapName) -> Result<(Link, bool), Error> {
    let new = NewTap {
        name,
        owner: caller.uid,
        group: None,
    };
    match tap::create(&new) {
        Ok(()) => {}
        Err(TapError::Exists { .. }) => return Ok((lost_race(nl, name)?, false)),
        Err(e) => return Err(e.into()),
    }
    match nl.link_by_name(name.as_str())? {
        Some(l) => Ok((l, true)),
        // Deleted by someone else between creation and look-up: nothing of ours
        // is left, so this is a plain failure.
        None => Err(Error::NotATap {
            name: name.to_string(),
            what: "gone right after kvmnet created it".into(),
        }),
    }
}

/// Another process created the name between our look-up and TUNSETIFF. If it is
/// a concurrent kvmnet-ifup, wait (bounded) until its record is written, so
/// that this run sees "created by kvmnet" and does not overwrite it.
fn lost_race(nl: &Netlink, name: &TapName) -> Result<Link, Error> {
    let start = Instant::now();
    loop {
        let Some(l) = nl.link_by_name(name.as_str())? else {
            return Err(Error::NotATap {
                name: name.to_string(),
                what: "created and deleted again by another process meanwhile".into(),
            });
        };
        require_tap(&l)?;
        if l.alias.is_some() || start.elapsed() > RACE_WAIT {
            return Ok(l);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn apply(nl: &Netlink, tap: &Link, bridge: &Link, change: &LinkChange) -> Result<(), Error> {
    let what = format!("attaching {} to bridge {}", tap.name, bridge.name);
    match nl.set_link(tap.index, change, &what) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::EXFULL) => Err(Error::BridgeFull {
            bridge: bridge.name.clone(),
        }),
        Err(_) if change.master.is_some() && !matches!(nl.link_by_index(bridge.index), Ok(Some(_))) => {
            Err(Error::BridgeVanished {
                bridge: bridge.name.clone(),
                tap: tap.name.clone(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Puts back what this run changed and says so in the error. A bridge this run
/// created stays: it is shared, complete, and a concurrent ifup may be using it.
fn roll_back(nl: &Netlink, tap: &Link, created: bool, undo: Option<&LinkChange>, cause: Error) -> Error {
    let (result, done) = match (created, undo) {
        (true, _) => (
            nl.delete_link(tap.index, &format!("deleting tap {}", tap.name)),
            format!("tap {} was removed again", tap.name),
        ),
        (false, Some(undo)) => (
            nl.set_link(tap.index, undo, &format!("restoring tap {}", tap.name)),
            format!("tap {} was left as it was", tap.name),
        ),
        (false, None) => return cause,
    };
    let rollback = match result {
        Ok(()) => done,
        Err(e) => format!("rolling back failed too ({e}); check `ip -d link show {}`", tap.name),
    };
    Error::RolledBack {
        cause: Box::new(cause),
        rollback,
    }
}
