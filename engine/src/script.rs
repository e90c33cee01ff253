//! Performance scripts: timed actions (launch, release, scene, stop, playlists, playthroughs, the
//! arrangement) for offline renders, tests and the node's script player, and how long the
//! session's own previews (playthrough, playlist, arrangement) last.
//!
//! A script is read from a TOML file by [`crate::files::script`]; the demo builds its own in
//! code. Pure data; any thread.

use crate::model::{SceneId, Session};
use crate::pulse::Action;
use crate::time::Beats;

/// One action of a script, performed at a beat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScriptAction {
    /// When the action is performed (before quantisation), in beats from the start.
    pub beat: Beats,
    /// What is done.
    pub action: Action,
}

/// A performance script: actions sorted by beat (actions at the same beat keep file order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    /// The actions, sorted by beat (stable).
    pub actions: Vec<ScriptAction>,
}

impl Script {
    /// A script that does nothing.
    pub fn empty() -> Script {
        Script { actions: Vec::new() }
    }
}

/// How long a performance of scenes, a playlist or the arrangement lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Length {
    /// Beats from its start to its end.
    pub beats: Beats,
    /// Seconds from its start to its end, through every tempo change on the way.
    pub seconds: f64,
    /// Seconds of one bar at the tempo and time signature in force at its end (for a tail).
    pub bar_seconds: f64,
}

/// Adds up `(beats, tempo, beats per bar)` segments played one after the other. A segment's
/// tempo and beats per bar stay in force until a later one changes them (`None`: unchanged).
fn add_up(session: &Session, segments: impl Iterator<Item = (f64, Option<f64>, Option<f64>)>) -> Length {
    let (mut tempo, mut bar) = (session.tempo.0, session.beats_per_bar);
    let (mut beats, mut seconds) = (0.0, 0.0);
    for (len, t, b) in segments {
        tempo = t.unwrap_or(tempo);
        bar = b.unwrap_or(bar);
        beats += len;
        seconds += len * 60.0 / tempo;
    }
    Length { beats: Beats(beats), seconds, bar_seconds: bar * 60.0 / tempo }
}

/// How long a scene playthrough of `from..=to` lasts: each scene for its length (its longest
/// clip; a scene with no clips, one bar), at the session's tempo until a scene with its own
/// tempo (or time signature) launches, which stays in force after it.
pub fn playthrough_length(session: &Session, from: SceneId, to: SceneId) -> Length {
    let scenes = (from.0..=to.0).map(SceneId).filter(|s| s.index() < session.scenes.len());
    add_up(
        session,
        scenes
            .map(|s| (session.scene_length(s).0, session.scene(s).tempo.map(|t| t.0), session.scene(s).beats_per_bar)),
    )
}

/// How long one pass of playlist `playlist` (an index into `Session::playlists`) lasts from
/// step `step` (0 = the first) to its end: each step `repeat` times its scene's length, with
/// scene tempos as in [`playthrough_length`]. A looping playlist goes on after that.
pub fn playlist_length(session: &Session, playlist: usize, step: usize) -> Length {
    let steps = session.playlists.get(playlist).map_or(&[][..], |p| &p.steps[step.min(p.steps.len())..]);
    add_up(
        session,
        steps.iter().filter(|st| st.scene.index() < session.scenes.len()).map(|st| {
            let scene = session.scene(st.scene);
            (session.scene_length(st.scene).0 * f64::from(st.repeat), scene.tempo.map(|t| t.0), scene.beats_per_bar)
        }),
    )
}

/// How long the arrangement lasts from beat 0 to its last clip's end, through its tempo changes.
pub fn arrangement_length(session: &Session) -> Length {
    let end = session.arrangement.end().0;
    let mut segments = Vec::new();
    let (mut at, mut tempo, mut bar) = (0.0, None, None);
    for c in session.arrangement.tempo.iter().filter(|c| c.beat.0 < end) {
        segments.push((c.beat.0 - at, tempo, bar));
        at = c.beat.0;
        tempo = c.tempo.map(|t| t.0).or(tempo);
        bar = c.beats_per_bar.or(bar);
    }
    segments.push((end - at, tempo, bar));
    add_up(session, segments.into_iter())
}
