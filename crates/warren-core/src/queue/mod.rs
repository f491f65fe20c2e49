//! Queues: ready messages in arrival order (one FIFO per priority level), the consumers
//! attached to them, and dispatch.
//!
//! A publisher's task pushes into a queue and, under the same short lock, hands messages
//! straight to consumers that have prefetch credit; the consumer's connection is told through
//! its [`DeliverySink`]. Unacknowledged messages live with the consumer's channel, which hands
//! them back here on reject/nack/close ([`Queue::requeue`]), where they return to their
//! original position (every message keeps the sequence number it got on arrival).
//!
//! RabbitMQ's queue extensions live here too: message TTL (per queue and per message),
//! length limits with their overflow behaviours, priorities, single active consumer, consumer
//! priorities and `x-expires`. Dead letters are collected under the queue's lock and handed
//! to the queue's [`DeadLetterRouter`] (its vhost) after the lock is released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use warren_amqp::properties::peek_priority;
use warren_amqp::FieldTable;

use crate::clock::{now_ms, LazyNow};
use crate::credit::Credit;
use crate::dead_letter::{DeadLetter, DeathReason};
use crate::message::Message;
use crate::queue_config::{Overflow, QueueConfig};
use crate::stats::QueueMessageStats;
use crate::storage::{MessageStore, QueueIndex, RecordLocation};
use crate::timers::Timers;

mod consumers;
mod dispatch;
mod entries;
mod expiry;
mod fifo;

mod ready;
mod settle;
mod snapshot;
#[cfg(test)]
mod tests;

use expiry::expiry_for;

use ready::Ready;
pub use snapshot::{ConsumerInfo, QueueSnapshot};

/// What a client asked for in `queue.declare` (after the server named it, if needed).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// A message in a queue, with its arrival sequence number.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    /// The message, or `None` while it lives only in the store (paged out).
    pub msg: Option<Arc<Message>>,
    /// The message's record in the store, if it has one; the entry holds one reference.
    pub loc: Option<RecordLocation>,
    /// Body bytes (what `x-max-length-bytes` counts, and what paging measures).
    pub size: u32,
    /// Written to the queue's log (a persistent message in a durable queue).
    pub logged: bool,
    pub redelivered: bool,
    /// Deadline on [`now_ms`]'s clock; 0 = never expires.
    pub expires_at: u64,
    /// Priority level (0 in a queue without priorities).
    pub level: u8,
}

impl Entry {
    fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// A message handed to a consumer.
pub struct Delivery {
    pub queue: Arc<Queue>,
    pub msg: Arc<Message>,
    pub consumer_tag: Arc<str>,
    pub channel: u16,
    /// The consumer acknowledges nothing: no credit was taken for this delivery.
    pub no_ack: bool,
    pub entry: Entry,
}

impl Delivery {
    /// Hands back a delivery that never reached its consumer (the consumer or its channel
    /// went away while it was on its way). A no-ack delivery was settled when it left the
    /// queue (its log entry acked, its store reference released), so it comes back as an
    /// in-memory message; any other keeps its entry as it is.
    pub fn give_back(self) {
        let Delivery {
            queue,
            msg,
            no_ack,
            mut entry,
            ..
        } = self;
        if no_ack {
            entry.msg = Some(msg);
            entry.loc = None;
            entry.logged = false;
            queue.put_back([entry], false);
        } else {
            queue.put_back([entry], true);
        }
    }
}

/// The consumer's side of dispatch: implemented by the front end (an AMQP channel, later an
/// MQTT session). Called under the queue's lock, so it must not block or call back into the
/// queue.
pub trait DeliverySink: Send + Sync {
    fn deliver(&self, delivery: Delivery);
    /// Whether the sink can take more deliveries now: bounds the bytes waiting unwritten in
    /// a slow consumer's connection, whatever its prefetch (no-ack consumers and prefetch 0
    /// have no count limit at all). A sink that said no must make the queues dispatch again
    /// once it has room.
    fn has_capacity(&self) -> bool {
        true
    }
    /// The queue went away (deleted): the consumer is cancelled by the server.
    fn cancelled(&self, channel: u16, consumer_tag: &Arc<str>);
}

/// Where a queue sends its dead letters (implemented by the vhost, which routes them through
/// the dead-letter exchange). Called without any queue lock held.
pub trait DeadLetterRouter: Send + Sync {
    fn route_dead_letters(&self, letters: Vec<DeadLetter>);
    /// The queue's `x-expires` elapsed while it was unused: its owner deletes it.
    fn queue_expired(&self, _queue: &Arc<Queue>) {}
}

/// What a channel gives a queue to attach a consumer.
pub struct ConsumerSpec {
    pub tag: Arc<str>,
    pub connection_id: u64,
    pub channel: u16,
    pub no_ack: bool,
    pub exclusive: bool,
    /// `x-priority`: higher-priority consumers get messages first while they have credit.
    pub priority: i32,
    pub sink: Arc<dyn DeliverySink>,
    /// Per-consumer prefetch (`basic.qos` global=false at consume time).
    pub consumer_credit: Arc<Credit>,
    /// Per-channel prefetch (`basic.qos` global=true), shared by the channel's consumers.
    pub channel_credit: Arc<Credit>,
}

/// A consumer attached to a queue.
pub struct Consumer {
    pub spec: ConsumerSpec,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        let s = &self.spec;
        if s.no_ack {
            return !s.channel_credit.is_paused() && s.sink.has_capacity();
        }
        // Prefetch bounds the count; the sink's capacity bounds the bytes waiting unwritten
        // on the consumer's connection (prefetch 0 is unlimited in count).
        s.consumer_credit.has_room() && s.channel_credit.has_room() && s.sink.has_capacity()
    }

