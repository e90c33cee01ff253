//! Sample accuracy, launch modes, legato, crossfades and stop modes, checked on offline renders
//! against sample positions computed here with integer arithmetic, independently of the engine.

mod common;

use common::*;
use loophole_engine::model::{ClipId, LaunchMode, TrackId};
use loophole_engine::pulse::{Action, PulseEvent, StopMode, TriggerKind};
use loophole_engine::time::{Beats, Quantise};

/// 120 BPM at 48 kHz: exactly 24 000 samples per beat.
const SPB: i64 = 24_000;

/// The first sample at or after the rational beat `num/den` (independent of the engine).
fn sample_at(num: i64, den: i64) -> i64 {
    (num * SPB + den - 1).div_euclid(den)
}

/// The next multiple of the grid `gn/gd` beats at or after the press `pn/pd`, as a sample.
fn quantised_sample(pn: i64, pd: i64, gn: i64, gd: i64) -> i64 {
    // k = ceil((pn/pd) / (gn/gd)) = ceil(pn*gd / (pd*gn))
    let k = (pn * gd + pd * gn - 1).div_euclid(pd * gn);
    sample_at(k * gn, gd)
}

#[test]
fn impulse_lands_on_the_computed_sample_for_every_quantisation() {
    // Press at beat 13/10 = 1.3 (between grid lines of every grid) in 4/4, and at 4.7 in 7/8.
    let cases: Vec<(Quantise, f64, i64)> = vec![
        (Quantise::None, 4.0, sample_at(13, 10)),
        (Quantise::Bar, 4.0, quantised_sample(13, 10, 4, 1)),
        (Quantise::Bars(2), 4.0, quantised_sample(13, 10, 8, 1)),
        (Quantise::Beat, 4.0, quantised_sample(13, 10, 1, 1)),
        (Quantise::HalfBeat, 4.0, quantised_sample(13, 10, 1, 2)),
        (Quantise::Division(8), 4.0, quantised_sample(13, 10, 1, 2)),
        (Quantise::Division(16), 4.0, quantised_sample(13, 10, 1, 4)),
        (Quantise::Division(32), 4.0, quantised_sample(13, 10, 1, 8)),
        (Quantise::Triplet(8), 4.0, quantised_sample(13, 10, 1, 3)),
        (Quantise::Triplet(16), 4.0, quantised_sample(13, 10, 1, 6)),
        (Quantise::Bar, 3.5, quantised_sample(13, 10, 7, 2)),
        (Quantise::Bar, 3.0, quantised_sample(13, 10, 3, 1)),
    ];
    for (q, bpb, expected) in cases {
        for block in [1usize, 64, 100, 512, 4096] {
            let mut s = audio_session(120.0, vec![("hit", impulse(1000, 48_000), 1.0, false)]);
            s.beats_per_bar = bpb;
            let sc = script(vec![(1.3, Action::Launch { clip: ClipId(0), quantise: Some(q), velocity: None })]);
            let (audio, events) = render(&s, sc, 48_000, block, 5.0);
            let on = onsets(&left(&audio), 0.5);
            assert_eq!(on, vec![expected as usize], "{q:?} in {bpb}/4, block {block}");
            let executed: Vec<i64> = events
                .iter()
                .filter_map(|e| match e {
                    PulseEvent::Executed { sample, .. } => Some(*sample),
                    _ => None,
                })
                .collect();
            assert_eq!(executed, vec![expected], "reported sample for {q:?}, block {block}");
        }
    }
}

#[test]
fn quantisation_resolves_clip_then_scene_then_global() {
    use loophole_engine::model::Scene;
    let mut s =
        audio_session(120.0, vec![("a", impulse(10, 48_000), 1.0, false), ("b", impulse(10, 48_000), 1.0, false)]);
    s.quantise = Quantise::Bar;
    s.clips[0].quantise = Quantise::Beat; // per clip wins
    let mut scene = Scene::new("s", vec![ClipId(1)]);
    scene.quantise = Quantise::HalfBeat; // per scene, for b
    s.add_scene(scene);
    let sc = script(vec![(1.3, launch(0)), (1.3, launch(1))]);
    let (audio, _) = render(&s, sc, 48_000, 256, 3.0);
    let on = onsets(&left(&audio), 0.5);
    assert_eq!(on, vec![quantised_sample(13, 10, 1, 2) as usize, quantised_sample(13, 10, 1, 1) as usize]);

    // Without the clip and scene settings the global bar applies.
    s.clips[0].quantise = Quantise::Global;
    s.scenes[0].quantise = Quantise::Global;
    let (audio, _) = render(&s, script(vec![(1.3, launch(0)), (1.3, launch(1))]), 48_000, 256, 3.0);
    let on = onsets(&left(&audio), 0.5);
    assert_eq!(on, vec![quantised_sample(13, 10, 4, 1) as usize], "both on the bar (one sample, summed)");
}

