//! The scheduler's core, sans-IO: [`PulseCore`] takes presses ([`PulseCore::press`]) and the
//! passing of time ([`PulseCore::tick`]) with the beat as an argument, and hands out what Signal
//! must do ([`PulseCore::poll_command`]) and what happened ([`PulseCore::poll_event`]). It owns no
//! queue, thread or clock, so the same core runs inside the node (wrapped by [`super::Pulse`]),
//! the offline renderer, the conductor, and tests on virtual time. Control thread; allocates;
//! never blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::model::{ClipId, LaunchMode, PlaylistStep, SceneId, Session, TempoChange, TrackId, db_to_gain};
use crate::queue::{Command, MixSettings, Op, Report, Scheduled, TriggerId};
use crate::time::{Beats, Bpm, Quantise, next_grid_point};

use super::action::{Action, ClipTrigger, CommandId, SceneMode, SceneTrigger, StopMode, When};
use super::event::{Cause, PulseError, PulseEvent, TriggerKind};
use super::state::{
    ArrEvent, ClipFollowPending, Meta, Repeating, SceneFollowPending, Sequence, StartSpec, StreamGate, TrackPlan,
    lane_events,
};

/// How far back (in beats) Pulse remembers time-signature changes for [`PulseCore::bar_position`].
pub const METER_MEMORY: f64 = 256.0;

/// The scheduler's sans-IO core. See the module docs.
#[derive(Clone)]
pub struct PulseCore {
    pub(super) session: Arc<Session>,
    /// Commands for Signal, in delivery order ([`PulseCore::poll_command`]).
    pub(super) outbox: VecDeque<Command>,
    /// The global launch quantisation (the session's, until `launcher.quantise.update`).
    pub(super) quantise: Quantise,
    /// The press being performed executes exactly at its beat ([`When::At`]).
    pub(super) exact: bool,
    /// The id of the press being performed.
    pub(super) command: Option<CommandId>,
    pub(super) next_id: u64,
    pub(super) plans: Vec<TrackPlan>,
    pub(super) meta: HashMap<TriggerId, Meta>,
    /// The last scene launched and the beat it launched at.
    pub(super) scene: Option<(SceneId, Beats)>,
    /// Which scene plays from which beat: the last entry at or before `now`, then what is
    /// queued (for displays).
    pub(super) scene_timeline: Vec<(Beats, Option<SceneId>)>,
    pub(super) repeating: Vec<Repeating>,
    pub(super) mix: Vec<MixSettings>,
    pub(super) clip_follow: Vec<Option<ClipFollowPending>>,
    pub(super) scene_follow: Option<SceneFollowPending>,
    pub(super) sequence: Option<Sequence>,
    /// Follow-action decisions so far, per clip and per scene (the occurrence counts).
    pub(super) clip_decisions: Vec<u64>,
    pub(super) scene_decisions: Vec<u64>,
    /// Time-signature changes: (beat, beats per bar, bars before that beat), in beat order. Bar
    /// grids are anchored at the latest change at or before the press; the bar count is what
    /// [`PulseCore::bar_position`] numbers bars by.
    pub(super) meters: Vec<(Beats, f64, f64)>,
    /// Arrangement playback.
    pub(super) arrangement_on: bool,
    pub(super) taken_over: Vec<bool>,
    pub(super) lanes: Vec<Vec<(Beats, ArrEvent)>>,
    pub(super) lane_pos: Vec<usize>,
    pub(super) tempo_pos: usize,
    /// Decisions and steps waiting to be polled.
    pub(super) notices: VecDeque<PulseEvent>,
    /// Tempo changes the clock owner has not taken yet.
    pub(super) tempo_changes: Vec<TempoChange>,
    /// Per clip: how it streams, if it does.
    pub(super) stream_gates: Vec<Option<StreamGate>>,
    /// The beat of the last press or tick.
    pub(super) now: Beats,
    /// The tempo last set (the session's, then scene and arrangement changes).
    pub(super) tempo: f64,
    /// Armed tracks and open takes.
    pub(super) record: super::record_plan::RecordPlan,
}

