//! The packages of `packaging/`.
//!
//! Always run (fast, change nothing): the shipped `/etc/kvmnet/kvmnet.toml`
//! names every key the parser knows, commented out, and means the built-in
//! defaults; kvmnet.toml(5) documents every key; the sudoers file parses; the
//! RPM spec has Cargo.toml's version.
//!
//! Only with `KVMNET_PACKAGING_TESTS=1` (which `.ci/packaging` sets): the
//! install test. It changes THIS machine: it builds the .deb, installs,
//! upgrades and purges it, creates one user (in group kvm, who runs `kvmnet
//! check` too), reinstalls qemu-system-common (once from a repacked copy with
//! a changed /etc/qemu-ifup, and once after purging it with --force-depends,
//! to install kvmnet first), and puts everything back at the end, also when
//! it fails. `dpkg -V` is checked at every step, in both install orders.
//! It is #[ignore]d (reported as not run by a plain `cargo test`); run with
//! --include-ignored but without the variable, it fails with the reason.
//! Network traffic stays inside a network namespace of its own.
//!
//! Needs root, dpkg-dev, scdoc, sudo, libcap2-bin, qemu-system-x86, ipxe-qemu,
//! dnsmasq-base and apt access to qemu-system-common's installed version.

mod common;

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::qemu::{acked_ip, poll_every, Proc, DNSMASQ_ARGS};
use common::sh;
use kvmnet::config::Config;

const GATE: &str = "KVMNET_PACKAGING_TESTS";
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const USER: &str = "kvmnet-pkgtest";
const USER_COMMENT: &str = "kvmnet packaging test (tests/packaging.rs removes it)";
/// An admin's own /etc/qemu-ifdown, and where kvmnet's postrm keeps it.
const ADMIN_SCRIPT: &[u8] = b"#!/bin/sh\n# an admin's own script (tests/packaging.rs)\n";
const ADMIN_SCRIPT_KEPT: &str = "/etc/qemu-ifdown.dpkg-old";
const HELPERS: [&str; 3] = [
    "/usr/libexec/kvmnet-ifup",
    "/usr/libexec/kvmnet-ifdown",
    "/usr/libexec/kvmnet-bridge-helper",
];
const MAN_PAGES: [&str; 5] = [
    "/usr/share/man/man1/kvmnet.1.gz",
    "/usr/share/man/man5/kvmnet.toml.5.gz",
    "/usr/share/man/man8/kvmnet-ifup.8.gz",
    "/usr/share/man/man8/kvmnet-ifdown.8.gz",
    "/usr/share/man/man8/kvmnet-bridge-helper.8.gz",
];
const COMPLETIONS: [&str; 3] = [
    "/usr/share/bash-completion/completions/kvmnet",
    "/usr/share/zsh/vendor-completions/_kvmnet",
    "/usr/share/fish/vendor_completions.d/kvmnet.fish",
];

/// The `kvmnet net` unit, where Debian 12 keeps units.
const UNIT: &str = "/lib/systemd/system/kvmnet-net@.service";

fn packaging(file: &str) -> PathBuf {
    Path::new(REPO).join("packaging").join(file)
}

fn read_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// Always run: the files the package ships, against the parser.
// ---------------------------------------------------------------------------

/// The keys the parser accepts in a table, from its "unknown key" error, which
/// lists them all: the parser itself is the list, so a key added to
/// src/config.rs without documentation fails these tests.
fn keys_accepted(table_header: &str) -> Vec<String> {
    let text = format!("{table_header}\nzz_not_a_key = 1\n");
    let err = Config::parse(Path::new("probe.toml"), &text)
        .expect_err("an unknown key must be refused")
        .to_string();
    let list = err
        .split_once("expected one of")
        .unwrap_or_else(|| panic!("unexpected error shape: {err}"))
        .1;
    let keys: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(keys.len() >= 3, "no keys found in: {err}");
    keys
}

fn all_keys() -> Vec<(String, Vec<String>)> {
    ["", "[[rule]]", "[[allow]]", "[[deny]]", "[[network]]"]
        .iter()
        .map(|t| (t.to_string(), keys_accepted(t)))
        .collect()
}

/// The shipped file with every example setting ("#key = ..." and "#[[...]]",
/// no space after the #) uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_config_names_every_key_commented_out_and_means_the_defaults() {
    let path = packaging("kvmnet.toml");
    let text = read_text(&path);
    assert!(text.len() < 64 * 1024);

    // Every key, as a commented-out example setting.
    for (table, keys) in all_keys() {
        if !table.is_empty() {
            let header = format!("#{table}");
            assert!(
                text.lines().any(|l| l == header),
                "{} lacks a commented-out {table} example",
                path.display()
            );
        }
        for key in keys {
            if table.is_empty() && matches!(key.as_str(), "allow" | "deny" | "rule" | "network") {
                continue; // the tables themselves, checked above
            }
            let line = format!("#{key} = ");
            assert!(
                text.lines().any(|l| l.starts_with(&line)),
                "{} has no commented-out `{key}` ({})",
                path.display(),
                if table.is_empty() {
                    "top level"
                } else {
                    &table
                }
            );
        }
    }

    // As shipped: nothing active, so exactly the built-in defaults.
    let shipped = Config::parse(&path, &text).expect("the shipped file parses");
    let defaults = Config::default();
    assert_eq!(shipped.defaults, defaults.defaults);
    assert_eq!(shipped.rules, defaults.rules);
    assert_eq!(shipped.acl, defaults.acl);
    assert_eq!(shipped.helper_tap, defaults.helper_tap);
    let active: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(active.is_empty(), "active lines: {active:?}");

    // The examples are valid: uncommented, they parse.
    let all = uncommented(&text);
    let parsed = Config::parse(&path, &all)
        .unwrap_or_else(|e| panic!("the uncommented examples do not parse: {e}\n{all}"));
    assert_eq!(parsed.rules.len(), 10, "the ten [[rule]] examples");
    assert_eq!(parsed.networks.len(), 1, "the [[network]] example");
    assert_eq!(
        parsed.acl.rules.len(),
        2,
        "the [[allow]] and [[deny]] examples"
    );
    assert!(parsed.defaults.bridge.is_some() && parsed.defaults.vlan.is_some());
}

#[test]
fn man_page_of_the_config_documents_every_key() {
    let path = packaging("man/kvmnet.toml.5.scd");
    let page = read_text(&path);
    for (table, keys) in all_keys() {
        if !table.is_empty() {
            assert!(
                page.contains(&format!("*{table}*")),
                "{} does not document {table}",
                path.display()
            );
        }
        for key in keys {
            let name = match key.as_str() {
                "allow" | "deny" | "rule" => format!("*[[{key}]]*"),
                "network" if table.is_empty() => format!("*[[{key}]]*"),
                _ => format!("*{key}*"),
            };
            assert!(
                page.contains(&name),
                "{} does not document `{key}` ({})",
                path.display(),
                if table.is_empty() {
                    "top level"
                } else {
                    &table
                }
            );
        }
    }
}

