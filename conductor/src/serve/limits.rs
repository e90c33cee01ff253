//! Per-connection rate limits: token buckets, refilled continuously. A connection's presses
//! beyond [`Limits::press_rate`] (burst [`Limits::press_burst`]) are refused as rate-limited;
//! its frames and datagrams beyond [`Limits::frame_rate`] (burst [`Limits::frame_burst`])
//! close it.
//!
//! Thread: each connection task owns its buckets.

use std::time::Instant;

/// The limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Presses per second, sustained.
    pub press_rate: f64,
    /// Presses allowed at once.
    pub press_burst: f64,
    /// Frames and datagrams per second, sustained.
    pub frame_rate: f64,
    /// Frames and datagrams allowed at once.
    pub frame_burst: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { press_rate: 50.0, press_burst: 100.0, frame_rate: 2000.0, frame_burst: 4000.0 }
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket { rate, burst, tokens: burst, last: now }
    }

    /// Takes a token at `now`; `false` if there is none.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(50.0, 100.0, t0);
        assert_eq!((0..150).filter(|_| b.take(t0)).count(), 100);
        // One second later: 50 more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..150).filter(|_| b.take(t1)).count(), 50);
    }
}
