//! Messages taken from a queue and settled: `basic.get`, acknowledgements, rejections
//! without requeue (to the dead-letter exchange, if any) and requeues, which put a message
//! back at the position its sequence number gives it, marked redelivered.

use std::sync::Arc;

use super::{clamp_u32, Entry, Queue};
use crate::clock::LazyNow;
use crate::dead_letter::DeathReason;
use crate::message::Message;
use crate::queue_config::Overflow;

impl Queue {
    /// `basic.get`: the head message and how many remain after it.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<(Entry, Arc<Message>, u32)> {
        let now = LazyNow::new();
        let mut dead = Vec::new();
        let mut st = self.state.lock();
        st.last_used = now.get();
        self.expire_locked(&mut st, &now, &mut dead);
        let mut got = None;
        while let Some(entry) = st.ready.pop_front() {
            let Some(msg) = self.message_of(&entry) else {
                self.leave(&entry);
                continue;
            };
            if no_ack {
                self.leave(&entry);
                st.stats.get_no_ack += 1;
            } else {
                st.unacked += 1;
                st.unacked_bytes += u64::from(entry.size);
                st.stats.get += 1;
                self.note_delivered(&entry);
            }
            st.stats.redeliver += u64::from(entry.redelivered);
            let mut entry = entry;
            if !no_ack {
                self.hold_unacked(&mut st, &mut entry, &msg);
            }
            got = Some((entry, msg, clamp_u32(st.ready.len)));
            break;
        }
        self.arm_timer(&mut st);
        drop(st);
        self.emit(dead);
        got
    }

    /// Acknowledged deliveries: they leave the queue for good.
    pub fn settle(&self, entries: Vec<Entry>) {
        for e in &entries {
            self.leave(e);
        }
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(entries.len());
        st.stats.ack += entries.len() as u64;
        st.release_unacked_mem(&entries);
    }

    /// Rejected without requeue: the messages leave the queue, to its dead-letter exchange
    /// if it has one.
    pub fn discard(&self, entries: Vec<Entry>) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(entries.len());
        st.release_unacked_mem(&entries);
        let cfg = st.config.clone();
        drop(st);
        let mut dead = Vec::new();
        for e in entries {
            if self.is_deleted() {
                self.leave(&e);
            } else {
                self.drop_entry(&cfg, e, DeathReason::Rejected, &mut dead);
            }
        }
        self.emit(dead);
    }

    /// Puts delivered messages back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, entries: impl IntoIterator<Item = Entry>) {
        self.put_back(entries, true);
    }

    /// Requeues; `unacked` says whether the entries counted as unacknowledged.
    pub(super) fn put_back(
        self: &Arc<Self>,
        entries: impl IntoIterator<Item = Entry>,
        unacked: bool,
    ) {
        let now = LazyNow::new();
        let mut dead = Vec::new();
        let mut st = self.state.lock();
        let mut count = 0;
        for mut entry in entries {
            if unacked {
                count += 1;
                st.release_unacked_mem(std::slice::from_ref(&entry));
            }
            if self.is_deleted() {
                self.leave(&entry);
                continue;
            }
            entry.redelivered = true;
            st.ready.insert_by_seq(entry);
        }
        st.unacked = st.unacked.saturating_sub(count);
        self.expire_locked(&mut st, &now, &mut dead);
        self.dispatch_locked(&mut st, &now, &mut dead);
        // RabbitMQ 3.10: a message requeued into a full drop-head queue is subject to the
        // limit like any other (the head, often the requeued message itself, goes).
        if st.config.overflow == Overflow::DropHead {
            self.drop_head_over_limit(&mut st, &mut dead);
        }
        self.arm_timer(&mut st);
        drop(st);
        self.emit(dead);
    }
}
