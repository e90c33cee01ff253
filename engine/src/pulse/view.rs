//! What the launcher looks like at a beat, as Pulse plans it: what each track plays and from
//! where, what is queued and for which beat, the current and queued scene, the follow actions
//! waiting to decide and the playlist step to come. Displays (the terminal, the UI, the
//! conductor's status) read it through the node's snapshot (`control::Snapshot`).
//! Control thread; the view itself is plain data for any thread.

use serde::{Deserialize, Serialize};

use crate::model::{ClipId, SceneId, TrackId};
use crate::queue::{MixSettings, Op};
use crate::time::{Beats, Quantise};

use super::core::PulseCore;
use super::event::FollowSource;

/// The launcher at one beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LauncherView {
    /// The beat the view is for.
    pub beat: Beats,
    /// The bar (from 0) and the beat within it, across time-signature changes.
    pub bar: (i64, f64),
    /// Beats per bar in force.
    pub beats_per_bar: f64,
    /// The tempo Pulse last set (the session's, a scene's, the arrangement's or a tempo press);
    /// the clock (Link, the device) may run at another.
    pub tempo: f64,
    /// The global launch quantisation.
    pub quantise: Quantise,
    /// Every track, in session order.
    pub tracks: Vec<TrackView>,
    /// The scene playing (the last one launched whose beat has come).
    pub scene: Option<SceneId>,
    /// A scene launch waiting for its beat (`None` inside: every track stops then).
    pub queued_scene: Option<(Option<SceneId>, Beats)>,
    /// Follow actions waiting to decide, with the beat each decides for.
    pub follow: Vec<(FollowSource, Beats)>,
    /// The playlist or playthrough in progress.
    pub sequence: Option<SequenceView>,
}

/// One track of the launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackView {
    /// What it plays now.
    pub playing: Option<PlayingView>,
    /// The next change planned: a clip that starts (or `None`, a stop) at a beat.
    pub queued: Option<(Option<ClipId>, Beats)>,
    /// Fader gain in dB.
    pub gain_db: f64,
    /// Balance -1..=1.
    pub pan: f64,
    /// Muted.
    pub mute: bool,
    /// Soloed.
    pub solo: bool,
}

/// A clip playing on a track.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlayingView {
    /// The clip.
    pub clip: ClipId,
    /// How far through its current pass, 0..1 (a one-shot: through its length).
    pub progress: f64,
    /// Passes completed since it started.
    pub pass: u64,
}

/// A playlist or playthrough in progress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequenceView {
    /// The playlist (`None`: a playthrough preview).
    pub playlist: Option<usize>,
    /// The step that starts next.
    pub next_step: usize,
    /// Its beat.
    pub at: Beats,
    /// Steps in all.
    pub steps: usize,
}

impl PulseCore {
    /// The launcher as planned at `beat` (at or after the last press or tick). Control thread;
    /// allocates the view.
    pub fn view(&self, beat: Beats) -> LauncherView {
        let tracks = (0..self.plans.len())
            .map(|t| {
                let plan = &self.plans[t];
                let playing = plan.state_at(beat).map(|p| {
                    let len = p.length.0.max(1e-9);
                    let passes = ((beat.0 - p.anchor.0) / len).max(0.0);
                    let pass = if p.looping { passes.floor() } else { 0.0 };
                    PlayingView { clip: p.clip, progress: (passes - pass).clamp(0.0, 1.0), pass: pass as u64 }
                });
                let queued = plan.events.iter().find(|(e, _)| e.target.0 > beat.0 + 1e-9).map(|(e, st)| {
                    let clip = match e.op {
                        Op::Start { clip, .. } => Some(clip),
                        Op::Stop { .. } | Op::RecordStart { .. } | Op::RecordStop { .. } => None,
                    };
                    debug_assert_eq!(clip, st.map(|p| p.clip));
                    (clip, e.target)
                });
                let m =
                    self.mix.get(t).copied().unwrap_or(MixSettings { gain: 1.0, pan: 0.0, mute: false, solo: false });
                TrackView {
                    playing,
                    queued,
                    gain_db: 20.0 * f64::from(m.gain.max(1e-9)).log10(),
                    pan: f64::from(m.pan),
                    mute: m.mute,
                    solo: m.solo,
                }
            })
            .collect();
        let now = self.scene_timeline.iter().rev().find(|(b, _)| b.0 <= beat.0 + 1e-9).and_then(|(_, s)| *s);
        let queued_scene = self.scene_timeline.iter().find(|(b, _)| b.0 > beat.0 + 1e-9).map(|(b, s)| (*s, *b));
        let mut follow: Vec<(FollowSource, Beats)> = self
            .clip_follow
            .iter()
            .flatten()
            .map(|f| (FollowSource::Clip(f.clip), f.at))
            .chain(self.scene_follow.iter().map(|f| (FollowSource::Scene(f.scene), f.at)))
            .collect();
        follow.sort_by(|a, b| a.1.0.total_cmp(&b.1.0));
        LauncherView {
            beat,
            bar: self.bar_position(beat),
            beats_per_bar: self.beats_per_bar_at(beat),
            tempo: self.tempo,
            quantise: self.quantise,
            tracks,
            scene: now,
            queued_scene,
            follow,
            sequence: self.sequence.as_ref().map(|s| SequenceView {
                playlist: s.playlist,
                next_step: s.next,
                at: s.at,
                steps: s.steps.len(),
            }),
        }
    }

    /// The tempo Pulse last set.
    pub fn tempo(&self) -> f64 {
        self.tempo
    }

    /// The global launch quantisation in force.
    pub fn global_quantise(&self) -> Quantise {
        self.quantise
    }

    /// What `track` plays at `beat` and since which anchor beat (for late joiners and displays).
    pub fn anchor_at(&self, track: TrackId, beat: Beats) -> Option<(ClipId, Beats)> {
        self.plans.get(track.index()).and_then(|p| p.state_at(beat)).map(|p| (p.clip, p.anchor))
    }
}
