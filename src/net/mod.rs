//! Private networks that just work (`[[network]]`, `kvmnet net up|down|list`):
//! a bridge with the host's address, forwarding, NAT and forwarding rules
//! in one nf_tables table of the network's own, and dnsmasq for DHCP and DNS
//! on that bridge only — libvirt's `default` network without libvirt.
//!
//! Every step of `up` is idempotent, so a second `up` changes nothing and an
//! `up` killed half-way is completed by the next `up` (or undone by `down`).
//! What `up` made is recorded before it is made (`made` in the network's
//! directory), so `down` removes exactly that, whatever the config says by
//! then: never a bridge the network did not create.

pub mod def;
pub mod dnsmasq;
pub mod nft;

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::link::LinkKind;
use crate::mac::Mac;
use crate::netlink::{Netlink, NetlinkError};
use crate::nft::{Nft, NftError};
use crate::settings::Settings;
use crate::sysctl::{self, Family};

pub use def::Network;
pub use dnsmasq::DnsmasqError;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Dnsmasq(#[from] DnsmasqError),
    #[error(
        "no [[network]] is named {name:?} in {config}; `kvmnet net list` shows those there are"
    )]
    Unknown { name: String, config: String },
    #[error("network {net} is up with {was}, and its [[network]] now says {now}: take it down as it is (kvmnet net down {net}), then up again")]
    Changed {
        net: String,
        was: String,
        now: String,
    },
    #[error("tap {tap} would get a fixed address on network {net}, which kvmnet-ifup can record only when run as root or through the sudo rule (this install runs as the user: {mode}); use the sudo rule, or leave out guest_ipv4")]
    ReserveUnprivileged {
        tap: String,
        net: String,
        mode: crate::privilege::Mode,
    },
    #[error("tap {tap} cannot have a fixed address on network {net}: dnsmasq ignores hidden files, and a tap whose name starts with '.' would be one")]
    Hidden { tap: String, net: String },
    #[error("network {net}: {reason}; fix it in the config")]
    Spec { net: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interface {bridge} exists and is not network {net}'s (kvmnet net up makes its own bridge): give the network another bridge name, or remove {bridge} (ip link del {bridge})")]
    NotOurs { net: String, bridge: String },
    #[error("network {net}'s bridge {bridge} still has ports ({ports}): stop those VMs first, or `kvmnet net down --force {net}`")]
    Busy {
        net: String,
        bridge: String,
        ports: String,
    },
    #[error("cannot turn on {family} forwarding ({path}): {source}")]
    Forwarding {
        family: &'static str,
        path: &'static str,
        source: std::io::Error,
    },
    #[error("network {net} needs IPv6 forwarding, which would drop the default route this host learned from router advertisements on {ifaces} (accept_ra is 1 there): `sysctl -w net.ipv6.conf.{first}.accept_ra=2` (and in /etc/sysctl.d), or leave ipv6 out of network {net}")]
    RaRoutes {
        net: String,
        ifaces: String,
        first: String,
    },
    #[error("network {net} is not up (its bridge {bridge} does not exist): `kvmnet net up {net}` (or systemctl start kvmnet-net@{net})")]
    Down { net: String, bridge: String },
    #[error("{ip} is reserved for tap {other} on network {net} already; give tap {tap} another guest_ipv4")]
    Reserved {
        ip: Ipv4Addr,
        other: String,
        net: String,
        tap: String,
    },
    #[error("guest_ipv4 {ip} of tap {tap} is outside network {net}'s {subnet}/{prefix}")]
    Outside {
        ip: Ipv4Addr,
        tap: String,
        net: String,
        subnet: Ipv4Addr,
        prefix: u8,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |source| NetError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Marks what `up` creates ([`Made`]): written before the bridge is, so
/// that an `up` killed in between is finished by the next one, and `down`
/// deletes only a bridge the network made.
const MADE: &str = "made";
/// Serializes reservations on one network (root's, 0600).
const RESERVE_LOCK: &str = ".reserve.lock";
/// How many dnsmasq processes of one network `down` stops before it gives up.
const DNSMASQ_STOPS: usize = 4;

/// Whether `l` is the bridge `up` made for network `name`, whose
/// directory is `dir` (see [`Made`]).
pub fn is_its_bridge(name: &str, dir: &Path, l: &crate::link::Link) -> bool {
    Made::read(dir).is_some_and(|m| m.owns(l, name))
}

/// The alias `up` gives the network's bridge (for `ip link`, and to know it
/// again when `up` was killed before recording the bridge's index).
fn bridge_alias(net: &str) -> String {
    format!("kvmnet net {net}")
}

/// What `up` found and did, for its report.
#[derive(Debug, Default)]
pub struct UpReport {
    pub changed: Vec<String>,
    pub dnsmasq: i32,
}

/// Serializes `up` and `down` (systemd and a hand may race): a root-only
/// lock file that no `down` removes, so that no user can hold it and no
/// waiting holder loses it.
struct Lock {
    _held: nix::fcntl::Flock<fs::File>,
}

/// Locks `path`, a 0600 file of root's: an ordinary user can open neither
/// it nor (O_NOFOLLOW) a link planted in its place.
fn lock_file(path: &Path) -> Result<Lock, NetError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io(path))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| Lock { _held: held })
        .map_err(|(_, e)| NetError::Io {
            path: path.to_owned(),
            source: e.into(),
        })
}

