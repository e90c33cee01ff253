//! What Pulse tells the UI, the log and the conductor ([`PulseEvent`]): executed triggers with
//! their cause, follow-action decisions, playlist steps, tempo changes, refusals; and why an
//! action was refused ([`PulseError`]). Events render as the JSON lines of `--log`. Control
//! thread.

use crate::model::{ClipId, FollowTarget, SceneId, Session, TempoChange, TrackId};
use crate::queue::TriggerId;

use super::action::CommandId;
use crate::time::{Beats, SampleTime};

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
    /// A take began recording on a track.
    RecordStart,
    /// A take stopped recording on a track.
    RecordStop,
}

impl TriggerKind {
    /// The log spelling.
    pub fn name(self) -> &'static str {
        match self {
            TriggerKind::Start => "start",
            TriggerKind::Retrigger => "retrigger",
            TriggerKind::Legato => "legato",
            TriggerKind::Stop => "stop",
            TriggerKind::RecordStart => "record-start",
            TriggerKind::RecordStop => "record-stop",
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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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
        /// The id of the press that scheduled it ([`super::When::At`]), if the caller gave one.
        command: Option<CommandId>,
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
    /// A tempo outside `Bpm::MIN..=Bpm::MAX` (20..=999 BPM). Give a tempo in range.
    #[error("the tempo must be 20..=999 BPM")]
    TempoOutOfRange,
    /// `global` is not a global quantisation (it means "use the global one"). Give a grid.
    #[error("the global quantisation cannot be `global`; give none, bar, beat, 1/16, ...")]
    GlobalQuantise,
    /// A mixer value out of range: gain -96..=24 dB, pan -1..=1.
    #[error("mixer values: gain -96..=24 dB, pan -1..=1")]
    MixOutOfRange,
    /// The queue to Signal is full: Signal is not running (or is far behind). Retry once audio runs.
    #[error("the command queue to the audio thread is full")]
    QueueFull,
    /// Arming or recording a track that has no input (`input = "NAME"` in the session file).
    #[error("track {0} has no input to record from (give it input = \"NAME\" in the session file)")]
    NoInput(u32),
    /// `record.start` with no armed track. Arm one first (`record.arm TRACK`).
    #[error("no track is armed; arm one first (record.arm TRACK)")]
    NothingArmed,
    /// `record.stop` with nothing recording or about to record.
    #[error("nothing is recording")]
    NotRecording,
    /// Launcher recording into a slot that holds a clip, or on a track already recording.
    #[error("track {track}, scene {scene}: {why}")]
    SlotBusy {
        /// The track.
        track: u32,
        /// The scene (the slot's row).
        scene: u32,
        /// What is in the way.
        why: &'static str,
    },
    /// A fixed recording length outside 1..=1024 bars.
    #[error("a recording length must be 1..=1024 bars")]
    BadLength,
}

impl PulseEvent {
    /// The beat the event happens at, for those that carry one (decisions, steps, tempo changes,
    /// refusals, executed triggers); `None` for clip ends and drops, which carry samples.
    pub fn beat(&self) -> Option<Beats> {
        match self {
            PulseEvent::Executed { beat, .. } | PulseEvent::Follow { beat, .. } | PulseEvent::Step { beat, .. } => {
                Some(*beat)
            }
            PulseEvent::TempoChange(c) => Some(c.beat),
            PulseEvent::Refused { target, .. } => Some(*target),
            PulseEvent::ClipEnded { .. } | PulseEvent::Dropped { .. } => None,
        }
    }

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
            PulseEvent::Executed {
                id,
                kind,
                track,
                clip,
                scene,
                cause,
                target,
                beat,
                sample,
                tempo,
                late,
                command,
                ..
            } => {
                let mut v = json!({
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
                });
                if let Some(c) = command {
                    v["command"] = json!(c.0);
                }
                v
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
