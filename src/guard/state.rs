//! The guard as the kernel holds it: which taps have a chain, what a tap's
//! removal must delete, and what taps gone without a downscript left
//! behind (found by the pure [`stale`], removed by [`sweep`]).

use std::collections::BTreeSet;

use crate::nft::msg::{self, Elem, Msg};
use crate::nft::{Chain, Nft};

use super::rules::{self, elem_index, set_def, SETS};
use super::{
    chain_name, shard_name, shard_of, GuardError, CHAIN_PREFIX, COMMENT_PREFIX, FAMILY,
    TABLE_PREFIX,
};

/// A tap's chain in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub ifindex: u32,
    /// The tap's name as its comment records it.
    pub tap: Option<String>,
    pub handle: u64,
}

/// The number in `s` after `prefix`, only in the spelling kvmnet writes.
fn number(s: &str, prefix: &str) -> Option<u32> {
    let n = s.strip_prefix(prefix)?;
    n.parse().ok().filter(|i: &u32| i.to_string() == n)
}

/// The tap chain `c` is, if it is one: in the shard its index belongs to.
fn tap_chain(c: &Chain) -> Option<Installed> {
    let shard = number(&c.table, TABLE_PREFIX)?;
    let ifindex = number(&c.name, CHAIN_PREFIX)?;
    (shard_of(ifindex) == shard).then(|| Installed {
        ifindex,
        tap: c
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
            .map(str::to_owned),
        handle: c.handle,
    })
}

/// Every tap chain of every shard (one chain dump).
pub fn installed() -> Result<Vec<Installed>, GuardError> {
    let mut nft = Nft::open()?;
    Ok(nft.chains(FAMILY)?.iter().filter_map(tap_chain).collect())
}

/// The elements of the tap with this ifindex in each set of its shard.
fn tap_elems(nft: &mut Nft, ifindex: u32) -> Result<Vec<(usize, Vec<Elem>)>, GuardError> {
    let table = shard_name(shard_of(ifindex));
    let mut out = Vec::new();
    for (i, set) in SETS.iter().enumerate() {
        let elems: Vec<Elem> = nft
            .set_elems(FAMILY, &table, set.name)?
            .into_iter()
            .filter(|e| elem_index(set, &e.key) == Some(ifindex))
            .map(|e| {
                Elem::new(
                    e.key,
                    e.key_end,
                    format!("an element of interface {ifindex}"),
                )
            })
            .collect();
        if !elems.is_empty() {
            out.push((i, elems));
        }
    }
    Ok(out)
}

fn delete_elems(table: &str, elems: &[(usize, Vec<Elem>)]) -> Vec<Msg> {
    elems
        .iter()
        .flat_map(|(i, e)| msg::delete_set_elems(FAMILY, &set_def(table, SETS[*i]), e))
        .collect()
}

/// The messages that remove the guard of the tap with this ifindex as the
/// kernel holds it now: its chain (by handle) and its elements; none when
/// it has neither.
pub(super) fn removal(nft: &mut Nft, ifindex: u32) -> Result<Vec<Msg>, GuardError> {
    let table = shard_name(shard_of(ifindex));
    let chain = chain_name(ifindex);
    let mut msgs = Vec::new();
    if let Some(c) = nft.chain(FAMILY, &table, &chain)? {
        msgs.push(msg::delete_chain_handle(FAMILY, &table, &chain, c.handle));
    }
    msgs.extend(delete_elems(&table, &tap_elems(nft, ifindex)?));
    Ok(msgs)
}

/// What a network namespace says about an interface index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFact {
    Missing,
    Tap {
        name: String,
    },
    /// Something else now has the index.
    Other {
        name: String,
    },
}

/// What a shard holds, as read for the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub shard: u32,
    pub handle: u64,
    pub chains: Vec<Installed>,
    /// The interface indexes its set elements are for.
    pub elem_indexes: BTreeSet<u32>,
}

/// What is stale in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleKind {
    /// A tap's chain (and its elements, if any), its tap gone.
    Tap { ifindex: u32, handle: Option<u64> },
    /// The whole shard: nothing in it is for a live tap.
    Shard { handle: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub table: String,
    pub kind: StaleKind,
    pub why: String,
}

