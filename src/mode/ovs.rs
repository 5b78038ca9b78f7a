//! The Open vSwitch mode (`mode = "ovs"`): the tap becomes a port of an OVS
//! bridge, added in one OVSDB transaction over ovsdb-server's socket (what
//! libvirt does with `ovs-vsctl --may-exist add-port … -- set Interface …`),
//! with the `external_ids` OVN binds logical ports by. Then kvmnet waits,
//! bounded, until ovs-vswitchd has given the port an OpenFlow port number.
//!
//! A port kvmnet adds carries `kvmnet-owner` (the tap owner's uid) in the
//! Port's `external_ids` and `kvmnet-managed` in the Interface's: that is
//! how kvmnet knows its own ports (it never replaces or removes another
//! tool's) and counts a user's share of a bridge. A port whose tap vanished
//! without a downscript (QEMU killed) stays in the database with
//! `ofport = -1`; every OVS attach and detach collects such ports of
//! kvmnet's whose tap no longer exists.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::access;
use crate::config::Config;
use crate::error::Error;
use crate::link::{Link, LinkKind};
use crate::mac::Mac;
use crate::name::IfaceName;
use crate::netlink::Netlink;
use crate::ovsdb::{self, Ovsdb, OvsdbError};
use crate::plan::{Attach, Wanted};
use crate::settings::{HostMac, MtuPolicy, Settings, VlanRange};

use super::{ForTap, Mode};

/// Port `external_ids` key: the uid owning the tap.
pub const OWNER_KEY: &str = "kvmnet-owner";
/// Interface `external_ids` pair marking kvmnet's ports, for the collection
/// of those whose tap is gone.
const MANAGED: (&str, &str) = ("kvmnet-managed", "true");

#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    #[error(transparent)]
    Db(#[from] OvsdbError),
    #[error("Open vSwitch bridge {bridge} does not exist (ovsdb-server at {db}); create it (`ovs-vsctl add-br {bridge}`) or configure an existing one")]
    BridgeMissing { bridge: String, db: PathBuf },
    #[error("tap {tap} is already a port of Open vSwitch bridge {bridge} that kvmnet did not add; kvmnet does not take it over: remove it (`ovs-vsctl del-port {bridge} {tap}`) or leave the tap to the tool that added it")]
    NotOurs { tap: String, bridge: String },
    #[error("tap {tap} is already a port of another Open vSwitch bridge{}; kvmnet does not move it: `ovs-vsctl del-port {tap}` first", .other.as_deref().map(|b| format!(" ({b})")).unwrap_or_default())]
    Elsewhere { tap: String, other: Option<String> },
    #[error("Open vSwitch could not use tap {tap} on bridge {bridge}: {error}; the port was removed again")]
    NoOfport {
        tap: String,
        bridge: String,
        error: String,
    },
    #[error("ovs-vswitchd did not take tap {tap} on bridge {bridge} within {secs} s (ovs_timeout); check that ovs-vswitchd runs (`ovs-appctl version`) and its log; the port was removed again")]
    NotTaken {
        tap: String,
        bridge: String,
        secs: u64,
    },
    #[error("the Open vSwitch port of tap {tap} changed while kvmnet was adding it (another tool or a concurrent run); start the VM again")]
    Raced { tap: String },
    #[error("an Open vSwitch interface named {tap} already exists in a port kvmnet did not add (a bond?); kvmnet does not take it over: `ovs-vsctl show` tells which")]
    InterfaceTaken { tap: String },
    #[error("OVN logical port {iface_id} (ovs_iface_id) is already claimed on this host by Open vSwitch interface {other}; two interfaces claiming one logical port fight over its binding: stop the VM of {other} (kvmnet-ifdown {other}) or give this tap another name")]
    IfaceIdTaken { iface_id: String, other: String },
}

