//! The messages of an nf_tables batch: each is a `struct nfgenmsg` and
//! attributes, numbers in network byte order, nests flagged NLA_F_NESTED,
//! laid out attribute for attribute as nft 1.0.6 lays out the same object
//! (tests/guard_nft.rs holds a batch to nft's own bytes).

use std::ops::Range;

use crate::kernel::{
    NFNETLINK_V0, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFTA_CHAIN_HOOK,
    NFTA_CHAIN_NAME, NFTA_CHAIN_POLICY, NFTA_CHAIN_TABLE, NFTA_CHAIN_TYPE, NFTA_DATA_VALUE,
    NFTA_HOOK_DEV, NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY, NFTA_LIST_ELEM, NFTA_RULE_CHAIN,
    NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE, NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_SET_ID,
    NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_FLAGS, NFTA_SET_ID, NFTA_SET_KEY_LEN, NFTA_SET_KEY_TYPE,
    NFTA_SET_NAME, NFTA_SET_TABLE, NFTA_SET_USERDATA, NFTA_TABLE_FLAGS, NFTA_TABLE_HANDLE,
    NFTA_TABLE_NAME, NFTA_TABLE_USERDATA, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE,
    NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM, NFT_MSG_NEWTABLE, NFT_SET_ELEM_INTERVAL_END, NLA_F_NESTED,
    NLM_F_APPEND,
};
use crate::nlreq::Request;
use crate::nlsock::{NLMSG_HDRLEN, NLM_F_ACK, NLM_F_CREATE};

use super::expr::Expr;

/// Element userdata nft attaches to an interval that runs to the top of the
/// key space (NFTNL_UDATA_SET_ELEM_FLAGS: NFTNL_SET_ELEM_F_INTERVAL_OPEN),
/// which therefore has no end element.
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const UDATA_ELEM_INTERVAL_OPEN: [u8; 6] = [1, 4, 1, 0, 0, 0];

/// Set elements per NEWSETELEM message: an IPv6 interval takes 64 bytes,
/// so a message stays far below the 64 KiB an attribute can hold.
pub const ELEMENTS_PER_MESSAGE: usize = 256;

/// One message of a batch, with what it does in words (for errors) and the
/// byte ranges of its parts that deserve a name of their own (a set element,
/// a rule's expression): the kernel's extended ack points into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub req: Request,
    pub flags: u16,
    pub what: String,
    /// (range within the message, counted from its netlink header; name)
    pub parts: Vec<(Range<usize>, String)>,
}

impl Msg {
    fn new(kind: u8, family: u8, flags: u16, what: String) -> Msg {
        let mut body = Vec::with_capacity(128);
        // struct nfgenmsg: family, version, res_id (big-endian; 0 here)
        body.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]);
        Msg {
            req: Request {
                kind: (NFNL_SUBSYS_NFTABLES << 8) | u16::from(kind),
                body,
            },
            flags: flags | NLM_F_ACK,
            what,
            parts: Vec::new(),
        }
    }

    /// The name of the part of this message at `offset` (from its netlink
    /// header), the innermost one when parts nest.
    pub fn part_at(&self, offset: usize) -> Option<&str> {
        self.parts
            .iter()
            .filter(|(r, _)| r.contains(&offset))
            .min_by_key(|(r, _)| r.len())
            .map(|(_, name)| name.as_str())
    }
}

pub fn be32(r: &mut Request, kind: u16, v: u32) {
    r.attr(kind, &v.to_be_bytes());
}

/// A nest, flagged as nft flags it.
pub fn nest(r: &mut Request, kind: u16, fill: impl FnOnce(&mut Request)) {
    r.nest(kind | NLA_F_NESTED, fill);
}

/// NFTA_DATA_VALUE inside attribute `kind`.
pub fn value(r: &mut Request, kind: u16, bytes: &[u8]) {
    nest(r, kind, |r| {
        r.attr(NFTA_DATA_VALUE, bytes);
    });
}

/// NFNL_MSG_BATCH_BEGIN / _END: the frame of a batch, addressed to the
/// nf_tables subsystem. Not acknowledged (the kernel answers them only
/// when it refuses the whole batch).
pub fn batch_frame(begin: bool) -> (Request, u16) {
    let kind = if begin {
        NFNL_MSG_BATCH_BEGIN
    } else {
        NFNL_MSG_BATCH_END
    };
    let mut body = vec![libc::AF_UNSPEC as u8, NFNETLINK_V0];
    body.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    (Request { kind, body }, 0)
}

