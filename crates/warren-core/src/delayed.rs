//! Messages held by an `x-delayed-message` exchange until their `x-delay` has passed, then
//! routed the way the exchange's `x-delayed-type` routes. Kept in memory, ordered by due
//! time; the broker's timers wake the exchange when the earliest message is due.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::message::Message;
use crate::timers::{TimerTarget, Timers};

struct Held {
    due: u64,
    order: u64,
    msg: Arc<Message>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    // Reversed: the max-heap pops the earliest due message first, FIFO among equals.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// The held messages of one delayed-message exchange.
pub struct DelayedMessages {
    vhost: String,
    exchange: String,
    held: Mutex<BinaryHeap<Held>>,
    next_order: AtomicU64,
    me: Weak<DelayedMessages>,
}

impl DelayedMessages {
    pub fn new(vhost: &str, exchange: &str) -> Arc<DelayedMessages> {
        Arc::new_cyclic(|me| DelayedMessages {
            vhost: vhost.to_string(),
            exchange: exchange.to_string(),
            held: Mutex::new(BinaryHeap::new()),
            next_order: AtomicU64::new(0),
            me: me.clone(),
        })
    }

    /// Holds `msg` for `delay_ms`.
    pub fn hold(&self, msg: Arc<Message>, delay_ms: u64, timers: &Timers) {
        let due = now_ms().saturating_add(delay_ms);
        let order = self.next_order.fetch_add(1, Ordering::Relaxed);
        self.held.lock().push(Held { due, order, msg });
        let me: Weak<dyn TimerTarget> = self.me.clone();
        timers.schedule(due, me);
    }

    /// Messages whose delay has passed, in due order.
    pub fn take_due(&self, now: u64) -> Vec<Arc<Message>> {
        let mut held = self.held.lock();
        let mut due = Vec::new();
        while held.peek().is_some_and(|h| h.due <= now) {
            if let Some(h) = held.pop() {
                due.push(h.msg);
            }
        }
        due
    }

    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TimerTarget for DelayedMessages {
    fn fire(self: Arc<Self>, broker: &Broker) {
        let due = self.take_due(now_ms());
        if due.is_empty() {
            return;
        }
        let Some(vhost) = broker.vhost(&self.vhost) else {
            return;
        };
        for msg in due {
            vhost.route_delayed(&self.exchange, msg);
        }
    }
}
