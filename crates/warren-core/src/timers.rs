//! Broker-wide timers for work that must happen when nobody is publishing or consuming:
//! message expiry (TTL) at the head of a queue, deletion of unused queues (`x-expires`) and
//! delayed messages coming due. Targets schedule a deadline here; the broker's housekeeping
//! thread (or a test) runs what is due. Stale entries are harmless: a target re-checks its
//! state when it fires.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Something with a deadline: a queue, a delayed-message exchange. A target owns (weak
/// handles to) whatever it needs to act when it fires; the timers know nothing else.
pub trait TimerTarget: Send + Sync {
    fn fire(self: Arc<Self>);
}

/// A min-heap of items by deadline, first in first out among equal deadlines. Shared by the
/// broker's timers and by delayed-message exchanges (their held messages).
pub struct DeadlineHeap<T> {
    entries: BinaryHeap<Due<T>>,
    next_order: u64,
}

struct Due<T> {
    at_ms: u64,
    order: u64,
    item: T,
}

impl<T> PartialEq for Due<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.order) == (other.at_ms, other.order)
    }
}
impl<T> Eq for Due<T> {}
impl<T> PartialOrd for Due<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Due<T> {
    // Reversed so that BinaryHeap (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.order).cmp(&(self.at_ms, self.order))
    }
}

impl<T> Default for DeadlineHeap<T> {
    fn default() -> Self {
        DeadlineHeap {
            entries: BinaryHeap::new(),
            next_order: 0,
        }
    }
}

impl<T> DeadlineHeap<T> {
    /// Adds `item` due at `at_ms`; returns its insertion order (unique, increasing).
    pub fn push(&mut self, at_ms: u64, item: T) -> u64 {
        let order = self.next_order;
        self.next_order += 1;
        self.entries.push(Due { at_ms, order, item });
        order
    }

    /// Like `push` with a given order (restored items keep theirs; later pushes come after).
    pub fn push_ordered(&mut self, at_ms: u64, order: u64, item: T) {
        self.next_order = self.next_order.max(order + 1);
        self.entries.push(Due { at_ms, order, item });
    }

    /// The earliest deadline.
    pub fn next_at(&self) -> Option<u64> {
        self.entries.peek().map(|d| d.at_ms)
    }

    /// Removes and returns the earliest item if it is due at `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<T> {
        if self.next_at()? > now_ms {
            return None;
        }
        self.entries.pop().map(|d| d.item)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The schedule of queue deadlines.
#[derive(Default)]
pub struct Timers {
    heap: Mutex<DeadlineHeap<Weak<dyn TimerTarget>>>,
    wake: Condvar,
}

impl Timers {
    pub fn new() -> Arc<Timers> {
        Arc::new(Timers::default())
    }

    /// Asks for `target.fire` at or after `at_ms` (see [`crate::clock::now_ms`]).
    pub fn schedule(&self, at_ms: u64, target: Weak<dyn TimerTarget>) {
        let mut heap = self.heap.lock();
        let earliest = heap.next_at().is_none_or(|at| at_ms < at);
        heap.push(at_ms, target);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Takes every target whose deadline is at or before `now_ms` (each once).
    pub fn take_due(&self, now_ms: u64) -> Vec<Arc<dyn TimerTarget>> {
        let mut heap = self.heap.lock();
        let mut due: Vec<Arc<dyn TimerTarget>> = Vec::new();
        while let Some(target) = heap.pop_due(now_ms) {
            if let Some(t) = target.upgrade() {
                let addr = Arc::as_ptr(&t) as *const ();
                if !due.iter().any(|x| Arc::as_ptr(x) as *const () == addr) {
                    due.push(t);
                }
            }
        }
        due
    }

    /// Blocks until the earliest deadline or `max_wait`, whichever is sooner.
    pub fn wait(&self, now_ms: u64, max_wait: Duration) {
        let mut heap = self.heap.lock();
        let wait = match heap.next_at() {
            Some(at) if at <= now_ms => return,
            Some(at) => Duration::from_millis(at - now_ms).min(max_wait),
            None => max_wait,
        };
        self.wake.wait_for(&mut heap, wait);
    }

    pub fn len(&self) -> usize {
        self.heap.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod deadline_heap_tests {
    use super::DeadlineHeap;

    #[test]
    fn earliest_first_fifo_among_equals_and_ordered_pushes_respected() {
        let mut h = DeadlineHeap::default();
        h.push(20, "b1");
        h.push(10, "a");
        h.push(20, "b2");
        h.push_ordered(20, 100, "b-restored-late");
        h.push(20, "b3"); // after the restored order 100
        assert_eq!(h.next_at(), Some(10));
        assert_eq!(h.pop_due(9), None);
        let got: Vec<_> = std::iter::from_fn(|| h.pop_due(20)).collect();
        assert_eq!(got, vec!["a", "b1", "b2", "b-restored-late", "b3"]);
        assert!(h.is_empty());
    }
}
