//! The privilege model end to end: copies of the real binaries given
//! `setcap cap_net_admin+ep` or setuid root, run as numeric non-root users
//! (setpriv) in private mount and network namespaces, with the config placed
//! at the compiled-in /etc/kvmnet/kvmnet.toml through an overlay.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{privileged_copy, Grant, Jail, Netns, Run, TempDir, IFDOWN, IFUP};

const USER: u32 = 4242;
const KVM_GROUP: u32 = 4300;

const ALLOW_GROUP: &str =
    "bridge = \"br0\"\n[[allow]]\ngroups = [4300]\nbridges = [\"br0\", \"br-lab\"]\n";

fn bridge_ns() -> Netns {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    ns.ip("link add br-lab up type bridge");
    ns.ip("link add br-other up type bridge");
    ns
}

struct Bins {
    _dir: TempDir,
    ifup: PathBuf,
    ifdown: PathBuf,
}

fn bins(grant: Grant) -> Bins {
    let dir = TempDir::new();
    Bins {
        ifup: privileged_copy(dir.path(), IFUP, grant),
        ifdown: privileged_copy(dir.path(), IFDOWN, grant),
        _dir: dir,
    }
}

fn user_jail(config: &str, groups: &[u32]) -> Jail {
    Jail::new(USER, USER, groups).config(config)
}

fn run(jail: &Jail, ns: &Netns, bin: &Path, tap: &str) -> Run {
    jail.run(ns, &[bin.to_str().unwrap(), tap])
}

fn for_both(f: impl Fn(Grant)) {
    for g in [Grant::FileCap, Grant::Setuid] {
        f(g);
    }
}

#[test]
fn denied_without_an_acl_and_nothing_is_created() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let links = ns.all_links();
        let jail = user_jail("bridge = \"br0\"\n", &[USER, KVM_GROUP]);
        run(&jail, &ns, &b.ifup, "vm0").fails_with("user 4242 may not attach vm0 to bridge br0: no [[allow]] rule matches (deny by default)");
        assert_eq!(ns.all_links(), links, "{g:?}");
        // no config file at all: deny by default too
        let jail = Jail::new(USER, USER, &[KVM_GROUP]);
        run(&jail, &ns, &b.ifup, "vm0").fails_with("deny by default");
        assert_eq!(ns.all_links(), links, "{g:?}");
    });
}

#[test]
fn allowed_by_group_acl_creates_a_tap_the_user_owns() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
        let r = run(&jail, &ns, &b.ifup, "vm0");
        r.ok();
        assert_eq!(ns.sys("/sys/class/net/vm0/owner"), "4242", "{g:?}");
        assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br0"));
        let want = if g == Grant::Setuid {
            "privilege=setuid"
        } else {
            "privilege=file-capability"
        };
        assert!(r.stderr.contains(want), "{r:?}");
        assert!(r.stderr.contains("caps=cap_net_admin "), "{r:?}");
        assert!(
            r.stderr
                .contains("acl=\"allow rule at /etc/kvmnet/kvmnet.toml line 2 (group 4300)\""),
            "{r:?}"
        );
        // and the same user may take it down again
        run(&jail, &ns, &b.ifdown, "vm0").ok();
        assert!(!ns.exists("vm0"));
    });
}

#[test]
fn a_deny_rule_wins_over_the_group_allow() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let cfg = format!("{ALLOW_GROUP}\n[[deny]]\nusers = [\"4242\"]\nbridges = [\"br0\"]\n");
        let jail = user_jail(&cfg, &[KVM_GROUP]);
        run(&jail, &ns, &b.ifup, "vm0")
            .fails_with("deny rule at /etc/kvmnet/kvmnet.toml line 6 (user 4242)");
        assert!(!ns.exists("vm0"));
    });
}

#[test]
fn another_users_tap_and_an_ownerless_tap_are_refused() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        ns.ip("tuntap add theirs mode tap user 1000");
        ns.ip("tuntap add nobodys mode tap");
        ns.ip("tuntap add grouped mode tap group 4300");
        let jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
        for (tap, why) in [
            ("theirs", "belongs to uid 1000"),
            ("nobodys", "has no owner"),
        ] {
            let before = ns.state(tap);
            run(&jail, &ns, &b.ifup, tap).fails_with(why);
            run(&jail, &ns, &b.ifdown, tap).fails_with(why);
            assert_eq!(ns.state(tap), before, "{tap} {g:?}");
        }
        // the tap's tun group counts like its owner
        run(&jail, &ns, &b.ifup, "grouped").ok();
        assert_eq!(ns.state("grouped").unwrap().master.as_deref(), Some("br0"));
    });
}

#[test]
fn kvmnet_config_from_the_environment_is_ignored_for_users() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let permissive = TempDir::new();
        let p =
            permissive.config("bridge = \"br0\"\n[[allow]]\nusers = [\"*\"]\nbridges = [\"*\"]\n");
        let mut jail = Jail::new(USER, USER, &[]);
        jail.env
            .push(("KVMNET_CONFIG".into(), p.display().to_string()));
        run(&jail, &ns, &b.ifup, "vm0").fails_with("deny by default");
        assert!(!ns.exists("vm0"));
    });
}

