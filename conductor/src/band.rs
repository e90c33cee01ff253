//! Band time and the band's beat, as the conductor serves them. Band time is the time since the
//! band's origin, a unix time in microseconds kept in the store the first time the set is
//! served, so after a restart on the same host band time (and the beat) continue. The beat and
//! tempo come from an engine `TempoMap` at microsecond resolution (sample rate 1 MHz) built from
//! the set's tempo and metre plus the tempo and metre changes of the log's entries.
//!
//! The clock is read here (the driver's job), never in `net-proto`: the wall clock once at
//! start, then a monotonic `Instant`.
//!
//! Thread: the session task owns the tempo map; [`BandClock`] is shared (copied) by every
//! connection task to answer pings.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loophole_engine::model::{Session, TempoChange};
use loophole_engine::time::{Beats, TempoMap};
use loophole_net_proto::conductor::Moment;

/// The tempo map's resolution: one "sample" per microsecond.
pub const RATE: u32 = 1_000_000;

/// Band time from a monotonic clock. Copy it freely.
#[derive(Debug, Clone, Copy)]
pub struct BandClock {
    start: Instant,
    at_start: Duration,
}

impl BandClock {
    /// A clock for the band whose origin is `origin_unix_us`.
    pub fn new(origin_unix_us: u64) -> BandClock {
        let start = Instant::now();
        let at_start = Duration::from_micros(unix_now_us().saturating_sub(origin_unix_us));
        BandClock { start, at_start }
    }

    /// Band time now.
    pub fn now(&self) -> Duration {
        self.at_start + self.start.elapsed()
    }

    /// The instant at which band time is `t` (now, if `t` has passed), rounded **up** to the
    /// next millisecond of band time (tokio's timer resolution): waking early would wake a core
    /// before its deadline forever.
    pub fn instant_of(&self, t: Duration) -> Instant {
        let us = t.as_micros() as u64;
        let ms_up = Duration::from_millis(us.div_ceil(1000));
        self.start + ms_up.saturating_sub(self.at_start)
    }
}

/// Unix time now in microseconds.
pub fn unix_now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The band's beat clock: band time -> beat and tempo.
pub struct BeatClock {
    map: TempoMap,
    applied: usize,
}

impl BeatClock {
    /// The clock of `session` with no changes yet.
    pub fn new(session: &Session) -> BeatClock {
        BeatClock { map: TempoMap::new(RATE, session.tempo, session.beats_per_bar), applied: 0 }
    }

    /// Takes the changes not applied yet (`changes` grows only: the sequencer's list). Returns
    /// how many were refused because the map is full.
    pub fn update(&mut self, changes: &[TempoChange]) -> usize {
        let mut refused = 0;
        for c in changes.iter().skip(self.applied) {
            if !self.map.change(c.beat, c.tempo, c.beats_per_bar) {
                refused += 1;
            }
        }
        self.applied = changes.len();
        refused
    }

    /// The conductor's present at band time `t`.
    pub fn moment(&self, t: Duration) -> Moment {
        let block = self.map.block(t.as_micros() as i64, 0);
        Moment { time: t, beat: block.beat_at_first_sample, bpm: block.tempo().0 }
    }

    /// Beats per bar at band time `t`.
    pub fn beats_per_bar(&self, t: Duration) -> f64 {
        self.map.block(t.as_micros() as i64, 0).quantum
    }
}

/// `bar.beat` (from 1) of `beat` with `beats_per_bar` (the metre in force; earlier metre changes
/// are not counted).
pub fn bar_beat(beat: Beats, beats_per_bar: f64) -> String {
    let bpb = beats_per_bar.max(1e-9);
    let bar = (beat.0 / bpb).floor();
    loophole_engine::control::bar_label(bar as i64, beat.0 - bar * bpb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::time::Bpm;

    #[test]
    fn the_beat_follows_the_tempo_changes() {
        let session = loophole_engine::demo::session();
        let mut c = BeatClock::new(&session);
        let bpm = session.tempo.0;
        let m = c.moment(Duration::from_secs(2));
        assert!((m.beat.0 - 2.0 * bpm / 60.0).abs() < 1e-6, "{m:?}");
        // Double the tempo from beat 8 on.
        c.update(&[TempoChange { beat: Beats(8.0), tempo: Some(Bpm(bpm * 2.0)), beats_per_bar: None }]);
        let at8 = Duration::from_secs_f64(8.0 * 60.0 / bpm);
        let later = c.moment(at8 + Duration::from_secs(1));
        assert!((later.beat.0 - (8.0 + 2.0 * bpm / 60.0)).abs() < 1e-3, "{later:?}");
        assert!((later.bpm - bpm * 2.0).abs() < 1e-6, "{later:?}");
        assert_eq!(bar_beat(Beats(5.0), 4.0), "2.2");
    }

    #[test]
    fn wake_ups_round_up() {
        let c = BandClock::new(unix_now_us());
        let t = Duration::from_micros(1_500_001);
        assert!(c.instant_of(t) >= c.instant_of(Duration::from_micros(1_500_000)));
        assert_eq!(c.instant_of(t), c.instant_of(Duration::from_millis(1_501)));
    }
}
