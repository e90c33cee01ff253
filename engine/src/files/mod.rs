//! The files layer: session files and performance scripts read from TOML (and the session's
//! arrangement written back), with every problem reported as `file:line:column: problem`.
//!
//! Above the media layer (a session file names audio and MIDI files, which [`crate::media`]
//! decodes or probes) and above the model, which never imports it. Behind the `files` cargo
//! feature (on by default). Control thread; does file I/O.
//!
//! - [`diagnostics`]: TOML with spans, locations and source lines, shared by both kinds of file.
//! - [`session`]: session files.
//! - [`script`]: performance script files.

pub mod diagnostics;
pub mod script;
pub mod session;
