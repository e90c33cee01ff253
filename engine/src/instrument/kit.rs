//! The drum kit's pieces and the synthesis of their samples (kick, snare, hats, toms, cymbals)
//! when the kit is built. Control thread only: allocates.

use crate::model::instrument::Waveform;

use super::dsp::{Svf, XorShift32, oscillator};

/// Kit pieces, in the order their samples are stored (discriminant = index in [`PIECES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    Kick,
    Rim,
    Snare,
    Clap,
    LowTom,
    ClosedHat,
    MidTom,
    OpenHat,
    HighTom,
    Crash,
    Ride,
}

pub(super) const PIECES: [Piece; 11] = [
    Piece::Kick,
    Piece::Rim,
    Piece::Snare,
    Piece::Clap,
    Piece::LowTom,
    Piece::ClosedHat,
    Piece::MidTom,
    Piece::OpenHat,
    Piece::HighTom,
    Piece::Crash,
    Piece::Ride,
];

// A piece's discriminant is its index in `PIECES` (and in `Drums::ranges`).
const _: () = {
    let mut i = 0;
    while i < PIECES.len() {
        assert!(PIECES[i] as usize == i);
        i += 1;
    }
};

impl Piece {
    /// The kit piece a General MIDI drum key plays, if any.
    pub(super) fn from_key(key: u8) -> Option<Piece> {
        Some(match key {
            36 => Piece::Kick,
            37 => Piece::Rim,
            38 | 40 => Piece::Snare,
            39 => Piece::Clap,
            41 => Piece::LowTom,
            42 | 44 => Piece::ClosedHat,
            45 => Piece::MidTom,
            46 => Piece::OpenHat,
            48 => Piece::HighTom,
            49 => Piece::Crash,
            51 => Piece::Ride,
            _ => return None,
        })
    }

    /// Stereo position, -1 (left) ..=1 (right), as heard from the audience.
    pub(super) fn pan(self) -> f32 {
        match self {
            Piece::Kick | Piece::Snare | Piece::Clap => 0.0,
            Piece::Rim => -0.05,
            Piece::ClosedHat | Piece::OpenHat => 0.3,
            Piece::HighTom => 0.3,
            Piece::MidTom => 0.0,
            Piece::LowTom => -0.3,
            Piece::Crash => -0.4,
            Piece::Ride => 0.45,
        }
    }

    /// Peak level of the sample.
    pub(super) fn peak(self) -> f32 {
        match self {
            Piece::Kick => 0.5,
            Piece::Snare => 0.45,
            Piece::Clap => 0.4,
            Piece::Rim => 0.35,
            Piece::LowTom | Piece::MidTom | Piece::HighTom => 0.4,
            Piece::ClosedHat => 0.3,
            Piece::OpenHat => 0.28,
            Piece::Crash => 0.3,
            Piece::Ride => 0.25,
        }
    }
}

/// Fades the tail of a sample out over its last 15% and scales it to peak at `peak`.
pub(super) fn finish(s: &mut [f32], peak: f32, sr: f32) {
    let n = s.len();
    let fade = ((0.15 * n as f32) as usize).max(1).min(n);
    for (i, x) in s[n - fade..].iter_mut().enumerate() {
        let g = 1.0 - (i as f32 + 1.0) / fade as f32;
        *x *= g * g;
    }
    // A 0.5 ms ramp-in, so no piece starts with a step.
    let ramp = ((0.0005 * sr) as usize).max(1).min(n);
    for (i, x) in s[..ramp].iter_mut().enumerate() {
        *x *= i as f32 / ramp as f32;
    }
    let max = s.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max > 0.0 {
        let g = peak / max;
        for x in s.iter_mut() {
            *x *= g;
        }
    }
}

/// Synthesises the kit's samples (construction only).
pub(super) struct KitSynth {
    pub(super) sr: f32,
    /// Pitch ratio from `tune`; decay times are divided by it, as a sampler would.
    pub(super) ratio: f32,
    pub(super) rng: XorShift32,
}

/// Frequencies of the six square oscillators behind the hats (the TR-808's), in Hz.
pub(super) const HAT_METAL: [f32; 6] = [205.3, 304.4, 369.6, 522.7, 540.0, 800.0];
/// Frequencies of the ride's metal, a different inharmonic cluster.
pub(super) const RIDE_METAL: [f32; 6] = [253.0, 391.0, 447.0, 612.0, 709.0, 1031.0];
/// Frequencies of the crash's metal.
pub(super) const CRASH_METAL: [f32; 6] = [311.0, 459.0, 527.0, 697.0, 813.0, 1187.0];

