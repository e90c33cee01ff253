//! The terminal's lines during a performance: one per executed trigger, clip end and refusal,
//! one per queued launch ("queued: scene 'chorus' at bar 13.1, in 3 beats"), and the periodic
//! status line, all with bar positions written one way (`bar N.M`). Control thread.

use loophole_engine::control::Snapshot;
use loophole_engine::model::{ClipId, Session, TrackId};
use loophole_engine::pulse::{Action, LauncherView, PulseCore, PulseEvent};
use loophole_engine::time::{Beats, SampleTime};

use crate::audio::load::percent;
use crate::input::Performance;
use crate::warn_line;

/// The musician's `N.M` (bar, beat in the bar, from 1) of `beat`, counted across the scenes'
/// time-signature changes ([`PulseCore::bar_position`]).
pub fn bar_label(pulse: &PulseCore, beat: f64) -> String {
    let (bar, in_bar) = pulse.bar_position(Beats(beat));
    loophole_engine::control::bar_label(bar, in_bar)
}

/// The sample an event happened at, if it has one.
pub fn event_sample(event: &PulseEvent) -> Option<SampleTime> {
    match event {
        PulseEvent::Executed { sample, .. } | PulseEvent::ClipEnded { sample, .. } => Some(*sample),
        _ => None,
    }
}

/// A short human line for an event, e.g. `bar 5.1  scene 'verse'  drums: start drums-busy`.
/// Refusals and drops are warnings (printed here); decisions, steps and tempo changes have no
/// line. `bar_of` labels a beat's bar ([`bar_label`]).
pub fn describe(
    event: &PulseEvent,
    perf: &Performance,
    beat_of_sample: impl Fn(SampleTime) -> f64,
    bar_of: impl Fn(f64) -> String,
) -> Option<String> {
    let session = &perf.session;
    let track_name = |t: TrackId| session.tracks.get(t.index()).map_or("?", |t| t.id.as_str());
    let clip_name = |c: ClipId| session.clips.get(c.index()).map_or("?", |c| c.id.as_str());
    let position = |beat: f64| format!("bar {}", bar_of(beat));
    match event {
        PulseEvent::Executed { kind, track, clip, scene, beat, late, .. } => {
            let mut line = position(beat.0);
            if let Some(s) = scene.and_then(|s| session.scenes.get(s.index())) {
                line.push_str(&format!("  scene '{}'", s.id));
            }
            line.push_str(&format!("  {}: {}", track_name(*track), kind.name()));
            if let Some(c) = clip {
                line.push(' ');
                line.push_str(clip_name(*c));
            }
            if *late {
                line.push_str("  (late: started phase-aligned)");
            }
            Some(line)
        }
        PulseEvent::ClipEnded { track, clip, sample } => {
            Some(format!("{}  {}: {} ended", position(beat_of_sample(*sample)), track_name(*track), clip_name(*clip)))
        }
        PulseEvent::Refused { .. } => {
            warn_line(format_args!("loophole: warning: {}", crate::streaming::describe_refusal(event, session)?));
            None
        }
        PulseEvent::Dropped { id } => {
            warn_line(format_args!(
                "loophole: warning: the audio thread dropped trigger {} (its queue was full)",
                id.0
            ));
            None
        }
        // Follow-action decisions, playlist steps and tempo changes: no line yet.
        _ => None,
    }
}

/// What a press queued, as the terminal says it: `queued: scene 'chorus' at bar 13.1, in 3
/// beats`, `queued: drums: drums-busy at bar 5.1, in 2.5 beats`, `queued: drums: stop at ...`.
/// Nothing for a press that takes effect at once or changes nothing. `view` is the launcher
/// after the press, at beat `now`.
pub fn queued(action: &Action, view: &LauncherView, session: &Session, bar_of: impl Fn(f64) -> String) -> Vec<String> {
    let now = view.beat.0;
    let when = |at: Beats| {
        let n = at.0 - now;
        format!("at bar {}, in {} beat{}", bar_of(at.0), trim(n), if (n - 1.0).abs() < 1e-9 { "" } else { "s" })
    };
    let track_line = |t: TrackId| -> Option<String> {
        let (clip, at) = view.tracks.get(t.index())?.queued?;
        let what = clip.map_or("stop".to_string(), |c| session.clip(c).id.clone());
        Some(format!("queued: {}: {what} {}", session.track(t).id, when(at)))
    };
    let scene_line = || -> Option<String> {
        let (scene, at) = view.queued_scene?;
        let what = scene.map_or("stop".to_string(), |s| format!("scene '{}'", session.scene(s).id));
        Some(format!("queued: {what} {}", when(at)))
    };
    let lines: Vec<Option<String>> = match *action {
        Action::Launch { clip, .. } | Action::Release { clip } => vec![track_line(session.clip(clip).track)],
        Action::Trigger(t) => vec![track_line(session.clip(t.clip).track)],
        Action::StopTrack { track, .. } => vec![track_line(track)],
        Action::LaunchScene { .. } | Action::Scene(_) | Action::Playlist { .. } | Action::Playthrough { .. } => {
            vec![scene_line()]
        }
        Action::StopAll { .. } => (0..session.tracks.len() as u32).map(|t| track_line(TrackId(t))).collect(),
        _ => Vec::new(),
    };
    lines.into_iter().flatten().collect()
}

/// A beat count without a needless fraction: `3`, `2.5`, `0.25`.
fn trim(beats: f64) -> String {
    let s = format!("{beats:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The periodic status line, from the snapshot: `bar 9.1  DSP 3.1% (peak 7.9%), xruns 0`.
pub fn status_line(s: &Snapshot) -> String {
    let (bar, in_bar) = s.launcher.bar;
    let band = match &s.conductor {
        Some(c) => format!(
            ", conductor {}{}{}",
            if c.connected { "connected" } else { "UNREACHABLE" },
            c.rtt_ms.map_or(String::new(), |r| format!(" (round trip {r:.1} ms)")),
            c.ahead_ms.map_or(String::new(), |a| format!(", output {a:+.1} ms of the band's time")),
        ),
        None => String::new(),
    };
    format!(
        "bar {}  DSP {} (peak {}), xruns {}{band}",
        loophole_engine::control::bar_label(bar, in_bar),
        percent(s.health.dsp_load),
        percent(s.health.dsp_peak),
        s.health.xruns
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::control::{HealthView, TransportView};
    use loophole_engine::pulse::PulseCore;

    #[test]
    fn the_status_line_reads_the_snapshot() {
        let session = std::sync::Arc::new(loophole_engine::demo::session());
        let core = PulseCore::new(session);
        let s = Snapshot {
            seq: 1,
            launcher: core.view(Beats(32.0)),
            transport: TransportView { playing: true, beat: 32.0, tempo: 120.0, sample: 0, sample_rate: 48_000 },
            link: None,
            meters: Vec::new(),
            master: [0.0; 2],
            health: HealthView { dsp_load: 0.031, dsp_peak: 0.079, xruns: 2, ..HealthView::default() },
            notice: None,
            conductor: None,
        };
        assert_eq!(status_line(&s), "bar 9.1  DSP 3.1% (peak 7.9%), xruns 2");
        assert_eq!(trim(3.0), "3");
        assert_eq!(trim(2.5), "2.5");
    }
}
