//! Host sysctls: whether br_netfilter sends bridged traffic through the
//! firewall, and whether forwarding is on for the routed scopes (read as the
//! runtime reads it).

use std::io;
use std::path::Path;

use super::config::Scope;
use super::{as_whom, denied, Findings};
use crate::settings::NetMode;
use crate::sysctl::Family;

/// A sysctl's boolean value: `Some(true)` for anything but 0.
fn sysctl_value(text: &str) -> Option<bool> {
    text.trim().parse::<i64>().ok().map(|v| v != 0)
}

const BR_NF: [(&str, &str); 3] = [
    ("bridge-nf-call-iptables", "iptables"),
    ("bridge-nf-call-ip6tables", "ip6tables"),
    ("bridge-nf-call-arptables", "arptables"),
];

pub(super) fn check_br_netfilter(proc_sys: &Path, out: &mut Findings) {
    let dir = proc_sys.join("net/bridge");
    match std::fs::metadata(&dir) {
        Err(e) if denied(&e) => {
            out.unchecked(
                "br_netfilter",
                format!("cannot look at {} {}, so whether br_netfilter sends bridged traffic through the firewall is unknown", dir.display(), as_whom()),
            );
            return;
        }
        Ok(m) if m.is_dir() => {}
        _ => {
            out.ok(
            "br_netfilter",
            "br_netfilter is not loaded: bridged guest traffic does not pass the host's firewall"
                .into(),
        );
            return;
        }
    }
    for (file, table) in BR_NF {
        let path = dir.join(file);
        let key = format!("net.bridge.{file}");
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.ok(
                "br_netfilter",
                format!("{key} does not exist: bridged traffic skips {table}"),
            ),
            Err(e) if denied(&e) => out.unchecked(
                "br_netfilter",
                format!("cannot read {} {}", path.display(), as_whom()),
            ),
            Err(e) => out.warn(
                "br_netfilter",
                format!(
                    "cannot read {}: {}",
                    path.display(),
                    crate::os_error::describe(&e)
                ),
                format!("sysctl {key} shows what the kernel says"),
            ),
            Ok(t) => {
                match sysctl_value(&t) {
                    Some(true) => {
                        let allow = if table == "arptables" {
                            "let arptables accept it".to_owned()
                        } else {
                            format!("allow it ({table} -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT)")
                        };
                        out.warn(
                        "br_netfilter",
                        format!("{key} = 1: bridged guest traffic passes the host's {table} firewall"),
                        format!("if guests get no traffic, set 0 (sysctl -w {key}=0) or {allow}"),
                    );
                    }
                    Some(false) => out.ok(
                        "br_netfilter",
                        format!("{key} = 0: bridged traffic skips {table}"),
                    ),
                    None => out.warn(
                        "br_netfilter",
                        format!("{} holds {:?}, not a number", path.display(), t.trim()),
                        format!("sysctl -w {key}=0"),
                    ),
                }
            }
        }
    }
}

/// The runtime's forwarding switch ([`crate::sysctl::forwarding_path`])
/// below `proc_sys`, and its sysctl key.
fn forwarding_file(proc_sys: &Path, family: Family) -> (std::path::PathBuf, String) {
    let runtime = crate::sysctl::forwarding_path(family);
    let rel = runtime.strip_prefix("/proc/sys/").unwrap_or(runtime);
    (proc_sys.join(rel), rel.replace('/', "."))
}

