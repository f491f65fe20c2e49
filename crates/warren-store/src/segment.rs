//! Message records in shared segment files, and the in-memory state that stands in for the
//! part of the current segment not yet on disk.
//!
//! The file layout and the record check are in `record`.
//!
//! Appends go into `active` (a copy under the `Segments` mutex, nothing else). The flusher
//! cuts `active` into an immutable [`Chunk`] and keeps that chunk in `unsynced` until the fsync
//! that covers it succeeds, so that (a) `read` finds not-yet-durable data in memory and (b) a
//! failed write or fsync can be retried by writing the same bytes at the same offsets again.
//!
//! Only records that a queue index names need that: a record becomes *durable-bound* when a
//! queue log enqueues it ([`Segments::mark_durable`]). A chunk holding none (transient
//! messages paged out of memory, which no restart brings back) is dropped as soon as its bytes
//! are written, and its segment is not fsynced for it: a backlog of transient messages costs
//! the store no memory beyond the bytes written in one round. A record that becomes
//! durable-bound after its chunk was written (a fanout that paged the message for a transient
//! queue first) puts its segment on the `resync` list: the next round fsyncs that file
//! before its queue logs, which is before the enqueue can be confirmed.
//!
//! Segments are reference counted by ownership: `append` counts one reference for the
//! [`crate::RecordRef`] it returns (held until routing has handed the record to every queue),
//! and every queue entry holding the record counts one more (`retain`/`release`). A segment
//! is deleted when its count drops to zero and it is not the segment being written; a segment
//! that rolls over with a count already at zero is deleted at once. No timer is involved: a
//! record that somebody can still name keeps its segment.

use std::fs::File;
use std::sync::Arc;

use crate::error::StoreError;
use crate::Location;
use warren_core::FastMap;

pub(crate) use crate::record::{
    decode_record, parse_segment_file_name, read_from_file, segment_file_name, RecordCheck,
    REC_HEADER_LEN, SEG_HEADER_LEN,
};
use crate::record::{seed, segment_header};

/// `active` is cut into a chunk once it would grow past this: the write buffer is a list of
/// buffers this size rather than one that doubles (and copies) while a burst of appends
/// outruns a flush round.
const ACTIVE_CHUNK: usize = 1024 * 1024;
/// Written chunk buffers kept for reuse.
const SPARE_CHUNKS: usize = 8;

/// Largest segment size we accept: offsets are u32, and a record may start just below the
/// limit, so keep the limit well under 4 GiB.
pub(crate) const MAX_SEGMENT_SIZE: u64 = 1 << 31;

/// Bytes handed to the flusher: a contiguous run of one segment starting at `base`.
pub(crate) struct Chunk {
    /// Increasing; lets the flusher drop exactly the chunks it wrote after a successful fsync.
    pub id: u64,
    pub seg: u32,
    pub base: u64,
    pub data: Arc<Vec<u8>>,
    /// Records in it that some queue index names (counted once per naming index; an
    /// enqueue cancelled by its ack before it was written takes its count back): while not
    /// zero, the chunk is kept until an fsync covers it.
    pub durable: u32,
}

/// What the store knows of one segment file.
pub(crate) struct SegMeta {
    /// References held by the caller (one per queue holding a message in this segment).
    pub refs: u64,
    /// Length of the segment (for the current segment: see `Segments::current_len`).
    pub size: u64,
    /// Open handle, created by the flusher for new segments and lazily by `read` for old ones.
    pub file: Option<Arc<File>>,
    /// How its records are checked (segments of this run: seeded).
    pub check: RecordCheck,
}

/// Where a record's bytes are buffered ([`Segments::buffered`]).
#[derive(Debug, Clone, Copy)]
enum Buffered {
    /// In `active`, not yet cut.
    Active,
    /// In `unsynced[i]`.
    Chunk(usize),
    /// Not in memory: written (and its chunk dropped), or never appended.
    Written,
}

/// Where `read` has to look for a record.
pub(crate) enum Found {
    /// Copied out of a write buffer (header + payload).
    Memory(Vec<u8>),
    /// On disk, with an open handle.
    File(Arc<File>, RecordCheck),
    /// On disk in a segment nobody has opened yet.
    NeedOpen(RecordCheck),
}

