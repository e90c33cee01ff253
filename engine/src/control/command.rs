//! [`ControlCommand`]: everything a performer can do, named by the session's own ids, in a form
//! that crosses threads and the network (serde: JSON for logs and `ctl`, postcard on the wire).
//! It resolves against a session into Pulse's [`Action`] (or a transport change for the clock
//! owner). The variants carry the seed's IPC names (`clip.trigger`, `scene.trigger`,
//! `launcher.quantise.update`, `scene.playthrough.request`, ...). Any thread; pure data.

use serde::{Deserialize, Serialize};

use crate::model::{SceneId, Session};
use crate::pulse::{Action, Behaviour, ClipTrigger, MixChange, RecordAction, SceneMode, SceneTrigger, StopMode};
use crate::time::{Bpm, Quantise};

/// Something a performer does, by name. See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Press a clip's launch button (`clip.trigger`).
    #[serde(rename = "clip.trigger")]
    ClipTrigger {
        /// The clip's id.
        clip: String,
        /// Overrides the clip's quantisation.
        quantise: Option<Quantise>,
        /// Overrides the clip's launch mode and legato setting.
        behaviour: Option<Behaviour>,
        /// Launch velocity 0..=1.
        velocity: Option<f64>,
    },
    /// Release a clip's launch button (gate and repeat launch modes stop).
    #[serde(rename = "clip.release")]
    ClipRelease {
        /// The clip's id.
        clip: String,
    },
    /// Launch a scene (`scene.trigger`).
    #[serde(rename = "scene.trigger")]
    SceneTrigger {
        /// The scene's id.
        scene: String,
        /// Overrides the scene's quantisation.
        quantise: Option<Quantise>,
        /// Full (default), partial, playlist or follow-action.
        mode: Option<SceneMode>,
    },
    /// Stop one track.
    #[serde(rename = "track.stop")]
    TrackStop {
        /// The track's id.
        track: String,
        /// How (default: quantised).
        mode: Option<StopMode>,
    },
    /// Stop every track (Live's stop-all button).
    #[serde(rename = "stop.all")]
    StopAll {
        /// How (default: quantised).
        mode: Option<StopMode>,
    },
    /// Start a playlist at a step.
    #[serde(rename = "playlist.start")]
    PlaylistStart {
        /// The playlist's id.
        playlist: String,
        /// The step, from 0.
        step: usize,
        /// Overrides the first scene's quantisation.
        quantise: Option<Quantise>,
    },
    /// Play scenes in order, each for its length (`scene.playthrough.request`).
    #[serde(rename = "scene.playthrough.request")]
    Playthrough {
        /// First scene (default: the first).
        from: Option<String>,
        /// Last scene (default: the last).
        to: Option<String>,
        /// Quantisation of the first launch.
        quantise: Option<Quantise>,
    },
    /// Every track follows the arrangement from now.
    #[serde(rename = "arrangement.play")]
    ArrangementPlay,
    /// Tracks a launch took over go back to the arrangement.
    #[serde(rename = "arrangement.back")]
    BackToArrangement {
        /// When (default: the global quantisation).
        quantise: Option<Quantise>,
    },
    /// Change the tempo.
    #[serde(rename = "tempo.set")]
    Tempo {
        /// Beats per minute (20..=999).
        bpm: f64,
    },
    /// Change the global launch quantisation (`launcher.quantise.update`).
    #[serde(rename = "launcher.quantise.update")]
    LauncherQuantise {
        /// The new setting.
        quantise: Quantise,
    },
    /// Change a track's mixer settings.
    #[serde(rename = "mixer.set")]
    Mix {
        /// The track's id.
        track: String,
        /// What changes.
        change: MixChange,
    },
    /// Start the transport (Link's start/stop sync, or the node's own clock).
    #[serde(rename = "transport.start")]
    TransportStart,
    /// Stop the transport: everything falls silent until it starts again.
    #[serde(rename = "transport.stop")]
    TransportStop,
    /// Arm a track for recording (it needs `input = "NAME"` in the session file).
    #[serde(rename = "record.arm")]
    RecordArm {
        /// The track's id.
        track: String,
    },
    /// Disarm a track.
    #[serde(rename = "record.disarm")]
    RecordDisarm {
        /// The track's id.
        track: String,
    },
    /// Start recording the armed tracks (default: at the next bar).
    #[serde(rename = "record.start")]
    RecordStart {
        /// When (default: the next bar).
        quantise: Option<Quantise>,
    },
    /// Stop every take recording (default: at the next bar).
    #[serde(rename = "record.stop")]
    RecordStop {
        /// When (default: the next bar).
        quantise: Option<Quantise>,
    },
    /// Record a track's input into an empty launcher slot from the next bar.
    #[serde(rename = "clip.record")]
    ClipRecord {
        /// The track's id.
        track: String,
        /// The scene whose row the slot is in.
        scene: String,
        /// A fixed length in bars (else until `record.stop`).
        bars: Option<u32>,
    },
}

