//! Musical time: beats, tempo mapping, quantisation grids and the [`BlockClock`] a block is
//! rendered with.
//!
//! Everything musical is expressed in [`Beats`] (Link beat time). Samples are absolute
//! [`SampleTime`]s counted from the start of the engine's clock. The only bridge between the two is
//! a [`BlockClock`]: the beat at the first sample of a block and the number of beats per sample.
//!
//! All functions here are pure, allocation-free and realtime-safe.

use serde::{Deserialize, Serialize};

/// Tolerance, in samples, used when deciding at which sample a beat is crossed.
///
/// Floating-point beat maths can land a hair either side of an exact sample (for instance beat 4
/// at 120 BPM and 48 kHz is sample 96 000, but `4.0 / (1.0 / 24_000.0)` is not exactly 96 000).
/// A crossing within this distance of a sample boundary is snapped onto that sample, so the
/// executed sample does not depend on how the timeline was cut into blocks.
pub const SAMPLE_EPSILON: f64 = 1e-4;

/// A position or a length in musical beats (Link beat time, quarter notes).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Beats(pub f64);

impl Beats {
    /// Beat zero.
    pub const ZERO: Beats = Beats(0.0);

    /// The raw number of beats.
    #[inline]
    pub fn get(self) -> f64 {
        self.0
    }

    /// The larger of two beat values.
    #[inline]
    pub fn max(self, other: Beats) -> Beats {
        if other.0 > self.0 { other } else { self }
    }

    /// The smaller of two beat values.
    #[inline]
    pub fn min(self, other: Beats) -> Beats {
        if other.0 < self.0 { other } else { self }
    }
}

impl std::ops::Add for Beats {
    type Output = Beats;
    #[inline]
    fn add(self, rhs: Beats) -> Beats {
        Beats(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Beats {
    type Output = Beats;
    #[inline]
    fn sub(self, rhs: Beats) -> Beats {
        Beats(self.0 - rhs.0)
    }
}

impl std::ops::AddAssign for Beats {
    #[inline]
    fn add_assign(&mut self, rhs: Beats) {
        self.0 += rhs.0;
    }
}

impl std::fmt::Display for Beats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An absolute sample index on the engine's clock. Sample 0 is beat 0 in offline renders.
pub type SampleTime = i64;

/// Tempo in beats per minute.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bpm(pub f64);

impl Bpm {
    /// Slowest tempo Loophole accepts (the same range as Ableton Link).
    pub const MIN: f64 = 20.0;
    /// Fastest tempo Loophole accepts (the same range as Ableton Link).
    pub const MAX: f64 = 999.0;

    /// Beats that pass during one sample at `sample_rate`.
    #[inline]
    pub fn beats_per_sample(self, sample_rate: u32) -> f64 {
        self.0 / 60.0 / sample_rate as f64
    }

    /// Samples in one beat at `sample_rate`.
    #[inline]
    pub fn samples_per_beat(self, sample_rate: u32) -> f64 {
        60.0 * sample_rate as f64 / self.0
    }
}

/// The clock of one audio block: how the block's samples map onto beats.
///
/// The node builds one per block from Link's audio session state (with output latency added); the
/// offline renderer builds them from a [`SimClock`]. Signal and Pulse only ever see this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockClock {
    /// Absolute sample index of the block's first sample.
    pub sample_time: SampleTime,
    /// Beat heard at the block's first sample.
    pub beat_at_first_sample: Beats,
    /// Beats per sample during this block (tempo / 60 / sample rate).
    pub beats_per_sample: f64,
    /// Beats per bar (Link's quantum).
    pub quantum: f64,
    /// Frames in this block.
    pub frames: usize,
    /// Sample rate in Hz.
    pub sample_rate: u32,
}

impl BlockClock {
    /// Tempo during this block.
    #[inline]
    pub fn tempo(&self) -> Bpm {
        Bpm(self.beats_per_sample * 60.0 * self.sample_rate as f64)
    }

    /// The beat at frame `frame` of this block (`frame` may be outside the block).
    #[inline]
    pub fn beat_at_frame(&self, frame: i64) -> Beats {
        Beats(self.beat_at_first_sample.0 + frame as f64 * self.beats_per_sample)
    }

    /// The beat just after the block's last sample (the next block's first beat).
    #[inline]
    pub fn end_beat(&self) -> Beats {
        self.beat_at_frame(self.frames as i64)
    }

    /// The frame (relative to this block, possibly negative or past the end) of the first sample
    /// whose beat is at or after `beat`, within [`SAMPLE_EPSILON`].
    #[inline]
    pub fn frame_of_beat(&self, beat: Beats) -> i64 {
        let exact = (beat.0 - self.beat_at_first_sample.0) / self.beats_per_sample;
        (exact - SAMPLE_EPSILON).ceil() as i64
    }
}

/// A simulated clock with a fixed tempo: beat 0 is sample 0.
///
/// Every block's beat is computed from its absolute sample index (never accumulated), so the
/// same timeline cut into different block sizes yields the same sample for every beat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimClock {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Tempo.
    pub tempo: Bpm,
    /// Beats per bar.
    pub quantum: f64,
}

impl SimClock {
    /// The clock of the block that starts at `sample_time` and lasts `frames` frames.
    pub fn block(&self, sample_time: SampleTime, frames: usize) -> BlockClock {
        let bps = self.tempo.beats_per_sample(self.sample_rate);
        BlockClock {
            sample_time,
            beat_at_first_sample: Beats(sample_time as f64 * bps),
            beats_per_sample: bps,
            quantum: self.quantum,
            frames,
            sample_rate: self.sample_rate,
        }
    }

