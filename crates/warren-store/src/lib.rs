//! Warren's persistence layer. It stores opaque message records in shared segment files,
//! one index log per durable queue, and a definitions log; it knows nothing about AMQP. It
//! implements the storage interfaces that the broker model defines
//! (`warren_core::storage`, see `broker_storage`), so the broker never sees its types.
//!
//! # Layout of a store directory
//! ```text
//! dir/LOCK                     flock'ed while a Store has the directory open
//! dir/metadata.bin             the definitions blob (see `metadata`)
//! dir/segments/00000001.seg    message records, shared by all queues (see `segment`)
//! dir/segments/next_id         next segment id, so ids are never reused
//! dir/segments/00000001.spare  a retired segment file kept for reuse (see `recycle`)
//! dir/queues/<queue_id>.idx    one index log per durable queue (see `queue_log`)
//! ```
//!
//! # Writing and group commit
//! Callers never do I/O: [`Store::append`], [`QueueLog::enqueue`], [`QueueLog::delivered`]
//! and [`QueueLog::ack`] copy bytes into an in-memory buffer under a short `parking_lot`
//! mutex, bump the store's *generation* and return. One background thread (the flusher) owns
//! all writing: it swaps the buffers out, `pwrite`s them, `fdatasync`s every segment file
//! holding a record that a queue log names (records nobody indexes, such as transient
//! messages paged out of memory, are dropped from memory once written and never fsynced),
//! then every dirty queue log, and publishes the generation it covered on a
//! `tokio::sync::watch` ([`Store::synced`]). One fsync thus covers everything appended since
//! the previous one. A publisher waiting for a confirm does
//! `append; enqueue...; let g = store.generation(); store.request_sync();` and waits until
//! `*synced.borrow() >= g`.
//!
//! The flusher runs a round at once after [`Store::request_sync`] (rounds run back to back
//! while requests keep coming), or `flush_interval` after unrequested data was first seen;
//! idle, it sleeps on a condition variable. If a write or fsync fails (disk full) nothing
//! already on disk is touched: the unsynced bytes stay in memory, the synced generation does
//! not advance, [`Store::is_failed`] turns true, and the next round (with back-off) writes the
//! same bytes at the same offsets again.
//!
//! # Reading and recovery
//! [`Store::read`] verifies the record's CRC32C; it also serves data still in memory. At
//! start the caller loads the metadata, opens each queue's log and calls
//! [`QueueLog::recover`] (live entries in seq order, with delivered flags; torn tails cut,
//! corrupt records skipped), retains every location it keeps, and then calls
//! [`Store::collect_garbage`] to delete segments nobody references. Segments are not scanned
//! at open: reads check themselves, so opening is O(number of files).
//!
//! # Deleting segments
//! The caller retains a location once per queue holding the record and releases it when the
//! message leaves that queue. A segment that is not being written is deleted when its count
//! reaches zero; the flusher retires it at the end of its next successful round, after the
//! queue logs (holding the acks that emptied it) are durable. Segment ids are never reused;
//! segment *files* are: a retired file is kept as a spare for the next new segment, for a
//! while (see `recycle`).
//!
//! # Enqueues that never reach the disk
//! An `ack` of an entry whose enqueue record is still buffered cancels it (and a `delivered`
//! folds into it): a queue whose consumers keep up writes little index and, when every
//! indexed record of a chunk was consumed before its round, fsyncs nothing for it.
//!
//! # Threads
//! Every method may be called from any thread (async tasks included: only `queue_log`,
//! `remove_queue_log`, `QueueLog::recover`/`compact`, `save_metadata`, `collect_garbage` and
//! `sync_now` do I/O or block, the rest take a short lock). The flusher is one `std::thread`;
//! it borrows short-lived helper threads to fdatasync many queue logs in parallel.
//!
//! # I/O statistics
//! Every write, fdatasync, directory fsync and read of a running store goes through
//! `io_stats::IoCounters`, which counts and times it: [`Store::io_stats`], the broker's
//! `rabbitmq_io_*` metrics. [`Store::fsync_count`] is its sync count.
//!
//! # Shutdown
//! When the last [`Store`] clone is dropped, the flusher runs one final round and exits, and
//! the directory lock is released. [`QueueLog`] handles do not keep the flusher alive: writes
//! to them after that are dropped, so drop the store last (or call [`Store::sync_now`] after
//! the final writes).

