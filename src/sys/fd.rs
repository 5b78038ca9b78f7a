//! Taking ownership of a descriptor this process inherited, and how much of
//! what it wrote into a pipe is still unread.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Takes ownership of `fd`, a descriptor the process inherited and that the
/// start-up hygiene kept open (the bridge helper's socket to QEMU), or
/// `None` when no such descriptor is open. Call it once per descriptor.
pub fn adopt_inherited(fd: RawFd) -> Option<OwnedFd> {
    if fd <= 2 {
        return None;
    }
    // SAFETY: F_GETFD is sound on any integer: it only reports whether that
    // number is an open descriptor (EBADF otherwise) and changes nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and above stdio; start-up
    // closed every other inherited descriptor, so nothing else in this
    // process refers to it, and the caller adopts it once.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes descriptors `first..=last`, whatever they are. Only for the very
/// start of a process, before anything in it opened a descriptor of its
/// own (see `hardening`). `false` when the kernel lacks close_range (before
/// 5.9).
pub fn close_inherited(first: u32, last: u32) -> bool {
    // The system call itself, not glibc's wrapper, which only glibc 2.34 and
    // later have: the call must not decide which glibc kvmnet needs.
    // SAFETY: close_range only closes descriptors. Called first thing in the
    // process (the contract above), every descriptor in the range is
    // inherited and owned by no Rust object that could use it afterwards.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) == 0 }
}

/// The bytes still in the pipe that `fd` writes into, not yet taken by its
/// reader; `None` when `fd` is not a pipe or when nothing holds the pipe's
/// read end any more (what is left can never be read).
pub fn pipe_unread(fd: BorrowedFd<'_>) -> Option<usize> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll reads and writes exactly the one pollfd it is given, which
    // lives on this stack frame for the call; a zero timeout only asks.
    if unsafe { libc::poll(&mut pfd, 1, 0) } < 0 || pfd.revents & libc::POLLERR != 0 {
        return None;
    }
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through its argument, which points to
    // `unread`; on a pipe it only counts the buffered bytes.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut unread) } < 0 {
        return None;
    }
    usize::try_from(unread).ok()
}
