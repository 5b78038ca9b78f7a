//! The kernel's rtnetlink numbers, once, in the types kvmnet's encoder
//! (`nlreq`) and readers (`linkmsg`, `routemsg`) use: libc's where libc has
//! them, and the few it lacks (bridge, bridge-port and bridge-VLAN
//! attributes, IFLA_TUN_*, tbf's TCA_TBF_*) written out from the kernel's uAPI
//! headers.

// <linux/rtnetlink.h>, <linux/if_link.h>: from libc
pub const RTM_NEWLINK: u16 = libc::RTM_NEWLINK;
pub const RTM_DELLINK: u16 = libc::RTM_DELLINK;
pub const RTM_GETLINK: u16 = libc::RTM_GETLINK;
pub const RTM_SETLINK: u16 = libc::RTM_SETLINK;
pub const RTM_NEWROUTE: u16 = libc::RTM_NEWROUTE;
pub const RTM_DELROUTE: u16 = libc::RTM_DELROUTE;
pub const RTM_GETROUTE: u16 = libc::RTM_GETROUTE;
pub const RTM_NEWQDISC: u16 = libc::RTM_NEWQDISC;
pub const RTM_DELQDISC: u16 = libc::RTM_DELQDISC;
pub const RTM_GETQDISC: u16 = libc::RTM_GETQDISC;
pub const TCA_KIND: u16 = libc::TCA_KIND;
pub const TCA_OPTIONS: u16 = libc::TCA_OPTIONS;
pub const NLM_F_ECHO: u16 = libc::NLM_F_ECHO as u16;
pub const RTA_DST: u16 = libc::RTA_DST;
pub const RTA_OIF: u16 = libc::RTA_OIF;
pub const RTA_MULTIPATH: u16 = libc::RTA_MULTIPATH;
pub const RTA_TABLE: u16 = libc::RTA_TABLE;
pub const IFLA_ADDRESS: u16 = libc::IFLA_ADDRESS;
pub const IFLA_IFNAME: u16 = libc::IFLA_IFNAME;
pub const IFLA_MTU: u16 = libc::IFLA_MTU;
pub const IFLA_MASTER: u16 = libc::IFLA_MASTER;
pub const IFLA_CARRIER: u16 = libc::IFLA_CARRIER;
pub const IFLA_LINKINFO: u16 = libc::IFLA_LINKINFO;
pub const IFLA_IFALIAS: u16 = libc::IFLA_IFALIAS;
pub const IFLA_AF_SPEC: u16 = libc::IFLA_AF_SPEC;
pub const IFLA_EXT_MASK: u16 = libc::IFLA_EXT_MASK;
pub const IFLA_INFO_KIND: u16 = libc::IFLA_INFO_KIND;
pub const IFLA_INFO_DATA: u16 = libc::IFLA_INFO_DATA;
pub const IFLA_INFO_SLAVE_KIND: u16 = libc::IFLA_INFO_SLAVE_KIND;
pub const IFLA_INFO_SLAVE_DATA: u16 = libc::IFLA_INFO_SLAVE_DATA;
pub const RTEXT_FILTER_BRVLAN: u32 = libc::RTEXT_FILTER_BRVLAN as u32;
pub const RTEXT_FILTER_SKIP_STATS: u32 = libc::RTEXT_FILTER_SKIP_STATS as u32;
pub const RTPROT_STATIC: u8 = libc::RTPROT_STATIC;
/// Routes the kernel learned from router advertisements (`proto ra`).
pub const RTPROT_RA: u8 = 9; // linux/rtnetlink.h; libc has no name for it
pub const RT_SCOPE_LINK: u8 = libc::RT_SCOPE_LINK;
pub const RTN_UNICAST: u8 = libc::RTN_UNICAST;
pub const RT_TABLE_MAIN: u32 = libc::RT_TABLE_MAIN as u32;
/// NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags, not part of the type.
pub const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
// <linux/if.h>, <linux/if_tun.h>, <sys/socket.h>: from libc
pub const IFF_UP: u32 = libc::IFF_UP as u32;
pub const IFF_TAP: u8 = libc::IFF_TAP as u8;
pub const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;