#[test]
fn a_group_or_world_writable_config_is_refused() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        for (mode, by) in [
            (0o664, "writable by its group; chmod go-w"),
            (0o646, "writable by others"),
        ] {
            let mut jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
            jail.config_mode = mode;
            run(&jail, &ns, &b.ifup, "vm0").fails_with(by);
            assert!(!ns.exists("vm0"));
        }
        // a config owned by someone else
        let mut jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
        jail.setup = "chown 4242 /etc/kvmnet/kvmnet.toml".into();
        run(&jail, &ns, &b.ifup, "vm0")
            .fails_with("must be owned by root (it is owned by uid 4242)");
    });
}

#[test]
fn kvmnet_bridge_is_honoured_only_when_the_acl_allows_it() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let mut jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
        jail.env.push(("KVMNET_BRIDGE".into(), "br-lab".into()));
        run(&jail, &ns, &b.ifup, "vm0").ok();
        assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br-lab"));
        let mut jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
        jail.env.push(("KVMNET_BRIDGE".into(), "br-other".into()));
        run(&jail, &ns, &b.ifup, "vm1").fails_with("may not attach vm1 to bridge br-other");
        assert!(!ns.exists("vm1"));
    });
}

/// A copy that is not the installed one: the message says that the sudo
/// rule names only the installed path, and what works for this copy.
#[test]
fn a_plain_copy_without_privilege_says_what_is_missing() {
    let ns = bridge_ns();
    let b = bins(Grant::Plain);
    // ifdown needs privilege only for a persistent tap
    ns.ip(&format!("tuntap add vm1 mode tap user {USER}"));
    let jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
    for (bin, prog, tap) in [
        (&b.ifup, "kvmnet-ifup", "vm0"),
        (&b.ifdown, "kvmnet-ifdown", "vm1"),
    ] {
        let path = bin.display();
        run(&jail, &ns, bin, tap).fails_with(&format!(
            "{prog}: {prog} at {path} has no privilege to change network interfaces; the sudo \
             rule in /etc/sudoers.d/kvmnet covers only the installed /usr/libexec/{prog} (sudo -n \
             /usr/libexec/{prog} TAP); this copy needs root (sudo {path} TAP) or the capability: \
             setcap cap_net_admin+ep {path}"
        ));
    }
    assert!(!ns.exists("vm0"));
    assert!(ns.exists("vm1"));
    let dir = TempDir::new();
    let helper = privileged_copy(dir.path(), HELPER, Grant::Plain);
    let path = helper.display();
    helper_run(&jail, &ns, &helper).0.fails_with(&format!(
        "kvmnet-bridge-helper: kvmnet-bridge-helper at {path} has no privilege to change network \
         interfaces; QEMU and libvirt run it as the calling user, never through sudo: point them \
         at the installed /usr/libexec/kvmnet-bridge-helper (QEMU's helper=, libvirt's \
         bridge_helper in qemu.conf), or give this copy the capability: setcap cap_net_admin+ep \
         {path}"
    ));
}

/// A setuid or file-capability copy started under no_new_privs (QEMU's
/// `-sandbox elevateprivileges=deny`) gets nothing from the kernel; the
/// message says so instead of asking for what the file already has.
#[test]
fn a_grant_the_kernel_ignores_under_no_new_privs_is_explained() {
    let ns = bridge_ns();
    let jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
    for (g, has) in [
        (Grant::FileCap, "has cap_net_admin+ep"),
        (Grant::Setuid, "is setuid root"),
    ] {
        let b = bins(g);
        let path = b.ifup.display();
        let r = jail.run(
            &ns,
            &[
                "/usr/bin/setpriv",
                "--no-new-privs",
                b.ifup.to_str().unwrap(),
                "vm0",
            ],
        );
        r.fails_with(&format!(
            "kvmnet-ifup: kvmnet-ifup at {path} has no privilege to change network interfaces: \
             the file {has}, but its caller set no_new_privs, which makes the kernel ignore that \
             (QEMU's -sandbox elevateprivileges=deny, systemd's NoNewPrivileges=, a container's \
             policy); start it from a caller without it"
        ));
        // without no_new_privs the same copy works
        run(&jail, &ns, &b.ifup, "vm0").ok();
        run(&jail, &ns, &b.ifdown, "vm0").ok();
    }
}

const HELPER: &str = env!("CARGO_BIN_EXE_kvmnet-bridge-helper");