fn lock() -> Result<Lock, NetError> {
    let base = Path::new(def::RUN_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(base)
        .map_err(io(base))?;
    lock_file(&base.join(".lock"))
}

/// What `up` made, as `up` made it: written before the bridge is created,
/// so that `down` removes that (whatever the config says by then), and an
/// `up` with other settings is refused instead of taking over a bridge.
///
/// The bridge's ifindex is added once it exists: from then on only that
/// bridge is the network's (one deleted and made again under the name by
/// someone else is not). Without it (`up` killed between creating the bridge
/// and recording it), a bridge of the name counts only without an alias or
/// with the network's: the kernel gives a new link none.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Made {
    bridge: String,
    addresses: String,
    index: Option<u32>,
}

impl Made {
    fn of(net: &Network) -> Made {
        Made {
            bridge: net.bridge.to_string(),
            addresses: addresses(net)
                .iter()
                .map(|(a, l)| format!("{a}/{l}"))
                .collect::<Vec<_>>()
                .join(" "),
            index: None,
        }
    }

    fn read(dir: &Path) -> Option<Made> {
        let text = fs::read_to_string(dir.join(MADE)).ok()?;
        let mut lines = text.lines();
        let bridge = lines.next()?.strip_prefix("bridge ")?.to_owned();
        let addresses = lines.next()?.strip_prefix("addresses ")?.to_owned();
        let index = match lines.next() {
            Some(l) => Some(l.strip_prefix("index ")?.parse().ok()?),
            None => None,
        };
        crate::name::validate(&bridge).ok()?;
        Some(Made {
            bridge,
            addresses,
            index,
        })
    }

    fn text(&self) -> String {
        let mut t = format!("bridge {}\naddresses {}\n", self.bridge, self.addresses);
        if let Some(i) = self.index {
            t.push_str(&format!("index {i}\n"));
        }
        t
    }

    /// Whether `l` is the bridge this record of network `net` made.
    fn owns(&self, l: &crate::link::Link, net: &str) -> bool {
        l.kind == LinkKind::Bridge
            && match self.index {
                Some(i) => l.index == i,
                None => l.alias.as_ref().is_none_or(|a| *a == bridge_alias(net)),
            }
    }

    fn same_network(&self, other: &Made) -> bool {
        self.bridge == other.bridge && self.addresses == other.addresses
    }
}

fn addresses(net: &Network) -> Vec<(IpAddr, u8)> {
    let mut a = vec![(IpAddr::V4(net.address), net.prefix)];
    a.extend(net.ipv6.map(|(x, l)| (IpAddr::V6(x), l)));
    a
}

