//! What can be wrong with a session file, as a [`SessionError`] that names the file, the line
//! (and column) and what is wrong, in words for the user. Control thread.

use std::path::{Path, PathBuf};

use crate::files::diagnostics::Location;

/// A problem with a session file: where it is and what it is.
///
/// Displays as `FILE:LINE:COLUMN: PROBLEM` (or `FILE: PROBLEM` when the problem is not at one
/// place in the file), the form editors and terminals turn into links.
#[derive(Debug, thiserror::Error)]
#[error("{}", Location { file: &self.file, line: self.line, column: self.column, what: &self.kind })]
pub struct SessionError {
    /// The session file.
    pub file: PathBuf,
    /// 1-based line of the problem, when it is at one place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the problem, when it is at one place in the file.
    pub column: Option<usize>,
    /// What is wrong (boxed to keep `Result<_, SessionError>` small).
    pub kind: Box<SessionErrorKind>,
}

/// What is wrong with a session file. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SessionErrorKind {
    /// The session file itself could not be read. Check the path and its permissions.
    #[error("cannot read the session file: {0}")]
    Io(#[source] std::io::Error),
    /// The file is not valid TOML (a missing quote or bracket, a key given twice, text that is
    /// not UTF-8, ...). Fix the text at the line and column given.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// The TOML is valid but does not fit the session format: an unknown key (often a typo), a
    /// value of the wrong type (`tempo = "fast"`), a missing required key or an unknown enum
    /// value. The message lists what is expected; see `docs/session-format.md`.
    #[error("{message}")]
    Schema {
        /// What is wrong, with the offending line quoted.
        message: String,
    },
    /// A number is outside the range the format allows. Change it to a value in that range.
    #[error("{what} is {value}; it must be {expected}")]
    OutOfRange {
        /// The setting, e.g. `tempo` or `clip 'a': note 3 key`.
        what: String,
        /// The value found.
        value: String,
        /// The allowed range, in words.
        expected: String,
    },
    /// A quantisation string that Loophole does not know. Use one of the spellings listed.
    #[error(
        "{what}: '{value}' is not a quantisation (use none, bar, 2-bars, 4-bars, beat, half-beat, \
         1/8, 1/16, 1/32, 1/8t, 1/16t, scene{})",
        if *.global_allowed { " or global" } else { "" }
    )]
    BadQuantise {
        /// The setting.
        what: String,
        /// The string found.
        value: String,
        /// Whether `global` would have been accepted here.
        global_allowed: bool,
    },
    /// A time signature that is not `N/D` with D one of 1, 2, 4, 8, 16, 32. Write it like `7/8`, or
    /// give `beats_per_bar` instead.
    #[error("time_signature '{value}' is not a time signature like '4/4', '3/4' or '7/8'")]
    BadTimeSignature {
        /// The string found.
        value: String,
    },
    /// An id is empty. Give every track, clip and scene a non-empty id.
    #[error("{kind} id is empty; give it a name")]
    EmptyId {
        /// `track`, `clip` or `scene`.
        kind: &'static str,
    },
    /// Two tracks (or clips, or scenes) have the same id. Rename one of them.
    #[error("duplicate {kind} id '{id}' (already used on line {first_line})")]
    DuplicateId {
        /// `track`, `clip` or `scene`.
        kind: &'static str,
        /// The id.
        id: String,
        /// Where it was first defined.
        first_line: usize,
    },
    /// A clip names a track that is not defined. Fix the spelling or add the `[[track]]`.
    #[error("clip '{clip}': track '{track}' does not exist (tracks: {known})")]
    UnknownTrack {
        /// The clip.
        clip: String,
        /// The track id it names.
        track: String,
        /// The tracks that do exist.
        known: String,
    },
    /// A scene names a clip that is not defined. Fix the spelling or add the `[[clip]]`.
    #[error("scene '{scene}': clip '{clip}' does not exist (clips: {known})")]
    UnknownClip {
        /// The scene.
        scene: String,
        /// The clip id it names.
        clip: String,
        /// The clips that do exist.
        known: String,
    },
    /// An audio clip on a MIDI track or a MIDI clip on an audio track. Move the clip to a track
    /// of its kind or change the track's `kind`.
    #[error("clip '{clip}' is {clip_kind} clip but track '{track}' is {track_kind} track")]
    KindMismatch {
        /// The clip.
        clip: String,
        /// `an audio` or `a MIDI`.
        clip_kind: &'static str,
        /// The track.
        track: String,
        /// `an audio` or `a MIDI`.
        track_kind: &'static str,
    },
    /// A clip's content is missing or ambiguous (it needs exactly one of `notes`, `midi_file`,
    /// `file`), or a key does not apply to this kind of clip. Follow the message.
    #[error("clip '{clip}': {problem}")]
    Content {
        /// The clip.
        clip: String,
        /// What is wrong.
        problem: String,
    },
    /// A scene lists two clips of the same track (a track plays one clip at a time), or one clip
    /// twice. Remove one of them.
    #[error("scene '{scene}': {problem}")]
    SceneClash {
        /// The scene.
        scene: String,
        /// What clashes.
        problem: String,
    },
    /// An instrument setting is out of range (see "Built-in instruments" in
    /// `docs/session-format.md`). Change the value the message names.
    #[error("track '{track}': {problem}")]
    BadInstrument {
        /// The track.
        track: String,
        /// What is wrong, from [`InstrumentSpec::validate`].
        problem: String,
    },
    /// A key that is not allowed in this place, e.g. an instrument on an audio track. Remove it.
    #[error("{0}")]
    Misplaced(String),
    /// A referenced audio or MIDI file does not exist (or cannot be opened). Paths are relative
    /// to the session file's folder; fix the path or put the file there.
    #[error("clip '{clip}': {what} '{}' not found (looked for {}): {reason}", path.display(), resolved.display())]
    MissingFile {
        /// The clip.
        clip: String,
        /// `audio file` or `MIDI file`.
        what: &'static str,
        /// The path as written in the session file.
        path: PathBuf,
        /// The path Loophole tried to open.
        resolved: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// An audio file exists but is not a WAV file Loophole can read (corrupt, truncated, or an
    /// unsupported encoding). Re-export it as 16/24/32-bit integer or 32-bit float WAV.
    #[error("clip '{clip}': cannot load WAV file '{}': {problem}", path.display())]
    BadAudio {
        /// The clip.
        clip: String,
        /// The path as written in the session file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A MIDI file exists but cannot be used (corrupt, SMPTE timecode timing, no such track).
    /// Re-export it from your DAW as a Standard MIDI File with beat (PPQ) timing.
    #[error("clip '{clip}': cannot load MIDI file '{}': {problem}", path.display())]
    BadMidi {
        /// The clip.
        clip: String,
        /// The path as written in the session file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A follow action names something it cannot go to (a clip of another track, a scene that
    /// does not exist), or its constraints leave nothing to choose. Follow the message.
    #[error("{owner}: follow action: {problem}")]
    Follow {
        /// `clip 'x'` or `scene 'y'`.
        owner: String,
        /// What is wrong.
        problem: String,
    },
    /// A playlist has no steps or names a scene that does not exist. Fix the step the message
    /// names.
    #[error("playlist '{playlist}': {problem}")]
    Playlist {
        /// The playlist.
        playlist: String,
        /// What is wrong.
        problem: String,
    },
    /// An arrangement entry names a clip or lane that does not exist, puts a clip on a lane of
    /// the other kind (audio on MIDI or MIDI on audio), or a tempo change is empty or given
    /// twice. Follow the message.
    #[error("arrangement: {problem}")]
    Arrangement {
        /// What is wrong.
        problem: String,
    },
    /// The arrangement cannot be written into the session file (it names a clip the file does not
    /// define). Save the whole session instead.
    #[error("cannot save the arrangement: {0}")]
    Save(String),
    /// The session file could not be written. Check the folder's permissions and free space.
    #[error("cannot write the session file: {0}")]
    Write(#[source] std::io::Error),
    /// The session file is read-only (or this user may not write it): it is not replaced, as an
    /// editor would not replace it. Make it writable first.
    #[error("the file is read-only (or not yours to write); it is left as it was")]
    ReadOnly,
    /// The arrangement, written into the file, would make a file that does not load; the file is
    /// left as it was.
    #[error("the new arrangement would make a file that does not load ({0}); the file is left as it was")]
    WouldNotLoad(String),
    /// The session passed every check above but is still inconsistent (caught by
    /// [`Session::validate`]). This should not happen; please report it with the session file.
    #[error("the session is inconsistent: {0}")]
    Model(String),
}

impl SessionError {
    /// An error that is not at a particular place in `file`.
    pub fn whole_file(file: &Path, kind: SessionErrorKind) -> SessionError {
        SessionError { file: file.to_path_buf(), line: None, column: None, kind: Box::new(kind) }
    }
}
