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
// <linux/if_bridge.h>
pub const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
pub const BRIDGE_VLAN_INFO_PVID: u16 = 1 << 1;
pub const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 1 << 2;
pub const BRIDGE_VLAN_INFO_RANGE_BEGIN: u16 = 1 << 3;
pub const BRIDGE_VLAN_INFO_RANGE_END: u16 = 1 << 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// The values libc gives are the kernel's (a changed libc type or value
    /// would change the bytes kvmnet sends).
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
    }
}
