//! Acknowledgements: `basic.ack` / `nack` / `reject` / `recover` by delivery tag, as queue
//! settlements (or transaction operations when the channel is transactional).

use super::*;

impl Channel {
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
        if entries.is_empty() {
            return;
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
