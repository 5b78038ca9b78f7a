//! The guard's checks on a tap: its program ([`super::bpf`]) as a classic
//! BPF filter on the tap's ingress qdisc, with a filter behind it that
//! drops everything the program does not allow (docs/guard-design.md).
//!
//! Traffic control state belongs to its device: the kernel deletes the
//! qdisc and its filters with the tap, so a tap that vanishes without a
//! downscript leaves nothing to collect, and putting the checks on costs
//! the same whatever the number of taps (every request names the tap by
//! its ifindex).

use crate::kernel::TC_ACT_SHOT;
use crate::netlink::{Netlink, NetlinkError};
use crate::nlsock::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use crate::tc;

use super::bpf::{self, Insn};
use super::{GuardError, GuardSpec};

/// The filter that runs the guard's program: first on the tap's ingress.
pub const PRIO_CHECKS: u16 = 1;
/// The filter that drops what the program does not allow: right behind.
pub const PRIO_DROP: u16 = 2;
/// The drop filter's program: a direct-action program whose return value
/// is the verdict.
fn drop_all() -> [Insn; 1] {
    [Insn {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: TC_ACT_SHOT,
    }]
}

/// Errors that mean "nothing of that kind there": no such filter
/// (ENOENT), no ingress qdisc to find it on (EINVAL), no device (ENODEV).
fn absent(e: &NetlinkError) -> bool {
    matches!(
        e.errno(),
        Some(libc::ENOENT) | Some(libc::EINVAL) | Some(libc::ENODEV)
    )
}

