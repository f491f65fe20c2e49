//! Per-queue index logs: one append-only file per durable queue, of fixed-size 32-byte
//! records, so that a corrupt record can be skipped and the rest still read, and a torn tail
//! is simply the bytes past the last multiple of 32.
//!
//! File `queues/<queue_id>.idx`:
//! - header record: `b"WRNQLOG1"`, queue id (u64 LE), 12 zero bytes, CRC32C of bytes 0..28;
//! - then records: `kind u8` (1 enqueue, 2 delivered, 3 ack), `flags u8` (bit 0: delivered,
//!   set on enqueue records written by compaction), `deadline high u16`, `seq u64`,
//!   `segment u32`, `offset u32`, `len u32`, `deadline low u32`, `crc32c u32` of bytes 0..28
//!   (all little endian). The deadline (enqueue records only) is the entry's expiry in Unix
//!   milliseconds as 48 bits (0: none), so that a restart keeps the time a message was given.
//!
//! An ack can be deferred until a generation is durable ([`QueueLog::ack_after`]): a message
//! moved to another queue (dead-lettered, or released by a delayed exchange) is acked in its
//! source only once its copy in the target is on disk, so a crash in between leaves it in
//! both (at least once) and never in neither.
//!
//! Writers (`enqueue`, `delivered`, `ack`) only copy 32 bytes into the log's buffer; the
//! flusher moves the buffer into `LogIo::unsynced` (assigning file offsets), writes it and
//! fsyncs it after the segments of the same round. Compaction rewrites the file to hold one
//! enqueue record per live entry and atomically renames it over the old one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::StoreError;
use crate::io_stats::IoCounters;
use crate::{Location, Shared};

/// Size of every queue-log record, the header included.
pub(crate) const QREC: usize = 32;
const QLOG_MAGIC: &[u8; 8] = b"WRNQLOG1";
const KIND_ENQUEUE: u8 = 1;
const KIND_DELIVERED: u8 = 2;
const KIND_ACK: u8 = 3;
const FLAG_DELIVERED: u8 = 1;

/// The flusher compacts a log when it holds at least this many records (1 MiB: a compaction
/// costs a new file, two fsyncs and a rename whatever its size, so a busy log should not pay
/// them every few rounds)...
pub(crate) const COMPACT_MIN_RECORDS: u64 = 32768;
/// ...and its dead records outnumber its live ones by this factor.
pub(crate) const COMPACT_DEAD_FACTOR: u64 = 4;

/// At most this many corrupt records are logged one by one per recovery; the rest are
/// counted in one summary line, so a badly damaged file cannot flood the log.
const MAX_CORRUPT_WARNINGS: usize = 10;

/// A live entry read back from a queue log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredEntry {
    /// The caller's sequence number (orders the queue).
    pub seq: u64,
    /// Where the message record is.
    pub loc: Location,
    /// A `delivered` record was seen: the broker should set redelivered=true.
    pub delivered: bool,
    /// The expiry given at enqueue, in Unix milliseconds (0: none).
    pub deadline: u64,
}

/// Largest deadline a record can hold (48 bits of Unix milliseconds: year 10889).
pub const MAX_DEADLINE: u64 = (1 << 48) - 1;

pub(crate) fn log_file_name(queue_id: u64) -> String {
    format!("{queue_id}.idx")
}

pub(crate) fn parse_log_file_name(name: &str) -> Option<u64> {
    crate::numbered_name(name, ".idx")
}

fn header(queue_id: u64) -> [u8; QREC] {
    let mut r = [0u8; QREC];
    r[..8].copy_from_slice(QLOG_MAGIC);
    r[8..16].copy_from_slice(&queue_id.to_le_bytes());
    seal(&mut r);
    r
}

fn seal(r: &mut [u8; QREC]) {
    let crc = crc32c::crc32c(&r[..28]);
    r[28..32].copy_from_slice(&crc.to_le_bytes());
}

