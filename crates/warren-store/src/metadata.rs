//! The metadata blob: the broker's definitions, small and rarely changed, replaced atomically.
//!
//! File `metadata.bin`: `b"WRNMETA1"`, payload length (u64 LE), CRC32C of the payload (u32 LE),
//! 4 zero bytes, payload. A save writes `metadata.bin.tmp`, fdatasyncs it, renames it over
//! `metadata.bin` and fsyncs the directory, so a crash leaves either the old or the new blob;
//! a leftover `.tmp` from an interrupted save is ignored by `load` (and removed at open).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::sys;

const META_MAGIC: &[u8; 8] = b"WRNMETA1";
const META_HEADER_LEN: usize = 24;
pub(crate) const META_FILE: &str = "metadata.bin";
pub(crate) const META_TMP_FILE: &str = "metadata.bin.tmp";

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(META_FILE), dir.join(META_TMP_FILE))
}

/// Writes the blob atomically. Returns how many fsyncs it did.
pub(crate) fn save(dir: &Path, bytes: &[u8], fsync: bool) -> Result<u64, StoreError> {
    let (path, tmp) = paths(dir);
    let mut data = Vec::with_capacity(META_HEADER_LEN + bytes.len());
    data.extend_from_slice(META_MAGIC);
    data.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    data.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    data.extend_from_slice(&[0u8; 4]);
    data.extend_from_slice(bytes);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&data)?;
    if fsync {
        f.sync_data()?;
    }
    drop(f);
    fs::rename(&tmp, &path)?;
    if fsync {
        sys::sync_dir(dir)?;
        return Ok(2);
    }
    Ok(0)
}

/// Reads the blob back; `None` if none was ever saved.
pub(crate) fn load(dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let (path, _) = paths(dir);
    let data = match fs::read(&path) {
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
