//! MIDI: controllers that launch clips and light their pads, and external synths that play MIDI
//! tracks routed to them (`midi_out` in the session).
//!
//! - [`ports`]: the [`MidiBackend`] trait (list, open by name, poll inputs, send), with the
//!   system's MIDI through midir ([`MidirBackend`]) and an in-process fake ([`FakeMidi`]) that
//!   tests and `--midi fake` use. No MIDI subsystem is [`MidiError::Unavailable`]: one line, and
//!   the node plays on.
//! - [`clock`]: port timestamps → host time → the beat the performer heard (and samples → host
//!   time for MIDI out), with the error of each step.
//! - [`mapping`]: controller mapping files (`docs/controllers.md`).
//! - [`feedback`]: the sans-IO LED state machine; [`controller`]: a mapping applied to a
//!   session, turning presses into Pulse actions.
//! - [`out`]: the thread that sends Signal's MIDI events to an external port on time, and
//!   [`out::MidiOut`], what `play` runs for the session's routed tracks.
//! - [`rig`]: what `play` and `demo` open and run every control tick.
//!
//! Threads: everything runs on the control thread except midir's input callback (which only
//! parses and queues) and the external-out thread. Nothing here runs on the audio thread.

pub mod clock;
pub mod controller;
pub mod fake;
pub mod feedback;
pub mod mapping;
pub mod message;
pub mod out;
pub mod ports;
pub mod rig;

pub use self::clock::{AudioPosition, HostTime};
pub use self::controller::Controller;
pub use self::fake::FakeMidi;
pub use self::mapping::{Mapping, MappingError};
pub use self::message::Message;
pub use self::ports::{MidiBackend, MidiError, MidirBackend};
pub use self::rig::{MidiOptions, MidiRig, MidiSummary, MidiSystem};
