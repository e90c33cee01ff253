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
//!
//! Parts: [`error`] (what can be wrong), `raw` (the file as serde sees it), `build` (checking
//! it and building the session), [`save`] (writing the arrangement back). Control thread; does
//! file I/O.

mod build;
pub mod error;
mod raw;
pub mod save;
pub mod takes;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use build::{
    DEFAULT_CROSSFADE_MS, DEFAULT_TEMPO, LoadOptions, MAX_ARRANGEMENT_BEAT, MAX_CLIP_BEATS, MAX_CROSSFADE_MS,
    MAX_FOLLOW_LOOPS, MAX_GAIN_DB, MIN_GAIN_DB,
};
pub use error::{SessionError, SessionErrorKind};
pub use save::{replace_arrangement, save_arrangement};
pub use takes::{NewTake, add_takes, add_takes_text};

use crate::files::diagnostics::line_col;
use crate::model::Session;

/// Reads and parses a session file, loading the audio and MIDI files it references (relative
/// paths are relative to the session file's folder).
pub fn load_session(path: &Path) -> Result<Session, SessionError> {
    load_session_with(path, LoadOptions::default())
}

/// [`load_session`] with options. When a memory budget is set (in the file or in `options`), audio
/// files are not decoded: only their headers are read and checked, and each clip keeps its file
/// as [`crate::model::Clip::deferred`] for `media::stream::prepare`, which decodes the files
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

/// The audio and MIDI files a session file's text references (each clip's `file` and
/// `midi_file`), as written in the file (relative paths are relative to its folder), each once,
/// in order of first mention. Only the TOML is read, not the files: the conductor uses it to
/// find what to send with a set.
pub fn referenced_files(text: &str, file: &Path) -> Result<Vec<String>, SessionError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: raw::RawFile = build::parse_raw(text, file)?;
    let mut out: Vec<String> = Vec::new();
    for clip in &raw.clips {
        let c = clip.get_ref();
        for name in [&c.file, &c.midi_file].into_iter().flatten() {
            let name = name.get_ref().trim();
            if !name.is_empty() && !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
    }
    Ok(out)
}

/// [`parse_session`] with options (see [`load_session_with`]).
pub fn parse_session_with(text: &str, file: &Path, options: LoadOptions) -> Result<Session, SessionError> {
    build::parse(text, file, options)
}
