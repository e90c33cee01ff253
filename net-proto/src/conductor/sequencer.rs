//! The sequencer: turns a press into the next entry of the band's log. It validates the command
//! against the set ([`ControlCommand::resolve`]), resolves its target beat with the conductor's
//! own Pulse (no Signal), appends the entry, and keeps that Pulse in step with the log.
//!
//! **Target beat.** A press made at beat `b` with lead `l` is resolved as if pressed at
//! `e = b + l`: a probe (a clone of the conductor's Pulse, with every entry whose target is at or
//! before `e` pressed at its target) presses it there, and the target is the earliest target of
//! the triggers it schedules (so clip, scene and global quantisation, scene time signatures,
//! section-end stops and legato all resolve as Pulse does); a press that schedules no trigger (a
//! tempo, a mixer change, stopping a silent track, the transport) takes `e`.
//!
//! **Order.** Entries are made, on every node and here, in the order of their targets, ties by
//! seq: a bar-quantised scene launch pressed before an unquantised clip launch may execute after
//! it. The conductor's Pulse makes each entry exactly at its target ([`When::At`]) once the
//! band's beat reaches it ([`Sequencer::compact`]), as every node does.
//!
//! Thread: the conductor's session thread (inside [`super::Conductor`]); allocates, never blocks.

use std::collections::HashMap;
use std::sync::Arc;

use loophole_engine::control::{ControlCommand, Resolved};
use loophole_engine::model::{Session, TempoChange};
use loophole_engine::pulse::{Action, CommandId, PulseCore, When};
use loophole_engine::queue::Command;
use loophole_engine::time::Beats;

use crate::v1::{PressRefusal, ScheduledCommand};

/// Who made a press: origin name, incarnation and press id. A press is sequenced once.
pub type PressKey = (String, u64, u64);

/// The log and the Pulse that follows it. See the module docs.
pub struct Sequencer {
    pulse: PulseCore,
    log: Vec<ScheduledCommand>,
    pressed: HashMap<PressKey, u64>,
    /// Entries not yet made in `pulse`, in (target, seq) order.
    pending: Vec<(Beats, u64, Action)>,
    /// The tempo and time-signature changes the entries schedule, in the order found.
    tempo_changes: Vec<TempoChange>,
}

impl Sequencer {
    /// A sequencer for `session` with an empty log.
    pub fn new(session: Arc<Session>) -> Sequencer {
        Sequencer {
            pulse: PulseCore::new(session),
            log: Vec::new(),
            pressed: HashMap::new(),
            pending: Vec::new(),
            tempo_changes: Vec::new(),
        }
    }

    /// A sequencer that continues `log` (as a durable store gives it back after a restart): its
    /// Pulse makes every entry again at its target as time passes. Entries that no longer
    /// resolve against `session` keep their place in the log (nodes hold them) but change
    /// nothing here.
    pub fn restore(session: Arc<Session>, log: Vec<ScheduledCommand>) -> Sequencer {
        let mut s = Sequencer::new(session);
        for entry in log {
            if let Ok(Resolved::Pulse(action)) = entry.command.resolve(s.pulse.session()) {
                s.hold(Beats(entry.target_beat), entry.seq, action);
            }
            s.pressed.insert((entry.origin.clone(), entry.incarnation, entry.press), entry.seq);
            s.log.push(entry);
        }
        // The tempo changes the entries schedule: one probe makes them all at their targets.
        let mut probe = s.pulse.clone();
        Sequencer::make(&mut probe, &s.pending, Beats(f64::MAX), true);
        s.tempo_changes = probe.take_tempo_changes();
        s
    }

    /// The tempo and time-signature changes the log's entries schedule (a tempo command, a
    /// scene with its own tempo or time signature), each at the beat it applies: the driver
    /// builds its beat clock from the set's tempo and these. After a restore they are the
    /// entries' changes at once; as the band's beat passes, the changes its Pulse really makes
    /// (follow actions and playlists launching scenes with their own tempo included) are added,
    /// each once, at their beats.
    pub fn tempo_changes(&self) -> &[TempoChange] {
        &self.tempo_changes
    }

