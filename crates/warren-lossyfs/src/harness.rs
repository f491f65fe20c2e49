//! [`Mounted`]: the helper crash tests use to run a `warren-lossyfs` daemon, wait for its
//! mount, and cut the power.
//!
//! ```no_run
//! use warren_lossyfs::Mounted;
//! # fn main() -> Result<(), warren_lossyfs::HarnessError> {
//! // Inside this crate's tests: env!("CARGO_BIN_EXE_warren-lossyfs").
//! // Elsewhere: warren_lossyfs::locate_binary(), after `cargo build --workspace --bins`.
//! let bin = warren_lossyfs::locate_binary().expect("build warren-lossyfs first");
//! let fs = Mounted::start(&bin, "/tmp/t/image", "/tmp/t/mnt")?;
//! std::fs::write(fs.mount_dir().join("x"), b"lost: never fsynced").unwrap();
//! fs.power_cut()?; // /tmp/t/image now holds only what was durable
//! # Ok(()) }
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::HarnessError;

/// How long [`Mounted::start`] waits for the ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Mounted::power_cut`] waits for the daemon to write the image and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The prefix of the daemon's ready line (`lossyfs: mounted MNT`).
pub const READY_PREFIX: &str = "lossyfs: mounted ";

/// Finds the `warren-lossyfs` binary for tests of *other* crates: `$WARREN_LOSSYFS_BIN`
/// if set, else `warren-lossyfs` in the target directory the running test binary was
/// built into (`target/debug/deps/foo-HASH` → `target/debug/warren-lossyfs`), which
/// exists after `cargo build --workspace --bins`. Inside this crate use
/// `env!("CARGO_BIN_EXE_warren-lossyfs")` instead (cargo builds it for the tests).
pub fn locate_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARREN_LOSSYFS_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?;
    }
    let bin = dir.join("warren-lossyfs");
    bin.is_file().then_some(bin)
}

/// `path` made absolute without touching its last component (which may be a dead mount
/// whose `stat` fails with `ENOTCONN`).
fn absolute(path: &Path) -> PathBuf {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    parent
        .canonicalize()
        .map_or_else(|_| path.to_owned(), |p| p.join(name))
}

/// Decodes the octal escapes (`\040` for a space, ...) of a `/proc/self/mountinfo` field.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// True if something is mounted at `mount_dir` (per `/proc/self/mountinfo`).
pub fn is_mounted(mount_dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let target = absolute(mount_dir);
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| unescape(mp) == target.as_os_str().as_bytes())
}

/// Lazily unmounts `mount_dir` if it is mounted (`fusermount3 -uz`, else `umount2`).
/// Use it, or `fusermount3 -u MNT` by hand, to clear a mount a killed daemon left behind.
pub fn cleanup_mount(mount_dir: &Path) {
    if is_mounted(mount_dir) {
        let ok = Command::new("fusermount3")
            .args(["-u", "-z", "-q", "--"])
            .arg(absolute(mount_dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            crate::daemon::lazy_unmount(&absolute(mount_dir));
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A running `warren-lossyfs` daemon with its mount ready.
///
/// Dropping it without [`power_cut`](Self::power_cut) kills the daemon (SIGKILL: the
/// image is left untouched) and lazily unmounts the mount point.
#[derive(Debug)]
pub struct Mounted {
    child: Option<Child>,
    image_dir: PathBuf,
    mount_dir: PathBuf,
}

impl Mounted {
    /// Starts `binary --image image_dir --mount mount_dir` and waits (up to
    /// [`START_TIMEOUT`]) until the mount is ready. `binary` is
    /// `env!("CARGO_BIN_EXE_warren-lossyfs")` in this crate's tests, or
    /// [`locate_binary`]`()` elsewhere. The daemon's stderr goes to the caller's stderr.
    pub fn start(
        binary: impl AsRef<Path>,
        image_dir: impl AsRef<Path>,
        mount_dir: impl AsRef<Path>,
    ) -> Result<Mounted, HarnessError> {
        Self::start_with_timeout(binary, image_dir, mount_dir, START_TIMEOUT)
    }

    /// [`start`](Self::start) with a chosen timeout.
    pub fn start_with_timeout(
        binary: impl AsRef<Path>,
        image_dir: impl AsRef<Path>,
        mount_dir: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Mounted, HarnessError> {
        let binary = binary.as_ref();
        if !Path::new("/dev/fuse").exists() {
            return Err(HarnessError::NoFuseDevice);
        }
        if !binary.is_file() {
            return Err(HarnessError::NoBinary(binary.to_owned()));
        }
        let mut child = Command::new(binary)
            .arg("--image")
            .arg(image_dir.as_ref())
            .arg("--mount")
            .arg(mount_dir.as_ref())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io_err(format!("spawning {}", binary.display())))?;
        let mut mounted = Mounted {
            image_dir: image_dir.as_ref().to_owned(),
            mount_dir: mount_dir.as_ref().to_owned(),
            child: None,
        };
        let stdout = child.stdout.take();
        mounted.child = Some(child);
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            // Forwards lines until the daemon closes stdout; draining keeps it from
            // blocking on a full pipe.
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(READY_PREFIX) => return Ok(mounted),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = mounted.wait_exit(Duration::from_secs(5))?;
                    return Err(HarnessError::ExitedEarly(status));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    drop(mounted); // kills the daemon and clears the mount
                    return Err(HarnessError::StartTimeout(timeout));
                }
            }
        }
    }

    /// The mount point as passed to [`start`](Self::start).
    pub fn mount_dir(&self) -> &Path {
        &self.mount_dir
    }

    /// The image directory as passed to [`start`](Self::start).
    pub fn image_dir(&self) -> &Path {
        &self.image_dir
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Cuts the power: sends SIGTERM and waits (up to [`STOP_TIMEOUT`]) until the daemon
    /// has written the durable state to the image directory, unmounted, and exited 0.
    pub fn power_cut(mut self) -> Result<(), HarnessError> {
        let Some(child) = self.child.as_ref() else {
            return Ok(());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet reaped, so the id cannot be reused.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(io_err("sending SIGTERM")(std::io::Error::last_os_error()));
        }
        match self.wait_exit(STOP_TIMEOUT) {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(HarnessError::BadExit(status)),
            Err(e) => Err(e),
        }
    }

    /// Waits for the daemon to exit; kills it after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Err(io_err("waiting")(std::io::ErrorKind::NotFound.into()));
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    cleanup_mount(&self.mount_dir);
                    return Err(HarnessError::StopTimeout(timeout));
                }
                Err(e) => {
                    self.child = Some(child);
                    return Err(io_err("waiting for lossyfs")(e));
                }
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        cleanup_mount(&self.mount_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/tmp/a\040b\\c"), b"/tmp/a b\\\\c");
        assert_eq!(unescape(r"/x\134y"), b"/x\\y");
    }
}
