//! Messages held by an `x-delayed-message` exchange until their `x-delay` has passed, then
//! routed the way the exchange's `x-delayed-type` routes. Kept in memory, ordered by due
//! time; the broker's timers wake the exchange when the earliest message is due. A durable
//! exchange also writes its persistent held messages to the store (a record holding the due
//! time and the message, indexed by a log of its own), so their delays survive a restart.
//! A publish held here is confirmed only after that record is durable, and a held message
//! that comes due is acked in the exchange's log only once its copies in the target queues
//! are durable: a crash at any moment leaves it held, delivered, or both, never lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use bytes::Bytes;

use crate::clock::{now_ms, unix_millis};
use crate::dead_letter::SourceSettle;
use crate::message::Message;
use crate::storage::{MessageStore, QueueIndex, RecordLocation, RecoveredEntry};
use crate::timers::{DeadlineHeap, TimerTarget, Timers};

struct Held {
    msg: Arc<Message>,
    /// (log sequence number, record) when the message is in the store.
    stored: Option<(u64, RecordLocation)>,
}

/// The store of a durable delayed-message exchange.
pub struct DelayedStorage {
    pub store: Arc<dyn MessageStore>,
    pub log: Arc<dyn QueueIndex>,
}

/// First byte of a held-message record: `[D][due: unix ms u64][message record]`.
const HELD_RECORD: u8 = b'D';

/// Where due messages go: the exchange's vhost routes them the way `x-delayed-type` does.
pub trait DelayedRouter: Send + Sync {
    fn route_due(&self, exchange: &str, msg: Arc<Message>);
}

/// The held messages of one delayed-message exchange.
pub struct DelayedMessages {
    exchange: String,
    /// Set by the owning vhost: where due messages go, and the timers that wake us.
    owner: std::sync::OnceLock<(Weak<dyn DelayedRouter>, Arc<Timers>)>,
    /// By due time, FIFO among equals (the order is also the log's sequence number).
    held: Mutex<DeadlineHeap<Held>>,
    next_order: AtomicU64,
    storage: std::sync::OnceLock<DelayedStorage>,
    me: Weak<DelayedMessages>,
}

impl DelayedMessages {
    pub fn new(exchange: &str) -> Arc<DelayedMessages> {
        Arc::new_cyclic(|me| DelayedMessages {
            exchange: exchange.to_string(),
            owner: std::sync::OnceLock::new(),
            held: Mutex::new(DeadlineHeap::default()),
            next_order: AtomicU64::new(0),
            storage: std::sync::OnceLock::new(),
            me: me.clone(),
        })
    }

    /// Gives the exchange its router (its vhost) and the timers that wake it.
    pub fn attach(&self, router: Weak<dyn DelayedRouter>, timers: Arc<Timers>) {
        let _ = self.owner.set((router, timers));
    }

    /// Gives a durable exchange its store.
    pub fn attach_storage(&self, storage: DelayedStorage) {
        let _ = self.storage.set(storage);
    }

    /// The id of the exchange's log in the store, if it has one.
    pub fn log_id(&self) -> Option<u64> {
        self.storage.get().map(|s| s.log.id())
    }

    /// Holds `msg` for `delay_ms`.
    pub fn hold(&self, msg: Arc<Message>, delay_ms: u64, timers: &Timers) {
        let due = now_ms().saturating_add(delay_ms);
        let order = self.next_order.fetch_add(1, Ordering::Relaxed);
        let stored = match self.storage.get() {
            Some(s) if msg.persistent => {
                let due_unix = unix_millis().saturating_add(delay_ms);
                let mut head = [HELD_RECORD; 9];
                head[1..].copy_from_slice(&due_unix.to_be_bytes());
                // The held entry owns the reference the append counted.
                let loc = msg.with_record_parts(|parts| {
                    s.store.append_parts(&[&[&head[..]], parts].concat())
                });
                s.log.enqueue(order, loc, 0);
                msg.mark_logged();
                Some((order, loc))
            }
            _ => None,
        };
        self.held
            .lock()
            .push_ordered(due, order, Held { msg, stored });
        let me: Weak<dyn TimerTarget> = self.me.clone();
        timers.schedule(due, me);
    }

    /// Puts held messages back after a restart, with what is left of their delays.
    pub fn restore(&self, recovered: Vec<RecoveredEntry>, timers: &Timers) {
        let Some(s) = self.storage.get() else { return };
        let now = now_ms();
        let now_unix = unix_millis();
        let mut earliest = None::<u64>;
        let mut held = self.held.lock();
        for r in recovered {
            let record = match s.store.read(r.loc) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(exchange = %self.exchange, error = %e, "unreadable delayed message skipped");
                    continue;
                }
            };
            let Some((due_unix, msg)) = decode_held(record) else {
                tracing::warn!(exchange = %self.exchange, "undecodable delayed message skipped");
                continue;
            };
            s.store.retain(r.loc);
            let due = now.saturating_add(due_unix.saturating_sub(now_unix));
            self.next_order.fetch_max(r.seq + 1, Ordering::Relaxed);
            held.push_ordered(
                due,
                r.seq,
                Held {
                    msg: Arc::new(msg),
                    stored: Some((r.seq, r.loc)),
                },
            );
            earliest = Some(earliest.map_or(due, |e| e.min(due)));
        }
        drop(held);
        if let Some(at) = earliest {
            let me: Weak<dyn TimerTarget> = self.me.clone();
            timers.schedule(at, me);
        }
    }

    /// Messages whose delay has passed, in due order, each with its settlement in the
    /// exchange's log (done when dropped, after the caller routed the message).
    pub fn take_due(&self, now: u64) -> Vec<(Arc<Message>, Option<SourceSettle>)> {
        let mut held = self.held.lock();
        let mut due = Vec::new();
        while let Some(h) = held.pop_due(now) {
            let settle = match (h.stored, self.storage.get()) {
                (Some((seq, loc)), Some(s)) => {
                    Some(SourceSettle::new(s.log.clone(), seq, Some(loc)))
                }
                _ => None,
            };
            due.push((h.msg, settle));
        }
        due
    }

    /// When the earliest held message is due, if any.
    fn next_due(&self) -> Option<u64> {
        self.held.lock().next_at()
    }

    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn decode_held(record: Bytes) -> Option<(u64, Message)> {
    if record.len() < 9 || record[0] != HELD_RECORD {
        return None;
    }
    let due = u64::from_be_bytes(record[1..9].try_into().ok()?);
    // The held record (due time + message) is not a plain message record: queues that
    // receive the message write their own.
    let msg = Message::decode_record(record.slice(9..), None)?;
    Some((due, msg))
}

impl TimerTarget for DelayedMessages {
    fn fire(self: Arc<Self>) {
        let Some((router, timers)) = self.owner.get() else {
            return;
        };
        let due = self.take_due(now_ms());
        if !due.is_empty() {
            if let Some(router) = router.upgrade() {
                for (msg, settle) in due {
                    router.route_due(&self.exchange, msg);
                    // Acked in the exchange's log once the copies just written are durable.
                    drop(settle);
                }
            }
        }
        // Messages restored after a restart share one timer: arm it for the next of them.
        if let Some(at) = self.next_due() {
            let me: Weak<dyn TimerTarget> = self.me.clone();
            timers.schedule(at, me);
        }
    }
}
