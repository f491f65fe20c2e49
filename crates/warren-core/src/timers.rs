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

struct Due {
    at_ms: u64,
    order: u64,
    target: Weak<dyn TimerTarget>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.order) == (other.at_ms, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    // Reversed so that BinaryHeap (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.order).cmp(&(self.at_ms, self.order))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Due>,
    next_order: u64,
}

/// The schedule of queue deadlines.
#[derive(Default)]
pub struct Timers {
    heap: Mutex<Heap>,
    wake: Condvar,
}

impl Timers {
    pub fn new() -> Arc<Timers> {
        Arc::new(Timers::default())
    }

    /// Asks for `target.fire` at or after `at_ms` (see [`crate::clock::now_ms`]).
    pub fn schedule(&self, at_ms: u64, target: Weak<dyn TimerTarget>) {
        let mut heap = self.heap.lock();
        let order = heap.next_order;
        heap.next_order += 1;
        let earliest = heap.entries.peek().is_none_or(|d| at_ms < d.at_ms);
        heap.entries.push(Due {
            at_ms,
            order,
            target,
        });
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Takes every target whose deadline is at or before `now_ms` (each once).
    pub fn take_due(&self, now_ms: u64) -> Vec<Arc<dyn TimerTarget>> {
        let mut heap = self.heap.lock();
        let mut due: Vec<Arc<dyn TimerTarget>> = Vec::new();
        while heap.entries.peek().is_some_and(|d| d.at_ms <= now_ms) {
            if let Some(d) = heap.entries.pop() {
                if let Some(t) = d.target.upgrade() {
                    let addr = Arc::as_ptr(&t) as *const ();
                    if !due.iter().any(|x| Arc::as_ptr(x) as *const () == addr) {
                        due.push(t);
                    }
                }
            }
        }
        due
    }

    /// Blocks until the earliest deadline or `max_wait`, whichever is sooner.
    pub fn wait(&self, now_ms: u64, max_wait: Duration) {
        let mut heap = self.heap.lock();
        let wait = match heap.entries.peek() {
            Some(d) if d.at_ms <= now_ms => return,
            Some(d) => Duration::from_millis(d.at_ms - now_ms).min(max_wait),
            None => max_wait,
        };
        self.wake.wait_for(&mut heap, wait);
    }

    pub fn len(&self) -> usize {
        self.heap.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
