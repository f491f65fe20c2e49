//! Prefetch credit: how many unacknowledged deliveries a consumer (and its channel, for
//! `basic.qos` with `global`) may hold. Queues take credit when they dispatch, from whatever
//! task is publishing; the consumer's channel returns it on ack. Atomics keep that cheap and
//! lock-free across tasks.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One limit and its current use. A limit of 0 means unlimited.
#[derive(Debug, Default)]
pub struct Credit {
    limit: AtomicU32,
    in_flight: AtomicU32,
    paused: AtomicBool,
}

impl Credit {
    pub fn new(limit: u32) -> Self {
        Credit {
            limit: AtomicU32::new(limit),
            in_flight: AtomicU32::new(0),
            paused: AtomicBool::new(false),
        }
    }

    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Stops (or resumes) all dispatch against this credit: `channel.flow`.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Takes one unit if the limit allows it.
    pub fn try_acquire(&self) -> bool {
        if self.is_paused() {
            return false;
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let limit = self.limit.load(Ordering::Acquire);
                (limit == 0 || used < limit).then_some(used + 1)
            })
            .is_ok()
    }

    /// Takes one unit whatever the limit (used to account deliveries that must happen).
    pub fn force_acquire(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub fn release(&self, n: u32) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// True when at least one more unit could be taken.
    pub fn has_room(&self) -> bool {
        let limit = self.limit();
        !self.is_paused() && (limit == 0 || self.in_flight() < limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_enforced_and_released() {
        let c = Credit::new(2);
        assert!(c.try_acquire());
        assert!(c.try_acquire());
        assert!(!c.try_acquire());
        c.release(1);
        assert!(c.try_acquire());
        c.release(5);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn zero_is_unlimited_and_pause_stops() {
        let c = Credit::new(0);
        for _ in 0..1000 {
            assert!(c.try_acquire());
        }
        c.set_paused(true);
        assert!(!c.try_acquire());
        assert!(!c.has_room());
    }
}