/// NEWTABLE: `table FAMILY NAME`, created if missing, left alone if there
/// (no flags, no userdata: an existing table is not changed).
pub fn ensure_table(family: u8, name: &str) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_NEWTABLE,
        family,
        NLM_F_CREATE,
        format!("adding table {name}"),
    );
    m.req.string(NFTA_TABLE_NAME, name);
    m
}

/// NEWTABLE of a new table with `comment` (nft's table comment userdata).
pub fn new_table(family: u8, name: &str, comment: &str) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_NEWTABLE,
        family,
        NLM_F_CREATE,
        format!("creating table {name}"),
    );
    m.req.string(NFTA_TABLE_NAME, name);
    be32(&mut m.req, NFTA_TABLE_FLAGS, 0);
    // NFTNL_UDATA_TABLE_COMMENT: type, length (with the NUL), text, NUL
    let mut udata = vec![0u8, 0];
    udata.extend_from_slice(comment.as_bytes());
    udata.push(0);
    udata[1] = u8::try_from(comment.len() + 1).expect("table comments are short");
    m.req.attr(NFTA_TABLE_USERDATA, &udata);
    m
}

/// DELTABLE by name, or by handle (`Some`): then only that very table,
/// never one made since under the same name.
pub fn delete_table(family: u8, name: &str, handle: Option<u64>) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_DELTABLE,
        family,
        0,
        format!("deleting table {name}"),
    );
    match handle {
        Some(h) => {
            m.req.attr(NFTA_TABLE_HANDLE, &h.to_be_bytes());
        }
        None => {
            m.req.string(NFTA_TABLE_NAME, name);
        }
    }
    m
}

/// A base chain's hook: on `device`, at `hooknum`, with `priority`.
pub struct Hook<'a> {
    pub hooknum: u32,
    pub priority: i32,
    pub device: &'a str,
    /// The verdict for what no rule decides (NF_DROP, NF_ACCEPT).
    pub policy: i32,
}

/// NEWCHAIN: a regular chain, or a base chain of type filter on `hook`.
pub fn new_chain(family: u8, table: &str, name: &str, hook: Option<&Hook>) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_NEWCHAIN,
        family,
        NLM_F_CREATE,
        format!("creating chain {name}"),
    );
    let r = &mut m.req;
    r.string(NFTA_CHAIN_TABLE, table)
        .string(NFTA_CHAIN_NAME, name);
    if let Some(h) = hook {
        r.string(NFTA_CHAIN_TYPE, "filter");
        be32(r, NFTA_CHAIN_POLICY, h.policy as u32);
        nest(r, NFTA_CHAIN_HOOK, |r| {
            be32(r, NFTA_HOOK_HOOKNUM, h.hooknum);
            be32(r, NFTA_HOOK_PRIORITY, h.priority as u32);
            r.string(NFTA_HOOK_DEV, h.device);
        });
    }
    m
}

/// How nft declares a set's key, which decides how it prints the elements
/// (userdata the kernel keeps and never reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `type ether_addr` / `ipv4_addr` / `ipv6_addr`: nft's datatype number.
    Named(u32),
    /// `typeof @BASE,OFFSET,LEN`: a raw payload of `base` (in bits).
    RawPayload { base: u32, offset: u32, len: u32 },
}

/// nft's datatype numbers (TYPE_* in nft's datatype.h).
pub const TYPE_INTEGER: u32 = 4;
pub const TYPE_IPADDR: u32 = 7;
pub const TYPE_IP6ADDR: u32 = 8;
pub const TYPE_ETHERADDR: u32 = 9;

pub struct SetDef<'a> {
    pub table: &'a str,
    pub name: &'a str,
    /// In the batch: rules and elements refer to the set by it as well as
    /// by name (nft numbers its sets from 1).
    pub id: u32,
    pub key: KeyType,
    pub key_len: u32,
    pub interval: bool,
}

