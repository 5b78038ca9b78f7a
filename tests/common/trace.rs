//! A tracer of the tests' own (ptrace from the test process; nothing is
//! compiled into the shipped binaries) for the kill-at-every-step and race
//! tests of tests/kill.rs.
//!
//! The binary is started as a child that, between fork and exec, enters the
//! test's network namespace, optionally a private mount namespace with a
//! fresh /dev whose /dev/log is a socket the test listens on, and asks to be
//! traced. Runs through a [`super::Jail`] (unshare -> sh -> nsenter -> setpriv
//! -> env -> binary) are followed across their execs with PTRACE_O_TRACEEXEC:
//! counting starts only once /proc/PID/exe is the binary under test; the
//! commands the jail's script forks are not traced.
//!
//! A "step" is the entry of a system call that can change something outside
//! the process: a netlink or syslog send, an ioctl (on /dev/net/tun), a write
//! (to /proc/sys, or a log line). At the k-th step the caller's hook sees the
//! process stopped before that call and chooses: SIGKILL it there (the kernel
//! then never runs the call), or let it run on.

use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::Netns;

/// The system calls counted as steps, with their names for messages.
pub const STEP_SYSCALLS: [(i64, &str); 6] = [
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_write, "write"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_pwrite64, "pwrite64"),
];

/// A counted step with the start of its outgoing data (see [`outgoing`]).
pub type Logged = (Step, Vec<u8>);

/// A step: the process stopped at the entry of this system call, which it
/// has not executed yet (the hook sees the k-th so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// 1-based.
    pub index: usize,
    pub nr: i64,
    pub name: &'static str,
    pub args: [u64; 6],
    pub pid: i32,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}: {} (syscall {}, fd {})",
            self.index, self.name, self.nr, self.args[0] as i64
        )
    }
}

/// What the hook wants done at the k-th step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// SIGKILL the process before it executes the call.
    Kill,
    /// Let the call and the rest of the run go on, traced no further.
    Continue,
}

/// How the traced run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The tracer killed it at the k-th step.
    Killed,
    Exited(i32),
    /// Died of a signal the tracer did not send.
    Signaled(i32),
}

#[derive(Debug)]
pub struct Traced {
    pub end: End,
    /// The k-th step, when the run got that far.
    pub at: Option<Step>,
    /// Steps counted: k when the run reached the k-th, else all of its steps.
    pub steps: usize,
    /// Each counted step up to the k-th, with the start of the data it sends
    /// or writes (see [`outgoing`]).
    pub log: Vec<Logged>,
    pub stdout: String,
    pub stderr: String,
}

impl Traced {
    pub fn reached(&self) -> bool {
        self.at.is_some()
    }

    pub fn killed(&self) -> bool {
        self.end == End::Killed
    }

    /// Exit code of a run that exited (None: killed or signaled).
    pub fn code(&self) -> Option<i32> {
        match self.end {
            End::Exited(c) => Some(c),
            _ => None,
        }
    }
}

/// One run of a binary under the tracer.
pub struct Tracee {
    cmd: Command,
    exe: PathBuf,
    netns: Option<String>,
    dev_log: Option<PathBuf>,
    pass: Vec<OwnedFd>,
}

impl Tracee {
    /// `cmd` ends in an exec of `exe`; steps are counted from that exec on.
    pub fn new(cmd: Command, exe: impl AsRef<Path>) -> Tracee {
        let exe = exe.as_ref();
        let exe = exe
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        Tracee {
            cmd,
            exe,
            netns: None,
            dev_log: None,
            pass: Vec::new(),
        }
    }

    /// Run in `ns` (setns before exec; not through `ip netns exec`, whose own
    /// steps would be counted).
    pub fn netns(mut self, ns: &Netns) -> Tracee {
        self.netns = Some(ns.name.clone());
        self
    }

    /// Run in a private mount namespace with a fresh /dev (net/tun, null,
    /// zero, random, urandom) whose /dev/log is bind-mounted from `socket`.
    pub fn dev_log(mut self, socket: &Path) -> Tracee {
        self.dev_log = Some(socket.to_owned());
        self
    }

    /// Hands `fd` to the child at its number (as QEMU passes the helper its
    /// socket); the parent's copy is closed right after the spawn.
    pub fn pass_fd(mut self, fd: OwnedFd) -> Tracee {
        self.pass.push(fd);
        self
    }

    /// SIGKILLs the run at the entry of its k-th step.
    pub fn kill_at(self, k: usize) -> Traced {
        self.run(k, &mut |_| Then::Kill)
    }

