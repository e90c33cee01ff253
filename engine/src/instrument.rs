//! Built-in instruments, so MIDI clips sound with no external gear: a polyphonic subtractive
//! [synth](SynthSpec) and a [drum kit](DrumSpec) whose samples are synthesised when it is built.
//!
//! # Lifecycle and threads
//! - [`Instrument::new`] runs on the control thread. It allocates everything the instrument will
//!   ever need (voices, the drum samples) and is not realtime-safe.
//! - [`Instrument::handle`], [`Instrument::render`], [`Instrument::all_notes_off`] and
//!   [`Instrument::reset`] run on the audio thread. They never allocate, free, lock, block, do
//!   I/O or format strings.
//!
//! # Determinism
//! Every piece of state evolves once per sample (envelopes, oscillators, filter coefficients,
//! controller smoothing, drum chokes) and nothing is computed per block. Rendering `N` frames in
//! one call is therefore bit-identical to rendering them in any sequence of shorter calls
//! (including empty ones), given the same messages between the same frames. The only randomness
//! (oscillator 2's start phase; the noise in the drum samples) comes from seeded xorshift
//! generators, and nothing depends on how denormal numbers are handled: decaying state is snapped
//! to zero, or its voice ended, long before it reaches the denormal range.
//!
//! # MIDI
//! Both instruments listen on every channel (omni). The synth answers note-on/off, CC 1 (mod
//! wheel: opens the filter by up to three octaves), CC 64 (sustain pedal), CC 120 (all sound off:
//! a 3 ms fade), CC 121 (reset controllers) and CC 123 (all notes off). The drum kit answers
//! note-ons on the General MIDI drum map (see [`DrumSpec`]) and CC 120; drum hits are one-shots,
//! so note-offs are ignored.

use crate::model::MidiMsg;
use crate::model::instrument::{DrumSpec, InstrumentSpec, MAX_POLYPHONY, MAX_TIME, SynthSpec, Waveform};

/// `value` clamped to `min..=max`, or `default` if it is not finite.
fn sane(value: f64, default: f64, min: f64, max: f64) -> f64 {
    if value.is_finite() { value.clamp(min, max) } else { default }
}

/// A running instrument: built from an [`InstrumentSpec`] on the control thread, then moved to
/// the audio thread, where it receives MIDI and renders.
pub struct Instrument {
    kind: Kind,
}

enum Kind {
    Synth(Synth),
    Drums(Drums),
}

impl Instrument {
    /// Builds the instrument for `sample_rate` (values below 1000 Hz are treated as 1000 Hz).
    /// Out-of-range or non-finite parameters are clamped or replaced by their defaults (use
    /// [`InstrumentSpec::validate`] for errors).
    ///
    /// Thread: control. Not realtime-safe: allocates every voice and, for drums, synthesises the
    /// samples (a few milliseconds).
    pub fn new(spec: &InstrumentSpec, sample_rate: u32) -> Instrument {
        let sr = sample_rate.max(1000) as f32;
        let kind = match spec {
            InstrumentSpec::Synth(s) => Kind::Synth(Synth::new(s, sr)),
            InstrumentSpec::Drums(d) => Kind::Drums(Drums::new(d, sr)),
        };
        Instrument { kind }
    }