pub fn up(net: &Network) -> Result<UpReport, NetError> {
    let _lock = lock()?;
    let nl = Netlink::open()?;
    // before anything is made: a refusal leaves nothing to undo
    if net.ipv6.is_some() && !sysctl::is_on(sysctl::forwarding_path(Family::V6)).unwrap_or(false) {
        ra_routes_survive(&nl, net)?;
    }
    let mut report = UpReport::default();
    let dir = net.dir();
    for d in [dir.clone(), net.hosts_dir()] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&d)
            .map_err(io(&d))?;
    }
    drop(lock_file(&dir.join(RESERVE_LOCK))?);
    let mut want = Made::of(net);
    let made = Made::read(&dir);
    if let Some(m) = made.as_ref().filter(|m| !m.same_network(&want)) {
        return Err(NetError::Changed {
            net: net.name.clone(),
            was: format!("bridge {}, {}", m.bridge, m.addresses),
            now: format!("bridge {}, {}", want.bridge, want.addresses),
        });
    }
    let alias = bridge_alias(&net.name);
    let not_ours = || NetError::NotOurs {
        net: net.name.clone(),
        bridge: net.bridge.to_string(),
    };
    let bridge = match (nl.link_by_name(&net.bridge)?, &made) {
        (Some(l), Some(m)) if m.owns(&l, &net.name) => l,
        (Some(_), _) => return Err(not_ours()),
        (None, _) => {
            // recorded before it exists: a kill right after the create
            // leaves a bridge the next `up` or `down` knows as the network's
            let record = dir.join(MADE);
            let before = fs::read(&record).ok();
            write_file(&record, want.text().as_bytes())?;
            let created = nl.create_bridge(&net.bridge, Mac::random_local(), false);
            if !matches!(created, Ok(true)) {
                // nothing made (someone took the name meanwhile: EEXIST is
                // `false`): the record goes back to what it was, so that the
                // next `up` does not adopt their bridge
                let _ = match &before {
                    Some(b) => write_file(&record, b),
                    None => fs::remove_file(&record).map_err(io(&record)),
                };
                return Err(match created {
                    Err(e) => e.into(),
                    Ok(_) => not_ours(),
                });
            }
            report
                .changed
                .push(format!("created bridge {}", net.bridge));
            nl.link_by_name(&net.bridge)?
                .filter(|l| l.kind == LinkKind::Bridge && l.alias.is_none())
                .ok_or_else(not_ours)?
        }
    };
    if made.as_ref().and_then(|m| m.index) != Some(bridge.index) {
        want.index = Some(bridge.index);
        write_file(&dir.join(MADE), want.text().as_bytes())?;
    }
    let change = crate::link::LinkChange {
        alias: (bridge.alias.as_deref() != Some(&alias)).then(|| alias.clone()),
        up: (!bridge.up).then_some(true),
        ..Default::default()
    };
    nl.set_link(bridge.index, &change, &format!("setting up {}", net.bridge))?;
    for (a, len) in addresses(net) {
        if nl.add_address(bridge.index, a, len, net.bridge.as_str())? {
            report.changed.push(format!("added {a}/{len}"));
        }
    }
    let mut families = vec![Family::V4];
    if net.ipv6.is_some() {
        families.push(Family::V6);
    }
    for f in families {
        let path = sysctl::forwarding_path(f);
        let on = sysctl::is_on(path).unwrap_or(false);
        if !on {
            sysctl::set(path, true).map_err(|source| NetError::Forwarding {
                family: f.name(),
                path,
                source,
            })?;
            report
                .changed
                .push(format!("turned on {} forwarding", f.name()));
        }
    }
    let spec = spec(net);
    spec.check().map_err(|reason| NetError::Spec {
        net: net.name.clone(),
        reason,
    })?;
    let mut nft = Nft::open()?;
    let had = nft::installed(&mut nft, &net.name)?.is_some();
    nft.apply(
        &format!("installing network {}'s NAT and forwarding rules", net.name),
        &nft::up_batch(&spec),
    )?;
    if !had {
        report.changed.push(format!(
            "installed table inet {}",
            nft::table_name(&net.name)
        ));
    }
    report.dnsmasq = match dnsmasq::running(net) {
        Some(pid) if dnsmasq::runs_as(pid, net) => {
            // `up` is also the reload: reservations removed since are
            // forgotten (kvmnet-ifdown cannot signal it)
            dnsmasq::reload(&dnsmasq::pid_file(net));
            pid
        }
        Some(pid) => {
            dnsmasq::stop(net, pid)?;
            let pid = dnsmasq::start(net)?;
            report.changed.push(format!(
                "restarted dnsmasq (pid {pid}): its settings changed"
            ));
            pid
        }
        None => {
            let pid = dnsmasq::start(net)?;
            report.changed.push(format!("started dnsmasq (pid {pid})"));
            pid
        }
    };
    Ok(report)
}

