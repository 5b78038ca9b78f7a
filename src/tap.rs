//! The TUN/TAP ioctls: the only `unsafe` code in kvmnet.
//!
//! kvmnet only *creates* taps here (the in-process `ip tuntap add NAME mode tap
//! user U`). Everything else about a tap (state, owner, master) is read and changed
//! over rtnetlink, so that the ioctl surface stays minimal.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::name::TapName;

pub const TUN_PATH: &str = "/dev/net/tun";

// From <linux/if_tun.h>. Stable kernel ABI.
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
// Fail with EBUSY instead of silently attaching to a tap that already exists:
// this is what makes "did *this* run create it?" race-free.
const IFF_TUN_EXCL: libc::c_short = -0x8000; // 0x8000 as a signed short

nix::ioctl_write_int!(tun_set_persist, b'T', 203);
nix::ioctl_write_int!(tun_set_owner, b'T', 204);
nix::ioctl_write_int!(tun_set_group, b'T', 206);
nix::ioctl_read!(tun_get_features, b'T', 207, libc::c_uint);
// TUNSETIFF is declared _IOW('T', 202, int) but takes a struct ifreq pointer,
// and the kernel writes the chosen name back into it (for "tap%d").
nix::ioctl_readwrite_bad!(
    tun_set_iff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    IfReq
);

/// `struct ifreq` reduced to the members TUNSETIFF reads. The kernel copies
/// `sizeof(struct ifreq)` = 40 bytes, so the padding keeps the buffer that large.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{path} does not exist; load the tun module (modprobe tun) or create the node (mknod {path} c 10 200)")]
    NoDevice { path: String },
    #[error(
        "cannot open {path}: {}; kvmnet needs CAP_NET_ADMIN and read-write access to it",
        crate::error::plain(source)
    )]
    Open { path: String, source: io::Error },
    #[error(
        "cannot create tap {tap}: {op} failed: {}",
        crate::error::plain(source)
    )]
    Ioctl {
        tap: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("cannot create tap {tap}: an interface of that name appeared meanwhile")]
    Exists { tap: String },
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewTap<'a> {
    pub name: &'a TapName,
    pub owner: u32,
    pub group: Option<u32>,
}

/// Creates a persistent tap owned by `owner`, in tap mode without packet info and
/// with the virtio-net header when the kernel offers it (QEMU's own flags, so QEMU
/// can attach to it later with `-netdev tap,ifname=NAME,script=no`).
///
/// Fails with [`TapError::Exists`] when the name is already taken, even by a tap:
/// the caller then handles it as an existing interface.
pub fn create(new: &NewTap<'_>) -> Result<(), TapError> {
    create_at(Path::new(TUN_PATH), new)
}

pub fn create_at(path: &Path, new: &NewTap<'_>) -> Result<(), TapError> {
    let tap = new.name.as_str();
    let file = open(path)?;
    let fd = file.as_raw_fd();
    let err = |op: &'static str, e: nix::Error| TapError::Ioctl {
        tap: tap.to_owned(),
        op,
        source: io::Error::from_raw_os_error(e as i32),
    };

    let mut features: libc::c_uint = 0;
    // SAFETY: `fd` is an open /dev/net/tun descriptor owned by `file`, which
    // outlives the call; TUNGETFEATURES writes one unsigned int to the valid,
    // aligned `features` we pass and nothing else.
    unsafe { tun_get_features(fd, &mut features) }.map_err(|e| err("TUNGETFEATURES", e))?;

    let mut flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL;
    if features & (IFF_VNET_HDR as libc::c_uint) != 0 {
        flags |= IFF_VNET_HDR;
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    // TapName guarantees 1..=15 ASCII bytes, so a NUL terminator always fits.
    req.name[..tap.len()].copy_from_slice(tap.as_bytes());

    // SAFETY: `req` is a fully initialised, properly sized `struct ifreq`
    // (40 bytes) with a NUL-terminated name, passed as a unique mutable
    // pointer; the kernel reads it and writes the name back into it, both
    // within its bounds. `fd` is valid as above.
    match unsafe { tun_set_iff(fd, &mut req) } {
        Ok(_) => {}
        Err(nix::Error::EBUSY) | Err(nix::Error::EEXIST) => {
            return Err(TapError::Exists {
                tap: tap.to_owned(),
            })
        }
        Err(e) => return Err(err("TUNSETIFF", e)),
    }
    // From here on the tap exists but is bound to `file`: if anything below fails,
    // dropping `file` destroys it, so there is nothing to roll back by hand.

    // SAFETY: TUNSETOWNER takes the uid by value; `fd` is attached to our new tap.
    unsafe { tun_set_owner(fd, new.owner as libc::c_ulong) }.map_err(|e| err("TUNSETOWNER", e))?;
    if let Some(gid) = new.group {
        // SAFETY: TUNSETGROUP takes the gid by value; `fd` is attached to our tap.
        unsafe { tun_set_group(fd, gid as libc::c_ulong) }.map_err(|e| err("TUNSETGROUP", e))?;
    }
    // SAFETY: TUNSETPERSIST takes a boolean by value; `fd` is attached to our tap.
    unsafe { tun_set_persist(fd, 1) }.map_err(|e| err("TUNSETPERSIST", e))?;
    Ok(())
}

