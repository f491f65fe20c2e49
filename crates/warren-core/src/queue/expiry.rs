//! Time in a queue: message deadlines (the queue's TTL and each message's `expiration`),
//! dropping expired messages at the head, `x-expires` for an unused queue, and the one
//! timer per queue that the broker's timer thread fires at the next of those deadlines.

use std::sync::{Arc, Weak};

use warren_amqp::properties::peek_expiration;

use super::{Queue, QueueState};
use crate::clock::LazyNow;
use crate::dead_letter::{DeadLetter, DeathReason};
use crate::message::Message;
use crate::queue_config::QueueConfig;
use crate::timers::TimerTarget;

impl Queue {
    /// Called by the broker's timers: expires due messages; returns true when `x-expires`
    /// elapsed with the queue unused, so the caller deletes it.
    pub fn on_timer(self: &Arc<Self>) -> bool {
        let now = LazyNow::new();
        if self.is_deleted() {
            return false;
        }
        let mut dead = Vec::new();
        let mut st = self.state.lock();
        st.timer_at = None;
        self.expire_locked(&mut st, &now, &mut dead);
        let delete = st.config.expires.is_some_and(|e| {
            st.consumers.is_empty() && now.get() >= st.last_used.saturating_add(e)
        });
        if !delete {
            self.arm_timer(&mut st);
        }
        drop(st);
        self.emit(dead);
        delete
    }

    pub(super) fn expire_locked(
        &self,
        st: &mut QueueState,
        now: &LazyNow,
        dead: &mut Vec<DeadLetter>,
    ) {
        if st.ready.next_expiry().is_none_or(|t| t > now.get()) {
            return;
        }
        let mut expired = Vec::new();
        st.ready.drop_expired(now.get(), &mut expired);
        let cfg = st.config.clone();
        for e in expired {
            self.drop_entry(&cfg, e, DeathReason::Expired, dead);
        }
    }

    /// Schedules the next deadline (head expiry or `x-expires`) if it is earlier than the one
    /// already scheduled.
    pub(super) fn arm_timer(&self, st: &mut QueueState) {
        let expiry = st.ready.next_expiry();
        let unused = st
            .config
            .expires
            .filter(|_| st.consumers.is_empty())
            .map(|e| st.last_used.saturating_add(e));
        let next = match (expiry, unused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            if st.timer_at.is_none_or(|armed| at < armed) {
                st.timer_at = Some(at);
                let me: Weak<dyn TimerTarget> = self.me.clone();
                self.timers.schedule(at, me);
            }
        }
    }
}

impl TimerTarget for Queue {
    fn fire(self: Arc<Self>) {
        if self.on_timer() {
            if let Some(owner) = self.router.upgrade() {
                tracing::info!(vhost = %self.vhost, queue = %self.name(), "queue expired (x-expires)");
                owner.queue_expired(&self);
            }
        }
    }
}

/// The deadline of a message entering a queue: the sooner of the queue's TTL and the
/// message's own `expiration`; 0 for never.
pub(super) fn expiry_for(cfg: &QueueConfig, msg: &Message, now: &LazyNow) -> u64 {
    let per_message = if msg.properties_raw.len() >= 2 && msg.properties_raw[0] & 0x01 != 0 {
        // The expiration flag is bit 8: the low bit of the first flag byte.
        peek_expiration(&msg.properties_raw).and_then(|e| e.parse::<u64>().ok())
    } else {
        None
    };
    let ttl = match (cfg.message_ttl, per_message) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // `now` is never 0, so a deadline is never confused with "never".
    ttl.map_or(0, |t| now.get().saturating_add(t))
}
