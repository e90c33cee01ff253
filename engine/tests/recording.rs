//! Recording offline, end to end: armed tracks record a sequence-coded input into takes that
//! start and stop on exact samples (quantised to the bar like launches), bit-identical for any
//! block size; launcher recording into a slot with a fixed length; playback unaffected by
//! recording; a slow disk (a full take ring) loses frames as counted gaps and keeps the take on
//! its beat.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use loophole_engine::model::*;
use loophole_engine::pulse::{Action, PulseEvent, RecordAction, TriggerKind};
use loophole_engine::record::feed::InputSource;
use loophole_engine::record::writer::{TakeEvent, TakeInfo, TakeWriter, WriterConfig};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_engine::time::{Beats, Quantise};

const RATE: u32 = 48_000;
/// 120 BPM at 48 kHz.
const SPB: i64 = 24_000;

/// Input frame i: left = (i + 1) * 1e-6, right = -(i + 1) * 1e-6 (exact in f32 below 2^24).
fn coded_input(frames: usize) -> InputSource {
    let data: Vec<f32> = (0..frames).flat_map(|i| [(i + 1) as f32 * 1e-6, -((i + 1) as f32) * 1e-6]).collect();
    InputSource::Samples { channels: 2, data: data.into() }
}

/// A clip on track 0 playing a sine, a stereo recording track `mic` and a mono one `vox`
/// (input channel 2), both on input `mic`, and one scene.
fn session() -> Session {
    let mut s = audio_session(120.0, vec![("bed", sine(96_000, RATE, 220.0, 0.3), 4.0, true)]);
    s.add_track(Track {
        input: Some(TrackInput::Audio { input: "mic".into(), channels: vec![0, 1] }),
        ..Track::new("mic", TrackKind::Audio)
    });
    s.add_track(Track {
        input: Some(TrackInput::Audio { input: "mic".into(), channels: vec![1] }),
        ..Track::new("vox", TrackKind::Audio)
    });
    s.add_scene(Scene::new("one", vec![ClipId(0)]));
    s
}

