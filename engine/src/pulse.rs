//! Pulse: the scheduler.
//!
//! Pulse turns what a performer does ([`Action`]s: pad presses, scene launches, stops) into
//! [`Scheduled`] events at **target beats**, and sends them to Signal ahead of time. It never
//! reads a clock: every call is given the current beat (`now`), so the same presses at the same
//! beats produce the same schedule on every node and in every offline render.
//!
//! Pulse keeps a plan of what each track will be playing at any future beat (the events it has
//! sent, not yet confirmed by Signal). Toggle, legato, section-end stops and scene quantisation are
//! decided against that plan, so decisions never depend on how far the audio thread has got.
//!
//! Thread: control thread. Not realtime-safe (it may allocate); it never blocks.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{ClipId, EmptySlot, LaunchMode, SceneId, Session, TrackId, db_to_gain};
use crate::signal::{Command, MixSettings, Op, Report, Scheduled, TriggerId};
use crate::time::{Beats, Quantise, SampleTime, next_grid_point};

/// How a clip stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopMode {
    /// At the beat of the press, with the declicking crossfade.
    Immediate,
    /// At the next point of the clip's launch quantisation (or the given one).
    Quantised,
    /// A fade starting at the beat of the press, lasting this many beats.
    FadeOut(Beats),
    /// At the end of the clip's current loop.
    SectionEnd,
}

/// Something a performer (or a script, a controller, the conductor) does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Press a clip's launch button.
    Launch {
        /// The clip.
        clip: ClipId,
        /// Overrides the clip's quantisation.
        quantise: Option<Quantise>,
        /// Launch velocity 0..=1 (scaled by the clip's velocity amount).
        velocity: Option<f64>,
    },
    /// Release a clip's launch button (matters for gate and repeat launch modes).
    Release {
        /// The clip.
        clip: ClipId,
    },
    /// Stop whatever plays on a track.
    StopTrack {
        /// The track.
        track: TrackId,
        /// How.
        mode: StopMode,
    },
    /// Launch a scene.
    LaunchScene {
        /// The scene.
        scene: SceneId,
        /// Overrides the scene's quantisation.
        quantise: Option<Quantise>,
    },
    /// Stop every track.
    StopAll {
        /// How.
        mode: StopMode,
    },
}

/// What kind of trigger an executed event was (the `kind` field of the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// A clip started on a track that was not playing it.
    Start,
    /// A clip restarted from its beginning.
    Retrigger,
    /// A clip took over from another, keeping the musical position.
    Legato,
    /// A track stopped.
    Stop,
}

impl TriggerKind {
    /// The log spelling.
    pub fn name(self) -> &'static str {
        match self {
            TriggerKind::Start => "start",
            TriggerKind::Retrigger => "retrigger",
            TriggerKind::Legato => "legato",
            TriggerKind::Stop => "stop",
        }
    }
}

/// What Pulse tells the UI, the log and the conductor.
#[derive(Debug, Clone, PartialEq)]
pub enum PulseEvent {
    /// Signal executed a trigger.
    Executed {
        /// Trigger id.
        id: TriggerId,
        /// What it did.
        kind: TriggerKind,
        /// Track.
        track: TrackId,
        /// Clip started (or the clip that was stopped, when known).
        clip: Option<ClipId>,
        /// The scene launch it was part of, if any.
        scene: Option<SceneId>,
        /// Beat it was scheduled for.
        target: Beats,
        /// Beat at the sample it executed at.
        beat: Beats,
        /// Absolute sample it executed at.
        sample: SampleTime,
        /// Tempo (BPM) when it executed.
        tempo: f64,
        /// It arrived after its target and was started phase-aligned at the first possible sample.
        late: bool,
    },
    /// A one-shot clip played to its end.
    ClipEnded {
        /// Track.
        track: TrackId,
        /// Clip.
        clip: ClipId,
        /// Absolute sample of the end.
        sample: SampleTime,
    },
    /// Signal refused an event because its pending list was full.
    Dropped {
        /// The trigger.
        id: TriggerId,
    },
}

/// Why Pulse refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PulseError {
    /// The clip id is not in the session. Check the id the controller or script sent.
    #[error("no clip with index {0}")]
    NoSuchClip(u32),
    /// The track id is not in the session.
    #[error("no track with index {0}")]
    NoSuchTrack(u32),
    /// The scene id is not in the session.
    #[error("no scene with index {0}")]
    NoSuchScene(u32),
    /// The queue to Signal is full: Signal is not running (or is far behind). Retry once audio runs.
    #[error("the command queue to the audio thread is full")]
    QueueFull,
}

