//! A token bucket that hands out publish permits in batches.
//!
//! Tokens accrue continuously at `rate` per second up to `burst`; a producer
//! takes as many whole tokens as it can use at once (one write), and when none
//! is available learns how long to sleep for the next one. Because the
//! fractional remainder is kept, the long-run rate is exact even when the
//! timer wakes late: a late wake simply finds more tokens (up to the burst).

use std::time::{Duration, Instant};

/// Batching token bucket. Time is passed in so it can be tested without sleeping.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket for `rate` tokens per second (must be > 0) that starts empty
    /// at `now`. The burst is 50 ms worth of tokens (at least 1): enough to
    /// absorb the timer's ~1 ms granularity and the scheduling stalls of a
    /// busy machine without losing rate, small enough that a stall does not
    /// turn into a large burst.
    pub fn new(rate: f64, now: Instant) -> TokenBucket {
        let burst = (rate * 0.050).max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: 0.0,
            last: now,
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The bucket capacity.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Return `n` tokens taken but not used (e.g. no confirm-window room).
    pub fn give_back(&mut self, n: u64) {
        self.tokens += n as f64;
    }

    /// Take up to `max` whole tokens. Returns `Ok(n)` with `n >= 1`, or
    /// `Err(wait)`: the time until the next token.
    pub fn take(&mut self, max: u64, now: Instant) -> Result<u64, Duration> {
        self.refill(now);
        let whole = self.tokens.floor();
        if whole < 1.0 || max == 0 {
            let missing = 1.0 - self.tokens;
            let wait = (missing / self.rate).max(0.0);
            return Err(Duration::from_secs_f64(wait).max(Duration::from_micros(50)));
        }
        let n = (whole as u64).min(max);
        self.tokens -= n as f64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulate a producer that sleeps exactly as told, with the timer
    /// waking `lateness` late each time, for `secs` simulated seconds.
    fn simulate(rate: f64, lateness: Duration, secs: f64) -> (u64, u64) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut b = TokenBucket::new(rate, now);
        let end = t0 + Duration::from_secs_f64(secs);
        let (mut sent, mut batches) = (0u64, 0u64);
        while now < end {
            match b.take(1000, now) {
                Ok(n) => {
                    sent += n;
                    batches += 1;
                }
                Err(wait) => now += wait + lateness,
            }
        }
        (sent, batches)
    }

    #[test]
    fn exact_rate_with_late_timer() {
        for &(rate, late_us) in &[
            (1_000.0, 900u64),
            (10_000.0, 1_000),
            (100_000.0, 1_000),
            (7.0, 0),
        ] {
            let (sent, _) = simulate(rate, Duration::from_micros(late_us), 10.0);
            let expect = rate * 10.0;
            let err = (sent as f64 - expect).abs();
            assert!(
                err <= (expect * 0.01).max(1.0),
                "rate {rate}: sent {sent}, expected {expect}"
            );
        }
    }

    #[test]
    fn batches_at_high_rates() {
        let (sent, batches) = simulate(100_000.0, Duration::from_micros(1_000), 1.0);
        assert!(sent / batches >= 50, "{sent} in {batches} batches");
    }

    #[test]
    fn starts_empty_and_caps_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000.0, t0);
        assert!(b.take(10, t0).is_err());
        // after a long stall, at most the burst (50 ms worth = 50 tokens)
        let n = b.take(u64::MAX, t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(n, 50);
        assert_eq!(b.burst(), 50.0);
        // the wait reported is the time to the next token
        let w = b.take(1, t0 + Duration::from_secs(5)).unwrap_err();
        assert!(
            w <= Duration::from_millis(1) && w >= Duration::from_micros(50),
            "{w:?}"
        );
        assert!(b.take(0, t0 + Duration::from_secs(6)).is_err());
    }
}
