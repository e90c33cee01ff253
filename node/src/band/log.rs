//! The band's log as this node holds it: every entry the conductor sequenced (from its client's
//! [`NodeEvent::ScheduleAt`](loophole_net_proto::node::NodeEvent)), held until Pulse's horizon
//! reaches its target and then released in (target, seq) order, the order every node and the
//! conductor make entries in. It also gives the presses a node that joins at a beat
//! fast-forwards through ([`BandLog::presses_before`]).
//!
//! Sans-IO and pure: no clock, no socket; the control thread drives it. Thread: control.

use std::collections::BTreeMap;

use loophole_engine::control::{ControlCommand, Resolved};
use loophole_engine::model::Session;
use loophole_engine::pulse::{CommandId, Press, When};
use loophole_engine::time::Beats;

/// One entry of the band's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its place in the log.
    pub seq: u64,
    /// Command id (what the triggers it schedules report).
    pub id: u64,
    /// The beat every node makes it at.
    pub target: Beats,
    /// What it does.
    pub command: ControlCommand,
    /// Who pressed it.
    pub origin: String,
}

/// What became of an entry handed to [`BandLog::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held until its target comes within the horizon.
    Held,
    /// Pulse is already past its target: make it now (Signal starts it phase-aligned and
    /// reports it late).
    Late,
    /// Already held or made (a resend): nothing to do.
    Duplicate,
}

/// Orders entries by target, then seq (targets compared as integers of micro-beats so the map
/// has a total order).
fn key(target: Beats, seq: u64) -> (i64, u64) {
    ((target.0 * 1e6).round() as i64, seq)
}

/// The band's log at this node. See the module docs.
#[derive(Debug, Default)]
pub struct BandLog {
    entries: BTreeMap<u64, Entry>,
    held: BTreeMap<(i64, u64), u64>,
    /// The beat Pulse has been ticked to (nothing before it can be made in order any more).
    ticked: Beats,
    late: u64,
}

impl BandLog {
    /// An empty log.
    pub fn new() -> BandLog {
        BandLog::default()
    }

    /// Takes an entry. Before the node starts playing ([`BandLog::start_at`]) every entry is held.
    pub fn push(&mut self, entry: Entry) -> Pushed {
        if self.entries.contains_key(&entry.seq) {
            return Pushed::Duplicate;
        }
        let (seq, target) = (entry.seq, entry.target);
        self.entries.insert(seq, entry);
        if target.0 < self.ticked.0 {
            self.late += 1;
            return Pushed::Late;
        }
        self.held.insert(key(target, seq), seq);
        Pushed::Held
    }

    /// The node starts playing at beat `at`: the entries before it are the past (they are
    /// fast-forwarded through, [`BandLog::presses_before`]) and are no longer held.
    pub fn start_at(&mut self, at: Beats) {
        self.held.retain(|(t, _), _| *t >= key(at, 0).0);
        self.ticked = at;
    }

    /// The entries to make before Pulse is ticked to `horizon`, in (target, seq) order, each
    /// once. Afterwards an entry with a target before `horizon` is late.
    pub fn release(&mut self, horizon: Beats) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some((&(t, seq), _)) = self.held.first_key_value() {
            if t >= key(horizon, 0).0 {
                break;
            }
            self.held.pop_first();
            out.push(self.entries[&seq].clone());
        }
        self.ticked = Beats(self.ticked.0.max(horizon.0));
        out
    }

    /// The presses of every entry with a target before `at`, in (target, seq) order, for
    /// [`loophole_engine::pulse::Pulse::join`]: each made exactly at its target. Entries that no
    /// longer resolve against `session` (or only move the transport) are left out, as the
    /// conductor's own Pulse leaves them out.
    pub fn presses_before(&self, at: Beats, session: &Session) -> Vec<Press> {
        let mut entries: Vec<&Entry> = self.entries.values().filter(|e| e.target.0 < at.0).collect();
        entries.sort_by_key(|e| key(e.target, e.seq));
        entries
            .into_iter()
            .filter_map(|e| match e.command.resolve(session) {
                Ok(Resolved::Pulse(action)) => {
                    Some(Press { beat: e.target, action, when: When::At { beat: e.target, id: CommandId(e.id) } })
                }
                _ => None,
            })
            .collect()
    }

    /// Entries held (not yet made).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Entries known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entry yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries that arrived after Pulse had passed their target.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// The entry with command id `id`.
    pub fn by_id(&self, id: u64) -> Option<&Entry> {
        // Ids are seqs in a conductor's log; look there first.
        self.entries.get(&id).filter(|e| e.id == id).or_else(|| self.entries.values().find(|e| e.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::demo;

    fn entry(seq: u64, target: f64, command: ControlCommand) -> Entry {
        Entry { seq, id: seq, target: Beats(target), command, origin: "ctl".into() }
    }

    fn scene(name: &str) -> ControlCommand {
        ControlCommand::SceneTrigger { scene: name.into(), quantise: None, mode: None }
    }

    #[test]
    fn entries_are_released_in_target_order_once() {
        let mut log = BandLog::new();
        assert_eq!(log.push(entry(1, 16.0, scene("a"))), Pushed::Held);
        assert_eq!(log.push(entry(2, 14.5, scene("b"))), Pushed::Held);
        assert_eq!(log.push(entry(3, 14.5, scene("c"))), Pushed::Held);
        assert_eq!(log.push(entry(2, 14.5, scene("b"))), Pushed::Duplicate);
        assert!(log.release(Beats(14.5)).is_empty(), "a target at the horizon waits");
        let seqs: Vec<u64> = log.release(Beats(20.0)).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3, 1]);
        assert!(log.release(Beats(40.0)).is_empty());
        assert_eq!(log.held(), 0);
    }

    #[test]
    fn an_entry_behind_the_horizon_is_late() {
        let mut log = BandLog::new();
        log.release(Beats(8.0));
        assert_eq!(log.push(entry(1, 7.5, scene("a"))), Pushed::Late);
        assert_eq!(log.late(), 1);
        assert_eq!(log.push(entry(2, 8.0, scene("a"))), Pushed::Held);
    }

    #[test]
    fn a_joiner_fast_forwards_the_past_and_holds_the_rest() {
        let session = demo::session();
        let scenes: Vec<String> = session.scenes.iter().map(|s| s.id.clone()).collect();
        let mut log = BandLog::new();
        log.push(entry(1, 4.0, scene(&scenes[0])));
        log.push(entry(2, 12.0, scene(&scenes[1])));
        log.push(entry(3, 40.0, scene(&scenes[0])));
        log.push(entry(4, 2.0, ControlCommand::TransportStart));
        let presses = log.presses_before(Beats(32.0), &session);
        assert_eq!(presses.iter().map(|p| p.beat.0).collect::<Vec<_>>(), [4.0, 12.0]);
        assert!(matches!(presses[1].when, When::At { id: CommandId(2), .. }));
        log.start_at(Beats(32.0));
        assert_eq!(log.held(), 1);
        assert_eq!(log.release(Beats(64.0))[0].seq, 3);
        assert_eq!(log.by_id(3).map(|e| e.target), Some(Beats(40.0)));
    }
}
