//! The launcher's panels beside the grid, as plain Rust values computed from the session and one
//! [`Snapshot`]: the transport bar, the health line, the playlist panel, the follow-action "next"
//! labels and the grid a countdown waits for. Tested without a window. UI thread; allocates.

use loophole_engine::control::{Snapshot, metre};
use loophole_engine::model::{ClipId, FollowActions, FollowTarget, SceneId, Session};
use loophole_engine::pulse::FollowSource;
use loophole_engine::time::Quantise;

/// The transport bar: position, tempo, metre, start/stop, global quantisation, Link.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportBar {
    /// The position heard, `bar.beat.sixteenth`, each from 1.
    pub position: String,
    /// The clock's tempo (BPM).
    pub tempo: f64,
    /// The metre as a time signature (`4/4`, `7/8`).
    pub metre: String,
    /// The transport runs.
    pub playing: bool,
    /// The global launch quantisation.
    pub quantise: Quantise,
    /// Link: `None` when the node plays without it, else (enabled, peers).
    pub link: Option<(bool, u64)>,
    /// The scene playing, by name.
    pub scene: Option<String>,
}

impl TransportBar {
    /// The bar of `snapshot` for `session`.
    pub fn new(session: &Session, snapshot: &Snapshot) -> TransportBar {
        let l = &snapshot.launcher;
        TransportBar {
            position: position(l.bar.0, l.bar.1),
            tempo: snapshot.transport.tempo,
            metre: metre(l.beats_per_bar),
            playing: snapshot.transport.playing,
            quantise: l.quantise,
            link: snapshot.link.map(|k| (k.enabled, k.peers)),
            scene: l.scene.and_then(|s| session.scenes.get(s.index())).map(|s| s.id.clone()),
        }
    }

    /// Link as the bar writes it: `Link: 2 peer(s)`, `Link off`, or nothing without Link.
    pub fn link_text(&self) -> String {
        match self.link {
            Some((true, peers)) => format!("Link: {peers} peer(s)"),
            Some((false, _)) => "Link off".into(),
            None => String::new(),
        }
    }

    /// The whole bar as one line (the headless tests and the terminal-like summary).
    pub fn line(&self) -> String {
        format!(
            "{}   {:.2} BPM   {}   {}   quantise {}{}{}",
            self.position,
            self.tempo,
            self.metre,
            if self.playing { "playing" } else { "stopped" },
            self.quantise.name(),
            match self.link_text() {
                t if t.is_empty() => t,
                t => format!("   {t}"),
            },
            self.scene.as_ref().map_or(String::new(), |s| format!("   scene {s}")),
        )
    }
}

/// `bar.beat.sixteenth`, each counted from 1, from the bar index and the beats into the bar.
pub fn position(bar: i64, in_bar: f64) -> String {
    let beat = (in_bar + 1e-9).floor();
    let sixteenth = ((in_bar - beat) * 4.0 + 1e-9).floor();
    format!("{}.{}.{}", bar + 1, beat as i64 + 1, sixteenth as i64 + 1)
}

/// The health figures of the transport bar: DSP load, xruns and refusals, and in a band the
/// conductor's connection, round trip and how far the output is from the band's time.
pub fn health_line(snapshot: &Snapshot) -> String {
    let h = &snapshot.health;
    let band = match &snapshot.conductor {
        Some(c) => format!(
            "   conductor {}{}{}",
            if c.connected { "connected" } else { "UNREACHABLE" },
            c.rtt_ms.map_or(String::new(), |r| format!(", round trip {r:.1} ms")),
            c.ahead_ms.map_or(String::new(), |a| format!(", output {a:+.1} ms")),
        ),
        None => String::new(),
    };
    format!(
        "DSP {:.1}% (peak {:.1}%)   xruns {}   refused {}{band}",
        h.dsp_load * 100.0,
        h.dsp_peak * 100.0,
        h.xruns,
        h.refused
    )
}

/// Where one playlist step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Played.
    Done,
    /// Playing now.
    Playing,
    /// Starts next.
    Next,
    /// Later.
    Later,
}

/// One row of the playlist panel.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// The scene's name.
    pub scene: String,
    /// Times its length it plays.
    pub repeat: u32,
    /// Where the playlist is relative to it.
    pub state: StepState,
}

/// The playlist (or playthrough) in progress: its steps and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistPanel {
    /// `playlist NAME`, or `playthrough`.
    pub title: String,
    /// The steps (a playthrough's scenes are not in the snapshot: none then).
    pub steps: Vec<StepRow>,
    /// The next step, from 0, and the beats left to it.
    pub next: Option<(usize, f64)>,
    /// Steps in all.
    pub count: usize,
}

impl PlaylistPanel {
    /// The panel for `snapshot`, or `None` when no playlist or playthrough runs.
    pub fn new(session: &Session, snapshot: &Snapshot) -> Option<PlaylistPanel> {
        let s = snapshot.launcher.sequence?;
        let left = (s.at.0 - snapshot.transport.beat).max(0.0);
        let next = (s.next_step < s.steps).then_some((s.next_step, left));
        let state = |i: usize| match i.cmp(&s.next_step) {
            std::cmp::Ordering::Equal => StepState::Next,
            std::cmp::Ordering::Greater => StepState::Later,
            std::cmp::Ordering::Less if i + 1 == s.next_step => StepState::Playing,
            std::cmp::Ordering::Less => StepState::Done,
        };
        let (title, steps) = match s.playlist.and_then(|p| session.playlists.get(p)) {
            Some(p) => (
                format!("playlist {}", p.id),
                p.steps
                    .iter()
                    .enumerate()
                    .map(|(i, st)| StepRow {
                        scene: session.scenes.get(st.scene.index()).map_or("?".into(), |x| x.id.clone()),
                        repeat: st.repeat,
                        state: state(i),
                    })
                    .collect(),
            ),
            None => ("playthrough".to_string(), Vec::new()),
        };
        Some(PlaylistPanel { title, steps, next, count: s.steps })
    }

