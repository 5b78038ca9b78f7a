//! `kvmnet-ifup TAP`: make TAP a port of its bridge (or route to it), creating
//! the tap (and the bridge, where allowed) when missing. Either everything is
//! done, or everything this run changed is undone.

use std::fmt;

use crate::acl::Identity;
use crate::caller::Caller;
use crate::config::Config;
use crate::error::Error;
use crate::link::Link;
use crate::log::Log;
use crate::mode::{self, bridge, routed, ForTap, Mode};
use crate::name::{BridgeName, TapName};
use crate::netlink::Netlink;
use crate::plan::{self, Origin, Wanted};
use crate::settings::NetMode;
use crate::tap::{self, NewTap, TapError};
use crate::Invocation;

/// What a successful run did, for the log line.
#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    /// "bridge=br0 mtu=9000" or "route=192.0.2.10".
    pub target: String,
    pub user: u32,
    pub privilege: crate::privilege::Mode,
    /// Which rule let a non-root caller use the bridge ("root" for root).
    pub acl: String,
    /// Which `[[rule]]` matched the tap name, if any.
    pub rule: Option<String>,
    pub created_tap: bool,
    pub created_bridge: bool,
    pub changed: bool,
    /// Host-wide changes made along the way (forwarding switched on).
    pub notes: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b| if b { "yes" } else { "no" };
        write!(
            f,
            "tap={} {} user={} created_tap={} created_bridge={} result={} privilege={} caps={} acl=\"{}\" rule=\"{}\"",
            self.tap,
            self.target,
            self.user,
            yn(self.created_tap),
            yn(self.created_bridge),
            if self.changed { "attached" } else { "unchanged" },
            self.privilege,
            crate::privilege::caps_for_log(self.privilege),
            self.acl,
            self.rule.as_deref().unwrap_or("defaults"),
        )?;
        for n in &self.notes {
            write!(f, " note=\"{n}\"")?;
        }
        Ok(())
    }
}

pub fn ifup(
    nl: &Netlink,
    inv: &Invocation,
    config: &Config,
    requested: Option<BridgeName>,
    name: &TapName,
    log: &mut Log,
) -> Result<Report, Error> {
    let settings = match &requested {
        Some(b) => config.settings_on(name.as_str(), b.as_str()),
        None => config.settings_for(name.as_str()),
    };
    let caller = &inv.caller;
    let identity = (!caller.is_root()).then(|| caller.identity());
    let existing = match nl.link_by_name(name)? {
        Some(l) => Some(mode::admit(l, name, identity.as_ref())?),
        None => None,
    };
    let mut run = Run {
        nl,
        caller,
        identity: identity.as_ref(),
        name,
        group: mode::tun_group(&settings)?,
        log,
        started: false,
    };
    let rule = settings.rule.clone();
    let tap = ForTap {
        name,
        who: identity.as_ref(),
        existing: existing.as_ref(),
    };
    // The mode's constructor checks everything that can refuse without
    // changing anything, before the first change.
    let (mode, acl, created_bridge): (Box<dyn Mode>, String, bool) = match settings.mode {
        NetMode::Bridge => {
            let port =
                bridge::Port::for_ifup(nl, config, settings, requested, &tap, &mut |what| {
                    run.starting(what)
                })?;
            let (acl, created) = (port.acl.clone(), port.created_bridge);
            (Box::new(port), acl, created)
        }
        NetMode::Route => {
            let routed = routed::Routed::for_ifup(settings, &tap)?;
            (Box::new(routed), "root".into(), false)
        }
    };
    let (created_tap, changed) = run.configure(existing, mode.as_ref())?;
    Ok(Report {
        tap: name.to_string(),
        target: mode.describe(),
        user: caller.uid,
        privilege: inv.mode,
        acl,
        rule,
        created_tap,
        created_bridge,
        changed,
        notes: mode.notes(),
    })
}

/// One ifup's state: what it acts on, and whether it has logged that it
/// is about to change something.
struct Run<'a> {
    nl: &'a Netlink,
    caller: &'a Caller,
    identity: Option<&'a Identity>,
    name: &'a TapName,
    group: Option<u32>,
    log: &'a mut Log,
    started: bool,
}

enum Created {
    Yes,
    LostRace,
}