#[test]
fn sudoers_file_is_valid_and_grants_only_the_two_helpers() {
    let path = packaging("sudoers");
    let text = read_text(&path);
    let rules: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    let joined = rules.join("\n");
    assert!(joined.contains("%kvm ALL = (root) NOPASSWD: KVMNET_TAP_HELPERS"));
    for helper in ["kvmnet-ifup", "kvmnet-ifdown"] {
        assert!(
            joined.contains(&format!(
                "/usr/libexec/{helper} ^[A-Za-z0-9_.][A-Za-z0-9_.-]{{0,14}}$"
            )),
            "{helper} with one tap-name argument: {joined}"
        );
    }
    assert!(!joined.contains("bridge-helper") && !joined.contains("ALL,"));
    // visudo is the judge, where it is installed (sudo).
    let visudo = ["/usr/sbin/visudo", "/sbin/visudo"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match visudo {
        Some(v) => {
            let out = Command::new(v).arg("-cf").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "visudo -cf {}: {}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => visible(
            "SKIPPED visudo -cf packaging/sudoers: visudo is not installed (apt-get install sudo)",
        ),
    }
}

/// packaging/build checks every tool it needs before it runs any, and names
/// all the missing ones with the command that installs them, in one line: a
/// missing scdoc used to show only after the release build.
#[test]
fn build_names_missing_tools_before_running_any() {
    let tmp = common::TempDir::new();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["bash", "dirname", "sed"] {
        let real = which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let ran = tmp.path().join("ran");
    let build = |mode: &str| {
        sh(Command::new(packaging("build"))
            .arg(mode)
            .env("PATH", &bin)
            .stdin(Stdio::null()))
    };
    let debian = Path::new("/etc/debian_version").exists();
    let rust = format!(
        "Rust {} or newer (cargo) from https://rustup.rs",
        env!("CARGO_PKG_RUST_VERSION")
    );

    let out = build("all");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let tools = "cargo scdoc gzip strip dpkg-deb dpkg-shlibdeps rpmbuild";
    assert!(
        err.starts_with(&format!(
            "packaging/build: missing tools: {tools}; install: "
        )),
        "{err}"
    );
    if debian {
        assert_eq!(
            err.trim_end(),
            format!(
                "packaging/build: missing tools: {tools}; install: apt-get install \
                 --no-install-recommends scdoc gzip binutils dpkg dpkg-dev rpm; {rust}"
            )
        );
    }

    // All there but scdoc: the others (stubs that record a run) must not run,
    // cargo above all.
    for tool in ["cargo", "gzip", "strip", "dpkg-deb", "dpkg-shlibdeps"] {
        let stub = bin.join(tool);
        std::fs::write(
            &stub,
            format!("#!/bin/sh\necho {tool} >>'{}'\nexit 1\n", ran.display()),
        )
        .unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = build("deb");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = if debian {
        "packaging/build: missing tools: scdoc; install: apt-get install --no-install-recommends scdoc\n"
    } else {
        "packaging/build: missing tools: scdoc; install: dnf install scdoc\n"
    };
    assert_eq!(err, want);
    assert!(
        !ran.exists(),
        "packaging/build ran {} before naming the missing scdoc",
        read_text(&ran).trim()
    );
}

#[test]
fn rpm_spec_has_the_crate_version() {
    let spec = read_text(&packaging("rpm/kvmnet.spec"));
    let version = spec
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(str::trim)
        .expect("a Version: line");
    assert_eq!(
        version,
        env!("CARGO_PKG_VERSION"),
        "packaging/rpm/kvmnet.spec Version must follow Cargo.toml: update it and add a %changelog entry"
    );
    let first_entry = spec
        .lines()
        .skip_while(|l| *l != "%changelog")
        .nth(1)
        .unwrap_or("");
    assert!(
        first_entry.ends_with(&format!(" - {version}-1")),
        "the first %changelog entry must be for {version}-1: {first_entry}"
    );
}

/// Written straight to the terminal, past libtest's output capture: a skip
/// must be seen, not only counted as a pass.
fn visible(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

// ---------------------------------------------------------------------------
// The install test (KVMNET_PACKAGING_TESTS=1 only).
// ---------------------------------------------------------------------------

#[test]
#[ignore = "installs the .deb into THIS machine: run by .ci/packaging (KVMNET_PACKAGING_TESTS=1, --include-ignored)"]
fn deb_installs_upgrades_and_purges_cleanly_on_this_machine() {
    // Ignored by a plain `cargo test`, so it is reported as not run, never as
    // passed; run without the gate it refuses instead of skipping.
    assert_eq!(
        std::env::var(GATE).as_deref(),
        Ok("1"),
        "this test installs the kvmnet .deb into THIS machine, diverts /etc/qemu-ifup, creates \
         user {USER} and reinstalls qemu-system-common; set {GATE}=1 to allow it (.ci/packaging does)"
    );
    let started = Instant::now();
    let mut m = Machine::preflight();
    let tmp = common::TempDir::new();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |what: &'static str, timings: &mut Vec<(&str, Duration)>| {
        timings.push((what, lap.elapsed()));
        lap = Instant::now();
    };

    let deb = build_deb(&tmp.path().join("build1"), "1");
    mark("build .deb", &mut timings);

    // qemu-system-common first (as it is now), then kvmnet.
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(
        out.contains("diversion of /etc/qemu-ifup to /etc/qemu-ifup.distrib by kvmnet"),
        "{out}"
    );
    m.installed = true;
    assert_installed(&m, Some(&m.orig_ifup));
    verify_all_packages();
    assert_eq!(
        read_text(Path::new("/etc/kvmnet/kvmnet.toml")),
        read_text(&packaging("kvmnet.toml"))
    );
    assert_eq!(
        cmd_ok(Command::new("/usr/bin/kvmnet").arg("--version")).trim(),
        format!("kvmnet {}", env!("CARGO_PKG_VERSION"))
    );
    let check = sh(Command::new("/usr/bin/kvmnet").arg("check"));
    eprintln!(
        "kvmnet check on this host after the install (for the record, not asserted; exit {:?}):\n{}{}",
        check.status.code(),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    mark("install", &mut timings);

    // QEMU with no script=: /etc/qemu-ifup, the shipped config (no bridge:
    // Debian's default-route rule), one syslog line.
    let mut lab = Lab::new(tmp.path());
    let lease = lab.qemu_default_script();
    mark("QEMU via /etc/qemu-ifup", &mut timings);

    // An unprivileged member of group kvm through the sudo rule; the ACL is
    // the admin's edit of the conffile.
    let edited = format!(
        "{}\n# added by tests/packaging.rs\n[[allow]]\ngroups = [\"kvm\"]\nbridges = [\"br0\"]\n",
        read_text(Path::new("/etc/kvmnet/kvmnet.toml"))
    );
    std::fs::write("/etc/kvmnet/kvmnet.toml", &edited).unwrap();
    m.create_user();
    lab.sudo_rule(&m);
    let helper_lease = lab.qemu_bridge_helper_as_user(&m);
    // `kvmnet check` as that member of kvm, who cannot read the 0440 sudo
    // rule, and as root, who can; asserted at the end (check_findings), so
    // that the package's own steps all run first.
    let check_as_member = lab.kvmnet_check(m.user);
    let check_as_root = lab.kvmnet_check(None);
    mark(
        "sudo rule + bridge helper + kvmnet check as user",
        &mut timings,
    );

    // Upgrade to the same code rebuilt as revision 2, then reinstall that
    // same version: the edited conffile stays, and postinst gives the bridge
    // helper its capability again. The upgrade runs where setcap fails (as
    // on a filesystem without xattrs): the setuid fallback.
    let deb2 = build_deb(&tmp.path().join("build2"), "2");
    let fakebin = tmp.path().join("fakebin");
    std::fs::create_dir_all(&fakebin).unwrap();
    let fake_setcap = fakebin.join("setcap");
    std::fs::write(
        &fake_setcap,
        "#!/bin/sh\necho \"Failed to set capabilities on file '$2' (Operation not supported)\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake_setcap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        fakebin.display()
    );
    let out = run_dpkg("dpkg", &["-i", deb2.to_str().unwrap()], &[("PATH", &path)]);
    assert!(out.contains("making it setuid root instead"), "{out}");
    let helper = Path::new(HELPERS[2]);
    assert_eq!(mode(helper), 0o4755, "setuid fallback");
    assert_eq!(getcap(helper), "", "no capability on the fallback");
    assert_eq!(read_text(Path::new("/etc/kvmnet/kvmnet.toml")), edited);
    // the same version built again: dpkg's reinstall path
    let deb2 = build_deb(&tmp.path().join("build3"), "2");
    let out = dpkg(&["-i", deb2.to_str().unwrap()]);
    assert!(!out.contains("setuid root instead"), "{out}");
    assert_installed(&m, Some(&m.orig_ifup));
    assert_eq!(
        read_text(Path::new("/etc/kvmnet/kvmnet.toml")),
        edited,
        "the upgrade kept the edited conffile"
    );
    mark(
        "upgrade -1 to -2 (setuid fallback), the rebuilt -2 over it",
        &mut timings,
    );

    // The admin's opt-ins, as kvmnet-ifup(8) documents them: a statoverride
    // makes ifup setuid root for group kvm (dpkg applies it at every
    // unpack); one on the bridge helper keeps its mode and still gets the
    // capability.
    let kvm_gid: u32 = group_line("kvm")
        .and_then(|l| l.split(':').nth(2).and_then(|g| g.parse().ok()))
        .expect("group kvm");
    for (mode_str, path) in [("4754", HELPERS[0]), ("0750", HELPERS[2])] {
        cmd_ok(
            Command::new("dpkg-statoverride")
                .args(["--update", "--add", "root", "kvm", mode_str, path]),
        );
        m.overrides.push(path);
    }
    dpkg(&["-i", deb2.to_str().unwrap()]);
    let ifup = std::fs::metadata(HELPERS[0]).unwrap();
    assert_eq!(
        (ifup.uid(), ifup.gid(), ifup.mode() & 0o7777),
        (0, kvm_gid, 0o4754)
    );
    let bh = std::fs::metadata(HELPERS[2]).unwrap();
    assert_eq!(
        (bh.uid(), bh.gid(), bh.mode() & 0o7777),
        (0, kvm_gid, 0o750)
    );
    assert_eq!(getcap(Path::new(HELPERS[2])), "cap_net_admin=ep");
    for path in std::mem::take(&mut m.overrides) {
        cmd_ok(Command::new("dpkg-statoverride").args(["--remove", path]));
    }
    dpkg(&["-i", deb2.to_str().unwrap()]);
    assert_installed(&m, Some(&m.orig_ifup));
    mark("dpkg-statoverride opt-ins", &mut timings);

    // qemu-system-common reinstalled while kvmnet is there: no prompt, and
    // /etc/qemu-ifup stays kvmnet's.
    run_dpkg(
        "apt-get",
        &[
            "-o",
            "DPkg::Lock::Timeout=120",
            "install",
            "--reinstall",
            "-y",
            "qemu-system-common",
        ],
        &[],
    );
    assert_installed(&m, Some(&m.orig_ifup));
    assert_eq!(
        cmd_ok(Command::new("dpkg").args(["-V", "qemu-system-common"])),
        ""
    );
    mark(
        "apt-get install --reinstall qemu-system-common",
        &mut timings,
    );

    // A qemu upgrade that changes /etc/qemu-ifup: dpkg installs the new
    // version at the diverted name, without asking; then back.
    let (fake, fake_ifup) = m.repacked_qemu(tmp.path());
    let out = dpkg(&["-i", fake.to_str().unwrap()]);
    assert!(
        out.contains("Installing new version of config file /etc/qemu-ifup.distrib"),
        "{out}"
    );
    assert_installed(&m, Some(&fake_ifup));
    dpkg(&["-i", m.qemu_deb.to_str().unwrap()]);
    assert_installed(&m, Some(&m.orig_ifup));
    mark(
        "qemu upgrade with a changed conffile, and back",
        &mut timings,
    );

    // Removal gives Debian's scripts back, byte for byte; purge the rest.
    dpkg(&["-r", "kvmnet"]);
    assert_removed(&m, true);
    dpkg(&["-P", "kvmnet"]);
    m.installed = false;
    assert_removed(&m, false);
    mark("dpkg -r, dpkg -P", &mut timings);

    // Earlier packages shipped the two links as package files, which is
    // what made `dpkg -V` report qemu's conffiles as modified: the upgrade
    // from such a package must end with postinst's links and a clean
    // `dpkg -V`. Then an admin's own script in place of a link: kept on
    // reinstall, and set aside (not lost) when kvmnet goes.
    legacy_upgrade_and_admin_script(&mut m, &deb, tmp.path());
    mark(
        "upgrade from links as package files; an admin's own script",
        &mut timings,
    );

    // kvmnet first, then qemu-system-common.
    dpkg(&["--purge", "--force-depends", "qemu-system-common"]);
    m.qemu_purged = true;
    assert!(!exists("/etc/qemu-ifup") && !exists("/etc/qemu-ifdown"));
    dpkg(&["-i", deb2.to_str().unwrap()]);
    m.installed = true;
    assert_installed(&m, None);
    let out = dpkg(&["-i", m.qemu_deb.to_str().unwrap()]);
    m.qemu_purged = false;
    assert!(!out.contains("Configuration file"), "{out}");
    assert_installed(&m, Some(&m.orig_ifup));
    verify_all_packages();
    dpkg(&["-r", "kvmnet"]);
    assert_removed(&m, true);
    dpkg(&["-P", "kvmnet"]);
    m.installed = false;
    assert_removed(&m, false);
    mark("kvmnet first, then qemu-system-common", &mut timings);

    drop(lab);
    m.cleanup();
    m.assert_restored();
    mark("clean-up", &mut timings);
    let summary: Vec<String> = timings
        .iter()
        .map(|(w, d)| format!("{w} {:.1} s", d.as_secs_f64()))
        .collect();
    visible(&format!(
        "packaging install test: the package's steps passed in {:.1} s: {}; guest lease {lease} \
         via /etc/qemu-ifup, {helper_lease} via kvmnet-bridge-helper as {USER}",
        started.elapsed().as_secs_f64(),
        summary.join(", ")
    ));
    check_findings(&check_as_member, &check_as_root);
}

/// From a package that shipped /etc/qemu-ifup and /etc/qemu-ifdown as
/// package files (symlinks) to this one; then an admin's own
/// /etc/qemu-ifdown through a reinstall and the removal. Starts and ends
/// with kvmnet purged and qemu-system-common installed.
fn legacy_upgrade_and_admin_script(m: &mut Machine, deb: &Path, dir: &Path) {
    let legacy = legacy_deb(deb, dir);
    dpkg(&["-i", legacy.to_str().unwrap()]);
    m.installed = true;
    // What this test's dpkg -V checks catch: the legacy shape fails them.
    let out = cmd_ok(Command::new("dpkg").args(["-V", "qemu-system-common", "kvmnet"]));
    assert!(
        out.contains(" c /etc/qemu-ifup\n"),
        "dpkg -V no longer reports the links of the legacy package as qemu's modified \
         conffiles: has dpkg stopped sharing conffile hashes between packages (verify.c)? \
         Then this check and the reason postinst makes the links need a new look. {out}"
    );
    // dpkg removes the links the new version does not ship; postinst
    // makes them again.
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert_installed(m, Some(&m.orig_ifup));

    std::fs::remove_file("/etc/qemu-ifdown").unwrap();
    std::fs::write("/etc/qemu-ifdown", ADMIN_SCRIPT).unwrap();
    m.admin_script = true;
    let out = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(
        out.contains("/etc/qemu-ifdown is not kvmnet's link to /usr/libexec/kvmnet-ifdown"),
        "{out}"
    );
    assert_eq!(std::fs::read("/etc/qemu-ifdown").unwrap(), ADMIN_SCRIPT);
    assert_eq!(
        std::fs::read_link("/etc/qemu-ifup").unwrap(),
        Path::new(HELPERS[0])
    );
    assert_verify_clean();
    let out = dpkg(&["-r", "kvmnet"]);
    assert!(
        out.contains(&format!("kept as {ADMIN_SCRIPT_KEPT}")),
        "{out}"
    );
    assert_removed(m, true);
    assert_eq!(std::fs::read(ADMIN_SCRIPT_KEPT).unwrap(), ADMIN_SCRIPT);
    std::fs::remove_file(ADMIN_SCRIPT_KEPT).unwrap();
    m.admin_script = false;
    dpkg(&["-P", "kvmnet"]);
    m.installed = false;
    assert_removed(m, false);
}

/// This build's .deb repacked as version -0 with the two links as package
/// files, as packages were built before postinst made them.
fn legacy_deb(deb: &Path, dir: &Path) -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    repack(
        deb,
        &dir.join("legacy"),
        (&format!("{version}-1"), &format!("{version}-0")),
        |root| {
            std::os::unix::fs::symlink(HELPERS[0], root.join("etc/qemu-ifup")).unwrap();
            std::os::unix::fs::symlink(HELPERS[1], root.join("etc/qemu-ifdown")).unwrap();
        },
    )
}

/// `deb` unpacked into `dir`, its version changed (`from`, `to`), its file
/// tree changed by `edit`, and built again as `dir`.deb.
fn repack(deb: &Path, dir: &Path, (from, to): (&str, &str), edit: impl FnOnce(&Path)) -> PathBuf {
    cmd_ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(dir));
    let control = dir.join("DEBIAN/control");
    let text = read_text(&control);
    let old = format!("Version: {from}\n");
    assert!(text.contains(&old), "{}: {text}", deb.display());
    std::fs::write(&control, text.replace(&old, &format!("Version: {to}\n"))).unwrap();
    edit(dir);
    let out = dir.with_extension("deb");
    cmd_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Znone", "-b"])
            .arg(dir)
            .arg(&out),
    );
    out
}

/// `kvmnet check` by a member of kvm, who cannot read the 0440 sudo rule,
/// says so instead of reporting the rule missing; root, who reads it, does
/// not report it missing either.
fn check_findings(member: &Output, root: &Output) {
    // About the shipped rule or the two helpers it is for (the bridge
    // helper has no sudo rule by design), a rule said to be absent.
    let false_finding = |l: &&str| {
        (l.contains("sudoers.d/kvmnet") || l.contains("kvmnet-ifup") || l.contains("kvmnet-ifdown"))
            && (l.contains("missing")
                || l.contains("no sudo rule")
                || l.contains("nor a sudo rule")
                || l.contains("users cannot run"))
    };
    for (who, out) in [("a member of kvm", member), ("root", root)] {
        let all = text(out);
        let wrong: Vec<&str> = all.lines().filter(false_finding).collect();
        assert!(
            wrong.is_empty(),
            "kvmnet check as {who} calls the shipped sudo rule missing:\n{}\n\nall of it:\n{all}",
            wrong.join("\n")
        );
    }
    let all = text(member);
    assert!(
        all.lines()
            .any(|l| l.contains("cannot read /etc/sudoers.d/kvmnet")),
        "kvmnet check as a member of kvm must say that it cannot read /etc/sudoers.d/kvmnet \
         (root's, 0440) and that root can check it:\n{all}"
    );
}

// ---- the machine: what the test changes, and putting it back ----

struct Machine {
    orig_ifup: Vec<u8>,
    orig_ifdown: Vec<u8>,
    orig_diversions: String,
    orig_kvm_group: String,
    qemu_version: String,
    qemu_deb: PathBuf,
    _download: common::TempDir,
    installed: bool,
    qemu_purged: bool,
    /// dpkg-statoverride entries the test added (they outlive a purge).
    overrides: Vec<&'static str>,
    /// The test user's uid and primary gid, once created.
    user: Option<(u32, u32)>,
    created_kvm_group: bool,
    /// The test put its own script at /etc/qemu-ifdown (kvmnet's postrm
    /// keeps it as /etc/qemu-ifdown.dpkg-old).
    admin_script: bool,
    cleaned: bool,
}

impl Machine {
    fn preflight() -> Machine {
        assert!(
            nix::unistd::geteuid().is_root(),
            "{GATE}=1 but not root: the install test needs root (sudo -E)"
        );
        for tool in [
            "dpkg-deb",
            "dpkg-shlibdeps",
            "scdoc",
            "apt-get",
            "sudo",
            "visudo",
            "setcap",
            "getcap",
            "useradd",
            "userdel",
            "gpasswd",
            "setpriv",
            "unshare",
            "qemu-system-x86_64",
            "dnsmasq",
        ] {
            assert!(
                which(tool).is_some(),
                "{tool} is missing: apt-get install dpkg-dev scdoc sudo libcap2-bin passwd \
                 util-linux qemu-system-x86 ipxe-qemu dnsmasq-base"
            );
        }
        assert_eq!(
            status("kvmnet"),
            "",
            "kvmnet is installed (or half-installed) here, and this test would purge it: \
             remove it first (dpkg -P kvmnet)"
        );
        assert_eq!(
            status("qemu-system-common"),
            "ii ",
            "qemu-system-common must be installed (apt-get install qemu-system-x86)"
        );
        let diversions = cmd_ok(Command::new("dpkg-divert").arg("--list"));
        assert!(
            !diversions.contains("/etc/qemu-if"),
            "/etc/qemu-ifup or -ifdown is diverted already: {diversions}"
        );
        assert!(
            !exists(ADMIN_SCRIPT_KEPT),
            "{ADMIN_SCRIPT_KEPT} exists, and this test would overwrite it: move it away first"
        );
        if let Some(line) = passwd_line(USER) {
            assert!(
                line.contains(USER_COMMENT),
                "user {USER} exists and is not this test's: {line}"
            );
            visible(&format!("removing {USER}, left over from an earlier run"));
            sh(Command::new("userdel").arg(USER));
        }
        let qemu_version =
            cmd_ok(Command::new("dpkg-query").args(["-W", "-f=${Version}", "qemu-system-common"]));
        // The exact installed version, to put it back after the test
        // replaced and purged it.
        let download = common::TempDir::new();
        std::fs::set_permissions(download.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = sh(Command::new("apt-get")
            .args(["download", &format!("qemu-system-common={qemu_version}")])
            .current_dir(download.path())
            .stdin(Stdio::null()));
        let qemu_deb = std::fs::read_dir(download.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .unwrap_or_else(|| {
                panic!(
                    "cannot download qemu-system-common={qemu_version}, needed to put it back \
                     afterwards (apt-get update?): {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        Machine {
            orig_ifup: std::fs::read("/etc/qemu-ifup").expect("Debian's /etc/qemu-ifup"),
            orig_ifdown: std::fs::read("/etc/qemu-ifdown").expect("Debian's /etc/qemu-ifdown"),
            orig_diversions: diversions,
            orig_kvm_group: group_line("kvm").unwrap_or_default(),
            qemu_version,
            qemu_deb,
            _download: download,
            installed: false,
            qemu_purged: false,
            overrides: Vec::new(),
            user: None,
            created_kvm_group: false,
            admin_script: false,
            cleaned: false,
        }
    }

    fn create_user(&mut self) {
        if group_line("kvm").is_none() {
            cmd_ok(Command::new("groupadd").args(["--system", "kvm"]));
            self.created_kvm_group = true;
        }
        cmd_ok(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--groups",
            "kvm",
            "--comment",
            USER_COMMENT,
            USER,
        ]));
        let id = |flag: &str| -> u32 {
            cmd_ok(Command::new("id").args([flag, USER]))
                .trim()
                .parse()
                .unwrap()
        };
        self.user = Some((id("-u"), id("-g")));
    }

    /// qemu-system-common's .deb again, as version +kvmnettest1 with one more
    /// line in /etc/qemu-ifup: an upgrade that changes the conffile.
    fn repacked_qemu(&self, dir: &Path) -> (PathBuf, Vec<u8>) {
        let mut ifup = self.orig_ifup.clone();
        ifup.extend_from_slice(b"# a new upstream version (tests/packaging.rs)\n");
        let deb = repack(
            &self.qemu_deb,
            &dir.join("qemu-repack"),
            (
                &self.qemu_version,
                &format!("{}+kvmnettest1", self.qemu_version),
            ),
            |root| std::fs::write(root.join("etc/qemu-ifup"), &ifup).unwrap(),
        );
        (deb, ifup)
    }

    /// Best effort, in order, each step only if needed; also runs on drop.
    fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        for path in std::mem::take(&mut self.overrides) {
            let out = sh(Command::new("dpkg-statoverride").args(["--remove", path]));
            report("dpkg-statoverride --remove", &out);
        }
        if self.installed || !status("kvmnet").is_empty() {
            let out = sh(Command::new("dpkg")
                .args(["--purge", "kvmnet"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null()));
            report("dpkg --purge kvmnet", &out);
        }
        let version =
            cmd_out(Command::new("dpkg-query").args(["-W", "-f=${Version}", "qemu-system-common"]));
        if self.qemu_purged || status("qemu-system-common") != "ii " || version != self.qemu_version
        {
            let out = sh(Command::new("dpkg")
                .arg("-i")
                .arg(&self.qemu_deb)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null()));
            report("reinstall qemu-system-common", &out);
        }
        if self.admin_script {
            self.admin_script = false;
            if std::fs::read(ADMIN_SCRIPT_KEPT).is_ok_and(|b| b == ADMIN_SCRIPT) {
                let _ = std::fs::remove_file(ADMIN_SCRIPT_KEPT);
            }
        }
        if self.user.take().is_some() || passwd_line(USER).is_some() {
            report("userdel", &sh(Command::new("userdel").arg(USER)));
            let _ = std::fs::remove_file(format!("/run/sudo/ts/{USER}"));
        }
        if self.created_kvm_group {
            report("groupdel kvm", &sh(Command::new("groupdel").arg("kvm")));
        }
    }

    fn assert_restored(&self) {
        assert_eq!(status("kvmnet"), "", "kvmnet is gone");
        assert_eq!(status("qemu-system-common"), "ii ");
        assert_eq!(
            cmd_out(Command::new("dpkg-query").args(["-W", "-f=${Version}", "qemu-system-common"])),
            self.qemu_version
        );
        for (p, want) in [
            ("/etc/qemu-ifup", &self.orig_ifup),
            ("/etc/qemu-ifdown", &self.orig_ifdown),
        ] {
            assert_eq!(&std::fs::read(p).unwrap(), want, "{p} is Debian's again");
            assert_eq!(mode(Path::new(p)), 0o755);
        }
        assert_eq!(
            cmd_ok(Command::new("dpkg").args(["-V", "qemu-system-common"])),
            ""
        );
        assert_eq!(cmd_ok(Command::new("dpkg").arg("--audit")), "");
        assert_eq!(
            cmd_ok(Command::new("dpkg-divert").arg("--list")),
            self.orig_diversions
        );
        assert!(
            !cmd_out(Command::new("dpkg-statoverride").arg("--list")).contains("kvmnet"),
            "no statoverride left"
        );
        assert!(passwd_line(USER).is_none(), "user {USER} removed");
        assert_eq!(group_line("kvm").unwrap_or_default(), self.orig_kvm_group);
        for gone in [
            "/etc/kvmnet",
            "/etc/sudoers.d/kvmnet",
            "/etc/qemu-ifup.distrib",
            "/etc/qemu-ifdown.distrib",
            ADMIN_SCRIPT_KEPT,
        ] {
            assert!(!exists(gone), "{gone} is gone");
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.cleaned {
            visible("packaging test: putting the machine back after a failure");
            self.cleanup();
        }
    }
}

fn report(what: &str, out: &Output) {
    if !out.status.success() {
        visible(&format!(
            "clean-up: {what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

// ---- what an installed (or removed) package looks like ----

/// Installed: files, owners, modes, capability, diversions, the sudo rule.
/// `distrib`: what /etc/qemu-ifup.distrib must hold (None: no qemu package).
fn assert_installed(m: &Machine, distrib: Option<&Vec<u8>>) {
    assert_eq!(status("kvmnet"), "ii ");
    for p in HELPERS.iter().chain(&["/usr/bin/kvmnet"]) {
        let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(md.is_file(), "{p} is a file");
        assert_eq!((md.uid(), md.gid()), (0, 0), "{p} is root's");
        assert_eq!(md.mode() & 0o7777, 0o755, "{p} mode");
    }
    assert_eq!(getcap(Path::new(HELPERS[2])), "cap_net_admin=ep");
    assert_eq!(getcap(Path::new(HELPERS[0])), "", "ifup stays plain");
    assert_eq!(getcap(Path::new(HELPERS[1])), "", "ifdown stays plain");
    for (link, target) in [
        ("/etc/qemu-ifup", HELPERS[0]),
        ("/etc/qemu-ifdown", HELPERS[1]),
    ] {
        assert_eq!(
            std::fs::read_link(link).unwrap_or_else(|e| panic!("{link}: {e}")),
            Path::new(target)
        );
        assert_eq!(
            cmd_ok(Command::new("dpkg-divert").args(["--listpackage", link])).trim(),
            "kvmnet"
        );
        let diverted = format!("{link}.distrib");
        let want = match (distrib, link) {
            (None, _) => None,
            (Some(up), "/etc/qemu-ifup") => Some(up.clone()),
            (Some(_), _) => Some(m.orig_ifdown.clone()),
        };
        assert_eq!(std::fs::read(&diverted).ok(), want, "{diverted}");
    }
    for (p, mode_want) in [
        ("/etc/kvmnet/kvmnet.toml", 0o644),
        ("/etc/sudoers.d/kvmnet", 0o440),
    ] {
        let md = std::fs::metadata(p).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (0, 0, mode_want),
            "{p}"
        );
    }
    cmd_ok(Command::new("visudo").args(["-cf", "/etc/sudoers.d/kvmnet"]));
    cmd_ok(Command::new("visudo").arg("-c"));
    let conffiles = cmd_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "kvmnet"]));
    let names: Vec<&str> = conffiles
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["/etc/kvmnet/kvmnet.toml", "/etc/sudoers.d/kvmnet"]);
    for page in MAN_PAGES {
        cmd_ok(Command::new("gzip").args(["-t", page]));
    }
    for c in COMPLETIONS {
        assert!(std::fs::metadata(c).unwrap().len() > 0, "{c}");
    }
    let unit = read_text(Path::new(UNIT));
    assert!(
        unit.contains("ExecStart=/usr/bin/kvmnet net up %i"),
        "{unit}"
    );
    assert_verify_clean();
}

/// What `dpkg -V` may say about kvmnet's files: nothing but, after the
/// admin's edit, the config (also while kvmnet is removed but not purged).
fn verify_expected() -> String {
    let conf = Path::new("/etc/kvmnet/kvmnet.toml");
    let edited = conf.exists() && read_text(conf) != read_text(&packaging("kvmnet.toml"));
    if edited {
        "??5?????? c /etc/kvmnet/kvmnet.toml\n".to_owned()
    } else {
        String::new()
    }
}

/// `dpkg -V` for kvmnet and qemu-system-common, in both orders. dpkg verifies
/// packages one after another with one table of path names: a path both
/// packages list gets qemu's conffile hash, and after qemu's turn kvmnet's
/// link there is checked against it (`?M5?????? c /etc/qemu-ifup`, what the
/// packages that shipped the links printed). One order is what a plain
/// `dpkg -V` does, depending on dpkg's hash order: both are checked.
fn assert_verify_clean() {
    let want = verify_expected();
    let qemu = status("qemu-system-common") == "ii ";
    let kvmnet = !status("kvmnet").is_empty();
    let runs: Vec<Vec<&str>> = match (kvmnet, qemu) {
        (true, true) => vec![
            vec!["kvmnet", "qemu-system-common"],
            vec!["qemu-system-common", "kvmnet"],
        ],
        (true, false) => vec![vec!["kvmnet"]],
        (false, true) => vec![vec!["qemu-system-common"]],
        (false, false) => vec![],
    };
    for pkgs in runs {
        let out = cmd_ok(Command::new("dpkg").arg("-V").args(&pkgs));
        let want = if kvmnet { want.as_str() } else { "" };
        assert_eq!(out, want, "dpkg -V {}", pkgs.join(" "));
    }
}

/// `dpkg -V` of every package, as an admin runs it: nothing about kvmnet's
/// files, the diverted paths or Debian's scripts but `verify_expected`. The
/// machine's other packages may report their own files.
fn verify_all_packages() {
    let out = sh(Command::new("dpkg").arg("-V").stdin(Stdio::null()));
    let ours: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("kvmnet") || l.contains("/etc/qemu-if"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(ours, verify_expected(), "dpkg -V (all packages)");
}

/// After `dpkg -r` (`conffiles_left`) or `dpkg -P`.
fn assert_removed(m: &Machine, conffiles_left: bool) {
    assert_eq!(status("kvmnet"), if conffiles_left { "rc " } else { "" });
    for p in HELPERS
        .iter()
        .chain(&["/usr/bin/kvmnet"])
        .chain(&MAN_PAGES)
        .chain(&COMPLETIONS)
        .chain(&[UNIT, "/usr/share/doc/kvmnet", "/etc/qemu-ifup.distrib"])
    {
        assert!(!exists(p), "{p} is gone");
    }
    for (p, want) in [
        ("/etc/qemu-ifup", &m.orig_ifup),
        ("/etc/qemu-ifdown", &m.orig_ifdown),
    ] {
        let md = std::fs::symlink_metadata(p).unwrap();
        assert!(md.is_file(), "{p} is Debian's file again");
        assert_eq!(&std::fs::read(p).unwrap(), want, "{p} byte for byte");
        assert_eq!(md.mode() & 0o7777, 0o755);
        assert_eq!(
            cmd_ok(Command::new("dpkg-divert").args(["--listpackage", p])),
            "",
            "{p} no longer diverted"
        );
    }
    for p in ["/etc/kvmnet/kvmnet.toml", "/etc/sudoers.d/kvmnet"] {
        assert_eq!(exists(p), conffiles_left, "{p}");
    }
    assert!(conffiles_left || !exists("/etc/kvmnet"));
    assert_verify_clean();
}

// ---- the network lab: QEMU, dnsmasq, syslog ----

const BRIDGE: &str = "br0";
const LEASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Field order is drop order: processes die first (killed and reaped).
struct Lab {
    procs: Vec<Proc>,
    dir: PathBuf,
    ns: common::Netns,
    qemu: PathBuf,
}

impl Lab {
    /// br0 (10.77.0.1/24) carrying the namespace's default route, dnsmasq on it.
    fn new(tmp: &Path) -> Lab {
        let dir = tmp.join("lab");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ns = common::Netns::new();
        ns.ip_batch(&format!(
            "link add {BRIDGE} type bridge\n\
             link set {BRIDGE} address 02:00:00:00:00:01 up\n\
             addr add 10.77.0.1/24 dev {BRIDGE}\n\
             route add default via 10.77.0.254 dev {BRIDGE}\n"
        ));
        let mut lab = Lab {
            procs: Vec::new(),
            qemu: which("qemu-system-x86_64").unwrap(),
            dir,
            ns,
        };
        let d = lab.dir.clone();
        let child = lab
            .ns
            .cmd(which("dnsmasq").unwrap().to_str().unwrap())
            .args(DNSMASQ_ARGS)
            .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
            .arg(format!(
                "--log-facility={}",
                d.join("dnsmasq.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(File::create(d.join("dnsmasq.err")).unwrap())
            .spawn()
            .expect("dnsmasq");
        lab.procs.push(Proc(child));
        let ready = poll(Duration::from_secs(10), || {
            std::fs::read_to_string(d.join("dnsmasq.log"))
                .ok()
                .filter(|l| l.contains("sockets bound exclusively to interface br0"))
        });
        assert!(
            ready.is_some(),
            "dnsmasq did not start: {}",
            lab.file("dnsmasq.err")
        );
        lab
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Runs QEMU in the namespace inside a private mount namespace whose
    /// /dev is fresh (with a 0666 /dev/net/tun, the distributions' mode) and
    /// whose /dev/log is a socket this test reads: kvmnet's syslog lines.
    /// `user`: QEMU's uid/gid (None: root). Waits for the guest's lease and
    /// stops QEMU (SIGTERM, which runs the downscript); returns the lease and
    /// the syslog lines.
    fn boot(&mut self, mac: &str, netdev: &str, user: Option<(u32, u32)>) -> (String, Vec<String>) {
        let sock_path = self.dir.join(format!("log-{}", mac.replace(':', "")));
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop) = (lines.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                        lines.lock().unwrap().push(line);
                    }
                }
            })
        };
        let creds = match user {
            None => String::new(),
            Some((uid, gid)) => format!("setpriv --reuid={uid} --regid={gid} --init-groups --"),
        };
        let script = format!(
            r#"set -e
mount -t tmpfs -o mode=755 kvmnet-pkgtest-dev /dev
for n in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
    IFS=: read name maj min <<EOF
$n
EOF
    mknod -m 666 /dev/$name c $maj $min
done
mkdir /dev/net && mknod -m 666 /dev/net/tun c 10 200
touch /dev/log && mount --bind "$0" /dev/log
exec ip netns exec "$1" {creds} "$2" -machine q35,accel=tcg -m 128 -nodefaults -no-user-config \
    -display none -serial none -monitor none -boot n -netdev "$3" \
    -device virtio-net-pci,netdev=n0,mac="$4""#
        );
        let err = self.dir.join(format!("qemu-{}.err", mac.replace(':', "")));
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(&sock_path)
            .args([&self.ns.name, self.qemu.to_str().unwrap(), netdev, mac])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("QEMU");
        let qemu_err = || std::fs::read_to_string(&err).unwrap_or_default();
        let lease = poll(LEASE_TIMEOUT, || {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({st}) before the guest got a lease:\n{}",
                    qemu_err()
                );
            }
            acked_ip(&self.file("dnsmasq.log"), mac)
        });
        let lease = lease.unwrap_or_else(|| {
            panic!(
                "no DHCP lease for {mac} within {LEASE_TIMEOUT:?}; br0 ports {:?}\nQEMU:\n{}\n\
                 syslog: {:?}\ndnsmasq:\n{}",
                self.ns.ports(BRIDGE),
                qemu_err(),
                lines.lock().unwrap(),
                self.file("dnsmasq.log")
            )
        });
        let ports = self.ns.ports(BRIDGE);
        cmd_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        let exited = poll(Duration::from_secs(30), || child.try_wait().unwrap());
        assert!(exited.is_some(), "QEMU ignored SIGTERM");
        // the downscript's line may trail QEMU's exit by a moment
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap();
        let stderr = qemu_err();
        assert!(
            !stderr.contains("failed"),
            "QEMU reported a failure: {stderr}"
        );
        assert_eq!(ports.len(), 1, "one tap on br0 while QEMU ran: {ports:?}");
        assert!(self.ns.ports(BRIDGE).is_empty(), "no port left after QEMU");
        let lines = lines.lock().unwrap().clone();
        (lease, lines)
    }

    fn qemu_default_script(&mut self) -> String {
        let mac = "52:54:00:6b:76:01";
        let (lease, lines) = self.boot(mac, "tap,id=n0", None);
        let ifup: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("kvmnet-ifup["))
            .collect();
        // the audit line before the first change, then the outcome
        assert_eq!(ifup.len(), 2, "two kvmnet-ifup lines: {lines:?}");
        assert!(
            ifup[0].contains("<30>") && ifup[0].contains("tap=tap0 user=0 result=starting"),
            "{}",
            ifup[0]
        );
        // <30>: facility daemon, severity info; Debian's rule picked br0
        for needle in ["<30>", "tap=tap0", "bridge=br0", "result=attached"] {
            assert!(ifup[1].contains(needle), "{needle} in {}", ifup[1]);
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("kvmnet-ifdown[") && l.contains("tap=tap0")),
            "QEMU ran /etc/qemu-ifdown: {lines:?}"
        );
        eprintln!(
            "syslog while QEMU ran with no script=:\n  {}",
            lines.join("\n  ")
        );
        lease
    }

    /// `sudo -n` as the test user, with the user's groups, in the namespace.
    fn sudo(&self, m: &Machine, argv: &[&str]) -> Output {
        let (uid, gid) = m.user.expect("the test user");
        sh(self
            .ns
            .cmd("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--init-groups",
                "--",
                "sudo",
                "-n",
            ])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    }

    fn sudo_rule(&self, m: &Machine) {
        let (uid, _) = m.user.unwrap();
        let tap = "kvmpkg0";
        let out = self.sudo(m, &[HELPERS[0], tap]);
        assert!(out.status.success(), "sudo kvmnet-ifup: {}", text(&out));
        let owner: u32 = self
            .ns
            .sys(&format!("/sys/class/net/{tap}/owner"))
            .parse()
            .unwrap();
        assert_eq!(owner, uid, "the tap belongs to the sudo user");
        assert_eq!(self.ns.ports(BRIDGE), [tap]);
        // Only a tap name, and only the two helpers.
        for argv in [
            vec![HELPERS[0], "kvmpkg1", "extra"],
            vec![HELPERS[0], "kvm pkg1"],
            // an option to kvmnet-ifup, and a name longer than the kernel's
            vec![HELPERS[0], "-x"],
            vec![HELPERS[0], "kvmpkg567890abcd"],
            vec![HELPERS[0]],
            vec![HELPERS[2], "--br=br0", "--fd=3"],
        ] {
            assert_sudo_refuses(&self.sudo(m, &argv), &argv);
        }
        // Only for members of group kvm: the same user, out of it for a moment.
        cmd_ok(Command::new("gpasswd").args(["--delete", USER, "kvm"]));
        let out = self.sudo(m, &[HELPERS[0], "kvmpkg1"]);
        cmd_ok(Command::new("gpasswd").args(["--add", USER, "kvm"]));
        assert_sudo_refuses(&out, &["(not in group kvm)", HELPERS[0], "kvmpkg1"]);
        assert!(!self.ns.exists("kvmpkg1"));
        let out = self.sudo(m, &[HELPERS[1], tap]);
        assert!(out.status.success(), "sudo kvmnet-ifdown: {}", text(&out));
        assert!(
            !self.ns.exists(tap),
            "kvmnet-ifdown deleted the tap it created"
        );
    }

    /// The installed `kvmnet check` in the namespace (br0 carries its default
    /// route), as `user` with the user's groups, or as root (None).
    fn kvmnet_check(&self, user: Option<(u32, u32)>) -> Output {
        let mut cmd = match user {
            Some((uid, gid)) => {
                let mut c = self.ns.cmd("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--init-groups",
                    "--",
                    "/usr/bin/kvmnet",
                ]);
                c
            }
            None => self.ns.cmd("/usr/bin/kvmnet"),
        };
        let out = sh(cmd
            .arg("check")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
        eprintln!(
            "kvmnet check as {} (exit {:?}):\n{}",
            if user.is_some() { USER } else { "root" },
            out.status.code(),
            text(&out)
        );
        out
    }

    /// QEMU as the test user with helper=: the installed bridge helper's
    /// capability at work.
    fn qemu_bridge_helper_as_user(&mut self, m: &Machine) -> String {
        let mac = "52:54:00:6b:76:02";
        let netdev = format!("bridge,id=n0,br={BRIDGE},helper={}", HELPERS[2]);
        let (lease, lines) = self.boot(mac, &netdev, m.user);
        let (uid, _) = m.user.unwrap();
        assert!(
            lines.iter().any(|l| l.contains("kvmnet-bridge-helper[")
                && l.contains(&format!("user={uid}"))
                && l.contains("result=sent-to-qemu")),
            "{lines:?}"
        );
        lease
    }
}

