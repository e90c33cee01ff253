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

mod drums;
mod dsp;
mod kit;
mod synth;
#[cfg(test)]
mod tests;

use crate::model::MidiMsg;
use crate::model::instrument::InstrumentSpec;

use drums::Drums;
pub(crate) use dsp::{Svf, XorShift32};
use synth::{Stage, Synth};

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
