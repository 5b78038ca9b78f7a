//! libvirt as a client of kvmnet, end to end: a real `libvirtd` (Debian's
//! libvirt-daemon, no systemd) in the test's own network and mount
//! namespaces (tests/common/libvirt.rs) boots iPXE guests (`<domain
//! type='qemu'>`, TCG, `<boot dev='network'/>`) that must get their DHCP
//! lease from dnsmasq on br0:
//!
//! - session mode as the ordinary uid 4242, `<interface type='bridge'>` with
//!   kvmnet-bridge-helper as `bridge_helper` in ~/.config/libvirt/qemu.conf,
//!   a root-owned copy given a file capability or setuid as an install
//!   would, allowed by a kvmnet `[[allow]]` rule or by /etc/qemu/bridge.conf
//!   alone; a denied user's start fails with kvmnet's reason in virsh's
//!   error, every time;
//! - system mode, `<interface type='ethernet'>` with kvmnet-ifup and
//!   kvmnet-ifdown as script and downscript;
//! - system mode with a tap made beforehand by kvmnet-ifup through the sudo
//!   rule, `<target dev='…' managed='no'/>`.
//!
//! After `virsh destroy` and `undefine` no port is left on br0 and no
//! process but libvirtd and dnsmasq in the namespace.
//!
//! Needs root, libvirt (libvirt-daemon, libvirt-daemon-driver-qemu,
//! libvirt-clients), qemu-system-x86_64 with the iPXE ROMs, dnsmasq, sudo,
//! setcap, setpriv, nsenter, unshare. Missing any of them is a failure,
//! never a skip. No KVM needed.

mod common;
// Only this lane uses the libvirt lab: declared here rather than in
// common/mod.rs, so that the other test binaries do not compile it.
#[path = "common/libvirt.rs"]
mod libvirt_lab;

use std::path::PathBuf;

use common::qemu::{proc_status, read, BRIDGE, MTU};
use common::{privileged_copy, tun_sysfs, Grant, TempDir, IFDOWN, IFUP};
use libvirt_lab::{domain_xml, interface, Lab, Mode, Policy, USER};

const HELPER: &str = env!("CARGO_BIN_EXE_kvmnet-bridge-helper");
/// <linux/if_tun.h>
const IFF_PERSIST: u32 = libc::IFF_PERSIST as u32;
/// What every refusal of the session user says (after the user's name).
const REFUSAL: &str = "may not attach a tap to bridge br0";
/// Refused starts counted by [`session_refusal_reason_reaches_virsh_every_time`].
const REFUSED_STARTS: usize = 100;

/// The allow rule of the session user (line 1 of kvmnet.toml).
fn allow_user() -> String {
    format!("[[allow]]\nusers = [\"{USER}\"]\nbridges = [\"{BRIDGE}\"]\n")
}

/// qemu.conf's line naming the helper copy, as a user writes it into
/// ~/.config/libvirt/qemu.conf.
fn bridge_helper_conf(helper: &std::path::Path) -> String {
    format!("bridge_helper = \"{}\"\n", helper.display())
}

/// A copy of kvmnet-bridge-helper with `grant` (root's, as installed) in
/// its own directory; keep the directory until the lab is gone.
fn helper_copy(grant: Grant) -> (TempDir, PathBuf) {
    let dir = TempDir::new();
    let helper = privileged_copy(dir.path(), HELPER, grant);
    (dir, helper)
}

/// The pid of the one QEMU in the lab's namespace.
fn qemu_pid(lab: &Lab) -> u32 {
    let qemus: Vec<u32> = lab
        .pids()
        .into_iter()
        .filter(|p| read(&PathBuf::from(format!("/proc/{p}/comm"))).starts_with("qemu-system"))
        .collect();
    assert_eq!(qemus.len(), 1, "one QEMU expected: {qemus:?}");
    qemus[0]
}

