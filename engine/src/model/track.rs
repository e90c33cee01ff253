//! Tracks: mixer channels of audio or MIDI clips, and a MIDI track's route to an external synth.
//! Pure data; any thread.

use serde::{Deserialize, Serialize};

use super::instrument::InstrumentSpec;

/// What a track plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// Audio clips.
    Audio,
    /// MIDI clips, played by the track's instrument.
    Midi,
}

impl TrackKind {
    /// `audio` or `MIDI`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Midi => "MIDI",
        }
    }
}

/// A mixer channel with one clip slot playing at a time.
#[derive(Debug, Clone)]
pub struct Track {
    /// Stable id (from the session file).
    pub id: String,
    /// Audio or MIDI.
    pub kind: TrackKind,
    /// Fader gain in dB.
    pub gain_db: f64,
    /// Pan, -1 (left) to +1 (right), equal-power.
    pub pan: f64,
    /// Muted tracks are rendered but not heard.
    pub mute: bool,
    /// When any track is soloed, only soloed tracks are heard.
    pub solo: bool,
    /// The built-in instrument that plays a MIDI track's clips (ignored on audio tracks).
    pub instrument: Option<InstrumentSpec>,
    /// A full scene launch does not stop this track (it keeps playing its clip).
    pub keep_playing: bool,
    /// Where a MIDI track's clips also go: an external MIDI output port (ignored on audio tracks).
    /// A track with a route plays its built-in instrument only if `instrument` is set.
    pub midi_out: Option<MidiOutRoute>,
    /// The band member whose laptop plays this track (`node = "NAME"`): with a conductor, a node
    /// called NAME renders it and the others keep it silent. `None`: every node plays it (unless
    /// a node is told `--tracks`).
    pub node: Option<String>,
    /// What the track records from (`input` and `channels`, or `midi_in`), if it can record.
    pub input: Option<super::record::TrackInput>,
}

/// A MIDI track's route to an external synth: an output port by name, and optionally the
/// channel every message is sent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MidiOutRoute {
    /// The output port's name (matched as MIDI ports are: exactly, else by a unique substring).
    pub port: String,
    /// Channel 0..=15 that replaces the clip's own channels; `None` keeps the clip's channels.
    pub channel: Option<u8>,
}

impl Track {
    /// A track with unity gain, centred, not muted or soloed.
    pub fn new(id: impl Into<String>, kind: TrackKind) -> Track {
        Track {
            id: id.into(),
            kind,
            gain_db: 0.0,
            pan: 0.0,
            mute: false,
            solo: false,
            instrument: None,
            keep_playing: false,
            midi_out: None,
            node: None,
            input: None,
        }
    }
}
