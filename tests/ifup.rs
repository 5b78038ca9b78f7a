//! kvmnet-ifup / kvmnet-ifdown against real kernel objects, each test in its own
//! network namespace.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::{parallel_ok, sh, Netns, Run, TempDir, IFDOWN, IFUP};

const BR_MAC: &str = "02:00:00:00:00:01";
const KVMNET: &str = env!("CARGO_BIN_EXE_kvmnet");

/// A namespace with bridge br0 (fixed address, up) and one veth uplink port
/// with a low MAC, like a host's public bridge.
fn with_bridge(mtu: u32) -> Netns {
    let ns = Netns::new();
    ns.ip("link add br0 type bridge");
    ns.ip(&format!("link set br0 address {BR_MAC} mtu {mtu} up"));
    ns.ip("link add up0 address 00:11:22:33:44:55 type veth peer name up1");
    ns.ip(&format!("link set up0 mtu {mtu} master br0 up"));
    ns
}

fn cfg(dir: &TempDir, text: &str) -> std::path::PathBuf {
    dir.config(text)
}

#[test]
fn creates_a_persistent_tap_owned_by_the_invoker_and_attaches_it() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    ns.ifup("vm0", Some(&c)).ok();
    let l = ns.link("vm0").expect("tap created");
    assert_eq!(l["linkinfo"]["info_kind"], "tun");
    assert_eq!(l["linkinfo"]["info_data"]["type"], "tap");
    assert_eq!(l["linkinfo"]["info_data"]["persist"], true);
    assert_eq!(ns.sys("/sys/class/net/vm0/owner"), "0");
    let s = ns.state("vm0").unwrap();
    assert_eq!(s.master.as_deref(), Some("br0"));
    assert!(s.up);
    assert!(s.mac.starts_with("fe:"), "{s:?}");
    assert_eq!(s.alias.as_deref(), Some("kvmnet:v1 created attached=br0"));

    // ifdown deletes what ifup created
    ns.ifdown("vm0", Some(&c)).ok();
    assert!(!ns.exists("vm0"));
    assert_eq!(ns.ports("br0"), vec!["up0"]);
}

#[test]
fn attaches_an_existing_tap_and_ifdown_restores_it_exactly() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    // as QEMU would have it (here made persistent so it outlives this command)
    ns.ip("tuntap add qt0 mode tap");
    ns.ip("link set qt0 address 52:54:00:aa:bb:cc alias customer-42");
    let before = ns.state("qt0").unwrap();

    ns.ifup("qt0", Some(&c)).ok();
    let s = ns.state("qt0").unwrap();
    assert_eq!(s.master.as_deref(), Some("br0"));
    assert!(s.up);
    assert_eq!(s.mac, "fe:54:00:aa:bb:cc");

    ns.ifdown("qt0", Some(&c)).ok();
    assert_eq!(
        ns.state("qt0").unwrap(),
        before,
        "ifdown must restore exactly"
    );
    assert!(
        ns.exists("qt0"),
        "a tap kvmnet did not create is never deleted"
    );
}

/// The tap exactly as QEMU has it when it runs the script: created by
/// QEMU's own TUNSETIFF (not persistent, no owner), still down, its
/// descriptor open. kvmnet must take it for QEMU's, not for a tap another
/// kvmnet-ifup is creating: ifdown leaves it to QEMU.
#[test]
fn a_tap_qemu_holds_open_is_qemus_and_ifdown_never_deletes_it() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let held = common::open_tap(&ns, "qh0");
    let l = ns.link("qh0").expect("tap made by the descriptor");
    assert_eq!(l["linkinfo"]["info_data"]["persist"], false);
    assert!(!ns.state("qh0").unwrap().up);
    let before = ns.state("qh0").unwrap();

    let started = std::time::Instant::now();
    ns.ifup("qh0", Some(&c)).ok();
    let s = ns.state("qh0").unwrap();
    assert_eq!(s.master.as_deref(), Some("br0"));
    assert!(s.up);
    assert!(
        !s.alias.as_deref().unwrap_or("").contains("created"),
        "QEMU's tap recorded as kvmnet's creation: {s:?}"
    );
    // Not a correctness bound: a run that took QEMU's tap for another run's
    // creation in progress waits its whole bounded re-look first.
    eprintln!("ifup of a held tap took {:?}", started.elapsed());

    ns.ifdown("qh0", Some(&c)).ok();
    assert!(ns.exists("qh0"), "ifdown deleted the tap QEMU holds");
    assert_eq!(
        ns.state("qh0").unwrap(),
        before,
        "ifdown must restore exactly"
    );
    drop(held);
    assert!(!ns.exists("qh0"), "the tap goes with QEMU's descriptor");
}

