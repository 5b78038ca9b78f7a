//! `/etc/qemu/bridge.conf` against QEMU's own qemu-bridge-helper.
//!
//! A corpus of bridge.conf files (with their includes) is put in place at
//! /etc/qemu inside a private mount namespace (a bind mount over /etc/qemu in
//! the [`Jail`]'s overlay /etc; the machine's /etc is never written), and for
//! every bridge of a private network namespace both QEMU's helper (a copy
//! with `cap_net_admin+ep`) and kvmnet-bridge-helper (a file-capability copy
//! and a setuid copy) are asked, as uid 4242 with the supplementary group
//! 4243, exactly as QEMU asks: `--use-vnet --fd=N --br=BR` with N one end of
//! a unix socket pair. Admitted = exit 0 and one descriptor received.
//!
//! Each case states what QEMU's helper does (so that this file also checks
//! the reading of QEMU's `parse_acl_file` that src/qemu_acl.rs is built on)
//! and how kvmnet differs, if it does. Whatever the case says, whenever QEMU
//! refuses kvmnet must refuse, except in [`Kv::Cwd`] cases: QEMU reads a
//! relative include from the caller's working directory, kvmnet from the
//! directory of the file that includes it.
//!
//! Also: kvmnet.toml that is a FIFO, a device, a directory, too large or not
//! UTF-8 is refused with one line, for root (`KVMNET_CONFIG`) and for users.
//! No run may block: every run is bounded, and one that is still running at
//! the bound fails the test (QEMU's helper, which does block on a FIFO, is
//! stopped by `timeout` where the case says so).
//!
//! Needs root, /usr/lib/qemu/qemu-bridge-helper (Debian: qemu-system-common),
//! setcap, unshare, nsenter, setpriv, timeout. Missing any is a failure.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{privileged_copy, recv_fds_until_eof, spawn_inheriting, Grant, Jail, Netns, TempDir};

const KVMNET: &str = env!("CARGO_BIN_EXE_kvmnet-bridge-helper");
const QEMU_HELPER: &str = "/usr/lib/qemu/qemu-bridge-helper";
const USER: u32 = 4242;
const GROUP: u32 = 4243;
/// The bridges asked for. The kernel refuses the name `all`; `ALL` shows that
/// QEMU's keyword is case-sensitive. 15 bytes is the longest name there is.
const BRIDGES: [&str; 4] = ["br0", "br1", "ALL", "b23456789012345"];
/// Every jail run; a run still going after this has blocked.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// How long QEMU's helper may sit on a FIFO before `timeout` stops it.
const QEMU_BLOCK_SECS: u32 = 3;

// ---------------------------------------------------------------------------
// The corpus

/// A file under /etc/qemu.
enum Node {
    File {
        bytes: Vec<u8>,
        mode: u32,
        owner: (u32, u32),
    },
    Dir(u32),
    Fifo,
    /// A character device: /dev/null's numbers.
    Null,
}

fn file(text: impl AsRef<[u8]>) -> Node {
    Node::File {
        bytes: text.as_ref().to_vec(),
        mode: 0o644,
        owner: (0, 0),
    }
}

fn owned(text: &str, mode: u32, owner: (u32, u32)) -> Node {
    Node::File {
        bytes: text.as_bytes().to_vec(),
        mode,
        owner,
    }
}

/// How kvmnet's answer relates to QEMU's.
#[derive(Debug, Clone, Copy)]
enum Kv {
    /// The same answer for every bridge, from both kvmnet copies.
    Same,
    /// Deliberately stricter: both copies refuse every bridge, with a line
    /// containing this.
    Refuses(&'static str),
    /// The setuid copy (which gave up the caller's supplementary groups, so
    /// cannot read what only the group may) refuses every bridge with a line
    /// containing this; the file-capability copy answers as QEMU does.
    SetuidRefuses(&'static str),
    /// A relative include: kvmnet admits exactly these bridges (it reads the
    /// file next to bridge.conf; QEMU reads one in its working directory).
    Cwd(&'static [&'static str]),
}

/// What QEMU's helper does with the case.
#[derive(Debug, Clone, Copy)]
enum Qemu {
    Admits(&'static [&'static str]),
    /// Blocks (on a FIFO) until `timeout` stops it: admits nobody.
    Blocks,
}

