//! `kvmnet check`: every finding produced by a namespace and files set up to
//! trigger it. `check::run` is called on a thread that entered the test's
//! network namespace (netlink and /proc/sys/net follow the thread); every
//! path it reads is redirected into the test's own directories.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    in_netns, kernel_filters_vlans, ok, privileged_copy, Grant, Netns, RootOnlyDir, TempDir,
    IFDOWN, IFUP,
};
use kvmnet::check::{self, CheckOptions, Finding, Severity};

/// One test's world: a namespace, a temp dir for device nodes and fake
/// sysfs, a trusted dir for the config, the binaries and the sudo rule, and
/// options pointing there.
struct Lab {
    ns: Netns,
    tmp: TempDir,
    /// Holds the config, the binaries and the sudo rule; removed with the lab.
    etc: RootOnlyDir,
    opts: CheckOptions,
}

impl Lab {
    /// `config`: the text of kvmnet.toml, or `None` for no file. The lab
    /// starts with a 0666 TUN node, an empty fake sysfs (no wireless), no
    /// kvmnet binaries and no sudo rule.
    fn new(config: Option<&str>) -> Lab {
        let ns = Netns::new();
        let tmp = TempDir::new();
        let etc = RootOnlyDir::new();
        let config_path = etc.0.join("kvmnet.toml");
        if let Some(text) = config {
            std::fs::write(&config_path, text).unwrap();
            chmod(&config_path, 0o644);
        }
        let sys = tmp.path().join("sys-class-net");
        std::fs::create_dir(&sys).unwrap();
        let tun = tmp.path().join("tun");
        mknod_tun(&tun, 0o666);
        let opts = CheckOptions {
            config_path,
            tap: None,
            proc_sys: PathBuf::from("/proc/sys"),
            sys_class_net: sys,
            tun_device: tun,
            ifup: tmp.path().join("libexec/kvmnet-ifup"),
            ifdown: tmp.path().join("libexec/kvmnet-ifdown"),
            sudoers: etc.0.join("sudoers.d/kvmnet"),
        };
        Lab { ns, tmp, etc, opts }
    }

    fn run(&self) -> Vec<Finding> {
        self.run_with(self.opts.clone())
    }

    fn run_with(&self, opts: CheckOptions) -> Vec<Finding> {
        let findings = in_netns(&self.ns, move || check::run(&opts));
        for f in &findings {
            assert!(!f.message.contains('\n'), "one line: {f:?}");
            assert_eq!(
                f.fix.is_some(),
                f.severity != Severity::Ok,
                "warnings and errors carry a fix, ok lines none: {f:?}"
            );
            if let Some(fix) = &f.fix {
                assert!(!fix.contains('\n') && !fix.is_empty(), "{f:?}");
            }
        }
        findings
    }

    fn tap(&self, tap: &str) -> Vec<Finding> {
        self.run_with(CheckOptions {
            tap: Some(tap.to_owned()),
            ..self.opts.clone()
        })
    }

