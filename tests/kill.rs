//! Issue 13 §1 and §2, attacked systematically: every run of kvmnet-ifup,
//! kvmnet-ifdown and kvmnet-bridge-helper is stopped at its k-th step (a
//! netlink or syslog send, an ioctl, a write: tests/common/trace.rs) for
//! k = 1, 2, ... until a run finishes before reaching k, each k in a fresh
//! network namespace.
//!
//! Kills (SIGKILL at the entry of the k-th step, so that call never runs):
//! 1. no stray tap named `kvmnet…` is left (earlier versions created taps
//!    under such temporary names; a created tap now has its own name from the
//!    start and is checked by 3);
//! 2. a tap that is an up port of a bridge has all of its port policy, at the
//!    instant of the kill and after it (never forwarding before policy);
//! 3. the namespace is exactly as before, or the tap carries a kvmnet record;
//!    either way the next uninterrupted kvmnet-ifup succeeds with exactly the
//!    state of an uninterrupted run from scratch, and kvmnet-ifdown after it
//!    gives back exactly the state before;
//! 4. a killed kvmnet-ifdown is finished exactly by the next one;
//! 5. whatever changed (at the instant of the kill or after it), the run's
//!    /dev/log got a `result=starting` line first.
//!
//! Races (at the k-th step the link behind the tap's name is replaced by
//! another user's tap, a veth, or a copy of itself, and the run goes on): the
//! replacement is never changed, and nothing in the namespace but the
//! caller's own tap changes.
//!
//! Every namespace also has IPv4/IPv6 forwarding switched on beforehand
//! (routed mode switches it on host-wide and never off, as documented: a
//! difference no ifdown can undo), and IPv6 off on br0 (a bridge-helper tap
//! has carrier, which gives br0 a link-local route that outlives the tap).
//!
//! A failure names the scenario, k, the step's system call and number, and
//! the difference of the states; all failing k of a scenario are listed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::trace::{Step, Then, Traced, Tracee};
use common::{ok, privileged_copy, Grant, Jail, Netns, Run, TempDir, IFDOWN, IFUP};

const HELPER: &str = env!("CARGO_BIN_EXE_kvmnet-bridge-helper");
const TAP: &str = "vm0";
/// The non-root caller (numeric, no passwd entry needed).
const USER: u32 = 4242;
/// Another user, owner of the tap that replaces the caller's in the races.
const OTHER: u32 = 4343;
const BR_MAC: &str = "02:00:00:00:00:01";
const QEMU_MAC: &str = "52:54:00:12:34:56";
const QEMU_ALIAS: &str = "customer-42";
/// The peer of the veth that replaces the tap in a race.
const PEER: &str = "vm0-peer";

/// A run that counts fewer steps than this counted nothing real: even the
/// shortest (ifdown deleting a tap) looks the tap up, changes it and logs.
const MIN_STEPS: usize = 3;

const BRIDGE_CFG: &str = "bridge = \"br0\"\n";
/// Port policy: isolated and not learning.
const POLICY_CFG: &str = "bridge = \"br0\"
[[rule]]
match = \"vm*\"
isolated = true
learning = false
";
const POLICY: &[(&str, bool)] = &[("isolated", true), ("learning", false)];
const ROUTE_CFG: &str = "bridge = \"br0\"
[[rule]]
match = \"vm*\"
mode = \"route\"
addresses = [\"192.0.2.10\", \"2001:db8::10\"]
";
/// The bridge helper's settings come from the top level (its taps are named
/// from a template, not matched by rules).
const HELPER_CFG: &str = "bridge = \"br0\"\nisolated = true\nlearning = false\n";
const USER_ACL: &str = "[[allow]]\nusers = [\"4242\"]\nbridges = [\"br0\"]\n";
/// The guest guard, on every tap (the QEMU taps' MAC).
const GUARD_KEYS: &str =
    "guard = true\nguest_mac = [\"52:54:00:12:34:56\"]\nguest_ipv4 = [\"192.0.2.10\"]\n";
/// A pseudo-flag of [`check_policy`]: the tap's guard filters.
const GUARD: &str = "guard";
const GUARD_POLICY: &[(&str, bool)] = &[(GUARD, true)];
/// `rate_out`, and its pseudo-flag of [`check_policy`]: the tap's tbf.
const RATE_KEYS: &str = "rate_out = \"10mbit\"\n";
const RATE: &str = "rate";
const GUARD_RATE_POLICY: &[(&str, bool)] = &[(GUARD, true), (RATE, true)];

// ---------------------------------------------------------------------------
// The state of a namespace

/// What a run may change on a link, and what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkSnap {
    index: u64,
    kind: String,
    mtu: u64,
    mac: String,
    master: Option<String>,
    up: bool,
    alias: Option<String>,
    /// The tun part (type, owner, group, persist, ...).
    tun: BTreeMap<String, String>,
    /// A bridge port's flags (isolated, learning, flood, ...).
    port: BTreeMap<String, bool>,
    proxy_arp: String,
    proxy_ndp: String,
}