/// Session mode: the guest of uid 4242 gets its lease through the helper's
/// tap, QEMU runs as 4242 without privilege, the helper's syslog line names
/// the rule `acl`; after destroy and undefine nothing is left.
fn session_guest_gets_a_lease(policy: Policy, grant: Grant, acl: &str, mac: &str) {
    let (_bins, helper) = helper_copy(grant);
    let policy = Policy {
        qemu_conf: bridge_helper_conf(&helper),
        ..policy
    };
    let lab = Lab::new(Mode::Session, true, &policy);
    let name = "session-guest";
    let xml = domain_xml(
        name,
        &interface("bridge", mac, &format!("<source bridge='{BRIDGE}'/>")),
    );
    let start = lab.define_and_start(name, &xml);

    let ports = lab.guest_ports();
    assert_eq!(ports.len(), 1, "one guest port on br0: {ports:?}");
    let tap = ports[0].clone();
    let s = lab.ns.state(&tap).unwrap();
    assert!(
        s.up && s.mtu == MTU && s.mac.starts_with("fe:"),
        "{tap}: {s:?}"
    );
    let (flags, owner) = tun_sysfs(&lab.ns, &tap);
    assert_eq!(owner, Some(USER), "{tap} must be the session user's");
    assert_eq!(flags & IFF_PERSIST, 0, "{tap} must not persist: {flags:#x}");
    let st = proc_status(qemu_pid(&lab));
    let uid = format!("{USER} {USER} {USER} {USER}");
    assert_eq!(st.get("Uid"), Some(&uid), "QEMU's credentials: {st:?}");
    assert_eq!(
        st.get("CapEff").map(String::as_str),
        Some("0000000000000000"),
        "{st:?}"
    );
    let lines = lab.libvirtd.kvmnet_lines("kvmnet-bridge-helper", &tap);
    let sent: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("result=sent-to-qemu"))
        .collect();
    assert_eq!(sent.len(), 1, "one success line of the helper: {lines:?}");
    for want in [
        format!("bridge={BRIDGE} mtu={MTU} user={USER} "),
        format!("acl=\"{acl}"),
    ] {
        assert!(sent[0].contains(&want), "{want:?} in {:?}", sent[0]);
    }

    let ip = lab.wait_for_lease(name, mac);
    let lease_time = start.elapsed();
    lab.destroy_and_undefine(name);
    lab.assert_no_guest_port_left(&tap);
    lab.assert_only_daemons_run();
    lab.assert_host_untouched();
    eprintln!(
        "libvirt session ({grant:?} helper): lease {ip} {:.1} s after virsh start, through {tap}: {}",
        lease_time.as_secs_f64(),
        sent[0]
    );
}

#[test]
fn session_bridge_helper_allowed_by_a_kvmnet_rule_gives_the_guest_a_lease() {
    session_guest_gets_a_lease(
        Policy {
            kvmnet: Some(allow_user()),
            ..Policy::default()
        },
        Grant::FileCap,
        "allow rule at /etc/kvmnet/kvmnet.toml line 1",
        "52:54:00:4c:56:01",
    );
}

/// An installation that worked with qemu-bridge-helper keeps working: no
/// kvmnet.toml at all, only `allow br0` in /etc/qemu/bridge.conf.
#[test]
fn session_bridge_helper_allowed_by_bridge_conf_alone_gives_the_guest_a_lease() {
    session_guest_gets_a_lease(
        Policy {
            bridge_conf: Some(format!("allow {BRIDGE}\n")),
            ..Policy::default()
        },
        Grant::Setuid,
        "`allow` at /etc/qemu/bridge.conf line 1",
        "52:54:00:4c:56:02",
    );
}

/// kvmnet's refusal in virsh's error: libvirt puts the helper's stderr
/// after `stderr=`, when it has read it by the time the socket closed.
fn reason_in(virsh_stderr: &str) -> Option<&str> {
    let at = virsh_stderr.find("stderr=kvmnet-bridge-helper: ")?;
    let line = virsh_stderr[at + "stderr=".len()..].lines().next()?;
    (line.contains(REFUSAL) && line.contains(&USER.to_string())).then_some(line)
}

