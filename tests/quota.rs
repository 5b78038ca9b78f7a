//! `max_ports_per_user`: a caller other than root may own only so many
//! ports of one bridge, so that one user cannot fill a shared bridge.

mod common;

use common::{privileged_copy, Grant, Jail, Netns, TempDir, IFDOWN, IFUP};

const USER: u32 = 4242;
const OTHER: u32 = 4243;
const KVM_GROUP: u32 = 4300;

#[test]
fn a_user_owns_at_most_max_ports_per_user_ports_of_a_bridge() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    ns.ip("link add br1 up type bridge");
    let dir = TempDir::new();
    let ifup = privileged_copy(dir.path(), IFUP, Grant::FileCap);
    let ifdown = privileged_copy(dir.path(), IFDOWN, Grant::FileCap);
    let config = "bridge = \"br0\"\nmax_ports_per_user = 2\n\
                  [[rule]]\nmatch = \"b1-*\"\nbridge = \"br1\"\n\
                  [[allow]]\ngroups = [4300]\nbridges = [\"*\"]\n";
    let jail = Jail::new(USER, USER, &[KVM_GROUP]).config(config);
    let run = |bin: &std::path::Path, tap: &str| jail.run(&ns, &[bin.to_str().unwrap(), tap]);
    // another user's port and a root-made port do not count against USER
    Jail::new(OTHER, OTHER, &[KVM_GROUP])
        .config(config)
        .run(&ns, &[ifup.to_str().unwrap(), "other0"])
        .ok();
    ns.ip("tuntap add root0 mode tap");
    ns.ip("link set root0 master br0");
    run(&ifup, "vm0").ok();
    run(&ifup, "vm1").ok();
    let links = ns.all_links();
    run(&ifup, "vm2")
        .fails_with("user 4242 already owns 2 ports of bridge br0, the most max_ports_per_user");
    assert_eq!(ns.all_links(), links, "nothing created for the refused run");
    // a port it has already is no new one: re-running ifup on it is fine
    run(&ifup, "vm1").ok();
    // the limit is per bridge
    run(&ifup, "b1-0").ok();
    // a freed place can be taken again
    run(&ifdown, "vm0").ok();
    run(&ifup, "vm2").ok();
    assert_eq!(ns.ports("br0").len(), 4, "{:?}", ns.ports("br0"));
}

#[test]
fn root_is_not_limited() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br0\"\nmax_ports_per_user = 1\n");
    for tap in ["vm0", "vm1", "vm2"] {
        ns.ifup(tap, Some(&c)).ok();
    }
    assert_eq!(ns.ports("br0").len(), 3);
}

#[test]
fn the_limit_is_checked_when_the_config_is_read() {
    let ns = Netns::new();
    let dir = TempDir::new();
    for (text, needle) in [
        (
            "max_ports_per_user = 0\n",
            "line 1: max_ports_per_user: 0 is outside 1-1023",
        ),
        ("max_ports_per_user = 5000\n", "outside 1-1023"),
        (
            "max_ports_per_user = \"10\"\n",
            "line 1: max_ports_per_user",
        ),
    ] {
        let c = dir.config(text);
        ns.ifup("vm0", Some(&c)).fails_with(needle);
    }
}
