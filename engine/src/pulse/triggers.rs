//! Scheduling triggers: clip and scene launches resolved against the track plans, starts (with
//! legato, velocity and streamed-clip refusal) and stops in every stop mode. Control thread.

use crate::model::{ClipId, EmptySlot, LaunchMode, SceneId, TempoChange, TrackId, db_to_gain};
use crate::queue::{Op, Scheduled, TriggerId};
use crate::time::{Beats, Quantise};

use super::action::{Behaviour, ClipTrigger, SceneMode, SceneTrigger, StopMode};
use super::core::PulseCore;
use super::event::{Cause, PulseError, PulseEvent, Refusal, TriggerKind};
use super::state::{ClipFollowPending, Meta, Playing, Repeating, SceneFollowPending, Sequence, StartSpec};

impl PulseCore {
    pub(super) fn clip_trigger(
        &mut self,
        t: ClipTrigger,
        now: Beats,
        ids: &mut Vec<TriggerId>,
    ) -> Result<(), PulseError> {
        let c = self.session.clips.get(t.clip.index()).ok_or(PulseError::NoSuchClip(t.clip.0))?;
        let q = self.clip_quantise(t.clip, t.quantise);
        let target = self.quantised(now, q);
        let track = c.track;
        let mode = c.launch_mode;
        let playing = self.plans[track.index()].state_at(target).map(|p| p.clip) == Some(t.clip);
        let spec = StartSpec { velocity: t.launch_velocity, ..StartSpec::press(Cause::Press) };
        match t.behaviour {
            Some(Behaviour::Stop) => {
                if playing {
                    ids.extend(self.schedule_stop(track, target, None, None, Cause::Press)?);
                }
                return Ok(());
            }
            Some(Behaviour::Start) if playing => return Ok(()),
            Some(Behaviour::Start) | Some(Behaviour::Retrigger) => {
                ids.push(self.schedule_start(t.clip, target, StartSpec { legato: Some(false), ..spec })?);
                return Ok(());
            }
            Some(Behaviour::Legato) => {
                ids.push(self.schedule_start(t.clip, target, StartSpec { legato: Some(true), ..spec })?);
                return Ok(());
            }
            None => {}
        }
        if mode == LaunchMode::Toggle && playing {
            ids.extend(self.schedule_stop(track, target, None, None, Cause::Press)?);
            return Ok(());
        }
        ids.push(self.schedule_start(t.clip, target, spec)?);
        if mode == LaunchMode::Repeat
            && let Some(grid) = q.grid(self.beats_per_bar_at(target))
        {
            self.repeating.retain(|r| r.clip != t.clip);
            self.repeating.push(Repeating {
                clip: t.clip,
                grid,
                next: Beats(target.0 + grid),
                velocity: t.launch_velocity,
            });
        }
        Ok(())
    }

    pub(super) fn scene_target(&self, scene: SceneId, quantise: Option<Quantise>, now: Beats) -> Beats {
        let q = quantise.unwrap_or(Quantise::Global).resolve(Some(self.session.scene(scene).quantise), self.quantise);
        self.quantised(now, q)
    }

    pub(super) fn scene_trigger(
        &mut self,
        t: SceneTrigger,
        now: Beats,
        ids: &mut Vec<TriggerId>,
    ) -> Result<(), PulseError> {
        if t.scene.index() >= self.session.scenes.len() {
            return Err(PulseError::NoSuchScene(t.scene.0));
        }
        let target = self.scene_target(t.scene, t.quantise, now);
        match t.mode {
            SceneMode::Playlist => {
                let found = self
                    .session
                    .playlists
                    .iter()
                    .enumerate()
                    .find_map(|(i, p)| p.steps.iter().position(|s| s.scene == t.scene).map(|step| (i, step)));
                match found {
                    Some((playlist, step)) => {
                        let p = &self.session.playlists[playlist];
                        let seq = Sequence {
                            playlist: Some(playlist),
                            steps: p.steps.clone(),
                            next: step,
                            at: target,
                            looping: p.looping,
                        };
                        self.start_sequence(seq, ids)?;
                    }
                    // In no playlist: a plain launch.
                    None => ids.extend(self.launch_scene(t.scene, target, false, Cause::Press, true)?),
                }
            }
            SceneMode::Full | SceneMode::FollowAction => {
                self.sequence = None;
                ids.extend(self.launch_scene(t.scene, target, false, Cause::Press, true)?);
            }
            SceneMode::Partial => {
                self.sequence = None;
                ids.extend(self.launch_scene(t.scene, target, true, Cause::Press, true)?);
            }
        }
        Ok(())
    }

