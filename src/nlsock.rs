//! One blocking NETLINK_ROUTE socket: send a request, read its answer.
//!
//! ifup's requests are strictly sequential (look up, change, done), so there
//! is no async runtime (docs/design.md). The requests come from
//! [`crate::nlreq`]; the socket is netlink-sys's.

use std::io;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::nlreq::Request;

/// What can go wrong on the wire; [`crate::netlink`] adds which operation.
#[derive(Debug)]
pub enum WireError {
    /// The kernel answered with this errno (a NACK).
    Kernel(io::Error),
    /// No answer within the receive timeout.
    Timeout,
    /// sendmsg/recvmsg themselves failed.
    Io(io::Error),
    /// An answer that is not what a request of this kind gets.
    Protocol(String),
    /// The kernel flagged the dump as inconsistent (NLM_F_DUMP_INTR): the
    /// list changed while it was being sent.
    Interrupted,
}

/// Room for the largest datagram the kernel sends us. A single link message is
/// a few KiB (kvmnet never asks for VF details, RTEXT_FILTER_VF); the kernel
/// cuts a dump into datagrams no larger than the buffer it saw us read with,
/// up to 32 KiB. A reply that would not fit is reported, never parsed
/// truncated (MSG_TRUNC). The buffer is never zeroed: the kernel writes into
/// its spare capacity (through netlink-sys), so only the pages an answer
/// fills are touched: zeroing it would fault in every page at every run.
const RECV_BUF: usize = 16 * 1024;
const RECV_BUF_DUMP: usize = 32 * 1024;

pub(crate) const NLMSG_HDRLEN: usize = 16;
// <linux/netlink.h>
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

pub struct Channel {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Channel {
    pub fn open(timeout: Duration) -> io::Result<Channel> {
        // Not bound: the first send binds it to a free port, and kvmnet never
        // needs to know which (answers are matched by sequence number and
        // sender). netlink-sys's bind_auto would add bind and getsockname.
        let sock = Socket::new(NETLINK_ROUTE)?;
        // The kernel handles a rtnetlink request inside sendmsg, so its answer
        // is queued before send returns; the timeout only bounds a reply that
        // never comes. (A request stuck behind the rtnl lock blocks in sendmsg,
        // as it does for every tool, `ip` included.)
        let tv = nix::sys::time::TimeVal::new(
            timeout.as_secs() as libc::time_t,
            timeout.subsec_micros() as libc::suseconds_t,
        );
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .map_err(io::Error::from)?;
        Ok(Channel {
            sock,
            seq: 0,
            buf: Vec::new(),
        })
    }

    /// Sends `msg` with `flags` (NLM_F_REQUEST is added) and returns the
    /// messages of its answer, each whole (header included) and undecoded:
    /// every part of a dump, the one reply of a get, nothing for an
    /// acknowledged change. Errors and acknowledgements are read here.
    pub fn request(&mut self, req: &Request, flags: u16) -> Result<Vec<Vec<u8>>, WireError> {
        let room = if flags & NLM_F_DUMP == NLM_F_DUMP {
            RECV_BUF_DUMP
        } else {
            RECV_BUF
        };
        self.request_into(req, flags, room)
    }