// Not in libc. <linux/pkt_sched.h>: the root's parent id, struct
// tc_ratespec's link layer, and tbf's attributes (`tc`)
pub const TC_H_ROOT: u32 = 0xffff_ffff;
pub const RTM_NEWTFILTER: u16 = libc::RTM_NEWTFILTER;
pub const RTM_DELTFILTER: u16 = libc::RTM_DELTFILTER;
pub const RTM_GETTFILTER: u16 = libc::RTM_GETTFILTER;
/// The ingress and clsact qdiscs' parent (TC_H_CLSACT, the same value as
/// TC_H_INGRESS) and handle (ffff:), and the ingress hook's address
/// (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)), which both take.
pub const TC_H_CLSACT: u32 = 0xffff_fff1;
pub const TC_H_CLSACT_HANDLE: u32 = 0xffff_0000;
pub const TC_H_CLSACT_INGRESS: u32 = 0xffff_fff2;
/// linux/pkt_cls.h: cls_bpf's attributes and its direct-action flag.
pub const TCA_BPF_OPS_LEN: u16 = 4;
pub const TCA_BPF_OPS: u16 = 5;
pub const TCA_BPF_FLAGS: u16 = 8;
pub const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
/// What a direct-action program returns to drop the frame.
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_LINKLAYER_ETHERNET: u8 = 1;
pub const TCA_TBF_PARMS: u16 = 1;
pub const TCA_TBF_RATE64: u16 = 4;
pub const TCA_TBF_BURST: u16 = 6;

// Not in libc. <linux/if_link.h>: IFLA_TUN_*, IFLA_BR_*, IFLA_BRPORT_*
pub const IFLA_TUN_OWNER: u16 = 1;
pub const IFLA_TUN_GROUP: u16 = 2;
pub const IFLA_TUN_TYPE: u16 = 3;
pub const IFLA_TUN_PERSIST: u16 = 6;
pub const IFLA_BR_VLAN_FILTERING: u16 = 7;
pub const IFLA_BR_VLAN_DEFAULT_PVID: u16 = 39;
pub const IFLA_BRPORT_LEARNING: u16 = 8;
pub const IFLA_BRPORT_UNICAST_FLOOD: u16 = 9;
pub const IFLA_BRPORT_MCAST_FLOOD: u16 = 27;
pub const IFLA_BRPORT_BCAST_FLOOD: u16 = 30;
pub const IFLA_BRPORT_ISOLATED: u16 = 33;
pub const IFLA_BRPORT_NEIGH_SUPPRESS: u16 = 32;
// <linux/if_link.h>: the vxlan link kind's attributes.
pub const IFLA_VXLAN_ID: u16 = 1;
pub const IFLA_VXLAN_GROUP: u16 = 2;
pub const IFLA_VXLAN_LINK: u16 = 3;
pub const IFLA_VXLAN_LOCAL: u16 = 4;
pub const IFLA_VXLAN_LEARNING: u16 = 7;
pub const IFLA_VXLAN_PORT: u16 = 15;
pub const IFLA_VXLAN_GROUP6: u16 = 16;
pub const IFLA_VXLAN_LOCAL6: u16 = 17;
// <linux/neighbour.h>: a bridge FDB entry (RTM_NEWNEIGH, family AF_BRIDGE).
pub const RTM_NEWNEIGH: u16 = libc::RTM_NEWNEIGH;
pub const NDA_DST: u16 = 1;
pub const NDA_LLADDR: u16 = 2;
pub const NTF_SELF: u8 = 0x02;
pub const NUD_PERMANENT: u16 = 0x80;
// <linux/if_bridge.h>
pub const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
pub const BRIDGE_VLAN_INFO_PVID: u16 = 1 << 1;
pub const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 1 << 2;
pub const BRIDGE_VLAN_INFO_RANGE_BEGIN: u16 = 1 << 3;
pub const BRIDGE_VLAN_INFO_RANGE_END: u16 = 1 << 4;

