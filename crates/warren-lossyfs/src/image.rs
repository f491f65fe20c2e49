//! The on-disk image: a plain directory tree.
//!
//! [`load()`] reads it into a [`Tree`] as the durable (and live) state; [`write()`] writes
//! only the durable state back. Writing goes into a sibling temp directory that is then
//! swapped with the image atomically (`renameat2(RENAME_EXCHANGE)`, with a two-rename
//! fallback), so a crash of lossyfs while writing leaves the previous image intact.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::content::{Content, CHUNK};
use crate::error::ImageError;
use crate::tree::{Body, Ino, Meta, Tree, ROOT};

/// What [`write()`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Directories written, the root included.
    pub dirs: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file contents written (file sizes summed).
    pub bytes: u64,
    /// Directories skipped because the durable graph reached them a second time (possible
    /// only in the strict model, e.g. a directory moved between two fsynced parents).
    pub skipped_dirs: u64,
}

fn meta_of(md: &fs::Metadata) -> Meta {
    let mut meta = Meta::new((md.mode() & 0o7777) as u16, md.uid(), md.gid());
    meta.mtime = md.modified().unwrap_or(SystemTime::now());
    meta.atime = md.accessed().unwrap_or(meta.mtime);
    meta.ctime = meta.mtime;
    meta
}

/// Loads the tree under `dir` (creating `dir` if missing). Everything in it is durable.
pub fn load(dir: &Path) -> Result<Tree, ImageError> {
    fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    let md = fs::metadata(dir).map_err(|e| ImageError::io(dir, e))?;
    let mut tree = Tree::new(meta_of(&md));
    load_dir(&mut tree, ROOT, dir)?;
    Ok(tree)
}

fn load_dir(tree: &mut Tree, ino: Ino, path: &Path) -> Result<(), ImageError> {
    let entries = fs::read_dir(path).map_err(|e| ImageError::io(path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io(path, e))?;
        let child_path = entry.path();
        let md = fs::symlink_metadata(&child_path).map_err(|e| ImageError::io(&child_path, e))?;
        let name = entry.file_name();
        let model_err = |source| ImageError::Model {
            path: child_path.clone(),
            source,
        };
        if md.is_dir() {
            let child = tree.load_dir(ino, &name, meta_of(&md)).map_err(model_err)?;
            load_dir(tree, child, &child_path)?;
        } else if md.is_file() {
            let content = read_content(&child_path)?;
            tree.load_file(ino, &name, content, meta_of(&md))
                .map_err(model_err)?;
        } else {
            return Err(ImageError::Unsupported(child_path));
        }
    }
    Ok(())
}

/// Reads a file chunk by chunk, leaving all-zero chunks unallocated.
fn read_content(path: &Path) -> Result<Content, ImageError> {
    let io_err = |e| ImageError::io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let mut content = Content::default();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let mut filled = 0;
        while filled < CHUNK {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        if filled == 0 {
            break;
        }
        let block = &buf[..filled];
        let model_err = |source| ImageError::Model {
            path: path.to_owned(),
            source,
        };
        if block.iter().any(|&b| b != 0) {
            content.write(offset, block).map_err(model_err)?;
        } else {
            content.set_len(offset + filled as u64).map_err(model_err)?;
        }
        offset += filled as u64;
    }
    Ok(content)
}

/// A sibling of `dir` named `.NAME.lossyfs-TAG-PID`.
fn sibling(dir: &Path, tag: &str) -> Result<PathBuf, ImageError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(ImageError::BadImagePath(dir.to_owned()));
    };
    let mut sib = OsStr::new(".").to_owned();
    sib.push(name);
    sib.push(format!(".lossyfs-{tag}-{}", std::process::id()));
    Ok(parent.join(sib))
}

/// Writes the durable state of `tree` as the new contents of `dir` (an absolute path).
pub fn write(tree: &Tree, dir: &Path) -> Result<WriteStats, ImageError> {
    let tmp = sibling(dir, "new")?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    let mut stats = WriteStats::default();
    let mut visited = HashSet::from([ROOT]);
    write_dir(tree, ROOT, &tmp, &mut visited, &mut stats)?;
    set_perm(tree, ROOT, &tmp)?;
    swap_in(&tmp, dir)?;
    Ok(stats)
}

fn set_perm(tree: &Tree, ino: Ino, path: &Path) -> Result<(), ImageError> {
    if let Ok(node) = tree.get(ino) {
        let perms = Permissions::from_mode(u32::from(node.meta.perm));
        fs::set_permissions(path, perms).map_err(|e| ImageError::io(path, e))?;
    }
    Ok(())
}

fn write_dir(
    tree: &Tree,
    dir: Ino,
    path: &Path,
    visited: &mut HashSet<Ino>,
    stats: &mut WriteStats,
) -> Result<(), ImageError> {
    stats.dirs += 1;
    let Ok(entries) = tree.durable_entries(dir) else {
        return Ok(());
    };
    for (name, &child) in entries {
        let child_path = path.join(name);
        let Ok(node) = tree.get(child) else {
            // Unreachable while reference counting holds; be lenient rather than fail.
            eprintln!(
                "lossyfs: durable entry {} names a freed inode",
                child_path.display()
            );
            continue;
        };
        match &node.body {
            Body::File { durable, .. } => {
                write_file(durable, &child_path)?;
                set_perm(tree, child, &child_path)?;
                stats.files += 1;
                stats.bytes += durable.len();
            }
            Body::Dir { .. } => {
                if !visited.insert(child) {
                    eprintln!(
                        "lossyfs: directory inode {child} is durably linked twice; \
                         not writing it again at {}",
                        child_path.display()
                    );
                    stats.skipped_dirs += 1;
                    continue;
                }
                fs::create_dir(&child_path).map_err(|e| ImageError::io(&child_path, e))?;
                write_dir(tree, child, &child_path, visited, stats)?;
                set_perm(tree, child, &child_path)?;
            }
        }
    }
    Ok(())
}

fn write_file(content: &Content, path: &Path) -> Result<(), ImageError> {
    let io_err = |e| ImageError::io(path, e);
    let file = File::create(path).map_err(io_err)?;
    file.set_len(content.len()).map_err(io_err)?;
    for (offset, bytes) in content.extents() {
        file.write_all_at(bytes, offset).map_err(io_err)?;
    }
    Ok(())
}

fn cstring(path: &Path) -> Result<CString, ImageError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ImageError::BadImagePath(path.into()))
}

/// Puts `new` in place of `dir` and deletes the old image.
fn swap_in(new: &Path, dir: &Path) -> Result<(), ImageError> {
    let (c_new, c_dir) = (cstring(new)?, cstring(dir)?);
    // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_new.as_ptr(),
            libc::AT_FDCWD,
            c_dir.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        // `new` now holds the old image.
        return fs::remove_dir_all(new).map_err(|e| ImageError::io(new, e));
    }
    // No RENAME_EXCHANGE here (or `dir` vanished): move the old image aside first.
    let old = sibling(dir, "old")?;
    let had_old = dir.exists();
    if had_old {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| ImageError::io(&old, e))?;
        }
        fs::rename(dir, &old).map_err(|e| ImageError::io(dir, e))?;
    }
    fs::rename(new, dir).map_err(|e| ImageError::io(new, e))?;
    if had_old {
        fs::remove_dir_all(&old).map_err(|e| ImageError::io(&old, e))?;
    }
    Ok(())
}
