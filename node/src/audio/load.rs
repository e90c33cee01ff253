//! DSP load and deadline health of the audio callback, measured on the audio thread and read by
//! any other thread, without allocation, locks or formatting on the audio side.
//!
//! **Load** is the callback's processing time over its block period (`frames / sample_rate`):
//! 50 % means the callback used half the time it had; above 100 % it cannot keep up. Each
//! backend takes `Instant::now()` (a vDSO call, no syscall) before and after the render and calls
//! [`LoadMeter::record`]. The meter keeps, all in atomics written by the audio thread alone:
//!
//! - a **smoothed** load: an exponential moving average with time constant [`SMOOTHING`]
//!   (300 ms), weighted by each block's period so it means the same at any block size;
//! - a **held peak**: the largest load of the last [`PEAK_HOLD`] (2 s). A block whose load is at
//!   least the held peak replaces it; otherwise the peak stays until it is older than the hold
//!   time, then the next block's load replaces it. Reading does not reset it, so any number of
//!   readers see the same value (the status line and the log need not coordinate);
//! - a **histogram** of every block's load in fixed buckets of [`BUCKET`] (0.1 percentage point)
//!   up to [`HIST_MAX`] (200 %), plus one bucket for everything above, from which
//!   [`LoadStats`] reads p50 and p99 (the upper edge of the bucket holding that rank, so a
//!   percentile is never reported lower than it was), and the exact **maximum**;
//! - counts of **deadline misses** and **late starts**, which the backend decides (see
//!   [`crate::audio::null`] and [`crate::audio::device`] for what each means there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time constant of the smoothed load.
pub const SMOOTHING: Duration = Duration::from_millis(300);
/// How long the peak is held.
pub const PEAK_HOLD: Duration = Duration::from_secs(2);
/// Width of a histogram bucket, as a load fraction (0.001 = 0.1 %).
pub const BUCKET: f64 = 0.001;
/// The largest load the histogram resolves (2.0 = 200 %); higher loads share the last bucket.
pub const HIST_MAX: f64 = 2.0;
/// Buckets of the histogram, the overflow bucket included.
pub const BUCKETS: usize = (HIST_MAX / BUCKET) as usize + 1;

/// The load meter of one audio callback. Written by the audio thread ([`LoadMeter::record`],
/// [`LoadMeter::miss`], [`LoadMeter::late_start`]); read by any thread ([`LoadMeter::stats`]).
#[derive(Debug)]
pub struct LoadMeter {
    origin: Instant,
    /// Smoothed load, `f64` bits.
    smoothed: AtomicU64,
    /// Held peak load, `f64` bits, and when it was set (ns since `origin`).
    peak: AtomicU64,
    peak_at: AtomicU64,
    /// Largest load, `f64` bits.
    max: AtomicU64,
    /// Sum of all loads, `f64` bits (for the mean).
    sum: AtomicU64,
    blocks: AtomicU64,
    misses: AtomicU64,
    late_starts: AtomicU64,
    slow_misses: AtomicU64,
    hist: Box<[AtomicU64]>,
}

impl Default for LoadMeter {
    fn default() -> Self {
        LoadMeter::new()
    }
}

/// What a [`LoadMeter`] has seen, as fractions (1.0 = the whole block period).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadStats {
    /// Blocks measured.
    pub blocks: u64,
    /// Smoothed load ([`SMOOTHING`]).
    pub smoothed: f64,
    /// Held peak ([`PEAK_HOLD`]).
    pub peak: f64,
    /// Median load (upper edge of its histogram bucket).
    pub p50: f64,
    /// 99th percentile of the load (upper edge of its histogram bucket).
    pub p99: f64,
    /// Largest load.
    pub max: f64,
    /// Mean load.
    pub mean: f64,
    /// Deadline misses counted by the backend.
    pub misses: u64,
    /// Late starts counted by the backend.
    pub late_starts: u64,
    /// Deadline misses whose callback itself ran longer than half a block period (the others
    /// started too late: the thread woke late or the machine stalled before the callback).
    pub slow_misses: u64,
}

