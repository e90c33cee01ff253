//! What a track records from: a named audio input and its channels, or a named MIDI input,
//! as the session file gives them (`input = "mic"`, `channels = [1, 2]`, `midi_in = "keys"`),
//! Pure data; any thread.

/// The input a track records from (the node binds the name to a device or a file with
/// `--input NAME=SOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackInput {
    /// An audio track's input: the input's name and the channels it takes (1-based in the
    /// file, 0-based here): one channel records a mono take, two a stereo take.
    Audio {
        /// The input's name.
        input: String,
        /// 0-based channels of the input: one (mono) or two (stereo, left then right).
        channels: Vec<u16>,
    },
    /// A MIDI track's input: the MIDI input's name.
    Midi {
        /// The MIDI input's name.
        port: String,
    },
}

impl TrackInput {
    /// The input's name.
    pub fn name(&self) -> &str {
        match self {
            TrackInput::Audio { input, .. } => input,
            TrackInput::Midi { port } => port,
        }
    }
}
