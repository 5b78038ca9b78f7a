//! Taking ownership of a descriptor this process inherited.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