/// `helper --use-vnet --fd=N --br=br0` in `jail`, with one end of a socket
/// pair as fd N, as QEMU runs it: the run and the descriptors it sent.
fn helper_run(jail: &Jail, ns: &Netns, helper: &Path) -> (Run, Vec<std::os::fd::OwnedFd>) {
    use std::os::fd::AsRawFd;
    let (qemu, end) = common::socket_pair(Duration::from_secs(20));
    let fd = format!("--fd={}", end.as_raw_fd());
    let mut cmd = jail.command(
        ns,
        &[helper.to_str().unwrap(), "--use-vnet", &fd, "--br=br0"],
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = common::spawn_inheriting(&mut cmd, vec![end]);
    let r = Run::from(child.wait_with_output().unwrap());
    let (_, fds) = common::recv_fds_until_eof(&qemu);
    (r, fds)
}

/// Every refusal a user can meet names them, by name where the user
/// database has one; where an `[[allow]]` rule would help, the refusal
/// holds it as one command, which, run as given, admits them.
#[test]
fn refusals_name_the_user_and_give_the_rule_that_admits_them() {
    let ns = bridge_ns();
    let b = bins(Grant::FileCap);
    let me = "user kvmtest (uid 4242)";
    let jail = |config: &str, setup: &str| {
        let mut j = user_jail(config, &[USER]);
        j.setup = format!("{USERS}{setup}");
        j
    };
    let rule = |bridge: &str| {
        format!(
            "printf '[[allow]]\\nusers = [\"kvmtest\"]\\nbridges = [\"{bridge}\"]\\n' | sudo tee -a \
             /etc/kvmnet/kvmnet.toml"
        )
    };
    let cfg = "bridge = \"br0\"\nmax_ports_per_user = 1\n";

    // the ACL of kvmnet-ifup; the rule it gives, run as given, admits them
    run(&jail(cfg, ""), &ns, &b.ifup, "vm0").fails_with(&format!(
        "kvmnet-ifup: {me} may not attach vm0 to bridge br0: no [[allow]] rule matches (deny by \
         default); an admin can admit them with: {}",
        rule("br0")
    ));
    assert!(!ns.exists("vm0"));
    let admitted = jail(cfg, &format!("{}\n", rule("br0")));
    run(&admitted, &ns, &b.ifup, "vm0").ok();
    assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br0"));

    // the port quota (max_ports_per_user = 1: vm0 is the one)
    run(&admitted, &ns, &b.ifup, "vm1").fails_with(&format!(
        "kvmnet-ifup: {me} already owns 1 port of bridge br0, the most max_ports_per_user in \
         /etc/kvmnet/kvmnet.toml allows; stop a VM (kvmnet-ifdown its tap) or ask an admin to \
         raise the limit (now 1)"
    ));
    assert!(!ns.exists("vm1"));

    // another user's tap, by ifup and ifdown
    ns.ip("tuntap add theirs mode tap user 4343");
    for (bin, prog) in [(&b.ifup, "kvmnet-ifup"), (&b.ifdown, "kvmnet-ifdown")] {
        run(&admitted, &ns, bin, "theirs").fails_with(&format!(
            "{prog}: tap theirs belongs to uid 4343, not to {me}; use a tap of your own"
        ));
    }

    // routed mode
    let routed = format!(
        "{cfg}[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.10\"]\n"
    );
    run(&jail(&routed, ""), &ns, &b.ifup, "rt-1").fails_with(&format!(
        "kvmnet-ifup: tap rt-1 is routed (rule 1 (rt-*) at /etc/kvmnet/kvmnet.toml line 3); \
         routed mode adds host routes and is for root only, not {me}"
    ));

    // the bridge helper's ACL: its rule admits them too
    let dir = TempDir::new();
    let helper = privileged_copy(dir.path(), HELPER, Grant::FileCap);
    let (r, fds) = helper_run(&jail(cfg, ""), &ns, &helper);
    r.fails_with(&format!(
        "kvmnet-bridge-helper: {me} may not attach a tap to bridge br0: neither an [[allow]] rule \
         in /etc/kvmnet/kvmnet.toml nor /etc/qemu/bridge.conf (absent) allows it; add `allow br0` \
         to /etc/qemu/bridge.conf or an [[allow]] rule for this user: {}",
        rule("br0")
    ));
    assert!(fds.is_empty());
    let no_quota = "bridge = \"br0\"\n";
    let (r, fds) = helper_run(&jail(no_quota, &format!("{}\n", rule("br0"))), &ns, &helper);
    r.ok();
    assert_eq!(fds.len(), 1, "{r:?}");
    let (tap, _) = common::tap_of(&fds[0]);
    assert_eq!(ns.state(&tap).unwrap().master.as_deref(), Some("br0"));
}

/// A socket in `dir` standing in for /dev/log, which the jailed user may
/// send to as to the real one; reads time out after 500 ms.
fn log_socket(dir: &TempDir) -> (UnixDatagram, PathBuf) {
    let path = dir.path().join("log");
    let sock = UnixDatagram::bind(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    (sock, path)
}

#[test]
fn refusals_go_to_authpriv_with_uid_tap_bridge_and_rule() {
    let ns = bridge_ns();
    let b = bins(Grant::FileCap);
    let dir = TempDir::new();
    let (sock, sock_path) = log_socket(&dir);
    let mut jail = user_jail("bridge = \"br0\"\n", &[]);
    jail.log_socket = Some(sock_path);
    let r = run(&jail, &ns, &b.ifup, "vm0");
    r.fails_with("may not attach");
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("a syslog line");
    let line = String::from_utf8_lossy(&buf[..n]);
    // <84> = authpriv (10) * 8 + warning (4)
    assert!(line.starts_with("<84>"), "{line}");
    for needle in [
        "kvmnet-ifup[",
        "uid=4242",
        "tap=vm0",
        "bridge=br0",
        "decision=denied",
        "deny by default",
    ] {
        assert!(line.contains(needle), "{needle} in {line}");
    }
}

#[test]
fn sudo_rule_applies_the_acl_to_the_sudo_user() {
    let ns = bridge_ns();
    let b = bins(Grant::Plain);
    // A user and a sudo rule that exist only in this test's private /etc.
    let setup = format!(
        "echo 'kvmtest:x:4242:4242::/nonexistent:/usr/sbin/nologin' >> /etc/passwd\n\
         echo 'kvmtest:*:19000:0:99999:7:::' >> /etc/shadow\n\
         echo 'kvmtest:x:4242:' >> /etc/group\n\
         echo 'kvmgrp:x:4300:kvmtest' >> /etc/group\n\
         printf 'kvmtest ALL=(root) NOPASSWD: {ifup}\\n' > /etc/sudoers.d/kvmnet-test\n\
         chmod 0440 /etc/sudoers.d/kvmnet-test\n",
        ifup = b.ifup.display()
    );
    // groups as sudo leaves them: only the user's own (the ACL must look up
    // kvmgrp from the group database, not trust the process's groups)
    let mut jail = Jail::new(USER, USER, &[USER])
        .config("bridge = \"br0\"\n[[allow]]\ngroups = [\"kvmgrp\"]\nbridges = [\"br0\"]\n");
    jail.setup = setup.clone();
    let r = jail.run(
        &ns,
        &["/usr/bin/sudo", "-n", b.ifup.to_str().unwrap(), "vm0"],
    );
    r.ok();
    assert!(
        r.stderr.contains("user=4242") && r.stderr.contains("privilege=root"),
        "{r:?}"
    );
    assert_eq!(ns.sys("/sys/class/net/vm0/owner"), "4242");

    // the same sudo rule without an allow for that user: refused
    let mut jail = Jail::new(USER, USER, &[USER]).config("bridge = \"br0\"\n");
    jail.setup = setup.clone();
    let r = jail.run(
        &ns,
        &["/usr/bin/sudo", "-n", b.ifup.to_str().unwrap(), "vm1"],
    );
    r.fails_with(
        "kvmnet-ifup: user kvmtest (uid 4242) may not attach vm1 to bridge br0: no [[allow]] rule \
         matches (deny by default); an admin can admit them with: printf \
         '[[allow]]\\nusers = [\"kvmtest\"]\\nbridges = [\"br0\"]\\n' | sudo tee -a \
         /etc/kvmnet/kvmnet.toml",
    );
    assert!(!ns.exists("vm1"));

    // a tap name that sudo's argument check lets through but that reads as
    // an option is refused by kvmnet, and -h is the usage as ever
    let mut jail = Jail::new(USER, USER, &[USER]).config(ALLOW_GROUP);
    jail.setup = setup;
    let sudo = |tap: &str| jail.run(&ns, &["/usr/bin/sudo", "-n", b.ifup.to_str().unwrap(), tap]);
    sudo("-x").fails_with(
        "kvmnet-ifup: interface name \"-x\" starts with '-', which command-line tools (ip, sudo, \
         kvmnet-ifup itself) read as an option; start it with a letter, digit, '_' or '.'",
    );
    assert!(!ns.exists("-x"));
    sudo("-h").fails_with("kvmnet-ifup: usage: kvmnet-ifup TAP");
}

/// Runs the binary under ptrace and reads /proc/PID/status at its first
/// socket(2) call: after start-up, before any netlink work. Returns that
/// status text and the run's result.
fn status_while_running(cmd: std::process::Command, bin: &Path) -> (String, Run) {
    let (status, _, run) = snapshot_while_running(cmd, bin);
    (status, run)
}

/// [`status_while_running`], plus the open descriptors at that moment: number
/// and what each points at.
fn snapshot_while_running(
    cmd: std::process::Command,
    bin: &Path,
) -> (String, Vec<(i32, String)>, Run) {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitStatus};

    let (child, pid) = common::trace::spawn_stopped(cmd);
    let mut in_kvmnet = false;
    let mut status = String::new();
    let mut fds = Vec::new();
    ptrace::cont(pid, None).unwrap();
    loop {
        match waitpid(pid, None).unwrap() {
            WaitStatus::PtraceEvent(_, _, ev) if ev == ptrace::Event::PTRACE_EVENT_EXEC as i32 => {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                in_kvmnet = exe == bin;
                if in_kvmnet {
                    ptrace::syscall(pid, None).unwrap();
                } else {
                    ptrace::cont(pid, None).unwrap();
                }
            }
            WaitStatus::PtraceSyscall(_) => {
                let regs = ptrace::getregs(pid).unwrap();
                if in_kvmnet && regs.orig_rax == libc::SYS_socket as u64 {
                    status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
                        let e = e.unwrap();
                        let n = e.file_name().to_str().unwrap().parse().unwrap();
                        let to = std::fs::read_link(e.path()).unwrap_or_default();
                        fds.push((n, to.display().to_string()));
                    }
                    fds.sort();
                    ptrace::detach(pid, None).unwrap();
                    break;
                }
                ptrace::syscall(pid, None).unwrap();
            }
            WaitStatus::Stopped(_, sig) => {
                if in_kvmnet {
                    ptrace::syscall(pid, sig).unwrap();
                } else {
                    ptrace::cont(pid, sig).unwrap();
                }
            }
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => break,
            _ => ptrace::cont(pid, None).unwrap(),
        }
    }
    (status, fds, Run::from(child.wait_with_output().unwrap()))
}

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} in {status}"))
        .trim()
}

