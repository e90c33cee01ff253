//! Time for MIDI: the node's host clock, port timestamps mapped onto it, and host times mapped
//! onto the audio clock's samples and beats (and back, for external MIDI out).
//!
//! Everything here is sans-IO except [`HostTime::now`]: the mappings are given their
//! observations and times as arguments, so tests drive them with made-up clocks.
//!
//! ## From a pad press to a beat
//!
//! 1. **Port timestamp → host time** ([`PortClock`]). midir stamps each input message with
//!    microseconds since an unspecified origin (ALSA: the start of the connection's queue). The
//!    offset to the host clock is estimated as the smallest `arrival − timestamp` seen so far
//!    (a minimum filter, allowed to creep up by [`DRIFT_PPM`] to follow a drifting clock). The
//!    error is the delivery delay of the fastest message seen, normally well under a
//!    millisecond; a backend that gives no timestamps (all 0) maps every message to its
//!    arrival.
//! 2. **Host time → sample** ([`AudioClock`]). The control thread observes the audio
//!    position (the first sample of the next block, published by the audio callback) every
//!    tick, and notes when it first saw each new value. Those observations lie on or after the
//!    line `host = origin + sample / sample_rate`; the origin is estimated by the same minimum
//!    filter, and reset when the line jumps by more than [`RESET`] (a device change or stall).
//!    After a few blocks its error is the control thread's wake-up jitter (tens of µs to a
//!    tick, [`crate::play::TICK`]). The backend's output latency is added: the sample *heard*
//!    at host time `t` is `(t − origin − latency) × sample_rate`. `play` measures the latency
//!    every tick from where the audio core says the next sample is heard
//!    ([`AudioClock::set_heard`]); the host clock is the audio host clock
//!    ([`crate::clock::host`]), so the two agree.
//! 3. **Sample → beat**: from the last observed position's beat at the current tempo.
//!
//! A press is performed at the beat the performer heard when pressing. When that beat lies in
//! audio already rendered (output latency), a trigger quantised to it is late and Signal starts
//! it phase-aligned, as for a late conductor trigger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loophole_engine::time::{Beats, SampleTime};

/// How fast the minimum filters let their estimate rise, in parts per million of elapsed time:
/// enough to follow two crystal clocks drifting apart, far less than delivery jitter.
pub const DRIFT_PPM: f64 = 20.0;
/// A clock line that moves later by more than this is taken as a new timeline (device change,
/// stall, new connection) rather than as jitter.
pub const RESET: Duration = Duration::from_millis(50);

/// A time on the node's host clock: microseconds since the first use of the clock in this
/// process (monotonic, like `Instant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HostTime(pub u64);

impl HostTime {
    /// The host clock now. Any thread.
    pub fn now() -> HostTime {
        let origin = crate::clock::host::origin();
        HostTime(origin.elapsed().as_micros() as u64)
    }

    /// The host time of an `Instant`.
    pub fn from_instant(at: Instant) -> HostTime {
        let origin = crate::clock::host::origin();
        HostTime(at.saturating_duration_since(origin).as_micros() as u64)
    }

    /// The `Instant` of this host time.
    pub fn to_instant(self) -> Instant {
        crate::clock::host::origin() + Duration::from_micros(self.0)
    }

    /// Seconds since the clock's origin.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-6
    }

    /// This time plus `d`.
    pub fn plus(self, d: Duration) -> HostTime {
        HostTime(self.0.saturating_add(d.as_micros() as u64))
    }
}

/// Maps one input port's timestamps onto the host clock (step 1 in the module docs).
#[derive(Debug, Clone, Default)]
pub struct PortClock {
    /// Estimated `host − port` in µs.
    offset: Option<f64>,
    last_arrival: u64,
}

impl PortClock {
    /// A clock that has seen nothing yet.
    pub fn new() -> PortClock {
        PortClock::default()
    }

