//! The few operating-system calls that `std` does not offer: `statvfs` for free disk space and
//! `flock` so that two stores never write the same directory, plus the directory fsync that
//! makes a create/rename durable.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let mut c_path = path.as_os_str().as_bytes().to_vec();
    c_path.push(0);
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `st` is plain old data that
    // statvfs fills in, and we read it only when the call reports success.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr().cast(), &mut st) != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // the field widths differ between platforms
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
}

/// Takes an exclusive, non-blocking advisory lock on `file`. The lock lives as long as the
/// open file description, so it is released when the file is closed (also by a crash).
pub(crate) fn lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: the descriptor is valid for the lifetime of `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable. Without it a
/// file whose data was fdatasync'ed can still be missing from its directory after a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
