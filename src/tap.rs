//! The TUN/TAP ioctls.
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
nix::ioctl_write_ptr!(tun_set_carrier, b'T', 226, libc::c_int);
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

/// Creates a tap owned by `owner`, in tap mode without packet info and with
/// the virtio-net header when the kernel offers it (QEMU's own flags, so QEMU
/// can attach to it later with `-netdev tap,ifname=NAME,script=no`).
///
/// The tap is not persistent yet: it lives as long as the returned [`Held`],
/// so a run that fails or is killed before [`Held::persist`] leaves nothing
/// behind (the kernel deletes the tap, its bridge port, routes and sysctls
/// when the last descriptor closes).
///
/// Fails with [`TapError::Exists`] when the name is already taken, even by a tap:
/// the caller then handles it as an existing interface.
pub fn create(new: &NewTap<'_>) -> Result<Held, TapError> {
    create_at(Path::new(TUN_PATH), new)
}

pub fn create_at(path: &Path, new: &NewTap<'_>) -> Result<Held, TapError> {
    let tap = new.name.as_str();
    let q = Queue::open(path, tap)?;
    let vnet = q.vnet_hdr_supported()?;
    match q.set_iff(tap, IFF_TUN_EXCL | if vnet { IFF_VNET_HDR } else { 0 }) {
        Err(TapError::Ioctl { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) =>
        {
            return Err(TapError::Exists {
                tap: tap.to_owned(),
            })
        }
        r => r?,
    };
    q.set_owner(new.owner, new.group)?;
    // Held by this run alone, the tap would have carrier: its port would
    // start forwarding when it comes up and stop again when this descriptor
    // closes, kernel work on the bridge for nothing. Without carrier the
    // port waits for QEMU. Kernels before 5.0 lack the ioctl; the tap then
    // keeps carrier, which costs time, not safety.
    q.carrier_off();
    Ok(Held { q })
}

/// A tap bound to this process's descriptor only.
pub struct Held {
    q: Queue,
}

impl Held {
    /// Makes the tap outlive this process: the last step of a run, taken
    /// only once everything else about the tap is in place.
    pub fn persist(self) -> Result<(), TapError> {
        self.q.set_persist()
    }
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
    let q = Queue::open(Path::new(TUN_PATH), template)?;
    let vnet = vnet_hdr && q.vnet_hdr_supported()?;
    let name = q.set_iff(template, if vnet { IFF_VNET_HDR } else { 0 })?;
    q.set_owner(owner, group)?;
    Ok((q.file, name))
}

/// An open /dev/net/tun descriptor: one method per ioctl, each mapping its
/// errno into a [`TapError`] that names the operation.
struct Queue {
    file: File,
    /// For messages: the name or template being created.
    what: String,
}

impl Queue {
    fn open(path: &Path, what: &str) -> Result<Queue, TapError> {
        Ok(Queue {
            file: open(path)?,
            what: what.to_owned(),
        })
    }

    fn err(&self, op: &'static str, e: nix::Error) -> TapError {
        TapError::Ioctl {
            tap: self.what.clone(),
            op,
            source: io::Error::from_raw_os_error(e as i32),
        }
    }

    fn vnet_hdr_supported(&self) -> Result<bool, TapError> {
        let mut features: libc::c_uint = 0;
        // SAFETY: the descriptor is an open /dev/net/tun owned by `self.file`,
        // which outlives the call; TUNGETFEATURES writes one unsigned int to
        // the valid, aligned `features` and nothing else.
        unsafe { tun_get_features(self.file.as_raw_fd(), &mut features) }
            .map_err(|e| self.err("TUNGETFEATURES", e))?;
        Ok(features & (IFF_VNET_HDR as libc::c_uint) != 0)
    }

    /// TUNSETIFF in tap mode without packet info, plus `extra` flags;
    /// returns the name the kernel gave (it fills in a "%d" template).
    fn set_iff(&self, name: &str, extra: libc::c_short) -> Result<String, TapError> {
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | extra,
            _pad: [0; 22],
        };
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= libc::IFNAMSIZ {
            return Err(self.err("TUNSETIFF", nix::Error::EINVAL));
        }
        req.name[..b.len()].copy_from_slice(b);
        // SAFETY: `req` is a fully initialised 40-byte `struct ifreq` with a
        // NUL-terminated name, passed as a unique mutable pointer: the kernel
        // reads it and writes the chosen name back into `name`, within its
        // 16 bytes. The descriptor is valid as above.
        unsafe { tun_set_iff(self.file.as_raw_fd(), &mut req) }
            .map_err(|e| self.err("TUNSETIFF", e))?;
        let len = req
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(libc::IFNAMSIZ);
        Ok(String::from_utf8_lossy(&req.name[..len]).into_owned())
    }

    fn set_owner(&self, uid: u32, gid: Option<u32>) -> Result<(), TapError> {
        let fd = self.file.as_raw_fd();
        // SAFETY: TUNSETOWNER takes the uid by value; `fd` is attached to the tap.
        unsafe { tun_set_owner(fd, uid as libc::c_ulong) }
            .map_err(|e| self.err("TUNSETOWNER", e))?;
        if let Some(gid) = gid {
            // SAFETY: TUNSETGROUP takes the gid by value; `fd` is attached to the tap.
            unsafe { tun_set_group(fd, gid as libc::c_ulong) }
                .map_err(|e| self.err("TUNSETGROUP", e))?;
        }
        Ok(())
    }

    fn carrier_off(&self) {
        let off: libc::c_int = 0;
        // SAFETY: TUNSETCARRIER reads one int through the pointer, which
        // points at `off` on this stack frame for the whole call; the
        // descriptor is attached to the tap.
        let _ = unsafe { tun_set_carrier(self.file.as_raw_fd(), &off) };
    }

    fn set_persist(&self) -> Result<(), TapError> {
        // SAFETY: TUNSETPERSIST takes a boolean by value; the descriptor is
        // attached to the tap.
        unsafe { tun_set_persist(self.file.as_raw_fd(), 1) }
            .map(|_| ())
            .map_err(|e| self.err("TUNSETPERSIST", e))
    }
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
        .err()
        .unwrap();
        assert!(matches!(e, TapError::NoDevice { .. }));
        assert!(e.to_string().contains("modprobe tun"), "{e}");
    }
}
