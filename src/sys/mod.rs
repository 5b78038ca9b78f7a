//! Every `unsafe` block of kvmnet: thin, safe wrappers over the system calls
//! std and nix do not cover (the TUN ioctls, reentrant NSS look-ups,
//! extended attributes, the auxiliary vector, adopting an inherited
//! descriptor, the unread bytes of a pipe). The crate denies `unsafe_code`
//! everywhere else (lib.rs), so a reviewer reads every soundness argument
//! here, each in a `// SAFETY:` comment at its block.

pub mod fd;
pub mod nss;
pub mod tun;
pub mod xattr;

/// AT_SECURE from the auxiliary vector the kernel passed at exec: the exec
/// gained privilege (setuid, setgid, file capabilities, an LSM domain
/// change). glibc's getauxval reads the copy it keeps, without opening
/// /proc/self/auxv.
pub fn at_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector glibc saved at start
    // (it takes and returns integers, and is thread-safe).
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
