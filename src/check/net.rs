//! `[[network]]`s: a network that is up has its bridge, its rules, its
//! dnsmasq and forwarding; no network's subnet is routed elsewhere on the
//! host (its guests' answers would go there).

use super::{as_whom, Findings};
use crate::config::Config;
use crate::net::{dnsmasq, nft, Network};
use crate::netlink::Netlink;

pub(super) fn check(config: &Config, proc_sys: &std::path::Path, out: &mut Findings) {
    if config.networks.is_empty() {
        return;
    }
    let nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => {
            out.unchecked(
                "network",
                format!("cannot open rtnetlink {}: {e}", as_whom()),
            );
            return;
        }
    };
    let routes = nl.ipv4_routes().unwrap_or_default();
    let mut nft = crate::nft::Nft::open().ok();
    for n in &config.networks {
        let bridge = nl.link_by_name(&n.bridge).ok().flatten();
        overlap(n, bridge.as_ref().map(|b| b.index), &routes, &nl, out);
        let exists = bridge.is_some();
        let Some(bridge) = bridge.filter(|b| crate::net::is_its_bridge(&n.name, &n.dir(), b))
        else {
            if exists {
                out.error(
                    "network",
                    format!("network {}: interface {} exists and is not the network's (kvmnet net up would refuse it)", n.name, n.bridge),
                    format!("give the network another bridge, or remove {} (ip link del {})", n.bridge, n.bridge),
                );
            } else {
                out.ok("network", format!("network {} is down", n.name));
            }
            continue;
        };
        let up = format!("kvmnet net up {} (it completes what is missing)", n.name);
        if !bridge.up {
            out.error(
                "network",
                format!("network {}: bridge {} is down", n.name, n.bridge),
                up.clone(),
            );
        }
        match dnsmasq::running(n) {
            Some(pid) => out.ok(
                "network",
                format!("network {}: dnsmasq runs (pid {pid})", n.name),
            ),
            None => out.error(
                "network",
                format!(
                    "network {}: its dnsmasq is not running: guests get no DHCP lease and no DNS",
                    n.name
                ),
                up.clone(),
            ),
        }
        match nft.as_mut().map(|t| nft::installed(t, &n.name)) {
            Some(Ok(Some(_))) => {}
            Some(Ok(None)) => out.error(
                "network",
                format!(
                    "network {}: its NAT and forwarding rules (table inet {}) are missing",
                    n.name,
                    nft::table_name(&n.name)
                ),
                up.clone(),
            ),
            _ => out.unchecked(
                "network",
                format!(
                    "cannot read nf_tables {} to see network {}'s rules",
                    as_whom(),
                    n.name
                ),
            ),
        }
        let fwd = proc_sys.join("net/ipv4/ip_forward");
        match std::fs::read_to_string(&fwd) {
            Ok(t) if t.trim() == "0" => out.error(
                "network",
                format!(
                    "network {}: IPv4 forwarding is off: its guests reach only the host",
                    n.name
                ),
                format!("sysctl -w net.ipv4.ip_forward=1, or {up}"),
            ),
            Ok(_) => {}
            Err(e) => out.unchecked("network", format!("cannot read {}: {e}", fwd.display())),
        }
    }
}

/// A route of the host to (part of) the network's subnet through another
/// interface than its bridge.
fn overlap(
    n: &Network,
    bridge: Option<u32>,
    routes: &[(std::net::Ipv4Addr, u8, Option<u32>)],
    nl: &Netlink,
    out: &mut Findings,
) {
    for &(dst, len, oif) in routes {
        if !n.overlaps_prefix(dst, len) || (oif.is_some() && oif == bridge) {
            continue;
        }
        let dev = oif
            .and_then(|i| nl.link_by_index(i).ok().flatten())
            .map_or("another interface".to_owned(), |l| l.name);
        out.error(
            "network",
            format!(
                "network {}'s subnet {}/{} overlaps the host's route to {dst}/{len} via {dev}: answers to its guests would leave there",
                n.name,
                n.subnet(),
                n.prefix
            ),
            format!("give network {} another ipv4 subnet in {}", n.name, n.location),
        );
    }
}