/// A clip planned to be playing on a track.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Playing {
    clip: ClipId,
    anchor: Beats,
    length: Beats,
    looping: bool,
}

impl Playing {
    fn sounding_at(&self, b: Beats) -> bool {
        self.looping || b.0 < self.anchor.0 + self.length.0 - 1e-9
    }

    /// The end of the loop pass that contains `b` (or the one-shot's end).
    fn pass_end_after(&self, b: Beats) -> Beats {
        let len = self.length.0.max(1e-9);
        let n = ((b.0 - self.anchor.0) / len - 1e-9).ceil().max(1.0);
        Beats(self.anchor.0 + n * len)
    }
}

#[derive(Debug, Default)]
struct TrackPlan {
    /// What plays after every folded (past) event.
    base: Option<Playing>,
    /// Future events in target order: (target, id, new state).
    events: Vec<(Beats, TriggerId, Option<Playing>)>,
}

impl TrackPlan {
    fn state_at(&self, b: Beats) -> Option<Playing> {
        let mut s = self.base;
        for (t, _, st) in &self.events {
            if t.0 <= b.0 + 1e-9 {
                s = *st;
            }
        }
        s.filter(|p| p.sounding_at(b))
    }

    fn insert(&mut self, target: Beats, id: TriggerId, st: Option<Playing>) {
        let i = self.events.partition_point(|(t, i, _)| (t.0, *i) <= (target.0, id));
        self.events.insert(i, (target, id, st));
    }