impl KitSynth {
    pub(super) fn frames(&self, seconds: f32) -> usize {
        (seconds / self.ratio * self.sr) as usize
    }

    /// Time in seconds of frame `i`, in the kit's (tuned) time.
    pub(super) fn time(&self, i: usize) -> f32 {
        i as f32 / self.sr * self.ratio
    }

    pub(super) fn piece(&mut self, piece: Piece) -> Vec<f32> {
        match piece {
            Piece::Kick => self.kick(),
            Piece::Rim => self.rim(),
            Piece::Snare => self.snare(),
            Piece::Clap => self.clap(),
            Piece::LowTom => self.tom(92.0, 0.3),
            Piece::MidTom => self.tom(128.0, 0.26),
            Piece::HighTom => self.tom(172.0, 0.22),
            Piece::ClosedHat => self.hat(0.028, 0.15),
            Piece::OpenHat => self.hat(0.3, 0.9),
            Piece::Crash => self.cymbal(&CRASH_METAL, 0.6, 2.2, 0.6, 0.0),
            Piece::Ride => self.cymbal(&RIDE_METAL, 0.55, 1.8, 0.2, 0.25),
        }
    }

    pub(super) fn kick(&mut self) -> Vec<f32> {
        let n = self.frames(0.8);
        let mut hp = Svf::new();
        hp.set(2500.0 * self.ratio, 1.4, self.sr);
        let mut phase = 0.0f32;
        (0..n)
            .map(|i| {
                let t = self.time(i);
                let f = (48.0 + 110.0 * (-t / 0.03).exp() + 40.0 * (-t / 0.004).exp()) * self.ratio;
                phase = (phase + f / self.sr).fract();
                let body = (std::f32::consts::TAU * phase).sin() * (-t / 0.22).exp();
                let click = hp.step(self.rng.bipolar()).high * (-t / 0.0025).exp() * 0.5;
                (1.6 * (body + click)).tanh()
            })
            .collect()
    }

    pub(super) fn snare(&mut self) -> Vec<f32> {
        let n = self.frames(0.45);
        let mut hp = Svf::new();
        hp.set(1200.0 * self.ratio, 1.2, self.sr);
        let mut lp = Svf::new();
        lp.set(9000.0 * self.ratio.min(1.5), 1.4, self.sr);
        let (mut p1, mut p2) = (0.0f32, 0.0f32);
        (0..n)
            .map(|i| {
                let t = self.time(i);
                let bend = 1.0 + 0.25 * (-t / 0.008).exp();
                p1 = (p1 + 185.0 * self.ratio * bend / self.sr).fract();
                p2 = (p2 + 330.0 * self.ratio * bend / self.sr).fract();
                let tone = (0.6 * (std::f32::consts::TAU * p1).sin() + 0.3 * (std::f32::consts::TAU * p2).sin())
                    * (-t / 0.055).exp();
                let noise = lp.step(hp.step(self.rng.bipolar()).high).low;
                let noise_env = 0.6 * (-t / 0.03).exp() + 0.4 * (-t / 0.13).exp();
                (1.3 * (tone + 1.1 * noise * noise_env)).tanh()
            })
            .collect()
    }

    pub(super) fn clap(&mut self) -> Vec<f32> {
        let n = self.frames(0.5);
        let mut bp = Svf::new();
        bp.set(1200.0 * self.ratio, 0.7, self.sr);
        let mut hp = Svf::new();
        hp.set(600.0 * self.ratio, 1.4, self.sr);
        const BURSTS: [f32; 4] = [0.0, 0.011, 0.022, 0.034];
        (0..n)
            .map(|i| {
                let t = self.time(i);
                let noise = hp.step(bp.step(self.rng.bipolar()).band).high;
                // Three short slaps, then the fourth rings into the room.
                let env = match BURSTS.iter().rposition(|&b| t >= b) {
                    Some(3) => (-(t - BURSTS[3]) / 0.11).exp(),
                    Some(k) => (-(t - BURSTS[k]) / 0.004).exp(),
                    None => 0.0,
                };
                noise * env
            })
            .collect()
    }

