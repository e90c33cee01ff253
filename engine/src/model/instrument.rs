//! Which built-in instrument plays a MIDI track, and its settings, as the session file gives
//! them (`instrument = { type = "synth", ... }`). Pure data with range checks; any thread. The
//! running instruments are in the engine's `instrument` module.

use serde::{Deserialize, Serialize};

/// Which built-in instrument plays a MIDI track.
///
/// In a session file this is a table with a `type` key, e.g.
/// `instrument = { type = "synth", waveform = "square", cutoff = 800.0 }` or
/// `instrument = { type = "drums" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum InstrumentSpec {
    /// Polyphonic subtractive synth.
    Synth(SynthSpec),
    /// Drum kit with synthesised samples.
    Drums(DrumSpec),
}

impl InstrumentSpec {
    /// Checks that every parameter is finite and in range, naming the first one that is not.
    /// The running instrument clamps out-of-range values anyway; this is for clear errors when a
    /// session file is loaded. Any thread; not realtime-safe (formats the error).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            InstrumentSpec::Synth(s) => s.validate(),
            InstrumentSpec::Drums(d) => d.validate(),
        }
    }
}

/// Oscillator waveform of the synth (session-file spelling in kebab-case: `"saw"`, `"square"`,
/// `"triangle"`, `"sine"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Waveform {
    /// Band-limited (PolyBLEP) sawtooth: bright, buzzy.
    #[default]
    Saw,
    /// Band-limited (PolyBLEP) square: hollow.
    Square,
    /// Triangle: soft.
    Triangle,
    /// Sine: pure.
    Sine,
}

/// Settings of the polyphonic synth. Every field has a default, so `{ type = "synth" }` is a
/// complete instrument; unknown fields are an error.
///
/// Signal path per voice: oscillator 1 (+ optional detuned oscillator 2) -> resonant 12 dB/octave
/// state-variable low-pass filter -> ADSR amplifier. A full-velocity note at `gain_db = 0`
/// peaks around 0.35-0.45.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthSpec {
    /// Oscillator waveform (both oscillators). Default `saw`.
    pub waveform: Waveform,
    /// Attack time in seconds: linear rise from silence to full level. Default 0.005.
    pub attack: f64,
    /// Decay time in seconds: exponential fall from full level towards `sustain` (reaches the
    /// last 0.1% of the distance, -60 dB, after this time). Default 0.3.
    pub decay: f64,
    /// Sustain level, 0..=1, held while the key (or the sustain pedal) is down. Default 0.7.
    pub sustain: f64,
    /// Release time in seconds: exponential fall to silence after note-off (-60 dB after this
    /// time). Default 0.3.
    pub release: f64,
    /// Low-pass filter cutoff in Hz (20..=20000). Default 3000.
    pub cutoff: f64,
    /// Filter resonance, 0 (none) ..=1 (close to self-oscillation). Default 0.2.
    pub resonance: f64,
    /// How far the filter envelope opens the cutoff at note-on, in octaves (-8..=8; 0 = off).
    /// The filter envelope jumps to full at each note-on and decays over `filter_decay`.
    /// Default 0.
    pub filter_env: f64,
    /// Time for the filter envelope to decay (-60 dB), in seconds. Default 0.3.
    pub filter_decay: f64,
    /// How much the cutoff follows the key, 0..=1 (1 = one octave per octave, relative to middle
    /// C, key 60). Default 0.
    pub key_track: f64,
    /// Level of the second oscillator relative to the first, 0..=1 (0 = off). Default 0.
    pub osc2_level: f64,
    /// Detune of the second oscillator in cents (-100..=100). Default 7.
    pub osc2_detune: f64,
    /// Octave offset of the second oscillator (-3..=3). Default 0.
    pub osc2_octave: i32,
    /// Output gain in dB (-60..=24). Default 0.
    pub gain_db: f64,
    /// Velocity sensitivity, 0..=1: 0 = every note at full level; 1 = level follows
    /// (velocity / 127)². Default 0.7.
    pub velocity: f64,
    /// Number of voices (1..=64). When all are busy the oldest released voice, or else the
    /// oldest voice, is taken over (smoothly: its level and phase carry on). Default 16.
    pub polyphony: u32,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            waveform: Waveform::Saw,
            attack: 0.005,
            decay: 0.3,
            sustain: 0.7,
            release: 0.3,
            cutoff: 3000.0,
            resonance: 0.2,
            filter_env: 0.0,
            filter_decay: 0.3,
            key_track: 0.0,
            osc2_level: 0.0,
            osc2_detune: 7.0,
            osc2_octave: 0,
            gain_db: 0.0,
            velocity: 0.7,
            polyphony: 16,
        }
    }
}