impl PulseCore {
    /// A scheduler for `session` at beat 0, with nothing playing, the session's tempo, time
    /// signature and quantisation, and each track's mixer settings from the session. Any thread;
    /// allocates.
    pub fn new(session: Arc<Session>) -> PulseCore {
        let tracks = session.tracks.len();
        let mix = session.tracks.iter().map(MixSettings::of_track).collect();
        let lanes = (0..tracks).map(|t| lane_events(&session, TrackId(t as u32))).collect();
        let stream_gates = StreamGate::of(&session);
        let tempo = session.tempo.0;
        PulseCore {
            quantise: session.quantise,
            exact: false,
            command: None,
            outbox: VecDeque::new(),
            plans: (0..tracks).map(|_| TrackPlan::default()).collect(),
            clip_follow: vec![None; tracks],
            clip_decisions: vec![0; session.clips.len()],
            scene_decisions: vec![0; session.scenes.len()],
            meters: vec![(Beats::ZERO, session.beats_per_bar, 0.0)],
            taken_over: vec![false; tracks],
            lane_pos: vec![0; tracks],
            lanes,
            session,
            next_id: 1,
            meta: HashMap::new(),
            scene: None,
            scene_timeline: Vec::new(),
            repeating: Vec::new(),
            mix,
            scene_follow: None,
            sequence: None,
            arrangement_on: false,
            stream_gates,
            now: Beats::ZERO,
            tempo,
            tempo_pos: 0,
            notices: Default::default(),
            tempo_changes: Vec::new(),
            record: super::record_plan::RecordPlan::new(tracks),
        }
    }

    /// The session Pulse schedules.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The clip Pulse plans to be playing on `track` at beat `at`.
    pub fn playing_at(&self, track: TrackId, at: Beats) -> Option<ClipId> {
        self.plans.get(track.index()).and_then(|p| p.state_at(at)).map(|p| p.clip)
    }

    /// The scene launched last and the beat it launched at.
    pub fn current_scene(&self) -> Option<(SceneId, Beats)> {
        self.scene
    }

    /// Beats per bar in force at `beat` (scene time signatures change it).
    pub fn beats_per_bar_at(&self, beat: Beats) -> f64 {
        self.meter_at(beat).1
    }

    pub(super) fn meter_at(&self, beat: Beats) -> (Beats, f64) {
        let (origin, bpb, _) = self.meter_entry(beat);
        (origin, bpb)
    }

    pub(super) fn meter_entry(&self, beat: Beats) -> (Beats, f64, f64) {
        let i = self.meters.partition_point(|(b, _, _)| b.0 <= beat.0 + 1e-9);
        self.meters[i.saturating_sub(1)]
    }

    /// The bar `beat` falls in and the beat within that bar, both counted from 0, across the
    /// scene time-signature changes so far (bar 0 starts at beat 0): with 4/4 until beat 16 and
    /// 3/4 from there, beat 19 is bar 5, beat 0 of it. For the `bar N.M` labels a musician reads;
    /// exact for beats from [`METER_MEMORY`] beats before the latest press or tick on.
    pub fn bar_position(&self, beat: Beats) -> (i64, f64) {
        let (origin, bpb, bars_before) = self.meter_entry(beat);
        let bpb = bpb.max(1e-9);
        let bars = bars_before + (beat.0 - origin.0) / bpb;
        let bar = (bars + 1e-6).floor();
        let in_bar = ((beat.0 - origin.0) - (bar - bars_before) * bpb).max(0.0);
        (bar as i64, if in_bar > bpb - 1e-6 { 0.0 } else { in_bar })
    }

    /// Performs an action pressed at beat `now`. Returns the ids of the triggers it scheduled
    /// (none when the action changes nothing, e.g. stopping a silent track).
    pub fn press(&mut self, action: Action, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        self.press_when(action, When::Pressed, now)
    }

