//! `rate_out`, the host->guest limit: a tbf root qdisc on the tap, which
//! shapes what the host sends into it (the tap's egress). It lives and dies
//! with the tap, so nothing is left to collect when QEMU is killed. The
//! guest->host limit (`rate_in`) is the guard's: an nf_tables `limit` in its
//! netdev ingress chain, from the same [`Rate`]. Why: docs/rate-design.md.
//!
//! kvmnet touches a root qdisc only when it is its own: the tbf with
//! handle [`crate::tc::HANDLE`] and the parameters it set.

use crate::kernel::NLM_F_ECHO;
use crate::netlink::{Netlink, NetlinkError};
use crate::nlsock::{NLM_F_ACK, NLM_F_CREATE};
use crate::rate::{Bytes, ShowRate, ETH_HLEN};
use crate::tc::{self, Qdisc, Tbf, HANDLE};

pub use crate::rate::Rate;

/// How long a full queue behind the bucket takes to drain, in milliseconds
/// of the rate: long enough that TCP keeps the rate, short enough that a
/// guest's interactive traffic does not wait behind a bulk transfer.
pub const QUEUE_MS: u64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("interface #{ifindex} already has a root qdisc that is not kvmnet's ({desc}); kvmnet leaves it alone: remove it (tc qdisc del dev … root) or leave rate_out out")]
    Foreign { ifindex: u32, desc: String },
    #[error("burst {burst} is smaller than one full-size frame on this link ({frame} bytes, MTU {mtu}), which tbf would drop; raise the burst or leave it out for the default")]
    BurstBelowFrame { burst: Bytes, frame: u64, mtu: u32 },
    #[error("reading the root qdisc of interface #{ifindex}: {msg}")]
    Protocol { ifindex: u32, msg: String },
}

/// What [`clear`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// kvmnet's tbf was there and is gone.
    Removed,
    /// No qdisc of anyone's: the tap has its default one.
    Nothing,
    /// The tap is gone, and its qdisc with it.
    TapGone,
    /// A root qdisc that is not the one kvmnet set (another kind, handle or
    /// parameters): left as it is, for the reason given.
    LeftAlone(String),
}

/// The tbf kvmnet sets for `rate` on a link of MTU `mtu`: the rate, its
/// burst, and a queue of [`QUEUE_MS`] of the rate behind the bucket.
pub(crate) fn tbf_for(rate: &Rate, mtu: u32) -> Result<Tbf, ShapeError> {
    let burst = rate.burst(mtu);
    let frame = u64::from(mtu) + ETH_HLEN;
    if u64::from(burst) < frame {
        return Err(ShapeError::BurstBelowFrame {
            burst: Bytes(burst.into()),
            frame,
            mtu,
        });
    }
    let queue = rate.bytes_per_sec().saturating_mul(QUEUE_MS) / 1000;
    let limit = u32::try_from(queue.saturating_add(burst.into())).unwrap_or(u32::MAX);
    Ok(Tbf {
        rate: rate.bytes_per_sec(),
        burst,
        limit,
    })
}