// <linux/netlink.h>, <linux/netfilter/nfnetlink.h>, <linux/netfilter.h>,
// <linux/netfilter/nf_tables.h>: the nf_tables numbers the guard's encoder
// (`nft`) uses, from libc where libc has them.
pub const NETLINK_NETFILTER: isize = libc::NETLINK_NETFILTER as isize;
pub const NLM_F_APPEND: u16 = libc::NLM_F_APPEND as u16;
pub const NFNETLINK_V0: u8 = libc::NFNETLINK_V0 as u8;
pub const NFNL_SUBSYS_NFTABLES: u16 = libc::NFNL_SUBSYS_NFTABLES as u16;
pub const NFNL_MSG_BATCH_BEGIN: u16 = libc::NFNL_MSG_BATCH_BEGIN as u16;
pub const NFNL_MSG_BATCH_END: u16 = libc::NFNL_MSG_BATCH_END as u16;
pub const NFPROTO_NETDEV: u8 = libc::NFPROTO_NETDEV as u8;
pub const NF_NETDEV_INGRESS: u32 = libc::NF_NETDEV_INGRESS as u32;
pub const NF_DROP: i32 = libc::NF_DROP;
pub const NF_ACCEPT: i32 = libc::NF_ACCEPT;
pub const NFT_JUMP: i32 = libc::NFT_JUMP;
pub const NFT_RETURN: i32 = libc::NFT_RETURN;
pub const NFT_MSG_NEWTABLE: u8 = libc::NFT_MSG_NEWTABLE as u8;
pub const NFT_MSG_GETTABLE: u8 = libc::NFT_MSG_GETTABLE as u8;
pub const NFT_MSG_DELTABLE: u8 = libc::NFT_MSG_DELTABLE as u8;
pub const NFT_MSG_NEWCHAIN: u8 = libc::NFT_MSG_NEWCHAIN as u8;
pub const NFT_MSG_NEWRULE: u8 = libc::NFT_MSG_NEWRULE as u8;
pub const NFT_MSG_NEWSET: u8 = libc::NFT_MSG_NEWSET as u8;
pub const NFT_MSG_NEWSETELEM: u8 = libc::NFT_MSG_NEWSETELEM as u8;
pub const NFT_MSG_GETSETELEM: u8 = libc::NFT_MSG_GETSETELEM as u8;
pub const NFT_MSG_DELSETELEM: u8 = libc::NFT_MSG_DELSETELEM as u8;
pub const NFT_MSG_DELSET: u8 = libc::NFT_MSG_DELSET as u8;
pub const NFT_MSG_GETCHAIN: u8 = libc::NFT_MSG_GETCHAIN as u8;
pub const NFT_MSG_DELCHAIN: u8 = libc::NFT_MSG_DELCHAIN as u8;
pub const NFT_REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;
pub const NFT_REG_1: u32 = libc::NFT_REG_1 as u32;
/// The second 32-bit register: where a concatenation's second field goes
/// when the first (an interface index) takes the first four bytes.
pub const NFT_REG32_01: u32 = libc::NFT_REG32_01 as u32;
pub const NFT_BYTEORDER_HTON: u32 = libc::NFT_BYTEORDER_HTON as u32;
// Not in libc: <linux/netfilter/nf_tables.h> (5.6).
pub const NFT_SET_CONCAT: u32 = 0x80;
pub const NFT_CMP_EQ: u32 = libc::NFT_CMP_EQ as u32;
pub const NFT_CMP_NEQ: u32 = libc::NFT_CMP_NEQ as u32;
pub const NFT_LOOKUP_F_INV: u32 = libc::NFT_LOOKUP_F_INV as u32;
pub const NFT_SET_INTERVAL: u32 = libc::NFT_SET_INTERVAL as u32;
pub const NFT_PAYLOAD_LL_HEADER: u32 = libc::NFT_PAYLOAD_LL_HEADER as u32;
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
pub const NFT_META_PROTOCOL: u32 = libc::NFT_META_PROTOCOL as u32;
pub const NFT_META_IIF: u32 = libc::NFT_META_IIF as u32;
pub const NFT_META_IIFTYPE: u32 = libc::NFT_META_IIFTYPE as u32;
pub const NFT_META_L4PROTO: u32 = libc::NFT_META_L4PROTO as u32;
pub const NFT_LIMIT_PKT_BYTES: u32 = libc::NFT_LIMIT_PKT_BYTES as u32;
pub const NFT_LIMIT_F_INV: u32 = libc::NFT_LIMIT_F_INV as u32;
// A private network's inet table (`net`): its families, hooks and
// priorities, and what its rules look at.
pub const NFPROTO_INET: u8 = libc::NFPROTO_INET as u8;
pub const NFPROTO_IPV4: u8 = libc::NFPROTO_IPV4 as u8;
pub const NFPROTO_IPV6: u8 = libc::NFPROTO_IPV6 as u8;
pub const NF_INET_FORWARD: u32 = libc::NF_INET_FORWARD as u32;
pub const NF_INET_POST_ROUTING: u32 = libc::NF_INET_POST_ROUTING as u32;
/// nft's `priority filter`.
pub const NF_IP_PRI_FILTER: i32 = libc::NF_IP_PRI_FILTER;
/// nft's `priority srcnat`.
pub const NF_IP_PRI_NAT_SRC: i32 = libc::NF_IP_PRI_NAT_SRC;
pub const NFT_META_IIFNAME: u32 = libc::NFT_META_IIFNAME as u32;
pub const NFT_META_OIFNAME: u32 = libc::NFT_META_OIFNAME as u32;
pub const NFT_META_NFPROTO: u32 = libc::NFT_META_NFPROTO as u32;
pub const NFT_CT_STATE: u32 = libc::NFT_CT_STATE as u32;
// Not in libc. <linux/netfilter/nf_conntrack_common.h>: `ct state` is a
// bitmask of NF_CT_STATE_BIT(ctinfo), in host byte order.
pub const NF_CT_STATE_ESTABLISHED: u32 = 1 << 1;
pub const NF_CT_STATE_RELATED: u32 = 1 << 2;

