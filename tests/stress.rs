//! Concurrency and faults: many callers at once, and the bridge vanishing
//! under a running ifup. Every run must end either done or fully rolled back,
//! never half-configured and never hung.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{parallel_ok, Netns, TempDir, IFDOWN, IFUP};

#[test]
fn two_hundred_parallel_ifups_on_one_bridge_all_succeed() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br0\"\n");
    parallel_ok(&ns, IFUP, &c, (0..200).map(|i| format!("p{i}")), "");
    let mut ports = ns.ports("br0");
    ports.sort();
    assert_eq!(ports.len(), 200);
    // and 200 parallel ifdowns remove them all
    parallel_ok(&ns, IFDOWN, &c, (0..200).map(|i| format!("p{i}")), "");
    assert!(ns.ports("br0").is_empty());
    assert_eq!(ns.all_links(), vec!["br0", "lo"]);
}

#[test]
fn bridge_deleted_while_ifups_run_leaves_nothing_half_done() {
    let ns = Netns::new();
    ns.ip("link add br0 up type bridge");
    let dir = TempDir::new();
    let c = dir.config("bridge = \"br0\"\n");
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let stop = stop.clone();
        let name = ns.name.clone();
        std::thread::spawn(move || {
            let mut flaps = 0;
            while !stop.load(Ordering::SeqCst) {
                let _ = Command::new("ip")
                    .args(["-n", &name, "link", "del", "br0"])
                    .status();
                let _ = Command::new("ip")
                    .args(["-n", &name, "link", "add", "br0", "up", "type", "bridge"])
                    .status();
                flaps += 1;
            }
            flaps
        })
    };
    let (mut ok, mut failed, mut rolled_back) = (0, 0, 0);
    let start = Instant::now();
    for i in 0..150 {
        let tap = format!("f{i}");
        let out = ns
            .cmd(IFUP)
            .arg(&tap)
            .env("KVMNET_CONFIG", &c)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            ok += 1;
            // it may have lost its bridge since, but it is a whole kvmnet tap
            let s = ns.state(&tap).expect("tap exists after success");
            assert!(s.alias.unwrap().starts_with("kvmnet:v1 created"), "{tap}");
        } else {
            failed += 1;
            rolled_back += usize::from(stderr.contains("was removed again"));
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
            assert!(!ns.exists(&tap), "{tap} left behind after: {stderr}");
            assert!(
                stderr.contains("does not exist")
                    || stderr.contains("was removed again")
                    || stderr.contains("disappeared"),
                "unexpected failure: {stderr}"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let flaps = flapper.join().unwrap();
    eprintln!(
        "{ok} succeeded, {failed} failed cleanly ({rolled_back} after creating the tap, rolled back), bridge deleted {flaps} times, in {:?}",
        start.elapsed()
    );
    assert!(flaps > 10, "the fault was not exercised");
    assert!(start.elapsed() < Duration::from_secs(120), "something hung");
}