/// Refuses to turn IPv6 forwarding on while a default route learned from
/// router advertisements goes out of an interface with `accept_ra` 1: the
/// kernel drops the routes it learned there the moment forwarding goes on,
/// and a host reached over IPv6 would be cut off (libvirt refuses the same
/// way). With `accept_ra` 0 the kernel learned none: a `proto ra` route there
/// is a network manager's (NetworkManager, systemd-networkd handle RAs
/// themselves), which forwarding leaves alone; with 2 the kernel keeps its
/// own.
fn ra_routes_survive(nl: &Netlink, net: &Network) -> Result<(), NetError> {
    let mut at_risk = Vec::new();
    for oif in nl.ra_default_oifs()? {
        let Some(link) = nl.link_by_index(oif)? else {
            continue;
        };
        let drops = crate::name::IfaceName::new(&link.name)
            .is_ok_and(|dev| matches!(sysctl::accept_ra(&dev), Ok(1)));
        if drops && !at_risk.contains(&link.name) {
            at_risk.push(link.name);
        }
    }
    match at_risk.first() {
        None => Ok(()),
        Some(first) => Err(NetError::RaRoutes {
            net: net.name.clone(),
            ifaces: at_risk.join(", "),
            // sysctl(8) reads '.' as a separator: eth0.100 is eth0/100
            first: first.replace('.', "/"),
        }),
    }
}

fn spec(net: &Network) -> nft::NatSpec<'_> {
    nft::NatSpec {
        network: &net.name,
        bridge: net.bridge.as_str(),
        v4: (net.subnet(), net.prefix),
        v6: net.ipv6_prefix(),
        nat: net.nat,
        uplink: net.uplink.as_deref(),
    }
}

/// Removes what `up` made — from the record `up` left, not from the config,
/// which may have changed or lost the network since: dnsmasq, the table,
/// the bridge, the directory. Forwarding stays on: other things on the host
/// may rely on it by now (libvirt leaves it on too).
pub fn down(name: &str, force: bool) -> Result<Vec<String>, NetError> {
    def::check_name(name).map_err(|reason| NetError::Spec {
        net: name.to_owned(),
        reason,
    })?;
    let _lock = lock()?;
    let mut done = Vec::new();
    let nl = Netlink::open()?;
    let dir = Path::new(def::RUN_DIR).join(name);
    // a bridge of that name that is not the one `up` made stays
    let bridge = match Made::read(&dir) {
        Some(m) => {
            let b = crate::name::IfaceName::new(&m.bridge).ok();
            b.map(|b| nl.link_by_name(&b))
                .transpose()?
                .flatten()
                .filter(|l| m.owns(l, name))
        }
        None => None,
    };
    if let (Some(b), false) = (&bridge, force) {
        let ports = nl.ports_of(b.index)?;
        if !ports.is_empty() {
            let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
            return Err(NetError::Busy {
                net: name.to_owned(),
                bridge: b.name.clone(),
                ports: names.join(", "),
            });
        }
    }
    let pid_file = dir.join("dnsmasq.pid");
    // More than one only when an `up` was killed after starting one; a
    // bound, so that something restarting it cannot keep `down` (and the
    // lock every network's up and down waits for) forever.
    for _ in 0..DNSMASQ_STOPS {
        let Some(pid) = dnsmasq::running_at(&pid_file) else {
            break;
        };
        dnsmasq::stop_pid(name, &pid_file, pid)?;
        done.push(format!("stopped dnsmasq (pid {pid})"));
    }
    if let Some(pid) = dnsmasq::running_at(&pid_file) {
        return Err(DnsmasqError::Respawned {
            net: name.to_owned(),
            pid,
        }
        .into());
    }
    let mut nft = Nft::open()?;
    if let Some(t) = nft::installed(&mut nft, name)? {
        nft.apply(
            &format!("removing network {name}'s rules"),
            &nft::down_batch(name, Some(t.handle)),
        )?;
        done.push(format!("removed table inet {}", t.name));
    }
    if let Some(b) = bridge {
        nl.delete_link(b.index, &format!("deleting bridge {}", b.name))?;
        done.push(format!("deleted bridge {}", b.name));
    }
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&dir)(e)),
        _ => {}
    }
    Ok(done)
}

/// One network's state, for `kvmnet net list`.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub name: String,
    pub bridge: String,
    pub ipv4: String,
    pub ipv6: Option<String>,
    pub nat: bool,
    /// "up", "down", or "partial: …" (what is missing).
    pub state: String,
    pub dnsmasq: Option<i32>,
    pub leases: usize,
}

