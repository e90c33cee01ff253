//! The drum kit: pieces on the General MIDI drum map, one-shot voices with chokes. Built on the
//! control thread (its samples come from `kit.rs`); plays on the audio thread, where it never
//! allocates.

use crate::model::MidiMsg;
use crate::model::instrument::DrumSpec;

use super::dsp::{KILL_TIME, XorShift32, velocity_gain};
use super::kit::{KitSynth, PIECES, Piece, finish};
use super::sane;

/// Most drum hits sounding at once; beyond that the oldest is cut.
pub(super) const DRUM_VOICES: usize = 32;

#[derive(Debug, Clone, Copy)]
pub(super) struct DrumVoice {
    pub(super) active: bool,
    pub(super) piece: Piece,
    /// Start of the piece's sample in [`Drums::samples`].
    pub(super) start: usize,
    /// Length of the piece's sample.
    pub(super) len: usize,
    /// Next frame of the sample.
    pub(super) pos: usize,
    pub(super) gain_l: f32,
    pub(super) gain_r: f32,
    /// Choke fade: 1 = not choked; falls by `fade_step` per sample once choked.
    pub(super) fade: f32,
    pub(super) fade_step: f32,
    pub(super) age: u64,
}

pub(super) struct Drums {
    /// Every piece's sample, concatenated (mono; panned at playback).
    pub(super) samples: Vec<f32>,
    /// `(start, length)` in `samples` of each piece, indexed like [`PIECES`].
    pub(super) ranges: [(usize, usize); PIECES.len()],
    pub(super) voices: Vec<DrumVoice>,
    pub(super) out_gain: f32,
    pub(super) velocity: f32,
    pub(super) hit_counter: u64,
    pub(super) choke_step: f32,
}

impl Drums {
    pub(super) fn new(spec: &DrumSpec, sr: f32) -> Drums {
        let d = DrumSpec::default();
        let tune = sane(spec.tune, d.tune, -12.0, 12.0) as f32;
        let mut kit = KitSynth { sr, ratio: (tune / 12.0).exp2(), rng: XorShift32::new(0xD2C7_1A55) };
        let mut samples = Vec::new();
        let mut ranges = [(0, 0); PIECES.len()];
        for (i, &piece) in PIECES.iter().enumerate() {
            let mut s = kit.piece(piece);
            finish(&mut s, piece.peak(), sr);
            ranges[i] = (samples.len(), s.len());
            samples.extend_from_slice(&s);
        }
        let idle = DrumVoice {
            active: false,
            piece: Piece::Kick,
            start: 0,
            len: 0,
            pos: 0,
            gain_l: 0.0,
            gain_r: 0.0,
            fade: 1.0,
            fade_step: 0.0,
            age: 0,
        };
        Drums {
            samples,
            ranges,
            voices: vec![idle; DRUM_VOICES],
            out_gain: crate::model::db_to_gain(sane(spec.gain_db, d.gain_db, -60.0, 24.0)) as f32,
            velocity: sane(spec.velocity, d.velocity, 0.0, 1.0) as f32,
            hit_counter: 0,
            choke_step: 1.0 / (KILL_TIME * sr),
        }
    }

    pub(super) fn handle(&mut self, msg: MidiMsg) {
        match msg {
            MidiMsg::NoteOn { key, velocity, .. } if velocity > 0 => self.hit(key, velocity),
            MidiMsg::Cc { controller: 120, .. } => self.choke(|_| true),
            _ => {}
        }
    }

    pub(super) fn hit(&mut self, key: u8, velocity: u8) {
        let Some(piece) = Piece::from_key(key) else {
            return;
        };
        let (start, len) = self.ranges[piece as usize];
        // Each piece rings once, as on a drum machine: a new hit fades out the last one (so a
        // fast tom or snare roll does not pile up), and any hat hit closes a ringing open hat.
        let hat = matches!(piece, Piece::ClosedHat | Piece::OpenHat);
        self.choke(|p| p == piece || (hat && p == Piece::OpenHat));
        let index = match self.voices.iter().position(|v| !v.active) {
            Some(i) => i,
            None => self.voices.iter().enumerate().min_by_key(|(_, v)| v.age).map_or(0, |(i, _)| i),
        };
        self.hit_counter += 1;
        let level = velocity_gain(velocity, self.velocity) * self.out_gain;
        // Equal-power pan, scaled so the centre is unity on both sides.
        let angle = (piece.pan() + 1.0) * std::f32::consts::FRAC_PI_4;
        let scale = std::f32::consts::SQRT_2 * level;
        self.voices[index] = DrumVoice {
            active: true,
            piece,
            start,
            len,
            pos: 0,
            gain_l: angle.cos() * scale,
            gain_r: angle.sin() * scale,
            fade: 1.0,
            fade_step: 0.0,
            age: self.hit_counter,
        };
    }

    pub(super) fn choke(&mut self, which: impl Fn(Piece) -> bool) {
        for v in self.voices.iter_mut().filter(|v| v.active && which(v.piece)) {
            v.fade_step = self.choke_step;
        }
    }

    pub(super) fn reset(&mut self) {
        for v in &mut self.voices {
            v.active = false;
        }
        self.hit_counter = 0;
    }

    pub(super) fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let (mut al, mut ar) = (0.0f32, 0.0f32);
            for v in self.voices.iter_mut().filter(|v| v.active) {
                let s = self.samples[v.start + v.pos] * v.fade;
                al += s * v.gain_l;
                ar += s * v.gain_r;
                v.pos += 1;
                v.fade -= v.fade_step;
                if v.pos >= v.len || v.fade <= 0.0 {
                    v.active = false;
                }
            }
            *l += al;
            *r += ar;
        }
    }
}
