//! Edits of a session's arrangement: committing scenes as the playthrough plays them, and moving
//! or duplicating a launcher clip onto a lane. Control thread (they allocate).

use super::arrangement::{PlaceError, Placement, TempoChange};
use super::clip::clip_kind;
use super::ids::{ClipId, SceneId, TrackId};
use super::scene::EmptySlot;
use super::session::Session;
use crate::time::Beats;

impl Session {
    /// Commits scenes `from..=to`, played in order as the playthrough preview plays them, to the
    /// arrangement starting at beat `at`: each scene lasts its length (its longest clip), shorter
    /// clips loop inside it, tracks a scene has no clip for stop or continue as the scene says
    /// (or keep playing, if the track is set to), and scene tempos become tempo changes. Lanes
    /// are the tracks. Returns the beat where the committed part ends.
    ///
    /// Rendering the arrangement afterwards sounds exactly like rendering the playthrough.
    pub fn commit_scenes(&mut self, from: SceneId, to: SceneId, at: Beats) -> Beats {
        let (lo, hi) = (from.0.min(to.0), from.0.max(to.0).min(self.scenes.len().saturating_sub(1) as u32));
        // The placement open on each lane: (clip, start).
        let mut open: Vec<Option<(ClipId, Beats)>> = vec![None; self.tracks.len()];
        let mut placed = Vec::new();
        let mut t = at;
        let close = |open: &mut Option<(ClipId, Beats)>, end: Beats, track: usize, placed: &mut Vec<Placement>| {
            if let Some((clip, start)) = open.take()
                && end.0 > start.0
            {
                placed.push(Placement {
                    track: TrackId(track as u32),
                    clip,
                    start,
                    length: Beats(end.0 - start.0),
                    offset: Beats::ZERO,
                });
            }
        };
        for i in lo..=hi {
            let scene = self.scene(SceneId(i)).clone();
            for (track, slot) in open.iter_mut().enumerate() {
                let clip = scene.clips.iter().copied().find(|c| self.clip(*c).track.index() == track);
                match clip {
                    Some(c) => {
                        close(slot, t, track, &mut placed);
                        // A one-shot plays once inside its placement.
                        *slot = Some((c, t));
                    }
                    None if scene.empty_slots == EmptySlot::Stop && !self.tracks[track].keep_playing => {
                        close(slot, t, track, &mut placed);
                    }
                    None => {}
                }
            }
            if scene.tempo.is_some() || scene.beats_per_bar.is_some() {
                self.arrangement.tempo.push(TempoChange {
                    beat: t,
                    tempo: scene.tempo,
                    beats_per_bar: scene.beats_per_bar,
                });
            }
            t = Beats(t.0 + self.scene_length(SceneId(i)).0);
        }
        for (track, slot) in open.iter_mut().enumerate() {
            close(slot, t, track, &mut placed);
        }
        self.arrangement.clips.extend(placed);
        self.arrangement.tempo.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0));
        t
    }

    /// Moves a launcher clip onto the arrangement at `start` on lane `track` (the clip keeps its
    /// id and leaves the launcher's scenes), or duplicates it (`duplicate = true`: a new clip with
    /// id `<id>-copy`, `<id>-copy2`, ... is placed and the original stays in the launcher).
    /// Returns the clip that was placed. The content is checked against the lane.
    pub fn place_clip(
        &mut self,
        clip: ClipId,
        track: TrackId,
        start: Beats,
        length: Option<Beats>,
        duplicate: bool,
    ) -> Result<ClipId, PlaceError> {
        let c = self.clips.get(clip.index()).ok_or(PlaceError::Missing)?;
        let t = self.tracks.get(track.index()).ok_or(PlaceError::Missing)?;
        if clip_kind(c) != t.kind {
            return Err(PlaceError::WrongLane {
                clip: c.id.clone(),
                track: t.id.clone(),
                clip_kind: clip_kind(c).name(),
                track_kind: t.kind.name(),
            });
        }
        let length = length.unwrap_or(c.length);
        if !(length.0 > 0.0 && start.0.is_finite()) {
            return Err(PlaceError::BadRange);
        }
        let placed = if duplicate {
            let mut copy = c.clone();
            let mut n = 1;
            copy.id = loop {
                let id = if n == 1 { format!("{}-copy", c.id) } else { format!("{}-copy{n}", c.id) };
                if self.clip_by_name(&id).is_none() {
                    break id;
                }
                n += 1;
            };
            copy.track = track;
            self.add_clip(copy)
        } else {
            // Moved: it leaves the launcher's scenes and now lives on this lane.
            for scene in &mut self.scenes {
                scene.clips.retain(|c| *c != clip);
            }
            self.clips[clip.index()].track = track;
            clip
        };
        self.arrangement.clips.push(Placement { track, clip: placed, start, length, offset: Beats::ZERO });
        Ok(placed)
    }
}