/// Limits what the host sends to interface `ifindex` (MTU `mtu`) to `rate`.
/// Setting the same rate again changes nothing; another rate changes
/// kvmnet's tbf in place. A root qdisc someone else set is refused, never
/// replaced: the request has NLM_F_CREATE without NLM_F_REPLACE, so the
/// kernel itself creates the tbf over the default qdisc, changes kvmnet's
/// (same handle), and refuses any other (EEXIST), in one step.
pub fn set(nl: &Netlink, ifindex: u32, mtu: u32, rate: &Rate) -> Result<(), ShapeError> {
    let tbf = tbf_for(rate, mtu)?;
    let op = || format!("limiting interface #{ifindex} to {rate}");
    match nl.tc(op, tc::new_tbf(ifindex, &tbf), NLM_F_ACK | NLM_F_CREATE) {
        Ok(_) => Ok(()),
        // EEXIST: another root qdisc; EINVAL: one of another kind with
        // kvmnet's handle. Say which, if it can still be read.
        Err(e) if matches!(e.errno(), Some(libc::EEXIST) | Some(libc::EINVAL)) => {
            match root(nl, ifindex) {
                Ok(Some(q)) if q.handle != 0 && !(q.kind == "tbf" && q.handle == HANDLE) => {
                    Err(ShapeError::Foreign {
                        ifindex,
                        desc: describe(&q),
                    })
                }
                _ => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes the limit [`set`] put on interface `ifindex` for `rate` (what
/// the tap's record says), and only that: a root qdisc with other
/// parameters, another handle or of another kind is left alone.
pub fn clear(nl: &Netlink, ifindex: u32, mtu: u32, rate: &Rate) -> Result<Cleared, ShapeError> {
    let want = tbf_for(rate, mtu)?;
    let q = match root(nl, ifindex) {
        Ok(Some(q)) => q,
        Ok(None) => return Ok(Cleared::TapGone),
        Err(e) => return Err(e),
    };
    if q.handle == 0 {
        return Ok(Cleared::Nothing);
    }
    if q.kind != "tbf" || q.handle != HANDLE {
        return Ok(Cleared::LeftAlone(format!(
            "its root qdisc is {}, not kvmnet's",
            describe(&q)
        )));
    }
    match q.tbf {
        Some(s) if s.is(&want) => {}
        Some(s) => {
            return Ok(Cleared::LeftAlone(format!(
                "its tbf is now rate {} burst {} limit {}, not the {} kvmnet set",
                ShowRate(s.rate),
                Bytes(s.burst()),
                Bytes(s.limit.into()),
                rate
            )))
        }
        None => return Ok(Cleared::LeftAlone("its tbf has no parameters".into())),
    }
    let op = || format!("removing the rate limit of interface #{ifindex}");
    // With kvmnet's handle in the request, the kernel refuses (EINVAL) if
    // the root changed hands since it was read.
    match nl.tc(op, tc::del_root(ifindex, HANDLE), NLM_F_ACK) {
        Ok(_) => Ok(Cleared::Removed),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(Cleared::TapGone),
        Err(e) => Err(e.into()),
    }
}

/// The root qdisc of interface `ifindex`, `None` when there is no such
/// interface: one RTM_GETQDISC, not a dump, so its cost does not grow with
/// the host's interfaces. The kernel answers a qdisc get only with
/// NLM_F_ECHO (without it, it sends the answer to the RTNLGRP_TC listeners
/// alone). For its built-in qdisc (noop, which a tap that was never up has)
/// it sends nothing, only the acknowledgement (older kernels: EINVAL): no
/// qdisc of anyone's, handle 0.
pub(crate) fn root(nl: &Netlink, ifindex: u32) -> Result<Option<Qdisc>, ShapeError> {
    let op = || format!("reading the root qdisc of interface #{ifindex}");
    let builtin = || Qdisc {
        ifindex,
        handle: 0,
        parent: crate::kernel::TC_H_ROOT,
        kind: "noop".into(),
        tbf: None,
    };
    let answer = match nl.tc(op, tc::get_root(ifindex), NLM_F_ECHO | NLM_F_ACK) {
        Ok(a) => a,
        Err(e) if e.errno() == Some(libc::ENODEV) => return Ok(None),
        Err(e) if e.errno() == Some(libc::EINVAL) => return Ok(Some(builtin())),
        Err(e) => return Err(e.into()),
    };
    let Some(msg) = answer.first() else {
        return Ok(Some(builtin()));
    };
    let q = tc::parse_qdisc(msg).map_err(|msg| ShapeError::Protocol { ifindex, msg })?;
    if q.ifindex != ifindex {
        return Err(ShapeError::Protocol {
            ifindex,
            msg: format!("the answer describes interface #{}", q.ifindex),
        });
    }
    Ok(Some(q))
}

/// A tap's root qdisc for `kvmnet status`: `Some` with the rate and burst
/// when it is a tbf of kvmnet's handle.
pub fn current(nl: &Netlink, ifindex: u32) -> Result<Option<Rate>, ShapeError> {
    let Some(q) = root(nl, ifindex)? else {
        return Ok(None);
    };
    match (q.handle == HANDLE, q.tbf) {
        (true, Some(s)) => Ok(Rate::new(s.rate, Some(s.burst().max(1))).ok()),
        _ => Ok(None),
    }
}

fn describe(q: &Qdisc) -> String {
    format!("{} {:x}:", q.kind, q.handle >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tbf_for_a_rate() {
        let r = Rate::parse("10mbit", None).unwrap();
        assert_eq!(
            tbf_for(&r, 1500).unwrap(),
            Tbf {
                rate: 1_250_000,
                burst: 12_500,
                limit: 12_500 + 25_000
            }
        );
        let r = Rate::parse("100mbit", Some("64kb")).unwrap();
        assert_eq!(
            tbf_for(&r, 1500).unwrap(),
            Tbf {
                rate: 12_500_000,
                burst: 65_536,
                limit: 65_536 + 250_000
            }
        );
        // jumbo frames: the default burst grows with them
        let r = Rate::parse("1mbit", None).unwrap();
        assert_eq!(tbf_for(&r, 9000).unwrap().burst, 18_028);
        // an explicit burst below one frame would drop every full-size one
        let r = Rate::parse("10mbit", Some("1500")).unwrap();
        let e = tbf_for(&r, 1500).unwrap_err();
        assert_eq!(
            e.to_string(),
            "burst 1500b is smaller than one full-size frame on this link (1514 bytes, MTU 1500), which tbf would drop; raise the burst or leave it out for the default"
        );
        assert!(tbf_for(&r, 1486).is_ok());
    }
}
