//! Scenes (rows of clips that launch together), follow actions and scene playlists. Pure data;
//! any thread.

use serde::{Deserialize, Serialize};

use super::ids::{ClipId, SceneId};
use crate::time::{Bpm, Quantise};

/// What happens on a track that has no clip in a scene when the scene launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptySlot {
    /// The track stops (Live's default for a full scene launch).
    #[default]
    Stop,
    /// The track keeps playing whatever it was playing.
    Continue,
}

/// A row of clips that launch together.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Stable id (from the session file).
    pub id: String,
    /// The clips it launches (at most one per track).
    pub clips: Vec<ClipId>,
    /// Launch quantisation for the scene and the default for its clips.
    pub quantise: Quantise,
    /// What tracks without a clip in this scene do when it launches.
    pub empty_slots: EmptySlot,
    /// Tempo the scene sets when it launches, as Live's scene tempo does.
    pub tempo: Option<Bpm>,
    /// Beats per bar the scene sets when it launches (its time signature).
    pub beats_per_bar: Option<f64>,
    /// What happens automatically after the scene has played a number of times its length.
    pub follow: Option<FollowActions>,
}

impl Scene {
    /// A scene with default settings.
    pub fn new(id: impl Into<String>, clips: Vec<ClipId>) -> Scene {
        Scene {
            id: id.into(),
            clips,
            quantise: Quantise::Global,
            empty_slots: EmptySlot::Stop,
            tempo: None,
            beats_per_bar: None,
            follow: None,
        }
    }
}

/// Where a follow action goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FollowTarget {
    /// The next clip on the track (next scene), wrapping round at the end.
    Next,
    /// The previous clip on the track (previous scene), wrapping round at the start.
    Previous,
    /// The first clip on the track (first scene).
    First,
    /// The last clip on the track (last scene).
    Last,
    /// A clip (scene) chosen at random (seeded) among the candidates the constraints allow.
    Random,
    /// Play the same clip (scene) again from its start.
    Repeat,
    /// Stop the clip (for a scene: stop every track).
    Stop,
    /// A specific clip.
    Clip(ClipId),
    /// A specific scene.
    Scene(SceneId),
}

/// Which candidates a follow action may choose among. Ids are clip indices for a clip's follow
/// actions (clips of the same track) and scene indices for a scene's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowConstraints {
    /// Never choose the clip (scene) that is playing.
    pub no_repeat: bool,
    /// Never choose these.
    pub exclude: Vec<u32>,
    /// Choose only among these (empty: all).
    pub only: Vec<u32>,
}

/// One alternative of a follow action (Live's action A or B).
#[derive(Debug, Clone, PartialEq)]
pub struct FollowAction {
    /// Where it goes.
    pub next: FollowTarget,
    /// Its chance, 0..=1. With two alternatives whose chances add up to 1 or more, one of them
    /// always happens, in proportion to the chances; when they add up to less than 1, nothing
    /// happens with the remaining chance, and the clip (scene) plays on until the next decision.
    pub chance: f64,
    /// Which candidates `next`, `previous`, `random` may pick.
    pub constraints: FollowConstraints,
}

/// A clip's or scene's follow actions: after `after_loops` passes, A or B happens.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowActions {
    /// Passes (loops of a clip; lengths of a scene) before each decision. At least 1.
    pub after_loops: u32,
    /// Action A.
    pub a: FollowAction,
    /// Action B, if any.
    pub b: Option<FollowAction>,
}

/// One step of a playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaylistStep {
    /// The scene.
    pub scene: SceneId,
    /// How many times its length it plays (at least 1).
    pub repeat: u32,
}

/// An ordered list of scenes with repeat counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    /// Stable id (from the session file).
    pub id: String,
    /// The steps in order.
    pub steps: Vec<PlaylistStep>,
    /// Start again from the first step after the last (else stop every track).
    pub looping: bool,
}