    /// Folds events at or before `now` into `base`.
    fn fold(&mut self, now: Beats) {
        let n = self.events.partition_point(|(t, _, _)| t.0 <= now.0);
        for (_, _, st) in self.events.drain(..n) {
            self.base = st;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    kind: TriggerKind,
    clip: Option<ClipId>,
    scene: Option<SceneId>,
}

/// A held pad in repeat launch mode.
#[derive(Debug, Clone, Copy)]
struct Repeating {
    clip: ClipId,
    grid: f64,
    next: Beats,
    velocity: Option<f64>,
}

/// The scheduler. See the module docs.
pub struct Pulse {
    session: Arc<Session>,
    commands: rtrb::Producer<Command>,
    reports: rtrb::Consumer<Report>,
    next_id: u64,
    plans: Vec<TrackPlan>,
    meta: HashMap<TriggerId, Meta>,
    /// The last scene launched and the beat it launched at.
    scene: Option<(SceneId, Beats)>,
    repeating: Vec<Repeating>,
    mix: Vec<MixSettings>,
}

impl Pulse {
    pub(crate) fn new(
        session: Arc<Session>,
        commands: rtrb::Producer<Command>,
        reports: rtrb::Consumer<Report>,
        mix: Vec<MixSettings>,
    ) -> Pulse {
        let plans = session.tracks.iter().map(|_| TrackPlan::default()).collect();
        Pulse {
            session,
            commands,
            reports,
            next_id: 1,
            plans,
            meta: HashMap::new(),
            scene: None,
            repeating: Vec::new(),
            mix,
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

    /// Performs an action pressed at beat `now`. Returns the ids of the triggers it scheduled
    /// (none when the action changes nothing, e.g. stopping a silent track).
    pub fn press(&mut self, action: Action, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        self.fold(now);
        let mut ids = Vec::new();
        match action {
            Action::Launch { clip, quantise, velocity } => {
                let c = self.session.clips.get(clip.index()).ok_or(PulseError::NoSuchClip(clip.0))?;
                let q = self.clip_quantise(clip, quantise);
                let mode = c.launch_mode;
                let target = self.quantised(now, q);
                let track = c.track;
                match mode {
                    LaunchMode::Toggle if self.plans[track.index()].state_at(target).map(|p| p.clip) == Some(clip) => {
                        ids.extend(self.schedule_stop(track, target, None, None)?);
                    }
                    _ => {
                        ids.push(self.schedule_start(clip, target, velocity, None)?);
                        if mode == LaunchMode::Repeat
                            && let Some(grid) = q.grid(self.session.beats_per_bar)
                        {
                            self.repeating.retain(|r| r.clip != clip);
                            self.repeating.push(Repeating { clip, grid, next: Beats(target.0 + grid), velocity });
                        }
                    }
                }
            }
            Action::Release { clip } => {
                let c = self.session.clips.get(clip.index()).ok_or(PulseError::NoSuchClip(clip.0))?;
                if matches!(c.launch_mode, LaunchMode::Gate | LaunchMode::Repeat) {
                    self.repeating.retain(|r| r.clip != clip);
                    let track = c.track;
                    let target = self.quantised(now, self.clip_quantise(clip, None));
                    // Only stop the track if this clip is (or will be) the one playing.
                    if self.plans[track.index()].state_at(target).map(|p| p.clip) == Some(clip) {
                        ids.extend(self.schedule_stop(track, target, None, None)?);
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
            }
            Action::LaunchScene { scene, quantise } => {
                let s = self.session.scenes.get(scene.index()).ok_or(PulseError::NoSuchScene(scene.0))?;
                let q = quantise.unwrap_or(Quantise::Global).resolve(Some(s.quantise), self.session.quantise);
                let target = self.quantised(now, q);
                let session = self.session.clone();
                let s = &session.scenes[scene.index()];
                for t in 0..session.tracks.len() {
                    let track = TrackId(t as u32);
                    let clip = s.clips.iter().copied().find(|c| session.clip(*c).track == track);
                    match clip {
                        Some(clip) => ids.push(self.schedule_start(clip, target, None, Some(scene))?),
                        None if s.empty_slots == EmptySlot::Stop => {
                            ids.extend(self.schedule_stop(track, target, None, Some(scene))?);
                        }
                        None => {}
                    }
                }
                self.scene = Some((scene, target));
            }
        }
        Ok(ids)
    }

    /// Schedules what is due before `horizon` (exclusive: repeat-mode retriggers) and folds the
    /// plan up to `now`. Live, call it at least once per block with `horizon` at least one block
    /// (plus margin) ahead of the audio; offline, the renderer ticks up to each scripted press
    /// before making it, so the schedule does not depend on the block size.
    pub fn tick(&mut self, now: Beats, horizon: Beats) -> Result<(), PulseError> {
        self.fold(now);
        let mut i = 0;
        while i < self.repeating.len() {
            let r = self.repeating[i];
            if r.next.0 < horizon.0 {
                self.repeating[i].next = Beats(r.next.0 + r.grid);
                self.schedule_start(r.clip, r.next, r.velocity, None)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Changes a track's mixer settings.
    pub fn set_mix(&mut self, track: TrackId, settings: MixSettings) -> Result<(), PulseError> {
        let slot = self.mix.get_mut(track.index()).ok_or(PulseError::NoSuchTrack(track.0))?;
        *slot = settings;
        self.commands.push(Command::Mix { track, settings }).map_err(|_| PulseError::QueueFull)
    }

    /// A track's current mixer settings.
    pub fn mix(&self, track: TrackId) -> Option<MixSettings> {
        self.mix.get(track.index()).copied()
    }

    /// The next thing Signal reported, translated for the UI and the log.
    pub fn poll_event(&mut self) -> Option<PulseEvent> {
        let r = self.reports.pop().ok()?;
        Some(match r {
            Report::Executed { event, beat, sample, tempo, late } => {
                let meta =
                    self.meta.remove(&event.id).unwrap_or(Meta { kind: TriggerKind::Start, clip: None, scene: None });
                PulseEvent::Executed {
                    id: event.id,
                    kind: meta.kind,
                    track: event.track,
                    clip: meta.clip,
                    scene: meta.scene,
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
        })
    }

    fn fold(&mut self, now: Beats) {
        for p in &mut self.plans {
            p.fold(now);
        }
    }

    fn clip_quantise(&self, clip: ClipId, over: Option<Quantise>) -> Quantise {
        let c = self.session.clip(clip);
        let scene_q = self.session.scene_of_clip(clip).map(|s| self.session.scene(s).quantise);
        over.unwrap_or(c.quantise).resolve(scene_q, self.session.quantise)
    }

    /// The beat a press at `now` with quantisation `q` executes at.
    pub fn quantised(&self, now: Beats, q: Quantise) -> Beats {
        match q {
            Quantise::None | Quantise::Global => now,
            Quantise::Scene => match self.scene_length() {
                Some((start, len)) if now.0 >= start.0 => {
                    let n = ((now.0 - start.0) / len - 1e-9).ceil();
                    Beats(start.0 + n * len)
                }
                Some((start, _)) => start,
                None => next_grid_point(now, self.session.beats_per_bar),
            },
            q => next_grid_point(now, q.grid(self.session.beats_per_bar).unwrap_or(self.session.beats_per_bar)),
        }
    }

    /// Start beat and length of the current scene (its longest clip).
    fn scene_length(&self) -> Option<(Beats, f64)> {
        let (scene, start) = self.scene?;
        let len = self.session.scene(scene).clips.iter().map(|c| self.session.clip(*c).length.0).fold(0.0, f64::max);
        (len > 0.0).then_some((start, len))
    }

    fn next_id(&mut self) -> TriggerId {
        let id = TriggerId(self.next_id);
        self.next_id += 1;
        id
    }

    fn send(&mut self, ev: Scheduled, meta: Meta) -> Result<(), PulseError> {
        self.commands.push(Command::Schedule(ev)).map_err(|_| PulseError::QueueFull)?;
        self.meta.insert(ev.id, meta);
        Ok(())
    }

    fn schedule_start(
        &mut self,
        clip: ClipId,
        target: Beats,
        velocity: Option<f64>,
        scene: Option<SceneId>,
    ) -> Result<TriggerId, PulseError> {
        let c = self.session.clip(clip).clone();
        let before = self.plans[c.track.index()].state_at(target);
        let (kind, anchor) = match before {
            Some(p) if c.legato && p.clip != clip => (TriggerKind::Legato, p.anchor),
            Some(p) if p.clip == clip => (TriggerKind::Retrigger, target),
            _ => (TriggerKind::Start, target),
        };
        let v = velocity.unwrap_or(1.0).clamp(0.0, 1.0);
        let amount = c.velocity_amount.clamp(0.0, 1.0);
        let gain = (db_to_gain(c.gain_db) * (1.0 - amount + amount * v)) as f32;
        let id = self.next_id();
        let ev = Scheduled { id, track: c.track, target, op: Op::Start { clip, anchor, gain } };
        self.send(ev, Meta { kind, clip: Some(clip), scene })?;
        let playing = Playing { clip, anchor, length: c.length, looping: c.looping };
        self.plans[c.track.index()].insert(target, id, Some(playing));
        Ok(id)
    }

    fn schedule_stop(
        &mut self,
        track: TrackId,
        target: Beats,
        fade: Option<Beats>,
        scene: Option<SceneId>,
    ) -> Result<Option<TriggerId>, PulseError> {
        let Some(playing) = self.plans[track.index()].state_at(target) else { return Ok(None) };
        let id = self.next_id();
        let ev = Scheduled { id, track, target, op: Op::Stop { fade } };
        self.send(ev, Meta { kind: TriggerKind::Stop, clip: Some(playing.clip), scene })?;
        self.plans[track.index()].insert(target, id, None);
        Ok(Some(id))
    }

    fn stop_with_mode(
        &mut self,
        track: TrackId,
        mode: StopMode,
        now: Beats,
        scene: Option<SceneId>,
    ) -> Result<Option<TriggerId>, PulseError> {
        self.repeating.retain(|r| self.session.clip(r.clip).track != track);
        match mode {
            StopMode::Immediate => self.schedule_stop(track, now, None, scene),
            StopMode::FadeOut(len) => self.schedule_stop(track, now, Some(len), scene),
            StopMode::Quantised => {
                let q = match self.plans[track.index()].state_at(now) {
                    Some(p) => self.clip_quantise(p.clip, None),
                    None => return Ok(None),
                };
                let target = self.quantised(now, q);
                self.schedule_stop(track, target, None, scene)
            }
            StopMode::SectionEnd => {
                let Some(p) = self.plans[track.index()].state_at(now) else { return Ok(None) };
                let target = p.pass_end_after(now);
                self.schedule_stop(track, target, None, scene)
            }
        }
    }
}

impl PulseEvent {
    /// The event as one JSON object for the `--log` file, with ids spelled as in the session
    /// file. Fields: `event` (`trigger`, `clip-end`, `dropped`), `id`, `kind`, `target`, `track`,
    /// `clip`, `scene`, `beat`, `sample`, `tempo`, `late`.
    pub fn to_json(&self, session: &Session) -> serde_json::Value {
        use serde_json::json;
        let track_name = |t: TrackId| session.tracks.get(t.index()).map(|t| t.id.clone());
        let clip_name = |c: Option<ClipId>| c.and_then(|c| session.clips.get(c.index())).map(|c| c.id.clone());
        match self {
            PulseEvent::Executed { id, kind, track, clip, scene, target, beat, sample, tempo, late } => json!({
                "event": "trigger",
                "id": id.0,
                "kind": kind.name(),
                "target": target.0,
                "track": track_name(*track),
                "clip": clip_name(*clip),
                "scene": scene.and_then(|s| session.scenes.get(s.index())).map(|s| s.id.clone()),
                "beat": beat.0,
                "sample": sample,
                "tempo": tempo,
                "late": late,
            }),
            PulseEvent::ClipEnded { track, clip, sample } => json!({
                "event": "clip-end",
                "track": track_name(*track),
                "clip": clip_name(Some(*clip)),
                "sample": sample,
            }),
            PulseEvent::Dropped { id } => json!({ "event": "dropped", "id": id.0 }),
        }
    }
}
