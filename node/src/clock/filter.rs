//! [`HostTimeFilter`]: a realtime-safe linear regression from sample time to host time.
//!
//! An audio callback's entry time jitters by the scheduler's wake-up latency (tens of µs to a few
//! ms on a loaded machine), while the device plays its samples at a perfectly regular rate. Ableton
//! recommends fitting a line through recent `(sample time, host time)` pairs and reading the host
//! time of a block off that line (Link's `HostTimeFilter`, LinkHut's audio engine). This one keeps
//! the last [`WINDOW`] points in a fixed array, so it never allocates, and fits in two passes
//! around the means, so it stays exact after days of samples.
//!
//! A point far off the line (a device change, a stall the device did not make up, a clock step)
//! restarts the fit from that point rather than bending the line for the next few seconds.

/// Points in the regression window (Link uses the same number).
pub const WINDOW: usize = 512;

/// A point this far (µs) from the current line restarts the fit.
pub const RESET_MICROS: f64 = 2_000.0;

/// Points needed before the slope is fitted; until then the nominal slope is used.
const MIN_FIT: usize = 16;

/// Sample time to host time, fitted over the last [`WINDOW`] blocks.
///
/// Thread: audio (owned by the callback). Realtime-safe: no allocation, lock or system call.
#[derive(Debug, Clone)]
pub struct HostTimeFilter {
    /// `(sample - origin_sample, host - origin_host)` ring.
    points: [(f64, f64); WINDOW],
    len: usize,
    next: usize,
    origin_sample: i64,
    origin_host: f64,
    /// Microseconds per sample at the nominal rate.
    nominal: f64,
    /// The current line: host = intercept + slope * (sample - origin_sample) + origin_host.
    slope: f64,
    intercept: f64,
    resets: u64,
}

impl HostTimeFilter {
    /// An empty filter for a device at `sample_rate` Hz.
    pub fn new(sample_rate: u32) -> HostTimeFilter {
        let nominal = 1e6 / sample_rate.max(1) as f64;
        HostTimeFilter {
            points: [(0.0, 0.0); WINDOW],
            len: 0,
            next: 0,
            origin_sample: 0,
            origin_host: 0.0,
            nominal,
            slope: nominal,
            intercept: 0.0,
            resets: 0,
        }
    }

    /// Forgets every point (the next one starts a new line).
    pub fn reset(&mut self) {
        self.len = 0;
        self.next = 0;
        self.slope = self.nominal;
        self.intercept = 0.0;
    }

    /// Times the fit restarted because a point was more than [`RESET_MICROS`] off the line.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Microseconds per sample on the current line.
    pub fn micros_per_sample(&self) -> f64 {
        self.slope
    }

    /// The host time of `sample` on the current line (extrapolated if need be).
    pub fn host_of(&self, sample: i64) -> f64 {
        self.origin_host + self.intercept + self.slope * (sample - self.origin_sample) as f64
    }

    /// Adds the measured host time `host` (µs) of sample `sample` and returns the filtered host
    /// time of that sample.
    pub fn update(&mut self, sample: i64, host: f64) -> f64 {
        if self.len > 0 && (self.host_of(sample) - host).abs() > RESET_MICROS {
            self.resets += 1;
            self.reset();
        }
        if self.len == 0 {
            self.origin_sample = sample;
            self.origin_host = host;
        }
        let x = (sample - self.origin_sample) as f64;
        let y = host - self.origin_host;
        self.points[self.next] = (x, y);
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.fit();
        self.host_of(sample)
    }

    fn fit(&mut self) {
        let pts = &self.points[..self.len];
        let n = pts.len() as f64;
        let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let mut slope = self.nominal;
        if self.len >= MIN_FIT {
            let (mut sxx, mut sxy) = (0.0, 0.0);
            for (x, y) in pts {
                let dx = x - mx;
                sxx += dx * dx;
                sxy += dx * (y - my);
            }
            // A device is within a few hundred ppm of its nominal rate; anything else is noise.
            if sxx > 0.0 {
                let fitted = sxy / sxx;
                if (fitted / self.nominal - 1.0).abs() < 0.01 {
                    slope = fitted;
                }
            }
        }
        self.slope = slope;
        self.intercept = my - slope * mx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_averaged_out_and_the_rate_is_found() {
        // A device 50 ppm fast at 48 kHz, 256-frame blocks, callbacks jittering by up to ±400 µs.
        let mut f = HostTimeFilter::new(48_000);
        let us_per_sample = 1e6 / 48_000.0 * (1.0 - 50e-6);
        let t0 = 5_000_000_000.0;
        let mut worst = 0f64;
        for k in 0..5_000i64 {
            let s = k * 256;
            let truth = t0 + s as f64 * us_per_sample;
            let jitter = ((k * 7919) % 801 - 400) as f64;
            let got = f.update(s, truth + jitter);
            if k > 1_000 {
                worst = worst.max((got - truth).abs());
            }
        }
        assert!(worst < 60.0, "filtered host time off by {worst} µs");
        assert!((f.micros_per_sample() / us_per_sample - 1.0).abs() < 2e-5, "slope {}", f.micros_per_sample());
        assert_eq!(f.resets(), 0);
    }

    #[test]
    fn a_step_restarts_the_fit_at_once() {
        let mut f = HostTimeFilter::new(48_000);
        for k in 0..100i64 {
            f.update(k * 480, k as f64 * 10_000.0);
        }
        // The device changed: the same samples now come 50 ms later.
        let got = f.update(100 * 480, 100.0 * 10_000.0 + 50_000.0);
        assert_eq!(got, 1_050_000.0);
        assert_eq!(f.resets(), 1);
        assert!((f.host_of(101 * 480) - 1_060_000.0).abs() < 1e-6);
    }
}
