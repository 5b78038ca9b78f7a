//! One blocking netlink socket: send a request, read its answer; or send a
//! batch of messages in one datagram and read one acknowledgement per message.
//!
//! ifup's requests are strictly sequential (look up, change, done), so there
//! is no async runtime (docs/design.md). rtnetlink requests come from
//! [`crate::nlreq`], nf_tables batches from [`crate::nft`]; the socket is
//! netlink-sys's.

use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr};

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

/// The kernel's refusal of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// Which message of the batch (0 is the first one sent).
    pub index: usize,
    pub errno: i32,
    /// The extended ack's text (NLMSGERR_ATTR_MSG), when the kernel gave one.
    pub msg: Option<String>,
    /// The extended ack's pointer (NLMSGERR_ATTR_OFFS): the offending
    /// attribute's offset from the start of that message's header.
    pub offset: Option<u32>,
}

#[derive(Debug)]
pub enum BatchError {
    Wire(WireError),
    /// The kernel refused these messages; it applied none of the batch.
    Rejected(Vec<Nack>),
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
use crate::kernel::{NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS, NLM_F_ACK_TLVS, NLM_F_CAPPED};
// <linux/netlink.h>
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_EXCL: u16 = 0x200;
/// On a delete: refuse (EBUSY) rather than delete what the object holds.
pub const NLM_F_NONREC: u16 = 0x100;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

pub struct Channel {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Channel {
    /// A socket of netlink `protocol` (netlink_sys::protocols::*).
    pub fn open(protocol: isize, timeout: Duration) -> io::Result<Channel> {
        // Not bound: the first send binds it to a free port, and kvmnet never
        // needs to know which (answers are matched by sequence number and
        // sender). netlink-sys's bind_auto would add bind and getsockname.
        let sock = Socket::new(protocol)?;
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

    /// Asks for extended acknowledgements (NETLINK_EXT_ACK: the kernel's
    /// reason as text and the offending attribute) and for errors without a
    /// copy of the refused message (NETLINK_CAP_ACK: a batch's refusal stays
    /// small however large the message was).
    pub fn extended_acks(&self) -> io::Result<()> {
        self.sock.set_ext_ack(true)?;
        self.sock.set_cap_ack(true)
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
        let mut out = Vec::with_capacity(NLMSG_HDRLEN + req.body.len());
        put_message(&mut out, req, flags, seq)?;
        self.sock
            .send_to(&out, &SocketAddr::new(0, 0), 0)
            .map_err(WireError::Io)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let acked = flags & NLM_F_ACK != 0;
        let single = !dump && !acked;
        let mut answer = Vec::new();
        loop {
            self.recv(room, 0)?;
            if scan(&self.buf, seq, single, &mut answer)? == Scan::Done {
                return Ok(answer);
            }
        }
    }

    /// Sends `msgs`, each with its flags (NLM_F_REQUEST is added), in one
    /// datagram and with consecutive sequence numbers: an nf_tables batch,
    /// whose first and last messages frame it. Returns when every message
    /// sent with NLM_F_ACK has its answer. The kernel applies a batch whole
    /// or not at all, and answers every message it refused, so a refusal
    /// lists them all.
    pub fn batch(&mut self, msgs: &[(Request, u16)]) -> Result<(), BatchError> {
        let count = u32::try_from(msgs.len())
            .map_err(|_| BatchError::Wire(WireError::Protocol("a batch too long".into())))?;
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(count);
        let size = msgs.iter().map(|(r, _)| NLMSG_HDRLEN + r.body.len()).sum();
        let mut out = Vec::with_capacity(size);
        for (i, (req, flags)) in msgs.iter().enumerate() {
            put_message(&mut out, req, *flags, first.wrapping_add(i as u32))
                .map_err(BatchError::Wire)?;
            out.resize(out.len().next_multiple_of(4), 0);
        }
        self.sock
            .send_to(&out, &SocketAddr::new(0, 0), 0)
            .map_err(|e| BatchError::Wire(WireError::Io(e)))?;

        let mut acks = Acks {
            first,
            waiting: msgs.iter().map(|(_, f)| f & NLM_F_ACK != 0).collect(),
            nacks: Vec::new(),
            framing_refused: false,
        };
        while !acks.framing_refused && acks.waiting.contains(&true) {
            // The kernel handles the whole batch inside sendmsg, so once it
            // refused a message every answer is queued: the rest is read
            // without waiting (a kernel that stops answering after a refusal
            // cannot make the run wait). Until then the timeout bounds a
            // lost answer.
            let flags = if acks.nacks.is_empty() {
                0
            } else {
                libc::MSG_DONTWAIT
            };
            match self.recv(RECV_BUF, flags) {
                Ok(()) => {}
                Err(WireError::Timeout) if !acks.nacks.is_empty() => break,
                Err(e) => return Err(BatchError::Wire(e)),
            }
            scan_acks(&self.buf, &mut acks).map_err(BatchError::Wire)?;
        }
        if acks.nacks.is_empty() {
            Ok(())
        } else {
            Err(BatchError::Rejected(acks.nacks))
        }
    }

    /// One datagram from the kernel, with room for at least `room` bytes, into
    /// `self.buf`; others' are dropped. `flags` go to recvmsg with MSG_TRUNC.
    fn recv(&mut self, room: usize, flags: libc::c_int) -> Result<(), WireError> {
        loop {
            self.buf.clear();
            self.buf.reserve(room);
            // MSG_TRUNC: the datagram's whole length even when it did not
            // fit, so a truncated answer is seen as one.
            let (len, from) = match self.sock.recv_from(&mut self.buf, libc::MSG_TRUNC | flags) {
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

/// Appends one message: header (NLM_F_REQUEST added, port 0 for the kernel
/// to fill in) and body.
fn put_message(out: &mut Vec<u8>, req: &Request, flags: u16, seq: u32) -> Result<(), WireError> {
    let len = u32::try_from(NLMSG_HDRLEN + req.body.len())
        .map_err(|_| WireError::Protocol("a request over 4 GiB".into()))?;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&req.kind.to_ne_bytes());
    out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port.
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&req.body);
    Ok(())
}

/// What is known of a batch's answers so far.
struct Acks {
    /// The sequence number of the batch's first message.
    first: u32,
    /// Per message: an answer is still to come.
    waiting: Vec<bool>,
    nacks: Vec<Nack>,
    /// The kernel refused a message sent without NLM_F_ACK (the batch's
    /// framing): the whole batch failed and no other answer may follow.
    framing_refused: bool,
}

/// One message of a datagram: (type, flags, sequence number, the whole
/// message) and the offset of the next one. `None` when too few bytes are
/// left for a header.
type Split<'a> = Option<((u16, u16, u32, &'a [u8]), usize)>;

fn split(datagram: &[u8], off: usize) -> Result<Split<'_>, WireError> {
    if off + NLMSG_HDRLEN > datagram.len() {
        return Ok(None);
    }
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
    let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
    // Messages are 4-byte aligned within a datagram.
    Ok(Some((
        (kind, flags, seq, &b[..size]),
        off + ((size + 3) & !3),
    )))
}

/// Reads one datagram of a batch's answers into `acks`: the NLMSG_ERROR of
/// each message (errno 0: acknowledged), with the extended ack's text and
/// pointer. Answers to other requests are skipped.
fn scan_acks(datagram: &[u8], acks: &mut Acks) -> Result<(), WireError> {
    let mut off = 0;
    while let Some(((kind, flags, seq, msg), next)) = split(datagram, off)? {
        off = next;
        let index = seq.wrapping_sub(acks.first) as usize;
        if kind != NLMSG_ERROR || index >= acks.waiting.len() {
            continue;
        }
        let short = || WireError::Protocol("a short error message".into());
        let body = &msg[NLMSG_HDRLEN..];
        let code = body.get(..4).ok_or_else(short)?;
        let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
        if !acks.waiting[index] && code != 0 {
            acks.framing_refused = true;
        }
        acks.waiting[index] = false;
        if code == 0 {
            continue;
        }
        let mut nack = Nack {
            index,
            errno: code.saturating_abs(),
            msg: None,
            offset: None,
        };
        // After the errno: the refused message's header, and its body too
        // unless the kernel capped it; then the extended ack's attributes.
        let echoed = body.get(4..4 + NLMSG_HDRLEN).map(|orig| {
            if flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                (u32::from_ne_bytes([orig[0], orig[1], orig[2], orig[3]]) as usize)
                    .next_multiple_of(4)
            }
        });
        if let Some(echoed) = echoed.filter(|_| flags & NLM_F_ACK_TLVS != 0) {
            let tlvs = body.get(4 + echoed..).unwrap_or_default();
            for (kind, data) in attrs(tlvs) {
                match kind {
                    NLMSGERR_ATTR_MSG => {
                        let text = data.split(|b| *b == 0).next().unwrap_or_default();
                        nack.msg = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    NLMSGERR_ATTR_OFFS if data.len() >= 4 => {
                        nack.offset =
                            Some(u32::from_ne_bytes([data[0], data[1], data[2], data[3]]));
                    }
                    _ => {}
                }
            }
        }
        acks.nacks.push(nack);
    }
    Ok(())
}

/// The attributes of `bytes` as (type without flags, data); stops at the
/// first malformed one.
pub(crate) fn attrs(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let h = bytes.get(off..off + 4)?;
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        let kind = u16::from_ne_bytes([h[2], h[3]]) & crate::kernel::NLA_TYPE_MASK;
        let data = bytes.get(off + 4..off + len.max(4))?;
        off += len.max(4).next_multiple_of(4);
        Some((kind, data))
    })
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
    while let Some(((kind, flags, msg_seq, b), next)) = split(datagram, off)? {
        off = next;
        let size = b.len();
        // A message of an earlier request that timed out is not ours.
        let ours = msg_seq == seq;
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
                    answer.push(b.to_vec());
                    if single {
                        return Ok(Scan::Done);
                    }
                }
            }
        }
    }
    Ok(Scan::More)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_sys::protocols::NETLINK_ROUTE;

    /// An answer larger than the room (on a fresh channel: exactly `room`,
    /// as the buffer only grows) is an error, never parsed truncated;
    /// with room enough, the same request is answered (the buffer is never
    /// zeroed, so only what the kernel wrote may be read).
    #[test]
    fn an_answer_that_does_not_fit_is_refused() {
        let mut chan = Channel::open(NETLINK_ROUTE, Duration::from_secs(5)).unwrap();
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

    /// An NLMSG_ERROR as the kernel sends it for a batch's message: errno,
    /// the refused header (capped: without its body) and the extended ack.
    fn nack(seq: u32, code: i32, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&msg(NEWLINK, seq, b"")[..NLMSG_HDRLEN]);
        for (kind, data) in tlvs {
            p.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            p.extend_from_slice(&kind.to_ne_bytes());
            p.extend_from_slice(data);
            p.resize(p.len().next_multiple_of(4), 0);
        }
        let mut m = msg(NLMSG_ERROR, seq, &p);
        let flags = if tlvs.is_empty() {
            NLM_F_CAPPED
        } else {
            NLM_F_CAPPED | NLM_F_ACK_TLVS
        };
        m[6..8].copy_from_slice(&flags.to_ne_bytes());
        m
    }

    #[test]
    fn a_batchs_acks_and_nacks_are_read_with_their_extended_ack() {
        let mut acks = Acks {
            first: 10,
            waiting: vec![false, true, true, true, false],
            nacks: Vec::new(),
            framing_refused: false,
        };
        let d = [
            error(9, -libc::EINVAL),
            error(11, 0),
            nack(
                12,
                -libc::EINVAL,
                &[
                    (NLMSGERR_ATTR_MSG, b"bad key\0"),
                    (NLMSGERR_ATTR_OFFS, &44u32.to_ne_bytes()),
                ],
            ),
        ]
        .concat();
        scan_acks(&d, &mut acks).unwrap();
        assert_eq!(acks.waiting, [false, false, false, true, false]);
        assert_eq!(
            acks.nacks,
            [Nack {
                index: 2,
                errno: libc::EINVAL,
                msg: Some("bad key".into()),
                offset: Some(44)
            }]
        );
        assert!(!acks.framing_refused);
        scan_acks(&nack(13, -libc::ENOENT, &[]), &mut acks).unwrap();
        assert_eq!(
            acks.nacks[1],
            Nack {
                index: 3,
                errno: libc::ENOENT,
                msg: None,
                offset: None
            }
        );
        // a refused frame (sent without an ack asked for) ends the batch
        scan_acks(&error(10, -libc::EOPNOTSUPP), &mut acks).unwrap();
        assert!(acks.framing_refused);
        // a short error is a protocol error, not a panic
        assert!(scan_acks(&msg(NLMSG_ERROR, 11, b"\0\0"), &mut acks).is_err());
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
