//! File contents as copy-on-write chunks.
//!
//! A file has a live and a durable copy of its contents. With a plain `Vec<u8>` every
//! `fsync` would copy the whole file (segment files are tens of MiB and are fsynced
//! often), so contents are split into fixed-size chunks behind `Arc`s: `fsync` clones
//! only the chunk pointers, and a later write copies just the chunks it touches that are
//! still shared with the durable copy. Chunks never written (holes, extensions by
//! truncate) are `None` and read as zeros.
//!
//! Invariant: every byte of an allocated chunk at a position `>= len` is zero, so growing
//! the file again exposes zeros, as POSIX requires.

use std::sync::Arc;

use crate::error::FsError;

/// Size of one chunk.
pub const CHUNK: usize = 64 * 1024;

/// The largest file the model accepts (64 GiB), bounding the chunk table to 1 Mi entries.
pub const MAX_FILE_SIZE: u64 = 64 << 30;

/// The contents of one regular file.
#[derive(Clone, Debug, Default)]
pub struct Content {
    len: u64,
    chunks: Vec<Option<Arc<Vec<u8>>>>,
}

fn chunk_count(len: u64) -> usize {
    // len <= MAX_FILE_SIZE, so the count fits in usize on every supported target.
    len.div_ceil(CHUNK as u64) as usize
}

impl Content {
    /// Contents holding a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FsError> {
        let mut content = Content::default();
        content.write(0, bytes)?;
        Ok(content)
    }

    /// The file size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in allocated chunks (for statistics and tests).
    pub fn allocated_bytes(&self) -> usize {
        self.chunks.iter().flatten().map(|c| c.len()).sum()
    }

    /// Reads up to `size` bytes at `offset`; fewer at the end of the file, none past it.
    pub fn read(&self, offset: u64, size: usize) -> Vec<u8> {
        if offset >= self.len {
            return Vec::new();
        }
        let end = self.len.min(offset.saturating_add(size as u64));
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let take = ((end - pos) as usize).min(CHUNK - within);
            match self.chunks.get(idx).and_then(|c| c.as_ref()) {
                Some(chunk) => out.extend_from_slice(&chunk[within..within + take]),
                None => out.resize(out.len() + take, 0),
            }
            pos += take as u64;
        }
        out
    }

    /// Writes `data` at `offset`, extending the file (with zeros in any gap) as needed.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(FsError::TooBig)?;
        if end > self.len {
            self.len = end;
            self.chunks.resize(chunk_count(end), None);
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let take = rest.len().min(CHUNK - within);
            let slot = &mut self.chunks[idx];
            let chunk = slot.get_or_insert_with(|| Arc::new(vec![0; CHUNK]));
            Arc::make_mut(chunk)[within..within + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            pos += take as u64;
        }
        Ok(())
    }

    /// Truncates or extends the file to `len` bytes (extension reads as zeros).
    pub fn set_len(&mut self, len: u64) -> Result<(), FsError> {
        if len > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        if len < self.len {
            self.chunks.truncate(chunk_count(len));
            let within = (len % CHUNK as u64) as usize;
            if within != 0 {
                if let Some(Some(last)) = self.chunks.last_mut() {
                    // Keep the invariant: bytes past the end are zero.
                    Arc::make_mut(last)[within..].fill(0);
                }
            }
        } else {
            self.chunks.resize(chunk_count(len), None);
        }
        self.len = len;
        Ok(())
    }

    /// The allocated parts of the file as `(offset, bytes)`, clipped to the file size;
    /// everything else is zeros. Used to write the image (holes stay sparse).
    pub fn extents(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.chunks.iter().enumerate().filter_map(move |(idx, c)| {
            let chunk = c.as_ref()?;
            let start = idx as u64 * CHUNK as u64;
            let n = (self.len - start).min(CHUNK as u64) as usize;
            Some((start, &chunk[..n]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_across_chunks_and_holes() {
        let mut c = Content::default();
        c.write(CHUNK as u64 * 3 - 2, b"abcd").unwrap();
        assert_eq!(c.len(), CHUNK as u64 * 3 + 2);
        assert_eq!(c.read(0, 4), vec![0; 4]);
        assert_eq!(c.read(CHUNK as u64 * 3 - 2, 10), b"abcd");
        assert_eq!(c.allocated_bytes(), 2 * CHUNK);
    }

    #[test]
    fn clone_is_copy_on_write() {
        let mut live = Content::from_bytes(&[7; CHUNK * 2]).unwrap();
        let durable = live.clone();
        live.write(1, b"x").unwrap();
        assert_eq!(durable.read(1, 1), b"\x07");
        assert_eq!(live.read(1, 1), b"x");
        // Only the touched chunk was copied.
        assert!(Arc::ptr_eq(
            live.chunks[1].as_ref().unwrap(),
            durable.chunks[1].as_ref().unwrap()
        ));
    }

    #[test]
    fn shrink_then_grow_exposes_zeros() {
        let mut c = Content::from_bytes(b"hello world").unwrap();
        c.set_len(5).unwrap();
        c.set_len(11).unwrap();
        assert_eq!(c.read(0, 100), b"hello\0\0\0\0\0\0");
        let parts: Vec<_> = c.extents().collect();
        assert_eq!(parts, vec![(0, &b"hello\0\0\0\0\0\0"[..])]);
    }

    #[test]
    fn too_big_is_refused() {
        let mut c = Content::default();
        assert_eq!(c.write(MAX_FILE_SIZE, b"x"), Err(FsError::TooBig));
        assert_eq!(c.write(u64::MAX, b"x"), Err(FsError::TooBig));
        assert_eq!(c.set_len(MAX_FILE_SIZE + 1), Err(FsError::TooBig));
    }
}
