//! Block-size invariance: the same performance rendered with random block sizes is
//! bit-identical to the same performance rendered in one fixed block size.

mod common;

use std::sync::Arc;

use common::*;
use loophole_engine::model::*;
use loophole_engine::model::{DrumSpec, InstrumentSpec, SynthSpec};
use loophole_engine::pulse::{Action, StopMode};
use loophole_engine::queue::MidiOutEvent;
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_engine::time::{Beats, Quantise};
use proptest::prelude::*;

/// Audio and MIDI tracks, scenes, legato, one-shots, every stop mode and launch mode.
fn performance() -> (Session, Script) {
    let mut s = audio_session(
        127.0,
        vec![
            ("a1", sine(90_000, 44_100, 220.0, 0.3), 4.0, true),
            ("a2", sine(90_000, 44_100, 331.0, 0.3), 3.0, true),
            ("shot", sine(30_000, 44_100, 440.0, 0.3), 1.5, false),
        ],
    );
    s.crossfade_ms = 4.0;
    s.clips[1].track = TrackId(0);
    s.clips[1].legato = true;
    s.tracks[0].pan = -0.4;
    s.tracks[1].gain_db = -3.0;
    let synth = s.add_track(Track {
        instrument: Some(InstrumentSpec::Synth(SynthSpec::default())),
        ..Track::new("synth", TrackKind::Midi)
    });
    let drums = s.add_track(Track {
        instrument: Some(InstrumentSpec::Drums(DrumSpec::default())),
        ..Track::new("drums", TrackKind::Midi)
    });
    let notes: Vec<(f64, f64, u8, u8)> =
        (0..12).map(|i| (i as f64 * 0.3333, 0.7, 45 + (i * 5 % 24) as u8, 90)).collect();
    s.add_clip(Clip::new("m1", synth, ClipContent::Midi(Arc::new(MidiData::from_notes(&notes))), Beats(4.0)));
    let beats: Vec<(f64, f64, u8, u8)> =
        (0..16).map(|i| (i as f64 * 0.25, 0.1, [36, 42, 38, 46][i % 4], 100)).collect();
    let mut gate = Clip::new("d1", drums, ClipContent::Midi(Arc::new(MidiData::from_notes(&beats))), Beats(4.0));
    gate.launch_mode = LaunchMode::Repeat;
    gate.quantise = Quantise::Division(16);
    s.add_clip(gate);
    s.add_scene(Scene::new("one", vec![ClipId(0), ClipId(3)]));
    s.add_scene(Scene::new("two", vec![ClipId(1), ClipId(4)]));
    // Follow actions with chances (seeded), a scene tempo and time signature, a playlist.
    let fa = |next, chance| FollowAction { next, chance, constraints: FollowConstraints::default() };
    s.clips[3].follow =
        Some(FollowActions { after_loops: 1, a: fa(FollowTarget::Repeat, 0.5), b: Some(fa(FollowTarget::Stop, 0.3)) });
    s.clips[2].follow = Some(FollowActions { after_loops: 1, a: fa(FollowTarget::Clip(ClipId(0)), 1.0), b: None });
    s.scenes[1].tempo = Some(loophole_engine::time::Bpm(141.0));
    s.scenes[1].beats_per_bar = Some(3.0);
    s.scenes[1].follow = Some(FollowActions { after_loops: 1, a: fa(FollowTarget::Previous, 0.9), b: None });
    s.playlists.push(Playlist {
        id: "p".into(),
        steps: vec![PlaylistStep { scene: SceneId(0), repeat: 1 }, PlaylistStep { scene: SceneId(1), repeat: 2 }],
        looping: true,
    });
    let mut arranged = s.clone();
    arranged.commit_scenes(SceneId(1), SceneId(0), Beats(2.0));
    let sc = script(vec![
        (0.0, Action::LaunchScene { scene: SceneId(0), quantise: None }),
        (2.3, launch(2)),
        (5.1, Action::Launch { clip: ClipId(1), quantise: Some(Quantise::Triplet(8)), velocity: Some(0.7) }),
        (6.0, Action::LaunchScene { scene: SceneId(1), quantise: Some(Quantise::Beat) }),
        (7.77, Action::Release { clip: ClipId(4) }),
        (8.2, Action::StopTrack { track: TrackId(2), mode: StopMode::FadeOut(Beats(1.5)) }),
        (9.0, Action::StopTrack { track: TrackId(0), mode: StopMode::SectionEnd }),
        (9.5, Action::Launch { clip: ClipId(3), quantise: Some(Quantise::None), velocity: None }),
        (11.1, Action::StopAll { mode: StopMode::Quantised }),
        (12.0, Action::Playlist { playlist: 0, step: 1, quantise: None }),
        (21.5, Action::PlayArrangement),
        (22.3, launch(3)),
        (23.9, Action::BackToArrangement { quantise: Some(Quantise::Beat) }),
    ]);
    s.arrangement = arranged.arrangement;
    // Both MIDI tracks also play to external outputs (and keep their instruments), the drums on
    // channel 10.
    s.tracks[synth.index()].midi_out = Some(MidiOutRoute { port: "synth".into(), channel: None });
    s.tracks[drums.index()].midi_out = Some(MidiOutRoute { port: "drums".into(), channel: Some(9) });
    (s, sc)
}