fn record(kind: u8, flags: u8, seq: u64, loc: Location, deadline: u64) -> [u8; QREC] {
    let mut r = [0u8; QREC];
    r[0] = kind;
    r[1] = flags;
    let deadline = deadline.min(MAX_DEADLINE);
    r[2..4].copy_from_slice(&((deadline >> 32) as u16).to_le_bytes());
    r[4..12].copy_from_slice(&seq.to_le_bytes());
    r[12..16].copy_from_slice(&loc.segment.to_le_bytes());
    r[16..20].copy_from_slice(&loc.offset.to_le_bytes());
    r[20..24].copy_from_slice(&loc.len.to_le_bytes());
    r[24..28].copy_from_slice(&(deadline as u32).to_le_bytes());
    seal(&mut r);
    r
}

fn deadline_of(r: &[u8]) -> u64 {
    (u64::from(u16::from_le_bytes([r[2], r[3]])) << 32) | u64::from(u32_at(r, 24))
}

fn u32_at(r: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]])
}

fn u64_at(r: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&r[at..at + 8]);
    u64::from_le_bytes(b)
}

/// What replaying a log file yields.
pub(crate) struct Parsed {
    pub live: Vec<RecoveredEntry>,
    /// Records after the header (valid or not).
    pub records: u64,
    pub corrupt: u64,
}

/// Replays the records of a log file (`data` starts with the header; a partial record at the
/// end is ignored). Never fails: a bad record is skipped with a warning.
pub(crate) fn parse(data: &[u8], queue_id: u64, path: &Path) -> Parsed {
    // Seqs are the broker's own numbers, not an attacker's: the fast hasher is safe here, and
    // hashing is most of what a compaction costs (SipHash was 40% of it).
    let mut live: warren_core::FastMap<u64, (Location, bool, u64)> =
        warren_core::FastMap::with_capacity_and_hasher(data.len() / QREC / 2, Default::default());
    let mut records = 0u64;
    let mut corrupt = 0u64;
    let mut warned = 0usize;
    for (i, r) in data.chunks_exact(QREC).enumerate() {
        let crc_ok = crc32c::crc32c(&r[..28]) == u32_at(r, 28);
        if i == 0 {
            if !crc_ok || &r[..8] != QLOG_MAGIC || u64_at(r, 8) != queue_id {
                // The records check themselves; a damaged header costs nothing else.
                tracing::warn!(path = %path.display(), "queue log header is damaged; reading the records anyway");
            }
            continue;
        }
        records += 1;
        let kind = r[0];
        if !crc_ok || !(KIND_ENQUEUE..=KIND_ACK).contains(&kind) {
            corrupt += 1;
            if warned < MAX_CORRUPT_WARNINGS {
                warned += 1;
                tracing::warn!(
                    path = %path.display(),
                    offset = i * QREC,
                    "corrupt queue log record skipped"
                );
            }
            continue;
        }
        let seq = u64_at(r, 4);
        match kind {
            KIND_ENQUEUE => {
                let loc = Location {
                    segment: u32_at(r, 12),
                    offset: u32_at(r, 16),
                    len: u32_at(r, 20),
                };
                let delivered = r[1] & FLAG_DELIVERED != 0;
                let deadline = deadline_of(r);
                live.entry(seq)
                    .and_modify(|e| {
                        e.0 = loc;
                        e.1 |= delivered;
                        e.2 = deadline;
                    })
                    .or_insert((loc, delivered, deadline));
            }
            KIND_DELIVERED => {
                if let Some(e) = live.get_mut(&seq) {
                    e.1 = true;
                }
            }
            _ => {
                live.remove(&seq);
            }
        }
    }
    if corrupt as usize > warned {
        tracing::warn!(path = %path.display(), corrupt, "corrupt queue log records skipped in total");
    }
    let mut live: Vec<RecoveredEntry> = live
        .into_iter()
        .map(|(seq, (loc, delivered, deadline))| RecoveredEntry {
            seq,
            loc,
            delivered,
            deadline,
        })
        .collect();
    live.sort_unstable_by_key(|e| e.seq);
    Parsed {
        live,
        records,
        corrupt,
    }
}

