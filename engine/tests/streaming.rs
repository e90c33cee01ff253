//! Disk streaming: a session rendered under a tiny memory budget (clips streamed through the
//! reader) is bit-identical to the fully resident render; starts that cannot be ready are
//! refused ahead; an unreadable stream is an error event, never a panic.

mod common;

use std::sync::Arc;

use common::*;
use loophole_engine::media::stream;
use loophole_engine::model::*;
use loophole_engine::pulse::{Action, PulseEvent, Refusal};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::time::{Beats, Quantise};

/// Deterministic noise: any misplaced frame shows.
fn noise(len: usize, rate: u32, seed: u32) -> AudioData {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x as f32 / u32::MAX as f32 - 0.5) * 0.6
    };
    let left: Vec<f32> = (0..len).map(|_| next()).collect();
    let right: Vec<f32> = (0..len).map(|_| next()).collect();
    AudioData { sample_rate: rate, left, right }
}

/// Two audio tracks; files at 44.1 kHz (the engine runs at 48 kHz, so streamed clips are
/// resampled); `long` and `other` share track 0 (`other` is legato), `offset` starts 3 beats in.
fn session() -> Session {
    let mut s = audio_session(
        120.0,
        vec![
            ("long", noise(44_100 * 10, 44_100, 1), 16.0, true),
            ("other", noise(44_100 * 6, 44_100, 2), 8.0, true),
            ("offset", noise(44_100 * 5, 44_100, 3), 4.0, true),
        ],
    );
    s.clips[1].track = TrackId(0);
    s.clips[1].legato = true;
    s.clips[2].start_offset = Beats(3.0);
    s.crossfade_ms = 5.0;
    s.streaming.head_seconds = 0.5;
    s
}

fn launch_q(clip: u32, q: Quantise) -> Action {
    Action::Launch { clip: ClipId(clip), quantise: Some(q), velocity: None }
}

fn streamed(s: &Session, budget_mb: f64) -> Session {
    let mut s = s.clone();
    s.streaming.memory_budget_mb = Some(budget_mb);
    let (p, notes) = stream::prepare(&s, 48_000).expect("prepares");
    assert!(!notes.is_empty(), "something streams");
    p
}

/// Renders and returns audio, events and the stream underrun count.
fn render_full(s: &Session, script: loophole_engine::script::Script, block: usize) -> (Vec<f32>, Vec<PulseEvent>, u64) {
    let mut r = Renderer::new(Arc::new(s.clone()), script, RenderConfig { sample_rate: 48_000, block, seconds: 16.0 })
        .expect("renderer builds");
    let (audio, events) = r.render_all();
    (audio, events, r.signal().stream_underruns())
}

fn performance() -> loophole_engine::script::Script {
    script(vec![
        (0.0, launch(0)),
        (0.0, launch(2)),
        // Legato into `other` on the next beat: it starts 5 s in, far outside its head, so its
        // lane is pre-warmed ahead of the beat.
        (9.5, launch_q(1, Quantise::Beat)),
        // Back to `long` from its start (the head), then its loop wraps at beat 24+16.
        (20.0, launch_q(0, Quantise::Bar)),
    ])
}

#[test]
fn streamed_render_equals_the_resident_render_bit_for_bit() {
    let resident = session();
    let (want, want_events, _) = render_full(&resident, performance(), 256);
    assert!(want.iter().any(|&x| x != 0.0));
    // Budget 0: every clip streams. 1 MiB: `offset` (smallest) stays resident, the rest stream.
    for budget in [0.0, 1.0] {
        let s = streamed(&resident, budget);
        for block in [64, 1000] {
            let (got, events, underruns) = render_full(&s, performance(), block);
            assert_eq!(underruns, 0, "budget {budget}, block {block}");
            assert_eq!(events.len(), want_events.len());
            assert!(!events.iter().any(|e| matches!(e, PulseEvent::Refused { .. })));
            let first = got.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(first, None, "budget {budget}, block {block}: first differing sample");
            assert_eq!(got.len(), want.len());
        }
    }
}

#[test]
fn a_start_that_cannot_be_ready_is_refused_ahead_and_the_rest_plays() {
    let s = streamed(&session(), 0.0);
    // An unquantised legato press 4 beats in: `other` would start 2 s in (outside its 0.5 s head)
    // at once, with no time to read it. `offset` is pressed at the same moment and plays.
    let refused = script(vec![(0.0, launch(0)), (4.0, launch(1)), (4.0, launch_q(2, Quantise::None))]);
    let (got, events, underruns) = render_full(&s, refused, 256);
    let r: Vec<_> = events.iter().filter(|e| matches!(e, PulseEvent::Refused { .. })).collect();
    assert_eq!(r.len(), 1, "{events:?}");
    let PulseEvent::Refused { clip, target, reason, .. } = r[0] else { unreachable!() };
    assert_eq!((*clip, *target), (ClipId(1), Beats(4.0)));
    assert!(matches!(reason, Refusal::NotReady { available_ms, .. } if *available_ms == 0.0), "{reason:?}");
    assert!(reason.to_string().contains("outside its in-memory head"));
    assert_eq!(underruns, 0);
    // The same as never pressing `other`: `long` keeps playing, `offset` starts.
    let (want, _, _) = render_full(&session(), script(vec![(0.0, launch(0)), (4.0, launch_q(2, Quantise::None))]), 256);
    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    // With enough time (quantised to the next bar) the same legato launch is accepted.
    let ok = script(vec![(0.0, launch(0)), (4.5, launch_q(1, Quantise::Bar))]);
    let (_, events, underruns) = render_full(&s, ok, 256);
    assert!(!events.iter().any(|e| matches!(e, PulseEvent::Refused { .. })));
    assert!(events.iter().any(|e| matches!(e, PulseEvent::Executed { clip: Some(ClipId(1)), .. })));
    assert_eq!(underruns, 0);
}

#[test]
fn an_unreadable_stream_is_refused_with_a_clear_error_never_a_panic() {
    let s = streamed(&session(), 0.0);
    let path = s.clips[0].stream.as_ref().unwrap().source.path().to_path_buf();
    std::fs::remove_file(&path).unwrap();
    // The first launch starts in the head (in memory); the reader then fails on the file, the
    // rest of the clip is silence (counted), and the next launch is refused with the reason.
    let (got, events, underruns) =
        render_full(&s, script(vec![(0.0, launch(0)), (8.0, launch_q(0, Quantise::None))]), 256);
    assert!(underruns > 0);
    assert!(got[..2 * 24_000].iter().any(|&x| x != 0.0), "the head plays");
    assert!(got[2 * 48_000..2 * 96_000].iter().all(|&x| x == 0.0), "silence, not garbage, after the head");
    let reason = events
        .iter()
        .find_map(|e| match e {
            PulseEvent::Refused { reason: Refusal::Unreadable(why), clip: ClipId(0), .. } => Some(why.clone()),
            _ => None,
        })
        .expect("the second launch is refused");
    assert!(reason.contains("clip 'long'") && reason.contains("cannot read"), "{reason}");
}

#[test]
fn streamed_clips_built_for_another_rate_are_refused() {
    let s = streamed(&session(), 0.0);
    let e = Renderer::new(Arc::new(s), script(vec![]), RenderConfig { sample_rate: 44_100, block: 256, seconds: 1.0 })
        .err()
        .expect("a rate mismatch is an error, not wrong-speed audio");
    assert!(e.to_string().contains("48000 Hz"), "{e}");
}