struct Case {
    name: &'static str,
    files: Vec<(&'static str, Node)>,
    /// QEMU's helper's working directory.
    cwd: &'static str,
    qemu: Qemu,
    kv: Kv,
}

const ALL: &[&str] = &BRIDGES;
const NONE: &[&str] = &[];

fn case(name: &'static str, files: Vec<(&'static str, Node)>, qemu: Qemu, kv: Kv) -> Case {
    Case {
        name,
        files,
        cwd: "/etc/qemu",
        qemu,
        kv,
    }
}

fn conf(text: impl AsRef<[u8]>) -> Vec<(&'static str, Node)> {
    vec![("bridge.conf", file(text))]
}

use Kv::*;
use Qemu::*;

fn corpus() -> Vec<Case> {
    let long_comment = format!("#{}", "x".repeat(4094)); // 4095 bytes: one fgets
    let padding = "# padding to make the file larger than 64 KiB\n".repeat(1500);
    vec![
        case(
            "one allow",
            conf("  # allow all\nallow br0\n"),
            Admits(&["br0"]),
            Same,
        ),
        case("allow all", conf("allow all\n"), Admits(ALL), Same),
        case("allow all, deny all", conf("allow all\ndeny all\n"), Admits(NONE), Same),
        case(
            "deny after allow",
            conf("allow br0\nallow br1\ndeny br0\n"),
            Admits(&["br1"]),
            Same,
        ),
        case(
            "allow after deny",
            conf("deny br0\nallow all\n"),
            Admits(&["br1", "ALL", "b23456789012345"]),
            Same,
        ),
        case("deny all, then allow", conf("deny all\nallow br0\n"), Admits(NONE), Same),
        case(
            "the keyword is `all`, not `ALL`",
            conf("allow ALL\nallow all0\n"),
            Admits(&["ALL"]),
            Same,
        ),
        case(
            "CRLF",
            conf("allow br0\r\ndeny br1\r\nallow br1\r\n"),
            Admits(&["br0"]),
            Same,
        ),
        case(
            "tabs",
            conf("\tallow\tbr0\n \t allow\t\tbr1\t\n"),
            Admits(&["br0", "br1"]),
            Same,
        ),
        case(
            "a tab, then a space: the command is `allow\\tbr0`",
            conf("allow br1\nallow\tbr0 \n"),
            Admits(NONE),
            Same,
        ),
        case(
            "trailing spaces, \\f",
            conf("allow br0 \x0c \r\n \x0c  allow  \t b23456789012345   \n"),
            Admits(&["br0", "b23456789012345"]),
            Same,
        ),
        case(
            "a vertical tab is part of the name (QEMU < 5.0: a blank)",
            conf("allow all\ndeny br0\x0b\n"),
            Admits(ALL),
            Refuses("vertical tab"),
        ),
        case(
            "the rest of the line is one name",
            conf("allow br0 br1\nallow br1 # not a comment\n"),
            Admits(NONE),
            Same,
        ),
        case(
            "an empty name matches nothing",
            conf("allow \ndeny \nallow br1\n"),
            Admits(&["br1"]),
            Same,
        ),
        case(
            "15-byte name",
            conf("allow b23456789012345\n"),
            Admits(&["b23456789012345"]),
            Same,
        ),
        case(
            "16-byte name: invalid file",
            conf("allow br0\nallow b234567890123456\n"),
            Admits(NONE),
            Same,
        ),
        case(
            "unknown command: invalid file",
            conf("allow br0\npermit br1\n"),
            Admits(NONE),
            Same,
        ),
        case(
            "no argument: invalid file",
            conf("allow br0\ninclude\n"),
            Admits(NONE),
            Same,
        ),
        case(
            "not UTF-8: a comment",
            conf(b"allow all\n# caf\xe9 \xff\ndeny br1\n"),
            Admits(&["br0", "ALL", "b23456789012345"]),
            Same,
        ),
        case(
            "not UTF-8: names",
            conf(b"deny br\xff\nallow br0\nallow \xe9t\xe9\n"),
            Admits(&["br0"]),
            Same,
        ),
        case(
            "not UTF-8: an include and its deny",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/latin1.conf\n")),
                ("latin1.conf", file(b"# r\xe9seau\ndeny br0\n")),
            ],
            Admits(&["br1", "ALL", "b23456789012345"]),
            Same,
        ),
        case(
            "a line of 4095 bytes is read whole",
            conf(format!("{long_comment}\nallow br0\n")),
            Admits(&["br0"]),
            Same,
        ),
        case(
            "a longer comment line hides an allow from the eye, not from QEMU",
            conf(format!("{long_comment}allow all\n")),
            Admits(ALL),
            Refuses("longer than 4095 bytes"),
        ),
        case(
            "a longer comment line hides a deny",
            conf(format!("allow all\n{long_comment}deny br0\n")),
            Admits(&["br1", "ALL", "b23456789012345"]),
            Refuses("longer than 4095 bytes"),
        ),
        case(
            "a long name line",
            conf(format!("allow br0\nallow {}\n", "b".repeat(5000))),
            Admits(NONE),
            Same,
        ),
        case(
            "a NUL byte ends QEMU's line",
            conf(b"allow br0\0 junk\n"),
            Admits(&["br0"]),
            Refuses("NUL byte"),
        ),
        case(
            "a NUL byte hides a deny",
            conf(b"allow all\n\0deny br0\n"),
            Admits(ALL),
            Refuses("NUL byte"),
        ),
        case(
            "empty include",
            vec![
                ("bridge.conf", file("allow br0\ninclude /etc/qemu/empty.conf\n")),
                ("empty.conf", file("")),
            ],
            Admits(&["br0"]),
            Same,
        ),
        case(
            "nested includes",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/a.conf\n")),
                ("a.conf", file("include /etc/qemu/b.conf\nallow br1\n")),
                ("b.conf", file("deny br1\ndeny b23456789012345\n")),
            ],
            Admits(&["br0", "ALL"]),
            Same,
        ),
        case(
            "relative include, QEMU started in /etc/qemu",
            vec![
                ("bridge.conf", file("include rel.conf \t\r\n")),
                ("rel.conf", file("allow br0\ndeny br1\nallow br1\n")),
            ],
            Admits(&["br0"]),
            Same,
        ),
        case(
            "missing and empty-named includes are skipped",
            conf("allow br0\ninclude /etc/qemu/missing.conf\ninclude \ninclude /etc/qemu/bridge.conf/x\n"),
            Admits(&["br0"]),
            Same,
        ),
        case(
            "an include the user cannot read is skipped, deny and all",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/hidden.conf\n")),
                ("hidden.conf", owned("deny br0\n", 0o000, (0, 0))),
            ],
            Admits(ALL),
            Same,
        ),
        case(
            "an include in a directory the user cannot search is skipped",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/private/x.conf\n")),
                ("private", Node::Dir(0o700)),
                ("private/x.conf", file("deny br0\n")),
            ],
            Admits(ALL),
            Same,
        ),
        // QEMU obeys a file its user owns, which lets that user allow
        // themselves any bridge: kvmnet holds the ACL to its trust rule.
        case(
            "an include the user owns (and so may change)",
            vec![
                ("bridge.conf", file("include /etc/qemu/4242.conf\n")),
                ("4242.conf", owned("allow br0\n", 0o600, (USER, USER))),
            ],
            Admits(&["br0"]),
            Refuses("a bridge ACL that a user can change"),
        ),
        case(
            "a group-writable bridge.conf",
            vec![("bridge.conf", owned("allow br0\n", 0o664, (0, 0)))],
            Admits(&["br0"]),
            Refuses("is writable by its group"),
        ),
        case(
            "an include only the user's group may read: its allow",
            vec![
                ("bridge.conf", file("include /etc/qemu/group.conf\n")),
                ("group.conf", owned("allow br1\n", 0o640, (0, GROUP))),
            ],
            Admits(&["br1"]),
            SetuidRefuses("but user 4242 may be able to"),
        ),
        case(
            "an include only the user's group may read: its deny",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/group.conf\n")),
                ("group.conf", owned("deny br1\n", 0o640, (0, GROUP))),
            ],
            Admits(&["br0", "ALL", "b23456789012345"]),
            SetuidRefuses("but user 4242 may be able to"),
        ),
        case(
            "an invalid line inside an include",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/bad.conf\n")),
                ("bad.conf", file("deny br0\nbogus\ndeny br1\n")),
            ],
            // QEMU keeps `deny br0`, loses `deny br1`
            Admits(&["br1", "ALL", "b23456789012345"]),
            Refuses("/etc/qemu/bad.conf line 2: cannot parse"),
        ),
        case(
            "a 16-byte name inside an include",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/bad.conf\n")),
                ("bad.conf", file("deny b234567890123456\n")),
            ],
            Admits(ALL),
            Refuses("/etc/qemu/bad.conf line 1: bridge name"),
        ),
        case(
            "an include loop",
            conf("allow br0\ninclude /etc/qemu/bridge.conf\n"),
            // QEMU recurses until it runs out of descriptors (ulimit -n 1024)
            Admits(&["br0"]),
            Refuses("includes nest deeper than 8 levels"),
        ),
        case(
            "a FIFO include",
            vec![
                ("bridge.conf", file("allow br0\ninclude /etc/qemu/fifo.conf\n")),
                ("fifo.conf", Node::Fifo),
            ],
            Blocks,
            Refuses("it is a FIFO, not a regular file"),
        ),
        case(
            "a device include",
            vec![
                ("bridge.conf", file("allow br0\ninclude /etc/qemu/null.conf\n")),
                ("null.conf", Node::Null),
            ],
            Admits(&["br0"]),
            Refuses("it is a character device, not a regular file"),
        ),
        case(
            "a directory include",
            vec![
                ("bridge.conf", file("allow br0\ninclude /etc/qemu/sub\n")),
                ("sub", Node::Dir(0o755)),
            ],
            Admits(&["br0"]),
            Refuses("it is a directory, not a regular file"),
        ),
        case(
            "bridge.conf is a FIFO",
            vec![("bridge.conf", Node::Fifo)],
            Blocks,
            Refuses("refusing /etc/qemu/bridge.conf: it is a FIFO"),
        ),
        case(
            "bridge.conf is a directory",
            vec![("bridge.conf", Node::Dir(0o755))],
            Admits(NONE),
            Same,
        ),
        case(
            "bridge.conf is a device",
            vec![("bridge.conf", Node::Null)],
            Admits(NONE),
            Same,
        ),
        case(
            "bridge.conf over 64 KiB",
            conf(format!("allow br0\n{padding}")),
            Admits(&["br0"]),
            Refuses("refusing /etc/qemu/bridge.conf: it is larger than 64 KiB"),
        ),
        case(
            "an include over 64 KiB with a deny",
            vec![
                ("bridge.conf", file("allow all\ninclude /etc/qemu/big.conf\n")),
                ("big.conf", file(format!("deny br0\n{padding}"))),
            ],
            Admits(&["br1", "ALL", "b23456789012345"]),
            Refuses("it is larger than 64 KiB"),
        ),
        case("no bridge.conf", vec![], Admits(NONE), Same),
        case(
            "bridge.conf the user cannot read",
            vec![("bridge.conf", owned("allow all\n", 0o600, (0, 0)))],
            Admits(NONE),
            Same,
        ),
        Case {
            name: "relative include, QEMU started in the user's own directory",
            files: vec![
                ("bridge.conf", file("include rel.conf\n")),
                ("rel.conf", file("allow br0\n")),
            ],
            cwd: "$KVMNET_EVIL",
            qemu: Admits(ALL),
            kv: Cwd(&["br0"]),
        },
        Case {
            name: "relative include, QEMU started in / (as libvirt does)",
            files: vec![
                ("bridge.conf", file("include rel.conf\n")),
                ("rel.conf", file("allow br0\n")),
            ],
            cwd: "/",
            qemu: Admits(NONE),
            kv: Cwd(&["br0"]),
        },
    ]
}