pub fn list(networks: &[Network]) -> Result<Vec<Listed>, NetError> {
    let nl = Netlink::open()?;
    let mut nft = Nft::open().ok();
    let mut out = Vec::new();
    for n in networks {
        // an interface of the bridge's name that `up` did not make is not
        // the network's bridge, whatever it is
        let link = nl.link_by_name(&n.bridge)?;
        let ours = link
            .as_ref()
            .is_some_and(|l| is_its_bridge(&n.name, &n.dir(), l));
        let foreign = link.is_some() && !ours;
        let bridge = link.filter(|_| ours);
        let table = match nft.as_mut() {
            Some(nft) => nft::installed(nft, &n.name).ok().map(|t| t.is_some()),
            None => None,
        };
        let pid = dnsmasq::running(n);
        let mut missing = Vec::new();
        let not_ours = format!("bridge ({} is another interface)", n.bridge);
        if foreign {
            missing.push(not_ours.as_str());
        } else if bridge.as_ref().is_none_or(|b| !b.up) {
            missing.push("bridge");
        }
        if table == Some(false) {
            missing.push("rules");
        }
        if pid.is_none() {
            missing.push("dnsmasq");
        }
        let state = match missing.len() {
            0 => "up".to_owned(),
            k if k == 3 || (k == 2 && table.is_none()) => match foreign {
                false => "down".to_owned(),
                true => format!(
                    "down; {} is another interface, which kvmnet net up refuses",
                    n.bridge
                ),
            },
            _ => format!("partial: no {}", missing.join(", no ")),
        };
        out.push(Listed {
            name: n.name.clone(),
            bridge: n.bridge.to_string(),
            ipv4: format!("{}/{}", n.address, n.prefix),
            ipv6: n.ipv6.map(|(a, l)| format!("{a}/{l}")),
            nat: n.nat,
            state,
            dnsmasq: pid,
            leases: if pid.is_some() {
                dnsmasq::leases(n).len()
            } else {
                0
            },
        });
    }
    // Networks `up` made that the config no longer has: only `down` can
    // take them away now, which works from their record.
    let mut orphans: Vec<(String, Made)> = fs::read_dir(def::RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| {
            let name = d.file_name().to_str()?.to_owned();
            def::check_name(&name).ok()?;
            let made = Made::read(&d.path())?;
            networks
                .iter()
                .all(|n| n.name != name)
                .then_some((name, made))
        })
        .collect();
    orphans.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, made) in orphans {
        let pid = dnsmasq::running_at(&Path::new(def::RUN_DIR).join(&name).join("dnsmasq.pid"));
        let mut addrs = made.addresses.split(' ');
        out.push(Listed {
            state: format!("orphaned: not in the config any more; kvmnet net down {name}"),
            bridge: made.bridge,
            ipv4: addrs.next().unwrap_or_default().to_owned(),
            ipv6: addrs.next().map(str::to_owned),
            nat: false,
            name,
            dnsmasq: pid,
            leases: 0,
        });
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    // a new name, then rename: a reader (dnsmasq) never sees half a file.
    // No tap name holds '~', and dnsmasq skips such names (editor backups).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push("~");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io(path))
}

/// The fixed address a tap's rule gives its guest on its network: its
/// first `guest_mac` and a `guest_ipv4` of one address.
pub fn reservation(settings: &Settings, tap: &str) -> Option<(Mac, Ipv4Addr)> {
    settings.network.as_ref()?;
    let mac = settings.guest_mac.first()?.for_tap(tap);
    let v4 = settings.guest_ipv4.as_ref()?;
    match v4.as_slice() {
        [p] if p.len == 32 => match p.addr {
            IpAddr::V4(a) => Some((mac, a)),
            IpAddr::V6(_) => None,
        },
        _ => None,
    }
}

/// A reservation this run wrote, and what the file held before: an undo
/// puts that back (a running guest's reservation, rewritten by an ifup
/// that was then refused, stays its own).
#[derive(Debug)]
pub struct Reserved {
    path: PathBuf,
    lock: PathBuf,
    previous: Option<String>,
}

impl Reserved {
    /// Undoes the [`reserve`] that returned it, under the network's reserve
    /// lock: the old reservation comes back unless another tap took its
    /// address meanwhile (then the file goes: never one address twice).
    pub fn undo(self) {
        let Ok(_held) = lock_file(&self.lock) else {
            let _ = fs::remove_file(&self.path);
            return;
        };
        let tap = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let restore = self.previous.filter(|p| {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            matches!(holder_of(dir, reserved_ip(p), tap), Ok(None))
        });
        let _ = match restore {
            Some(text) => write_file(&self.path, text.as_bytes()),
            None => fs::remove_file(&self.path).map_err(io(&self.path)),
        };
    }
}