impl LinkSnap {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ifindex", self.index.to_string()),
            ("kind", self.kind.clone()),
            ("mtu", self.mtu.to_string()),
            ("mac", self.mac.clone()),
            ("master", format!("{:?}", self.master)),
            ("up", self.up.to_string()),
            ("alias", format!("{:?}", self.alias)),
            ("tun", format!("{:?}", self.tun).replace('"', "")),
            ("port", format!("{:?}", self.port).replace('"', "")),
            ("proxy_arp", self.proxy_arp.clone()),
            ("proxy_ndp", self.proxy_ndp.clone()),
        ]
    }

    fn show(&self) -> String {
        self.fields()
            .iter()
            .map(|(f, v)| format!("{f}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn is_kvmnet_record(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| a.starts_with("kvmnet:v1"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    links: BTreeMap<String, LinkSnap>,
    routes4: Vec<String>,
    routes6: Vec<String>,
    /// net.ipv4.ip_forward, net.ipv6.conf.all.forwarding
    forwarding: [String; 2],
    /// Taps with the guard's checks ("NAME", or "NAME (drop only)" for a run
    /// stopped between its two filters), and limit chains ("limit of NAME",
    /// or "stale" when no link has its ifindex: collected by a later run).
    guards: BTreeSet<String>,
    /// Links whose root qdisc is kvmnet's tbf (`rate_out`).
    shaped: BTreeSet<String>,
}

impl State {
    /// For comparing with a run in another namespace: no ifindexes, and the
    /// random part of the MAC of links that were not there before (`kept`).
    fn normalized(&self, kept: &BTreeSet<String>) -> State {
        let mut s = self.clone();
        for (name, l) in s.links.iter_mut() {
            l.index = 0;
            if !kept.contains(name) {
                l.mac = format!("{}:xx:xx:xx:xx:xx", l.mac.get(..2).unwrap_or(""));
            }
        }
        s
    }

    /// Without limit chains of links that are gone: leftovers a later run
    /// collects, not state a run left half-done.
    fn without_stale(&self) -> State {
        let mut s = self.clone();
        s.guards.remove("stale");
        s
    }

    fn names(&self) -> BTreeSet<String> {
        self.links.keys().cloned().collect()
    }

    fn temp_taps(&self) -> Vec<&str> {
        self.links
            .keys()
            .filter(|n| n.starts_with("kvmnet"))
            .map(String::as_str)
            .collect()
    }
}

fn snap(ns: &Netns) -> State {
    let out = ok(Command::new("ip").args(["-n", &ns.name, "-d", "-j", "link", "show"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut links = BTreeMap::new();
    for l in v.as_array().unwrap() {
        let name = l["ifname"].as_str().unwrap().to_owned();
        let info = &l["linkinfo"];
        let kind = info["info_kind"].as_str().unwrap_or("").to_owned();
        let tun = if kind == "tun" {
            info["info_data"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        // Only the flags: the port's STP state and timers change by themselves.
        let port = info["info_slave_data"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_bool().map(|b| (k.clone(), b)))
                    .collect()
            })
            .unwrap_or_default();
        links.insert(
            name,
            LinkSnap {
                index: l["ifindex"].as_u64().unwrap(),
                kind,
                mtu: l["mtu"].as_u64().unwrap(),
                mac: l["address"].as_str().unwrap_or("").to_owned(),
                master: l["master"].as_str().map(str::to_owned),
                up: l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
                alias: l["ifalias"].as_str().map(str::to_owned),
                tun,
                port,
                proxy_arp: String::new(),
                proxy_ndp: String::new(),
            },
        );
    }
    let routes = |family: &str| -> Vec<String> {
        ok(Command::new("ip").args(["-n", &ns.name, family, "route", "show"]))
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let (routes4, routes6) = (routes("-4"), routes("-6"));
    // The guard's filters on each tap, and limit chains by the name of the
    // link whose ifindex they carry ("stale" when none has it).
    let mut guards: BTreeSet<String> = ns
        .guards()
        .lines()
        .filter_map(|l| l.strip_prefix("tap-"))
        .map(|i| {
            let i: u64 = i.trim().parse().unwrap();
            links
                .iter()
                .find(|(_, l)| l.index == i)
                .map_or("stale".to_owned(), |(n, _)| format!("limit of {n}"))
        })
        .collect();
    for (name, l) in &links {
        if l.kind != "tun" {
            continue;
        }
        match ns.checks(name) {
            "on" => guards.insert(name.clone()),
            "" => false,
            partial => guards.insert(format!("{name} ({partial})")),
        };
    }
    let names: Vec<String> = links.keys().cloned().collect();
    let (sysctls, forwarding) = common::in_netns(ns, move || {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| format!("({e})"))
        };
        let per_link: Vec<(String, String)> = names
            .iter()
            .map(|n| {
                (
                    read(&format!("/proc/sys/net/ipv4/conf/{n}/proxy_arp")),
                    read(&format!("/proc/sys/net/ipv6/conf/{n}/proxy_ndp")),
                )
            })
            .collect();
        let fwd = [
            read("/proc/sys/net/ipv4/ip_forward"),
            read("/proc/sys/net/ipv6/conf/all/forwarding"),
        ];
        (per_link, fwd)
    });
    for (l, (arp, ndp)) in links.values_mut().zip(sysctls) {
        l.proxy_arp = arp;
        l.proxy_ndp = ndp;
    }
    let qdiscs: serde_json::Value = serde_json::from_str(&ok(
        Command::new("ip").args(["netns", "exec", &ns.name, "tc", "-j", "qdisc", "show"])
    ))
    .unwrap();
    let shaped = qdiscs
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["kind"] == "tbf" && q["handle"] == "6b76:" && q["root"] == true)
        .filter_map(|q| q["dev"].as_str().map(str::to_owned))
        .collect();
    State {
        links,
        routes4,
        routes6,
        forwarding,
        guards,
        shaped,
    }
}

/// The differences from `a` to `b`, one line each.
fn diff(a: &State, b: &State) -> String {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = a.links.keys().chain(b.links.keys()).collect();
    for n in names {
        match (a.links.get(n), b.links.get(n)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), None) => out.push(format!("  - link {n} gone (was {})", x.show())),
            (None, Some(y)) => out.push(format!("  + link {n} new: {}", y.show())),
            (Some(x), Some(y)) => {
                for ((f, vx), (_, vy)) in x.fields().into_iter().zip(y.fields()) {
                    if vx != vy {
                        out.push(format!("  ~ link {n} {f}: {vx} -> {vy}"));
                    }
                }
            }
            (None, None) => unreachable!(),
        }
    }
    for (fam, ra, rb) in [
        ("-4", &a.routes4, &b.routes4),
        ("-6", &a.routes6, &b.routes6),
    ] {
        for r in ra.iter().filter(|r| !rb.contains(r)) {
            out.push(format!("  - route {fam} {r}"));
        }
        for r in rb.iter().filter(|r| !ra.contains(r)) {
            out.push(format!("  + route {fam} {r}"));
        }
    }
    for t in a.shaped.difference(&b.shaped) {
        out.push(format!("  - tbf of {t}"));
    }
    for t in b.shaped.difference(&a.shaped) {
        out.push(format!("  + tbf of {t}"));
    }
    for g in a.guards.difference(&b.guards) {
        out.push(format!("  - guard of {g}"));
    }
    for g in b.guards.difference(&a.guards) {
        out.push(format!("  + guard of {g}"));
    }
    if a.forwarding != b.forwarding {
        out.push(format!(
            "  ~ forwarding (ipv4, ipv6): {:?} -> {:?}",
            a.forwarding, b.forwarding
        ));
    }
    if out.is_empty() {
        "  (no difference)".into()
    } else {
        out.join("\n")
    }
}

/// Invariant 2: every tap that is an up bridge port has all of `policy`.
fn check_policy(st: &State, policy: &[(&str, bool)]) -> Result<(), String> {
    for (name, l) in &st.links {
        if l.kind != "tun" || !l.up {
            continue;
        }
        // The guard sits on the tap: an up tap carries the guest's frames
        // (onto the bridge, or to the host of a routed tap).
        if policy.contains(&(GUARD, true))
            && !st.guards.contains(name)
            && !st.guards.contains(&format!("{name} (drop only)"))
        {
            return Err(format!(
                "{name} is UP without its guard's filters (the guest's frames pass unchecked)"
            ));
        }
        if policy.contains(&(RATE, true)) && !st.shaped.contains(name) {
            return Err(format!(
                "{name} is UP without its tbf (the host sends to it unlimited)"
            ));
        }
        let Some(master) = &l.master else { continue };
        for &(flag, want) in policy.iter().filter(|(f, _)| *f != GUARD && *f != RATE) {
            let got = l.port.get(flag);
            if got != Some(&want) {
                return Err(format!(
                    "{name} is an UP port of {master} without its port policy: \
                     {flag} is {got:?}, configured {want} (it forwards before its policy)"
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Namespaces, callers, runs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Root,
    /// uid 4242 through the [`Jail`], with `setcap cap_net_admin+ep` copies.
    User,
}

/// The tap before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    Absent,
    /// Persistent and ownerless, as QEMU's (`ip tuntap add`), with a MAC and
    /// an alias of its own.
    Qemu,
    /// The same, owned by [`USER`].
    Users,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Ifup,
    Ifdown,
}

struct Scenario {
    name: &'static str,
    caller: Caller,
    before: Before,
    config: String,
    policy: &'static [(&'static str, bool)],
}

impl Scenario {
    fn new(name: &'static str, caller: Caller, before: Before, config: &str) -> Scenario {
        let policy = if config.contains("isolated") {
            POLICY
        } else if config.contains("guard = true") && config.contains("rate_out") {
            GUARD_RATE_POLICY
        } else if config.contains("guard = true") {
            GUARD_POLICY
        } else {
            &[]
        };
        let config = match caller {
            Caller::Root => config.to_owned(),
            Caller::User => format!("{config}{USER_ACL}"),
        };
        Scenario {
            name,
            caller,
            before,
            config,
            policy,
        }
    }
}

/// A scenario with what its runs need: the config file (root) or the
/// file-capability copies (user).
struct Ctx {
    sc: Scenario,
    _dir: TempDir,
    config: PathBuf,
    ifup: PathBuf,
    ifdown: PathBuf,
}

impl Ctx {
    fn new(sc: Scenario) -> Ctx {
        let dir = TempDir::new();
        let config = dir.config(&sc.config);
        let (ifup, ifdown) = match sc.caller {
            Caller::Root => (PathBuf::from(IFUP), PathBuf::from(IFDOWN)),
            Caller::User => (
                privileged_copy(dir.path(), IFUP, Grant::FileCap),
                privileged_copy(dir.path(), IFDOWN, Grant::FileCap),
            ),
        };
        Ctx {
            sc,
            _dir: dir,
            config,
            ifup,
            ifdown,
        }
    }

    fn bin(&self, b: Bin) -> &Path {
        match b {
            Bin::Ifup => &self.ifup,
            Bin::Ifdown => &self.ifdown,
        }
    }

    /// A fresh namespace: bridge br0 (fixed MAC and MTU, up) with a veth
    /// port, forwarding on, and the tap as the scenario has it.
    fn setup(&self) -> Netns {
        let ns = Netns::new();
        let mut batch = format!(
            "link add br0 address {BR_MAC} mtu 1500 type bridge\n\
             link set br0 up\n\
             link add up0 address 02:00:00:00:00:10 type veth peer name up1 address 02:00:00:00:00:11\n\
             link set up0 master br0 up\n"
        );
        let owner = match self.sc.before {
            Before::Absent => None,
            Before::Qemu => Some(String::new()),
            Before::Users => Some(format!(" user {USER}")),
        };
        if let Some(owner) = owner {
            batch += &format!(
                "tuntap add {TAP} mode tap{owner}\nlink set {TAP} address {QEMU_MAC} alias {QEMU_ALIAS}\n"
            );
        }
        ns.ip_batch(&batch);
        common::in_netns(&ns, || {
            for p in [
                "/proc/sys/net/ipv4/ip_forward",
                "/proc/sys/net/ipv6/conf/all/forwarding",
                "/proc/sys/net/ipv6/conf/br0/disable_ipv6",
            ] {
                std::fs::write(p, "1").unwrap_or_else(|e| panic!("{p}: {e}"));
            }
        });
        ns
    }

    fn jail(&self) -> Jail {
        Jail::new(USER, USER, &[USER]).config(&self.sc.config)
    }

    /// An uninterrupted run.
    fn run(&self, ns: &Netns, b: Bin) -> Run {
        match self.sc.caller {
            Caller::Root => ns.kvmnet(self.bin(b).to_str().unwrap(), TAP, Some(&self.config)),
            Caller::User => self.jail().run(ns, &[self.bin(b).to_str().unwrap(), TAP]),
        }
    }

    /// A traced run with `log` as its /dev/log; the jail (user runs) must
    /// live until the run ends.
    fn tracee(&self, ns: &Netns, b: Bin, log: &LogSock) -> (Tracee, Option<Jail>) {
        let bin = self.bin(b);
        match self.sc.caller {
            Caller::Root => {
                let mut c = root_cmd(bin, &self.config);
                c.arg(TAP);
                (Tracee::new(c, bin).netns(ns).dev_log(&log.path), None)
            }
            Caller::User => {
                let mut jail = self.jail();
                jail.log_socket = Some(log.path.clone());
                let c = jail.command(ns, &[bin.to_str().unwrap(), TAP]);
                (Tracee::new(c, bin), Some(jail))
            }
        }
    }

    /// The state of an uninterrupted ifup from scratch, normalized.
    fn reference(&self) -> (State, BTreeSet<String>) {
        let ns = self.setup();
        let kept = snap(&ns).names();
        let r = self.run(&ns, Bin::Ifup);
        assert_eq!(
            r.code,
            Some(0),
            "[{}] the uninterrupted reference run failed: {r:?}",
            self.sc.name
        );
        let s = snap(&ns);
        assert!(
            s.links.contains_key(TAP),
            "[{}] no {TAP} after the reference run",
            self.sc.name
        );
        (s.normalized(&kept), kept)
    }
}

fn root_cmd(bin: &Path, config: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("KVMNET_CONFIG", config).stdin(Stdio::null());
    for v in ["SUDO_UID", "SUDO_GID", "SUDO_USER", "SUDO_COMMAND"] {
        c.env_remove(v);
    }
    c
}

/// A /dev/log of the test's own for one run.
struct LogSock {
    _dir: TempDir,
    path: PathBuf,
    sock: UnixDatagram,
}

impl LogSock {
    fn new() -> LogSock {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("log");
        let sock = UnixDatagram::bind(&path).unwrap();
        // non-root callers send to it too, as to the real /dev/log
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_nonblocking(true).unwrap();
        LogSock {
            _dir: dir,
            path,
            sock,
        }
    }

    /// Everything received so far (the run has ended: its sends are queued).
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        lines
    }
}

fn has_starting(lines: &[String]) -> bool {
    lines.iter().any(|l| l.contains("result=starting"))
}

// ---------------------------------------------------------------------------
// The loop over k

enum Outcome {
    /// The run finished before its k-th step, after this many steps; and
    /// what that complete run broke, if anything.
    Finished(usize, Option<String>),
    /// Checked; whether anything had changed at the instant of the kill (or
    /// whether the race replaced anything).
    Checked(bool),
}

const NO_CHANGE_KILLED: &str = "no step interrupted a change: the tracer stops at the wrong calls";

/// Runs `one` for k = 1, 2, ... until a run finishes before its k-th step;
/// collects every failing k, then fails with all of them.
fn every_k(scenario: &str, untouched: &str, mut one: impl FnMut(usize) -> Result<Outcome, String>) {
    let mut failures = Vec::new();
    let mut touched = 0;
    let mut k = 1;
    let total = loop {
        match one(k) {
            Ok(Outcome::Finished(steps, failure)) => {
                failures.extend(failure);
                break steps;
            }
            Ok(Outcome::Checked(t)) => touched += usize::from(t),
            Err(e) => failures.push(e),
        }
        k += 1;
        assert!(k < 500, "[{scenario}] more than 500 steps: a loop?");
    };
    eprintln!(
        "[{scenario}] {total} steps, {} failing:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f: &String| {
                let mut l = f.lines();
                let head = l.next().unwrap_or("");
                let broken: Vec<&str> = l
                    .filter(|x| x.starts_with("  ") && !x.starts_with("   "))
                    .map(|x| x.trim().split(':').next().unwrap_or(""))
                    .collect();
                format!("  {head} {broken:?}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        failures.is_empty(),
        "[{scenario}] {} of {total} steps broke an invariant:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        total >= MIN_STEPS,
        "[{scenario}] a complete run counted only {total} steps: the tracer counts nothing real"
    );
    assert!(touched > 0, "[{scenario}] {untouched}");
}

fn header(sc: &str, k: usize, t: &Traced) -> String {
    match &t.at {
        Some(step) => format!("[{sc}] k={k}, stopped at {step}; steps {}", trail(t)),
        None => format!(
            "[{sc}] k={k}, finished after {} steps: {}",
            t.steps,
            trail(t)
        ),
    }
}

/// The steps a run took, as `name:fd`, oldest first.
fn trail(t: &Traced) -> String {
    let steps: Vec<String> = t
        .log
        .iter()
        .map(|(s, _)| format!("{}:{}", s.name, s.args[0] as i64))
        .collect();
    format!("[{}]", steps.join(" "))
}

/// What one run broke: each entry starts with the invariant's number.
struct Findings {
    header: String,
    broken: Vec<String>,
}

impl Findings {
    fn new(header: String) -> Findings {
        Findings {
            header,
            broken: Vec::new(),
        }
    }

    fn add(&mut self, what: String) {
        self.broken.push(what.replace('\n', "\n    "));
    }

    fn result(self) -> Result<(), String> {
        if self.broken.is_empty() {
            Ok(())
        } else {
            Err(format!("{}:\n  {}", self.header, self.broken.join("\n  ")))
        }
    }
}

/// The run that did not reach k: it must have succeeded (and logged its
/// start, when `lines` are given).
fn finished(f: &mut Findings, k: usize, t: &Traced, lines: Option<&[String]>) {
    if t.code() != Some(0) {
        f.add(format!("the uninterrupted run failed: {t:?}"));
    }
    if t.steps != k - 1 {
        // Not a broken invariant: a run may take another path (it looks a
        // tap up again while another run's creation has no owner yet, say).
        // The k it skipped were still checked.
        eprintln!(
            "{}: note: this run took {} steps where the run before reached {}",
            f.header,
            t.steps,
            k - 1
        );
    }
    if lines.is_some_and(|l| !has_starting(l)) {
        f.add(format!("5. no result=starting line in syslog: {lines:?}"));
    }
}

/// Runs `b` killed at step k, with the state at the instant of the kill.
fn kill_run(ctx: &Ctx, ns: &Netns, b: Bin, k: usize) -> (Traced, Option<State>, Vec<String>) {
    let log = LogSock::new();
    let (tracee, _jail) = ctx.tracee(ns, b, &log);
    let mut instant = None;
    let t = tracee.run(k, &mut |_: &Step| {
        instant = Some(snap(ns));
        Then::Kill
    });
    let lines = log.lines();
    (t, instant, lines)
}

/// Invariants 1, 2 and 5, common to every kill; `base` is the state the
/// run started from.
fn after_kill(
    f: &mut Findings,
    policy: &[(&str, bool)],
    t: &Traced,
    base: &State,
    instant: &State,
    after: &State,
    lines: &[String],
) {
    if !t.killed() {
        f.add(format!(
            "not killed at the step but {:?}: {}",
            t.end, t.stderr
        ));
    }
    if let Some(tmp) = after.temp_taps().first() {
        f.add(format!(
            "1. temporary tap {tmp} left behind:\n{}",
            diff(base, after)
        ));
    }
    for (when, st) in [("at the kill", instant), ("after the kill", after)] {
        if let Err(e) = check_policy(st, policy) {
            f.add(format!("2. {when}: {e}\n{}", diff(base, st)));
        }
    }
    if (instant != base || after != base) && !has_starting(lines) {
        f.add(format!(
            "5. it changed the namespace but sent no result=starting line (syslog got {lines:?}); \
             at the kill:\n{}",
            diff(base, instant)
        ));
    }
}

// ---------------------------------------------------------------------------
// ifup killed at every step

fn ifup_killed_at_every_step(sc: Scenario) {
    let ctx = Ctx::new(sc);
    let (reference, kept) = ctx.reference();
    let name = ctx.sc.name;
    every_k(name, NO_CHANGE_KILLED, |k| {
        let ns = ctx.setup();
        let before = snap(&ns);
        let (t, instant, lines) = kill_run(&ctx, &ns, Bin::Ifup, k);
        let mut f = Findings::new(header(name, k, &t));
        let Some(instant) = instant else {
            finished(&mut f, k, &t, Some(&lines));
            let s = snap(&ns).normalized(&kept);
            if s != reference {
                f.add(format!(
                    "differs from the reference run:\n{}",
                    diff(&reference, &s)
                ));
            }
            return Ok(Outcome::Finished(t.steps, f.result().err()));
        };
        let after = snap(&ns);
        after_kill(&mut f, ctx.sc.policy, &t, &before, &instant, &after, &lines);
        let left = diff(&before, &after);
        if after.without_stale() != before {
            let l = after.links.get(TAP);
            if !l.is_some_and(LinkSnap::is_kvmnet_record) {
                f.add(format!(
                    "3. the namespace changed but {TAP} carries no kvmnet record \
                     (alias {:?}):\n{left}",
                    l.map(|l| &l.alias)
                ));
            }
        }
        let r = ctx.run(&ns, Bin::Ifup);
        if r.code != Some(0) {
            f.add(format!(
                "3. the next kvmnet-ifup failed:\n{}\nthe kill left:\n{left}",
                r.stderr.trim()
            ));
            return f.result().map(|()| Outcome::Checked(true));
        }
        // A limit chain of the killed run's vanished tap may remain: the
        // next ifdown collects it (checked below, exactly).
        let resumed = snap(&ns).normalized(&kept).without_stale();
        if resumed != reference {
            f.add(format!(
                "3. the next kvmnet-ifup did not give the state of an uninterrupted run:\n{}\nit said: {}\nthe kill left:\n{left}",
                diff(&reference, &resumed),
                r.stderr.trim()
            ));
        }
        let r = ctx.run(&ns, Bin::Ifdown);
        if r.code != Some(0) {
            f.add(format!(
                "3. kvmnet-ifdown after the next ifup failed:\n{}\nthe kill left:\n{left}",
                r.stderr.trim()
            ));
        } else {
            let end = snap(&ns);
            if end != before {
                f.add(format!(
                    "3. kvmnet-ifdown after the next ifup did not give back the state before:\n{}\nthe kill left:\n{left}",
                    diff(&before, &end)
                ));
            }
        }
        f.result().map(|()| Outcome::Checked(instant != before))
    });
}

#[test]
fn ifup_create_and_attach_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup create+attach",
        Caller::Root,
        Before::Absent,
        BRIDGE_CFG,
    ));
}

