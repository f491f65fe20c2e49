//! Resource alarms, as RabbitMQ has them: when the broker's resident memory passes the high
//! watermark, or free disk space under the data directory drops below its limit (or the
//! store cannot write), publishing connections are blocked (`connection.blocked`, and their
//! sockets are not read) until the alarm clears; consumers keep draining.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Which alarms are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    pub memory: bool,
    pub disk: bool,
}

impl AlarmState {
    pub fn blocked(&self) -> bool {
        self.memory || self.disk
    }

    /// The reason sent in `connection.blocked`, as RabbitMQ words it.
    pub fn reason(&self) -> &'static str {
        match (self.memory, self.disk) {
            (true, true) => "low on memory and disk space",
            (true, false) => "low on memory",
            (false, true) => "low on disk space",
            (false, false) => "",
        }
    }
}

/// The alarm thresholds and the current state.
pub struct Alarms {
    state: watch::Sender<AlarmState>,
    memory_high_watermark: AtomicU64,
    disk_free_limit: AtomicU64,
}

impl Alarms {
    pub fn new(memory_high_watermark: u64, disk_free_limit: u64) -> Alarms {
        Alarms {
            state: watch::Sender::new(AlarmState::default()),
            memory_high_watermark: AtomicU64::new(memory_high_watermark),
            disk_free_limit: AtomicU64::new(disk_free_limit),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<AlarmState> {
        self.state.subscribe()
    }

    pub fn state(&self) -> AlarmState {
        *self.state.borrow()
    }

    pub fn set_memory_high_watermark(&self, bytes: u64) {
        self.memory_high_watermark.store(bytes, Ordering::Relaxed);
    }

    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn memory_high_watermark(&self) -> u64 {
        self.memory_high_watermark.load(Ordering::Relaxed)
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk_free_limit.load(Ordering::Relaxed)
    }

    /// Re-evaluates the alarms from fresh measurements; logs every change.
    pub fn update(
        &self,
        resident_bytes: Option<u64>,
        disk_free_bytes: Option<u64>,
        store_failed: bool,
    ) {
        let memory = resident_bytes.is_some_and(|r| r > self.memory_high_watermark());
        let disk = store_failed || disk_free_bytes.is_some_and(|f| f < self.disk_free_limit());
        let next = AlarmState { memory, disk };
        let previous = self.state();
        if next != previous {
            if next.memory != previous.memory {
                tracing::warn!(
                    on = next.memory,
                    resident_bytes,
                    high_watermark = self.memory_high_watermark(),
                    "memory alarm"
                );
            }
            if next.disk != previous.disk {
                tracing::warn!(
                    on = next.disk,
                    disk_free_bytes,
                    limit = self.disk_free_limit(),
                    store_failed,
                    "disk alarm"
                );
            }
            self.state.send_replace(next);
        }
    }
}

/// The process's resident set size, from /proc (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Total physical memory, from /proc (Linux).
pub fn total_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_switch_alarms_both_ways() {
        let a = Alarms::new(100, 10);
        let rx = a.subscribe();
        a.update(Some(50), Some(20), false);
        assert!(!rx.borrow().blocked());
        a.update(Some(150), Some(20), false);
        assert_eq!(a.state().reason(), "low on memory");
        a.update(Some(50), Some(5), false);
        assert_eq!(
            a.state(),
            AlarmState {
                memory: false,
                disk: true
            }
        );
        a.set_disk_free_limit(1);
        a.update(Some(50), Some(5), false);
        assert!(!a.state().blocked());
        a.update(Some(50), Some(5), true);
        assert!(a.state().disk, "a failing store raises the disk alarm");
        assert!(resident_bytes().unwrap_or(1) > 0);
    }
}
