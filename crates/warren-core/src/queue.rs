//! Queues: ready messages in arrival order, the consumers attached to them, and dispatch.
//!
//! A publisher's task pushes into a queue and, under the same short lock, hands messages
//! straight to consumers that have prefetch credit; the consumer's connection is told through
//! its [`DeliverySink`]. Unacknowledged messages live with the consumer's channel, which hands
//! them back here on reject/nack/close ([`Queue::requeue`]), where they return to their
//! original position (every message keeps the sequence number it got on arrival).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use warren_amqp::FieldTable;

use crate::credit::Credit;
use crate::error::{CoreError, CoreResult};
use crate::message::Message;

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
    pub msg: Arc<Message>,
    pub redelivered: bool,
}

/// A message handed to a consumer.
pub struct Delivery {
    pub queue: Arc<Queue>,
    pub consumer_tag: Arc<str>,
    pub channel: u16,
    /// The consumer acknowledges nothing: no credit was taken for this delivery.
    pub no_ack: bool,
    pub entry: Entry,
}

/// The consumer's side of dispatch: implemented by the front end (an AMQP channel, later an
/// MQTT session). Called under the queue's lock, so it must not block or call back into the
/// queue.
pub trait DeliverySink: Send + Sync {
    fn deliver(&self, delivery: Delivery);
    /// The queue went away (deleted): the consumer is cancelled by the server.
    fn cancelled(&self, channel: u16, consumer_tag: &Arc<str>);
}

/// What a channel gives a queue to attach a consumer.
pub struct ConsumerSpec {
    pub tag: Arc<str>,
    pub connection_id: u64,
    pub channel: u16,
    pub no_ack: bool,
    pub exclusive: bool,
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
    fn try_take_credit(&self) -> bool {
        let s = &self.spec;
        if s.no_ack {
            // channel.flow still applies to no-ack consumers.
            return !s.channel_credit.is_paused();
        }
        if !s.consumer_credit.try_acquire() {
            return false;
        }
        if !s.channel_credit.try_acquire() {
            s.consumer_credit.release(1);
            return false;
        }
        true
    }
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Entry>,
    ready_bytes: usize,
    next_seq: u64,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    unacked: usize,
    had_consumer: bool,
}

/// A queue and everything in it.
pub struct Queue {
    pub vhost: String,
    pub spec: QueueSpec,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
}

/// Counts reported by `queue.declare-ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub messages: u32,
    pub consumers: u32,
}

