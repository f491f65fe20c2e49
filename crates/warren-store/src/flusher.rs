//! The background flusher: the only thread that writes segment files and appends to queue
//! logs, and the one place where group commit happens.
//!
//! A round: read the generation `g`; take the list of segments to delete; move every dirty
//! queue log's buffer into its unsynced chunks; cut the segment write buffer into a chunk;
//! write the segment files and fdatasync those holding records a queue log names (with the
//! segments directory and the id file, if a file was created: see `segment` for why records
//! no index names are neither fsynced nor kept once written); only then write and fdatasync
//! the queue logs; publish `g` as synced; retire the segments taken at the start (kept as
//! spares for new segments, see `recycle`, or unlinked). Queue-log buffers are taken before
//! the segment buffer, and segments are synced before queue logs, so an index entry that
//! reaches the disk in a round never points at message data that is not durable by the end
//! of that same round. Retiring a segment only after the round's queue logs are synced means
//! the ack records that emptied it are durable first, so after a crash no live index entry
//! points into a deleted (or reused) segment.
//!
//! When to run a round: at once when `request_sync` or `sync_now` asked (back to back while
//! requests keep arriving, each round covering everything appended meanwhile); otherwise
//! `flush_interval` after dirty data was first noticed; with nothing to do the thread sleeps
//! on a condition variable and is woken by the first append (see `Shared::wake_if_idle`).
//! After a failed round (disk full, I/O error) it retries with an exponential back-off up to
//! one second, rewriting every unsynced byte at its original offset.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_core::FastMap;

use crate::io_stats::IoCounters;
use crate::queue_log::QueueLogInner;
use crate::recycle::Spares;
use crate::Shared;

/// How long the idle flusher sleeps before looking for work again; appends and sync requests
/// wake it earlier.
const IDLE_WAKE: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// File in the segments directory that remembers the next segment id, so that ids are never
/// reused even when every segment file was deleted (a stale index entry must not read a
/// different message that happens to sit at the same offset of a new segment).
pub(crate) const NEXT_ID_FILE: &str = "next_id";

pub(crate) fn read_next_id(shared_seg_dir: &std::path::Path) -> Option<u32> {
    let data = std::fs::read(shared_seg_dir.join(NEXT_ID_FILE)).ok()?;
    if data.len() != 8 {
        return None;
    }
    let id = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    (crc32c::crc32c(&data[..4]) == crc).then_some(id)
}

struct Flusher {
    shared: Arc<Shared>,
    /// Queue logs with unsynced chunks, by identity (a removed and re-created queue id is a
    /// different log).
    pending: FastMap<usize, Arc<QueueLogInner>>,
    /// Generation covered by the last successful round.
    flushed_gen: u64,
    /// Consecutive failed rounds.
    failures: u32,
    last_round: Instant,
    dirty_since: Option<Instant>,
    /// A segment file was created and the directory not yet fsynced successfully.
    dir_sync_needed: bool,
    /// Highest `next_id` value written.
    next_id_written: u32,
    /// `next_id` was written and not fsynced yet.
    next_id_unsynced: bool,
    /// Segments taken for deletion, unlinked once a round's queue logs are synced.
    doomed: Vec<u32>,
    next_id_file: Option<File>,
    /// Retired segment files, reused for new segments (see `recycle`).
    spares: Spares,
    /// `collect_garbage` asked for the spares to go: done at the end of the next round
    /// that succeeds (taken at a round's start, so a round already under way when it was
    /// asked does not count).
    drop_spares: bool,
}

