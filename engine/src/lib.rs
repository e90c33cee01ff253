//! # loophole-engine
//!
//! The music of Loophole, with no sockets, devices or Link: everything here runs offline and is
//! deterministic.
//!
//! - [`time`]: beats, tempo mapping, quantisation grids and the [`time::BlockClock`].
//! - [`model`]: the session: tracks, clips, scenes.
//! - [`session_file`]: loading sessions from TOML, audio from WAV, MIDI from Standard MIDI Files.
//! - [`audio_file`]: WAV files read, and audio resampled, a chunk at a time.
//! - [`instrument`]: the built-in synth and drum sampler that play MIDI clips.
//! - [`pulse`]: the scheduler. Turns presses into triggers at target beats. Never reads a clock.
//! - [`signal`]: the realtime renderer. Executes triggers at the exact sample; never allocates.
//! - [`render`]: offline rendering: the same Pulse and Signal driven by a simulated clock.
//! - [`script`]: performance scripts (timed actions) for renders and tests.
//! - [`demo`]: the built-in demo set, generated in code.
#![warn(missing_docs)]

#[cfg(feature = "media")]
mod build;
pub mod demo;
pub mod instrument;
#[cfg(feature = "media")]
pub mod media;
pub mod model;
pub mod pulse;
pub mod queue;
#[cfg(feature = "media")]
pub mod render;
pub mod script;
#[cfg(feature = "media")]
pub mod session_file;
pub mod signal;
pub mod time;

#[cfg(feature = "media")]
pub use build::{EngineConfig, EngineError, build, build_with_reader};