/// A session lab whose user no rule allows (a kvmnet.toml without
/// `[[allow]]`, no bridge.conf), with domain `name` defined.
fn denied_session_lab(name: &str, helper: &std::path::Path) -> Lab {
    let lab = Lab::new(
        Mode::Session,
        false,
        &Policy {
            kvmnet: Some(format!("bridge = \"{BRIDGE}\"\n")),
            qemu_conf: bridge_helper_conf(helper),
            ..Policy::default()
        },
    );
    let xml = domain_xml(
        name,
        &interface(
            "bridge",
            "52:54:00:4c:56:03",
            &format!("<source bridge='{BRIDGE}'/>"),
        ),
    );
    let file = lab.xml_file(name, &xml);
    lab.libvirtd.virsh_ok(&["define", &file]);
    lab
}

#[test]
fn session_denied_user_cannot_start_and_virsh_shows_kvmnets_reason() {
    let (_bins, helper) = helper_copy(Grant::FileCap);
    let name = "denied-guest";
    let lab = denied_session_lab(name, &helper);
    let run = lab.libvirtd.virsh(&["start", name]);
    assert_eq!(run.code, Some(1), "the start must fail: {run:?}");
    let reason = reason_in(&run.stderr).unwrap_or_else(|| {
        panic!(
            "virsh's error lacks kvmnet's reason ({REFUSAL:?} for user {USER}):\n{}",
            run.stderr
        )
    });
    assert_eq!(
        run.stderr.matches("kvmnet-bridge-helper: ").count(),
        1,
        "one line of kvmnet's in:\n{}",
        run.stderr
    );
    // The security log has the refusal's details too.
    let denied: Vec<String> = lab
        .libvirtd
        .syslog()
        .into_iter()
        .filter(|l| l.starts_with("kvmnet-bridge-helper[") && l.contains("decision=denied"))
        .collect();
    assert_eq!(denied.len(), 1, "one authpriv refusal: {denied:?}");
    assert!(
        denied[0].contains(&format!("uid={USER} ")) && denied[0].contains("bridge=br0"),
        "{:?}",
        denied[0]
    );
    assert_eq!(
        lab.libvirtd.virsh_ok(&["domstate", name]).trim(),
        "shut off"
    );
    assert_eq!(lab.guest_ports(), Vec::<String>::new(), "br0 ports");
    lab.assert_only_daemons_run();
    lab.libvirtd.virsh_ok(&["undefine", name]);
    lab.assert_host_untouched();
    eprintln!("libvirt session, denied user: virsh says {reason}");
}

/// libvirt keeps the helper's stderr only if it has read it when the
/// helper's socket closes; kvmnet must make its reason arrive first, on
/// every start.
#[test]
fn session_refusal_reason_reaches_virsh_every_time() {
    let (_bins, helper) = helper_copy(Grant::FileCap);
    let name = "denied-guest";
    let lab = denied_session_lab(name, &helper);
    let mut with_reason = 0;
    let mut without: Vec<String> = Vec::new();
    for _ in 0..REFUSED_STARTS {
        let run = lab.libvirtd.virsh(&["start", name]);
        assert_eq!(run.code, Some(1), "the start must fail: {run:?}");
        match reason_in(&run.stderr) {
            Some(_) => with_reason += 1,
            None => without.push(run.stderr.trim().replace('\n', " | ")),
        }
        // drain the lab's /dev/log, which holds each start's refusal
        lab.libvirtd.syslog();
    }
    assert_eq!(lab.guest_ports(), Vec::<String>::new(), "br0 ports");
    lab.assert_only_daemons_run();
    without.sort();
    without.dedup();
    assert_eq!(
        with_reason,
        REFUSED_STARTS,
        "kvmnet's reason reached virsh in {with_reason} of {REFUSED_STARTS} refused starts; \
         the others said:\n{}",
        without.join("\n")
    );
    eprintln!("libvirt session: kvmnet's reason reached virsh in {with_reason} of {REFUSED_STARTS} refused starts");
}