#[test]
fn only_cap_net_admin_remains_while_it_runs() {
    const NET_ADMIN: &str = "0000000000001000";
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
        let cmd = jail.command(&ns, &[b.ifup.to_str().unwrap(), "vm0"]);
        let (status, r) = status_while_running(cmd, &b.ifup);
        r.ok();
        assert!(!status.is_empty(), "never reached socket(2): {r:?}");
        assert_eq!(field(&status, "CapEff:"), NET_ADMIN, "{g:?}");
        assert_eq!(field(&status, "CapPrm:"), NET_ADMIN, "{g:?}");
        assert_eq!(field(&status, "CapInh:"), "0000000000000000", "{g:?}");
        assert_eq!(field(&status, "CapAmb:"), "0000000000000000", "{g:?}");
        assert_eq!(field(&status, "NoNewPrivs:"), "1", "{g:?}");
        // setuid: back to the real user for good
        let uids: Vec<&str> = field(&status, "Uid:").split_whitespace().collect();
        assert_eq!(uids, ["4242"; 4], "{g:?}");
        if g == Grant::Setuid {
            assert_eq!(
                field(&status, "Groups:"),
                "",
                "supplementary groups dropped"
            );
        }
    });
    // plain root too keeps nothing else
    let ns = bridge_ns();
    let cmd = {
        let mut c = ns.cmd(IFUP);
        c.arg("vm0").env("KVMNET_CONFIG", "/nonexistent");
        c
    };
    let (status, r) = status_while_running(cmd, Path::new(IFUP));
    r.ok();
    assert_eq!(field(&status, "CapEff:"), NET_ADMIN);
    assert_eq!(field(&status, "CapPrm:"), NET_ADMIN);
    assert_eq!(field(&status, "NoNewPrivs:"), "1");
}

