//! Which bridge helper QEMU and libvirt run: kvmnet's only where they are
//! told to. QEMU's `-netdev bridge` without `helper=`, and libvirt's session
//! mode (`<interface type='bridge'>` for an ordinary user) without
//! `bridge_helper` in the user's qemu.conf, run the helper they were built
//! with: on Debian, QEMU's own /usr/lib/qemu/qemu-bridge-helper, which Debian
//! ships without privilege. libvirt's system mode creates taps itself and
//! runs no helper.
//!
//! Said only where it can matter: once kvmnet's helper is installed, the
//! default helper as a fact, and the user's session setting only when they
//! have used libvirt's session mode (its config directory exists).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::install::Binary;
use super::{as_whom, denied, CheckOptions, Findings};

/// The helper QEMU and libvirt run by default on Debian.
pub(super) const DEBIAN_QEMU_HELPER: &str = "/usr/lib/qemu/qemu-bridge-helper";

/// The qemu.conf of this user's session libvirt
/// (`$XDG_CONFIG_HOME/libvirt/qemu.conf`, by default under ~/.config); `None`
/// for root, whose libvirt runs in system mode, or without a home.
pub(super) fn session_qemu_conf() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return None;
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base =
        absolute("XDG_CONFIG_HOME").or_else(|| absolute("HOME").map(|h| h.join(".config")))?;
    Some(base.join("libvirt/qemu.conf"))
}

pub(super) fn check(opts: &CheckOptions, helper: &Binary, out: &mut Findings) {
    let Ok(ours) = &helper.meta else {
        return;
    };
    let p = helper.path.display().to_string();
    let default = default_helper(opts, ours, &p, out);
    if let Some(conf) = &opts.session_qemu_conf {
        let libvirt = opts.libvirt_daemons.iter().any(|d| d.exists());
        let used = conf.parent().is_some_and(Path::exists);
        if libvirt && used {
            session(conf, ours, &p, &default, out);
        }
    }
}

/// What the default helper is.
enum Default {
    /// The same file as kvmnet's helper.
    Ours,
    /// QEMU's own; whether it has a privilege of its own.
    Qemus { privileged: bool },
    /// Nothing at Debian's path: whatever the build chose.
    Unknown,
}

/// Same file (device and inode), symbolic links followed.
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn default_helper(
    opts: &CheckOptions,
    ours: &std::fs::Metadata,
    p: &str,
    out: &mut Findings,
) -> Default {
    let q = opts.qemu_helper.display();
    let qemus = Binary::inspect(&opts.qemu_helper, None);
    match &qemus.meta {
        Ok(m) if same_file(m, ours) => {
            out.ok(
                "helper",
                format!("{q} is kvmnet-bridge-helper: QEMU's -netdev bridge and libvirt's session mode run kvmnet's by default"),
            );
            Default::Ours
        }
        Ok(_) => {
            let privileged = qemus.runs_as_user();
            let how = if privileged {
                "with a privilege of its own"
            } else {
                "without privilege, as Debian ships it"
            };
            out.ok(
                "helper",
                format!("{q} is QEMU's own bridge helper ({how}): QEMU's -netdev bridge and libvirt's session mode run it unless told to run {p} (QEMU: helper={p}; libvirt: bridge_helper = \"{p}\" in ~/.config/libvirt/qemu.conf)"),
            );
            Default::Qemus { privileged }
        }
        Err(e) if denied(e) => {
            out.unchecked(
                "helper",
                format!("cannot look at {q} {}, so which helper QEMU and libvirt run by default is unknown", as_whom()),
            );
            Default::Unknown
        }
        Err(_) => Default::Unknown,
    }
}