// Not in libc. <linux/netlink.h>: the extended ack's attributes
pub const NLMSGERR_ATTR_MSG: u16 = 1;
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;
// <linux/netfilter/nf_tables.h>: attributes
pub const NFTA_LIST_ELEM: u16 = 1;
pub const NFTA_HOOK_HOOKNUM: u16 = 1;
pub const NFTA_HOOK_PRIORITY: u16 = 2;
pub const NFTA_HOOK_DEV: u16 = 3;
pub const NFTA_TABLE_NAME: u16 = 1;
pub const NFTA_TABLE_FLAGS: u16 = 2;
pub const NFTA_TABLE_HANDLE: u16 = 4;
pub const NFTA_TABLE_USERDATA: u16 = 6;
pub const NFTA_CHAIN_TABLE: u16 = 1;
pub const NFTA_CHAIN_NAME: u16 = 3;
pub const NFTA_CHAIN_HOOK: u16 = 4;
pub const NFTA_CHAIN_POLICY: u16 = 5;
pub const NFTA_CHAIN_TYPE: u16 = 7;
pub const NFTA_CHAIN_HANDLE: u16 = 2;
pub const NFTA_CHAIN_USERDATA: u16 = 12;
pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFTA_RULE_CHAIN: u16 = 2;
pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub const NFTA_SET_TABLE: u16 = 1;
pub const NFTA_SET_NAME: u16 = 2;
pub const NFTA_SET_FLAGS: u16 = 3;
pub const NFTA_SET_KEY_TYPE: u16 = 4;
pub const NFTA_SET_KEY_LEN: u16 = 5;
pub const NFTA_SET_ID: u16 = 10;
pub const NFTA_SET_DESC: u16 = 9;
pub const NFTA_SET_DESC_CONCAT: u16 = 2;
pub const NFTA_SET_FIELD_LEN: u16 = 1;
pub const NFTA_SET_ELEM_KEY_END: u16 = 10;
pub const NFTA_SET_USERDATA: u16 = 13;
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;
pub const NFTA_VERDICT_CODE: u16 = 1;
pub const NFTA_VERDICT_CHAIN: u16 = 2;
pub const NFTA_EXPR_NAME: u16 = 1;
pub const NFTA_EXPR_DATA: u16 = 2;
pub const NFTA_META_DREG: u16 = 1;
pub const NFTA_META_KEY: u16 = 2;
pub const NFTA_PAYLOAD_DREG: u16 = 1;
pub const NFTA_PAYLOAD_BASE: u16 = 2;
pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub const NFTA_PAYLOAD_LEN: u16 = 4;
pub const NFTA_CMP_SREG: u16 = 1;
pub const NFTA_CMP_OP: u16 = 2;
pub const NFTA_CMP_DATA: u16 = 3;
pub const NFTA_LOOKUP_SET: u16 = 1;
pub const NFTA_LOOKUP_SREG: u16 = 2;
pub const NFTA_LOOKUP_SET_ID: u16 = 4;
pub const NFTA_LOOKUP_FLAGS: u16 = 5;
pub const NFTA_IMMEDIATE_DREG: u16 = 1;
pub const NFTA_IMMEDIATE_DATA: u16 = 2;
pub const NFTA_LIMIT_RATE: u16 = 1;
pub const NFTA_LIMIT_UNIT: u16 = 2;
pub const NFTA_LIMIT_BURST: u16 = 3;
pub const NFTA_LIMIT_TYPE: u16 = 4;
pub const NFTA_LIMIT_FLAGS: u16 = 5;
pub const NFTA_BYTEORDER_SREG: u16 = 1;
pub const NFTA_BYTEORDER_DREG: u16 = 2;
pub const NFTA_BYTEORDER_OP: u16 = 3;
pub const NFTA_BYTEORDER_LEN: u16 = 4;
pub const NFTA_BYTEORDER_SIZE: u16 = 5;
pub const NFTA_BITWISE_SREG: u16 = 1;
pub const NFTA_BITWISE_DREG: u16 = 2;
pub const NFTA_BITWISE_LEN: u16 = 3;
pub const NFTA_BITWISE_MASK: u16 = 4;
pub const NFTA_BITWISE_XOR: u16 = 5;
pub const NFTA_CT_DREG: u16 = 1;
pub const NFTA_CT_KEY: u16 = 2;
/// A nested attribute's type carries this flag (nft sets it; the kernel
/// accepts nests with or without it).
pub const NLA_F_NESTED: u16 = libc::NLA_F_NESTED as u16;