    /// The first sample at or after `beat` (what the engine must execute an event at).
    pub fn sample_of_beat(&self, beat: Beats) -> SampleTime {
        self.block(0, 0).frame_of_beat(beat)
    }
}

/// A simulated clock whose tempo and time signature change at beats: a list of segments, each
/// with a constant tempo. Beat 0 is sample 0. Each segment starts at the first sample at or after
/// its beat (the crossing rule), continuing the beat of the segment before, so the mapping is
/// continuous and every block's beats are computed from absolute positions, never accumulated.
#[derive(Debug, Clone, PartialEq)]
pub struct TempoMap {
    sample_rate: u32,
    base: (Bpm, f64),
    /// Changes in beat order: (beat, tempo, beats per bar) after applying each.
    changes: Vec<(Beats, Bpm, f64)>,
    /// Segments: (first sample, beat at that sample, beats per sample, beats per bar).
    segments: Vec<(SampleTime, f64, f64, f64)>,
}

impl TempoMap {
    /// Changes a map holds without allocating (see [`TempoMap::change`]).
    pub const CAPACITY: usize = 1024;

    /// The sample rate the map counts samples at.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// A map with one tempo and time signature from beat 0. Control thread: allocates room for
    /// [`TempoMap::CAPACITY`] changes.
    pub fn new(sample_rate: u32, tempo: Bpm, beats_per_bar: f64) -> TempoMap {
        let mut m = TempoMap {
            sample_rate,
            base: (tempo, beats_per_bar),
            changes: Vec::with_capacity(Self::CAPACITY),
            segments: Vec::with_capacity(Self::CAPACITY + 1),
        };
        m.rebuild();
        m
    }

    /// Adds a change at `beat`: a new tempo, a new time signature, or both (`None` keeps the
    /// value in force). Realtime-safe: it never allocates; when the map is full it refuses the
    /// change and returns `false`.
    pub fn change(&mut self, beat: Beats, tempo: Option<Bpm>, beats_per_bar: Option<f64>) -> bool {
        if self.changes.len() >= self.changes.capacity() {
            return false;
        }
        let i = self.changes.partition_point(|(b, _, _)| b.0 <= beat.0);
        let (prev_t, prev_q) = if i == 0 { self.base } else { (self.changes[i - 1].1, self.changes[i - 1].2) };
        self.changes.insert(i, (beat, tempo.unwrap_or(prev_t), beats_per_bar.unwrap_or(prev_q)));
        self.rebuild();
        true
    }

    fn rebuild(&mut self) {
        let (t, q) = self.base;
        self.segments.clear();
        self.segments.push((0, 0.0, t.beats_per_sample(self.sample_rate), q));
        for &(beat, tempo, bpb) in &self.changes {
            let &(s0, b0, bps, _) = self.segments.last().expect("one segment");
            let s = s0 + ((beat.0 - b0) / bps - SAMPLE_EPSILON).ceil().max(0.0) as SampleTime;
            let b = b0 + (s - s0) as f64 * bps;
            let seg = (s, b, tempo.beats_per_sample(self.sample_rate), bpb);
            if self.segments.last().is_some_and(|l| l.0 == s) {
                *self.segments.last_mut().expect("one segment") = seg;
            } else {
                self.segments.push(seg);
            }
        }
    }

    /// The first sample of the next segment after `sample`, if any (a block must not cross it).
    pub fn next_change_after(&self, sample: SampleTime) -> Option<SampleTime> {
        self.segments.iter().map(|s| s.0).find(|s| *s > sample)
    }

    /// The clock of the block that starts at `sample_time` and lasts `frames` frames (which
    /// should not cross [`TempoMap::next_change_after`]).
    pub fn block(&self, sample_time: SampleTime, frames: usize) -> BlockClock {
        let i = self.segments.partition_point(|s| s.0 <= sample_time).max(1) - 1;
        let (s0, b0, bps, q) = self.segments[i];
        BlockClock {
            sample_time,
            beat_at_first_sample: Beats(b0 + (sample_time - s0) as f64 * bps),
            beats_per_sample: bps,
            quantum: q,
            frames,
            sample_rate: self.sample_rate,
        }
    }