    /// [`Channel::request`], with room for datagrams of at least `room` bytes
    /// (the buffer only grows: after a dump, 32 KiB for every answer).
    fn request_into(
        &mut self,
        req: &Request,
        flags: u16,
        room: usize,
    ) -> Result<Vec<Vec<u8>>, WireError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = u32::try_from(NLMSG_HDRLEN + req.body.len())
            .map_err(|_| WireError::Protocol("a request over 4 GiB".into()))?;
        let mut out = Vec::with_capacity(NLMSG_HDRLEN + req.body.len());
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&req.kind.to_ne_bytes());
        out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel fills in our port.
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&req.body);
        self.sock
            .send_to(&out, &SocketAddr::new(0, 0), 0)
            .map_err(WireError::Io)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let acked = flags & NLM_F_ACK != 0;
        let single = !dump && !acked;
        let mut answer = Vec::new();
        loop {
            self.recv(room)?;
            if scan(&self.buf, seq, single, &mut answer)? == Scan::Done {
                return Ok(answer);
            }
        }
    }

    /// One datagram from the kernel, with room for at least `room` bytes, into
    /// `self.buf`; others' are dropped.
    fn recv(&mut self, room: usize) -> Result<(), WireError> {
        loop {
            self.buf.clear();
            self.buf.reserve(room);
            // MSG_TRUNC: the datagram's whole length even when it did not
            // fit, so a truncated answer is seen as one.
            let (len, from) = match self.sock.recv_from(&mut self.buf, libc::MSG_TRUNC) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(WireError::Timeout),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WireError::Io(e)),
            };
            // Only the kernel (port 0) answers; a datagram from another
            // process (which needs CAP_NET_ADMIN to send one) is ignored.
            if from.port_number() != 0 {
                continue;
            }
            if len > self.buf.len() {
                return Err(WireError::Protocol(format!(
                    "an answer larger than {} bytes",
                    self.buf.len()
                )));
            }
            return Ok(());
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The answer goes on in the next datagram (a dump, or an ack to come).
    More,
    Done,
}

