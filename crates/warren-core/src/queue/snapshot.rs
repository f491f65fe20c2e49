//! What the management API and metrics read of a queue at one moment: its counts, bytes,
//! message counters and consumers, taken under the queue's lock in one go.

use std::sync::Arc;

use super::Queue;
use crate::stats::QueueMessageStats;

/// A queue's numbers at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub ready: u64,
    pub unacked: u64,
    pub ready_bytes: u64,
    pub unacked_bytes: u64,
    /// Ready bytes held in memory (the rest is paged out to the store).
    pub ready_bytes_ram: u64,
    pub consumers: u32,
    pub stats: QueueMessageStats,
}

/// One consumer of a queue as listed.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub tag: Arc<str>,
    pub connection_id: u64,
    pub channel: u16,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
    /// The consumer's prefetch (0: unlimited).
    pub prefetch: u32,
    /// False for a waiting consumer of a single-active-consumer queue.
    pub active: bool,
}

impl Queue {
    pub fn snapshot(&self) -> QueueSnapshot {
        let st = self.state.lock();
        QueueSnapshot {
            ready: st.ready.len as u64,
            unacked: st.unacked as u64,
            ready_bytes: st.ready.bytes as u64,
            unacked_bytes: st.unacked_bytes,
            ready_bytes_ram: st.ready.mem_bytes as u64,
            consumers: u32::try_from(st.consumers.len()).unwrap_or(u32::MAX),
            stats: st.stats,
        }
    }

    pub fn consumer_list(&self) -> Vec<ConsumerInfo> {
        let st = self.state.lock();
        let single = st.config.single_active_consumer;
        st.consumers
            .iter()
            .enumerate()
            .map(|(i, c)| ConsumerInfo {
                tag: Arc::clone(&c.spec.tag),
                connection_id: c.spec.connection_id,
                channel: c.spec.channel,
                no_ack: c.spec.no_ack,
                exclusive: c.spec.exclusive,
                priority: c.spec.priority,
                prefetch: c.spec.consumer_credit.limit(),
                active: !single || i == 0,
            })
            .collect()
    }
}