pub(super) fn check_forwarding(proc_sys: &Path, scopes: &[Scope], out: &mut Findings) {
    for family in [Family::V4, Family::V6] {
        let users: Vec<&str> = scopes
            .iter()
            .filter(|s| {
                s.settings.mode == NetMode::Route
                    && s.settings.addresses.iter().any(|a| Family::of(a) == family)
            })
            .map(|s| s.who.as_str())
            .collect();
        if users.is_empty() {
            continue;
        }
        let users = users.join(", ");
        let (path, key) = forwarding_file(proc_sys, family);
        let fam = family.name();
        // What kvmnet-ifup reads before it switches forwarding on.
        let on = match path.to_str() {
            Some(p) => crate::sysctl::is_on(p),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a UTF-8 path",
            )),
        };
        match on {
            Ok(true) => out.ok("forwarding", format!("{fam} forwarding is on ({key} = 1), as {users} needs")),
            Ok(false) => out.warn(
                "forwarding",
                format!("{fam} forwarding is off ({key} = 0) and {users} routes guests: kvmnet-ifup switches it on at the first routed tap and logs it"),
                format!("to have it on from boot: sysctl -w {key}=1 and put {key} = 1 in /etc/sysctl.d/kvmnet.conf"),
            ),
            Err(e) if denied(&e) => out.unchecked(
                "forwarding",
                format!("cannot read {} {}, so whether {fam} forwarding is on for {users} is unknown", path.display(), as_whom()),
            ),
            Err(e) => out.error(
                "forwarding",
                format!("cannot read {}: {}; {users} routes {fam} guests and kvmnet-ifup would fail", path.display(), crate::os_error::describe(&e)),
                format!("enable {fam} in the kernel, or drop the {fam} addresses from {users}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp;
    use super::*;
    use crate::check::Severity;

    #[test]
    fn forwarding_is_the_runtimes_file_below_proc_sys() {
        let (p, key) = forwarding_file(Path::new("/x"), Family::V4);
        assert_eq!(
            (p.to_str().unwrap(), key.as_str()),
            ("/x/net/ipv4/ip_forward", "net.ipv4.ip_forward")
        );
        let (p, key) = forwarding_file(Path::new("/x"), Family::V6);
        assert_eq!(
            (p.to_str().unwrap(), key.as_str()),
            (
                "/x/net/ipv6/conf/all/forwarding",
                "net.ipv6.conf.all.forwarding"
            )
        );
    }

    #[test]
    fn sysctl_values() {
        assert_eq!(sysctl_value("1\n"), Some(true));
        assert_eq!(sysctl_value("0\n"), Some(false));
        assert_eq!(sysctl_value(" 2 "), Some(true));
        assert_eq!(sysctl_value("on"), None);
        assert_eq!(sysctl_value(""), None);
    }

    #[test]
    fn br_netfilter_from_a_proc_sys_tree() {
        let d = temp("brnf");
        // module not loaded: no net/bridge at all
        let mut out = Findings::default();
        check_br_netfilter(&d, &mut out);
        assert_eq!(out.0.len(), 1);
        assert_eq!(out.0[0].severity, Severity::Ok);
        assert!(
            out.0[0].message.contains("br_netfilter is not loaded"),
            "{:?}",
            out.0
        );
        // loaded: iptables on, ip6tables off, arptables missing
        std::fs::create_dir_all(d.join("net/bridge")).unwrap();
        std::fs::write(d.join("net/bridge/bridge-nf-call-iptables"), "1\n").unwrap();
        std::fs::write(d.join("net/bridge/bridge-nf-call-ip6tables"), "0\n").unwrap();
        let mut out = Findings::default();
        check_br_netfilter(&d, &mut out);
        std::fs::remove_dir_all(&d).unwrap();
        let sev: Vec<(Severity, bool)> = out
            .0
            .iter()
            .map(|f| (f.severity, f.fix.is_some()))
            .collect();
        assert_eq!(
            sev,
            [
                (Severity::Warning, true),
                (Severity::Ok, false),
                (Severity::Ok, false)
            ],
            "{:?}",
            out.0
        );
        assert!(out.0[0].message.contains("bridge-nf-call-iptables = 1"));
        assert!(out.0[0].message.contains("firewall"));
        assert!(out.0[0].fix.as_ref().unwrap().contains("set 0"));
        assert!(out.0[2]
            .message
            .contains("bridge-nf-call-arptables does not exist"));
    }
}