#[test]
fn tap_mtu_follows_a_9000_bridge_and_bridge_mac_stays() {
    let ns = with_bridge(9000);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    ns.ip("tuntap add qt0 mode tap");
    ns.ifup("qt0", Some(&c)).ok();
    ns.ifup("vm0", Some(&c)).ok();
    for t in ["qt0", "vm0"] {
        assert_eq!(ns.state(t).unwrap().mtu, 9000, "{t}");
    }
    let br = ns.state("br0").unwrap();
    assert_eq!((br.mtu, br.mac.as_str()), (9000, BR_MAC));
    ns.ifdown("qt0", Some(&c)).ok();
    ns.ifdown("vm0", Some(&c)).ok();
    let br = ns.state("br0").unwrap();
    assert_eq!((br.mtu, br.mac.as_str()), (9000, BR_MAC));
    assert_eq!(ns.state("qt0").unwrap().mtu, 1500, "restored");
}

#[test]
fn bridge_address_does_not_follow_taps_on_a_bridge_without_a_set_address() {
    // A bridge whose address was never set takes its lowest port address; the
    // host-side 0xFE first byte keeps a tap from ever being that port.
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    ns.ip("link add up0 address 00:11:22:33:44:55 type veth peer name up1");
    ns.ip("link set up0 master br0 up");
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    ns.ip("tuntap add qt0 mode tap");
    ns.ip("link set qt0 address 00:00:00:00:00:01");
    ns.ifup("qt0", Some(&c)).ok();
    assert_eq!(ns.state("br0").unwrap().mac, "00:11:22:33:44:55");
}

#[test]
fn second_ifup_succeeds_and_changes_nothing() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    ns.ip("tuntap add qt0 mode tap");
    let first = ns.ifup("qt0", Some(&c));
    first.ok();
    let after_first = ns.state("qt0").unwrap();
    let again = ns.ifup("qt0", Some(&c));
    again.ok();
    assert!(again.stderr.contains("result=unchanged"), "{again:?}");
    assert_eq!(ns.state("qt0").unwrap(), after_first);
    // and one ifdown still undoes the first run
    ns.ifdown("qt0", Some(&c)).ok();
    assert_eq!(ns.state("qt0").unwrap().master, None);
}

#[test]
fn refuses_anything_that_is_not_a_tap() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    ns.ip("tuntap add tn0 mode tun");
    ns.ip("link add vx0 type vxlan id 42 dstport 4789 local 127.0.0.1");
    let cases = [
        ("up1", "veth device"),
        ("br0", "bridge"),
        ("tn0", "tun-mode"),
        ("lo", "physical or other non-virtual"),
        ("vx0", "vxlan device"),
    ];
    for (name, what) in cases {
        let before = ns.state(name);
        ns.ifup(name, Some(&c)).fails_with(what);
        ns.ifdown(name, Some(&c)).fails_with(what);
        assert_eq!(ns.state(name), before, "{name} must be untouched");
    }
    assert_eq!(ns.ports("br0"), vec!["up0"]);
}

#[test]
fn refuses_bad_names_before_touching_anything() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let links = ns.all_links();
    for bad in [
        "",
        "sixteen-chars-xx",
        "a/b",
        "a:b",
        "a b",
        ".",
        "..",
        "tap%d",
        "t$(reboot)",
        "t\nx",
    ] {
        ns.ifup(bad, Some(&c)).fails_with("interface name");
        ns.ifdown(bad, Some(&c)).fails_with("interface name");
    }
    // wrong argument counts
    Run::from(sh(ns.cmd(IFUP).env("KVMNET_CONFIG", &c))).fails_with("usage:");
    Run::from(sh(ns.cmd(IFUP).args(["a", "b"]).env("KVMNET_CONFIG", &c))).fails_with("usage:");
    assert_eq!(ns.all_links(), links);
}

const HELPER: &str = env!("CARGO_BIN_EXE_kvmnet-bridge-helper");