impl Stale {
    /// In words, for logs and `kvmnet check`.
    pub fn name(&self) -> String {
        match &self.kind {
            StaleKind::Tap { ifindex, .. } => format!("{}/{}", self.table, chain_name(*ifindex)),
            StaleKind::Shard { .. } => self.table.clone(),
        }
    }
}

/// What is stale in `shards`, looking up at most `budget` interface
/// indexes, from the `start`-th shard on (round the list): each run's cost
/// is bounded, and runs that start elsewhere cover the rest (a shard is
/// judged whole or not at all). A tap's chain is stale when no interface
/// has its index, or another interface than the tap its comment records;
/// elements without a chain are stale (their tap's chain went with its
/// device, as 6.1 deletes it); a shard with nothing live left is stale.
pub fn stale(
    shards: &[ShardView],
    mut lookup: impl FnMut(u32) -> LinkFact,
    budget: usize,
    start: usize,
) -> Vec<Stale> {
    let mut out = Vec::new();
    if shards.is_empty() {
        return out;
    }
    let mut used = 0;
    for k in 0..shards.len() {
        let s = &shards[(start + k) % shards.len()];
        if used >= budget {
            break;
        }
        let table = shard_name(s.shard);
        let mut found = Vec::new();
        let mut live = 0;
        for c in &s.chains {
            used += 1;
            let why = match (lookup(c.ifindex), c.tap.as_deref()) {
                (LinkFact::Missing, _) => Some(format!("no interface has index {}", c.ifindex)),
                (LinkFact::Other { name }, _) => {
                    Some(format!("interface {} is now {name}, not a tap", c.ifindex))
                }
                (LinkFact::Tap { name }, Some(r)) if name != r => Some(format!(
                    "interface {} is now tap {name}, not {r}",
                    c.ifindex
                )),
                (LinkFact::Tap { .. }, _) => None,
            };
            match why {
                Some(why) => found.push(Stale {
                    table: table.clone(),
                    kind: StaleKind::Tap {
                        ifindex: c.ifindex,
                        handle: Some(c.handle),
                    },
                    why,
                }),
                None => live += 1,
            }
        }
        for &i in &s.elem_indexes {
            if s.chains.iter().all(|c| c.ifindex != i) {
                found.push(Stale {
                    table: table.clone(),
                    kind: StaleKind::Tap {
                        ifindex: i,
                        handle: None,
                    },
                    why: format!("set elements of interface {i} without its chain"),
                });
            }
        }
        if live == 0 {
            out.push(Stale {
                table: table.clone(),
                kind: StaleKind::Shard { handle: s.handle },
                why: if found.is_empty() {
                    "an empty shard".into()
                } else {
                    format!("no live tap left in it ({} stale)", found.len())
                },
            });
        }
        out.extend(found);
    }
    out
}

/// Reads the shards a sweep from the `start`-th shard on with `budget`
/// look-ups will judge: the tables and one chain dump for all, the set
/// elements (a dump per set) only for those shards, so a sweep's cost
/// does not grow with the number of shards beyond those two dumps.
/// Elements are read after the chains: a tap guarded meanwhile shows its
/// elements without its chain, which [`stale`] calls stale only when the
/// chain is still missing when [`sweep`] looks again.
pub fn survey(nft: &mut Nft, budget: usize, start: usize) -> Result<Vec<ShardView>, GuardError> {
    let tables = nft.tables(FAMILY)?;
    let mut shards: Vec<ShardView> = tables
        .iter()
        .filter_map(|t| {
            Some(ShardView {
                shard: number(&t.name, TABLE_PREFIX)?,
                handle: t.handle,
                chains: Vec::new(),
                elem_indexes: BTreeSet::new(),
            })
        })
        .collect();
    if shards.is_empty() {
        return Ok(shards);
    }
    for c in nft.chains(FAMILY)? {
        if let (Some(t), Some(s)) = (
            tap_chain(&c),
            shards
                .iter_mut()
                .find(|s| number(&c.table, TABLE_PREFIX) == Some(s.shard)),
        ) {
            s.chains.push(t);
        }
    }
    // The window: whole shards from `start` on, until their chains use up
    // the budget (at least one shard).
    let n = shards.len();
    let mut window = Vec::new();
    let mut used = 0;
    for k in 0..n {
        if used >= budget && !window.is_empty() {
            break;
        }
        let s = shards[(start + k) % n].clone();
        used += s.chains.len().max(1);
        window.push(s);
    }
    for s in &mut window {
        let table = shard_name(s.shard);
        for set in SETS {
            for e in nft.set_elems(FAMILY, &table, set.name)? {
                s.elem_indexes.extend(elem_index(set, &e.key));
            }
        }
    }
    Ok(window)
}

