//! A queue's entries and the store: admitting a message (written once to the store and to
//! the queue's index when it is persistent and the queue durable; paged out past the memory
//! threshold), reading a paged message back, recording deliveries and departures in the
//! index, dead-lettering with a settlement deferred until the copy is durable, and putting
//! recovered entries back after a restart.

use std::sync::Arc;

use warren_amqp::properties::peek_priority;

use super::{Entry, Queue, QueueState};
use crate::clock::{now_ms, unix_millis};
use crate::dead_letter::{DeadLetter, DeathReason, SourceSettle};
use crate::message::Message;
use crate::queue_config::QueueConfig;
use crate::storage::{MessageStore, RecordLocation, RecoveredEntry, StoredRecord};

impl Queue {
    /// A new entry for `msg`: persistent messages in a durable queue are written to the
    /// store (once per message) and the queue's log; beyond the paging threshold the message
    /// lives only in the store.
    pub(super) fn admit(
        &self,
        st: &QueueState,
        msg: Arc<Message>,
        seq: u64,
        expires_at: u64,
        level: u8,
    ) -> Entry {
        let size = u32::try_from(msg.body.len()).unwrap_or(u32::MAX);
        let mut entry = Entry {
            seq,
            msg: None,
            loc: None,
            size,
            logged: false,
            redelivered: false,
            expires_at,
            level,
        };
        let Some(storage) = &self.storage else {
            entry.msg = Some(msg);
            return entry;
        };
        if msg.persistent {
            if let Some(log) = &storage.log {
                let loc = stored_location(&storage.store, &msg);
                storage.store.retain(loc);
                log.enqueue(seq, loc, unix_deadline(expires_at));
                msg.mark_logged();
                entry.loc = Some(loc);
                entry.logged = true;
            }
        }
        if st.ready.mem_bytes + size as usize <= storage.page_threshold {
            entry.msg = Some(msg);
        } else if entry.loc.is_none() {
            let loc = stored_location(&storage.store, &msg);
            storage.store.retain(loc);
            entry.loc = Some(loc);
        }
        entry
    }

    /// How a delivered, unacknowledged entry is held until it is settled: with its body
    /// while the queue's bodies in memory (ready and unacked) stay within the paging
    /// threshold, else by its store location only (written now if it is not in the store
    /// yet). A consumer that acknowledges nothing thus cannot pin the backlog in memory.
    pub(super) fn hold_unacked(&self, st: &mut QueueState, entry: &mut Entry, msg: &Message) {
        if entry.msg.is_none() {
            return;
        }
        let size = entry.size as usize;
        match &self.storage {
            Some(storage)
                if st.ready.mem_bytes + st.unacked_mem + size > storage.page_threshold =>
            {
                if entry.loc.is_none() {
                    let loc = stored_location(&storage.store, msg);
                    storage.store.retain(loc);
                    entry.loc = Some(loc);
                }
                entry.msg = None;
            }
            _ => st.unacked_mem += size,
        }
    }

