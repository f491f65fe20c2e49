//! Message counters for the management API and metrics, written where the messages pass and
//! read by a sampler a few times a minute. Nothing here takes a lock on the hot path:
//! counters a single task owns (a channel's) are bumped with a plain load and store, and
//! counters many publishers share (an exchange's) are striped over cache lines by thread.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Adds `n` to a counter only one thread writes (no locked instruction).
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Sets a gauge only one thread writes.
#[inline]
pub fn set(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}

#[inline]
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

const STRIPES: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct Line(AtomicU64);

/// A counter many threads add to: each thread adds to its own cache line.
#[derive(Default)]
pub struct StripedCounter([Line; STRIPES]);

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|s| *s)
}

impl StripedCounter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.0.iter().map(|l| l.0.load(Ordering::Relaxed)).sum()
    }
}

/// An exchange's counters (RabbitMQ's `publish_in`: messages published to it;
/// `publish_out`: messages it routed to at least one queue).
#[derive(Default)]
pub struct ExchangeStats {
    pub publish_in: StripedCounter,
    pub publish_out: StripedCounter,
}

/// A queue's counters, kept under the queue's own lock (so they cost an add).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueMessageStats {
    pub publish: u64,
    pub deliver: u64,
    pub deliver_no_ack: u64,
    pub get: u64,
    pub get_no_ack: u64,
    pub ack: u64,
    pub redeliver: u64,
}

/// One channel's counters and gauges, written by the task that owns the channel.
#[derive(Default)]
pub struct ChannelStats {
    pub publish: AtomicU64,
    /// Publishes received while the channel was in confirm mode.
    pub publish_confirm: AtomicU64,
    pub sizes: SizeHistogram,
    pub confirm: AtomicU64,
    pub return_unroutable: AtomicU64,
    pub drop_unroutable: AtomicU64,
    pub deliver: AtomicU64,
    pub deliver_no_ack: AtomicU64,
    pub get: AtomicU64,
    pub get_no_ack: AtomicU64,
    pub get_empty: AtomicU64,
    pub ack: AtomicU64,
    pub redeliver: AtomicU64,
    // Gauges.
    pub consumer_count: AtomicU64,
    pub prefetch_count: AtomicU64,
    pub global_prefetch_count: AtomicU64,
    pub messages_unacknowledged: AtomicU64,
    pub messages_unconfirmed: AtomicU64,
    pub messages_uncommitted: AtomicU64,
    pub acks_uncommitted: AtomicU64,
    /// 1 once `confirm.select` was seen.
    pub confirm_mode: AtomicU64,
    /// 1 once `tx.select` was seen.
    pub transactional: AtomicU64,
}

/// Upper bounds (bytes, inclusive) of the published-message size histogram's buckets,
/// RabbitMQ's (`rabbit_msg_size_metrics`); one more bucket holds everything larger.
pub const SIZE_BUCKETS: [u64; 8] = [
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
];

/// Sizes of published message bodies: a count per bucket (not cumulative) and the sum.
#[derive(Default)]
pub struct SizeHistogram {
    pub buckets: [AtomicU64; SIZE_BUCKETS.len() + 1],
    pub sum: AtomicU64,
}

impl SizeHistogram {
    /// Single writer (the channel's task).
    pub fn observe(&self, size: u64) {
        let bucket = SIZE_BUCKETS
            .iter()
            .position(|bound| size <= *bound)
            .unwrap_or(SIZE_BUCKETS.len());
        bump(&self.buckets[bucket], 1);
        bump(&self.sum, size);
    }

    pub fn read(&self) -> SizeCounts {
        SizeCounts {
            buckets: std::array::from_fn(|i| get(&self.buckets[i])),
            sum: get(&self.sum),
        }
    }
}

/// A [`SizeHistogram`] read at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SizeCounts {
    pub buckets: [u64; SIZE_BUCKETS.len() + 1],
    pub sum: u64,
}