    /// Handles one MIDI message; it takes effect from the next rendered frame.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn handle(&mut self, msg: MidiMsg) {
        match &mut self.kind {
            Kind::Synth(s) => s.handle(msg),
            Kind::Drums(d) => d.handle(msg),
        }
    }

    /// Renders `left.len()` frames and ADDS them into `left` and `right` (which should have the
    /// same length; only the common length is rendered otherwise). Splitting a render into
    /// shorter calls gives bit-identical output.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
        debug_assert_eq!(left.len(), right.len(), "instrument buffers differ in length");
        let n = left.len().min(right.len());
        let (left, right) = (&mut left[..n], &mut right[..n]);
        match &mut self.kind {
            Kind::Synth(s) => s.render(left, right),
            Kind::Drums(d) => d.render(left, right),
        }
    }

    /// Releases every sounding note, as if each key were let go with the sustain pedal up. Synth
    /// notes fade over their release time; drum hits are one-shots and ring out.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn all_notes_off(&mut self) {
        match &mut self.kind {
            Kind::Synth(s) => s.all_notes_off(),
            // Drum hits are one-shots: they ring out.
            Kind::Drums(_) => {}
        }
    }

    /// Silences everything at once (no fade) and returns the instrument to the state [`new`]
    /// left it in (controllers, voice allocation and random generator included), so what is
    /// rendered next is identical to what a fresh instrument would render, e.g. when an offline
    /// render restarts. Use `CC 120` for a click-free stop.
    ///
    /// [`new`]: Instrument::new
    ///
    /// Thread: audio. Realtime-safe.
    pub fn reset(&mut self) {
        match &mut self.kind {
            Kind::Synth(s) => s.reset(),
            Kind::Drums(d) => d.reset(),
        }
    }

    /// Whether nothing is sounding (every voice idle), so rendering would add only zeros.
    ///
    /// Thread: any. Realtime-safe.
    pub fn is_silent(&self) -> bool {
        self.active_voices() == 0
    }

    /// Number of voices currently sounding.
    ///
    /// Thread: any. Realtime-safe.
    pub fn active_voices(&self) -> usize {
        match &self.kind {
            Kind::Synth(s) => s.voices.iter().filter(|v| v.stage != Stage::Idle).count(),
            Kind::Drums(d) => d.voices.iter().filter(|v| v.active).count(),
        }
    }
}