    /// The entry's message, read back from the store if it was paged out.
    pub(super) fn message_of(&self, e: &Entry) -> Option<Arc<Message>> {
        if let Some(m) = &e.msg {
            return Some(Arc::clone(m));
        }
        let (storage, loc) = (self.storage.as_ref()?, e.loc?);
        match storage.store.read(loc) {
            // The bytes are the message's own copy and the entry keeps its reference: the
            // message needs none (no queue re-admits a message read back from its record).
            Ok(record) => match Message::decode_record(record, None) {
                Some(m) => Some(Arc::new(m)),
                None => {
                    tracing::warn!(queue = %self.spec.name, ?loc, "undecodable message record skipped");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(queue = %self.spec.name, ?loc, error = %err, "unreadable message record skipped");
                None
            }
        }
    }

    /// Records in the log that a persistent message went out, so that after a crash it
    /// comes back with `redelivered` set.
    pub(super) fn note_delivered(&self, e: &Entry) {
        if e.logged && !e.redelivered && !self.is_deleted() {
            if let Some(log) = self.storage.as_ref().and_then(|s| s.log.as_ref()) {
                log.delivered(e.seq);
            }
        }
    }

    /// The entry leaves the queue for good: its log records it, its store reference goes.
    pub(super) fn leave(&self, e: &Entry) {
        let Some(storage) = &self.storage else { return };
        if e.logged && !self.is_deleted() {
            if let Some(log) = &storage.log {
                log.ack(e.seq);
            }
        }
        if let Some(loc) = e.loc {
            storage.store.release(loc);
        }
    }

    /// Removes an entry (expired, dropped, rejected), dead-lettering it if configured. A
    /// logged entry that is dead-lettered is acked in this queue's log only once its copy in
    /// the target is durable (the letter carries the settlement): at least once, never lost.
    pub(super) fn drop_entry(
        &self,
        cfg: &QueueConfig,
        e: Entry,
        reason: DeathReason,
        out: &mut Vec<DeadLetter>,
    ) {
        if cfg.dead_letter_exchange.is_some() {
            if let Some(msg) = self.message_of(&e) {
                let settle = self.deferred_settlement(&e);
                let settled_later = settle.is_some();
                self.dead_letter_into(cfg, msg, reason, settle, out);
                if settled_later {
                    return;
                }
            }
        }
        self.leave(&e);
    }

    /// The log ack and store release of a logged entry, to be done once a copy of it is
    /// durable elsewhere.
    pub(super) fn deferred_settlement(&self, e: &Entry) -> Option<SourceSettle> {
        if !e.logged || self.is_deleted() {
            return None;
        }
        let log = self.storage.as_ref()?.log.clone()?;
        Some(SourceSettle::new(log, e.seq, e.loc))
    }

    /// Puts messages recovered from the queue's log back (after a restart): they stay in the
    /// store until delivered; delivered-but-unacked ones come back redelivered.
    pub fn restore(self: &Arc<Self>, recovered: Vec<RecoveredEntry>) {
        let now = now_ms();
        let now_unix = unix_millis();
        let mut st = self.state.lock();
        let ttl_deadline = st.config.message_ttl.map_or(0, |t| now.saturating_add(t));
        let levels = st.config.max_priority;
        for r in recovered {
            // The deadline given at publish still holds (RabbitMQ keeps it too); entries
            // logged without one get the queue's TTL from now.
            let expires_at = if r.deadline != 0 {
                now.saturating_add(r.deadline.saturating_sub(now_unix))
            } else {
                ttl_deadline
            };
            let mut entry = Entry {
                seq: r.seq,
                msg: None,
                loc: Some(r.loc),
                size: r.loc.len,
                logged: true,
                redelivered: r.delivered,
                expires_at,
                level: 0,
            };
            // The entry's reference first: reading the record below takes and drops a
            // reference of its own, which must not be the segment's only one.
            if let Some(storage) = &self.storage {
                storage.store.retain(r.loc);
            }
            if let Some(max) = levels {
                // Priority queues need the priority: read it once from the record.
                if let Some(m) = self.message_of(&entry) {
                    entry.level = peek_priority(&m.properties_raw).unwrap_or(0).min(max);
                }
            }
            st.next_seq = st.next_seq.max(r.seq + 1);
            st.ready.insert_by_seq(entry);
        }
        self.arm_timer(&mut st);
    }

    pub(super) fn dead_letter_into(
        &self,
        cfg: &QueueConfig,
        msg: Arc<Message>,
        reason: DeathReason,
        settle: Option<SourceSettle>,
        out: &mut Vec<DeadLetter>,
    ) {
        if let Some(exchange) = &cfg.dead_letter_exchange {
            out.push(DeadLetter {
                msg,
                reason,
                queue: self.spec.name.clone(),
                exchange: exchange.clone(),
                routing_key: cfg.dead_letter_routing_key.clone(),
                settle: settle.map(Arc::new),
            });
        }
    }
}

/// The message's record location, appending it to the store the first time it is needed
/// (the message keeps the record's reference until it is dropped).
pub(super) fn stored_location(store: &Arc<dyn MessageStore>, msg: &Message) -> RecordLocation {
    msg.stored
        .get_or_init(|| msg.with_record_parts(|parts| StoredRecord::append_parts(store, parts)))
        .location()
}

/// An entry's deadline on the monotonic clock as Unix milliseconds, for the queue log.
pub(super) fn unix_deadline(expires_at: u64) -> u64 {
    if expires_at == 0 {
        return 0;
    }
    let now = now_ms();
    unix_millis()
        .saturating_add(expires_at.saturating_sub(now))
        .max(1)
}