    /// Runs to the k-th step, calls `hook` there with the process stopped,
    /// and does what it returns. A run with fewer than k steps runs to its end.
    pub fn run(self, k: usize, hook: &mut dyn FnMut(&Step) -> Then) -> Traced {
        assert!(k >= 1, "steps count from 1");
        let Tracee {
            mut cmd,
            exe,
            netns,
            dev_log,
            pass,
        } = self;
        let netns = netns.map(|n| {
            let p = format!("/run/netns/{n}");
            File::open(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
        });
        let netns_fd: RawFd = netns.as_ref().map_or(-1, |f| f.as_raw_fd());
        let dev_log = dev_log.map(|p| {
            std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).expect("no NUL")
        });
        let inherit: Vec<RawFd> = pass.iter().map(|f| f.as_raw_fd()).collect();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec. It only
        // makes system calls (fcntl, setns, unshare, mount, mkdir, mknod,
        // chmod, open, close, ptrace), which are async-signal-safe, on
        // descriptors and C strings the parent prepared and keeps alive until
        // the spawn returns; it does not allocate.
        unsafe {
            cmd.pre_exec(move || child_setup(netns_fd, dev_log.as_deref(), &inherit));
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        drop(pass);
        drop(netns);
        let mut guard = Reap {
            pid: Pid::from_raw(child.id() as i32),
            done: false,
        };
        let out = reader(child.stdout.take().unwrap());
        let err = reader(child.stderr.take().unwrap());
        let (end, at, log) = trace(&mut guard, &exe, k, hook);
        guard.done = true;
        drop(child); // reaped by waitpid above; Child's drop does not wait
        Traced {
            end,
            at,
            steps: log.len(),
            log,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

/// Kills and reaps the tracee if the tracer unwinds (a failing hook), so no
/// stopped process is left behind.
struct Reap {
    pid: Pid,
    done: bool,
}

impl Drop for Reap {
    fn drop(&mut self) {
        if !self.done {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The character devices of the fresh /dev: path, major, minor.
const NODES: [(&CStr, u32, u32); 5] = [
    (c"/dev/net/tun", 10, 200),
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
];

/// Between fork and exec: see the SAFETY comment at its one caller.
fn child_setup(netns: RawFd, dev_log: Option<&CStr>, inherit: &[RawFd]) -> std::io::Result<()> {
    // SAFETY: plain system calls on valid descriptors and NUL-terminated
    // strings; see `Tracee::run`.
    unsafe {
        for &fd in inherit {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            check(flags)?;
            check(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
        }
        if netns >= 0 {
            check(libc::setns(netns, libc::CLONE_NEWNET))?;
        }
        if let Some(log) = dev_log {
            let none = std::ptr::null::<libc::c_char>();
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"kvmnet-test-dev".as_ptr(),
                c"/dev".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID,
                c"mode=755".as_ptr().cast(),
            ))?;
            check(libc::mkdir(c"/dev/net".as_ptr(), 0o755))?;
            for (path, major, minor) in NODES {
                let dev = libc::makedev(major, minor);
                check(libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev))?;
                // mknod's mode is masked by the umask
                check(libc::chmod(path.as_ptr(), 0o666))?;
            }
            let fd = libc::open(
                c"/dev/log".as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            check(fd)?;
            libc::close(fd);
            check(libc::mount(
                log.as_ptr(),
                c"/dev/log".as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
    }
    ptrace::traceme().map_err(std::io::Error::from)
}

fn exe_of(pid: Pid) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The kernel's internal "restart this call" codes (never seen by
/// programs): ERESTARTSYS ... ERESTART_RESTARTBLOCK.
const ERESTARTSYS: i64 = 512;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// At most this much of a step's outgoing data is kept.
const KEEP: usize = 4096;

/// The start of the data a stopped step is about to send or write: the
/// buffer of sendto/write/pwrite64, the first iovec of writev/sendmsg, the
/// 40 bytes (a struct ifreq) an ioctl's argument points at; nothing when
/// the tracee's memory cannot be read there (an ioctl's integer argument).
fn outgoing(pid: Pid, nr: i64, args: &[u64; 6]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let Ok(mem) = File::open(format!("/proc/{pid}/mem")) else {
        return Vec::new();
    };
    let read = |addr: u64, len: u64| {
        let mut buf = vec![0u8; len.min(KEEP as u64) as usize];
        match mem.read_at(&mut buf, addr) {
            Ok(n) => {
                buf.truncate(n);
                buf
            }
            Err(_) => Vec::new(),
        }
    };
    let word = |addr: u64| {
        let b = read(addr, 8);
        (b.len() == 8).then(|| u64::from_ne_bytes(b.try_into().unwrap()))
    };
    // struct iovec { void *base; size_t len; }
    let first_iov = |iov: u64| match (word(iov), word(iov + 8)) {
        (Some(base), Some(len)) => read(base, len),
        _ => Vec::new(),
    };
    match nr {
        libc::SYS_sendto | libc::SYS_write | libc::SYS_pwrite64 => read(args[1], args[2]),
        libc::SYS_ioctl => read(args[2], 40),
        libc::SYS_writev if args[2] > 0 => first_iov(args[1]),
        // struct msghdr: name, namelen (padded to 8), iov, iovlen, ...
        libc::SYS_sendmsg => match (word(args[1] + 16), word(args[1] + 24)) {
            (Some(iov), Some(n)) if n > 0 => first_iov(iov),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The tracer's loop: returns how the run ended, the k-th step if reached,
/// and every step counted with its outgoing data.
fn trace(
    guard: &mut Reap,
    exe: &Path,
    k: usize,
    hook: &mut dyn FnMut(&Step) -> Then,
) -> (End, Option<Step>, Vec<Logged>) {
    let pid = guard.pid;
    // PTRACE_TRACEME: the first stop is the SIGTRAP after the first exec.
    match waitpid(pid, None).expect("waitpid") {
        WaitStatus::Stopped(_, Signal::SIGTRAP) => {}
        other => panic!("expected the first exec's SIGTRAP, got {other:?}"),
    }
    ptrace::setoptions(
        pid,
        ptrace::Options::PTRACE_O_TRACEEXEC
            | ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL,
    )
    .expect("PTRACE_SETOPTIONS");
    let mut counting = exe_of(pid).as_deref() == Some(exe);
    // After the k-th step the run goes on untraced (PTRACE_CONT): only its
    // execs and signals stop it.
    let mut done_counting = false;
    let mut log = Vec::new();
    // A step the kernel is about to restart (a proc/sys handler that could
    // not take the RTNL lock returns ERESTARTNOINTR, and the call is made
    // again, entry stop and all): the next entry is the same step.
    let mut restarting = None;
    let mut at = None;
    let mut killed = false;
    let resume = |counting: bool, sig: Option<Signal>| {
        let r = if counting {
            ptrace::syscall(pid, sig)
        } else {
            ptrace::cont(pid, sig)
        };
        // ESRCH: it died meanwhile (SIGKILL from elsewhere); waitpid says so.
        if let Err(e) = r {
            assert_eq!(e, nix::errno::Errno::ESRCH, "resuming {pid}: {e}");
        }
    };
    resume(counting, None);
    loop {
        match waitpid(pid, None).expect("waitpid") {
            WaitStatus::Exited(_, code) => return (End::Exited(code), at, log),
            WaitStatus::Signaled(_, sig, _) => {
                let end = if killed && sig == Signal::SIGKILL {
                    End::Killed
                } else {
                    End::Signaled(sig as i32)
                };
                return (end, at, log);
            }
            WaitStatus::PtraceEvent(_, _, ev) if ev == ptrace::Event::PTRACE_EVENT_EXEC as i32 => {
                if !counting && !done_counting {
                    counting = exe_of(pid).as_deref() == Some(exe);
                }
                resume(counting, None);
            }
            WaitStatus::PtraceEvent(..) => resume(counting, None),
            WaitStatus::PtraceSyscall(_) => {
                let info = ptrace::syscall_info(pid).expect("PTRACE_GET_SYSCALL_INFO");
                if counting && info.op == libc::PTRACE_SYSCALL_INFO_EXIT {
                    // SAFETY: op says the exit member of the union is set.
                    let exit = unsafe { info.u.exit };
                    if (-ERESTART_RESTARTBLOCK..=-ERESTARTSYS).contains(&exit.sval) {
                        restarting = log.last().map(|(s, _)| s.nr);
                    }
                }
                if counting && info.op == libc::PTRACE_SYSCALL_INFO_ENTRY {
                    // SAFETY: op says the entry member of the union is set.
                    let entry = unsafe { info.u.entry };
                    let nr = entry.nr as i64;
                    let restarted = restarting.take() == Some(nr);
                    let step = STEP_SYSCALLS.iter().find(|(n, _)| *n == nr);
                    if let (Some(&(_, name)), false) = (step, restarted) {
                        let step = Step {
                            index: log.len() + 1,
                            nr,
                            name,
                            args: entry.args,
                            pid: pid.as_raw(),
                        };
                        log.push((step, outgoing(pid, nr, &entry.args)));
                        if step.index == k {
                            at = Some(step);
                            counting = false;
                            done_counting = true;
                            if hook(&step) == Then::Kill {
                                kill(pid, Signal::SIGKILL).expect("SIGKILL");
                                killed = true;
                                // SIGKILL ends the syscall-entry stop; the
                                // kernel skips the call (fatal signal pending).
                                continue;
                            }
                        }
                    }
                }
                resume(counting, None);
            }
            WaitStatus::Stopped(_, sig) => resume(counting, Some(sig)),
            other => panic!("unexpected wait status {other:?}"),
        }
    }
}

/// Spawns `cmd` (stdout and stderr piped) stopped under this process's
/// ptrace at its first exec, with exec events, syscall-stop marking and
/// kill-on-tracer-exit set: for tests that walk a run's system calls
/// themselves.
pub fn spawn_stopped(mut cmd: Command) -> (std::process::Child, nix::unistd::Pid) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the PTRACE_TRACEME system call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    assert!(matches!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Stopped(_, _)
    ));
    ptrace::setoptions(
        pid,
        ptrace::Options::PTRACE_O_TRACEEXEC
            | ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL,
    )
    .unwrap();
    (child, pid)
}
