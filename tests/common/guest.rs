//! The guest kernel lane: this machine's and CI's kernel lacks what some
//! tests need (bridge VLAN filtering) or differs from the kernels users run
//! (netdev chains of a deleted device), so those tests also run the way
//! kernel developers test: Debian's distribution kernel booted under QEMU
//! (TCG) with virtme-ng over the host's root filesystem, running the calling
//! test binary inside it. The lane passes only when every expected test
//! passed in the guest. `.ci/install-guest-kernel` installs the kernel and
//! virtme-ng.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{sh, TempDir};

/// Boot, tests and power-off: several minutes under TCG on a small machine
/// (the lanes' times are in the README); this only stops a hung guest.
pub const LANE_TIMEOUT: Duration = Duration::from_secs(900);
pub const INSTALL_HINT: &str = "install it with: sudo bash .ci/install-guest-kernel";

/// Orders "6.1.0-9" before "6.1.0-56": digit runs compare as numbers.
fn version_key(s: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_owned()));
            rest = &rest[text..];
        }
    }
    key
}

/// The kernel image to boot: $KVMNET_GUEST_KERNEL, or the newest
/// /boot/vmlinuz-* built with bridge VLAN filtering whose modules are installed.
pub fn guest_kernel() -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("KVMNET_GUEST_KERNEL") {
        let k = PathBuf::from(k);
        return if k.is_file() {
            Ok(k)
        } else {
            Err(format!(
                "KVMNET_GUEST_KERNEL={} does not exist",
                k.display()
            ))
        };
    }
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir("/boot").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(version) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        let config = std::fs::read_to_string(format!("/boot/config-{version}")).unwrap_or_default();
        if config
            .lines()
            .any(|l| l == "CONFIG_BRIDGE_VLAN_FILTERING=y")
            && Path::new("/lib/modules").join(version).is_dir()
        {
            found.push((version.to_owned(), e.path()));
        }
    }
    found.sort_by_key(|(v, _)| version_key(v));
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        "no guest kernel: no /boot/vmlinuz-* with CONFIG_BRIDGE_VLAN_FILTERING=y and its \
         /lib/modules (Debian's linux-image-amd64)"
            .to_owned()
    })
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// virtme-ng's `vng`: $KVMNET_VNG, on PATH, or in python3's scripts directory
/// (where `pip install virtme-ng` puts it).
pub fn find_vng() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os("KVMNET_VNG") {
        return Ok(PathBuf::from(v));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("vng");
        if executable(&p) {
            return Ok(p);
        }
    }
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let p = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("vng");
        if executable(&p) {
            return Ok(p);
        }
    }
    Err("virtme-ng's vng is neither on PATH nor in python3's scripts directory".to_owned())
}

/// The names of this binary's tests (only the ignored ones with `ignored`).
pub fn tests_of(exe: &Path, ignored: bool) -> Vec<String> {
    let mut cmd = Command::new(exe);
    cmd.arg("--list");
    if ignored {
        cmd.arg("--ignored");
    }
    let out = sh(&mut cmd);
    assert!(out.status.success(), "{exe:?} --list --ignored: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// Single-quotes a word for sh.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Kills vng and its QEMU (their own process group) unless they ended.
struct Guest(Option<std::process::Child>);

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// From libtest's closing line "test result: ok. 7 passed; 0 failed; ...":
/// (ok, passed, failed).
fn test_result(log: &str) -> Option<(bool, usize, usize)> {
    let line = log.lines().rev().find(|l| l.starts_with("test result: "))?;
    let count = |what: &str| -> Option<usize> {
        line.split(['.', ';'])
            .map(str::trim)
            .find_map(|p| p.strip_suffix(what))
            .and_then(|n| n.trim().parse().ok())
    };
    Some((
        line.starts_with("test result: ok."),
        count(" passed")?,
        count(" failed")?,
    ))
}

/// One run of the calling test binary in the guest kernel.
pub struct Lane<'a> {
    /// What runs, for messages ("VLAN tests").
    pub what: &'a str,
    /// Kernel modules the guest loads first (Debian builds them as modules).
    pub modules: &'a [&'a str],
    /// Programs the tests run, copied into the guest's RAM with their
    /// libraries (beside kvmnet's binaries and the test binary).
    pub tools: &'a [&'a str],
    /// The test binary's arguments in the guest.
    pub args: &'a [&'a str],
    /// The tests that must run there, and pass.
    pub expected: &'a [String],
}