impl SynthSpec {
    /// Checks every parameter's range (see [`InstrumentSpec::validate`]). Any thread; not
    /// realtime-safe.
    pub fn validate(&self) -> Result<(), String> {
        check("attack", self.attack, 0.0, MAX_TIME)?;
        check("decay", self.decay, 0.0, MAX_TIME)?;
        check("sustain", self.sustain, 0.0, 1.0)?;
        check("release", self.release, 0.0, MAX_TIME)?;
        check("cutoff", self.cutoff, 20.0, 20000.0)?;
        check("resonance", self.resonance, 0.0, 1.0)?;
        check("filter_env", self.filter_env, -8.0, 8.0)?;
        check("filter_decay", self.filter_decay, 0.0, MAX_TIME)?;
        check("key_track", self.key_track, 0.0, 1.0)?;
        check("osc2_level", self.osc2_level, 0.0, 1.0)?;
        check("osc2_detune", self.osc2_detune, -100.0, 100.0)?;
        check("osc2_octave", f64::from(self.osc2_octave), -3.0, 3.0)?;
        check("gain_db", self.gain_db, -60.0, 24.0)?;
        check("velocity", self.velocity, 0.0, 1.0)?;
        check("polyphony", f64::from(self.polyphony), 1.0, MAX_POLYPHONY as f64)?;
        Ok(())
    }
}

/// Settings of the drum kit. Every field has a default, so `{ type = "drums" }` is a complete
/// instrument; unknown fields are an error.
///
/// The kit follows the General MIDI drum map: 36 kick, 37 rim, 38 and 40 snare, 39 clap,
/// 41 low tom, 42 and 44 closed hi-hat, 45 mid tom, 46 open hi-hat (choked by 42 and 44),
/// 48 high tom, 49 crash, 51 ride. Other notes are ignored. Hits are one-shots (note-offs are
/// ignored) and each piece rings once, as on a drum machine: a new hit fades out the previous hit
/// of the same piece within 3 ms. A full-velocity hit peaks around 0.3-0.5 at `gain_db = 0`,
/// and the pieces are panned as seen from the audience (hats and ride right, crash left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrumSpec {
    /// Output gain in dB (-60..=24). Default 0.
    pub gain_db: f64,
    /// Tuning of the whole kit in semitones (-12..=12); shifts pitch and scales decay times
    /// like a sampler would. Default 0.
    pub tune: f64,
    /// Velocity sensitivity, 0..=1: 0 = every hit at full level; 1 = level follows
    /// (velocity / 127)², so ghost notes around velocity 40 sit about 20 dB down. Default 1.
    pub velocity: f64,
}

impl Default for DrumSpec {
    fn default() -> Self {
        DrumSpec { gain_db: 0.0, tune: 0.0, velocity: 1.0 }
    }
}

impl DrumSpec {
    /// Checks every parameter's range (see [`InstrumentSpec::validate`]). Any thread; not
    /// realtime-safe.
    pub fn validate(&self) -> Result<(), String> {
        check("gain_db", self.gain_db, -60.0, 24.0)?;
        check("tune", self.tune, -12.0, 12.0)?;
        check("velocity", self.velocity, 0.0, 1.0)?;
        Ok(())
    }
}

/// Longest envelope time accepted, in seconds.
pub(crate) const MAX_TIME: f64 = 60.0;
/// Most synth voices accepted.
pub(crate) const MAX_POLYPHONY: u32 = 64;

fn check(name: &str, value: f64, min: f64, max: f64) -> Result<(), String> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("instrument parameter `{name}` is {value}; it must be in {min}..={max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_from_toml() {
        let spec: InstrumentSpec =
            toml::from_str("type = \"synth\"\nwaveform = \"square\"\ncutoff = 800\nattack = 0.01\nosc2_level = 0.5\n")
                .unwrap();
        let InstrumentSpec::Synth(s) = &spec else { panic!("not a synth: {spec:?}") };
        assert_eq!(s.waveform, Waveform::Square);
        assert_eq!(s.cutoff, 800.0);
        assert_eq!(s.attack, 0.01);
        assert_eq!(s.osc2_level, 0.5);
        assert_eq!(s.release, SynthSpec::default().release);
        assert!(spec.validate().is_ok());

        let spec: InstrumentSpec = toml::from_str("type = \"synth\"").unwrap();
        assert_eq!(spec, InstrumentSpec::Synth(SynthSpec::default()));
        let spec: InstrumentSpec = toml::from_str("type = \"drums\"\ngain_db = -3.0").unwrap();
        assert_eq!(spec, InstrumentSpec::Drums(DrumSpec { gain_db: -3.0, ..DrumSpec::default() }));

        #[derive(Deserialize)]
        struct Track {
            instrument: InstrumentSpec,
        }
        let t: Track = toml::from_str("instrument = { type = \"synth\", waveform = \"triangle\" }").unwrap();
        assert!(matches!(t.instrument, InstrumentSpec::Synth(SynthSpec { waveform: Waveform::Triangle, .. })));

        assert!(toml::from_str::<InstrumentSpec>("type = \"synth\"\ncutof = 800").is_err(), "unknown field");
        assert!(toml::from_str::<InstrumentSpec>("type = \"synth\"\nwaveform = \"noise\"").is_err());
        assert!(toml::from_str::<InstrumentSpec>("type = \"organ\"").is_err());

        let back: InstrumentSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
}