/// Puts `spec`'s checks on its tap, or replaces the ones there. The drop
/// filter goes in before the checks' filter: from the first request on,
/// the tap passes nothing the guard has not allowed, and a run that stops
/// half-way leaves a tap that drops everything, which the next run
/// completes. A replaced program is swapped for the new one in one step.
pub fn install(nl: &Netlink, spec: &GuardSpec) -> Result<(), GuardError> {
    let ifindex = spec.ifindex;
    let tap = spec.tap.as_str();
    // The kernel answers ENOENT for a qdisc or classifier kind it does not
    // have (nor can load).
    let unsupported = |what, module| GuardError::Unsupported {
        tap: tap.to_owned(),
        what,
        module,
    };
    match nl.tc(
        || format!("adding an ingress qdisc to {tap} for its guard"),
        tc::new_ingress(ifindex),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Ok(_) => {}
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        Err(e) if e.errno() == Some(libc::ENOENT) => {
            return Err(unsupported(
                "ingress qdisc (CONFIG_NET_SCH_INGRESS)",
                "sch_ingress",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let drop: Vec<[u8; 8]> = drop_all().iter().map(Insn::bytes).collect();
    let (prog, _) = bpf::program(spec);
    let ops: Vec<[u8; 8]> = prog.iter().map(Insn::bytes).collect();
    for (what, prio, ops, direct) in [
        ("drop filter", PRIO_DROP, &drop, true),
        ("checks", PRIO_CHECKS, &ops, false),
    ] {
        match nl.tc(
            || format!("adding the guard's {what} to {tap}"),
            tc::new_bpf_filter(ifindex, prio, ops, direct),
            NLM_F_ACK | NLM_F_CREATE,
        ) {
            Ok(_) => {}
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                return Err(unsupported(
                    "classic BPF classifier (CONFIG_NET_CLS_BPF)",
                    "cls_bpf",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The kernel modules the checks need, and the kernel options that build
/// them.
pub const MODULES: [(&str, &str); 2] = [
    ("sch_ingress", "CONFIG_NET_SCH_INGRESS"),
    ("cls_bpf", "CONFIG_NET_CLS_BPF"),
];

/// What the running kernel's module lists say of [`MODULES`] (read only:
/// nothing is loaded or tried): `Ok(missing)` with the modules it has
/// neither built in nor as a module, or `Err` when it ships no lists to
/// tell from (`/lib/modules/RELEASE/modules.builtin` and `modules.dep`).
pub fn kernel_support(lib_modules: &std::path::Path) -> Result<Vec<&'static str>, String> {
    let release = nix::sys::utsname::uname()
        .map_err(|e| e.desc().to_owned())?
        .release()
        .to_string_lossy()
        .into_owned();
    let dir = lib_modules.join(&release);
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    let (builtin, dep) = match (read("modules.builtin"), read("modules.dep")) {
        (Ok(b), Ok(d)) => (b, d),
        (Err(e), _) | (_, Err(e)) => return Err(format!("{}: {e}", dir.display())),
    };
    let listed = |name: &str| {
        builtin.lines().chain(dep.lines()).any(|l| {
            let path = l.split(':').next().unwrap_or("");
            let file = path.rsplit('/').next().unwrap_or("");
            file.split('.').next() == Some(name)
        })
    };
    Ok(MODULES
        .iter()
        .filter(|(m, _)| !listed(m))
        .map(|(m, _)| *m)
        .collect())
}

/// Takes the checks off the tap with this ifindex: the checks' filter
/// first (the tap drops everything until the drop filter goes too), then
/// the ingress qdisc (or a clsact someone else made) when no filter of
/// anyone else's is left on it. None
/// there, or no tap, is fine.
pub fn lift(nl: &Netlink, ifindex: u32) -> Result<(), GuardError> {
    for prio in [PRIO_CHECKS, PRIO_DROP] {
        match nl.tc(
            || format!("removing the guard's filter {prio} from interface #{ifindex}"),
            tc::del_filter(ifindex, prio),
            NLM_F_ACK,
        ) {
            Ok(_) => {}
            Err(e) if absent(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut others = 0;
    for egress in [false, true] {
        match filters(nl, ifindex, egress) {
            Ok(f) => others += f.len(),
            Err(e) if absent(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    if others == 0 {
        match nl.tc(
            || format!("removing the ingress qdisc of interface #{ifindex}"),
            tc::del_ingress(ifindex),
            NLM_F_ACK,
        ) {
            Ok(_) => {}
            Err(e) if absent(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn filters(nl: &Netlink, ifindex: u32, egress: bool) -> Result<Vec<tc::Filter>, NetlinkError> {
    let op = || format!("reading the filters of interface #{ifindex}");
    let answer = nl.tc(op, tc::dump_filters(ifindex, egress), NLM_F_DUMP)?;
    answer
        .iter()
        .map(|m| tc::parse_filter(m))
        .filter(|f| !matches!(f, Ok(f) if f.handle == 0))
        .collect::<Result<_, _>>()
        .map_err(|msg| NetlinkError::Protocol { op: op(), msg })
}

/// The guard's checks as the kernel holds them on a tap (they can belong to
/// no other tap: they die with theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnTap {
    /// The program, as the kernel reports it.
    pub program: Vec<Insn>,
    /// The drop filter is behind it.
    pub drop: bool,
}

impl OnTap {
    /// Whether these are the checks `spec` asks for, complete.
    pub fn is(&self, spec: &GuardSpec) -> bool {
        self.drop && self.program == bpf::program(spec).0
    }
}

fn insns(ops: &[[u8; 8]]) -> Vec<Insn> {
    ops.iter()
        .map(|b| Insn {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect()
}

/// The guard's checks on the tap with this ifindex; `None` when it has
/// none (or there is no such tap).
pub fn read(nl: &Netlink, ifindex: u32) -> Result<Option<OnTap>, GuardError> {
    let list = match filters(nl, ifindex, false) {
        Ok(l) => l,
        Err(e) if absent(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bpf = |f: &&tc::Filter, prio: u16, direct: bool| {
        f.prio == prio && f.kind == "bpf" && f.direct == direct
    };
    let drop = list
        .iter()
        .any(|f| bpf(&f, PRIO_DROP, true) && insns(&f.ops) == drop_all());
    Ok(list
        .iter()
        .find(|f| bpf(f, PRIO_CHECKS, false))
        .map(|f| insns(&f.ops))
        .filter(|p| p.first() == Some(&bpf::MARK))
        .map(|program| OnTap { program, drop }))
}
