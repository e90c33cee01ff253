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

use crate::model::{
    ClipContent, ClipId, EmptySlot, FollowAction, FollowActions, FollowTarget, LaunchMode, Placement, PlaylistStep,
    SceneId, Session, StreamSource, TempoChange, TrackId, db_to_gain,
};
use crate::queue::{Command, MixSettings, Op, Report, Scheduled, TriggerId};
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
    /// A clip trigger with every field of the seed's `ClipTrigger` (`Launch` is its shorthand).
    Trigger(ClipTrigger),
    /// A scene trigger with a mode (`LaunchScene` is its shorthand, in `Full` mode).
    Scene(SceneTrigger),
    /// Start a playlist at one of its steps (0 = the first).
    Playlist {
        /// Index into `Session::playlists`.
        playlist: usize,
        /// Step to start at.
        step: usize,
        /// Overrides the first scene's quantisation.
        quantise: Option<Quantise>,
    },
    /// Scene playthrough preview: play scenes `from..=to` in order, each for its length (its
    /// longest clip), as a temporary timeline; then stop.
    Playthrough {
        /// First scene.
        from: SceneId,
        /// Last scene.
        to: SceneId,
        /// Quantisation of the first launch.
        quantise: Option<Quantise>,
    },
    /// Play the arrangement: every track follows its arrangement lane from this beat on.
    PlayArrangement,
    /// Return every track a launched clip took over to its arrangement lane.
    BackToArrangement {
        /// When (default: the global quantisation).
        quantise: Option<Quantise>,
    },
}

/// How a clip trigger treats the clip it launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Start the clip from its beginning, unless it is already playing (then nothing changes).
    Start,
    /// Start the clip from its beginning, even if it is playing.
    Retrigger,
    /// Take over from the clip playing on the track at its musical position.
    Legato,
    /// Stop the clip if it is the one playing on its track.
    Stop,
}

/// The seed's `ClipTrigger`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipTrigger {
    /// The clip.
    pub clip: ClipId,
    /// Overrides the clip's quantisation.
    pub quantise: Option<Quantise>,
    /// Overrides the clip's launch mode and legato setting.
    pub behaviour: Option<Behaviour>,
    /// Launch velocity 0..=1.
    pub launch_velocity: Option<f64>,
}

/// How a scene trigger launches its scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SceneMode {
    /// Launch every clip of the scene; other tracks stop (unless set to keep playing, or the
    /// scene's empty slots continue).
    #[default]
    Full,
    /// Launch only the scene's own clips; leave every other track alone.
    Partial,
    /// Start the first playlist that holds this scene, at this scene's step.
    Playlist,
    /// A launch made by a follow action (a full launch; logged as such).
    FollowAction,
}

/// The seed's `SceneTrigger`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneTrigger {
    /// The scene.
    pub scene: SceneId,
    /// Overrides the scene's quantisation.
    pub quantise: Option<Quantise>,
    /// How it launches.
    pub mode: SceneMode,
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

/// Why a trigger was scheduled (the `cause` field of the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cause {
    /// A press: a pad, a script, the conductor.
    Press,
    /// A repeat-mode retrigger while the pad is held.
    Repeat,
    /// A clip's follow action.
    ClipFollow {
        /// The clip whose follow action it was.
        from: ClipId,
    },
    /// A scene's follow action.
    SceneFollow {
        /// The scene whose follow action it was.
        from: SceneId,
    },
    /// A playlist step.
    Playlist {
        /// Index into `Session::playlists`.
        playlist: usize,
        /// Step index.
        step: usize,
    },
    /// A scene playthrough preview step.
    Playthrough {
        /// Step index (0 = the first scene of the range).
        step: usize,
    },
    /// Arrangement playback.
    Arrangement,
}

impl Cause {
    fn json(&self, session: &Session) -> serde_json::Value {
        use serde_json::json;
        match *self {
            Cause::Press => json!("press"),
            Cause::Repeat => json!("repeat"),
            Cause::ClipFollow { from } => {
                json!({ "follow-action": { "clip": session.clips.get(from.index()).map(|c| c.id.clone()) } })
            }
            Cause::SceneFollow { from } => {
                json!({ "follow-action": { "scene": session.scenes.get(from.index()).map(|s| s.id.clone()) } })
            }
            Cause::Playlist { playlist, step } => {
                json!({ "playlist": session.playlists.get(playlist).map(|p| p.id.clone()), "step": step })
            }
            Cause::Playthrough { step } => json!({ "playthrough": step }),
            Cause::Arrangement => json!("arrangement"),
        }
    }
}

