//! A queue's ready messages: one FIFO per priority level, highest level served first, with
//! the counts and in-memory bytes that limits and paging read.

use super::fifo::BlockFifo;
use super::Entry;

/// The most priority levels for which each level's FIFO keeps its small emptied block
/// (RabbitMQ recommends at most 10 levels).
const KEEPING_LEVELS_MAX: usize = 10;

/// Ready messages: one FIFO per priority level, highest level served first.
pub(super) struct Ready {
    pub(super) levels: Vec<BlockFifo<Entry>>,
    pub(super) len: usize,
    /// Bytes of every ready message (what `x-max-length-bytes` limits).
    pub(super) bytes: usize,
    /// Bytes of ready messages held in memory (what paging limits).
    pub(super) mem_bytes: usize,
}

impl Ready {
    pub(super) fn new(levels: usize) -> Ready {
        // A queue of many priority levels (up to 256) would keep a small block per level
        // while idle: only queues of a few levels keep theirs (at most 30 KiB each).
        let levels = levels.max(1);
        let keeps_small_block = levels <= KEEPING_LEVELS_MAX;
        Ready {
            levels: (0..levels)
                .map(|_| BlockFifo::new(keeps_small_block))
                .collect(),
            len: 0,
            bytes: 0,
            mem_bytes: 0,
        }
    }

    pub(super) fn count_in(&mut self, e: &Entry) {
        self.len += 1;
        self.bytes += e.size as usize;
        if e.msg.is_some() {
            self.mem_bytes += e.size as usize;
        }
    }

    pub(super) fn count_out(&mut self, e: &Entry) {
        self.len -= 1;
        self.bytes -= e.size as usize;
        if e.msg.is_some() {
            self.mem_bytes -= e.size as usize;
        }
    }

    pub(super) fn push_back(&mut self, e: Entry) {
        self.count_in(&e);
        let level = usize::from(e.level).min(self.levels.len() - 1);
        self.levels[level].push_back(e);
    }

    /// Puts an entry back where its sequence number says it belongs.
    pub(super) fn insert_by_seq(&mut self, e: Entry) {
        self.count_in(&e);
        let level = usize::from(e.level).min(self.levels.len() - 1);
        let seq = e.seq;
        self.levels[level].insert_sorted(e, |x| x.seq < seq);
    }

    pub(super) fn pop_front(&mut self) -> Option<Entry> {
        let e = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.count_out(&e);
        Some(e)
    }

    /// Removes expired entries at the head of every level (as RabbitMQ, expiry is decided
    /// at the head: per-queue TTL keeps each level in deadline order).
    pub(super) fn drop_expired(&mut self, now: u64, out: &mut Vec<Entry>) {
        for list in self.levels.iter_mut() {
            while list.front().is_some_and(|e| e.expired(now)) {
                if let Some(e) = list.pop_front() {
                    self.len -= 1;
                    self.bytes -= e.size as usize;
                    if e.msg.is_some() {
                        self.mem_bytes -= e.size as usize;
                    }
                    out.push(e);
                }
            }
        }
    }

    /// The earliest deadline among the heads.
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.levels
            .iter()
            .filter_map(|l| l.front().map(|e| e.expires_at))
            .filter(|&t| t != 0)
            .min()
    }

    /// Removes every ready entry.
    pub(super) fn take_all(&mut self) -> Vec<Entry> {
        let mut all = Vec::with_capacity(self.len);
        for l in self.levels.iter_mut() {
            all.extend(l.drain_all());
        }
        self.len = 0;
        self.bytes = 0;
        self.mem_bytes = 0;
        all
    }
}