/// `kvmnet-ifup -x` once created a tap named `-x` while `-h` printed the
/// usage: a name that starts with '-' is refused with the reason, by every
/// program that takes a name, and nothing is created.
#[test]
fn a_name_that_starts_with_a_dash_is_refused_by_every_program() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let links = ns.all_links();
    let why = |n: &str| {
        format!(
            "interface name \"{n}\" starts with '-', which command-line tools (ip, sudo, \
             kvmnet-ifup itself) read as an option; start it with a letter, digit, '_' or '.'"
        )
    };
    for bad in ["-x", "-", "--", "-tap0", "--br0"] {
        ns.ifup(bad, Some(&c))
            .fails_with(&format!("kvmnet-ifup: {}", why(bad)));
        ns.ifdown(bad, Some(&c))
            .fails_with(&format!("kvmnet-ifdown: {}", why(bad)));
        // the bridge helper's br=, before it looks at anything else
        let r = Run::from(sh(ns
            .cmd(HELPER)
            .args(["--use-vnet", "--fd=5", &format!("--br={bad}")])
            .env("KVMNET_CONFIG", &c)));
        r.fails_with(&format!("kvmnet-bridge-helper: {}", why(bad)));
        // the admin command: explain (after --, else clap refuses it as an
        // unknown option) and check --tap
        let r = Run::from(sh(Command::new(KVMNET).args(["explain", "--", bad])));
        r.fails_with(&format!("kvmnet: {}", why(bad)));
        let r = Run::from(sh(Command::new(KVMNET)
            .arg("check")
            .arg(format!("--tap={bad}"))
            .arg("--config")
            .arg(&c)));
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("error: {}", why(bad)))),
            "{r:?}"
        );
    }
    let r = Run::from(sh(Command::new(KVMNET).args(["explain", "-x"])));
    assert_eq!(r.code, Some(2), "clap refuses it as an option: {r:?}");
    // help is still help
    ns.ifup("-h", Some(&c)).fails_with("usage: kvmnet-ifup TAP");
    ns.ifdown("--help", Some(&c))
        .fails_with("usage: kvmnet-ifdown TAP");
    assert_eq!(ns.all_links(), links);
}

#[test]
fn missing_bridge_is_refused_before_anything_is_created() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br9\"\ncreate_bridge = false\n");
    let links = ns.all_links();
    let r = ns.ifup("vm0", Some(&c));
    r.fails_with("bridge br9 does not exist; create it");
    assert!(r.stderr.contains("create_bridge = true in"), "{r:?}");
    assert_eq!(ns.all_links(), links);
}

#[test]
fn failure_after_creating_the_tap_rolls_it_back() {
    // A full bridge (1023 ports) makes the enslave fail after the tap exists.
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let batch: String = (0..1023)
        .map(|i| format!("link add v{i} master br0 type veth peer name p{i}\n"))
        .collect();
    ns.ip_batch(&batch);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let links = ns.all_links();
    ns.ifup("vm0", Some(&c))
        .fails_with("bridge br0 is full")
        .fails_with("tap vm0 was removed again");
    assert_eq!(ns.all_links(), links);

    // an existing tap is put back as it was
    ns.ip("tuntap add qt0 mode tap");
    ns.ip("link set qt0 mtu 1400 address 52:54:00:00:00:07");
    let before = ns.state("qt0").unwrap();
    ns.ifup("qt0", Some(&c))
        .fails_with("bridge br0 is full")
        .fails_with("tap qt0 was left as it was");
    assert_eq!(ns.state("qt0").unwrap(), before);
}