/// What one OVS port is made of: the pure input of [`add_ops`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub bridge: String,
    pub tap: String,
    /// `external_ids:iface-id`: the OVN logical port.
    pub iface_id: String,
    /// `external_ids:attached-mac`: the guest's MAC, when the config names
    /// it (`guest_mac`).
    pub attached_mac: Option<Mac>,
    pub owner: u32,
    /// `mtu_request`: what OVS keeps the tap's MTU at.
    pub mtu: Option<u32>,
    pub vlan: Option<u16>,
    pub trunk: Vec<VlanRange>,
    /// A port of kvmnet's under this name on this bridge (an interrupted or
    /// earlier run's), replaced in the same transaction.
    pub replaces: Option<String>,
}

/// Operation indexes of [`add_ops`], for mapping a refused `wait` and
/// reading the inserted rows' uuids.
const OP_BRIDGE: usize = 1;
const OP_PORT: usize = 2;
const OP_INSERT_PORT: usize = 5;

/// The one transaction that adds the port: preconditions as `wait`
/// operations (the bridge exists; the name is free, or still holds the
/// port being replaced), then Interface, Port and the Bridge's reference.
pub fn add_ops(s: &PortSpec) -> Vec<Value> {
    let name_is = |n: &str| json!([["name", "==", n]]);
    let owner = s.owner.to_string();
    let mac = s.attached_mac.map(|m| m.to_string());
    let mut iface_ids = vec![
        ("iface-id", s.iface_id.as_str()),
        ("iface-status", "active"),
        MANAGED,
    ];
    if let Some(m) = &mac {
        iface_ids.push(("attached-mac", m));
    }
    let mut iface = json!({
        "name": s.tap,
        "external_ids": ovsdb::map(iface_ids),
    });
    if let Some(mtu) = s.mtu {
        iface["mtu_request"] = json!(mtu);
    }
    let mut port = json!({
        "name": s.tap,
        "interfaces": ["named-uuid", "iface"],
        "external_ids": ovsdb::map([(OWNER_KEY, owner.as_str())]),
    });
    let trunks: Vec<Value> = s
        .trunk
        .iter()
        .flat_map(|r| r.first..=r.last)
        .map(|v| json!(v))
        .collect();
    let mode = match (s.vlan, trunks.is_empty()) {
        (Some(_), true) => Some("access"),
        (Some(_), false) => Some("native-untagged"),
        (None, false) => Some("trunk"),
        (None, true) => None,
    };
    if let Some(v) = s.vlan {
        port["tag"] = json!(v);
    }
    if !trunks.is_empty() {
        port["trunks"] = ovsdb::set(trunks);
    }
    if let Some(m) = mode {
        port["vlan_mode"] = json!(m);
    }
    let mut ops = vec![
        json!({"op": "comment", "comment": format!("kvmnet-ifup: add-port {} {}", s.bridge, s.tap)}),
        json!({"op": "wait", "timeout": 0, "table": "Bridge", "where": name_is(&s.bridge),
               "columns": ["name"], "until": "==", "rows": [{"name": s.bridge}]}),
    ];
    match &s.replaces {
        None => ops.extend([
            json!({"op": "wait", "timeout": 0, "table": "Port", "where": name_is(&s.tap),
                   "columns": ["name"], "until": "==", "rows": []}),
            json!({"op": "wait", "timeout": 0, "table": "Interface", "where": name_is(&s.tap),
                   "columns": ["name"], "until": "==", "rows": []}),
        ]),
        Some(uuid) => ops.extend([
            json!({"op": "wait", "timeout": 0, "table": "Port",
                   "where": [["_uuid", "==", ["uuid", uuid]], ["name", "==", s.tap]],
                   "columns": ["name"], "until": "==", "rows": [{"name": s.tap}]}),
            json!({"op": "mutate", "table": "Bridge", "where": name_is(&s.bridge),
                   "mutations": [["ports", "delete", ovsdb::set(vec![json!(["uuid", uuid])])]]}),
        ]),
    }
    ops.extend([
        json!({"op": "insert", "table": "Interface", "uuid-name": "iface", "row": iface}),
        json!({"op": "insert", "table": "Port", "uuid-name": "port", "row": port}),
        json!({"op": "mutate", "table": "Bridge", "where": name_is(&s.bridge),
               "mutations": [["ports", "insert", ovsdb::set(vec![json!(["named-uuid", "port"])])]]}),
    ]);
    ops
}

