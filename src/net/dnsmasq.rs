//! dnsmasq, the DHCP and DNS server of a private network: its command line,
//! starting it (it daemonizes and writes its pid), knowing it is still the
//! one `kvmnet net up` started, and stopping it.
//!
//! Only the admin command starts it; the VM-start binaries at most signal it
//! (SIGHUP: re-read the hosts directory after a reservation went away).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::def::Network;

#[derive(Debug, thiserror::Error)]
pub enum DnsmasqError {
    #[error("dnsmasq is not installed (looked for {0}); install it: apt-get install dnsmasq-base, or dnf install dnsmasq")]
    Missing(String),
    #[error("dnsmasq for network {net} did not start: {why}")]
    Start { net: String, why: String },
    #[error("dnsmasq of network {net} (pid {pid}) did not stop within {secs} s after SIGTERM and SIGKILL")]
    Stop { net: String, pid: i32, secs: u64 },
    #[error("dnsmasq of network {net} keeps coming back (pid {pid} now): stop what restarts it (systemctl stop kvmnet-net@{net}), then kvmnet net down {net} again")]
    Respawned { net: String, pid: i32 },
}

const PATHS: [&str; 2] = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"];

fn binary() -> Result<&'static str, DnsmasqError> {
    PATHS
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| DnsmasqError::Missing(PATHS.join(", ")))
}

pub fn pid_file(net: &Network) -> PathBuf {
    net.dir().join("dnsmasq.pid")
}

pub fn lease_file(net: &Network) -> PathBuf {
    net.dir().join("leases")
}

/// The command line: dnsmasq for this network's bridge only (never another
/// interface's DHCP or DNS), none of the host's dnsmasq config, its files
/// under the network's directory. Much of it is what libvirt gives its own.
pub fn args(net: &Network) -> Vec<String> {
    let dir = net.dir();
    let (first, last) = net.dhcp;
    // every address of the subnet: fixed addresses (outside the range)
    // count against the limit too
    let size = (1u32 << (32 - net.prefix)) - 2;
    let mut a = vec![
        "--conf-file=/dev/null".to_owned(),
        format!("--pid-file={}", pid_file(net).display()),
        "--except-interface=lo".to_owned(),
        format!("--interface={}", net.bridge),
        "--bind-dynamic".to_owned(),
        "--strict-order".to_owned(),
        "--domain-needed".to_owned(),
        format!("--dhcp-range={first},{last},{},1h", net.netmask()),
        "--dhcp-no-override".to_owned(),
        "--dhcp-authoritative".to_owned(),
        format!("--dhcp-lease-max={size}"),
        format!("--dhcp-leasefile={}", lease_file(net).display()),
        format!("--dhcp-hostsdir={}", dir.join("hosts.d").display()),
    ];
    if let Some(d) = &net.domain {
        a.push(format!("--domain={d}"));
        a.push(format!("--local=/{d}/"));
        a.push("--expand-hosts".to_owned());
    }
    if let Some((prefix, len)) = net.ipv6_prefix() {
        a.push("--enable-ra".to_owned());
        a.push(format!("--dhcp-range={prefix},ra-stateless,{len},1h"));
    }
    a
}

/// The pid of this network's dnsmasq when it runs: the pid file's process
/// is a dnsmasq whose command line names this pid file (a recycled pid is
/// not it).
pub fn running(net: &Network) -> Option<i32> {
    running_at(&pid_file(net))
}

/// [`running`] by the pid file's path. A dnsmasq whose start was cut short
/// (`up` killed before it wrote its pid file) has no pid file yet: the
/// process list finds it by the pid file its command line names.
///
/// A command line is the process's own to choose, so it also has to run as
/// root or as the user the pid file belongs to: only a dnsmasq root started
/// can own a file in the network's directory (it gives its pid file to the
/// user it switches to), and no ordinary user can pose as either.
pub fn running_at(pid_file: &Path) -> Option<i32> {
    let ours = format!("--pid-file={}", pid_file.display());
    let owner = std::fs::symlink_metadata(pid_file).ok().map(|m| m.uid());
    let is_ours = |pid: i32| {
        uids(pid).is_some_and(|u| u.iter().all(|&u| u == 0 || Some(u) == owner))
            && cmdline(pid).is_some_and(|c| {
                c.first().is_some_and(|c| c.ends_with("dnsmasq")) && c.contains(&ours)
            })
    };
    let listed = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|&pid| is_ours(pid) && here(pid) != Some(false));
    listed.or_else(|| {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|&pid| is_ours(pid) && here(pid) == Some(true))
    })
}

