//! Tests of the built-in instruments.

use super::drums::DRUM_VOICES;
use super::dsp::KILL_TIME;
use super::*;
use crate::model::instrument::{DrumSpec, SynthSpec, Waveform};

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
