//! nf_tables over netlink, written by kvmnet (no `nft` run, no libnftnl):
//! the messages of a batch ([`msg`]), the expressions of rules ([`expr`]),
//! the meaning of the kernel's answers ([`ack`]), and one socket that sends
//! a batch atomically and lists tables ([`Nft`]).
//!
//! The encoder writes what nft 1.0.6 writes for the same objects, attribute
//! for attribute, so `nft list ruleset` shows kvmnet's tables as if nft had
//! made them; tests/guard.rs holds it to nft's bytes and to nft's
//! reading of the result.

pub(crate) mod ack;
pub(crate) mod expr;
pub(crate) mod msg;

use std::time::Duration;

use crate::kernel::{
    NETLINK_NETFILTER, NFNETLINK_V0, NFNL_SUBSYS_NFTABLES, NFTA_CHAIN_HANDLE, NFTA_CHAIN_NAME,
    NFTA_CHAIN_TABLE, NFTA_CHAIN_USERDATA, NFTA_DATA_VALUE, NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_KEY_END, NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE, NFTA_TABLE_HANDLE, NFTA_TABLE_NAME, NFTA_TABLE_USERDATA,
    NFT_MSG_GETCHAIN, NFT_MSG_GETSETELEM, NFT_MSG_GETTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWSETELEM,
    NFT_MSG_NEWTABLE,
};
use crate::nlreq::Request;
use crate::nlsock::{attrs, Channel, NLMSG_HDRLEN, NLM_F_DUMP};

pub use ack::NftError;
use msg::Msg;

/// As for rtnetlink: a batch is handled inside sendmsg; the bound only
/// keeps a lost answer from hanging a VM start.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    /// Unique for the table's life: deleting by handle can never delete a
    /// table made since under the same name.
    pub handle: u64,
    /// nft's table comment (userdata), when it has one.
    pub comment: Option<String>,
}

/// A chain as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub table: String,
    pub name: String,
    /// Unique for the chain's life (as a table's handle).
    pub handle: u64,
    /// nft's chain comment (userdata), when it has one.
    pub comment: Option<String>,
}

/// A set element as the kernel lists it: its key, and for a range of a
/// concatenated key its last key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElem {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
}

pub struct Nft {
    chan: Channel,
}

fn nft_req(kind: u8, family: u8) -> Request {
    Request {
        kind: (NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind),
        body: vec![family, NFNETLINK_V0, 0, 0],
    }
}

fn protocol(op: &str) -> impl Fn(String) -> NftError + '_ {
    move |msg| NftError::Protocol {
        op: op.to_owned(),
        msg,
    }
}

impl Nft {
    pub fn open() -> Result<Nft, NftError> {
        let chan = Channel::open(NETLINK_NETFILTER, TIMEOUT).map_err(NftError::Socket)?;
        chan.extended_acks().map_err(NftError::Socket)?;
        Ok(Nft { chan })
    }

    /// Sends `msgs` as one batch: the kernel applies all of them or, when it
    /// refuses any, none. `op` names the whole for errors.
    pub fn apply(&mut self, op: &str, msgs: &[Msg]) -> Result<(), NftError> {
        let mut wire = Vec::with_capacity(msgs.len() + 2);
        wire.push(msg::batch_frame(true));
        wire.extend(msgs.iter().map(|m| (m.req.clone(), m.flags)));
        wire.push(msg::batch_frame(false));
        let sent: Vec<&Msg> = msgs.iter().collect();
        self.chan
            .batch(&wire)
            .map_err(|e| NftError::batch(op, e, &sent, TIMEOUT))
    }

    /// Every table of `family`: a dump, which the kernel filters by family.
    pub fn tables(&mut self, family: u8) -> Result<Vec<Table>, NftError> {
        let op = "listing nf_tables tables";
        let answer = self
            .chan
            .request(&nft_req(NFT_MSG_GETTABLE, family), NLM_F_DUMP)
            .map_err(|e| NftError::wire(op, e, TIMEOUT))?;
        answer
            .iter()
            .map(|m| {
                parse_table(m).map_err(|msg| NftError::Protocol {
                    op: op.to_owned(),
                    msg,
                })
            })
            .collect()
    }
}

