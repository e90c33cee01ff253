//! Where a node joining a band starts: the band's timeline is a pure function of the set and the
//! log (the set's tempo and metre, changed by the tempo and scene-tempo entries at their beats),
//! counted from the conductor's origin. A node that starts at band time `t` starts at band
//! sample `S0 = ceil(t · rate)`, at the beat the band's tempo map gives there, with Pulse
//! fast-forwarded through every entry before that beat. So every node's sample `s` is the band's
//! sample `s`, and an entry executes on the same beat and the same sample number everywhere.
//!
//! Pure: no clock, no socket. Thread: control, before the audio starts.

use std::sync::Arc;
use std::time::Duration;

use loophole_engine::model::{Session, TempoChange};
use loophole_engine::pulse::{Press, PulseCore};
use loophole_engine::time::{Beats, SampleTime, TempoMap};

use super::log::BandLog;

/// Where and how a node joins the band.
#[derive(Debug, Clone, PartialEq)]
pub struct StartPoint {
    /// The band sample of the node's first sample.
    pub sample: SampleTime,
    /// The band's beat there.
    pub beat: Beats,
    /// The tempo and metre changes of the way (the band's tempo map up to `beat`).
    pub tempo_changes: Vec<TempoChange>,
    /// The presses to fast-forward through ([`loophole_engine::pulse::Pulse::join`]).
    pub presses: Vec<Press>,
}

impl StartPoint {
    /// The tempo map the node's audio core starts with: the set's tempo and metre and every
    /// change before the start.
    pub fn tempo_map(&self, session: &Session, rate: u32) -> TempoMap {
        map_of(session, rate, &self.tempo_changes)
    }
}

fn map_of(session: &Session, rate: u32, changes: &[TempoChange]) -> TempoMap {
    let mut map = TempoMap::new(rate, session.tempo, session.beats_per_bar);
    for c in changes {
        map.change(c.beat, c.tempo, c.beats_per_bar);
    }
    map
}

/// The start point for a node whose first sample is heard at band time `at`, at `rate`.
///
/// The tempo changes before the start decide which beat the start is at, and the start decides
/// which entries are before it: this settles by iteration (a change moves the start's beat, which
/// can only bring in changes at earlier beats than the ones already counted, so it stops after
/// as many rounds as there are changes, and in practice after one or two).
pub fn start_point(session: &Arc<Session>, log: &BandLog, at: Duration, rate: u32) -> StartPoint {
    let sample = (at.as_secs_f64() * rate as f64).ceil() as SampleTime;
    let mut changes: Vec<TempoChange> = Vec::new();
    for _ in 0..=log.len() + 1 {
        let beat = map_of(session, rate, &changes).block(sample, 0).beat_at_first_sample;
        let presses = log.presses_before(beat, session);
        let mut probe = PulseCore::new(session.clone());
        probe.fast_forward(&presses, beat);
        let found: Vec<TempoChange> = probe.take_tempo_changes().into_iter().filter(|c| c.beat.0 < beat.0).collect();
        if found == changes {
            return StartPoint { sample, beat, tempo_changes: changes, presses };
        }
        changes = found;
    }
    // Unreachable in practice (see above); the last round's answer is still consistent with
    // its own changes.
    let beat = map_of(session, rate, &changes).block(sample, 0).beat_at_first_sample;
    let presses = log.presses_before(beat, session);
    StartPoint { sample, beat, tempo_changes: changes, presses }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::band::log::Entry;
    use loophole_engine::control::ControlCommand;
    use loophole_engine::demo;

    fn entry(seq: u64, target: f64, command: ControlCommand) -> Entry {
        Entry { seq, id: seq, target: Beats(target), command, origin: "ctl".into() }
    }

    #[test]
    fn without_entries_the_start_is_the_sets_tempo_from_the_origin() {
        let session = Arc::new(demo::session());
        let p = start_point(&session, &BandLog::new(), Duration::from_secs(10), 48_000);
        assert_eq!(p.sample, 480_000);
        let expected = 10.0 * session.tempo.0 / 60.0;
        assert!((p.beat.0 - expected).abs() < 1e-9, "{} vs {expected}", p.beat.0);
        assert!(p.presses.is_empty() && p.tempo_changes.is_empty());
    }

    #[test]
    fn a_tempo_change_in_the_log_moves_the_start() {
        let session = Arc::new(demo::session());
        let bpm = session.tempo.0;
        let mut log = BandLog::new();
        let scene = session.scenes[0].id.clone();
        log.push(entry(1, 4.0, ControlCommand::SceneTrigger { scene, quantise: None, mode: None }));
        log.push(entry(2, 8.0, ControlCommand::Tempo { bpm: bpm * 2.0 }));
        let rate = 48_000;
        let p = start_point(&session, &log, Duration::from_secs(20), rate);
        // 8 beats at the set's tempo, then double speed.
        let t8 = 8.0 * 60.0 / bpm;
        let expected = 8.0 + (20.0 - t8) * 2.0 * bpm / 60.0;
        assert!((p.beat.0 - expected).abs() < 1e-3, "{} vs {expected}", p.beat.0);
        assert_eq!(p.presses.len(), 2);
        assert_eq!(p.tempo_changes.len(), 1);
        let map = p.tempo_map(&session, rate);
        assert!((map.block(p.sample, 0).beat_at_first_sample.0 - p.beat.0).abs() < 1e-12);
    }

    #[test]
    fn two_nodes_starting_at_different_times_agree_on_the_beat_of_every_sample() {
        let session = Arc::new(demo::session());
        let mut log = BandLog::new();
        log.push(entry(1, 6.0, ControlCommand::Tempo { bpm: 97.0 }));
        let a = start_point(&session, &log, Duration::from_millis(4_000), 44_100);
        let b = start_point(&session, &log, Duration::from_millis(9_123), 44_100);
        let (ma, mb) = (a.tempo_map(&session, 44_100), b.tempo_map(&session, 44_100));
        for s in [b.sample, b.sample + 1, b.sample + 100_000] {
            assert_eq!(ma.block(s, 0).beat_at_first_sample, mb.block(s, 0).beat_at_first_sample);
        }
    }
}