    fn hold(&mut self, target: Beats, seq: u64, action: Action) {
        let at = self.pending.partition_point(|(t, s, _)| (t.0, *s) < (target.0, seq));
        self.pending.insert(at, (target, seq, action));
    }

    /// Makes the held entries with a target before `to` (or at it, with `inclusive`) in `pulse`.
    fn make(pulse: &mut PulseCore, pending: &[(Beats, u64, Action)], to: Beats, inclusive: bool) -> usize {
        let mut made = 0;
        for (target, seq, action) in pending {
            if target.0 > to.0 || (!inclusive && target.0 == to.0) {
                break;
            }
            let _ = pulse.tick(*target, *target);
            let _ = pulse.press_when(*action, When::At { beat: *target, id: CommandId(*seq) }, *target);
            made += 1;
        }
        made
    }

    /// The log, in sequence order (entry `n` has seq `n + 1`).
    pub fn log(&self) -> &[ScheduledCommand] {
        &self.log
    }

    /// The last sequence number (0: empty log).
    pub fn head(&self) -> u64 {
        self.log.len() as u64
    }

    /// The entry with sequence number `seq`.
    pub fn entry(&self, seq: u64) -> Option<&ScheduledCommand> {
        seq.checked_sub(1).and_then(|i| self.log.get(i as usize))
    }

    /// The sequence number a press already got, if it was sequenced.
    pub fn sequenced(&self, key: &PressKey) -> Option<u64> {
        self.pressed.get(key).copied()
    }

    /// The conductor's Pulse (what plays, for displays and status).
    pub fn pulse(&self) -> &PulseCore {
        &self.pulse
    }

    /// Sequences a press made at beat `now`, executing no earlier than `now + lead`. Returns the
    /// new entry, or why the press is refused (nothing is appended then).
    pub fn sequence(
        &mut self,
        now: Beats,
        lead: Beats,
        command: ControlCommand,
        key: PressKey,
    ) -> Result<&ScheduledCommand, PressRefusal> {
        let resolved = command.resolve(self.pulse.session()).map_err(|e| PressRefusal::Invalid(e.to_string()))?;
        let earliest = Beats(now.0 + lead.0);
        let target = match resolved {
            Resolved::Transport(_) => earliest,
            Resolved::Pulse(action) => {
                let mut probe = self.pulse.clone();
                Sequencer::make(&mut probe, &self.pending, earliest, true);
                let _ = probe.tick(earliest, earliest);
                while probe.poll_command().is_some() {}
                let ids = probe.press(action, earliest).map_err(|e| PressRefusal::Invalid(e.to_string()))?;
                let mut target: Option<f64> = None;
                while let Some(c) = probe.poll_command() {
                    if let Command::Schedule(s) = c
                        && ids.contains(&s.id)
                    {
                        target = Some(target.map_or(s.target.0, |t| t.min(s.target.0)));
                    }
                }
                let target = Beats(target.unwrap_or(earliest.0).max(earliest.0));
                self.hold(target, self.head() + 1, action);
                target
            }
        };
        let seq = self.head() + 1;
        self.pressed.insert(key.clone(), seq);
        let (origin, incarnation, press) = key;
        self.log.push(ScheduledCommand { id: seq, seq, target_beat: target.0, command, origin, incarnation, press });
        Ok(self.log.last().expect("just pushed"))
    }

    /// Brings the conductor's Pulse to the band's beat `now`: makes the entries whose targets
    /// have come, and lets it forget what is behind (it runs no Signal, so nothing else would).
    /// Called as time passes; `now` never goes back.
    pub fn compact(&mut self, now: Beats) {
        let made = Sequencer::make(&mut self.pulse, &self.pending, now, false);
        self.pending.drain(..made);
        self.pulse.fast_forward(&[], now);
        self.drain();
    }

    fn drain(&mut self) {
        while self.pulse.poll_command().is_some() {}
        while self.pulse.poll_event().is_some() {}
        // The changes the band really made (entries, and the scene tempos that follow actions
        // and playlists launch), each once: the beat clock takes them as they come.
        for c in self.pulse.take_tempo_changes() {
            if !self.tempo_changes.contains(&c) {
                self.tempo_changes.push(c);
            }
        }
    }
}