fn render_with_blocks(blocks: &[usize]) -> (Vec<f32>, Vec<MidiOutEvent>) {
    let (s, sc) = performance();
    let mut r = Renderer::new(Arc::new(s), sc, RenderConfig { sample_rate: 44_100, block: 64, seconds: 14.0 }).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0f32; 8192];
    let mut k = 0;
    let mut midi = Vec::new();
    loop {
        let frames = blocks[k % blocks.len()];
        k += 1;
        let n = r.render_frames(frames, &mut buf[..frames * 2]);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n * 2]);
        midi.extend(r.take_midi_out());
    }
    assert!(r.errors().is_empty());
    assert_eq!(r.lost_midi_out(), 0);
    (out, midi)
}

fn reference() -> &'static (Vec<f32>, Vec<MidiOutEvent>) {
    static REF: std::sync::OnceLock<(Vec<f32>, Vec<MidiOutEvent>)> = std::sync::OnceLock::new();
    REF.get_or_init(|| render_with_blocks(&[256]))
}

fn assert_bit_identical((a, ma): &(Vec<f32>, Vec<MidiOutEvent>), (b, mb): &(Vec<f32>, Vec<MidiOutEvent>)) {
    assert_eq!(ma.len(), mb.len(), "MIDI-out message counts differ");
    if let Some(i) = ma.iter().zip(mb).position(|(x, y)| x != y) {
        panic!("first MIDI-out difference at message {i}: {:?} vs {:?}", ma[i], mb[i]);
    }
    assert_eq!(a.len(), b.len());
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()) {
        panic!("first difference at interleaved sample {i}: {} vs {}", a[i], b[i]);
    }
}

#[test]
fn the_reference_performance_makes_sound() {
    let (r, midi) = reference();
    // Routed tracks sent notes on both routes (the drums' on channel 10), in sample order.
    let ons = |ch: Option<u8>| {
        midi.iter()
            .filter(|e| matches!(e.msg, MidiMsg::NoteOn { channel, .. } if ch.is_none_or(|c| c == channel)))
            .count()
    };
    assert!(ons(Some(9)) > 10 && ons(None) > ons(Some(9)), "note-ons: {} on ch 10, {} in all", ons(Some(9)), ons(None));
    assert!(midi.windows(2).all(|w| w[0].sample <= w[1].sample));
    let peak = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(peak > 0.1, "peak {peak}");
}

#[test]
fn single_sample_blocks_match() {
    assert_bit_identical(reference(), &render_with_blocks(&[1]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn random_block_sizes_are_bit_identical(blocks in proptest::collection::vec(1usize..=4096, 1..40)) {
        assert_bit_identical(reference(), &render_with_blocks(&blocks));
    }
}
