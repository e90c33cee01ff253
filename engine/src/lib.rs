//! # loophole-engine
//!
//! The music of Loophole, with no sockets, devices or Link: everything here runs offline and is
//! deterministic.
//!
//! The engine is built in floors; each imports only the floors below it:
//!
//! ```text
//! files      session files and scripts (TOML)                     [feature "files"]
//! media      WAV/MIDI decoding, resampling, stream caches, reader [feature "media"]
//! build, render   engine assembly; offline render                 [feature "media"]
//! control    ControlCommand in, Snapshot out (the boundary every input and display uses)
//! pulse      the scheduler (control thread)     signal  the realtime renderer (audio thread)
//! queue      the messages and lanes between them (neither imports the other)
//! instrument the built-in synth and drums (audio thread)
//! model      pure data: session, tracks, clips, scenes, arrangement
//! time       beats, tempo maps, quantisation, the BlockClock
//! ```
//!
//! - [`time`]: beats, tempo mapping, quantisation grids and the [`time::BlockClock`].
//! - [`model`]: the session: tracks, clips, scenes, the arrangement. Pure data.
//! - [`instrument`]: the built-in synth and drum kit that play MIDI clips.
//! - [`queue`]: what Pulse and Signal send each other, and the stream lanes.
//! - [`pulse`]: the scheduler. Turns presses into triggers at target beats. Never reads a clock.
//! - [`signal`]: the realtime renderer. Executes triggers at the exact sample; never allocates.
//! - [`control`]: the control boundary: [`control::ControlCommand`] in, [`control::Snapshot`] out.
//! - [`script`]: performance scripts (timed actions) and the length of previews.
//! - [`demo`]: the built-in demo set, generated in code.
//! - `build` ([`build()`]): an engine for a session; [`render`]: offline rendering, the same
//!   Pulse and Signal driven by a simulated clock (feature `media`).
//! - [`media`]: audio and MIDI files, resampling, disk streaming (feature `media`).
//! - [`files`]: session files and performance scripts (feature `files`).
//! - [`record`]: recording's disk side: input feeds, crash-safe take files, the disk thread,
//!   repair of takes a kill cut off (feature `media`).
//!
//! With `default-features = false` the engine is the model, time, Pulse and Signal, without
//! `hound`, `rubato`, `midly`, `toml` or `toml_edit`.
#![warn(missing_docs)]

#[cfg(feature = "media")]
mod build;
pub mod control;
pub mod demo;
#[cfg(feature = "files")]
pub mod files;
pub mod instrument;
#[cfg(feature = "media")]
pub mod media;
pub mod model;
pub mod pulse;
#[cfg(feature = "media")]
pub mod record;
// Without the `media` feature the engine is the model, time, Pulse and control (what the conductor
// needs): Signal and its queues are compiled, but nothing assembles them (`build.rs` needs media).
#[cfg_attr(not(feature = "media"), allow(dead_code, unused_imports))]
pub mod queue;
#[cfg(feature = "media")]
pub mod render;
pub mod script;
#[cfg_attr(not(feature = "media"), allow(dead_code, unused_imports))]
pub mod signal;
pub mod time;

#[cfg(feature = "media")]
pub use build::{EngineConfig, EngineError, MAX_ENGINE_SAMPLE_RATE, MIN_ENGINE_SAMPLE_RATE, build, build_with_reader};
