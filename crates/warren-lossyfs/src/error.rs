//! Typed errors of every layer: the in-memory model ([`FsError`], which maps to an errno
//! for the kernel), the on-disk image ([`ImageError`]), the daemon ([`DaemonError`]) and
//! the test helper ([`HarnessError`]).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// An error of a file system operation on the in-memory model; each maps to one errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// No such inode or directory entry (`ENOENT`).
    #[error("no such file or directory")]
    NotFound,
    /// The name already exists (`EEXIST`).
    #[error("file exists")]
    Exists,
    /// A directory was required (`ENOTDIR`).
    #[error("not a directory")]
    NotDir,
    /// A non-directory was required (`EISDIR`).
    #[error("is a directory")]
    IsDir,
    /// The directory still has entries (`ENOTEMPTY`).
    #[error("directory not empty")]
    NotEmpty,
    /// Invalid argument, e.g. unsupported rename flags (`EINVAL`).
    #[error("invalid argument")]
    Invalid,
    /// Hard links, symlinks and special files are not supported (`EPERM`).
    #[error("operation not permitted")]
    NotPermitted,
    /// A name longer than 255 bytes (`ENAMETOOLONG`).
    #[error("file name too long")]
    NameTooLong,
    /// The file would exceed the model's maximum size (`EFBIG`).
    #[error("file too large")]
    TooBig,
    /// The mode argument of an unsupported operation variant (`EOPNOTSUPP`).
    #[error("operation not supported")]
    NotSupported,
    /// The power has been cut: every request fails (`EIO`).
    #[error("power is off")]
    PoweredOff,
}

impl FsError {
    /// The errno the kernel should see for this error.
    pub fn errno(self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid => libc::EINVAL,
            FsError::NotPermitted => libc::EPERM,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::TooBig => libc::EFBIG,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::PoweredOff => libc::EIO,
        }
    }
}

/// An error while loading the image directory or writing the durable state back.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The image holds something other than directories and regular files.
    #[error("{0}: unsupported file type (only directories and regular files are allowed)")]
    Unsupported(PathBuf),
    /// The image path has no parent directory or no file name, so no sibling can be made.
    #[error("{0}: the image directory needs a parent directory and a name")]
    BadImagePath(PathBuf),
    /// A model-level error while building the tree (e.g. a name that is too long).
    #[error("{path}: {source}")]
    Model {
        /// The path being loaded.
        path: PathBuf,
        /// The model error.
        #[source]
        source: FsError,
    },
}

impl ImageError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error of the `warren-lossyfs` daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Loading or writing the image failed.
    #[error("image: {0}")]
    Image(#[from] ImageError),
    /// Preparing the mount point failed.
    #[error("mount point {path}: {source}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The FUSE mount itself failed.
    #[error("mounting {path} failed: {source} (is /dev/fuse present and are we root?)")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A signal-handling system call failed.
    #[error("signal handling: {0}")]
    Signals(#[source] io::Error),
    /// Writing the ready line to stdout failed.
    #[error("stdout: {0}")]
    Stdout(#[source] io::Error),
}

/// An error of the [`Mounted`](crate::Mounted) test helper.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `/dev/fuse` does not exist: FUSE cannot work on this machine.
    #[error(
        "/dev/fuse is missing: warren-lossyfs needs the FUSE device (and root) to mount; \
         these crash tests cannot run here"
    )]
    NoFuseDevice,
    /// The lossyfs binary is not at the given path.
    #[error(
        "lossyfs binary {0} not found (build it with `cargo build --workspace --bins`, \
         or set WARREN_LOSSYFS_BIN)"
    )]
    NoBinary(PathBuf),
    /// Spawning, signalling or waiting for the daemon failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The daemon exited before printing its ready line.
    #[error("lossyfs exited before mounting ({0}); see its stderr above")]
    ExitedEarly(ExitStatus),
    /// The daemon did not print its ready line in time.
    #[error("lossyfs did not report the mount within {0:?}")]
    StartTimeout(std::time::Duration),
    /// The daemon did not exit in time after SIGTERM.
    #[error("lossyfs did not exit within {0:?} after SIGTERM (killed it)")]
    StopTimeout(std::time::Duration),
    /// The daemon exited unsuccessfully after SIGTERM.
    #[error("lossyfs exited with {0} after SIGTERM; the image may not have been written")]
    BadExit(ExitStatus),
}