pub(crate) fn run(shared: Arc<Shared>) {
    let next_id_written = read_next_id(&shared.seg_dir).unwrap_or(0);
    let shared_seg_dir = shared.seg_dir.clone();
    let max_segment_len = shared.segs.lock().segment_size;
    let mut f = Flusher {
        shared,
        pending: FastMap::default(),
        flushed_gen: 0,
        failures: 0,
        last_round: Instant::now(),
        dirty_since: None,
        dir_sync_needed: false,
        next_id_written,
        next_id_unsynced: false,
        doomed: Vec::new(),
        next_id_file: None,
        spares: Spares::open(&shared_seg_dir, max_segment_len),
        drop_spares: false,
    };
    loop {
        let shutdown = f.wait();
        let result = f.round();
        let ok = result.is_ok();
        f.finish(result);
        f.spares.expire(Instant::now());
        if shutdown {
            // Acks deferred behind the last round's data become writable now: a clean stop
            // leaves no moved message in two places.
            for _ in 0..3 {
                if !ok || f.shared.deferred_acks.lock().is_empty() {
                    break;
                }
                let result = f.round();
                f.finish(result);
            }
            break;
        }
    }
    // A stopped store keeps no spare files.
    f.spares.clear();
}

/// Most threads used to fdatasync queue logs in parallel in one round.
const MAX_SYNC_THREADS: usize = 16;

/// fdatasyncs `files`, several at a time: on ext4 concurrent fdatasyncs share a journal
/// commit, so N dirty queue logs cost about one fsync latency instead of N (measured here:
/// 8 files 11.6 ms one after another, 3.2 ms in parallel). Results are in `files` order.
fn sync_parallel(files: &[&File], io: &IoCounters) -> Vec<io::Result<()>> {
    if files.len() <= 1 {
        return files.iter().map(|f| io.sync_data(f)).collect();
    }
    let workers = files.len().min(MAX_SYNC_THREADS);
    let mut results: Vec<Option<io::Result<()>>> = files.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for w in 1..workers {
            let spawned = std::thread::Builder::new()
                .name("warren-store-sync".into())
                .spawn_scoped(s, move || {
                    (w..files.len())
                        .step_by(workers)
                        .map(|i| (i, io.sync_data(files[i])))
                        .collect::<Vec<_>>()
                });
            // Could not start a helper: its files are synced below on this thread.
            if let Ok(h) = spawned {
                handles.push(h);
            }
        }
        for i in (0..files.len()).step_by(workers) {
            results[i] = Some(io.sync_data(files[i]));
        }
        for h in handles {
            if let Ok(done) = h.join() {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
        }
    });
    results
        .into_iter()
        .zip(files)
        .map(|(r, f)| r.unwrap_or_else(|| io.sync_data(f)))
        .collect()
}