    /// Performs an action at beat `now` ([`When::Pressed`]: quantised as a press), or exactly at
    /// the target beat the conductor resolved ([`When::At`]), whatever the quantisation; the
    /// triggers it schedules report the press's [`CommandId`].
    ///
    /// An `At` press is made at its target beat: tick up to that beat first
    /// (`tick(now, target)`), as for any press, so that every node makes the same decisions
    /// before it. A target already passed is scheduled anyway; Signal starts it phase-aligned and
    /// reports it late.
    pub fn press_when(&mut self, action: Action, when: When, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        let (beat, exact, command) = match when {
            When::Pressed => (now, false, None),
            When::At { beat, id } => (beat, true, Some(id)),
        };
        self.fold(now.min(beat));
        self.exact = exact;
        self.command = command;
        let action = if exact { exact_stops(action) } else { action };
        let result = self.perform(action, beat);
        self.exact = false;
        self.command = None;
        result
    }

    fn perform(&mut self, action: Action, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        let mut ids = Vec::new();
        match action {
            Action::Launch { clip, quantise, velocity } => {
                let t = ClipTrigger { clip, quantise, behaviour: None, launch_velocity: velocity };
                self.clip_trigger(t, now, &mut ids)?;
            }
            Action::Trigger(t) => self.clip_trigger(t, now, &mut ids)?,
            Action::Release { clip } => {
                let c = self.session.clips.get(clip.index()).ok_or(PulseError::NoSuchClip(clip.0))?;
                if matches!(c.launch_mode, LaunchMode::Gate | LaunchMode::Repeat) {
                    self.repeating.retain(|r| r.clip != clip);
                    let track = c.track;
                    let target = self.quantised(now, self.clip_quantise(clip, None));
                    // Only stop the track if this clip is (or will be) the one playing.
                    if self.plans[track.index()].state_at(target).map(|p| p.clip) == Some(clip) {
                        ids.extend(self.schedule_stop(track, target, None, None, Cause::Press)?);
                    }
                }
            }
            Action::StopTrack { track, mode } => {
                if track.index() >= self.session.tracks.len() {
                    return Err(PulseError::NoSuchTrack(track.0));
                }
                ids.extend(self.stop_with_mode(track, mode, now, None)?);
            }
            Action::StopAll { mode } => {
                for t in 0..self.session.tracks.len() {
                    ids.extend(self.stop_with_mode(TrackId(t as u32), mode, now, None)?);
                }
                self.repeating.clear();
                self.scene_follow = None;
                self.sequence = None;
                self.note_scene(None, now);
            }
            Action::LaunchScene { scene, quantise } => {
                let t = SceneTrigger { scene, quantise, mode: SceneMode::Full };
                self.scene_trigger(t, now, &mut ids)?;
            }
            Action::Scene(t) => self.scene_trigger(t, now, &mut ids)?,
            Action::Playlist { playlist, step, quantise } => {
                let p = self.session.playlists.get(playlist).ok_or(PulseError::NoSuchPlaylist(playlist))?;
                if step >= p.steps.len() {
                    return Err(PulseError::NoSuchPlaylist(playlist));
                }
                let first = p.steps[step].scene;
                let target = self.scene_target(first, quantise, now);
                let seq = Sequence {
                    playlist: Some(playlist),
                    steps: p.steps.clone(),
                    next: step,
                    at: target,
                    looping: p.looping,
                };
                self.start_sequence(seq, &mut ids)?;
            }
            Action::Playthrough { from, to, quantise } => {
                let n = self.session.scenes.len() as u32;
                if from.0 >= n || to.0 >= n {
                    return Err(PulseError::NoSuchScene(from.0.max(to.0)));
                }
                let steps = (from.0.min(to.0)..=from.0.max(to.0))
                    .map(|i| PlaylistStep { scene: SceneId(i), repeat: 1 })
                    .collect();
                let target = self.scene_target(from, quantise, now);
                let seq = Sequence { playlist: None, steps, next: 0, at: target, looping: false };
                self.start_sequence(seq, &mut ids)?;
            }
            Action::PlayArrangement => {
                self.arrangement_on = true;
                self.scene_follow = None;
                self.sequence = None;
                for t in 0..self.session.tracks.len() {
                    self.taken_over[t] = false;
                    ids.extend(self.resume_lane(TrackId(t as u32), now)?);
                }
                self.tempo_pos = self.session.arrangement.tempo.partition_point(|c| c.beat.0 < now.0);
                if let Some(c) = self.tempo_pos.checked_sub(1).map(|i| self.session.arrangement.tempo[i]) {
                    // The tempo in force where playback starts.
                    self.tempo_change(TempoChange { beat: now, ..c });
                }
            }
            Action::BackToArrangement { quantise } => {
                let q = quantise.unwrap_or(Quantise::Global).resolve(None, self.quantise);
                let target = self.quantised(now, q);
                if self.arrangement_on {
                    for t in 0..self.session.tracks.len() {
                        if std::mem::replace(&mut self.taken_over[t], false) {
                            ids.extend(self.resume_lane(TrackId(t as u32), target)?);
                        }
                    }
                }
            }
            Action::SetTempo { bpm } => {
                if !(Bpm::MIN..=Bpm::MAX).contains(&bpm.0) {
                    return Err(PulseError::TempoOutOfRange);
                }
                self.tempo_change(TempoChange { beat: now, tempo: Some(bpm), beats_per_bar: None });
            }
            Action::SetQuantise { quantise } => {
                if quantise == Quantise::Global {
                    return Err(PulseError::GlobalQuantise);
                }
                self.quantise = quantise;
            }
            Action::Mix { track, change } => {
                let mut m = self.mix(track).ok_or(PulseError::NoSuchTrack(track.0))?;
                if let Some(db) = change.gain_db {
                    if !(db.is_finite() && (-96.0..=24.0).contains(&db)) {
                        return Err(PulseError::MixOutOfRange);
                    }
                    m.gain = db_to_gain(db) as f32;
                }
                if let Some(pan) = change.pan {
                    if !(pan.is_finite() && (-1.0..=1.0).contains(&pan)) {
                        return Err(PulseError::MixOutOfRange);
                    }
                    m.pan = pan as f32;
                }
                m.mute = change.mute.unwrap_or(m.mute);
                m.solo = change.solo.unwrap_or(m.solo);
                self.set_mix(track, m)?;
            }
            Action::Record(r) => self.record(r, now, &mut ids)?,
        }
        Ok(ids)
    }