/// The batch that deletes shard `table` (handle `handle`) once emptied:
/// its chains (the entry chain first: a tap chain made meanwhile still
/// jumps to it, and the kernel refuses the batch with EBUSY), its sets,
/// then the table, refused too if anything else is in it.
pub(super) fn delete_shard(table: &str, handle: u64) -> Vec<Msg> {
    let mut msgs: Vec<Msg> = rules::CHAINS
        .iter()
        .rev()
        .map(|c| msg::delete_chain(FAMILY, table, c))
        .collect();
    msgs.extend(SETS.iter().map(|s| msg::delete_set(FAMILY, table, s.name)));
    msgs.push(msg::delete_empty_table(FAMILY, table, handle));
    msgs
}

/// Finds what is stale ([`stale`], at most `budget` look-ups from the
/// `start`-th shard) and deletes it, one batch per shard: the stale taps'
/// chains and elements, and the shard itself when nothing live is left.
/// A shard that changed meanwhile refuses its batch (ENOENT, EBUSY, EEXIST)
/// and waits for a later sweep. Returns what it removed.
pub fn sweep(budget: usize, start: usize) -> Result<Vec<Stale>, GuardError> {
    let mut nft = Nft::open()?;
    let shards = survey(&mut nft, budget, start)?;
    let nl = crate::netlink::Netlink::open()?;
    let mut failed = None;
    let found = stale(
        &shards,
        |i| match nl.link_by_index(i) {
            Ok(None) => LinkFact::Missing,
            Ok(Some(l)) if l.is_tap() => LinkFact::Tap { name: l.name },
            Ok(Some(l)) => LinkFact::Other { name: l.name },
            Err(e) => {
                // Not knowing is not "gone": nothing is deleted below.
                failed.get_or_insert(e);
                LinkFact::Tap {
                    name: String::new(),
                }
            }
        },
        budget,
        0,
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut removed = Vec::new();
    let tables: BTreeSet<&str> = found.iter().map(|s| s.table.as_str()).collect();
    for table in tables {
        let mut here: Vec<&Stale> = found.iter().filter(|s| s.table == table).collect();
        let mut msgs = Vec::new();
        // Elements without a chain: a tap guarded since the chain dump has
        // its chain now, and is left alone.
        let mut live = Vec::new();
        for s in &here {
            if let StaleKind::Tap {
                ifindex,
                handle: None,
            } = s.kind
            {
                if nft.chain(FAMILY, table, &chain_name(ifindex))?.is_some() {
                    live.push(ifindex);
                }
            }
        }
        // ... and so is its shard.
        here.retain(|s| match s.kind {
            StaleKind::Tap { ifindex, .. } => !live.contains(&ifindex),
            StaleKind::Shard { .. } => live.is_empty(),
        });
        for s in &here {
            if let StaleKind::Tap { ifindex, handle } = s.kind {
                if let Some(h) = handle {
                    msgs.push(msg::delete_chain_handle(
                        FAMILY,
                        table,
                        &chain_name(ifindex),
                        h,
                    ));
                }
                msgs.extend(delete_elems(table, &tap_elems(&mut nft, ifindex)?));
            }
        }
        for s in &here {
            if let StaleKind::Shard { handle } = s.kind {
                msgs.extend(delete_shard(table, handle));
            }
        }
        if msgs.is_empty() {
            continue;
        }
        match nft.apply(&format!("removing stale guard state in {table}"), &msgs) {
            Ok(()) => removed.extend(here.into_iter().cloned()),
            Err(crate::nft::NftError::Rejected { refusals, .. })
                if refusals
                    .iter()
                    .all(|r| [libc::ENOENT, libc::EBUSY, libc::EEXIST].contains(&r.errno)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}
