//! [`Pulse`]: a [`PulseCore`] wired to one Signal through lock-free queues. Every press and tick
//! hands the core's commands to Signal's queue; every poll translates what Signal reported. This
//! is the scheduler as the node and the offline renderer use it. Control thread.

use std::sync::Arc;

use crate::model::{ClipId, SceneId, Session, TempoChange, TrackId};
use crate::queue::{Command, MixSettings, Report, TriggerId};
use crate::time::{Beats, Quantise};

use super::action::{Action, When};
use super::core::PulseCore;
use super::event::{PulseError, PulseEvent};

/// The scheduler with its queues to one Signal. See the module docs.
pub struct Pulse {
    core: PulseCore,
    commands: rtrb::Producer<Command>,
    reports: rtrb::Consumer<Report>,
    /// Kept alive as long as this Pulse: the live disk reader thread, if any clip streams.
    _keep: Option<Box<dyn Send>>,
}

// Without the `media` feature nothing assembles a Pulse with its Signal (`build.rs` does); the
// conductor uses `PulseCore` alone.
#[cfg_attr(not(feature = "media"), allow(dead_code))]
impl Pulse {
    /// Wraps `core` with the queues to its Signal. `keep` lives as long as the Pulse (the stream
    /// reader thread). Control thread.
    pub(crate) fn new(
        core: PulseCore,
        commands: rtrb::Producer<Command>,
        reports: rtrb::Consumer<Report>,
        keep: Option<Box<dyn Send>>,
    ) -> Pulse {
        Pulse { core, commands, reports, _keep: keep }
    }

    /// Keeps `thing` alive as long as this Pulse (the stream reader thread).
    pub(crate) fn keep(&mut self, thing: Box<dyn Send>) {
        self._keep = Some(thing);
    }

    /// The scheduler itself, for what only reads it.
    pub fn core(&self) -> &PulseCore {
        &self.core
    }

    /// Performs an action pressed at beat `now` ([`PulseCore::press`]) and hands what it
    /// scheduled to Signal. `Err(QueueFull)` when Signal's queue could not take everything: the
    /// rest is delivered, in order, by the next call that finds room.
    pub fn press(&mut self, action: Action, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        let ids = self.core.press(action, now)?;
        self.flush()?;
        Ok(ids)
    }

    /// Performs an action pressed at `now`, or exactly at the conductor's beat
    /// ([`PulseCore::press_when`]), and hands what it scheduled to Signal.
    pub fn press_when(&mut self, action: Action, when: When, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        let ids = self.core.press_when(action, when, now)?;
        self.flush()?;
        Ok(ids)
    }

    /// Schedules what is due before `horizon` ([`PulseCore::tick`]) and hands it to Signal.
    pub fn tick(&mut self, now: Beats, horizon: Beats) -> Result<(), PulseError> {
        let ticked = self.core.tick(now, horizon);
        self.flush()?;
        ticked
    }

    /// Joins a performance at beat `at`: fast-forwards through `log` (the presses made before
    /// `at`, in the order they were made: [`PulseCore::fast_forward`]), then brings this Pulse's
    /// fresh Signal to that state ([`PulseCore::resume`]): every track's clip starts at `at`
    /// from the position it has reached, phase-aligned. A node that joins a band mid-song, or
    /// restarts, starts this way. The tempo changes of the way are left for
    /// [`Pulse::take_tempo_changes`]. Control thread.
    pub fn join(&mut self, log: &[super::Press], at: Beats) -> Result<super::FastForward, PulseError> {
        let done = self.core.fast_forward(log, at);
        self.core.resume(at);
        self.flush()?;
        Ok(done)
    }

    /// Changes a track's mixer settings ([`PulseCore::set_mix`]).
    pub fn set_mix(&mut self, track: TrackId, settings: MixSettings) -> Result<(), PulseError> {
        self.core.set_mix(track, settings)?;
        self.flush()
    }

    /// The next decision Pulse made, or thing Signal reported, translated for the UI and the log.
    pub fn poll_event(&mut self) -> Option<PulseEvent> {
        if let Some(e) = self.core.poll_event() {
            return Some(e);
        }
        let r = self.reports.pop().ok()?;
        Some(self.core.translate(r))
    }

    /// Takes the tempo and time-signature changes scheduled since the last call
    /// ([`PulseCore::take_tempo_changes`]).
    pub fn take_tempo_changes(&mut self) -> Vec<TempoChange> {
        self.core.take_tempo_changes()
    }

    /// Hands Signal's queue every command the core has, as far as there is room.
    fn flush(&mut self) -> Result<(), PulseError> {
        while self.commands.slots() > 0 {
            let Some(c) = self.core.poll_command() else { return Ok(()) };
            // There is a slot: the push cannot fail.
            let _ = self.commands.push(c);
        }
        if self.core.pending_commands() > 0 { Err(PulseError::QueueFull) } else { Ok(()) }
    }

    /// The session Pulse schedules.
    pub fn session(&self) -> &Arc<Session> {
        self.core.session()
    }

    /// The clip Pulse plans to be playing on `track` at beat `at`.
    pub fn playing_at(&self, track: TrackId, at: Beats) -> Option<ClipId> {
        self.core.playing_at(track, at)
    }

    /// The scene launched last and the beat it launched at.
    pub fn current_scene(&self) -> Option<(SceneId, Beats)> {
        self.core.current_scene()
    }

    /// Beats per bar in force at `beat`.
    pub fn beats_per_bar_at(&self, beat: Beats) -> f64 {
        self.core.beats_per_bar_at(beat)
    }

    /// The bar `beat` falls in and the beat within it ([`PulseCore::bar_position`]).
    pub fn bar_position(&self, beat: Beats) -> (i64, f64) {
        self.core.bar_position(beat)
    }

    /// The beat a press at `now` with quantisation `q` executes at.
    pub fn quantised(&self, now: Beats, q: Quantise) -> Beats {
        self.core.quantised(now, q)
    }

    /// A track's current mixer settings.
    pub fn mix(&self, track: TrackId) -> Option<MixSettings> {
        self.core.mix(track)
    }
}
