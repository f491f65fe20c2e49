//! The building blocks of the model: inode numbers, metadata, and an inode with its live
//! and durable state. The rules that connect them live in [`crate::tree`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::SystemTime;

use crate::content::Content;

/// An inode number. The root directory is [`ROOT`].
pub type Ino = u64;

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: Ino = 1;

/// The longest name a directory entry may have.
pub const NAME_MAX: usize = 255;

/// Directory entries: name to inode.
pub type Entries = BTreeMap<OsString, Ino>;

/// Metadata of an inode. It is not part of the durability model: the image is written
/// with the permission bits current at the power cut.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Permission bits (`0o7777` mask).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last status change.
    pub ctime: SystemTime,
}

impl Meta {
    /// Metadata with the given permissions and owner, all times now.
    pub fn new(perm: u16, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        Meta {
            perm: perm & 0o7777,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    pub(crate) fn touch(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }
}

/// What an inode is, with its live and durable state.
#[derive(Debug)]
pub enum Body {
    /// A regular file.
    File {
        /// What reads see.
        live: Content,
        /// What survives a power cut.
        durable: Content,
    },
    /// A directory.
    Dir {
        /// What lookups and readdir see.
        live: Entries,
        /// What survives a power cut.
        durable: Entries,
    },
}

/// One inode.
#[derive(Debug)]
pub struct Inode {
    /// Metadata (live only).
    pub meta: Meta,
    /// Contents or entries.
    pub body: Body,
    pub(crate) live_links: u32,
    pub(crate) durable_links: u32,
    pub(crate) open: u32,
    pub(crate) lookups: u64,
}

impl Inode {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir { .. })
    }

    /// The number of live directory entries naming this inode.
    pub fn live_links(&self) -> u32 {
        self.live_links
    }

    /// The live size: file length, or the number of entries for a directory.
    pub fn live_size(&self) -> u64 {
        match &self.body {
            Body::File { live, .. } => live.len(),
            Body::Dir { live, .. } => live.len() as u64,
        }
    }
}