#[test]
fn ifup_of_qemus_tap_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup QEMU's tap",
        Caller::Root,
        Before::Qemu,
        BRIDGE_CFG,
    ));
}

#[test]
fn ifup_create_with_port_policy_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup create, isolated/learning",
        Caller::Root,
        Before::Absent,
        POLICY_CFG,
    ));
}

#[test]
fn ifup_of_qemus_tap_with_port_policy_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup QEMU's tap, isolated/learning",
        Caller::Root,
        Before::Qemu,
        POLICY_CFG,
    ));
}

#[test]
fn ifup_routed_create_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup routed, create",
        Caller::Root,
        Before::Absent,
        ROUTE_CFG,
    ));
}

#[test]
fn ifup_routed_qemus_tap_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup routed, QEMU's tap",
        Caller::Root,
        Before::Qemu,
        ROUTE_CFG,
    ));
}

#[test]
fn ifup_by_a_file_capability_user_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup as uid 4242 (cap_net_admin+ep), create, isolated/learning",
        Caller::User,
        Before::Absent,
        POLICY_CFG,
    ));
}

#[test]
fn ifup_create_with_guard_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup create, guard",
        Caller::Root,
        Before::Absent,
        &format!("{GUARD_KEYS}{BRIDGE_CFG}"),
    ));
}