/// What the database holds about one tap name and its bridge, read before
/// any change.
#[derive(Debug, Default)]
struct Found {
    bridge: bool,
    /// The port named like the tap: its uuid, whether it is on the bridge,
    /// whether kvmnet added it.
    port: Option<(String, bool, bool)>,
    /// The names of the bridge's ports kvmnet added for `owner`.
    owned: Vec<String>,
    /// An interface named like the tap exists (in whatever port).
    interface: bool,
    /// Another interface that claims the same OVN logical port.
    iface_id_claimed_by: Option<String>,
}

fn look(
    db: &mut Ovsdb,
    bridge: &str,
    tap: &str,
    iface_id: &str,
    owner: Option<u32>,
) -> Result<Found, OvsError> {
    let mut ops = vec![
        json!({"op": "select", "table": "Bridge", "where": [["name", "==", bridge]],
               "columns": ["ports"]}),
        json!({"op": "select", "table": "Port", "where": [["name", "==", tap]],
               "columns": ["_uuid", "external_ids"]}),
        json!({"op": "select", "table": "Interface", "where": [["name", "==", tap]],
               "columns": ["_uuid"]}),
        json!({"op": "select", "table": "Interface",
               "where": [["external_ids", "includes", ovsdb::map([("iface-id", iface_id)])],
                         ["name", "!=", tap]],
               "columns": ["name"]}),
    ];
    if let Some(uid) = owner {
        ops.push(json!({"op": "select", "table": "Port",
            "where": [["external_ids", "includes", ovsdb::map([(OWNER_KEY, uid.to_string().as_str())])]],
            "columns": ["_uuid", "name"]}));
    }
    let r = db.transact(ops)?;
    let bridge_row = ovsdb::rows(&r[0]).first();
    let ports: Vec<&str> = bridge_row
        .map(|b| ovsdb::members(&b["ports"]))
        .unwrap_or_default()
        .into_iter()
        .filter_map(ovsdb::uuid_of)
        .collect();
    let port = ovsdb::rows(&r[1]).first().and_then(|p| {
        let uuid = ovsdb::uuid_of(&p["_uuid"])?;
        Some((
            uuid.to_owned(),
            ports.contains(&uuid),
            ovsdb::map_get(&p["external_ids"], OWNER_KEY).is_some(),
        ))
    });
    let owned = r
        .get(4)
        .map(ovsdb::rows)
        .unwrap_or_default()
        .iter()
        .filter(|p| ovsdb::uuid_of(&p["_uuid"]).is_some_and(|u| ports.contains(&u)))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    Ok(Found {
        bridge: bridge_row.is_some(),
        port,
        owned,
        interface: !ovsdb::rows(&r[2]).is_empty(),
        iface_id_claimed_by: ovsdb::rows(&r[3])
            .first()
            .and_then(|i| i["name"].as_str())
            .map(str::to_owned),
    })
}

/// An OVS port, with its bridge found and every precondition checked.
pub struct OvsPort {
    settings: Settings,
    spec: PortSpec,
    db_path: PathBuf,
    timeout: Duration,
    db: RefCell<Option<Ovsdb>>,
    /// The kernel datapath device the tap is a port of already.
    datapath: Option<u32>,
    pub acl: String,
    notes: RefCell<Vec<String>>,
    /// The Port row this run's transaction inserted: what an undo removes,
    /// and nothing else (another run's port under the tap's name is not
    /// this run's to remove).
    added: RefCell<Option<String>>,
}

