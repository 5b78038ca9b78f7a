//! The `kvmnet` admin command against real state: status, explain, mac.

mod common;

use std::process::Command;

use common::{ok, sh, Netns, Run, TempDir};

const KVMNET: &str = env!("CARGO_BIN_EXE_kvmnet");
/// The config file the package installs.
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kvmnet.toml");

/// `kvmnet explain TAP --user 4242` in `ns` with `config`, as that user.
fn explain_as_4242(ns: &Netns, config: &std::path::Path, tap: &str) -> String {
    ok(ns
        .cmd("setpriv")
        .args([
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            "--",
            KVMNET,
        ])
        .args(["explain", tap, "--user", "4242", "--config"])
        .arg(config))
}

/// With the shipped config (no bridge set), kvmnet-ifup takes the bridge
/// that carries the IPv4 default route: explain looks it up the same way
/// and answers for it; only with no such bridge does it say that the
/// answer depends on run time, and why. The rule it offers, run as given
/// (into a copy of the file), admits the user.
#[test]
fn explain_answers_for_the_default_route_bridge_as_ifup_would_find_it() {
    let ns = Netns::new();
    ns.ip("link add br-up up type bridge");
    ns.ip("link add br-other up type bridge");
    ns.ip("addr add 192.0.2.2/24 dev br-up");
    ns.ip("route add default via 192.0.2.1 dev br-up");
    let dir = TempDir::new();
    let copy = dir.path().join("kvmnet.toml");
    std::fs::copy(SHIPPED, &copy).unwrap();

    let out = explain_as_4242(&ns, &copy, "vm0");
    assert!(
        out.contains(
            "bridge:     br-up (not configured: the first bridge with an IPv4 default route, \
             found now; exists; never created by kvmnet)\n"
        ),
        "{out}"
    );
    let rule = "printf '[[allow]]\\nusers = [4242]\\nbridges = [\"br-up\"]\\n' | sudo tee -a /etc/kvmnet/kvmnet.toml";
    let verdict = format!(
        "user 4242:  refused by no [[allow]] rule matches (deny by default); to admit: {rule}\n"
    );
    assert!(out.ends_with(&verdict), "{out}");
    // what ifup does in the same namespace with the same file: br-up
    let r = ns.ifup("vm0", Some(&copy));
    r.ok();
    assert_eq!(ns.state("vm0").unwrap().master.as_deref(), Some("br-up"));

    // the offered rule, pointed at the copy, admits the user to br-up
    let line = std::fs::read_to_string(&copy).unwrap().lines().count() + 1;
    let paste = rule.replace(
        "sudo tee -a /etc/kvmnet/kvmnet.toml",
        &format!("tee -a {}", copy.display()),
    );
    ok(Command::new("sh").args(["-c", &paste]));
    let out = explain_as_4242(&ns, &copy, "vm1");
    assert!(
        out.ends_with(&format!(
            "user 4242:  allowed by allow rule at {} line {line} (user 4242)\n",
            copy.display()
        )),
        "{out}"
    );

    // no default route: the answer depends on run time, and says why
    ns.ip("route del default");
    let out = explain_as_4242(&ns, &copy, "vm2");
    assert!(
        out.contains(
            "bridge:     br0 (not configured, and no bridge carries an IPv4 default route now; \
             does not exist; never created by kvmnet)\n"
        ),
        "{out}"
    );
    assert!(
        out.ends_with(
            "user 4242:  depends on the bridge found at run time: no bridge carries an IPv4 \
             default route now, so kvmnet-ifup would use br0: refused by no [[allow]] rule \
             matches (deny by default); to admit: printf '[[allow]]\\nusers = [4242]\\nbridges = \
             [\"br0\"]\\n' | sudo tee -a /etc/kvmnet/kvmnet.toml\n"
        ),
        "{out}"
    );
}

#[test]
fn status_lists_only_kvmnet_taps_with_bridge_mode_owner_and_state() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let dir = TempDir::new();
    let c = dir.config(
        "bridge = \"br0\"\n[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.10\"]\n",
    );
    ns.ifup("vm0", Some(&c)).ok();
    ns.ip("tuntap add qt0 mode tap user 4242");
    ns.ifup("qt0", Some(&c)).ok();
    ns.ifup("rt-1", Some(&c)).ok();
    ns.ip("tuntap add foreign0 mode tap"); // not kvmnet's: not listed
                                           // QEMU's tap, its queue open, taken down by someone: still in use
    let _held = common::open_tap(&ns, "qh0");
    ns.ifup("qh0", Some(&c)).ok();
    ns.ip("link set qh0 down");

    // unprivileged, as any user may
    let out = sh(ns.cmd("setpriv").args([
        "--reuid=4242",
        "--regid=4242",
        "--clear-groups",
        "--",
        KVMNET,
        "status",
        "--json",
    ]));
    let r = Run::from(out);
    r.ok();
    let rows: serde_json::Value =
        serde_json::from_str(&ok(ns.cmd(KVMNET).args(["status", "--json"]))).unwrap();
    let _ = r;
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["tap"].as_str().unwrap()).collect();
    assert_eq!(names, ["qh0", "qt0", "rt-1", "vm0"]);
    let by = |n: &str| rows.iter().find(|r| r["tap"] == n).unwrap().clone();
    assert_eq!(by("vm0")["bridge"], "br0");
    assert_eq!(by("vm0")["created_by_kvmnet"], true);
    assert_eq!(by("qt0")["owner"], 4242);
    assert_eq!(by("qt0")["created_by_kvmnet"], false);
    assert_eq!(by("rt-1")["mode"], "route");
    assert_eq!(by("rt-1")["routes"][0], "192.0.2.10");
    assert_eq!(by("vm0")["in_use"], false);
    assert_eq!(by("qh0")["in_use"], true);
    assert_eq!(by("qh0")["up"], false);

    let table = ok(ns.cmd(KVMNET).arg("status"));
    assert!(table.lines().next().unwrap().starts_with("TAP"), "{table}");
    assert!(
        table.contains("vm0") && !table.contains("foreign0"),
        "{table}"
    );
}

#[test]
fn explain_and_mac_from_the_command_line() {
    let dir = TempDir::new();
    let c = dir
        .config("bridge = \"br0\"\n[[rule]]\nmatch = \"lab-*\"\nbridge = \"br-lab\"\nvlan = 10\n");
    let out = ok(Command::new(KVMNET)
        .args(["explain", "lab-3", "--user", "4242", "--config"])
        .arg(&c));
    assert!(out.contains("rule:       rule 1 (lab-*)"), "{out}");
    assert!(out.contains("vlans:      10 untagged"), "{out}");
    assert!(
        out.contains("user 4242:  refused by no [[allow]] rule matches"),
        "{out}"
    );
    let bad = Run::from(sh(Command::new(KVMNET).args(["explain", "bad name"])));
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("interface name"), "{bad:?}");

    let a = ok(Command::new(KVMNET).args(["mac", "--name", "web1"]));
    let b = ok(Command::new(KVMNET).args(["mac", "--name", "web1"]));
    assert_eq!(a, b, "stable for a name");
    let q = ok(Command::new(KVMNET).args(["mac", "--oui", "52:54:00"]));
    assert!(q.starts_with("52:54:00:"), "{q}");
    let r = ok(Command::new(KVMNET).arg("mac"));
    let first = u8::from_str_radix(&r[..2], 16).unwrap();
    assert_eq!(first & 3, 2, "unicast, locally administered: {r}");
}