/// This user's session libvirt: which helper its qemu.conf makes it run.
fn session(conf: &Path, ours: &std::fs::Metadata, p: &str, default: &Default, out: &mut Findings) {
    let c = conf.display();
    let text = match std::fs::read_to_string(conf) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if denied(&e) => {
            out.unchecked(
                "libvirt",
                format!("cannot read {c} {}, so which bridge helper libvirt's session mode runs is unknown", as_whom()),
            );
            return;
        }
        Err(e) => {
            out.warn(
                "libvirt",
                format!("cannot read {c}: {}; libvirt's session daemon cannot either, and does not start", crate::os_error::describe(&e)),
                format!("make {c} a readable file, or remove it"),
            );
            return;
        }
    };
    let restart = "; a session daemon already running reads it only when it starts: stop it (pkill -u \"$USER\" -x libvirtd, or virtqemud) and the next virsh starts it again";
    let set = format!("bridge_helper = \"{p}\"");
    match text.as_deref().map(bridge_helper) {
        Some(Ok(Some((line, value)))) => {
            let shown = crate::name::printable(&value);
            let named = std::fs::metadata(&value).is_ok_and(|m| same_file(&m, ours));
            if named {
                out.ok(
                    "libvirt",
                    format!("libvirt's session mode runs {p} (bridge_helper at {c} line {line})"),
                );
            } else {
                out.warn(
                    "libvirt",
                    format!("libvirt's session mode runs {shown} (bridge_helper at {c} line {line}), not kvmnet-bridge-helper: kvmnet's [[allow]] rules, settings and log do not apply to its VMs"),
                    format!("set {set} at {c} line {line}{restart}"),
                );
            }
        }
        Some(Err(line)) => out.warn(
            "libvirt",
            format!("{c} line {line} sets bridge_helper in a form kvmnet check does not read, so which helper libvirt's session mode runs is not checked"),
            format!("write it as {set}"),
        ),
        None | Some(Ok(None)) => {
            let unset = format!("{c} sets no bridge_helper");
            let (runs, consequence) = match default {
                Default::Ours => {
                    out.ok(
                        "libvirt",
                        format!("{unset}: libvirt's session mode runs its default, {DEBIAN_QEMU_HELPER}, which is kvmnet's"),
                    );
                    return;
                }
                Default::Qemus { privileged: false } => (
                    format!("{DEBIAN_QEMU_HELPER}, QEMU's own helper"),
                    "which has no privilege here: domains with <interface type='bridge'> fail to start",
                ),
                Default::Qemus { privileged: true } => (
                    format!("{DEBIAN_QEMU_HELPER}, QEMU's own helper"),
                    "which obeys /etc/qemu/bridge.conf only: kvmnet's [[allow]] rules, settings and log do not apply to its VMs",
                ),
                Default::Unknown => (
                    "the helper libvirt was built with".to_owned(),
                    "not kvmnet's: kvmnet's [[allow]] rules, settings and log do not apply to its VMs",
                ),
            };
            out.warn(
                "libvirt",
                format!("{unset}: libvirt's session mode runs its default, {runs}, {consequence}"),
                format!("add {set} to {c}{restart}"),
            );
        }
    }
}

/// The first `bridge_helper = "..."` of a libvirt config (libvirt uses the
/// first): `Ok(Some((line, value)))`, `Ok(None)` when it is not set,
/// `Err(line)` when it is set in another form than one quoted string.
fn bridge_helper(text: &str) -> Result<Option<(usize, String)>, usize> {
    const KEY: &str = "bridge_helper";
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches([' ', '\t']);
        let Some(rest) = line.strip_prefix(KEY) else {
            continue;
        };
        // a longer name (bridge_helper_x) is another key
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = rest
            .trim_start_matches([' ', '\t'])
            .strip_prefix('=')
            .map(|v| v.trim_start_matches([' ', '\t']))
            .and_then(|v| {
                let quote = v.chars().next().filter(|q| matches!(q, '"' | '\''))?;
                let body = &v[1..];
                body.find(quote).map(|end| body[..end].to_owned())
            });
        return match value {
            Some(v) => Ok(Some((i + 1, v))),
            None => Err(i + 1),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_helper_as_libvirt_reads_it() {
        assert_eq!(bridge_helper(""), Ok(None));
        assert_eq!(
            bridge_helper("# bridge_helper = \"/x\"\nbridge_helperx = \"/y\"\n"),
            Ok(None)
        );
        assert_eq!(
            bridge_helper(
                "user = \"a\"\n  bridge_helper=\t'/usr/libexec/kvmnet-bridge-helper' # kvmnet\n"
            ),
            Ok(Some((2, "/usr/libexec/kvmnet-bridge-helper".into())))
        );
        // the first one counts
        assert_eq!(
            bridge_helper("bridge_helper = \"/a\"\nbridge_helper = \"/b\"\n"),
            Ok(Some((1, "/a".into())))
        );
        for odd in [
            "bridge_helper = /a\n",
            "bridge_helper \"/a\"\n",
            "bridge_helper = \"/a\n",
        ] {
            assert_eq!(bridge_helper(odd), Err(1), "{odd:?}");
        }
    }
}
