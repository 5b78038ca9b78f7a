//! The guard's checks as a classic BPF program of the tap's own, which
//! kvmnet puts on the tap's ingress with traffic control (`cls_bpf`,
//! [`super::checks`]); docs/guard-design.md.
//!
//! Classic BPF, not eBPF: loading it needs only CAP_NET_ADMIN (no CAP_BPF,
//! no bpf() syscall, no maps), the kernel checks and JIT-compiles it, and a
//! tap's addresses are constants in its own program, so nothing is shared
//! between taps and nothing outlives the tap.
//!
//! The program returns [`ALLOW`] for a frame the guest may send and
//! [`DENY`] for any other. A classic program that reads past the end of a
//! frame stops and returns 0, which is [`DENY`]: a truncated or malformed
//! frame never passes by running off the end of a check.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};

use crate::mac::Mac;

use super::{eui64_link_local, GuardSpec, Prefix};

/// One instruction, as `struct sock_filter` lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    /// The eight bytes the kernel reads (`TCA_BPF_OPS`).
    pub fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&self.code.to_ne_bytes());
        b[2] = self.jt;
        b[3] = self.jf;
        b[4..].copy_from_slice(&self.k.to_ne_bytes());
        b
    }
}

/// What the program returns for a frame the guest may send: any value but
/// 0 is a match of the allowing filter (`cls_bpf` takes -1 as "the
/// filter's own class", which clsact does not use).
pub const ALLOW: u32 = u32::MAX;
/// What it returns for any other frame: no match, so the frame meets the
/// filter behind it, which drops everything.
pub const DENY: u32 = 0;
/// The program's first instruction loads this ("kvmg") and goes on: it
/// marks the program as kvmnet's guard when read back (the kernel keeps no
/// name for a classic program).
pub const MARK: Insn = Insn {
    code: LD | W | IMM,
    jt: 0,
    jf: 0,
    k: 0x6b76_6d67,
};
/// The longest program the kernel takes (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;
/// IPv6 extension headers the program walks to find a frame's transport
/// header; a frame with more is refused (no guest needs more than a
/// hop-by-hop header for MLD and a fragment header).
pub const MAX_EXT_HEADERS: usize = 4;

// The classic BPF opcode fields (linux/bpf_common.h, linux/filter.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;
/// The ancillary load that says whether the kernel took an 802.1Q/802.1ad
/// tag out of the frame (SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT): it does
/// before traffic control sees a frame, so the tag is no longer in the
/// bytes the program reads.
const VLAN_TAG_PRESENT: u32 = 0xffff_f000 + 48;

// Frame layout: Ethernet header, then the network header at 14.
const NH: u32 = 14;
const ETH_P_IP: u32 = libc::ETH_P_IP as u32;
const ETH_P_ARP: u32 = libc::ETH_P_ARP as u32;
const ETH_P_RARP: u32 = libc::ETH_P_RARP as u32;
const ETH_P_IPV6: u32 = libc::ETH_P_IPV6 as u32;
const ETH_P_8021Q: u32 = libc::ETH_P_8021Q as u32;
const ETH_P_8021AD: u32 = libc::ETH_P_8021AD as u32;
// ARP operations (RFC 826, RFC 903), ICMP and ICMPv6 types (RFC 792, 4861,
// 3810), ports (RFC 2131, 8415), IPv6 extension headers (RFC 8200, 4302).
const ARPOP_REQUEST: u32 = 1;
const ARPOP_REPLY: u32 = 2;
const ARPOP_RREQUEST: u32 = 3;
const ICMP_REDIRECT: u32 = 5;
const ICMP_ROUTER_ADVERT: u32 = 9;
const ND_ROUTER_SOLICIT: u32 = 133;
const ND_ROUTER_ADVERT: u32 = 134;
const ND_NEIGHBOR_SOLICIT: u32 = 135;
const ND_NEIGHBOR_ADVERT: u32 = 136;
const ND_REDIRECT: u32 = 137;
const MLD2_LISTENER_REPORT: u32 = 143;
const ND_OPT_TARGET_LLADDR_LEN1: u32 = 0x0201;
const BOOTPS: u32 = 67;
const BOOTPC: u32 = 68;
const DHCP_CLIENT_PORTS: u32 = 68 << 16 | 67;
/// A BOOTP message's client hardware address, from the UDP header on (8
/// bytes of UDP, then op, htype, hlen, hops, xid, secs, flags and four
/// addresses: RFC 2131).
const BOOTP_CHADDR: u32 = 8 + 28;
const DHCPV6_SERVER: u32 = 547;
const DHCPV6_CLIENT: u32 = 546;
const IPPROTO_ICMP: u32 = libc::IPPROTO_ICMP as u32;
const IPPROTO_UDP: u32 = libc::IPPROTO_UDP as u32;
const IPPROTO_ICMPV6: u32 = libc::IPPROTO_ICMPV6 as u32;
const IPPROTO_HOPOPTS: u32 = 0;
const IPPROTO_ROUTING: u32 = 43;
const IPPROTO_FRAGMENT: u32 = 44;
const IPPROTO_AH: u32 = 51;
const IPPROTO_DSTOPTS: u32 = 60;
/// An IPv6 header's payload starts here, and a neighbour advertisement's
/// ICMPv6 header (the program refuses one behind an extension header).
const IP6_PAYLOAD: u32 = NH + 40;
const IP6_PAYLOAD_LEN: u32 = NH + 4;
const IP6_NEXT: u32 = NH + 6;
const IP6_SRC: u32 = NH + 8;
const IP4_SRC: u32 = NH + 12;
/// Scratch memory: the next header while walking IPv6 extension headers.
const M_NEXT: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

