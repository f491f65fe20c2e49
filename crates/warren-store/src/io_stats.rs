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

/// One kind of operation: how many, the bytes of those that succeeded, and their time.
#[derive(Debug, Default)]
struct OpCounter {
    ops: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

impl OpCounter {
    /// Runs `op` and counts it (failures too), its time, and `bytes` if it succeeded.
    fn time(&self, bytes: usize, op: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let started = Instant::now();
        let result = op();
        // Nanoseconds, not microseconds: a 32-byte write into the page cache takes about
        // 1 µs, and truncating each to whole microseconds would lose most of it. A u64 of
        // nanoseconds holds 584 years of total time.
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.ops.fetch_add(1, Relaxed);
        if result.is_ok() {
            self.bytes.fetch_add(bytes as u64, Relaxed);
        }
        self.nanos.fetch_add(nanos, Relaxed);
        result
    }
}

/// Running totals, shared by every thread of one store. On cache lines of their own, away
/// from the store's hot atomics (its generation, the flusher's flags).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct IoCounters {
    read: OpCounter,
    write: OpCounter,
    sync: OpCounter,
}

impl IoCounters {
    /// `fdatasync` of `file`.
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        self.sync.time(0, || file.sync_data())
    }

    /// fsync of `dir`, so that the entries created, renamed or removed in it are durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync.time(0, || crate::sys::sync_dir(dir))
    }

    /// `pwrite` of all of `data` at `offset`.
    pub fn write_all_at(&self, file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        self.write
            .time(data.len(), || file.write_all_at(data, offset))
    }

    /// `pread` of exactly `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let len = buf.len();
        self.read.time(len, || file.read_exact_at(buf, offset))
    }

    pub fn snapshot(&self) -> IoStats {
        IoStats {
            read_ops: self.read.ops.load(Relaxed),
            read_bytes: self.read.bytes.load(Relaxed),
            read_nanos: self.read.nanos.load(Relaxed),
            write_ops: self.write.ops.load(Relaxed),
            write_bytes: self.write.bytes.load(Relaxed),
            write_nanos: self.write.nanos.load(Relaxed),
            sync_ops: self.sync.ops.load(Relaxed),
            sync_nanos: self.sync.nanos.load(Relaxed),
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
