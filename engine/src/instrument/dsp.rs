//! Shared DSP of the built-in instruments: decay and velocity curves, the seeded xorshift
//! generator, PolyBLEP oscillators and the state-variable filter. Audio thread (constructors:
//! control thread); realtime-safe.

use crate::model::instrument::Waveform;

/// Levels below this are silence: envelopes that fall under it end their voice.
pub(super) const SILENCE: f32 = 1e-4;
/// ln(1000): turns a -60 dB time into a time constant.
pub(super) const LN_1000: f32 = 6.907_755;
/// Fade applied by "all sound off", a voice choke or a drum choke, in seconds.
pub(super) const KILL_TIME: f32 = 0.003;

/// Per-sample multiplier of an exponential decay reaching -60 dB after `time` seconds.
pub(super) fn decay_coef(time: f32, sr: f32) -> f32 {
    if time <= 0.0 { 0.0 } else { (-LN_1000 / (time * sr)).exp() }
}

/// MIDI velocity to a level with sensitivity `amount` (0..=1): `1 - a + a * (v/127)²`.
pub(super) fn velocity_gain(velocity: u8, amount: f32) -> f32 {
    let v = f32::from(velocity.min(127)) / 127.0;
    1.0 - amount + amount * v * v
}

/// Small deterministic xorshift32 generator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct XorShift32(u32);

impl XorShift32 {
    pub(crate) fn new(seed: u32) -> Self {
        XorShift32(if seed == 0 { 0x9E37_79B9 } else { seed })
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn bipolar(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }
}

/// PolyBLEP residual for a unit step at phase 0 of a phase in [0, 1) advancing by `dt`.
#[inline]
pub(super) fn poly_blep(t: f64, dt: f64) -> f64 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

/// One sample of `wave` at phase `t` in [0, 1) with phase increment `dt`.
#[inline]
pub(super) fn oscillator(wave: Waveform, t: f64, dt: f64) -> f32 {
    let y = match wave {
        Waveform::Saw => 2.0 * t - 1.0 - poly_blep(t, dt),
        Waveform::Square => {
            let naive = if t < 0.5 { 1.0 } else { -1.0 };
            let t2 = if t < 0.5 { t + 0.5 } else { t - 0.5 };
            naive + poly_blep(t, dt) - poly_blep(t2, dt)
        }
        Waveform::Triangle => 1.0 - 4.0 * (t - 0.5).abs(),
        Waveform::Sine => (std::f64::consts::TAU * t).sin(),
    };
    y as f32
}

/// Topology-preserving-transform state-variable filter (Zavalishin / Simper), 12 dB/octave.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Svf {
    pub(super) ic1: f32,
    pub(super) ic2: f32,
    pub(super) a1: f32,
    pub(super) a2: f32,
    pub(super) a3: f32,
    pub(super) k: f32,
    /// Cutoff the coefficients were computed for (NaN = none yet).
    pub(super) fc: f32,
}

/// Outputs of one [`Svf`] step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SvfOut {
    pub(crate) low: f32,
    pub(crate) band: f32,
    pub(crate) high: f32,
}

impl Svf {
    pub(crate) fn new() -> Self {
        Svf { fc: f32::NAN, ..Svf::default() }
    }

    /// Sets cutoff `fc` (Hz, already clamped below Nyquist) and damping `k` (2 = no resonance,
    /// towards 0 = more). Recomputes only when either changed; the cache is part of the state,
    /// so this stays per-sample deterministic.
    #[inline]
    pub(crate) fn set(&mut self, fc: f32, k: f32, sr: f32) {
        if fc.to_bits() != self.fc.to_bits() || k.to_bits() != self.k.to_bits() {
            let g = (std::f32::consts::PI * fc / sr).tan();
            self.k = k;
            self.fc = fc;
            self.a1 = 1.0 / (1.0 + g * (g + k));
            self.a2 = g * self.a1;
            self.a3 = g * self.a2;
        }
    }

    #[inline]
    pub(crate) fn step(&mut self, v0: f32) -> SvfOut {
        let v3 = v0 - self.ic2;
        let v1 = self.a1 * self.ic1 + self.a2 * v3;
        let v2 = self.ic2 + self.a2 * self.ic1 + self.a3 * v3;
        self.ic1 = 2.0 * v1 - self.ic1;
        self.ic2 = 2.0 * v2 - self.ic2;
        SvfOut { low: v2, band: v1, high: v0 - self.k * v1 - v2 }
    }

    pub(super) fn clear(&mut self) {
        self.ic1 = 0.0;
        self.ic2 = 0.0;
    }
}
