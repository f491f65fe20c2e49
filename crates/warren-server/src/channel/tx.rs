//! Transactions: `tx.commit` runs the buffered publishes and settlements, waiting for the
//! fsync when any touched durable state; `tx.rollback` puts settlements back.

use super::*;

impl Channel {
    /// `tx.commit`: runs the transaction's publishes and settlements in order, then, if any
    /// of them touched durable state, waits for the fsync before `commit-ok`.
    pub(super) fn tx_commit(&mut self, ctx: &mut ConnCtx) -> AmqpResult<()> {
        let Some(ops) = self.tx.as_mut().map(std::mem::take) else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "channel is not transactional",
            ));
        };
        self.tx_bytes = 0;
        let mut wrote_durable = false;
        for op in ops {
            match op {
                TxOp::Publish { msg, mandatory } => {
                    let outcome = self.route(ctx, &msg, mandatory)?;
                    wrote_durable |= outcome.confirm_after.is_some();
                }
                TxOp::Settle { entries, how } => {
                    wrote_durable |= entries.iter().any(|u| u.entry.logged);
                    self.apply_settle(entries, how)
                }
            }
        }
        if wrote_durable {
            // commit-ok promises the committed work is safe (persistent publishes and
            // acks of persistent messages): wait for the fsync.
            if let Some(p) = ctx.broker.persistence() {
                let synced = blocking(|| p.sync_now());
                if let Err(e) = synced {
                    return Err(AmqpError::connection(
                        INTERNAL_ERROR,
                        format!("cannot make the transaction durable: {e}"),
                    ));
                }
            }
        }
        self.send(ctx, TxCommitOk {});
        Ok(())
    }

    /// `tx.rollback`: publishes are dropped, settlements go back to unacked.
    pub(super) fn tx_rollback(&mut self, ctx: &mut ConnCtx) -> AmqpResult<()> {
        let Some(ops) = self.tx.as_mut().map(std::mem::take) else {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                "channel is not transactional",
            ));
        };
        self.tx_bytes = 0;
        // Settlements go back to unacked, in delivery-tag order.
        for op in ops {
            if let TxOp::Settle { entries, .. } = op {
                for u in entries {
                    let pos = self.unacked.partition_point(|x| x.tag < u.tag);
                    self.unacked.insert(pos, u);
                }
            }
        }
        self.send(ctx, TxRollbackOk {});
        Ok(())
    }
}

/// Runs blocking work from the connection task: through `block_in_place` on a
/// multi-threaded runtime (other tasks move to other workers), directly on a current-thread
/// runtime, where `block_in_place` would panic.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