fn backoff(failures: u32, interval: Duration) -> Duration {
    let base = interval.max(MIN_BACKOFF);
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

impl Flusher {
    fn has_work(&self) -> bool {
        let sh = &*self.shared;
        if sh.generation.load(Ordering::SeqCst) != self.flushed_gen
            || !self.pending.is_empty()
            || !self.doomed.is_empty()
            || !sh.deferred_acks.lock().is_empty()
        {
            return true;
        }
        !sh.segs.lock().doomed.is_empty()
    }

    /// Some deferred ack can be written now.
    fn deferred_ready(&self) -> bool {
        let synced = self.flushed_gen;
        self.shared
            .deferred_acks
            .lock()
            .iter()
            .any(|a| a.after <= synced)
    }

    /// Writes the deferred acks whose condition holds: everything up to their generation was
    /// made durable by an earlier round (see `QueueLog::ack_after`). Their records go into
    /// this round; their segment references go now, so a segment they empty is deleted only
    /// after this round has made the acks durable.
    fn release_deferred_acks(&self) {
        let sh = &*self.shared;
        let ready: Vec<crate::queue_log::DeferredAck> = {
            let mut d = sh.deferred_acks.lock();
            if d.is_empty() {
                return;
            }
            let synced = self.flushed_gen;
            let (ready, waiting) = std::mem::take(&mut *d)
                .into_iter()
                .partition(|a| a.after <= synced);
            *d = waiting;
            ready
        };
        for a in ready {
            a.apply();
        }
    }

    /// Sleeps until a round is due. Returns true when the store is shutting down (one last
    /// round is run then).
    fn wait(&mut self) -> bool {
        let sh = self.shared.clone();
        let mut ctl = sh.ctl.lock();
        loop {
            if ctl.shutdown {
                ctl.rounds_started += 1;
                return true;
            }
            let now = Instant::now();
            if self.failures > 0 {
                let due = self.last_round + backoff(self.failures, sh.flush_interval);
                if now < due {
                    sh.flusher_cv.wait_until(&mut ctl, due);
                    continue;
                }
                break;
            }
            if sh.sync_requested.load(Ordering::SeqCst) || self.deferred_ready() {
                // Deferred acks that just became writable go out at once: they are what
                // stands between a moved message and its single copy.
                break;
            }
            if self.has_work() {
                let since = *self.dirty_since.get_or_insert(now);
                let due = since.max(self.last_round) + sh.flush_interval;
                if now >= due {
                    break;
                }
                sh.flusher_cv.wait_until(&mut ctl, due);
                continue;
            }
            // Idle. An unused spare segment is due: a round (with nothing to write) ends
            // with deleting it, outside this lock.
            let spare_due = self.spares.next_expiry();
            if spare_due.is_some_and(|due| now >= due) {
                break;
            }
            // Publish that we sleep, then look once more: an appender either sees
            // `idle` and wakes us, or we see its generation here (both sides use SeqCst).
            sh.idle.store(true, Ordering::SeqCst);
            if sh.generation.load(Ordering::SeqCst) != self.flushed_gen
                || sh.sync_requested.load(Ordering::SeqCst)
            {
                sh.idle.store(false, Ordering::SeqCst);
                continue;
            }
            let sleep = spare_due.map_or(IDLE_WAKE, |due| (due - now).min(IDLE_WAKE));
            sh.flusher_cv.wait_for(&mut ctl, sleep);
            sh.idle.store(false, Ordering::SeqCst);
        }
        ctl.rounds_started += 1;
        false
    }

    fn finish(&mut self, result: io::Result<()>) {
        let sh = self.shared.clone();
        let mut ctl = sh.ctl.lock();
        ctl.rounds_done += 1;
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "store writes recovered");
                }
                self.failures = 0;
                ctl.last_err = None;
                sh.failed.store(false, Ordering::SeqCst);
            }
            Err(e) => {
                self.failures += 1;
                // First failure and then every 64th, so a full disk does not flood the log.
                if self.failures == 1 || self.failures & 63 == 0 {
                    tracing::error!(error = %e, failures = self.failures, "store flush failed; data kept in memory, retrying");
                }
                *sh.last_error.lock() = Some(e.to_string());
                ctl.last_err = Some((e.kind(), e.to_string()));
                sh.failed.store(true, Ordering::SeqCst);
            }
        }
        self.last_round = Instant::now();
        sh.done_cv.notify_all();
    }

    fn round(&mut self) -> io::Result<()> {
        let sh = self.shared.clone();
        sh.sync_requested.store(false, Ordering::SeqCst);
        self.drop_spares |= sh.drop_spares.swap(false, Ordering::SeqCst);
        self.dirty_since = None;
        self.release_deferred_acks();
        let g = sh.generation.load(Ordering::SeqCst);

        // Deletions decided before this point are carried out after this round's queue logs
        // are durable (see the module doc).
        self.doomed.append(&mut sh.segs.lock().doomed);

        // Queue-log buffers first, then the segment buffer (see the module doc).
        let dirty = std::mem::take(&mut *sh.dirty_logs.lock());
        for log in dirty {
            {
                let mut io = log.io.lock();
                let mut b = log.buf.lock();
                b.listed = false;
                let enqueues = std::mem::take(&mut b.enqueues);
                let acks = std::mem::take(&mut b.acks);
                if io.removed || b.data.is_empty() {
                    b.clear();
                    continue;
                }
                let data = b.take_records();
                drop(b);
                if data.is_empty() {
                    // Every record was an enqueue its ack cancelled.
                    continue;
                }
                let offset = io.end;
                io.end += data.len() as u64;
                io.unsynced.push(crate::queue_log::LogChunk {
                    offset,
                    data,
                    enqueues,
                    acks,
                });
            }
            self.pending.insert(Arc::as_ptr(&log) as usize, log);
        }

        self.write_segments()?;

        // Queue logs: write each (under its lock), then fdatasync them all in parallel (one
        // journal commit can cover many files), then drop what the fsyncs covered.
        let fsync = sh.fsync;
        let mut first_err = None;
        let mut to_sync: Vec<(usize, Arc<File>, usize)> = Vec::new();
        let mut done: Vec<usize> = Vec::new();
        for (&key, log) in &self.pending {
            match log.io.lock().write_pending(&sh.io) {
                Ok(Some((file, n))) => to_sync.push((key, file, n)),
                Ok(None) => done.push(key),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let results = if fsync {
            let files: Vec<&File> = to_sync.iter().map(|(_, f, _)| &**f).collect();
            sync_parallel(&files, &sh.io)
        } else {
            to_sync.iter().map(|_| Ok(())).collect()
        };
        let mut compact = Vec::new();
        for ((key, _, n), result) in to_sync.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    if let Some(log) = self.pending.get(&key) {
                        let mut io = log.io.lock();
                        io.commit(n);
                        if io.wants_compaction() {
                            compact.push(log.clone());
                        }
                    }
                    done.push(key);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for key in done {
            self.pending.remove(&key);
        }
        if let Some(e) = first_err {
            return Err(e);
        }

        self.flushed_gen = g;
        sh.synced_tx.send_if_modified(|v| {
            if g > *v {
                *v = g;
                true
            } else {
                false
            }
        });

        for seg in std::mem::take(&mut self.doomed) {
            self.spares.retire(seg);
        }
        if std::mem::take(&mut self.drop_spares) {
            self.spares.clear();
        }

        for log in compact {
            let mut io = log.io.lock();
            if io.wants_compaction() {
                // On failure the old file is intact (rename is the last step); try again later.
                if let Err(e) = io.compact_self(log.queue_id, &log.path, fsync, &sh.io) {
                    tracing::warn!(queue_id = log.queue_id, error = %e, "queue log compaction failed")
                }
            }
        }
        Ok(())
    }

    fn write_segments(&mut self) -> io::Result<()> {
        let sh = self.shared.clone();
        let (chunks, max_id, resync, mut files) = {
            let mut s = sh.segs.lock();
            s.cut_active();
            let resync = std::mem::take(&mut s.resync);
            if s.unsynced.is_empty() && resync.is_empty() {
                return Ok(());
            }
            let chunks: Vec<(u32, u64, Arc<Vec<u8>>, bool)> = s
                .unsynced
                .iter()
                .map(|c| (c.seg, c.base, c.data.clone(), c.durable > 0))
                .collect();
            let max_id = s.unsynced.last().map_or(0, |c| c.id);
            let mut files: HashMap<u32, Option<Arc<File>>> = HashMap::new();
            for seg in chunks.iter().map(|c| c.0).chain(resync.iter().copied()) {
                files
                    .entry(seg)
                    .or_insert_with(|| s.metas.get(&seg).and_then(|m| m.file.clone()));
            }
            (chunks, max_id, resync, files)
        };
        let result = self.write_and_sync(chunks, max_id, &resync, &mut files);
        if result.is_err() && !resync.is_empty() {
            // Those files still owe their fsync: the next round tries again.
            let mut s = sh.segs.lock();
            for seg in resync {
                s.owe_resync(seg);
            }
        }
        result
    }

    /// Writes the chunks, drops the transient ones, fsyncs the files holding durable-bound
    /// records (see `segment`'s module doc), then drops the rest.
    fn write_and_sync(
        &mut self,
        chunks: Vec<(u32, u64, Arc<Vec<u8>>, bool)>,
        max_id: u64,
        resync: &[u32],
        files: &mut HashMap<u32, Option<Arc<File>>>,
    ) -> io::Result<()> {
        let sh = self.shared.clone();
        // Segments written to for the first time (a resync names only written ones).
        let mut new_segments: Vec<u32> = chunks
            .iter()
            .map(|c| c.0)
            .filter(|seg| matches!(files.get(seg), Some(None)))
            .collect();
        new_segments.dedup();
        for seg in new_segments {
            if seg >= self.next_id_written {
                self.write_next_id(seg.wrapping_add(1))?;
            }
            let f = Arc::new(self.spares.open_new(seg)?);
            self.dir_sync_needed = true;
            if let Some(m) = sh.segs.lock().metas.get_mut(&seg) {
                m.file = Some(f.clone());
            }
            files.insert(seg, Some(f));
        }

        for (seg, base, data, _) in &chunks {
            if let Some(Some(f)) = files.get(seg) {
                sh.io.write_all_at(f, data, *base)?;
            }
        }
        let mut to_sync: Vec<u32> = chunks
            .iter()
            .filter(|c| c.3)
            .map(|c| c.0)
            .chain(resync.iter().copied())
            .collect();
        // Our clones of the buffers go first, so that the store can reuse them.
        drop(chunks);
        sh.segs.lock().drop_written_transient(max_id);
        to_sync.sort_unstable();
        to_sync.dedup();
        if !to_sync.is_empty() {
            // New segment files and the id counter only need to be durable once durable
            // data lives in them; a transient backlog never waits for these (on ext4 each is
            // a journal commit that can wait for every dirty page written so far).
            self.sync_metadata_if_needed()?;
        }
        if sh.fsync {
            for seg in to_sync {
                if let Some(Some(f)) = files.get(&seg) {
                    sh.io.sync_data(f)?;
                }
            }
        }
        sh.segs.lock().drop_synced(max_id);
        Ok(())
    }

    fn sync_metadata_if_needed(&mut self) -> io::Result<()> {
        if self.next_id_unsynced {
            if let Some(f) = &self.next_id_file {
                if self.shared.fsync {
                    self.shared.io.sync_data(f)?;
                }
            }
            self.next_id_unsynced = false;
        }
        if self.dir_sync_needed {
            if self.shared.fsync {
                self.shared.io.sync_dir(&self.shared.seg_dir)?;
            }
            self.dir_sync_needed = false;
        }
        Ok(())
    }

    fn write_next_id(&mut self, next: u32) -> io::Result<()> {
        let sh = &self.shared;
        if self.next_id_file.is_none() {
            self.next_id_file = Some(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(sh.seg_dir.join(NEXT_ID_FILE))?,
            );
            self.dir_sync_needed = true;
        }
        let mut data = [0u8; 8];
        data[..4].copy_from_slice(&next.to_le_bytes());
        let crc = crc32c::crc32c(&data[..4]);
        data[4..].copy_from_slice(&crc.to_le_bytes());
        if let Some(f) = &self.next_id_file {
            // 8 bytes at offset 0 sit in one sector: the write is not torn in practice, and
            // a torn one fails its checksum and falls back to the segment files' own ids.
            self.shared.io.write_all_at(f, &data, 0)?;
            self.next_id_unsynced = true;
        }
        self.next_id_written = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let i = Duration::from_millis(20);
        assert_eq!(backoff(1, i), Duration::from_millis(20));
        assert_eq!(backoff(2, i), Duration::from_millis(40));
        assert_eq!(backoff(30, i), MAX_BACKOFF);
        assert_eq!(backoff(1, Duration::ZERO), MIN_BACKOFF);
    }
}
