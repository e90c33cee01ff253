//! The launcher's view model: what the window shows, computed from the session and one
//! [`Snapshot`] as plain Rust values, so it is tested without a window (slint's todo-mvc way).
//! Tracks are columns and scenes rows, as in Live and Bitwig; the panels beside the grid are in
//! [`crate::panels`]. UI thread; allocates.

use loophole_engine::control::Snapshot;
use loophole_engine::model::{ClipId, SceneId, Session, TrackId};
use loophole_engine::pulse::FollowSource;

pub use crate::panels::beats;
use crate::panels::{PlaylistPanel, TransportBar, follow_label, grid_label, health_line};

/// What a launcher slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No clip in this scene on this track.
    Empty,
    /// A clip that is not playing.
    Stopped,
    /// A clip waiting for its beat to start.
    Queued,
    /// The clip that plays on its track.
    Playing,
    /// The playing clip, with a stop waiting for its beat.
    Stopping,
}

impl SlotState {
    /// The number the Slint view switches on (see `ui/launcher.slint`).
    pub fn code(self) -> i32 {
        match self {
            SlotState::Empty => 0,
            SlotState::Stopped => 1,
            SlotState::Queued => 2,
            SlotState::Playing => 3,
            SlotState::Stopping => 4,
        }
    }
}

/// One slot of the grid: the clip of scene `row` on track `col`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Column: the track's index.
    pub col: usize,
    /// Row: the scene's index.
    pub row: usize,
    /// The clip's id ("" for an empty slot).
    pub name: String,
    /// What it does.
    pub state: SlotState,
    /// A playing clip's position in its loop pass, 0..1.
    pub progress: f64,
    /// Beats left to the queued start or stop (`None`: nothing waits).
    pub countdown: Option<f64>,
    /// The grid the queued start or stop waits for (`bar`, `beat`, `1/16`, `scene`...; empty
    /// when nothing waits).
    pub grid: String,
    /// A playing clip's follow action: `next: X (70%) / Y (30%) in 2 loops`.
    pub next: Option<String>,
    /// The clip's colour, 0xRRGGBB (its track's, from [`track_colour`]).
    pub colour: u32,
}

/// One scene row's header.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneRow {
    /// The scene's id.
    pub name: String,
    /// The scene launched last and still playing.
    pub active: bool,
    /// Beats left to this scene's queued launch.
    pub countdown: Option<f64>,
    /// The grid the queued launch waits for (empty when nothing waits).
    pub grid: String,
    /// Where its follow action goes next and in how many loops it decides:
    /// `next: X (70%) / Y (30%) in 2 loops`.
    pub follow: Option<String>,
}

/// One track column's header.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackColumn {
    /// The track's id.
    pub name: String,
    /// The track's colour, 0xRRGGBB.
    pub colour: u32,
    /// The left/right peak since the last snapshot (linear).
    pub meter: f32,
    /// Fader gain in dB.
    pub gain_db: f64,
    /// Balance -1..=1.
    pub pan: f64,
    /// Muted.
    pub mute: bool,
    /// Soloed.
    pub solo: bool,
    /// Something plays on the track (its stop button is lit).
    pub playing: bool,
    /// Beats left to a queued stop of the track.
    pub stopping: Option<f64>,
    /// A clip that plays or waits on the track and has no slot in any scene (a clip only a
    /// script, a pad or the arrangement launches): `drums-fill in 0.5 · 1/16`, `▶ drums-fill`.
    pub elsewhere: Option<String>,
}

/// Everything the launcher window shows.
#[derive(Debug, Clone, PartialEq)]
pub struct LauncherModel {
    /// The transport bar: position as bar.beat.sixteenth, tempo, metre, playing, quantise, Link.
    pub transport: TransportBar,
    /// The health figures: DSP load, xruns, refusals.
    pub health: String,
    /// The status line: the last warning or refusal (errors go here, never to a dialog).
    pub status: String,
    /// The playlist or playthrough in progress.
    pub playlist: Option<PlaylistPanel>,
    /// Every follow action waiting to decide, soonest first: `clip beat-a: next: ... in 2 loops`.
    pub next: Vec<String>,
    /// Track headers, left to right.
    pub tracks: Vec<TrackColumn>,
    /// Scene headers, top to bottom.
    pub scenes: Vec<SceneRow>,
    /// Every slot (empty ones too), row by row.
    pub slots: Vec<Slot>,
}

/// A track's colour: a fixed palette by track index (the session format has no colours yet).
pub fn track_colour(track: usize) -> u32 {
    const PALETTE: [u32; 8] =
        [0xE0_5A_47, 0xF2_A5_41, 0xE8_D4_4D, 0x7B_C9_5F, 0x4F_B3_BF, 0x5B_7F_E0, 0x9D_6B_D9, 0xD9_6B_B5];
    PALETTE[track % PALETTE.len()]
}