    /// The panel's heading line: `playlist set: step 3 of 5 in 4 beats`.
    pub fn heading(&self) -> String {
        match self.next {
            Some((step, left)) => {
                format!("{}: step {} of {} in {}", self.title, step + 1, self.count, beats(left))
            }
            None => format!("{}: last step", self.title),
        }
    }
}

/// A follow action's target as the labels name it.
fn target_name(session: &Session, t: &FollowTarget) -> String {
    match t {
        FollowTarget::Next => "next".into(),
        FollowTarget::Previous => "previous".into(),
        FollowTarget::First => "first".into(),
        FollowTarget::Last => "last".into(),
        FollowTarget::Random => "random".into(),
        FollowTarget::Repeat => "again".into(),
        FollowTarget::Stop => "stop".into(),
        FollowTarget::Clip(c) => session.clips.get(c.index()).map_or("?".into(), |c| c.id.clone()),
        FollowTarget::Scene(s) => session.scenes.get(s.index()).map_or("?".into(), |s| s.id.clone()),
    }
}

/// `next: X (70%) / Y (30%)`: where a follow action goes, with each alternative's chance.
pub fn alternatives(session: &Session, f: &FollowActions) -> String {
    let pct = |c: f64| format!("{:.0}%", (c * 100.0).clamp(0.0, 100.0));
    let mut s = format!("next: {} ({})", target_name(session, &f.a.next), pct(f.a.chance));
    if let Some(b) = &f.b {
        s.push_str(&format!(" / {} ({})", target_name(session, &b.next), pct(b.chance)));
    }
    s
}

/// The loops left before a follow action of something `length` beats long decides, `left`
/// beats from now: at least 1 while it has not decided (the pass it is in counts).
pub fn loops_left(left: f64, length: f64) -> u64 {
    if length <= 0.0 { 0 } else { ((left - 1e-9) / length).ceil().max(1.0) as u64 }
}

/// The label of a follow action waiting to decide: `next: X (70%) / Y (30%) in 2 loops`.
/// `None` when `source` has no follow action in the session.
pub fn follow_label(session: &Session, source: FollowSource, left: f64) -> Option<String> {
    let (f, length) = match source {
        FollowSource::Clip(c) => {
            let clip = session.clips.get(c.index())?;
            (clip.follow.as_ref()?, clip.length.0)
        }
        FollowSource::Scene(s) => (session.scenes.get(s.index())?.follow.as_ref()?, scene_length(session, s)),
    };
    let n = loops_left(left, length);
    Some(format!("{} in {n} loop{}", alternatives(session, f), if n == 1 { "" } else { "s" }))
}

/// A scene's length: its longest clip (what the scene's follow actions count in).
pub fn scene_length(session: &Session, scene: SceneId) -> f64 {
    session.scenes.get(scene.index()).map_or(0.0, |s| {
        s.clips.iter().filter_map(|c| session.clips.get(c.index())).map(|c| c.length.0).fold(0.0, f64::max)
    })
}

/// The grid a launch of `clip` (from its slot; `scene` when launched with its scene) waits for,
/// as the countdown's indicator writes it: `bar`, `beat`, `1/16`, `2-bars`, `scene`. The
/// setting is the clip's (or the scene's), else the global one; when the target beat is not on
/// that grid (a press that overrode it), the finest of bar, beat and 1/16 it lies on.
pub fn grid_label(
    session: &Session,
    snapshot: &Snapshot,
    clip: Option<ClipId>,
    scene: Option<SceneId>,
    at: f64,
) -> String {
    let l = &snapshot.launcher;
    let own = match (scene, clip) {
        (Some(s), _) => session.scenes.get(s.index()).map(|s| s.quantise),
        (None, Some(c)) => session.clips.get(c.index()).map(|c| c.quantise),
        (None, None) => None,
    };
    let q = match own {
        Some(Quantise::Global) | None => l.quantise,
        Some(q) => q,
    };
    let bar = l.beats_per_bar.max(1e-9);
    let on = |grid: f64| {
        let k = at / grid;
        (k - k.round()).abs() < 1e-6
    };
    match q.grid(bar) {
        Some(g) if on(g) => q.name(),
        None if q == Quantise::Scene => q.name(),
        None if q == Quantise::None => "now".into(),
        _ if on(bar) => "bar".into(),
        _ if on(1.0) => "beat".into(),
        _ if on(0.25) => "1/16".into(),
        _ => "off-grid".into(),
    }
}

/// A beat count as the countdown overlays write it: whole beats as `3`, else up to two decimals
/// (`1.5`, `0.25`; a sixteenth is a quarter beat, so a 1/16 grid's countdowns are exact).
pub fn beats(n: f64) -> String {
    if (n - n.round()).abs() < 1e-6 {
        return format!("{}", n.round() as i64);
    }
    let s = format!("{n:.2}");
    s.trim_end_matches('0').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_left_counts_the_pass_in_progress() {
        assert_eq!(loops_left(16.0, 4.0), 4);
        assert_eq!(loops_left(15.0, 4.0), 4);
        assert_eq!(loops_left(4.0, 4.0), 1);
        assert_eq!(loops_left(0.5, 4.0), 1);
        assert_eq!(loops_left(4.5, 4.0), 2);
    }

    #[test]
    fn positions_count_from_one() {
        assert_eq!(position(0, 0.0), "1.1.1");
        assert_eq!(position(2, 1.5), "3.2.3");
        assert_eq!(position(0, 3.75), "1.4.4");
    }
}
