//! `warren-lossyfs`: a FUSE file system that simulates power loss, for crash tests of
//! Warren's storage.
//!
//! The daemon (`warren-lossyfs --image DIR --mount MNT`) serves the tree under `DIR` from
//! memory at `MNT`. Every inode has a *live* state, which processes see, and a *durable*
//! state, which only `fsync` changes (see [`tree`] for the exact rules). On SIGTERM or
//! SIGINT — the power cut — it writes only the durable state back to `DIR`, unmounts, and
//! exits 0.
//!
//! Tests drive it with [`Mounted`]. Modules:
//! - [`tree`]: the live/durable model and its garbage collection;
//! - [`node`]: inodes and their metadata;
//! - [`content`]: copy-on-write file contents;
//! - [`image`]: loading and writing the image directory;
//! - [`fuse_fs`]: the FUSE request handlers;
//! - [`state`]: the state they share with the power switch;
//! - [`daemon`]: the process: mount, signals, power cut;
//! - [`harness`]: [`Mounted`], the test helper;
//! - [`error`]: the error types.

pub mod content;
pub mod daemon;
pub mod error;
pub mod fuse_fs;
pub mod harness;
pub mod image;
pub mod node;
pub mod state;
pub mod tree;

pub use error::{DaemonError, FsError, HarnessError, ImageError};
pub use harness::{cleanup_mount, is_mounted, locate_binary, Mounted};