impl LauncherModel {
    /// The model of `snapshot` for `session`.
    pub fn new(session: &Session, snapshot: &Snapshot) -> LauncherModel {
        let l = &snapshot.launcher;
        let now = snapshot.transport.beat;
        let left = |at: f64| (at - now).max(0.0);
        let clip_name = |c: ClipId| session.clips.get(c.index()).map_or("?", |c| c.id.as_str());
        let scene_name = |s: SceneId| session.scenes.get(s.index()).map_or("?", |s| s.id.as_str());
        let tracks = session
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let view = l.tracks.get(i);
                TrackColumn {
                    name: t.id.clone(),
                    colour: track_colour(i),
                    meter: snapshot.meters.get(i).map_or(0.0, |m| m[0].max(m[1])),
                    gain_db: view.map_or(t.gain_db, |v| v.gain_db),
                    pan: view.map_or(t.pan, |v| v.pan),
                    mute: view.map_or(t.mute, |v| v.mute),
                    solo: view.map_or(t.solo, |v| v.solo),
                    playing: view.is_some_and(|v| v.playing.is_some()),
                    stopping: view.and_then(|v| match v.queued {
                        Some((None, at)) if v.playing.is_some() => Some(left(at.0)),
                        _ => None,
                    }),
                    elsewhere: view.and_then(|v| {
                        let slotless = |c: ClipId| !session.scenes.iter().any(|s| s.clips.contains(&c));
                        match (v.queued, v.playing) {
                            (Some((Some(c), at)), _) if slotless(c) => Some(format!(
                                "{} in {} · {}",
                                clip_name(c),
                                beats(left(at.0)),
                                grid_label(session, snapshot, Some(c), None, at.0)
                            )),
                            (_, Some(p)) if slotless(p.clip) => Some(format!("▶ {}", clip_name(p.clip))),
                            _ => None,
                        }
                    }),
                }
            })
            .collect();
        let follow_of = |source: FollowSource| {
            l.follow.iter().find(|(s, _)| *s == source).and_then(|(_, at)| follow_label(session, source, left(at.0)))
        };
        let scenes = session
            .scenes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = SceneId(i as u32);
                let queued = l.queued_scene.filter(|(q, _)| *q == Some(id));
                SceneRow {
                    name: s.id.clone(),
                    active: l.scene == Some(id),
                    countdown: queued.map(|(_, at)| left(at.0)),
                    grid: queued.map_or(String::new(), |(_, at)| grid_label(session, snapshot, None, Some(id), at.0)),
                    follow: follow_of(FollowSource::Scene(id)),
                }
            })
            .collect();
        // A clip may sit in several scenes (one slot each). Its state is drawn in one slot: the
        // row of the scene that launched it (the current or the queued scene) if that scene
        // holds it, else the first scene that does.
        let row_of = |clip: ClipId, scene: Option<SceneId>| {
            scene
                .filter(|s| session.scenes.get(s.index()).is_some_and(|s| s.clips.contains(&clip)))
                .map(|s| s.index())
                .or_else(|| session.scenes.iter().position(|s| s.clips.contains(&clip)))
        };
        let queued_scene = l.queued_scene.and_then(|(s, _)| s);
        let mut slots = Vec::with_capacity(session.scenes.len() * session.tracks.len());
        for (row, scene) in session.scenes.iter().enumerate() {
            for col in 0..session.tracks.len() {
                let track = TrackId(col as u32);
                let clip = scene
                    .clips
                    .iter()
                    .copied()
                    .find(|c| session.clips.get(c.index()).is_some_and(|c| c.track == track));
                let view = l.tracks.get(col);
                let mut slot = Slot {
                    col,
                    row,
                    name: clip.map_or(String::new(), |c| clip_name(c).to_string()),
                    state: if clip.is_some() { SlotState::Stopped } else { SlotState::Empty },
                    progress: 0.0,
                    countdown: None,
                    grid: String::new(),
                    next: None,
                    colour: track_colour(col),
                };
                if let (Some(clip), Some(view)) = (clip, view) {
                    let playing = view.playing.filter(|p| p.clip == clip && row_of(clip, l.scene) == Some(row));
                    if let Some(p) = playing {
                        slot.state = SlotState::Playing;
                        slot.progress = p.progress.clamp(0.0, 1.0);
                        slot.next = follow_of(FollowSource::Clip(clip));
                    }
                    match view.queued {
                        Some((Some(q), at)) if q == clip && row_of(clip, queued_scene) == Some(row) => {
                            // A clip queued to start again while it plays keeps playing until then.
                            if playing.is_none() {
                                slot.state = SlotState::Queued;
                            }
                            slot.countdown = Some(left(at.0));
                            // Launched with its scene when the scene waits for the same beat.
                            let by_scene = l
                                .queued_scene
                                .and_then(|(s, b)| s.filter(|_| (b.0 - at.0).abs() < 1e-9))
                                .filter(|s| session.scenes.get(s.index()).is_some_and(|s| s.clips.contains(&clip)));
                            slot.grid = grid_label(session, snapshot, Some(clip), by_scene, at.0);
                        }
                        Some((None, at)) if playing.is_some() => {
                            slot.state = SlotState::Stopping;
                            slot.countdown = Some(left(at.0));
                            slot.grid = grid_label(session, snapshot, None, None, at.0);
                        }
                        _ => {}
                    }
                }
                slots.push(slot);
            }
        }
        let next = l
            .follow
            .iter()
            .filter_map(|(source, at)| {
                let who = match source {
                    FollowSource::Clip(c) => clip_name(*c).to_string(),
                    FollowSource::Scene(s) => format!("scene {}", scene_name(*s)),
                };
                follow_label(session, *source, left(at.0)).map(|f| format!("{who}: {f}"))
            })
            .collect();
        LauncherModel {
            transport: TransportBar::new(session, snapshot),
            health: health_line(snapshot),
            status: snapshot.notice.clone().unwrap_or_default(),
            playlist: PlaylistPanel::new(session, snapshot),
            next,
            tracks,
            scenes,
            slots,
        }
    }

    /// The slot at (`col`, `row`), if the grid has one.
    pub fn slot(&self, col: usize, row: usize) -> Option<&Slot> {
        self.slots.iter().find(|s| s.col == col && s.row == row)
    }
}
