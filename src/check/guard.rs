//! The guest guard: the kernel support it needs when the config turns it
//! on (an ingress qdisc and classic BPF filters for the checks, nf_tables with the
//! netdev family for `rate_in`), limit chains left by taps that are gone
//! (judged by the runtime's own [`crate::guard::stale`]), and taps whose
//! record says guarded but whose filters or chain are missing.

use super::host::Host;
use super::{as_whom, Findings};
use crate::config::Config;
use crate::guard::{self, LinkFact};
use crate::nft::ack::NftError;
use crate::record::Record;

pub(super) fn check(config: Option<&Config>, host: Option<&Host>, out: &mut Findings) {
    let any = |f: fn(&crate::settings::Layer) -> bool| {
        config.is_some_and(|c| f(&c.defaults) || c.rules.iter().any(|r| f(&r.layer)))
    };
    if any(|l| l.guard == Some(true)) {
        match guard::checks::kernel_support(std::path::Path::new("/lib/modules")) {
            Ok(missing) if missing.is_empty() => out.ok(
                "guard",
                "this kernel has sch_ingress and cls_bpf (ingress qdisc, classic BPF filters) for guard = true"
                    .into(),
            ),
            Ok(missing) => out.error(
                "guard",
                format!(
                    "guard = true is set, but this kernel has no {}",
                    missing.join(" and ")
                ),
                "use a kernel with CONFIG_NET_SCH_INGRESS and CONFIG_NET_CLS_BPF (Debian's have them), or turn guard off"
                    .into(),
            ),
            Err(e) => out.unchecked(
                "guard",
                format!(
                    "cannot tell whether this kernel has sch_ingress and cls_bpf for guard = true ({e}); the first guarded kvmnet-ifup says"
                ),
            ),
        }
    }
    let wanted = any(|l| l.rate_in.is_some());
    let shards = match crate::nft::Nft::open()
        .map_err(guard::GuardError::from)
        .and_then(|mut n| guard::survey(&mut n, usize::MAX, 0))
    {
        Ok(t) => t,
        // Limit tables exist only where a config set rate_in; an
        // ordinary user's check of a host without one has nothing to say.
        Err(guard::GuardError::Nft(NftError::NotPermitted { .. })) if !wanted => Vec::new(),
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
                format!("rate_in is set, but {e}"),
                "use a kernel with nf_tables and its netdev family (Debian's have them), or remove rate_in"
                    .into(),
            );
            return;
        }
        // Without rate_in in the config, a kernel without nf_tables is fine.
        Err(_) => Vec::new(),
    };
    if wanted {
        out.ok(
            "guard",
            "nf_tables with the netdev family is there for rate_in".into(),
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
    let nl = crate::netlink::Netlink::open().ok();
    for l in host.links.iter().filter(|l| l.is_tap()) {
        let Ok(Some(record)) = Record::parse(&l.name, l.alias.as_deref()) else {
            continue;
        };
        let parts = record.guard_parts();
        let chain = || {
            shards
                .iter()
                .flat_map(|s| &s.chains)
                .any(|c| c.ifindex == l.index)
        };
        if parts.limit && !chain() {
            out.error(
                "guard",
                format!(
                    "tap {} is recorded with rate_in but its limit chain {}/{} is gone (someone flushed the ruleset?): its guest is not limited",
                    l.name,
                    guard::shard_name(guard::shard_of(l.index)),
                    guard::chain_name(l.index)
                ),
                format!("kvmnet-ifup {} puts it back", l.name),
            );
        }
        if !parts.checks {
            continue;
        }
        match nl.as_ref().map(|nl| guard::checks::read(nl, l.index)) {
            Some(Ok(Some(on))) if on.drop => {}
            Some(Ok(Some(_))) => out.error(
                "guard",
                format!(
                    "tap {} has the guard's checks without the filter that drops what they do not allow: its guest is not checked",
                    l.name
                ),
                format!("kvmnet-ifup {} puts it back", l.name),
            ),
            Some(Ok(None)) => out.error(
                "guard",
                format!(
                    "tap {} is recorded as guarded but the guard's filters on it are gone (someone deleted its ingress qdisc?): its guest is not checked",
                    l.name
                ),
                format!("kvmnet-ifup {} puts them back", l.name),
            ),
            Some(Err(e)) => out.unchecked(
                "guard",
                format!("cannot read the filters of tap {}: {e}", l.name),
            ),
            None => {}
        }
    }
}
