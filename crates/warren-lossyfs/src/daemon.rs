//! The `warren-lossyfs` process: load the image, mount, announce readiness, wait for the
//! power cut (SIGTERM/SIGINT), write the durable state back, unmount, exit.
//!
//! Signals are blocked in every thread and taken synchronously with `sigwait` on the main
//! thread, so no work happens in a signal handler. If the mount goes away on its own (for
//! example `fusermount3 -u MNT`), that counts as a power cut too.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::{fs, thread};

use fuser::{Config, MountOption, Session, SessionACL};

use crate::error::{DaemonError, ImageError};
use crate::fuse_fs::LossyFs;
use crate::image;

/// Command-line options of the daemon.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image directory: loaded at start, replaced by the durable state at the cut.
    pub image: PathBuf,
    /// Where to mount (created if missing).
    pub mount: PathBuf,
}

/// SIGUSR1 is sent to ourselves when the FUSE session ends without a signal.
const SESSION_ENDED: libc::c_int = libc::SIGUSR1;

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, SESSION_ENDED);
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread and every thread it spawns
/// later. Call it before any thread exists.
pub fn block_signals() -> Result<(), DaemonError> {
    let set = signal_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(DaemonError::Signals(io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

fn wait_signal() -> Result<libc::c_int, DaemonError> {
    let set = signal_set();
    loop {
        let mut sig = 0;
        // SAFETY: `set` is initialised and `sig` is a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        match rc {
            0 => return Ok(sig),
            libc::EINTR => continue,
            e => return Err(DaemonError::Signals(io::Error::from_raw_os_error(e))),
        }
    }
}

/// Detaches the mount at `path` (lazy unmount), via `umount2` or else `fusermount3 -uz`.
/// Returns false if neither worked (typically: nothing was mounted there).
pub fn lazy_unmount(path: &Path) -> bool {
    if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return true;
        }
    }
    Command::new("fusermount3")
        .args(["-u", "-z", "-q", "--"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates the mount point if needed and clears a stale mount left by a killed lossyfs.
fn prepare_mount_point(mount: &Path) -> Result<PathBuf, DaemonError> {
    let err = |source| DaemonError::MountPoint {
        path: mount.to_owned(),
        source,
    };
    match fs::metadata(mount) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(err(io::Error::from_raw_os_error(libc::ENOTDIR))),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            eprintln!("lossyfs: clearing a stale mount at {}", mount.display());
            lazy_unmount(mount);
            fs::metadata(mount).map_err(err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(mount).map_err(err)?,
        Err(e) => return Err(err(e)),
    }
    let canonical = fs::canonicalize(mount).map_err(err)?;
    if crate::harness::is_mounted(&canonical) {
        // Stacking a second lossyfs on a live one would make both cut the wrong mount.
        return Err(err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "something is already mounted there (unmount it: fusermount3 -u MNT)",
        )));
    }
    Ok(canonical)
}

/// Runs the daemon until the power cut. Returns once the durable state is written and the
/// mount is gone.
pub fn run(opts: &Options) -> Result<(), DaemonError> {
    block_signals()?;
    fs::create_dir_all(&opts.image).map_err(|e| ImageError::io(&opts.image, e))?;
    let image_dir = fs::canonicalize(&opts.image).map_err(|e| ImageError::io(&opts.image, e))?;
    let mount = prepare_mount_point(&opts.mount)?;
    if mount.starts_with(&image_dir) || image_dir.starts_with(&mount) {
        return Err(DaemonError::MountPoint {
            path: mount,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the mount point and the image directory must not contain each other",
            ),
        });
    }
    let tree = image::load(&image_dir)?;
    let (filesystem, state) = LossyFs::new(tree);

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("lossyfs".into()),
        MountOption::Subtype("lossyfs".into()),
    ];
    config.acl = SessionACL::All;
    let mount_err = |source| DaemonError::Mount {
        path: mount.clone(),
        source,
    };
    let session = Session::new(filesystem, &mount, &config).map_err(mount_err)?;
    let background = session.spawn().map_err(mount_err)?;
    thread::Builder::new()
        .name("lossyfs-watch".into())
        .spawn(move || {
            if let Err(e) = background.join() {
                eprintln!("lossyfs: FUSE session ended with an error: {e}");
            }
            // SAFETY: signalling our own process is always valid.
            unsafe { libc::kill(libc::getpid(), SESSION_ENDED) };
        })
        .map_err(DaemonError::Signals)?;

    let mut out = io::stdout().lock();
    writeln!(out, "lossyfs: mounted {}", opts.mount.display()).map_err(DaemonError::Stdout)?;
    out.flush().map_err(DaemonError::Stdout)?;
    drop(out);

    let sig = wait_signal()?;
    let why = match sig {
        SESSION_ENDED => "the mount went away",
        libc::SIGINT => "SIGINT",
        _ => "SIGTERM",
    };
    let written = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        image::write(st.power_off(), &image_dir)
    };
    // Requests still arriving now fail with EIO; once we exit, the kernel aborts the
    // connection and open files in the mount get ENOTCONN.
    if sig != SESSION_ENDED && !lazy_unmount(&mount) {
        eprintln!("lossyfs: could not unmount {}", mount.display());
    }
    let stats = written?;
    eprintln!(
        "lossyfs: power cut ({why}): wrote {} dirs, {} files, {} bytes to {}",
        stats.dirs,
        stats.files,
        stats.bytes,
        image_dir.display()
    );
    Ok(())
}
