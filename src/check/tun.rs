//! /dev/net/tun: there, the TUN device, and open to the callers who create
//! their own taps.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{as_whom, denied, Findings};
use crate::trust::{mode_bit, Perm, Who};

const TUN_MAJOR: u64 = 10;
const TUN_MINOR: u64 = 200;

pub(super) fn check(path: &Path, users_run_it: bool, out: &mut Findings) {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            out.error(
                "tun",
                format!("{shown} does not exist: kvmnet-ifup cannot create taps"),
                format!("modprobe tun (if it is still missing: mkdir -p {} && mknod -m 0666 {shown} c 10 200)", path.parent().unwrap_or(Path::new("/")).display()),
            );
            return;
        }
        Err(e) if denied(&e) => {
            out.unchecked("tun", format!("cannot look at {shown} {}", as_whom()));
            return;
        }
        Err(e) => {
            out.error(
                "tun",
                format!("cannot look at {shown}: {}", crate::os_error::describe(&e)),
                format!("modprobe tun (if it is still missing: mknod -m 0666 {shown} c 10 200)"),
            );
            return;
        }
    };
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    if !meta.file_type().is_char_device() || (major, minor) != (TUN_MAJOR, TUN_MINOR) {
        out.error(
            "tun",
            format!("{shown} is not the TUN device (character device 10:200)"),
            format!("rm {shown}; modprobe tun (or mknod -m 0666 {shown} c 10 200)"),
        );
        return;
    }
    let mode = meta.mode() & 0o7777;
    let read_write = mode_bit(Who::Others, Perm::Read) | mode_bit(Who::Others, Perm::Write);
    if users_run_it && mode & read_write != read_write {
        out.warn(
            "tun",
            format!("{shown} is mode {mode:04o}: a setuid or file-capability kvmnet-ifup runs as the calling user and cannot open it to create taps"),
            format!("chmod 0666 {shown} (the distribution default; creating a tap still needs CAP_NET_ADMIN)"),
        );
    } else {
        out.ok(
            "tun",
            format!("{shown} is the TUN device (mode {mode:04o})"),
        );
    }
}