    /// Writes a /proc/sys value inside the namespace.
    fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        in_netns(&self.ns, move || std::fs::write(&path, value)).unwrap();
    }

    /// Installs ifup and ifdown the way `grant` says; returns their paths.
    fn install(&mut self, grant: Grant) -> (PathBuf, PathBuf) {
        let up = privileged_copy(&self.etc.0, IFUP, grant);
        let down = privileged_copy(&self.etc.0, IFDOWN, grant);
        self.opts.ifup = up.clone();
        self.opts.ifdown = down.clone();
        (up, down)
    }

    fn sudoers(&self, text: &str, mode: u32) {
        let p = &self.opts.sudoers;
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        chmod(p, mode);
    }

    fn ifindex(&self, dev: &str) -> u64 {
        self.ns.link(dev).unwrap()["ifindex"].as_u64().unwrap()
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mknod_tun(path: &Path, mode: u32) {
    ok(Command::new("mknod")
        .args(["-m", &format!("{mode:o}")])
        .arg(path)
        .args(["c", "10", "200"]));
}

fn show(fs: &[Finding]) -> String {
    fs.iter()
        .map(|f| {
            format!(
                "  {:?} [{}] {}{}",
                f.severity,
                f.check,
                f.message,
                f.fix
                    .as_deref()
                    .map(|x| format!("; fix: {x}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The finding of `check` with `severity` whose message and fix contain
/// every word; fails with all findings listed otherwise.
#[track_caller]
fn find<'a>(fs: &'a [Finding], severity: Severity, check: &str, words: &[&str]) -> &'a Finding {
    let hits: Vec<&Finding> = fs
        .iter()
        .filter(|f| f.severity == severity && f.check == check)
        .filter(|f| {
            let text = format!("{} {}", f.message, f.fix.as_deref().unwrap_or(""));
            words.iter().all(|w| text.contains(w))
        })
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one {severity:?} [{check}] with {words:?}, got {}:\n{}",
        hits.len(),
        show(fs)
    );
    hits[0]
}

/// The one finding as [`find`] has it, whose fix is exactly `fix`.
#[track_caller]
fn assert_fix(fs: &[Finding], severity: Severity, check: &str, words: &[&str], fix: &str) {
    let f = find(fs, severity, check, words);
    assert_eq!(f.fix.as_deref(), Some(fix));
}

#[track_caller]
fn none_of(fs: &[Finding], severity: Severity, check: &str) {
    let hits: Vec<&Finding> = fs
        .iter()
        .filter(|f| f.severity == severity && f.check == check)
        .collect();
    assert!(
        hits.is_empty(),
        "expected no {severity:?} [{check}]:\n{}",
        show(fs)
    );
}

#[track_caller]
fn no_errors(fs: &[Finding]) {
    assert!(
        fs.iter().all(|f| f.severity != Severity::Error),
        "expected no error:\n{}",
        show(fs)
    );
}

/// br0 (mtu 1500) with a veth port of the same MTU.
fn with_br0(lab: &Lab) {
    lab.ns.ip("link add br0 up type bridge");
    lab.ns.ip("link add up0 type veth peer name up1");
    lab.ns.ip("link set up0 master br0 up");
}

// ------------------------------------------------------------------ clean

#[test]
fn a_sound_setup_has_no_error_and_no_warning() {
    let mut lab = Lab::new(Some(
        "bridge = \"br0\"\n[[allow]]\ngroups = [\"kvm\"]\nbridges = [\"br0\"]\n",
    ));
    with_br0(&lab);
    let br_nf = lab
        .run()
        .iter()
        .any(|f| f.check == "br_netfilter" && f.severity == Severity::Warning);
    if br_nf {
        for key in ["iptables", "ip6tables", "arptables"] {
            lab.sysctl(&format!("net.bridge.bridge-nf-call-{key}"), "0");
        }
    }
    lab.install(Grant::FileCap);
    let fs = lab.run();
    assert!(
        fs.iter().all(|f| f.severity == Severity::Ok),
        "expected only ok lines:\n{}",
        show(&fs)
    );
    find(
        &fs,
        Severity::Ok,
        "config",
        &["parses", "1 [[allow]]/[[deny]]"],
    );
    find(&fs, Severity::Ok, "config", &["writable only by root"]);
    find(
        &fs,
        Severity::Ok,
        "bridge",
        &[
            "bridge br0 exists",
            "mtu 1500",
            "1 port(s)",
            "the top level",
        ],
    );
    find(&fs, Severity::Ok, "mtu", &["every port of bridge br0"]);
    find(
        &fs,
        Severity::Ok,
        "wireless",
        &["bridge br0 has no wireless port"],
    );
    find(&fs, Severity::Ok, "tun", &["TUN device", "0666"]);
    let up = lab.opts.ifup.display().to_string();
    find(&fs, Severity::Ok, "install", &[&up, "cap_net_admin"]);
}

// ------------------------------------------------------------------ config

#[test]
fn a_config_that_does_not_parse_is_one_error_with_its_line() {
    let lab = Lab::new(Some("bridge = \"br0\"\n\nbrigde = \"br1\"\n"));
    let fs = lab.run();
    let path = lab.opts.config_path.display().to_string();
    let f = find(
        &fs,
        Severity::Error,
        "config",
        &[&format!("{path} line 3"), "brigde"],
    );
    assert!(
        f.fix.as_deref().unwrap().contains("correct line 3"),
        "{f:?}"
    );
    assert_eq!(
        fs.iter().filter(|f| f.severity == Severity::Error).count(),
        1,
        "{}",
        show(&fs)
    );
    // nothing that needs the config was judged
    none_of(&fs, Severity::Ok, "bridge");
}

#[test]
fn a_missing_config_is_a_warning_about_debians_behaviour() {
    let lab = Lab::new(None);
    let fs = lab.run();
    find(
        &fs,
        Severity::Warning,
        "config",
        &[
            "no config file",
            "IPv4 default route",
            "br0, created on demand",
            "everyone but root is denied",
        ],
    );
    // and what that means here: no bridge carries a default route, so br0
    find(
        &fs,
        Severity::Ok,
        "bridge",
        &[
            "bridge br0 does not exist yet",
            "creates it on first use",
            "Debian's rule",
        ],
    );
    no_errors(&fs);
}

/// Every way the config fails kvmnet's one trust rule is one error that says
/// what the runtime refuses callers other than plain root with: its reason,
/// then its fix. Group 0 is a group, and the sticky bit does not make a
/// directory others may write safe.
#[test]
fn a_config_the_runtime_would_not_trust_is_an_error_for_non_root_callers() {
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    let path = lab.opts.config_path.clone();
    let dir = path.parent().unwrap().to_owned();
    let (file, d) = (path.display().to_string(), dir.display().to_string());
    let cases = [
        (
            &path,
            1000,
            0o644,
            format!("file {file} must be owned by root (it is owned by uid 1000)"),
            format!("chown root:root {file}"),
        ),
        (
            &path,
            0,
            0o664,
            format!("file {file} is writable by its group"),
            format!("chmod go-w {file}"),
        ),
        (
            &dir,
            0,
            0o775,
            format!("directory {d} is writable by its group"),
            format!("chmod go-w {d}"),
        ),
        (
            &dir,
            0,
            0o1777,
            format!("directory {d} is writable by others"),
            format!("chmod go-w {d}"),
        ),
    ];
    for (at, uid, mode, why, fix) in cases {
        let kept = std::fs::metadata(at).unwrap().permissions();
        std::os::unix::fs::chown(at, Some(uid), Some(0)).unwrap();
        chmod(at, mode);
        let fs = lab.run();
        let refusal = kvmnet::config::Config::load(&path, true)
            .unwrap_err()
            .to_string();
        std::os::unix::fs::chown(at, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(at, kept).unwrap();
        assert_eq!(refusal, format!("refusing {file}: {why}; {fix}"));
        assert_fix(
            &fs,
            Severity::Error,
            "config",
            &["would be refused for every caller but plain root", &why],
            &fix,
        );
        // it still parses: root uses it
        find(&fs, Severity::Ok, "config", &["parses"]);
    }
    none_of(&lab.run(), Severity::Error, "config");
}

#[test]
fn a_config_users_cannot_read_is_an_error_when_they_run_kvmnet_themselves() {
    let mut lab = Lab::new(Some(
        "bridge = \"br0\"\n[[allow]]\nusers = [\"*\"]\nbridges = [\"br0\"]\n",
    ));
    with_br0(&lab);
    chmod(&lab.opts.config_path, 0o600);
    // root-only use: root reads it, fine
    none_of(&lab.run(), Severity::Error, "config");
    lab.install(Grant::Setuid);
    let fs = lab.run();
    let path = lab.opts.config_path.display().to_string();
    assert_fix(
        &fs,
        Severity::Error,
        "config",
        &[
            "is not readable by others",
            "read the config as the calling user",
        ],
        &format!("chmod o+r {path}"),
    );
    // readable, but in a directory others cannot enter
    chmod(&lab.opts.config_path, 0o644);
    let dir = lab.opts.config_path.parent().unwrap().to_owned();
    chmod(&dir, 0o750);
    let fs = lab.run();
    assert_fix(
        &fs,
        Severity::Error,
        "config",
        &["is not searchable by others"],
        &format!("chmod o+x {}", dir.display()),
    );
    none_of(&fs, Severity::Error, "install");
}

// ------------------------------------------------------------------ bridges

#[test]
fn a_missing_bridge_is_an_error_unless_kvmnet_creates_it() {
    let lab = Lab::new(Some(
        "bridge = \"br0\"\n[[rule]]\nmatch = \"lab-*\"\nbridge = \"br-lab\"\ncreate_bridge = true\n",
    ));
    let fs = lab.run();
    let path = lab.opts.config_path.display().to_string();
    assert_fix(
        &fs,
        Severity::Error,
        "bridge",
        &[
            "bridge br0 does not exist",
            "the top level would be refused",
        ],
        &format!(
            "create it (ip link add br0 up type bridge) or set create_bridge = true in {path}"
        ),
    );
    find(
        &fs,
        Severity::Ok,
        "bridge",
        &[
            "bridge br-lab does not exist yet",
            "creates it on first use",
            "rule 1 (lab-*)",
        ],
    );
}

#[test]
fn a_bridge_name_that_is_no_bridge_is_an_error() {
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    lab.ns.ip("link add br0 type veth peer name br0p");
    let fs = lab.run();
    find(
        &fs,
        Severity::Error,
        "bridge",
        &["br0 is a veth device, not a bridge", "the top level"],
    );
}

#[test]
fn a_bridge_that_is_down_is_a_warning() {
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    with_br0(&lab);
    none_of(&lab.run(), Severity::Warning, "bridge");
    lab.ns.ip("link set br0 down");
    let fs = lab.run();
    assert_fix(
        &fs,
        Severity::Warning,
        "bridge",
        &["bridge br0 is down", "no traffic"],
        "ip link set br0 up",
    );
}

#[test]
fn vlan_rules_need_a_kernel_and_a_bridge_that_filter_vlans() {
    let lab = Lab::new(Some(
        "bridge = \"br0\"\n[[rule]]\nmatch = \"lab-*\"\nbridge = \"br-v\"\nvlan = 10\n\
         [[rule]]\nmatch = \"new-*\"\nbridge = \"br-new\"\ncreate_bridge = true\ntrunk = [\"20-29\"]\n",
    ));
    with_br0(&lab);
    lab.ns.ip("link add br-v up type bridge");
    let fs = lab.run();
    if !kernel_filters_vlans(&lab.ns) {
        eprintln!("this kernel has no CONFIG_BRIDGE_VLAN_FILTERING: checking the refusal");
        // Its bridges still report vlan_filtering 0: check must not take
        // that for "off" and suggest turning it on (which would fail).
        assert_eq!(
            lab.ns.link("br-v").unwrap()["linkinfo"]["info_data"]["vlan_filtering"],
            0
        );
        let f = find(
            &fs,
            Severity::Error,
            "vlan",
            &[
                "bridge br-v",
                "CONFIG_BRIDGE_VLAN_FILTERING",
                "rule 1 (lab-*)",
            ],
        );
        assert!(
            !f.fix.as_deref().unwrap().contains("vlan_filtering 1"),
            "{f:?}"
        );
        // the bridge kvmnet would create: known from the bridges that exist
        find(
            &fs,
            Severity::Error,
            "vlan",
            &[
                "would create bridge br-new",
                "CONFIG_BRIDGE_VLAN_FILTERING",
                "rule 2 (new-*)",
            ],
        );
        let f = &lab.tap("lab-1");
        find(
            f,
            Severity::Error,
            "tap",
            &[
                "tap lab-1 matches rule 1 (lab-*)",
                "bridge br-v",
                "CONFIG_BRIDGE_VLAN_FILTERING",
            ],
        );
        return;
    }
    eprintln!("this kernel filters VLANs: checking filtering off and on");
    assert_fix(
        &fs,
        Severity::Error,
        "vlan",
        &["bridge br-v has VLAN filtering off", "rule 1 (lab-*)"],
        "ip link set br-v type bridge vlan_filtering 1",
    );
    lab.ns.ip("link set br-v type bridge vlan_filtering 1");
    let fs = lab.run();
    find(&fs, Severity::Ok, "vlan", &["bridge br-v filters VLANs"]);
    none_of(&fs, Severity::Error, "vlan");
    find(
        &lab.tap("lab-1"),
        Severity::Ok,
        "tap",
        &["bridge br-v", "untagged 10", "works now"],
    );
}

#[test]
fn without_any_bridge_vlan_support_comes_from_sysfs() {
    // No bridge in the namespace: the kernel's VLAN support shows in any
    // bridge's sysfs directory (here a fake one), or not at all.
    let lab = Lab::new(Some(
        "bridge = \"br-new\"\ncreate_bridge = true\nvlan = 10\n",
    ));
    let fs = lab.run();
    find(
        &fs,
        Severity::Warning,
        "vlan",
        &[
            "bridge br-new does not exist yet",
            "CONFIG_BRIDGE_VLAN_FILTERING",
            "the top level",
        ],
    );
    find(
        &lab.tap("vm0"),
        Severity::Warning,
        "tap",
        &[
            "would create with VLAN filtering",
            "shows only once a bridge exists",
        ],
    );
    let bridge_dir = lab.opts.sys_class_net.join("brx/bridge");
    std::fs::create_dir_all(&bridge_dir).unwrap();
    let fs = lab.run();
    find(
        &fs,
        Severity::Error,
        "vlan",
        &[
            "would create bridge br-new",
            "built without CONFIG_BRIDGE_VLAN_FILTERING",
        ],
    );
    find(
        &lab.tap("vm0"),
        Severity::Error,
        "tap",
        &["cannot filter VLANs", "drop vlan/trunk from the top level"],
    );
    std::fs::write(bridge_dir.join("vlan_filtering"), "0\n").unwrap();
    let fs = lab.run();
    none_of(&fs, Severity::Error, "vlan");
    none_of(&fs, Severity::Warning, "vlan");
    find(
        &lab.tap("vm0"),
        Severity::Ok,
        "tap",
        &["creates on first use"],
    );
}

#[test]
fn a_port_with_another_mtu_than_its_bridge_is_a_warning() {
    let lab = Lab::new(Some(
        "bridge = \"br0\"\n[[rule]]\nmatch = \"big-*\"\nmtu = 4000\n",
    ));
    with_br0(&lab);
    lab.ns.ip("link add p0 type veth peer name p1");
    lab.ns.ip("link set p0 master br0 up");
    // the bridge follows its smallest port until its MTU is set by hand
    lab.ns.ip("link set p0 mtu 1400");
    lab.ns.ip("link set br0 mtu 1500");
    // a tap with a fixed MTU from its rule is as configured
    lab.ns.ip("tuntap add big-1 mode tap");
    lab.ns.ip("link set big-1 mtu 4000 master br0");
    let fs = lab.run();
    let f = find(
        &fs,
        Severity::Warning,
        "mtu",
        &["port p0 of bridge br0", "MTU 1400", "the bridge 1500"],
    );
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .starts_with("ip link set p0 mtu 1500"),
        "{f:?}"
    );
    assert_eq!(
        fs.iter().filter(|f| f.check == "mtu").count(),
        1,
        "big-1 (mtu = 4000 by rule) and up0 are fine:\n{}",
        show(&fs)
    );
}

#[test]
fn a_wireless_port_on_a_configured_bridge_is_a_warning() {
    // This kernel has no wireless stack (CONFIG_WIRELESS is off, no modules,
    // hence no mac80211_hwsim): the port is a veth, and sysfs is a fake
    // tree with what cfg80211 adds for a wireless device (phy80211), with
    // the port's real ifindex.
    let wireless_kernel = Path::new("/sys/class/ieee80211").exists();
    eprintln!("kernel wireless stack: {wireless_kernel}; using a fake sysfs entry");
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    with_br0(&lab);
    lab.ns.ip("link add wl0 type veth peer name wl0p");
    lab.ns.ip("link set wl0 master br0");
    let entry = lab.opts.sys_class_net.join("wl0");
    std::fs::create_dir_all(entry.join("phy80211")).unwrap();
    std::fs::write(entry.join("ifindex"), format!("{}\n", lab.ifindex("wl0"))).unwrap();
    let fs = lab.run();
    let f = find(
        &fs,
        Severity::Warning,
        "wireless",
        &[
            "port wl0 of bridge br0 is a wireless interface",
            "cannot bridge",
        ],
    );
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("ip link set wl0 nomaster"),
        "{f:?}"
    );
    // the same sysfs entry describing another device (another namespace's
    // wl0: its ifindex differs) does not count
    std::fs::write(
        entry.join("ifindex"),
        format!("{}\n", lab.ifindex("wl0") + 100),
    )
    .unwrap();
    let fs = lab.run();
    none_of(&fs, Severity::Warning, "wireless");
    find(
        &fs,
        Severity::Ok,
        "wireless",
        &["bridge br0 has no wireless port"],
    );
}

// ------------------------------------------------------------------ sysctls

#[test]
fn br_netfilter_calling_the_firewall_is_a_warning() {
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    with_br0(&lab);
    let ns_name = lab.ns.name.clone();
    let visible = in_netns(&lab.ns, || Path::new("/proc/sys/net/bridge").is_dir());
    if !visible {
        // br_netfilter is a module that is not loaded (the tests do not load
        // it: that would send the host's own bridged traffic through its
        // firewall). Make sure that is really why, then check the ok line.
        assert!(
            !Path::new("/sys/module/br_netfilter").exists() && !Path::new("/proc/sys/net/bridge").exists(),
            "br_netfilter is loaded but invisible in namespace {ns_name}: a kernel whose bridge-nf sysctls are not per namespace"
        );
        eprintln!("br_netfilter is not loaded on this host: only the not-loaded case is testable (the unit test covers the rest)");
        find(
            &lab.run(),
            Severity::Ok,
            "br_netfilter",
            &["br_netfilter is not loaded"],
        );
        return;
    }
    // Visible in a new namespace: the switches are per namespace (and a new
    // namespace starts with 1), so setting them here touches only the test's.
    for key in ["iptables", "ip6tables", "arptables"] {
        lab.sysctl(&format!("net.bridge.bridge-nf-call-{key}"), "1");
    }
    let fs = lab.run();
    for key in ["iptables", "ip6tables", "arptables"] {
        let f = find(
            &fs,
            Severity::Warning,
            "br_netfilter",
            &[
                &format!("net.bridge.bridge-nf-call-{key} = 1"),
                "passes the host's",
                "firewall",
            ],
        );
        let fix = f.fix.as_deref().unwrap();
        assert!(
            fix.contains("if guests get no traffic, set 0") && fix.contains("or "),
            "{fix}"
        );
    }
    lab.sysctl("net.bridge.bridge-nf-call-iptables", "0");
    lab.sysctl("net.bridge.bridge-nf-call-arptables", "0");
    let fs = lab.run();
    find(
        &fs,
        Severity::Ok,
        "br_netfilter",
        &["bridge-nf-call-iptables = 0"],
    );
    find(
        &fs,
        Severity::Warning,
        "br_netfilter",
        &["bridge-nf-call-ip6tables = 1"],
    );
    // the bridge's own switch: on for br0, whatever the sysctl says
    lab.ns.ip("link set br0 type bridge nf_call_iptables 1");
    let fs = lab.run();
    let f = find(
        &fs,
        Severity::Warning,
        "br_netfilter",
        &["bridge br0 has nf_call_iptables on"],
    );
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("ip link set br0 type bridge nf_call_iptables 0"),
        "{f:?}"
    );
}

#[test]
fn routed_rules_with_forwarding_off_are_a_warning() {
    let lab = Lab::new(Some(
        "bridge = \"br0\"\n[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.10\", \"2001:db8::10\"]\n",
    ));
    with_br0(&lab);
    lab.sysctl("net.ipv4.ip_forward", "0");
    lab.sysctl("net.ipv6.conf.all.forwarding", "0");
    let fs = lab.run();
    for (fam, key) in [
        ("IPv4", "net.ipv4.ip_forward"),
        ("IPv6", "net.ipv6.conf.all.forwarding"),
    ] {
        let f = find(
            &fs,
            Severity::Warning,
            "forwarding",
            &[
                &format!("{fam} forwarding is off ({key} = 0)"),
                "rule 1 (rt-*)",
                "switches it on",
            ],
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap()
                .contains(&format!("sysctl -w {key}=1")),
            "{f:?}"
        );
    }
    lab.sysctl("net.ipv4.ip_forward", "1");
    let fs = lab.run();
    find(&fs, Severity::Ok, "forwarding", &["IPv4 forwarding is on"]);
    find(
        &fs,
        Severity::Warning,
        "forwarding",
        &["IPv6 forwarding is off"],
    );
    // no routed rule: nothing to say
    let plain = Lab::new(Some("bridge = \"br0\"\n"));
    assert!(!plain.run().iter().any(|f| f.check == "forwarding"));
}

// ------------------------------------------------------------------ tun

#[test]
fn a_missing_tun_device_is_an_error() {
    let mut lab = Lab::new(Some("bridge = \"br0\"\n"));
    lab.opts.tun_device = lab.tmp.path().join("net/tun");
    let f = &lab.run();
    let f = find(
        f,
        Severity::Error,
        "tun",
        &["does not exist", "cannot create taps"],
    );
    assert!(
        f.fix.as_deref().unwrap().starts_with("modprobe tun"),
        "{f:?}"
    );
    // something else at that path
    std::fs::create_dir_all(lab.tmp.path().join("net")).unwrap();
    std::fs::write(&lab.opts.tun_device, "").unwrap();
    find(
        &lab.run(),
        Severity::Error,
        "tun",
        &["is not the TUN device", "10:200"],
    );
}

#[test]
fn a_0600_tun_device_is_a_warning_only_when_users_run_kvmnet_themselves() {
    let mut lab = Lab::new(Some("bridge = \"br0\"\n"));
    lab.opts.tun_device = lab.tmp.path().join("tun0600");
    mknod_tun(&lab.opts.tun_device, 0o600);
    // root (or sudo) only: root opens it
    find(&lab.run(), Severity::Ok, "tun", &["TUN device", "0600"]);
    lab.install(Grant::Setuid);
    let fs = lab.run();
    let f = find(
        &fs,
        Severity::Warning,
        "tun",
        &["mode 0600", "runs as the calling user"],
    );
    assert!(
        f.fix.as_deref().unwrap().starts_with("chmod 0666 "),
        "{f:?}"
    );
}

// ------------------------------------------------------------------ installation

#[test]
fn binaries_that_are_not_installed_are_a_warning() {
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    let fs = lab.run();
    for p in [&lab.opts.ifup, &lab.opts.ifdown] {
        let f = find(
            &fs,
            Severity::Warning,
            "install",
            &[&format!("{} does not exist", p.display())],
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap()
                .contains("install -o root -g root -m 0755"),
            "{f:?}"
        );
    }
}

#[test]
fn allow_rules_without_a_way_for_users_to_run_it_are_a_warning() {
    let mut lab = Lab::new(Some(
        "bridge = \"br0\"\n[[allow]]\ngroups = [\"kvm\"]\nbridges = [\"br0\"]\n",
    ));
    with_br0(&lab);
    let (up, down) = lab.install(Grant::Plain);
    let fs = lab.run();
    for p in [&up, &down] {
        let p = p.display().to_string();
        let f = find(
            &fs,
            Severity::Warning,
            "install",
            &[&format!("users cannot run {p}")],
        );
        let fix = f.fix.as_deref().unwrap();
        for way in [
            format!("setcap cap_net_admin+ep {p}"),
            format!("chmod u+s {p}"),
            "NOPASSWD".into(),
        ] {
            assert!(fix.contains(&way), "{way:?} in {fix}");
        }
    }
    // without [[allow]] rules, root only is what the config asks for
    let mut root_only = Lab::new(Some("bridge = \"br0\"\n"));
    let (up, _) = root_only.install(Grant::Plain);
    let fs = root_only.run();
    find(
        &fs,
        Severity::Ok,
        "install",
        &[&up.display().to_string(), "root only", "mode 0755"],
    );
    none_of(&fs, Severity::Warning, "install");
}

#[test]
fn each_of_the_three_ways_counts() {
    let cfg = "bridge = \"br0\"\n[[allow]]\nusers = [\"*\"]\nbridges = [\"br0\"]\n";
    let mut lab = Lab::new(Some(cfg));
    let (up, _) = lab.install(Grant::FileCap);
    find(
        &lab.run(),
        Severity::Ok,
        "install",
        &[
            &up.display().to_string(),
            "the file capability cap_net_admin",
        ],
    );
    let (up, _) = lab.install(Grant::Setuid);
    find(
        &lab.run(),
        Severity::Ok,
        "install",
        &[&up.display().to_string(), "mode 4755", "the setuid bit"],
    );
    let (up, down) = lab.install(Grant::Plain);
    lab.sudoers(
        &format!(
            "# kvmnet\n%kvm ALL=(root) NOPASSWD: {}, {}\n",
            up.display(),
            down.display()
        ),
        0o440,
    );
    let fs = lab.run();
    let sudoers = lab.opts.sudoers.display().to_string();
    find(
        &fs,
        Severity::Ok,
        "install",
        &[
            &up.display().to_string(),
            &format!("the sudo rule in {sudoers}"),
        ],
    );
    find(
        &fs,
        Severity::Ok,
        "install",
        &[&down.display().to_string(), "the sudo rule"],
    );
    none_of(&fs, Severity::Warning, "install");
    // a sudoers file others than root may change does not count: by kvmnet's
    // one trust rule, group 0 too (sudo itself lets group 0 write)
    for (mode, by) in [(0o666, "others"), (0o460, "its group")] {
        lab.sudoers(
            &format!("%kvm ALL=(root) NOPASSWD: {}\n", up.display()),
            mode,
        );
        std::os::unix::fs::chown(&lab.opts.sudoers, Some(0), Some(0)).unwrap();
        let fs = lab.run();
        assert_fix(
            &fs,
            Severity::Warning,
            "install",
            &[
                "the sudo rule for",
                "does not count",
                &format!("file {sudoers} is writable by {by}"),
            ],
            &format!("chmod go-w {sudoers}"),
        );
        find(
            &fs,
            Severity::Warning,
            "install",
            &[&format!("users cannot run {}", up.display())],
        );
    }
}

#[test]
fn more_file_capabilities_than_cap_net_admin_are_an_error() {
    let mut lab = Lab::new(Some("bridge = \"br0\"\n"));
    let (up, _) = lab.install(Grant::Plain);
    ok(Command::new("setcap")
        .arg("cap_net_admin,cap_sys_admin+ep")
        .arg(&up));
    let fs = lab.run();
    let p = up.display().to_string();
    assert_fix(
        &fs,
        Severity::Error,
        "install",
        &[&p, "beyond cap_net_admin: cap_sys_admin"],
        &format!("setcap cap_net_admin+ep {p}"),
    );
}

#[test]
fn binaries_others_can_change_are_an_error() {
    let mut lab = Lab::new(Some("bridge = \"br0\"\n"));
    let (up, down) = lab.install(Grant::Plain);
    std::os::unix::fs::chown(&up, Some(1000), None).unwrap();
    chmod(&down, 0o775);
    let fs = lab.run();
    assert_fix(
        &fs,
        Severity::Error,
        "install",
        &[&format!(
            "file {} must be owned by root (it is owned by uid 1000)",
            up.display()
        )],
        &format!("chown root:root {}", up.display()),
    );
    assert_fix(
        &fs,
        Severity::Error,
        "install",
        &[&down.display().to_string(), "writable by its group"],
        &format!("chmod go-w {}", down.display()),
    );
    // a directory a user owns lets them replace the binary, and so does one
    // others may write, sticky bit or not
    let (p, dir) = (up.display(), up.parent().unwrap());
    let d = dir.display();
    for (uid, mode, why, fix) in [
        (
            1000,
            0o755,
            "must be owned by root (it is owned by uid 1000)",
            "chown root:root",
        ),
        (0, 0o1777, "is writable by others", "chmod go-w"),
    ] {
        std::os::unix::fs::chown(dir, Some(uid), None).unwrap();
        chmod(dir, mode);
        assert_fix(
            &lab.run(),
            Severity::Error,
            "install",
            &[&format!("{p}: directory {d} {why}, so {p} can be replaced")],
            &format!("{fix} {d}"),
        );
    }
}

// ------------------------------------------------------------------ --tap

const TAP_RULES: &str = "bridge = \"br0\"\n\
[[rule]]\nmatch = \"lab-*\"\nbridge = \"br-lab\"\n\
[[rule]]\nmatch = \"gone-*\"\nbridge = \"br-gone\"\n\
[[rule]]\nmatch = \"rt-*\"\nmode = \"route\"\naddresses = [\"192.0.2.10\"]\n";

#[test]
fn tap_says_which_rule_matches_and_whether_it_would_work_now() {
    let lab = Lab::new(Some(TAP_RULES));
    with_br0(&lab);
    lab.ns.ip("link add br-lab up type bridge");
    let fs = lab.tap("lab-1");
    find(
        &fs,
        Severity::Ok,
        "tap",
        &[
            "tap lab-1 matches rule 1 (lab-*)",
            "join bridge br-lab",
            "MTU 1500",
            "works now",
        ],
    );
    let fs = lab.tap("web0");
    find(
        &fs,
        Severity::Ok,
        "tap",
        &[
            "tap web0 matches no [[rule]]",
            "join bridge br0",
            "works now",
        ],
    );
    let fs = lab.tap("gone-1");
    let f = find(
        &fs,
        Severity::Error,
        "tap",
        &[
            "tap gone-1 matches rule 2 (gone-*)",
            "bridge br-gone, which does not exist",
        ],
    );
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("ip link add br-gone up type bridge"),
        "{f:?}"
    );
    let fs = lab.tap("rt-1");
    find(
        &fs,
        Severity::Ok,
        "tap",
        &[
            "tap rt-1 matches rule 3 (rt-*)",
            "routed mode",
            "192.0.2.10",
            "only plain root",
        ],
    );
    // without --tap there is no tap line
    assert!(!lab.run().iter().any(|f| f.check == "tap"));
}

#[test]
fn tap_names_what_ifup_would_refuse() {
    let lab = Lab::new(Some(TAP_RULES));
    with_br0(&lab);
    lab.ns.ip("link add br-lab up type bridge");
    lab.ns.ip("link add web1 type veth peer name web1p");
    let fs = lab.tap("web1");
    find(
        &fs,
        Severity::Error,
        "tap",
        &["web1 is a veth device", "only configures tap devices"],
    );
    let fs = lab.tap("bad name");
    find(&fs, Severity::Error, "tap", &["interface name", "contains"]);
    // The runtime's reasons, in its order: the bridge first (gone-2 on br0,
    // whose rule names a missing bridge, is refused for the bridge), then
    // the attach plan (on another bridge; a damaged kvmnet record, which
    // check called "works now"). One line each, an error.
    let cases: [(&str, &str, &[&str], Option<&str>); 3] = [
        (
            "lab-2",
            "master br0",
            &[
                "tap lab-2 matches rule 1 (lab-*)",
                "already a port of br0",
                "does not move it",
            ],
            Some("ip link set lab-2 nomaster"),
        ),
        (
            "gone-2",
            "master br0",
            &["bridge br-gone, which does not exist", "would refuse it"],
            None,
        ),
        (
            "lab-3",
            "alias kvmnet:v1x",
            &[
                "tap lab-3 matches rule 1 (lab-*)",
                "would refuse it",
                "kvmnet record (interface alias) is damaged",
                "ip link set lab-3 alias",
            ],
            None,
        ),
    ];
    for (tap, set, words, fix) in cases {
        lab.ns.ip(&format!("tuntap add {tap} mode tap"));
        lab.ns.ip(&format!("link set {tap} {set}"));
        let fs = lab.tap(tap);
        let lines: Vec<&Finding> = fs.iter().filter(|f| f.check == "tap").collect();
        assert_eq!(lines.len(), 1, "{}", show(&fs));
        let f = find(&fs, Severity::Error, "tap", words);
        if let Some(fix) = fix {
            assert_eq!(f.fix.as_deref(), Some(fix));
        }
    }
}

// ------------------------------------------------------- bridge address

/// A bridge whose address follows its ports can be given a guest user's
/// address (they set their tap's MAC through its descriptor): check says
/// so, with the fix; a bridge whose address was set stays quiet.
#[test]
fn a_bridge_whose_address_follows_its_ports_is_warned_about() {
    let lab = Lab::new(Some("bridge = \"br0\"\n"));
    with_br0(&lab);
    let sys = lab.opts.sys_class_net.join("br0");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::write(sys.join("addr_assign_type"), "1\n").unwrap();
    let mac = lab.ns.state("br0").unwrap().mac;
    let fs = lab.run();
    assert_fix(
        &fs,
        Severity::Warning,
        "bridge",
        &["takes its address from its lowest port"],
        &format!(
            "give it a fixed address: ip link set br0 address {mac} (kvmnet does so for the bridges it creates)"
        ),
    );
    std::fs::write(sys.join("addr_assign_type"), "3\n").unwrap();
    let fs = lab.run();
    assert!(
        !fs.iter()
            .any(|f| f.message.contains("takes its address from its lowest port")),
        "{}",
        show(&fs)
    );
}
