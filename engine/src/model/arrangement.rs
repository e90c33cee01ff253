//! The linear arrangement: clips placed on lanes (tracks) and tempo changes, all in beats. Pure
//! data; any thread. Committing scenes and moving clips onto it is in [`super::edit`].

use super::ids::{ClipId, TrackId};
use crate::time::{Beats, Bpm};

/// A clip placed on the arrangement's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The lane (track) it plays on.
    pub track: TrackId,
    /// The clip (same id as in the launcher: moving keeps it).
    pub clip: ClipId,
    /// Beat where it starts.
    pub start: Beats,
    /// How long it plays, in beats (looping clips loop inside it).
    pub length: Beats,
    /// Position in the clip at `start`, in beats (0 = its beginning).
    pub offset: Beats,
}

impl Placement {
    /// Beat where it ends.
    pub fn end(&self) -> Beats {
        Beats(self.start.0 + self.length.0)
    }
}

/// A tempo (and time-signature) change on the arrangement's timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempoChange {
    /// Beat where it applies.
    pub beat: Beats,
    /// New tempo.
    pub tempo: Option<Bpm>,
    /// New beats per bar.
    pub beats_per_bar: Option<f64>,
}

/// The linear arrangement: clips on lanes, and tempo changes, all in beats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arrangement {
    /// Placed clips (any order; lanes are tracks).
    pub clips: Vec<Placement>,
    /// Tempo and time-signature changes, in beat order.
    pub tempo: Vec<TempoChange>,
}

impl Arrangement {
    /// Where the arrangement ends (its last clip's end).
    pub fn end(&self) -> Beats {
        Beats(self.clips.iter().map(|p| p.end().0).fold(0.0, f64::max))
    }
}

/// Why a clip cannot be placed on the arrangement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaceError {
    /// The clip's content does not fit the lane: an audio clip on a MIDI lane or vice versa.
    #[error(
        "clip '{clip}' is {clip_kind} and lane '{track}' is {track_kind}: {clip_kind} clips go on {clip_kind} lanes"
    )]
    WrongLane {
        /// Clip id.
        clip: String,
        /// Track id.
        track: String,
        /// `audio` / `MIDI`.
        clip_kind: &'static str,
        /// `audio` / `MIDI`.
        track_kind: &'static str,
    },
    /// The clip or the track does not exist.
    #[error("no such clip or track")]
    Missing,
    /// A placement needs a positive length and a start beat that is a number.
    #[error("a placement needs a positive length and a finite start")]
    BadRange,
}