/// Creates a non-persistent tap from a name template such as "tap%d" (the
/// kernel picks the number) and returns its queue and its name: what
/// qemu-bridge-helper does. The tap lives exactly as long as the returned
/// descriptor and the copies QEMU makes of it.
pub fn open_queue(
    template: &str,
    owner: u32,
    group: Option<u32>,
    vnet_hdr: bool,
) -> Result<(File, String), TapError> {
    let file = open(Path::new(TUN_PATH))?;
    let fd = file.as_raw_fd();
    let err = |op: &'static str, e: nix::Error| TapError::Ioctl {
        tap: template.to_owned(),
        op,
        source: io::Error::from_raw_os_error(e as i32),
    };
    let mut flags = IFF_TAP | IFF_NO_PI;
    if vnet_hdr {
        let mut features: libc::c_uint = 0;
        // SAFETY: as in `create_at`: a valid tun descriptor and a valid,
        // aligned unsigned int for the kernel to fill.
        unsafe { tun_get_features(fd, &mut features) }.map_err(|e| err("TUNGETFEATURES", e))?;
        if features & (IFF_VNET_HDR as libc::c_uint) != 0 {
            flags |= IFF_VNET_HDR;
        }
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    let t = template.as_bytes();
    if t.is_empty() || t.len() >= libc::IFNAMSIZ {
        return Err(err("TUNSETIFF", nix::Error::EINVAL));
    }
    req.name[..t.len()].copy_from_slice(t);
    // SAFETY: a fully initialised 40-byte `struct ifreq` with a NUL-terminated
    // template, passed as a unique mutable pointer: the kernel writes the
    // chosen name back into `name`, within its 16 bytes.
    unsafe { tun_set_iff(fd, &mut req) }.map_err(|e| err("TUNSETIFF", e))?;
    let len = req
        .name
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(libc::IFNAMSIZ);
    let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
    // SAFETY: TUNSETOWNER takes the uid by value; `fd` is attached to the tap.
    unsafe { tun_set_owner(fd, owner as libc::c_ulong) }.map_err(|e| err("TUNSETOWNER", e))?;
    if let Some(gid) = group {
        // SAFETY: TUNSETGROUP takes the gid by value; `fd` is attached to the tap.
        unsafe { tun_set_group(fd, gid as libc::c_ulong) }.map_err(|e| err("TUNSETGROUP", e))?;
    }
    Ok((file, name))
}

fn open(path: &Path) -> Result<File, TapError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => TapError::NoDevice {
                path: path.display().to_string(),
            },
            _ => TapError::Open {
                path: path.display().to_string(),
                source,
            },
        })
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
    fn excl_flag_is_0x8000() {
        assert_eq!(IFF_TUN_EXCL as u16, 0x8000);
    }

    #[test]
    fn missing_device_node_says_how_to_fix_it() {
        let name = TapName::new("t0").unwrap();
        let e = create_at(
            Path::new("/nonexistent/kvmnet/tun"),
            &NewTap {
                name: &name,
                owner: 0,
                group: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, TapError::NoDevice { .. }));
        assert!(e.to_string().contains("modprobe tun"), "{e}");
    }
}