    pub(super) fn tom(&mut self, freq: f32, decay: f32) -> Vec<f32> {
        let n = self.frames(0.8);
        let mut lp = Svf::new();
        lp.set(3000.0 * self.ratio, 1.4, self.sr);
        let (mut p1, mut p2) = (0.0f32, 0.0f32);
        (0..n)
            .map(|i| {
                let t = self.time(i);
                let f = freq * self.ratio * (1.0 + 0.45 * (-t / 0.05).exp());
                p1 = (p1 + f / self.sr).fract();
                p2 = (p2 + 1.51 * f / self.sr).fract();
                let tone = ((std::f32::consts::TAU * p1).sin()
                    + 0.2 * (std::f32::consts::TAU * p2).sin() * (-t / 0.05).exp())
                    * (-t / decay).exp();
                let hit = lp.step(self.rng.bipolar()).low * (-t / 0.008).exp() * 0.6;
                (1.2 * (tone + hit)).tanh()
            })
            .collect()
    }

    pub(super) fn rim(&mut self) -> Vec<f32> {
        let n = self.frames(0.12);
        let mut hp = Svf::new();
        hp.set(3000.0 * self.ratio, 1.4, self.sr);
        let (mut p1, mut p2) = (0.0f32, 0.0f32);
        (0..n)
            .map(|i| {
                let t = self.time(i);
                p1 = (p1 + 1650.0 * self.ratio / self.sr).fract();
                p2 = (p2 + 480.0 * self.ratio / self.sr).fract();
                let tone = (std::f32::consts::TAU * p1).sin() * (-t / 0.008).exp()
                    + 0.6 * (std::f32::consts::TAU * p2).sin() * (-t / 0.012).exp();
                let click = hp.step(self.rng.bipolar()).high * (-t / 0.003).exp() * 0.5;
                tone + click
            })
            .collect()
    }

    /// Sum of band-limited squares at the `metal` frequencies (scaled by `ratio * tune`).
    pub(super) fn metal_bank(&self, metal: &[f32; 6], scale: f32) -> [f64; 6] {
        let mut inc = [0.0f64; 6];
        for (d, f) in inc.iter_mut().zip(metal) {
            *d = f64::from(f * scale * self.ratio / self.sr).min(0.5);
        }
        inc
    }

    pub(super) fn hat(&mut self, decay: f32, seconds: f32) -> Vec<f32> {
        let n = self.frames(seconds);
        let inc = self.metal_bank(&HAT_METAL, 1.0);
        let mut phase = [0.0f64; 6];
        let mut bp = Svf::new();
        bp.set((10000.0 * self.ratio).min(0.45 * self.sr), 1.0, self.sr);
        let mut hp1 = Svf::new();
        hp1.set((7000.0 * self.ratio).min(0.4 * self.sr), 1.4, self.sr);
        let mut hp2 = hp1;
        (0..n)
            .map(|i| {
                let t = self.time(i);
                let mut metal = 0.0f32;
                for (ph, &dt) in phase.iter_mut().zip(&inc) {
                    metal += oscillator(Waveform::Square, *ph, dt);
                    *ph = (*ph + dt).fract();
                }
                let x = 0.25 * metal + 0.6 * self.rng.bipolar();
                let y = hp2.step(hp1.step(bp.step(x).band).high).high;
                y * (-t / decay).exp()
            })
            .collect()
    }

    pub(super) fn cymbal(&mut self, metal: &[f32; 6], decay: f32, seconds: f32, noise: f32, bell: f32) -> Vec<f32> {
        let n = self.frames(seconds);
        let inc = self.metal_bank(metal, 2.0);
        let mut phase = [0.0f64; 6];
        let mut hp1 = Svf::new();
        hp1.set((4500.0 * self.ratio).min(0.4 * self.sr), 1.2, self.sr);
        let mut hp2 = hp1;
        let mut lp = Svf::new();
        lp.set((14000.0 * self.ratio).min(0.45 * self.sr), 1.4, self.sr);
        let (mut b1, mut b2) = (0.0f32, 0.0f32);
        (0..n)
            .map(|i| {
                let t = self.time(i);
                let mut m = 0.0f32;
                for (ph, &dt) in phase.iter_mut().zip(&inc) {
                    m += oscillator(Waveform::Square, *ph, dt);
                    *ph = (*ph + dt).fract();
                }
                let x = 0.2 * m + noise * self.rng.bipolar();
                let wash = lp.step(hp2.step(hp1.step(x).high).high).low;
                let env = (-t / decay).exp() * (1.0 - (-t / 0.002).exp());
                b1 = (b1 + 2350.0 * self.ratio / self.sr).fract();
                b2 = (b2 + 3610.0 * self.ratio / self.sr).fract();
                let ping = bell
                    * ((std::f32::consts::TAU * b1).sin() + 0.6 * (std::f32::consts::TAU * b2).sin())
                    * (-t / (0.7 * decay)).exp();
                wash * env + ping
            })
            .collect()
    }
}
