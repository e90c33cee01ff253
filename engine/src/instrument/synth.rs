//! The polyphonic subtractive synth: voices (two oscillators, filter, envelope), voice
//! allocation and stealing, sustain pedal and controllers. Built on the control thread; plays on
//! the audio thread, where it never allocates.

use crate::model::MidiMsg;
use crate::model::instrument::{MAX_POLYPHONY, MAX_TIME, SynthSpec, Waveform};

use super::dsp::{KILL_TIME, SILENCE, Svf, XorShift32, decay_coef, oscillator, velocity_gain};
use super::sane;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Idle,
    Attack,
    /// Decay towards the sustain level, then hold it.
    Decay,
    Release,
    /// Fast linear fade to silence (all sound off).
    Kill,
}

/// Parameters derived once from the [`SynthSpec`] at construction.
#[derive(Debug, Clone, Copy)]
pub(super) struct SynthParams {
    pub(super) sr: f32,
    pub(super) waveform: Waveform,
    /// Level added per sample in the attack stage (>= 1 means instant).
    pub(super) attack_step: f32,
    pub(super) decay_coef: f32,
    pub(super) sustain: f32,
    pub(super) release_coef: f32,
    pub(super) cutoff: f32,
    pub(super) max_cutoff: f32,
    /// SVF damping.
    pub(super) k: f32,
    pub(super) filter_env: f32,
    pub(super) filter_env_coef: f32,
    pub(super) key_track: f32,
    pub(super) osc2_level: f32,
    /// Frequency ratio of oscillator 2 to oscillator 1.
    pub(super) osc2_ratio: f64,
    /// Normalises the oscillator mix so its peak stays at 1.
    pub(super) osc_norm: f32,
    pub(super) out_gain: f32,
    pub(super) velocity: f32,
    /// Per-sample step of the mod-wheel smoother (one-pole, 10 ms).
    pub(super) mod_smooth: f32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Voice {
    pub(super) stage: Stage,
    pub(super) channel: u8,
    pub(super) key: u8,
    /// The key is down (a note-off has not arrived).
    pub(super) held: bool,
    /// The key was released while the sustain pedal was down.
    pub(super) sustained: bool,
    /// Note-on counter value when this voice last started (smaller = older).
    pub(super) age: u64,
    pub(super) level: f32,
    pub(super) kill_step: f32,
    pub(super) vel_gain: f32,
    pub(super) phase1: f64,
    pub(super) inc1: f64,
    pub(super) phase2: f64,
    pub(super) inc2: f64,
    pub(super) filter_env: f32,
    /// Cutoff after key tracking, before envelope and mod wheel.
    pub(super) base_cutoff: f32,
    pub(super) svf: Svf,
}

impl Voice {
    pub(super) fn idle() -> Self {
        Voice {
            stage: Stage::Idle,
            channel: 0,
            key: 0,
            held: false,
            sustained: false,
            age: 0,
            level: 0.0,
            kill_step: 0.0,
            vel_gain: 0.0,
            phase1: 0.0,
            inc1: 0.0,
            phase2: 0.0,
            inc2: 0.0,
            filter_env: 0.0,
            base_cutoff: 1000.0,
            svf: Svf::new(),
        }
    }

    pub(super) fn is_playing(&self) -> bool {
        self.stage != Stage::Idle
    }

    pub(super) fn release(&mut self) {
        if matches!(self.stage, Stage::Attack | Stage::Decay) {
            self.stage = Stage::Release;
        }
        self.held = false;
        self.sustained = false;
    }

    pub(super) fn kill(&mut self, sr: f32) {
        if self.stage != Stage::Idle {
            self.stage = Stage::Kill;
            self.kill_step = self.level.max(SILENCE) / (KILL_TIME * sr);
            self.held = false;
            self.sustained = false;
        }
    }

    /// Advances the envelope one sample; returns false when the voice has finished.
    #[inline]
    pub(super) fn step_envelope(&mut self, p: &SynthParams) -> bool {
        match self.stage {
            Stage::Idle => return false,
            Stage::Attack => {
                self.level += p.attack_step;
                if self.level >= 1.0 {
                    self.level = 1.0;
                    self.stage = Stage::Decay;
                }
            }
            Stage::Decay => {
                self.level = p.sustain + (self.level - p.sustain) * p.decay_coef;
                if p.sustain < SILENCE && self.level < SILENCE {
                    self.stage = Stage::Idle;
                }
            }
            Stage::Release => {
                self.level *= p.release_coef;
                if self.level < SILENCE {
                    self.stage = Stage::Idle;
                }
            }
            Stage::Kill => {
                self.level -= self.kill_step;
                if self.level <= 0.0 {
                    self.stage = Stage::Idle;
                }
            }
        }
        if self.stage == Stage::Idle {
            self.level = 0.0;
            self.held = false;
            self.sustained = false;
            return false;
        }
        true
    }