#[test]
fn ifup_of_qemus_tap_with_guard_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup QEMU's tap, guard",
        Caller::Root,
        Before::Qemu,
        &format!("{GUARD_KEYS}{BRIDGE_CFG}"),
    ));
}

#[test]
fn ifup_of_qemus_tap_with_guard_and_rate_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup QEMU's tap, guard and rate_out",
        Caller::Root,
        Before::Qemu,
        &format!("{GUARD_KEYS}{RATE_KEYS}{BRIDGE_CFG}"),
    ));
}

#[test]
fn ifdown_of_qemus_tap_with_guard_and_rate_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown of QEMU's tap, guard and rate_out",
        Caller::Root,
        Before::Qemu,
        &format!("{GUARD_KEYS}{RATE_KEYS}{BRIDGE_CFG}"),
    ));
}

#[test]
fn ifup_routed_qemus_tap_with_guard_killed_at_every_step() {
    ifup_killed_at_every_step(Scenario::new(
        "ifup routed, QEMU's tap, guard",
        Caller::Root,
        Before::Qemu,
        &format!("{GUARD_KEYS}{ROUTE_CFG}"),
    ));
}

// ---------------------------------------------------------------------------
// ifdown killed at every step

fn ifdown_killed_at_every_step(sc: Scenario) {
    let ctx = Ctx::new(sc);
    let name = ctx.sc.name;
    every_k(name, NO_CHANGE_KILLED, |k| {
        let ns = ctx.setup();
        let before = snap(&ns);
        let r = ctx.run(&ns, Bin::Ifup);
        assert_eq!(
            r.code,
            Some(0),
            "[{name}] k={k}: the ifup to undo failed: {r:?}"
        );
        let attached = snap(&ns);
        let (t, instant, lines) = kill_run(&ctx, &ns, Bin::Ifdown, k);
        let mut f = Findings::new(header(name, k, &t));
        let Some(instant) = instant else {
            finished(&mut f, k, &t, Some(&lines));
            let end = snap(&ns);
            if end != before {
                f.add(format!(
                    "an uninterrupted ifdown did not give back the state before:\n{}",
                    diff(&before, &end)
                ));
            }
            return Ok(Outcome::Finished(t.steps, f.result().err()));
        };
        let after = snap(&ns);
        after_kill(
            &mut f,
            ctx.sc.policy,
            &t,
            &attached,
            &instant,
            &after,
            &lines,
        );
        let left = diff(&attached, &after);
        if after != attached
            && after.without_stale() != before
            && !after.links.get(TAP).is_some_and(LinkSnap::is_kvmnet_record)
        {
            f.add(format!(
                "3. the kill left a half-undone {TAP} without its kvmnet record \
                 (the next ifdown cannot know what is left to undo):\n{left}"
            ));
        }
        let r = ctx.run(&ns, Bin::Ifdown);
        if r.code != Some(0) {
            f.add(format!(
                "4. the next kvmnet-ifdown failed:\n{}\nthe kill left (from attached):\n{left}",
                r.stderr.trim()
            ));
        } else {
            let end = snap(&ns);
            if end != before {
                f.add(format!(
                    "4. the next kvmnet-ifdown did not finish the undo exactly:\n{}\nit said: {}\nthe kill left (from attached):\n{left}",
                    diff(&before, &end),
                    r.stderr.trim()
                ));
            }
        }
        f.result().map(|()| Outcome::Checked(instant != attached))
    });
}