/// Reads one datagram of the answer to request `seq` into `answer`: messages
/// of other requests are skipped, an error or acknowledgement or NLMSG_DONE
/// ends it, and so does the first message when `single` (a plain get).
fn scan(
    datagram: &[u8],
    seq: u32,
    single: bool,
    answer: &mut Vec<Vec<u8>>,
) -> Result<Scan, WireError> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= datagram.len() {
        let b = &datagram[off..];
        let size = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if size < NLMSG_HDRLEN || size > b.len() {
            return Err(WireError::Protocol(format!(
                "a message claims {size} bytes, {} are left",
                b.len()
            )));
        }
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        // A message of an earlier request that timed out is not ours.
        let ours = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]) == seq;
        if ours && flags & NLM_F_DUMP_INTR != 0 {
            return Err(WireError::Interrupted);
        }
        if ours {
            // NLMSG_ERROR and NLMSG_DONE carry an errno (0: fine).
            let code = || {
                b.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                    .filter(|_| size >= NLMSG_HDRLEN + 4)
                    .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            };
            match kind {
                NLMSG_ERROR | NLMSG_DONE => {
                    // A bare NLMSG_DONE (no errno) is what old kernels send.
                    let code = match (kind, code()) {
                        (_, Some(c)) => c,
                        (NLMSG_DONE, None) => 0,
                        _ => return Err(WireError::Protocol("a short error message".into())),
                    };
                    return match code {
                        0 => Ok(Scan::Done),
                        e => Err(WireError::Kernel(io::Error::from_raw_os_error(
                            e.saturating_abs(),
                        ))),
                    };
                }
                NLMSG_NOOP | NLMSG_OVERRUN => {}
                _ => {
                    answer.push(b[..size].to_vec());
                    if single {
                        return Ok(Scan::Done);
                    }
                }
            }
        }
        // Messages are 4-byte aligned within a datagram.
        off += (size + 3) & !3;
    }
    Ok(Scan::More)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer larger than the room (on a fresh channel: exactly `room`,
    /// as the buffer only grows) is an error, never parsed truncated;
    /// with room enough, the same request is answered (the buffer is never
    /// zeroed, so only what the kernel wrote may be read).
    #[test]
    fn an_answer_that_does_not_fit_is_refused() {
        let mut chan = Channel::open(Duration::from_secs(5)).unwrap();
        let lo = crate::nlreq::get_link(Some("lo"), 0);
        match chan.request_into(&lo, 0, 64) {
            Err(WireError::Protocol(m)) => assert!(m.contains("larger than"), "{m}"),
            other => panic!("{other:?}"),
        }
        let answer = chan.request_into(&lo, 0, RECV_BUF).unwrap();
        let link = crate::linkmsg::parse_link(&answer[0]).unwrap();
        assert_eq!(link.name, "lo");
    }

    /// One message: header (length, type, flags 0, seq, port 0) + payload.
    fn msg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn error(seq: u32, code: i32) -> Vec<u8> {
        msg(NLMSG_ERROR, seq, &code.to_ne_bytes())
    }

    const NEWLINK: u16 = 16;

    #[test]
    fn acks_nacks_and_single_replies() {
        let mut a = Vec::new();
        assert_eq!(scan(&error(5, 0), 5, false, &mut a).unwrap(), Scan::Done);
        assert!(a.is_empty());
        match scan(&error(5, -libc::EBUSY), 5, false, &mut a) {
            Err(WireError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(libc::EBUSY)),
            other => panic!("{other:?}"),
        }
        let link = msg(NEWLINK, 5, b"link");
        assert_eq!(scan(&link, 5, true, &mut a).unwrap(), Scan::Done);
        assert_eq!(a, [link]);
    }

    #[test]
    fn a_dump_spans_datagrams_and_ends_at_done() {
        let mut a = Vec::new();
        let first = [msg(NEWLINK, 9, b"a"), msg(NEWLINK, 9, b"bb")].concat();
        assert_eq!(scan(&first, 9, false, &mut a).unwrap(), Scan::More);
        let last = [
            msg(NEWLINK, 9, b"ccc"),
            msg(NLMSG_DONE, 9, &0i32.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(scan(&last, 9, false, &mut a).unwrap(), Scan::Done);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_failed_or_interrupted_dump_is_no_answer() {
        let mut a = Vec::new();
        let failed = msg(NLMSG_DONE, 3, &(-libc::EMSGSIZE).to_ne_bytes());
        match scan(&failed, 3, false, &mut a) {
            Err(WireError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE)),
            other => panic!("{other:?}"),
        }
        let mut intr = msg(NEWLINK, 3, b"a");
        intr[6..8].copy_from_slice(&NLM_F_DUMP_INTR.to_ne_bytes());
        assert!(matches!(
            scan(&intr, 3, false, &mut a),
            Err(WireError::Interrupted)
        ));
        // an old kernel's NLMSG_DONE without an errno still ends the dump
        assert_eq!(
            scan(&msg(NLMSG_DONE, 3, b""), 3, false, &mut a).unwrap(),
            Scan::Done
        );
    }

    #[test]
    fn stale_answers_are_skipped() {
        let mut a = Vec::new();
        let d = [
            error(4, -libc::ENODEV),
            msg(NEWLINK, 4, b"old"),
            error(5, 0),
        ]
        .concat();
        assert_eq!(scan(&d, 5, false, &mut a).unwrap(), Scan::Done);
        assert!(a.is_empty());
    }

    #[test]
    fn malformed_lengths_are_errors_not_panics() {
        let mut a = Vec::new();
        let mut bad = msg(NEWLINK, 1, b"xxxx");
        bad[0] = 200; // longer than the datagram
        assert!(matches!(
            scan(&bad, 1, true, &mut a),
            Err(WireError::Protocol(_))
        ));
        let mut short = msg(NEWLINK, 1, b"");
        short[0] = 8; // shorter than a header
        assert!(matches!(
            scan(&short, 1, true, &mut a),
            Err(WireError::Protocol(_))
        ));
        let truncated_error = msg(NLMSG_ERROR, 1, b"");
        assert!(matches!(
            scan(&truncated_error, 1, true, &mut a),
            Err(WireError::Protocol(_))
        ));
        // trailing bytes too short for a header end the datagram
        assert_eq!(scan(&[0u8; 7], 1, true, &mut a).unwrap(), Scan::More);
    }
}