#[test]
fn looping_clip_repeats_on_the_beat_grid_at_a_non_integer_tempo() {
    // 133 BPM at 44.1 kHz: a beat is 19894.736... samples, so a sample-counting loop would drift.
    let s = audio_session(133.0, vec![("loop", impulse(100, 44_100), 1.0, true)]);
    let sc = script(vec![(0.0, launch(0))]);
    let (audio, _) = render(&s, sc, 44_100, 333, 20.0);
    let on = onsets(&left(&audio), 0.5);
    assert!(on.len() > 40);
    for (k, &o) in on.iter().enumerate() {
        // First sample at or after beat k: ceil(k * 44100 * 60 / 133).
        let expected = (k as i64 * 44_100 * 60 + 132) / 133;
        assert_eq!(o as i64, expected, "loop pass {k}");
    }
}

#[test]
fn legato_keeps_the_musical_position() {
    // Two ramps: reading the value back tells the position in the clip.
    let len = 4 * SPB as usize;
    let mut s = audio_session(120.0, vec![("a", ramp(len, 48_000), 4.0, true), ("b", ramp(len, 48_000), 4.0, true)]);
    // Put both clips on one track.
    s.clips[1].track = TrackId(0);
    s.tracks.pop();
    s.clips[1].legato = true;
    let sc = script(vec![
        (0.0, launch(0)),
        (2.5, Action::Launch { clip: ClipId(1), quantise: Some(Quantise::None), velocity: None }),
    ]);
    let (audio, events) = render(&s, sc, 48_000, 128, 4.0);
    let l = left(&audio);
    let switch = sample_at(5, 2) as usize;
    // Well after the crossfade (0 ms here), clip b plays at clip a's position: 2.5 beats in.
    let at = switch + 100;
    let expected = (at as f32 + 1.0) / (len as f32 + 1.0);
    assert!((l[at] - expected).abs() < 1e-6, "legato position: got {} want {}", l[at], expected);
    assert!(events.iter().any(|e| matches!(e, PulseEvent::Executed { kind: TriggerKind::Legato, .. })));

    // Without legato the new clip starts from its beginning.
    s.clips[1].legato = false;
    let sc = script(vec![
        (0.0, launch(0)),
        (2.5, Action::Launch { clip: ClipId(1), quantise: Some(Quantise::None), velocity: None }),
    ]);
    let (audio, _) = render(&s, sc, 48_000, 128, 4.0);
    let l = left(&audio);
    assert!((l[switch + 100] - 101.0 / (len as f32 + 1.0)).abs() < 1e-6);
}

/// The largest step between consecutive samples.
fn max_step(x: &[f32]) -> f32 {
    x.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
}

#[test]
fn crossfade_leaves_no_step_larger_than_the_signals_own() {
    // Two sines of different phase and frequency on one track; switch mid-waveform.
    let len = 8 * SPB as usize;
    let a = sine(len, 48_000, 220.0, 0.8);
    let b = sine(len, 48_000, 330.0, 0.8);
    let own = max_step(&a.left).max(max_step(&b.left));
    let mut s = audio_session(120.0, vec![("a", a, 8.0, true), ("b", b, 8.0, true)]);
    s.clips[1].track = TrackId(0);
    s.tracks.pop();
    s.clips[1].legato = true; // starts mid-waveform: needs a fade-in too
    s.crossfade_ms = 5.0;
    let sc = script(vec![
        (0.0, launch(0)),
        (1.37, Action::Launch { clip: ClipId(1), quantise: Some(Quantise::None), velocity: None }),
        (3.11, Action::StopTrack { track: TrackId(0), mode: StopMode::Immediate }),
    ]);
    let (audio, _) = render(&s, sc, 48_000, 64, 3.0);
    let l = left(&audio);
    let step = max_step(&l);
    assert!(step <= own * 1.01, "max step {step} vs the signals' own {own}");
    // And the switch really happened: silence after the stop's fade.
    let stop = sample_at(311, 100) as usize;
    assert!(l[stop + 241..].iter().all(|v| *v == 0.0), "silent after the 5 ms fade");
    assert!(l[stop - 10..stop].iter().any(|v| v.abs() > 0.01));

    // Without the crossfade the same switch makes a step far larger than the signal's own.
    s.crossfade_ms = 0.0;
    let sc = script(vec![
        (0.0, launch(0)),
        (1.37, Action::Launch { clip: ClipId(1), quantise: Some(Quantise::None), velocity: None }),
    ]);
    let (audio, _) = render(&s, sc, 48_000, 64, 3.0);
    assert!(max_step(&left(&audio)) > own * 2.0, "the test can see a discontinuity");
}