/// The address of a reservation file's `MAC,IP` line.
fn reserved_ip(text: &str) -> &str {
    text.trim().rsplit(',').next().unwrap_or("")
}

/// The tap (other than `tap`) whose reservation in `dir` holds `ip`.
fn holder_of(dir: &Path, ip: &str, tap: &str) -> std::io::Result<Option<String>> {
    Ok(fs::read_dir(dir)?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == tap || name.starts_with('.') || name.ends_with('~') {
            return None;
        }
        let held = fs::read_to_string(e.path()).unwrap_or_default();
        (reserved_ip(&held) == ip).then_some(name)
    }))
}

/// Adds the reservation of `tap` to the network's hosts directory (dnsmasq
/// reads a new file there by itself). Refused when the network is not up or
/// another tap holds the address. Returns what an undo needs when this run
/// changed the file (`None`: it held this reservation already).
pub fn reserve(
    net: &Network,
    tap: &crate::name::TapName,
    mac: Mac,
    ip: Ipv4Addr,
) -> Result<Option<Reserved>, NetError> {
    if !net.contains(ip) {
        return Err(NetError::Outside {
            ip,
            tap: tap.to_string(),
            net: net.name.clone(),
            subnet: net.subnet(),
            prefix: net.prefix,
        });
    }
    if tap.as_str().starts_with('.') {
        return Err(NetError::Hidden {
            tap: tap.to_string(),
            net: net.name.clone(),
        });
    }
    let dir = net.hosts_dir();
    if !dir.is_dir() {
        return Err(NetError::Down {
            net: net.name.clone(),
            bridge: net.bridge.to_string(),
        });
    }
    let want = format!("{mac},{ip}\n");
    // One reservation at a time per network: two taps asking for one address
    // at once must not both find it free.
    let lock = net.dir().join(RESERVE_LOCK);
    let _held = lock_file(&lock)?;
    if let Some(other) = holder_of(&dir, &ip.to_string(), tap.as_str()).map_err(io(&dir))? {
        return Err(NetError::Reserved {
            ip,
            other,
            net: net.name.clone(),
            tap: tap.to_string(),
        });
    }
    let path = dir.join(tap.as_str());
    let previous = match fs::read_to_string(&path) {
        Ok(b) if b == want => return Ok(None),
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&path)(e)),
    };
    write_file(&path, want.as_bytes())?;
    Ok(Some(Reserved {
        path,
        lock,
        previous,
    }))
}

/// Removes `tap`'s reservation from whichever network holds one
/// (kvmnet-ifdown: it reads no config for this). Returns the networks.
///
/// dnsmasq keeps a removed entry until it is told to re-read, which only
/// root's `kvmnet net up` may do (it runs as its own user): the same tap
/// gets the same MAC and address again meanwhile, and a new address for
/// another guest takes effect at the next `kvmnet net up`.
pub fn release(tap: &crate::name::TapName) -> Vec<String> {
    let Ok(dirs) = fs::read_dir(def::RUN_DIR) else {
        return Vec::new();
    };
    let mut from = Vec::new();
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if def::check_name(&name).is_err() {
            continue;
        }
        if fs::remove_file(d.path().join("hosts.d").join(tap.as_str())).is_ok() {
            from.push(name);
        }
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run refused after rewriting a reservation puts the old one back,
    /// unless another tap took that address meanwhile: then the file goes.
    #[test]
    fn an_undone_reservation_comes_back_unless_its_address_was_taken() {
        let dir = std::env::temp_dir().join(format!("kvmnet-reserved-{}", std::process::id()));
        let hosts = dir.join("hosts.d");
        fs::create_dir_all(&hosts).unwrap();
        let undo = |previous: &str| {
            fs::write(hosts.join("t"), "52:54:00:00:00:01,10.0.0.9\n").unwrap();
            Reserved {
                path: hosts.join("t"),
                lock: dir.join(RESERVE_LOCK),
                previous: Some(previous.to_owned()),
            }
            .undo();
        };
        undo("52:54:00:00:00:01,10.0.0.5\n");
        assert_eq!(
            fs::read_to_string(hosts.join("t")).unwrap(),
            "52:54:00:00:00:01,10.0.0.5\n"
        );
        fs::write(hosts.join("u"), "52:54:00:00:00:02,10.0.0.5\n").unwrap();
        undo("52:54:00:00:00:01,10.0.0.5\n");
        assert!(!hosts.join("t").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
