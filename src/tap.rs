//! The TUN/TAP ioctls.
//!
//! kvmnet only *creates* taps here (the in-process `ip tuntap add NAME mode tap
//! user U`). Everything else about a tap (state, owner, master) is read and changed
//! over rtnetlink, so that the ioctl surface stays minimal.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::name::TapName;
use crate::sys::tun;

pub const TUN_PATH: &str = "/dev/net/tun";

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("{path} does not exist; load the tun module (modprobe tun) or create the node (mknod {path} c 10 200)")]
    NoDevice { path: String },
    #[error(
        "cannot open {path}: {}; kvmnet needs CAP_NET_ADMIN and read-write access to it",
        crate::os_error::describe(source)
    )]
    Open { path: String, source: io::Error },
    #[error(
        "cannot create tap {tap}: {op} failed: {}",
        crate::os_error::describe(source)
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
    let features = q.features()?;
    let offered = |flag: libc::c_int| features & flag as libc::c_uint != 0;
    // Held by this run alone, the tap would have carrier: its port would
    // start forwarding when it comes up and stop again when this descriptor
    // closes, kernel work on the bridge for nothing. Without carrier the
    // port waits for QEMU. Asked for in TUNSETIFF itself where the kernel
    // offers it (Linux 6.0), the missing carrier also marks the tap as one
    // a run is still creating from its first instant (see ifup).
    let no_carrier = offered(libc::IFF_NO_CARRIER);
    let mut flags = libc::IFF_TUN_EXCL;
    for (flag, on) in [
        (libc::IFF_VNET_HDR, offered(libc::IFF_VNET_HDR)),
        (libc::IFF_NO_CARRIER, no_carrier),
    ] {
        if on {
            flags |= flag;
        }
    }
    match q.set_iff(tap, flags) {
        Err(TapError::Ioctl { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) =>
        {
            return Err(TapError::Exists {
                tap: tap.to_owned(),
            })
        }
        r => r?,
    };
    // Kernels before 6.0 switch the carrier off afterwards (5.0 and later;
    // before that the tap keeps carrier, which costs time, not safety).
    if !no_carrier {
        q.carrier_off();
    }
    q.set_owner(new.owner, new.group)?;
    Ok(Held { q })
}

/// A tap bound to this process's descriptor only.
pub struct Held {
    q: Queue,
}

impl Held {
    /// The name the held tap has now; fails once it has been deleted (by an
    /// administrator, or a racer with CAP_NET_ADMIN). A link found by this
    /// name afterwards is the held tap, unless it was renamed meanwhile.
    pub fn name(&self) -> Result<String, TapError> {
        tun::get_iff(self.q.file.as_fd()).map_err(|e| self.q.err("TUNGETIFF", e))
    }

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
    let vnet = vnet_hdr && q.features()? & libc::IFF_VNET_HDR as libc::c_uint != 0;
    let name = q.set_iff(template, if vnet { libc::IFF_VNET_HDR } else { 0 })?;
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

    /// The IFF_* flags this kernel's TUN driver offers.
    fn features(&self) -> Result<libc::c_uint, TapError> {
        tun::features(self.file.as_fd()).map_err(|e| self.err("TUNGETFEATURES", e))
    }

    /// TUNSETIFF in tap mode without packet info, plus `extra` flags;
    /// returns the name the kernel gave (it fills in a "%d" template).
    fn set_iff(&self, name: &str, extra: libc::c_int) -> Result<String, TapError> {
        tun::set_iff(
            self.file.as_fd(),
            name,
            libc::IFF_TAP | libc::IFF_NO_PI | extra,
        )
        .map_err(|e| self.err("TUNSETIFF", e))
    }

    fn set_owner(&self, uid: u32, gid: Option<u32>) -> Result<(), TapError> {
        let fd = self.file.as_fd();
        tun::set_owner(fd, uid).map_err(|e| self.err("TUNSETOWNER", e))?;
        if let Some(gid) = gid {
            tun::set_group(fd, gid).map_err(|e| self.err("TUNSETGROUP", e))?;
        }
        Ok(())
    }

    fn carrier_off(&self) {
        let _ = tun::set_carrier(self.file.as_fd(), false);
    }

    fn set_persist(&self) -> Result<(), TapError> {
        tun::set_persist(self.file.as_fd(), true).map_err(|e| self.err("TUNSETPERSIST", e))
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
