//! Shared counters and latency histograms.
//!
//! Hot paths never touch these per message: producers add a whole batch to
//! a counter at once, and a connection's reader adds up everything it
//! parsed from one read (counts, and latency samples recorded under one lock).
//! Latencies are in microseconds, taken from a monotonic clock whose epoch
//! ([`Stats::epoch`]) is shared by all producers and consumers of the process.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Largest latency tracked: 1 hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A fresh latency histogram (µs, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
    })
}

/// Counters and histograms of one run.
pub struct Stats {
    /// Timestamps in bodies are nanoseconds since this instant.
    pub epoch: Instant,
    /// Messages handed to the socket writer.
    pub published: AtomicU64,
    /// Publisher confirms (acks) received.
    pub confirmed: AtomicU64,
    /// Negative confirms received.
    pub nacked: AtomicU64,
    /// `basic.return`s received.
    pub returned: AtomicU64,
    /// Deliveries received (complete messages).
    pub consumed: AtomicU64,
    /// Body bytes of those deliveries.
    pub consumed_bytes: AtomicU64,
    /// [`Stats::now_ns`] of the last delivery (0 = none yet).
    pub last_consume_ns: AtomicU64,
    /// [`Stats::now_ns`] of the last confirm (0 = none yet).
    pub last_confirm_ns: AtomicU64,
    /// Latencies since the last progress tick.
    pub interval: Mutex<Histogram<u64>>,
    /// Latencies of every completed tick.
    pub total: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Zeroed counters, epoch now.
    pub fn new() -> Stats {
        Stats {
            epoch: Instant::now(),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            last_consume_ns: AtomicU64::new(0),
            last_confirm_ns: AtomicU64::new(0),
            interval: Mutex::new(new_histogram()),
            total: Mutex::new(new_histogram()),
        }
    }

    /// Nanoseconds since the epoch (at least 1, so 0 can mean "never").
    pub fn now_ns(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    /// Record a batch of latency samples (µs) under one lock.
    pub fn record_latencies(&self, samples: &[u64]) {
        if samples.is_empty() {
            return;
        }
        let mut h = match self.interval.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        for &us in samples {
            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }

    /// Summarize and clear the interval histogram, folding it into the total.
    pub fn roll_interval(&self) -> Option<LatencySummary> {
        let mut iv = match self.interval.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let summary = summarize(&iv);
        let mut total = match self.total.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let _ = total.add(&*iv);
        iv.reset();
        summary
    }

    /// Summary of every latency folded in so far.
    pub fn total_latency(&self) -> Option<LatencySummary> {
        let total = match self.total.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        summarize(&total)
    }

    /// Load a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Percentiles of a µs histogram, in ms; `None` if it is empty.
pub fn summarize(h: &Histogram<u64>) -> Option<LatencySummary> {
    if h.is_empty() {
        return None;
    }
    Some(LatencySummary {
        count: h.len(),
        min: ms(h.min()),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    })
}

/// Percentiles of a plain list of durations in ms (for connection open
/// times): mean, p50, p99, max.
pub fn summarize_ms(samples: &[f64]) -> Option<(f64, f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    Some((mean, at(0.5), at(0.99), v[v.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_summary() {
        let mut h = new_histogram();
        assert!(summarize(&h).is_none());
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let s = summarize(&h).unwrap();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 0.5).abs() < 0.002, "{s:?}");
        assert!((s.p95 - 0.95).abs() < 0.002, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.002, "{s:?}");
        assert!((s.max - 1.0).abs() < 0.002, "{s:?}");
        assert!((s.mean - 0.5005).abs() < 0.002, "{s:?}");
        assert_eq!(s.min, 0.001);
    }

    #[test]
    fn interval_rolls_into_total() {
        let st = Stats::new();
        st.record_latencies(&[100, 200, 300, 0, u64::MAX]);
        let iv = st.roll_interval().unwrap();
        assert_eq!(iv.count, 5);
        assert!(st.roll_interval().is_none());
        st.record_latencies(&[1000]);
        st.roll_interval();
        let t = st.total_latency().unwrap();
        assert_eq!(t.count, 6);
        assert!(t.max >= 3_600_000.0 * 0.999);
    }

    #[test]
    fn plain_percentiles() {
        assert!(summarize_ms(&[]).is_none());
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let (mean, p50, p99, max) = summarize_ms(&v).unwrap();
        assert_eq!((mean, p50, p99, max), (50.5, 50.0, 99.0, 100.0));
        assert_eq!(summarize_ms(&[3.0]).unwrap(), (3.0, 3.0, 3.0, 3.0));
    }
}
