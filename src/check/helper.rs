//! kvmnet-bridge-helper: QEMU runs it as the user who started QEMU (libvirt's
//! session mode, `-netdev bridge`), so it needs a privilege of its own (the
//! file capability cap_net_admin+ep the package gives it, or the setuid bit),
//! and it admits users by two policies: kvmnet's `[[allow]]`/`[[deny]]` rules
//! and QEMU's /etc/qemu/bridge.conf. Both are judged by the runtime's own
//! functions: [`crate::qemu_acl::load_traced`] reads bridge.conf as the
//! helper reads it for the user check runs as, [`crate::trust`] judges every
//! file it read, and [`crate::access::check_bridge_helper`] decides.

use std::path::Path;

use super::host::Host;
use super::install::{self, Binary};
use super::{as_whom, CheckOptions, Findings};
use crate::acl::{Identity, Verdict};
use crate::config::Config;
use crate::qemu_acl::{Entry, QemuAclError, Target};

/// What bridge.conf says, as far as check could read it.
enum QemuAcl {
    /// Read (`None`: there is no bridge.conf).
    Known(Option<Vec<Entry>>),
    /// Unreadable or invalid: the helper refuses every user but root (a
    /// finding says why).
    Refusing,
}

pub(super) fn check(
    opts: &CheckOptions,
    config: Option<&Config>,
    helper: &Binary,
    host: Option<&Host>,
    out: &mut Findings,
) {
    if !binary(helper, out) {
        return;
    }
    // The user check runs as, with the groups this process has: whom the
    // helper run by this user sees (a file-capability helper keeps the
    // caller's credentials). As root, every file is read.
    let me = crate::admin::caller_identity();
    let acl = bridge_conf(&opts.bridge_conf, &me, out);
    if let (Some(c), QemuAcl::Known(entries)) = (config, &acl) {
        admits(opts, c, entries.as_deref(), &me, host, out);
    }
}

/// The helper itself: trusted, no capability beyond cap_net_admin, and a
/// privilege of its own. False when it is not installed.
fn binary(helper: &Binary, out: &mut Findings) -> bool {
    let p = helper.path.display();
    let setcap = format!(" && setcap cap_net_admin+ep {p}");
    let Some(meta) = install::installed("helper", helper, "kvmnet-bridge-helper", &setcap, out)
    else {
        return false;
    };
    let trusted = install::check_trust("helper", helper, meta, out);
    let caps_ok = install::check_caps("helper", helper, out);
    let way = if helper.net_admin_cap() {
        "the file capability cap_net_admin"
    } else if helper.setuid_root() {
        "the setuid bit"
    } else {
        out.warn(
            "helper",
            format!("{p} has neither the file capability cap_net_admin nor the setuid bit: QEMU started by a user (libvirt's session mode, -netdev bridge) cannot use it, only QEMU started by root can"),
            format!("setcap cap_net_admin+ep {p} (what the package's postinst does), or chmod u+s {p} where the file system cannot store capabilities"),
        );
        return true;
    };
    if trusted && caps_ok {
        use std::os::unix::fs::MetadataExt;
        out.ok(
            "helper",
            format!(
                "{p} is root's, mode {:04o}, with {way}: QEMU started by users can run it",
                meta.mode() & 0o7777
            ),
        );
    }
    true
}

/// bridge.conf and its includes: read as the helper reads them for this
/// user, each file judged by the trust rule, what could not be read said as
/// such, and what it allows.
fn bridge_conf(path: &Path, me: &Identity, out: &mut Findings) -> QemuAcl {
    let shown = path.display();
    let (entries, trace) = match crate::qemu_acl::load_traced(path, me.uid, &me.groups) {
        Ok(None) => {
            out.ok(
                "helper",
                format!("there is no {shown}: kvmnet-bridge-helper admits only whom the [[allow]] rules admit"),
            );
            return QemuAcl::Known(None);
        }
        Ok(Some(read)) => read,
        Err(QemuAclError::Read { .. }) if denied_to_me(path) => {
            out.unchecked(
                "helper",
                format!("cannot read {shown} {}: kvmnet-bridge-helper refuses this user, since it cannot read it either; whether it is valid and what it allows others is unknown", as_whom()),
            );
            return QemuAcl::Refusing;
        }
        Err(QemuAclError::Untrusted { path, why }) => {
            out.error(
                "helper",
                format!("kvmnet-bridge-helper refuses every user but root: refusing {path}: {why}, and a bridge ACL that someone other than root can change decides who may put taps on which bridge"),
                why.fix(),
            );
            return QemuAcl::Refusing;
        }
        Err(e) => {
            out.error(
                "helper",
                format!("kvmnet-bridge-helper refuses every user but root: {e}"),
                acl_fix(&e),
            );
            return QemuAcl::Refusing;
        }
    };
    for skipped in &trace.skipped {
        out.unchecked(
            "helper",
            format!(
                "cannot read {} {}: kvmnet-bridge-helper skips it for this user, as QEMU's helper does; whether it is valid (an error there refuses everyone) and what it allows others is unknown",
                skipped.shown,
                as_whom()
            ),
        );
    }
    let includes = trace.files.len() - 1 + trace.skipped.len();
    let read = match includes {
        0 => String::new(),
        n => format!(" with {n} include(s)"),
    };
    let seen = if me.uid == 0 {
        String::new()
    } else {
        format!(" read {}", as_whom())
    };
    // The runtime refused the files already unless only root can change
    // them (and the directories they live in).
    let trust = ", root's and writable only by root";
    let valid = if trace.skipped.is_empty() {
        "is valid"
    } else {
        "is valid as far as it can be read"
    };
    out.ok(
        "helper",
        format!("{shown}{read}{seen} {valid}{trust}: {}", says(&entries)),
    );
    QemuAcl::Known(Some(entries))
}