/// Opens a queue log for appending, creating it (header fsynced, directory fsynced) if it
/// does not exist, and cutting a torn tail back to the last whole record. Returns the file and
/// its length.
pub(crate) fn open_file(
    path: &Path,
    queue_id: u64,
    fsync: bool,
    io: &IoCounters,
) -> Result<(File, u64), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let len = file.metadata()?.len();
    if len < QREC as u64 {
        // New, or created by a run that died before its header was written.
        file.set_len(0)?;
        io.write_all_at(&file, &header(queue_id), 0)?;
        if fsync {
            io.sync_data(&file)?;
            if let Some(dir) = path.parent() {
                io.sync_dir(dir)?;
            }
        }
        return Ok((file, QREC as u64));
    }
    let whole = len - len % QREC as u64;
    if whole != len {
        // A crash in the middle of a write: later appends must start on a record boundary.
        tracing::warn!(path = %path.display(), len, kept = whole, "queue log has a torn tail; truncating");
        file.set_len(whole)?;
        if fsync {
            io.sync_data(&file)?;
        }
    }
    Ok((file, whole))
}

/// Writes `live` to a temporary file and renames it over `path`. Returns the new file.
fn write_replacement(
    path: &Path,
    queue_id: u64,
    live: &[RecoveredEntry],
    fsync: bool,
    io: &IoCounters,
) -> Result<(File, u64), StoreError> {
    let mut data = Vec::with_capacity((live.len() + 1) * QREC);
    data.extend_from_slice(&header(queue_id));
    for e in live {
        let flags = if e.delivered { FLAG_DELIVERED } else { 0 };
        data.extend_from_slice(&record(KIND_ENQUEUE, flags, e.seq, e.loc, e.deadline));
    }
    let tmp = path.with_extension("idx.tmp");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    io.write_all_at(&file, &data, 0)?;
    if fsync {
        io.sync_data(&file)?;
    }
    std::fs::rename(&tmp, path)?;
    if fsync {
        if let Some(dir) = path.parent() {
            io.sync_dir(dir)?;
        }
    }
    Ok((file, data.len() as u64))
}

/// Records appended by callers and not yet taken by the flusher.
#[derive(Default)]
pub(crate) struct LogBuf {
    pub data: Vec<u8>,
    /// The log is on the store's dirty list (or taken from it and not yet drained).
    pub listed: bool,
    pub enqueues: u64,
    pub acks: u64,
    pub removed: bool,
    /// `(seq, byte offset in data)` of each enqueue record in `data`, in push order: a
    /// `delivered` or `ack` of an entry whose enqueue is still here is folded into that
    /// record instead of appended (see [`LogBuf::pending_enqueue`]).
    pub enqueued_at: Vec<(u64, u32)>,
    /// `enqueued_at` is in increasing seq order (the usual case), so it can be searched.
    pub enqueued_unordered: bool,
    /// Enqueue records in `data` cancelled by their ack (kind set to 0), left out when the
    /// flusher takes the buffer.
    pub cancelled: u32,
}

impl LogBuf {
    fn note_enqueue(&mut self, seq: u64, at: usize) {
        if self
            .enqueued_at
            .last()
            .is_some_and(|&(last, _)| last >= seq)
        {
            self.enqueued_unordered = true;
        }
        // Offsets fit: a buffer is taken every round and long before 4 GiB.
        self.enqueued_at.push((seq, at as u32));
    }

    /// Byte offset in `data` of the not yet cancelled enqueue record of `seq`, if it is
    /// still in this buffer (not yet taken by the flusher).
    fn pending_enqueue(&self, seq: u64) -> Option<usize> {
        if self.enqueued_unordered {
            return None;
        }
        let i = self
            .enqueued_at
            .binary_search_by_key(&seq, |&(s, _)| s)
            .ok()?;
        let at = self.enqueued_at[i].1 as usize;
        (self.data.get(at) == Some(&KIND_ENQUEUE)).then_some(at)
    }