    /// Schedules what is due before `horizon` (exclusive): repeat-mode retriggers, follow-action
    /// decisions, playlist steps and arrangement events, in beat order. It also folds the plan up
    /// to `now`. Live, call it at least once per block with `horizon` at least one block (plus
    /// margin) ahead of the audio, so every decision is made ahead of its beat; offline, the
    /// renderer ticks up to each scripted press before making it, so the schedule does not depend
    /// on the block size.
    pub fn tick(&mut self, now: Beats, horizon: Beats) -> Result<(), PulseError> {
        self.fold(now);
        loop {
            // The earliest due item; ties in a fixed order (sequence, scene, repeat, clips,
            // arrangement lanes in track order), so every Pulse makes the same decisions.
            #[derive(Clone, Copy)]
            enum Due {
                Sequence,
                Scene,
                Repeat(usize),
                Clip(usize),
                Lane(usize),
                Tempo,
            }
            let mut best: Option<(f64, Due)> = None;
            let mut consider = |at: Beats, d: Due| {
                if at.0 < horizon.0 && best.is_none_or(|(b, _)| at.0 < b) {
                    best = Some((at.0, d));
                }
            };
            if let Some(s) = &self.sequence {
                consider(s.at, Due::Sequence);
            }
            if let Some(f) = &self.scene_follow {
                consider(f.at, Due::Scene);
            }
            for (i, r) in self.repeating.iter().enumerate() {
                consider(r.next, Due::Repeat(i));
            }
            for (t, f) in self.clip_follow.iter().enumerate() {
                if let Some(f) = f {
                    consider(f.at, Due::Clip(t));
                }
            }
            if self.arrangement_on {
                for (t, lane) in self.lanes.iter().enumerate() {
                    if !self.taken_over[t]
                        && let Some((b, _)) = lane.get(self.lane_pos[t])
                    {
                        consider(*b, Due::Lane(t));
                    }
                }
                if let Some(c) = self.session.arrangement.tempo.get(self.tempo_pos) {
                    consider(c.beat, Due::Tempo);
                }
            }
            let Some((_, due)) = best else { break };
            match due {
                Due::Sequence => self.sequence_step()?,
                Due::Scene => self.scene_follow_decide()?,
                Due::Repeat(i) => {
                    let r = self.repeating[i];
                    self.repeating[i].next = Beats(r.next.0 + r.grid);
                    let spec = StartSpec { velocity: r.velocity, ..StartSpec::press(Cause::Repeat) };
                    self.schedule_start(r.clip, r.next, spec)?;
                }
                Due::Clip(t) => self.clip_follow_decide(t)?,
                Due::Lane(t) => {
                    let (beat, ev) = self.lanes[t][self.lane_pos[t]];
                    self.lane_pos[t] += 1;
                    self.lane_event(TrackId(t as u32), beat, ev)?;
                }
                Due::Tempo => {
                    let c = self.session.arrangement.tempo[self.tempo_pos];
                    self.tempo_pos += 1;
                    self.tempo_change(c);
                }
            }
        }
        Ok(())
    }

