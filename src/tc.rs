//! The traffic-control requests kvmnet sends (a tbf root qdisc on a tap: its
//! creation or change, its removal, the look-up of a tap's root qdisc) and
//! its reading of the answer, written directly like [`crate::nlreq`].
//!
//! netlink-packet-route has no tbf options, so the unit tests hold the
//! framing (tcmsg, TCA_KIND, the TCA_OPTIONS nest and each attribute's
//! header) byte for byte to its TC message builder with tbf's attributes as
//! opaque values, and tests/shape.rs holds their content to the kernel: what
//! `tc -j qdisc show` reads back from a qdisc kvmnet set, and what kvmnet
//! reads back from one tc set.

use crate::kernel::{
    AF_UNSPEC, NLA_TYPE_MASK, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETQDISC, RTM_GETTFILTER,
    RTM_NEWQDISC, RTM_NEWTFILTER, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT, TCA_BPF_OPS,
    TCA_BPF_OPS_LEN, TCA_KIND, TCA_OPTIONS, TCA_TBF_BURST, TCA_TBF_PARMS, TCA_TBF_RATE64,
    TC_H_CLSACT, TC_H_CLSACT_HANDLE, TC_H_CLSACT_INGRESS, TC_H_ROOT, TC_LINKLAYER_ETHERNET,
};
use crate::linkmsg::{u32_of, Attrs};
use crate::nlreq::Request;
use crate::nlsock::NLMSG_HDRLEN;

/// The handle of kvmnet's root qdisc, `6b76:` ("kv"): below the range tc
/// and the kernel pick handles from (8000: and up), so one of theirs never
/// has it by chance.
pub(crate) const HANDLE: u32 = 0x6b76_0000;
/// The kernel keeps tbf's bucket in ns and reports it in ticks of 64 ns
/// (PSCHED_SHIFT).
pub(crate) const TICK_NS: u64 = 64;

const TCMSG_LEN: usize = 20;
/// struct tc_tbf_qopt: two struct tc_ratespec (12 bytes each), then limit,
/// buffer and mtu.
const QOPT_LEN: usize = 36;

/// What kvmnet asks of tbf. `rate` in bytes per second, `burst` (the
/// bucket) and `limit` (the queue behind it) in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tbf {
    pub rate: u64,
    pub burst: u32,
    pub limit: u32,
}

/// A root qdisc as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Qdisc {
    pub ifindex: u32,
    pub handle: u32,
    pub parent: u32,
    pub kind: String,
    /// A tbf's parameters; `None` for other kinds.
    pub tbf: Option<TbfState>,
}

/// tbf's parameters as the kernel reports them: the bucket comes back as
/// time (`buffer`, in ticks of [`TICK_NS`]), not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TbfState {
    pub rate: u64,
    pub buffer_ticks: u32,
    pub limit: u32,
}

impl TbfState {
    /// The bucket in bytes (as `tc` shows it): its time at the rate.
    pub fn burst(&self) -> u64 {
        let ns = u128::from(self.buffer_ticks) * u128::from(TICK_NS);
        u64::try_from(ns * u128::from(self.rate) / 1_000_000_000).unwrap_or(u64::MAX)
    }

    /// Whether this is the qdisc `want` describes: the same rate and queue,
    /// and the same bucket but for the rounding of its time to a tick (the
    /// kernel turns the bytes into ns and the ns into whole ticks, so a
    /// tick's worth of bytes and one more can be lost).
    pub fn is(&self, want: &Tbf) -> bool {
        let tick_bytes = want.rate.saturating_mul(TICK_NS) / 1_000_000_000 + 1;
        let burst = self.burst();
        self.rate == want.rate
            && self.limit == want.limit
            && burst <= u64::from(want.burst)
            && u64::from(want.burst) - burst <= tick_bytes
    }
}

/// A request with a `struct tcmsg` for the root of `ifindex`.
fn tcmsg(kind: u16, ifindex: u32, handle: u32) -> Request {
    tcmsg_at(kind, ifindex, handle, TC_H_ROOT, 0)
}

/// A request with a `struct tcmsg`: `info` is a filter's priority and
/// protocol.
fn tcmsg_at(kind: u16, ifindex: u32, handle: u32, parent: u32, info: u32) -> Request {
    let mut body = Vec::with_capacity(128);
    body.push(AF_UNSPEC);
    body.extend_from_slice(&[0; 3]);
    // tcm_ifindex is an int; ifindexes are positive, so the bytes are alike.
    body.extend_from_slice(&ifindex.to_ne_bytes());
    body.extend_from_slice(&handle.to_ne_bytes());
    body.extend_from_slice(&parent.to_ne_bytes());
    body.extend_from_slice(&info.to_ne_bytes());
    Request { kind, body }
}