    fn try_take_credit(&self) -> bool {
        let s = &self.spec;
        if s.no_ack {
            return !s.channel_credit.is_paused() && s.sink.has_capacity();
        }
        if !s.sink.has_capacity() || !s.consumer_credit.try_acquire() {
            return false;
        }
        if !s.channel_credit.try_acquire() {
            s.consumer_credit.release(1);
            return false;
        }
        true
    }
}

impl QueueState {
    /// Ready messages, with `extra_len` more messages of `extra_bytes`, would exceed
    /// `x-max-length` or `x-max-length-bytes` (which counts bodies only, as RabbitMQ's).
    fn over_limit(&self, extra_len: usize, extra_bytes: usize) -> bool {
        self.config
            .max_length
            .is_some_and(|m| (self.ready.len + extra_len) as u64 > m)
            || self
                .config
                .max_length_bytes
                .is_some_and(|m| (self.ready.bytes + extra_bytes) as u64 > m)
    }

    /// Unacked entries left the consumer's hands: their bodies no longer count as unacked.
    fn release_unacked_mem(&mut self, entries: &[Entry]) {
        let bytes: u64 = entries.iter().map(|e| u64::from(e.size)).sum();
        self.unacked_bytes = self.unacked_bytes.saturating_sub(bytes);
        let held: usize = entries
            .iter()
            .filter(|e| e.msg.is_some())
            .map(|e| e.size as usize)
            .sum();
        self.unacked_mem = self.unacked_mem.saturating_sub(held);
    }

    fn note_consumers_changed(&mut self) {
        self.top_priority = self
            .consumers
            .iter()
            .map(|c| c.spec.priority)
            .max()
            .unwrap_or(0);
    }
}

struct QueueState {
    config: QueueConfig,
    ready: Ready,
    next_seq: u64,
    consumers: Vec<Consumer>,
    /// Highest priority among `consumers`: a consumer of that priority with credit is the
    /// pick at once, so dispatch does not scan every consumer per message.
    top_priority: i32,
    next_consumer: usize,
    unacked: usize,
    /// Body bytes of unacknowledged entries still held in memory: with the ready bytes in
    /// memory, bounded by the paging threshold (beyond it an unacked entry keeps only its
    /// store location).
    unacked_mem: usize,
    had_consumer: bool,
    /// Last time the queue was used (for `x-expires`).
    last_used: u64,
    /// The earliest deadline already scheduled with the timers.
    timer_at: Option<u64>,
    /// Message counters (management API), under the lock the queue takes anyway.
    stats: QueueMessageStats,
    /// Body bytes of unacknowledged entries, in memory or not.
    unacked_bytes: u64,
}

/// A queue and everything in it.
pub struct Queue {
    pub vhost: String,
    pub spec: QueueSpec,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    timers: Arc<Timers>,
    router: Weak<dyn DeadLetterRouter>,
    storage: Option<QueueStorage>,
    me: Weak<Queue>,
}

