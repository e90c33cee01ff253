//! Pulse's side of recording: which tracks are armed, which takes are open, and how
//! `record.start`, `record.stop` and launcher recording into a slot resolve to exact beats
//! (quantised like launches: the next bar unless told otherwise). The takes reach Signal as
//! scheduled [`Op::RecordStart`] / [`Op::RecordStop`] events, so they begin and end on exact
//! samples whatever the block size. Control thread.

use crate::model::{SceneId, TrackId, TrackInput};
use crate::queue::{Op, Scheduled, TakeId, TriggerId};
use crate::time::{Beats, Quantise};

use super::core::PulseCore;
use super::event::{Cause, PulseError, TriggerKind};
use super::record_plan::{MAX_RECORD_BARS, OpenTake, RecordAction};
use super::state::Meta;

impl PulseCore {
    /// The tracks armed for recording.
    pub fn armed(&self) -> Vec<TrackId> {
        (0..self.record.armed.len()).filter(|&t| self.record.armed[t]).map(|t| TrackId(t as u32)).collect()
    }

    /// The take recording (or about to) on `track`, with its start beat and, once known, its
    /// stop beat.
    pub fn open_take(&self, track: TrackId) -> Option<(TakeId, Beats, Option<Beats>)> {
        self.record.open.get(track.index()).copied().flatten().map(|t| (t.take, t.start, t.stop))
    }

    pub(super) fn record(
        &mut self,
        action: RecordAction,
        now: Beats,
        ids: &mut Vec<TriggerId>,
    ) -> Result<(), PulseError> {
        self.record.fold(now);
        match action {
            RecordAction::Arm { track, on } => {
                self.recordable(track)?;
                self.record.armed[track.index()] = on;
            }
            RecordAction::Start { quantise } => {
                let target = self.quantised(now, quantise.unwrap_or(Quantise::Bar).resolve(None, self.quantise));
                let armed = self.armed();
                if armed.is_empty() {
                    return Err(PulseError::NothingArmed);
                }
                for track in armed {
                    // A track records a new take unless one is recording at the target (a take
                    // whose stop comes by then leaves room for the next).
                    let busy =
                        self.record.open[track.index()].is_some_and(|o| o.stop.is_none_or(|s| s.0 > target.0 + 1e-9));
                    if !busy {
                        ids.push(self.record_start(track, target, None, None));
                    }
                }
            }
            RecordAction::Stop { quantise } => {
                let target = self.quantised(now, quantise.unwrap_or(Quantise::Bar).resolve(None, self.quantise));
                let mut any = false;
                for t in 0..self.record.open.len() {
                    let Some(open) = self.record.open[t] else { continue };
                    any = true;
                    if open.stop.is_some() {
                        continue; // its stop is scheduled already (a fixed length or an earlier stop)
                    }
                    // A stop pressed before the take began ends it where it begins: an empty take.
                    let at = Beats(target.0.max(open.start.0));
                    ids.push(self.record_stop(TrackId(t as u32), open, at));
                }
                if !any {
                    return Err(PulseError::NotRecording);
                }
            }
            RecordAction::IntoSlot { track, scene, bars } => {
                self.recordable(track)?;
                if scene.index() >= self.session.scenes.len() {
                    return Err(PulseError::NoSuchScene(scene.0));
                }
                let busy = |why| PulseError::SlotBusy { track: track.0, scene: scene.0, why };
                if self.session.scene(scene).clips.iter().any(|c| self.session.clip(*c).track == track) {
                    return Err(busy("the slot holds a clip; record into an empty slot"));
                }
                if self.record.open[track.index()].is_some() {
                    return Err(busy("the track is recording already"));
                }
                if bars.is_some_and(|b| b == 0 || b > MAX_RECORD_BARS) {
                    return Err(PulseError::BadLength);
                }
                let target = self.quantised(now, Quantise::Bar.resolve(None, self.quantise));
                let until = bars.map(|b| Beats(target.0 + f64::from(b) * self.beats_per_bar_at(target)));
                let start = self.record_start(track, target, Some(scene), until);
                ids.push(start);
                if let (Some(until), Some(open)) = (until, self.record.open[track.index()]) {
                    ids.push(self.record_stop(track, open, until));
                }
            }
        }
        Ok(())
    }

    fn recordable(&self, track: TrackId) -> Result<(), PulseError> {
        match self.session.tracks.get(track.index()) {
            None => Err(PulseError::NoSuchTrack(track.0)),
            Some(t) if matches!(t.input, Some(TrackInput::Audio { .. })) => Ok(()),
            Some(_) => Err(PulseError::NoInput(track.0)),
        }
    }

    fn record_start(
        &mut self,
        track: TrackId,
        target: Beats,
        slot: Option<SceneId>,
        until: Option<Beats>,
    ) -> TriggerId {
        self.record.last_take += 1;
        let take = TakeId(self.record.last_take);
        let id = self.next_id();
        let ev = Scheduled { id, track, target, op: Op::RecordStart { take, slot, until } };
        self.send(ev, record_meta(TriggerKind::RecordStart, slot));
        self.record.open[track.index()] = Some(OpenTake { take, start: target, stop: None, slot });
        id
    }

    fn record_stop(&mut self, track: TrackId, open: OpenTake, at: Beats) -> TriggerId {
        let id = self.next_id();
        let ev = Scheduled { id, track, target: at, op: Op::RecordStop { take: open.take } };
        self.send(ev, record_meta(TriggerKind::RecordStop, open.slot));
        self.record.open[track.index()] = Some(OpenTake { stop: Some(at), ..open });
        id
    }
}

fn record_meta(kind: TriggerKind, slot: Option<SceneId>) -> Meta {
    Meta { kind, clip: None, scene: slot, cause: Cause::Press, command: None }
}