enum Item {
    Op(Insn),
    /// If `A <code> k` is `when`, go to the label; else go on.
    Jump {
        code: u16,
        k: u32,
        when: bool,
        to: Label,
    },
    Ja(Label),
    Mark(Label),
    /// What the instructions that follow check, for the listing.
    Note(&'static str),
}

/// An assembler of forward jumps to labels: a conditional jump whose target
/// is out of reach of its 8-bit offset becomes a conditional jump over an
/// unconditional one.
#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn mark(&mut self, l: Label) {
        self.items.push(Item::Mark(l));
    }
    fn note(&mut self, what: &'static str) {
        self.items.push(Item::Note(what));
    }
    fn op(&mut self, code: u16, k: u32) {
        self.items.push(Item::Op(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }
    /// A = the 1, 2 or 4 bytes at `off` (size B, H or W).
    fn ld(&mut self, size: u16, off: u32) {
        self.op(LD | size | ABS, off);
    }
    /// A = the bytes at X + `off`.
    fn ld_ind(&mut self, size: u16, off: u32) {
        self.op(LD | size | IND, off);
    }
    fn alu(&mut self, op: u16, k: u32) {
        self.op(ALU | op | K, k);
    }
    fn jump(&mut self, code: u16, k: u32, when: bool, to: Label) {
        self.items.push(Item::Jump { code, k, when, to });
    }
    /// Go to `to` when A == `k`.
    fn jeq(&mut self, k: u32, to: Label) {
        self.jump(JEQ, k, true, to);
    }
    /// Go to `to` when A != `k`.
    fn jne(&mut self, k: u32, to: Label) {
        self.jump(JEQ, k, false, to);
    }
    fn ja(&mut self, to: Label) {
        self.items.push(Item::Ja(to));
    }

    /// The instructions, and the notes with the place of the instruction
    /// they describe.
    fn finish(self) -> (Vec<Insn>, Vec<(usize, &'static str)>) {
        let mut long = vec![false; self.items.len()];
        let (pos, at) = loop {
            let mut pos = Vec::with_capacity(self.items.len());
            let mut at = vec![usize::MAX; self.labels];
            let mut n = 0;
            for (i, item) in self.items.iter().enumerate() {
                pos.push(n);
                match item {
                    Item::Op(_) | Item::Ja(_) => n += 1,
                    Item::Jump { .. } => n += if long[i] { 2 } else { 1 },
                    Item::Mark(l) => at[l.0] = n,
                    Item::Note(_) => {}
                }
            }
            let mut grew = false;
            for (i, item) in self.items.iter().enumerate() {
                if let Item::Jump { to, .. } = item {
                    if !long[i] && at[to.0] - (pos[i] + 1) > usize::from(u8::MAX) {
                        long[i] = true;
                        grew = true;
                    }
                }
            }
            if !grew {
                break (pos, at);
            }
        };
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let here = pos[i];
            let dist = |to: &Label, from: usize| -> u32 {
                let d = at[to.0]
                    .checked_sub(from + 1)
                    .expect("classic BPF jumps only forward");
                u32::try_from(d).expect("a program shorter than 2^32")
            };
            match item {
                Item::Op(insn) => out.push(*insn),
                Item::Ja(to) => out.push(Insn {
                    code: JMP | JA,
                    jt: 0,
                    jf: 0,
                    k: dist(to, here),
                }),
                Item::Jump { code, k, when, to } => {
                    let (near, skip) = if long[i] {
                        (0u8, 1u8)
                    } else {
                        (dist(to, here) as u8, 0)
                    };
                    let (jt, jf) = if *when { (near, skip) } else { (skip, near) };
                    out.push(Insn {
                        code: JMP | code | K,
                        jt,
                        jf,
                        k: *k,
                    });
                    if long[i] {
                        out.push(Insn {
                            code: JMP | JA,
                            jt: 0,
                            jf: 0,
                            k: dist(to, here + 1),
                        });
                    }
                }
                Item::Mark(_) => {}
                Item::Note(n) => notes.push((here, *n)),
            }
        }
        (out, notes)
    }
}

/// Goes to `miss` unless the six bytes at `off` are one of `macs`.
fn mac_in(a: &mut Asm, off: u32, macs: &[Mac], miss: Label) {
    macs_at(a, off, false, macs, miss)
}

/// [`mac_in`] at X + `off` when `ind`.
fn macs_at(a: &mut Asm, off: u32, ind: bool, macs: &[Mac], miss: Label) {
    let hit = a.label();
    let load = |a: &mut Asm, size, off| {
        if ind {
            a.ld_ind(size, off)
        } else {
            a.ld(size, off)
        }
    };
    for m in macs {
        let next = a.label();
        let m = m.0;
        load(a, W, off);
        a.jne(u32::from_be_bytes([m[0], m[1], m[2], m[3]]), next);
        load(a, H, off + 4);
        a.jeq(u32::from(u16::from_be_bytes([m[4], m[5]])), hit);
        a.mark(next);
    }
    a.ja(miss);
    a.mark(hit);
}

/// Goes to `hit` when the address at `off` is in one of `prefixes` (all
/// of one family); goes on otherwise.
fn prefix_in(a: &mut Asm, off: u32, prefixes: &[Prefix], hit: Label) {
    for p in covering(prefixes) {
        let (first, _) = p.range();
        let width = u32::from(p.width());
        let bytes = first.to_be_bytes();
        let bytes = &bytes[16 - (width / 8) as usize..];
        let words = u32::from(p.len).div_ceil(32);
        if words == 0 {
            a.ja(hit);
            return;
        }
        let next = a.label();
        for w in 0..words {
            let bits = (u32::from(p.len) - 32 * w).min(32);
            let mask = if bits == 32 {
                u32::MAX
            } else {
                !(u32::MAX >> bits)
            };
            let i = (4 * w) as usize;
            let value = u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
            a.ld(W, off + 4 * w);
            if mask != u32::MAX {
                a.alu(AND, mask);
            }
            if w + 1 == words {
                a.jeq(value & mask, hit);
            } else {
                a.jne(value & mask, next);
            }
        }
        a.mark(next);
    }
}

/// `prefixes` without those inside another, sorted.
fn covering(prefixes: &[Prefix]) -> Vec<Prefix> {
    let mut all = prefixes.to_vec();
    all.sort_by_key(|p| (p.len, p.range()));
    let mut out: Vec<Prefix> = Vec::new();
    for p in all {
        let (a, b) = p.range();
        let inside = out.iter().any(|q| {
            let (c, d) = q.range();
            q.addr.is_ipv4() == p.addr.is_ipv4() && c <= a && b <= d
        });
        if !inside {
            out.push(p);
        }
    }
    out.sort_by_key(|p| p.range());
    out
}

/// Steps over the IPv6 extension header at X: its next header into
/// `M_NEXT`, X past it by (its length field + `add`) << `shift` bytes.
fn next_header(a: &mut Asm, add: u32, shift: u32) {
    a.ld_ind(B, 0);
    a.op(ST, M_NEXT);
    a.ld_ind(B, 1);
    a.alu(ADD, add);
    a.alu(LSH, shift);
    a.op(ALU | ADD | X, 0);
    a.op(MISC | TAX, 0);
}

/// Goes to `deny` unless the (R)ARP header is Ethernet over IPv4: hardware
/// type 1, protocol type IPv4, address lengths 6 and 4.
fn ethernet_ipv4_arp(a: &mut Asm, deny: Label) {
    a.ld(H, NH);
    a.jne(1, deny);
    a.ld(H, NH + 2);
    a.jne(ETH_P_IP, deny);
    a.ld(B, NH + 4);
    a.jne(6, deny);
    a.ld(B, NH + 5);
    a.jne(4, deny);
}

fn everything(v4: bool) -> Prefix {
    if v4 {
        "0.0.0.0/0".parse().expect("a prefix")
    } else {
        "::/0".parse().expect("a prefix")
    }
}

/// The guard's program for `spec` (its checks; the rate is not the
/// program's), and the notes of its listing.
pub fn program(spec: &GuardSpec) -> (Vec<Insn>, Vec<(usize, &'static str)>) {
    let mut a = Asm::default();
    let allow = a.label();
    let deny = a.label();
    let mut macs = spec.macs.clone();
    macs.sort();
    macs.dedup();
    let v4 = spec.ipv4.clone().unwrap_or_else(|| vec![everything(true)]);
    let link_local = Prefix {
        addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        len: 10,
    };
    let (v6, targets) = match &spec.ipv6 {
        Some(list) => {
            let mut src = list.clone();
            src.push(link_local);
            let mut targets = list.clone();
            targets.extend(
                macs.iter()
                    .map(|m| Prefix::host(IpAddr::V6(eui64_link_local(*m)))),
            );
            (src, targets)
        }
        None => (vec![everything(false)], vec![everything(false)]),
    };

    a.note("kvmnet's guard");
    a.items.push(Item::Op(MARK));
    a.note("802.1Q or 802.1ad VLAN-tagged frame: drop");
    a.ld(W, VLAN_TAG_PRESENT);
    a.jne(0, deny);
    a.ld(H, 12);
    a.jeq(ETH_P_8021Q, deny);
    a.jeq(ETH_P_8021AD, deny);
    a.note("source MAC not the guest's: drop");
    mac_in(&mut a, 6, &macs, deny);

    let (arp, rarp, ipv4, ipv6) = (a.label(), a.label(), a.label(), a.label());
    a.note("by ethertype; others pass only when no address family is pinned");
    a.ld(H, 12);
    a.jeq(ETH_P_ARP, arp);
    a.jeq(ETH_P_RARP, rarp);
    a.jeq(ETH_P_IP, ipv4);
    a.jeq(ETH_P_IPV6, ipv6);
    a.ja(if spec.pins_ip() { deny } else { allow });

    // ARP: a well-formed request or reply, its sender MAC and IP the
    // guest's (a probe's sender IP is 0.0.0.0).
    a.mark(arp);
    a.note("ARP: Ethernet/IPv4 request or reply, else drop");
    ethernet_ipv4_arp(&mut a, deny);
    let op_ok = a.label();
    a.ld(H, NH + 6);
    a.jeq(ARPOP_REQUEST, op_ok);
    a.jeq(ARPOP_REPLY, op_ok);
    a.ja(deny);
    a.mark(op_ok);
    a.note("ARP sender MAC not the guest's: drop");
    mac_in(&mut a, NH + 8, &macs, deny);
    a.note("ARP probe (sender IP 0.0.0.0) or from the guest's IPv4: pass, else drop");
    a.ld(W, NH + 14);
    a.jeq(0, allow);
    prefix_in(&mut a, NH + 14, &v4, allow);
    a.ja(deny);

    // RARP: only QEMU's announcement after a migration.
    a.mark(rarp);
    a.note("RARP: an Ethernet/IPv4 reverse request for the guest's own MAC (QEMU's announce), else drop");
    ethernet_ipv4_arp(&mut a, deny);
    a.ld(H, NH + 6);
    a.jne(ARPOP_RREQUEST, deny);
    mac_in(&mut a, NH + 8, &macs, deny);
    mac_in(&mut a, NH + 18, &macs, deny);
    a.ja(allow);

    // IPv4: never a DHCP server or a redirect; a DHCP client without an
    // address; otherwise the guest's addresses.
    a.mark(ipv4);
    let (udp4, icmp4, src4) = (a.label(), a.label(), a.label());
    a.note("IPv4: not version 4, or a header shorter than 20 bytes: drop");
    a.ld(B, NH);
    a.alu(AND, 0xf0);
    a.jne(0x40, deny);
    a.ld(B, NH);
    a.alu(AND, 0x0f);
    a.jump(JGE, 5, false, deny);
    a.note("IPv4: a later fragment has no transport header");
    a.ld(H, NH + 6);
    a.jump(JSET, 0x1fff, true, src4);
    a.ld(B, NH + 9);
    a.jeq(IPPROTO_UDP, udp4);
    a.jeq(IPPROTO_ICMP, icmp4);
    a.ja(src4);
    a.mark(udp4);
    a.note("DHCP server or relay (udp sport 67, or anything to a client's port 68): drop");
    a.op(LDX | B | MSH, NH);
    a.ld_ind(H, NH);
    a.jeq(BOOTPS, deny);
    a.ld_ind(H, NH + 2);
    a.jeq(BOOTPC, deny);
    a.note("DHCP client without an address (0.0.0.0, udp 68 to 67, for one of its MACs): pass");
    let not_dhcp = a.label();
    a.ld(W, IP4_SRC);
    a.jne(0, src4);
    a.ld_ind(W, NH);
    a.jne(DHCP_CLIENT_PORTS, not_dhcp);
    macs_at(&mut a, NH + BOOTP_CHADDR, true, &macs, deny);
    a.ja(allow);
    a.mark(not_dhcp);
    a.ja(src4);
    a.mark(icmp4);
    a.note("ICMP redirect or router advertisement: drop");
    a.op(LDX | B | MSH, NH);
    a.ld_ind(B, NH);
    a.jeq(ICMP_REDIRECT, deny);
    a.jeq(ICMP_ROUTER_ADVERT, deny);
    a.mark(src4);
    a.note("IPv4 from the guest's addresses: pass, else drop");
    prefix_in(&mut a, IP4_SRC, &v4, allow);
    a.ja(deny);

    // IPv6: the transport header found behind extension headers; never a
    // router, a redirect or a DHCPv6 server; NAs checked; duplicate address
    // detection from ::; otherwise the guest's addresses and any
    // link-local one.
    a.mark(ipv6);
    let (l4, src6) = (a.label(), a.label());
    a.note("IPv6: not version 6: drop");
    a.ld(B, NH);
    a.alu(AND, 0xf0);
    a.jne(0x60, deny);
    a.note("IPv6: extension headers walked to the transport header");
    a.ld(B, IP6_NEXT);
    a.op(ST, M_NEXT);
    a.op(LDX | W | IMM, IP6_PAYLOAD);
    for _ in 0..MAX_EXT_HEADERS {
        let (opts, frag, ah, next) = (a.label(), a.label(), a.label(), a.label());
        a.op(LD | MEM, M_NEXT);
        a.jeq(IPPROTO_HOPOPTS, opts);
        a.jeq(IPPROTO_ROUTING, opts);
        a.jeq(IPPROTO_DSTOPTS, opts);
        a.jeq(IPPROTO_FRAGMENT, frag);
        a.jeq(IPPROTO_AH, ah);
        a.ja(l4);
        // X += (length + 1) * 8
        a.mark(opts);
        next_header(&mut a, 1, 3);
        a.ja(next);
        // A later fragment: no transport header to check.
        a.mark(frag);
        a.ld_ind(H, 2);
        a.jump(JSET, 0xfff8, true, src6);
        a.ld_ind(B, 0);
        a.op(ST, M_NEXT);
        a.op(MISC | TXA, 0);
        a.alu(ADD, 8);
        a.op(MISC | TAX, 0);
        a.ja(next);
        // X += (length + 2) * 4
        a.mark(ah);
        next_header(&mut a, 2, 2);
        a.mark(next);
    }
    a.note("more extension headers than the guard walks: drop");
    a.op(LD | MEM, M_NEXT);
    for h in [
        IPPROTO_HOPOPTS,
        IPPROTO_ROUTING,
        IPPROTO_DSTOPTS,
        IPPROTO_FRAGMENT,
        IPPROTO_AH,
    ] {
        a.jeq(h, deny);
    }
    a.mark(l4);
    let (icmp6, udp6, na, dad) = (a.label(), a.label(), a.label(), a.label());
    a.note("IPv6: an ICMPv6 or UDP header not whole inside the payload (RFC 7112): drop");
    let whole = a.label();
    a.op(LD | MEM, M_NEXT);
    a.jeq(IPPROTO_ICMPV6, whole);
    a.jne(IPPROTO_UDP, src6);
    a.mark(whole);
    // payload length + 54 >= X + 8
    a.ld(H, IP6_PAYLOAD_LEN);
    a.alu(ADD, IP6_PAYLOAD - 8);
    a.jump(JGE | X, 0, false, deny);
    a.op(LD | MEM, M_NEXT);
    a.jeq(IPPROTO_ICMPV6, icmp6);
    a.jeq(IPPROTO_UDP, udp6);
    a.ja(src6);
    a.mark(udp6);
    a.note("DHCPv6 server or relay (udp sport 547, or anything to a client's port 546): drop");
    a.ld_ind(H, 0);
    a.jeq(DHCPV6_SERVER, deny);
    a.ld_ind(H, 2);
    a.jeq(DHCPV6_CLIENT, deny);
    a.ja(src6);
    a.mark(icmp6);
    a.note("router advertisement or ICMPv6 redirect: drop");
    a.ld_ind(B, 0);
    a.jeq(ND_ROUTER_ADVERT, deny);
    a.jeq(ND_REDIRECT, deny);
    a.jeq(ND_NEIGHBOR_ADVERT, na);
    a.jeq(ND_NEIGHBOR_SOLICIT, dad);
    a.jeq(ND_ROUTER_SOLICIT, dad);
    a.jeq(MLD2_LISTENER_REPORT, dad);
    a.ja(src6);
    a.mark(dad);
    a.note("NS (DAD), RS or MLDv2 report from ::: pass");
    for w in 0..4 {
        a.ld(W, IP6_SRC + 4 * w);
        a.jne(0, src6);
    }
    a.ja(allow);
    a.mark(na);
    a.note("neighbour advertisement behind an extension header: drop");
    a.ld(B, IP6_NEXT);
    a.jne(IPPROTO_ICMPV6, deny);
    a.note("neighbour advertisement for a target not the guest's: drop");
    let target_ok = a.label();
    prefix_in(&mut a, IP6_PAYLOAD + 8, &targets, target_ok);
    a.ja(deny);
    a.mark(target_ok);
    a.note("neighbour advertisement: no option, or one target link-layer address the guest's");
    a.ld(H, IP6_PAYLOAD_LEN);
    a.jeq(24, src6);
    a.jne(32, deny);
    a.ld(H, IP6_PAYLOAD + 24);
    a.jne(ND_OPT_TARGET_LLADDR_LEN1, deny);
    mac_in(&mut a, IP6_PAYLOAD + 26, &macs, deny);
    a.mark(src6);
    a.note("IPv6 from the guest's addresses or a link-local one: pass, else drop");
    prefix_in(&mut a, IP6_SRC, &v6, allow);
    a.ja(deny);

    a.mark(allow);
    a.op(RET | K, ALLOW);
    a.mark(deny);
    a.op(RET | K, DENY);
    a.finish()
}

/// A program as tc writes it (`tc filter ... bpf bytecode '...'`): its
/// length, then each instruction's code, jt, jf and k in decimal.
pub fn bytecode(prog: &[Insn]) -> String {
    let mut s = prog.len().to_string();
    for i in prog {
        let _ = write!(s, ",{} {} {} {}", i.code, i.jt, i.jf, i.k);
    }
    s
}

/// One instruction as `tcpdump -d` writes it.
fn disassemble(pc: usize, i: &Insn) -> String {
    let size = match i.code & 0x18 {
        W => "",
        H => "h",
        _ => "b",
    };
    let target = |off: u8| pc + 1 + usize::from(off);
    let text = match i.code & 0x07 {
        LD | LDX => {
            let reg = if i.code & 0x07 == LDX { "ldx" } else { "ld" };
            match i.code & 0xe0 {
                ABS if i.k == VLAN_TAG_PRESENT => "ld vlan_tag_present".to_owned(),
                ABS => format!("{reg}{size} [{}]", i.k),
                IND => format!("{reg}{size} [x + {}]", i.k),
                MEM => format!("{reg} M[{}]", i.k),
                MSH => format!("ldxb 4*([{}]&0xf)", i.k),
                _ => format!("{reg} #{:#x}", i.k),
            }
        }
        ST => format!("st M[{}]", i.k),
        ALU => {
            let op = match i.code & 0xf0 {
                ADD => "add",
                AND => "and",
                LSH => "lsh",
                _ => "alu",
            };
            if i.code & X != 0 {
                format!("{op} x")
            } else {
                format!("{op} #{:#x}", i.k)
            }
        }
        JMP if i.code & 0xf0 == JA => format!("ja {}", pc + 1 + i.k as usize),
        JMP => {
            let op = match i.code & 0xf0 {
                JSET => "jset",
                JGE => "jge",
                _ => "jeq",
            };
            let what = if i.code & X != 0 {
                "x".to_owned()
            } else {
                format!("#{:#x}", i.k)
            };
            format!("{op} {what} jt {} jf {}", target(i.jt), target(i.jf))
        }
        RET => format!("ret #{}", i.k as i32),
        _ if i.code == MISC | TAX => "tax".to_owned(),
        _ => "txa".to_owned(),
    };
    format!("({pc:03}) {text}")
}

/// The program for `spec` as people read it: each part's note, then its
/// instructions.
pub fn listing(spec: &GuardSpec) -> String {
    let (prog, notes) = program(spec);
    let mut out = String::new();
    let mut notes = notes.into_iter().peekable();
    for (pc, i) in prog.iter().enumerate() {
        while let Some((_, n)) = notes.next_if(|(at, _)| *at == pc) {
            let _ = writeln!(out, "; {n}");
        }
        let _ = writeln!(out, "{}", disassemble(pc, i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::TapName;

    /// Classic BPF as the kernel runs it, for the instructions the guard
    /// uses: a load past the end of the frame returns 0, as the kernel's.
    fn run(prog: &[Insn], frame: &[u8], tagged: bool) -> u32 {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        let load = |off: u32, size: u16| -> Option<u32> {
            let off = off as usize;
            let n = match size {
                W => 4,
                H => 2,
                _ => 1,
            };
            let b = frame.get(off..off.checked_add(n)?)?;
            Some(b.iter().fold(0u32, |v, &c| v << 8 | u32::from(c)))
        };
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code & 0x07 {
                LD => {
                    let size = i.code & 0x18;
                    let v = match i.code & 0xe0 {
                        ABS if i.k == VLAN_TAG_PRESENT => Some(u32::from(tagged)),
                        ABS => load(i.k, size),
                        IND => load(x.wrapping_add(i.k), size),
                        MEM => Some(mem[i.k as usize]),
                        _ => Some(i.k),
                    };
                    match v {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                LDX => match i.code & 0xe0 {
                    MSH => match load(i.k, B) {
                        Some(v) => x = 4 * (v & 0xf),
                        None => return 0,
                    },
                    _ => x = i.k,
                },
                ST => mem[i.k as usize] = a,
                ALU => {
                    let v = if i.code & X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        ADD => a.wrapping_add(v),
                        AND => a & v,
                        LSH => a << v,
                        op => panic!("ALU op {op:#x}"),
                    }
                }
                JMP if i.code & 0xf0 == JA => pc += i.k as usize,
                JMP => {
                    let v = if i.code & X != 0 { x } else { i.k };
                    let hit = match i.code & 0xf0 {
                        JEQ => a == v,
                        JGE => a >= v,
                        JSET => a & v != 0,
                        op => panic!("JMP op {op:#x}"),
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                RET => return i.k,
                _ if i.code == MISC | TAX => x = a,
                _ => a = x,
            }
        }
    }

    fn spec() -> GuardSpec {
        GuardSpec {
            tap: TapName::new("vm0").unwrap(),
            ifindex: 1,
            macs: vec![Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56])],
            ipv4: Some(vec!["192.0.2.10".parse().unwrap()]),
            ipv6: Some(vec!["2001:db8::10".parse().unwrap()]),
            enforce: true,
            rate_in: None,
        }
    }

    /// An Ethernet + IPv4 + UDP frame from `mac` and `src`.
    fn udp4(mac: [u8; 6], src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[255, 255, 255, 255]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&[0, 9, 0, 8, 0, 0]);
        f
    }

    const GUEST: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    #[test]
    fn the_program_allows_the_guests_own_frame_and_nothing_forged_or_short() {
        let (prog, _) = program(&spec());
        assert_eq!(prog[0], MARK);
        assert_eq!(run(&prog, &udp4(GUEST, [192, 0, 2, 10], 9), false), ALLOW);
        assert_eq!(run(&prog, &udp4(GUEST, [192, 0, 2, 11], 9), false), DENY);
        assert_eq!(run(&prog, &udp4([2; 6], [192, 0, 2, 10], 9), false), DENY);
        assert_eq!(run(&prog, &udp4(GUEST, [192, 0, 2, 10], 67), false), DENY);
        assert_eq!(run(&prog, &udp4(GUEST, [192, 0, 2, 10], 9), true), DENY);
        // every cut of a frame the guest may send is refused up to where
        // the last checked byte is (the UDP source port)
        let whole = udp4(GUEST, [192, 0, 2, 10], 9);
        for len in 0..36 {
            assert_eq!(run(&prog, &whole[..len], false), DENY, "cut at {len}");
        }
    }

    #[test]
    fn long_jumps_land_where_short_ones_would() {
        // the guest's own MAC and address last, behind enough others that
        // the jumps to them and to the verdicts outgrow 8-bit offsets
        let mut s = spec();
        s.macs = (0..15u8)
            .map(|i| Mac([0x52, 0x54, 0, 0xaa, 0, i]))
            .chain([Mac(GUEST)])
            .collect();
        let mut v4: Vec<Prefix> = (0..63)
            .map(|i| format!("100.{i}.0.0/16").parse().unwrap())
            .collect();
        v4.push("192.0.2.10".parse().unwrap());
        s.ipv4 = Some(v4);
        s.ipv6 = Some(
            (0..64)
                .map(|i| format!("2001:db8:{:x}::/48", 0x100 + i).parse().unwrap())
                .collect(),
        );
        let (prog, _) = program(&s);
        assert!(
            prog.len() > 1000 && prog.len() <= MAX_INSNS,
            "{}",
            prog.len()
        );
        assert!(prog.iter().any(|i| i.code == JMP | JA && i.k > 255));
        assert_eq!(run(&prog, &udp4(GUEST, [192, 0, 2, 10], 9), false), ALLOW);
        assert_eq!(run(&prog, &udp4(GUEST, [100, 62, 7, 7], 9), false), ALLOW);
        assert_eq!(run(&prog, &udp4(GUEST, [100, 64, 7, 7], 9), false), DENY);
        assert_eq!(
            run(
                &prog,
                &udp4([0x52, 0x54, 0, 0xaa, 0, 3], [192, 0, 2, 10], 9),
                false
            ),
            ALLOW
        );
        assert!(s.check().is_ok());
    }

    #[test]
    fn every_jump_stays_inside_the_program_and_it_ends_in_a_verdict() {
        for s in [
            spec(),
            GuardSpec {
                ipv4: None,
                ipv6: None,
                ..spec()
            },
        ] {
            let (prog, notes) = program(&s);
            assert_eq!(prog.last().unwrap().code, RET | K);
            for (pc, i) in prog.iter().enumerate() {
                if i.code & 0x07 == JMP {
                    let far = if i.code & 0xf0 == JA {
                        i.k as usize
                    } else {
                        usize::from(i.jt.max(i.jf))
                    };
                    assert!(pc + 1 + far < prog.len(), "jump at {pc}");
                }
            }
            assert!(notes.iter().all(|(at, _)| *at < prog.len()));
        }
    }

    #[test]
    fn random_frames_never_run_off_the_program() {
        let (prog, _) = program(&spec());
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 120) as usize;
            let mut f: Vec<u8> = (0..len)
                .map(|i| (seed.rotate_left(i as u32 * 7) >> 3) as u8)
                .collect();
            // mostly frames that reach the protocol checks
            if len >= 14 && seed % 3 != 0 {
                f[6..12].copy_from_slice(&GUEST);
                let types = [0x0800u16, 0x86dd, 0x0806, 0x8035];
                let t = types[(seed >> 40) as usize % types.len()];
                f[12..14].copy_from_slice(&t.to_be_bytes());
            }
            let v = run(&prog, &f, false);
            assert!(v == ALLOW || v == DENY);
        }
    }

    #[test]
    fn bytecode_is_what_tc_takes() {
        let prog = [
            Insn {
                code: 0x28,
                jt: 0,
                jf: 0,
                k: 12,
            },
            Insn {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: u32::MAX,
            },
        ];
        assert_eq!(bytecode(&prog), "2,40 0 0 12,6 0 0 4294967295");
        let text = listing(&spec());
        assert!(
            text.starts_with("; kvmnet's guard\n(000) ld #0x6b766d67\n"),
            "{text}"
        );
        assert!(text.contains("(001) ld vlan_tag_present"), "{text}");
    }
}