    /// Changes a track's mixer settings.
    pub fn set_mix(&mut self, track: TrackId, settings: MixSettings) -> Result<(), PulseError> {
        let slot = self.mix.get_mut(track.index()).ok_or(PulseError::NoSuchTrack(track.0))?;
        *slot = settings;
        self.outbox.push_back(Command::Mix { track, settings });
        Ok(())
    }

    /// A track's current mixer settings.
    pub fn mix(&self, track: TrackId) -> Option<MixSettings> {
        self.mix.get(track.index()).copied()
    }

    /// The next decision Pulse made (a follow action, a playlist step, a tempo change, a refusal)
    /// or report it was handed ([`PulseCore::handle_report`]), for the UI and the log.
    pub fn poll_event(&mut self) -> Option<PulseEvent> {
        self.notices.pop_front()
    }

    /// The next command for Signal, in the order they must be delivered.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.outbox.pop_front()
    }

    /// Commands waiting for [`PulseCore::poll_command`].
    pub fn pending_commands(&self) -> usize {
        self.outbox.len()
    }

    /// Takes what Signal reported: the event is queued for [`PulseCore::poll_event`].
    pub fn handle_report(&mut self, report: Report) {
        let event = self.translate(report);
        self.notices.push_back(event);
    }

    /// What Signal reported, as an event for the UI and the log (with the trigger's cause and
    /// scene, which only Pulse knows).
    pub fn translate(&mut self, r: Report) -> PulseEvent {
        match r {
            Report::Executed { event, beat, sample, tempo, late } => {
                let meta = self.meta.remove(&event.id).unwrap_or(Meta {
                    kind: TriggerKind::Start,
                    clip: None,
                    scene: None,
                    cause: Cause::Press,
                    command: None,
                });
                PulseEvent::Executed {
                    id: event.id,
                    kind: meta.kind,
                    track: event.track,
                    clip: meta.clip,
                    scene: meta.scene,
                    cause: meta.cause,
                    command: meta.command,
                    anchor: match event.op {
                        Op::Start { anchor, .. } => Some(anchor),
                        Op::Stop { .. } | Op::RecordStart { .. } | Op::RecordStop { .. } => None,
                    },
                    target: event.target,
                    beat,
                    sample,
                    tempo,
                    late,
                }
            }
            Report::ClipEnded { track, clip, sample } => PulseEvent::ClipEnded { track, clip, sample },
            Report::Overflow { event } => {
                self.meta.remove(&event.id);
                PulseEvent::Dropped { id: event.id }
            }
        }
    }

    pub(super) fn fold(&mut self, now: Beats) {
        self.now = now;
        let past = self.scene_timeline.partition_point(|(b, _)| b.0 <= now.0 + 1e-9);
        if past > 1 {
            self.scene_timeline.drain(..past - 1);
        }
        for p in &mut self.plans {
            p.fold(now);
        }
        // Old time signatures are forgotten once their successor is METER_MEMORY beats behind,
        // so a long set does not grow the list, and events reported a little late still get
        // their bar numbers.
        let i = self.meters.partition_point(|(b, _, _)| b.0 <= now.0 - METER_MEMORY + 1e-9);
        if i > 1 {
            self.meters.drain(..i - 1);
        }
    }

    pub(super) fn clip_quantise(&self, clip: ClipId, over: Option<Quantise>) -> Quantise {
        let c = self.session.clip(clip);
        let scene_q = self.session.scene_of_clip(clip).map(|s| self.session.scene(s).quantise);
        over.unwrap_or(c.quantise).resolve(scene_q, self.quantise)
    }

    /// The beat a press at `now` with quantisation `q` executes at. Bar grids are anchored at
    /// the last time-signature change.
    pub fn quantised(&self, now: Beats, q: Quantise) -> Beats {
        if self.exact {
            // A press the conductor already resolved to its beat.
            return now;
        }
        let (origin, bpb) = self.meter_at(now);
        let on_grid = |spacing: f64| Beats(origin.0 + next_grid_point(Beats(now.0 - origin.0), spacing).0);
        match q {
            Quantise::None | Quantise::Global => now,
            Quantise::Scene => match self.scene {
                Some((scene, start)) if now.0 >= start.0 => {
                    let len = self.session.scene_length(scene).0;
                    let n = ((now.0 - start.0) / len - 1e-9).ceil();
                    Beats(start.0 + n * len)
                }
                Some((_, start)) => start,
                None => on_grid(bpb),
            },
            q => on_grid(q.grid(bpb).unwrap_or(bpb)),
        }
    }

    pub(super) fn next_id(&mut self) -> TriggerId {
        let id = TriggerId(self.next_id);
        self.next_id += 1;
        id
    }

    /// The scene launched last (`None`: the sequence or a follow action stopped every track) and
    /// the beat it takes effect at; later entries of the display timeline it replaces go.
    pub(super) fn set_scene(&mut self, scene: Option<SceneId>, at: Beats) {
        self.scene = scene.map(|s| (s, at));
        self.note_scene(scene, at);
    }

    /// Notes for displays that `scene` plays from `at` (`None`: no scene).
    pub(super) fn note_scene(&mut self, scene: Option<SceneId>, at: Beats) {
        let keep = self.scene_timeline.partition_point(|(b, _)| b.0 < at.0 - 1e-9);
        self.scene_timeline.truncate(keep);
        self.scene_timeline.push((at, scene));
    }

    pub(super) fn send(&mut self, ev: Scheduled, mut meta: Meta) {
        meta.command = self.command;
        self.outbox.push_back(Command::Schedule(ev));
        self.meta.insert(ev.id, meta);
    }

    /// Makes room for a new trigger on `track` at `target`: whatever was queued after it goes.
    pub(super) fn supersede(&mut self, track: TrackId, target: Beats) {
        for id in self.plans[track.index()].cancel_after(target) {
            self.meta.remove(&id);
            self.outbox.push_back(Command::Cancel { id });
        }
        if self.clip_follow[track.index()].is_some_and(|f| f.at.0 >= target.0 - 1e-9) {
            self.clip_follow[track.index()] = None;
        }
    }

    pub(super) fn tempo_change(&mut self, c: TempoChange) {
        if let Some(t) = c.tempo {
            self.tempo = t.0;
        }
        if let Some(bpb) = c.beats_per_bar {
            let (origin, prev, bars_before) = self.meter_entry(c.beat);
            let bars = bars_before + (c.beat.0 - origin.0) / prev.max(1e-9);
            let i = self.meters.partition_point(|(b, _, _)| b.0 <= c.beat.0 + 1e-9);
            self.meters.truncate(i);
            self.meters.push((c.beat, bpb, bars));
        }
        self.notices.push_back(PulseEvent::TempoChange(c));
        self.tempo_changes.push(c);
    }

    /// Takes the tempo and time-signature changes scheduled since the last call, for the clock
    /// owner (the offline renderer's tempo map; live, the node's timeline or Link session) to
    /// apply at their beats.
    pub fn take_tempo_changes(&mut self) -> Vec<TempoChange> {
        std::mem::take(&mut self.tempo_changes)
    }
}

/// A stop resolved to an exact beat: quantised and section-end stops stop at that beat.
fn exact_stops(action: Action) -> Action {
    let exact = |mode: StopMode| match mode {
        StopMode::Quantised | StopMode::SectionEnd => StopMode::Immediate,
        other => other,
    };
    match action {
        Action::StopTrack { track, mode } => Action::StopTrack { track, mode: exact(mode) },
        Action::StopAll { mode } => Action::StopAll { mode: exact(mode) },
        other => other,
    }
}