/// What a command becomes for the node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved {
    /// An action for Pulse.
    Pulse(Action),
    /// Start (`true`) or stop the transport: for the clock owner (Link, the node's clock).
    Transport(bool),
}

/// Why a command does not apply to the session: a name that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No such clip, scene, track or playlist; the message lists the ones there are.
    #[error("{kind} '{name}' does not exist ({kind}s: {known})")]
    Unknown {
        /// `clip`, `scene`, `track` or `playlist`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The session has no scenes for a playthrough.
    #[error("the session has no scenes")]
    NoScenes,
    /// A playthrough must go forwards.
    #[error("scene '{to}' comes before scene '{from}'; a playthrough goes forwards")]
    Backwards {
        /// First scene.
        from: String,
        /// Last scene.
        to: String,
    },
}

fn unknown<'a>(kind: &'static str, name: &str, names: impl Iterator<Item = &'a str>) -> CommandError {
    let names: Vec<&str> = names.collect();
    let known = if names.len() > 12 { format!("{}, ...", names[..12].join(", ")) } else { names.join(", ") };
    CommandError::Unknown { kind, name: name.to_string(), known }
}

impl ControlCommand {
    /// Resolves the names against `session`. Any thread.
    pub fn resolve(&self, session: &Session) -> Result<Resolved, CommandError> {
        let clip = |name: &str| {
            session
                .clip_by_name(name.trim())
                .ok_or_else(|| unknown("clip", name, session.clips.iter().map(|c| c.id.as_str())))
        };
        let scene = |name: &str| {
            session
                .scene_by_name(name.trim())
                .ok_or_else(|| unknown("scene", name, session.scenes.iter().map(|s| s.id.as_str())))
        };
        let track = |name: &str| {
            session
                .track_by_name(name.trim())
                .ok_or_else(|| unknown("track", name, session.tracks.iter().map(|t| t.id.as_str())))
        };
        let stop = |mode: Option<StopMode>| mode.unwrap_or(StopMode::Quantised);
        Ok(Resolved::Pulse(match self {
            ControlCommand::ClipTrigger { clip: c, quantise, behaviour, velocity } => Action::Trigger(ClipTrigger {
                clip: clip(c)?,
                quantise: *quantise,
                behaviour: *behaviour,
                launch_velocity: *velocity,
            }),
            ControlCommand::ClipRelease { clip: c } => Action::Release { clip: clip(c)? },
            ControlCommand::SceneTrigger { scene: s, quantise, mode } => {
                Action::Scene(SceneTrigger { scene: scene(s)?, quantise: *quantise, mode: mode.unwrap_or_default() })
            }
            ControlCommand::TrackStop { track: t, mode } => Action::StopTrack { track: track(t)?, mode: stop(*mode) },
            ControlCommand::StopAll { mode } => Action::StopAll { mode: stop(*mode) },
            ControlCommand::PlaylistStart { playlist, step, quantise } => {
                let p = session
                    .playlist_by_name(playlist.trim())
                    .ok_or_else(|| unknown("playlist", playlist, session.playlists.iter().map(|p| p.id.as_str())))?;
                Action::Playlist { playlist: p, step: *step, quantise: *quantise }
            }
            ControlCommand::Playthrough { from, to, quantise } => {
                if session.scenes.is_empty() {
                    return Err(CommandError::NoScenes);
                }
                let from = match from {
                    Some(f) => scene(f)?,
                    None => SceneId(0),
                };
                let to = match to {
                    Some(t) => scene(t)?,
                    None => SceneId(session.scenes.len() as u32 - 1),
                };
                if to < from {
                    return Err(CommandError::Backwards {
                        from: session.scene(from).id.clone(),
                        to: session.scene(to).id.clone(),
                    });
                }
                Action::Playthrough { from, to, quantise: *quantise }
            }
            ControlCommand::ArrangementPlay => Action::PlayArrangement,
            ControlCommand::BackToArrangement { quantise } => Action::BackToArrangement { quantise: *quantise },
            ControlCommand::Tempo { bpm } => Action::SetTempo { bpm: Bpm(*bpm) },
            ControlCommand::LauncherQuantise { quantise } => Action::SetQuantise { quantise: *quantise },
            ControlCommand::Mix { track: t, change } => Action::Mix { track: track(t)?, change: *change },
            ControlCommand::RecordArm { track: t } => Action::Record(RecordAction::Arm { track: track(t)?, on: true }),
            ControlCommand::RecordDisarm { track: t } => {
                Action::Record(RecordAction::Arm { track: track(t)?, on: false })
            }
            ControlCommand::RecordStart { quantise } => Action::Record(RecordAction::Start { quantise: *quantise }),
            ControlCommand::RecordStop { quantise } => Action::Record(RecordAction::Stop { quantise: *quantise }),
            ControlCommand::ClipRecord { track: t, scene: s, bars } => {
                Action::Record(RecordAction::IntoSlot { track: track(t)?, scene: scene(s)?, bars: *bars })
            }
            ControlCommand::TransportStart => return Ok(Resolved::Transport(true)),
            ControlCommand::TransportStop => return Ok(Resolved::Transport(false)),
        }))
    }