#[test]
fn creates_a_missing_bridge_once_even_when_racing() {
    let ns = Netns::new();
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br-auto\"\ncreate_bridge = true\n");
    parallel_ok(&ns, IFUP, &c, (0..16).map(|i| format!("par{i}")), "");
    let br = ns.link("br-auto").expect("bridge created");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert!(br["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(ns.ports("br-auto").len(), 16);
    // the address was set (NET_ADDR_SET), so it does not follow the ports;
    // a random address may itself start with fe, so the type says it
    assert_eq!(ns.sys("/sys/class/net/br-auto/addr_assign_type"), "3");
}

#[test]
fn two_ifups_racing_for_one_new_tap_both_succeed_and_ifdown_deletes_it() {
    for round in 0..20 {
        let ns = with_bridge(1500);
        let dir = TempDir::new();
        let c = cfg(&dir, "bridge = \"br0\"\n");
        let taps = (0..2).map(|_| "same0".to_owned());
        parallel_ok(&ns, IFUP, &c, taps, &format!("round {round}: "));
        let s = ns.state("same0").unwrap();
        assert_eq!(s.master.as_deref(), Some("br0"));
        assert!(s.alias.unwrap().contains("created"), "round {round}");
        ns.ifdown("same0", Some(&c)).ok();
        assert!(!ns.exists("same0"));
    }
}

#[test]
fn without_config_uses_the_default_route_bridge_like_debians_qemu_ifup() {
    let ns = with_bridge(1500);
    ns.ip("addr add 192.0.2.2/24 dev br0");
    ns.ip("route add default via 192.0.2.1 dev br0");
    ns.ifup("vm0", None).ok();
    assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br0"));
    assert!(!ns.exists("br-missing"));
}

#[test]
fn a_default_route_bridge_kvmnet_cannot_name_is_a_refusal_not_a_fallback() {
    let ns = Netns::new();
    ns.ip("link add name -br type bridge");
    ns.ip("link set dev -br up");
    ns.ip("addr add 192.0.2.2/24 dev -br");
    ns.ip("route add default via 192.0.2.1 dev -br");
    let links = ns.all_links();
    ns.ifup("vm0", None)
        .fails_with("the default route leaves through bridge -br")
        .fails_with("starts with '-'");
    // neither Debian's fallback br0 nor a tap was created
    assert_eq!(ns.all_links(), links);
}

#[test]
fn without_config_or_bridge_route_creates_private_br0() {
    let ns = Netns::new();
    // a default route through a non-bridge must not be used
    ns.ip("link add up0 type veth peer name up1");
    ns.ip("link set up0 up");
    ns.ip("addr add 192.0.2.2/24 dev up0");
    ns.ip("route add default via 192.0.2.1 dev up0");
    ns.ifup("vm0", None).ok();
    assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br0"));
    assert_eq!(ns.ports("br0"), vec!["vm0"]);
}

#[test]
fn ifdown_of_a_missing_tap_succeeds_and_says_so() {
    let ns = Netns::new();
    let r = ns.ifdown("gone0", None);
    r.ok();
    assert!(
        r.stderr.contains("tap=gone0") && r.stderr.contains("missing"),
        "{r:?}"
    );
}

#[test]
fn ifdown_leaves_a_tap_that_ifup_never_touched() {
    let ns = with_bridge(1500);
    ns.ip("tuntap add qt0 mode tap");
    ns.ip("link set qt0 master br0 up");
    let before = ns.state("qt0").unwrap();
    let r = ns.ifdown("qt0", None);
    r.ok();
    assert!(r.stderr.contains("untouched"), "{r:?}");
    assert_eq!(ns.state("qt0").unwrap(), before);
}

#[test]
fn malformed_config_is_refused_with_file_and_line_and_nothing_changes() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let links = ns.all_links();
    for (text, needle) in [
        (
            "bridge = \"br0\"\nbrigde = \"br1\"\n",
            "line 2: unknown key `brigde`",
        ),
        ("bridge = br0\n", "line 1:"),
        ("bridge = \"br0\"\ncreate_bridge = \"yes\"\n", "line 2:"),
        ("bridge = \"br0 x\"\n", "line 1: bridge: interface name"),
    ] {
        let c = cfg(&dir, text);
        let r = ns.ifup("vm0", Some(&c));
        r.fails_with(needle).fails_with(c.to_str().unwrap());
    }
    assert_eq!(ns.all_links(), links);
}

/// Runs a binary in the namespace inside a private mount namespace whose
/// /dev/log is a socket this test listens on.
fn run_with_syslog(
    ns: &Netns,
    bin: &str,
    tap: &str,
    config: &std::path::Path,
) -> (Run, Vec<String>) {
    let dir = TempDir::new();
    let sock_path = dir.path().join("log");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let script = r#"set -e
mount -t tmpfs -o mode=755 kvmnet-test-dev /dev
mkdir /dev/net && mknod -m 600 /dev/net/tun c 10 200
touch /dev/log && mount --bind "$0" /dev/log
exec nsenter --net=/run/netns/"$1" "$2" "$3""#;
    let out = sh(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(&sock_path)
        .args([&ns.name, bin, tap])
        .env("KVMNET_CONFIG", config));
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    (Run::from(out), lines)
}

