//! The messages of an nf_tables batch: each is a `struct nfgenmsg` and
//! attributes, numbers in network byte order, nests flagged NLA_F_NESTED,
//! laid out attribute for attribute as nft 1.0.6 lays out the same object
//! (tests/guard.rs holds a batch to nft's own bytes).

use std::ops::Range;

use crate::kernel::{
    NFNETLINK_V0, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES,
    NFTA_CHAIN_HANDLE, NFTA_CHAIN_HOOK, NFTA_CHAIN_NAME, NFTA_CHAIN_POLICY, NFTA_CHAIN_TABLE,
    NFTA_CHAIN_TYPE, NFTA_CHAIN_USERDATA, NFTA_DATA_VALUE, NFTA_HOOK_DEV, NFTA_HOOK_HOOKNUM,
    NFTA_HOOK_PRIORITY, NFTA_LIST_ELEM, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE,
    NFTA_SET_DESC, NFTA_SET_DESC_CONCAT, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_KEY_END,
    NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_SET_ID,
    NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_FIELD_LEN, NFTA_SET_FLAGS, NFTA_SET_ID, NFTA_SET_KEY_LEN,
    NFTA_SET_KEY_TYPE, NFTA_SET_NAME, NFTA_SET_TABLE, NFTA_SET_USERDATA, NFTA_TABLE_FLAGS,
    NFTA_TABLE_HANDLE, NFTA_TABLE_NAME, NFTA_TABLE_USERDATA, NFT_MSG_DELCHAIN, NFT_MSG_DELSETELEM,
    NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM,
    NFT_MSG_NEWTABLE, NFT_SET_CONCAT, NLA_F_NESTED, NLM_F_APPEND,
};
use crate::nlreq::Request;
use crate::nlsock::{NLMSG_HDRLEN, NLM_F_ACK, NLM_F_CREATE};

use super::expr::Expr;

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

/// A comment as nft stores it in a table's or a chain's userdata
/// (NFTNL_UDATA_TABLE_COMMENT, NFTNL_UDATA_CHAIN_COMMENT: both type 0):
/// type, length (with the NUL), text, NUL.
fn comment_udata(comment: &str) -> Vec<u8> {
    let mut udata = vec![0u8, 0];
    udata.extend_from_slice(comment.as_bytes());
    udata.push(0);
    udata[1] = u8::try_from(comment.len() + 1).expect("comments are short");
    udata
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
    m.req.attr(NFTA_TABLE_USERDATA, &comment_udata(comment));
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

/// DELTABLE of an emptied table by handle, refused (EBUSY) when anything
/// is still in it: what the same batch does not delete before it.
pub fn delete_empty_table(family: u8, name: &str, handle: u64) -> Msg {
    let mut m = delete_table(family, name, Some(handle));
    m.flags |= crate::nlsock::NLM_F_NONREC;
    m
}

/// DELSET by name.
pub fn delete_set(family: u8, table: &str, name: &str) -> Msg {
    let mut m = Msg::new(
        crate::kernel::NFT_MSG_DELSET,
        family,
        0,
        format!("deleting set {name}"),
    );
    m.req
        .string(NFTA_SET_TABLE, table)
        .string(NFTA_SET_NAME, name);
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

/// nft's `type` of a base chain: what its rules may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    /// Sees the first packet of each connection only; its NAT holds for
    /// the whole connection.
    Nat,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// A base chain of any family: its type, its hook, and for a netdev chain
/// the device (the other families hook every device at once).
pub struct BaseChain<'a> {
    pub kind: ChainType,
    pub hooknum: u32,
    pub priority: i32,
    pub device: Option<&'a str>,
    /// The verdict for what no rule decides (NF_DROP, NF_ACCEPT).
    pub policy: i32,
}

impl<'a> From<&Hook<'a>> for BaseChain<'a> {
    fn from(h: &Hook<'a>) -> BaseChain<'a> {
        BaseChain {
            kind: ChainType::Filter,
            hooknum: h.hooknum,
            priority: h.priority,
            device: Some(h.device),
            policy: h.policy,
        }
    }
}

/// NEWCHAIN: a regular chain, or a base chain of type filter on `hook`;
/// with nft's chain comment when `comment` is given.
pub fn new_chain(
    family: u8,
    table: &str,
    name: &str,
    hook: Option<&Hook>,
    comment: Option<&str>,
) -> Msg {
    chain_msg(
        family,
        table,
        name,
        hook.map(BaseChain::from).as_ref(),
        comment,
    )
}

/// NEWCHAIN of base chain `base`, with nft's chain comment when `comment`
/// is given.
pub fn new_base_chain(
    family: u8,
    table: &str,
    name: &str,
    base: &BaseChain,
    comment: Option<&str>,
) -> Msg {
    chain_msg(family, table, name, Some(base), comment)
}

fn chain_msg(
    family: u8,
    table: &str,
    name: &str,
    base: Option<&BaseChain>,
    comment: Option<&str>,
) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_NEWCHAIN,
        family,
        NLM_F_CREATE,
        format!("creating chain {name}"),
    );
    let r = &mut m.req;
    r.string(NFTA_CHAIN_TABLE, table)
        .string(NFTA_CHAIN_NAME, name);
    if let Some(b) = base {
        r.string(NFTA_CHAIN_TYPE, b.kind.name());
        be32(r, NFTA_CHAIN_POLICY, b.policy as u32);
        nest(r, NFTA_CHAIN_HOOK, |r| {
            be32(r, NFTA_HOOK_HOOKNUM, b.hooknum);
            be32(r, NFTA_HOOK_PRIORITY, b.priority as u32);
            if let Some(dev) = b.device {
                r.string(NFTA_HOOK_DEV, dev);
            }
        });
    }
    if let Some(c) = comment {
        r.attr(NFTA_CHAIN_USERDATA, &comment_udata(c));
    }
    m
}