mod broker_storage;
mod error;
mod flusher;
mod io_stats;
mod metadata;
mod metadata_log;
mod queue_log;
mod record;
mod recycle;
mod segment;
mod sys;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use warren_core::FastMap;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

pub use error::StoreError;
pub use metadata_log::MetaChange;
pub use queue_log::{QueueLog, RecoveredEntry};

use queue_log::QueueLogInner;
use segment::{
    Found, RecordCheck, SegMeta, Segments, MAX_SEGMENT_SIZE, REC_HEADER_LEN, SEG_HEADER_LEN,
};

/// How the records of an existing segment file are checked, from its header (one 16-byte
/// read per file at open; an unreadable header accepts either layout).
fn header_check(path: &Path) -> RecordCheck {
    let mut h = [0u8; SEG_HEADER_LEN as usize];
    match File::open(path).and_then(|f| f.read_exact_at(&mut h, 0)) {
        Ok(()) => record::check_of_header(&h),
        Err(_) => RecordCheck::Either,
    }
}

/// Where a message record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    /// Segment id (the file `segments/<id:08>.seg`).
    pub segment: u32,
    /// Offset of the record (its length field) in the segment file.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
}

/// Tuning of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A new segment file is started when a record would take the current one past this size
    /// (default 64 MiB; clamped to 2 GiB because offsets are u32).
    pub segment_size: u64,
    /// Period of background flush+fsync for data nobody waits on (default 20 ms).
    pub flush_interval: Duration,
    /// fdatasync after writing (default true). False only for benchmarks and tests that say so:
    /// then "synced" only means "written to the OS".
    pub fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 64 * 1024 * 1024,
            flush_interval: Duration::from_millis(20),
            fsync: true,
        }
    }
}

/// Flusher coordination, guarded by `Shared::ctl`.
pub(crate) struct Ctl {
    pub shutdown: bool,
    pub rounds_started: u64,
    pub rounds_done: u64,
    /// Error of the last round, if it failed.
    pub last_err: Option<(std::io::ErrorKind, String)>,
}

/// State shared by the store handles, the queue logs and the flusher thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub seg_dir: PathBuf,
    pub queue_dir: PathBuf,
    pub fsync: bool,
    pub flush_interval: Duration,
    pub segs: Mutex<Segments>,
    /// Bumped once per append / queue-log record, inside the lock that buffered it.
    pub generation: AtomicU64,
    /// Queue logs with buffered records (each listed at most once, see `LogBuf::listed`).
    pub dirty_logs: Mutex<Vec<Arc<QueueLogInner>>>,
    /// Open queue logs by queue id: one handle per file, however often `queue_log` is called.
    pub logs: Mutex<FastMap<u64, QueueLog>>,
    pub ctl: Mutex<Ctl>,
    /// The flusher waits here.
    pub flusher_cv: Condvar,
    /// `sync_now` callers wait here for the end of a round.
    pub done_cv: Condvar,
    /// The flusher sleeps with nothing to do; the next writer must wake it.
    pub idle: AtomicBool,
    pub sync_requested: AtomicBool,
    pub synced_tx: watch::Sender<u64>,
    /// Counts and times every file operation of the running store.
    pub io: io_stats::IoCounters,
    pub failed: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Serializes `save_metadata` (they share one temp file name).
    pub meta_lock: Mutex<()>,
    /// The last `Store` was dropped and the flusher is gone: queue-log writes are dropped.
    pub closed: AtomicBool,
    /// The next round deletes every spare segment file (`collect_garbage`: nothing to
    /// recycle at start-up, and the space goes back at once).
    pub drop_spares: AtomicBool,
    /// Acks waiting for a generation to be durable (`QueueLog::ack_after`).
    pub deferred_acks: Mutex<Vec<queue_log::DeferredAck>>,
    /// The definitions log (its own lock: a declare never waits for the flusher).
    pub meta_log: Mutex<metadata_log::MetaLog>,
}

impl Shared {
    /// Called by writers after they bumped the generation: wakes a sleeping flusher. Cheap
    /// (one load) when the flusher is already awake.
    pub(crate) fn wake_if_idle(&self) {
        if self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst) {
            let _ctl = self.ctl.lock();
            self.flusher_cv.notify_one();
        }
    }
}