impl Lane<'_> {
    /// Boots the guest, runs the tests, and fails unless each expected test
    /// passed there. Returns the guest's log.
    pub fn run(&self) -> String {
        let what = self.what;
        let kernel = guest_kernel().unwrap_or_else(|e| panic!("{e}; {INSTALL_HINT}"));
        let vng = find_vng().unwrap_or_else(|e| panic!("{e}; {INSTALL_HINT}"));
        let exe = std::env::current_exe().unwrap();

        // A host directory the guest may write: its log and exit status.
        let dir = TempDir::new();
        let log = dir.path().join("guest.log");
        let status = dir.path().join("status");
        let console = dir.path().join("console.log");
        // In the guest: load the modules. Copy the binaries under test into
        // the guest's RAM and bind-mount the copies over their paths, and
        // `touch` the tools and their libraries, which copies them up into
        // the guest's RAM overlay of /usr (nothing on the host is written):
        // the tests' hundreds of runs then no longer page over 9p, which
        // under TCG costs an ifup several times its own work. Then run the
        // tests.
        let binaries: Vec<String> = [
            exe.as_path(),
            Path::new(super::IFUP),
            Path::new(super::IFDOWN),
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "cp {p} /run/kvmnet-bin/{i} && mount --bind /run/kvmnet-bin/{i} {p}",
                p = quote(p)
            )
        })
        .collect();
        let script = format!(
            "exec >{log} 2>&1; echo \"guest kernel: $(uname -r)\"; \
             for m in {modules}; do modprobe $m || echo \"modprobe $m failed\"; done; \
             mkdir -p /run/kvmnet-bin && {binaries}; \
             set -- $(command -v {tools}); touch -c \"$@\" $(ldd \"$@\" | grep -o '/[^ ]*'); \
             RUST_BACKTRACE=1 {exe} {args} --test-threads=1 --color never; \
             echo $? >{status}",
            log = quote(&log),
            modules = self.modules.join(" "),
            binaries = binaries.join(" && "),
            tools = self.tools.join(" "),
            exe = quote(&exe),
            args = self.args.join(" "),
            status = quote(&status),
        );
        let out = std::fs::File::create(&console).unwrap();
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&vng);
        cmd.arg("--run")
            .arg(&kernel)
            .args(["--disable-kvm", "--user", "root", "--memory", "1G"])
            .arg(format!("--rwdir={}", dir.path().display()))
            .args(["--exec", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let started = Instant::now();
        let mut guest = Guest(Some(cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {}: {e}; {INSTALL_HINT}", vng.display())
        })));
        let exit = loop {
            if let Some(s) = guest.0.as_mut().unwrap().try_wait().unwrap() {
                guest.0 = None;
                break Some(s);
            }
            if started.elapsed() > LANE_TIMEOUT {
                drop(guest); // kills vng and QEMU
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let took = started.elapsed();
        let console = std::fs::read_to_string(&console).unwrap_or_default();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        for line in log.lines() {
            println!("guest: {line}");
        }
        println!(
            "guest kernel lane: {} booted by {} in {:.1} s, {exit:?}",
            kernel.display(),
            vng.display(),
            took.as_secs_f64()
        );
        let Some(exit) = exit else {
            panic!(
                "the guest did not finish within {} s and was killed; vng's console:\n{console}",
                LANE_TIMEOUT.as_secs()
            );
        };
        let Ok(code) = std::fs::read_to_string(&status) else {
            panic!(
                "the guest never ran the tests to the end (vng {exit}); vng's console:\n{console}\n\
                 (a missing busybox, qemu-system-x86 or kernel module tree: {INSTALL_HINT})"
            );
        };
        let Some((ok, passed, failed)) = test_result(&log) else {
            panic!("no libtest result line from the guest (status {code}); console:\n{console}");
        };
        assert!(
            ok && failed == 0 && code.trim() == "0",
            "{what} failed in the guest kernel: {passed} passed, {failed} failed (see the guest: lines)"
        );
        assert_eq!(
            passed,
            self.expected.len(),
            "the guest must run every one of the {what}: {:?}",
            self.expected
        );
        for name in self.expected {
            assert!(
                log.lines().any(|l| l == format!("test {name} ... ok")),
                "{name} did not pass in the guest"
            );
        }
        log
    }
}