    /// Launches a scene at `target`: its clips start on the same sample; in a full launch the
    /// other tracks stop unless they keep playing or the scene's empty slots continue.
    pub(super) fn launch_scene(
        &mut self,
        scene: SceneId,
        target: Beats,
        partial: bool,
        cause: Cause,
        arm_follow: bool,
    ) -> Result<Vec<TriggerId>, PulseError> {
        let session = self.session.clone();
        let s = session.scene(scene);
        let mut ids = Vec::new();
        // Clip follow actions stay armed inside playlists, not in a playthrough preview.
        let clip_follow = !matches!(cause, Cause::Playthrough { .. });
        for t in 0..session.tracks.len() {
            let track = TrackId(t as u32);
            let clip = s.clips.iter().copied().find(|c| session.clip(*c).track == track);
            match clip {
                Some(clip) => {
                    let spec = StartSpec { scene: Some(scene), follow: clip_follow, ..StartSpec::press(cause) };
                    ids.push(self.schedule_start(clip, target, spec)?);
                }
                None if !partial && s.empty_slots == EmptySlot::Stop && !session.track(track).keep_playing => {
                    ids.extend(self.schedule_stop(track, target, None, Some(scene), cause)?);
                }
                None => {}
            }
        }
        self.set_scene(Some(scene), target);
        if s.tempo.is_some() || s.beats_per_bar.is_some() {
            self.tempo_change(TempoChange { beat: target, tempo: s.tempo, beats_per_bar: s.beats_per_bar });
        }
        self.scene_follow = match (&s.follow, arm_follow) {
            (Some(f), true) => {
                let every = session.scene_length(scene).0 * f.after_loops.max(1) as f64;
                Some(SceneFollowPending { scene, at: Beats(target.0 + every), every })
            }
            _ => None,
        };
        Ok(ids)
    }

    /// Why a start of a streamed clip at `target` with `anchor` cannot be ready, if it cannot.
    /// Only presses are refused for lack of time (Pulse decides follow actions, playlists and the
    /// arrangement itself, at beats that depend on how far ahead it is ticked).
    pub(super) fn stream_refusal(&self, clip: ClipId, target: Beats, anchor: Beats, cause: Cause) -> Option<Refusal> {
        let gate = self.stream_gates.get(clip.index())?.as_ref()?;
        if let Some(why) = gate.source.error() {
            return Some(Refusal::Unreadable(why));
        }
        if cause != Cause::Press {
            return None;
        }
        let c = self.session.clip(clip);
        let frames_per_beat = gate.source.sample_rate() as f64 * 60.0 / self.tempo.max(1e-9);
        let length = c.length.0.max(1e-9);
        let elapsed = (target.0 - anchor.0).max(0.0);
        let iteration = if c.looping { (elapsed / length).floor() } else { 0.0 };
        let into = elapsed - iteration * length;
        let pos = (c.start_offset.0 * frames_per_beat).round() as i64 + (into * frames_per_beat).floor() as i64;
        let needed_ms = self.session.streaming.lead_ms;
        let lead = (needed_ms * 1e-3 * gate.source.sample_rate() as f64).ceil() as i64;
        if pos >= gate.head_start && pos + lead < gate.head_end {
            return None;
        }
        let available_ms = (target.0 - self.now.0) * 60_000.0 / self.tempo.max(1e-9);
        (available_ms < needed_ms).then_some(Refusal::NotReady { available_ms, needed_ms })
    }

