//! Reading extended attributes (file capabilities, POSIX ACLs).

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Reads attribute `name` of `path` into `buf` (following a symbolic link
/// when `follow`); with an empty `buf`, only asks for its length. `Ok(None)`
/// when the file has no such attribute or its file system none at all.
pub fn get(path: &Path, name: &CStr, follow: bool, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let call = if follow {
        libc::getxattr
    } else {
        libc::lgetxattr
    };
    let (ptr, len) = if buf.is_empty() {
        (std::ptr::null_mut(), 0)
    } else {
        (buf.as_mut_ptr().cast(), buf.len())
    };
    // SAFETY: `c` and `name` are NUL-terminated strings that live across the
    // call; `ptr` is null with length 0 (a length query) or `buf`, writable
    // for `len` bytes, of which the kernel writes at most that many (ERANGE
    // otherwise). The call keeps no pointer.
    let n = unsafe { call(c.as_ptr(), name.as_ptr(), ptr, len) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(None),
        _ => Err(e),
    }
}