    /// The seed's name of the command (`clip.trigger`, `scene.trigger`, ...), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ControlCommand::ClipTrigger { .. } => "clip.trigger",
            ControlCommand::ClipRelease { .. } => "clip.release",
            ControlCommand::SceneTrigger { .. } => "scene.trigger",
            ControlCommand::TrackStop { .. } => "track.stop",
            ControlCommand::StopAll { .. } => "stop.all",
            ControlCommand::PlaylistStart { .. } => "playlist.start",
            ControlCommand::Playthrough { .. } => "scene.playthrough.request",
            ControlCommand::ArrangementPlay => "arrangement.play",
            ControlCommand::BackToArrangement { .. } => "arrangement.back",
            ControlCommand::Tempo { .. } => "tempo.set",
            ControlCommand::LauncherQuantise { .. } => "launcher.quantise.update",
            ControlCommand::Mix { .. } => "mixer.set",
            ControlCommand::TransportStart => "transport.start",
            ControlCommand::TransportStop => "transport.stop",
            ControlCommand::RecordArm { .. } => "record.arm",
            ControlCommand::RecordDisarm { .. } => "record.disarm",
            ControlCommand::RecordStart { .. } => "record.start",
            ControlCommand::RecordStop { .. } => "record.stop",
            ControlCommand::ClipRecord { .. } => "clip.record",
        }
    }

    /// The command that performs `action` on `session`, by name (the inverse of
    /// [`ControlCommand::resolve`]): scripts and controllers speak in session indices, the inbox
    /// and the log in names. `None` for an index the session does not have.
    pub fn from_action(action: &Action, session: &Session) -> Option<ControlCommand> {
        let clip = |c: crate::model::ClipId| session.clips.get(c.index()).map(|c| c.id.clone());
        let scene = |s: SceneId| session.scenes.get(s.index()).map(|s| s.id.clone());
        let track = |t: crate::model::TrackId| session.tracks.get(t.index()).map(|t| t.id.clone());
        Some(match *action {
            Action::Launch { clip: c, quantise, velocity } => {
                ControlCommand::ClipTrigger { clip: clip(c)?, quantise, behaviour: None, velocity }
            }
            Action::Trigger(t) => ControlCommand::ClipTrigger {
                clip: clip(t.clip)?,
                quantise: t.quantise,
                behaviour: t.behaviour,
                velocity: t.launch_velocity,
            },
            Action::Release { clip: c } => ControlCommand::ClipRelease { clip: clip(c)? },
            Action::LaunchScene { scene: s, quantise } => {
                ControlCommand::SceneTrigger { scene: scene(s)?, quantise, mode: None }
            }
            Action::Scene(t) => {
                ControlCommand::SceneTrigger { scene: scene(t.scene)?, quantise: t.quantise, mode: Some(t.mode) }
            }
            Action::StopTrack { track: t, mode } => ControlCommand::TrackStop { track: track(t)?, mode: Some(mode) },
            Action::StopAll { mode } => ControlCommand::StopAll { mode: Some(mode) },
            Action::Playlist { playlist, step, quantise } => {
                ControlCommand::PlaylistStart { playlist: session.playlists.get(playlist)?.id.clone(), step, quantise }
            }
            Action::Playthrough { from, to, quantise } => {
                ControlCommand::Playthrough { from: Some(scene(from)?), to: Some(scene(to)?), quantise }
            }
            Action::PlayArrangement => ControlCommand::ArrangementPlay,
            Action::BackToArrangement { quantise } => ControlCommand::BackToArrangement { quantise },
            Action::SetTempo { bpm } => ControlCommand::Tempo { bpm: bpm.0 },
            Action::SetQuantise { quantise } => ControlCommand::LauncherQuantise { quantise },
            Action::Mix { track: t, change } => ControlCommand::Mix { track: track(t)?, change },
            Action::Record(r) => match r {
                RecordAction::Arm { track: t, on: true } => ControlCommand::RecordArm { track: track(t)? },
                RecordAction::Arm { track: t, on: false } => ControlCommand::RecordDisarm { track: track(t)? },
                RecordAction::Start { quantise } => ControlCommand::RecordStart { quantise },
                RecordAction::Stop { quantise } => ControlCommand::RecordStop { quantise },
                RecordAction::IntoSlot { track: t, scene: s, bars } => {
                    ControlCommand::ClipRecord { track: track(t)?, scene: scene(s)?, bars }
                }
            },
        })
    }
}
