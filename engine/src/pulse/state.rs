//! What Pulse remembers between calls: each track's plan (what it will be playing at any future
//! beat), the metadata of triggers in flight, held repeat pads, pending follow actions, the
//! playlist or playthrough in progress, the arrangement's lane events, and which streamed clips
//! could refuse a launch. Control thread.

use std::sync::Arc;

use crate::model::{ClipContent, ClipId, Placement, PlaylistStep, SceneId, Session, StreamSource, TrackId};
use crate::queue::{Scheduled, TriggerId};
use crate::time::Beats;

use super::action::CommandId;
use super::event::{Cause, TriggerKind};

/// A clip planned to be playing on a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Playing {
    /// The trigger that started it.
    pub(super) id: TriggerId,
    pub(super) clip: ClipId,
    pub(super) anchor: Beats,
    pub(super) length: Beats,
    pub(super) looping: bool,
    /// The launch gain it started with.
    pub(super) gain: f32,
}

impl Playing {
    pub(super) fn sounding_at(&self, b: Beats) -> bool {
        self.looping || b.0 < self.anchor.0 + self.length.0 - 1e-9
    }

    /// The end of the loop pass that contains `b` (or the one-shot's end).
    pub(super) fn pass_end_after(&self, b: Beats) -> Beats {
        let len = self.length.0.max(1e-9);
        let n = ((b.0 - self.anchor.0) / len - 1e-9).ceil().max(1.0);
        Beats(self.anchor.0 + n * len)
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct TrackPlan {
    /// What plays after every folded (past) event.
    pub(super) base: Option<Playing>,
    /// Future events in target order, with the state each leaves the track in.
    pub(super) events: Vec<(Scheduled, Option<Playing>)>,
}

impl TrackPlan {
    pub(super) fn state_at(&self, b: Beats) -> Option<Playing> {
        let mut s = self.base;
        for (ev, st) in &self.events {
            if ev.target.0 <= b.0 + 1e-9 {
                s = *st;
            }
        }
        s.filter(|p| p.sounding_at(b))
    }

    pub(super) fn insert(&mut self, ev: Scheduled, st: Option<Playing>) {
        let i = self.events.partition_point(|(e, _)| (e.target.0, e.id) <= (ev.target.0, ev.id));
        self.events.insert(i, (ev, st));
    }

    /// Removes (and returns the ids of) events after `target`: a new trigger on a track replaces
    /// whatever was queued after it.
    pub(super) fn cancel_after(&mut self, target: Beats) -> Vec<TriggerId> {
        let i = self.events.partition_point(|(e, _)| e.target.0 <= target.0 + 1e-9);
        self.events.drain(i..).map(|(e, _)| e.id).collect()
    }

    /// Folds events at or before `now` into `base`.
    pub(super) fn fold(&mut self, now: Beats) {
        let n = self.events.partition_point(|(e, _)| e.target.0 <= now.0);
        for (_, st) in self.events.drain(..n) {
            self.base = st;
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) kind: TriggerKind,
    pub(super) clip: Option<ClipId>,
    pub(super) scene: Option<SceneId>,
    pub(super) cause: Cause,
    /// The id of the press that scheduled it, if the caller gave one.
    pub(super) command: Option<CommandId>,
}

/// A held pad in repeat launch mode.
#[derive(Debug, Clone, Copy)]
pub(super) struct Repeating {
    pub(super) clip: ClipId,
    pub(super) grid: f64,
    pub(super) next: Beats,
    pub(super) velocity: Option<f64>,
}

/// A clip follow action waiting for its beat.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClipFollowPending {
    pub(super) clip: ClipId,
    pub(super) at: Beats,
    /// Passes between decisions, in beats.
    pub(super) every: f64,
}

/// A scene follow action waiting for its beat.
#[derive(Debug, Clone, Copy)]
pub(super) struct SceneFollowPending {
    pub(super) scene: SceneId,
    pub(super) at: Beats,
    pub(super) every: f64,
}

/// A playlist or playthrough in progress.
#[derive(Debug, Clone)]
pub(super) struct Sequence {
    pub(super) playlist: Option<usize>,
    pub(super) steps: Vec<PlaylistStep>,
    /// The step that starts at `at`.
    pub(super) next: usize,
    pub(super) at: Beats,
    pub(super) looping: bool,
}

/// One arrangement event on a lane.
#[derive(Debug, Clone, Copy)]
pub(super) enum ArrEvent {
    Start(Placement),
    Stop,
}

/// How a start is scheduled.
#[derive(Debug, Clone, Copy)]
pub(super) struct StartSpec {
    pub(super) velocity: Option<f64>,
    pub(super) scene: Option<SceneId>,
    pub(super) cause: Cause,
    pub(super) legato: Option<bool>,
    /// Anchor explicitly (arrangement placements that start mid-clip).
    pub(super) anchor: Option<Beats>,
    /// Arm the clip's follow actions.
    pub(super) follow: bool,
}

impl StartSpec {
    pub(super) fn press(cause: Cause) -> StartSpec {
        StartSpec { velocity: None, scene: None, cause, legato: None, anchor: None, follow: true }
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
pub(super) fn lane_events(session: &Session, track: TrackId) -> Vec<(Beats, ArrEvent)> {
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