/// Which alternative a follow-action decision took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Action A.
    A,
    /// Action B.
    B,
    /// Neither (their chances add up to less than 1): play on until the next decision.
    None,
}

/// What a follow action decided, and for which clip or scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FollowSource {
    /// A clip's follow action.
    Clip(ClipId),
    /// A scene's follow action.
    Scene(SceneId),
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
        /// Why it was scheduled.
        cause: Cause,
        /// For a start: the beat at which the clip is at its start offset (the target, or
        /// earlier for a legato start). Lets a recorded performance be committed exactly.
        anchor: Option<Beats>,
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
    /// A follow action was decided (ahead of the beat it acts at).
    Follow {
        /// Whose follow action.
        source: FollowSource,
        /// The beat it acts at.
        beat: Beats,
        /// How many decisions this clip or scene had before this one.
        occurrence: u64,
        /// Which alternative.
        choice: Choice,
        /// What it does (`None` when nothing happens).
        next: Option<FollowTarget>,
    },
    /// A playlist or playthrough moved to a step (ahead of the beat it starts at).
    Step {
        /// The playlist (`None`: a playthrough preview).
        playlist: Option<usize>,
        /// Step index.
        step: usize,
        /// The scene it launches.
        scene: SceneId,
        /// The beat it starts at.
        beat: Beats,
    },
    /// The tempo or time signature changes at a beat (a scene or the arrangement set it). The
    /// clock owner (the renderer, the node's Link session) applies it at that beat.
    TempoChange(TempoChange),
    /// A start of a streamed clip was refused ahead of its beat because its audio could not be
    /// ready in time (see [`crate::model::StreamSettings`]). Nothing changed on the track.
    Refused {
        /// The id the trigger would have had.
        id: TriggerId,
        /// Track.
        track: TrackId,
        /// The clip.
        clip: ClipId,
        /// The beat it would have started at.
        target: Beats,
        /// Why.
        reason: Refusal,
    },
}

/// Why a start of a streamed clip was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// It starts outside the clip's resident head and the press left less time before its beat
    /// than the reader's lead (`stream_lead_ms`). Launch it quantised, or raise `stream_head_s`.
    NotReady {
        /// Milliseconds between the press and the beat.
        available_ms: f64,
        /// Milliseconds the reader needs.
        needed_ms: f64,
    },
    /// The reader could not read the clip's audio (the message says why).
    Unreadable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotReady { available_ms, needed_ms } => write!(
                f,
                "it starts outside its in-memory head and only {available_ms:.0} ms were left before its beat (the \
                 disk reader needs {needed_ms:.0} ms)"
            ),
            Refusal::Unreadable(why) => write!(f, "{why}"),
        }
    }
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
    /// The playlist index is not in the session, or the step is past its end.
    #[error("no playlist {0} (or no such step)")]
    NoSuchPlaylist(usize),
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

    /// Removes (and returns the ids of) events after `target`: a new trigger on a track replaces
    /// whatever was queued after it.
    fn cancel_after(&mut self, target: Beats) -> Vec<TriggerId> {
        let i = self.events.partition_point(|(t, _, _)| t.0 <= target.0 + 1e-9);
        self.events.drain(i..).map(|(_, id, _)| id).collect()
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
    cause: Cause,
}

/// A held pad in repeat launch mode.
#[derive(Debug, Clone, Copy)]
struct Repeating {
    clip: ClipId,
    grid: f64,
    next: Beats,
    velocity: Option<f64>,
}

/// A clip follow action waiting for its beat.
#[derive(Debug, Clone, Copy)]
struct ClipFollowPending {
    clip: ClipId,
    at: Beats,
    /// Passes between decisions, in beats.
    every: f64,
}

/// A scene follow action waiting for its beat.
#[derive(Debug, Clone, Copy)]
struct SceneFollowPending {
    scene: SceneId,
    at: Beats,
    every: f64,
}

/// A playlist or playthrough in progress.
#[derive(Debug, Clone)]
struct Sequence {
    playlist: Option<usize>,
    steps: Vec<PlaylistStep>,
    /// The step that starts at `at`.
    next: usize,
    at: Beats,
    looping: bool,
}

/// One arrangement event on a lane.
#[derive(Debug, Clone, Copy)]
enum ArrEvent {
    Start(Placement),
    Stop,
}