impl std::fmt::Debug for Instrument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Synth(_) => "synth",
            Kind::Drums(_) => "drums",
        };
        f.debug_struct("Instrument").field("kind", &kind).field("active_voices", &self.active_voices()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared DSP
// ---------------------------------------------------------------------------------------------

/// Levels below this are silence: envelopes that fall under it end their voice.
const SILENCE: f32 = 1e-4;
/// ln(1000): turns a -60 dB time into a time constant.
const LN_1000: f32 = 6.907_755;
/// Fade applied by "all sound off", a voice choke or a drum choke, in seconds.
const KILL_TIME: f32 = 0.003;

/// Per-sample multiplier of an exponential decay reaching -60 dB after `time` seconds.
fn decay_coef(time: f32, sr: f32) -> f32 {
    if time <= 0.0 { 0.0 } else { (-LN_1000 / (time * sr)).exp() }
}

/// MIDI velocity to a level with sensitivity `amount` (0..=1): `1 - a + a * (v/127)²`.
fn velocity_gain(velocity: u8, amount: f32) -> f32 {
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
fn poly_blep(t: f64, dt: f64) -> f64 {
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
fn oscillator(wave: Waveform, t: f64, dt: f64) -> f32 {
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
    ic1: f32,
    ic2: f32,
    a1: f32,
    a2: f32,
    a3: f32,
    k: f32,
    /// Cutoff the coefficients were computed for (NaN = none yet).
    fc: f32,
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

    fn clear(&mut self) {
        self.ic1 = 0.0;
        self.ic2 = 0.0;
    }
}

// ---------------------------------------------------------------------------------------------
// Synth
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
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
struct SynthParams {
    sr: f32,
    waveform: Waveform,
    /// Level added per sample in the attack stage (>= 1 means instant).
    attack_step: f32,
    decay_coef: f32,
    sustain: f32,
    release_coef: f32,
    cutoff: f32,
    max_cutoff: f32,
    /// SVF damping.
    k: f32,
    filter_env: f32,
    filter_env_coef: f32,
    key_track: f32,
    osc2_level: f32,
    /// Frequency ratio of oscillator 2 to oscillator 1.
    osc2_ratio: f64,
    /// Normalises the oscillator mix so its peak stays at 1.
    osc_norm: f32,
    out_gain: f32,
    velocity: f32,
    /// Per-sample step of the mod-wheel smoother (one-pole, 10 ms).
    mod_smooth: f32,
}

#[derive(Debug, Clone, Copy)]
struct Voice {
    stage: Stage,
    channel: u8,
    key: u8,
    /// The key is down (a note-off has not arrived).
    held: bool,
    /// The key was released while the sustain pedal was down.
    sustained: bool,
    /// Note-on counter value when this voice last started (smaller = older).
    age: u64,
    level: f32,
    kill_step: f32,
    vel_gain: f32,
    phase1: f64,
    inc1: f64,
    phase2: f64,
    inc2: f64,
    filter_env: f32,
    /// Cutoff after key tracking, before envelope and mod wheel.
    base_cutoff: f32,
    svf: Svf,
}

impl Voice {
    fn idle() -> Self {
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

    fn is_playing(&self) -> bool {
        self.stage != Stage::Idle
    }

    fn release(&mut self) {
        if matches!(self.stage, Stage::Attack | Stage::Decay) {
            self.stage = Stage::Release;
        }
        self.held = false;
        self.sustained = false;
    }

    fn kill(&mut self, sr: f32) {
        if self.stage != Stage::Idle {
            self.stage = Stage::Kill;
            self.kill_step = self.level.max(SILENCE) / (KILL_TIME * sr);
            self.held = false;
            self.sustained = false;
        }
    }

    /// Advances the envelope one sample; returns false when the voice has finished.
    #[inline]
    fn step_envelope(&mut self, p: &SynthParams) -> bool {
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
    fn tick(&mut self, p: &SynthParams, mod_octaves: f32) -> f32 {
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
const SYNTH_SEED: u32 = 0x5EED_0001;

struct Synth {
    p: SynthParams,
    voices: Vec<Voice>,
    note_counter: u64,
    pedal: bool,
    mod_target: f32,
    mod_value: f32,
    rng: XorShift32,
}

impl Synth {
    fn new(spec: &SynthSpec, sr: f32) -> Synth {
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

    fn handle(&mut self, msg: MidiMsg) {
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

    fn note_on(&mut self, channel: u8, key: u8, velocity: u8) {
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

    fn note_off(&mut self, channel: u8, key: u8) {
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

    fn set_pedal(&mut self, down: bool) {
        self.pedal = down;
        if !down {
            for v in self.voices.iter_mut().filter(|v| v.sustained) {
                v.release();
            }
        }
    }

    fn kill_all(&mut self) {
        let sr = self.p.sr;
        for v in &mut self.voices {
            v.kill(sr);
        }
        self.pedal = false;
    }

    fn all_notes_off(&mut self) {
        for v in &mut self.voices {
            v.release();
        }
        self.pedal = false;
    }

    fn reset(&mut self) {
        self.voices.fill(Voice::idle());
        self.note_counter = 0;
        self.pedal = false;
        self.mod_target = 0.0;
        self.mod_value = 0.0;
        self.rng = XorShift32::new(SYNTH_SEED);
    }

    fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
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

// ---------------------------------------------------------------------------------------------
// Drums
// ---------------------------------------------------------------------------------------------

/// Kit pieces, in the order their samples are stored (discriminant = index in [`PIECES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
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

const PIECES: [Piece; 11] = [
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
    fn from_key(key: u8) -> Option<Piece> {
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
    fn pan(self) -> f32 {
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
    fn peak(self) -> f32 {
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

/// Most drum hits sounding at once; beyond that the oldest is cut.
const DRUM_VOICES: usize = 32;

#[derive(Debug, Clone, Copy)]
struct DrumVoice {
    active: bool,
    piece: Piece,
    /// Start of the piece's sample in [`Drums::samples`].
    start: usize,
    /// Length of the piece's sample.
    len: usize,
    /// Next frame of the sample.
    pos: usize,
    gain_l: f32,
    gain_r: f32,
    /// Choke fade: 1 = not choked; falls by `fade_step` per sample once choked.
    fade: f32,
    fade_step: f32,
    age: u64,
}

struct Drums {
    /// Every piece's sample, concatenated (mono; panned at playback).
    samples: Vec<f32>,
    /// `(start, length)` in `samples` of each piece, indexed like [`PIECES`].
    ranges: [(usize, usize); PIECES.len()],
    voices: Vec<DrumVoice>,
    out_gain: f32,
    velocity: f32,
    hit_counter: u64,
    choke_step: f32,
}

impl Drums {
    fn new(spec: &DrumSpec, sr: f32) -> Drums {
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

    fn handle(&mut self, msg: MidiMsg) {
        match msg {
            MidiMsg::NoteOn { key, velocity, .. } if velocity > 0 => self.hit(key, velocity),
            MidiMsg::Cc { controller: 120, .. } => self.choke(|_| true),
            _ => {}
        }
    }

    fn hit(&mut self, key: u8, velocity: u8) {
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

    fn choke(&mut self, which: impl Fn(Piece) -> bool) {
        for v in self.voices.iter_mut().filter(|v| v.active && which(v.piece)) {
            v.fade_step = self.choke_step;
        }
    }

    fn reset(&mut self) {
        for v in &mut self.voices {
            v.active = false;
        }
        self.hit_counter = 0;
    }

    fn render(&mut self, left: &mut [f32], right: &mut [f32]) {
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

/// Fades the tail of a sample out over its last 15% and scales it to peak at `peak`.
fn finish(s: &mut [f32], peak: f32, sr: f32) {
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
struct KitSynth {
    sr: f32,
    /// Pitch ratio from `tune`; decay times are divided by it, as a sampler would.
    ratio: f32,
    rng: XorShift32,
}

/// Frequencies of the six square oscillators behind the hats (the TR-808's), in Hz.
const HAT_METAL: [f32; 6] = [205.3, 304.4, 369.6, 522.7, 540.0, 800.0];
/// Frequencies of the ride's metal, a different inharmonic cluster.
const RIDE_METAL: [f32; 6] = [253.0, 391.0, 447.0, 612.0, 709.0, 1031.0];
/// Frequencies of the crash's metal.
const CRASH_METAL: [f32; 6] = [311.0, 459.0, 527.0, 697.0, 813.0, 1187.0];

impl KitSynth {
    fn frames(&self, seconds: f32) -> usize {
        (seconds / self.ratio * self.sr) as usize
    }

    /// Time in seconds of frame `i`, in the kit's (tuned) time.
    fn time(&self, i: usize) -> f32 {
        i as f32 / self.sr * self.ratio
    }

    fn piece(&mut self, piece: Piece) -> Vec<f32> {
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

    fn kick(&mut self) -> Vec<f32> {
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

    fn snare(&mut self) -> Vec<f32> {
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

    fn clap(&mut self) -> Vec<f32> {
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

    fn tom(&mut self, freq: f32, decay: f32) -> Vec<f32> {
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

    fn rim(&mut self) -> Vec<f32> {
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
    fn metal_bank(&self, metal: &[f32; 6], scale: f32) -> [f64; 6] {
        let mut inc = [0.0f64; 6];
        for (d, f) in inc.iter_mut().zip(metal) {
            *d = f64::from(f * scale * self.ratio / self.sr).min(0.5);
        }
        inc
    }

    fn hat(&mut self, decay: f32, seconds: f32) -> Vec<f32> {
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

    fn cymbal(&mut self, metal: &[f32; 6], decay: f32, seconds: f32, noise: f32, bell: f32) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 48_000;

    fn on(key: u8, velocity: u8) -> MidiMsg {
        MidiMsg::NoteOn { channel: 0, key, velocity }
    }

    fn off(key: u8) -> MidiMsg {
        MidiMsg::NoteOff { channel: 0, key }
    }

    fn cc(controller: u8, value: u8) -> MidiMsg {
        MidiMsg::Cc { channel: 0, controller, value }
    }

    /// Renders `frames` frames, handling each `(frame, msg)` (sorted by frame) before that frame.
    /// Between messages, the render is split into calls whose lengths `split` chooses (given the
    /// frames left in the segment), or made in one call when `split` is `None`.
    fn render_with(
        inst: &mut Instrument,
        frames: usize,
        events: &[(usize, MidiMsg)],
        mut split: Option<&mut dyn FnMut(usize) -> usize>,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut left = vec![0.0f32; frames];
        let mut right = vec![0.0f32; frames];
        let mut pos = 0;
        let mut next = 0;
        while pos < frames {
            while next < events.len() && events[next].0 <= pos {
                inst.handle(events[next].1);
                next += 1;
            }
            let end = events.get(next).map_or(frames, |e| e.0.min(frames));
            while pos < end {
                let len = match split.as_mut() {
                    Some(f) => f(end - pos).min(end - pos),
                    None => end - pos,
                };
                inst.render(&mut left[pos..pos + len], &mut right[pos..pos + len]);
                pos += len;
            }
        }
        (left, right)
    }

    fn render(inst: &mut Instrument, frames: usize, events: &[(usize, MidiMsg)]) -> (Vec<f32>, Vec<f32>) {
        render_with(inst, frames, events, None)
    }

    fn peak(x: &[f32]) -> f32 {
        x.iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    fn synth(spec: SynthSpec) -> Instrument {
        Instrument::new(&InstrumentSpec::Synth(spec), SR)
    }

    fn drums() -> Instrument {
        Instrument::new(&InstrumentSpec::Drums(DrumSpec::default()), SR)
    }

    fn assert_bit_identical(spec: &InstrumentSpec, frames: usize, events: &[(usize, MidiMsg)]) {
        let (ref_l, ref_r) = render(&mut Instrument::new(spec, SR), frames, events);
        assert!(peak(&ref_l) > 0.01, "the reference render is silent");
        for seed in 1..=6u32 {
            let mut rng = XorShift32::new(seed * 7919);
            let mut split = |left: usize| -> usize {
                // Mostly small and odd sizes, with empty and single-frame calls.
                match rng.next_u32() % 8 {
                    0 => 0,
                    1 => 1,
                    2 => left,
                    _ => (rng.next_u32() % 700) as usize,
                }
            };
            let (l, r) = render_with(&mut Instrument::new(spec, SR), frames, events, Some(&mut split));
            for i in 0..frames {
                assert_eq!(ref_l[i].to_bits(), l[i].to_bits(), "left differs at frame {i} (seed {seed})");
                assert_eq!(ref_r[i].to_bits(), r[i].to_bits(), "right differs at frame {i} (seed {seed})");
            }
        }
    }

    #[test]
    fn synth_is_block_size_invariant() {
        let spec = InstrumentSpec::Synth(SynthSpec {
            filter_env: 3.0,
            filter_decay: 0.2,
            osc2_level: 0.6,
            resonance: 0.6,
            key_track: 0.5,
            polyphony: 4,
            ..SynthSpec::default()
        });
        let mut events = vec![
            (0, on(57, 100)),
            (100, on(60, 90)),
            (2000, cc(1, 127)),
            (2001, on(64, 70)),
            (5000, cc(64, 127)),
            (6000, off(57)),
            (6000, off(60)),
            (9000, on(67, 127)),
            (9500, on(69, 127)),
            (9700, on(71, 40)),
            (12000, cc(64, 0)),
            (13000, cc(1, 0)),
            (15000, on(72, 110)),
            (20000, off(72)),
            (24000, on(45, 127)),
            (26000, cc(120, 0)),
            (27000, on(48, 80)),
            (30000, cc(123, 0)),
        ];
        events.sort_by_key(|e| e.0);
        assert_bit_identical(&spec, 40_000, &events);
        for waveform in [Waveform::Square, Waveform::Triangle, Waveform::Sine] {
            let spec = InstrumentSpec::Synth(SynthSpec { waveform, attack: 0.05, ..SynthSpec::default() });
            assert_bit_identical(&spec, 12_000, &[(0, on(60, 100)), (5000, on(64, 100)), (8000, off(60))]);
        }
    }

    #[test]
    fn drums_are_block_size_invariant() {
        let spec = InstrumentSpec::Drums(DrumSpec { tune: -2.0, ..DrumSpec::default() });
        let mut events = Vec::new();
        let keys = [36, 42, 38, 46, 36, 44, 39, 42, 49, 51, 37, 41, 45, 48, 40, 42];
        for (i, &k) in keys.iter().enumerate() {
            events.push((i * 3001, on(k, 40 + (i as u8 * 5))));
        }
        events.push((30000, on(46, 127)));
        events.push((31000, on(42, 127)));
        events.push((40000, cc(120, 0)));
        assert_bit_identical(&spec, 60_000, &events);
    }

    #[test]
    fn note_sounds_and_stops_after_release() {
        let mut inst = synth(SynthSpec::default());
        let (l, r) = render(&mut inst, SR as usize, &[(0, on(57, 127))]);
        let p = peak(&l);
        assert!(p > 0.2 && p < 0.55, "full-velocity note peaks at {p}");
        assert_eq!(l, r);
        assert!(!inst.is_silent());
        inst.handle(off(57));
        // Release 0.3 s reaches -60 dB at 0.3 s and silence (-80 dB) by 0.4 s.
        let (l, _) = render(&mut inst, SR as usize / 2, &[]);
        assert!(peak(&l[..100]) > 0.05, "the release starts from the sustained level");
        assert!(inst.is_silent(), "voice still active after its release");
        assert!(l[SR as usize / 2 - 1000..].iter().all(|&x| x == 0.0));
        let (l, _) = render(&mut inst, 1000, &[]);
        assert!(l.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn sustain_pedal_holds_notes() {
        let mut inst = synth(SynthSpec { release: 0.05, ..SynthSpec::default() });
        let half = SR as usize / 2;
        render(&mut inst, half, &[(0, cc(64, 127)), (0, on(60, 100)), (100, off(60))]);
        assert!(!inst.is_silent(), "the pedal should hold the note");
        inst.handle(cc(64, 0));
        render(&mut inst, half, &[]);
        assert!(inst.is_silent(), "lifting the pedal should release the note");
    }

    #[test]
    fn all_sound_off_and_all_notes_off_silence() {
        let mut inst = synth(SynthSpec { release: 2.0, ..SynthSpec::default() });
        render(&mut inst, 1000, &[(0, on(60, 100)), (0, on(64, 100))]);
        inst.handle(cc(120, 0));
        let (l, _) = render(&mut inst, 1000, &[]);
        assert!(inst.is_silent(), "CC 120 fades within {KILL_TIME} s");
        assert!(l[200..].iter().all(|&x| x == 0.0));

        let mut inst = synth(SynthSpec { release: 0.05, ..SynthSpec::default() });
        render(&mut inst, 1000, &[(0, cc(64, 127)), (0, on(60, 100))]);
        inst.all_notes_off();
        render(&mut inst, SR as usize / 5, &[]);
        assert!(inst.is_silent(), "all_notes_off releases even pedalled notes");
    }

    /// Frequency from the interpolated positions of the first and last rising zero crossings.
    fn frequency(x: &[f32]) -> f64 {
        let mut crossings = Vec::new();
        for i in 1..x.len() {
            if x[i - 1] < 0.0 && x[i] >= 0.0 {
                let frac = f64::from(-x[i - 1]) / f64::from(x[i] - x[i - 1]);
                crossings.push(i as f64 - 1.0 + frac);
            }
        }
        assert!(crossings.len() > 2, "no periodic signal");
        let periods = (crossings.len() - 1) as f64;
        f64::from(SR) * periods / (crossings[crossings.len() - 1] - crossings[0])
    }

    #[test]
    fn sine_note_69_is_440_hz() {
        let mut inst = synth(SynthSpec { waveform: Waveform::Sine, ..SynthSpec::default() });
        let (l, _) = render(&mut inst, SR as usize, &[(0, on(69, 100))]);
        let f = frequency(&l[4800..]);
        assert!((f - 440.0).abs() < 0.05, "note 69 plays at {f} Hz");
        let mut inst = synth(SynthSpec { waveform: Waveform::Sine, ..SynthSpec::default() });
        let (l, _) = render(&mut inst, SR as usize, &[(0, on(57, 100))]);
        let f = frequency(&l[4800..]);
        assert!((f - 220.0).abs() < 0.05, "note 57 plays at {f} Hz");
    }

    #[test]
    fn every_waveform_sounds_without_clipping() {
        for waveform in [Waveform::Saw, Waveform::Square, Waveform::Triangle, Waveform::Sine] {
            for osc2_level in [0.0, 1.0] {
                let mut inst = synth(SynthSpec { waveform, osc2_level, ..SynthSpec::default() });
                let (l, _) = render(&mut inst, SR as usize / 4, &[(0, on(45, 127))]);
                let p = peak(&l);
                assert!(p > 0.15 && p < 0.6, "{waveform:?} osc2 {osc2_level}: peak {p}");
            }
        }
    }

    #[test]
    fn saw_is_band_limited() {
        // A high saw (key 100, ~2.6 kHz) with the filter wide open: a naive saw folds harmonics
        // back as inharmonic partials. Compare the energy between harmonics with PolyBLEP on.
        let spec = SynthSpec { cutoff: 20000.0, resonance: 0.0, attack: 0.0, ..SynthSpec::default() };
        let mut inst = synth(spec);
        let n = 48_000;
        let (l, _) = render(&mut inst, n, &[(0, on(100, 127))]);
        let x = &l[4800..4800 + 16384];
        let f0 = 440.0 * ((100.0 - 69.0) / 12.0f64).exp2();
        // Goertzel power at a frequency.
        let power = |f: f64| {
            let w = std::f64::consts::TAU * f / f64::from(SR);
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for (i, &v) in x.iter().enumerate() {
                let win = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / x.len() as f64).cos();
                let s = f64::from(v) * win + 2.0 * w.cos() * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
        };
        let fundamental = power(f0);
        // Harmonics 10..=18 lie above Nyquist; a naive saw folds them back to 48 kHz - h f0, which
        // falls between the harmonics (about 20 dB below the fundamental; PolyBLEP gets ~37 dB).
        let mut worst = 0.0f64;
        for h in 10..19 {
            let alias = f64::from(SR) - h as f64 * f0;
            worst = worst.max(power(alias.abs()));
        }
        let ratio_db = 10.0 * (worst / fundamental).log10();
        assert!(ratio_db < -30.0, "aliases at {ratio_db:.1} dB relative to the fundamental");
    }

    #[test]
    fn voice_stealing_with_more_than_sixteen_notes() {
        let mut inst = synth(SynthSpec::default());
        let events: Vec<_> = (0..40u8).map(|i| (i as usize * 50, on(30 + i, 100))).collect();
        let (l, _) = render(&mut inst, 4000, &events);
        assert!(l.iter().all(|x| x.is_finite()));
        assert_eq!(inst.active_voices(), 16);
        let p = peak(&l);
        assert!(p > 0.1 && p < 16.0 * 0.5, "peak {p}");
        // The newest note is still held: releasing it and then everything leaves silence.
        inst.all_notes_off();
        render(&mut inst, SR as usize, &[]);
        assert!(inst.is_silent());
    }

    #[test]
    fn retriggering_a_key_reuses_its_voice() {
        let mut inst = synth(SynthSpec::default());
        render(&mut inst, 1000, &[(0, on(60, 100)), (500, on(60, 100))]);
        assert_eq!(inst.active_voices(), 1);
    }

    #[test]
    fn each_mapped_drum_sounds_and_unmapped_notes_do_not() {
        for key in [36u8, 37, 38, 39, 40, 41, 42, 44, 45, 46, 48, 49, 51] {
            let mut inst = drums();
            let (l, r) = render(&mut inst, SR as usize / 2, &[(0, on(key, 127))]);
            let p = peak(&l).max(peak(&r));
            assert!(p > 0.15 && p <= 0.6, "drum key {key} peaks at {p}");
            assert!(rms(&l[..2400]) > 0.01, "drum key {key} is too quiet");
            // A soft hit is quieter than a hard one.
            let mut inst = drums();
            let (soft, _) = render(&mut inst, SR as usize / 2, &[(0, on(key, 40))]);
            assert!(peak(&soft) < 0.5 * peak(&l), "velocity does not scale key {key}");
        }
        for key in [0u8, 35, 43, 47, 50, 60, 127] {
            let mut inst = drums();
            let (l, r) = render(&mut inst, 4800, &[(0, on(key, 127))]);
            assert!(l.iter().chain(&r).all(|&x| x == 0.0), "unmapped key {key} made sound");
            assert!(inst.is_silent());
        }
    }

    #[test]
    fn drum_pieces_have_their_character() {
        let energy_split = |key: u8| {
            // Energy below and above ~1.5 kHz, using a one-pole split.
            let (l, _) = render(&mut drums(), SR as usize / 4, &[(0, on(key, 127))]);
            let a = (-std::f32::consts::TAU * 1500.0 / SR as f32).exp();
            let (mut low, mut lo, mut hi) = (0.0f32, 0.0f32, 0.0f32);
            for &x in &l {
                low = x + a * (low - x);
                lo += low * low;
                hi += (x - low) * (x - low);
            }
            (lo, hi)
        };
        let (klo, khi) = energy_split(36);
        assert!(klo > 10.0 * khi, "the kick should be mostly low end ({klo} vs {khi})");
        let (hlo, hhi) = energy_split(42);
        assert!(hhi > 10.0 * hlo, "the hat should be mostly highs ({hlo} vs {hhi})");
        let (slo, shi) = energy_split(38);
        assert!(slo > 0.05 * shi && shi > 0.05 * slo, "the snare should mix tone and noise");
    }

    #[test]
    fn open_hat_is_choked_by_closed_hat() {
        let n = SR as usize / 2;
        let tail = SR as usize / 4..n; // after the closed hat (0.15 s long) has ended
        let (open, _) = render(&mut drums(), n, &[(0, on(46, 127))]);
        assert!(rms(&open[tail.clone()]) > 1e-3, "the open hat should still ring");
        for closer in [42u8, 44] {
            let (choked, _) = render(&mut drums(), n, &[(0, on(46, 127)), (2400, on(closer, 127))]);
            assert!(choked[tail.clone()].iter().all(|&x| x == 0.0), "key {closer} does not choke the open hat");
        }
        // Other pieces do not choke it.
        let (with_kick, _) = render(&mut drums(), n, &[(0, on(46, 127)), (2400, on(36, 127))]);
        assert!(rms(&with_kick[tail]) > 1e-3);
    }

    #[test]
    fn drums_steal_the_oldest_hit_when_full() {
        let mut inst = drums();
        // A hit on every frame: each choked hit still fades for a few milliseconds.
        let keys = [36, 37, 38, 39, 41, 42, 45, 46, 48, 49, 51];
        let events: Vec<_> = (0..200).map(|i| (i, on(keys[i % keys.len()], 100))).collect();
        let (l, _) = render(&mut inst, 200, &events);
        assert!(l.iter().all(|x| x.is_finite()));
        assert_eq!(inst.active_voices(), DRUM_VOICES);
    }

    #[test]
    fn a_new_hit_fades_out_the_last_hit_of_the_same_piece() {
        let n = SR as usize / 2;
        let (once, _) = render(&mut drums(), n, &[(0, on(41, 110))]);
        let (twice, _) = render(&mut drums(), n, &[(0, on(41, 110)), (6000, on(41, 110))]);
        // The second hit replaces the first instead of adding to it.
        assert_eq!(peak(&twice[6000 + 480..]), peak(&once[480..n - 6000]));
        // A different piece does not cut it.
        let (with_snare, _) = render(&mut drums(), n, &[(0, on(41, 110)), (6000, on(38, 110))]);
        assert!(rms(&with_snare[6000 + 2400..]) > rms(&twice[6000 + 2400..]) * 0.5);
    }

    #[test]
    fn tune_changes_drum_pitch() {
        let hi = Instrument::new(&InstrumentSpec::Drums(DrumSpec { tune: 12.0, ..DrumSpec::default() }), SR);
        let lo = drums();
        let len = |mut inst: Instrument| {
            let (l, _) = render(&mut inst, SR as usize, &[(0, on(45, 127))]);
            l.iter().rposition(|&x| x != 0.0).unwrap_or(0)
        };
        let (h, l) = (len(hi), len(lo));
        assert!(h * 3 < l * 2, "an octave up should halve the length ({h} vs {l})");
    }

    #[test]
    fn reset_renders_like_a_fresh_instrument() {
        let events = [(0, on(60, 100)), (10, on(64, 90)), (3000, cc(1, 64)), (6000, on(42, 100))];
        let specs = [
            InstrumentSpec::Synth(SynthSpec { osc2_level: 0.5, ..SynthSpec::default() }),
            InstrumentSpec::Drums(DrumSpec::default()),
        ];
        for spec in &specs {
            let fresh = render(&mut Instrument::new(spec, SR), 9000, &events);
            let mut used = Instrument::new(spec, SR);
            render(&mut used, 5000, &[(0, on(67, 127)), (0, cc(64, 127)), (100, on(38, 127))]);
            used.reset();
            assert!(used.is_silent());
            assert_eq!(render(&mut used, 9000, &events), fresh);
        }
    }

    #[test]
    fn validate_names_the_bad_parameter() {
        let bad = InstrumentSpec::Synth(SynthSpec { resonance: 2.0, ..SynthSpec::default() });
        assert!(bad.validate().unwrap_err().contains("resonance"));
        let bad = InstrumentSpec::Drums(DrumSpec { tune: f64::NAN, ..DrumSpec::default() });
        assert!(bad.validate().unwrap_err().contains("tune"));
        // Out-of-range values are clamped, not trusted, by `new`.
        let mut inst = synth(SynthSpec { cutoff: f64::INFINITY, attack: -1.0, polyphony: 0, ..SynthSpec::default() });
        let (l, _) = render(&mut inst, 1000, &[(0, on(60, 100))]);
        assert!(l.iter().all(|x| x.is_finite()) && peak(&l) > 0.0);
    }
}
