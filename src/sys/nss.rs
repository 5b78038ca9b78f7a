//! Reentrant user and group database look-ups (getpwuid_r and friends).
//! nix's wrappers read `errno` where these functions return their error, so
//! a failed look-up could pass for "no such entry": kvmnet's policy must
//! tell the two apart (a failed look-up refuses).

use std::ffi::{CStr, CString};

/// A passwd entry: its uid, name and primary gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    pub name: CString,
    pub gid: u32,
}

/// `Ok(None)`: no such entry; `Err(errno)`: the look-up failed.
pub type Found<T> = Result<Option<T>, i32>;

pub fn user_by_uid(uid: u32) -> Found<Passwd> {
    passwd(|pw, buf, res| {
        // SAFETY: `pw`, `res` and `buf` are valid for writes and `buf.len()`
        // is the buffer's real size; glibc fills `pw` with pointers into `buf`.
        unsafe { libc::getpwuid_r(uid, pw, buf.as_mut_ptr().cast(), buf.len(), res) }
    })
}

pub fn user_by_name(name: &CStr) -> Found<Passwd> {
    passwd(|pw, buf, res| {
        // SAFETY: as in `user_by_uid`; `name` is NUL-terminated and outlives
        // the call.
        unsafe { libc::getpwnam_r(name.as_ptr(), pw, buf.as_mut_ptr().cast(), buf.len(), res) }
    })
}

/// The gid of group `name`.
pub fn group_by_name(name: &CStr) -> Found<u32> {
    group(|gr, buf, res| {
        // SAFETY: as in `user_by_uid`, for a group entry.
        unsafe { libc::getgrnam_r(name.as_ptr(), gr, buf.as_mut_ptr().cast(), buf.len(), res) }
    })
}

/// Whether `gid` has an entry (its gid).
pub fn group_by_gid(gid: u32) -> Found<u32> {
    group(|gr, buf, res| {
        // SAFETY: as in `user_by_uid`, for a group entry.
        unsafe { libc::getgrgid_r(gid, gr, buf.as_mut_ptr().cast(), buf.len(), res) }
    })
}

/// Runs a reentrant NSS call, growing its buffer on ERANGE. Only a return of
/// 0 with no entry is "not found"; any other return is the look-up's errno
/// (POSIX lets some systems say "not found" with ENOENT or ESRCH; glibc says
/// it with 0, and taking those for errors only refuses more).
fn nss_call<E: Copy>(
    empty: E,
    mut call: impl FnMut(&mut E, &mut [u8], &mut *mut E) -> libc::c_int,
) -> Found<E> {
    let mut buf = vec![0u8; 1024];
    loop {
        let mut entry = empty;
        let mut res: *mut E = std::ptr::null_mut();
        match call(&mut entry, &mut buf, &mut res) {
            0 if res.is_null() => return Ok(None),
            0 => return Ok(Some(entry)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            errno => return Err(errno),
        }
    }
}

/// A passwd entry, copied out before the buffer goes.
fn passwd(
    mut call: impl FnMut(&mut libc::passwd, &mut [u8], &mut *mut libc::passwd) -> libc::c_int,
) -> Found<Passwd> {
    // SAFETY: libc::passwd is plain data (integers and pointers) for which
    // all-zero bytes are a valid value.
    let empty: libc::passwd = unsafe { std::mem::zeroed() };
    let mut name = None;
    let found = nss_call(empty, |pw, buf, res| {
        let rc = call(pw, buf, res);
        if rc == 0 && !res.is_null() {
            // SAFETY: on success glibc set pw_name to a NUL-terminated string
            // in `buf`, which is still alive here.
            name = Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_owned());
        }
        rc
    })?;
    Ok(found.zip(name).map(|(pw, name)| Passwd {
        uid: pw.pw_uid,
        name,
        gid: pw.pw_gid,
    }))
}

/// A group entry's gid (members are not read: the caller's groups come from
/// the kernel or from getgrouplist).
fn group(
    call: impl FnMut(&mut libc::group, &mut [u8], &mut *mut libc::group) -> libc::c_int,
) -> Found<u32> {
    // SAFETY: libc::group is plain data for which all-zero bytes are valid.
    let empty: libc::group = unsafe { std::mem::zeroed() };
    Ok(nss_call(empty, call)?.map(|g| g.gr_gid))
}