fn last_nonzero(x: &[f32]) -> usize {
    x.iter().rposition(|v| *v != 0.0).unwrap_or(0)
}

#[test]
fn each_stop_mode_ends_where_it_should() {
    let len = 16 * SPB as usize;
    let dc = AudioDataExt::dc(len, 0.5);
    let mut s = audio_session(120.0, vec![("dc", dc, 4.0, true)]);
    s.crossfade_ms = 1.0; // 48 samples
    let stop_at = |s: &loophole_engine::model::Session, mode: StopMode| {
        let sc = script(vec![(0.0, launch(0)), (5.3, Action::StopTrack { track: TrackId(0), mode })]);
        let (audio, events) = render(s, sc, 48_000, 100, 6.0);
        let stop_sample = events
            .iter()
            .find_map(|e| match e {
                PulseEvent::Executed { kind: TriggerKind::Stop, sample, .. } => Some(*sample),
                _ => None,
            })
            .expect("stop executed");
        (last_nonzero(&left(&audio)), stop_sample)
    };
    // Immediate: at the press, then the 48-sample declick.
    let (end, at) = stop_at(&s, StopMode::Immediate);
    assert_eq!(at, sample_at(53, 10));
    assert_eq!(end as i64, at + 47);
    // Quantised: the global bar, beat 8. That is also where the 4-beat loop's pass ends, so the
    // clip ends exactly there, with no fade into its next pass.
    let (end, at) = stop_at(&s, StopMode::Quantised);
    assert_eq!(at, 8 * SPB);
    assert_eq!(end as i64, at - 1);
    // Section end: the end of the current 4-beat loop pass, beat 8 too: exact as well.
    let (end, at) = stop_at(&s, StopMode::SectionEnd);
    assert_eq!(at, 8 * SPB);
    assert_eq!(end as i64, at - 1);
    // Fade-out: starts at the press, lasts 1 beat.
    let (end, at) = stop_at(&s, StopMode::FadeOut(Beats(1.0)));
    assert_eq!(at, sample_at(53, 10));
    assert_eq!(end as i64, at + SPB - 1);

    // Section end with a 3-beat loop: passes end at 3, 6, ...: press at 5.3 stops at 6, exactly.
    s.clips[0].length = Beats(3.0);
    let (end, at) = stop_at(&s, StopMode::SectionEnd);
    assert_eq!(at, 6 * SPB);
    assert_eq!(end as i64, at - 1);
    // A quantised stop off the loop boundary (bar 8 inside a 3-beat pass) fades over the declick.
    let (end, at) = stop_at(&s, StopMode::Quantised);
    assert_eq!(at, 8 * SPB);
    assert_eq!(end as i64, at + 47);
}

struct AudioDataExt;
impl AudioDataExt {
    fn dc(len: usize, v: f32) -> loophole_engine::model::AudioData {
        loophole_engine::model::AudioData { sample_rate: 48_000, left: vec![v; len], right: vec![v; len] }
    }
}

#[test]
fn launch_modes_behave_like_live() {
    let mk = |mode: LaunchMode| {
        let mut s = audio_session(120.0, vec![("loop", impulse(10, 48_000), 1.0, true)]);
        s.clips[0].launch_mode = mode;
        s.quantise = Quantise::Beat;
        s
    };
    let release = Action::Release { clip: ClipId(0) };
    // Trigger: release does nothing; the clip keeps looping every beat.
    let (a, _) = render(&mk(LaunchMode::Trigger), script(vec![(0.0, launch(0)), (2.5, release)]), 48_000, 256, 3.0);
    assert_eq!(onsets(&left(&a), 0.5).len(), 6);
    // Gate: release stops at the next beat (3): pulses at beats 0, 1, 2.
    let (a, _) = render(&mk(LaunchMode::Gate), script(vec![(0.0, launch(0)), (2.5, release)]), 48_000, 256, 5.0);
    assert_eq!(onsets(&left(&a), 0.5), vec![0, 24_000, 48_000]);
    // Toggle: second press stops it at the next beat.
    let (a, _) = render(&mk(LaunchMode::Toggle), script(vec![(0.0, launch(0)), (1.5, launch(0))]), 48_000, 256, 5.0);
    assert_eq!(onsets(&left(&a), 0.5), vec![0, 24_000]);
    // Repeat with a 4-beat clip of one impulse, quantised to beats: retriggers every beat while
    // held, so the impulse sounds every beat although the clip is 4 beats long.
    let mut s = mk(LaunchMode::Repeat);
    s.clips[0].length = Beats(4.0);
    let (a, events) = render(&s, script(vec![(0.0, launch(0)), (3.5, release)]), 48_000, 256, 8.0);
    assert_eq!(onsets(&left(&a), 0.5), vec![0, 24_000, 48_000, 72_000]);
    assert!(events.iter().any(|e| matches!(e, PulseEvent::Executed { kind: TriggerKind::Retrigger, .. })));
}

