//! Clips: audio or MIDI content with loop, launch and follow settings. Pure data; any thread.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::audio::{AudioData, DeferredAudio, MidiData, StreamedClip};
use super::ids::TrackId;
use super::scene::FollowActions;
use super::track::TrackKind;
use crate::time::{Beats, Quantise};

/// How a clip responds to its launch button, as in Ableton Live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// Press starts the clip (quantised); release does nothing.
    #[default]
    Trigger,
    /// Press starts the clip; release stops it.
    Gate,
    /// Press starts the clip if it is not playing, and stops it if it is.
    Toggle,
    /// While held, the clip retriggers on every quantisation step; release stops it.
    Repeat,
}

/// A clip: audio or MIDI content with loop and launch settings.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Stable id (from the session file).
    pub id: String,
    /// The track it lives on.
    pub track: TrackId,
    /// Audio samples or MIDI events.
    pub content: ClipContent,
    /// Whether it loops; a clip that does not loop plays once and ends.
    pub looping: bool,
    /// Loop length (and, for a one-shot, play length) in beats.
    pub length: Beats,
    /// Where playback starts within the content, in beats.
    pub start_offset: Beats,
    /// Clip gain in dB.
    pub gain_db: f64,
    /// Launch quantisation (`Global` defers to the scene and the session).
    pub quantise: Quantise,
    /// Launch mode.
    pub launch_mode: LaunchMode,
    /// How much launch velocity scales the clip's level: 0 = not at all, 1 = fully.
    pub velocity_amount: f64,
    /// Legato: when this clip replaces another on its track, it continues from the musical
    /// position the old clip had reached instead of starting from its beginning.
    pub legato: bool,
    /// What happens automatically after the clip has played a number of loops.
    pub follow: Option<FollowActions>,
    /// Set when the clip streams from disk (the media layer's `stream::prepare`): `content` then holds only
    /// its head.
    pub stream: Option<Arc<StreamedClip>>,
    /// Set when the loader left the clip's audio file undecoded (the files layer's
    /// `LoadOptions`): `content` then holds no frames (only the file's rate). Under a memory
    /// budget ([`crate::model::Deferral::Budget`]) the media layer's `stream::prepare` decodes the
    /// file; for an offline render ([`crate::model::Deferral::InPlace`]) the engine build reads it
    /// in place or decodes it. Clips sharing a file share it.
    pub deferred: Option<Arc<DeferredAudio>>,
}

impl Clip {
    /// A looping clip with default launch settings.
    pub fn new(id: impl Into<String>, track: TrackId, content: ClipContent, length: Beats) -> Clip {
        Clip {
            id: id.into(),
            track,
            content,
            looping: true,
            length,
            start_offset: Beats::ZERO,
            gain_db: 0.0,
            quantise: Quantise::Global,
            launch_mode: LaunchMode::Trigger,
            velocity_amount: 0.0,
            legato: false,
            follow: None,
            stream: None,
            deferred: None,
        }
    }
}

/// The content of a clip.
#[derive(Debug, Clone)]
pub enum ClipContent {
    /// Audio samples.
    Audio(Arc<AudioData>),
    /// MIDI events.
    Midi(Arc<MidiData>),
}

/// Whether a clip holds audio or MIDI.
pub fn clip_kind(clip: &Clip) -> TrackKind {
    match clip.content {
        ClipContent::Audio(_) => TrackKind::Audio,
        ClipContent::Midi(_) => TrackKind::Midi,
    }
}