/// Start-up hygiene, seen from outside at kvmnet's first socket(2): a closed
/// stdin/stdout/stderr is open on /dev/null (so nothing kvmnet opens can become
/// "stderr"), and a descriptor the caller leaked (fd 7, a pipe) is closed.
#[test]
fn closed_stdio_is_reopened_and_inherited_descriptors_are_closed() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = bridge_ns();
    let (_keep_read, leaked) = nix::unistd::pipe().unwrap();
    let leaked_fd = leaked.as_raw_fd();
    let mut cmd = ns.cmd(IFUP);
    cmd.arg("vm0").env("KVMNET_CONFIG", "/nonexistent");
    // SAFETY: runs in the child between fork and exec and only calls dup2
    // and close, which are async-signal-safe; it does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(leaked_fd, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(0);
            Ok(())
        });
    }
    let (_, fds, r) = snapshot_while_running(cmd, Path::new(IFUP));
    r.ok();
    assert_eq!(fds.first(), Some(&(0, "/dev/null".to_owned())), "{fds:?}");
    assert!(fds.iter().all(|(n, _)| *n <= 3), "fd 7 leaked in: {fds:?}");
    drop(leaked);
}

/// kvmnet leaves the bounding set alone and relies on this kernel rule
/// instead (src/privilege.rs): with no_new_privs, a root process holding only
/// CAP_NET_ADMIN gets nothing more from an execve, full bounding set or not.
/// Without no_new_privs root would get every capability back.
#[test]
fn under_no_new_privs_root_regains_nothing_by_exec() {
    let probe = "grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs):' /proc/self/status";
    let run = |nnp: bool| {
        let mut c = std::process::Command::new("setpriv");
        if nnp {
            c.arg("--no-new-privs");
        }
        // capsh (libcap2-bin) drops to CAP_NET_ADMIN, then execs the shell.
        c.args(["capsh", "--caps=cap_net_admin+eip", "--", "-c", probe]);
        let out = c
            .output()
            .expect("setpriv and capsh (util-linux, libcap2-bin)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let with = run(true);
    assert_eq!(field(&with, "NoNewPrivs:"), "1", "{with}");
    assert_eq!(field(&with, "CapPrm:"), NET_ADMIN_MASK, "{with}");
    assert_eq!(field(&with, "CapEff:"), NET_ADMIN_MASK, "{with}");
    assert_ne!(
        field(&with, "CapBnd:"),
        NET_ADMIN_MASK,
        "bounding set left full: {with}"
    );
    let without = run(false);
    assert_ne!(field(&without, "CapPrm:"), NET_ADMIN_MASK, "{without}");
}

const NET_ADMIN_MASK: &str = "0000000000001000";

// ---------------------------------------------------------------------------
// Look-ups fail closed. The jail's own user database: the caller kvmtest
// (4242, groups kvmtest 4242 and kvmgrp 4300), someone else (other 4343,
// group othergrp 4301), and NSS as Debian sets it up: `files`, then
// `systemd` (libnss_systemd), which knows nobody here but root and nobody.

const USERS: &str =
    "printf 'passwd: files systemd\\ngroup: files systemd\\n' > /etc/nsswitch.conf\n\
     echo 'kvmtest:x:4242:4242::/nonexistent:/usr/sbin/nologin' >> /etc/passwd\n\
     echo 'other:x:4343:4343::/nonexistent:/usr/sbin/nologin' >> /etc/passwd\n\
     echo 'kvmtest:x:4242:' >> /etc/group\n\
     echo 'kvmgrp:x:4300:kvmtest' >> /etc/group\n\
     echo 'othergrp:x:4301:other' >> /etc/group\n";

/// Every form of a `[[deny]]` principal, each naming the caller.
const DENY_CALLER: [&str; 5] = [
    "users = [\"kvmtest\"]",
    "users = [\"4242\"]",
    "groups = [\"kvmgrp\"]",
    "groups = [\"4300\"]",
    "users = [\"*\"]",
];

/// The name forms naming someone else: only a working look-up can tell that
/// they are not the caller.
const DENY_OTHERS: [&str; 2] = ["users = [\"other\"]", "groups = [\"othergrp\"]"];

/// The numeric group allow, then a deny for br0 at line 6.
fn with_deny(principal: &str) -> String {
    format!("{ALLOW_GROUP}\n[[deny]]\n{principal}\nbridges = [\"br0\"]\n")
}

/// How the user database behaves for one run.
#[derive(Debug, Clone, Copy)]
enum Nss {
    Works,
    /// `prlimit --nofile=N:N` in the exec chain.
    LimitAtStart(u32),
    /// RLIMIT_NOFILE lowered on the running process before it decides
    /// ([`descriptors_exhausted`]).
    LimitWhileRunning,
    /// /etc/passwd and /etc/group unreadable for the caller: `files` fails,
    /// then `systemd` answers "no such user".
    FilesFailSystemdNotFound,
}

/// kvmnet-ifup `tap` (an existing tap of the caller's) as kvmtest in the
/// jail with `config` and the user database in state `nss`.
fn ifup_with(b: &Bins, ns: &Netns, config: &str, tap: &str, nss: Nss) -> Run {
    let mut jail = user_jail(config, &[USER, KVM_GROUP]);
    jail.setup = USERS.into();
    let bin = b.ifup.to_str().unwrap();
    match nss {
        Nss::Works => run(&jail, ns, &b.ifup, tap),
        Nss::LimitAtStart(n) => {
            let limit = format!("--nofile={n}:{n}");
            jail.run(ns, &["/usr/bin/prlimit", &limit, bin, tap])
        }
        Nss::LimitWhileRunning => {
            let cmd = jail.command(ns, &[bin, tap]);
            descriptors_exhausted(cmd, &b.ifup)
        }
        Nss::FilesFailSystemdNotFound => {
            let libs = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"];
            assert!(
                libs.iter()
                    .any(|d| Path::new(d).join("libnss_systemd.so.2").exists()),
                "libnss_systemd is missing: apt-get install libnss-systemd (this test never skips)"
            );
            jail.setup.push_str("chmod 600 /etc/passwd /etc/group\n");
            run(&jail, ns, &b.ifup, tap)
        }
    }
}

/// Runs `cmd` (its exec chain ends in `bin`) under ptrace and, at `bin`'s
/// first setsockopt(2), lowers its RLIMIT_NOFILE to the descriptors it holds,
/// so that no look-up can open a file from then on. That call comes after
/// start-up, the privilege drop and the config, on the netlink socket just
/// opened, and before kvmnet asks who its caller is and decides. Panics if
/// the process never made the call.
fn descriptors_exhausted(cmd: std::process::Command, bin: &Path) -> Run {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitStatus};

    let (child, pid) = common::trace::spawn_stopped(cmd);
    // Sets the soft limit (the hard one stays). This machine may withhold
    // CAP_SYS_RESOURCE even from root, so prlimit runs as the process's own
    // uid and gid, which the kernel allows.
    let exhaust = || {
        let top = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
            })
            .max()
            .unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let id = |key: &str| {
            field(&status, key)
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned()
        };
        common::ok(std::process::Command::new("setpriv").args([
            &format!("--reuid={}", id("Uid:")),
            &format!("--regid={}", id("Gid:")),
            "--clear-groups",
            "prlimit",
            &format!("--pid={pid}"),
            &format!("--nofile={}:", top + 1),
        ]));
    };
    let mut in_bin = false;
    let mut reached = false;
    ptrace::cont(pid, None).unwrap();
    loop {
        match waitpid(pid, None).unwrap() {
            WaitStatus::PtraceEvent(_, _, ev) if ev == ptrace::Event::PTRACE_EVENT_EXEC as i32 => {
                in_bin = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default() == bin;
                if in_bin {
                    ptrace::syscall(pid, None).unwrap();
                } else {
                    ptrace::cont(pid, None).unwrap();
                }
            }
            WaitStatus::PtraceSyscall(_) => {
                let call = ptrace::getregs(pid).unwrap().orig_rax as i64;
                if in_bin && call == libc::SYS_setsockopt {
                    exhaust();
                    reached = true;
                    ptrace::detach(pid, None).unwrap();
                    break;
                }
                ptrace::syscall(pid, None).unwrap();
            }
            WaitStatus::Stopped(_, sig) if in_bin => ptrace::syscall(pid, sig).unwrap(),
            WaitStatus::Stopped(_, sig) => ptrace::cont(pid, sig).unwrap(),
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => break,
            _ => ptrace::cont(pid, None).unwrap(),
        }
    }
    let r = Run::from(child.wait_with_output().unwrap());
    assert!(reached, "never reached setsockopt: {r:?}");
    r
}