// ---------------------------------------------------------------------------
// Running both helpers

/// What one helper run did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Admitted,
    Refused(String),
    Blocked,
}

impl Outcome {
    fn admitted(&self) -> bool {
        *self == Outcome::Admitted
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Qemu,
    KvFileCap,
    KvSetuid,
}

const WHO: [Who; 3] = [Who::Qemu, Who::KvFileCap, Who::KvSetuid];

struct Lab {
    ns: Netns,
    /// Holds the helper copies.
    _dir: TempDir,
    helpers: Vec<(Who, PathBuf)>,
}

impl Lab {
    fn new() -> Lab {
        common::require_root();
        if !Path::new(QEMU_HELPER).exists() {
            panic!(
                "QEMU's own helper {QEMU_HELPER} is missing, so kvmnet cannot be compared \
                 with it: apt-get install qemu-system-common (qemu-system-x86 pulls it in) \
                 (CI={:?})",
                std::env::var("CI").ok()
            );
        }
        let ns = Netns::new();
        for br in BRIDGES {
            ns.ip(&format!("link add {br} type bridge"));
            ns.ip(&format!("link set {br} up"));
        }
        let dir = TempDir::new();
        let helpers = vec![
            (
                Who::Qemu,
                privileged_copy(dir.path(), QEMU_HELPER, Grant::FileCap),
            ),
            (
                Who::KvFileCap,
                privileged_copy(dir.path(), KVMNET, Grant::FileCap),
            ),
            (
                Who::KvSetuid,
                privileged_copy(dir.path(), KVMNET, Grant::Setuid),
            ),
        ];
        Lab {
            ns,
            _dir: dir,
            helpers,
        }
    }