#[test]
fn ifdown_of_a_created_tap_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown after create+attach",
        Caller::Root,
        Before::Absent,
        BRIDGE_CFG,
    ));
}

#[test]
fn ifdown_of_qemus_tap_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown of QEMU's tap",
        Caller::Root,
        Before::Qemu,
        BRIDGE_CFG,
    ));
}

#[test]
fn ifdown_with_port_policy_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown of QEMU's tap, isolated/learning",
        Caller::Root,
        Before::Qemu,
        POLICY_CFG,
    ));
}

#[test]
fn ifdown_routed_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown routed, QEMU's tap",
        Caller::Root,
        Before::Qemu,
        ROUTE_CFG,
    ));
}

#[test]
fn ifdown_of_a_created_tap_with_guard_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown after create+attach, guard",
        Caller::Root,
        Before::Absent,
        &format!("{GUARD_KEYS}{BRIDGE_CFG}"),
    ));
}

#[test]
fn ifdown_of_qemus_tap_with_guard_killed_at_every_step() {
    ifdown_killed_at_every_step(Scenario::new(
        "ifdown of QEMU's tap, guard",
        Caller::Root,
        Before::Qemu,
        &format!("{GUARD_KEYS}{BRIDGE_CFG}"),
    ));
}

// ---------------------------------------------------------------------------
// The bridge helper killed at every step

