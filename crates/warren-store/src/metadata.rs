//! The metadata blob: the broker's definitions, small and rarely changed, replaced atomically.
//!
//! File `metadata.bin`: `b"WRNMETA1"`, payload length (u64 LE), CRC32C of the payload (u32 LE),
//! 4 zero bytes, payload. A save writes `metadata.bin.tmp` and fdatasyncs it, renames the
//! current `metadata.bin` to `metadata.prev`, renames the new file to `metadata.bin` and
//! fsyncs the directory, so a crash leaves either the old or the new blob, and the copy before
//! it stays as `metadata.prev`. Saves are always fsynced, whatever the store's `fsync` option
//! says: they are rare, and an unsynced rename can leave an empty file after a power cut. A
//! leftover `.tmp` from an interrupted save is ignored by `load` (and removed at open).
//!
//! `load` falls back to `metadata.prev` when `metadata.bin` is missing or damaged (a damaged
//! file is kept as `metadata.bin.damaged` for inspection), and says so in the log: the broker
//! starts from the last good copy instead of not at all.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::io_stats::IoCounters;

const META_MAGIC: &[u8; 8] = b"WRNMETA1";
const META_HEADER_LEN: usize = 24;
pub(crate) const META_FILE: &str = "metadata.bin";
pub(crate) const META_TMP_FILE: &str = "metadata.bin.tmp";
pub(crate) const META_PREV_FILE: &str = "metadata.prev";
pub(crate) const META_DAMAGED_FILE: &str = "metadata.bin.damaged";

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(META_FILE), dir.join(META_TMP_FILE))
}

/// Writes the blob atomically (always fsynced).
pub(crate) fn save(dir: &Path, bytes: &[u8], io: &IoCounters) -> Result<(), StoreError> {
    let (path, tmp) = paths(dir);
    let mut data = Vec::with_capacity(META_HEADER_LEN + bytes.len());
    data.extend_from_slice(META_MAGIC);
    data.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    data.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    data.extend_from_slice(&[0u8; 4]);
    data.extend_from_slice(bytes);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    io.write_all_at(&f, &data, 0)?;
    io.sync_data(&f)?;
    drop(f);
    if path.exists() {
        fs::rename(&path, dir.join(META_PREV_FILE))?;
    }
    fs::rename(&tmp, &path)?;
    io.sync_dir(dir)?;
    Ok(())
}

/// Reads the blob back; `None` if none was ever saved. Falls back to the previous copy when
/// the current one is missing or damaged (see the module doc).
pub(crate) fn load(dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let (path, _) = paths(dir);
    let prev = dir.join(META_PREV_FILE);
    match load_file(&path) {
        Ok(Some(data)) => Ok(Some(data)),
        Ok(None) => match load_file(&prev)? {
            Some(data) => {
                tracing::warn!(
                    file = %prev.display(),
                    "metadata.bin is missing (a save was interrupted); starting from the previous copy"
                );
                Ok(Some(data))
            }
            None => Ok(None),
        },
        Err(damage) => match load_file(&prev) {
            Ok(Some(data)) => {
                let kept = dir.join(META_DAMAGED_FILE);
                tracing::error!(
                    error = %damage,
                    previous = %prev.display(),
                    kept_as = %kept.display(),
                    "metadata.bin is damaged; starting from the previous copy (definitions changed by the last save are lost)"
                );
                if let Err(e) = fs::rename(&path, &kept) {
                    tracing::warn!(error = %e, "cannot set the damaged metadata file aside");
                }
                Ok(Some(data))
            }
            _ => Err(damage),
        },
    }
}

/// One metadata file, checked; `None` if it does not exist.
fn load_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if data.len() < META_HEADER_LEN || &data[..8] != META_MAGIC {
        return Err(StoreError::corrupt(format!(
            "{}: bad header",
            path.display()
        )));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&data[8..16]);
    let len = u64::from_le_bytes(len8);
    let crc = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
    let payload = &data[META_HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(StoreError::corrupt(format!(
            "{}: length {} but {} bytes of payload",
            path.display(),
            len,
            payload.len()
        )));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(StoreError::corrupt(format!(
            "{}: checksum mismatch",
            path.display()
        )));
    }
    Ok(Some(payload.to_vec()))
}