/// RTM_NEWQDISC of an ingress qdisc on `ifindex`: the hook that filters on
/// a device's ingress attach to. (clsact has one too, and a second for
/// egress, which the guard does not use: each is a filter block the kernel
/// binds, and some kernels keep every bound block of the host in one list
/// that each bind walks.) Filters address it as clsact's ingress,
/// [`TC_H_CLSACT_INGRESS`], which either qdisc takes.
pub(crate) fn new_ingress(ifindex: u32) -> Request {
    let mut r = tcmsg_at(RTM_NEWQDISC, ifindex, TC_H_CLSACT_HANDLE, TC_H_CLSACT, 0);
    r.string(TCA_KIND, "ingress");
    r
}

/// RTM_DELQDISC of `ifindex`'s ingress or clsact qdisc (and every filter
/// on it).
pub(crate) fn del_ingress(ifindex: u32) -> Request {
    tcmsg_at(RTM_DELQDISC, ifindex, TC_H_CLSACT_HANDLE, TC_H_CLSACT, 0)
}

/// A filter's priority and protocol (every protocol: ETH_P_ALL, in
/// network byte order as tc_filter reads it) in `tcm_info`.
fn filter_info(prio: u16) -> u32 {
    u32::from(prio) << 16 | u32::from((libc::ETH_P_ALL as u16).to_be())
}

/// A classic BPF filter on `ifindex`'s ingress, handle 1 at
/// priority `prio`; `ops` are `struct sock_filter`s. A
/// direct-action program's return value is the verdict; otherwise a
/// non-zero one is a match, which ends the classification (the frame
/// passes), and zero sends the frame on to the next filter.
pub(crate) fn new_bpf_filter(ifindex: u32, prio: u16, ops: &[[u8; 8]], direct: bool) -> Request {
    let mut r = tcmsg_at(
        RTM_NEWTFILTER,
        ifindex,
        1,
        TC_H_CLSACT_INGRESS,
        filter_info(prio),
    );
    r.string(TCA_KIND, "bpf");
    let len = u16::try_from(ops.len()).unwrap_or(u16::MAX);
    let code: Vec<u8> = ops.iter().flatten().copied().collect();
    r.nest(TCA_OPTIONS, |r| {
        r.attr(TCA_BPF_OPS_LEN, &len.to_ne_bytes());
        r.attr(TCA_BPF_OPS, &code);
        if direct {
            r.u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
        }
    });
    r
}

/// RTM_DELTFILTER of the filters at priority `prio` on `ifindex`'s
/// ingress.
pub(crate) fn del_filter(ifindex: u32, prio: u16) -> Request {
    tcmsg_at(
        RTM_DELTFILTER,
        ifindex,
        0,
        TC_H_CLSACT_INGRESS,
        filter_info(prio),
    )
}

/// A dump of the filters on `ifindex`'s ingress (or clsact's egress, with
/// `egress`): one device's, whatever the number of devices.
pub(crate) fn dump_filters(ifindex: u32, egress: bool) -> Request {
    let parent = if egress {
        TC_H_CLSACT_INGRESS + 1
    } else {
        TC_H_CLSACT_INGRESS
    };
    tcmsg_at(RTM_GETTFILTER, ifindex, 0, parent, 0)
}

/// A filter as a dump describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub prio: u16,
    pub handle: u32,
    pub kind: String,
    /// A classic cls_bpf program, as `struct sock_filter`s.
    pub ops: Vec<[u8; 8]>,
    pub direct: bool,
}

/// A whole traffic-control message of type `kind` (header included): its
/// `struct tcmsg` and its attributes.
fn tc_parts<'m>(msg: &'m [u8], kind: u16, what: &str) -> Result<(&'m [u8], &'m [u8]), String> {
    let start = NLMSG_HDRLEN + TCMSG_LEN;
    if msg.len() < start {
        return Err(format!("a {}-byte {what} message is too short", msg.len()));
    }
    let got = u16::from_ne_bytes([msg[4], msg[5]]);
    if got != kind {
        return Err(format!("message type {got} where a {what} was expected"));
    }
    let len = (u32_of(msg).unwrap_or(0) as usize).clamp(start, msg.len());
    Ok((&msg[NLMSG_HDRLEN..start], &msg[start..len]))
}

