//! The nf_tables expressions kvmnet's rules (the guard's, a private
//! network's) are made of, encoded as nft 1.0.6 encodes them (attribute
//! order included). Values go through register 1, as nft's own rules do; a
//! concatenation's second field goes to the 32-bit register after the first
//! field.

use crate::kernel::{
    NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_MASK, NFTA_BITWISE_SREG, NFTA_BITWISE_XOR,
    NFTA_BYTEORDER_DREG, NFTA_BYTEORDER_LEN, NFTA_BYTEORDER_OP, NFTA_BYTEORDER_SIZE,
    NFTA_BYTEORDER_SREG, NFTA_CMP_DATA, NFTA_CMP_OP, NFTA_CMP_SREG, NFTA_CT_DREG, NFTA_CT_KEY,
    NFTA_DATA_VERDICT, NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_IMMEDIATE_DATA, NFTA_IMMEDIATE_DREG,
    NFTA_LIMIT_BURST, NFTA_LIMIT_FLAGS, NFTA_LIMIT_RATE, NFTA_LIMIT_TYPE, NFTA_LIMIT_UNIT,
    NFTA_LOOKUP_FLAGS, NFTA_LOOKUP_SET, NFTA_LOOKUP_SET_ID, NFTA_LOOKUP_SREG, NFTA_META_DREG,
    NFTA_META_KEY, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_LEN, NFTA_PAYLOAD_OFFSET,
    NFTA_VERDICT_CHAIN, NFTA_VERDICT_CODE, NFT_BYTEORDER_HTON, NFT_CMP_EQ, NFT_CMP_NEQ, NFT_JUMP,
    NFT_LIMIT_F_INV, NFT_LIMIT_PKT_BYTES, NFT_LOOKUP_F_INV, NFT_REG_1, NFT_REG_VERDICT, NFT_RETURN,
    NF_ACCEPT, NF_DROP,
};
use crate::nlreq::Request;