#[test]
fn bridge_helper_killed_at_every_step() {
    let name = "bridge helper, isolated/learning";
    let ctx = Ctx::new(Scenario::new(
        name,
        Caller::Root,
        Before::Absent,
        HELPER_CFG,
    ));
    every_k(name, NO_CHANGE_KILLED, |k| {
        let ns = ctx.setup();
        let before = snap(&ns);
        // The helper has ended when we read: EOF or the tap is already there.
        let (qemu, helper) = common::socket_pair(Duration::from_secs(20));
        let mut c = root_cmd(Path::new(HELPER), &ctx.config);
        c.args([
            "--use-vnet".to_owned(),
            format!("--fd={}", helper.as_raw_fd()),
            "--br=br0".to_owned(),
        ]);
        let log = LogSock::new();
        let tracee = Tracee::new(c, HELPER)
            .netns(&ns)
            .dev_log(&log.path)
            .pass_fd(helper);
        let mut instant = None;
        let t = tracee.run(k, &mut |_: &Step| {
            instant = Some(snap(&ns));
            Then::Kill
        });
        let lines = log.lines();
        let mut f = Findings::new(header(name, k, &t));
        let (_, fds) = common::recv_fds_until_eof(&qemu);
        let with_tap = snap(&ns);
        if fds.len() > 1 {
            f.add(format!("QEMU's end got {} descriptors", fds.len()));
        }
        // A tap QEMU received is complete; closing it removes tap and port.
        let sent = fds.first().map(|fd| common::tap_of(fd).0);
        if let Some(tap) = &sent {
            let l = with_tap.links.get(tap);
            if !l.is_some_and(|l| l.up && l.master.as_deref() == Some("br0")) {
                f.add(format!(
                    "QEMU received {tap}, which is not an up port of br0:\n{}",
                    diff(&before, &with_tap)
                ));
            }
        }
        drop(fds);
        let gone =
            common::qemu::poll_every(Duration::from_millis(20), Duration::from_secs(5), || {
                (snap(&ns) == before).then_some(())
            });
        if sent.is_some() && gone.is_none() {
            f.add(format!(
                "closing the received tap did not give back the state before:\n{}",
                diff(&before, &snap(&ns))
            ));
        }
        let Some(instant) = instant else {
            finished(&mut f, k, &t, Some(&lines));
            if sent.is_none() {
                f.add(format!("the complete run sent QEMU no tap: {t:?}"));
            }
            return Ok(Outcome::Finished(t.steps, f.result().err()));
        };
        after_kill(&mut f, POLICY, &t, &before, &instant, &with_tap, &lines);
        // Killed before it handed the tap over: no tap left, no port left.
        if sent.is_none() && with_tap != before {
            f.add(format!(
                "killed before it sent the tap, it left:\n{}",
                diff(&before, &with_tap)
            ));
        }
        f.result().map(|()| Outcome::Checked(instant != before))
    });
}