impl Queue {
    pub fn new(vhost: &str, spec: QueueSpec) -> Arc<Queue> {
        Arc::new(Queue {
            vhost: vhost.to_string(),
            spec,
            state: Mutex::new(QueueState::default()),
            deleted: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn counts(&self) -> QueueCounts {
        let st = self.state.lock();
        QueueCounts {
            messages: clamp_u32(st.ready.len()),
            consumers: clamp_u32(st.consumers.len()),
        }
    }

    pub fn message_count(&self) -> u32 {
        clamp_u32(self.state.lock().ready.len())
    }

    /// Messages delivered and not yet settled.
    pub fn unacked_count(&self) -> usize {
        self.state.lock().unacked
    }

    pub fn ready_bytes(&self) -> usize {
        self.state.lock().ready_bytes
    }

    /// Enqueues a message and dispatches what consumers can take.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) {
        if self.is_deleted() {
            return;
        }
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready_bytes += msg.size();
        st.ready.push_back(Entry {
            seq,
            msg,
            redelivered: false,
        });
        self.dispatch_locked(&mut st);
    }

    /// Offers ready messages to consumers with credit (after an ack freed some, say).
    pub fn dispatch(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.dispatch_locked(&mut st);
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState) {
        while !st.ready.is_empty() && !st.consumers.is_empty() {
            let n = st.consumers.len();
            let start = st.next_consumer % n;
            let Some(idx) = (0..n)
                .map(|i| (start + i) % n)
                .find(|&i| st.consumers[i].try_take_credit())
            else {
                return;
            };
            st.next_consumer = (idx + 1) % n;
            let Some(entry) = st.ready.pop_front() else {
                return;
            };
            st.ready_bytes -= entry.msg.size();
            let consumer = &st.consumers[idx].spec;
            let no_ack = consumer.no_ack;
            consumer.sink.deliver(Delivery {
                queue: Arc::clone(self),
                consumer_tag: Arc::clone(&consumer.tag),
                channel: consumer.channel,
                no_ack,
                entry,
            });
            if !no_ack {
                st.unacked += 1;
            }
        }
    }

    /// `basic.get`: the head message and how many remain after it.
    pub fn get(&self, no_ack: bool) -> Option<(Entry, u32)> {
        let mut st = self.state.lock();
        let entry = st.ready.pop_front()?;
        st.ready_bytes -= entry.msg.size();
        if !no_ack {
            st.unacked += 1;
        }
        Some((entry, clamp_u32(st.ready.len())))
    }

    /// Acknowledged deliveries: they leave the queue for good.
    pub fn settle(&self, count: usize) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(count);
    }

    /// Puts delivered messages back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, entries: impl IntoIterator<Item = Entry>) {
        let mut st = self.state.lock();
        let mut count = 0;
        for mut entry in entries {
            count += 1;
            if self.is_deleted() {
                continue;
            }
            entry.redelivered = true;
            st.ready_bytes += entry.msg.size();
            // Requeued messages are usually older than everything ready: check the front first.
            let pos = match st.ready.front() {
                Some(front) if entry.seq < front.seq => 0,
                _ => st.ready.partition_point(|e| e.seq < entry.seq),
            };
            st.ready.insert(pos, entry);
        }
        st.unacked = st.unacked.saturating_sub(count);
        self.dispatch_locked(&mut st);
    }

