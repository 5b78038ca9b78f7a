//! Process hygiene before anything else runs: a known umask, and no
//! descriptors but stdin, stdout and stderr. QEMU hands its script the tap's
//! descriptor, and any caller may leave others open; kvmnet needs none of
//! them, and holding them would only widen what a bug could reach.

use std::os::fd::RawFd;

/// `keep`: one descriptor to leave open (QEMU's socket for the bridge helper).
pub fn sanitize_process(keep: Option<RawFd>) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    close_inherited_fds(keep);
}

fn close_inherited_fds(keep: Option<RawFd>) {
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