pub fn new_set(family: u8, s: &SetDef) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_NEWSET,
        family,
        NLM_F_CREATE,
        format!("creating set {}", s.name),
    );
    let r = &mut m.req;
    r.string(NFTA_SET_TABLE, s.table)
        .string(NFTA_SET_NAME, s.name);
    let flags = if s.interval {
        crate::kernel::NFT_SET_INTERVAL
    } else {
        0
    };
    be32(r, NFTA_SET_FLAGS, flags);
    let key_type = match s.key {
        KeyType::Named(t) => t,
        KeyType::RawPayload { .. } => TYPE_INTEGER,
    };
    be32(r, NFTA_SET_KEY_TYPE, key_type);
    be32(r, NFTA_SET_KEY_LEN, s.key_len);
    be32(r, NFTA_SET_ID, s.id);
    // nft's set userdata (libnftnl TLVs: type, length, value in host
    // order): the key's byte order, big-endian (2); for `typeof`, the
    // expression (7: payload) and its description (0 and 0: a raw payload,
    // then base, offset and length in bits; nft counts bases from the link
    // layer's 1 where the kernel counts from 0).
    let mut udata = vec![0u8, 4];
    udata.extend_from_slice(&2u32.to_ne_bytes());
    if let KeyType::RawPayload { base, offset, len } = s.key {
        udata.extend_from_slice(&[3, 38, 0, 4]);
        udata.extend_from_slice(&7u32.to_ne_bytes());
        udata.extend_from_slice(&[1, 30]);
        for (i, v) in [0u32, 0, base + 1, offset, len].into_iter().enumerate() {
            udata.extend_from_slice(&[i as u8, 4]);
            udata.extend_from_slice(&v.to_ne_bytes());
        }
    }
    r.attr(NFTA_SET_USERDATA, &udata);
    m
}

/// One element of a set: a key, or for an interval set a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub key: Vec<u8>,
    /// The first key past an interval (NFT_SET_ELEM_INTERVAL_END).
    pub end: bool,
    /// The start of an interval that runs to the top of the key space.
    pub open: bool,
    /// What the element stands for, in words (for errors).
    pub what: String,
}

/// NEWSETELEM messages adding `elems` to set `s`, at most
/// [`ELEMENTS_PER_MESSAGE`] per message.
pub fn set_elems(family: u8, s: &SetDef, elems: &[Elem]) -> Vec<Msg> {
    elems
        .chunks(ELEMENTS_PER_MESSAGE)
        .map(|chunk| {
            let mut m = Msg::new(
                NFT_MSG_NEWSETELEM,
                family,
                NLM_F_CREATE,
                format!("adding elements to set {}", s.name),
            );
            m.req
                .string(NFTA_SET_ELEM_LIST_TABLE, s.table)
                .string(NFTA_SET_ELEM_LIST_SET, s.name);
            be32(&mut m.req, NFTA_SET_ELEM_LIST_SET_ID, s.id);
            let mut marks = Vec::new();
            nest(&mut m.req, NFTA_SET_ELEM_LIST_ELEMENTS, |r| {
                // nft numbers the list's entries from 1; the kernel reads
                // them in order, whatever their type.
                for (i, e) in chunk.iter().enumerate() {
                    let start = r.body.len();
                    nest(r, i as u16 + 1, |r| {
                        if e.end {
                            be32(r, NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                        }
                        value(r, NFTA_SET_ELEM_KEY, &e.key);
                        if e.open {
                            r.attr(NFTA_SET_ELEM_USERDATA, &UDATA_ELEM_INTERVAL_OPEN);
                        }
                    });
                    marks.push((start, r.body.len(), e.what.clone()));
                }
            });
            for (start, end, what) in marks {
                m.parts
                    .push((NLMSG_HDRLEN + start..NLMSG_HDRLEN + end, what));
            }
            m
        })
        .collect()
}

/// NEWRULE appending `exprs` to `chain`; `what` says what the rule is for.
pub fn new_rule(family: u8, table: &str, chain: &str, exprs: &[Expr], what: &str) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_NEWRULE,
        family,
        NLM_F_CREATE | NLM_F_APPEND,
        format!("adding rule \"{what}\" to chain {chain}"),
    );
    m.req
        .string(NFTA_RULE_TABLE, table)
        .string(NFTA_RULE_CHAIN, chain);
    let mut marks = Vec::new();
    nest(&mut m.req, NFTA_RULE_EXPRESSIONS, |r| {
        for (i, e) in exprs.iter().enumerate() {
            let start = r.body.len();
            nest(r, NFTA_LIST_ELEM, |r| e.encode(r));
            marks.push((
                start,
                r.body.len(),
                format!("expression {} ({})", i + 1, e.name()),
            ));
        }
    });
    for (start, end, what) in marks {
        m.parts
            .push((NLMSG_HDRLEN + start..NLMSG_HDRLEN + end, what));
    }
    m
}

/// A small IPv4 address set of table "t", for the reader's unit tests.
#[cfg(test)]
pub(crate) fn test_set() -> SetDef<'static> {
    SetDef {
        table: "t",
        name: "s",
        id: 1,
        key: KeyType::Named(TYPE_IPADDR),
        key_len: 4,
        interval: false,
    }
}