impl LoadMeter {
    /// An empty meter. Thread: control (allocates the histogram).
    pub fn new() -> LoadMeter {
        LoadMeter {
            origin: Instant::now(),
            smoothed: AtomicU64::new(0f64.to_bits()),
            peak: AtomicU64::new(0f64.to_bits()),
            peak_at: AtomicU64::new(0),
            max: AtomicU64::new(0f64.to_bits()),
            sum: AtomicU64::new(0f64.to_bits()),
            blocks: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            late_starts: AtomicU64::new(0),
            slow_misses: AtomicU64::new(0),
            hist: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one callback that was busy for `busy` of its block `period`, finishing at `now`.
    ///
    /// Thread: audio (one writer). Realtime-safe: atomics and arithmetic only.
    pub fn record(&self, busy: Duration, period: Duration, now: Instant) {
        let period_s = period.as_secs_f64();
        let load = if period_s > 0.0 { busy.as_secs_f64() / period_s } else { 0.0 };
        let load_of = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        let blocks = self.blocks.load(Ordering::Relaxed);
        // Exponential smoothing over time: a block of period p moves the average by
        // 1 - exp(-p / tau) of the way to its load. The first block starts it.
        let smoothed = if blocks == 0 {
            load
        } else {
            let alpha = 1.0 - (-period_s / SMOOTHING.as_secs_f64()).exp();
            let s = load_of(&self.smoothed);
            s + alpha * (load - s)
        };
        self.smoothed.store(smoothed.to_bits(), Ordering::Relaxed);
        let at = now.saturating_duration_since(self.origin).as_nanos().min(u64::MAX as u128) as u64;
        let held_since = self.peak_at.load(Ordering::Relaxed);
        let expired = at.saturating_sub(held_since) > PEAK_HOLD.as_nanos() as u64;
        if blocks == 0 || expired || load >= load_of(&self.peak) {
            self.peak.store(load.to_bits(), Ordering::Relaxed);
            self.peak_at.store(at, Ordering::Relaxed);
        }
        if load > load_of(&self.max) {
            self.max.store(load.to_bits(), Ordering::Relaxed);
        }
        self.sum.store((load_of(&self.sum) + load).to_bits(), Ordering::Relaxed);
        self.hist[bucket_of(load)].fetch_add(1, Ordering::Relaxed);
        self.blocks.store(blocks + 1, Ordering::Release);
    }

    /// Counts a deadline miss. Thread: audio. Realtime-safe.
    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a deadline miss whose callback itself ran longer than half a block period (also
    /// count it with [`LoadMeter::miss`]). Thread: audio. Realtime-safe.
    pub fn slow_miss(&self) {
        self.slow_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a late start. Thread: audio. Realtime-safe.
    pub fn late_start(&self) {
        self.late_starts.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds everything `other` has seen to this meter, as if its blocks had been recorded here
    /// (histogram, maximum, mean, misses, late starts; the smoothed value and the held peak
    /// are left alone). For a benchmark that measures one configuration in several runs.
    ///
    /// Thread: control, while no audio thread writes either meter.
    pub fn absorb(&self, other: &LoadMeter) {
        self.absorb_since(other, &LoadMeter::new());
    }

    /// A copy of what the meter has seen so far (to pass to [`LoadMeter::absorb_since`] later).
    /// Thread: control (allocates).
    pub fn copy(&self) -> LoadMeter {
        let copy = LoadMeter::new();
        copy.absorb(self);
        copy
    }

    /// Adds what `other` has seen since `before` (an earlier [`LoadMeter::copy`] of it) to this
    /// meter: a benchmark leaves out each run's warm-up this way. The maximum of that stretch is
    /// `other`'s maximum if it rose after `before`, else the upper edge of the highest bucket
    /// that grew (for the overflow bucket, the earlier maximum: an upper bound).
    ///
    /// Thread: control, while no audio thread writes this meter.
    pub fn absorb_since(&self, other: &LoadMeter, before: &LoadMeter) {
        let load_of = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        let mut top = None;
        for (i, ((mine, now), then)) in self.hist.iter().zip(other.hist.iter()).zip(before.hist.iter()).enumerate() {
            let grew = now.load(Ordering::Relaxed).saturating_sub(then.load(Ordering::Relaxed));
            if grew > 0 {
                mine.fetch_add(grew, Ordering::Relaxed);
                top = Some(i);
            }
        }
        let (max_now, max_then) = (load_of(&other.max), load_of(&before.max));
        let max = match top {
            _ if max_now > max_then => max_now,
            Some(i) if i + 1 < BUCKETS => upper_edge(i).min(max_now),
            Some(_) => max_now,
            None => 0.0,
        };
        if max > load_of(&self.max) {
            self.max.store(max.to_bits(), Ordering::Relaxed);
        }
        let sum = (load_of(&other.sum) - load_of(&before.sum)).max(0.0);
        self.sum.store((load_of(&self.sum) + sum).to_bits(), Ordering::Relaxed);
        let blocks = other.blocks.load(Ordering::Acquire).saturating_sub(before.blocks.load(Ordering::Acquire));
        self.blocks.fetch_add(blocks, Ordering::Release);
        self.misses.fetch_add(other.misses().saturating_sub(before.misses()), Ordering::Relaxed);
        self.late_starts.fetch_add(other.late_starts().saturating_sub(before.late_starts()), Ordering::Relaxed);
        let slow = other.slow_misses.load(Ordering::Relaxed).saturating_sub(before.slow_misses.load(Ordering::Relaxed));
        self.slow_misses.fetch_add(slow, Ordering::Relaxed);
    }

    /// Deadline misses so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Late starts so far.
    pub fn late_starts(&self) -> u64 {
        self.late_starts.load(Ordering::Relaxed)
    }

    /// What the meter has seen so far. Any thread; does not allocate (the histogram is scanned in
    /// place). While the audio thread writes, the figures may be one block apart.
    pub fn stats(&self) -> LoadStats {
        let load_of = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        let blocks = self.blocks.load(Ordering::Acquire);
        let counted: u64 = self.hist.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        LoadStats {
            blocks,
            smoothed: load_of(&self.smoothed),
            peak: load_of(&self.peak),
            p50: self.percentile(counted, 0.50),
            p99: self.percentile(counted, 0.99),
            max: load_of(&self.max),
            mean: if blocks > 0 { load_of(&self.sum) / blocks as f64 } else { 0.0 },
            misses: self.misses(),
            late_starts: self.late_starts(),
            slow_misses: self.slow_misses.load(Ordering::Relaxed),
        }
    }

    /// The load below or at which a fraction `q` of the `counted` blocks fall: the upper edge of
    /// the bucket holding rank `ceil(q * counted)`, but never above the maximum; the overflow
    /// bucket reports the maximum.
    fn percentile(&self, counted: u64, q: f64) -> f64 {
        if counted == 0 {
            return 0.0;
        }
        let rank = ((q * counted as f64).ceil() as u64).clamp(1, counted);
        let mut seen = 0;
        for (i, b) in self.hist.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let max = f64::from_bits(self.max.load(Ordering::Relaxed));
                // No block loaded more than the maximum, so the bucket's edge is capped there:
                // a p50 or p99 above the max would be a contradiction in the summary.
                return if i + 1 == BUCKETS { max } else { upper_edge(i).min(max) };
            }
        }
        f64::from_bits(self.max.load(Ordering::Relaxed))
    }
}

/// The histogram bucket of a load.
fn bucket_of(load: f64) -> usize {
    if load.is_nan() || load <= 0.0 {
        return 0;
    }
    // Bucket i holds (i * BUCKET, (i + 1) * BUCKET]; exact multiples go to the lower bucket.
    let i = (load / BUCKET).ceil() as usize;
    i.saturating_sub(1).min(BUCKETS - 1)
}

fn upper_edge(i: usize) -> f64 {
    // Divided rather than multiplied, so that 13 buckets read 0.013, not 0.013000000000000001.
    (i + 1) as f64 / (1.0 / BUCKET).round()
}

/// Times one callback: `Instant::now()` before the render, and [`CallbackTimer::finish`] after
/// it records the load into a meter.
#[derive(Debug, Clone, Copy)]
pub struct CallbackTimer {
    started: Instant,
}

impl CallbackTimer {
    /// Starts timing. Thread: audio. Realtime-safe (a vDSO clock read).
    pub fn start() -> CallbackTimer {
        CallbackTimer { started: Instant::now() }
    }

    /// When the callback started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records the callback's load for a block of `frames` at `sample_rate` into `meter`, and
    /// returns when it finished. Thread: audio. Realtime-safe.
    pub fn finish(self, meter: &LoadMeter, frames: usize, sample_rate: u32) -> Instant {
        let done = Instant::now();
        meter.record(done - self.started, block_period(frames, sample_rate), done);
        done
    }
}

/// The period of a block of `frames` at `sample_rate`, in whole nanoseconds.
pub fn block_period(frames: usize, sample_rate: u32) -> Duration {
    Duration::from_nanos((frames as u128 * 1_000_000_000 / sample_rate.max(1) as u128).min(u64::MAX as u128) as u64)
}

/// A load fraction as a percentage for messages, e.g. `12.3%`.
pub fn percent(load: f64) -> String {
    format!("{:.1}%", load * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `n` blocks of `period` with `busy` each, the clock advancing one period per block.
    fn feed(m: &LoadMeter, t: &mut Instant, n: usize, busy: Duration, period: Duration) {
        for _ in 0..n {
            *t += period;
            m.record(busy, period, *t);
        }
    }

    #[test]
    fn load_is_busy_time_over_the_period() {
        let m = LoadMeter::new();
        let mut t = m.origin;
        feed(&m, &mut t, 1, Duration::from_micros(250), MS);
        let s = m.stats();
        assert_eq!(s.blocks, 1);
        assert!((s.smoothed - 0.25).abs() < 1e-12 && (s.peak - 0.25).abs() < 1e-12 && (s.max - 0.25).abs() < 1e-12);
        // A callback that takes longer than its period is over 100 %.
        feed(&m, &mut t, 1, 3 * MS, MS);
        assert!((m.stats().max - 3.0).abs() < 1e-12);
        assert_eq!(block_period(128, 48_000), Duration::from_nanos(2_666_666));
    }

    #[test]
    fn smoothing_follows_a_step_with_a_300_ms_time_constant() {
        let m = LoadMeter::new();
        let mut t = m.origin;
        feed(&m, &mut t, 1, Duration::ZERO, MS);
        // A step from 0 % to 50 %: after one time constant the average has covered 1 - 1/e.
        feed(&m, &mut t, 300, MS / 2, MS);
        let want = 0.5 * (1.0 - (-1.0f64).exp());
        let got = m.stats().smoothed;
        assert!((got - want).abs() < 1e-3, "after 300 ms: {got}, want {want}");
        // The same time at another block size gives the same value.
        let m2 = LoadMeter::new();
        let mut t2 = m2.origin;
        feed(&m2, &mut t2, 1, Duration::ZERO, 3 * MS);
        feed(&m2, &mut t2, 100, 3 * MS / 2, 3 * MS);
        assert!((m2.stats().smoothed - got).abs() < 1e-9, "{} vs {got}", m2.stats().smoothed);
        // And it converges.
        feed(&m, &mut t, 5000, MS / 2, MS);
        assert!((m.stats().smoothed - 0.5).abs() < 1e-6);
    }

    #[test]
    fn the_peak_is_held_for_two_seconds_then_follows_the_load() {
        let m = LoadMeter::new();
        let mut t = m.origin;
        feed(&m, &mut t, 10, MS / 10, MS);
        feed(&m, &mut t, 1, MS * 9 / 10, MS); // one 90 % block
        feed(&m, &mut t, 1990, MS / 10, MS); // 1.99 s of 10 %
        assert!((m.stats().peak - 0.9).abs() < 1e-12, "held: {}", m.stats().peak);
        // Reading does not reset it.
        assert!((m.stats().peak - 0.9).abs() < 1e-12);
        feed(&m, &mut t, 20, MS / 10, MS); // past 2 s: the peak follows the load again
        assert!((m.stats().peak - 0.1).abs() < 1e-12, "released: {}", m.stats().peak);
        // A higher block takes over at once.
        feed(&m, &mut t, 1, MS / 2, MS);
        assert!((m.stats().peak - 0.5).abs() < 1e-12);
        assert!((m.stats().max - 0.9).abs() < 1e-12, "the maximum is kept");
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let m = LoadMeter::new();
        let mut t = m.origin;
        // 98 blocks at 10 %, 1 at 30 %, 1 at 250 % (beyond the histogram).
        feed(&m, &mut t, 98, MS / 10, MS);
        feed(&m, &mut t, 1, MS * 3 / 10, MS);
        feed(&m, &mut t, 1, MS * 5 / 2, MS);
        let s = m.stats();
        assert_eq!(s.blocks, 100);
        assert!((s.p50 - 0.1).abs() < 1.5 * BUCKET && s.p50 >= 0.1, "p50 {}", s.p50);
        assert!((s.p99 - 0.3).abs() < 1.5 * BUCKET && s.p99 >= 0.3, "p99 {}", s.p99);
        assert!((s.max - 2.5).abs() < 1e-12);
        assert!((s.mean - (98.0 * 0.1 + 0.3 + 2.5) / 100.0).abs() < 1e-9);
        // One more overflow block: p99 is now in the overflow bucket and reports the maximum.
        feed(&m, &mut t, 1, MS * 3, MS);
        assert!((m.stats().p99 - 3.0).abs() < 1e-12, "p99 {}", m.stats().p99);
        assert_eq!(LoadMeter::new().stats(), LoadStats::default());
    }

    /// Regression (issue 12): a summary read `p50 0.7%, p99 0.7%, max 0.6%`: every block in one
    /// bucket reported the bucket's upper edge, above the exact maximum.
    #[test]
    fn no_percentile_is_above_the_maximum() {
        let m = LoadMeter::new();
        let mut t = m.origin;
        feed(&m, &mut t, 50, MS * 61 / 10_000, MS);
        let s = m.stats();
        assert!((s.max - 0.0061).abs() < 1e-9, "max {}", s.max);
        assert!(s.p50 <= s.max && s.p99 <= s.max, "{s:?}");
        assert!(s.p50 >= 0.0061 - 1e-9, "a percentile below what was measured: {s:?}");
    }

    #[test]
    fn buckets_cover_their_upper_edge() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(BUCKET), 0);
        assert_eq!(bucket_of(BUCKET * 1.5), 1);
        assert_eq!(bucket_of(HIST_MAX), BUCKETS - 2);
        assert_eq!(bucket_of(HIST_MAX * 10.0), BUCKETS - 1);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(upper_edge(12), 0.013);
    }

    #[test]
    fn a_meter_absorbs_another_as_if_it_had_recorded_its_blocks() {
        let (a, b, both) = (LoadMeter::new(), LoadMeter::new(), LoadMeter::new());
        let (mut ta, mut tb, mut tboth) = (a.origin, b.origin, both.origin);
        feed(&a, &mut ta, 60, MS / 10, MS);
        feed(&both, &mut tboth, 60, MS / 10, MS);
        feed(&b, &mut tb, 40, MS * 7 / 10, MS);
        feed(&both, &mut tboth, 40, MS * 7 / 10, MS);
        b.miss();
        b.late_start();
        a.absorb(&b);
        let (s, want) = (a.stats(), both.stats());
        assert_eq!((s.blocks, s.p50, s.p99, s.max), (want.blocks, want.p50, want.p99, want.max));
        assert!((s.mean - want.mean).abs() < 1e-12);
        assert_eq!((s.misses, s.late_starts), (1, 1));
        // What a meter saw after a copy of it: the later stretch only.
        let m = LoadMeter::new();
        let mut t = m.origin;
        feed(&m, &mut t, 30, MS * 9 / 10, MS); // a warm-up at 90 %
        m.miss();
        let warm = m.copy();
        assert_eq!(warm.stats(), LoadStats { smoothed: 0.0, peak: 0.0, ..m.stats() });
        feed(&m, &mut t, 70, MS / 5, MS);
        let later = LoadMeter::new();
        later.absorb_since(&m, &warm);
        let s = later.stats();
        assert_eq!((s.blocks, s.misses), (70, 0));
        assert!((s.max - 0.2).abs() < 1e-12 && (s.p99 - 0.2).abs() < 1e-12, "{s:?}");
        assert!((s.mean - 0.2).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn misses_and_late_starts_are_counted() {
        let m = LoadMeter::new();
        m.miss();
        m.late_start();
        m.late_start();
        m.miss();
        m.slow_miss();
        assert_eq!((m.stats().misses, m.stats().late_starts, m.stats().slow_misses), (2, 2, 1));
    }
}
