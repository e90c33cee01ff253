//! Sessions and helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use loophole_engine::model::*;
use loophole_engine::pulse::{Action, PulseEvent};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::{Script, ScriptAction};
use loophole_engine::time::{Beats, Bpm};

/// Audio data: a single 1.0 at frame 0, then `len - 1` zeros.
pub fn impulse(len: usize, rate: u32) -> AudioData {
    let mut left = vec![0.0; len];
    left[0] = 1.0;
    AudioData { sample_rate: rate, right: left.clone(), left }
}

/// Audio data whose every frame holds its own index (scaled), so positions can be read back.
pub fn ramp(len: usize, rate: u32) -> AudioData {
    let left: Vec<f32> = (0..len).map(|i| (i as f32 + 1.0) / (len as f32 + 1.0)).collect();
    AudioData { sample_rate: rate, right: left.clone(), left }
}

/// A sine at `hz`.
pub fn sine(len: usize, rate: u32, hz: f64, amp: f32) -> AudioData {
    let left: Vec<f32> =
        (0..len).map(|i| amp * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin() as f32).collect();
    AudioData { sample_rate: rate, right: left.clone(), left }
}

/// A session with one audio track per clip given.
pub fn audio_session(tempo: f64, clips: Vec<(&str, AudioData, f64, bool)>) -> Session {
    let mut s = Session::new("test", Bpm(tempo));
    s.crossfade_ms = 0.0;
    for (name, data, beats, looping) in clips {
        let t = s.add_track(Track::new(format!("track-{name}"), TrackKind::Audio));
        let mut c = Clip::new(name, t, ClipContent::Audio(Arc::new(data)), Beats(beats));
        c.looping = looping;
        s.add_clip(c);
    }
    s
}

pub fn launch(clip: u32) -> Action {
    Action::Launch { clip: ClipId(clip), quantise: None, velocity: None }
}

pub fn script(actions: Vec<(f64, Action)>) -> Script {
    Script { actions: actions.into_iter().map(|(b, action)| ScriptAction { beat: Beats(b), action }).collect() }
}

/// Renders `session` with `script` for `seconds` using fixed `block` frames; returns left channel,
/// right channel and events.
pub fn render(session: &Session, script: Script, rate: u32, block: usize, seconds: f64) -> (Vec<f32>, Vec<PulseEvent>) {
    let mut r = Renderer::new(Arc::new(session.clone()), script, RenderConfig { sample_rate: rate, block, seconds })
        .expect("renderer builds");
    let (audio, events) = r.render_all();
    assert!(r.errors().is_empty(), "script errors: {:?}", r.errors());
    (audio, events)
}

pub fn left(interleaved: &[f32]) -> Vec<f32> {
    interleaved.iter().step_by(2).copied().collect()
}

/// Frames where |x| > threshold.
pub fn onsets(x: &[f32], threshold: f32) -> Vec<usize> {
    x.iter().enumerate().filter(|(_, v)| v.abs() > threshold).map(|(i, _)| i).collect()
}