impl OvsPort {
    pub fn for_ifup(
        nl: &Netlink,
        config: &Config,
        settings: Settings,
        tap: &ForTap<'_>,
        owner: u32,
    ) -> Result<OvsPort, Error> {
        let bridge = settings
            .bridge
            .clone()
            .expect("the config refuses mode = \"ovs\" without a bridge");
        let who = tap.who;
        let acl = match who {
            Some(who) => {
                access::check_bridge(who, &config.acl, tap.name.as_str(), bridge.as_str())?
            }
            None => "root".into(),
        };
        let iface_id = settings.iface_id(tap.name.as_str());
        let mut db = Ovsdb::connect(&config.ovs_db, config.ovs_timeout).map_err(OvsError::from)?;
        let found = look(
            &mut db,
            bridge.as_str(),
            tap.name.as_str(),
            &iface_id,
            who.map(|w| w.uid),
        )?;
        if !found.bridge {
            return Err(OvsError::BridgeMissing {
                bridge: bridge.to_string(),
                db: config.ovs_db.clone(),
            }
            .into());
        }
        let replaces = match &found.port {
            None => None,
            Some((uuid, true, true)) => Some(uuid.clone()),
            Some((_, true, false)) => {
                return Err(OvsError::NotOurs {
                    tap: tap.name.to_string(),
                    bridge: bridge.to_string(),
                }
                .into())
            }
            Some((_, false, _)) => {
                return Err(OvsError::Elsewhere {
                    tap: tap.name.to_string(),
                    other: None,
                }
                .into())
            }
        };
        if replaces.is_none() && found.interface {
            return Err(OvsError::InterfaceTaken {
                tap: tap.name.to_string(),
            }
            .into());
        }
        // Any caller: on one host a logical port is one interface's, and a
        // sudo user must not take over another VM's by naming a tap.
        if let Some(other) = found.iface_id_claimed_by {
            return Err(OvsError::IfaceIdTaken { iface_id, other }.into());
        }
        // A user's share of the bridge: their live taps among the ports
        // kvmnet added for them (a port whose tap is gone does not count),
        // this tap aside: a port of kvmnet's it replaces may have been
        // another user's.
        if let Some(who) = who {
            let mut live = Vec::new();
            for name in found.owned.iter().filter(|n| *n != tap.name.as_str()) {
                if let Ok(n) = IfaceName::new(name) {
                    live.extend(nl.link_by_name(&n)?);
                }
            }
            access::check_port_quota(who, &live, bridge.as_str(), config.max_ports_per_user)?;
        }
        // The bridge's own interface sets the MTU, as for a Linux bridge.
        let bridge_mtu = match IfaceName::new(bridge.as_str()) {
            Ok(n) => nl.link_by_name(&n)?.map(|l| l.mtu),
            Err(_) => None,
        };
        let mtu = match settings.mtu {
            MtuPolicy::Bridge => bridge_mtu,
            MtuPolicy::Fixed(n) => Some(n),
        };
        // On the kernel datapath a port's master is the datapath device.
        let datapath = match tap.existing.and_then(|t| t.master) {
            Some(m) => nl
                .link_by_index(m)?
                .filter(|l| matches!(&l.kind, LinkKind::Other(k) if k == "openvswitch"))
                .map(|l| l.index),
            None => None,
        };
        let spec = PortSpec {
            bridge: bridge.to_string(),
            tap: tap.name.to_string(),
            iface_id,
            attached_mac: settings
                .guest_mac
                .first()
                .map(|m| m.for_tap(tap.name.as_str())),
            owner,
            mtu,
            vlan: settings.vlan,
            trunk: settings.trunk.clone(),
            replaces,
        };
        Ok(OvsPort {
            settings,
            spec,
            db_path: config.ovs_db.clone(),
            timeout: config.ovs_timeout,
            db: RefCell::new(Some(db)),
            datapath,
            acl,
            notes: RefCell::new(Vec::new()),
            added: RefCell::new(None),
        })
    }