    /// One output sample (before the synth's output gain).
    #[inline]
    pub(super) fn tick(&mut self, p: &SynthParams, mod_octaves: f32) -> f32 {
        if !self.step_envelope(p) {
            return 0.0;
        }
        let mut x = oscillator(p.waveform, self.phase1, self.inc1);
        self.phase1 += self.inc1;
        if self.phase1 >= 1.0 {
            self.phase1 -= 1.0;
        }
        if p.osc2_level > 0.0 {
            x = (x + p.osc2_level * oscillator(p.waveform, self.phase2, self.inc2)) * p.osc_norm;
            self.phase2 += self.inc2;
            if self.phase2 >= 1.0 {
                self.phase2 -= 1.0;
            }
        }
        let octaves = p.filter_env * self.filter_env + mod_octaves;
        self.filter_env *= p.filter_env_coef;
        if self.filter_env < 1e-6 {
            self.filter_env = 0.0;
        }
        let fc = if octaves == 0.0 { self.base_cutoff } else { self.base_cutoff * octaves.exp2() };
        self.svf.set(fc.clamp(20.0, p.max_cutoff), p.k, p.sr);
        let y = self.svf.step(x).low;
        y * self.level * self.vel_gain
    }
}

/// Seed of the synth's generator (oscillator 2's start phases).
pub(super) const SYNTH_SEED: u32 = 0x5EED_0001;

pub(super) struct Synth {
    pub(super) p: SynthParams,
    pub(super) voices: Vec<Voice>,
    pub(super) note_counter: u64,
    pub(super) pedal: bool,
    pub(super) mod_target: f32,
    pub(super) mod_value: f32,
    pub(super) rng: XorShift32,
}

impl Synth {
    pub(super) fn new(spec: &SynthSpec, sr: f32) -> Synth {
        let d = SynthSpec::default();
        let attack = sane(spec.attack, d.attack, 0.0, MAX_TIME) as f32;
        let osc2_level = sane(spec.osc2_level, d.osc2_level, 0.0, 1.0) as f32;
        let detune = sane(spec.osc2_detune, d.osc2_detune, -100.0, 100.0);
        let octave = f64::from(spec.osc2_octave.clamp(-3, 3));
        let resonance = sane(spec.resonance, d.resonance, 0.0, 1.0) as f32;
        let p = SynthParams {
            sr,
            waveform: spec.waveform,
            attack_step: if attack * sr < 1.0 { 1.0 } else { 1.0 / (attack * sr) },
            decay_coef: decay_coef(sane(spec.decay, d.decay, 0.0, MAX_TIME) as f32, sr),
            sustain: sane(spec.sustain, d.sustain, 0.0, 1.0) as f32,
            release_coef: decay_coef(sane(spec.release, d.release, 0.0, MAX_TIME) as f32, sr),
            cutoff: sane(spec.cutoff, d.cutoff, 20.0, 20000.0) as f32,
            max_cutoff: (0.45 * sr).min(20000.0),
            k: 2.0 - 1.94 * resonance,
            filter_env: sane(spec.filter_env, d.filter_env, -8.0, 8.0) as f32,
            filter_env_coef: decay_coef(sane(spec.filter_decay, d.filter_decay, 0.0, MAX_TIME) as f32, sr),
            key_track: sane(spec.key_track, d.key_track, 0.0, 1.0) as f32,
            osc2_level,
            osc2_ratio: (octave + detune / 1200.0).exp2(),
            osc_norm: 1.0 / (1.0 + osc2_level),
            out_gain: 0.35 * crate::model::db_to_gain(sane(spec.gain_db, d.gain_db, -60.0, 24.0)) as f32,
            velocity: sane(spec.velocity, d.velocity, 0.0, 1.0) as f32,
            mod_smooth: 1.0 - (-1.0 / (0.01 * sr)).exp(),
        };
        let polyphony = spec.polyphony.clamp(1, MAX_POLYPHONY) as usize;
        Synth {
            p,
            voices: vec![Voice::idle(); polyphony],
            note_counter: 0,
            pedal: false,
            mod_target: 0.0,
            mod_value: 0.0,
            rng: XorShift32::new(SYNTH_SEED),
        }
    }