    /// Takes the buffered records for writing, without the cancelled ones.
    pub(crate) fn take_records(&mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.data);
        self.enqueued_at.clear();
        self.enqueued_unordered = false;
        if std::mem::take(&mut self.cancelled) > 0 {
            let mut kept = 0;
            for i in (0..data.len()).step_by(QREC) {
                if data[i] != 0 {
                    data.copy_within(i..i + QREC, kept);
                    kept += QREC;
                }
            }
            data.truncate(kept);
        }
        data
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.enqueues = 0;
        self.acks = 0;
        self.enqueued_at.clear();
        self.enqueued_unordered = false;
        self.cancelled = 0;
    }
}

/// Records taken by the flusher, with their file offsets, kept until fsynced.
pub(crate) struct LogChunk {
    pub offset: u64,
    pub data: Vec<u8>,
    pub enqueues: u64,
    pub acks: u64,
}

/// The file side of a log; only the flusher, `recover`, `compact` and removal touch it.
pub(crate) struct LogIo {
    pub file: Arc<File>,
    /// File length once every chunk in `unsynced` is written.
    pub end: u64,
    pub unsynced: Vec<LogChunk>,
    /// Records in the file after the header (an estimate between compactions).
    pub records: u64,
    /// Live entries in the file (enqueues minus acks; exact after recover/compact).
    pub live: u64,
    pub removed: bool,
}

impl LogIo {
    pub(crate) fn wants_compaction(&self) -> bool {
        self.unsynced.is_empty()
            && !self.removed
            && self.records >= COMPACT_MIN_RECORDS
            && self.records.saturating_sub(self.live) > COMPACT_DEAD_FACTOR * self.live
    }

    /// Writes every unsynced chunk at its offset (the flusher fsyncs the returned file next,
    /// without holding the lock, in parallel with other logs). Returns the file and how many
    /// chunks it covers, or `None` if there was nothing to write.
    pub(crate) fn write_pending(
        &mut self,
        io: &IoCounters,
    ) -> std::io::Result<Option<(Arc<File>, usize)>> {
        if self.removed {
            self.unsynced.clear();
            return Ok(None);
        }
        if self.unsynced.is_empty() {
            return Ok(None);
        }
        for c in &self.unsynced {
            io.write_all_at(&self.file, &c.data, c.offset)?;
        }
        Ok(Some((self.file.clone(), self.unsynced.len())))
    }

    /// After the fsync that covers them: forgets the first `n` chunks (on error they stay,
    /// to be written again, same bytes at the same offsets, by the next round). A `compact`
    /// in between may have cleared them already.
    pub(crate) fn commit(&mut self, n: usize) {
        let n = n.min(self.unsynced.len());
        for c in self.unsynced.drain(..n) {
            self.records += (c.data.len() / QREC) as u64;
            self.live = (self.live + c.enqueues).saturating_sub(c.acks);
        }
    }

    /// Reads the whole file back (under the io lock, so nothing is writing it).
    fn read_all(&self, io: &IoCounters) -> Result<Vec<u8>, StoreError> {
        let len = self.file.metadata()?.len();
        let mut data = vec![0u8; len as usize];
        io.read_exact_at(&self.file, &mut data, 0)?;
        Ok(data)
    }

    /// Rewrites the file from its own contents (the flusher's automatic compaction).
    pub(crate) fn compact_self(
        &mut self,
        queue_id: u64,
        path: &Path,
        fsync: bool,
        io: &IoCounters,
    ) -> Result<(), StoreError> {
        debug_assert!(self.unsynced.is_empty());
        let data = self.read_all(io)?;
        let parsed = parse(&data, queue_id, path);
        let (file, end) = write_replacement(path, queue_id, &parsed.live, fsync, io)?;
        tracing::debug!(
            queue_id,
            before = parsed.records,
            live = parsed.live.len(),
            "queue log compacted"
        );
        self.file = Arc::new(file);
        self.end = end;
        self.records = parsed.live.len() as u64;
        self.live = parsed.live.len() as u64;
        Ok(())
    }
}