/// Owns the flusher thread and the directory lock; dropped with the last `Store` clone.
struct Handle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    _lock: File,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.ctl.lock().shutdown = true;
        self.shared.flusher_cv.notify_one();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("store flusher thread panicked");
            }
        }
        // Queue logs point back at `Shared`; break the cycle so both are freed once the
        // caller drops its own QueueLog handles (and keep later writes from re-creating it).
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.logs.lock().clear();
        self.shared.dirty_logs.lock().clear();
        self.shared.deferred_acks.lock().clear();
    }
}

/// A counted reference to a message record, returned by [`Store::append`]: while it lives, the record's segment is not deleted. Cloning counts
/// another reference; dropping releases one. A publisher holds it until routing has handed the
/// record to every queue (each of which retains the location for itself), so a segment can
/// never be deleted in the middle of one publish, whatever the queues do meanwhile.
pub struct RecordRef {
    loc: Location,
    shared: Arc<Shared>,
}

impl RecordRef {
    /// Where the record is.
    pub fn location(&self) -> Location {
        self.loc
    }
}

impl Clone for RecordRef {
    fn clone(&self) -> Self {
        self.shared.segs.lock().retain(self.loc);
        RecordRef {
            loc: self.loc,
            shared: self.shared.clone(),
        }
    }
}

impl Drop for RecordRef {
    fn drop(&mut self) {
        self.shared.segs.lock().release(self.loc);
    }
}

impl std::fmt::Debug for RecordRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecordRef").field(&self.loc).finish()
    }
}

/// Creates `dir` (and missing parents) so that the new entries survive a power cut: each
/// directory created is fsynced into its parent. (The broker creates its data directory with
/// it too.)
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sys::sync_dir(parent)
}

/// The message store. Cheap to clone; all clones share one flusher thread.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared().dir)
            .finish()
    }
}

