//! The messages Pulse (control thread) and Signal (audio thread) exchange through their
//! lock-free queues: scheduled triggers and mixer changes one way, what was executed the other,
//! and the timed MIDI messages Signal sends to external outputs.
//!
//! Pulse and Signal both import this module and never each other. Every type here is `Copy`,
//! holds no heap data and is safe to move through an `rtrb` ring on the audio thread.
//!
//! [`lanes`] are the queues between the disk reader and Signal for clips streamed from disk;
//! [`takes`] the ring from Signal to the disk thread that writes recorded takes.

pub mod lanes;
pub mod takes;

use crate::model::{ClipId, MidiMsg, SceneId, Track, TrackId, db_to_gain};
use crate::time::{Beats, SampleTime};
/// Identifies one scheduled trigger from the press that made it to the report of its execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TriggerId(pub u64);

/// What a scheduled event does to its track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Start a clip. Its position at beat `b` is `b - anchor` (wrapped into its loop), so a
    /// normal start has `anchor == target`, a legato start keeps the old clip's anchor, and a late
    /// start is phase-aligned automatically.
    Start {
        /// The clip.
        clip: ClipId,
        /// The beat at which the clip's content position is its start offset.
        anchor: Beats,
        /// Linear gain for this launch (clip gain times launch velocity).
        gain: f32,
    },
    /// Stop the track. `fade` is the fade length in beats; `None` uses the declick crossfade.
    Stop {
        /// Fade length in beats, or the declick crossfade.
        fade: Option<Beats>,
    },
    /// Start recording a take of the track's input from this sample on.
    RecordStart {
        /// The take (numbered by Pulse from 1, one number per track and start).
        take: TakeId,
        /// The launcher slot (the scene's row) the take is recorded into, if any.
        slot: Option<SceneId>,
        /// The beat the take ends at, when its length was fixed when it started.
        until: Option<Beats>,
    },
    /// Stop recording the take: its last frame is the one before this sample.
    RecordStop {
        /// The take.
        take: TakeId,
    },
}

/// Identifies one recorded take, from Pulse's `record.start` to the file the disk thread writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TakeId(pub u32);

/// An event Pulse has scheduled for Signal to execute at `target`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheduled {
    /// Trigger id (reports carry it back). Events at the same sample execute in id order.
    pub id: TriggerId,
    /// Track the event applies to.
    pub track: TrackId,
    /// The beat at which it executes.
    pub target: Beats,
    /// What it does.
    pub op: Op,
}

/// Mixer settings of one track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixSettings {
    /// Linear fader gain.
    pub gain: f32,
    /// Balance -1..=1 (equal-power, unity at centre).
    pub pan: f32,
    /// Muted.
    pub mute: bool,
    /// Soloed.
    pub solo: bool,
}

impl MixSettings {
    /// A track's mixer settings as the session gives them.
    pub fn of_track(t: &Track) -> MixSettings {
        MixSettings { gain: db_to_gain(t.gain_db) as f32, pan: t.pan as f32, mute: t.mute, solo: t.solo }
    }
}

/// A command from Pulse (control thread) to Signal (audio thread).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Execute an event at its target beat.
    Schedule(Scheduled),
    /// Change a track's mixer settings (ramped over the declick time).
    Mix {
        /// The track.
        track: TrackId,
        /// New settings.
        settings: MixSettings,
    },
    /// Forget a pending event (Pulse replaced it). Nothing happens if it has executed already.
    Cancel {
        /// The trigger to forget.
        id: TriggerId,
    },
    /// Forget every pending event and silence everything with the declick fade.
    Panic,
}

/// What Signal did, reported back to the control thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Report {
    /// A scheduled event was executed.
    Executed {
        /// The event.
        event: Scheduled,
        /// Beat at the sample it executed at.
        beat: Beats,
        /// Absolute sample it executed at.
        sample: SampleTime,
        /// Tempo at that moment (BPM).
        tempo: f64,
        /// It arrived after its target beat had passed, and was executed at the first sample of
        /// the block, phase-aligned.
        late: bool,
    },
    /// A one-shot clip reached its end.
    ClipEnded {
        /// The track.
        track: TrackId,
        /// The clip.
        clip: ClipId,
        /// Absolute sample of the end.
        sample: SampleTime,
    },
    /// The pending list was full and an event was refused; Pulse must reschedule or report it.
    Overflow {
        /// The refused event.
        event: Scheduled,
    },
}

/// A MIDI message a track sends to its external output, at the sample it belongs to (the sample
/// at which the built-in instrument would play it). Messages come out of the ring in sample order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MidiOutEvent {
    /// Absolute sample of the message.
    pub sample: SampleTime,
    /// The track that sent it (its route names the port).
    pub track: TrackId,
    /// The message, on the route's channel if it sets one.
    pub msg: MidiMsg,
}

/// MIDI controller "All Notes Off", sent on every channel a track used when the transport stops.
pub const ALL_NOTES_OFF: u8 = 123;