pub(crate) struct QueueLogInner {
    pub queue_id: u64,
    pub path: PathBuf,
    pub shared: Arc<Shared>,
    pub buf: Mutex<LogBuf>,
    /// Lock order: `io` before `buf`.
    pub io: Mutex<LogIo>,
}

/// The index log of one durable queue. Cheap to clone; all clones share one buffer and file.
#[derive(Clone)]
pub struct QueueLog {
    pub(crate) inner: Arc<QueueLogInner>,
}

impl std::fmt::Debug for QueueLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueLog")
            .field("queue_id", &self.inner.queue_id)
            .finish()
    }
}

/// An ack waiting for a generation to be durable (see [`QueueLog::ack_after`]).
pub(crate) struct DeferredAck {
    pub log: QueueLog,
    pub seq: u64,
    pub loc: Option<Location>,
    /// Generation that must be durable before the ack is written.
    pub after: u64,
}

impl DeferredAck {
    /// Buffers the ack and drops the segment reference.
    pub(crate) fn apply(self) {
        self.log.ack(self.seq);
        if let Some(loc) = self.loc {
            self.log.inner.shared.segs.lock().release(loc);
        }
    }
}

impl QueueLog {
    pub(crate) fn open(shared: Arc<Shared>, queue_id: u64) -> Result<QueueLog, StoreError> {
        let path = shared.queue_dir.join(log_file_name(queue_id));
        let (file, end) = open_file(&path, queue_id, shared.fsync, &shared.io)?;
        // Counts stay 0 until `recover` reads the file: compaction is never triggered by a
        // guess about a file nobody has looked at.
        Ok(QueueLog {
            inner: Arc::new(QueueLogInner {
                queue_id,
                path,
                shared,
                buf: Mutex::new(LogBuf::default()),
                io: Mutex::new(LogIo {
                    file: Arc::new(file),
                    end,
                    unsynced: Vec::new(),
                    records: 0,
                    live: 0,
                    removed: false,
                }),
            }),
        })
    }

    /// The queue id this log belongs to.
    pub fn queue_id(&self) -> u64 {
        self.inner.queue_id
    }