#[test]
fn logs_one_line_to_syslog_as_daemon_and_errors_to_stderr_too() {
    let ns = with_bridge(9000);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let (r, lines) = run_with_syslog(&ns, IFUP, "vm0", &c);
    r.ok();
    // The audit line before the first change, then the outcome.
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("<30>kvmnet-ifup[")
            && lines[0].contains("tap=vm0 user=0 result=starting create=yes"),
        "{lines:?}"
    );
    let lines = &lines[1..];
    // <30> = facility daemon (3) * 8 + severity info (6)
    assert!(lines[0].starts_with("<30>kvmnet-ifup["), "{lines:?}");
    for needle in [
        "kvmnet-ifup[",
        "tap=vm0",
        "bridge=br0",
        "mtu=9000",
        "user=0",
        "result=attached",
    ] {
        assert!(lines[0].contains(needle), "{needle} in {lines:?}");
    }
    assert_eq!(r.stderr, "", "success is quiet on stderr when syslog works");

    let (r, lines) = run_with_syslog(&ns, IFUP, "up1", &c);
    r.fails_with("veth");
    assert_eq!(lines.len(), 1, "{lines:?}");
    // <27> = daemon * 8 + err (3)
    assert!(
        lines[0].starts_with("<27>") && lines[0].contains("veth"),
        "{lines:?}"
    );

    let (r, lines) = run_with_syslog(&ns, IFDOWN, "vm0", &c);
    r.ok();
    assert!(
        lines.len() == 2
            && lines[0].contains("result=starting")
            && lines[1].contains("kvmnet-ifdown[")
            && lines[1].contains("deleted"),
        "{lines:?}"
    );
}

#[test]
fn without_dev_log_everything_goes_to_stderr_and_the_run_still_succeeds() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let script = r#"set -e
mount -t tmpfs -o mode=755 kvmnet-test-dev /dev
mkdir /dev/net && mknod -m 600 /dev/net/tun c 10 200
exec nsenter --net=/run/netns/"$0" "$1" "$2""#;
    let out = sh(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .args([&ns.name, IFUP, "vm0"])
        .env("KVMNET_CONFIG", &c));
    let r = Run::from(out);
    r.ok();
    assert!(
        r.stderr.contains("kvmnet-ifup: tap=vm0 bridge=br0"),
        "{r:?}"
    );
}

#[test]
fn missing_dev_net_tun_is_a_clear_error() {
    let ns = with_bridge(1500);
    let dir = TempDir::new();
    let c = cfg(&dir, "bridge = \"br0\"\n");
    let script = r#"set -e
mount -t tmpfs -o mode=755 kvmnet-test-dev /dev
exec nsenter --net=/run/netns/"$0" "$1" "$2""#;
    let out = sh(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .args([&ns.name, IFUP, "vm0"])
        .env("KVMNET_CONFIG", &c));
    Run::from(out).fails_with("/dev/net/tun does not exist; load the tun module");
    assert!(!ns.exists("vm0"));
}

/// Policy is decided on an interface's own name: one found under an
/// alternative name (`ip link property add … altname`) is refused, tap or
/// bridge, and nothing changes.
#[test]
fn an_interface_found_under_an_alternative_name_is_refused() {
    let ns = with_bridge(1500);
    ns.ip("link add br-real up type bridge");
    ns.ip("link property add dev br-real altname br-alias");
    ns.ip("tuntap add qt0 mode tap");
    ns.ip("link property add dev qt0 altname vm-alias");
    let dir = TempDir::new();
    let before = (ns.all_links(), ns.state("qt0"), ns.state("br-real"));
    let c = cfg(&dir, "bridge = \"br-alias\"\n");
    ns.ifup("qt0", Some(&c))
        .fails_with("br-alias is another name of interface br-real (an altname)");
    let c = cfg(&dir, "bridge = \"br0\"\n");
    ns.ifup("vm-alias", Some(&c))
        .fails_with("vm-alias is another name of interface qt0 (an altname)");
    ns.ifdown("vm-alias", Some(&c))
        .fails_with("vm-alias is another name of interface qt0");
    assert_eq!(
        (ns.all_links(), ns.state("qt0"), ns.state("br-real")),
        before
    );
}
