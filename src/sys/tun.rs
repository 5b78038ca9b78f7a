//! The TUN/TAP ioctls, on a descriptor of /dev/net/tun. The request numbers
//! and flags are libc's (the kernel's <linux/if_tun.h>).

use std::os::fd::{AsRawFd, BorrowedFd};

nix::ioctl_write_int_bad!(tun_set_persist, libc::TUNSETPERSIST);
nix::ioctl_write_int_bad!(tun_set_owner, libc::TUNSETOWNER);
nix::ioctl_write_int_bad!(tun_set_group, libc::TUNSETGROUP);
nix::ioctl_read_bad!(tun_get_features, libc::TUNGETFEATURES, libc::c_uint);
nix::ioctl_write_ptr_bad!(tun_set_carrier, libc::TUNSETCARRIER, libc::c_int);
// TUNSETIFF is declared _IOW('T', 202, int) but takes a struct ifreq pointer,
// and the kernel writes the chosen name back into it (for "tap%d").
nix::ioctl_readwrite_bad!(tun_set_iff, libc::TUNSETIFF, IfReq);
nix::ioctl_read_bad!(tun_get_iff, libc::TUNGETIFF, IfReq);

/// `struct ifreq` reduced to the members TUNSETIFF reads. The kernel copies
/// `sizeof(struct ifreq)` = 40 bytes, so the padding keeps the buffer that large.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// TUNGETFEATURES: the IFF_* flags this kernel's TUN driver supports.
pub fn features(fd: BorrowedFd<'_>) -> nix::Result<libc::c_uint> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int to the valid, aligned
    // `features` and nothing else; `fd` is open for the whole call.
    unsafe { tun_get_features(fd.as_raw_fd(), &mut features) }?;
    Ok(features)
}

/// TUNSETIFF with `name` (a name, or a template such as "tap%d") and
/// `flags`; returns the name the kernel gave. EINVAL for a name that does
/// not fit.
pub fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> nix::Result<String> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ {
        return Err(nix::Error::EINVAL);
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        // The flags are a C short in struct ifreq: 0x8000 (IFF_TUN_EXCL) is
        // its sign bit.
        flags: flags as u16 as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..b.len()].copy_from_slice(b);
    // SAFETY: `req` is a fully initialised 40-byte `struct ifreq` with a
    // NUL-terminated name, passed as a unique mutable pointer: the kernel
    // reads it and writes the chosen name back into `name`, within its 16
    // bytes. `fd` is open for the whole call.
    unsafe { tun_set_iff(fd.as_raw_fd(), &mut req) }?;
    Ok(req.name())
}

/// TUNGETIFF: the current name of the tap behind `fd`; EBADFD once that
/// tap has been deleted.
pub fn get_iff(fd: BorrowedFd<'_>) -> nix::Result<String> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: the kernel writes the tap's NUL-terminated name (at most 16
    // bytes) and its flags into the fully initialised 40-byte `req`, passed
    // as a unique mutable pointer; `fd` is open for the whole call.
    unsafe { tun_get_iff(fd.as_raw_fd(), &mut req) }?;
    Ok(req.name())
}

impl IfReq {
    fn name(&self) -> String {
        let len = self
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(libc::IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..len]).into_owned()
    }
}

/// TUNSETOWNER.
pub fn set_owner(fd: BorrowedFd<'_>, uid: u32) -> nix::Result<()> {
    // SAFETY: TUNSETOWNER takes the uid by value; `fd` is attached to a tap.
    unsafe { tun_set_owner(fd.as_raw_fd(), uid as libc::c_int) }.map(drop)
}

/// TUNSETGROUP.
pub fn set_group(fd: BorrowedFd<'_>, gid: u32) -> nix::Result<()> {
    // SAFETY: TUNSETGROUP takes the gid by value; `fd` is attached to a tap.
    unsafe { tun_set_group(fd.as_raw_fd(), gid as libc::c_int) }.map(drop)
}

/// TUNSETCARRIER (Linux 5.0 and later).
pub fn set_carrier(fd: BorrowedFd<'_>, on: bool) -> nix::Result<()> {
    let v = libc::c_int::from(on);
    // SAFETY: TUNSETCARRIER reads one int through the pointer, which points
    // at `v` on this stack frame for the whole call; `fd` is attached to a tap.
    unsafe { tun_set_carrier(fd.as_raw_fd(), &v) }.map(drop)
}

/// TUNSETPERSIST.
pub fn set_persist(fd: BorrowedFd<'_>, on: bool) -> nix::Result<()> {
    // SAFETY: TUNSETPERSIST takes a boolean by value; `fd` is attached to a tap.
    unsafe { tun_set_persist(fd.as_raw_fd(), libc::c_int::from(on)) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::offset_of!(IfReq, flags), 16);
    }

    #[test]
    fn the_exclusive_flag_is_the_short_sign_bit() {
        assert_eq!(libc::IFF_TUN_EXCL as u16 as libc::c_short, -0x8000);
    }
}