    pub(super) fn handle(&mut self, msg: MidiMsg) {
        match msg {
            MidiMsg::NoteOn { channel, key, velocity } if velocity > 0 => self.note_on(channel, key, velocity),
            MidiMsg::NoteOn { channel, key, .. } | MidiMsg::NoteOff { channel, key } => self.note_off(channel, key),
            MidiMsg::Cc { controller, value, .. } => match controller {
                1 => self.mod_target = f32::from(value.min(127)) / 127.0,
                64 => self.set_pedal(value >= 64),
                120 => self.kill_all(),
                121 => {
                    self.mod_target = 0.0;
                    self.set_pedal(false);
                }
                123 => self.all_notes_off(),
                _ => {}
            },
        }
    }

    pub(super) fn note_on(&mut self, channel: u8, key: u8, velocity: u8) {
        // The same key already sounding is retriggered; otherwise a free voice; otherwise the
        // oldest released voice; otherwise the oldest voice.
        let same = self.voices.iter().position(|v| v.is_playing() && v.key == key && v.channel == channel);
        let free = || self.voices.iter().position(|v| !v.is_playing());
        let oldest_released = || {
            self.voices
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v.stage, Stage::Release | Stage::Kill))
                .min_by_key(|(_, v)| v.age)
                .map(|(i, _)| i)
        };
        let oldest = || self.voices.iter().enumerate().min_by_key(|(_, v)| v.age).map(|(i, _)| i);
        let Some(index) = same.or_else(free).or_else(oldest_released).or_else(oldest) else {
            return;
        };
        self.note_counter += 1;
        let p = self.p;
        let osc2_phase = f64::from(self.rng.unit());
        let voice = &mut self.voices[index];
        if !voice.is_playing() {
            // A fresh voice starts from silence with clean state; a taken-over one carries on
            // from its current level, phase and filter state, so there is no click.
            voice.level = 0.0;
            voice.phase1 = 0.0;
            voice.phase2 = osc2_phase;
            voice.svf.clear();
        }
        let freq = 440.0 * ((f64::from(key) - 69.0) / 12.0).exp2();
        voice.stage = Stage::Attack;
        voice.channel = channel;
        voice.key = key;
        voice.held = true;
        voice.sustained = false;
        voice.age = self.note_counter;
        voice.vel_gain = velocity_gain(velocity, p.velocity);
        voice.inc1 = (freq / f64::from(p.sr)).min(0.5);
        voice.inc2 = (freq * p.osc2_ratio / f64::from(p.sr)).min(0.5);
        voice.filter_env = 1.0;
        voice.base_cutoff = p.cutoff * (p.key_track * (f32::from(key) - 60.0) / 12.0).exp2();
    }

    pub(super) fn note_off(&mut self, channel: u8, key: u8) {
        let pedal = self.pedal;
        for v in self.voices.iter_mut().filter(|v| v.held && v.key == key && v.channel == channel) {
            if pedal {
                v.held = false;
                v.sustained = true;
            } else {
                v.release();
            }
        }
    }

    pub(super) fn set_pedal(&mut self, down: bool) {
        self.pedal = down;
        if !down {
            for v in self.voices.iter_mut().filter(|v| v.sustained) {
                v.release();
            }
        }
    }

    pub(super) fn kill_all(&mut self) {
        let sr = self.p.sr;
        for v in &mut self.voices {
            v.kill(sr);
        }
        self.pedal = false;
    }

    pub(super) fn all_notes_off(&mut self) {
        for v in &mut self.voices {
            v.release();
        }
        self.pedal = false;
    }

    pub(super) fn reset(&mut self) {
        self.voices.fill(Voice::idle());
        self.note_counter = 0;
        self.pedal = false;
        self.mod_target = 0.0;
        self.mod_value = 0.0;
        self.rng = XorShift32::new(SYNTH_SEED);
    }

    pub(super) fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
        let p = self.p;
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            if self.mod_value != self.mod_target {
                self.mod_value += (self.mod_target - self.mod_value) * p.mod_smooth;
                if (self.mod_target - self.mod_value).abs() < 1e-5 {
                    self.mod_value = self.mod_target;
                }
            }
            let mod_octaves = 3.0 * self.mod_value;
            let mut acc = 0.0f32;
            for v in &mut self.voices {
                if v.stage != Stage::Idle {
                    acc += v.tick(&p, mod_octaves);
                }
            }
            let y = acc * p.out_gain;
            *l += y;
            *r += y;
        }
    }
}
