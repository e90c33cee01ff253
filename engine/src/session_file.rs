//! Loading a [`Session`] from a human-readable TOML session file, with its audio (WAV, via
//! `hound`) and MIDI (Standard MIDI Files, via `midly`), and band-limited resampling of audio
//! (via `rubato`).
//!
//! The format is documented for users in `docs/session-format.md`; `examples/*.toml` are
//! working sessions. In short:
//!
//! ```toml
//! [session]
//! name = "My set"
//! tempo = 120.0
//! beats_per_bar = 4
//!
//! [[track]]
//! id = "drums"
//! kind = "midi"
//! instrument = { type = "drums" }
//!
//! [[clip]]
//! id = "beat-a"
//! track = "drums"
//! notes = [[0.0, 0.25, 36, 110], [1.0, 0.25, 38, 100]]
//!
//! [[scene]]
//! id = "verse"
//! clips = ["beat-a"]
//! tempo = 124                                  # optional; time_signature = "3/4" too
//! follow = { a = { next = "next", chance = 0.7 }, b = { next = "repeat" } }
//!
//! [[playlist]]
//! id = "song"
//! steps = ["verse", { scene = "verse", repeat = 2 }]
//!
//! [[arrangement.clip]]
//! clip = "beat-a"
//! start = 0
//! length = 16
//!
//! [[arrangement.tempo_change]]
//! beat = 16
//! tempo = 100
//! ```
//!
//! [`save_arrangement`] writes a session's arrangement back into its file, keeping everything
//! else in the file byte for byte.
//!
//! Every problem is reported as a [`SessionError`] that names the file, the line (and column) and
//! what is wrong, e.g. `band.toml:14:9: clip 'bass-a': track 'bas' does not exist (tracks: drums,
//! bass, keys)`. Loading never panics, whatever the input.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::media::smf::decode_smf;
use crate::media::wav::{decode_wav, read_wav_file};
use crate::model::DeferredAudio;
use crate::model::InstrumentSpec;
use crate::model::{
    Arrangement, AudioData, Clip, ClipContent, ClipId, EmptySlot, FollowAction, FollowActions, FollowConstraints,
    FollowTarget, LaunchMode, MidiData, MidiOutRoute, Placement, Playlist, PlaylistStep, Scene, SceneId, Session,
    TempoChange, Track, TrackId, TrackKind, clip_kind,
};
use crate::time::{Beats, Bpm, Quantise};

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

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

/// Formats `file:line:column: what`.
pub(crate) struct Location<'a, W: fmt::Display> {
    pub(crate) file: &'a Path,
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) what: &'a W,
}

impl<W: fmt::Display> fmt::Display for Location<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.what)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`: how every file-format error
/// in Loophole (sessions, scripts, controller mappings) says where it is.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

/// The trimmed source line containing byte `offset`, shortened to 72 characters for messages.
pub fn source_line(text: &str, offset: usize) -> String {
    let bytes = text.as_bytes();
    let offset = offset.min(bytes.len());
    let start = bytes[..offset].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = bytes[offset..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| offset + i);
    let line = String::from_utf8_lossy(&bytes[start..end]);
    let line = line.trim();
    if line.chars().count() > 72 {
        let short: String = line.chars().take(69).collect();
        format!("{short}...")
    } else {
        line.to_string()
    }
}

/// Why a TOML document could not be deserialised.
pub(crate) enum TomlProblem {
    /// The text is not TOML.
    Syntax(String),
    /// The TOML does not fit the format.
    Schema(String),
}

/// Parses `text` as TOML into `T`, reporting syntax errors separately from schema errors, with
/// friendlier wording than serde's and the offending line quoted.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (Option<Range<usize>>, TomlProblem)> {
    if let Err(e) = text.parse::<toml::Table>() {
        let mut message = e.message().trim().to_string();
        if let Some(span) = e.span() {
            let line = source_line(text, span.start);
            if message.contains("duplicate key") && line.starts_with('[') && !line.starts_with("[[") {
                message.push_str("; a table that is repeated is written with double brackets, e.g. [[clip]]");
            }
            if !line.is_empty() {
                message.push_str(&format!(" (in `{line}`)"));
            }
        }
        return Err((e.span(), TomlProblem::Syntax(message)));
    }
    toml::from_str::<T>(text).map_err(|e| {
        let raw = e.message().trim();
        let mut message = friendly_serde_message(raw);
        if let Some(span) = e.span() {
            let line = source_line(text, span.start);
            if line.starts_with('[') && !line.starts_with("[[") && raw.contains("expected a sequence") {
                message.push_str("; each entry of a list of tables is written with double brackets, e.g. [[track]]");
            }
            if !line.is_empty() {
                message.push_str(&format!(" (in `{line}`)"));
            }
        }
        (e.span(), TomlProblem::Schema(message))
    })
}

/// Rewords serde's type names into the words of the session format.
fn friendly_serde_message(message: &str) -> String {
    let mut m = message
        .replace(" as i128, expected i64", ", expected an integer that fits in 64 bits")
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected a tuple of size 4", "expected [start_beat, length_beats, key, velocity]")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    // "expected struct RawClip" -> "expected a table"
    while let Some(i) = m.find("expected struct ") {
        let rest = &m[i + "expected struct ".len()..];
        let end = rest.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(rest.len());
        m = format!("{}expected a table{}", &m[..i], &rest[end..]);
    }
    m
}

// ------------------------------------------------------------------------------------------------
// Public API
// ------------------------------------------------------------------------------------------------

/// Reads and parses a session file, loading the audio and MIDI files it references (relative
/// paths are relative to the session file's folder).
pub fn load_session(path: &Path) -> Result<Session, SessionError> {
    load_session_with(path, LoadOptions::default())
}

/// How a session is loaded ([`load_session_with`], [`parse_session_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadOptions {
    /// Overrides the session's `memory_budget_mb` (the node's `--memory-budget`; 0 or more).
    pub memory_budget_mb: Option<f64>,
}

/// [`load_session`] with options. When a memory budget is set (in the file or in `options`), audio
/// files are not decoded: only their headers are read and checked, and each clip keeps its file
/// as [`crate::model::Clip::deferred`] for [`crate::stream::prepare`], which decodes the files
/// that stay resident and converts the others to their cache files a chunk at a time, so the
/// peak memory while loading stays near the budget.
pub fn load_session_with(path: &Path, options: LoadOptions) -> Result<Session, SessionError> {
    let bytes = std::fs::read(path).map_err(|e| SessionError::whole_file(path, SessionErrorKind::Io(e)))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let prefix = String::from_utf8_lossy(&bytes[..valid]);
            let (line, column) = line_col(&prefix, valid);
            return Err(SessionError {
                file: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                kind: Box::new(SessionErrorKind::Syntax {
                    message: "the file is not UTF-8 text (save it as UTF-8)".into(),
                }),
            });
        }
    };
    parse_session_with(&text, path, options)
}

/// Parses session-file text. `file` names the file in error messages, and relative audio and
/// MIDI paths are resolved against its folder.
pub fn parse_session(text: &str, file: &Path) -> Result<Session, SessionError> {
    parse_session_with(text, file, LoadOptions::default())
}

/// [`parse_session`] with options (see [`load_session_with`]).
pub fn parse_session_with(text: &str, file: &Path, options: LoadOptions) -> Result<Session, SessionError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ctx = Ctx { file, text, base_dir: base_dir(file), options };
    let raw: RawFile = parse_toml(text).map_err(|(span, problem)| {
        let kind = match problem {
            TomlProblem::Syntax(message) => SessionErrorKind::Syntax { message },
            TomlProblem::Schema(message) => SessionErrorKind::Schema { message },
        };
        match span {
            Some(span) => ctx.err(&span, kind),
            None => SessionError::whole_file(file, kind),
        }
    })?;
    let session = ctx.build(raw)?;
    session.validate().map_err(|m| SessionError::whole_file(file, SessionErrorKind::Model(m)))?;
    Ok(session)
}

/// Writes `session`'s arrangement (its placements and tempo changes) into the session file at
/// `path`, replacing the file's `[arrangement]` section and keeping everything else byte for byte,
/// comments included. The new section goes where the old one was (a comment just above the old
/// section stays above it), or at the end of the file if it had none; comments inside the old
/// section are not kept.
///
/// A placed clip the file does not define (a duplicate made by [`Session::place_clip`]) is
/// added as a new `[[clip]]` entry after the file's clips: a copy of its original's entry with
/// the new id and lane. Any other clip the file does not define is an error, and the file is
/// left as it was. The file is replaced atomically (written beside it, then renamed).
///
/// Thread: control. Not realtime-safe.
pub fn save_arrangement(path: &Path, session: &Session) -> Result<(), SessionError> {
    let bytes = std::fs::read(path).map_err(|e| SessionError::whole_file(path, SessionErrorKind::Io(e)))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        SessionError::whole_file(
            path,
            SessionErrorKind::Syntax { message: "the file is not UTF-8 text (save it as UTF-8)".into() },
        )
    })?;
    let new_text = replace_arrangement(&text, path, session)?;
    let write = |e| SessionError::whole_file(path, SessionErrorKind::Write(e));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".saving-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, new_text).map_err(write)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write(e)
    })
}