/// All segment state, guarded by one mutex in the store.
pub(crate) struct Segments {
    pub segment_size: u64,
    /// The segment appends go to.
    pub current: u32,
    /// Logical length of `current` including buffered bytes; 0 until its header is written.
    pub current_len: u64,
    /// Bytes of `current` from `active_base` on, not yet handed to the flusher.
    pub active: Vec<u8>,
    pub active_base: u64,
    /// Chunks handed to the flusher and not yet covered by a successful fsync, oldest first.
    pub unsynced: Vec<Chunk>,
    pub next_chunk_id: u64,
    /// Bytes in `active` + `unsynced` (memory the store holds for data not yet durable).
    pub buffered: u64,
    /// Durable-bound records in `active` (see `Chunk::durable`).
    pub active_durable: u32,
    /// Segments with a durable-bound record that was written without an fsync: the next
    /// round fsyncs them.
    pub resync: Vec<u32>,
    /// Written chunks' buffers, reused for `active`: a steady stream of appends then costs
    /// no allocation (and no page faults for fresh pages) per megabyte.
    spare: Vec<Vec<u8>>,
    pub metas: FastMap<u32, SegMeta>,
    /// Segments whose files are to be unlinked (by the flusher, off the caller's thread).
    pub doomed: Vec<u32>,
}

impl Segments {
    pub(crate) fn new(segment_size: u64, existing: FastMap<u32, SegMeta>) -> Segments {
        let current = existing.keys().copied().max().unwrap_or(0) + 1;
        Segments {
            segment_size,
            current,
            current_len: 0,
            active: Vec::new(),
            active_base: 0,
            unsynced: Vec::new(),
            next_chunk_id: 1,
            buffered: 0,
            active_durable: 0,
            resync: Vec::new(),
            spare: Vec::new(),
            metas: existing,
            doomed: Vec::new(),
        }
    }

    /// Copies one record, whose payload is the concatenation of `parts` (`len` bytes in
    /// all), into the write buffer and counts one reference to it (the caller's handle).
    /// `crc` is the payload's CRC32C, computed by the caller outside the lock.
    pub(crate) fn append(&mut self, crc: u32, len: usize, parts: &[&[u8]]) -> Location {
        debug_assert_eq!(len, parts.iter().map(|p| p.len()).sum::<usize>());
        let rec_len = REC_HEADER_LEN + len as u64;
        if self.current_len > SEG_HEADER_LEN && self.current_len + rec_len > self.segment_size {
            self.roll();
        }
        if self.current_len == 0 {
            self.start_segment();
        }
        if !self.active.is_empty() && self.active.len() + rec_len as usize > ACTIVE_CHUNK {
            self.cut_active();
        }
        let offset = self.current_len;
        self.active.extend_from_slice(&(len as u32).to_le_bytes());
        self.active
            .extend_from_slice(&(crc ^ seed(self.current)).to_le_bytes());
        for part in parts {
            self.active.extend_from_slice(part);
        }
        self.current_len += rec_len;
        self.buffered += rec_len;
        if let Some(m) = self.metas.get_mut(&self.current) {
            m.refs += 1;
        }
        Location {
            segment: self.current,
            // Fits: a record starts before `segment_size` <= MAX_SEGMENT_SIZE.
            offset: offset as u32,
            len: len as u32,
        }
    }

    fn start_segment(&mut self) {
        debug_assert!(self.active.is_empty());
        self.active.extend_from_slice(&segment_header(self.current));
        self.active_base = 0;
        self.current_len = SEG_HEADER_LEN;
        self.buffered += SEG_HEADER_LEN;
        self.metas.insert(
            self.current,
            SegMeta {
                refs: 0,
                size: SEG_HEADER_LEN,
                file: None,
                check: RecordCheck::Seeded,
            },
        );
    }

    /// Seals the current segment and moves on to the next id (its header is written by the
    /// next append).
    fn roll(&mut self) {
        self.cut_active();
        let old = self.current;
        let unreferenced = match self.metas.get_mut(&old) {
            Some(m) => {
                m.size = self.current_len;
                m.refs == 0
            }
            None => false,
        };
        self.current = self.current.wrapping_add(1);
        self.current_len = 0;
        self.active_base = 0;
        if unreferenced {
            // Every handle and entry that named a record in it is gone already.
            self.doom(old);
        }
    }

