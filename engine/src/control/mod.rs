//! The control boundary: one vocabulary in, one view out.
//!
//! ```text
//!  script   MIDI pads   terminal   UI   conductor
//!     \        |           |       |      /
//!      ControlCommand (names; when: pressed now, or at an exact beat with an id)
//!                          |
//!                    the node's inbox  ->  Pulse  ->  Signal
//!                          |
//!                      Snapshot (published at display rate)
//!     /        |           |       |      \
//!  terminal  status     UI   controller LEDs  conductor client
//! ```
//!
//! - [`command`]: [`ControlCommand`], everything a performer can do, by the session's names.
//! - [`text`]: its text form, for the terminal and `ctl`.
//! - [`snapshot`]: [`Snapshot`], everything a display shows.
//!
//! Pure data and parsing; any thread.

pub mod command;
pub mod snapshot;
pub mod text;

pub use command::{CommandError, ControlCommand, Resolved};
pub use snapshot::{ConductorView, HealthView, LinkView, Snapshot, TransportView, bar_label, metre};
pub use text::{HELP, TextCommand};