    fn with_db<T>(&self, f: impl FnOnce(&mut Ovsdb) -> Result<T, OvsError>) -> Result<T, OvsError> {
        let mut slot = self.db.borrow_mut();
        let db = match slot.as_mut() {
            Some(db) => db,
            None => slot.insert(Ovsdb::connect(&self.db_path, self.timeout)?),
        };
        let r = f(db);
        if matches!(r, Err(OvsError::Db(_))) {
            // a connection in an unknown state is not used again
            *slot = None;
        }
        r
    }

    /// Adds the port and waits for its OpenFlow port number.
    fn add(&self, nl: &Netlink) -> Result<(), OvsError> {
        let s = &self.spec;
        self.with_db(|db| {
            let r = db.transact(add_ops(s)).map_err(|e| match e.refused_at() {
                Some(OP_BRIDGE) => OvsError::BridgeMissing {
                    bridge: s.bridge.clone(),
                    db: self.db_path.clone(),
                },
                Some(i) if i > OP_BRIDGE && i <= OP_PORT + 1 => {
                    OvsError::Raced { tap: s.tap.clone() }
                }
                _ => e.into(),
            })?;
            *self.added.borrow_mut() = r
                .get(OP_INSERT_PORT)
                .and_then(|i| ovsdb::uuid_of(&i["uuid"]))
                .map(str::to_owned);
            let stale = wait_for_ofport(db, s, self.timeout)?;
            let gone = collect(db, nl, &stale);
            if !gone.is_empty() {
                self.notes.borrow_mut().push(format!(
                    "removed Open vSwitch ports of vanished taps: {}",
                    gone.join(",")
                ));
            }
            Ok(())
        })
    }
}

impl OvsPort {
    fn remove_added(&self) {
        let Some(uuid) = self.added.borrow_mut().take() else {
            return;
        };
        let s = &self.spec;
        let _ = self.with_db(|db| remove_pinned(db, &s.tap, &uuid, Some(&s.bridge), None));
    }
}

