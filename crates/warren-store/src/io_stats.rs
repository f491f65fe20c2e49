//! Counts and times the store's file operations: writes, fdatasyncs (and directory fsyncs)
//! and reads, for RabbitMQ's `rabbitmq_io_*` metrics and the management API's node `io_*`
//! fields. Every such call of a running store goes through these helpers (what the store does
//! while it opens its directory is not counted). The clock is read twice per call: little
//! beside an fdatasync, and a few percent of a small write or read served by the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use warren_core::storage::IoStats;

/// Running totals, shared by every thread of one store. On cache lines of their own, away
/// from the store's hot atomics (its generation, the flusher's flags).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct IoCounters {
    read_ops: AtomicU64,
    read_bytes: AtomicU64,
    read_nanos: AtomicU64,
    write_ops: AtomicU64,
    write_bytes: AtomicU64,
    write_nanos: AtomicU64,
    sync_ops: AtomicU64,
    sync_nanos: AtomicU64,
}

fn nanos_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl IoCounters {
    /// `fdatasync` of `file`.
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        self.sync_with(|| file.sync_data())
    }

    /// fsync of `dir`, so that the entries created, renamed or removed in it are durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync_with(|| crate::sys::sync_dir(dir))
    }

    fn sync_with(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let started = Instant::now();
        let result = sync();
        self.sync_ops.fetch_add(1, Relaxed);
        self.sync_nanos.fetch_add(nanos_since(started), Relaxed);
        result
    }

    /// `pwrite` of all of `data` at `offset`.
    pub fn write_all_at(&self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        let started = Instant::now();
        let result = file.write_all_at(data, offset);
        self.write_ops.fetch_add(1, Relaxed);
        if result.is_ok() {
            self.write_bytes.fetch_add(data.len() as u64, Relaxed);
        }
        self.write_nanos.fetch_add(nanos_since(started), Relaxed);
        result
    }

    /// `pread` of exactly `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let started = Instant::now();
        let result = file.read_exact_at(buf, offset);
        self.read_ops.fetch_add(1, Relaxed);
        if result.is_ok() {
            self.read_bytes.fetch_add(buf.len() as u64, Relaxed);
        }
        self.read_nanos.fetch_add(nanos_since(started), Relaxed);
        result
    }

    pub fn snapshot(&self) -> IoStats {
        IoStats {
            read_ops: self.read_ops.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            read_nanos: self.read_nanos.load(Relaxed),
            write_ops: self.write_ops.load(Relaxed),
            write_bytes: self.write_bytes.load(Relaxed),
            write_nanos: self.write_nanos.load(Relaxed),
            sync_ops: self.sync_ops.load(Relaxed),
            sync_nanos: self.sync_nanos.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let io = IoCounters::default();
        io.write_all_at(&file, b"hello", 0).unwrap();
        io.sync_data(&file).unwrap();
        io.sync_dir(dir.path()).unwrap();
        let mut buf = [0u8; 5];
        io.read_exact_at(&file, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello");
        // A read past the end fails: counted as an operation, no bytes.
        assert!(io.read_exact_at(&file, &mut buf, 3).is_err());
        let s = io.snapshot();
        assert_eq!((s.write_ops, s.write_bytes), (1, 5));
        assert_eq!(s.sync_ops, 2);
        assert_eq!((s.read_ops, s.read_bytes), (2, 5));
    }
}