fn rec(a: RecordAction) -> Action {
    Action::Record(a)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loophole-rec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Renders with the input connected and the takes written on the disk thread; returns the
/// output, the events and the finished takes.
fn record(script: Script, block: usize, dir: &Path, seconds: f64) -> (Vec<f32>, Vec<PulseEvent>, Vec<TakeInfo>) {
    let s = Arc::new(session());
    let mut r = Renderer::new(s.clone(), script, RenderConfig { sample_rate: RATE, block, seconds }).unwrap();
    let (ring, unbound) = r.connect_inputs(vec![("mic".into(), coded_input(RATE as usize * 20))]).unwrap();
    assert!(unbound.is_empty());
    let tracks = s.tracks.iter().map(|t| t.id.clone()).collect();
    let writer = TakeWriter::new(ring, WriterConfig::new(dir.to_path_buf(), RATE, tracks)).spawn().unwrap();
    let (audio, events) = r.render_all();
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    let takes = writer
        .finish()
        .into_iter()
        .map(|e| match e {
            TakeEvent::Finished(t) => t,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    (audio, events, takes)
}

fn read(path: &Path) -> (u16, Vec<f32>) {
    let mut r = hound_read(path);
    let ch = r.0;
    (ch, std::mem::take(&mut r.1))
}

/// Reads a float WAV file through the engine's own decoder.
fn hound_read(path: &Path) -> (u16, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let a = loophole_engine::media::wav::decode_wav(&bytes).unwrap();
    let ch = u16::from_le_bytes([bytes[22], bytes[23]]);
    if ch == 1 { (1, a.left) } else { (2, a.left.iter().zip(&a.right).flat_map(|(l, r)| [*l, *r]).collect()) }
}

fn linear_script() -> Script {
    script(vec![
        (0.0, launch(0)),
        (0.5, rec(RecordAction::Arm { track: TrackId(1), on: true })),
        (0.5, rec(RecordAction::Arm { track: TrackId(2), on: true })),
        // Pressed at 1.3: starts at the next bar, beat 4.
        (1.3, rec(RecordAction::Start { quantise: None })),
        // Pressed at 9.1: stops at the next bar, beat 12.
        (9.1, rec(RecordAction::Stop { quantise: None })),
    ])
}

#[test]
fn linear_takes_are_sample_exact_and_the_same_for_any_block_size() {
    let mut reference: Option<(Vec<f32>, Vec<Vec<f32>>)> = None;
    for block in [64, 256, 1000] {
        let dir = tmp(&format!("linear-{block}"));
        let (audio, events, mut takes) = record(linear_script(), block, &dir, 8.0);
        takes.sort_by_key(|t| t.track);
        assert_eq!(takes.len(), 2, "{takes:?}");
        for t in &takes {
            assert_eq!(t.start, (4 * SPB, Beats(4.0)));
            assert_eq!(t.stop, Some((12 * SPB, Beats(12.0))));
            assert_eq!(t.frames, 8 * SPB as u64);
            assert_eq!((t.lost_frames, &t.error), (0, &None));
            assert!(!loophole_engine::record::repair::marker_of(&t.files[0]).exists());
        }
        let (ch, stereo) = read(&takes[0].files[0]);
        assert_eq!((ch, takes[0].name.as_str()), (2, "mic-take-1"));
        let (ch1, mono) = read(&takes[1].files[0]);
        assert_eq!((ch1, takes[1].name.as_str()), (1, "vox-take-1"));
        // Input frame i is heard at output frame i: the take holds frames 96000..288000.
        for (k, f) in stereo.chunks(2).enumerate() {
            let i = 4 * SPB as usize + k;
            assert_eq!(f, [(i + 1) as f32 * 1e-6, -((i + 1) as f32) * 1e-6], "frame {k}");
        }
        for (k, x) in mono.iter().enumerate() {
            assert_eq!(*x, -((4 * SPB as usize + k + 1) as f32) * 1e-6, "mono frame {k}");
        }
        let starts: Vec<i64> = events
            .iter()
            .filter_map(|e| match e {
                PulseEvent::Executed { kind: TriggerKind::RecordStart, sample, .. } => Some(*sample),
                _ => None,
            })
            .collect();
        assert_eq!(starts, vec![4 * SPB, 4 * SPB]);
        match &reference {
            None => reference = Some((audio, vec![stereo, mono])),
            Some((a, t)) => {
                assert!(a == &audio, "the output differs at block {block}");
                assert!(t[0] == stereo && t[1] == mono, "the takes differ at block {block}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn recording_does_not_change_what_plays() {
    let dir = tmp("playback");
    let (with, _, takes) = record(linear_script(), 256, &dir, 7.0);
    assert_eq!(takes.len(), 2);
    let without = render(&session(), linear_script(), RATE, 256, 7.0).0;
    assert!(with == without, "recording changed the output");
    assert!(with.iter().any(|x| x.abs() > 0.1), "the bed clip plays");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn launcher_recording_into_an_empty_slot_has_its_fixed_length() {
    let dir = tmp("slot");
    let s = script(vec![(2.5, rec(RecordAction::IntoSlot { track: TrackId(1), scene: SceneId(0), bars: Some(2) }))]);
    let (_, _, takes) = record(s, 333, &dir, 7.0);
    assert_eq!(takes.len(), 1);
    let t = &takes[0];
    assert_eq!((t.slot, t.start.0, t.stop.map(|s| s.0)), (Some(SceneId(0)), 4 * SPB, Some(12 * SPB)));
    assert_eq!(t.until, Some(Beats(12.0)));
    let (_, x) = read(&t.files[0]);
    assert_eq!(x.len(), 2 * 8 * SPB as usize);
    assert_eq!(x[0], (4 * SPB + 1) as f32 * 1e-6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recording_refusals_say_why() {
    let s = Arc::new(session());
    let mut p = loophole_engine::pulse::PulseCore::new(s);
    let err = |r: Result<_, loophole_engine::pulse::PulseError>| r.unwrap_err().to_string();
    // Track 0 has no input; nothing is armed; nothing records; the slot of track 0 holds a clip.
    assert!(err(p.press(rec(RecordAction::Arm { track: TrackId(0), on: true }), Beats(0.0))).contains("no input"));
    assert!(err(p.press(rec(RecordAction::Start { quantise: None }), Beats(0.0))).contains("armed"));
    assert!(err(p.press(rec(RecordAction::Stop { quantise: Some(Quantise::None) }), Beats(0.0))).contains("nothing"));
    let into = |track, bars| rec(RecordAction::IntoSlot { track: TrackId(track), scene: SceneId(0), bars });
    assert!(err(p.press(into(1, Some(0)), Beats(0.0))).contains("bars"));
    p.press(into(1, None), Beats(0.0)).unwrap();
    assert!(err(p.press(into(1, None), Beats(0.5))).contains("recording already"));
    assert!(p.armed().is_empty());
}

#[test]
fn a_full_take_ring_loses_frames_as_counted_gaps_on_the_beat() {
    // Drive Signal by hand with a take ring of 8 slots that nobody drains for a while.
    use loophole_engine::queue::takes::TakeMsg;
    use loophole_engine::signal::record::TrackRoute;
    let s = Arc::new(session());
    let (mut pulse, mut signal) = loophole_engine::build(
        s,
        &loophole_engine::EngineConfig { sample_rate: RATE, max_block: 256, queue_capacity: 64 },
    )
    .unwrap();
    let routes = [None, Some(TrackRoute { input: 0, channels: vec![0] }), None];
    let mut ends = signal.connect_recording(&[1], &routes, 8192, 8);
    pulse.press(rec(RecordAction::Arm { track: TrackId(1), on: true }), Beats(0.0)).unwrap();
    pulse.press(rec(RecordAction::Start { quantise: Some(Quantise::None) }), Beats(0.0)).unwrap();
    pulse.press(rec(RecordAction::Stop { quantise: Some(Quantise::None) }), Beats(1.0)).unwrap();
    let clock =
        loophole_engine::time::SimClock { sample_rate: RATE, tempo: loophole_engine::time::Bpm(120.0), quantum: 4.0 };
    let mut out = vec![0f32; 512];
    let mut msgs = Vec::new();
    let mut fed = 0usize;
    for k in 0..200i64 {
        let frames: Vec<f32> = (0..256).map(|i| (fed + i + 1) as f32).collect();
        fed += 256;
        ends.inputs[0].write_chunk_uninit(256).unwrap().fill_from_iter(frames);
        signal.process(&clock.block(k * 256, 256), &mut out);
        // The disk is stuck for blocks 10..40.
        if !(10..40).contains(&k) {
            while let Ok(m) = ends.takes.pop() {
                msgs.push(m);
            }
        }
    }
    let lost = ends.counters.lost_frames.load(std::sync::atomic::Ordering::Relaxed);
    assert!(lost > 0, "the stuck disk lost frames");
    // Rebuild the take as the writer would: frames, with silence for gaps.
    let mut take = Vec::new();
    let (mut started, mut stopped, mut gaps) = (false, false, 0u64);
    for m in msgs {
        match m {
            TakeMsg::Start { sample, .. } => {
                assert_eq!(sample, 0);
                started = true;
            }
            TakeMsg::Frames { frames, data, .. } => take.extend_from_slice(&data[..frames as usize]),
            TakeMsg::Gap { frames, .. } => {
                gaps += frames;
                take.extend(std::iter::repeat_n(0.0, frames as usize));
            }
            TakeMsg::Stop { sample, .. } => {
                assert_eq!(sample, SPB);
                stopped = true;
            }
        }
    }
    assert!(started && stopped);
    assert_eq!(gaps, lost);
    assert_eq!(take.len(), SPB as usize, "the take keeps its length");
    // Every frame that got through is where it belongs.
    for (i, x) in take.iter().enumerate() {
        assert!(*x == 0.0 || *x == (i + 1) as f32, "frame {i} is {x}");
    }
    assert!(take.iter().filter(|x| **x == 0.0).count() as u64 == lost);
}
