//! The session model: tracks, clips (audio or MIDI), scenes, playlists, the arrangement, and the
//! ids that name them.
//!
//! The model is the ground floor of the engine: pure data that imports only [`crate::time`].
//! Files, codecs, stream caches and the reader thread live in the media and files layers above
//! it, which attach what they made to clips through the plain descriptions in [`audio`]
//! ([`DeferredAudio`], [`StreamedClip`]); nothing here reads a file.
//!
//! Ids are dense indices into the session's vectors, so lookups are O(1) and realtime-safe; the
//! human-readable names from the session file are kept alongside. Any thread.

pub mod arrangement;
pub mod audio;
pub mod clip;
pub mod edit;
pub mod ids;
pub mod instrument;
pub mod record;
pub mod scene;
pub mod session;
pub mod track;

pub use arrangement::{Arrangement, PlaceError, Placement, TempoChange};
pub use audio::{
    AudioData, Deferral, DeferredAudio, MidiData, MidiEvent, MidiMsg, StreamSettings, StreamSource, StreamedClip,
    WavHeader, db_to_gain, le_f32,
};
pub use clip::{Clip, ClipContent, LaunchMode, clip_kind};
pub use ids::{ClipId, SceneId, TrackId};
pub use instrument::{DrumSpec, InstrumentSpec, SynthSpec, Waveform};
pub use record::TrackInput;
pub use scene::{
    EmptySlot, FollowAction, FollowActions, FollowConstraints, FollowTarget, Playlist, PlaylistStep, Scene,
};
pub use session::Session;
pub use track::{MidiOutRoute, Track, TrackKind};