    /// The tempo in force at `sample_time`.
    pub fn tempo_at(&self, sample_time: SampleTime) -> Bpm {
        self.block(sample_time, 0).tempo()
    }
}

/// A launch quantisation setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Quantise {
    /// Use the next level up: clip, then scene, then the session's global setting.
    #[default]
    Global,
    /// No quantisation: execute at the beat the trigger was made.
    None,
    /// The next bar line (`quantum` beats).
    Bar,
    /// Every `n` bars (Live's 2 bars, 4 bars, 8 bars).
    Bars(u32),
    /// The next beat.
    Beat,
    /// The next half beat (1/8 note).
    HalfBeat,
    /// A grid division of a whole note: 8 = eighths, 16 = sixteenths, 32 = thirty-seconds.
    Division(u32),
    /// A triplet grid division of a whole note: 8 = eighth triplets (three per beat), 16, 32.
    Triplet(u32),
    /// The end of the current loop of the scene that is playing (its longest clip). Falls back to a
    /// bar when no scene is playing.
    Scene,
}

impl Quantise {
    /// The grid spacing in beats for this setting, or `None` for [`Quantise::None`],
    /// [`Quantise::Global`] and [`Quantise::Scene`] (which are resolved elsewhere).
    pub fn grid(self, quantum: f64) -> Option<f64> {
        match self {
            Quantise::Global | Quantise::None | Quantise::Scene => None,
            Quantise::Bar => Some(quantum),
            Quantise::Bars(n) => Some(quantum * n.max(1) as f64),
            Quantise::Beat => Some(1.0),
            Quantise::HalfBeat => Some(0.5),
            Quantise::Division(n) => Some(4.0 / n.max(1) as f64),
            Quantise::Triplet(n) => Some(4.0 / n.max(1) as f64 * 2.0 / 3.0),
        }
    }

    /// Resolves `Global` through the chain clip -> scene -> session.
    pub fn resolve(self, scene: Option<Quantise>, global: Quantise) -> Quantise {
        let mut q = self;
        if q == Quantise::Global {
            q = scene.unwrap_or(Quantise::Global);
        }
        if q == Quantise::Global {
            q = global;
        }
        if q == Quantise::Global { Quantise::Bar } else { q }
    }

    /// Parses the session-file spelling: `none`, `bar`, `2-bars`, `beat`, `half-beat`, `1/16`,
    /// `1/8t` (triplet), `scene` or `global`.
    pub fn parse(text: &str) -> Option<Quantise> {
        let t = text.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "global" => Quantise::Global,
            "none" | "off" | "immediate" => Quantise::None,
            "bar" | "1-bar" | "1 bar" => Quantise::Bar,
            "beat" | "1/4" => Quantise::Beat,
            "half-beat" | "half" | "1/8" => Quantise::HalfBeat,
            "scene" => Quantise::Scene,
            _ => {
                if let Some(n) = t.strip_suffix("-bars").or_else(|| t.strip_suffix(" bars")) {
                    return n.trim().parse().ok().filter(|n| *n > 0).map(Quantise::Bars);
                }
                let frac = t.strip_prefix("1/")?;
                if let Some(n) = frac.strip_suffix('t') {
                    return n.parse().ok().filter(|n| *n > 0).map(Quantise::Triplet);
                }
                return frac.parse().ok().filter(|n| *n > 0).map(Quantise::Division);
            }
        })
    }

    /// The session-file spelling (inverse of [`Quantise::parse`]).
    pub fn name(self) -> String {
        match self {
            Quantise::Global => "global".into(),
            Quantise::None => "none".into(),
            Quantise::Bar => "bar".into(),
            Quantise::Bars(n) => format!("{n}-bars"),
            Quantise::Beat => "beat".into(),
            Quantise::HalfBeat => "half-beat".into(),
            Quantise::Division(n) => format!("1/{n}"),
            Quantise::Triplet(n) => format!("1/{n}t"),
            Quantise::Scene => "scene".into(),
        }
    }
}