/// How a start is scheduled.
#[derive(Debug, Clone, Copy)]
struct StartSpec {
    velocity: Option<f64>,
    scene: Option<SceneId>,
    cause: Cause,
    legato: Option<bool>,
    /// Anchor explicitly (arrangement placements that start mid-clip).
    anchor: Option<Beats>,
    /// Arm the clip's follow actions.
    follow: bool,
}

impl StartSpec {
    fn press(cause: Cause) -> StartSpec {
        StartSpec { velocity: None, scene: None, cause, legato: None, anchor: None, follow: true }
    }
}

/// How far back (in beats) Pulse remembers time-signature changes for [`Pulse::bar_position`].
pub const METER_MEMORY: f64 = 256.0;

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
    clip_follow: Vec<Option<ClipFollowPending>>,
    scene_follow: Option<SceneFollowPending>,
    sequence: Option<Sequence>,
    /// Follow-action decisions so far, per clip and per scene (the occurrence counts).
    clip_decisions: Vec<u64>,
    scene_decisions: Vec<u64>,
    /// Time-signature changes: (beat, beats per bar, bars before that beat), in beat order. Bar
    /// grids are anchored at the latest change at or before the press; the bar count is what
    /// [`Pulse::bar_position`] numbers bars by.
    meters: Vec<(Beats, f64, f64)>,
    /// Arrangement playback.
    arrangement_on: bool,
    taken_over: Vec<bool>,
    lanes: Vec<Vec<(Beats, ArrEvent)>>,
    lane_pos: Vec<usize>,
    tempo_pos: usize,
    /// Decisions and steps waiting to be polled.
    notices: std::collections::VecDeque<PulseEvent>,
    /// Tempo changes the clock owner has not taken yet.
    tempo_changes: Vec<TempoChange>,
    /// Disk streaming: the live reader thread (kept running while Pulse lives).
    stream_reader: Option<Box<dyn Send>>,
    /// Per clip: how it streams, if it does.
    stream_gates: Vec<Option<StreamGate>>,
    /// The beat of the last press or tick.
    now: Beats,
    /// The tempo last set (the session's, then scene and arrangement changes).
    tempo: f64,
}