    fn push(&self, rec: [u8; QREC], enqueues: u64, acks: u64) {
        let shared = &self.inner.shared;
        {
            let mut b = self.inner.buf.lock();
            if b.removed || shared.closed.load(Ordering::Relaxed) {
                tracing::debug!(
                    queue_id = self.inner.queue_id,
                    "write to a removed queue log (or after the store was dropped) ignored"
                );
                return;
            }
            if rec[0] == KIND_ENQUEUE {
                let at = b.data.len();
                b.note_enqueue(u64_at(&rec, 4), at);
            }
            b.data.extend_from_slice(&rec);
            b.enqueues += enqueues;
            b.acks += acks;
            if !b.listed {
                // Listed before the generation moves, under the buffer lock: a flusher that
                // sees the new generation is then sure to find this log on its list.
                b.listed = true;
                shared.dirty_logs.lock().push(self.inner.clone());
            }
            shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        shared.wake_if_idle();
    }

    /// Records that message `seq` (stored at `loc`) is in the queue, expiring at `deadline`
    /// (Unix milliseconds, 0 for never). Buffered; covered by the next flush and by
    /// `Store::generation()` taken after this call.
    pub fn enqueue(&self, seq: u64, loc: Location, deadline: u64) {
        // Before the generation moves (in `push`): a round that covers this entry also
        // fsyncs the record it names.
        self.inner.shared.segs.lock().mark_durable(loc);
        self.push(record(KIND_ENQUEUE, 0, seq, loc, deadline), 1, 0);
    }

    /// Records that `seq` was handed to a consumer, so that recovery reports it as delivered
    /// (redelivered=true for the broker).
    ///
    /// While the entry's enqueue record is still buffered, the record takes the flag
    /// instead, as compaction writes it.
    pub fn delivered(&self, seq: u64) {
        {
            let mut b = self.inner.buf.lock();
            if let Some(at) = b.pending_enqueue(seq) {
                let r: &mut [u8; QREC] = (&mut b.data[at..at + QREC])
                    .try_into()
                    .expect("a buffered record is QREC bytes");
                r[1] |= FLAG_DELIVERED;
                seal(r);
                return;
            }
        }
        self.push(record(KIND_DELIVERED, 0, seq, Location::default(), 0), 0, 0);
    }

    /// Records that `seq` left the queue for good (acked, dropped, expired, dead-lettered).
    ///
    /// While the entry's enqueue record is still buffered (consumed and acked before the
    /// flusher took it), the two cancel out: neither is written, and the message record
    /// it named no longer needs an fsync for this queue. The store's state after the next
    /// round is the same as with both records written; only a crash in between differs,
    /// and there the entry, already acked, is not brought back. This is what keeps a
    /// queue whose consumers keep up from writing its index at all.
    pub fn ack(&self, seq: u64) {
        let cancelled = {
            let mut b = self.inner.buf.lock();
            match b.pending_enqueue(seq) {
                Some(at) => {
                    let loc = Location {
                        segment: u32_at(&b.data[at..], 12),
                        offset: u32_at(&b.data[at..], 16),
                        len: u32_at(&b.data[at..], 20),
                    };
                    b.data[at] = 0;
                    b.cancelled += 1;
                    b.enqueues = b.enqueues.saturating_sub(1);
                    Some(loc)
                }
                None => None,
            }
        };
        match cancelled {
            Some(loc) => self.inner.shared.segs.lock().unmark_durable(loc),
            None => self.push(record(KIND_ACK, 0, seq, Location::default(), 0), 0, 1),
        }
    }

    /// [`QueueLog::ack_after`] the store's current generation: acks once everything
    /// written so far (by any caller) is durable.
    pub fn ack_when_durable(&self, seq: u64, loc: Option<Location>) {
        let after = self.inner.shared.generation.load(Ordering::SeqCst);
        self.ack_after(seq, loc, after);
    }

    /// Like [`QueueLog::ack`] followed by `Store::release(loc)`, but only once everything up
    /// to store generation `after` is durable: the flusher writes the ack in a round after
    /// the one that covered `after`. For a message moved elsewhere (its copy written before
    /// `after` was taken), so that a crash can duplicate it but never lose it.
    pub fn ack_after(&self, seq: u64, loc: Option<Location>, after: u64) {
        let shared = &self.inner.shared;
        shared.deferred_acks.lock().push(DeferredAck {
            log: self.clone(),
            seq,
            loc,
            after,
        });
        // The flusher must notice the deferred work even if nothing else is written.
        shared.wake_if_idle();
    }

    /// Reads the log file: the live entries (enqueued, not acked) in seq order. A torn tail
    /// was cut when the log was opened; a corrupt record is skipped with a warning. Reflects
    /// what is in the file, so call it at start-up before writing (or after `sync_now`).
    pub fn recover(&self) -> Result<Vec<RecoveredEntry>, StoreError> {
        let mut io = self.inner.io.lock();
        if io.removed {
            return Err(StoreError::QueueLogRemoved {
                queue_id: self.inner.queue_id,
            });
        }
        let data = io.read_all(&self.inner.shared.io)?;
        let parsed = parse(&data, self.inner.queue_id, &self.inner.path);
        if parsed.corrupt > 0 {
            tracing::warn!(
                queue_id = self.inner.queue_id,
                corrupt = parsed.corrupt,
                live = parsed.live.len(),
                "queue log recovered with corrupt records skipped"
            );
        }
        let (pend_records, pend_enq, pend_acks) = io.unsynced.iter().fold((0, 0, 0), |a, c| {
            (
                a.0 + (c.data.len() / QREC) as u64,
                a.1 + c.enqueues,
                a.2 + c.acks,
            )
        });
        io.records = parsed.records + pend_records;
        io.live = (parsed.live.len() as u64 + pend_enq).saturating_sub(pend_acks);
        Ok(parsed.live)
    }

    /// Rewrites the log to hold exactly `live` (atomic replace: temp file, fsync, rename,
    /// directory fsync). Records buffered but not yet written are discarded: `live` must
    /// already reflect every enqueue/delivered/ack issued on this log before the call, and
    /// none may be issued concurrently with it. Does I/O on the calling thread.
    pub fn compact(&self, live: &[RecoveredEntry]) -> Result<(), StoreError> {
        debug_assert!(live.windows(2).all(|w| w[0].seq < w[1].seq) || live.len() < 2);
        let inner = &self.inner;
        let mut io = inner.io.lock();
        if io.removed {
            return Err(StoreError::QueueLogRemoved {
                queue_id: inner.queue_id,
            });
        }
        inner.buf.lock().clear();
        io.unsynced.clear();
        let (file, end) = write_replacement(
            &inner.path,
            inner.queue_id,
            live,
            inner.shared.fsync,
            &inner.shared.io,
        )?;
        io.file = Arc::new(file);
        io.end = end;
        io.records = live.len() as u64;
        io.live = live.len() as u64;
        Ok(())
    }

    /// Marks the log removed and deletes its file (`Store::remove_queue_log`).
    pub(crate) fn remove(&self) -> Result<(), StoreError> {
        let mut io = self.inner.io.lock();
        {
            let mut b = self.inner.buf.lock();
            b.removed = true;
            b.clear();
        }
        io.removed = true;
        io.unsynced.clear();
        match std::fs::remove_file(&self.inner.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(n: u32) -> Location {
        Location {
            segment: n,
            offset: 16 + n,
            len: n * 2,
        }
    }

    fn file(recs: &[[u8; QREC]]) -> Vec<u8> {
        let mut d = header(9).to_vec();
        for r in recs {
            d.extend_from_slice(r);
        }
        d
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(log_file_name(42), "42.idx");
        assert_eq!(parse_log_file_name("42.idx"), Some(42));
        assert_eq!(parse_log_file_name("42.idx.tmp"), None);
        assert_eq!(parse_log_file_name("x.idx"), None);
    }

    #[test]
    fn replay_applies_enqueue_delivered_ack() {
        let d = file(&[
            record(KIND_ENQUEUE, 0, 1, loc(1), 0),
            record(KIND_ENQUEUE, 0, 2, loc(2), 0),
            record(KIND_ENQUEUE, 0, 3, loc(3), MAX_DEADLINE - 5),
            record(KIND_DELIVERED, 0, 2, Location::default(), 0),
            record(KIND_ACK, 0, 1, Location::default(), 0),
            record(KIND_ACK, 0, 77, Location::default(), 0),
        ]);
        let p = parse(&d, 9, Path::new("t"));
        assert_eq!(p.records, 6);
        assert_eq!(p.corrupt, 0);
        assert_eq!(
            p.live,
            vec![
                RecoveredEntry {
                    seq: 2,
                    loc: loc(2),
                    delivered: true,
                    deadline: 0,
                },
                RecoveredEntry {
                    seq: 3,
                    loc: loc(3),
                    delivered: false,
                    deadline: MAX_DEADLINE - 5,
                },
            ]
        );
    }

    #[test]
    fn zeroed_and_flipped_records_are_skipped() {
        let mut d = file(&[
            record(KIND_ENQUEUE, 0, 1, loc(1), 0),
            [0u8; QREC],
            record(KIND_ENQUEUE, 0, 2, loc(2), 0),
        ]);
        d[QREC + 5] ^= 0x40; // seq of record 1
        let p = parse(&d, 9, Path::new("t"));
        assert_eq!(p.corrupt, 2);
        assert_eq!(p.live.len(), 1);
        assert_eq!(p.live[0].seq, 2);
    }
}