/// The first grid point at or after `now` on a grid of `spacing` beats anchored at beat 0.
///
/// A point within a tiny tolerance of `now` counts as `now` (pressing exactly on the bar
/// launches on that bar, not the next).
pub fn next_grid_point(now: Beats, spacing: f64) -> Beats {
    if spacing <= 0.0 {
        return now;
    }
    let k = (now.0 / spacing - 1e-9).ceil();
    Beats(k * spacing + 0.0) // + 0.0 turns -0.0 into 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_have_the_musical_spacings() {
        assert_eq!(Quantise::Bar.grid(4.0), Some(4.0));
        assert_eq!(Quantise::Bar.grid(7.0), Some(7.0));
        assert_eq!(Quantise::Bars(2).grid(3.0), Some(6.0));
        assert_eq!(Quantise::Beat.grid(4.0), Some(1.0));
        assert_eq!(Quantise::HalfBeat.grid(4.0), Some(0.5));
        assert_eq!(Quantise::Division(16).grid(4.0), Some(0.25));
        assert_eq!(Quantise::Division(32).grid(4.0), Some(0.125));
        let t8 = Quantise::Triplet(8).grid(4.0).unwrap();
        assert!((t8 * 3.0 - 1.0).abs() < 1e-12, "three eighth triplets per beat");
        assert_eq!(Quantise::None.grid(4.0), None);
    }

    #[test]
    fn next_grid_point_on_and_between_grid_lines() {
        assert_eq!(next_grid_point(Beats(0.0), 4.0), Beats(0.0));
        assert_eq!(next_grid_point(Beats(0.1), 4.0), Beats(4.0));
        assert_eq!(next_grid_point(Beats(4.0), 4.0), Beats(4.0));
        assert_eq!(next_grid_point(Beats(3.999), 4.0), Beats(4.0));
        assert_eq!(next_grid_point(Beats(5.0), 3.0), Beats(6.0));
        assert_eq!(next_grid_point(Beats(1.3), 0.25), Beats(1.5));
    }

    #[test]
    fn resolution_chain_clip_scene_global() {
        assert_eq!(Quantise::Beat.resolve(Some(Quantise::Bar), Quantise::None), Quantise::Beat);
        assert_eq!(Quantise::Global.resolve(Some(Quantise::HalfBeat), Quantise::None), Quantise::HalfBeat);
        assert_eq!(Quantise::Global.resolve(None, Quantise::Division(16)), Quantise::Division(16));
        assert_eq!(Quantise::Global.resolve(Some(Quantise::Global), Quantise::Global), Quantise::Bar);
    }

    #[test]
    fn parse_round_trips() {
        for q in [
            Quantise::Global,
            Quantise::None,
            Quantise::Bar,
            Quantise::Bars(4),
            Quantise::Beat,
            Quantise::HalfBeat,
            Quantise::Division(16),
            Quantise::Division(32),
            Quantise::Triplet(8),
            Quantise::Triplet(16),
            Quantise::Scene,
        ] {
            assert_eq!(Quantise::parse(&q.name()), Some(q), "{}", q.name());
        }
        assert_eq!(Quantise::parse("1/0"), None);
        assert_eq!(Quantise::parse("sometimes"), None);
    }

    #[test]
    fn beat_to_sample_is_exact_at_120_bpm_48k() {
        let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
        assert_eq!(clock.sample_of_beat(Beats(4.0)), 96_000);
        assert_eq!(clock.sample_of_beat(Beats(0.0)), 0);
        // A beat between samples executes at the next sample.
        assert_eq!(clock.sample_of_beat(Beats(1.0 / 48_000.0)), 1);
    }

    #[test]
    fn tempo_map_changes_tempo_at_the_beat_continuously() {
        let mut m = TempoMap::new(48_000, Bpm(120.0), 4.0);
        m.change(Beats(8.0), Some(Bpm(60.0)), Some(3.0));
        // Beat 8 at 120 BPM is sample 192 000; after it a beat lasts 48 000 samples.
        assert_eq!(m.next_change_after(0), Some(192_000));
        let b = m.block(192_000, 64);
        assert_eq!(b.beat_at_first_sample, Beats(8.0));
        assert_eq!(b.quantum, 3.0);
        assert_eq!(m.block(240_000, 64).beat_at_first_sample, Beats(9.0));
        assert_eq!(m.block(191_999, 1).quantum, 4.0);
        assert_eq!(m.tempo_at(100).0, 120.0);
        // A later change that only sets the time signature keeps the tempo.
        m.change(Beats(11.0), None, Some(4.0));
        assert_eq!(m.tempo_at(400_000).0, 60.0);
        assert_eq!(m.next_change_after(192_000), Some(192_000 + 3 * 48_000));
    }

    #[test]
    fn frame_of_beat_is_the_same_from_any_block() {
        let clock = SimClock { sample_rate: 44_100, tempo: Bpm(133.0), quantum: 4.0 };
        let target = Beats(17.25);
        let expected = clock.sample_of_beat(target);
        for start in [0i64, 1, 63, 1000, 12_345, expected - 1, expected] {
            let b = clock.block(start, 64);
            assert_eq!(start + b.frame_of_beat(target), expected, "block at {start}");
        }
    }
}
