//! Flow control of a connection: `connection.blocked` / `unblocked` under resource alarms,
//! pausing publishers while the store's unwritten bytes or lagging no-ack consumers are over
//! their limits, and releasing publisher confirms once the group commit covering them is done.

use super::*;

impl Connection {
    /// Blocks a publishing connection while a resource alarm is on (RabbitMQ's rule: only
    /// connections that publish are blocked; consumers keep draining), and unblocks it when
    /// the alarm clears, telling clients that asked for `connection.blocked`.
    pub(super) fn update_blocked(&mut self) {
        let state = *self.alarms.borrow_and_update();
        let block = state.blocked() && self.ctx.is_publisher && self.closing_since.is_none();
        if block == self.blocked {
            return;
        }
        self.blocked = block;
        info!(
            connection = self.ctx.id,
            blocked = block,
            reason = state.reason(),
            "publisher flow control"
        );
        if !self.client_knows_blocked {
            return;
        }
        let method = if block {
            Method::ConnectionBlocked(ConnectionBlocked {
                reason: state.reason().to_string(),
            })
        } else {
            Method::ConnectionUnblocked(ConnectionUnblocked {})
        };
        encode_method_frame(&mut self.ctx.out, 0, &method);
    }

    /// Back-pressure from the store: a publisher waits while the store holds more than
    /// [`STORE_BACKLOG_LIMIT`] bytes not yet written, so memory stays bounded when publishers
    /// outrun the disk (RabbitMQ's internal credit flow does the same, silently).
    pub(super) fn update_throttle(&mut self) {
        let backlog = match self.ctx.broker.persistence() {
            Some(p) if self.ctx.is_publisher => p.buffered_bytes(),
            _ => 0,
        };
        self.ctx.lagging_queues.retain(|q| q.is_lagging());
        let throttle = backlog > STORE_BACKLOG_LIMIT || !self.ctx.lagging_queues.is_empty();
        if throttle && !self.throttled {
            debug!(
                connection = self.ctx.id,
                backlog, "publisher throttled by the store"
            );
            if let Some(p) = self.ctx.broker.persistence() {
                p.request_sync();
            }
        }
        self.throttled = throttle;
    }

    pub(super) fn synced_generation(&self) -> u64 {
        self.synced.as_ref().map_or(u64::MAX, |rx| *rx.borrow())
    }

    /// Writes the confirms that can go out now; channels still waiting for the store's
    /// fsync are remembered, and the store is asked to sync at once (group commit: one
    /// fsync covers every publisher waiting at that moment).
    pub(super) fn flush_confirms(&mut self) {
        if self.confirm_dirty.is_empty() {
            return;
        }
        let synced = self.synced_generation();
        let mut need_sync = false;
        for ch in std::mem::take(&mut self.confirm_dirty) {
            if let Some(channel) = self.channels.get_mut(&ch) {
                channel.flush_confirms(&mut self.ctx, synced);
                if channel.awaits_durability() && !self.durable_waiters.contains(&ch) {
                    self.durable_waiters.push(ch);
                    need_sync = true;
                }
            }
        }
        if need_sync {
            if let Some(p) = self.ctx.broker.persistence() {
                p.request_sync();
            }
        }
    }
}