    /// The host time of a message stamped `port_us` on the port's clock that arrived (was
    /// handed to the node) at `arrived`. Never later than `arrived`. A timestamp of 0 means the
    /// backend gave none: the message maps to its arrival.
    pub fn to_host(&mut self, port_us: u64, arrived: HostTime) -> HostTime {
        if port_us == 0 {
            return arrived;
        }
        let delay = arrived.0 as f64 - port_us as f64;
        let offset = match self.offset {
            Some(o) => {
                let crept = o + (arrived.0.saturating_sub(self.last_arrival)) as f64 * DRIFT_PPM * 1e-6;
                if delay - crept > RESET.as_micros() as f64 { delay } else { crept.min(delay) }
            }
            None => delay,
        };
        self.offset = Some(offset);
        self.last_arrival = self.last_arrival.max(arrived.0);
        let host = port_us as f64 + offset;
        HostTime((host.round().max(0.0) as u64).min(arrived.0))
    }
}

/// Where the audio is: what the audio callback published for the control thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioPosition {
    /// The first sample of the next block (frames rendered so far).
    pub sample: u64,
    /// The beat of that sample.
    pub beat: Beats,
    /// Beats per sample at the current tempo.
    pub beats_per_sample: f64,
}

/// Maps host times onto the audio clock and back (steps 2 and 3 in the module docs). Control
/// thread; publish it to other threads with [`SharedClock`].
#[derive(Debug, Clone)]
pub struct AudioClock {
    sample_rate: f64,
    /// Estimated host µs at which the position would have been sample 0.
    origin: Option<f64>,
    last: Option<(AudioPosition, HostTime)>,
    latency_us: f64,
}

impl AudioClock {
    /// A clock at `sample_rate` that has seen no position yet.
    pub fn new(sample_rate: u32) -> AudioClock {
        AudioClock { sample_rate: sample_rate.max(1) as f64, origin: None, last: None, latency_us: 0.0 }
    }

    /// Sets the output latency: how long after the audio position passes a sample it is heard.
    pub fn set_output_latency(&mut self, latency: Duration) {
        self.latency_us = latency.as_secs_f64() * 1e6;
    }

    /// Sets the output latency from where the output backend says `sample` is heard:
    /// `heard_us` on the host clock ([`crate::clock::host`], the [`HostTime`] clock), as the
    /// audio core publishes it (`ClockSnapshot::local_us`). The latency is the time from the
    /// position passing `sample` (this clock's line) to `sample` being heard. Ignored (false)
    /// before the first observation, or when the result is outside 0..=2 s (a line that has
    /// just been reset).
    pub fn set_heard(&mut self, sample: SampleTime, heard_us: f64) -> bool {
        let Some(o) = self.origin else { return false };
        let latency = heard_us - (o + sample as f64 * 1e6 / self.sample_rate);
        if !(0.0..=2e6).contains(&latency) {
            return false;
        }
        self.latency_us = latency;
        true
    }

    /// [`AudioClock::observe`] then, when the core has published one, [`AudioClock::set_heard`]
    /// with `heard` (a sample and the host µs at which it is heard). True if the latency was
    /// measured.
    pub fn observe_heard(&mut self, pos: AudioPosition, seen: HostTime, heard: Option<(SampleTime, f64)>) -> bool {
        self.observe(pos, seen);
        heard.is_some_and(|(sample, us)| self.set_heard(sample, us))
    }

    /// The output latency.
    pub fn output_latency(&self) -> Duration {
        Duration::from_secs_f64(self.latency_us * 1e-6)
    }

    /// Whether a position has been observed (before that, every host time maps to sample 0).
    pub fn is_ready(&self) -> bool {
        self.origin.is_some()
    }

    /// Notes the position the control thread sees at `seen`. Call it every control tick: only
    /// new positions are used, at the time they were first seen.
    pub fn observe(&mut self, pos: AudioPosition, seen: HostTime) {
        if let Some((p, _)) = &self.last
            && p.sample == pos.sample
        {
            // Same position: keep the first sighting, but follow tempo changes.
            self.last = self.last.map(|(_, t)| (pos, t));
            return;
        }
        let line = seen.0 as f64 - pos.sample as f64 * 1e6 / self.sample_rate;
        let origin = match (self.origin, self.last) {
            (Some(o), Some((_, t))) => {
                let crept = o + seen.0.saturating_sub(t.0) as f64 * DRIFT_PPM * 1e-6;
                if line - crept > RESET.as_micros() as f64 { line } else { crept.min(line) }
            }
            _ => line,
        };
        self.origin = Some(origin);
        self.last = Some((pos, seen));
    }

