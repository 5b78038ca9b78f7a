//! Kernel tests of the guard, each in a throwaway network namespace, with
//! nft as the oracle.

use super::*;
use crate::nft::msg::Msg;
use crate::rate::Rate;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `f` in a thread of its own network namespace, which the kernel
/// removes when the thread ends, passed or panicked; programs the
/// thread starts run in it too.
pub(crate) fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a network namespace, a tap, nf_tables); run the suite as root"
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Runs `prog args` (in the calling thread's namespace); its stdout,
/// or a panic with its stderr.
pub(crate) fn run(prog: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {prog} (the oracle; apt-get install nftables): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Makes tap `name` in the calling thread's namespace; its ifindex.
pub(crate) fn tap(name: &str) -> u32 {
    run("ip", &["tuntap", "add", name, "mode", "tap"], "");
    let out = run("ip", &["-j", "link", "show", "dev", name], "");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

pub(crate) fn spec(ifindex: u32) -> GuardSpec {
    GuardSpec {
        tap: TapName::new("vm0").unwrap(),
        ifindex,
        macs: vec!["52:54:00:12:34:56".parse().unwrap()],
        ipv4: Some(vec![
            "192.0.2.10".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ]),
        ipv6: Some(vec![
            "2001:db8::10".parse().unwrap(),
            "2001:db8:1::/64".parse().unwrap(),
        ]),
        enforce: true,
        rate_in: None,
    }
}

/// A spec with only the guest->host rate, for tap vm0.
pub(crate) fn rate_only(ifindex: u32, rate: &str, burst: Option<&str>) -> GuardSpec {
    GuardSpec::rate_only(
        TapName::new("vm0").unwrap(),
        ifindex,
        Rate::parse(rate, burst).unwrap(),
    )
}

/// The byte oracle: nft 1.0.6 loading [`shard_text`] sends exactly the
/// messages [`shard_batch`] makes; and loading [`nft_text`] into that
/// shard, exactly those of [`tap_batch`]: for a guard pinning both
/// families, one pinning nothing but the MAC, two MACs with an empty
/// IPv4 list and a prefix reaching the top of the IPv6 space, a rate
/// alone (default burst, a configured one, the highest rate with the
/// largest burst, a spec whose MACs and addresses go unused) and a
/// rate with the guard.
#[test]
fn the_batch_is_byte_for_byte_what_nft_sends_for_the_same_ruleset() {
    in_fresh_netns(|| {
        let index = tap("vm0");
        let ours = |msgs: Vec<Msg>| -> Vec<(u16, Vec<u8>)> {
            msgs.into_iter().map(|m| (m.req.kind, m.req.body)).collect()
        };
        let same = |ours: Vec<(u16, Vec<u8>)>, theirs: Vec<(u16, Vec<u8>)>, text: &str| {
            assert_eq!(ours.len(), theirs.len(), "{text}");
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a, b, "message {i} differs for\n{text}");
            }
        };
        let shard = shard_of(index);
        let text = shard_text(shard);
        let theirs = crate::nft::mnl_batch(&run("nft", &["--debug=mnl", "-f", "-"], &text));
        same(ours(shard_batch(shard)), theirs, &text);

        let mut only_mac = spec(index);
        only_mac.ipv4 = None;
        only_mac.ipv6 = None;
        let mut two_macs_v4_empty = spec(index);
        two_macs_v4_empty
            .macs
            .push("02:00:00:00:00:02".parse().unwrap());
        two_macs_v4_empty.ipv4 = Some(Vec::new());
        two_macs_v4_empty.ipv6 = Some(vec!["ff00::/8".parse().unwrap()]);
        let mut unused_addresses = spec(index);
        unused_addresses.enforce = false;
        unused_addresses.rate_in = Some(Rate::parse("10mbit", None).unwrap());
        let mut rate_and_guard = spec(index);
        rate_and_guard.rate_in = Some(Rate::parse("100mbit", Some("256kb")).unwrap());
        let mut rate_and_mac = only_mac.clone();
        rate_and_mac.rate_in = Some(Rate::parse("8kbit", None).unwrap());
        let highest = GuardSpec {
            rate_in: Some(
                Rate::new(crate::rate::MAX_BYTES_PER_SEC, Some(crate::rate::MAX_BURST)).unwrap(),
            ),
            ..rate_only(index, "10mbit", None)
        };
        for s in [
            spec(index),
            only_mac,
            two_macs_v4_empty,
            rate_only(index, "10mbit", None),
            rate_only(index, "1.5mbit", Some("3028")),
            highest,
            unused_addresses,
            rate_and_guard,
            rate_and_mac,
        ] {
            run("nft", &["-f", "-"], &text);
            let tap_text = nft_text(&s).unwrap();
            let theirs = crate::nft::mnl_batch(&run("nft", &["--debug=mnl", "-f", "-"], &tap_text));
            run("nft", &["flush", "ruleset"], "");
            same(ours(tap_batch(&s).unwrap()), theirs, &tap_text);
        }
    });
}

/// The tap's chain and elements, as nft lists them.
fn tap_state(index: u32) -> (String, Vec<String>) {
    let table = shard_name(shard_of(index));
    let chain = run(
        "nft",
        &["list", "chain", "netdev", &table, &chain_name(index)],
        "",
    );
    let mut elems = Vec::new();
    for set in rules::SETS {
        let out = run("nft", &["list", "set", "netdev", &table, set.name], "");
        elems.push(out);
    }
    (chain, elems)
}

/// Applying twice leaves the tap's guard as the first made it; the
/// first tap of a shard makes the shard; removing leaves the shard
/// without the tap, removing again is fine, and the sweep then takes
/// the empty shard.
#[test]
fn apply_replaces_and_remove_is_idempotent() {
    in_fresh_netns(|| {
        let index = tap("vm0");
        limit_apply(&spec(index)).unwrap();
        let first = run("nft", &["--json", "list", "ruleset"], "");
        let (chain, elems) = tap_state(index);
        assert!(chain.contains("jump guest"), "{chain}");
        // nft names the interface of a live index
        assert!(
            elems[0].contains("\"vm0\" . 52:54:00:12:34:56"),
            "{elems:?}"
        );
        limit_apply(&spec(index)).unwrap();
        let second = run("nft", &["--json", "list", "ruleset"], "");
        let strip = |s: &str| {
            let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
            strip_handles(&mut v);
            v
        };
        assert_eq!(strip(&first), strip(&second));
        // A changed spec replaces the elements, not adds to them.
        let mut other = spec(index);
        other.ipv4 = Some(vec!["203.0.113.7".parse().unwrap()]);
        limit_apply(&other).unwrap();
        let (_, elems) = tap_state(index);
        assert!(elems[1].contains("203.0.113.7"), "{elems:?}");
        assert!(!elems[1].contains("192.0.2.10"), "{elems:?}");
        limit_remove(index).unwrap();
        limit_remove(index).unwrap();
        let left = run("nft", &["list", "ruleset"], "");
        assert!(!left.contains(&chain_name(index)), "{left}");
        assert!(!left.contains("\"vm0\" . "), "{left}");
        let swept = sweep(64, 0).unwrap();
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert!(
            matches!(swept[0].kind, StaleKind::Shard { .. }),
            "{swept:?}"
        );
        let left = run("nft", &["list", "ruleset"], "");
        assert_eq!(left.trim(), "");
    });
}

/// Deleting an empty shard is refused whole when a tap joined it since
/// the sweep read it (even a rate-only tap, which jumps nowhere): the
/// table is deleted only when nothing but the shard's own objects is
/// in it.
#[test]
fn an_empty_shard_is_never_deleted_under_a_tap_that_joined_it() {
    in_fresh_netns(|| {
        let index = tap("vm0");
        let table = shard_name(shard_of(index));
        let mut nft = Nft::open().unwrap();
        nft.apply("shard", &shard_batch(shard_of(index))).unwrap();
        let handle = nft
            .tables(FAMILY)
            .unwrap()
            .into_iter()
            .find(|t| t.name == table)
            .unwrap()
            .handle;
        for s in [spec(index), rate_only(index, "10mbit", None)] {
            limit_apply(&s).unwrap();
            let err = nft
                .apply("deleting", &state::delete_shard(&table, handle))
                .unwrap_err();
            let NftError::Rejected { refusals, .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(refusals[0].errno, libc::EBUSY, "{err}");
            let (chain, _) = tap_state(index);
            assert!(chain.contains("iif != \"vm0\" accept"), "{chain}");
            limit_remove(index).unwrap();
        }
        nft.apply("deleting", &state::delete_shard(&table, handle))
            .unwrap();
        assert_eq!(run("nft", &["list", "ruleset"], "").trim(), "");
    });
}

/// Elements whose tap chain is gone (6.1 deletes a netdev base chain
/// with its device) are swept, and so is the shard they leave empty; a
/// live tap's guard in the same shard is left alone.
#[test]
fn elements_without_their_chain_are_swept() {
    in_fresh_netns(|| {
        let a = tap("vm0");
        let b = tap("vm1");
        assert_eq!(shard_of(a), shard_of(b));
        let mut sb = spec(b);
        sb.tap = TapName::new("vm1").unwrap();
        sb.macs = vec!["52:54:00:00:00:01".parse().unwrap()];
        limit_apply(&spec(a)).unwrap();
        limit_apply(&sb).unwrap();
        let table = shard_name(shard_of(a));
        run(
            "nft",
            &["delete", "chain", "netdev", &table, &chain_name(a)],
            "",
        );
        let swept = sweep(64, 0).unwrap();
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(
            swept[0].why,
            format!("set elements of interface {a} without its chain")
        );
        let left = run("nft", &["list", "ruleset"], "");
        assert!(!left.contains("\"vm0\" . "), "{left}");
        assert!(left.contains("\"vm1\" . 52:54:00:00:00:01"), "{left}");
        limit_remove(b).unwrap();
        sweep(64, 0).unwrap();
        assert_eq!(run("nft", &["list", "ruleset"], "").trim(), "");
    });
}

/// Handles number objects in the order of their making; they differ
/// between two loads of the same ruleset.
pub(crate) fn strip_handles(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("handle");
            m.values_mut().for_each(strip_handles);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_handles),
        _ => {}
    }
}
