//! A node's playing side in the simulation: the scheduled commands it holds, its own Pulse
//! ticked block by block as the node's control thread ticks it, and a stand-in for Signal that
//! executes each scheduled trigger exactly at its target beat and reports it back to Pulse. What
//! it records (executed triggers and follow-action decisions) is what nodes compare.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use loophole_engine::control::{ControlCommand, Resolved};
use loophole_engine::model::Session;
use loophole_engine::pulse::{CommandId, Press, PulseCore, PulseEvent, When};
use loophole_engine::queue::{Command, Report, Scheduled};
use loophole_engine::time::Beats;

/// How far ahead of the audio a node ticks Pulse, in beats.
pub const HORIZON: f64 = 0.2;

/// One entry of the log as the node holds it.
#[derive(Debug, Clone)]
pub struct Held {
    pub seq: u64,
    pub id: u64,
    pub beat: Beats,
    pub command: ControlCommand,
}

/// An executed trigger or a decision, as compared between nodes (target beats in micro-beats).
pub type Record = (i64, String);

pub struct App {
    session: Arc<Session>,
    pulse: PulseCore,
    /// Every entry received, by seq (for a rebuild).
    pub log: BTreeMap<u64, Held>,
    /// Entries not yet pressed, in the order they are made: by target, then seq.
    held: BTreeMap<(i64, u64), Held>,
    /// Pulse is ticked up to here.
    ticked: Beats,
    /// Signal's pending triggers.
    pending: BTreeMap<u64, Scheduled>,
    /// Executed triggers and decisions (by their beat).
    pub records: Vec<Record>,
    /// Command ids pressed into the current Pulse.
    pub applied: HashSet<u64>,
    /// Records before this beat come from before the last rebuild (not compared).
    pub live_from: Beats,
    pub needs_rebuild: bool,
    pub rebuilds: usize,
    /// Entries that arrived after Pulse had passed their target.
    pub late: usize,
    pub local_presses: usize,
}

fn micro(b: Beats) -> i64 {
    (b.0 * 1e6).round() as i64
}

impl App {
    pub fn new(session: Arc<Session>) -> App {
        App {
            pulse: PulseCore::new(session.clone()),
            session,
            log: BTreeMap::new(),
            held: BTreeMap::new(),
            ticked: Beats::ZERO,
            pending: BTreeMap::new(),
            records: Vec::new(),
            applied: HashSet::new(),
            live_from: Beats(-1.0),
            needs_rebuild: false,
            rebuilds: 0,
            late: 0,
            local_presses: 0,
        }
    }

    /// A scheduled command from the client.
    pub fn schedule(&mut self, e: Held) {
        assert!(!self.log.contains_key(&e.seq), "seq {} handed on twice", e.seq);
        assert!(self.log.values().all(|h| h.id != e.id), "id {} handed on twice", e.id);
        if e.beat.0 < self.ticked.0 {
            // Pulse is past its target: playing it now would not be what the band plays.
            self.late += 1;
            self.needs_rebuild = true;
        } else {
            self.held.insert((micro(e.beat), e.seq), e.clone());
        }
        self.log.insert(e.seq, e);
    }

    /// A press made while the conductor is unreachable: this node only.
    pub fn local(&mut self, command: &ControlCommand, beat: Beats) {
        if let Ok(Resolved::Pulse(action)) = command.resolve(&self.session) {
            let _ = self.pulse.press_when(action, When::Pressed, beat.max_of(self.ticked));
            self.local_presses += 1;
            self.needs_rebuild = true;
        }
    }

    /// Starts again from the band's log at beat `at` (the audio position): fast-forward through
    /// every entry before it, resume a fresh Signal there.
    pub fn rebuild(&mut self, at: Beats) {
        let mut pulse = PulseCore::new(self.session.clone());
        let mut presses = Vec::new();
        self.applied.clear();
        self.held.clear();
        for h in self.log.values() {
            if h.beat.0 < at.0 {
                if let Ok(Resolved::Pulse(action)) = h.command.resolve(&self.session) {
                    let when = When::At { beat: h.beat, id: CommandId(h.id) };
                    presses.push(Press { beat: h.beat, action, when });
                }
                assert!(self.applied.insert(h.id));
            } else {
                self.held.insert((micro(h.beat), h.seq), h.clone());
            }
        }
        presses.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0));
        pulse.fast_forward(&presses, at);
        pulse.resume(at);
        self.pulse = pulse;
        self.pending.clear();
        self.records.retain(|r| r.0 < micro(at));
        self.ticked = at;
        self.live_from = at;
        self.needs_rebuild = false;
        self.rebuilds += 1;
    }

    /// One block: the audio is at beat `now`; Pulse is ticked to `now + HORIZON`, pressing each
    /// held entry at its target on the way; Signal executes what is due before `now`.
    pub fn step(&mut self, now: Beats) {
        let horizon = Beats(now.0 + HORIZON).max_of(self.ticked);
        while let Some((_, h)) = self.held.first_key_value() {
            if h.beat.0 >= horizon.0 {
                break;
            }
            let (_, h) = self.held.pop_first().expect("checked");
            let _ = self.pulse.tick(h.beat, h.beat);
            self.ticked = h.beat.max_of(self.ticked);
            if let Ok(Resolved::Pulse(action)) = h.command.resolve(&self.session) {
                let _ = self.pulse.press_when(action, When::At { beat: h.beat, id: CommandId(h.id) }, h.beat);
            }
            assert!(self.applied.insert(h.id), "command {} pressed twice", h.id);
            self.drain();
        }
        let _ = self.pulse.tick(self.ticked, horizon);
        self.ticked = horizon;
        self.drain();
        let due: Vec<u64> = self.pending.iter().filter(|(_, s)| s.target.0 < now.0).map(|(id, _)| *id).collect();
        for id in due {
            let event = self.pending.remove(&id).expect("due");
            let tempo = 120.0;
            let sample = (event.target.0 * 60.0 / tempo * 48_000.0).round() as i64;
            self.pulse.handle_report(Report::Executed { event, beat: event.target, sample, tempo, late: false });
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(c) = self.pulse.poll_command() {
            match c {
                Command::Schedule(s) => {
                    self.pending.insert(s.id.0, s);
                }
                Command::Cancel { id } => {
                    self.pending.remove(&id.0);
                }
                Command::Mix { .. } | Command::Panic => {}
            }
        }
        while let Some(e) = self.pulse.poll_event() {
            match &e {
                PulseEvent::Executed { target, .. } => self.records.push((micro(*target), format!("{e:?}"))),
                PulseEvent::Follow { beat, .. } | PulseEvent::Step { beat, .. } => {
                    self.records.push((micro(*beat), format!("{e:?}")))
                }
                _ => {}
            }
        }
    }

    /// The records after beat `from`, in order.
    pub fn after(&self, from: Beats) -> Vec<Record> {
        let mut r: Vec<Record> = self.records.iter().filter(|r| r.0 > micro(from)).cloned().collect();
        r.sort();
        r
    }
}

trait MaxOf {
    fn max_of(self, other: Beats) -> Beats;
}

impl MaxOf for Beats {
    fn max_of(self, other: Beats) -> Beats {
        Beats(self.0.max(other.0))
    }
}