/// Reads one whole netlink message (header included) describing a filter.
pub(crate) fn parse_filter(msg: &[u8]) -> Result<Filter, String> {
    let (tcm, attrs) = tc_parts(msg, RTM_NEWTFILTER, "filter")?;
    let word = |at: usize| u32_of(&tcm[at..]).unwrap_or(0);
    let mut f = Filter {
        prio: (word(16) >> 16) as u16,
        handle: word(8),
        kind: String::new(),
        ops: Vec::new(),
        direct: false,
    };
    let text = |v: &[u8]| {
        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    };
    for (k, v) in Attrs(attrs) {
        match k & NLA_TYPE_MASK {
            TCA_KIND => f.kind = text(v),
            TCA_OPTIONS if f.kind == "bpf" => {
                for (k, v) in Attrs(v) {
                    match k & NLA_TYPE_MASK {
                        TCA_BPF_OPS => {
                            f.ops = v
                                .chunks_exact(8)
                                .map(|c| c.try_into().expect("eight bytes"))
                                .collect()
                        }
                        TCA_BPF_FLAGS => {
                            f.direct = u32_of(v).unwrap_or(0) & TCA_BPF_FLAG_ACT_DIRECT != 0
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

/// The bucket as time, for kernels before 3.13 that read only this (later
/// ones take TCA_TBF_BURST's bytes and work the time out themselves).
fn buffer_ticks(rate: u64, burst: u32) -> u32 {
    let ns = u128::from(burst) * 1_000_000_000 / u128::from(rate.max(1));
    u32::try_from(ns / u128::from(TICK_NS)).unwrap_or(u32::MAX)
}

/// RTM_NEWQDISC of kvmnet's tbf as `ifindex`'s root qdisc, the attributes
/// in tc's order. The caller's flags decide between create and change.
pub(crate) fn new_tbf(ifindex: u32, tbf: &Tbf) -> Request {
    let mut qopt = [0u8; QOPT_LEN];
    // rate.linklayer: a link layer the kernel knows, so it needs no rate
    // table (TCA_TBF_RTAB), which only older kernels used.
    qopt[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(tbf.rate).unwrap_or(u32::MAX);
    qopt[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // peakrate stays zero: no peak rate.
    qopt[24..28].copy_from_slice(&tbf.limit.to_ne_bytes());
    qopt[28..32].copy_from_slice(&buffer_ticks(tbf.rate, tbf.burst).to_ne_bytes());
    let mut r = tcmsg(RTM_NEWQDISC, ifindex, HANDLE);
    r.string(TCA_KIND, "tbf");
    r.nest(TCA_OPTIONS, |r| {
        r.attr(TCA_TBF_PARMS, &qopt);
        r.u32(TCA_TBF_BURST, tbf.burst);
        if rate32 == u32::MAX {
            r.attr(TCA_TBF_RATE64, &tbf.rate.to_ne_bytes());
        }
    });
    r
}

/// RTM_DELQDISC of `ifindex`'s root qdisc, only if its handle is `handle`
/// (the kernel refuses with EINVAL otherwise).
pub(crate) fn del_root(ifindex: u32, handle: u32) -> Request {
    tcmsg(RTM_DELQDISC, ifindex, handle)
}

/// RTM_GETQDISC of `ifindex`'s root qdisc: a get, not a dump, so its cost
/// does not grow with the host's interfaces.
pub(crate) fn get_root(ifindex: u32) -> Request {
    tcmsg(RTM_GETQDISC, ifindex, 0)
}

fn u64_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?))
}

/// Reads one whole netlink message (header included) describing a qdisc.
pub(crate) fn parse_qdisc(msg: &[u8]) -> Result<Qdisc, String> {
    let (tcm, attrs) = tc_parts(msg, RTM_NEWQDISC, "qdisc")?;
    let word = |at: usize| u32_of(&tcm[at..]).unwrap_or(0);
    let mut q = Qdisc {
        ifindex: word(4),
        handle: word(8),
        parent: word(12),
        kind: String::new(),
        tbf: None,
    };
    let mut options = None;
    for (k, v) in Attrs(attrs) {
        match k & NLA_TYPE_MASK {
            TCA_KIND => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                q.kind = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            TCA_OPTIONS => options = Some(v),
            _ => {}
        }
    }
    if q.kind == "tbf" {
        let options = options.ok_or("a tbf qdisc without options")?;
        let mut state = None;
        let mut rate64 = 0;
        for (k, v) in Attrs(options) {
            match k {
                TCA_TBF_PARMS => {
                    let p = v
                        .get(..QOPT_LEN)
                        .ok_or_else(|| format!("tbf parameters of {} bytes", v.len()))?;
                    let at = |i: usize| u32_of(&p[i..]).unwrap_or(0);
                    state = Some(TbfState {
                        rate: u64::from(at(8)),
                        limit: at(24),
                        buffer_ticks: at(28),
                    });
                }
                TCA_TBF_RATE64 => rate64 = u64_of(v).ok_or("a short TCA_TBF_RATE64")?,
                _ => {}
            }
        }
        let mut state = state.ok_or("a tbf qdisc without parameters")?;
        // The kernel takes the larger of the two, as it does on input.
        state.rate = state.rate.max(rate64);
        q.tbf = Some(state);
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::tc::{TcAttribute, TcHandle, TcHeader, TcMessage, TcOption};
    use netlink_packet_route::RouteNetlinkMessage;

    /// What netlink-packet-route emits for `msg`, whole (header included).
    fn emitted_whole(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        out
    }

    /// The same without the netlink header, as a [`Request`]: the oracle.
    fn emitted(msg: RouteNetlinkMessage) -> Request {
        let whole = emitted_whole(msg);
        Request {
            kind: u16::from_ne_bytes([whole[4], whole[5]]),
            body: whole[NLMSG_HDRLEN..].to_vec(),
        }
    }

    fn header(ifindex: u32, handle: u32) -> TcHeader {
        TcHeader {
            index: ifindex as i32,
            handle: TcHandle::from(handle),
            parent: TcHandle::ROOT,
            ..TcHeader::default()
        }
    }

    /// struct tc_tbf_qopt as the C compiler lays it out, field by field.
    fn qopt(rate32: u32, limit: u32, buffer: u32) -> Vec<u8> {
        let ratespec = |linklayer: u8, rate: u32| {
            let mut v = vec![0u8, linklayer];
            v.extend_from_slice(&0u16.to_ne_bytes()); // overhead
            v.extend_from_slice(&0i16.to_ne_bytes()); // cell_align
            v.extend_from_slice(&0u16.to_ne_bytes()); // mpu
            v.extend_from_slice(&rate.to_ne_bytes());
            v
        };
        let mut v = ratespec(TC_LINKLAYER_ETHERNET, rate32);
        v.extend(ratespec(0, 0));
        for w in [limit, buffer, 0] {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        v
    }

    fn tbf_message(ifindex: u32, handle: u32, options: Vec<TcOption>) -> TcMessage {
        let mut m = TcMessage::default();
        m.header = header(ifindex, handle);
        m.attributes.push(TcAttribute::Kind("tbf".into()));
        m.attributes.push(TcAttribute::Options(options));
        m
    }

    fn opaque(kind: u16, v: &[u8]) -> TcOption {
        TcOption::Other(DefaultNla::new(kind, v.to_vec()))
    }

    #[test]
    fn tbf_requests_match_netlink_packet_route() {
        for (rate, burst, limit) in [
            (1_250_000u64, 12_500u32, 75_000u32),
            (12_500_000, 125_000, 750_000),
            (1_000, 3_028, 3_078),
            // the largest rate the 32-bit field holds, and the first past it
            (u64::from(u32::MAX) - 1, 42_949_672, 100 << 20),
            (u64::from(u32::MAX), 42_949_673, 100 << 20),
            (12_500_000_000, 125_000_000, 750_000_000),
        ] {
            let tbf = Tbf { rate, burst, limit };
            let rate32 = u32::try_from(rate).unwrap_or(u32::MAX);
            let mut options = vec![
                opaque(
                    TCA_TBF_PARMS,
                    &qopt(rate32, limit, buffer_ticks(rate, burst)),
                ),
                opaque(TCA_TBF_BURST, &burst.to_ne_bytes()),
            ];
            if rate >= 1 << 32 || rate32 == u32::MAX {
                options.push(opaque(TCA_TBF_RATE64, &rate.to_ne_bytes()));
            }
            let m = tbf_message(7, HANDLE, options);
            assert_eq!(
                new_tbf(7, &tbf),
                emitted(RouteNetlinkMessage::NewQueueDiscipline(m)),
                "{tbf:?}"
            );
        }
    }

    #[test]
    fn root_lookup_and_removal_match_netlink_packet_route() {
        let mut m = TcMessage::default();
        m.header = header(4097, 0);
        assert_eq!(
            get_root(4097),
            emitted(RouteNetlinkMessage::GetQueueDiscipline(m))
        );
        let mut m = TcMessage::default();
        m.header = header(4097, HANDLE);
        assert_eq!(
            del_root(4097, HANDLE),
            emitted(RouteNetlinkMessage::DelQueueDiscipline(m))
        );
    }

    /// The kernel's answers, built by netlink-packet-route, read back.
    #[test]
    fn answers_are_read_as_built() {
        for (rate, rate64) in [(1_250_000u32, None), (u32::MAX, Some(12_500_000_000u64))] {
            let mut options = vec![opaque(TCA_TBF_PARMS, &qopt(rate, 75_000, 156_250))];
            if let Some(r) = rate64 {
                options.push(opaque(TCA_TBF_RATE64, &r.to_ne_bytes()));
            }
            let m = tbf_message(12, HANDLE, options);
            let q =
                parse_qdisc(&emitted_whole(RouteNetlinkMessage::NewQueueDiscipline(m))).unwrap();
            let want_rate = rate64.unwrap_or(u64::from(rate));
            assert_eq!(
                q,
                Qdisc {
                    ifindex: 12,
                    handle: HANDLE,
                    parent: TC_H_ROOT,
                    kind: "tbf".into(),
                    tbf: Some(TbfState {
                        rate: want_rate,
                        buffer_ticks: 156_250,
                        limit: 75_000
                    }),
                }
            );
        }
        let mut m = TcMessage::default();
        m.header = header(3, 0);
        m.attributes.push(TcAttribute::Kind("fq_codel".into()));
        let q = parse_qdisc(&emitted_whole(RouteNetlinkMessage::NewQueueDiscipline(m))).unwrap();
        assert_eq!((q.kind.as_str(), q.handle, q.tbf), ("fq_codel", 0, None));
    }

    /// 10 ms at 10 Mbit/s is 156,250 ticks; 12,500 bytes read back as such,
    /// and a tbf is kvmnet's only with the same rate, queue and bucket.
    #[test]
    fn the_bucket_reads_back_within_a_tick() {
        let want = Tbf {
            rate: 1_250_000,
            burst: 12_500,
            limit: 75_000,
        };
        let got = TbfState {
            rate: 1_250_000,
            buffer_ticks: buffer_ticks(want.rate, want.burst),
            limit: 75_000,
        };
        assert_eq!(got.buffer_ticks, 156_250);
        assert_eq!(got.burst(), 12_500);
        assert!(got.is(&want));
        assert!(!TbfState { limit: 1, ..got }.is(&want));
        assert!(!TbfState { rate: 1, ..got }.is(&want));
        assert!(!TbfState {
            buffer_ticks: 156_250 - 200,
            ..got
        }
        .is(&want));
        // one tick less still reads as the same bucket (rounding)
        assert!(TbfState {
            buffer_ticks: 156_249,
            ..got
        }
        .is(&want));
        // at 100 Gbit/s a tick is 800 bytes
        let fast = Tbf {
            rate: 12_500_000_000,
            burst: 125_000_000,
            limit: 750_000_000,
        };
        let ticks = buffer_ticks(fast.rate, fast.burst);
        assert!(TbfState {
            rate: fast.rate,
            buffer_ticks: ticks - 1,
            limit: fast.limit
        }
        .is(&fast));
    }

    #[test]
    fn truncated_or_garbage_never_panics() {
        let m = tbf_message(
            12,
            HANDLE,
            vec![opaque(TCA_TBF_PARMS, &qopt(1_250_000, 75_000, 156_250))],
        );
        let good = emitted_whole(RouteNetlinkMessage::NewQueueDiscipline(m));
        for cut in 0..good.len() {
            let mut short = good[..cut].to_vec();
            let _ = parse_qdisc(&short);
            // and with the header still claiming the whole length
            if short.len() >= 4 {
                short[..4].copy_from_slice(&(good.len() as u32).to_ne_bytes());
                let _ = parse_qdisc(&short);
            }
        }
        let mut flipped = good.clone();
        for i in NLMSG_HDRLEN..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = parse_qdisc(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(parse_qdisc(&good[..good.len() - 4]).is_err());
    }
}