/// The fewest descriptors with which kvmnet-ifup, as kvmtest, attaches an
/// existing tap under a config with numeric rules only (so no look-up): at
/// that limit it holds all of them when it decides, and a look-up has none.
fn fewest_descriptors(b: &Bins, ns: &Netns, g: Grant) -> u32 {
    (4..=16)
        .find(|&n| {
            let tap = format!("probe{n}");
            ns.ip(&format!("tuntap add {tap} mode tap user {USER}"));
            let r = ifup_with(b, ns, ALLOW_GROUP, &tap, Nss::LimitAtStart(n));
            r.code == Some(0)
        })
        .unwrap_or_else(|| panic!("{g:?}: kvmnet-ifup never got through with 16 descriptors"))
}

#[test]
fn every_deny_form_refuses_when_user_and_group_look_ups_fail() {
    for_both(|g| {
        let ns = bridge_ns();
        let b = bins(g);
        let n = fewest_descriptors(&b, &ns, g);
        let failing = [
            Nss::LimitAtStart(n),
            Nss::LimitWhileRunning,
            Nss::FilesFailSystemdNotFound,
        ];
        let mut count = 0;
        let mut fresh_tap = || {
            count += 1;
            let tap = format!("vm{count}");
            ns.ip(&format!("tuntap add {tap} mode tap user {USER}"));
            tap
        };
        for principal in DENY_CALLER {
            let cfg = with_deny(principal);
            let tap = fresh_tap();
            ifup_with(&b, &ns, &cfg, &tap, Nss::Works)
                .fails_with("deny rule at /etc/kvmnet/kvmnet.toml line 6 (");
            for nss in failing {
                let tap = fresh_tap();
                let r = ifup_with(&b, &ns, &cfg, &tap, nss);
                r.fails_with("deny rule at /etc/kvmnet/kvmnet.toml line 6");
                assert_eq!(ns.state(&tap).unwrap().master, None, "{g:?} {nss:?} {r:?}");
            }
        }
        for principal in DENY_OTHERS {
            let cfg = with_deny(principal);
            let what = principal.replace("s = [\"", " ").replace("\"]", "");
            let tap = fresh_tap();
            ifup_with(&b, &ns, &cfg, &tap, Nss::Works).ok();
            assert_eq!(ns.state(&tap).unwrap().master.as_deref(), Some("br0"));
            for nss in [Nss::LimitAtStart(n), Nss::LimitWhileRunning] {
                let tap = fresh_tap();
                ifup_with(&b, &ns, &cfg, &tap, nss).fails_with(&format!(
                    "user 4242 may not attach {tap} to bridge br0: the deny rule at \
                     /etc/kvmnet/kvmnet.toml line 6 cannot be evaluated: looking up {what} \
                     failed: Too many open files (EMFILE); refusing rather than guessing"
                ));
                assert_eq!(ns.state(&tap).unwrap().master, None, "{g:?} {nss:?}");
            }
            let tap = fresh_tap();
            ifup_with(&b, &ns, &cfg, &tap, Nss::FilesFailSystemdNotFound).fails_with(&format!(
                "user 4242 may not attach {tap} to bridge br0: cannot look up your own user and \
                 groups (uid 4242 has no entry); refusing because the deny rule at \
                 /etc/kvmnet/kvmnet.toml line 6 names {what}, which has no entry"
            ));
            assert_eq!(ns.state(&tap).unwrap().master, None, "{g:?}");
        }
        // numeric rules need no look-up: admitted at the same limit
        let tap = fresh_tap();
        ifup_with(
            &b,
            &ns,
            &with_deny("users = [\"4343\"]"),
            &tap,
            Nss::LimitAtStart(n),
        )
        .ok();
    });
}

