//! What a performer (a script, a controller, the UI, the conductor) can ask Pulse to do, in
//! session indices: [`Action`] and the seed's `ClipTrigger` / `SceneTrigger`. The named,
//! serialisable form that crosses threads and the network is `control::ControlCommand`.
//! Pure data; any thread.

use serde::{Deserialize, Serialize};

use crate::model::{ClipId, SceneId, TrackId};
use crate::time::{Beats, Bpm, Quantise};

/// How a clip stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Change the tempo at the beat of the press (the clock owner applies it: the render's tempo
    /// map, the node's timeline or its Link session).
    SetTempo {
        /// The new tempo (`Bpm::MIN..=Bpm::MAX`).
        bpm: Bpm,
    },
    /// Change the global launch quantisation (the seed's `launcher.quantise.update`): what
    /// clips and scenes set to `global` wait for.
    SetQuantise {
        /// The new setting (not `Global`).
        quantise: Quantise,
    },
    /// Change a track's mixer settings (the fields given; the others stay).
    Mix {
        /// The track.
        track: TrackId,
        /// What changes.
        change: MixChange,
    },
    /// Arm, record, stop recording (`record.arm`, `record.start`, `clip.record`, ...).
    Record(super::record_plan::RecordAction),
}

/// A change of a track's mixer settings: each field given replaces the current one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MixChange {
    /// Fader gain in dB (-96..=24).
    pub gain_db: Option<f64>,
    /// Balance, -1 (left) ..=1 (right).
    pub pan: Option<f64>,
    /// Muted.
    pub mute: Option<bool>,
    /// Soloed.
    pub solo: Option<bool>,
}

/// The id a caller gives a press (the conductor's sequence id; a UI's request id). Every trigger
/// the press schedules reports it ([`super::PulseEvent::Executed::command`]), so the caller sees
/// exactly what its press did and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandId(pub u64);

/// When a press takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum When {
    /// Pressed at the beat the caller gives (`now`), and quantised as a press is.
    Pressed,
    /// Already resolved to this target beat (by the conductor): it executes exactly there,
    /// whatever the clip's, scene's or global quantisation, on every node. Quantised and
    /// section-end stops become stops at that beat.
    At {
        /// The target beat.
        beat: Beats,
        /// The id every trigger of the press reports.
        id: CommandId,
    },
}

/// How a clip trigger treats the clip it launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