#[test]
fn one_shot_plays_once_and_reports_its_end() {
    let s = audio_session(120.0, vec![("once", impulse(10, 48_000), 2.0, false)]);
    let (a, events) = render(&s, script(vec![(0.0, launch(0))]), 48_000, 256, 3.0);
    assert_eq!(onsets(&left(&a), 0.5), vec![0]);
    assert!(
        events.iter().any(|e| matches!(e, PulseEvent::ClipEnded { sample, .. } if *sample == 2 * SPB)),
        "{events:?}"
    );
}

#[test]
fn a_late_trigger_starts_phase_aligned_and_says_so() {
    use loophole_engine::EngineConfig;
    use loophole_engine::time::SimClock;
    use std::sync::Arc;
    // Live case: the press reaches Signal after its target beat has passed.
    let s = audio_session(120.0, vec![("r", ramp(4 * SPB as usize, 48_000), 4.0, true)]);
    let (mut pulse, mut signal) =
        loophole_engine::build(Arc::new(s), &EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 64 })
            .unwrap();
    let clock = SimClock { sample_rate: 48_000, tempo: loophole_engine::time::Bpm(120.0), quantum: 4.0 };
    let mut out = vec![0f32; 512];
    // Render up to beat 1 with nothing scheduled.
    let mut t = 0i64;
    while t < SPB {
        signal.process(&clock.block(t, 256), &mut out);
        t += 256;
    }
    // Press now, targeting beat 0.5 (already past).
    pulse
        .press(Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }, Beats(0.5))
        .unwrap();
    signal.process(&clock.block(t, 256), &mut out);
    let ev = pulse.poll_event().expect("executed");
    match ev {
        PulseEvent::Executed { late, sample, target, .. } => {
            assert!(late);
            assert_eq!(sample, t);
            assert_eq!(target, Beats(0.5));
        }
        e => panic!("{e:?}"),
    }
    // Phase-aligned: at frame 250 of the block (after the 5 ms = 240-sample fade-in of a
    // mid-waveform start) the clip is (t + 250) - (beat 0.5) samples in, as if it had started on time.
    let pos = t + 250 - SPB / 2;
    let expected = (pos as f32 + 1.0) / (4.0 * SPB as f32 + 1.0);
    assert!((out[2 * 250] - expected).abs() < 1e-6, "got {} want {expected}", out[2 * 250]);
}

#[test]
fn a_timeline_jump_puts_loops_back_in_phase() {
    use loophole_engine::EngineConfig;
    use loophole_engine::time::{BlockClock, Bpm};
    use std::sync::Arc;
    // A looping ramp; the timeline jumps back by 0.75 beat (as when a Link session merges).
    let s = audio_session(120.0, vec![("r", ramp(4 * SPB as usize, 48_000), 4.0, true)]);
    let (mut pulse, mut signal) =
        loophole_engine::build(Arc::new(s), &EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 64 })
            .unwrap();
    pulse.press(launch(0), Beats(0.0)).unwrap();
    let bps = Bpm(120.0).beats_per_sample(48_000);
    let block = |sample_time: i64, beat: f64| BlockClock {
        sample_time,
        beat_at_first_sample: Beats(beat),
        beats_per_sample: bps,
        quantum: 4.0,
        frames: 256,
        sample_rate: 48_000,
    };
    let mut out = vec![0f32; 512];
    let mut t = 0i64;
    while t < 2 * SPB {
        signal.process(&block(t, t as f64 * bps), &mut out);
        t += 256;
    }
    // Jump: the next block's beat is 0.75 beat earlier than the samples say.
    let jumped = t as f64 * bps - 0.75;
    signal.process(&block(t, jumped), &mut out);
    signal.process(&block(t + 256, jumped + 256.0 * bps), &mut out);
    // 100 frames into the second block (past the 5 ms fade-in), the clip is where the new beat
    // says: (jumped + (256 + 100) samples) beats in.
    let pos = ((jumped * SPB as f64).round() as i64 + 256 + 100) as f32;
    let expected = (pos + 1.0) / (4.0 * SPB as f32 + 1.0);
    let got = out[2 * 100];
    assert!((got - expected).abs() < 1e-5, "got {got}, want {expected}");
}