#[cfg(test)]
mod tests {
    use super::*;

    /// The values libc gives are the kernel's (a changed libc type or value
    /// would change the bytes kvmnet sends).
    /// The nf_tables numbers libc gives are the kernel's.
    #[test]
    fn libc_nf_tables_numbers_are_the_kernels() {
        assert_eq!(
            (
                NETLINK_NETFILTER,
                NFNL_SUBSYS_NFTABLES,
                NFNL_MSG_BATCH_BEGIN
            ),
            (12, 10, 16)
        );
        assert_eq!(
            (NFPROTO_NETDEV, NF_NETDEV_INGRESS, NLM_F_APPEND),
            (5, 0, 0x800)
        );
        assert_eq!(
            (NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWSETELEM),
            (0, 2, 12)
        );
        assert_eq!((NFT_JUMP, NFT_RETURN, NF_ACCEPT), (-3, -5, 1));
        assert_eq!(
            (NFT_META_IIF, NFT_META_IIFTYPE, NFT_META_L4PROTO),
            (4, 8, 16)
        );
        assert_eq!(NFT_SET_INTERVAL, 4);
        assert_eq!(
            (NFT_SET_CONCAT, NFT_REG32_01, NFT_BYTEORDER_HTON),
            (0x80, 9, 1)
        );
        assert_eq!(
            (
                NFT_MSG_GETCHAIN,
                NFT_MSG_DELCHAIN,
                NFT_MSG_GETSETELEM,
                NFT_MSG_DELSETELEM
            ),
            (4, 5, 13, 14)
        );
        assert_eq!((NFT_LIMIT_PKT_BYTES, NFT_LIMIT_F_INV), (1, 1));
        assert_eq!((NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6), (1, 2, 10));
        assert_eq!((NF_INET_FORWARD, NF_INET_POST_ROUTING), (2, 4));
        assert_eq!((NF_IP_PRI_FILTER, NF_IP_PRI_NAT_SRC), (0, 100));
        assert_eq!(
            (
                NFT_META_IIFNAME,
                NFT_META_OIFNAME,
                NFT_META_NFPROTO,
                NFT_CT_STATE
            ),
            (6, 7, 15, 0)
        );
        assert_eq!(NLA_F_NESTED, 0x8000);
    }

    #[test]
    fn libc_numbers_are_the_kernels() {
        assert_eq!(
            (RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK, RTM_DELROUTE),
            (16, 18, 19, 25)
        );
        assert_eq!(
            (
                IFLA_MASTER,
                IFLA_IFALIAS,
                IFLA_EXT_MASK,
                IFLA_INFO_SLAVE_DATA
            ),
            (10, 20, 29, 5)
        );
        assert_eq!((RTEXT_FILTER_BRVLAN, RTEXT_FILTER_SKIP_STATS), (2, 8));
        assert_eq!(
            (RT_SCOPE_LINK, RT_TABLE_MAIN, RTA_MULTIPATH, RTA_TABLE),
            (253, 254, 9, 15)
        );
        assert_eq!(
            (IFLA_CARRIER, IFF_TAP, AF_BRIDGE, AF_INET6, NLA_TYPE_MASK),
            (33, 2, 7, 10, 0x3fff)
        );
    }

    /// Traffic control's numbers, libc's and the uAPI header's.
    #[test]
    fn tc_numbers_are_the_kernels() {
        assert_eq!(
            (
                RTM_NEWQDISC,
                RTM_DELQDISC,
                RTM_GETQDISC,
                TCA_KIND,
                TCA_OPTIONS
            ),
            (36, 37, 38, 1, 2)
        );
        assert_eq!((TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST), (1, 4, 6));
        assert_eq!(NLM_F_ECHO, 8);
        assert_eq!(
            (RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER),
            (44, 45, 46)
        );
        assert_eq!((TCA_BPF_OPS_LEN, TCA_BPF_OPS, TCA_BPF_FLAGS), (4, 5, 8));
        assert_eq!(
            (TC_H_CLSACT, TC_H_CLSACT_HANDLE, TC_H_CLSACT_INGRESS),
            (0xffff_fff1, 0xffff_0000, 0xffff_fff2)
        );
    }
}