impl Nft {
    /// Every chain of `family`, in every table: the kernel filters a chain
    /// dump by family only.
    pub fn chains(&mut self, family: u8) -> Result<Vec<Chain>, NftError> {
        let op = "listing nf_tables chains";
        let answer = self
            .chan
            .request(&nft_req(NFT_MSG_GETCHAIN, family), NLM_F_DUMP)
            .map_err(|e| NftError::wire(op, e, TIMEOUT))?;
        answer
            .iter()
            .map(|m| parse_chain(m).map_err(protocol(op)))
            .collect()
    }

    /// Chain `name` of `table`, or `None` when either is not there.
    pub fn chain(
        &mut self,
        family: u8,
        table: &str,
        name: &str,
    ) -> Result<Option<Chain>, NftError> {
        let op = format!("looking up chain {name} of {table}");
        let mut req = nft_req(NFT_MSG_GETCHAIN, family);
        req.string(NFTA_CHAIN_TABLE, table)
            .string(NFTA_CHAIN_NAME, name);
        match self.chan.request(&req, 0) {
            Ok(answer) => match answer.first() {
                Some(m) => Ok(Some(parse_chain(m).map_err(protocol(&op))?)),
                None => Err(protocol(&op)("no answer".into())),
            },
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(NftError::wire(&op, e, TIMEOUT)),
        }
    }

    /// The elements of set `set` of `table`; none when the set or the
    /// table is not there.
    pub fn set_elems(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
    ) -> Result<Vec<SetElem>, NftError> {
        let op = format!("listing the elements of set {set} of {table}");
        let mut req = nft_req(NFT_MSG_GETSETELEM, family);
        req.string(NFTA_SET_ELEM_LIST_TABLE, table)
            .string(NFTA_SET_ELEM_LIST_SET, set);
        let answer = match self.chan.request(&req, NLM_F_DUMP) {
            Ok(a) => a,
            Err(e) if absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(NftError::wire(&op, e, TIMEOUT)),
        };
        let mut out = Vec::new();
        for m in &answer {
            parse_elems(m, &mut out).map_err(protocol(&op))?;
        }
        Ok(out)
    }
}

/// The kernel's answer for an object (or its table) that is not there.
fn absent(e: &crate::nlsock::WireError) -> bool {
    matches!(e, crate::nlsock::WireError::Kernel(e) if e.raw_os_error() == Some(libc::ENOENT))
}

/// The attributes of one nf_tables message of `kind` (after its header).
fn body(m: &[u8], kind: u8) -> Result<&[u8], String> {
    let got = u16::from_ne_bytes([m[4], m[5]]);
    if got != (NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind) {
        return Err(format!("unexpected message type {got:#x}"));
    }
    m.get(NLMSG_HDRLEN + 4..)
        .ok_or_else(|| "a message without its header".into())
}

fn string(data: &[u8]) -> String {
    let s = data.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(s).into_owned()
}

/// One NFT_MSG_NEWCHAIN message of a dump or a get.
pub fn parse_chain(m: &[u8]) -> Result<Chain, String> {
    let (mut table, mut name, mut handle, mut comment) = (None, None, None, None);
    for (kind, data) in attrs(body(m, NFT_MSG_NEWCHAIN)?) {
        match kind {
            NFTA_CHAIN_TABLE => table = Some(string(data)),
            NFTA_CHAIN_NAME => name = Some(string(data)),
            NFTA_CHAIN_HANDLE if data.len() == 8 => {
                handle = Some(u64::from_be_bytes(data.try_into().expect("8 bytes")));
            }
            NFTA_CHAIN_USERDATA => comment = udata_comment(data),
            _ => {}
        }
    }
    Ok(Chain {
        table: table.ok_or("a chain without a table")?,
        name: name.ok_or("a chain without a name")?,
        handle: handle.ok_or("a chain without a handle")?,
        comment,
    })
}

/// The elements in one NFT_MSG_NEWSETELEM message of a dump.
fn parse_elems(m: &[u8], out: &mut Vec<SetElem>) -> Result<(), String> {
    let value = |data: &[u8]| {
        attrs(data)
            .find(|(k, _)| *k == NFTA_DATA_VALUE)
            .map(|(_, v)| v.to_vec())
    };
    for (kind, list) in attrs(body(m, NFT_MSG_NEWSETELEM)?) {
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (_, elem) in attrs(list) {
            let (mut key, mut key_end) = (None, None);
            for (k, data) in attrs(elem) {
                match k {
                    NFTA_SET_ELEM_KEY => key = value(data),
                    NFTA_SET_ELEM_KEY_END => key_end = value(data),
                    _ => {}
                }
            }
            out.push(SetElem {
                key: key.ok_or("an element without a key")?,
                key_end,
            });
        }
    }
    Ok(())
}