/// A queue's link to the store: paging for every queue, a log for durable ones.
pub struct QueueStorage {
    pub store: Arc<dyn MessageStore>,
    /// The queue's index of persistent messages (durable, non-exclusive queues only).
    pub log: Option<Arc<dyn QueueIndex>>,
    /// Ready bytes kept in memory; messages beyond live only in the store.
    pub page_threshold: usize,
}

/// Counts reported by `queue.declare-ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub messages: u32,
    pub consumers: u32,
}

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Accepted,
    /// Accepted, but the queue's consumers lag behind: the publisher should pause until
    /// [`Queue::is_lagging`] turns false (flow control, instead of paging a live stream).
    AcceptedLagging,
    /// The queue refused it (`x-overflow` = reject-publish*): the publisher gets a nack.
    Rejected,
}

impl Queue {
    pub fn new(
        vhost: &str,
        spec: QueueSpec,
        config: QueueConfig,
        timers: Arc<Timers>,
        router: Weak<dyn DeadLetterRouter>,
        storage: Option<QueueStorage>,
    ) -> Arc<Queue> {
        let levels = config.levels();
        let queue = Arc::new_cyclic(|me| Queue {
            vhost: vhost.to_string(),
            spec,
            state: Mutex::new(QueueState {
                config,
                ready: Ready::new(levels),
                next_seq: 0,
                consumers: Vec::new(),
                top_priority: 0,
                next_consumer: 0,
                unacked: 0,
                unacked_mem: 0,
                had_consumer: false,
                last_used: now_ms(),
                timer_at: None,
                stats: QueueMessageStats::default(),
                unacked_bytes: 0,
            }),
            deleted: AtomicBool::new(false),
            timers,
            router,
            storage,
            me: me.clone(),
        });
        {
            let mut st = queue.state.lock();
            queue.arm_timer(&mut st);
        }
        queue
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The id of the queue's log in the store (durable queues only).
    pub fn log_id(&self) -> Option<u64> {
        self.storage.as_ref()?.log.as_ref().map(|l| l.id())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn config(&self) -> QueueConfig {
        self.state.lock().config.clone()
    }

    pub fn counts(&self) -> QueueCounts {
        let st = self.state.lock();
        QueueCounts {
            messages: clamp_u32(st.ready.len),
            consumers: clamp_u32(st.consumers.len()),
        }
    }

    pub fn message_count(&self) -> u32 {
        clamp_u32(self.state.lock().ready.len)
    }

    /// Messages delivered and not yet settled.
    pub fn unacked_count(&self) -> usize {
        self.state.lock().unacked
    }

    pub fn ready_bytes(&self) -> usize {
        self.state.lock().ready.bytes
    }

    /// Replaces the queue's configuration (a policy changed). A lower length limit takes
    /// effect at once, as in RabbitMQ: the oldest messages over it are dropped.
    pub fn set_config(self: &Arc<Self>, mut config: QueueConfig) {
        let now = LazyNow::new();
        let mut dead = Vec::new();
        let mut st = self.state.lock();
        // Priority levels are fixed at declaration (`x-max-priority` is not a policy key).
        config.max_priority = st.config.max_priority;
        st.config = config;
        while st
            .config
            .max_length
            .is_some_and(|m| st.ready.len as u64 > m)
            || st
                .config
                .max_length_bytes
                .is_some_and(|m| st.ready.bytes as u64 > m)
        {
            let Some(dropped) = st.ready.pop_front() else {
                break;
            };
            let cfg = st.config.clone();
            self.drop_entry(&cfg, dropped, DeathReason::MaxLen, &mut dead);
        }
        self.expire_locked(&mut st, &now, &mut dead);
        st.timer_at = None;
        self.arm_timer(&mut st);
        drop(st);
        self.emit(dead);
    }

    /// Marks the queue used now (redeclare, get, consume): restarts `x-expires`.
    pub fn touch(&self) {
        let mut st = self.state.lock();
        st.last_used = now_ms();
        self.arm_timer(&mut st);
    }

    /// Enqueues a message and dispatches what consumers can take.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) -> Published {
        if self.is_deleted() {
            return Published::Accepted;
        }
        let now = LazyNow::new();
        let mut dead = Vec::new();
        let mut st = self.state.lock();
        // RabbitMQ's length limit in bytes counts message bodies only.
        let size = msg.body.len();
        if st.config.overflow != Overflow::DropHead && st.over_limit(1, size) {
            if st.config.overflow == Overflow::RejectPublishDlx {
                let cfg = st.config.clone();
                drop(st);
                self.dead_letter_into(&cfg, msg, DeathReason::MaxLen, None, &mut dead);
                self.emit(dead);
            }
            return Published::Rejected;
        }
        let expires_at = expiry_for(&st.config, &msg, &now);
        let level = match st.config.max_priority {
            Some(max) => peek_priority(&msg.properties_raw).unwrap_or(0).min(max),
            None => 0,
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        let entry = self.admit(&st, msg, seq, expires_at, level);
        st.ready.push_back(entry);
        st.stats.publish += 1;
        self.dispatch_locked(&mut st, &now, &mut dead);
        self.drop_head_over_limit(&mut st, &mut dead);
        self.expire_locked(&mut st, &now, &mut dead);
        self.arm_timer(&mut st);
        let lagging = self.lagging_locked(&st);
        drop(st);
        self.emit(dead);
        if lagging {
            Published::AcceptedLagging
        } else {
            Published::Accepted
        }
    }

    /// drop-head: the oldest ready messages make room until the queue is within its length
    /// limits (the other overflow modes refuse the publish instead, before it gets here).
    fn drop_head_over_limit(&self, st: &mut QueueState, dead: &mut Vec<DeadLetter>) {
        while st.over_limit(0, 0) {
            let Some(dropped) = st.ready.pop_front() else {
                break;
            };
            let cfg = st.config.clone();
            self.drop_entry(&cfg, dropped, DeathReason::MaxLen, dead);
        }
    }

    /// No-ack consumers are attached but ready messages pile up in memory (past half the
    /// paging threshold): their connections write slower than publishers publish, and the
    /// publishers are slowed down rather than the live stream paged out. Consumers that ack
    /// do not count: their credit comes back through acks, which a paused connection that
    /// also consumes could not read.
    fn lagging_locked(&self, st: &QueueState) -> bool {
        let Some(storage) = &self.storage else {
            return false;
        };
        st.ready.mem_bytes > storage.page_threshold / 2
            && st.consumers.iter().any(|c| c.spec.no_ack)
    }

    /// See [`Published::AcceptedLagging`].
    pub fn is_lagging(&self) -> bool {
        !self.is_deleted() && self.lagging_locked(&self.state.lock())
    }

    /// Offers ready messages to consumers with credit (after an ack freed some, say).
    pub fn dispatch(self: &Arc<Self>) {
        let now = LazyNow::new();
        let mut dead = Vec::new();
        let mut st = self.state.lock();
        self.expire_locked(&mut st, &now, &mut dead);
        self.dispatch_locked(&mut st, &now, &mut dead);
        drop(st);
        self.emit(dead);
    }

    fn emit(&self, dead: Vec<DeadLetter>) {
        if dead.is_empty() {
            return;
        }
        if let Some(router) = self.router.upgrade() {
            router.route_dead_letters(dead);
        }
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let all = self.state.lock().ready.take_all();
        for e in &all {
            self.leave(e);
        }
        clamp_u32(all.len())
    }

    /// Marks the queue deleted, tells its consumers, and drops its messages. Returns the
    /// number of ready messages it held.
    pub fn mark_deleted(&self) -> u32 {
        self.deleted.store(true, Ordering::Release);
        let (consumers, all) = {
            let mut st = self.state.lock();
            let all = st.ready.take_all();
            (std::mem::take(&mut st.consumers), all)
        };
        if let Some(storage) = &self.storage {
            for e in &all {
                if let Some(loc) = e.loc {
                    storage.store.release(loc);
                }
            }
            if let Some(log) = &storage.log {
                if let Err(e) = storage.store.remove_queue_index(log.id()) {
                    tracing::warn!(queue = %self.spec.name, error = %e, "cannot remove the queue's log");
                }
            }
        }
        for c in consumers {
            c.spec.sink.cancelled(c.spec.channel, &c.spec.tag);
        }
        clamp_u32(all.len())
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
