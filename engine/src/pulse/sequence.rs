//! Scene sequences and the arrangement: a playlist or playthrough stepping through its scenes,
//! and tracks following their arrangement lanes (or resuming them after a launch took them
//! over). Control thread.

use crate::model::TrackId;
use crate::queue::TriggerId;
use crate::time::Beats;

use super::core::PulseCore;
use super::event::{Cause, PulseError, PulseEvent};
use super::state::{ArrEvent, Sequence, StartSpec};

impl PulseCore {
    pub(super) fn start_sequence(&mut self, seq: Sequence, ids: &mut Vec<TriggerId>) -> Result<(), PulseError> {
        self.scene_follow = None;
        self.sequence = Some(seq);
        // The first step is launched now (it may be due before the next tick).
        let before = self.next_id;
        self.sequence_step()?;
        ids.extend((before..self.next_id).map(TriggerId));
        Ok(())
    }

    pub(super) fn sequence_step(&mut self) -> Result<(), PulseError> {
        let Some(mut seq) = self.sequence.take() else { return Ok(()) };
        let at = seq.at;
        if seq.next >= seq.steps.len() {
            if seq.looping && !seq.steps.is_empty() {
                seq.next = 0;
            } else {
                // The end: every track stops on the boundary.
                let cause = match seq.playlist {
                    Some(p) => Cause::Playlist { playlist: p, step: seq.steps.len() },
                    None => Cause::Playthrough { step: seq.steps.len() },
                };
                for t in 0..self.session.tracks.len() {
                    self.schedule_stop(TrackId(t as u32), at, None, None, cause)?;
                }
                self.set_scene(None, at);
                return Ok(());
            }
        }
        let step = seq.steps[seq.next];
        let cause = match seq.playlist {
            Some(p) => Cause::Playlist { playlist: p, step: seq.next },
            None => Cause::Playthrough { step: seq.next },
        };
        self.notices.push_back(PulseEvent::Step {
            playlist: seq.playlist,
            step: seq.next,
            scene: step.scene,
            beat: at,
        });
        self.launch_scene(step.scene, at, false, cause, false)?;
        seq.at = Beats(at.0 + self.session.scene_length(step.scene).0 * step.repeat.max(1) as f64);
        seq.next += 1;
        self.sequence = Some(seq);
        Ok(())
    }

    /// Puts a track back on its arrangement lane from `at`: the placement that covers `at`
    /// starts phase-aligned (or the track stops), and the lane's later events follow.
    pub(super) fn resume_lane(&mut self, track: TrackId, at: Beats) -> Result<Option<TriggerId>, PulseError> {
        let t = track.index();
        let lane = &self.lanes[t];
        self.lane_pos[t] = lane.partition_point(|(b, _)| b.0 < at.0 - 1e-9);
        // An event exactly at `at` is scheduled by the next tick; otherwise resume mid-placement.
        if lane.get(self.lane_pos[t]).is_some_and(|(b, _)| (b.0 - at.0).abs() <= 1e-9) {
            return Ok(None);
        }
        let covering = self
            .session
            .arrangement
            .clips
            .iter()
            .filter(|p| p.track == track && p.start.0 <= at.0 && at.0 < p.end().0)
            .max_by(|a, b| a.start.0.total_cmp(&b.start.0))
            .copied();
        match covering {
            Some(p) => {
                let spec =
                    StartSpec { anchor: Some(Beats(p.start.0 - p.offset.0)), ..StartSpec::press(Cause::Arrangement) };
                self.schedule_start(p.clip, at, spec).map(Some)
            }
            None => self.schedule_stop(track, at, None, None, Cause::Arrangement),
        }
    }

    pub(super) fn lane_event(&mut self, track: TrackId, beat: Beats, ev: ArrEvent) -> Result<(), PulseError> {
        match ev {
            ArrEvent::Start(p) => {
                let spec =
                    StartSpec { anchor: Some(Beats(p.start.0 - p.offset.0)), ..StartSpec::press(Cause::Arrangement) };
                self.schedule_start(p.clip, beat, spec)?;
            }
            ArrEvent::Stop => {
                self.schedule_stop(track, beat, None, None, Cause::Arrangement)?;
            }
        }
        Ok(())
    }
}