/// One NFT_MSG_NEWTABLE message of a dump.
pub fn parse_table(m: &[u8]) -> Result<Table, String> {
    let (mut name, mut handle, mut comment) = (None, None, None);
    for (kind, data) in attrs(body(m, NFT_MSG_NEWTABLE)?) {
        match kind {
            NFTA_TABLE_NAME => name = Some(string(data)),
            NFTA_TABLE_HANDLE if data.len() == 8 => {
                handle = Some(u64::from_be_bytes(data.try_into().expect("8 bytes")));
            }
            NFTA_TABLE_USERDATA => comment = udata_comment(data),
            _ => {}
        }
    }
    Ok(Table {
        name: name.ok_or("a table without a name")?,
        handle: handle.ok_or("a table without a handle")?,
        comment,
    })
}

/// The comment in nft's table userdata: TLVs of a type byte and a length
/// byte; the comment is type 0, NUL-terminated.
fn udata_comment(mut data: &[u8]) -> Option<String> {
    while let [kind, len, rest @ ..] = data {
        let value = rest.get(..usize::from(*len))?;
        if *kind == 0 {
            let s = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        data = &rest[usize::from(*len)..];
    }
    None
}

/// The messages of the batch nft sends, as `nft --debug=mnl` prints
/// them: (type, everything after the netlink header), BATCH_BEGIN and END
/// left out; the oracle of tests that hold a batch to nft's bytes. The
/// dump shows each 4-byte word after the header on a line: attribute
/// headers as length, flags (N: nested, B: network byte order) and type,
/// the rest as hex bytes, padding included.
#[cfg(test)]
pub(crate) fn mnl_batch(dump: &str) -> Vec<(u16, Vec<u8>)> {
    let mut msgs: Vec<(u16, Vec<u8>)> = Vec::new();
    for raw in dump.lines() {
        // Attribute headers come coloured (ANSI escapes ending in 'm').
        let mut line = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|c| *c == 'm');
            } else {
                line.push(c);
            }
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if line.contains("|  type | flags  |") {
            msgs.push((cells[1].parse().unwrap(), Vec::new()));
        } else if line.contains("|len |flags| type|") {
            let len: u16 = cells[1].parse().unwrap();
            let mut kind: u16 = cells[3].parse().unwrap();
            if cells[2].contains('N') {
                kind |= crate::kernel::NLA_F_NESTED;
            }
            if cells[2].contains('B') {
                kind |= libc::NLA_F_NET_BYTEORDER as u16;
            }
            let body = &mut msgs.last_mut().unwrap().1;
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
        } else if line.contains("|      data      |") || line.contains("|  extra header  |") {
            let body = &mut msgs.last_mut().unwrap().1;
            body.extend(
                cells[1]
                    .split_whitespace()
                    .map(|b| u8::from_str_radix(b, 16).unwrap()),
            );
        }
    }
    let begin = |k: &u16| *k == crate::kernel::NFNL_MSG_BATCH_BEGIN;
    let end = |k: &u16| *k == crate::kernel::NFNL_MSG_BATCH_END;
    let first = msgs.iter().position(|(k, _)| begin(k)).expect("a batch");
    let last = msgs.iter().rposition(|(k, _)| end(k)).expect("a batch end");
    msgs[first + 1..last].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_message_is_read_back() {
        let m = msg::new_table(5, "kvmnet-guard-s0", "kvmnet guard tap=vm0");
        let mut r = m.req.clone();
        r.attr(NFTA_TABLE_HANDLE, &42u64.to_be_bytes());
        let mut wire = Vec::new();
        let len = (NLMSG_HDRLEN + r.body.len()) as u32;
        wire.extend_from_slice(&len.to_ne_bytes());
        wire.extend_from_slice(&r.kind.to_ne_bytes());
        wire.extend_from_slice(&[0; 10]);
        wire.extend_from_slice(&r.body);
        let t = parse_table(&wire).unwrap();
        assert_eq!(
            t,
            Table {
                name: "kvmnet-guard-s0".into(),
                handle: 42,
                comment: Some("kvmnet guard tap=vm0".into()),
            }
        );
    }

    #[test]
    fn comments_in_userdata_are_found_and_garbage_is_not_one() {
        assert_eq!(
            udata_comment(&[1, 1, 9, 0, 3, b'a', b'b', 0]).as_deref(),
            Some("ab")
        );
        assert_eq!(udata_comment(&[0, 9, b'a']), None);
        assert_eq!(udata_comment(&[]), None);
    }
}

