//! The guest guard: the kernel support it needs (nf_tables with the netdev
//! family, when the config turns it on), guard state left by taps that are
//! gone (judged by the runtime's own [`crate::guard::stale`]), and taps
//! whose record says guarded but whose chain is missing.

use super::host::Host;
use super::{as_whom, Findings};
use crate::config::Config;
use crate::guard::{self, LinkFact};
use crate::nft::ack::NftError;
use crate::record::Record;

pub(super) fn check(config: Option<&Config>, host: Option<&Host>, out: &mut Findings) {
    let table = |l: &crate::settings::Layer| l.guard == Some(true) || l.rate_in.is_some();
    let wanted =
        config.is_some_and(|c| table(&c.defaults) || c.rules.iter().any(|r| table(&r.layer)));
    let shards = match crate::nft::Nft::open()
        .map_err(guard::GuardError::from)
        .and_then(|mut n| guard::survey(&mut n, usize::MAX, 0))
    {
        Ok(t) => t,
        // Guard tables exist only where a config turned the guard on; an
        // ordinary user's check of a host without one has nothing to say.
        Err(guard::GuardError::Nft(NftError::NotPermitted { .. })) if !wanted => return,
        Err(guard::GuardError::Nft(NftError::NotPermitted { .. })) => {
            out.unchecked(
                "guard",
                format!("cannot read the nf_tables ruleset {}", as_whom()),
            );
            return;
        }
        Err(e) if wanted => {
            out.error(
                "guard",
                format!("guard = true or rate_in is set, but {e}"),
                "use a kernel with nf_tables and its netdev family (Debian's have them), or turn guard off"
                    .into(),
            );
            return;
        }
        // Without a guard in the config, a kernel without nf_tables is fine.
        Err(_) => return,
    };
    if wanted {
        out.ok(
            "guard",
            "nf_tables with the netdev family is there for guard = true and rate_in".into(),
        );
    }
    let Some(host) = host else { return };
    let fact = |index: u32| match host.links.iter().find(|l| l.index == index) {
        None => LinkFact::Missing,
        Some(l) if l.is_tap() => LinkFact::Tap {
            name: l.name.clone(),
        },
        Some(l) => LinkFact::Other {
            name: l.name.clone(),
        },
    };
    for s in guard::stale(&shards, fact, usize::MAX, 0) {
        out.warn(
            "guard",
            format!("guard state {} is stale: {}", s.name(), s.why),
            "any kvmnet-ifdown removes it".into(),
        );
    }
    for l in host.links.iter().filter(|l| l.is_tap()) {
        let guarded = matches!(Record::parse(&l.name, l.alias.as_deref()), Ok(Some(r)) if r.guard);
        let chain = || {
            shards
                .iter()
                .flat_map(|s| &s.chains)
                .any(|c| c.ifindex == l.index)
        };
        if guarded && !chain() {
            out.error(
                "guard",
                format!(
                    "tap {} is recorded as guarded but its guard chain {}/{} is gone (someone flushed the ruleset?): its guest is not checked",
                    l.name,
                    guard::shard_name(guard::shard_of(l.index)),
                    guard::chain_name(l.index)
                ),
                format!("kvmnet-ifup {} puts it back", l.name),
            );
        }
    }
}
