//! The `kvmnet` admin command against real state: status, explain, mac.

mod common;

use std::process::Command;

use common::{ok, sh, Netns, Run, TempDir};

const KVMNET: &str = env!("CARGO_BIN_EXE_kvmnet");

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
    assert_eq!(names, ["qt0", "rt-1", "vm0"]);
    let by = |n: &str| rows.iter().find(|r| r["tap"] == n).unwrap().clone();
    assert_eq!(by("vm0")["bridge"], "br0");
    assert_eq!(by("vm0")["created_by_kvmnet"], true);
    assert_eq!(by("qt0")["owner"], 4242);
    assert_eq!(by("qt0")["created_by_kvmnet"], false);
    assert_eq!(by("rt-1")["mode"], "route");
    assert_eq!(by("rt-1")["routes"][0], "192.0.2.10");
    assert_eq!(by("vm0")["in_use"], false);

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
