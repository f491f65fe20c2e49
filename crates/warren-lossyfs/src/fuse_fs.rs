//! The FUSE front end: translates kernel requests into operations on the [`Tree`] model
//! and the model's results into replies (the state itself is in [`crate::state`]).
//!
//! All state sits behind one mutex ([`Shared`]), which the daemon also takes to cut the
//! power: from then on every request fails with `EIO`. Each request is answered exactly
//! once, and nothing the kernel sends can panic: unknown inodes give `ENOENT`, wrong kinds
//! `EISDIR`/`ENOTDIR`, and so on.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::error::FsError;
use crate::state::{attr, Shared, State, BLOCK};
use crate::tree::{Ino, Meta, Tree, NAME_MAX, ROOT};

/// How long the kernel may cache attributes and entries: lossyfs is the only writer.
const TTL: Duration = Duration::from_secs(1);
/// Space reported by `statfs` (all of it free).
const REPORTED_SPACE: u64 = 100 << 30;
/// Inodes reported by `statfs`.
const REPORTED_INODES: u64 = 1 << 24;

/// The FUSE file system.
#[derive(Debug)]
pub struct LossyFs {
    state: Shared,
}

fn errno(e: FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn new_meta(req: &Request, mode: u32, umask: u32) -> Meta {
    Meta::new((mode & !umask & 0o7777) as u16, req.uid(), req.gid())
}

impl LossyFs {
    /// A file system serving `tree`, and the shared state to cut its power with.
    pub fn new(tree: Tree) -> (Self, Shared) {
        let state = Arc::new(Mutex::new(State::new(tree)));
        (
            LossyFs {
                state: state.clone(),
            },
            state,
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock can only come from a panic in a request, which the code avoids;
        // the state is still consistent enough to keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state unless the power is off.
    fn run<T>(&self, f: impl FnOnce(&mut State) -> Result<T, FsError>) -> Result<T, FsError> {
        let mut st = self.lock();
        if st.powered_off {
            return Err(FsError::PoweredOff);
        }
        f(&mut st)
    }

    fn reply_empty(&self, reply: ReplyEmpty, f: impl FnOnce(&mut State) -> Result<(), FsError>) {
        match self.run(f) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Answers an entry request with the inode `f` created or found.
    fn reply_entry(&self, reply: ReplyEntry, f: impl FnOnce(&mut State) -> Result<Ino, FsError>) {
        let res = self.run(|st| {
            let ino = f(st)?;
            let a = attr(&st.tree, ino)?;
            st.tree.add_lookup(ino);
            Ok(a)
        });
        match res {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if name.len() > NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        self.reply_entry(reply, |st| st.tree.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.lock().tree.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.run(|st| attr(&st.tree, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let res = self.run(|st| {
            if let Some(size) = size {
                st.tree.set_len(ino.0, size)?;
            }
            let meta = st.tree.meta_mut(ino.0)?;
            if let Some(mode) = mode {
                meta.perm = (mode & 0o7777) as u16;
            }
            meta.uid = uid.unwrap_or(meta.uid);
            meta.gid = gid.unwrap_or(meta.gid);
            if let Some(t) = atime {
                meta.atime = time(t);
            }
            if let Some(t) = mtime {
                meta.mtime = time(t);
            }
            meta.ctime = SystemTime::now();
            attr(&st.tree, ino.0)
        });
        match res {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL); // There are no symlinks.
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let fmt = mode & libc::S_IFMT;
        if fmt != libc::S_IFREG && fmt != 0 {
            return reply.error(Errno::EPERM); // Only regular files.
        }
        let meta = new_meta(req, mode, umask);
        self.reply_entry(reply, |st| st.tree.create_file(parent.0, name, meta));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let meta = new_meta(req, mode, umask);
        self.reply_entry(reply, |st| st.tree.mkdir(parent.0, name, meta));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.reply_empty(reply, |st| st.tree.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.reply_empty(reply, |st| st.tree.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL); // No RENAME_NOREPLACE / RENAME_EXCHANGE.
        }
        self.reply_empty(reply, |st| {
            st.tree.rename(parent.0, name, newparent.0, newname)
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let res = self.run(|st| {
            if st.tree.get(ino.0)?.is_dir() {
                return Err(FsError::IsDir);
            }
            if flags.0 & libc::O_TRUNC != 0 {
                st.tree.set_len(ino.0, 0)?;
            }
            st.new_handle(ino.0)
        });
        match res {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.run(|st| Ok(st.tree.content(ino.0)?.read(offset, size as usize))) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Ok(len) = u32::try_from(data.len()) else {
            return reply.error(Errno::EINVAL);
        };
        match self.run(|st| st.tree.write(ino.0, offset, data)) {
            Ok(()) => reply.written(len),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        self.reply_empty(reply, |st| st.tree.get(ino.0).map(|_| ()));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().drop_handle(fh);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        self.reply_empty(reply, |st| st.tree.fsync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let res = self.run(|st| {
            if !st.tree.get(ino.0)?.is_dir() {
                return Err(FsError::NotDir);
            }
            st.new_handle(ino.0)
        });
        match res {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.powered_off {
            return reply.error(errno(FsError::PoweredOff));
        }
        // Entries are numbered from 1 in a listing taken at offset 0, so a directory
        // changing while it is read neither repeats nor skips entries.
        let mut scratch = None;
        let slot = match st.handles.get_mut(&fh.0) {
            Some(h) if h.ino == ino.0 => &mut h.listing,
            _ => &mut scratch,
        };
        if offset == 0 || slot.is_none() {
            match st.tree.list(ino.0) {
                Ok(listing) => *slot = Some(listing),
                Err(e) => return reply.error(errno(e)),
            }
        }
        let listing = slot.as_deref().unwrap_or_default();
        let dots = [
            (OsStr::new("."), ino.0, true),
            (OsStr::new(".."), ROOT, true),
        ];
        let all = dots
            .into_iter()
            .chain(listing.iter().map(|(n, i, d)| (n.as_os_str(), *i, *d)));
        for (idx, (name, child, is_dir)) in all.enumerate().skip(offset as usize) {
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), idx as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().drop_handle(fh);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.reply_empty(reply, |st| {
            if !st.tree.get(ino.0)?.is_dir() {
                return Err(FsError::NotDir);
            }
            st.tree.fsync(ino.0)
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let used = self.lock().tree.inode_count() as u64;
        let blocks = REPORTED_SPACE / BLOCK;
        reply.statfs(
            blocks,
            blocks,
            blocks,
            REPORTED_INODES,
            REPORTED_INODES.saturating_sub(used),
            BLOCK as u32,
            NAME_MAX as u32,
            BLOCK as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        self.reply_empty(reply, |st| st.tree.get(ino.0).map(|_| ()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let meta = new_meta(req, mode, umask);
        let res = self.run(|st| {
            let ino = st.tree.create_file(parent.0, name, meta)?;
            let fh = st.new_handle(ino)?;
            let a = attr(&st.tree, ino)?;
            st.tree.add_lookup(ino);
            Ok((a, fh))
        });
        match res {
            Ok((a, fh)) => reply.created(&TTL, &a, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Plain allocation extends the file; KEEP_SIZE is a no-op here; nothing else.
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        self.reply_empty(reply, |st| {
            let end = offset.checked_add(length).ok_or(FsError::TooBig)?;
            let len = st.tree.content(ino.0)?.len();
            if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > len {
                st.tree.set_len(ino.0, end)?;
            }
            Ok(())
        });
    }
}
