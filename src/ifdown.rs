//! `kvmnet-ifdown TAP`: undo exactly what kvmnet-ifup did to TAP, as written in
//! the tap's record, and nothing more.

use std::fmt;

use crate::error::Error;
use crate::name::TapName;
use crate::netlink::Netlink;
use crate::plan::{self, Detach};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Gone already: QEMU closes non-persistent taps itself.
    Missing,
    NotOurs,
    Deleted,
    Restored,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub tap: String,
    pub user: u32,
    pub outcome: Outcome,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let result = match self.outcome {
            Outcome::Missing => "missing (nothing to do)",
            Outcome::NotOurs => "untouched (no kvmnet record: kvmnet-ifup changed nothing here)",
            Outcome::Deleted => "deleted (kvmnet-ifup had created it)",
            Outcome::Restored => "detached and restored",
        };
        write!(f, "tap={} user={} result={}", self.tap, self.user, result)
    }
}

pub fn ifdown(nl: &Netlink, user: u32, name: &TapName) -> Result<Report, Error> {
    let report = |outcome| Report {
        tap: name.to_string(),
        user,
        outcome,
    };
    let Some(tap) = nl.link_by_name(name.as_str())? else {
        return Ok(report(Outcome::Missing));
    };
    if !tap.is_tap() {
        return Err(Error::NotATap {
            name: tap.name.clone(),
            what: tap.kind.describe(),
        });
    }
    let master_name = match tap.master {
        Some(i) => nl.link_by_index(i)?.map(|l| l.name),
        None => None,
    };
    match plan::detach(&tap, master_name.as_deref())? {
        Detach::NotOurs => Ok(report(Outcome::NotOurs)),
        Detach::Delete => {
            nl.delete_link(tap.index, &format!("deleting tap {}", tap.name))?;
            Ok(report(Outcome::Deleted))
        }
        Detach::Restore { detach, restore } => {
            nl.set_link(tap.index, &detach, &format!("detaching tap {}", tap.name))?;
            nl.set_link(tap.index, &restore, &format!("restoring tap {}", tap.name))?;
            Ok(report(Outcome::Restored))
        }
    }
}
