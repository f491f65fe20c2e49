//! Dispatch: which consumer takes the next ready message (single active consumer, consumer
//! priorities, round-robin among equals) and handing ready messages to consumers with
//! credit, under the queue's lock. Expired messages met on the way are dead-lettered, not
//! delivered.

use std::sync::Arc;

use super::{Delivery, Queue, QueueState};
use crate::clock::LazyNow;
use crate::dead_letter::{DeadLetter, DeathReason};

impl Queue {
    /// Picks the consumer for the next message: single active consumer, else the highest
    /// priority consumer with credit, round-robin among equals.
    pub(super) fn pick_consumer(st: &QueueState) -> Option<usize> {
        let n = st.consumers.len();
        if n == 0 {
            return None;
        }
        if st.config.single_active_consumer {
            return st.consumers[0].has_credit().then_some(0);
        }
        let start = st.next_consumer % n;
        let mut best: Option<usize> = None;
        for idx in (0..n).map(|i| (start + i) % n) {
            let c = &st.consumers[idx];
            if !c.has_credit() {
                continue;
            }
            if c.spec.priority == st.top_priority {
                // The scan could only confirm it: none ranks higher, and among equals the
                // first from the round-robin position wins.
                return Some(idx);
            }
            if best.is_none_or(|b| c.spec.priority > st.consumers[b].spec.priority) {
                best = Some(idx);
            }
        }
        best
    }

    pub(super) fn dispatch_locked(
        self: &Arc<Self>,
        st: &mut QueueState,
        now: &LazyNow,
        dead: &mut Vec<DeadLetter>,
    ) {
        while st.ready.len > 0 {
            let Some(idx) = Self::pick_consumer(st) else {
                return;
            };
            if !st.consumers[idx].try_take_credit() {
                // Credit raced away between the check and the take; try the others.
                if Self::pick_consumer(st) == Some(idx) {
                    return;
                }
                continue;
            }
            st.next_consumer = (idx + 1) % st.consumers.len();
            let Some(entry) = st.ready.pop_front() else {
                return;
            };
            // Strictly past: a message whose TTL ends this very millisecond (expiration "0")
            // still goes to a consumer that can take it at once, as in RabbitMQ.
            if entry.expires_at != 0 && entry.expires_at < now.get() {
                // Expired messages are never delivered: give the credit back and move on.
                let c = &st.consumers[idx].spec;
                if !c.no_ack {
                    c.consumer_credit.release(1);
                    c.channel_credit.release(1);
                }
                let cfg = st.config.clone();
                self.drop_entry(&cfg, entry, DeathReason::Expired, dead);
                continue;
            }
            let Some(msg) = self.message_of(&entry) else {
                // Unreadable (corrupt) record: already logged; the message is lost.
                let c = &st.consumers[idx].spec;
                if !c.no_ack {
                    c.consumer_credit.release(1);
                    c.channel_credit.release(1);
                }
                self.leave(&entry);
                continue;
            };
            let no_ack = st.consumers[idx].spec.no_ack;
            let size = entry.size;
            if no_ack {
                st.stats.deliver_no_ack += 1;
            } else {
                st.stats.deliver += 1;
            }
            st.stats.redeliver += u64::from(entry.redelivered);
            let mut entry = entry;
            if !no_ack {
                self.note_delivered(&entry);
                self.hold_unacked(st, &mut entry, &msg);
            }
            let consumer = &st.consumers[idx].spec;
            if no_ack {
                // Settled on delivery.
                self.leave(&entry);
            }
            consumer.sink.deliver(Delivery {
                queue: Arc::clone(self),
                msg,
                consumer_tag: Arc::clone(&consumer.tag),
                channel: consumer.channel,
                no_ack,
                entry,
            });
            if !no_ack {
                st.unacked += 1;
                st.unacked_bytes += u64::from(size);
            }
        }
    }
}