/// Whether the running dnsmasq was started with exactly these arguments
/// (else `up` restarts it: the config changed).
pub fn runs_as(pid: i32, net: &Network) -> bool {
    cmdline(pid).is_some_and(|c| c.get(1..) == Some(&args(net)[..]))
}

/// Whether process `pid` lives in this process's network namespace
/// (another container's, or another test's, dnsmasq names the same pid
/// file path); `None` when that cannot be read (not root). Not the mount
/// namespace: a unit with a private /tmp, or a command run through
/// `unshare`, has its own, and it still is this network's dnsmasq.
fn here(pid: i32) -> Option<bool> {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let mine = std::fs::read_link("/proc/self/ns/net").ok()?;
    Some(theirs == mine)
}

/// The real, effective, saved and filesystem uids of process `pid`
/// (/proc/PID/status is readable without privilege).
fn uids(pid: i32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let uids: Vec<u32> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (uids.len() == 4).then_some(uids)
}

fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Starts it; it forks, and its first process exits once the server is
/// ready (or with its own error message).
pub fn start(net: &Network) -> Result<i32, DnsmasqError> {
    let bin = binary()?;
    let err = |why: String| DnsmasqError::Start {
        net: net.name.clone(),
        why,
    };
    let _ = std::fs::remove_file(pid_file(net));
    let out = Command::new(bin)
        .args(args(net))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(format!("cannot run {bin}: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "{} ({})",
            text.trim().lines().last().unwrap_or("no message"),
            out.status
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = running(net) {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(err("it wrote no pid file".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then SIGKILL; waits until the process is gone.
pub fn stop(net: &Network, pid: i32) -> Result<(), DnsmasqError> {
    stop_pid(&net.name, &pid_file(net), pid)
}

/// [`stop`] by the network's name and pid file.
pub fn stop_pid(net: &str, pid_file: &Path, pid: i32) -> Result<(), DnsmasqError> {
    let p = Pid::from_raw(pid);
    let gone = |until: Instant| loop {
        if kill(p, None).is_err() || running_at(pid_file) != Some(pid) {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = kill(p, Signal::SIGTERM);
    if !gone(Instant::now() + Duration::from_secs(3)) {
        let _ = kill(p, Signal::SIGKILL);
        if !gone(Instant::now() + Duration::from_secs(2)) {
            return Err(DnsmasqError::Stop {
                net: net.to_owned(),
                pid,
                secs: 5,
            });
        }
    }
    let _ = std::fs::remove_file(pid_file);
    Ok(())
}

/// Asks it to re-read its hosts directory (it notices new files by itself,
/// not removed ones). Root's `kvmnet net up` only: dnsmasq has given up
/// root for its own user, which kvmnet-ifdown (CAP_NET_ADMIN alone) may
/// not signal.
pub fn reload(pid_file: &Path) {
    if let Some(pid) = running_at(pid_file) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
    }
}

/// The leases it holds now: (MAC, IP, hostname).
pub fn leases(net: &Network) -> Vec<(String, String, String)> {
    std::fs::read_to_string(lease_file(net))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[1].to_owned(), f[2].to_owned(), f[3].to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_keeps_to_the_bridge_and_the_networks_files() {
        let net = Network {
            name: "default".into(),
            bridge: crate::name::BridgeName::new("kvbr0").unwrap(),
            address: "192.168.122.1".parse().unwrap(),
            prefix: 24,
            dhcp: (
                "192.168.122.2".parse().unwrap(),
                "192.168.122.254".parse().unwrap(),
            ),
            nat: true,
            uplink: None,
            ipv6: Some(("fd00:122::1".parse().unwrap(), 64)),
            domain: Some("vm".into()),
            location: String::new(),
        };
        let a = args(&net);
        for want in [
            "--conf-file=/dev/null",
            "--interface=kvbr0",
            "--bind-dynamic",
            "--except-interface=lo",
            "--dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0,1h",
            "--dhcp-lease-max=254",
            "--pid-file=/run/kvmnet/net/default/dnsmasq.pid",
            "--dhcp-hostsdir=/run/kvmnet/net/default/hosts.d",
            "--domain=vm",
            "--enable-ra",
            "--dhcp-range=fd00:122::,ra-stateless,64,1h",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
        }
    }
}
