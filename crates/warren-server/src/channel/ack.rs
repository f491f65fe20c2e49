//! Acknowledgements: `basic.ack` / `nack` / `reject` / `recover` by delivery tag, as queue
//! settlements (or transaction operations when the channel is transactional).

use super::*;

impl Channel {
    /// RabbitMQ's `consumer_timeout`: a delivery (to a consumer or by `basic.get`) left
    /// unacknowledged for `timeout` closes the channel with 406, and its unacked messages
    /// go back to their queues. Called every check interval: the oldest unacked delivery
    /// times out once it has been the oldest for `timeout` of checks, so the channel closes
    /// between `timeout` and `timeout` plus one interval after the delivery.
    pub fn check_ack_timeout(
        &mut self,
        now: std::time::Instant,
        timeout: std::time::Duration,
    ) -> AmqpResult<()> {
        let Some(oldest) = self.unacked.front().map(|u| u.tag) else {
            self.ack_watch = None;
            return Ok(());
        };
        match self.ack_watch {
            Some((tag, since)) if tag == oldest => {
                if now.duration_since(since) >= timeout {
                    // RabbitMQ 3.10's text.
                    return Err(AmqpError::channel(
                        PRECONDITION_FAILED,
                        format!(
                            "delivery acknowledgement on channel {} timed out. Timeout value used: {} ms. This timeout value can be configured, see consumers doc guide to learn more",
                            self.id,
                            timeout.as_millis()
                        ),
                    ));
                }
            }
            _ => self.ack_watch = Some((oldest, now)),
        }
        Ok(())
    }

    /// Takes the deliveries an ack/nack/reject names out of the unacked list.
    pub(super) fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let pos = self.unacked.partition_point(|u| u.tag < tag);
        if self.unacked.get(pos).map(|u| u.tag) != Some(tag) {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            ));
        }
        if multiple {
            Ok(self.unacked.drain(..=pos).collect())
        } else {
            Ok(self.unacked.remove(pos).into_iter().collect())
        }
    }

    pub(super) fn settle(&mut self, tag: u64, multiple: bool, how: Settle) -> AmqpResult<()> {
        let entries = self.take_unacked(tag, multiple)?;
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Settle { entries, how });
            return Ok(());
        }
        self.apply_settle(entries, how);
        Ok(())
    }

    pub(super) fn apply_settle(&mut self, entries: Vec<Unacked>, how: Settle) {
        self.note_unacked();
        if entries.is_empty() {
            return;
        }
        if how == Settle::Ack {
            stats::bump(&self.stats.ack, entries.len() as u64);
        }
        let mut freed_credit = false;
        // Group runs of the same queue so each queue is locked once per run.
        let mut run: Vec<Entry> = Vec::new();
        let mut run_queue: Option<Arc<Queue>> = None;
        for u in entries {
            if let Some(credit) = &u.consumer_credit {
                credit.release(1);
                self.channel_credit.release(1);
                freed_credit = true;
            }
            if run_queue
                .as_ref()
                .is_some_and(|q| !Arc::ptr_eq(q, &u.queue))
            {
                if let Some(q) = run_queue.take() {
                    finish_run(&q, std::mem::take(&mut run), how);
                }
            }
            run_queue.get_or_insert(u.queue);
            run.push(u.entry);
        }
        if let Some(q) = run_queue {
            finish_run(&q, run, how);
        }
        if freed_credit {
            self.dispatch_consumer_queues();
        }
    }

    pub(super) fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "requeue=false"));
        }
        let all: Vec<Unacked> = self.unacked.drain(..).collect();
        self.apply_settle(all, Settle::Requeue);
        Ok(())
    }

    /// Lets every queue this channel consumes from dispatch again (credit was freed).
    pub(crate) fn dispatch_consumer_queues(&self) {
        let mut done: Vec<&Arc<Queue>> = Vec::new();
        for c in self.consumers.values() {
            if !done.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                c.queue.dispatch();
                done.push(&c.queue);
            }
        }
    }
}

fn finish_run(queue: &Arc<Queue>, entries: Vec<Entry>, how: Settle) {
    match how {
        Settle::Ack => queue.settle(entries),
        Settle::Discard => queue.discard(entries),
        Settle::Requeue => queue.requeue(entries),
    }
}
