//! # loophole-ui
//!
//! The node's Slint UI. It reads the engine's [`Snapshot`](loophole_engine::control::Snapshot)
//! and sends [`ControlCommand`](loophole_engine::control::ControlCommand)s, and nothing else.
//!
//! - [`model`]: the view model, plain Rust computed from the session and a snapshot (tested
//!   without a window); [`panels`]: the transport bar, playlist and follow-action labels.
//! - [`keys`]: the keyboard map and the click modifiers; [`scroll`]: the grid's scrolling.
//! - [`view`]: the thin Slint binding: puts a model into the window and turns clicks and keys
//!   into commands.
//! - [`live`]: the real window (Slint's winit backend, software renderer) on the main thread,
//!   reading the node's snapshot on a timer at display rate.
//! - [`headless`]: renders the window into pixels with Slint's software renderer and a
//!   `MinimalSoftwareWindow`, for `ui-snapshot`, tests and bug reports on machines with no display.
//!
//! Thread: the UI thread (Slint's event loop, or the headless renderer's caller). Nothing here
//! touches the audio thread; the engine is reached only through the snapshot and the commands.
//!
//! Slint is used under its GPL-3.0-only option here, which the project's GPL-2.0-or-later allows.

pub mod headless;
pub mod keys;
pub mod live;
pub mod model;
pub mod panels;
pub mod scroll;
pub mod view;

#[allow(missing_docs, clippy::all)]
mod generated {
    slint::include_modules!();
}

pub use generated::{LauncherWindow, SceneData, SlotData, StepData, TrackData};