    /// The (fractional) sample heard at host time `t`.
    pub fn sample_at(&self, t: HostTime) -> f64 {
        match self.origin {
            Some(o) => (t.0 as f64 - o - self.latency_us) * self.sample_rate * 1e-6,
            None => self.last.map_or(0.0, |(p, _)| p.sample as f64),
        }
    }

    /// The beat heard at host time `t`.
    pub fn beat_at(&self, t: HostTime) -> Beats {
        match self.last {
            Some((p, _)) => Beats(p.beat.0 + (self.sample_at(t) - p.sample as f64) * p.beats_per_sample),
            None => Beats::ZERO,
        }
    }

    /// The host time at which `sample` is heard (`None` before the first observation).
    pub fn host_of_sample(&self, sample: SampleTime) -> Option<HostTime> {
        let o = self.origin?;
        let t = o + sample as f64 * 1e6 / self.sample_rate + self.latency_us;
        Some(HostTime(t.round().max(0.0) as u64))
    }

    /// Publishes the current estimate to `shared`.
    pub fn publish(&self, shared: &SharedClock) {
        if let Some(o) = self.origin {
            shared.origin.store((o + self.latency_us).to_bits(), Ordering::Release);
            shared.rate.store(self.sample_rate.to_bits(), Ordering::Release);
        }
    }
}

/// An [`AudioClock`]'s sample → host-time line, readable from any thread without locks (the
/// external MIDI out thread reads it). The control thread writes it with
/// [`AudioClock::publish`].
#[derive(Debug)]
pub struct SharedClock {
    /// Host µs at which sample 0 is heard, as `f64` bits; NaN before the first publish.
    origin: AtomicU64,
    /// Sample rate, as `f64` bits.
    rate: AtomicU64,
}

impl SharedClock {
    /// A clock with no estimate yet.
    pub fn new() -> SharedClock {
        SharedClock { origin: AtomicU64::new(f64::NAN.to_bits()), rate: AtomicU64::new(48_000f64.to_bits()) }
    }

    /// A clock on which sample 0 is heard at `origin` (tests, and backends that know it).
    pub fn fixed(origin: HostTime, sample_rate: u32) -> SharedClock {
        let c = SharedClock::new();
        c.origin.store((origin.0 as f64).to_bits(), Ordering::Release);
        c.rate.store((sample_rate.max(1) as f64).to_bits(), Ordering::Release);
        c
    }