    pub(super) fn schedule_start(
        &mut self,
        clip: ClipId,
        target: Beats,
        spec: StartSpec,
    ) -> Result<TriggerId, PulseError> {
        let session = self.session.clone();
        let c = session.clip(clip);
        let t = c.track.index();
        if self.stream_gates.get(clip.index()).is_some_and(Option::is_some) {
            let before = self.plans[t].state_at(target);
            let anchor = match (spec.anchor, before) {
                (Some(a), _) => a,
                (None, Some(p)) if spec.legato.unwrap_or(c.legato) && p.clip != clip => p.anchor,
                _ => target,
            };
            if let Some(reason) = self.stream_refusal(clip, target, anchor, spec.cause) {
                let id = self.next_id();
                self.notices.push_back(PulseEvent::Refused { id, track: c.track, clip, target, reason });
                return Ok(id);
            }
        }
        if spec.cause != Cause::Arrangement {
            // A launched clip takes its track over from the arrangement.
            self.taken_over[t] = true;
        }
        self.supersede(c.track, target);
        let before = self.plans[t].state_at(target);
        let legato = spec.legato.unwrap_or(c.legato);
        let (kind, anchor) = match (spec.anchor, before) {
            (Some(a), _) => (TriggerKind::Start, a),
            (None, Some(p)) if legato && p.clip != clip => (TriggerKind::Legato, p.anchor),
            (None, Some(p)) if p.clip == clip => (TriggerKind::Retrigger, target),
            _ => (TriggerKind::Start, target),
        };
        let v = spec.velocity.unwrap_or(1.0).clamp(0.0, 1.0);
        let amount = c.velocity_amount.clamp(0.0, 1.0);
        let gain = (db_to_gain(c.gain_db) * (1.0 - amount + amount * v)) as f32;
        let id = self.next_id();
        let ev = Scheduled { id, track: c.track, target, op: Op::Start { clip, anchor, gain } };
        self.send(ev, Meta { kind, clip: Some(clip), scene: spec.scene, cause: spec.cause, command: None });
        let playing = Playing { id, clip, anchor, length: c.length, looping: c.looping, gain };
        self.plans[t].insert(ev, Some(playing));
        self.clip_follow[t] = match (&c.follow, spec.follow && spec.cause != Cause::Arrangement) {
            (Some(f), true) => {
                let every = c.length.0 * f.after_loops.max(1) as f64;
                // Loops are counted from where the clip starts playing (a legato start may be
                // part-way through a loop).
                let first = playing.pass_end_after(target).0 + c.length.0 * (f.after_loops.max(1) - 1) as f64;
                let at = if c.looping { first } else { anchor.0 + c.length.0 };
                Some(ClipFollowPending { clip, at: Beats(at), every })
            }
            _ => None,
        };
        Ok(id)
    }

    pub(super) fn schedule_stop(
        &mut self,
        track: TrackId,
        target: Beats,
        fade: Option<Beats>,
        scene: Option<SceneId>,
        cause: Cause,
    ) -> Result<Option<TriggerId>, PulseError> {
        if cause != Cause::Arrangement && self.arrangement_on {
            self.taken_over[track.index()] = true;
        }
        self.supersede(track, target);
        let Some(playing) = self.plans[track.index()].state_at(target) else { return Ok(None) };
        let id = self.next_id();
        let ev = Scheduled { id, track, target, op: Op::Stop { fade } };
        self.send(ev, Meta { kind: TriggerKind::Stop, clip: Some(playing.clip), scene, cause, command: None });
        self.plans[track.index()].insert(ev, None);
        Ok(Some(id))
    }

    pub(super) fn stop_with_mode(
        &mut self,
        track: TrackId,
        mode: StopMode,
        now: Beats,
        scene: Option<SceneId>,
    ) -> Result<Option<TriggerId>, PulseError> {
        self.repeating.retain(|r| self.session.clip(r.clip).track != track);
        match mode {
            StopMode::Immediate => self.schedule_stop(track, now, None, scene, Cause::Press),
            StopMode::FadeOut(len) => self.schedule_stop(track, now, Some(len), scene, Cause::Press),
            StopMode::Quantised => {
                let q = match self.plans[track.index()].state_at(now) {
                    Some(p) => self.clip_quantise(p.clip, None),
                    None => return Ok(None),
                };
                let target = self.quantised(now, q);
                self.schedule_stop(track, target, None, scene, Cause::Press)
            }
            StopMode::SectionEnd => {
                let Some(p) = self.plans[track.index()].state_at(now) else { return Ok(None) };
                let target = p.pass_end_after(now);
                self.schedule_stop(track, target, None, scene, Cause::Press)
            }
        }
    }
}