impl Pulse {
    pub(crate) fn new(
        session: Arc<Session>,
        commands: rtrb::Producer<Command>,
        reports: rtrb::Consumer<Report>,
        mix: Vec<MixSettings>,
    ) -> Pulse {
        let tracks = session.tracks.len();
        let lanes = (0..tracks).map(|t| lane_events(&session, TrackId(t as u32))).collect();
        let stream_gates = StreamGate::of(&session);
        let tempo = session.tempo.0;
        Pulse {
            plans: (0..tracks).map(|_| TrackPlan::default()).collect(),
            clip_follow: vec![None; tracks],
            clip_decisions: vec![0; session.clips.len()],
            scene_decisions: vec![0; session.scenes.len()],
            meters: vec![(Beats::ZERO, session.beats_per_bar, 0.0)],
            taken_over: vec![false; tracks],
            lane_pos: vec![0; tracks],
            lanes,
            session,
            commands,
            reports,
            next_id: 1,
            meta: HashMap::new(),
            scene: None,
            repeating: Vec::new(),
            mix,
            scene_follow: None,
            sequence: None,
            arrangement_on: false,
            stream_reader: None,
            stream_gates,
            now: Beats::ZERO,
            tempo,
            tempo_pos: 0,
            notices: Default::default(),
            tempo_changes: Vec::new(),
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

    fn meter_at(&self, beat: Beats) -> (Beats, f64) {
        let (origin, bpb, _) = self.meter_entry(beat);
        (origin, bpb)
    }

    fn meter_entry(&self, beat: Beats) -> (Beats, f64, f64) {
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

    /// Keeps the live stream reader thread running as long as this Pulse.
    pub(crate) fn keep_reader(&mut self, reader: Box<dyn Send>) {
        self.stream_reader = Some(reader);
    }

    /// Performs an action pressed at beat `now`. Returns the ids of the triggers it scheduled
    /// (none when the action changes nothing, e.g. stopping a silent track).
    pub fn press(&mut self, action: Action, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        self.fold(now);
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
                let q = quantise.unwrap_or(Quantise::Global).resolve(None, self.session.quantise);
                let target = self.quantised(now, q);
                if self.arrangement_on {
                    for t in 0..self.session.tracks.len() {
                        if std::mem::replace(&mut self.taken_over[t], false) {
                            ids.extend(self.resume_lane(TrackId(t as u32), target)?);
                        }
                    }
                }
            }
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
        self.commands.push(Command::Mix { track, settings }).map_err(|_| PulseError::QueueFull)
    }

    /// A track's current mixer settings.
    pub fn mix(&self, track: TrackId) -> Option<MixSettings> {
        self.mix.get(track.index()).copied()
    }

    /// The next decision Pulse made or thing Signal reported, translated for the UI and the log.
    pub fn poll_event(&mut self) -> Option<PulseEvent> {
        if let Some(n) = self.notices.pop_front() {
            return Some(n);
        }
        let r = self.reports.pop().ok()?;
        Some(match r {
            Report::Executed { event, beat, sample, tempo, late } => {
                let meta = self.meta.remove(&event.id).unwrap_or(Meta {
                    kind: TriggerKind::Start,
                    clip: None,
                    scene: None,
                    cause: Cause::Press,
                });
                PulseEvent::Executed {
                    id: event.id,
                    kind: meta.kind,
                    track: event.track,
                    clip: meta.clip,
                    scene: meta.scene,
                    cause: meta.cause,
                    anchor: match event.op {
                        Op::Start { anchor, .. } => Some(anchor),
                        Op::Stop { .. } => None,
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
        })
    }

    fn fold(&mut self, now: Beats) {
        self.now = now;
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

    fn clip_quantise(&self, clip: ClipId, over: Option<Quantise>) -> Quantise {
        let c = self.session.clip(clip);
        let scene_q = self.session.scene_of_clip(clip).map(|s| self.session.scene(s).quantise);
        over.unwrap_or(c.quantise).resolve(scene_q, self.session.quantise)
    }

    /// The beat a press at `now` with quantisation `q` executes at. Bar grids are anchored at
    /// the last time-signature change.
    pub fn quantised(&self, now: Beats, q: Quantise) -> Beats {
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

    /// Makes room for a new trigger on `track` at `target`: whatever was queued after it goes.
    fn supersede(&mut self, track: TrackId, target: Beats) {
        for id in self.plans[track.index()].cancel_after(target) {
            self.meta.remove(&id);
            // A full queue here only means Signal executes a stale event that the plan no
            // longer has; the next trigger on the track corrects it.
            let _ = self.commands.push(Command::Cancel { id });
        }
        if self.clip_follow[track.index()].is_some_and(|f| f.at.0 >= target.0 - 1e-9) {
            self.clip_follow[track.index()] = None;
        }
    }

    fn clip_trigger(&mut self, t: ClipTrigger, now: Beats, ids: &mut Vec<TriggerId>) -> Result<(), PulseError> {
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

    fn scene_target(&self, scene: SceneId, quantise: Option<Quantise>, now: Beats) -> Beats {
        let q = quantise
            .unwrap_or(Quantise::Global)
            .resolve(Some(self.session.scene(scene).quantise), self.session.quantise);
        self.quantised(now, q)
    }

    fn scene_trigger(&mut self, t: SceneTrigger, now: Beats, ids: &mut Vec<TriggerId>) -> Result<(), PulseError> {
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
    fn launch_scene(
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
        self.scene = Some((scene, target));
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

    fn tempo_change(&mut self, c: TempoChange) {
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

    fn start_sequence(&mut self, seq: Sequence, ids: &mut Vec<TriggerId>) -> Result<(), PulseError> {
        self.scene_follow = None;
        self.sequence = Some(seq);
        // The first step is launched now (it may be due before the next tick).
        let before = self.next_id;
        self.sequence_step()?;
        ids.extend((before..self.next_id).map(TriggerId));
        Ok(())
    }

    fn sequence_step(&mut self) -> Result<(), PulseError> {
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
                self.scene = None;
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

    /// The seeded choice for a follow-action decision: a pure function of the session seed,
    /// what decides (clip or scene index), how many decisions it had before, and a salt.
    fn draw(&self, what: u64, index: u32, occurrence: u64, salt: u64) -> f64 {
        let mut x = self.session.seed ^ 0x6c6f_6f70_686f_6c65;
        for v in [what, index as u64, occurrence, salt] {
            x = splitmix64(x ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn choose(&self, f: &FollowActions, what: u64, index: u32, occurrence: u64) -> (Choice, Option<FollowAction>) {
        let ca = f.a.chance.clamp(0.0, 1.0);
        let cb = f.b.as_ref().map(|b| b.chance.clamp(0.0, 1.0)).unwrap_or(0.0);
        let total = ca + cb;
        if total <= 0.0 {
            return (Choice::None, None);
        }
        let r = self.draw(what, index, occurrence, 0) * total.max(1.0);
        if r < ca {
            (Choice::A, Some(f.a.clone()))
        } else if r < total {
            (Choice::B, f.b.clone())
        } else {
            (Choice::None, None)
        }
    }

    /// Resolves `next` / `previous` / `first` / `last` / `random` among `domain` (in order).
    fn pick(&self, action: &FollowAction, domain: &[u32], current: u32, salt: (u64, u32, u64)) -> Option<u32> {
        let c = &action.constraints;
        let allowed = |x: &u32| {
            (c.only.is_empty() || c.only.contains(x)) && !c.exclude.contains(x) && !(c.no_repeat && *x == current)
        };
        let cands: Vec<u32> = domain.iter().copied().filter(allowed).collect();
        if cands.is_empty() {
            return None;
        }
        let pos = domain.iter().position(|x| *x == current).unwrap_or(0);
        let n = domain.len();
        match action.next {
            FollowTarget::Next => (1..=n).map(|k| domain[(pos + k) % n]).find(|x| cands.contains(x)),
            FollowTarget::Previous => (1..=n).map(|k| domain[(pos + n - k % n) % n]).find(|x| cands.contains(x)),
            FollowTarget::First => cands.first().copied(),
            FollowTarget::Last => cands.last().copied(),
            FollowTarget::Random => {
                let r = self.draw(salt.0, salt.1, salt.2, 1);
                Some(cands[((r * cands.len() as f64) as usize).min(cands.len() - 1)])
            }
            _ => None,
        }
    }

    /// Makes one follow-action decision for a clip or scene: counts it, draws the choice and
    /// reports it. Returns the action taken (if any) and the occurrence number it was drawn with.
    fn decide(&mut self, source: FollowSource, f: &FollowActions, at: Beats) -> (Option<FollowAction>, u64) {
        let (what, index, counter) = match source {
            FollowSource::Clip(c) => (1, c.0, &mut self.clip_decisions[c.index()]),
            FollowSource::Scene(sc) => (2, sc.0, &mut self.scene_decisions[sc.index()]),
        };
        let occurrence = *counter;
        *counter += 1;
        let (choice, action) = self.choose(f, what, index, occurrence);
        self.notices.push_back(PulseEvent::Follow {
            source,
            beat: at,
            occurrence,
            choice,
            next: action.as_ref().map(|a| a.next),
        });
        (action, occurrence)
    }

    fn clip_follow_decide(&mut self, t: usize) -> Result<(), PulseError> {
        let Some(pending) = self.clip_follow[t].take() else { return Ok(()) };
        let at = pending.at;
        let track = TrackId(t as u32);
        // The clip must still be the one playing up to that beat.
        let still = self.plans[t].state_at(Beats(at.0 - 1e-6)).map(|p| p.clip) == Some(pending.clip);
        if !still {
            return Ok(());
        }
        let session = self.session.clone();
        let Some(f) = session.clip(pending.clip).follow.as_ref() else { return Ok(()) };
        let (action, occurrence) = self.decide(FollowSource::Clip(pending.clip), f, at);
        let cause = Cause::ClipFollow { from: pending.clip };
        let spec = StartSpec { legato: Some(false), ..StartSpec::press(cause) };
        let Some(action) = action else {
            // Nothing this time: decide again after the same number of passes.
            self.clip_follow[t] = Some(ClipFollowPending { at: Beats(at.0 + pending.every), ..pending });
            return Ok(());
        };
        match action.next {
            FollowTarget::Stop => {
                self.schedule_stop(track, at, None, None, cause)?;
            }
            FollowTarget::Repeat => {
                self.schedule_start(pending.clip, at, spec)?;
            }
            FollowTarget::Scene(scene) => {
                self.sequence = None;
                self.launch_scene(scene, at, false, cause, true)?;
            }
            FollowTarget::Clip(clip) => {
                self.schedule_start(clip, at, spec)?;
            }
            _ => {
                let domain: Vec<u32> = session.clips_of_track(track).iter().map(|c| c.0).collect();
                match self.pick(&action, &domain, pending.clip.0, (1, pending.clip.0, occurrence)) {
                    Some(next) => {
                        self.schedule_start(ClipId(next), at, spec)?;
                    }
                    // No candidate: play on and decide again later.
                    None => {
                        self.clip_follow[t] = Some(ClipFollowPending { at: Beats(at.0 + pending.every), ..pending })
                    }
                }
            }
        }
        Ok(())
    }

    fn scene_follow_decide(&mut self) -> Result<(), PulseError> {
        let Some(pending) = self.scene_follow.take() else { return Ok(()) };
        let at = pending.at;
        let session = self.session.clone();
        let Some(f) = session.scene(pending.scene).follow.as_ref() else { return Ok(()) };
        let (action, occurrence) = self.decide(FollowSource::Scene(pending.scene), f, at);
        let cause = Cause::SceneFollow { from: pending.scene };
        let Some(action) = action else {
            self.scene_follow = Some(SceneFollowPending { at: Beats(at.0 + pending.every), ..pending });
            return Ok(());
        };
        let next = match action.next {
            FollowTarget::Stop => {
                for t in 0..session.tracks.len() {
                    self.schedule_stop(TrackId(t as u32), at, None, None, cause)?;
                }
                self.scene = None;
                return Ok(());
            }
            FollowTarget::Repeat => Some(pending.scene),
            FollowTarget::Scene(s) => Some(s),
            FollowTarget::Clip(c) => {
                let spec = StartSpec { legato: Some(false), ..StartSpec::press(cause) };
                self.schedule_start(c, at, spec)?;
                return Ok(());
            }
            _ => {
                let domain: Vec<u32> = (0..session.scenes.len() as u32).collect();
                self.pick(&action, &domain, pending.scene.0, (2, pending.scene.0, occurrence)).map(SceneId)
            }
        };
        match next {
            Some(scene) => {
                self.launch_scene(scene, at, false, cause, true)?;
            }
            None => self.scene_follow = Some(SceneFollowPending { at: Beats(at.0 + pending.every), ..pending }),
        }
        Ok(())
    }

    /// Why a start of a streamed clip at `target` with `anchor` cannot be ready, if it cannot.
    /// Only presses are refused for lack of time (Pulse decides follow actions, playlists and the
    /// arrangement itself, at beats that depend on how far ahead it is ticked).
    fn stream_refusal(&self, clip: ClipId, target: Beats, anchor: Beats, cause: Cause) -> Option<Refusal> {
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

    fn schedule_start(&mut self, clip: ClipId, target: Beats, spec: StartSpec) -> Result<TriggerId, PulseError> {
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
        self.send(ev, Meta { kind, clip: Some(clip), scene: spec.scene, cause: spec.cause })?;
        let playing = Playing { clip, anchor, length: c.length, looping: c.looping };
        self.plans[t].insert(target, id, Some(playing));
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

    fn schedule_stop(
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
        self.send(ev, Meta { kind: TriggerKind::Stop, clip: Some(playing.clip), scene, cause })?;
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

    /// Puts a track back on its arrangement lane from `at`: the placement that covers `at`
    /// starts phase-aligned (or the track stops), and the lane's later events follow.
    fn resume_lane(&mut self, track: TrackId, at: Beats) -> Result<Option<TriggerId>, PulseError> {
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

    fn lane_event(&mut self, track: TrackId, beat: Beats, ev: ArrEvent) -> Result<(), PulseError> {
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

/// Pulse's view of a streamed clip: is it readable, and does a start at a frame need the lane.
#[derive(Debug, Clone)]
pub(crate) struct StreamGate {
    pub source: Arc<StreamSource>,
    pub head_start: i64,
    pub head_end: i64,
}

impl StreamGate {
    pub(crate) fn of(session: &Session) -> Vec<Option<StreamGate>> {
        session
            .clips
            .iter()
            .map(|c| match (&c.stream, &c.content) {
                (Some(s), ClipContent::Audio(head)) => Some(StreamGate {
                    source: s.source.clone(),
                    head_start: s.head_start as i64,
                    head_end: (s.head_start + head.frames() as u64) as i64,
                }),
                _ => None,
            })
            .collect()
    }
}

/// The arrangement events of one lane in beat order: each placement starts at its start; the
/// lane stops at a placement's end unless another placement has started by then.
fn lane_events(session: &Session, track: TrackId) -> Vec<(Beats, ArrEvent)> {
    let mut pls: Vec<Placement> = session.arrangement.clips.iter().filter(|p| p.track == track).copied().collect();
    pls.sort_by(|a, b| a.start.0.total_cmp(&b.start.0));
    let mut out = Vec::new();
    for (i, p) in pls.iter().enumerate() {
        out.push((p.start, ArrEvent::Start(*p)));
        let replaced = pls[i + 1..].iter().any(|q| q.start.0 > p.start.0 && q.start.0 <= p.end().0 + 1e-9);
        if !replaced {
            out.push((p.end(), ArrEvent::Stop));
        }
    }
    // Stops sort before starts at the same beat only when they belong to earlier placements,
    // which `replaced` already prevents; a stable sort keeps the rest in placement order.
    out.sort_by(|a, b| a.0.0.total_cmp(&b.0.0));
    out
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl PulseEvent {
    /// The event as one JSON object for the `--log` file, with ids spelled as in the session
    /// file. Executed triggers: `event: "trigger"`, `id`, `kind`, `target`, `track`, `clip`,
    /// `scene`, `cause`, `beat`, `sample`, `tempo`, `late`. Also `clip-end`, `dropped`,
    /// `follow` (`source`, `beat`, `occurrence`, `choice`, `next`), `step` (`playlist`, `step`,
    /// `scene`, `beat`), `tempo-change` (`beat`, `tempo`, `beats_per_bar`) and `refused` (`id`,
    /// `track`, `clip`, `target`, `reason`).
    pub fn to_json(&self, session: &Session) -> serde_json::Value {
        use serde_json::json;
        let track_name = |t: TrackId| session.tracks.get(t.index()).map(|t| t.id.clone());
        let clip_name = |c: Option<ClipId>| c.and_then(|c| session.clips.get(c.index())).map(|c| c.id.clone());
        let scene_name = |s: Option<SceneId>| s.and_then(|s| session.scenes.get(s.index())).map(|s| s.id.clone());
        match self {
            PulseEvent::Executed { id, kind, track, clip, scene, cause, target, beat, sample, tempo, late, .. } => {
                json!({
                    "event": "trigger",
                    "id": id.0,
                    "kind": kind.name(),
                    "target": target.0,
                    "track": track_name(*track),
                    "clip": clip_name(*clip),
                    "scene": scene_name(*scene),
                    "cause": cause.json(session),
                    "beat": beat.0,
                    "sample": sample,
                    "tempo": tempo,
                    "late": late,
                })
            }
            PulseEvent::ClipEnded { track, clip, sample } => json!({
                "event": "clip-end",
                "track": track_name(*track),
                "clip": clip_name(Some(*clip)),
                "sample": sample,
            }),
            PulseEvent::Dropped { id } => json!({ "event": "dropped", "id": id.0 }),
            PulseEvent::Follow { source, beat, occurrence, choice, next } => {
                let (kind, name) = match source {
                    FollowSource::Clip(c) => ("clip", clip_name(Some(*c))),
                    FollowSource::Scene(s) => ("scene", scene_name(Some(*s))),
                };
                let next = next.map(|n| match n {
                    FollowTarget::Clip(c) => json!({ "clip": clip_name(Some(c)) }),
                    FollowTarget::Scene(s) => json!({ "scene": scene_name(Some(s)) }),
                    other => json!(format!("{other:?}").to_lowercase()),
                });
                json!({
                    "event": "follow",
                    kind: name,
                    "beat": beat.0,
                    "occurrence": occurrence,
                    "choice": match choice { Choice::A => "a", Choice::B => "b", Choice::None => "none" },
                    "next": next,
                })
            }
            PulseEvent::Step { playlist, step, scene, beat } => json!({
                "event": "step",
                "playlist": playlist.and_then(|p| session.playlists.get(p)).map(|p| p.id.clone()),
                "step": step,
                "scene": scene_name(Some(*scene)),
                "beat": beat.0,
            }),
            PulseEvent::Refused { id, track, clip, target, reason } => json!({
                "event": "refused",
                "id": id.0,
                "track": track_name(*track),
                "clip": clip_name(Some(*clip)),
                "target": target.0,
                "reason": reason.to_string(),
            }),
            PulseEvent::TempoChange(c) => json!({
                "event": "tempo-change",
                "beat": c.beat.0,
                "tempo": c.tempo.map(|t| t.0),
                "beats_per_bar": c.beats_per_bar,
            }),
        }
    }
}

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