/// Waits (in the server: one `wait` operation, no polling) until
/// ovs-vswitchd has set the interface's `ofport`; an `ofport` of -1 is
/// OVS's refusal, said with its own `error` text. Returns kvmnet's
/// interfaces that OVS has lost.
fn wait_for_ofport(
    db: &mut Ovsdb,
    s: &PortSpec,
    timeout: Duration,
) -> Result<Vec<Stale>, OvsError> {
    let name_is = json!([["name", "==", s.tap]]);
    // Ask the server to give up a little before the socket does, so that
    // its answer (not a timeout) says what happened.
    let wait_ms = db.remaining_ms().saturating_sub(100);
    let r = db.transact(vec![
        json!({"op": "wait", "timeout": wait_ms, "table": "Interface", "where": name_is,
               "columns": ["ofport"], "until": "!=", "rows": [{"ofport": ovsdb::set(vec![])}]}),
        json!({"op": "select", "table": "Interface", "where": name_is, "columns": ["ofport", "error"]}),
    ]
    .into_iter()
    .chain(stale_selects())
    .collect());
    let r = match r {
        Ok(r) => r,
        Err(e) if e.refused_at() == Some(0) => {
            return Err(OvsError::NotTaken {
                tap: s.tap.clone(),
                bridge: s.bridge.clone(),
                secs: timeout.as_secs(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    // No row: the port went away meanwhile (the wait above is true then
    // too), which is no success.
    let Some(row) = ovsdb::rows(&r[1]).first().cloned() else {
        return Err(OvsError::Raced { tap: s.tap.clone() });
    };
    if row["ofport"].as_i64() == Some(-1) {
        let error = match &row["error"] {
            Value::String(e) => e.clone(),
            _ => "ofport -1 without an error text".into(),
        };
        return Err(OvsError::NoOfport {
            tap: s.tap.clone(),
            bridge: s.bridge.clone(),
            error,
        });
    }
    let mut stale = stale_of(&r[2..]);
    stale.retain(|x| x.name != s.tap);
    Ok(stale)
}

/// kvmnet's interfaces whose device OVS has lost: `ofport` -1 (it could
/// not open it) or `ifindex` 0 (it had it, and it went away; the userspace
/// datapath keeps such a port's `ofport`). Candidates only: the tap may be
/// back by now, which [`collect`] checks.
const STALE: [(&str, i64); 2] = [("ofport", -1), ("ifindex", 0)];

fn stale_selects() -> Vec<Value> {
    STALE
        .iter()
        .map(|(column, value)| {
            json!({"op": "select", "table": "Interface",
                   "where": [["external_ids", "includes", ovsdb::map([MANAGED])], [column, "==", value]],
                   "columns": ["_uuid", "name"]})
        })
        .collect()
}

/// One interface of kvmnet's that OVS has lost, as it was when read: a
/// removal holds it to that state, so that a port whose tap came back
/// meanwhile (and that OVS opened again) stays.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stale {
    name: String,
    iface: String,
    column: &'static str,
    value: i64,
}

/// The results of [`stale_selects`], in their order.
fn stale_of(results: &[Value]) -> Vec<Stale> {
    let mut out: Vec<Stale> = Vec::new();
    for (r, (column, value)) in results.iter().zip(STALE) {
        for i in ovsdb::rows(r) {
            let (Some(name), Some(iface)) = (i["name"].as_str(), ovsdb::uuid_of(&i["_uuid"]))
            else {
                continue;
            };
            if out.iter().all(|s| s.iface != iface) {
                out.push(Stale {
                    name: name.to_owned(),
                    iface: iface.to_owned(),
                    column,
                    value,
                });
            }
        }
    }
    out
}

/// Removes kvmnet's port named `tap` (from `bridge` only, when given): the
/// port is checked and removed in one transaction, so a port someone else
/// put under that name meanwhile is left. Returns whether one was removed.
pub fn remove_port(db: &mut Ovsdb, tap: &str, bridge: Option<&str>) -> Result<bool, OvsError> {
    let r = db.transact(vec![json!({"op": "select", "table": "Port",
        "where": [["name", "==", tap]], "columns": ["_uuid", "external_ids"]})])?;
    let Some(port) = ovsdb::rows(&r[0]).first() else {
        return Ok(false);
    };
    if ovsdb::map_get(&port["external_ids"], OWNER_KEY).is_none() {
        return Ok(false);
    }
    let Some(uuid) = ovsdb::uuid_of(&port["_uuid"]) else {
        return Ok(false);
    };
    remove_pinned(db, tap, uuid, bridge, None)
}

/// Removes the Port row `uuid`, named `tap`, from `bridge` (any bridge
/// holding it, when `None`), if it is still that row under that name and,
/// with `also`, the interface still matches that `wait`; all in one
/// transaction. The database drops the unreferenced Port and Interface.
fn remove_pinned(
    db: &mut Ovsdb,
    tap: &str,
    uuid: &str,
    bridge: Option<&str>,
    also: Option<Value>,
) -> Result<bool, OvsError> {
    let mut which = vec![json!(["ports", "includes", ["uuid", uuid]])];
    if let Some(b) = bridge {
        which.push(json!(["name", "==", b]));
    }
    let mut ops = vec![
        json!({"op": "comment", "comment": format!("kvmnet: del-port {tap}")}),
        json!({"op": "wait", "timeout": 0, "table": "Port",
               "where": [["_uuid", "==", ["uuid", uuid]], ["name", "==", tap]],
               "columns": ["name"], "until": "==", "rows": [{"name": tap}]}),
    ];
    ops.extend(also);
    let mutate = ops.len();
    ops.push(json!({"op": "mutate", "table": "Bridge", "where": which,
           "mutations": [["ports", "delete", ovsdb::set(vec![json!(["uuid", uuid])])]]}));
    match db.transact(ops) {
        // the bridges matched: only one that held the port is a removal
        Ok(r) => Ok(r[mutate]["count"].as_u64().unwrap_or(0) > 0),
        // gone, renamed or back in use meanwhile: nothing of ours to remove
        Err(e) if e.refused_at().is_some_and(|i| i > 0 && i < mutate) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Removes kvmnet's ports among `stale` whose tap no longer exists; for the
/// log line. Another tap's leftovers never fail this tap's run.
fn collect(db: &mut Ovsdb, nl: &Netlink, stale: &[Stale]) -> Vec<String> {
    let mut gone = Vec::new();
    for s in stale.iter().take(64) {
        let Ok(n) = IfaceName::new(&s.name) else {
            continue;
        };
        if !matches!(nl.link_by_name(&n), Ok(None)) {
            continue;
        }
        if let Ok(true) = remove_stale(db, s) {
            gone.push(s.name.clone());
        }
    }
    gone
}

fn remove_stale(db: &mut Ovsdb, s: &Stale) -> Result<bool, OvsError> {
    let r = db.transact(vec![json!({"op": "select", "table": "Port",
        "where": [["interfaces", "includes", ["uuid", s.iface]]],
        "columns": ["_uuid", "external_ids"]})])?;
    let Some(port) = ovsdb::rows(&r[0]).first() else {
        return Ok(false);
    };
    let (Some(uuid), Some(_)) = (
        ovsdb::uuid_of(&port["_uuid"]),
        ovsdb::map_get(&port["external_ids"], OWNER_KEY),
    ) else {
        return Ok(false);
    };
    let still = json!({"op": "wait", "timeout": 0, "table": "Interface",
        "where": [["_uuid", "==", ["uuid", s.iface]], [s.column, "==", s.value]],
        "columns": ["name"], "until": "==", "rows": [{"name": s.name}]});
    remove_pinned(db, &s.name, uuid, None, Some(still))
}

/// kvmnet-ifdown's undo: removes kvmnet's port of `tap` from `bridge` (and
/// collects kvmnet's ports whose taps are gone).
pub fn detach(nl: &Netlink, config: &Config, tap: &str, bridge: &str) -> Result<(), Error> {
    let mut db = Ovsdb::connect(&config.ovs_db, config.ovs_timeout).map_err(OvsError::from)?;
    remove_port(&mut db, tap, Some(bridge))?;
    let r = db.transact(stale_selects()).map_err(OvsError::from)?;
    collect(&mut db, nl, &stale_of(&r));
    Ok(())
}

impl Mode for OvsPort {
    fn wanted(&self) -> Wanted<'_> {
        let s = &self.settings;
        Wanted {
            bridge: None,
            ovs: Some(&self.spec.bridge),
            datapath: self.datapath,
            mtu: self.spec.mtu,
            fe_mac: s.host_mac == HostMac::Fe,
            port_policy: false,
            routes: &[],
            proxy: Vec::new(),
            // refused by the config (ovs-vswitchd owns the tap's traffic
            // control): see settings::ovs_contradiction
            guard: false,
            shape: None,
            police_only: false,
            rate_in: None,
        }
    }

    fn set_policy(&self, nl: &Netlink, _tap: &Link, _attach: &Attach) -> Result<(), Error> {
        match self.add(nl) {
            Ok(()) => Ok(()),
            Err(e) => {
                // a port this run added goes again; nothing else does
                self.remove_added();
                Err(e.into())
            }
        }
    }

    fn undo_policy(&self, _nl: &Netlink, _tap: &Link, _attach: &Attach) {
        self.remove_added();
    }

    fn describe(&self) -> String {
        let mut d = format!("ovs={} iface-id={}", self.spec.bridge, self.spec.iface_id);
        if let Some(m) = self.spec.mtu {
            d.push_str(&format!(" mtu={m}"));
        }
        d
    }

    fn notes(&self) -> Vec<String> {
        self.notes.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PortSpec {
        PortSpec {
            bridge: "ovsbr0".into(),
            tap: "vm1".into(),
            iface_id: "lsp-vm1".into(),
            attached_mac: Some("52:54:00:12:34:56".parse().unwrap()),
            owner: 1000,
            mtu: Some(1500),
            vlan: None,
            trunk: Vec::new(),
            replaces: None,
        }
    }

    fn op<'a>(ops: &'a [Value], kind: &str, table: &str) -> &'a Value {
        ops.iter()
            .find(|o| o["op"] == kind && o["table"] == table)
            .unwrap_or_else(|| panic!("no {kind} on {table}"))
    }

    #[test]
    fn one_transaction_holds_the_preconditions_the_rows_and_the_bridge_reference() {
        let ops = add_ops(&spec());
        assert_eq!(ops[OP_BRIDGE]["table"], "Bridge");
        assert_eq!(ops[OP_BRIDGE]["op"], "wait");
        assert_eq!(ops[OP_PORT]["table"], "Port");
        assert_eq!(ops[OP_PORT]["rows"], json!([]));
        let iface = &op(&ops, "insert", "Interface")["row"];
        assert_eq!(iface["name"], "vm1");
        assert_eq!(iface["mtu_request"], 1500);
        let ids = &iface["external_ids"];
        assert_eq!(ovsdb::map_get(ids, "iface-id"), Some("lsp-vm1"));
        assert_eq!(
            ovsdb::map_get(ids, "attached-mac"),
            Some("52:54:00:12:34:56")
        );
        assert_eq!(ovsdb::map_get(ids, "iface-status"), Some("active"));
        assert_eq!(ovsdb::map_get(ids, "kvmnet-managed"), Some("true"));
        let port = &op(&ops, "insert", "Port")["row"];
        assert_eq!(
            ovsdb::map_get(&port["external_ids"], OWNER_KEY),
            Some("1000")
        );
        assert!(port.get("tag").is_none() && port.get("vlan_mode").is_none());
        let m = op(&ops, "mutate", "Bridge");
        assert_eq!(m["mutations"][0][1], "insert");
    }

    #[test]
    fn vlans_map_to_tag_trunks_and_vlan_mode() {
        let r = |a, b| VlanRange { first: a, last: b };
        for (vlan, trunk, tag, trunks, mode) in [
            (Some(10u16), vec![], Some(10u16), 0, Some("access")),
            (None, vec![r(20, 22)], None, 3, Some("trunk")),
            (
                Some(10),
                vec![r(20, 21), r(30, 30)],
                Some(10),
                3,
                Some("native-untagged"),
            ),
        ] {
            let ops = add_ops(&PortSpec {
                vlan,
                trunk,
                ..spec()
            });
            let port = &op(&ops, "insert", "Port")["row"];
            assert_eq!(port["tag"].as_u64(), tag.map(u64::from));
            assert_eq!(
                port.get("trunks").map_or(0, |t| ovsdb::members(t).len()),
                trunks
            );
            assert_eq!(port["vlan_mode"].as_str(), mode);
        }
    }

    #[test]
    fn a_replaced_port_is_pinned_and_dropped_in_the_same_transaction() {
        let ops = add_ops(&PortSpec {
            replaces: Some("u-1".into()),
            ..spec()
        });
        assert_eq!(ops[OP_PORT]["where"][0][2], json!(["uuid", "u-1"]));
        assert_eq!(ops[OP_PORT]["rows"], json!([{"name": "vm1"}]));
        let drops: Vec<_> = ops
            .iter()
            .filter(|o| o["op"] == "mutate" && o["mutations"][0][1] == "delete")
            .collect();
        assert_eq!(drops.len(), 1);
        assert!(!ops
            .iter()
            .any(|o| o["op"] == "wait" && o["table"] == "Interface"));
    }
}