/// The text of session file `text` with its arrangement replaced by `session`'s: what
/// [`save_arrangement`] writes. `file` names the file in error messages.
pub fn replace_arrangement(text: &str, file: &Path, session: &Session) -> Result<String, SessionError> {
    use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let mut doc: DocumentMut = body.parse().map_err(|e: toml_edit::TomlError| {
        let kind = SessionErrorKind::Syntax { message: e.message().trim().to_string() };
        match e.span() {
            Some(span) => {
                let (line, column) = line_col(body, span.start);
                SessionError { file: file.to_path_buf(), line: Some(line), column: Some(column), kind: Box::new(kind) }
            }
            None => SessionError::whole_file(file, kind),
        }
    })?;
    let save_err = |m: String| SessionError::whole_file(file, SessionErrorKind::Save(m));

    // Where the old section was, and the comment above it.
    let mut last = 0isize;
    walk_tables(doc.as_table(), &mut |t| last = last.max(t.position().unwrap_or(0)));
    let (position, prefix) = match doc.get("arrangement") {
        Some(Item::Table(old)) => {
            let mut first: Option<(isize, String)> = None;
            walk_tables(old, &mut |t| {
                if let Some(p) = t.position()
                    && !t.is_implicit()
                    && first.as_ref().is_none_or(|(q, _)| p < *q)
                {
                    let prefix = t.decor().prefix().and_then(|r| r.as_str()).unwrap_or("\n").to_string();
                    first = Some((p, prefix));
                }
            });
            first.unwrap_or((last + 1, "\n".into()))
        }
        _ => (last + 1, "\n".into()),
    };

    // Clips placed on the arrangement that the file does not define: copies of clips it does.
    let file_clips: Vec<String> = match doc.get("clip") {
        None => Vec::new(),
        Some(Item::ArrayOfTables(a)) => {
            a.iter().filter_map(|t| t.get("id").and_then(|v| v.as_str()).map(|s| s.trim().to_string())).collect()
        }
        Some(_) => return Err(save_err("the file's clips are not written as [[clip]] entries".into())),
    };
    let mut added: Vec<Table> = Vec::new();
    for p in &session.arrangement.clips {
        let clip = session.clips.get(p.clip.index()).ok_or_else(|| save_err("a placement names no clip".into()))?;
        if file_clips.contains(&clip.id) || added.iter().any(|t| t.get("id").and_then(|v| v.as_str()) == Some(&clip.id))
        {
            continue;
        }
        let same = |a: &ClipContent, b: &ClipContent| match (a, b) {
            (ClipContent::Audio(x), ClipContent::Audio(y)) => Arc::ptr_eq(x, y),
            (ClipContent::Midi(x), ClipContent::Midi(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        let original = session
            .clips
            .iter()
            .filter(|o| o.id != clip.id && file_clips.contains(&o.id) && same(&o.content, &clip.content))
            .map(|o| o.id.clone())
            .next()
            .ok_or_else(|| {
                save_err(format!("clip '{}' is not in the session file and is not a copy of a clip that is", clip.id))
            })?;
        let mut copy = match doc.get("clip") {
            Some(Item::ArrayOfTables(entries)) => entries
                .iter()
                .find(|t| t.get("id").and_then(|v| v.as_str()).map(str::trim) == Some(original.as_str()))
                .cloned(),
            _ => None,
        }
        .ok_or_else(|| save_err(format!("clip '{original}' is not in the session file")))?;
        walk_tables_mut(&mut copy, &mut |t| {
            t.set_position(None);
            t.decor_mut().clear();
        });
        copy.insert("id", toml_edit::value(clip.id.as_str()));
        let track = &session.tracks.get(clip.track.index()).ok_or_else(|| save_err("a clip has no track".into()))?.id;
        copy.insert("track", toml_edit::value(track.as_str()));
        if (clip.length.0 - session.clips.iter().find(|o| o.id == original).map_or(0.0, |o| o.length.0)).abs() > 0.0 {
            copy.insert("length_beats", number(clip.length.0));
        }
        added.push(copy);
    }
    if !added.is_empty() {
        let Some(Item::ArrayOfTables(entries)) = doc.get_mut("clip") else {
            return Err(save_err("the file defines no [[clip]] entries to copy".into()));
        };
        for t in added {
            entries.push(t);
        }
    }

    // The new section.
    doc.remove("arrangement");
    let a = &session.arrangement;
    if !a.clips.is_empty() || !a.tempo.is_empty() {
        let mut section = Table::new();
        section.set_implicit(true);
        section.set_position(Some(position));
        let mut first = true;
        let mut entry = |t: &mut Table| {
            t.set_position(Some(position));
            t.decor_mut().set_prefix(if std::mem::take(&mut first) { prefix.as_str() } else { "\n" });
        };
        let mut clips = ArrayOfTables::new();
        for p in &a.clips {
            let (Some(clip), Some(track)) = (session.clips.get(p.clip.index()), session.tracks.get(p.track.index()))
            else {
                return Err(save_err("a placement names a clip or lane that does not exist".into()));
            };
            let mut t = Table::new();
            entry(&mut t);
            t.insert("track", toml_edit::value(track.id.as_str()));
            t.insert("clip", toml_edit::value(clip.id.as_str()));
            t.insert("start", number(p.start.0));
            t.insert("length", number(p.length.0));
            if p.offset.0 != 0.0 {
                t.insert("offset", number(p.offset.0));
            }
            clips.push(t);
        }
        let mut changes = ArrayOfTables::new();
        for c in &a.tempo {
            let mut t = Table::new();
            entry(&mut t);
            t.insert("beat", number(c.beat.0));
            if let Some(tempo) = c.tempo {
                t.insert("tempo", number(tempo.0));
            }
            if let Some(b) = c.beats_per_bar {
                t.insert("beats_per_bar", number(b));
            }
            changes.push(t);
        }
        if !clips.is_empty() {
            section.insert("clip", Item::ArrayOfTables(clips));
        }
        if !changes.is_empty() {
            section.insert("tempo_change", Item::ArrayOfTables(changes));
        }
        doc.insert("arrangement", Item::Table(section));
    }
    Ok(format!("{bom}{doc}"))
}

/// A number as the session format writes it: an integer when it is one, else a decimal.
fn number(x: f64) -> toml_edit::Item {
    if x.fract() == 0.0 && x.abs() < 1e15 { toml_edit::value(x as i64) } else { toml_edit::value(x) }
}

/// Calls `f` on `table` and every table nested in it (standard tables and arrays of tables).
fn walk_tables(table: &toml_edit::Table, f: &mut impl FnMut(&toml_edit::Table)) {
    f(table);
    for (_, item) in table.iter() {
        match item {
            toml_edit::Item::Table(t) => walk_tables(t, f),
            toml_edit::Item::ArrayOfTables(a) => a.iter().for_each(|t| walk_tables(t, f)),
            _ => {}
        }
    }
}

/// [`walk_tables`], mutably.
fn walk_tables_mut(table: &mut toml_edit::Table, f: &mut impl FnMut(&mut toml_edit::Table)) {
    f(table);
    for (_, item) in table.iter_mut() {
        match item {
            toml_edit::Item::Table(t) => walk_tables_mut(t, f),
            toml_edit::Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| walk_tables_mut(t, f)),
            _ => {}
        }
    }
}

/// The folder relative paths in `file` are resolved against.
fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

// ------------------------------------------------------------------------------------------------
// The file format, as serde sees it
// ------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    session: Option<Spanned<RawSession>>,
    #[serde(default, rename = "track")]
    tracks: Vec<Spanned<RawTrack>>,
    #[serde(default, rename = "clip")]
    clips: Vec<Spanned<RawClip>>,
    #[serde(default, rename = "scene")]
    scenes: Vec<Spanned<RawScene>>,
    #[serde(default, rename = "playlist")]
    playlists: Vec<Spanned<RawPlaylist>>,
    arrangement: Option<Spanned<RawArrangement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    name: Option<String>,
    tempo: Option<Spanned<f64>>,
    beats_per_bar: Option<Spanned<f64>>,
    time_signature: Option<Spanned<String>>,
    seed: Option<Spanned<i64>>,
    quantise: Option<Spanned<String>>,
    crossfade_ms: Option<Spanned<f64>>,
    memory_budget_mb: Option<Spanned<f64>>,
    stream_head_s: Option<Spanned<f64>>,
    stream_lead_ms: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    id: Spanned<String>,
    kind: TrackKind,
    gain_db: Option<Spanned<f64>>,
    pan: Option<Spanned<f64>>,
    #[serde(default)]
    mute: bool,
    #[serde(default)]
    solo: bool,
    instrument: Option<Spanned<InstrumentSpec>>,
    #[serde(default)]
    keep_playing: bool,
    midi_out: Option<Spanned<String>>,
    midi_channel: Option<Spanned<i64>>,
}

/// `[start_beat, length_beats, key, velocity]`.
type RawNote = (f64, f64, i64, i64);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClip {
    id: Spanned<String>,
    track: Spanned<String>,
    notes: Option<Spanned<Vec<Spanned<RawNote>>>>,
    midi_file: Option<Spanned<String>>,
    midi_track: Option<Spanned<i64>>,
    file: Option<Spanned<String>>,
    length_beats: Option<Spanned<f64>>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
    start_offset_beats: Option<Spanned<f64>>,
    gain_db: Option<Spanned<f64>>,
    quantise: Option<Spanned<String>>,
    launch_mode: Option<LaunchMode>,
    velocity_amount: Option<Spanned<f64>>,
    #[serde(default)]
    legato: bool,
    follow: Option<Spanned<RawFollow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScene {
    id: Spanned<String>,
    #[serde(default)]
    clips: Vec<Spanned<String>>,
    quantise: Option<Spanned<String>>,
    empty_slots: Option<EmptySlot>,
    tempo: Option<Spanned<f64>>,
    beats_per_bar: Option<Spanned<f64>>,
    time_signature: Option<Spanned<String>>,
    follow: Option<Spanned<RawFollow>>,
}

/// `follow = { after_loops = 2, a = { ... }, b = { ... } }` on a clip or a scene.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollow {
    after_loops: Option<Spanned<i64>>,
    a: Spanned<RawFollowAction>,
    b: Option<Spanned<RawFollowAction>>,
}

/// One alternative of a follow action.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollowAction {
    next: Spanned<RawTarget>,
    chance: Option<Spanned<f64>>,
    no_repeat: Option<Spanned<bool>>,
    exclude: Option<Spanned<Vec<Spanned<String>>>>,
    only: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Where a follow action goes: a word (`"next"`, `"random"`, ...), `{ clip = "id" }` or
/// `{ scene = "id" }`.
enum RawTarget {
    Word(String),
    Clip(String),
    Scene(String),
}

/// What a follow target may be, for serde's messages.
const TARGET_EXPECTED: &str =
    "next, previous, first, last, random, repeat, stop, { clip = \"id\" } or { scene = \"id\" }";

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawTarget, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TARGET_EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Word(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawTarget, A::Error> {
                use serde::de::Error as _;
                let mut out = None;
                while let Some(key) = map.next_key::<String>()? {
                    let id: String = map.next_value()?;
                    let target = match key.as_str() {
                        "clip" => RawTarget::Clip(id),
                        "scene" => RawTarget::Scene(id),
                        other => return Err(A::Error::unknown_field(other, &["clip", "scene"])),
                    };
                    if out.replace(target).is_some() {
                        return Err(A::Error::custom("give `clip` or `scene`, not both"));
                    }
                }
                out.ok_or_else(|| A::Error::custom(format!("an empty table; expected {TARGET_EXPECTED}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[playlist]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaylist {
    id: Spanned<String>,
    steps: Spanned<Vec<Spanned<RawStep>>>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
}

/// A playlist step: `"scene-id"` or `{ scene = "scene-id", repeat = 2 }`.
struct RawStep {
    scene: String,
    repeat: Option<i64>,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawStep, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawStep;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scene id or { scene = \"id\", repeat = N }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStep, E> {
                Ok(RawStep { scene: v.to_string(), repeat: None })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawStep, A::Error> {
                use serde::de::Error as _;
                let (mut scene, mut repeat) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "scene" if scene.is_none() => scene = Some(map.next_value::<String>()?),
                        "repeat" if repeat.is_none() => repeat = Some(map.next_value::<i64>()?),
                        "scene" | "repeat" => {
                            return Err(A::Error::duplicate_field(if key == "scene" { "scene" } else { "repeat" }));
                        }
                        other => return Err(A::Error::unknown_field(other, &["scene", "repeat"])),
                    }
                }
                let scene = scene.ok_or_else(|| A::Error::missing_field("scene"))?;
                Ok(RawStep { scene, repeat })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[arrangement]`: `[[arrangement.clip]]` and `[[arrangement.tempo_change]]` entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArrangement {
    #[serde(default, rename = "clip")]
    clips: Vec<Spanned<RawPlacement>>,
    #[serde(default, rename = "tempo_change")]
    tempo_changes: Vec<Spanned<RawTempoChange>>,
}

/// `[[arrangement.clip]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    clip: Spanned<String>,
    track: Option<Spanned<String>>,
    start: Spanned<f64>,
    length: Option<Spanned<f64>>,
    offset: Option<Spanned<f64>>,
}

/// `[[arrangement.tempo_change]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTempoChange {
    beat: Spanned<f64>,
    tempo: Option<Spanned<f64>>,
    beats_per_bar: Option<Spanned<f64>>,
    time_signature: Option<Spanned<String>>,
}

// ------------------------------------------------------------------------------------------------
// Building the session, with checks
// ------------------------------------------------------------------------------------------------

/// Default tempo when `[session]` gives none.
pub const DEFAULT_TEMPO: f64 = 120.0;
/// Default declicking crossfade in milliseconds.
pub const DEFAULT_CROSSFADE_MS: f64 = 5.0;
/// Lowest gain (track or clip) a session file may set, in dB.
pub const MIN_GAIN_DB: f64 = -96.0;
/// Highest gain (track or clip) a session file may set, in dB.
pub const MAX_GAIN_DB: f64 = 24.0;
/// Longest declicking crossfade, in milliseconds.
pub const MAX_CROSSFADE_MS: f64 = 1000.0;
/// Longest clip, in beats.
pub const MAX_CLIP_BEATS: f64 = 100_000.0;
/// Most passes before a follow-action decision, and most repeats of a playlist step.
pub const MAX_FOLLOW_LOOPS: u32 = 10_000;
/// Latest beat on the arrangement (about 14 hours at 120 BPM), and its longest placement.
pub const MAX_ARRANGEMENT_BEAT: f64 = 100_000.0;

/// Whose follow actions are being read.
#[derive(Clone, Copy)]
enum Owner {
    Clip(ClipId),
    Scene(SceneId),
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    base_dir: PathBuf,
    options: LoadOptions,
}

/// Where a clip's content comes from.
enum Source<'r> {
    Notes(&'r Spanned<Vec<Spanned<RawNote>>>),
    MidiFile(&'r Spanned<String>),
    Audio(&'r Spanned<String>),
}

impl Ctx<'_> {
    fn err(&self, span: &Range<usize>, kind: SessionErrorKind) -> SessionError {
        let (line, column) = line_col(self.text, span.start);
        SessionError { file: self.file.to_path_buf(), line: Some(line), column: Some(column), kind: Box::new(kind) }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    /// A track's `midi_out` and `midi_channel` (1..=16 in the file, 0..=15 in the model).
    fn midi_out_route(&self, id: &str, t: &RawTrack) -> Result<Option<MidiOutRoute>, SessionError> {
        let misplaced = |span: &Range<usize>, why: String| self.err(span, SessionErrorKind::Misplaced(why));
        let Some(port) = &t.midi_out else {
            return match &t.midi_channel {
                Some(ch) => Err(misplaced(
                    &ch.span(),
                    format!("track '{id}': midi_channel needs midi_out = \"PORT\" (the output it applies to)"),
                )),
                None => Ok(None),
            };
        };
        if t.kind == TrackKind::Audio {
            return Err(misplaced(
                &port.span(),
                format!("track '{id}': an audio track sends no MIDI; remove `midi_out` or make it kind = \"midi\""),
            ));
        }
        if port.get_ref().trim().is_empty() {
            return Err(misplaced(&port.span(), format!("track '{id}': midi_out needs a port name")));
        }
        let channel = match &t.midi_channel {
            None => None,
            Some(ch) if (1..=16).contains(ch.get_ref()) => Some((*ch.get_ref() - 1) as u8),
            Some(ch) => {
                return Err(self.err(
                    &ch.span(),
                    SessionErrorKind::OutOfRange {
                        what: format!("track '{id}': midi_channel"),
                        value: ch.get_ref().to_string(),
                        expected: "a MIDI channel 1..=16".into(),
                    },
                ));
            }
        };
        Ok(Some(MidiOutRoute { port: port.get_ref().clone(), channel }))
    }

    fn range(
        &self,
        v: &Spanned<f64>,
        what: impl FnOnce() -> String,
        ok: impl FnOnce(f64) -> bool,
        expected: &str,
    ) -> Result<f64, SessionError> {
        let x = *v.get_ref();
        if x.is_finite() && ok(x) {
            Ok(x)
        } else {
            Err(self.err(
                &v.span(),
                SessionErrorKind::OutOfRange {
                    what: what(),
                    value: v.get_ref().to_string(),
                    expected: expected.into(),
                },
            ))
        }
    }

    fn quantise(
        &self,
        q: Option<&Spanned<String>>,
        what: impl FnOnce() -> String,
        global_allowed: bool,
        default: Quantise,
    ) -> Result<Quantise, SessionError> {
        let Some(q) = q else { return Ok(default) };
        match Quantise::parse(q.get_ref()) {
            Some(Quantise::Global) if !global_allowed => Err(self.err(
                &q.span(),
                SessionErrorKind::BadQuantise { what: what(), value: q.get_ref().clone(), global_allowed },
            )),
            Some(parsed) => Ok(parsed),
            None => Err(self.err(
                &q.span(),
                SessionErrorKind::BadQuantise { what: what(), value: q.get_ref().clone(), global_allowed },
            )),
        }
    }

    fn id(
        &self,
        id: &Spanned<String>,
        kind: &'static str,
        seen: &mut HashMap<String, usize>,
    ) -> Result<String, SessionError> {
        let name = id.get_ref().trim();
        if name.is_empty() {
            return Err(self.err(&id.span(), SessionErrorKind::EmptyId { kind }));
        }
        let line = self.line(&id.span());
        if let Some(&first_line) = seen.get(name) {
            return Err(self.err(&id.span(), SessionErrorKind::DuplicateId { kind, id: name.to_string(), first_line }));
        }
        seen.insert(name.to_string(), line);
        Ok(name.to_string())
    }

    fn gain(&self, v: Option<&Spanned<f64>>, owner: impl Fn() -> String) -> Result<f64, SessionError> {
        match v {
            None => Ok(0.0),
            Some(v) => self.range(
                v,
                || format!("{}gain_db", owner()),
                |x| (MIN_GAIN_DB..=MAX_GAIN_DB).contains(&x),
                &format!("between {MIN_GAIN_DB} and +{MAX_GAIN_DB} dB"),
            ),
        }
    }

    fn build(&self, raw: RawFile) -> Result<Session, SessionError> {
        let default_name =
            self.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "Untitled".into());
        let mut session = Session::new(default_name, Bpm(DEFAULT_TEMPO));
        session.crossfade_ms = DEFAULT_CROSSFADE_MS;
        if let Some(s) = &raw.session {
            self.session_settings(s.get_ref(), &mut session)?;
        }
        if let Some(mb) = self.options.memory_budget_mb {
            session.streaming.memory_budget_mb = Some(mb);
        }

        // Tracks.
        let mut track_ids = HashMap::new();
        for t in &raw.tracks {
            let t = t.get_ref();
            let id = self.id(&t.id, "track", &mut track_ids)?;
            let owner = || format!("track '{id}': ");
            let gain_db = self.gain(t.gain_db.as_ref(), owner)?;
            let pan = match &t.pan {
                None => 0.0,
                Some(p) => self.range(
                    p,
                    || format!("track '{id}': pan"),
                    |x| (-1.0..=1.0).contains(&x),
                    "between -1 (left) and 1 (right)",
                )?,
            };
            if let (Some(inst), TrackKind::Audio) = (&t.instrument, t.kind) {
                return Err(self.err(
                    &inst.span(),
                    SessionErrorKind::Misplaced(format!(
                        "track '{id}': an audio track has no instrument; remove `instrument` or make it kind = \"midi\""
                    )),
                ));
            }
            if let Some(inst) = &t.instrument {
                inst.get_ref().validate().map_err(|problem| {
                    self.err(&inst.span(), SessionErrorKind::BadInstrument { track: id.clone(), problem })
                })?;
            }
            let midi_out = self.midi_out_route(&id, t)?;
            let mut track = Track::new(id, t.kind);
            track.gain_db = gain_db;
            track.pan = pan;
            track.mute = t.mute;
            track.solo = t.solo;
            track.instrument = t.instrument.as_ref().map(|i| i.get_ref().clone());
            track.keep_playing = t.keep_playing;
            track.midi_out = midi_out;
            session.add_track(track);
        }

        // Clips.
        let mut clip_ids = HashMap::new();
        // Under a memory budget, audio files are only probed here (`stream::prepare` decodes them).
        let defer = session.streaming.memory_budget_mb.is_some();
        let mut audio_cache = if defer { HashMap::new() } else { self.prefetch_audio(&raw.clips) };
        let mut deferred = HashMap::new();
        let mut midi_cache: HashMap<(PathBuf, Option<usize>), Arc<MidiData>> = HashMap::new();
        for c in &raw.clips {
            let header = c.span();
            let c = c.get_ref();
            let id = self.id(&c.id, "clip", &mut clip_ids)?;
            let clip = self.clip(&id, &header, c, &session, &mut audio_cache, &mut deferred, &mut midi_cache)?;
            session.add_clip(clip);
        }

        // Scenes.
        let mut scene_ids = HashMap::new();
        for s in &raw.scenes {
            let s = s.get_ref();
            let id = self.id(&s.id, "scene", &mut scene_ids)?;
            let mut clips: Vec<ClipId> = Vec::with_capacity(s.clips.len());
            let mut on_track: HashMap<TrackId, ClipId> = HashMap::new();
            for name in &s.clips {
                let Some(cid) = session.clip_by_name(name.get_ref().trim()) else {
                    return Err(self.err(
                        &name.span(),
                        SessionErrorKind::UnknownClip {
                            scene: id.clone(),
                            clip: name.get_ref().clone(),
                            known: known_list(session.clips.iter().map(|c| c.id.as_str())),
                        },
                    ));
                };
                let track = session.clip(cid).track;
                if let Some(&other) = on_track.get(&track) {
                    let problem = if other == cid {
                        format!("clip '{}' is listed twice", session.clip(cid).id)
                    } else {
                        format!(
                            "clips '{}' and '{}' are both on track '{}'; a scene holds at most one clip per track",
                            session.clip(other).id,
                            session.clip(cid).id,
                            session.track(track).id
                        )
                    };
                    return Err(self.err(&name.span(), SessionErrorKind::SceneClash { scene: id.clone(), problem }));
                }
                on_track.insert(track, cid);
                clips.push(cid);
            }
            let quantise =
                self.quantise(s.quantise.as_ref(), || format!("scene '{id}': quantise"), true, Quantise::Global)?;
            let tempo = match &s.tempo {
                None => None,
                Some(t) => Some(Bpm(self.tempo(t, || format!("scene '{id}': tempo"))?)),
            };
            let beats_per_bar =
                self.bar_length(s.beats_per_bar.as_ref(), s.time_signature.as_ref(), || format!("scene '{id}': "))?;
            let mut scene = Scene::new(id, clips);
            scene.quantise = quantise;
            scene.empty_slots = s.empty_slots.unwrap_or_default();
            scene.tempo = tempo;
            scene.beats_per_bar = beats_per_bar;
            session.add_scene(scene);
        }

        // Follow actions, once every clip and scene they may name exists.
        for (i, c) in raw.clips.iter().enumerate() {
            if let Some(f) = &c.get_ref().follow {
                session.clips[i].follow = Some(self.follow(f, Owner::Clip(ClipId(i as u32)), &session)?);
            }
        }
        for (i, s) in raw.scenes.iter().enumerate() {
            if let Some(f) = &s.get_ref().follow {
                session.scenes[i].follow = Some(self.follow(f, Owner::Scene(SceneId(i as u32)), &session)?);
            }
        }

        // Playlists.
        let mut playlist_ids = HashMap::new();
        for p in &raw.playlists {
            let p = p.get_ref();
            let id = self.id(&p.id, "playlist", &mut playlist_ids)?;
            let playlist = self.playlist(id, p, &session)?;
            session.playlists.push(playlist);
        }

        // The arrangement.
        if let Some(a) = &raw.arrangement {
            session.arrangement = self.arrangement(a.get_ref(), &session)?;
        }
        Ok(session)
    }

    /// A tempo in BPM, checked against the range Link accepts.
    fn tempo(&self, t: &Spanned<f64>, what: impl FnOnce() -> String) -> Result<f64, SessionError> {
        self.range(
            t,
            what,
            |x| (Bpm::MIN..=Bpm::MAX).contains(&x),
            &format!("between {} and {} BPM", Bpm::MIN, Bpm::MAX),
        )
    }

    /// Beats per bar from `beats_per_bar` or `time_signature` (at most one of them); `prefix`
    /// names the owner in messages (`""` for the session, `"scene 'x': "`).
    fn bar_length(
        &self,
        beats_per_bar: Option<&Spanned<f64>>,
        time_signature: Option<&Spanned<String>>,
        prefix: impl Fn() -> String,
    ) -> Result<Option<f64>, SessionError> {
        match (beats_per_bar, time_signature) {
            (Some(_), Some(ts)) => Err(self.err(
                &ts.span(),
                SessionErrorKind::Misplaced(format!(
                    "{}give either beats_per_bar or time_signature, not both",
                    prefix()
                )),
            )),
            (Some(b), None) => Ok(Some(self.range(
                b,
                || format!("{}beats_per_bar", prefix()),
                |x| x > 0.0 && x <= 64.0,
                "greater than 0 and at most 64",
            )?)),
            (None, Some(ts)) => parse_time_signature(ts.get_ref()).map(Some).ok_or_else(|| {
                self.err(&ts.span(), SessionErrorKind::BadTimeSignature { value: ts.get_ref().clone() })
            }),
            (None, None) => Ok(None),
        }
    }

    /// A clip's or scene's follow actions, with every id resolved and every constraint checked.
    fn follow(&self, raw: &Spanned<RawFollow>, owner: Owner, session: &Session) -> Result<FollowActions, SessionError> {
        let owner_name = match owner {
            Owner::Clip(c) => format!("clip '{}'", session.clip(c).id),
            Owner::Scene(s) => format!("scene '{}'", session.scene(s).id),
        };
        let fail = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Follow { owner: owner_name.clone(), problem })
        };
        let f = raw.get_ref();
        let after_loops = match &f.after_loops {
            None => 1,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if (1..=MAX_FOLLOW_LOOPS).contains(&v) => v,
                _ => {
                    return Err(self.err(
                        &n.span(),
                        SessionErrorKind::OutOfRange {
                            what: format!("{owner_name}: follow after_loops"),
                            value: n.get_ref().to_string(),
                            expected: format!("a whole number from 1 to {MAX_FOLLOW_LOOPS}"),
                        },
                    ));
                }
            },
        };
        // The candidates `next`, `previous`, `first`, `last` and `random` choose among, in order.
        let (universe, noun): (Vec<u32>, &str) = match owner {
            Owner::Clip(c) => (session.clips_of_track(session.clip(c).track).iter().map(|c| c.0).collect(), "clip"),
            Owner::Scene(_) => ((0..session.scenes.len() as u32).collect(), "scene"),
        };
        let own = match owner {
            Owner::Clip(c) => c.0,
            Owner::Scene(s) => s.0,
        };
        let resolve = |name: &Spanned<String>| -> Result<u32, SessionError> {
            let n = name.get_ref().trim();
            match owner {
                Owner::Clip(c) => {
                    let track = session.clip(c).track;
                    match session.clip_by_name(n) {
                        Some(id) if session.clip(id).track == track => Ok(id.0),
                        Some(id) => Err(fail(
                            &name.span(),
                            format!(
                                "clip '{n}' is on track '{}', not '{}'; a clip's follow action chooses among the \
                                 clips of its own track ({})",
                                session.track(session.clip(id).track).id,
                                session.track(track).id,
                                known_list(session.clips_of_track(track).iter().map(|c| session.clip(*c).id.as_str()))
                            ),
                        )),
                        None => Err(fail(
                            &name.span(),
                            format!(
                                "clip '{n}' does not exist (clips of track '{}': {})",
                                session.track(track).id,
                                known_list(session.clips_of_track(track).iter().map(|c| session.clip(*c).id.as_str()))
                            ),
                        )),
                    }
                }
                Owner::Scene(_) => session.scene_by_name(n).map(|s| s.0).ok_or_else(|| {
                    fail(
                        &name.span(),
                        format!(
                            "scene '{n}' does not exist (scenes: {})",
                            known_list(session.scenes.iter().map(|s| s.id.as_str()))
                        ),
                    )
                }),
            }
        };
        let action = |raw: &Spanned<RawFollowAction>, chance: f64| -> Result<FollowAction, SessionError> {
            let a = raw.get_ref();
            let next = match a.next.get_ref() {
                RawTarget::Word(w) => match w.trim().to_ascii_lowercase().as_str() {
                    "next" => FollowTarget::Next,
                    "previous" => FollowTarget::Previous,
                    "first" => FollowTarget::First,
                    "last" => FollowTarget::Last,
                    "random" => FollowTarget::Random,
                    "repeat" => FollowTarget::Repeat,
                    "stop" => FollowTarget::Stop,
                    _ => {
                        return Err(fail(
                            &a.next.span(),
                            format!("'{w}' is not a follow action (use {TARGET_EXPECTED})"),
                        ));
                    }
                },
                RawTarget::Clip(name) => {
                    let named = Spanned::new(a.next.span(), name.clone());
                    match owner {
                        // Among the clips of its own track, like the constraints.
                        Owner::Clip(_) => FollowTarget::Clip(ClipId(resolve(&named)?)),
                        // Any clip.
                        Owner::Scene(_) => match session.clip_by_name(name.trim()) {
                            Some(c) => FollowTarget::Clip(c),
                            None => {
                                return Err(fail(
                                    &a.next.span(),
                                    format!(
                                        "clip '{}' does not exist (clips: {})",
                                        name.trim(),
                                        known_list(session.clips.iter().map(|c| c.id.as_str()))
                                    ),
                                ));
                            }
                        },
                    }
                }
                RawTarget::Scene(name) => match session.scene_by_name(name.trim()) {
                    Some(s) => FollowTarget::Scene(s),
                    None => {
                        return Err(fail(
                            &a.next.span(),
                            format!(
                                "scene '{}' does not exist (scenes: {})",
                                name.trim(),
                                known_list(session.scenes.iter().map(|s| s.id.as_str()))
                            ),
                        ));
                    }
                },
            };
            let chooses = matches!(
                next,
                FollowTarget::Next
                    | FollowTarget::Previous
                    | FollowTarget::First
                    | FollowTarget::Last
                    | FollowTarget::Random
            );
            let mut constraints = FollowConstraints::default();
            for (key, span) in [
                ("no_repeat", a.no_repeat.as_ref().map(|v| v.span())),
                ("exclude", a.exclude.as_ref().map(|v| v.span())),
                ("only", a.only.as_ref().map(|v| v.span())),
            ] {
                if let (Some(span), false) = (span, chooses) {
                    return Err(fail(
                        &span,
                        format!("`{key}` only applies when next is next, previous, first, last or random"),
                    ));
                }
            }
            constraints.no_repeat = a.no_repeat.as_ref().is_some_and(|v| *v.get_ref());
            for (list, out) in [(&a.exclude, &mut constraints.exclude), (&a.only, &mut constraints.only)] {
                for name in list.iter().flat_map(|l| l.get_ref()) {
                    let id = resolve(name)?;
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
            if chooses {
                let left = universe
                    .iter()
                    .filter(|c| constraints.only.is_empty() || constraints.only.contains(c))
                    .filter(|c| !constraints.exclude.contains(c))
                    .filter(|c| !(constraints.no_repeat && **c == own))
                    .count();
                if left == 0 {
                    let span =
                        [&a.only, &a.exclude].into_iter().flatten().map(|l| l.span()).next().unwrap_or(raw.span());
                    return Err(fail(&span, format!("the constraints leave no {noun} to choose")));
                }
            }
            Ok(FollowAction { next, chance, constraints })
        };
        let chance = |c: &Option<Spanned<f64>>, which: &str| -> Result<Option<f64>, SessionError> {
            c.as_ref()
                .map(|c| {
                    self.range(
                        c,
                        || format!("{owner_name}: follow {which} chance"),
                        |x| (0.0..=1.0).contains(&x),
                        "between 0 and 1",
                    )
                })
                .transpose()
        };
        let ca = chance(&f.a.get_ref().chance, "a")?;
        let cb = match &f.b {
            None => None,
            Some(b) => chance(&b.get_ref().chance, "b")?,
        };
        // A chance left out takes what the other leaves of 1.
        let (ca, cb) = match (&f.b, ca, cb) {
            (None, a, _) => (a.unwrap_or(1.0), 0.0),
            (Some(_), Some(a), Some(b)) => (a, b),
            (Some(_), Some(a), None) => (a, 1.0 - a),
            (Some(_), None, Some(b)) => (1.0 - b, b),
            (Some(_), None, None) => (0.5, 0.5),
        };
        let a = action(&f.a, ca)?;
        let b = f.b.as_ref().map(|b| action(b, cb)).transpose()?;
        Ok(FollowActions { after_loops, a, b })
    }

    /// A playlist, with its scenes resolved.
    fn playlist(&self, id: String, p: &RawPlaylist, session: &Session) -> Result<Playlist, SessionError> {
        let fail = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Playlist { playlist: id.clone(), problem })
        };
        if p.steps.get_ref().is_empty() {
            return Err(fail(
                &p.steps.span(),
                "has no steps; list scenes, e.g. steps = [\"intro\", { scene = \"verse\", repeat = 2 }]".into(),
            ));
        }
        let mut steps = Vec::with_capacity(p.steps.get_ref().len());
        for (i, step) in p.steps.get_ref().iter().enumerate() {
            let raw = step.get_ref();
            let name = raw.scene.trim();
            let Some(scene) = session.scene_by_name(name) else {
                return Err(fail(
                    &step.span(),
                    format!(
                        "step {}: scene '{name}' does not exist (scenes: {})",
                        i + 1,
                        known_list(session.scenes.iter().map(|s| s.id.as_str()))
                    ),
                ));
            };
            let repeat = match raw.repeat {
                None => 1,
                Some(n) => match u32::try_from(n) {
                    Ok(v) if (1..=MAX_FOLLOW_LOOPS).contains(&v) => v,
                    _ => {
                        return Err(self.err(
                            &step.span(),
                            SessionErrorKind::OutOfRange {
                                what: format!("playlist '{id}': step {} repeat", i + 1),
                                value: n.to_string(),
                                expected: format!("a whole number from 1 to {MAX_FOLLOW_LOOPS}"),
                            },
                        ));
                    }
                },
            };
            steps.push(PlaylistStep { scene, repeat });
        }
        Ok(Playlist { id, steps, looping: p.looping.unwrap_or(false) })
    }

    /// The arrangement: placements checked against their lanes, tempo changes in beat order.
    fn arrangement(&self, a: &RawArrangement, session: &Session) -> Result<Arrangement, SessionError> {
        let fail = |span: &Range<usize>, problem: String| self.err(span, SessionErrorKind::Arrangement { problem });
        let mut out = Arrangement::default();
        for p in &a.clips {
            let p = p.get_ref();
            let name = p.clip.get_ref().trim();
            let Some(clip) = session.clip_by_name(name) else {
                return Err(fail(
                    &p.clip.span(),
                    format!(
                        "clip '{name}' does not exist (clips: {})",
                        known_list(session.clips.iter().map(|c| c.id.as_str()))
                    ),
                ));
            };
            let c = session.clip(clip);
            let (track, track_span) = match &p.track {
                None => (c.track, p.clip.span()),
                Some(t) => match session.track_by_name(t.get_ref().trim()) {
                    Some(id) => (id, t.span()),
                    None => {
                        return Err(fail(
                            &t.span(),
                            format!(
                                "track '{}' does not exist (tracks: {})",
                                t.get_ref().trim(),
                                known_list(session.tracks.iter().map(|t| t.id.as_str()))
                            ),
                        ));
                    }
                },
            };
            let lane = session.track(track);
            if clip_kind(c) != lane.kind {
                let article = |k: TrackKind| match k {
                    TrackKind::Audio => "an audio",
                    TrackKind::Midi => "a MIDI",
                };
                return Err(fail(
                    &track_span,
                    format!(
                        "clip '{}' is {} clip and cannot go on lane '{}', {} track",
                        c.id,
                        article(clip_kind(c)),
                        lane.id,
                        article(lane.kind)
                    ),
                ));
            }
            let start = self.range(
                &p.start,
                || format!("arrangement clip '{}': start", c.id),
                |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                &format!("between 0 and {MAX_ARRANGEMENT_BEAT} beats"),
            )?;
            let length = match &p.length {
                None => c.length.0,
                Some(l) => self.range(
                    l,
                    || format!("arrangement clip '{}': length", c.id),
                    |x| x > 0.0 && x <= MAX_ARRANGEMENT_BEAT,
                    &format!("greater than 0 and at most {MAX_ARRANGEMENT_BEAT} beats"),
                )?,
            };
            let offset = match &p.offset {
                None => 0.0,
                Some(o) => self.range(
                    o,
                    || format!("arrangement clip '{}': offset", c.id),
                    |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                    &format!("between 0 and {MAX_ARRANGEMENT_BEAT} beats"),
                )?,
            };
            out.clips.push(Placement {
                track,
                clip,
                start: Beats(start),
                length: Beats(length),
                offset: Beats(offset),
            });
        }
        let mut seen: Vec<(f64, usize)> = Vec::new();
        for t in &a.tempo_changes {
            let header = t.span();
            let t = t.get_ref();
            let beat = self.range(
                &t.beat,
                || "arrangement tempo_change beat".into(),
                |x| (0.0..=MAX_ARRANGEMENT_BEAT).contains(&x),
                &format!("between 0 and {MAX_ARRANGEMENT_BEAT}"),
            )?;
            if let Some(&(_, line)) = seen.iter().find(|(b, _)| *b == beat) {
                return Err(fail(
                    &t.beat.span(),
                    format!("two tempo changes at beat {beat} (the other is on line {line}); merge them"),
                ));
            }
            seen.push((beat, self.line(&t.beat.span())));
            let tempo = match &t.tempo {
                None => None,
                Some(x) => Some(Bpm(self.tempo(x, || format!("arrangement tempo_change at beat {beat}: tempo"))?)),
            };
            let beats_per_bar = self.bar_length(t.beats_per_bar.as_ref(), t.time_signature.as_ref(), || {
                format!("arrangement tempo_change at beat {beat}: ")
            })?;
            if tempo.is_none() && beats_per_bar.is_none() {
                return Err(fail(
                    &header,
                    format!(
                        "the tempo change at beat {beat} changes nothing; give tempo, time_signature or beats_per_bar"
                    ),
                ));
            }
            out.tempo.push(TempoChange { beat: Beats(beat), tempo, beats_per_bar });
        }
        out.tempo.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0));
        Ok(out)
    }

    fn session_settings(&self, s: &RawSession, session: &mut Session) -> Result<(), SessionError> {
        if let Some(name) = &s.name {
            session.name = name.clone();
        }
        if let Some(t) = &s.tempo {
            session.tempo = Bpm(self.tempo(t, || "tempo".into())?);
        }
        if let Some(b) = self.bar_length(s.beats_per_bar.as_ref(), s.time_signature.as_ref(), String::new)? {
            session.beats_per_bar = b;
        }
        if let Some(seed) = &s.seed {
            if *seed.get_ref() < 0 {
                return Err(self.err(
                    &seed.span(),
                    SessionErrorKind::OutOfRange {
                        what: "seed".into(),
                        value: seed.get_ref().to_string(),
                        expected: "0 or more".into(),
                    },
                ));
            }
            session.seed = *seed.get_ref() as u64;
        }
        session.quantise = self.quantise(s.quantise.as_ref(), || "session quantise".into(), false, Quantise::Bar)?;
        if let Some(x) = &s.crossfade_ms {
            session.crossfade_ms = self.range(
                x,
                || "crossfade_ms".into(),
                |x| (0.0..=MAX_CROSSFADE_MS).contains(&x),
                &format!("between 0 and {MAX_CROSSFADE_MS} ms"),
            )?;
        }
        if let Some(x) = &s.memory_budget_mb {
            let mb = self.range(x, || "memory_budget_mb".into(), |x| x >= 0.0, "0 MiB or more")?;
            session.streaming.memory_budget_mb = Some(mb);
        }
        if let Some(x) = &s.stream_head_s {
            session.streaming.head_seconds = self.range(
                x,
                || "stream_head_s".into(),
                |x| (crate::model::audio::MIN_HEAD_SECONDS..=600.0).contains(&x),
                &format!("between {} and 600 s", crate::model::audio::MIN_HEAD_SECONDS),
            )?;
        }
        if let Some(x) = &s.stream_lead_ms {
            session.streaming.lead_ms =
                self.range(x, || "stream_lead_ms".into(), |x| (0.0..=10_000.0).contains(&x), "between 0 and 10000 ms")?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn clip(
        &self,
        id: &str,
        header: &Range<usize>,
        c: &RawClip,
        session: &Session,
        audio_cache: &mut HashMap<PathBuf, Arc<AudioData>>,
        deferred: &mut HashMap<PathBuf, Arc<DeferredAudio>>,
        midi_cache: &mut HashMap<(PathBuf, Option<usize>), Arc<MidiData>>,
    ) -> Result<Clip, SessionError> {
        let content_err = |span: &Range<usize>, problem: String| {
            self.err(span, SessionErrorKind::Content { clip: id.to_string(), problem })
        };

        // Track.
        let Some(track_id) = session.track_by_name(c.track.get_ref().trim()) else {
            return Err(self.err(
                &c.track.span(),
                SessionErrorKind::UnknownTrack {
                    clip: id.to_string(),
                    track: c.track.get_ref().clone(),
                    known: known_list(session.tracks.iter().map(|t| t.id.as_str())),
                },
            ));
        };
        let track = session.track(track_id);

        // Content source: exactly one of notes, midi_file, file.
        let mut sources: Vec<(&str, Range<usize>, Source<'_>)> = Vec::new();
        if let Some(n) = &c.notes {
            sources.push(("notes", n.span(), Source::Notes(n)));
        }
        if let Some(m) = &c.midi_file {
            sources.push(("midi_file", m.span(), Source::MidiFile(m)));
        }
        if let Some(f) = &c.file {
            sources.push(("file", f.span(), Source::Audio(f)));
        }
        sources.sort_by_key(|(_, span, _)| span.start);
        if sources.len() > 1 {
            let (first, first_span, _) = &sources[0];
            let (second, second_span, _) = &sources[1];
            return Err(content_err(
                second_span,
                format!(
                    "has both `{first}` (line {}) and `{second}`; a clip has exactly one of notes, midi_file or file",
                    self.line(first_span)
                ),
            ));
        }
        let Some((_, _, source)) = sources.pop() else {
            return Err(content_err(
                header,
                "has no content; give notes = [[start, length, key, velocity], ...], midi_file = \"x.mid\" \
                 or file = \"x.wav\""
                    .into(),
            ));
        };
        if let (Some(mt), false) = (&c.midi_track, matches!(source, Source::MidiFile(_))) {
            return Err(content_err(&mt.span(), "midi_track only applies with midi_file".into()));
        }

        // Kind check.
        let clip_kind = match source {
            Source::Audio(_) => TrackKind::Audio,
            _ => TrackKind::Midi,
        };
        if clip_kind != track.kind {
            let article = |k: TrackKind| match k {
                TrackKind::Audio => "an audio",
                TrackKind::Midi => "a MIDI",
            };
            return Err(self.err(
                &c.track.span(),
                SessionErrorKind::KindMismatch {
                    clip: id.to_string(),
                    clip_kind: article(clip_kind),
                    track: track.id.clone(),
                    track_kind: article(track.kind),
                },
            ));
        }

        // Explicit length, checked before any file is loaded.
        let length = match &c.length_beats {
            None => None,
            Some(l) => Some(self.range(
                l,
                || format!("clip '{id}': length_beats"),
                |x| x > 0.0 && x <= MAX_CLIP_BEATS,
                &format!("greater than 0 and at most {MAX_CLIP_BEATS} beats"),
            )?),
        };

        // Content.
        let mut deferred_file = None;
        let (content, natural_length) = match source {
            Source::Notes(notes) => {
                let midi = self.notes(id, notes)?;
                let end = midi_end(&midi);
                (ClipContent::Midi(Arc::new(midi)), round_up_to_bar(end, session.beats_per_bar))
            }
            Source::MidiFile(path) => {
                let midi_track = match &c.midi_track {
                    None => None,
                    Some(t) => match usize::try_from(*t.get_ref()) {
                        Ok(n) if n <= 65_535 => Some(n),
                        _ => {
                            return Err(self.err(
                                &t.span(),
                                SessionErrorKind::OutOfRange {
                                    what: format!("clip '{id}': midi_track"),
                                    value: t.get_ref().to_string(),
                                    expected: "a track number from 0 (the file's first track)".into(),
                                },
                            ));
                        }
                    },
                };
                let resolved = self.base_dir.join(path.get_ref());
                let key = (resolved.clone(), midi_track);
                let midi = if let Some(m) = midi_cache.get(&key) {
                    m.clone()
                } else {
                    let bytes = self.read_referenced(id, "MIDI file", path, &resolved)?;
                    let midi = decode_smf(&bytes, midi_track).map_err(|problem| {
                        let span = match (&c.midi_track, problem.starts_with("midi_track")) {
                            (Some(t), true) => t.span(),
                            _ => path.span(),
                        };
                        self.err(
                            &span,
                            SessionErrorKind::BadMidi {
                                clip: id.to_string(),
                                path: PathBuf::from(path.get_ref()),
                                problem,
                            },
                        )
                    })?;
                    let midi = Arc::new(midi);
                    midi_cache.insert(key, midi.clone());
                    midi
                };
                let end = midi_end(&midi);
                (ClipContent::Midi(midi), round_up_to_bar(end, session.beats_per_bar))
            }
            Source::Audio(path) => {
                let resolved = self.base_dir.join(path.get_ref());
                let audio = if let Some(a) = audio_cache.get(&resolved) {
                    a.clone()
                } else if session.streaming.memory_budget_mb.is_some() {
                    let (audio, file) = self.defer_audio(id, path, &resolved)?;
                    deferred.insert(resolved.clone(), file);
                    audio_cache.insert(resolved.clone(), audio.clone());
                    audio
                } else {
                    let bytes = self.read_referenced(id, "audio file", path, &resolved)?;
                    let audio = decode_wav(&bytes).map_err(|problem| {
                        self.err(
                            &path.span(),
                            SessionErrorKind::BadAudio {
                                clip: id.to_string(),
                                path: PathBuf::from(path.get_ref()),
                                problem,
                            },
                        )
                    })?;
                    let audio = Arc::new(audio);
                    audio_cache.insert(resolved.clone(), audio.clone());
                    audio
                };
                deferred_file = deferred.get(&resolved).cloned();
                let frames = deferred_file.as_ref().map_or(audio.frames() as u64, |d| d.header.frames);
                let seconds = frames as f64 / f64::from(audio.sample_rate);
                (ClipContent::Audio(audio), seconds * session.tempo.0 / 60.0)
            }
        };
        let length = match length {
            Some(l) => l,
            None if natural_length > 0.0 && natural_length <= MAX_CLIP_BEATS => natural_length,
            None => {
                return Err(content_err(
                    header,
                    format!(
                        "its content is {natural_length} beats long, more than the {MAX_CLIP_BEATS} a clip may \
                         have; set length_beats"
                    ),
                ));
            }
        };

        let start_offset = match &c.start_offset_beats {
            None => 0.0,
            Some(s) => self.range(
                s,
                || format!("clip '{id}': start_offset_beats"),
                |x| x >= 0.0 && x < length,
                &format!("0 or more and less than the clip's length ({length} beats)"),
            )?,
        };
        let gain_db = self.gain(c.gain_db.as_ref(), || format!("clip '{id}': "))?;
        let quantise =
            self.quantise(c.quantise.as_ref(), || format!("clip '{id}': quantise"), true, Quantise::Global)?;
        let velocity_amount = match &c.velocity_amount {
            None => 0.0,
            Some(v) => self.range(
                v,
                || format!("clip '{id}': velocity_amount"),
                |x| (0.0..=1.0).contains(&x),
                "between 0 and 1",
            )?,
        };
        // Built from `Clip::new` so settings the format does not have keep the model's defaults.
        let mut clip = Clip::new(id, track_id, content, Beats(length));
        clip.looping = c.looping.unwrap_or(true);
        clip.start_offset = Beats(start_offset);
        clip.gain_db = gain_db;
        clip.quantise = quantise;
        clip.launch_mode = c.launch_mode.unwrap_or_default();
        clip.velocity_amount = velocity_amount;
        clip.legato = c.legato;
        clip.deferred = deferred_file;
        Ok(clip)
    }

    /// Reads and decodes every distinct audio file the clips reference, on all cores. Files that
    /// fail are left out: the clip pass reads them again and reports the error with its line.
    fn prefetch_audio(&self, clips: &[Spanned<RawClip>]) -> HashMap<PathBuf, Arc<AudioData>> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for c in clips {
            if let Some(f) = &c.get_ref().file {
                let p = self.base_dir.join(f.get_ref());
                if !f.get_ref().trim().is_empty() && !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(paths.len()).max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let decoded: Vec<(PathBuf, Arc<AudioData>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(p) = paths.get(i) else { break };
                            if let Ok(a) = read_wav_file(p) {
                                out.push((p.clone(), Arc::new(a)));
                            }
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        });
        decoded.into_iter().collect()
    }

    /// Probes the audio file a clip references without decoding it: its header is read and checked
    /// (the same checks as a full decode makes before reading samples). Returns the clip content
    /// until [`crate::stream::prepare`] decodes the file (no frames, the file's rate) and the file.
    fn defer_audio(
        &self,
        clip: &str,
        path: &Spanned<String>,
        resolved: &Path,
    ) -> Result<(Arc<AudioData>, Arc<DeferredAudio>), SessionError> {
        if path.get_ref().trim().is_empty() {
            return Err(self.err(
                &path.span(),
                SessionErrorKind::Content { clip: clip.to_string(), problem: "the audio file path is empty".into() },
            ));
        }
        let file = std::fs::File::open(resolved).map_err(|e| {
            self.err(
                &path.span(),
                SessionErrorKind::MissingFile {
                    clip: clip.to_string(),
                    what: "audio file",
                    path: PathBuf::from(path.get_ref()),
                    resolved: resolved.to_path_buf(),
                    reason: e.to_string(),
                },
            )
        })?;
        let size = file.metadata().map(|m| m.len() as usize).unwrap_or(usize::MAX);
        let header = crate::media::wav::WavFrames::new(std::io::BufReader::new(file), size)
            .map_err(|problem| {
                self.err(
                    &path.span(),
                    SessionErrorKind::BadAudio { clip: clip.to_string(), path: PathBuf::from(path.get_ref()), problem },
                )
            })?
            .header();
        let (line, column) = line_col(self.text, path.span().start);
        let origin = format!("{}:{line}:{column}: clip '{clip}': audio file '{}'", self.file.display(), path.get_ref());
        let audio = Arc::new(AudioData { sample_rate: header.sample_rate, left: Vec::new(), right: Vec::new() });
        Ok((audio, Arc::new(DeferredAudio { path: resolved.to_path_buf(), header, origin })))
    }

    /// Reads a file a clip references, with a clear error if it is missing.
    fn read_referenced(
        &self,
        clip: &str,
        what: &'static str,
        path: &Spanned<String>,
        resolved: &Path,
    ) -> Result<Vec<u8>, SessionError> {
        if path.get_ref().trim().is_empty() {
            return Err(self.err(
                &path.span(),
                SessionErrorKind::Content { clip: clip.to_string(), problem: format!("the {what} path is empty") },
            ));
        }
        std::fs::read(resolved).map_err(|e| {
            self.err(
                &path.span(),
                SessionErrorKind::MissingFile {
                    clip: clip.to_string(),
                    what,
                    path: PathBuf::from(path.get_ref()),
                    resolved: resolved.to_path_buf(),
                    reason: e.to_string(),
                },
            )
        })
    }

    fn notes(&self, id: &str, notes: &Spanned<Vec<Spanned<RawNote>>>) -> Result<MidiData, SessionError> {
        let mut checked = Vec::with_capacity(notes.get_ref().len());
        for (i, n) in notes.get_ref().iter().enumerate() {
            let &(start, length, key, velocity) = n.get_ref();
            let nth = i + 1;
            let bad = |what: &str, value: String, expected: &str| {
                self.err(
                    &n.span(),
                    SessionErrorKind::OutOfRange {
                        what: format!("clip '{id}': note {nth} {what}"),
                        value,
                        expected: expected.into(),
                    },
                )
            };
            if !(start.is_finite() && (0.0..=MAX_CLIP_BEATS).contains(&start)) {
                return Err(bad("start beat", start.to_string(), &format!("between 0 and {MAX_CLIP_BEATS}")));
            }
            if !(length.is_finite() && length > 0.0 && length <= MAX_CLIP_BEATS) {
                return Err(bad(
                    "length",
                    length.to_string(),
                    &format!("greater than 0 and at most {MAX_CLIP_BEATS} beats"),
                ));
            }
            if !(0..=127).contains(&key) {
                return Err(bad("key", key.to_string(), "between 0 and 127 (60 is middle C)"));
            }
            if !(1..=127).contains(&velocity) {
                return Err(bad("velocity", velocity.to_string(), "between 1 and 127"));
            }
            checked.push((start, length, key as u8, velocity as u8));
        }
        Ok(MidiData::from_notes(&checked))
    }
}

/// The beat of the last event of a MIDI clip (0 if empty).
fn midi_end(midi: &MidiData) -> f64 {
    midi.events.iter().map(|e| e.beat.0).fold(0.0, f64::max)
}

/// `end` rounded up to a whole number of bars, at least one bar.
fn round_up_to_bar(end: f64, beats_per_bar: f64) -> f64 {
    let bars = (end / beats_per_bar - 1e-9).ceil().max(1.0);
    bars * beats_per_bar
}

/// Parses `N/D` into quarter-note beats per bar.
fn parse_time_signature(text: &str) -> Option<f64> {
    let (n, d) = text.trim().split_once('/')?;
    let n: u32 = n.trim().parse().ok()?;
    let d: u32 = d.trim().parse().ok()?;
    if n == 0 || ![1, 2, 4, 8, 16, 32].contains(&d) {
        return None;
    }
    let beats = f64::from(n) * 4.0 / f64::from(d);
    (beats <= 64.0).then_some(beats)
}

/// A short, comma-separated list of ids for messages.
pub(crate) fn known_list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return "none defined".into();
    }
    const MAX: usize = 20;
    let mut s = ids.iter().take(MAX).copied().collect::<Vec<_>>().join(", ");
    if ids.len() > MAX {
        s.push_str(&format!(", ... ({} in all)", ids.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::resample::resample;
    use crate::model::{EmptySlot, LaunchMode};
    use crate::model::{MidiEvent, MidiMsg};
    use proptest::prelude::*;

    const FILE: &str = "sets/bad.toml";

    /// A valid session with inline notes only (no files needed).
    const VALID: &str = r#"[session]
name = "Test"
tempo = 120
beats_per_bar = 4
quantise = "bar"

[[track]]
id = "drums"
kind = "midi"
instrument = { type = "drums" }

[[track]]
id = "bass"
kind = "midi"

[[track]]
id = "pad"
kind = "audio"
pan = 0.5

[[clip]]
id = "beat-a"
track = "drums"
notes = [[0, 0.25, 36, 110], [1, 0.25, 38, 100]]

[[clip]]
id = "beat-b"
track = "drums"
notes = [[0, 0.5, 36, 110]]
length_beats = 8

[[clip]]
id = "bass-a"
track = "bass"
notes = [[0, 1, 40, 100]]
quantise = "1/16"

[[scene]]
id = "verse"
clips = ["beat-a", "bass-a"]
"#;

    fn parse(text: &str) -> Result<Session, SessionError> {
        parse_session(text, Path::new(FILE))
    }

    /// 1-based line of the first occurrence of `needle` in `text`.
    fn line_of(text: &str, needle: &str) -> usize {
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in text"));
        text[..at].matches('\n').count() + 1
    }

    /// Asserts that `text` fails with an error naming `file`, on the line holding `needle`,
    /// whose message contains `phrase`.
    fn expect_err_in(result: Result<Session, SessionError>, file: &str, text: &str, needle: &str, phrase: &str) {
        let line = line_of(text, needle);
        let e = match result {
            Ok(_) => panic!("expected an error containing {phrase:?}, but the session loaded"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{file}:{line}:")), "wanted {file}:{line}: ..., got: {msg}");
        assert!(msg.contains(phrase), "wanted {phrase:?} in: {msg}");
        assert_eq!(e.line, Some(line), "{msg}");
    }

    /// `VALID` with `from` replaced by `to` must fail on the line of `needle` with `phrase`.
    fn bad(from: &str, to: &str, needle: &str, phrase: &str) {
        assert!(VALID.contains(from), "{from:?} not in VALID");
        let text = VALID.replacen(from, to, 1);
        expect_err_in(parse(&text), FILE, &text, needle, phrase);
    }

    /// A fresh, empty temporary folder for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loophole-session-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_wav<S: hound::Sample + Copy>(path: &Path, spec: hound::WavSpec, samples: &[S]) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    fn int_spec(channels: u16, bits: u16, rate: u32) -> hound::WavSpec {
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: hound::SampleFormat::Int }
    }

    /// A two-track SMF (format 1, 96 ticks per quarter): track 0 has a tempo and a note on
    /// channel 9 at tick 0; track 1 has notes at 48 and 96 (the first ended by a velocity-0
    /// note-on) and a CC at 144.
    fn test_smf(timing: midly::Timing) -> Vec<u8> {
        use midly::{Format, Header, MetaMessage, MidiMessage, Smf, TrackEvent, TrackEventKind};
        let midi = |delta: u32, channel: u8, message: MidiMessage| TrackEvent {
            delta: delta.into(),
            kind: TrackEventKind::Midi { channel: channel.into(), message },
        };
        let end = TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) };
        let mut smf = Smf::new(Header::new(Format::Parallel, timing));
        smf.tracks.push(vec![
            TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::Tempo(500_000.into())) },
            midi(0, 9, MidiMessage::NoteOn { key: 36.into(), vel: 100.into() }),
            midi(24, 9, MidiMessage::NoteOff { key: 36.into(), vel: 0.into() }),
            end,
        ]);
        smf.tracks.push(vec![
            midi(48, 0, MidiMessage::NoteOn { key: 60.into(), vel: 90.into() }),
            midi(48, 0, MidiMessage::NoteOn { key: 60.into(), vel: 0.into() }),
            midi(0, 0, MidiMessage::NoteOn { key: 64.into(), vel: 80.into() }),
            midi(48, 0, MidiMessage::Controller { controller: 7.into(), value: 99.into() }),
            midi(0, 0, MidiMessage::NoteOff { key: 64.into(), vel: 64.into() }),
            end,
        ]);
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).unwrap();
        bytes
    }

    // ----------------------------------------------------------------------------- valid files

    #[test]
    fn valid_session_parses_with_the_right_values() {
        let s = parse(VALID).unwrap();
        assert_eq!(s.name, "Test");
        assert_eq!(s.tempo, Bpm(120.0));
        assert_eq!(s.beats_per_bar, 4.0);
        assert_eq!(s.quantise, Quantise::Bar);
        assert_eq!(s.crossfade_ms, DEFAULT_CROSSFADE_MS);
        assert_eq!(s.tracks.len(), 3);
        assert_eq!(s.tracks[0].id, "drums");
        assert_eq!(s.tracks[0].kind, TrackKind::Midi);
        assert!(matches!(s.tracks[0].instrument, Some(InstrumentSpec::Drums(_))));
        assert_eq!(s.tracks[1].instrument, None);
        assert_eq!(s.tracks[2].kind, TrackKind::Audio);
        assert_eq!(s.tracks[2].pan, 0.5);
        assert_eq!(s.clips.len(), 3);
        let a = s.clip(s.clip_by_name("beat-a").unwrap());
        assert_eq!(a.track, TrackId(0));
        assert_eq!(a.length, Beats(4.0), "one bar, rounded up from the last note-off at 1.25");
        assert!(a.looping);
        assert_eq!(a.quantise, Quantise::Global);
        let ClipContent::Midi(m) = &a.content else { panic!("MIDI expected") };
        assert_eq!(m.events.len(), 4);
        assert_eq!(
            m.events[0],
            MidiEvent { beat: Beats(0.0), msg: MidiMsg::NoteOn { channel: 0, key: 36, velocity: 110 } }
        );
        assert_eq!(m.events[3], MidiEvent { beat: Beats(1.25), msg: MidiMsg::NoteOff { channel: 0, key: 38 } });
        assert_eq!(s.clip(ClipId(1)).length, Beats(8.0));
        assert_eq!(s.clip(ClipId(2)).quantise, Quantise::Division(16));
        assert_eq!(s.scenes.len(), 1);
        assert_eq!(s.scenes[0].clips, vec![ClipId(0), ClipId(2)]);
        assert_eq!(s.scenes[0].empty_slots, EmptySlot::Stop);
    }

    #[test]
    fn every_setting_is_read() {
        let text = r#"
[session]
name = "All"
tempo = 98.5
time_signature = "7/8"
seed = 42
quantise = "2-bars"
crossfade_ms = 10

[[track]]
id = "k"
kind = "midi"
gain_db = -6
pan = -1
mute = true
solo = true
instrument = { type = "synth" }

[[clip]]
id = "c"
track = "k"
notes = []
length_beats = 7
loop = false
start_offset_beats = 3.5
gain_db = -3
quantise = "1/8t"
launch_mode = "repeat"
velocity_amount = 0.25
legato = true

[[scene]]
id = "s"
clips = ["c"]
quantise = "scene"
empty_slots = "continue"
"#;
        let s = parse(text).unwrap();
        assert_eq!((s.name.as_str(), s.tempo, s.beats_per_bar, s.seed), ("All", Bpm(98.5), 3.5, 42));
        assert_eq!((s.quantise, s.crossfade_ms), (Quantise::Bars(2), 10.0));
        let t = &s.tracks[0];
        assert_eq!((t.gain_db, t.pan, t.mute, t.solo), (-6.0, -1.0, true, true));
        assert!(matches!(t.instrument, Some(InstrumentSpec::Synth(_))));
        let c = &s.clips[0];
        assert_eq!((c.length, c.looping, c.start_offset, c.gain_db), (Beats(7.0), false, Beats(3.5), -3.0));
        assert_eq!(
            (c.quantise, c.launch_mode, c.velocity_amount, c.legato),
            (Quantise::Triplet(8), LaunchMode::Repeat, 0.25, true)
        );
        assert_eq!((s.scenes[0].quantise, s.scenes[0].empty_slots), (Quantise::Scene, EmptySlot::Continue));
    }

    #[test]
    fn defaults_without_a_session_table() {
        let s = parse("[[track]]\nid = \"k\"\nkind = \"midi\"\n").unwrap();
        assert_eq!(s.name, "bad", "named after the file");
        assert_eq!((s.tempo, s.beats_per_bar, s.seed, s.quantise), (Bpm(120.0), 4.0, 0, Quantise::Bar));
        let waltz = parse("[session]\nbeats_per_bar = 3\n[[track]]\nid='k'\nkind='midi'\n[[clip]]\nid='c'\ntrack='k'\nnotes=[[3.5,0.5,60,100]]\n").unwrap();
        assert_eq!(waltz.clips[0].length, Beats(6.0), "rounded up to whole 3/4 bars");
        let empty = parse("[[track]]\nid='k'\nkind='midi'\n[[clip]]\nid='c'\ntrack='k'\nnotes=[]\n").unwrap();
        assert_eq!(empty.clips[0].length, Beats(4.0), "an empty clip is one bar");
    }

    // ------------------------------------------------------------------------------ bad files

    #[test]
    fn toml_syntax_error() {
        bad("tempo = 120", "tempo = = 120", "tempo = = 120", "TOML syntax error");
        bad("name = \"Test\"", "name = \"Test", "name = \"Test", "TOML syntax error");
        bad("kind = \"audio\"", "kind = \"audio\"\nkind = \"midi\"", "kind = \"midi\"\npan", "duplicate key");
    }

    #[test]
    fn wrong_types() {
        bad("tempo = 120", "tempo = \"fast\"", "tempo = \"fast\"", "expected a number");
        bad("pan = 0.5", "pan = \"left\"", "pan = \"left\"", "expected a number");
        bad("[[0, 1, 40, 100]]", "[[0, 1, 40.5, 100]]", "40.5", "expected an integer");
        bad("[[0, 1, 40, 100]]", "[[0, 1, 40]]", "[[0, 1, 40]]", "[start_beat, length_beats, key, velocity]");
        bad("kind = \"audio\"", "kind = \"video\"", "kind = \"video\"", "unknown variant `video`");
        bad(
            "[[scene]]\nid = \"verse\"",
            "[[scene]]\nid = \"verse\"\nempty_slots = \"keep\"",
            "empty_slots",
            "unknown variant `keep`",
        );
        let err = parse("[track]\nid = 'x'\nkind = 'midi'\n").unwrap_err().to_string();
        assert!(err.starts_with("sets/bad.toml:1:") && err.contains("[[track]]"), "{err}");
    }

    #[test]
    fn unknown_fields_are_typos() {
        bad("tempo = 120", "tempoo = 120", "tempoo", "unknown field `tempoo`");
        bad("pan = 0.5", "pann = 0.5", "pann", "unknown field `pann`");
        bad("length_beats = 8", "lenght_beats = 8", "lenght_beats", "unknown field `lenght_beats`");
        bad("[[scene]]", "[[scenes]]", "[[scenes]]", "unknown field `scenes`");
    }

    #[test]
    fn missing_required_keys() {
        bad("id = \"bass\"\nkind = \"midi\"\n", "id = \"bass\"\n", "[[track]]\nid = \"bass\"", "missing field `kind`");
        bad("[[scene]]\nid = \"verse\"\n", "[[scene]]\n", "[[scene]]", "missing field `id`");
    }

    #[test]
    fn unknown_track_in_a_clip() {
        bad(
            "track = \"bass\"",
            "track = \"bas\"",
            "track = \"bas\"",
            "clip 'bass-a': track 'bas' does not exist (tracks: drums, bass, pad)",
        );
    }

    #[test]
    fn unknown_clip_in_a_scene() {
        bad(
            "clips = [\"beat-a\", \"bass-a\"]",
            "clips = [\"beat-a\", \"bass-b\"]",
            "clips = [",
            "scene 'verse': clip 'bass-b' does not exist",
        );
    }

    #[test]
    fn duplicate_ids() {
        bad(
            "id = \"bass\"",
            "id = \"drums\"",
            "id = \"drums\"\nkind = \"midi\"\n\n[[track]]\nid = \"pad\"",
            "duplicate track id 'drums' (already used on line 8)",
        );
        bad(
            "id = \"beat-b\"",
            "id = \"beat-a\"",
            "id = \"beat-a\"\ntrack = \"drums\"\nnotes = [[0, 0.5",
            "duplicate clip id 'beat-a'",
        );
        let text = format!("{VALID}\n[[scene]]\nid = \"verse\" # again\n");
        expect_err_in(parse(&text), FILE, &text, "# again", "duplicate scene id 'verse'");
        bad("id = \"bass\"", "id = \"  \"", "id = \"  \"", "track id is empty");
    }

    #[test]
    fn midi_clip_on_an_audio_track() {
        bad(
            "track = \"bass\"",
            "track = \"pad\"",
            "track = \"pad\"",
            "clip 'bass-a' is a MIDI clip but track 'pad' is an audio track",
        );
    }

    #[test]
    fn audio_clip_on_a_midi_track_and_other_file_problems() {
        let dir = temp_dir("kinds");
        write_wav(&dir.join("pad.wav"), int_spec(1, 16, 22_050), &[0i16; 2205]);
        std::fs::write(dir.join("corrupt.wav"), b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").unwrap();
        std::fs::write(dir.join("corrupt.mid"), b"MThd\x00\x00\x00\x06\x00\x01").unwrap();
        std::fs::write(dir.join("smpte.mid"), test_smf(midly::Timing::Timecode(midly::Fps::Fps25, 40))).unwrap();
        std::fs::write(dir.join("ok.mid"), test_smf(midly::Timing::Metrical(96.into()))).unwrap();
        let session = dir.join("set.toml");
        let shown = session.display().to_string();
        let base = "[[track]]\nid = \"keys\"\nkind = \"midi\"\n\n[[track]]\nid = \"pad\"\nkind = \"audio\"\n\n[[clip]]\nid = \"c\"\n";
        let check = |clip: &str, needle: &str, phrase: &str| {
            let text = format!("{base}{clip}\n");
            std::fs::write(&session, &text).unwrap();
            expect_err_in(load_session(&session), &shown, &text, needle, phrase);
        };
        check(
            "track = \"keys\"\nfile = \"pad.wav\"",
            "track = \"keys\"\nfile",
            "clip 'c' is an audio clip but track 'keys' is a MIDI track",
        );
        check("track = \"pad\"\nfile = \"loops/missing.wav\"", "file = ", "audio file 'loops/missing.wav' not found");
        check("track = \"keys\"\nmidi_file = \"nope.mid\"", "midi_file = ", "MIDI file 'nope.mid' not found");
        check("track = \"pad\"\nfile = \"corrupt.wav\"", "file = ", "cannot load WAV file 'corrupt.wav'");
        check(
            "track = \"keys\"\nmidi_file = \"corrupt.mid\"",
            "midi_file = ",
            "cannot load MIDI file 'corrupt.mid': not a valid Standard MIDI File",
        );
        check("track = \"keys\"\nmidi_file = \"smpte.mid\"", "midi_file = ", "SMPTE timecode");
        check(
            "track = \"keys\"\nmidi_file = \"ok.mid\"\nmidi_track = 2",
            "midi_track = 2",
            "the file has 2 tracks (0..=1)",
        );
        check(
            "track = \"keys\"\nnotes = []\nmidi_track = 1",
            "midi_track = 1",
            "midi_track only applies with midi_file",
        );
        check("track = \"keys\"\nnotes = []\nfile = \"pad.wav\"", "file = ", "has both `notes` (line 12) and `file`");
        check(
            "track = \"keys\"\nmidi_file = \"ok.mid\"\nnotes = []",
            "notes = ",
            "has both `midi_file` (line 12) and `notes`",
        );
        check("track = \"keys\"", "[[clip]]", "clip 'c': has no content");
        check(
            "track = \"pad\"\nfile = \"pad.wav\"\nstart_offset_beats = 0.2",
            "start_offset_beats",
            "less than the clip's length (0.2 beats)",
        );
        // An instrument on an audio track is refused.
        let text = "[[track]]\nid = \"pad\"\nkind = \"audio\"\ninstrument = { type = \"synth\" }\n";
        std::fs::write(&session, text).unwrap();
        expect_err_in(load_session(&session), &shown, text, "instrument", "an audio track has no instrument");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn midi_out_routes_a_midi_track_to_a_port_and_bad_routes_are_errors() {
        let midi = "[[track]]\nid = \"bass\"\nkind = \"midi\"\n";
        let s = parse(&format!("{midi}midi_out = \"Minilogue\"\nmidi_channel = 3\n")).unwrap();
        assert_eq!(s.tracks[0].midi_out, Some(MidiOutRoute { port: "Minilogue".into(), channel: Some(2) }));
        let s = parse(&format!("{midi}midi_out = \"Minilogue\"\n")).unwrap();
        assert_eq!(s.tracks[0].midi_out, Some(MidiOutRoute { port: "Minilogue".into(), channel: None }));
        assert_eq!(parse(midi).unwrap().tracks[0].midi_out, None);
        let bad = |text: String, needle: &str, phrase: &str| expect_err_in(parse(&text), FILE, &text, needle, phrase);
        bad(format!("{midi}midi_out = \"x\"\nmidi_channel = 17\n"), "midi_channel", "track 'bass': midi_channel is 17");
        bad(format!("{midi}midi_out = \"x\"\nmidi_channel = 0\n"), "midi_channel", "1..=16");
        bad(format!("{midi}midi_channel = 2\n"), "midi_channel", "midi_channel needs midi_out");
        bad(format!("{midi}midi_out = \" \"\n"), "midi_out", "midi_out needs a port name");
        bad(
            "[[track]]\nid = \"pad\"\nkind = \"audio\"\nmidi_out = \"x\"\n".into(),
            "midi_out",
            "an audio track sends no MIDI",
        );
    }

    #[test]
    fn instrument_settings_are_checked() {
        bad(
            "instrument = { type = \"drums\" }",
            "instrument = { type = \"drums\", tune = 40 }",
            "instrument = {",
            "track 'drums': instrument parameter `tune` is 40",
        );
        bad(
            "instrument = { type = \"drums\" }",
            "instrument = { type = \"drum\" }",
            "instrument = {",
            "unknown variant `drum`",
        );
        bad("instrument = { type = \"drums\" }", "instrument = { kind = \"drums\" }", "instrument = {", "type");
    }

    #[test]
    fn clip_with_both_notes_and_file() {
        bad("length_beats = 8", "length_beats = 8\nfile = \"x.wav\"", "file = ", "has both `notes`");
    }

    #[test]
    fn two_clips_of_one_track_in_a_scene() {
        bad(
            "clips = [\"beat-a\", \"bass-a\"]",
            "clips = [\"beat-a\", \"bass-a\", \"beat-b\"]",
            "clips = [",
            "clips 'beat-a' and 'beat-b' are both on track 'drums'",
        );
        bad(
            "clips = [\"beat-a\", \"bass-a\"]",
            "clips = [\"beat-a\", \"beat-a\"]",
            "clips = [",
            "clip 'beat-a' is listed twice",
        );
    }

    #[test]
    fn out_of_range_values() {
        bad("tempo = 120", "tempo = 1000", "tempo = 1000", "tempo is 1000; it must be between 20 and 999 BPM");
        bad("tempo = 120", "tempo = 19.5", "tempo = 19.5", "tempo is 19.5");
        bad("tempo = 120", "tempo = nan", "tempo = nan", "tempo is NaN");
        bad("beats_per_bar = 4", "beats_per_bar = 0", "beats_per_bar = 0", "beats_per_bar is 0");
        bad("beats_per_bar = 4", "beats_per_bar = 3\ntime_signature = \"3/4\"", "time_signature", "not both");
        bad("beats_per_bar = 4", "time_signature = \"3/5\"", "time_signature", "not a time signature");
        bad(
            "[[0, 1, 40, 100]]",
            "[[0, 1, 40, 100], [1, 1, 128, 100]]",
            "128",
            "clip 'bass-a': note 2 key is 128; it must be between 0 and 127",
        );
        bad("[[0, 1, 40, 100]]", "[[0, 1, 40, 0]]", "[[0, 1, 40, 0]]", "note 1 velocity is 0");
        bad(
            "[[0, 1, 40, 100]]",
            "[[0, -1, 40, 100]]",
            "[[0, -1",
            "note 1 length is -1; it must be greater than 0 and at most 100000 beats",
        );
        bad("[[0, 1, 40, 100]]", "[[-2, 1, 40, 100]]", "[[-2", "note 1 start beat is -2");
        bad(
            "length_beats = 8",
            "length_beats = -8",
            "length_beats = -8",
            "clip 'beat-b': length_beats is -8; it must be greater than 0",
        );
        bad("length_beats = 8", "length_beats = 0", "length_beats = 0", "length_beats is 0");
        bad(
            "pan = 0.5",
            "pan = 1.5",
            "pan = 1.5",
            "track 'pad': pan is 1.5; it must be between -1 (left) and 1 (right)",
        );
        bad("pan = 0.5", "pan = -2", "pan = -2", "pan is -2");
        bad("pan = 0.5", "gain_db = 40", "gain_db = 40", "track 'pad': gain_db is 40");
        bad(
            "quantise = \"1/16\"",
            "quantise = \"1/16\"\nvelocity_amount = 2",
            "velocity_amount",
            "velocity_amount is 2",
        );
        bad("name = \"Test\"", "name = \"Test\"\nseed = -1", "seed = -1", "seed is -1; it must be 0 or more");
        bad("name = \"Test\"", "name = \"Test\"\ncrossfade_ms = -1", "crossfade_ms", "crossfade_ms is -1");
    }

    #[test]
    fn unparseable_quantise() {
        bad(
            "quantise = \"1/16\"",
            "quantise = \"sometimes\"",
            "quantise = \"sometimes\"",
            "clip 'bass-a': quantise: 'sometimes' is not a quantisation",
        );
        bad(
            "quantise = \"bar\"",
            "quantise = \"3/4\"",
            "quantise = \"3/4\"",
            "session quantise: '3/4' is not a quantisation",
        );
        bad(
            "quantise = \"bar\"",
            "quantise = \"global\"",
            "quantise = \"global\"",
            "session quantise: 'global' is not a quantisation",
        );
    }

    #[test]
    fn not_utf8_and_unreadable_files() {
        let dir = temp_dir("utf8");
        let path = dir.join("latin1.toml");
        std::fs::write(&path, b"[session]\nname = \"Caf\xe9\"\n").unwrap();
        let e = load_session(&path).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let missing = dir.join("missing.toml");
        let e = load_session(&missing).unwrap_err();
        assert!(matches!(*e.kind, SessionErrorKind::Io(_)));
        assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_have_a_column() {
        let e = parse(&VALID.replacen("tempo = 120", "tempo = \"fast\"", 1)).unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(9)));
        assert!(e.to_string().starts_with("sets/bad.toml:3:9: "), "{e}");
        assert!(e.to_string().contains("(in `tempo = \"fast\"`)"), "{e}");
    }

    // ------------------------------------------------------------------------ WAV and MIDI

    #[test]
    fn wav_mono_16_bit_is_duplicated_to_both_channels() {
        let dir = temp_dir("wav16");
        write_wav(&dir.join("m.wav"), int_spec(1, 16, 22_050), &[0i16, 16_384, -16_384, i16::MIN]);
        let a = decode_wav(&std::fs::read(dir.join("m.wav")).unwrap()).unwrap();
        assert_eq!(a.sample_rate, 22_050);
        assert_eq!(a.left, vec![0.0, 0.5, -0.5, -1.0]);
        assert_eq!(a.right, a.left);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wav_stereo_24_bit_and_8_bit_and_32_bit_int() {
        let dir = temp_dir("wav24");
        write_wav(&dir.join("s24.wav"), int_spec(2, 24, 48_000), &[4_194_304i32, -4_194_304, 0, 8_388_607]);
        let a = decode_wav(&std::fs::read(dir.join("s24.wav")).unwrap()).unwrap();
        assert_eq!((a.sample_rate, a.frames()), (48_000, 2));
        assert_eq!(a.left, vec![0.5, 0.0]);
        assert_eq!(a.right[0], -0.5);
        assert!((a.right[1] - 1.0).abs() < 1e-6);
        write_wav(&dir.join("m8.wav"), int_spec(1, 8, 8_000), &[64i8, -128]);
        let a = decode_wav(&std::fs::read(dir.join("m8.wav")).unwrap()).unwrap();
        assert_eq!(a.left, vec![0.5, -1.0]);
        write_wav(&dir.join("s32.wav"), int_spec(2, 32, 44_100), &[i32::MIN, 1 << 30]);
        let a = decode_wav(&std::fs::read(dir.join("s32.wav")).unwrap()).unwrap();
        assert_eq!((a.left[0], a.right[0]), (-1.0, 0.5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wav_float_stereo_and_more_than_two_channels() {
        let dir = temp_dir("wavf");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        write_wav(&dir.join("f.wav"), spec, &[0.25f32, -0.75, f32::NAN, 1.5]);
        let a = decode_wav(&std::fs::read(dir.join("f.wav")).unwrap()).unwrap();
        assert_eq!(a.left, vec![0.25, 0.0], "non-finite samples become silence");
        assert_eq!(a.right, vec![-0.75, 1.5]);
        write_wav(&dir.join("quad.wav"), int_spec(4, 16, 44_100), &[1i16, 2, 3, 4, 5, 6, 7, 8]);
        let a = decode_wav(&std::fs::read(dir.join("quad.wav")).unwrap()).unwrap();
        assert_eq!(a.frames(), 2);
        assert_eq!(a.left, vec![1.0 / 32_768.0, 5.0 / 32_768.0]);
        assert_eq!(a.right, vec![2.0 / 32_768.0, 6.0 / 32_768.0]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn audio_clip_length_defaults_to_the_file_duration() {
        let dir = temp_dir("audioclip");
        write_wav(&dir.join("one-second.wav"), int_spec(1, 16, 22_050), &vec![100i16; 22_050]);
        let text = "[session]\ntempo = 90\n[[track]]\nid='a'\nkind='audio'\n[[clip]]\nid='x'\ntrack='a'\nfile='one-second.wav'\n[[clip]]\nid='y'\ntrack='a'\nfile='one-second.wav'\nlength_beats=4\n";
        let s = parse_session(text, &dir.join("set.toml")).unwrap();
        assert_eq!(s.clips[0].length, Beats(1.5), "1 s at 90 BPM");
        assert_eq!(s.clips[1].length, Beats(4.0));
        let (ClipContent::Audio(x), ClipContent::Audio(y)) = (&s.clips[0].content, &s.clips[1].content) else {
            panic!("audio expected")
        };
        assert!(Arc::ptr_eq(x, y), "a file used twice is loaded once");
        assert_eq!((x.sample_rate, x.frames()), (22_050, 22_050));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn smf_import_gives_the_right_beats() {
        let bytes = test_smf(midly::Timing::Metrical(96.into()));
        let all = decode_smf(&bytes, None).unwrap();
        let on = |channel, key, velocity| MidiMsg::NoteOn { channel, key, velocity };
        let off = |channel, key| MidiMsg::NoteOff { channel, key };
        let expected = vec![
            MidiEvent { beat: Beats(0.0), msg: on(9, 36, 100) },
            MidiEvent { beat: Beats(0.25), msg: off(9, 36) },
            MidiEvent { beat: Beats(0.5), msg: on(0, 60, 90) },
            MidiEvent { beat: Beats(1.0), msg: off(0, 60) },
            MidiEvent { beat: Beats(1.0), msg: on(0, 64, 80) },
            MidiEvent { beat: Beats(1.5), msg: off(0, 64) },
            MidiEvent { beat: Beats(1.5), msg: MidiMsg::Cc { channel: 0, controller: 7, value: 99 } },
        ];
        assert_eq!(all.events, expected);
        let one = decode_smf(&bytes, Some(1)).unwrap();
        assert_eq!(one.events, expected[2..].to_vec());
        assert!(decode_smf(&bytes, Some(2)).is_err());

        // Through a session: default length is the last event rounded up to a bar.
        let dir = temp_dir("smf");
        std::fs::write(dir.join("song.mid"), &bytes).unwrap();
        let text = "[session]\nbeats_per_bar = 3\n[[track]]\nid='k'\nkind='midi'\n[[clip]]\nid='c'\ntrack='k'\nmidi_file='song.mid'\nmidi_track=1\n";
        let s = parse_session(text, &dir.join("set.toml")).unwrap();
        assert_eq!(s.clips[0].length, Beats(3.0));
        let ClipContent::Midi(m) = &s.clips[0].content else { panic!("MIDI expected") };
        assert_eq!(m.events, expected[2..].to_vec());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn format_2_files_need_a_track() {
        use midly::{Format, Header, MetaMessage, Smf, Timing, TrackEvent, TrackEventKind};
        let end = TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) };
        let mut smf = Smf::new(Header::new(Format::Sequential, Timing::Metrical(96.into())));
        smf.tracks = vec![vec![end], vec![end]];
        let mut bytes = Vec::new();
        smf.write_std(&mut bytes).unwrap();
        assert!(decode_smf(&bytes, None).unwrap_err().contains("format-2"));
        assert!(decode_smf(&bytes, Some(1)).is_ok());
    }

    // -------------------------------------------------------------------------- resampling

    /// Least-squares fit of a sine at `freq` Hz over `x[skip..len-skip]`: (amplitude, delay in
    /// samples relative to `sin(2 pi f n / rate)`).
    fn fit_sine(x: &[f32], rate: u32, freq: f64, skip: usize) -> (f64, f64) {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &y) in x.iter().enumerate().take(x.len() - skip).skip(skip) {
            let (s, c) = (w * i as f64).sin_cos();
            let y = f64::from(y);
            ss += s * s;
            sc += s * c;
            cc += c * c;
            ys += y * s;
            yc += y * c;
        }
        let det = ss * cc - sc * sc;
        let a = (ys * cc - yc * sc) / det;
        let b = (yc * ss - ys * sc) / det;
        ((a * a + b * b).sqrt(), -b.atan2(a) / w)
    }

    fn sine(rate: u32, freq: f64, frames: usize) -> AudioData {
        let left: Vec<f32> =
            (0..frames).map(|i| (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin() as f32).collect();
        AudioData { sample_rate: rate, right: left.iter().map(|v| v * 0.5).collect(), left }
    }

    #[test]
    fn resampling_a_sine_keeps_frequency_level_and_timing() {
        for (from, to, frames) in [(44_100, 48_000, 44_100), (48_000, 44_100, 48_001), (22_050, 48_000, 22_050 * 2 + 7)]
        {
            let input = sine(from, 1000.0, frames);
            let out = resample(&input, to);
            assert_eq!(out.sample_rate, to);
            let expected_len = (frames as f64 * f64::from(to) / f64::from(from)).round() as usize;
            assert_eq!((out.left.len(), out.right.len()), (expected_len, expected_len), "{from} -> {to}");
            let (amp, delay) = fit_sine(&out.left, to, 1000.0, 2000);
            assert!((amp - 1.0).abs() < 1e-3, "{from} -> {to}: level {amp}");
            assert!(delay.abs() < 0.01, "{from} -> {to}: output is offset by {delay} samples");
            let (amp_r, _) = fit_sine(&out.right, to, 1000.0, 2000);
            assert!((amp_r - 0.5).abs() < 1e-3, "right channel level {amp_r}");
            // The same fit at a neighbouring frequency finds (almost) nothing: the pitch is right.
            let (wrong, _) = fit_sine(&out.left, to, 1010.0, 2000);
            assert!(wrong < 0.05, "{from} -> {to}: energy at 1010 Hz: {wrong}");
        }
    }

    #[test]
    fn resampling_keeps_an_impulse_at_the_same_time() {
        let mut left = vec![0.0f32; 44_100];
        left[4_410] = 1.0; // 100 ms
        let input = AudioData { sample_rate: 44_100, right: left.clone(), left };
        let out = resample(&input, 48_000);
        let peak =
            out.left.iter().enumerate().fold((0, 0.0f32), |best, (i, &v)| if v > best.1 { (i, v) } else { best });
        assert_eq!(peak.0, 4_800, "the impulse is at 100 ms in the output too");
    }

    #[test]
    fn resampling_to_the_same_rate_is_a_copy_and_odd_rates_do_not_panic() {
        let input = sine(48_000, 440.0, 1000);
        assert_eq!(resample(&input, 48_000), input);
        let out = resample(&input, 44_099);
        assert_eq!(out.frames(), 919);
        let tiny = AudioData { sample_rate: 100, left: vec![1.0; 10], right: vec![1.0; 10] };
        assert_eq!(resample(&tiny, 48_000).frames(), 4_800);
        let one = AudioData { sample_rate: 44_100, left: vec![1.0], right: vec![1.0] };
        assert_eq!(resample(&one, 48_000).frames(), 1);
        let empty = AudioData { sample_rate: 44_100, left: vec![], right: vec![] };
        assert_eq!(resample(&empty, 48_000).frames(), 0);
    }

    // ------------------------------------------- follow actions, scenes, playlists, arrangement

    /// A session with every new setting: keep_playing, follow actions on clips and scenes, scene
    /// tempo and time signature, playlists and an arrangement.
    const SET: &str = r#"[session]
seed = 3

[[track]]
id = "drums"
kind = "midi"
keep_playing = true

[[track]]
id = "bass"
kind = "midi"

[[track]]
id = "pad"
kind = "audio"

[[clip]]
id = "d1"
track = "drums"
notes = []
follow = { after_loops = 2, a = { next = "next", chance = 0.7, no_repeat = true, exclude = ["d3"] }, b = { next = { clip = "d3" }, chance = 0.3 } }

[[clip]]
id = "d2"
track = "drums"
notes = []
follow = { a = { next = "random", only = ["d1", "d2"] } }

[[clip]]
id = "d3"
track = "drums"
notes = []

[[clip]]
id = "b1"
track = "bass"
notes = []
length_beats = 8

[[scene]]
id = "intro"
clips = ["d1"]
tempo = 128
time_signature = "3/4"
follow = { a = { next = { scene = "verse" } }, b = { next = "stop" } }

[[scene]]
id = "verse"
clips = ["d2", "b1"]
beats_per_bar = 3.5
follow = { after_loops = 4, a = { next = "previous", chance = 0.25 }, b = { next = "first", chance = 0.25, exclude = ["verse"] } }

# ---- the arrangement
[[arrangement.clip]]
track = "bass"
clip = "b1"
start = 0

[[arrangement.clip]]
clip = "d1"
start = 8.5
length = 16
offset = 1.5

[[arrangement.tempo_change]]
beat = 32
tempo = 100
time_signature = "3/4"

[[arrangement.tempo_change]]
beat = 16
beats_per_bar = 5

# ---- playlists
[[playlist]]
id = "song"
steps = ["intro", { scene = "verse", repeat = 2 }, { scene = "intro" }]
loop = true

[[playlist]]
id = "short"
steps = ["verse"]
"#;

    /// `SET` with `from` replaced by `to` must fail on the line of `needle` with `phrase`.
    fn bad_set(from: &str, to: &str, needle: &str, phrase: &str) {
        assert!(SET.contains(from), "{from:?} not in SET");
        let text = SET.replacen(from, to, 1);
        expect_err_in(parse(&text), FILE, &text, needle, phrase);
    }

    fn action(next: FollowTarget, chance: f64) -> FollowAction {
        FollowAction { next, chance, constraints: FollowConstraints::default() }
    }

    #[test]
    fn follow_actions_scenes_playlists_and_the_arrangement_are_read() {
        let s = parse(SET).unwrap();
        assert_eq!((s.tracks[0].keep_playing, s.tracks[1].keep_playing), (true, false));
        let d1 = s.clip(s.clip_by_name("d1").unwrap());
        assert_eq!(
            d1.follow,
            Some(FollowActions {
                after_loops: 2,
                a: FollowAction {
                    next: FollowTarget::Next,
                    chance: 0.7,
                    constraints: FollowConstraints { no_repeat: true, exclude: vec![2], only: vec![] },
                },
                b: Some(action(FollowTarget::Clip(ClipId(2)), 0.3)),
            })
        );
        let d2 = s.clip(ClipId(1));
        assert_eq!(
            d2.follow,
            Some(FollowActions {
                after_loops: 1,
                a: FollowAction {
                    next: FollowTarget::Random,
                    chance: 1.0,
                    constraints: FollowConstraints { no_repeat: false, exclude: vec![], only: vec![0, 1] },
                },
                b: None,
            })
        );
        assert_eq!(s.clip(ClipId(2)).follow, None);

        let intro = s.scene(SceneId(0));
        assert_eq!((intro.tempo, intro.beats_per_bar), (Some(Bpm(128.0)), Some(3.0)));
        assert_eq!(
            intro.follow,
            Some(FollowActions {
                after_loops: 1,
                a: action(FollowTarget::Scene(SceneId(1)), 0.5),
                b: Some(action(FollowTarget::Stop, 0.5)),
            })
        );
        let verse = s.scene(SceneId(1));
        assert_eq!((verse.tempo, verse.beats_per_bar), (None, Some(3.5)));
        let f = verse.follow.as_ref().unwrap();
        assert_eq!((f.after_loops, f.a.next, f.a.chance), (4, FollowTarget::Previous, 0.25));
        let b = f.b.as_ref().unwrap();
        assert_eq!((b.next, b.chance, b.constraints.exclude.as_slice()), (FollowTarget::First, 0.25, &[1u32][..]));

        let step = |scene, repeat| PlaylistStep { scene: SceneId(scene), repeat };
        assert_eq!(
            s.playlists,
            vec![
                Playlist { id: "song".into(), steps: vec![step(0, 1), step(1, 2), step(0, 1)], looping: true },
                Playlist { id: "short".into(), steps: vec![step(1, 1)], looping: false },
            ]
        );
        assert_eq!(s.playlist_by_name("short"), Some(1));

        assert_eq!(
            s.arrangement.clips,
            vec![
                Placement {
                    track: TrackId(1),
                    clip: ClipId(3),
                    start: Beats(0.0),
                    length: Beats(8.0),
                    offset: Beats(0.0)
                },
                Placement {
                    track: TrackId(0),
                    clip: ClipId(0),
                    start: Beats(8.5),
                    length: Beats(16.0),
                    offset: Beats(1.5)
                },
            ],
            "the lane defaults to the clip's track and the length to the clip's"
        );
        assert_eq!(
            s.arrangement.tempo,
            vec![
                TempoChange { beat: Beats(16.0), tempo: None, beats_per_bar: Some(5.0) },
                TempoChange { beat: Beats(32.0), tempo: Some(Bpm(100.0)), beats_per_bar: Some(3.0) },
            ],
            "sorted by beat"
        );
        assert_eq!(s.arrangement.end(), Beats(24.5));

        // Nothing new is required: VALID has none of it.
        let v = parse(VALID).unwrap();
        assert!(v.playlists.is_empty() && v.arrangement == Arrangement::default());
        assert!(v.clips.iter().all(|c| c.follow.is_none()) && !v.tracks[0].keep_playing);
        assert_eq!((v.scenes[0].tempo, v.scenes[0].beats_per_bar, &v.scenes[0].follow), (None, None, &None));
    }

    #[test]
    fn a_clip_may_follow_on_to_a_scene_and_a_scene_to_any_clip() {
        let text = SET.replacen("{ clip = \"d3\" }", "{ scene = \"verse\" }", 1).replacen(
            "next = { scene = \"verse\" } }",
            "next = { clip = \"b1\" } }",
            1,
        );
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let clip_follow = s.clips[0].follow.as_ref().unwrap();
        assert_eq!(clip_follow.b.as_ref().unwrap().next, FollowTarget::Scene(SceneId(1)));
        let scene_follow = s.scenes[0].follow.as_ref().unwrap();
        assert_eq!(scene_follow.a.next, FollowTarget::Clip(ClipId(3)), "a clip on another track than the scene's");
    }

    #[test]
    fn follow_chances_left_out_share_what_is_left_of_one() {
        let chances = |follow: &str| {
            let text = SET.replacen("follow = { a = { next = \"random\", only = [\"d1\", \"d2\"] } }", follow, 1);
            let f = parse(&text).unwrap().clips[1].follow.clone().unwrap();
            (f.a.chance, f.b.map(|b| b.chance))
        };
        assert_eq!(chances("follow = { a = { next = \"next\" } }"), (1.0, None));
        assert_eq!(chances("follow = { a = { next = \"next\", chance = 0.4 } }"), (0.4, None));
        assert_eq!(chances("follow = { a = { next = \"next\" }, b = { next = \"stop\" } }"), (0.5, Some(0.5)));
        assert_eq!(
            chances("follow = { a = { next = \"next\", chance = 0.75 }, b = { next = \"stop\" } }"),
            (0.75, Some(0.25))
        );
        assert_eq!(
            chances("follow = { a = { next = \"next\" }, b = { next = \"stop\", chance = 0.25 } }"),
            (0.75, Some(0.25))
        );
        assert_eq!(
            chances("follow = { a = { next = \"next\", chance = 0.1 }, b = { next = \"stop\", chance = 0.2 } }"),
            (0.1, Some(0.2))
        );
        // Every spelling of `next`, and the table layout of a follow action.
        for (word, target) in [
            ("next", FollowTarget::Next),
            ("previous", FollowTarget::Previous),
            ("first", FollowTarget::First),
            ("last", FollowTarget::Last),
            ("random", FollowTarget::Random),
            ("Repeat", FollowTarget::Repeat),
            ("stop", FollowTarget::Stop),
        ] {
            let text = SET.replacen(
                "follow = { a = { next = \"random\", only = [\"d1\", \"d2\"] } }",
                &format!("[clip.follow]\nafter_loops = 3\n[clip.follow.a]\nnext = \"{word}\"\n"),
                1,
            );
            let f = parse(&text).unwrap_or_else(|e| panic!("{e}")).clips[1].follow.clone().unwrap();
            assert_eq!((f.after_loops, f.a.next, f.a.chance), (3, target, 1.0), "{word}");
        }
    }

    #[test]
    fn bad_follow_actions_name_their_line() {
        bad_set(
            "next = \"next\"",
            "next = \"nxt\"",
            "next = \"nxt\"",
            "clip 'd1': follow action: 'nxt' is not a follow action (use next, previous, first, last, random, repeat, stop, { clip = \"id\" } or { scene = \"id\" })",
        );
        bad_set(
            "{ clip = \"d3\" }",
            "{ clip = \"b1\" }",
            "{ clip = \"b1\" }",
            "clip 'd1': follow action: clip 'b1' is on track 'bass', not 'drums'; a clip's follow action chooses among the clips of its own track (d1, d2, d3)",
        );
        bad_set(
            "exclude = [\"d3\"]",
            "exclude = [\"d9\"]",
            "exclude = [\"d9\"]",
            "clip 'd9' does not exist (clips of track 'drums': d1, d2, d3)",
        );
        bad_set(
            "only = [\"d1\", \"d2\"]",
            "only = [\"d1\", \"b1\"]",
            "only = [\"d1\", \"b1\"]",
            "clip 'd2': follow action: clip 'b1' is on track 'bass'",
        );
        bad_set(
            "{ scene = \"verse\" }",
            "{ clip = \"d9\" }",
            "{ clip = \"d9\" }",
            "scene 'intro': follow action: clip 'd9' does not exist (clips: d1, d2, d3, b1)",
        );
        bad_set(
            "{ clip = \"d3\" }",
            "{ scene = \"outro\" }",
            "{ scene = \"outro\" }",
            "clip 'd1': follow action: scene 'outro' does not exist (scenes: intro, verse)",
        );
        bad_set(
            "{ scene = \"verse\" }",
            "{ scene = \"chorus\" }",
            "{ scene = \"chorus\" }",
            "scene 'chorus' does not exist (scenes: intro, verse)",
        );
        bad_set(
            "exclude = [\"verse\"]",
            "exclude = [\"vers\"]",
            "exclude = [\"vers\"]",
            "scene 'verse': follow action: scene 'vers' does not exist",
        );
        bad_set(
            "after_loops = 2",
            "after_loops = 0",
            "after_loops = 0",
            "clip 'd1': follow after_loops is 0; it must be a whole number from 1 to 10000",
        );
        bad_set("after_loops = 4", "after_loops = -4", "after_loops = -4", "scene 'verse': follow after_loops is -4");
        bad_set("after_loops = 2", "after_loops = 2.5", "after_loops = 2.5", "expected an integer");
        bad_set(
            "chance = 0.7",
            "chance = 1.5",
            "chance = 1.5",
            "clip 'd1': follow a chance is 1.5; it must be between 0 and 1",
        );
        bad_set("chance = 0.3", "chance = -0.3", "chance = -0.3", "follow b chance is -0.3");
        bad_set("chance = 0.3 }", "chance = nan }", "chance = nan }", "follow b chance is NaN");
        bad_set(
            "next = { clip = \"d3\" }, chance = 0.3",
            "next = \"repeat\", chance = 0.3, no_repeat = true",
            "no_repeat = true }",
            "`no_repeat` only applies when next is next, previous, first, last or random",
        );
        bad_set(
            "next = { scene = \"verse\" } }",
            "next = \"stop\", only = [\"verse\"] }",
            "only = [\"verse\"] }",
            "`only` only applies when next is",
        );
        bad_set(
            "only = [\"d1\", \"d2\"]",
            "only = [\"d2\"], no_repeat = true",
            "only = [\"d2\"]",
            "clip 'd2': follow action: the constraints leave no clip to choose",
        );
        bad_set(
            "exclude = [\"verse\"]",
            "exclude = [\"verse\", \"intro\"]",
            "exclude = [\"verse\", \"intro\"]",
            "the constraints leave no scene to choose",
        );
        bad_set("chance = 0.7", "chanse = 0.7", "chanse = 0.7", "unknown field `chanse`");
        bad_set(
            "next = \"random\"",
            "next = 3",
            "next = 3",
            "expected next, previous, first, last, random, repeat, stop",
        );
        bad_set(
            "{ clip = \"d3\" }",
            "{ clips = \"d3\" }",
            "{ clips = \"d3\" }",
            "unknown field `clips`, expected `clip` or `scene`",
        );
        bad_set(
            "{ clip = \"d3\" }",
            "{ clip = \"d3\", scene = \"intro\" }",
            "{ clip = \"d3\", scene",
            "give `clip` or `scene`, not both",
        );
        bad_set("{ clip = \"d3\" }", "{}", "next = {}", "an empty table");
        bad_set(
            "follow = { a = { next = \"random\"",
            "follow = { b = { next = \"random\"",
            "follow = { b",
            "missing field `a`",
        );
        bad_set("keep_playing = true", "keep_playing = \"yes\"", "keep_playing = \"yes\"", "expected a boolean");
    }

    #[test]
    fn bad_scene_tempo_and_playlists_name_their_line() {
        bad_set(
            "tempo = 128",
            "tempo = 1000",
            "tempo = 1000",
            "scene 'intro': tempo is 1000; it must be between 20 and 999 BPM",
        );
        bad_set(
            "beats_per_bar = 3.5",
            "beats_per_bar = 3.5\ntime_signature = \"7/8\"",
            "time_signature = \"7/8\"",
            "scene 'verse': give either beats_per_bar or time_signature, not both",
        );
        bad_set("beats_per_bar = 3.5", "beats_per_bar = 0", "beats_per_bar = 0", "scene 'verse': beats_per_bar is 0");
        bad_set(
            "time_signature = \"3/4\"\nfollow",
            "time_signature = \"3/5\"\nfollow",
            "time_signature = \"3/5\"",
            "time_signature '3/5' is not a time signature",
        );
        bad_set(
            "{ scene = \"intro\" }]",
            "{ scene = \"outro\" }]",
            "steps = [\"intro\"",
            "playlist 'song': step 3: scene 'outro' does not exist (scenes: intro, verse)",
        );
        bad_set(
            "steps = [\"verse\"]",
            "steps = [\"chorus\"]",
            "steps = [\"chorus\"]",
            "playlist 'short': step 1: scene 'chorus' does not exist",
        );
        bad_set(
            "repeat = 2",
            "repeat = 0",
            "repeat = 0",
            "playlist 'song': step 2 repeat is 0; it must be a whole number from 1 to 10000",
        );
        bad_set("repeat = 2", "repeat = 2.5", "repeat = 2.5", "expected an integer");
        bad_set("steps = [\"verse\"]", "steps = []", "steps = []", "playlist 'short': has no steps");
        bad_set(
            "id = \"short\"",
            "id = \"song\"",
            "id = \"song\"\nsteps = [\"verse\"]",
            "duplicate playlist id 'song'",
        );
        bad_set(
            "{ scene = \"intro\" }]",
            "{ scene = \"intro\", times = 2 }]",
            "times = 2",
            "unknown field `times`, expected `scene` or `repeat`",
        );
        bad_set("{ scene = \"intro\" }]", "{ repeat = 2 }]", "{ repeat = 2 }]", "missing field `scene`");
        bad_set(
            "steps = [\"intro\",",
            "steps = [3,",
            "steps = [3,",
            "expected a scene id or { scene = \"id\", repeat = N }",
        );
        bad_set("loop = true", "loop = 1", "loop = 1", "expected a boolean");
        bad_set(
            "[[playlist]]\nid = \"short\"",
            "[[playlist]]\nname = \"short\"",
            "name = \"short\"",
            "unknown field `name`",
        );
    }

    #[test]
    fn bad_arrangements_name_their_line() {
        bad_set(
            "track = \"bass\"\nclip = \"b1\"",
            "track = \"pad\"\nclip = \"b1\"",
            "track = \"pad\"\nclip",
            "arrangement: clip 'b1' is a MIDI clip and cannot go on lane 'pad', an audio track",
        );
        bad_set(
            "clip = \"d1\"\nstart",
            "clip = \"d9\"\nstart",
            "clip = \"d9\"",
            "arrangement: clip 'd9' does not exist (clips: d1, d2, d3, b1)",
        );
        bad_set(
            "track = \"bass\"\nclip = \"b1\"",
            "track = \"gtr\"\nclip = \"b1\"",
            "track = \"gtr\"",
            "arrangement: track 'gtr' does not exist (tracks: drums, bass, pad)",
        );
        bad_set(
            "start = 8.5",
            "start = -1",
            "start = -1",
            "arrangement clip 'd1': start is -1; it must be between 0 and 100000 beats",
        );
        bad_set(
            "length = 16",
            "length = 0",
            "length = 0",
            "arrangement clip 'd1': length is 0; it must be greater than 0",
        );
        bad_set("offset = 1.5", "offset = -1.5", "offset = -1.5", "arrangement clip 'd1': offset is -1.5");
        bad_set(
            "clip = \"b1\"\nstart = 0\n",
            "clip = \"b1\"\n",
            "[[arrangement.clip]]\ntrack = \"bass\"",
            "missing field `start`",
        );
        bad_set("offset = 1.5", "ofset = 1.5", "ofset = 1.5", "unknown field `ofset`");
        bad_set(
            "[[arrangement.tempo_change]]\nbeat = 16",
            "[[arrangement.tempo_changes]]\nbeat = 16",
            "[[arrangement.tempo_changes]]",
            "unknown field `tempo_changes`",
        );
        bad_set(
            "beat = 16\nbeats_per_bar = 5",
            "beat = 16",
            "[[arrangement.tempo_change]]\nbeat = 16",
            "arrangement: the tempo change at beat 16 changes nothing; give tempo, time_signature or beats_per_bar",
        );
        bad_set(
            "beat = 16\n",
            "beat = 32\n",
            "beat = 32\nbeats_per_bar = 5",
            "arrangement: two tempo changes at beat 32 (the other is on line 66); merge them",
        );
        bad_set("tempo = 100", "tempo = 5", "tempo = 5", "arrangement tempo_change at beat 32: tempo is 5");
        bad_set(
            "beats_per_bar = 5",
            "beats_per_bar = 5\ntime_signature = \"5/4\"",
            "time_signature = \"5/4\"",
            "arrangement tempo_change at beat 16: give either beats_per_bar or time_signature, not both",
        );
        bad_set("beat = 16", "beat = -16", "beat = -16", "arrangement tempo_change beat is -16");
    }

    #[test]
    fn an_audio_clip_on_a_midi_lane_is_refused() {
        let dir = temp_dir("lanes");
        write_wav(&dir.join("pad.wav"), int_spec(1, 16, 22_050), &[0i16; 2205]);
        let session = dir.join("set.toml");
        let text = "[[track]]\nid = \"keys\"\nkind = \"midi\"\n[[track]]\nid = \"pad\"\nkind = \"audio\"\n[[clip]]\nid = \"p\"\ntrack = \"pad\"\nfile = \"pad.wav\"\n[[arrangement.clip]]\nclip = \"p\"\nstart = 4\ntrack = \"keys\"\n";
        std::fs::write(&session, text).unwrap();
        let shown = session.display().to_string();
        expect_err_in(
            load_session(&session),
            &shown,
            text,
            "track = \"keys\"\n",
            "arrangement: clip 'p' is an audio clip and cannot go on lane 'keys', a MIDI track",
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The part of `text` before the arrangement section, and the part after it.
    fn around_the_arrangement(text: &str) -> (&str, &str) {
        let start = text.find("# ---- the arrangement").expect("the arrangement's heading");
        let end = text.find("# ---- playlists").expect("the playlists' heading");
        (&text[..start], &text[end..])
    }

    #[test]
    fn save_arrangement_round_trips_and_keeps_the_rest_of_the_file_byte_for_byte() {
        let dir = temp_dir("save");
        let path = dir.join("set.toml");
        // Comments and odd spacing elsewhere must survive.
        let original = SET.replacen("[session]\n", "[session]   # the whole set\n", 1).replacen(
            "\n[[scene]]\nid = \"intro\"",
            "\n# first scene\n[[scene]]\nid   =   \"intro\"",
            1,
        );
        std::fs::write(&path, &original).unwrap();
        let mut s = load_session(&path).unwrap();
        // Move d3 onto the arrangement; change a tempo change; add one.
        let d3 = s.clip_by_name("d3").unwrap();
        s.place_clip(d3, TrackId(0), Beats(40.0), Some(Beats(6.25)), false).unwrap();
        s.arrangement.clips[0].offset = Beats(0.5);
        s.arrangement.tempo[0].tempo = Some(Bpm(97.5));
        s.arrangement.tempo.push(TempoChange { beat: Beats(64.0), tempo: Some(Bpm(140.0)), beats_per_bar: None });
        save_arrangement(&path, &s).unwrap();

        let saved = std::fs::read_to_string(&path).unwrap();
        let reloaded = load_session(&path).unwrap_or_else(|e| panic!("{e}\n{saved}"));
        assert_eq!(reloaded.arrangement, s.arrangement, "the arrangement survives the round trip:\n{saved}");
        assert_eq!(around_the_arrangement(&saved), around_the_arrangement(&original), "{saved}");
        assert!(saved.contains("\n# ---- the arrangement\n[[arrangement.clip]]\ntrack = \"bass\"\nclip = \"b1\"\nstart = 0\nlength = 8\noffset = 0.5\n"), "{saved}");
        assert!(
            saved.contains("[[arrangement.tempo_change]]\nbeat = 16\ntempo = 97.5\nbeats_per_bar = 5\n"),
            "{saved}"
        );
        // Everything but the arrangement (and the moved clip's scenes) is as it was.
        assert_eq!(reloaded.playlists, s.playlists);
        assert_eq!(reloaded.clips.len(), s.clips.len());

        // Saving again changes nothing.
        save_arrangement(&path, &reloaded).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), saved);

        // An empty arrangement removes the section and nothing else.
        let mut empty = reloaded.clone();
        empty.arrangement = Arrangement::default();
        save_arrangement(&path, &empty).unwrap();
        let (before, after) = around_the_arrangement(&original);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{before}{after}"));
        assert_eq!(load_session(&path).unwrap().arrangement, Arrangement::default());

        // Into a file with no arrangement: at the end, the rest untouched.
        let plain = format!("{before}{after}");
        save_arrangement(&path, &s).unwrap();
        let appended = std::fs::read_to_string(&path).unwrap();
        assert!(appended.starts_with(&plain), "{appended}");
        assert!(appended[plain.len()..].starts_with("\n[[arrangement.clip]]"), "{appended}");
        assert_eq!(load_session(&path).unwrap().arrangement, s.arrangement);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn save_arrangement_writes_duplicated_clips_and_refuses_clips_the_file_lacks() {
        let dir = temp_dir("save-copies");
        let path = dir.join("set.toml");
        std::fs::write(&path, SET).unwrap();
        let mut s = load_session(&path).unwrap();
        let b1 = s.clip_by_name("b1").unwrap();
        let copy = s.place_clip(b1, TrackId(1), Beats(48.0), Some(Beats(4.0)), true).unwrap();
        assert_eq!(s.clip(copy).id, "b1-copy");
        save_arrangement(&path, &s).unwrap();
        let saved = std::fs::read_to_string(&path).unwrap();
        let reloaded = load_session(&path).unwrap_or_else(|e| panic!("{e}\n{saved}"));
        assert_eq!(reloaded.arrangement, s.arrangement, "{saved}");
        let c = reloaded.clip(reloaded.clip_by_name("b1-copy").unwrap());
        assert_eq!((c.track, c.length), (TrackId(1), Beats(8.0)));
        assert!(
            saved.contains("\n[[clip]]\nid = \"b1-copy\"\ntrack = \"bass\"\nnotes = []\nlength_beats = 8\n"),
            "{saved}"
        );

        // A clip that is neither in the file nor a copy of one: an error, and the file is as it was.
        let mut other = s.clone();
        let new =
            other.add_clip(Clip::new("new", TrackId(1), ClipContent::Midi(Arc::new(MidiData::default())), Beats(4.0)));
        other.place_clip(new, TrackId(1), Beats(0.0), None, false).unwrap();
        let e = save_arrangement(&path, &other).unwrap_err();
        assert!(e.to_string().contains("cannot save the arrangement: clip 'new' is not in the session file"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), saved);

        // A file that is not TOML is reported with its line, and left alone.
        std::fs::write(&path, "[session]\ntempo = = 1\n").unwrap();
        let e = save_arrangement(&path, &s).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = save_arrangement(&dir.join("missing.toml"), &s).unwrap_err();
        assert!(matches!(*e.kind, SessionErrorKind::Io(_)), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // ---------------------------------------------------------------------------- examples

    #[test]
    fn every_example_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let band = load_session(&dir.join("band.toml")).unwrap_or_else(|e| panic!("{e}"));
        let mut sessions = 0;
        let mut scripts = 0;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix("-script.toml") {
                // A script performs the session named like it (`x-script.toml`: `x.toml`), else the band.
                let own = dir.join(format!("{stem}.toml"));
                let session =
                    if own.exists() { load_session(&own).unwrap_or_else(|e| panic!("{e}")) } else { band.clone() };
                let script = crate::script::Script::load(&path, &session).unwrap_or_else(|e| panic!("{e}"));
                assert!(!script.actions.is_empty(), "{name} is empty");
                scripts += 1;
            } else {
                load_session(&path).unwrap_or_else(|e| panic!("{e}"));
                sessions += 1;
            }
        }
        assert!(sessions >= 3 && scripts >= 1, "{sessions} sessions, {scripts} scripts");

        // Spot checks of band.toml: the audio clip and the MIDI-file clip.
        let pad = band.clip(band.clip_by_name("pad-a").unwrap());
        let ClipContent::Audio(audio) = &pad.content else { panic!("pad-a is audio") };
        assert_eq!(audio.sample_rate, 22_050);
        assert!((pad.length.0 - 8.0).abs() < 1e-9, "4 s at 120 BPM: {}", pad.length);
        let bass = band.clip(band.clip_by_name("bass-a").unwrap());
        assert_eq!(bass.length, Beats(8.0));
        let ClipContent::Midi(m) = &bass.content else { panic!("bass-a is MIDI") };
        assert!(m.events.iter().any(|e| matches!(e.msg, MidiMsg::NoteOn { key: 45, .. })));
        assert!(band.scenes.len() >= 3);
        let waltz = load_session(&dir.join("waltz.toml")).unwrap();
        assert_eq!(waltz.beats_per_bar, 3.0);
    }

    #[test]
    fn every_example_script_performs_without_refusals() {
        use crate::pulse::PulseEvent;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let band = Arc::new(load_session(&dir.join("band.toml")).unwrap());
        let render = |name: &str| {
            let script = crate::script::Script::load(&dir.join(name), &band).unwrap_or_else(|e| panic!("{e}"));
            let beats = script.actions.last().map_or(0.0, |a| a.beat.0) + 8.0;
            let config = crate::render::RenderConfig { sample_rate: 8_000, block: 256, seconds: beats * 60.0 / 100.0 };
            let mut r = crate::render::Renderer::new(band.clone(), script, config).unwrap();
            let (_, events) = r.render_all();
            assert!(r.errors().is_empty(), "{name}: Pulse refused {:?}", r.errors());
            events
        };
        for name in ["band-script.toml", "band-follow-script.toml", "band-arrangement-script.toml"] {
            let events = render(name);
            assert!(events.iter().any(|e| matches!(e, PulseEvent::Executed { .. })), "{name} triggers nothing");
        }
        // The follow script's playlist and playthrough steps land where its comments say.
        let steps: Vec<(f64, String)> = render("band-follow-script.toml")
            .iter()
            .filter_map(|e| match e {
                PulseEvent::Step { scene, beat, .. } => Some((beat.0, band.scene(*scene).id.clone())),
                _ => None,
            })
            .collect();
        let expected = [(0.0, "intro"), (8.0, "verse"), (24.0, "chorus"), (40.0, "bridge"), (48.0, "outro")]
            .into_iter()
            .chain([(80.0, "verse"), (88.0, "chorus")])
            .map(|(b, s)| (b, s.to_string()))
            .collect::<Vec<_>>();
        assert_eq!(steps, expected);
    }

    // ----------------------------------------------------------------------- never panics

    /// Fragments spliced into a valid session to reach the semantic checks.
    const FRAGMENTS: &[&str] = &[
        "\n[[clip]]\nid = \"x\"\ntrack = \"drums\"\n",
        "\n[[scene]]\nid = \"verse\"\nclips = [\"x\", \"beat-a\"]\n",
        "\n[[track]]\nid = \"drums\"\nkind = \"audio\"\n",
        "\nfile = \"missing.wav\"\n",
        "\nmidi_file = \"missing.mid\"\nmidi_track = -3\n",
        "\nlength_beats = -1e308\n",
        "\nstart_offset_beats = inf\n",
        "\nquantise = \"1/0t\"\n",
        "\nnotes = [[1e308, 1e308, 127, 127]]\n",
        "\ntime_signature = \"0/0\"\n",
        "\nkeep_playing = true\n",
        "\nfollow = { a = { next = \"random\", no_repeat = true }, b = { next = { clip = \"beat-b\" } } }\n",
        "\nfollow = { after_loops = 0, a = { next = { scene = \"verse\" }, only = [\"verse\"] } }\n",
        "\ntempo = 5\n",
        "\n[[playlist]]\nid = \"p\"\nsteps = [\"verse\", { scene = \"verse\", repeat = 3 }]\n",
        "\n[[arrangement.clip]]\nclip = \"beat-a\"\nstart = 4\n",
        "\n[[arrangement.clip]]\nclip = \"bass-a\"\ntrack = \"pad\"\nstart = 0\n",
        "\n[[arrangement.tempo_change]]\nbeat = 8\ntempo = 90\n",
        "\n[arrangement]\n",
        "[",
        "]",
        "\"",
        "=",
        "\n",
        "nan",
        "-",
        "\u{e9}",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&String::from_utf8_lossy(&bytes));
            let _ = decode_wav(&bytes);
            let _ = decode_smf(&bytes, None);
        }

        #[test]
        fn mutated_sessions_never_panic(
            edits in proptest::collection::vec((0usize..2000, 0usize..FRAGMENTS.len(), 0usize..40, any::<bool>()), 1..5)
        ) {
            let mut text = VALID.to_string();
            for (at, fragment, cut, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                if insert {
                    text.insert_str(at, FRAGMENTS[fragment]);
                } else {
                    let mut end = (at + cut).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(at..end, "");
                }
            }
            match parse(&text) {
                // Every error names the file.
                Err(e) => prop_assert!(e.to_string().starts_with(FILE)),
                // Whatever loads saves its arrangement, and loads back with the same arrangement.
                Ok(session) => {
                    let saved = replace_arrangement(&text, Path::new(FILE), &session);
                    prop_assert!(saved.is_ok(), "{:?}", saved.err().map(|e| e.to_string()));
                    let saved = saved.unwrap();
                    let again = parse(&saved);
                    prop_assert!(again.is_ok(), "{}\n{saved}", again.err().map(|e| e.to_string()).unwrap_or_default());
                    prop_assert_eq!(again.unwrap().arrangement, session.arrangement);
                }
            }
        }

        #[test]
        fn corrupted_wav_and_midi_never_panic(index in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut wav = Vec::new();
            {
                let mut w = hound::WavWriter::new(std::io::Cursor::new(&mut wav), int_spec(2, 16, 44_100)).unwrap();
                for i in 0..64i16 {
                    w.write_sample(i * 100).unwrap();
                }
                w.finalize().unwrap();
            }
            let mut smf = test_smf(midly::Timing::Metrical(96.into()));
            for data in [&mut wav, &mut smf] {
                let i = index % data.len();
                data[i] = byte;
                data.truncate(data.len().saturating_sub(cut % 8));
            }
            let _ = decode_wav(&wav);
            let _ = decode_smf(&smf, None);
            let _ = decode_smf(&smf, Some(index % 3));
        }
    }
}