// ---------------------------------------------------------------------------
// Races: the link behind the name replaced at every step

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// A tap of the same name owned by [`OTHER`].
    OtherUsersTap,
    /// A veth of the same name.
    Veth,
    /// The link deleted and created again as it was (another ifindex).
    Recreated,
}

fn ip(ns: &Netns, args: &[&str]) {
    ok(Command::new("ip").args(["-n", &ns.name]).args(args));
}

/// Replaces the link named [`TAP`]; false when there was nothing to
/// recreate.
fn replace(ns: &Netns, how: Replace) -> bool {
    let cur = ns.link(TAP);
    if how == Replace::Recreated && cur.is_none() {
        return false;
    }
    if cur.is_some() {
        ip(ns, &["link", "del", TAP]);
    }
    match how {
        Replace::OtherUsersTap => {
            let user = OTHER.to_string();
            ip(ns, &["tuntap", "add", TAP, "mode", "tap", "user", &user]);
            ip(
                ns,
                &[
                    "link",
                    "set",
                    TAP,
                    "mtu",
                    "1400",
                    "address",
                    "52:54:00:43:43:43",
                    "alias",
                    "theirs",
                ],
            );
        }
        Replace::Veth => ip(
            ns,
            &[
                "link", "add", TAP, "mtu", "1400", "type", "veth", "peer", "name", PEER,
            ],
        ),
        Replace::Recreated => recreate(ns, &cur.unwrap()),
    }
    true
}

/// Creates [`TAP`] again as `l` (from `ip -d -j link show`) describes it:
/// owner, group, MTU, MAC, alias, master, port flags, up.
fn recreate(ns: &Netns, l: &serde_json::Value) {
    let info = &l["linkinfo"]["info_data"];
    let id = |v: &serde_json::Value| match v.as_str() {
        Some("root") => "0".to_owned(),
        Some(s) => s.to_owned(),
        None => v.to_string(),
    };
    let user = (!info["user"].is_null()).then(|| id(&info["user"]));
    let group = (!info["group"].is_null()).then(|| id(&info["group"]));
    let mut add = vec!["tuntap", "add", TAP, "mode", "tap"];
    if let Some(u) = &user {
        add.extend(["user", u]);
    }
    if let Some(g) = &group {
        add.extend(["group", g]);
    }
    ip(ns, &add);
    let mtu = l["mtu"].to_string();
    let mac = l["address"].as_str().unwrap();
    let mut set = vec!["link", "set", TAP, "mtu", &mtu, "address", mac];
    if let Some(a) = l["ifalias"].as_str() {
        set.extend(["alias", a]);
    }
    ip(ns, &set);
    if let Some(m) = l["master"].as_str() {
        ip(ns, &["link", "set", TAP, "master", m]);
        let mut flags = vec!["link", "set", TAP, "type", "bridge_slave"];
        let slave = &l["linkinfo"]["info_slave_data"];
        for flag in [
            "isolated",
            "learning",
            "flood",
            "mcast_flood",
            "bcast_flood",
        ] {
            if let Some(b) = slave[flag].as_bool() {
                flags.extend([flag, if b { "on" } else { "off" }]);
            }
        }
        ip(ns, &flags);
    }
    if l["flags"].as_array().unwrap().iter().any(|f| f == "UP") {
        ip(ns, &["link", "set", TAP, "up"]);
    }
}

/// Whether a step looks the link named `name` up: an RTM_GETLINK request
/// naming it (IFLA_IFNAME or IFLA_ALT_IFNAME), or SIOCGIFINDEX on it.
fn is_lookup_of(step: &Step, data: &[u8], name: &str) -> bool {
    const SIOCGIFINDEX: u64 = 0x8933;
    match step.nr {
        libc::SYS_sendto | libc::SYS_sendmsg => is_getlink_of(data, name),
        libc::SYS_ioctl if step.args[1] == SIOCGIFINDEX => {
            data.len() >= 16 && data[..16].split(|b| *b == 0).next() == Some(name.as_bytes())
        }
        _ => false,
    }
}