/// Whether opening `path` is refused to this process (rather than failing
/// for another reason).
fn denied_to_me(path: &Path) -> bool {
    std::fs::File::open(path).is_err_and(|e| super::denied(&e))
}

/// The fix for bridge.conf's error.
fn acl_fix(e: &QemuAclError) -> String {
    match e {
        QemuAclError::Syntax { location, .. }
        | QemuAclError::NameTooLong { location, .. }
        | QemuAclError::LineTooLong { location }
        | QemuAclError::Nul { location }
        | QemuAclError::VerticalTab { location } => format!(
            "correct {location}: QEMU's bridge ACL takes `allow BRIDGE`, `allow all`, `deny BRIDGE`, `deny all`, `include PATH` and `#` comments"
        ),
        QemuAclError::TooDeep { path } | QemuAclError::TooMany { path } => {
            format!("remove the include loop that reaches {path}")
        }
        QemuAclError::NotRegular { path, .. } | QemuAclError::TooLarge { path } => {
            format!("replace {path} with a regular file of a few lines, or remove its include")
        }
        QemuAclError::Untrusted { why, .. } => why.fix(),
        QemuAclError::Read { path, .. } | QemuAclError::Hidden { path, .. } => {
            format!("make {path} readable, or remove its include")
        }
    }
}

/// "allow br0 (FILE line 1), deny all (FILE line 2)": at most a few.
fn says(entries: &[Entry]) -> String {
    const SHOWN: usize = 6;
    if !entries.iter().any(|e| e.allow) {
        let denies = if entries.is_empty() {
            ""
        } else {
            " (only deny lines)"
        };
        return format!("it allows no bridge{denies}");
    }
    let mut parts: Vec<String> = entries
        .iter()
        .take(SHOWN)
        .map(|e| {
            let verb = if e.allow { "allow" } else { "deny" };
            let target = match &e.target {
                Target::All => "all".to_owned(),
                Target::Bridge(b) => crate::name::printable(&String::from_utf8_lossy(b)),
            };
            format!("{verb} {target} ({})", e.location)
        })
        .collect();
    if entries.len() > SHOWN {
        parts.push(format!("and {} more", entries.len() - SHOWN));
    }
    parts.join(", ")
}

/// Whom the helper admits to which bridge. As an ordinary user: this user,
/// to each bridge that exists, decided by the runtime's own function. As
/// root (whom the helper never refuses): which rules and lines can admit.
fn admits(
    opts: &CheckOptions,
    config: &Config,
    qemu: Option<&[Entry]>,
    me: &Identity,
    host: Option<&Host>,
    out: &mut Findings,
) {
    let cfg = opts.config_path.display();
    if me.uid == 0 {
        let rules: Vec<&str> = config
            .acl
            .rules
            .iter()
            .filter(|r| r.verdict == Verdict::Allow)
            .map(|r| r.location.as_str())
            .collect();
        let acl = opts.bridge_conf.display();
        let lines = qemu.map(|e| e.iter().filter(|e| e.allow).count());
        let no_rules = rules.is_empty();
        let rules = match rules.len() {
            0 => format!("no [[allow]] rule in {cfg}"),
            _ => format!("the [[allow]] rule(s) at {}", rules.join(", ")),
        };
        let message = match lines {
            None | Some(0) if no_rules => format!(
                "kvmnet-bridge-helper admits no user but root: {rules} and no `allow` line in {acl}"
            ),
            None => format!(
                "kvmnet-bridge-helper admits users by {rules} (a [[deny]] rule wins)"
            ),
            Some(n) => format!(
                "kvmnet-bridge-helper admits users by {rules} and {n} `allow` line(s) of {acl} (a [[deny]] rule or `deny` line in either wins)"
            ),
        };
        out.ok("helper", message);
        return;
    }
    let Some(host) = host else {
        return;
    };
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for b in host.links.iter().filter(|l| l.is_bridge()) {
        match crate::access::check_bridge_helper(me, &config.acl, qemu, "-", &b.name) {
            Ok(rule) => allowed.push(format!("{} ({rule})", b.name)),
            Err(e) => refused.push((b.name.as_str(), e.to_string())),
        }
    }
    let who = as_whom().trim_start_matches("as ");
    let message = match (allowed.is_empty(), refused.first()) {
        (true, None) => return,
        (false, _) => {
            let others = refused.iter().map(|(b, _)| *b).collect::<Vec<_>>();
            let not = if others.is_empty() {
                String::new()
            } else {
                format!("; not on {}", others.join(", "))
            };
            format!(
                "{who} may use kvmnet-bridge-helper on bridge {}{not}",
                allowed.join(", ")
            )
        }
        (true, Some((_, first))) => {
            format!("{who} may use kvmnet-bridge-helper on no bridge here: {first}")
        }
    };
    out.ok("helper", message);
}