impl SizeCounts {
    pub fn add(&mut self, o: &SizeCounts) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.sum += o.sum;
    }
}

/// What the management API reports of a channel's counters, read at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageCounts {
    pub publish: u64,
    pub publish_confirm: u64,
    pub confirm: u64,
    pub return_unroutable: u64,
    pub drop_unroutable: u64,
    pub deliver: u64,
    pub deliver_no_ack: u64,
    pub get: u64,
    pub get_no_ack: u64,
    pub get_empty: u64,
    pub ack: u64,
    pub redeliver: u64,
}

impl MessageCounts {
    pub fn add(&mut self, o: &MessageCounts) {
        self.publish += o.publish;
        self.publish_confirm += o.publish_confirm;
        self.confirm += o.confirm;
        self.return_unroutable += o.return_unroutable;
        self.drop_unroutable += o.drop_unroutable;
        self.deliver += o.deliver;
        self.deliver_no_ack += o.deliver_no_ack;
        self.get += o.get;
        self.get_no_ack += o.get_no_ack;
        self.get_empty += o.get_empty;
        self.ack += o.ack;
        self.redeliver += o.redeliver;
    }
}

impl From<QueueMessageStats> for MessageCounts {
    fn from(q: QueueMessageStats) -> Self {
        MessageCounts {
            publish: q.publish,
            deliver: q.deliver,
            deliver_no_ack: q.deliver_no_ack,
            get: q.get,
            get_no_ack: q.get_no_ack,
            ack: q.ack,
            redeliver: q.redeliver,
            ..Default::default()
        }
    }
}

impl ChannelStats {
    pub fn counts(&self) -> MessageCounts {
        MessageCounts {
            publish: get(&self.publish),
            publish_confirm: get(&self.publish_confirm),
            confirm: get(&self.confirm),
            return_unroutable: get(&self.return_unroutable),
            drop_unroutable: get(&self.drop_unroutable),
            deliver: get(&self.deliver),
            deliver_no_ack: get(&self.deliver_no_ack),
            get: get(&self.get),
            get_no_ack: get(&self.get_no_ack),
            get_empty: get(&self.get_empty),
            ack: get(&self.ack),
            redeliver: get(&self.redeliver),
        }
    }
}

/// A connection's byte and frame counters, written by its task.
#[derive(Default)]
pub struct ConnectionStats {
    pub recv_oct: AtomicU64,
    pub recv_cnt: AtomicU64,
    pub send_oct: AtomicU64,
    pub send_cnt: AtomicU64,
}

/// Object churn since the process started (RabbitMQ's `churn_rates` and the Prometheus
/// `*_opened_total`/`*_closed_total` counters), process-wide.
#[derive(Default)]
pub struct Churn {
    pub connection_created: AtomicU64,
    pub connection_closed: AtomicU64,
    pub channel_created: AtomicU64,
    pub channel_closed: AtomicU64,
    pub queue_declared: AtomicU64,
    pub queue_created: AtomicU64,
    pub queue_deleted: AtomicU64,
}

pub static CHURN: Churn = Churn {
    connection_created: AtomicU64::new(0),
    connection_closed: AtomicU64::new(0),
    channel_created: AtomicU64::new(0),
    channel_closed: AtomicU64::new(0),
    queue_declared: AtomicU64::new(0),
    queue_created: AtomicU64::new(0),
    queue_deleted: AtomicU64::new(0),
};

/// Counts one event of `counter` (shared by many threads; churn is rare).
pub fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_into_rabbitmqs_buckets() {
        let h = SizeHistogram::default();
        for size in [0, 100, 101, 1_000_000, 100_000_001] {
            h.observe(size);
        }
        let c = h.read();
        assert_eq!(c.buckets, [2, 1, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(c.sum, 101_000_202);
    }

    #[test]
    fn striped_counter_sums_every_thread() {
        let c = std::sync::Arc::new(StripedCounter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.sum(), 4000);
    }
}