/// libvirt's default network is neither defined nor started by the lab's
/// system daemon.
#[track_caller]
fn assert_no_libvirt_network(lab: &Lab) {
    let nets = lab.libvirtd.virsh_ok(&["net-list", "--all", "--name"]);
    assert_eq!(nets.trim(), "", "libvirt networks");
}

/// System mode, libvirt's own tap with kvmnet-ifup and kvmnet-ifdown as
/// script and downscript (the test binaries, run by libvirtd as root).
/// libvirt deletes the tap before it runs the downscript: kvmnet-ifdown
/// says so and succeeds.
#[test]
fn system_ethernet_scripts_give_the_guest_a_lease_and_ifdown_finds_the_tap_gone() {
    let lab = Lab::new(
        Mode::System,
        true,
        &Policy {
            kvmnet: Some(format!("bridge = \"{BRIDGE}\"\n")),
            ..Policy::default()
        },
    );
    assert_no_libvirt_network(&lab);
    let (name, tap, mac) = ("system-guest", "kvmtap0", "52:54:00:4c:56:04");
    let xml = domain_xml(
        name,
        &interface(
            "ethernet",
            mac,
            &format!("<target dev='{tap}'/><script path='{IFUP}'/><downscript path='{IFDOWN}'/>"),
        ),
    );
    let start = lab.define_and_start(name, &xml);

    assert_eq!(lab.guest_ports(), vec![tap.to_owned()], "br0's guest ports");
    let s = lab.ns.state(tap).unwrap();
    assert!(
        s.up && s.mtu == MTU && s.mac.starts_with("fe:"),
        "{tap}: {s:?}"
    );
    // libvirt made the tap: kvmnet's record says it only attached it
    let record = s.alias.as_deref().unwrap_or("");
    assert!(
        record.starts_with("kvmnet:v1 attached=br0") && !record.contains("created"),
        "{tap}: kvmnet's record of a tap it did not create: {record:?}"
    );
    let ifup = lab.libvirtd.kvmnet_lines("kvmnet-ifup", tap);
    let attached: Vec<&String> = ifup
        .iter()
        .filter(|l| l.contains("result=attached"))
        .collect();
    assert_eq!(
        attached.len(),
        1,
        "one success line of kvmnet-ifup: {ifup:?}"
    );
    assert!(
        attached[0].contains(&format!("bridge={BRIDGE} mtu={MTU} user=0 ")),
        "{:?}",
        attached[0]
    );

    let ip = lab.wait_for_lease(name, mac);
    let lease_time = start.elapsed();
    lab.destroy_and_undefine(name);
    lab.assert_no_guest_port_left(tap);
    let ifdown = lab.libvirtd.kvmnet_lines("kvmnet-ifdown", tap);
    assert_eq!(ifdown.len(), 1, "one kvmnet-ifdown line: {ifdown:?}");
    assert!(
        ifdown[0].contains(&format!("tap={tap} user=0 result=missing")),
        "kvmnet-ifdown must say the tap was gone already: {:?}",
        ifdown[0]
    );
    // A failed downscript is an error in libvirtd's log, which names it.
    let daemon_log = lab.libvirtd.daemon_log();
    assert!(
        !daemon_log.contains(IFDOWN) && !daemon_log.contains(IFUP),
        "libvirtd reports a script failure:\n{daemon_log}"
    );
    lab.assert_only_daemons_run();
    assert_no_libvirt_network(&lab);
    lab.assert_host_untouched();
    eprintln!(
        "libvirt system, type='ethernet': lease {ip} {:.1} s after virsh start; {}; {}",
        lease_time.as_secs_f64(),
        attached[0],
        ifdown[0]
    );
}

