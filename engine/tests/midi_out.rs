//! External MIDI out from Signal: a track routed to an output sends its clip's messages at the
//! samples of their beats, releases every held note when its clip stops, is cut or wraps, and
//! sends All Notes Off when the transport stops.

mod common;

use std::sync::Arc;

use common::*;
use loophole_engine::EngineConfig;
use loophole_engine::model::*;
use loophole_engine::pulse::{Action, StopMode};
use loophole_engine::queue::{ALL_NOTES_OFF, MidiOutEvent};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::time::{Beats, Bpm, Quantise, SimClock};

const RATE: u32 = 48_000;
/// 120 BPM at 48 kHz.
const SAMPLES_PER_BEAT: f64 = 24_000.0;
/// The route's channel (5 in the session file).
const CH: u8 = 4;

/// One routed MIDI track (no built-in instrument) with a looping riff whose last note crosses
/// the loop end, and a one-note pad.
fn session() -> Session {
    let mut s = Session::new("ext", Bpm(120.0));
    let t = s.add_track(Track {
        midi_out: Some(MidiOutRoute { port: "synth".into(), channel: Some(CH) }),
        ..Track::new("ext", TrackKind::Midi)
    });
    let riff = MidiData::from_notes(&[(0.0, 0.5, 60, 100), (0.5, 0.5, 62, 80), (1.0, 1.5, 64, 90)]);
    s.add_clip(Clip::new("riff", t, ClipContent::Midi(Arc::new(riff)), Beats(2.0)));
    let pad = MidiData::from_notes(&[(0.0, 8.0, 70, 50)]);
    s.add_clip(Clip::new("pad", t, ClipContent::Midi(Arc::new(pad)), Beats(8.0)));
    s
}

fn now(clip: u32) -> Action {
    Action::Launch { clip: ClipId(clip), quantise: Some(Quantise::None), velocity: None }
}

/// What the track must send, derived from the clips' events: each clip plays from its launch
/// beat until the next launch or stop, pass after pass, every message on channel [`CH`]; the
/// notes still held when a pass ends (loop wrap, stop, cut) are released there, lowest key first.
fn expected(session: &Session, plays: &[(u32, f64, f64)]) -> Vec<(i64, MidiMsg)> {
    let mut out = Vec::new();
    for &(clip, from, to) in plays {
        let c = &session.clips[clip as usize];
        let ClipContent::Midi(data) = &c.content else { unreachable!() };
        let mut pass_start = from;
        while pass_start < to {
            let pass_end = (pass_start + c.length.0).min(to);
            let mut held = std::collections::BTreeSet::new();
            for e in &data.events {
                let beat = pass_start + e.beat.0;
                if e.beat.0 >= c.length.0 || beat >= pass_end {
                    continue;
                }
                let at = (beat * SAMPLES_PER_BEAT) as i64;
                match e.msg {
                    MidiMsg::NoteOn { key, velocity, .. } => {
                        held.insert(key);
                        out.push((at, MidiMsg::NoteOn { channel: CH, key, velocity }));
                    }
                    MidiMsg::NoteOff { key, .. } => {
                        held.remove(&key);
                        out.push((at, MidiMsg::NoteOff { channel: CH, key }));
                    }
                    MidiMsg::Cc { .. } => unreachable!(),
                }
            }
            for key in held {
                out.push(((pass_end * SAMPLES_PER_BEAT) as i64, MidiMsg::NoteOff { channel: CH, key }));
            }
            if !c.looping {
                break;
            }
            pass_start += c.length.0;
        }
    }
    out
}

#[test]
fn a_routed_track_sends_its_clips_notes_at_their_samples_and_releases_every_note() {
    let s = session();
    let sc = script(vec![
        (0.0, now(0)),
        (5.25, Action::StopTrack { track: TrackId(0), mode: StopMode::Immediate }),
        (6.0, now(1)),
        (7.5, now(0)),
        (10.75, Action::StopAll { mode: StopMode::Immediate }),
    ]);
    let mut r =
        Renderer::new(Arc::new(s.clone()), sc, RenderConfig { sample_rate: RATE, block: 100, seconds: 6.0 }).unwrap();
    let (audio, _) = r.render_all();
    let got: Vec<(i64, MidiMsg)> = r.take_midi_out().iter().map(|e| (e.sample, e.msg)).collect();
    assert!(r.take_midi_out().is_empty(), "taken once");
    assert_eq!(r.lost_midi_out(), 0);
    let want = expected(&s, &[(0, 0.0, 5.25), (1, 6.0, 7.5), (0, 7.5, 10.75)]);
    assert_eq!(got.len(), want.len(), "got {got:?}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "message {i}");
    }
    // Held across the wrap, the stop and the cut: 64 at beats 2, 4, 5.25; 70 at 7.5.
    for (beat, key) in [(2.0, 64), (4.0, 64), (5.25, 64), (7.5, 70), (10.75, 64)] {
        let at = (beat * SAMPLES_PER_BEAT) as i64;
        assert!(got.contains(&(at, MidiMsg::NoteOff { channel: CH, key })), "note-off {key} at beat {beat}");
    }
    // Nothing hangs: every note-on has a later note-off.
    let mut held = std::collections::HashSet::new();
    for (_, m) in &got {
        match *m {
            MidiMsg::NoteOn { key, .. } => assert!(held.insert(key), "{key} on twice"),
            MidiMsg::NoteOff { key, .. } => assert!(held.remove(&key), "{key} off while not on"),
            MidiMsg::Cc { .. } => {}
        }
    }
    assert!(held.is_empty(), "hanging: {held:?}");
    // The track has no built-in instrument: the external synth is its only sound.
    assert!(audio.iter().all(|&x| x == 0.0));
}