/// kvmnet-ifup `tap` run by root in the jail with sudo's variables for
/// kvmtest (4242) and `sudo_command` as SUDO_COMMAND (none: unset), under
/// `config`; `setup` runs after [`USERS`]. `exhaust`: no descriptor free
/// when kvmnet looks its caller up ([`descriptors_exhausted`]).
fn as_sudo(
    ns: &Netns,
    bin: &Path,
    config: &str,
    setup: &str,
    sudo_command: Option<&str>,
    tap: &str,
    exhaust: bool,
) -> Run {
    let mut jail = Jail::new(0, 0, &[]).config(config);
    jail.setup = format!("{USERS}{setup}");
    let bin_s = bin.to_str().unwrap();
    let command = sudo_command.map(|c| format!("SUDO_COMMAND={c}"));
    // env(1) in the chain, since the jail's own variables cannot hold spaces
    let mut argv = vec![
        "/usr/bin/env",
        "SUDO_UID=4242",
        "SUDO_GID=4242",
        "SUDO_USER=kvmtest",
    ];
    argv.extend(command.as_deref());
    argv.extend([bin_s, tap]);
    if exhaust {
        descriptors_exhausted(jail.command(ns, &argv), bin)
    } else {
        jail.run(ns, &argv)
    }
}

#[test]
fn a_sudo_user_whose_entry_or_groups_do_not_resolve_is_refused() {
    let ns = bridge_ns();
    let b = bins(Grant::Plain);
    let ifup = b.ifup.to_str().unwrap();
    let allow = "bridge = \"br0\"\n[[allow]]\ngroups = [\"kvmgrp\"]\nbridges = [\"br0\"]\n";
    let sudo = |cfg: &str, setup: &str, tap: &str, exhaust: bool| {
        let cmd = format!("{ifup} {tap}");
        as_sudo(&ns, &b.ifup, cfg, setup, Some(&cmd), tap, exhaust)
    };
    // look-ups work: kvmgrp comes from the group database
    sudo(allow, "", "vm0", false).ok();
    assert_eq!(ns.sys("/sys/class/net/vm0/owner"), "4242");
    // an allow for the user (needs no group), and each deny form
    let allow = "bridge = \"br0\"\n[[allow]]\nusers = [\"4242\"]\nbridges = [\"br0\"]\n";
    for (i, principal) in DENY_CALLER.iter().chain(&DENY_OTHERS).enumerate() {
        let cfg = format!("{allow}[[deny]]\n{principal}\nbridges = [\"br0\"]\n");
        let tap = format!("vs{i}");
        let r = sudo(&cfg, "", &tap, false);
        if DENY_CALLER.contains(principal) {
            r.fails_with("deny rule at /etc/kvmnet/kvmnet.toml line 5 (");
        } else {
            r.ok();
        }
        // look-ups fail: refused whatever the rules
        let tap = format!("vx{i}");
        sudo(&cfg, "", &tap, true).fails_with(&format!(
            "user 4242 may not attach {tap} to bridge br0: cannot look up the sudo user: \
             looking up uid 4242 failed: Too many open files (EMFILE)"
        ));
        assert!(!ns.exists(&tap));
    }
    // no entry for the user, or for their primary group (SUDO_GID)
    let no_user = "sed -i '/^kvmtest:/d' /etc/passwd\n";
    sudo(allow, no_user, "vm1", false).fails_with(
        "user 4242 may not attach vm1 to bridge br0: the sudo user (SUDO_UID=4242) has no entry \
         in the user database, so their groups are unknown",
    );
    let no_group = "sed -i '/^kvmtest:/d' /etc/group\n";
    sudo(allow, no_group, "vm2", false).fails_with(
        "user kvmtest (uid 4242) may not attach vm2 to bridge br0: group 4242 of sudo user \
         kvmtest has no entry in the group database",
    );
    assert!(!ns.exists("vm1") && !ns.exists("vm2"));
}

