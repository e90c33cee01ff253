//! The client's estimate of the conductor's band time: from datagram ping/pong samples, each
//! giving a round trip and an offset (`replier + rtt / 2 - received`, in microseconds), the
//! median offset of the last [`WINDOW`] samples, the way Link estimates its clock offset.
//!
//! Thread: shared behind a mutex between the client's driver (samples) and its caller (reads).

use std::collections::VecDeque;
use std::time::Duration;

/// How many samples are kept.
pub const WINDOW: usize = 64;

/// The samples. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct OffsetEstimator {
    samples: VecDeque<(i64, u64)>,
}

impl OffsetEstimator {
    /// Takes a pong: sent at `sent_us` and received at `received_us` on the local clock, answered
    /// at `replier_us` of band time. A pong from the future (received before sent) is ignored.
    pub fn sample(&mut self, sent_us: u64, received_us: u64, replier_us: u64) {
        let Some(rtt) = received_us.checked_sub(sent_us) else { return };
        let offset = replier_us as i64 + (rtt / 2) as i64 - received_us as i64;
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((offset, rtt));
    }

    /// How many samples are held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn sorted_offsets(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.samples.iter().map(|s| s.0).collect();
        v.sort_unstable();
        v
    }

    /// The median offset (band time minus local time), microseconds.
    pub fn offset_us(&self) -> Option<i64> {
        let v = self.sorted_offsets();
        (!v.is_empty()).then(|| v[v.len() / 2])
    }

    /// The spread of the offsets: their interquartile range (how far the middle half of the
    /// samples disagree).
    pub fn spread(&self) -> Option<Duration> {
        let v = self.sorted_offsets();
        (!v.is_empty()).then(|| Duration::from_micros((v[v.len() * 3 / 4] - v[v.len() / 4]).unsigned_abs()))
    }

    /// The median round trip.
    pub fn rtt(&self) -> Option<Duration> {
        let mut v: Vec<u64> = self.samples.iter().map(|s| s.1).collect();
        v.sort_unstable();
        (!v.is_empty()).then(|| Duration::from_micros(v[v.len() / 2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_outliers_and_the_window_slides() {
        let mut e = OffsetEstimator::default();
        assert_eq!(e.offset_us(), None);
        // Band time is local + 1_000_000; round trips of 200 us, one delayed by 50 ms.
        for i in 0..20u64 {
            let sent = i * 1000;
            let rtt = if i == 7 { 50_000 } else { 200 };
            e.sample(sent, sent + rtt, sent + 1_000_000 + 100);
        }
        assert_eq!(e.offset_us(), Some(1_000_000));
        assert_eq!(e.rtt(), Some(Duration::from_micros(200)));
        assert!(e.spread().unwrap() < Duration::from_micros(10));
        for i in 0..WINDOW as u64 {
            e.sample(i, i + 100, i + 5_000_050);
        }
        assert_eq!(e.len(), WINDOW);
        assert_eq!(e.offset_us(), Some(5_000_000));
    }
}