    fn helper(&self, who: Who) -> &Path {
        &self.helpers.iter().find(|(w, _)| *w == who).unwrap().1
    }

    /// Asks every helper about every bridge under `case`'s /etc/qemu:
    /// outcomes indexed [who][bridge].
    fn ask(&self, case: &Case) -> Vec<Vec<Outcome>> {
        let mut jail = Jail::new(USER, USER, &[GROUP]);
        jail.config = Some(String::new());
        let d = jail.dir.path().to_owned();
        let stage = d.join("stage");
        stage_files(&stage, &case.files);
        let evil = d.join("evil");
        std::fs::create_dir(&evil).unwrap();
        std::fs::write(evil.join("rel.conf"), "allow all\n").unwrap();
        std::os::unix::fs::chown(&evil, Some(USER), Some(USER)).unwrap();
        let out = d.join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
        // /etc/qemu: exactly the staged tree (owners, modes, FIFOs, devices).
        jail.setup = format!(
            "rm -rf /etc/qemu\nmkdir -m 755 /etc/qemu\n\
             mount --bind {} /etc/qemu\n",
            stage.display()
        );
        jail.env = vec![("KVMNET_EVIL".into(), evil.display().to_string())];

        let mut theirs = Vec::new(); // QEMU's ends, [who][bridge]
        let mut pass = Vec::new();
        let mut script = format!(
            "ulimit -n 1024\ncd {} || exit 97\n",
            case.cwd
                .replace("$KVMNET_EVIL", &evil.display().to_string())
        );
        for (w, who) in WHO.iter().enumerate() {
            let mut row = Vec::new();
            for (b, br) in BRIDGES.iter().enumerate() {
                let (qemu_end, helper_end) = socket_pair();
                let bound = if *who == Who::Qemu && matches!(case.qemu, Blocks) {
                    format!("/usr/bin/timeout -s KILL {QEMU_BLOCK_SECS} ")
                } else {
                    String::new()
                };
                script += &format!(
                    "({bound}{} --use-vnet --fd={} --br={br} >{o}/{w}.{b}.err 2>&1; \
                     echo $? >{o}/{w}.{b}.rc) &\n",
                    self.helper(*who).display(),
                    helper_end.as_raw_fd(),
                    o = out.display()
                );
                row.push(qemu_end);
                pass.push(helper_end);
            }
            theirs.push(row);
        }
        script += "wait\n";
        let cmd = jail.command(&self.ns, &["/bin/sh", "-c", &script]);
        let (code, stderr) = run_bounded(cmd, pass, case.name);
        assert_eq!(code, Some(0), "{}: jail run failed: {stderr}", case.name);

        let mut result = Vec::new();
        for (w, row) in theirs.iter().enumerate() {
            let mut outcomes = Vec::new();
            for (b, sock) in row.iter().enumerate() {
                let rc =
                    std::fs::read_to_string(out.join(format!("{w}.{b}.rc"))).unwrap_or_else(|e| {
                        panic!("{}: no exit status of run {w}.{b}: {e}", case.name)
                    });
                let err = std::fs::read_to_string(out.join(format!("{w}.{b}.err"))).unwrap();
                let rc: i32 = rc.trim().parse().unwrap();
                let got = recv_all(sock);
                let what = format!("{}: {:?} --br={}", case.name, WHO[w], BRIDGES[b]);
                let o = match (rc, got) {
                    (0, Some(fd)) => {
                        drop(fd); // the tap goes with it
                        Outcome::Admitted
                    }
                    (137, None) => Outcome::Blocked,
                    (rc, None) if rc != 0 => Outcome::Refused(err),
                    (rc, fd) => panic!(
                        "{what}: exit {rc} and {} descriptor sent; stderr: {err}",
                        if fd.is_some() { "a" } else { "no" }
                    ),
                };
                check_refusal(&what, WHO[w], &o);
                outcomes.push(o);
            }
            result.push(outcomes);
        }
        result
    }
}

/// A refusal must be about the ACL, not about a broken test set-up; and
/// kvmnet's is one line.
fn check_refusal(what: &str, who: Who, o: &Outcome) {
    let Outcome::Refused(err) = o else { return };
    if who == Who::Qemu {
        assert!(
            [
                "access denied by acl file",
                "failed to parse default acl file"
            ]
            .iter()
            .any(|n| err.contains(n)),
            "{what}: QEMU's helper failed for another reason than its ACL: {err}"
        );
        return;
    }
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected: {err:?}");
    assert!(
        lines[0].starts_with("kvmnet-bridge-helper: ")
            && (lines[0].contains("/etc/qemu/") || lines[0].contains("may not attach")),
        "{what}: not a refusal by the ACL: {err:?}"
    );
}

fn stage_files(stage: &Path, files: &[(&str, Node)]) {
    use std::os::unix::fs::chown;
    std::fs::create_dir(stage).unwrap();
    std::fs::set_permissions(stage, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, node) in files {
        let p = stage.join(name);
        match node {
            Node::File { bytes, mode, owner } => {
                std::fs::write(&p, bytes).unwrap();
                chown(&p, Some(owner.0), Some(owner.1)).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Dir(mode) => {
                std::fs::create_dir(&p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Fifo => {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
            }
            Node::Null => nix::sys::stat::mknod(
                &p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 3),
            )
            .unwrap(),
        }
    }
}

/// QEMU's end of the socket pair and the helper's end; see
/// [`common::socket_pair`].
fn socket_pair() -> (UnixStream, OwnedFd) {
    common::socket_pair(Duration::from_secs(5))
}

/// The descriptor a helper sent, if any, once every helper has exited (all
/// copies of the other end are closed: EOF follows what was sent).
fn recv_all(sock: &UnixStream) -> Option<OwnedFd> {
    let (bytes, mut fds) = recv_fds_until_eof(sock);
    assert!(
        fds.len() <= 1 && (fds.is_empty() || bytes == 1),
        "{} descriptors, {bytes} bytes: not QEMU's protocol",
        fds.len()
    );
    fds.pop()
}

/// Runs `cmd` in a process group of its own with the descriptors `pass`
/// inherited at their numbers; bounded by [`RUN_LIMIT`]: a run still going
/// then has blocked, and the whole group is killed and the test fails.
fn run_bounded(mut cmd: Command, pass: Vec<OwnedFd>, what: &str) -> (Option<i32>, String) {
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_inheriting(&mut cmd, pass);
    // Read while it runs: a refusal waits for its line to be read off a pipe.
    let err = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap());
    let status = common::qemu::poll_every(Duration::from_millis(20), RUN_LIMIT, || {
        child.try_wait().expect("try_wait")
    });
    let Some(status) = status else {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        panic!("{what}: still running after {RUN_LIMIT:?}: a helper blocked; killed");
    };
    (status.code(), err.join().unwrap())
}

fn admitted_list(row: &[Outcome]) -> Vec<&'static str> {
    BRIDGES
        .iter()
        .zip(row)
        .filter(|(_, o)| o.admitted())
        .map(|(b, _)| *b)
        .collect()
}

#[test]
fn kvmnet_never_admits_what_qemus_helper_refuses() {
    let lab = Lab::new();
    let mut failures = Vec::new();
    let mut stricter = 0;
    for case in corpus() {
        let got = lab.ask(&case);
        let qemu = &got[0];
        let mut fail = |m: String| failures.push(format!("{}: {m}", case.name));
        // Our reading of QEMU's parse_acl_file, checked against QEMU itself.
        match case.qemu {
            Admits(want) => {
                if admitted_list(qemu) != want {
                    fail(format!(
                        "QEMU's helper admits {:?}, the case says {want:?}: {qemu:?}",
                        admitted_list(qemu)
                    ));
                }
            }
            Blocks => {
                if qemu.iter().any(|o| *o != Outcome::Blocked) {
                    fail(format!("QEMU's helper was expected to block: {qemu:?}"));
                }
            }
        }
        for (w, who) in WHO.iter().enumerate().skip(1) {
            let kv = &got[w];
            for (b, br) in BRIDGES.iter().enumerate() {
                // The invariant, for every case but the working-directory ones.
                if !qemu[b].admitted() && kv[b].admitted() && !matches!(case.kv, Cwd(_)) {
                    fail(format!("{who:?} admits {br}, which QEMU's helper refuses"));
                }
            }
            let refuses_all = |needle: &str, fail: &mut dyn FnMut(String)| {
                for (b, o) in kv.iter().enumerate() {
                    match o {
                        Outcome::Refused(e) if e.contains(needle) => {}
                        o => fail(format!(
                            "{who:?} --br={}: expected a refusal with {needle:?}: {o:?}",
                            BRIDGES[b]
                        )),
                    }
                }
            };
            match (case.kv, who) {
                (Same, _) | (SetuidRefuses(_), Who::KvFileCap) => {
                    if admitted_list(kv) != admitted_list(qemu) {
                        fail(format!(
                            "{who:?} admits {:?}, QEMU's helper {:?}: {kv:?}",
                            admitted_list(kv),
                            admitted_list(qemu)
                        ));
                    }
                }
                (Refuses(n), _) | (SetuidRefuses(n), _) => {
                    stricter += 1;
                    refuses_all(n, &mut fail)
                }
                (Cwd(want), _) => {
                    if admitted_list(kv) != want {
                        fail(format!(
                            "{who:?} admits {:?}, expected {want:?}",
                            admitted_list(kv)
                        ));
                    }
                }
            }
        }
        eprintln!(
            "{:<70} QEMU {:<40} kvmnet file-cap {:<40} setuid {:?}",
            case.name,
            match case.qemu {
                Blocks => "blocks".to_owned(),
                _ => format!("{:?}", admitted_list(qemu)),
            },
            format!("{:?}", admitted_list(&got[1])),
            admitted_list(&got[2])
        );
    }
    assert!(stricter > 0);
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// kvmnet.toml

/// The ways a config file can be no file at all, or not one to read: each
/// with the words of kvmnet's one-line refusal.
fn bad_configs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let big = dir.join("big.toml");
    std::fs::write(&big, "# padding\n".repeat(7000)).unwrap();
    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"# r\xe9seau\nbridge = \"br0\"\n").unwrap();
    let sub = dir.join("dir.toml");
    std::fs::create_dir(&sub).unwrap();
    vec![
        (fifo, "it is a FIFO, not a regular file"),
        (
            PathBuf::from("/dev/null"),
            "it is a character device, not a regular file",
        ),
        (sub, "it is a directory, not a regular file"),
        (big, "is larger than 64 KiB"),
        (latin1, "it is not UTF-8 text (an invalid byte at offset 3)"),
    ]
}