impl Run<'_> {
    /// The audit line, sent before the first change: a run killed half-way
    /// still leaves a trace of what it set out to do.
    fn starting(&mut self, what: &str) {
        if !self.started {
            self.started = true;
            self.log.starting(self.name.as_str(), self.caller.uid, what);
        }
    }

    /// Brings the tap (existing or new) to `target` with the mode's policy;
    /// on any failure puts back what this run changed. Returns (created,
    /// changed).
    fn configure(
        &mut self,
        existing: Option<Link>,
        mode: &dyn Mode,
    ) -> Result<(bool, bool), Error> {
        let target = mode.wanted();
        let tap = match existing {
            Some(tap) => tap,
            None => match self.create_and_attach(&target, mode)? {
                Created::Yes => return Ok((true, true)),
                // A concurrent run (or QEMU, or an admin) took the name first:
                // that tap is judged like any existing one.
                Created::LostRace => {
                    let found = self.nl.link_by_name(self.name)?;
                    let found = found.ok_or_else(|| Error::TapVanished {
                        tap: self.name.to_string(),
                    })?;
                    let found = mode::admit(found, self.name, self.identity)?;
                    // The name was free when this run looked: it adopts only
                    // what it set out to create, a tap of the caller's own
                    // (a concurrent run for the same caller), even for root.
                    let owner = found.tun().and_then(|t| t.owner);
                    if owner != Some(self.caller.uid) {
                        return Err(Error::NameTaken {
                            tap: self.name.to_string(),
                            owner: owner.map_or("nobody".into(), |u| format!("uid {u}")),
                        });
                    }
                    found
                }
            },
        };
        let attach = plan::attach(&tap, &target, Origin::Existing)?;
        if !attach.changes_anything() {
            return Ok((false, false));
        }
        self.starting(&format!("ifindex={}", tap.index));
        match mode::run(self.nl, &tap, &attach, mode) {
            Ok(()) => Ok((false, true)),
            Err(failed) => Err(mode::roll_back(self.nl, &attach, mode, *failed)),
        }
    }

    /// Creates the tap under a private temporary name, not persistent, so
    /// that it disappears with this process until the very last step. It
    /// gets its record, MTU and MAC (and, with port policy, joins the bridge
    /// down and gets that policy) under the temporary name; one change then
    /// names it, brings it up (and attaches it); making it persistent comes
    /// last. So a tap named `name` is never visible without its "created"
    /// record, and a run that dies leaves no tap.
    fn create_and_attach(
        &mut self,
        target: &Wanted<'_>,
        mode: &dyn Mode,
    ) -> Result<Created, Error> {
        self.starting("create=yes");
        let (held, temp) = create_temp_tap(self.caller, self.group)?;
        let tap = match self.nl.link_by_name(&temp)? {
            Some(l) if l.is_tap() && l.name == temp.as_str() => l,
            _ => {
                return Err(Error::TapVanished {
                    tap: temp.to_string(),
                })
            }
        };
        let gone = |cause: Error| Error::RolledBack {
            cause: Box::new(cause),
            rollback: format!("tap {} was removed again", self.name),
        };
        let attach = plan::attach(&tap, target, Origin::Created(Some(self.name.as_str())))
            .map_err(|e| gone(e.into()))?;
        match mode::run(self.nl, &tap, &attach, mode) {
            // Dropping `held` below deletes the temporary tap.
            Err(f)
                if f.renaming
                    && matches!(&f.error, Error::Netlink(e) if e.errno() == Some(libc::EEXIST)) =>
            {
                Ok(Created::LostRace)
            }
            Err(f) => Err(gone(f.error)),
            Ok(()) => match held.persist() {
                Ok(()) => Ok(Created::Yes),
                Err(e) => Err(gone(e.into())),
            },
        }
    }
}

/// A tap under a random temporary name: `kvmnet` and 36 random bits. A
/// clash (another run's temporary tap) is retried.
fn create_temp_tap(caller: &Caller, group: Option<u32>) -> Result<(tap::Held, TapName), Error> {
    let mut tries = 0;
    loop {
        let bits = crate::random::os_u64();
        let temp = TapName::new(&format!("kvmnet{:09x}", bits & 0xf_ffff_ffff))
            .expect("15 safe characters");
        let new = NewTap {
            name: &temp,
            owner: caller.uid,
            group,
        };
        match tap::create(&new) {
            Ok(held) => return Ok((held, temp)),
            Err(TapError::Exists { .. }) if tries < 3 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}
