//! The in-memory file system model with its two states: *live* (what processes see
//! through the mount) and *durable* (what survives a power cut).
//!
//! The rules, stricter than ext4 on purpose:
//! - a file's durable contents change only on `fsync`/`fdatasync` of that file, which
//!   copies the live contents (and size) over;
//! - a directory's durable entries change only on `fsync` of that directory, which copies
//!   its live entries over — so creations, unlinks and renames are undone by a power cut
//!   unless the directories involved were fsynced afterwards, each independently.
//!
//! Inodes are reference counted by live entries, durable entries, open handles and the
//! kernel's lookup count; one that nobody refers to any more is freed at once (and, for a
//! directory, releases the references its own entries held).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use crate::content::Content;
use crate::error::FsError;
pub use crate::node::{Body, Entries, Ino, Inode, Meta, NAME_MAX, ROOT};

/// The whole file system: every inode alive.
#[derive(Debug)]
pub struct Tree {
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
}

fn check_name(name: &OsStr) -> Result<(), FsError> {
    let bytes = name.as_bytes();
    if bytes.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(FsError::Invalid);
    }
    Ok(())
}

impl Tree {
    /// A tree with an empty root directory.
    pub fn new(root_meta: Meta) -> Self {
        let root = Inode {
            meta: root_meta,
            body: Body::Dir {
                live: Entries::new(),
                durable: Entries::new(),
            },
            // The root is pinned: it counts as linked both live and durably.
            live_links: 1,
            durable_links: 1,
            open: 0,
            lookups: 0,
        };
        Tree {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
        }
    }

    /// The number of inodes alive (for tests of garbage collection).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// The inode `ino`.
    pub fn get(&self, ino: Ino) -> Result<&Inode, FsError> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn get_mut(&mut self, ino: Ino) -> Result<&mut Inode, FsError> {
        self.inodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    /// The metadata of `ino`, for `setattr` (permissions, owner, times).
    pub fn meta_mut(&mut self, ino: Ino) -> Result<&mut Meta, FsError> {
        Ok(&mut self.get_mut(ino)?.meta)
    }

    fn live_entries(&self, dir: Ino) -> Result<&Entries, FsError> {
        match &self.get(dir)?.body {
            Body::Dir { live, .. } => Ok(live),
            Body::File { .. } => Err(FsError::NotDir),
        }
    }

    fn live_entries_mut(&mut self, dir: Ino) -> Result<&mut Entries, FsError> {
        match &mut self.get_mut(dir)?.body {
            Body::Dir { live, .. } => Ok(live),
            Body::File { .. } => Err(FsError::NotDir),
        }
    }

    /// The durable entries of directory `dir` (for writing the image).
    pub fn durable_entries(&self, dir: Ino) -> Result<&Entries, FsError> {
        match &self.get(dir)?.body {
            Body::Dir { durable, .. } => Ok(durable),
            Body::File { .. } => Err(FsError::NotDir),
        }
    }

    /// The durable contents of file `ino` (for writing the image).
    pub fn durable_content(&self, ino: Ino) -> Result<&Content, FsError> {
        match &self.get(ino)?.body {
            Body::File { durable, .. } => Ok(durable),
            Body::Dir { .. } => Err(FsError::IsDir),
        }
    }

    /// Looks `name` up in the live entries of `parent`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        self.live_entries(parent)?
            .get(name)
            .copied()
            .ok_or(FsError::NotFound)
    }

    /// A snapshot of the live entries of `dir` as `(name, ino, is_dir)`.
    pub fn list(&self, dir: Ino) -> Result<Vec<(OsString, Ino, bool)>, FsError> {
        let entries = self.live_entries(dir)?;
        Ok(entries
            .iter()
            .map(|(name, &ino)| (name.clone(), ino, self.get(ino).is_ok_and(Inode::is_dir)))
            .collect())
    }