/// The number in a store file name `<digits><suffix>` (`00000001.seg`, `7.idx`), if the
/// name has that form and the number fits `T`.
pub(crate) fn numbered_name<T: std::str::FromStr>(name: &str, suffix: &str) -> Option<T> {
    let stem = name.strip_suffix(suffix)?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating) the store under `dir` and starts its flusher thread. Fails with
    /// `Locked` if another store has the directory open.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let seg_dir = dir.join("segments");
        let queue_dir = dir.join("queues");
        // Whatever `fsync` says: directories are created once, and a store whose directories
        // vanish at a power cut would lose everything written into them.
        create_dir_durable(&seg_dir)?;
        create_dir_durable(&queue_dir)?;
        let lock_created = !dir.join("LOCK").exists();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))?;
        if !sys::lock_exclusive(&lock)? {
            return Err(StoreError::Locked {
                dir: dir.display().to_string(),
            });
        }
        // Leftovers of a save or compaction interrupted by a crash: never the live copy.
        remove_if_exists(&dir.join(metadata::META_TMP_FILE))?;
        if lock_created {
            sys::sync_dir(dir)?;
        }
        for entry in fs::read_dir(&queue_dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                remove_if_exists(&entry.path())?;
            }
        }
        let mut existing = FastMap::default();
        for entry in fs::read_dir(&seg_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = segment::parse_segment_file_name(&name) {
                let size = entry.metadata()?.len();
                existing.insert(
                    id,
                    SegMeta {
                        refs: 0,
                        size,
                        file: None,
                        check: header_check(&entry.path()),
                    },
                );
            } else if name != flusher::NEXT_ID_FILE && !recycle::is_spare_name(&name) {
                tracing::warn!(file = %name, "unexpected file in the segments directory (ignored)");
            }
        }
        let segment_size = opts
            .segment_size
            .clamp(SEG_HEADER_LEN + 1, MAX_SEGMENT_SIZE);
        let mut segs = Segments::new(segment_size, existing);
        if let Some(next) = flusher::read_next_id(&seg_dir) {
            segs.current = segs.current.max(next);
        }
        let meta_log = metadata_log::MetaLog::open(dir)?;
        let (synced_tx, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            seg_dir,
            queue_dir,
            fsync: opts.fsync,
            flush_interval: opts.flush_interval,
            segs: Mutex::new(segs),
            generation: AtomicU64::new(0),
            dirty_logs: Mutex::new(Vec::new()),
            logs: Mutex::new(FastMap::default()),
            ctl: Mutex::new(Ctl {
                shutdown: false,
                rounds_started: 0,
                rounds_done: 0,
                last_err: None,
            }),
            flusher_cv: Condvar::new(),
            done_cv: Condvar::new(),
            idle: AtomicBool::new(false),
            sync_requested: AtomicBool::new(false),
            synced_tx,
            io: io_stats::IoCounters::default(),
            failed: AtomicBool::new(false),
            last_error: Mutex::new(None),
            meta_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            drop_spares: AtomicBool::new(false),
            deferred_acks: Mutex::new(Vec::new()),
            meta_log: Mutex::new(meta_log),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("warren-store-flush".into())
            .spawn(move || flusher::run(for_thread))?;
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                thread: Some(thread),
                _lock: lock,
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    // ---- message records ----

    /// Appends a record and returns a reference to it at once; the bytes reach the file with
    /// the next flush. On disk: `[len u32][crc32c of payload ^ segment seed][payload]` (see
    /// `record`). The segment stays until the returned reference, and every `retain` of its
    /// location, is released.
    ///
    /// # Panics
    /// If `payload` is longer than `u32::MAX - 8` bytes (the record length is a u32).
    pub fn append(&self, payload: &[u8]) -> RecordRef {
        RecordRef {
            loc: self.append_counted(payload),
            shared: self.shared().clone(),
        }
    }

    /// [`Store::append`] for a caller that counts its reference itself: the returned
    /// location holds one reference, to be given back with [`Store::release`].
    ///
    /// # Panics
    /// As `append`.
    pub fn append_counted(&self, payload: &[u8]) -> Location {
        self.append_parts_counted(&[payload])
    }

    /// [`Store::append_counted`] of the concatenation of `parts`, copied once, into the
    /// write buffer.
    ///
    /// # Panics
    /// As `append`.
    pub fn append_parts_counted(&self, parts: &[&[u8]]) -> Location {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            len as u64 <= u64::from(u32::MAX) - REC_HEADER_LEN,
            "record payload of {len} bytes is too large",
        );
        // Checksum outside the lock: the lock only covers the copy.
        let crc = parts
            .iter()
            .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
        let sh = self.shared();
        let loc = {
            let mut s = sh.segs.lock();
            let loc = s.append(crc, len, parts);
            sh.generation.fetch_add(1, Ordering::SeqCst);
            loc
        };
        sh.wake_if_idle();
        loc
    }

    /// Reads a record back and verifies its length and checksum. Works for records still in
    /// the write buffer. `Corrupt` for a bad checksum, a location beyond the end of its
    /// segment or in a segment that no longer exists.
    pub fn read(&self, loc: Location) -> Result<Bytes, StoreError> {
        let sh = self.shared();
        let found = sh.segs.lock().find(loc)?;
        match found {
            // Write buffers only hold segments of this run.
            Found::Memory(buf) => segment::decode_record(buf, loc, RecordCheck::Seeded),
            Found::File(f, check) => segment::read_from_file(&f, loc, check, &sh.io),
            Found::NeedOpen(check) => {
                // A segment of an earlier run: opened read-only on first use, outside the lock.
                let path = sh.seg_dir.join(segment::segment_file_name(loc.segment));
                let f = match File::open(&path) {
                    Ok(f) => Arc::new(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StoreError::corrupt(format!(
                            "{loc:?}: segment file {} is missing",
                            path.display()
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Some(m) = sh.segs.lock().metas.get_mut(&loc.segment) {
                    m.file.get_or_insert_with(|| f.clone());
                }
                segment::read_from_file(&f, loc, check, &sh.io)
            }
        }
    }

    /// Counts one more reference to the record's segment (once per queue holding it), while
    /// a [`RecordRef`] or another retain still holds it.
    pub fn retain(&self, loc: Location) {
        self.shared().segs.lock().retain(loc);
    }

    /// Drops a reference; a segment that is not being written is deleted when its count
    /// reaches zero (the file is unlinked by the flusher after the round that makes the
    /// preceding acks durable).
    pub fn release(&self, loc: Location) {
        self.shared().segs.lock().release(loc);
    }

    // ---- queue logs ----

    /// Opens (or creates) the index log of a durable queue. Opening the same id again returns
    /// the same log. Does I/O (create + fsync, or cutting a torn tail) on the calling thread.
    pub fn queue_log(&self, queue_id: u64) -> Result<QueueLog, StoreError> {
        let sh = self.shared();
        let mut logs = sh.logs.lock();
        if let Some(l) = logs.get(&queue_id) {
            return Ok(l.clone());
        }
        let log = QueueLog::open(sh.clone(), queue_id)?;
        logs.insert(queue_id, log.clone());
        Ok(log)
    }

    /// Deletes a queue's log (the queue was deleted). Handles to it become inert.
    pub fn remove_queue_log(&self, queue_id: u64) -> Result<(), StoreError> {
        let sh = self.shared();
        let log = sh.logs.lock().remove(&queue_id);
        match log {
            Some(l) => l.remove(),
            None => Ok(remove_if_exists(
                &sh.queue_dir.join(queue_log::log_file_name(queue_id)),
            )?),
        }
    }

    /// Ids of all queue logs on disk, sorted (for recovery and for removing orphans).
    pub fn queue_log_ids(&self) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.shared().queue_dir)? {
            let entry = entry?;
            if let Some(id) = queue_log::parse_log_file_name(&entry.file_name().to_string_lossy()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    // ---- group commit ----

    /// Generation of everything appended so far (records and queue-log records). Monotonic.
    pub fn generation(&self) -> u64 {
        self.shared().generation.load(Ordering::SeqCst)
    }

    /// Asks the flusher to flush and fsync as soon as possible.
    pub fn request_sync(&self) {
        let sh = self.shared();
        if !sh.sync_requested.swap(true, Ordering::SeqCst) {
            let _ctl = sh.ctl.lock();
            sh.flusher_cv.notify_one();
        }
    }

    /// Watch of the highest generation known durable. It only ever grows.
    pub fn synced(&self) -> watch::Receiver<u64> {
        self.shared().synced_tx.subscribe()
    }

    /// Flushes and fsyncs everything appended before the call, blocking until done. Returns
    /// the error of the flush round if it failed (the data stays buffered and is retried).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        let sh = self.shared();
        let mut ctl = sh.ctl.lock();
        // A round that starts after this point covers every append made before the call.
        let want = ctl.rounds_started + 1;
        sh.sync_requested.store(true, Ordering::SeqCst);
        sh.flusher_cv.notify_one();
        while ctl.rounds_done < want {
            sh.done_cv.wait(&mut ctl);
        }
        match &ctl.last_err {
            None => Ok(()),
            Some((kind, msg)) => Err(StoreError::Io(std::io::Error::new(*kind, msg.clone()))),
        }
    }

    /// Number of fsync/fdatasync calls made so far (files and directories), failed ones
    /// included, those made while the store opened its directory not: the sync count of
    /// [`Store::io_stats`].
    pub fn fsync_count(&self) -> u64 {
        self.shared().io.snapshot().sync_ops
    }

    /// True while the last flush round failed (disk full, I/O error): unsynced data is held in
    /// memory and retried; the synced generation does not advance.
    pub fn is_failed(&self) -> bool {
        self.shared().failed.load(Ordering::SeqCst)
    }

    /// The error of the last failed flush round (kept after recovery, for diagnostics).
    pub fn last_error(&self) -> Option<String> {
        self.shared().last_error.lock().clone()
    }

    /// Message bytes held in memory because they are not yet durable (grows while writes
    /// fail; a caller can block publishers on it).
    pub fn buffered_bytes(&self) -> u64 {
        self.shared().segs.lock().buffered
    }

    // ---- metadata ----

    /// Applies one batch of definition changes durably (appended to `metadata.log` and
    /// fdatasynced, whatever `fsync` says) before returning. All or nothing: on error none
    /// of the batch is applied, and a restart does not see it. Synchronous I/O on the calling
    /// thread; cost independent of how many definitions exist.
    pub fn apply_metadata(&self, changes: Vec<MetaChange>) -> Result<(), StoreError> {
        let sh = self.shared();
        sh.meta_log.lock().append(changes, &sh.io)?;
        Ok(())
    }

    /// Every live definition (key, value) in the definitions log.
    pub fn metadata_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.shared().meta_log.lock().entries()
    }

    /// Whether `metadata.log` existed when the store was opened (false for a new directory,
    /// or one written by a version that kept a whole-snapshot `metadata.bin`).
    pub fn metadata_log_existed(&self) -> bool {
        self.shared().meta_log.lock().existed
    }

    /// Removes the whole-snapshot metadata files of an older layout once their contents were
    /// moved into the definitions log.
    pub fn remove_legacy_metadata(&self) -> Result<(), StoreError> {
        let sh = self.shared();
        for name in [metadata::META_FILE, metadata::META_PREV_FILE] {
            remove_if_exists(&sh.dir.join(name))?;
        }
        sh.io.sync_dir(&sh.dir)?;
        Ok(())
    }

    /// Replaces the metadata blob atomically (temp file, fsync, rename, directory fsync).
    /// Synchronous: does I/O on the calling thread.
    pub fn save_metadata(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let sh = self.shared();
        let _serial = sh.meta_lock.lock();
        // Always fsynced, whatever `fsync` says: metadata changes rarely, and without it a
        // power cut can leave a renamed but empty file.
        metadata::save(&sh.dir, bytes, &sh.io)?;
        Ok(())
    }

    /// The last saved metadata blob, or `None` if none was saved. A damaged `metadata.bin`
    /// is set aside and the previous copy used instead (logged); `Corrupt` only when no good
    /// copy is left.
    pub fn load_metadata(&self) -> Result<Option<Vec<u8>>, StoreError> {
        metadata::load(&self.shared().dir)
    }

    // ---- disk ----

    /// The store's file operations since it opened: counts, bytes and time (what is left
    /// out is listed on [`warren_core::storage::IoStats`]).
    pub fn io_stats(&self) -> warren_core::storage::IoStats {
        self.shared().io.snapshot()
    }

    /// Free space for unprivileged writers on the store's filesystem (statvfs).
    pub fn disk_free_bytes(&self) -> Option<u64> {
        sys::free_bytes(&self.shared().dir)
    }

    /// Bytes of segment files and queue logs on disk.
    pub fn disk_usage_bytes(&self) -> u64 {
        let sh = self.shared();
        let mut total = 0u64;
        for dir in [&sh.seg_dir, &sh.queue_dir] {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(m) = entry.metadata() {
                    if m.is_file() {
                        total += m.len();
                    }
                }
            }
        }
        total
    }

    /// Segments the store knows of: files of earlier runs not yet deleted, plus those written
    /// in this run (the current one counts from its first append).
    pub fn segment_count(&self) -> usize {
        self.shared().segs.lock().metas.len()
    }

    /// After recovery (every location still referenced has been retained): deletes segments
    /// with no references, except the one being written, and compacts queue logs whose dead
    /// records outnumber their live ones (as counted by `recover`). Call once at start,
    /// before new traffic. Does I/O on the calling thread.
    pub fn collect_garbage(&self) {
        let sh = self.shared();
        let doomed = {
            let mut s = sh.segs.lock();
            let current = s.current;
            let zero: Vec<u32> = s
                .metas
                .iter()
                .filter(|&(&id, m)| m.refs == 0 && id != current)
                .map(|(&id, _)| id)
                .collect();
            for &id in &zero {
                s.doom(id);
            }
            zero.len()
        };
        // The flusher unlinks doomed segments at the end of a successful round (after the
        // queue logs are durable); run one now so the files are gone when this returns.
        sh.drop_spares.store(true, Ordering::SeqCst);
        if let Err(e) = self.sync_now() {
            tracing::warn!(error = %e, "flush failed; unreferenced segments are deleted later");
        }
        if doomed > 0 {
            tracing::info!(deleted = doomed, "unreferenced segments deleted");
        }
        let logs: Vec<QueueLog> = sh.logs.lock().values().cloned().collect();
        for log in logs {
            let inner = &log.inner;
            let mut io = inner.io.lock();
            if io.wants_compaction() {
                if let Err(e) = io.compact_self(inner.queue_id, &inner.path, sh.fsync, &sh.io) {
                    tracing::warn!(queue_id = inner.queue_id, error = %e, "queue log compaction failed");
                }
            }
        }
    }
}