    /// The host time at which `sample` is heard (`None` before the first publish). Any thread.
    pub fn host_of_sample(&self, sample: SampleTime) -> Option<HostTime> {
        let o = f64::from_bits(self.origin.load(Ordering::Acquire));
        let rate = f64::from_bits(self.rate.load(Ordering::Acquire));
        if !o.is_finite() {
            return None;
        }
        Some(HostTime((o + sample as f64 * 1e6 / rate).round().max(0.0) as u64))
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        SharedClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_timestamps_follow_the_fastest_delivery() {
        let mut c = PortClock::new();
        // Port clock = host - 5 s. First message delivered after 800 µs, later ones faster.
        let base = 5_000_000;
        assert_eq!(c.to_host(1_000_000, HostTime(base + 1_000_800)), HostTime(base + 1_000_000 + 800));
        assert_eq!(c.to_host(2_000_000, HostTime(base + 2_000_150)), HostTime(base + 2_000_000 + 150));
        // A slow delivery (5 ms) is mapped back to when it was stamped (within the best delay).
        let t = c.to_host(3_000_000, HostTime(base + 3_005_000));
        let creep = (2.0 * DRIFT_PPM) as u64; // over the 2 s since the best delivery
        assert!(t.0.abs_diff(base + 3_000_000) <= 150 + creep + 1, "{t:?}");
        // Never later than the arrival.
        let t = c.to_host(4_000_000, HostTime(base + 3_999_000));
        assert!(t <= HostTime(base + 3_999_000));
    }

    #[test]
    fn a_backend_without_timestamps_maps_to_arrival() {
        let mut c = PortClock::new();
        assert_eq!(c.to_host(0, HostTime(1_000)), HostTime(1_000));
        assert_eq!(c.to_host(0, HostTime(9_000)), HostTime(9_000));
    }

    fn pos(sample: u64) -> AudioPosition {
        AudioPosition { sample, beat: Beats(sample as f64 / 24_000.0), beats_per_sample: 1.0 / 24_000.0 }
    }

    #[test]
    fn the_audio_line_is_the_earliest_sighting_of_each_block() {
        let mut c = AudioClock::new(48_000);
        // Blocks of 480 samples (10 ms) published at 1 s + k * 10 ms; seen 0..2 ms late.
        let jitter = [1_900, 300, 1_200, 0, 700, 1_500];
        for (k, j) in jitter.iter().enumerate() {
            let k = k as u64 + 1;
            c.observe(pos(480 * k), HostTime(1_000_000 + k * 10_000 + j));
            // Seen again a tick later: ignored.
            c.observe(pos(480 * k), HostTime(1_000_000 + k * 10_000 + j + 2_000));
        }
        // Sample 0 was at 1 s (the earliest sighting had no delay; the estimate creeps 0.2 µs per 10 ms).
        let near = |t: Option<HostTime>, want: u64| t.is_some_and(|t| t.0.abs_diff(want) <= 5);
        assert!(near(c.host_of_sample(0), 1_000_000), "{:?}", c.host_of_sample(0));
        assert!((c.sample_at(HostTime(1_500_000)) - 24_000.0).abs() < 1.0);
        assert!((c.beat_at(HostTime(1_500_000)).0 - 1.0).abs() < 1e-4);
        // Output latency: what is heard is earlier.
        c.set_output_latency(Duration::from_millis(20));
        assert!((c.sample_at(HostTime(1_500_000)) - (24_000.0 - 960.0)).abs() < 1.0);
        assert!(near(c.host_of_sample(0), 1_020_000));
        let shared = SharedClock::new();
        assert_eq!(shared.host_of_sample(0), None);
        c.publish(&shared);
        assert!(near(shared.host_of_sample(48_000), 2_020_000));
    }

    #[test]
    fn the_output_latency_is_measured_from_where_the_core_says_a_sample_is_heard() {
        let mut c = AudioClock::new(48_000);
        // Nothing observed yet: no line to measure against.
        assert!(!c.set_heard(480, 1_000_000.0));
        // Position 480 (10 ms of audio) first seen at 1.010 s: sample 0 passed at 1 s.
        c.observe(pos(480), HostTime(1_010_000));
        // The core says sample 480 is heard at 1.0266 s: 16.6 ms after the position passed it.
        assert!(c.set_heard(480, 1_026_600.0));
        assert!((c.output_latency().as_secs_f64() - 0.0166).abs() < 1e-9);
        // The sample heard at 1.5 s is 16.6 ms of audio earlier than the one passing then.
        assert!((c.sample_at(HostTime(1_500_000)) - (24_000.0 - 796.8)).abs() < 1e-6);
        // A heard time before the position passed (a line just reset) is not a latency.
        assert!(!c.set_heard(480, 1_000_000.0));
        assert!(!c.set_heard(480, 9_000_000.0));
        assert!((c.output_latency().as_secs_f64() - 0.0166).abs() < 1e-9);
    }

    #[test]
    fn host_time_is_the_audio_host_clock() {
        // MIDI timestamps and the audio core's heard times are on one clock.
        let at = Instant::now();
        let us = crate::clock::host::us_of(at);
        assert!((HostTime::from_instant(at).0 as f64 - us).abs() <= 1.0);
    }

    #[test]
    fn a_device_change_resets_the_line() {
        let mut c = AudioClock::new(48_000);
        c.observe(pos(480), HostTime(10_000));
        c.observe(pos(960), HostTime(20_000));
        // The device stalls for 3 s, then a new one continues from the same sample.
        c.observe(pos(1_440), HostTime(3_030_000));
        assert_eq!(c.host_of_sample(1_440), Some(HostTime(3_030_000)));
    }
}