/// Batches the kernel refuses, in a throwaway network namespace.
#[cfg(test)]
mod kernel_tests {
    use super::msg::{self, Elem};
    use super::*;
    use crate::guard::tests::{in_fresh_netns, run};
    use crate::kernel::NFPROTO_NETDEV;

    use crate::nft::msg::test_set as set;

    fn elem(key: &[u8], what: &str) -> Elem {
        Elem {
            key: key.to_vec(),
            key_end: None,
            what: what.into(),
        }
    }

    /// (e) A set element one byte too long fails the whole batch: the
    /// table and set made before it in the same batch are not there, and
    /// the error names the element the kernel pointed at, with its text
    /// when it gave one.
    #[test]
    fn a_malformed_batch_is_refused_whole_with_the_kernels_reasons() {
        let (err, left) = in_fresh_netns(|| {
            let f = NFPROTO_NETDEV;
            let mut msgs = vec![msg::new_table(f, "t", "test"), msg::new_set(f, &set())];
            msgs.extend(msg::set_elems(
                f,
                &set(),
                &[
                    elem(&[1, 0, 0, 0, 192, 0, 2, 1], "element 1 . 192.0.2.1"),
                    elem(&[1, 0, 0, 0, 192, 0, 2, 2, 9], "element of nine bytes"),
                ],
            ));
            let err = Nft::open().unwrap().apply("loading t", &msgs).unwrap_err();
            (err, run("nft", &["list", "ruleset"], ""))
        });
        assert_eq!(left.trim(), "", "the refused batch left {left}");
        eprintln!("{err}");
        match &err {
            NftError::Rejected { refusals, .. } => {
                assert_eq!(refusals.len(), 1, "{err}");
                let r = &refusals[0];
                assert_eq!(r.what, "adding elements to set s");
                assert_eq!(r.errno, libc::EINVAL, "{err}");
                assert_eq!(r.part.as_deref(), Some("element of nine bytes"), "{err}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// The kernel's own text reaches the error: a table name longer than
    /// NFT_TABLE_MAXNAMELEN fails the attribute policy, which the kernel
    /// reports in words (most nf_tables refusals only point at an
    /// attribute, as in the test above).
    #[test]
    fn the_kernels_text_reaches_the_error() {
        let (err, left) = in_fresh_netns(|| {
            let f = NFPROTO_NETDEV;
            let msgs = vec![
                msg::new_table(f, "t", "test"),
                msg::new_table(f, &"x".repeat(300), "test"),
            ];
            let err = Nft::open().unwrap().apply("loading t", &msgs).unwrap_err();
            (err, run("nft", &["list", "ruleset"], ""))
        });
        assert_eq!(left.trim(), "", "the refused batch left {left}");
        let NftError::Rejected { refusals, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(refusals.len(), 1, "{err}");
        assert_eq!(refusals[0].errno, libc::ERANGE, "{err}");
        assert_eq!(
            refusals[0].reason.as_deref(),
            Some("Attribute failed policy validation"),
            "{err}"
        );
        assert!(
            err.to_string().contains(
                "(kernel: \"Attribute failed policy validation\") at the attribute at byte 20"
            ),
            "{err}"
        );
    }

    /// A listing finds the tables of the family asked for, with handle
    /// and comment.
    #[test]
    fn tables_are_listed_with_handle_and_comment() {
        let tables = in_fresh_netns(|| {
            run(
                "nft",
                &["add table netdev a { comment \"kvmnet guard tap=x\"; }; add table inet b"],
                "",
            );
            Nft::open().unwrap().tables(NFPROTO_NETDEV).unwrap()
        });
        assert_eq!(tables.len(), 1, "{tables:?}");
        assert_eq!(tables[0].name, "a");
        assert_eq!(tables[0].comment.as_deref(), Some("kvmnet guard tap=x"));
        assert!(tables[0].handle > 0);
    }
}