    /// Attaches a consumer and dispatches to it.
    pub fn add_consumer(self: &Arc<Self>, spec: ConsumerSpec) -> CoreResult<()> {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(CoreError::not_found(format!(
                "no queue '{}' in vhost '{}'",
                self.spec.name, self.vhost
            )));
        }
        let exclusive_taken = st.consumers.iter().any(|c| c.spec.exclusive);
        if exclusive_taken || (spec.exclusive && !st.consumers.is_empty()) {
            return Err(CoreError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.spec.name, self.vhost
            )));
        }
        st.consumers.push(Consumer { spec });
        st.had_consumer = true;
        self.dispatch_locked(&mut st);
        Ok(())
    }

    /// Detaches a consumer. Returns true when the queue is auto-delete and this was its last
    /// consumer, so the caller should delete it.
    pub fn remove_consumer(&self, connection_id: u64, channel: u16, tag: &str) -> bool {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|c| {
            !(c.spec.connection_id == connection_id
                && c.spec.channel == channel
                && &*c.spec.tag == tag)
        });
        let removed = before != st.consumers.len();
        removed && self.spec.auto_delete && st.had_consumer && st.consumers.is_empty()
    }

    pub fn consumer_count(&self) -> usize {
        self.state.lock().consumers.len()
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len();
        st.ready.clear();
        st.ready_bytes = 0;
        clamp_u32(n)
    }

    /// Marks the queue deleted, tells its consumers, and drops its messages. Returns the
    /// number of ready messages it held.
    pub fn mark_deleted(&self) -> u32 {
        self.deleted.store(true, Ordering::Release);
        let (consumers, n) = {
            let mut st = self.state.lock();
            let n = st.ready.len();
            st.ready.clear();
            st.ready_bytes = 0;
            (std::mem::take(&mut st.consumers), n)
        };
        for c in consumers {
            c.spec.sink.cancelled(c.spec.channel, &c.spec.tag);
        }
        clamp_u32(n)
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[derive(Default)]
    struct Collect {
        got: Mutex<Vec<(Arc<str>, Entry)>>,
        cancelled: Mutex<Vec<Arc<str>>>,
    }
    impl DeliverySink for Collect {
        fn deliver(&self, d: Delivery) {
            self.got.lock().push((d.consumer_tag, d.entry));
        }
        fn cancelled(&self, _channel: u16, tag: &Arc<str>) {
            self.cancelled.lock().push(Arc::clone(tag));
        }
    }

    fn msg(body: &'static str) -> Arc<Message> {
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties_raw: Bytes::new(),
            body: Bytes::from_static(body.as_bytes()),
        })
    }

    fn queue(auto_delete: bool) -> Arc<Queue> {
        Queue::new(
            "/",
            QueueSpec {
                name: "q".into(),
                durable: false,
                exclusive_owner: None,
                auto_delete,
                arguments: FieldTable::default(),
            },
        )
    }

    fn consumer(tag: &str, sink: &Arc<Collect>, prefetch: u32, exclusive: bool) -> ConsumerSpec {
        ConsumerSpec {
            tag: Arc::from(tag),
            connection_id: 1,
            channel: 1,
            no_ack: false,
            exclusive,
            sink: sink.clone(),
            consumer_credit: Arc::new(Credit::new(prefetch)),
            channel_credit: Arc::new(Credit::new(0)),
        }
    }

    #[test]
    fn prefetch_limits_deliveries_and_requeue_restores_order() {
        let q = queue(false);
        let sink = Arc::new(Collect::default());
        for b in ["a", "b", "c", "d"] {
            q.publish(msg(b));
        }
        let spec = consumer("c1", &sink, 2, false);
        let credit = spec.consumer_credit.clone();
        q.add_consumer(spec).unwrap();
        assert_eq!(sink.got.lock().len(), 2);
        assert_eq!(q.message_count(), 2);
        // Reject both back: they return ahead of c, d and are delivered again.
        let entries: Vec<Entry> = sink.got.lock().drain(..).map(|(_, e)| e).collect();
        credit.release(2);
        q.requeue(entries);
        let got = sink.got.lock();
        let bodies: Vec<_> = got
            .iter()
            .map(|(_, e)| (e.msg.body.clone(), e.redelivered))
            .collect();
        assert_eq!(
            bodies,
            vec![(Bytes::from("a"), true), (Bytes::from("b"), true)]
        );
        assert_eq!(q.message_count(), 2);
    }

    #[test]
    fn round_robin_between_consumers() {
        let q = queue(false);
        let sink = Arc::new(Collect::default());
        q.add_consumer(consumer("a", &sink, 0, false)).unwrap();
        q.add_consumer(consumer("b", &sink, 0, false)).unwrap();
        for _ in 0..4 {
            q.publish(msg("x"));
        }
        let tags: Vec<String> = sink.got.lock().iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(tags, vec!["a", "b", "a", "b"]);
    }

    #[test]
    fn exclusive_consumer_blocks_others() {
        let q = queue(false);
        let sink = Arc::new(Collect::default());
        q.add_consumer(consumer("a", &sink, 0, true)).unwrap();
        let err = q.add_consumer(consumer("b", &sink, 0, false)).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::AccessRefused);
    }

    #[test]
    fn auto_delete_after_last_consumer_and_cancel_on_delete() {
        let q = queue(true);
        let sink = Arc::new(Collect::default());
        q.add_consumer(consumer("a", &sink, 0, false)).unwrap();
        q.add_consumer(consumer("b", &sink, 0, false)).unwrap();
        assert!(!q.remove_consumer(1, 1, "a"));
        q.mark_deleted();
        assert_eq!(sink.cancelled.lock().len(), 1);
        assert!(q.is_deleted());
    }

    #[test]
    fn get_counts_remaining() {
        let q = queue(false);
        q.publish(msg("a"));
        q.publish(msg("b"));
        let (e, left) = q.get(false).unwrap();
        assert_eq!(e.msg.body, Bytes::from("a"));
        assert_eq!(left, 1);
        assert_eq!(q.unacked_count(), 1);
        q.settle(1);
        assert_eq!(q.unacked_count(), 0);
        assert_eq!(q.purge(), 1);
        assert!(q.get(true).is_none());
    }
}