#[test]
fn the_routed_track_keeps_the_clip_channels_without_midi_channel_and_layers_its_instrument() {
    let mut s = session();
    s.tracks[0].midi_out = Some(MidiOutRoute { port: "synth".into(), channel: None });
    s.tracks[0].instrument = Some(loophole_engine::model::InstrumentSpec::Synth(Default::default()));
    let mut r = Renderer::new(
        Arc::new(s),
        script(vec![(0.0, now(0))]),
        RenderConfig { sample_rate: RATE, block: 64, seconds: 1.0 },
    )
    .unwrap();
    let (audio, _) = r.render_all();
    let got = r.take_midi_out();
    assert_eq!(
        got[0],
        MidiOutEvent { sample: 0, track: TrackId(0), msg: MidiMsg::NoteOn { channel: 0, key: 60, velocity: 100 } }
    );
    assert!(
        got.iter().all(|e| matches!(e.msg, MidiMsg::NoteOn { channel: 0, .. } | MidiMsg::NoteOff { channel: 0, .. }))
    );
    assert!(audio.iter().any(|&x| x.abs() > 0.01), "the instrument plays too");
}

#[test]
fn the_transport_stopping_releases_held_notes_then_sends_all_notes_off_and_closes_the_ring() {
    let s = Arc::new(session());
    let (mut pulse, mut signal) =
        loophole_engine::build(s, &EngineConfig { sample_rate: RATE, max_block: 256, queue_capacity: 64 }).unwrap();
    let clock = SimClock { sample_rate: RATE, tempo: Bpm(120.0), quantum: 4.0 };
    let mut out = vec![0f32; 512];
    pulse.press(now(1), Beats(0.0)).unwrap();
    pulse.tick(Beats(0.0), Beats(1.0)).unwrap();
    let mut rx = signal.connect_midi_out(8);
    signal.process(&clock.block(0, 256), &mut out);
    assert_eq!(rx.pop().unwrap().msg, MidiMsg::NoteOn { channel: CH, key: 70, velocity: 50 });
    signal.transport_stopped(256);
    let rest: Vec<MidiOutEvent> = std::iter::from_fn(|| rx.pop().ok()).collect();
    assert_eq!(
        rest,
        vec![
            MidiOutEvent { sample: 256, track: TrackId(0), msg: MidiMsg::NoteOff { channel: CH, key: 70 } },
            MidiOutEvent {
                sample: 256,
                track: TrackId(0),
                msg: MidiMsg::Cc { channel: CH, controller: ALL_NOTES_OFF, value: 0 }
            },
        ]
    );
    // Stopped: the (gated) engine runs on, but sends nothing more.
    pulse.press(now(0), Beats(0.0)).unwrap();
    pulse.tick(Beats(0.0), Beats(1.0)).unwrap();
    signal.process(&clock.block(256, 256), &mut out);
    assert!(rx.pop().is_err());
}

#[test]
fn a_full_ring_counts_lost_messages_and_a_refused_note_off_is_sent_again() {
    let s = Arc::new(session());
    let (mut pulse, mut signal) =
        loophole_engine::build(s, &EngineConfig { sample_rate: RATE, max_block: 256, queue_capacity: 64 }).unwrap();
    let clock = SimClock { sample_rate: RATE, tempo: Bpm(120.0), quantum: 4.0 };
    let mut rx = signal.connect_midi_out(1);
    let lost = signal.lost_midi_out();
    let mut out = vec![0f32; 2 * 24_000];
    pulse.press(now(0), Beats(0.0)).unwrap();
    pulse.tick(Beats(0.0), Beats(1.0)).unwrap();
    // Beat 0..1: note-on 60, note-off 60 and note-on 62: only the first fits.
    signal.process(&clock.block(0, 24_000), &mut out);
    assert_eq!(lost.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(rx.pop().unwrap().msg, MidiMsg::NoteOn { channel: CH, key: 60, velocity: 100 });
    // 60 is still held (its note-off was refused): the stop releases it.
    pulse.press(Action::StopTrack { track: TrackId(0), mode: StopMode::Immediate }, Beats(1.0)).unwrap();
    pulse.tick(Beats(1.0), Beats(2.0)).unwrap();
    signal.process(&clock.block(24_000, 100), &mut out[..200]);
    assert_eq!(
        rx.pop().unwrap(),
        MidiOutEvent { sample: 24_000, track: TrackId(0), msg: MidiMsg::NoteOff { channel: CH, key: 60 } }
    );
}

#[test]
fn a_fade_out_stop_releases_the_external_notes_when_the_fade_ends() {
    // The pad's note 70 is held from beat 0; a 1.5-beat fade-out from beat 1 ends at beat 2.5,
    // many blocks later: the note-off comes there (the track has no instrument to fade).
    let s = session();
    let sc = script(vec![
        (0.0, now(1)),
        (1.0, Action::StopTrack { track: TrackId(0), mode: StopMode::FadeOut(Beats(1.5)) }),
    ]);
    for block in [64, 1000] {
        let mut r =
            Renderer::new(Arc::new(s.clone()), sc.clone(), RenderConfig { sample_rate: RATE, block, seconds: 2.0 })
                .unwrap();
        r.render_all();
        let got: Vec<(i64, MidiMsg)> = r.take_midi_out().iter().map(|e| (e.sample, e.msg)).collect();
        assert_eq!(
            got,
            vec![
                (0, MidiMsg::NoteOn { channel: CH, key: 70, velocity: 50 }),
                (60_000, MidiMsg::NoteOff { channel: CH, key: 70 }),
            ],
            "block {block}"
        );
    }
}
