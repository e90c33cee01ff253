//! Committing a recorded launcher performance (the triggers Pulse reported) to the arrangement.
//! Control thread.

use crate::model::{ClipId, Placement, Session, TrackId};
use crate::time::Beats;

use super::event::{PulseEvent, TriggerKind};

impl Session {
    /// Commits a recorded launcher performance (the executed triggers Pulse reported, in order)
    /// to the arrangement: every start becomes a placement on its track, from its target beat
    /// to the track's next trigger (or `end`), at the position the clip was at (legato and late
    /// starts included). Returns how many placements were added.
    pub fn commit_performance(&mut self, events: &[PulseEvent], end: Beats) -> usize {
        let mut open: Vec<Option<(ClipId, Beats, Beats)>> = vec![None; self.tracks.len()];
        let mut placed = Vec::new();
        let mut close = |slot: &mut Option<(ClipId, Beats, Beats)>, at: Beats, track: TrackId| {
            if let Some((clip, start, anchor)) = slot.take()
                && at.0 > start.0
            {
                placed.push(Placement {
                    track,
                    clip,
                    start,
                    length: Beats(at.0 - start.0),
                    offset: Beats(start.0 - anchor.0),
                });
            }
        };
        for e in events {
            if let PulseEvent::Executed { kind, track, clip, anchor, target, .. } = e {
                if matches!(kind, TriggerKind::RecordStart | TriggerKind::RecordStop) {
                    continue; // recording does not change what a track plays
                }
                let Some(slot) = open.get_mut(track.index()) else { continue };
                close(slot, *target, *track);
                if *kind != TriggerKind::Stop
                    && let (Some(clip), Some(anchor)) = (clip, anchor)
                {
                    *slot = Some((*clip, *target, *anchor));
                }
            }
        }
        for (t, slot) in open.iter_mut().enumerate() {
            close(slot, end, TrackId(t as u32));
        }
        let n = placed.len();
        self.arrangement.clips.extend(placed);
        n
    }
}
