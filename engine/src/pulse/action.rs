//! What a performer (a script, a controller, the UI, the conductor) can ask Pulse to do, in
//! session indices: [`Action`] and the seed's `ClipTrigger` / `SceneTrigger`. The named,
//! serialisable form that crosses threads and the network is [`crate::control::ControlCommand`].
//! Pure data; any thread.

use crate::model::{ClipId, SceneId, TrackId};
use crate::time::{Beats, Quantise};

/// How a clip stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopMode {
    /// At the beat of the press, with the declicking crossfade.
    Immediate,
    /// At the next point of the clip's launch quantisation (or the given one).
    Quantised,
    /// A fade starting at the beat of the press, lasting this many beats.
    FadeOut(Beats),
    /// At the end of the clip's current loop.
    SectionEnd,
}

/// Something a performer (or a script, a controller, the conductor) does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Press a clip's launch button.
    Launch {
        /// The clip.
        clip: ClipId,
        /// Overrides the clip's quantisation.
        quantise: Option<Quantise>,
        /// Launch velocity 0..=1 (scaled by the clip's velocity amount).
        velocity: Option<f64>,
    },
    /// Release a clip's launch button (matters for gate and repeat launch modes).
    Release {
        /// The clip.
        clip: ClipId,
    },
    /// Stop whatever plays on a track.
    StopTrack {
        /// The track.
        track: TrackId,
        /// How.
        mode: StopMode,
    },
    /// Launch a scene.
    LaunchScene {
        /// The scene.
        scene: SceneId,
        /// Overrides the scene's quantisation.
        quantise: Option<Quantise>,
    },
    /// Stop every track.
    StopAll {
        /// How.
        mode: StopMode,
    },
    /// A clip trigger with every field of the seed's `ClipTrigger` (`Launch` is its shorthand).
    Trigger(ClipTrigger),
    /// A scene trigger with a mode (`LaunchScene` is its shorthand, in `Full` mode).
    Scene(SceneTrigger),
    /// Start a playlist at one of its steps (0 = the first).
    Playlist {
        /// Index into `Session::playlists`.
        playlist: usize,
        /// Step to start at.
        step: usize,
        /// Overrides the first scene's quantisation.
        quantise: Option<Quantise>,
    },
    /// Scene playthrough preview: play scenes `from..=to` in order, each for its length (its
    /// longest clip), as a temporary timeline; then stop.
    Playthrough {
        /// First scene.
        from: SceneId,
        /// Last scene.
        to: SceneId,
        /// Quantisation of the first launch.
        quantise: Option<Quantise>,
    },
    /// Play the arrangement: every track follows its arrangement lane from this beat on.
    PlayArrangement,
    /// Return every track a launched clip took over to its arrangement lane.
    BackToArrangement {
        /// When (default: the global quantisation).
        quantise: Option<Quantise>,
    },
}

/// How a clip trigger treats the clip it launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Start the clip from its beginning, unless it is already playing (then nothing changes).
    Start,
    /// Start the clip from its beginning, even if it is playing.
    Retrigger,
    /// Take over from the clip playing on the track at its musical position.
    Legato,
    /// Stop the clip if it is the one playing on its track.
    Stop,
}

/// The seed's `ClipTrigger`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipTrigger {
    /// The clip.
    pub clip: ClipId,
    /// Overrides the clip's quantisation.
    pub quantise: Option<Quantise>,
    /// Overrides the clip's launch mode and legato setting.
    pub behaviour: Option<Behaviour>,
    /// Launch velocity 0..=1.
    pub launch_velocity: Option<f64>,
}

/// How a scene trigger launches its scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SceneMode {
    /// Launch every clip of the scene; other tracks stop (unless set to keep playing, or the
    /// scene's empty slots continue).
    #[default]
    Full,
    /// Launch only the scene's own clips; leave every other track alone.
    Partial,
    /// Start the first playlist that holds this scene, at this scene's step.
    Playlist,
    /// A launch made by a follow action (a full launch; logged as such).
    FollowAction,
}

/// The seed's `SceneTrigger`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneTrigger {
    /// The scene.
    pub scene: SceneId,
    /// Overrides the scene's quantisation.
    pub quantise: Option<Quantise>,
    /// How it launches.
    pub mode: SceneMode,
}