use super::msg::{be32, nest, value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// To a regular chain of the same table.
    Jump(String),
    /// Back to the rule after the jump.
    Return,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta KEY` into register 1.
    Meta(u32),
    /// `len` bytes at `offset` of header `base` (NFT_PAYLOAD_*) into
    /// register `dreg` (NFT_REG_1, or a 32-bit register of a concatenation).
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// Register 1's first four bytes to network byte order: an interface
    /// index (host order) as the first field of a key whose ranges the
    /// kernel compares byte by byte.
    Hton32,
    /// Register 1 ANDed with `mask` (its length is the width): nft's
    /// bitwise for a prefix that ends inside a byte and for a test of
    /// flags, always with an XOR of zeros.
    Mask(Vec<u8>),
    /// `ct KEY` into register 1 (the packet's conntrack entry).
    Ct(u32),
    /// Register 1 compared with `data` (its length is the compared width).
    Cmp {
        eq: bool,
        data: Vec<u8>,
    },
    /// Register 1 looked up in a set of the same table (`inv`: matches
    /// when absent).
    Lookup {
        set: String,
        set_id: u32,
        inv: bool,
    },
    /// `limit rate [over] RATE bytes/second burst BURST bytes`: a token
    /// bucket over the packet's bytes as the hook sees them (`skb->len`).
    /// `over` inverts it: the rule matches the traffic above the rate.
    /// The kernel's bucket holds a second of the rate on top of `burst`
    /// (docs/rate-design.md).
    Limit {
        bytes_per_sec: u64,
        burst: u32,
        over: bool,
    },
    /// Source NAT to the address of the interface the packet leaves by.
    Masquerade,
    Verdict(Verdict),
}

impl Expr {
    /// The kernel's name of the expression.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Meta(_) => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Hton32 => "byteorder",
            Expr::Mask(_) => "bitwise",
            Expr::Ct(_) => "ct",
            Expr::Masquerade => "masq",
            Expr::Cmp { .. } => "cmp",
            Expr::Lookup { .. } => "lookup",
            Expr::Limit { .. } => "limit",
            Expr::Verdict(_) => "immediate",
        }
    }

    /// NFTA_EXPR_NAME and NFTA_EXPR_DATA, into an NFTA_LIST_ELEM.
    pub fn encode(&self, r: &mut Request) {
        r.string(NFTA_EXPR_NAME, self.name());
        nest(r, NFTA_EXPR_DATA, |r| match self {
            Expr::Meta(key) => {
                be32(r, NFTA_META_KEY, *key);
                be32(r, NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                be32(r, NFTA_PAYLOAD_DREG, *dreg);
                be32(r, NFTA_PAYLOAD_BASE, *base);
                be32(r, NFTA_PAYLOAD_OFFSET, *offset);
                be32(r, NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Hton32 => {
                be32(r, NFTA_BYTEORDER_SREG, NFT_REG_1);
                be32(r, NFTA_BYTEORDER_DREG, NFT_REG_1);
                be32(r, NFTA_BYTEORDER_OP, NFT_BYTEORDER_HTON);
                be32(r, NFTA_BYTEORDER_LEN, 4);
                be32(r, NFTA_BYTEORDER_SIZE, 4);
            }
            Expr::Mask(mask) => {
                be32(r, NFTA_BITWISE_SREG, NFT_REG_1);
                be32(r, NFTA_BITWISE_DREG, NFT_REG_1);
                be32(r, NFTA_BITWISE_LEN, mask.len() as u32);
                value(r, NFTA_BITWISE_MASK, mask);
                value(r, NFTA_BITWISE_XOR, &vec![0; mask.len()]);
            }
            Expr::Ct(key) => {
                be32(r, NFTA_CT_KEY, *key);
                be32(r, NFTA_CT_DREG, NFT_REG_1);
            }
            // Masquerading to any port of the interface's address: no
            // attributes, as nft sends a bare `masquerade`.
            Expr::Masquerade => {}
            Expr::Cmp { eq, data } => {
                be32(r, NFTA_CMP_SREG, NFT_REG_1);
                be32(r, NFTA_CMP_OP, if *eq { NFT_CMP_EQ } else { NFT_CMP_NEQ });
                value(r, NFTA_CMP_DATA, data);
            }
            Expr::Lookup { set, set_id, inv } => {
                be32(r, NFTA_LOOKUP_SREG, NFT_REG_1);
                r.string(NFTA_LOOKUP_SET, set);
                be32(r, NFTA_LOOKUP_SET_ID, *set_id);
                if *inv {
                    be32(r, NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Limit {
                bytes_per_sec,
                burst,
                over,
            } => {
                // The rate is per unit, and the unit is in seconds: nft
                // writes `bytes/second` as the rate over a unit of one.
                r.attr(NFTA_LIMIT_RATE, &bytes_per_sec.to_be_bytes());
                r.attr(NFTA_LIMIT_UNIT, &1u64.to_be_bytes());
                be32(r, NFTA_LIMIT_BURST, *burst);
                be32(r, NFTA_LIMIT_TYPE, NFT_LIMIT_PKT_BYTES);
                be32(r, NFTA_LIMIT_FLAGS, if *over { NFT_LIMIT_F_INV } else { 0 });
            }
            Expr::Verdict(v) => {
                be32(r, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                nest(r, NFTA_IMMEDIATE_DATA, |r| {
                    nest(r, NFTA_DATA_VERDICT, |r| {
                        let (code, chain) = match v {
                            Verdict::Accept => (NF_ACCEPT, None),
                            Verdict::Drop => (NF_DROP, None),
                            Verdict::Jump(c) => (NFT_JUMP, Some(c)),
                            Verdict::Return => (NFT_RETURN, None),
                        };
                        be32(r, NFTA_VERDICT_CODE, code as u32);
                        if let Some(c) = chain {
                            r.string(NFTA_VERDICT_CHAIN, c);
                        }
                    });
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(e: &Expr) -> Vec<u8> {
        let mut r = Request {
            kind: 0,
            body: Vec::new(),
        };
        e.encode(&mut r);
        r.body
    }

    /// `ether type arp jump guest-arp`'s verdict, as nft --debug=mnl shows
    /// nft 1.0.6 sending it.
    #[test]
    fn a_jump_is_laid_out_as_nft_lays_it_out() {
        let got = encoded(&Expr::Verdict(Verdict::Jump("c".into())));
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[14u8, 0, 1, 0][..], b"immediate\0\0\0",
            &[36, 0, 2, 0x80], &[8, 0, 1, 0], &[0, 0, 0, 0],
            &[24, 0, 2, 0x80], &[20, 0, 2, 0x80],
            &[8, 0, 1, 0], &[0xff, 0xff, 0xff, 0xfd],
            &[6, 0, 2, 0], b"c\0\0\0",
        ]
        .concat();
        assert_eq!(got, want);
    }

    /// `limit rate over 1250000 bytes/second burst 65536 bytes`, as nft
    /// --debug=mnl shows nft 1.0.6 sending it: 64-bit rate and unit without
    /// padding, then burst, type and flags, all in network byte order.
    #[test]
    fn a_byte_limit_is_laid_out_as_nft_lays_it_out() {
        let got = encoded(&Expr::Limit {
            bytes_per_sec: 1_250_000,
            burst: 65_536,
            over: true,
        });
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[10u8, 0, 1, 0][..], b"limit\0\0\0",
            &[52, 0, 2, 0x80],
            &[12, 0, 1, 0], &[0, 0, 0, 0, 0, 0x13, 0x12, 0xd0],
            &[12, 0, 2, 0], &[0, 0, 0, 0, 0, 0, 0, 1],
            &[8, 0, 3, 0], &[0, 1, 0, 0],
            &[8, 0, 4, 0], &[0, 0, 0, 1],
            &[8, 0, 5, 0], &[0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(got, want);
        let under = encoded(&Expr::Limit {
            bytes_per_sec: 1_250_000,
            burst: 65_536,
            over: false,
        });
        assert_eq!(&under[under.len() - 4..], &[0, 0, 0, 0]);
    }

    /// `ip saddr 10.1.0.0/20`'s mask, as nft --debug=mnl shows nft 1.0.6
    /// sending it: registers, width, then mask and a zero XOR as data.
    #[test]
    fn a_mask_is_laid_out_as_nft_lays_it_out() {
        let got = encoded(&Expr::Mask(vec![0xff, 0xff, 0xf0, 0]));
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[12u8, 0, 1, 0][..], b"bitwise\0",
            &[52, 0, 2, 0x80],
            &[8, 0, 1, 0], &[0, 0, 0, 1],
            &[8, 0, 2, 0], &[0, 0, 0, 1],
            &[8, 0, 3, 0], &[0, 0, 0, 4],
            &[12, 0, 4, 0x80], &[8, 0, 1, 0], &[0xff, 0xff, 0xf0, 0],
            &[12, 0, 5, 0x80], &[8, 0, 1, 0], &[0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(got, want);
    }

    /// `ct state`'s load, as nft --debug=mnl shows nft 1.0.6 sending it:
    /// the key before the register.
    #[test]
    fn a_ct_load_is_laid_out_as_nft_lays_it_out() {
        let got = encoded(&Expr::Ct(crate::kernel::NFT_CT_STATE));
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[7u8, 0, 1, 0][..], b"ct\0\0",
            &[20, 0, 2, 0x80],
            &[8, 0, 2, 0], &[0, 0, 0, 0],
            &[8, 0, 1, 0], &[0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(got, want);
    }

    /// A bare `masquerade`, as nft --debug=mnl shows nft 1.0.6 sending it:
    /// its name and an empty data nest.
    #[test]
    fn a_masquerade_is_laid_out_as_nft_lays_it_out() {
        let got = encoded(&Expr::Masquerade);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[9u8, 0, 1, 0][..], b"masq\0\0\0\0",
            &[4, 0, 2, 0x80],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn lookups_carry_the_inversion_flag_only_when_inverted() {
        let plain = encoded(&Expr::Lookup {
            set: "s".into(),
            set_id: 3,
            inv: false,
        });
        let inv = encoded(&Expr::Lookup {
            set: "s".into(),
            set_id: 3,
            inv: true,
        });
        assert_eq!(inv.len(), plain.len() + 8);
        assert_eq!(&inv[inv.len() - 8..], &[8, 0, 5, 0, 0, 0, 0, 1]);
    }
}
