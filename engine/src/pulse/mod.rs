//! Pulse: the scheduler.
//!
//! Pulse turns what a performer does ([`Action`]s: pad presses, scene launches, stops) into
//! scheduled events at **target beats** ([`crate::queue::Scheduled`]), and sends them to Signal
//! ahead of time. It never reads a clock: every call is given the current beat (`now`), so the
//! same presses at the same beats produce the same schedule on every node and in every offline
//! render.
//!
//! Pulse keeps a plan of what each track will be playing at any future beat (the events it has
//! sent, not yet confirmed by Signal). Toggle, legato, section-end stops and scene quantisation are
//! decided against that plan, so decisions never depend on how far the audio thread has got.
//!
//! The scheduler itself is [`PulseCore`], a sans-IO state machine: presses and ticks in, commands
//! for Signal and events out, no queue, thread or clock of its own. [`Pulse`] wraps it with the
//! lock-free queues to one Signal, for the node and the offline renderer.
//!
//! - [`action`]: what can be asked; [`event`]: what Pulse reports and why it refuses.
//! - [`core`]: the state machine; `triggers`, `follow`, `sequence`: its parts (launches and
//!   stops; follow-action decisions; playlists, playthroughs and the arrangement).
//! - [`handle`]: the wrapper with Signal's queues. [`commit`]: a performance to the arrangement.
//! - [`view`]: the launcher as planned at a beat, for displays.
//! - [`replay`]: fast-forward through a log of presses, and resume a fresh Signal there.
//!
//! Thread: control thread. Not realtime-safe (it may allocate); it never blocks.

pub mod action;
pub mod commit;
pub mod core;
pub mod event;
mod follow;
pub mod handle;
pub mod record;
mod record_plan;
pub mod replay;
mod sequence;
pub(crate) mod state;
mod triggers;
pub mod view;

pub use action::{Action, Behaviour, ClipTrigger, CommandId, MixChange, SceneMode, SceneTrigger, StopMode, When};
pub use core::{METER_MEMORY, PulseCore};
pub use event::{Cause, Choice, FollowSource, PulseError, PulseEvent, Refusal, TriggerKind};
pub use handle::Pulse;
pub use record_plan::{MAX_RECORD_BARS, RecordAction};
pub use replay::{FastForward, Press};
pub use view::{LauncherView, PlayingView, SequenceView, TrackView};