    /// Hands `active` over to the flusher as a chunk.
    pub(crate) fn cut_active(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let cap = self.active.capacity().min(ACTIVE_CHUNK);
        let next = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(cap));
        let data = std::mem::replace(&mut self.active, next);
        let id = self.next_chunk_id;
        self.next_chunk_id += 1;
        self.unsynced.push(Chunk {
            id,
            seg: self.current,
            base: self.active_base,
            data: Arc::new(data),
            durable: std::mem::take(&mut self.active_durable),
        });
        self.active_base = self.current_len;
        if let Some(m) = self.metas.get_mut(&self.current) {
            m.size = self.current_len;
        }
    }

    /// A queue index names the record at `loc`: it must be durable before that index entry
    /// is (see the module doc). Usually the record was appended a moment ago and is in
    /// `active`.
    pub(crate) fn mark_durable(&mut self, loc: Location) {
        match self.buffered(loc) {
            Buffered::Active => self.active_durable += 1,
            Buffered::Chunk(i) => {
                self.unsynced[i].durable += 1;
                // A round may have taken this chunk as transient already and drop it
                // unsynced once written: the next round fsyncs its file either way.
                self.owe_resync(loc.segment);
            }
            // Written already, maybe without an fsync (or long durable: one more fsync of a
            // clean file costs little).
            Buffered::Written => {
                if self.metas.contains_key(&loc.segment) {
                    self.owe_resync(loc.segment);
                }
            }
        }
    }

    /// Takes back one [`Segments::mark_durable`] of `loc`: the index entry that named it was
    /// cancelled by its ack before anything was written (see `queue_log`). A chunk whose
    /// count falls to zero is written and dropped unsynced, like a transient one. Where the
    /// mark went to a chunk that is gone or to the resync list, nothing is taken back: the
    /// worst case is an fsync that was not needed.
    pub(crate) fn unmark_durable(&mut self, loc: Location) {
        let count = match self.buffered(loc) {
            Buffered::Active => &mut self.active_durable,
            Buffered::Chunk(i) => &mut self.unsynced[i].durable,
            Buffered::Written => return,
        };
        *count = count.saturating_sub(1);
    }

    /// Where the bytes of the record at `loc` wait in memory, if they still do.
    fn buffered(&self, loc: Location) -> Buffered {
        let start = u64::from(loc.offset);
        if loc.segment == self.current && self.current_len > 0 && start >= self.active_base {
            return Buffered::Active;
        }
        // Newest first: the record is most likely in the chunk cut last.
        self.unsynced
            .iter()
            .rposition(|c| {
                c.seg == loc.segment && start >= c.base && start < c.base + c.data.len() as u64
            })
            .map_or(Buffered::Written, Buffered::Chunk)
    }

    /// The next round fsyncs `seg` (also used by a round whose fsync of it failed).
    pub(crate) fn owe_resync(&mut self, seg: u32) {
        if !self.resync.contains(&seg) {
            self.resync.push(seg);
        }
    }

    /// Drops the chunks with id <= `max_id` that hold no durable-bound record, once they
    /// are written.
    pub(crate) fn drop_written_transient(&mut self, max_id: u64) {
        self.drop_chunks(|c| c.id <= max_id && c.durable == 0);
    }

    /// Drops the chunks with id <= `max_id` after the fsync that covers them.
    pub(crate) fn drop_synced(&mut self, max_id: u64) {
        self.drop_chunks(|c| c.id <= max_id);
    }

    fn drop_chunks(&mut self, which: impl Fn(&Chunk) -> bool) {
        let dropped: Vec<Chunk> = self.unsynced.extract_if(.., |c| which(c)).collect();
        for c in dropped {
            self.buffered = self.buffered.saturating_sub(c.data.len() as u64);
            // The flusher let go of its clones before asking: the buffer is ours again.
            if let Ok(mut buf) = Arc::try_unwrap(c.data) {
                if self.spare.len() < SPARE_CHUNKS && buf.capacity() <= 2 * ACTIVE_CHUNK {
                    buf.clear();
                    self.spare.push(buf);
                }
            }
        }
    }

    pub(crate) fn retain(&mut self, loc: Location) {
        match self.metas.get_mut(&loc.segment) {
            Some(m) => m.refs += 1,
            None => tracing::warn!(?loc, "retain of a location in a deleted or unknown segment"),
        }
    }

    pub(crate) fn release(&mut self, loc: Location) {
        let Some(m) = self.metas.get_mut(&loc.segment) else {
            tracing::warn!(
                ?loc,
                "release of a location in a deleted or unknown segment"
            );
            return;
        };
        if m.refs == 0 {
            tracing::warn!(?loc, "release without a matching retain (ignored)");
            return;
        }
        m.refs -= 1;
        if m.refs == 0 && loc.segment != self.current {
            self.doom(loc.segment);
        }
    }

    /// Forgets a segment and queues its file for unlinking. Its unsynced bytes are dropped:
    /// nobody refers to them.
    pub(crate) fn doom(&mut self, seg: u32) {
        debug_assert_ne!(seg, self.current);
        self.metas.remove(&seg);
        let mut freed = 0u64;
        self.unsynced.retain(|c| {
            if c.seg == seg {
                freed += c.data.len() as u64;
                false
            } else {
                true
            }
        });
        self.buffered = self.buffered.saturating_sub(freed);
        self.doomed.push(seg);
    }

    /// Finds a record: in a write buffer (copied out), or on disk.
    pub(crate) fn find(&self, loc: Location) -> Result<Found, StoreError> {
        let start = u64::from(loc.offset);
        let end = start + REC_HEADER_LEN + u64::from(loc.len);
        if start < SEG_HEADER_LEN {
            return Err(StoreError::corrupt(format!(
                "{loc:?}: offset inside the segment header"
            )));
        }
        let in_memory = match self.buffered(loc) {
            Buffered::Active => Some((&self.active[..], self.active_base)),
            Buffered::Chunk(i) => Some((&self.unsynced[i].data[..], self.unsynced[i].base)),
            Buffered::Written => None,
        };
        if let Some((bytes, base)) = in_memory {
            if end > base + bytes.len() as u64 {
                return Err(StoreError::corrupt(format!(
                    "{loc:?}: beyond the end of the segment"
                )));
            }
            let (from, to) = ((start - base) as usize, (end - base) as usize);
            return Ok(Found::Memory(bytes[from..to].to_vec()));
        }
        let Some(m) = self.metas.get(&loc.segment) else {
            return Err(StoreError::corrupt(format!(
                "{loc:?}: segment {} does not exist (deleted?)",
                loc.segment
            )));
        };
        let size = if loc.segment == self.current {
            self.current_len
        } else {
            m.size
        };
        if end > size {
            return Err(StoreError::corrupt(format!(
                "{loc:?}: beyond the end of the segment ({size} bytes)"
            )));
        }
        Ok(match &m.file {
            Some(f) => Found::File(f.clone(), m.check),
            None => Found::NeedOpen(m.check),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(1), "00000001.seg");
        assert_eq!(parse_segment_file_name("00000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name("4294967295.seg"), Some(u32::MAX));
        assert_eq!(parse_segment_file_name("x.seg"), None);
        assert_eq!(parse_segment_file_name("00000001.seg.tmp"), None);
        assert_eq!(parse_segment_file_name(".seg"), None);
    }

    /// Appends one record of `payload` as the store does.
    fn put(s: &mut Segments, payload: &[u8]) -> Location {
        s.append(crc32c::crc32c(payload), payload.len(), &[payload])
    }

    #[test]
    fn append_rolls_and_finds_in_memory() {
        let mut s = Segments::new(64, FastMap::default());
        let a = put(&mut s, b"0123456789");
        assert_eq!(
            a,
            Location {
                segment: 1,
                offset: 16,
                len: 10
            }
        );
        let b = put(&mut s, b"0123456789");
        assert_eq!(b.offset, 34);
        // 34 + 18 = 52; a third record would end at 70 > 64: roll.
        let c = put(&mut s, b"0123456789");
        assert_eq!(
            c,
            Location {
                segment: 2,
                offset: 16,
                len: 10
            }
        );
        for loc in [a, b, c] {
            match s.find(loc).expect("found") {
                Found::Memory(buf) => {
                    assert_eq!(
                        &decode_record(buf, loc, RecordCheck::Seeded).expect("valid")[..],
                        b"0123456789"
                    );
                    // The same bytes under another segment id fail: a record left in a
                    // recycled file never passes for the new segment's.
                    let other = Location {
                        segment: loc.segment + 1,
                        ..loc
                    };
                    let again = match s.find(loc).expect("found") {
                        Found::Memory(b) => b,
                        _ => unreachable!(),
                    };
                    assert!(decode_record(again, other, RecordCheck::Seeded).is_err());
                }
                _ => panic!("expected the record in memory"),
            }
        }
        // Segment 1 rolled while its two records were still referenced by their appenders:
        // it stays until both references are gone, then goes at once.
        assert_eq!(s.metas[&1].refs, 2);
        s.release(a);
        assert!(s.metas.contains_key(&1));
        s.release(b);
        assert!(!s.metas.contains_key(&1));
        assert_eq!(s.doomed, vec![1]);
        // A segment rolled with nothing referring to it is doomed at the roll.
        s.release(c);
        let big = vec![1u8; 40];
        let d = put(&mut s, &big);
        assert_eq!(d.segment, 3);
        assert_eq!(s.doomed, vec![1, 2]);
    }

    #[test]
    fn oversized_record_gets_its_own_segment() {
        let mut s = Segments::new(64, FastMap::default());
        let big = vec![7u8; 200];
        let a = put(&mut s, &big);
        assert_eq!(a.segment, 1);
        let b = put(&mut s, b"x");
        assert_eq!(b.segment, 2);
    }
}
