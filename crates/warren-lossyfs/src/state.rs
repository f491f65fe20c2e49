//! The state behind the FUSE handlers: the model [`Tree`], the open handles, and the
//! power switch; plus how an inode's attributes look to the kernel.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use fuser::{FileAttr, FileHandle, FileType, INodeNo};

use crate::error::FsError;
use crate::tree::{Body, Ino, Tree};

/// Block size reported by `stat` and `statfs`.
pub(crate) const BLOCK: u64 = 4096;

/// One directory listing, as `(name, ino, is_dir)`.
pub(crate) type Listing = Vec<(OsString, Ino, bool)>;

/// An open file or directory handle.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) ino: Ino,
    /// For directories: the listing taken when reading started (offset 0).
    pub(crate) listing: Option<Listing>,
}

/// Everything the file system knows, shared between the FUSE session thread and the
/// daemon's power-cut path.
#[derive(Debug)]
pub struct State {
    pub(crate) tree: Tree,
    pub(crate) handles: HashMap<u64, Handle>,
    next_fh: u64,
    pub(crate) powered_off: bool,
}

/// The shared state handle.
pub type Shared = Arc<Mutex<State>>;

impl State {
    /// State serving `tree`.
    pub fn new(tree: Tree) -> Self {
        State {
            tree,
            handles: HashMap::new(),
            next_fh: 1,
            powered_off: false,
        }
    }

    /// Cuts the power: every later request fails with `EIO`. Returns the tree, whose
    /// durable state is what survives.
    pub fn power_off(&mut self) -> &Tree {
        self.powered_off = true;
        &self.tree
    }

    pub(crate) fn new_handle(&mut self, ino: Ino) -> Result<FileHandle, FsError> {
        self.tree.open(ino)?;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, listing: None });
        Ok(FileHandle(fh))
    }

    pub(crate) fn drop_handle(&mut self, fh: FileHandle) {
        if let Some(handle) = self.handles.remove(&fh.0) {
            self.tree.close(handle.ino);
        }
    }
}

/// The attributes of `ino` as the kernel sees them (live state).
pub(crate) fn attr(tree: &Tree, ino: Ino) -> Result<FileAttr, FsError> {
    let node = tree.get(ino)?;
    let (kind, size, nlink) = match &node.body {
        Body::File { live, .. } => (FileType::RegularFile, live.len(), node.live_links()),
        Body::Dir { .. } => (FileType::Directory, BLOCK, 2 + tree.subdir_count(ino)),
    };
    let m = &node.meta;
    Ok(FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: m.atime,
        mtime: m.mtime,
        ctime: m.ctime,
        crtime: m.ctime,
        kind,
        perm: m.perm,
        nlink,
        uid: m.uid,
        gid: m.gid,
        rdev: 0,
        blksize: BLOCK as u32,
        flags: 0,
    })
}