/// sudo records the command's path as the user typed it. A user can type a
/// path through a directory of theirs, let sudo check it (it leads to
/// kvmnet-ifup) and re-point it at another program before kvmnet looks: the
/// state simulated here. Only a path that no one but root can change is
/// believed to name another program (QEMU) that ran kvmnet as root.
#[test]
fn sudo_command_counts_only_through_root_only_directories() {
    let ns = bridge_ns();
    let b = bins(Grant::Plain);
    let ifup = b.ifup.to_str().unwrap();
    let cfg = "bridge = \"br0\"\n";
    let setup = "mkdir /etc/r /etc/u && ln -s /usr/bin /etc/r/lnk && ln -s /usr/bin /etc/u/lnk\n\
                 chown -h 4242 /etc/u /etc/u/lnk\n";
    let refused = |tap: &str| {
        format!("user kvmtest (uid 4242) may not attach {tap} to bridge br0: no [[allow]]")
    };
    let run = |cmd: Option<&str>, tap: &str| as_sudo(&ns, &b.ifup, cfg, setup, cmd, tap, false);
    // another program, at a path only root can change: plain root
    let r = run(Some("/etc/r/lnk/env -i vm0"), "vm0");
    r.ok();
    assert!(r.stderr.contains(" user=0 "), "{r:?}");
    assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br0"));
    // the same program through a directory user 4242 owns, kvmnet itself,
    // a relative path, no SUDO_COMMAND: acting for 4242, who has no allow
    let own = format!("{ifup} vm1");
    for (i, cmd) in [
        Some("/etc/u/lnk/env -i vm0"),
        Some(own.as_str()),
        Some("env -i vm0"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let tap = format!("vm{}", i + 1);
        run(cmd, &tap).fails_with(&refused(&tap));
        assert!(!ns.exists(&tap), "{cmd:?}");
    }
}

/// A refusal because look-ups failed is an access refusal like any other:
/// authpriv, with the reason.
#[test]
fn a_look_up_refusal_reaches_the_security_log() {
    let ns = bridge_ns();
    let b = bins(Grant::FileCap);
    let dir = TempDir::new();
    let (sock, sock_path) = log_socket(&dir);
    let mut jail = user_jail(&with_deny("users = [\"other\"]"), &[USER, KVM_GROUP]);
    jail.setup = format!("{USERS}chmod 600 /etc/passwd /etc/group\n");
    jail.log_socket = Some(sock_path);
    run(&jail, &ns, &b.ifup, "vm0").fails_with("cannot look up your own user and groups");
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("a syslog line");
    let line = String::from_utf8_lossy(&buf[..n]);
    assert!(line.starts_with("<84>"), "{line}");
    for needle in [
        "uid=4242",
        "tap=vm0",
        "decision=denied",
        "cannot look up your own user and groups (uid 4242 has no entry)",
    ] {
        assert!(line.contains(needle), "{needle} in {line}");
    }
}