/// DELCHAIN of `name` in `table`, with its rules. The kernel refuses it
/// (EBUSY) while a rule of another chain still jumps to it.
pub fn delete_chain(family: u8, table: &str, name: &str) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_DELCHAIN,
        family,
        0,
        format!("deleting chain {name}"),
    );
    m.req
        .string(NFTA_CHAIN_TABLE, table)
        .string(NFTA_CHAIN_NAME, name);
    m
}

/// DELCHAIN by handle: only that very chain, never one made since under
/// the same name.
pub fn delete_chain_handle(family: u8, table: &str, name: &str, handle: u64) -> Msg {
    let mut m = Msg::new(
        NFT_MSG_DELCHAIN,
        family,
        0,
        format!("deleting chain {name}"),
    );
    m.req.string(NFTA_CHAIN_TABLE, table);
    m.req.attr(NFTA_CHAIN_HANDLE, &handle.to_be_bytes());
    m
}

/// One field of a concatenated key, as nft describes it in `typeof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `meta KEY` of `len` bytes and nft datatype `dtype`.
    Meta { key: u32, len: u32, dtype: u32 },
    /// A header field nft knows by name: its protocol description and
    /// template numbers (nft's proto.h), `len` bytes of datatype `dtype`.
    Payload {
        desc: u32,
        tmpl: u32,
        len: u32,
        dtype: u32,
    },
    /// `@BASE,OFFSET,LEN` (bits).
    Raw { base: u32, offset: u32, len: u32 },
}

impl Field {
    /// Its length in bytes, before padding.
    pub fn len(&self) -> u32 {
        match *self {
            Field::Meta { len, .. } | Field::Payload { len, .. } => len,
            Field::Raw { len, .. } => len / 8,
        }
    }

    fn dtype(&self) -> u32 {
        match *self {
            Field::Meta { dtype, .. } | Field::Payload { dtype, .. } => dtype,
            Field::Raw { .. } => TYPE_INTEGER,
        }
    }

    /// nft's typeof description of the field (libnftnl TLVs): the
    /// expression's kind (meta 9, payload 7), then its own attributes.
    fn udata(&self) -> Vec<u8> {
        let (kind, fields): (u32, Vec<u32>) = match *self {
            Field::Meta { key, .. } => (9, vec![key]),
            Field::Payload { desc, tmpl, .. } => (7, vec![desc, tmpl]),
            Field::Raw { base, offset, len } => (7, vec![0, 0, base + 1, offset, len]),
        };
        let mut data = Vec::new();
        for (i, v) in fields.into_iter().enumerate() {
            tlv(&mut data, i as u8, &v.to_ne_bytes());
        }
        let mut out = Vec::new();
        tlv(&mut out, 0, &kind.to_ne_bytes());
        tlv(&mut out, 1, &data);
        out
    }
}

/// One libnftnl userdata TLV: a type byte, a length byte, the value.
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.push(u8::try_from(value.len()).expect("userdata values are short"));
    out.extend_from_slice(value);
}

/// A concatenated key's length in the kernel: each field takes whole
/// 32-bit registers.
pub fn key_len(fields: &[Field]) -> u32 {
    fields.iter().map(|f| f.len().div_ceil(4) * 4).sum()
}

/// nft's datatype numbers (TYPE_* in nft's datatype.h).
pub const TYPE_INTEGER: u32 = 4;
pub const TYPE_IPADDR: u32 = 7;
pub const TYPE_IP6ADDR: u32 = 8;
pub const TYPE_ETHERADDR: u32 = 9;
pub const TYPE_IFINDEX: u32 = 20;
/// nft's datatype of a concatenation: its fields' types, six bits each.
const TYPE_BITS: u32 = 6;

