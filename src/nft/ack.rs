//! What the kernel's answers to a batch mean, as errors that say what was
//! refused, why (the extended ack's text and the part of the message it
//! points at) and what to do.

use std::io;
use std::time::Duration;

use crate::nlsock::{BatchError, Nack, WireError, NLMSG_HDRLEN};
use crate::os_error::describe;

use super::msg::Msg;

/// One refused message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the message does ("creating set ipv4-src").
    pub what: String,
    pub errno: i32,
    /// The kernel's own words (extended ack), when it gave some.
    pub reason: Option<String>,
    /// The part of the message the kernel pointed at ("element
    /// 192.0.2.0/24", "expression 3 (payload)"), when it pointed.
    pub part: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.what,
            describe(&io::Error::from_raw_os_error(self.errno))
        )?;
        if let Some(r) = &self.reason {
            write!(f, " (kernel: \"{r}\")")?;
        }
        if let Some(p) = &self.part {
            write!(f, " at {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netfilter netlink socket: {}; the kernel needs nfnetlink and nf_tables: load them (modprobe nf_tables)", describe(.0))]
    Socket(io::Error),
    #[error("{op}: the kernel has no nf_tables: load it (modprobe nf_tables)")]
    NoNfTables { op: String },
    #[error("{op}: the kernel has no nf_tables netdev family (CONFIG_NF_TABLES_NETDEV): load nf_tables (modprobe nf_tables) or use a kernel built with it")]
    NoNetdevFamily { op: String },
    #[error("{op}: the kernel cannot hook a device's ingress (CONFIG_NETFILTER_INGRESS); use a kernel built with it")]
    NoIngressHook { op: String },
    #[error(
        "{op}: operation not permitted: it needs CAP_NET_ADMIN in the tap's network namespace"
    )]
    NotPermitted { op: String },
    #[error("{op}: the kernel did not answer within {} s; check `dmesg`", .timeout.as_secs())]
    Timeout { op: String, timeout: Duration },
    #[error("{op}: the netlink socket failed: {}", describe(.source))]
    Io { op: String, source: io::Error },
    #[error("{op}: unexpected netlink reply: {msg}")]
    Protocol { op: String, msg: String },
    /// The kernel refused the batch; it changed nothing.
    #[error("{op}: the kernel refused it and changed nothing: {}", .refusals.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "))]
    Rejected { op: String, refusals: Vec<Refusal> },
}

impl NftError {
    pub fn wire(op: &str, e: WireError, timeout: Duration) -> NftError {
        let op = op.to_owned();
        match e {
            WireError::Timeout => NftError::Timeout { op, timeout },
            WireError::Io(source) => NftError::Io { op, source },
            WireError::Protocol(msg) => NftError::Protocol { op, msg },
            WireError::Interrupted => NftError::Protocol {
                op,
                msg: "the list kept changing while the kernel sent it; try again".into(),
            },
            WireError::Kernel(e) if e.raw_os_error() == Some(libc::EPERM) => {
                NftError::NotPermitted { op }
            }
            WireError::Kernel(source) => NftError::Io { op, source },
        }
    }

    /// The kernel's refusal of a batch whose messages, frame included, were
    /// `sent` (the frame is the first and the last).
    pub fn batch(op: &str, e: BatchError, sent: &[&Msg], timeout: Duration) -> NftError {
        let nacks = match e {
            BatchError::Wire(w) => return NftError::wire(op, w, timeout),
            BatchError::Rejected(n) => n,
        };
        let op = op.to_owned();
        let framing = |n: &Nack| n.index == 0 || n.index > sent.len();
        if let Some(n) = nacks.iter().find(|n| framing(n)) {
            // A refused frame: the subsystem itself is missing, or the
            // kernel could not even queue its answers.
            return match n.errno {
                libc::EOPNOTSUPP | libc::EPROTONOSUPPORT => NftError::NoNfTables { op },
                libc::EPERM => NftError::NotPermitted { op },
                errno => NftError::Rejected {
                    op,
                    refusals: vec![Refusal {
                        what: "the batch as a whole".into(),
                        errno,
                        reason: n.msg.clone(),
                        part: None,
                    }],
                },
            };
        }
        let refusals: Vec<Refusal> = nacks
            .iter()
            .map(|n| {
                let m = sent[n.index - 1];
                Refusal {
                    what: m.what.clone(),
                    errno: n.errno,
                    reason: n.msg.clone(),
                    part: n.offset.filter(|o| *o as usize >= NLMSG_HDRLEN).map(|o| {
                        m.part_at(o as usize).map_or_else(
                            || format!("the attribute at byte {o} of the message"),
                            str::to_owned,
                        )
                    }),
                }
            })
            .collect();
        let first = refusals.first().map(|r| (r.errno, r.what.as_str()));
        match first {
            Some((libc::EAFNOSUPPORT, _)) => NftError::NoNetdevFamily { op },
            Some((libc::EPERM, _)) => NftError::NotPermitted { op },
            Some((libc::EOPNOTSUPP, what)) if what.starts_with("creating chain") => {
                NftError::NoIngressHook { op }
            }
            _ => NftError::Rejected { op, refusals },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::msg::{new_set, set_elems, Elem};

    use crate::nft::msg::test_set as set;

    /// The kernel's pointer into a refused message names the element it
    /// points at; its text and the errno come with it.
    #[test]
    fn a_refusal_names_the_element_the_kernel_points_at() {
        let elems: Vec<Elem> = (1..=3)
            .map(|i| Elem {
                key: vec![1, 0, 0, 0, 192, 0, 2, i],
                key_end: None,
                what: format!("element 192.0.2.{i}"),
            })
            .collect();
        let msgs = [new_set(5, &set()), set_elems(5, &set(), &elems).remove(0)];
        let (range, _) = msgs[1].parts[1].clone();
        let sent: Vec<&Msg> = msgs.iter().collect();
        let e = NftError::batch(
            "guarding vm0",
            BatchError::Rejected(vec![Nack {
                index: 2,
                errno: libc::EINVAL,
                msg: Some("bad key".into()),
                offset: Some(range.start as u32 + 4),
            }]),
            &sent,
            Duration::from_secs(1),
        );
        assert_eq!(
            e.to_string(),
            "guarding vm0: the kernel refused it and changed nothing: adding elements to set s: \
             Invalid argument (kernel: \"bad key\") at element 192.0.2.2"
        );
    }

    #[test]
    fn a_refused_frame_or_family_says_what_is_missing() {
        let sent: Vec<&Msg> = Vec::new();
        let nack = |index, errno| {
            BatchError::Rejected(vec![Nack {
                index,
                errno,
                msg: None,
                offset: None,
            }])
        };
        let t = Duration::from_secs(1);
        let e = NftError::batch("op", nack(0, libc::EOPNOTSUPP), &sent, t);
        assert!(e.to_string().contains("modprobe nf_tables"), "{e}");
        let m = new_set(5, &set());
        let e = NftError::batch("op", nack(1, libc::EAFNOSUPPORT), &[&m], t);
        assert!(e.to_string().contains("no nf_tables netdev family"), "{e}");
    }
}
