//! Round-trip estimation (RFC 6298's smoothed round trip and variation), from which the
//! conductor derives each node's resend timeout and the band's lead.
//!
//! Thread: Pure state: any thread, no clock (samples are given).

use std::time::Duration;

/// A smoothed round trip and its variation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    samples: u64,
}

impl RttEstimator {
    /// An estimator that assumes `initial` until the first sample.
    pub fn new(initial: Duration) -> RttEstimator {
        RttEstimator { srtt: initial, rttvar: initial / 2, samples: 0 }
    }

    /// Takes one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        if self.samples == 0 {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
        } else {
            let diff = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + rtt) / 8;
        }
        self.samples += 1;
    }

    /// The smoothed round trip.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// How long to wait for an acknowledgement before sending again: the smoothed round trip
    /// plus four times its variation (the round trip plus jitter), at least `floor`.
    pub fn timeout(&self, floor: Duration) -> Duration {
        (self.srtt + self.rttvar * 4).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_widens_the_timeout() {
        let ms = Duration::from_millis;
        let mut steady = RttEstimator::new(ms(300));
        let mut jittery = RttEstimator::new(ms(300));
        for i in 0..50 {
            steady.sample(ms(100));
            jittery.sample(ms(if i % 2 == 0 { 60 } else { 140 }));
        }
        assert!(steady.srtt().abs_diff(ms(100)) < ms(2), "{:?}", steady.srtt());
        assert!(steady.timeout(ms(20)) < ms(110));
        assert!(jittery.timeout(ms(20)) > ms(200), "{:?}", jittery.timeout(ms(20)));
        assert_eq!(RttEstimator::new(ms(1)).timeout(ms(20)), ms(20));
    }
}
