//! The FIFO that holds one priority level's ready entries: fixed-size blocks instead of one
//! ring buffer. A ring that holds a backlog of millions doubles (allocating the new buffer
//! while the old one is still live, then copying) and keeps up to half of its capacity
//! unused; blocks grow the FIFO one block at a time and free each block once it is drained
//! (all but a small last one, if the FIFO keeps it), so a backlog costs its entries and at
//! most one partly filled block at either end.

use std::collections::VecDeque;

/// Entries per block: 16384 queue entries (48 bytes each) is 768 KiB, above the allocator's
/// mmap threshold (512 KiB, set by the `warren` binary), so a drained block goes back to the
/// system at once instead of leaving a hole in a thread's heap; a backlog of a million is
/// 62 blocks.
const BLOCK: usize = 16384;

/// The largest capacity (entries) of an emptied last block that is kept for the next push:
/// 64 entries are 3 KiB per idle FIFO.
const KEPT_BLOCK_MAX: usize = 64;

/// An ordered sequence with cheap pushes at the back, pops at the front and (rarer)
/// inserts in the middle.
/// (Its length is the caller's to count: `Ready` does.)
pub(super) struct BlockFifo<T> {
    blocks: VecDeque<VecDeque<T>>,
    /// Whether an emptied last block of at most [`KEPT_BLOCK_MAX`] entries stays allocated.
    keeps_small_block: bool,
}

impl<T> BlockFifo<T> {
    pub(super) fn new(keeps_small_block: bool) -> Self {
        BlockFifo {
            blocks: VecDeque::new(),
            keeps_small_block,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.blocks.iter().map(VecDeque::len).sum()
    }

    pub(super) fn front(&self) -> Option<&T> {
        self.blocks.front().and_then(|b| b.front())
    }

    pub(super) fn push_back(&mut self, item: T) {
        match self.blocks.back_mut() {
            Some(b) if b.len() < BLOCK => b.push_back(item),
            last => {
                // The first block grows as a ring does (a queue of a few messages costs a
                // few entries); the ones after it are allocated whole.
                let mut b = if last.is_none() {
                    VecDeque::new()
                } else {
                    VecDeque::with_capacity(BLOCK)
                };
                b.push_back(item);
                self.blocks.push_back(b);
            }
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let others = self.blocks.len() > 1;
        let b = self.blocks.front_mut()?;
        let item = b.pop_front();
        // A queue that its consumers keep empty would otherwise allocate and free a block
        // for every message: the last block stays while it is small.
        if b.is_empty() && (others || !self.keeps_small_block || b.capacity() > KEPT_BLOCK_MAX) {
            self.blocks.pop_front();
        }
        item
    }

    /// Inserts `item` before the first element for which `before_item` is false, i.e. at
    /// the partition point of a sequence ordered by `before_item` (true, then false).
    pub(super) fn insert_sorted(&mut self, item: T, before_item: impl Fn(&T) -> bool) {
        // The block to insert into: the last one whose first element is before the item.
        let first_after = self
            .blocks
            .partition_point(|b| b.front().is_some_and(&before_item));
        if first_after == 0 {
            // Before everything (the usual case for a requeue): the front block, or a new one.
            match self.blocks.front_mut() {
                Some(b) if b.len() < BLOCK => b.push_front(item),
                _ => {
                    let mut b = VecDeque::with_capacity(BLOCK);
                    b.push_back(item);
                    self.blocks.push_front(b);
                }
            }
            return;
        }
        let i = first_after - 1;
        let block = &mut self.blocks[i];
        let pos = block.partition_point(&before_item);
        block.insert(pos, item);
        if block.len() > BLOCK {
            let tail = block.split_off(BLOCK / 2);
            self.blocks.insert(i + 1, tail);
        }
    }

    /// Removes everything, in order.
    pub(super) fn drain_all(&mut self) -> impl Iterator<Item = T> {
        std::mem::take(&mut self.blocks).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap deterministic generator, so the model test needs no extra crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn behaves_like_a_sorted_vecdeque_under_random_operations() {
        let mut rng = Lcg(7);
        let mut fifo = BlockFifo::new(true);
        let mut model: VecDeque<u64> = VecDeque::new();
        let mut next = 0u64;
        let mut taken: Vec<u64> = Vec::new();
        for round in 0..200_000u32 {
            match rng.next() % 10 {
                0..=4 => {
                    next += 1 + rng.next() % 3;
                    fifo.push_back(next);
                    model.push_back(next);
                }
                5..=7 => {
                    let got = fifo.pop_front();
                    assert_eq!(got, model.pop_front(), "round {round}");
                    if let Some(v) = got {
                        taken.push(v);
                    }
                }
                _ => {
                    // Put back something taken earlier, where its value says it belongs.
                    if let Some(v) = taken.pop() {
                        fifo.insert_sorted(v, |x| *x < v);
                        let pos = model.partition_point(|x| *x < v);
                        model.insert(pos, v);
                    }
                }
            }
            assert_eq!(fifo.len(), model.len());
            assert_eq!(fifo.front(), model.front());
            assert!(fifo.blocks.iter().all(|b| b.len() <= BLOCK));
            assert!(fifo.blocks.len() <= 1 || fifo.blocks.iter().all(|b| !b.is_empty()));
        }
        let all: Vec<u64> = fifo.drain_all().collect();
        assert_eq!(all, Vec::from(model));
        assert_eq!(fifo.len(), 0);
        assert!(fifo.front().is_none());
    }

    #[test]
    fn a_drained_fifo_holds_no_blocks() {
        let mut fifo = BlockFifo::new(true);
        for i in 0..(3 * BLOCK + 5) {
            fifo.push_back(i);
        }
        assert_eq!(fifo.blocks.len(), 4);
        for i in 0..(3 * BLOCK + 5) {
            assert_eq!(fifo.pop_front(), Some(i));
        }
        assert!(fifo.blocks.is_empty());
        assert_eq!(fifo.pop_front(), None);
    }

    #[test]
    fn a_queue_kept_empty_reuses_its_small_block() {
        let mut fifo = BlockFifo::new(true);
        fifo.push_back(1u64);
        assert_eq!(fifo.pop_front(), Some(1));
        assert_eq!(fifo.blocks.len(), 1, "the small last block is kept");
        assert!(fifo.front().is_none());
        assert_eq!(fifo.pop_front(), None);
        fifo.push_back(3);
        fifo.insert_sorted(2, |x| *x < 2);
        assert_eq!(fifo.blocks.len(), 1);
        assert_eq!(fifo.drain_all().collect::<Vec<_>>(), vec![2, 3]);
        let mut fifo = BlockFifo::new(false);
        fifo.push_back(1u64);
        assert_eq!(fifo.pop_front(), Some(1));
        assert!(fifo.blocks.is_empty(), "a FIFO that keeps nothing frees it");
    }

    #[test]
    fn inserts_into_a_full_block_split_it() {
        let mut fifo = BlockFifo::new(true);
        for i in 0..BLOCK as u64 {
            fifo.push_back(i * 2);
        }
        fifo.insert_sorted(11, |x| *x < 11);
        assert_eq!(fifo.blocks.len(), 2);
        let all: Vec<u64> = fifo.drain_all().collect();
        assert_eq!(all.len(), BLOCK + 1);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }
}