/// System mode with a tap made beforehand by the session user through the
/// sudo rule (`sudo kvmnet-ifup TAP`, a rule that exists only in the lab's
/// /etc) and handed to libvirt as `managed='no'`: libvirt neither creates
/// nor deletes it, so it stays on br0 after destroy until `sudo
/// kvmnet-ifdown TAP` deletes it.
#[test]
fn system_unmanaged_tap_made_through_the_sudo_rule_gives_the_guest_a_lease() {
    let bins = TempDir::new();
    let ifup = privileged_copy(bins.path(), IFUP, Grant::Plain);
    let ifdown = privileged_copy(bins.path(), IFDOWN, Grant::Plain);
    libvirt_lab::require("sudo");
    let lab = Lab::new(
        Mode::System,
        true,
        &Policy {
            kvmnet: Some(format!("bridge = \"{BRIDGE}\"\n{}", allow_user())),
            sudoers: Some(format!(
                "{} ALL=(root) NOPASSWD: {}, {}\n",
                libvirt_lab::USER_NAME,
                ifup.display(),
                ifdown.display()
            )),
            ..Policy::default()
        },
    );
    let (name, tap, mac) = ("unmanaged-guest", "kvmtap1", "52:54:00:4c:56:05");
    let sudo = |bin: &PathBuf| {
        let mut cmd = lab
            .libvirtd
            .command(USER, &["sudo", "-n", bin.to_str().unwrap(), tap]);
        common::Run::from(common::sh(&mut cmd))
    };
    let made = sudo(&ifup);
    assert_eq!(made.code, Some(0), "sudo kvmnet-ifup: {made:?}");
    let (flags, owner) = tun_sysfs(&lab.ns, tap);
    assert_eq!(owner, Some(USER), "{tap} belongs to the sudo user");
    assert_ne!(flags & IFF_PERSIST, 0, "{tap} must persist: {flags:#x}");
    let before = lab.ns.state(tap).unwrap();
    assert_eq!(before.master.as_deref(), Some(BRIDGE), "{before:?}");
    assert!(
        before.alias.as_deref().unwrap_or("").contains("created"),
        "{before:?}"
    );
    let ifup_lines = lab.libvirtd.kvmnet_lines("kvmnet-ifup", tap);
    assert!(
        ifup_lines
            .iter()
            .any(|l| l.contains(&format!("user={USER} ")) && l.contains("privilege=root")),
        "kvmnet-ifup acted for the sudo user as root: {ifup_lines:?}"
    );

    let xml = domain_xml(
        name,
        &interface(
            "ethernet",
            mac,
            &format!("<target dev='{tap}' managed='no'/>"),
        ),
    );
    let start = lab.define_and_start(name, &xml);
    assert_eq!(lab.guest_ports(), vec![tap.to_owned()], "br0's guest ports");
    let ip = lab.wait_for_lease(name, mac);
    let lease_time = start.elapsed();
    lab.destroy_and_undefine(name);
    lab.assert_only_daemons_run();

    // libvirt left the tap as it found it, still kvmnet's port of br0...
    assert_eq!(
        lab.ns.state(tap).as_ref(),
        Some(&before),
        "{tap} after destroy"
    );
    assert_eq!(lab.guest_ports(), vec![tap.to_owned()], "br0's guest ports");
    // ...until kvmnet-ifdown, which created nothing else to undo, deletes it.
    let gone = sudo(&ifdown);
    assert_eq!(gone.code, Some(0), "sudo kvmnet-ifdown: {gone:?}");
    let ifdown_lines = lab.libvirtd.kvmnet_lines("kvmnet-ifdown", tap);
    assert!(
        ifdown_lines
            .iter()
            .any(|l| l.contains(&format!("user={USER} result=deleted"))),
        "{ifdown_lines:?}"
    );
    lab.assert_no_guest_port_left(tap);
    assert_no_libvirt_network(&lab);
    lab.assert_host_untouched();
    eprintln!(
        "libvirt system, managed='no' tap from sudo kvmnet-ifup: lease {ip} {:.1} s after virsh start",
        lease_time.as_secs_f64()
    );
}
