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

#[test]
fn a_plain_copy_without_privilege_says_what_is_missing() {
    let ns = bridge_ns();
    let b = bins(Grant::Plain);
    let jail = user_jail(ALLOW_GROUP, &[KVM_GROUP]);
    let r = run(&jail, &ns, &b.ifup, "vm0");
    r.fails_with("has no privilege to change network interfaces; give it CAP_NET_ADMIN in one of three ways: the sudo rule");
    r.fails_with("setcap cap_net_admin+ep");
    assert!(!ns.exists("vm0"));
}

#[test]
fn refusals_go_to_authpriv_with_uid_tap_bridge_and_rule() {
    let ns = bridge_ns();
    let b = bins(Grant::FileCap);
    let dir = TempDir::new();
    let sock_path = dir.path().join("log");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // the user must be able to send to it, as to the real /dev/log
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
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
    jail.setup = setup;
    let r = jail.run(
        &ns,
        &["/usr/bin/sudo", "-n", b.ifup.to_str().unwrap(), "vm1"],
    );
    r.fails_with("user 4242 may not attach vm1 to bridge br0");
    assert!(!ns.exists("vm1"));
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
    use std::os::unix::process::CommandExt;

    let mut cmd = cmd;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the PTRACE_TRACEME system call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
    }
    let child = cmd.spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // the stop at the first exec (unshare)
    assert!(matches!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Stopped(_, _)
    ));
    ptrace::setoptions(
        pid,
        ptrace::Options::PTRACE_O_TRACEEXEC
            | ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL,
    )
    .unwrap();
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
