//! # loophole-ui
//!
//! The node's Slint UI. It reads the engine's [`Snapshot`](loophole_engine::control::Snapshot)
//! and sends [`ControlCommand`](loophole_engine::control::ControlCommand)s, and nothing else.
//!
//! - [`model`]: the view model, plain Rust computed from the session and a snapshot (tested
//!   without a window).
//! - [`view`]: the thin Slint binding: puts a model into the window and turns clicks into
//!   commands.
//! - [`headless`]: renders the window into pixels with Slint's software renderer and a
//!   `MinimalSoftwareWindow`, for `ui-snapshot`, tests and bug reports on machines with no display.
//!
//! Thread: the UI thread (Slint's event loop, or the headless renderer's caller). Nothing here
//! touches the audio thread; the engine is reached only through the snapshot and the commands.
//!
//! Slint is used under its GPL-3.0-only option here, which the project's GPL-2.0-or-later allows.

pub mod headless;
pub mod model;
pub mod view;

#[allow(missing_docs, clippy::all)]
mod generated {
    slint::include_modules!();
}

pub use generated::{LauncherWindow, SceneData, SlotData, TrackData};