fn assert_sudo_refuses(out: &Output, argv: &[&str]) {
    assert!(
        !out.status.success() && text(out).contains("a password is required"),
        "sudo must refuse {argv:?}: {}",
        text(out)
    );
}

// ---- small helpers ----

fn build_deb(out: &Path, revision: &str) -> PathBuf {
    let stdout = cmd_ok(
        Command::new(packaging("build"))
            .arg("deb")
            .env("KVMNET_PKG_OUT", out)
            .env("KVMNET_DEB_REVISION", revision),
    );
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(deb.is_file(), "packaging/build deb printed {stdout:?}");
    deb
}

/// dpkg or apt-get, non-interactive with no standard input: a conffile
/// prompt would read EOF and fail. Waits for another dpkg to finish.
fn run_dpkg(prog: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    for attempt in 0.. {
        let out = sh(Command::new(prog)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .envs(env.iter().copied())
            .stdin(Stdio::null()));
        let all = text(&out);
        let locked = all.contains("lock") && all.contains("another process");
        if !out.status.success() && locked && attempt < 60 {
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        assert!(out.status.success(), "{prog} {args:?} failed:\n{all}");
        for prompt in ["Configuration file '", "conffile prompt", "*** "] {
            assert!(
                !all.contains(prompt),
                "{prog} {args:?} asked about a conffile:\n{all}"
            );
        }
        return all;
    }
    unreachable!()
}

fn dpkg(args: &[&str]) -> String {
    run_dpkg("dpkg", args, &[])
}

/// dpkg's status abbreviation ("ii ", "rc "), "" when it knows no such package.
fn status(pkg: &str) -> String {
    let out = sh(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", pkg]));
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    if s.starts_with("un") {
        String::new()
    } else {
        s
    }
}

fn getcap(p: &Path) -> String {
    let out = cmd_ok(Command::new("getcap").arg(p));
    // "PATH cap_net_admin=ep" (libcap 2.44+), "PATH = cap_net_admin+ep" (older)
    out.trim()
        .strip_prefix(p.to_str().unwrap())
        .unwrap_or("")
        .trim()
        .trim_start_matches("= ")
        .replace('+', "=")
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn exists(p: &str) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

fn passwd_line(user: &str) -> Option<String> {
    let out = cmd_out(Command::new("getent").args(["passwd", user]));
    (!out.is_empty()).then_some(out)
}

fn group_line(group: &str) -> Option<String> {
    let out = cmd_out(Command::new("getent").args(["group", group]));
    (!out.is_empty()).then_some(out)
}

fn which(prog: &str) -> Option<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(prog))
    .find(|p| p.exists())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// stdout of a command that must succeed.
fn cmd_ok(cmd: &mut Command) -> String {
    let out = sh(cmd.stdin(Stdio::null()));
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Trimmed stdout, whatever the exit status.
fn cmd_out(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&sh(cmd.stdin(Stdio::null())).stdout)
        .trim()
        .to_owned()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(Duration::from_millis(100), limit, f)
}