#[track_caller]
fn assert_one_line_refusal(what: &str, code: Option<i32>, err: &str, needle: &str) {
    assert_eq!(code, Some(1), "{what}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected: {err:?}");
    assert!(lines[0].contains(needle), "{what}: {needle:?} in {err:?}");
}

/// Root: KVMNET_CONFIG names the file, which is not checked for trust but
/// still read whole, as a regular file, or refused.
#[test]
fn root_config_that_is_not_a_regular_text_file_is_refused_without_blocking() {
    common::require_root();
    let ns = Netns::new();
    ns.ip("link add br0 type bridge");
    let dir = TempDir::new();
    for (path, needle) in bad_configs(dir.path()) {
        let (_qemu_end, helper_end) = socket_pair();
        let mut c = ns.cmd(KVMNET);
        c.env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env("KVMNET_CONFIG", &path)
            .args([
                "--use-vnet",
                &format!("--fd={}", helper_end.as_raw_fd()),
                "--br=br0",
            ]);
        let what = format!("root, KVMNET_CONFIG={}", path.display());
        let (code, err) = run_bounded(c, vec![helper_end], &what);
        assert_one_line_refusal(&what, code, &err, needle);
        eprintln!("{what}: {}", err.trim());
    }
}

/// A user: /etc/kvmnet/kvmnet.toml itself is the FIFO, device, directory,
/// oversized or Latin-1 file (root's, so the trust check passes).
#[test]
fn user_config_that_is_not_a_regular_text_file_is_refused_without_blocking() {
    let lab = Lab::new();
    let helper = lab.helper(Who::KvFileCap).to_owned();
    let stage = TempDir::new();
    for (path, needle) in bad_configs(stage.path()) {
        let mut jail = Jail::new(USER, USER, &[]);
        // cp -a keeps a FIFO a FIFO and a device a device.
        jail.setup = format!(
            "rm -rf /etc/kvmnet/kvmnet.toml\ncp -a {} /etc/kvmnet/kvmnet.toml\n",
            path.display()
        );
        let (_qemu_end, helper_end) = socket_pair();
        let argv = [
            helper.to_str().unwrap(),
            "--use-vnet",
            &format!("--fd={}", helper_end.as_raw_fd()),
            "--br=br0",
        ];
        let cmd = jail.command(&lab.ns, &argv);
        let what = format!("user 4242, /etc/kvmnet/kvmnet.toml as {}", path.display());
        let (code, err) = run_bounded(cmd, vec![helper_end], &what);
        assert_one_line_refusal(&what, code, &err, needle);
        assert!(err.contains("/etc/kvmnet/kvmnet.toml"), "{what}: {err}");
        eprintln!("{what}: {}", err.trim());
    }
}
