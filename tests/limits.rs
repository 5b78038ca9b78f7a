//! `rate_out` through kvmnet-ifup and kvmnet-ifdown: the tbf a tap gets, its
//! record, changing and removing it, and a root qdisc that is not kvmnet's.
//! (The tbf's accuracy is tests/shape.rs's.) Each test in its own network
//! namespace.

mod common;

use common::{ok, Netns, TempDir};

fn with_bridge() -> Netns {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    ns
}

/// The root qdisc of `dev` as tc prints it (kind, handle, rate, burst).
fn root_qdisc(ns: &Netns, dev: &str) -> String {
    let out = ok(ns
        .cmd("tc")
        .args(["-j", "qdisc", "show", "dev", dev, "root"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let q = &v[0];
    let opts = &q["options"];
    format!(
        "{} {} rate={} burst={}",
        q["kind"].as_str().unwrap_or("none"),
        q["handle"].as_str().unwrap_or("-"),
        opts["rate"],
        opts["burst"]
    )
}

#[test]
fn rate_out_puts_a_tbf_on_the_tap_that_ifdown_takes_away() {
    let ns = with_bridge();
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br0\"\nrate_out = \"10mbit\"\n");
    ns.ip("tuntap add qt0 mode tap");
    let before = root_qdisc(&ns, "qt0");
    ns.ifup("qt0", Some(&c)).ok();
    assert_eq!(root_qdisc(&ns, "qt0"), "tbf 6b76: rate=1250000 burst=12500");
    let alias = ns.state("qt0").unwrap().alias.unwrap();
    assert!(alias.ends_with(" rate=1250000/12500"), "{alias}");
    // again: unchanged, the same tbf
    let r = ns.ifup("qt0", Some(&c));
    r.ok();
    assert!(r.stderr.contains("result=unchanged"), "{}", r.stderr);
    assert_eq!(root_qdisc(&ns, "qt0"), "tbf 6b76: rate=1250000 burst=12500");
    ns.ifdown("qt0", Some(&c)).ok();
    assert_eq!(root_qdisc(&ns, "qt0"), before);

    // a tap kvmnet creates: the tbf goes with it
    ns.ifup("vm0", Some(&c)).ok();
    assert!(root_qdisc(&ns, "vm0").starts_with("tbf 6b76:"));
    ns.ifdown("vm0", Some(&c)).ok();
    assert!(!ns.exists("vm0"));
}

#[test]
fn a_changed_or_removed_rate_out_follows_at_the_next_ifup() {
    let ns = with_bridge();
    let dir = TempDir::new();
    ns.ip("tuntap add qt0 mode tap");
    let before = root_qdisc(&ns, "qt0");
    let c = dir.config("bridge = \"br0\"\nrate_out = \"10mbit\"\n");
    ns.ifup("qt0", Some(&c)).ok();
    let c = dir.config("bridge = \"br0\"\nrate_out = \"100mbit\"\nburst_out = \"64kb\"\n");
    ns.ifup("qt0", Some(&c)).ok();
    // tc shows the burst as the kernel keeps it, in scheduler ticks
    let q = root_qdisc(&ns, "qt0");
    assert!(q.starts_with("tbf 6b76: rate=12500000 burst=655"), "{q}");
    let alias = ns.state("qt0").unwrap().alias.unwrap();
    assert!(alias.ends_with(" rate=12500000/65536"), "{alias}");
    let c = dir.config("bridge = \"br0\"\n");
    ns.ifup("qt0", Some(&c)).ok();
    // the default qdisc of an up device (it had none while never up)
    let q = root_qdisc(&ns, "qt0");
    assert!(!q.starts_with("tbf"), "{q} (before: {before})");
    assert!(!ns.state("qt0").unwrap().alias.unwrap().contains("rate="));
    ns.ifdown("qt0", Some(&c)).ok();
    assert_eq!(ns.state("qt0").unwrap().alias, None);
}

/// A root qdisc someone else put on the tap is never replaced: the VM does
/// not start, and the tap is left as it was.
#[test]
fn a_root_qdisc_that_is_not_kvmnets_refuses_the_run_and_changes_nothing() {
    let ns = with_bridge();
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br0\"\nrate_out = \"10mbit\"\n");
    ns.ip("tuntap add qt0 mode tap");
    ok(ns
        .cmd("tc")
        .args(["qdisc", "add", "dev", "qt0", "root", "handle", "1:", "htb"]));
    let before = ns.state("qt0").unwrap();
    ns.ifup("qt0", Some(&c))
        .fails_with("rate_out: interface #")
        .fails_with("already has a root qdisc that is not kvmnet's (htb 1:");
    assert_eq!(ns.state("qt0").unwrap(), before);
    assert!(root_qdisc(&ns, "qt0").starts_with("htb 1:"));
}

#[test]
fn rate_settings_are_checked_when_the_config_is_read() {
    let ns = with_bridge();
    let dir = TempDir::new();
    for (text, want) in [
        ("rate_out = \"10\"\n", "line 1: rate_out:"),
        ("rate_out = \"10 furlongs\"\n", "line 1: rate_out:"),
        (
            "burst_out = \"64kb\"\n",
            "burst_out: goes with rate_out in the same table",
        ),
    ] {
        let c = dir.config(&format!("bridge = \"br0\"\n{text}").replace("line 1", "line 2"));
        let want = want.replace("line 1", "line 2");
        ns.ifup("vm0", Some(&c)).fails_with(&want);
        assert!(!ns.exists("vm0"));
    }
}

/// `rate_in` without the guard's checks: a guard table that only polices,
/// recorded as such, shown as such, and taken away by ifdown; with the
/// guard, the same table holds both.
#[test]
fn rate_in_is_a_policing_table_that_ifdown_takes_away() {
    let ns = with_bridge();
    let dir = TempDir::new();
    let kvmnet = env!("CARGO_BIN_EXE_kvmnet");
    let c = dir.config("bridge = \"br0\"\nrate_in = \"10mbit\"\n");
    ns.ip("tuntap add qt0 mode tap");
    ns.ifup("qt0", Some(&c)).ok();
    let index = ns.link("qt0").unwrap()["ifindex"].as_u64().unwrap();
    let alias = ns.state("qt0").unwrap().alias.unwrap();
    assert!(alias.contains(" policed rate_in=1250000/65536"), "{alias}");
    let shard = kvmnet::guard::shard_name(kvmnet::guard::shard_of(index as u32));
    let chain = kvmnet::guard::chain_name(index as u32);
    let rules = ok(ns
        .cmd("nft")
        .args(["list", "chain", "netdev", &shard, &chain]));
    assert!(
        rules.contains("limit rate over 1250000 bytes/second burst 64 kbytes drop"),
        "{rules}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&ok(ns.cmd(kvmnet).args(["status", "--json"]))).unwrap();
    assert_eq!(rows[0]["guard"], "rate_in only");
    assert_eq!(rows[0]["rate_in"], "10mbit burst 64kb");

    // the guard turned on as well: the same table, both; the record says guard
    let c = dir.config(
        "bridge = \"br0\"\nrate_in = \"10mbit\"\nguard = true\nguest_mac = [\"52:54:00:12:34:56\"]\n",
    );
    ns.ifup("qt0", Some(&c)).ok();
    let alias = ns.state("qt0").unwrap().alias.unwrap();
    assert!(alias.contains(" guard rate_in=1250000/65536"), "{alias}");
    ns.ifdown("qt0", Some(&c)).ok();
    assert_eq!(ok(ns.cmd("nft").args(["list", "tables"])).trim(), "");
    assert_eq!(ns.state("qt0").unwrap().alias, None);
}
