//! Deterministic replay: a Pulse fast-forwarded through a log of presses reaches exactly the
//! state a Pulse that played them reached (what plays on each track and from which phase, the
//! follow-action occurrences, the playlist step, the tempo and time signature), without
//! rendering audio; [`PulseCore::resume`] then brings a fresh Signal to that state. A node that
//! joins a band mid-song, or restarts, uses this to come in on the right beat, in phase.
//! Control thread.

use crate::queue::{Command, Op, Scheduled};
use crate::time::Beats;

use super::action::{Action, When};
use super::core::PulseCore;
use super::event::PulseError;

/// A press as Pulse took it: the beat it was made at (for [`When::At`], its target beat), what
/// it did, and how it was timed. A log of these, in the order they were made, replays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Press {
    /// The beat of the press.
    pub beat: Beats,
    /// What it did.
    pub action: Action,
    /// Pressed (quantised) or resolved to an exact beat.
    pub when: When,
}

/// What [`PulseCore::fast_forward`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FastForward {
    /// Presses of the log made (those before the beat fast-forwarded to).
    pub pressed: usize,
    /// Presses Pulse refused, with their beats (as playing them would have refused them).
    pub refused: Vec<(Beats, PulseError)>,
}

impl PulseCore {
    /// Fast-forwards to beat `to` through `log` (in press order), exactly as the offline
    /// renderer plays a script: before each press it ticks up to the press's beat, then presses;
    /// at the end it ticks up to `to`. Presses at or after `to` are left for the caller.
    ///
    /// Nothing is rendered: the commands that would have gone to Signal and the events of the
    /// way (decisions and steps that acted before `to`) are dropped; the tempo and time-signature changes are kept for the
    /// clock owner ([`PulseCore::take_tempo_changes`]). Afterwards the state is the one a Pulse
    /// that played the same presses has at `to`, and every later press and tick gives the same
    /// events. Call [`PulseCore::resume`] to bring a fresh Signal to it.
    pub fn fast_forward(&mut self, log: &[Press], to: Beats) -> FastForward {
        let mut done = FastForward::default();
        for p in log.iter().take_while(|p| p.beat.0 < to.0) {
            let ticked = self.tick(p.beat, p.beat);
            let pressed = self.press_when(p.action, p.when, p.beat);
            for e in [ticked.err(), pressed.err()].into_iter().flatten() {
                done.refused.push((p.beat, e));
            }
            done.pressed += 1;
        }
        if let Err(e) = self.tick(to, to) {
            done.refused.push((to, e));
        }
        self.outbox.clear();
        // Decisions already made that act at or after `to` stay to be told; the rest is past.
        self.notices.retain(|e| e.beat().is_some_and(|b| b.0 >= to.0 - 1e-9));
        // Triggers that will never be reported (no Signal ran them) keep no metadata, except
        // those a resumed Signal will execute: what plays now and what is planned.
        let live: std::collections::HashSet<_> = self
            .plans
            .iter()
            .flat_map(|p| p.base.map(|b| b.id).into_iter().chain(p.events.iter().map(|(e, _)| e.id)))
            .collect();
        self.meta.retain(|id, _| live.contains(id));
        done
    }

    /// Brings a fresh Signal to what this Pulse plans at beat `at` (after [`fast_forward`] to
    /// `at`): every track's clip starts at `at` from the position it has reached (phase-aligned,
    /// with its original trigger id, gain and anchor), every trigger planned after `at` is sent
    /// again, and every track's mixer settings. The commands go out through
    /// [`PulseCore::poll_command`].
    ///
    /// [`fast_forward`]: PulseCore::fast_forward
    pub fn resume(&mut self, at: Beats) {
        for t in 0..self.plans.len() {
            let track = crate::model::TrackId(t as u32);
            if let Some(settings) = self.mix.get(t).copied() {
                self.outbox.push_back(Command::Mix { track, settings });
            }
            if let Some(p) = self.plans[t].base.filter(|p| p.sounding_at(at)) {
                let op = Op::Start { clip: p.clip, anchor: p.anchor, gain: p.gain };
                self.outbox.push_back(Command::Schedule(Scheduled { id: p.id, track, target: at, op }));
            }
            for (ev, _) in &self.plans[t].events {
                self.outbox.push_back(Command::Schedule(*ev));
            }
        }
    }
}