    /// The number of live subdirectories of `dir` (for its link count).
    pub fn subdir_count(&self, dir: Ino) -> u32 {
        self.live_entries(dir).map_or(0, |entries| {
            entries
                .values()
                .filter(|&&ino| self.get(ino).is_ok_and(Inode::is_dir))
                .count() as u32
        })
    }

    fn add_node(
        &mut self,
        parent: Ino,
        name: &OsStr,
        body: Body,
        meta: Meta,
        durable: bool,
    ) -> Result<Ino, FsError> {
        check_name(name)?;
        if self.live_entries(parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                meta,
                body,
                live_links: 1,
                durable_links: u32::from(durable),
                open: 0,
                lookups: 0,
            },
        );
        let parent_node = self.get_mut(parent)?;
        parent_node.meta.touch();
        if let Body::Dir { live, durable: d } = &mut parent_node.body {
            live.insert(name.to_owned(), ino);
            if durable {
                d.insert(name.to_owned(), ino);
            }
        }
        Ok(ino)
    }

    /// Creates an empty regular file `name` in `parent` (live only, nothing durable).
    pub fn create_file(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Ino, FsError> {
        let body = Body::File {
            live: Content::default(),
            durable: Content::default(),
        };
        self.add_node(parent, name, body, meta, false)
    }

    /// Creates an empty directory `name` in `parent` (live only, nothing durable).
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Ino, FsError> {
        let body = Body::Dir {
            live: Entries::new(),
            durable: Entries::new(),
        };
        self.add_node(parent, name, body, meta, false)
    }

    /// Adds a file loaded from the image: live and durable at once.
    pub fn load_file(
        &mut self,
        parent: Ino,
        name: &OsStr,
        content: Content,
        meta: Meta,
    ) -> Result<Ino, FsError> {
        let body = Body::File {
            live: content.clone(),
            durable: content,
        };
        self.add_node(parent, name, body, meta, true)
    }

    /// Adds a directory loaded from the image: live and durable at once.
    pub fn load_dir(&mut self, parent: Ino, name: &OsStr, meta: Meta) -> Result<Ino, FsError> {
        let body = Body::Dir {
            live: Entries::new(),
            durable: Entries::new(),
        };
        self.add_node(parent, name, body, meta, true)
    }

    /// Removes the live entry `name` (a non-directory) from `parent`.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        if self.get(ino)?.is_dir() {
            return Err(FsError::IsDir);
        }
        self.remove_entry(parent, name, ino)
    }

    /// Removes the live entry `name` (an empty directory) from `parent`.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        if !self.live_entries(ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(parent, name, ino)
    }

    fn remove_entry(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> Result<(), FsError> {
        self.live_entries_mut(parent)?.remove(name);
        self.get_mut(parent)?.meta.touch();
        let node = self.get_mut(ino)?;
        node.live_links = node.live_links.saturating_sub(1);
        node.meta.ctime = SystemTime::now();
        self.collect(vec![ino]);
        Ok(())
    }

    /// True if `target` is `dir` or lies (live) below it.
    fn is_live_descendant(&self, dir: Ino, target: Ino) -> bool {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if d == target {
                return true;
            }
            if let Ok(entries) = self.live_entries(d) {
                stack.extend(
                    entries
                        .values()
                        .copied()
                        .filter(|&c| self.get(c).is_ok_and(Inode::is_dir)),
                );
            }
        }
        false
    }

    /// Renames `parent/name` to `newparent/newname` in the live state, replacing a
    /// compatible existing target (a file by a file, an empty directory by a directory).
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
    ) -> Result<(), FsError> {
        check_name(newname)?;
        let src = self.lookup(parent, name)?;
        let src_is_dir = self.get(src)?.is_dir();
        let target = self.live_entries(newparent)?.get(newname).copied();
        if target == Some(src) {
            return Ok(()); // Both names refer to the same inode: POSIX says do nothing.
        }
        if src_is_dir && self.is_live_descendant(src, newparent) {
            return Err(FsError::Invalid);
        }
        if let Some(t) = target {
            let target_node = self.get(t)?;
            match (src_is_dir, target_node.is_dir()) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if target_node.live_size() != 0 => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        self.live_entries_mut(parent)?.remove(name);
        self.live_entries_mut(newparent)?
            .insert(newname.to_owned(), src);
        self.get_mut(parent)?.meta.touch();
        self.get_mut(newparent)?.meta.touch();
        self.get_mut(src)?.meta.ctime = SystemTime::now();
        if let Some(t) = target {
            let node = self.get_mut(t)?;
            node.live_links = node.live_links.saturating_sub(1);
            self.collect(vec![t]);
        }
        Ok(())
    }

    /// The live contents of file `ino`.
    pub fn content(&self, ino: Ino) -> Result<&Content, FsError> {
        match &self.get(ino)?.body {
            Body::File { live, .. } => Ok(live),
            Body::Dir { .. } => Err(FsError::IsDir),
        }
    }

    fn content_mut(&mut self, ino: Ino) -> Result<&mut Content, FsError> {
        let node = self.get_mut(ino)?;
        node.meta.touch();
        match &mut node.body {
            Body::File { live, .. } => Ok(live),
            Body::Dir { .. } => Err(FsError::IsDir),
        }
    }

    /// Writes `data` at `offset` into the live contents of file `ino`.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<(), FsError> {
        self.content_mut(ino)?.write(offset, data)
    }

    /// Truncates or extends the live contents of file `ino`.
    pub fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), FsError> {
        self.content_mut(ino)?.set_len(len)
    }

    /// `fsync` of `ino`: a file's live contents, or a directory's live entries, become
    /// durable.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), FsError> {
        let (added, removed) = match &mut self.get_mut(ino)?.body {
            Body::File { live, durable } => {
                *durable = live.clone();
                return Ok(());
            }
            Body::Dir { live, durable } => {
                let old = std::mem::replace(durable, live.clone());
                let added: Vec<Ino> = live.values().copied().collect();
                let removed: Vec<Ino> = old.into_values().collect();
                (added, removed)
            }
        };
        for ino in added {
            if let Some(node) = self.inodes.get_mut(&ino) {
                node.durable_links += 1;
            }
        }
        for &ino in &removed {
            if let Some(node) = self.inodes.get_mut(&ino) {
                node.durable_links = node.durable_links.saturating_sub(1);
            }
        }
        self.collect(removed);
        Ok(())
    }

    /// An open handle now refers to `ino`.
    pub fn open(&mut self, ino: Ino) -> Result<(), FsError> {
        self.get_mut(ino)?.open += 1;
        Ok(())
    }

    /// An open handle to `ino` was released.
    pub fn close(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.open = node.open.saturating_sub(1);
            self.collect(vec![ino]);
        }
    }

    /// The kernel got a reference to `ino` (an entry reply).
    pub fn add_lookup(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            self.collect(vec![ino]);
        }
    }

    /// Frees every inode in `work` (and, transitively, below) that nothing refers to.
    fn collect(&mut self, mut work: Vec<Ino>) {
        while let Some(ino) = work.pop() {
            let Some(node) = self.inodes.get(&ino) else {
                continue;
            };
            if ino == ROOT
                || node.live_links > 0
                || node.durable_links > 0
                || node.open > 0
                || node.lookups > 0
            {
                continue;
            }
            let Some(node) = self.inodes.remove(&ino) else {
                continue;
            };
            if let Body::Dir { live, durable } = node.body {
                for child in live.into_values() {
                    if let Some(c) = self.inodes.get_mut(&child) {
                        c.live_links = c.live_links.saturating_sub(1);
                        work.push(child);
                    }
                }
                for child in durable.into_values() {
                    if let Some(c) = self.inodes.get_mut(&child) {
                        c.durable_links = c.durable_links.saturating_sub(1);
                        work.push(child);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
