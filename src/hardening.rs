//! Process hygiene before anything else runs: stdin, stdout and stderr open,
//! SIGPIPE harmless, a known umask, and no other inherited descriptors.
//!
//! The binaries start from a C `main` (bin/; why: docs/design.md), without
//! std's runtime set-up. What of that set-up matters is done here instead:
//! - stdio: a privileged program started with fd 2 closed would get its next
//!   descriptor (say, the netlink socket) as "stderr" and write its error
//!   text, which quotes the caller's tap name, into it. Closed stdio
//!   descriptors are pointed at /dev/null first, as std does.
//! - SIGPIPE: blocked, so that a write to a closed pipe fails with EPIPE (and
//!   is ignored, see `log`) instead of killing a half-done run.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::signal::{SigSet, Signal};

/// `keep`: one descriptor to leave open (QEMU's socket for the bridge helper).
pub fn sanitize_process(keep: Option<RawFd>) {
    open_stdio();
    let mut pipe = SigSet::empty();
    pipe.add(Signal::SIGPIPE);
    // Cannot fail for a valid signal set.
    let _ = pipe.thread_block();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    close_inherited_fds(keep);
}

fn open_stdio() {
    // Lowest first: open() returns the lowest free number, which is then the
    // closed one.
    for n in 0..=2 {
        if fd_status(n) != Err(Errno::EBADF) {
            continue;
        }
        match nix::fcntl::open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty()) {
            // Deliberately never closed: it is the process's stdio now.
            Ok(null) if null.as_raw_fd() == n => {
                let _ = null.into_raw_fd();
            }
            // Nothing safe to write errors to: stop, as std does.
            _ => std::process::abort(),
        }
    }
}

/// F_GETFD on stdio descriptor `n`: EBADF when it is closed.
fn fd_status(n: RawFd) -> nix::Result<libc::c_int> {
    let get = FcntlArg::F_GETFD;
    match n {
        0 => nix::fcntl::fcntl(std::io::stdin().as_fd(), get),
        1 => nix::fcntl::fcntl(std::io::stdout().as_fd(), get),
        _ => nix::fcntl::fcntl(std::io::stderr().as_fd(), get),
    }
}

fn close_inherited_fds(keep: Option<RawFd>) {
    let ranges: &[(u32, u32)] = match keep.and_then(|k| u32::try_from(k).ok()) {
        Some(k) if k > 2 => &[(3, k - 1), (k + 1, u32::MAX)],
        _ => &[(3, u32::MAX)],
    };
    for &(first, last) in ranges {
        if first > last {
            continue;
        }
        if !crate::sys::fd::close_inherited(first, last) {
            // Kernels before 5.9 (ENOSYS): the slower way.
            return close_listed_fds(keep);
        }
    }
}

fn close_listed_fds(keep: Option<RawFd>) {
    // Collect first: the directory stream holds a descriptor of its own.
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2 && Some(*fd) != keep)
            .collect(),
        // No /proc (QEMU's -chroot): try the usual range instead.
        Err(_) => (3..1024).filter(|fd| Some(*fd) != keep).collect(),
    };
    for fd in fds {
        // EBADF for the directory's own, already closed descriptor is fine.
        let _ = nix::unistd::close(fd);
    }
}