/// Whether netlink request bytes hold an RTM_GETLINK for `name`.
fn is_getlink_of(data: &[u8], name: &str) -> bool {
    const RTM_GETLINK: u16 = 18;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_ALT_IFNAME: u16 = 53;
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    let mut want = name.as_bytes().to_vec();
    want.push(0);
    let mut msg = 0;
    // nlmsghdr (16 bytes), ifinfomsg (16 bytes), then attributes
    while let (Some(len), Some(kind)) = (u32_at(data, msg), u16_at(data, msg + 4)) {
        let len = len as usize;
        if len < 16 || msg + len > data.len() {
            break;
        }
        if kind == RTM_GETLINK {
            let mut a = msg + 32;
            while let (Some(alen), Some(akind)) = (u16_at(data, a), u16_at(data, a + 2)) {
                let alen = alen as usize;
                if alen < 4 || a + alen > msg + len {
                    break;
                }
                if matches!(akind, IFLA_IFNAME | IFLA_ALT_IFNAME) && data[a + 4..a + alen] == want {
                    return true;
                }
                a += (alen + 3) & !3;
            }
        }
        msg += (len + 3) & !3;
    }
    false
}

fn race_at_every_step(sc: Scenario, how: Replace) {
    let ctx = Ctx::new(sc);
    let name = format!("{}, replaced by {how:?}", ctx.sc.name);
    // A replacement the run cannot have seen before its own look-up of the
    // name is its to refuse, always. One made before that look-up is simply
    // the tap the run finds: root may configure any tap, and anyone their
    // own (a recreated copy of it); only a non-root caller must refuse
    // another user's tap or a veth whenever it appears.
    let always_refused = ctx.sc.caller == Caller::User && how != Replace::Recreated;
    let untouched = format!(
        "no replacement came after the run's look-up of {TAP} (an RTM_GETLINK or \
         SIOCGIFINDEX naming it, see is_lookup_of): the test cannot tell when \
         the run looks the name up"
    );
    every_k(&name, &untouched, |k| {
        let ns = ctx.setup();
        let before = snap(&ns);
        // (the audit line is the kill tests' business)
        let log = LogSock::new();
        let (tracee, _jail) = ctx.tracee(&ns, Bin::Ifup, &log);
        let mut replaced = None;
        let t = tracee.run(k, &mut |_: &Step| {
            if replace(&ns, how) {
                replaced = Some(snap(&ns));
            }
            Then::Continue
        });
        let mut f = Findings::new(header(&name, k, &t));
        if !t.reached() {
            finished(&mut f, k, &t, None);
            return Ok(Outcome::Finished(t.steps, f.result().err()));
        }
        let end = snap(&ns);
        let said = format!(
            "the run ended {:?}, logged {:?}, stderr {:?}",
            t.end,
            log.lines(),
            t.stderr.trim()
        );
        // the steps before k, executed before the replacement
        let looked_up = t.log[..k - 1]
            .iter()
            .any(|(step, data)| is_lookup_of(step, data, TAP));
        let protected = replaced.is_some() && (always_refused || looked_up);
        if !matches!(t.code(), Some(0 | 1)) {
            f.add(format!(
                "the run ended {:?}, not with success or a refusal: {}",
                t.end, t.stderr
            ));
        }
        if let Some(tmp) = end.temp_taps().first() {
            f.add(format!(
                "temporary tap {tmp} left behind:\n{}",
                diff(&before, &end)
            ));
        }
        if let (true, Some(r)) = (protected, &replaced) {
            for n in [TAP, PEER] {
                let (at, now) = (r.links.get(n), end.links.get(n));
                if at != now {
                    let changed: Vec<String> = match (at, now) {
                        (Some(a), Some(b)) => a
                            .fields()
                            .into_iter()
                            .zip(b.fields())
                            .filter(|(x, y)| x != y)
                            .map(|((f, x), (_, y))| format!("{f}: {x} -> {y}"))
                            .collect(),
                        _ => vec![format!("{at:?} -> {now:?}")],
                    };
                    f.add(format!(
                        "the replacement {n} was changed by the run:\n{}\n{said}",
                        changed.join("\n")
                    ));
                }
            }
        }
        // The caller's own tap is the one link allowed to change (here or
        // gone); the replacement was checked above.
        let others = |s: &State| {
            let mut s = s.clone();
            s.links.retain(|n, _| n != TAP && n != PEER);
            s
        };
        let (b, e) = (others(&before), others(&end));
        if b != e {
            f.add(format!(
                "something besides the caller's own tap changed:\n{}\n{said}",
                diff(&b, &e)
            ));
        }
        f.result().map(|()| Outcome::Checked(protected))
    });
}

fn root_create() -> Scenario {
    Scenario::new(
        "root ifup create, isolated/learning",
        Caller::Root,
        Before::Absent,
        POLICY_CFG,
    )
}

fn user_create() -> Scenario {
    Scenario::new(
        "uid 4242 (cap_net_admin+ep) ifup create, isolated/learning",
        Caller::User,
        Before::Absent,
        POLICY_CFG,
    )
}

fn user_existing() -> Scenario {
    Scenario::new(
        "uid 4242 (cap_net_admin+ep) ifup of its own tap, isolated/learning",
        Caller::User,
        Before::Users,
        POLICY_CFG,
    )
}

#[test]
fn race_root_create_with_another_users_tap() {
    race_at_every_step(root_create(), Replace::OtherUsersTap);
}

#[test]
fn race_root_create_with_a_veth() {
    race_at_every_step(root_create(), Replace::Veth);
}

#[test]
fn race_root_create_with_a_recreated_tap() {
    race_at_every_step(root_create(), Replace::Recreated);
}

#[test]
fn race_user_create_with_another_users_tap() {
    race_at_every_step(user_create(), Replace::OtherUsersTap);
}

#[test]
fn race_user_create_with_a_veth() {
    race_at_every_step(user_create(), Replace::Veth);
}

#[test]
fn race_user_create_with_a_recreated_tap() {
    race_at_every_step(user_create(), Replace::Recreated);
}

#[test]
fn race_user_existing_with_another_users_tap() {
    race_at_every_step(user_existing(), Replace::OtherUsersTap);
}

#[test]
fn race_user_existing_with_a_veth() {
    race_at_every_step(user_existing(), Replace::Veth);
}

#[test]
fn race_user_existing_with_a_recreated_tap() {
    race_at_every_step(user_existing(), Replace::Recreated);
}