pub struct SetDef<'a> {
    pub table: &'a str,
    pub name: &'a str,
    /// In the batch: rules and elements refer to the set by it as well as
    /// by name (nft numbers its sets from 1).
    pub id: u32,
    /// The key, `typeof A . B`: a concatenation (every guard set starts
    /// with the interface index).
    pub key: &'a [Field],
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
        // An interval set with a concatenated key (the kernel's pipapo).
        crate::kernel::NFT_SET_INTERVAL | NFT_SET_CONCAT
    } else {
        0
    };
    be32(r, NFTA_SET_FLAGS, flags);
    let key_type = s
        .key
        .iter()
        .fold(0, |acc, f| (acc << TYPE_BITS) | f.dtype());
    be32(r, NFTA_SET_KEY_TYPE, key_type);
    be32(r, NFTA_SET_KEY_LEN, key_len(s.key));
    be32(r, NFTA_SET_ID, s.id);
    if s.interval {
        // pipapo matches each field as a range of its own: it needs
        // their lengths.
        nest(r, NFTA_SET_DESC, |r| {
            nest(r, NFTA_SET_DESC_CONCAT, |r| {
                for f in s.key {
                    nest(r, crate::kernel::NFTA_LIST_ELEM, |r| {
                        be32(r, NFTA_SET_FIELD_LEN, f.len());
                    });
                }
            });
        });
    }
    // nft's set userdata (libnftnl TLVs: type, length, value in host
    // order): the key's byte order, none for a concatenation (0); its
    // `typeof` (3): the concat expression (13) and each field's
    // description in turn.
    let mut udata = Vec::new();
    tlv(&mut udata, 0, &0u32.to_ne_bytes());
    let mut each = Vec::new();
    for (i, f) in s.key.iter().enumerate() {
        tlv(&mut each, i as u8, &f.udata());
    }
    let mut typeof_ = Vec::new();
    tlv(&mut typeof_, 0, &13u32.to_ne_bytes());
    tlv(&mut typeof_, 1, &each);
    tlv(&mut udata, 3, &typeof_);
    r.attr(NFTA_SET_USERDATA, &udata);
    m
}

/// One element of a set: a key, or for an interval set a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub key: Vec<u8>,
    /// In a set with a concatenated interval key: the last key of the
    /// range that starts at `key` (NFTA_SET_ELEM_KEY_END).
    pub key_end: Option<Vec<u8>>,
    /// What the element stands for, in words (for errors).
    pub what: String,
}

impl Elem {
    /// A single key, or with `key_end` a range of a concatenated key.
    pub fn new(key: Vec<u8>, key_end: Option<Vec<u8>>, what: String) -> Elem {
        Elem { key, key_end, what }
    }
}

/// NEWSETELEM messages adding `elems` to set `s`, at most
/// [`ELEMENTS_PER_MESSAGE`] per message.
pub fn set_elems(family: u8, s: &SetDef, elems: &[Elem]) -> Vec<Msg> {
    elem_msgs(family, s, elems, true)
}

/// DELSETELEM messages removing `elems` (each as the kernel holds it: a
/// range by its start and end) from set `s`.
pub fn delete_set_elems(family: u8, s: &SetDef, elems: &[Elem]) -> Vec<Msg> {
    elem_msgs(family, s, elems, false)
}

fn elem_msgs(family: u8, s: &SetDef, elems: &[Elem], add: bool) -> Vec<Msg> {
    elems
        .chunks(ELEMENTS_PER_MESSAGE)
        .map(|chunk| {
            let mut m = if add {
                Msg::new(
                    NFT_MSG_NEWSETELEM,
                    family,
                    NLM_F_CREATE,
                    format!("adding elements to set {}", s.name),
                )
            } else {
                Msg::new(
                    NFT_MSG_DELSETELEM,
                    family,
                    0,
                    format!("removing elements from set {}", s.name),
                )
            };
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
                        value(r, NFTA_SET_ELEM_KEY, &e.key);
                        if let Some(end) = &e.key_end {
                            value(r, NFTA_SET_ELEM_KEY_END, end);
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

/// A small set of table "t" keyed by an interface index and an IPv4
/// address (eight bytes), for the reader's unit tests.
#[cfg(test)]
pub(crate) fn test_set() -> SetDef<'static> {
    SetDef {
        table: "t",
        name: "s",
        id: 1,
        key: &[
            Field::Meta {
                key: crate::kernel::NFT_META_IIF,
                len: 4,
                dtype: TYPE_IFINDEX,
            },
            Field::Payload {
                desc: 12,
                tmpl: 11,
                len: 4,
                dtype: TYPE_IPADDR,
            },
        ],
        interval: false,
    }
}
