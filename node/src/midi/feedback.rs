//! LED feedback: what each control of a controller should show, as a sans-IO state machine.
//!
//! [`Feedback`] is told what was pressed ([`Feedback::queued`], with the triggers Pulse
//! scheduled for it) and what Pulse reports ([`Feedback::event`]), and is polled with the current
//! beat ([`Feedback::poll`]); it returns the LED messages to send: only for LEDs whose value
//! changed since they were last sent, plus the blink toggles of LEDs the node blinks. It never
//! reads a clock and does no I/O, so tests drive it with made-up beats and events.
//!
//! States, per track, come from Pulse:
//!
//! - **queued**: a trigger was pressed and Pulse scheduled it, but Signal has not executed it yet;
//! - **playing**: a start executed, and no stop (or end of a one-shot) since;
//! - **stopping**: playing, with a stop queued;
//! - **armed**: the track is record-armed (kept here: the engine has no record arm yet);
//! - otherwise a slot with a clip is **stopped**, one without is **off**.
//!
//! Which trigger a press scheduled on which track is worked out by [`expected_triggers`] from
//! Pulse's public plan (see its docs for the limits).

use std::collections::HashMap;

use loophole_engine::model::{ClipId, EmptySlot, LaunchMode, SceneId, Session, TrackId};
use loophole_engine::pulse::{Action, Pulse, PulseEvent, StopMode};
use loophole_engine::queue::TriggerId;
use loophole_engine::time::{Beats, Quantise};

use crate::midi::mapping::{Address, Control, Led, Leds, MappedControl, Mapping};
use crate::midi::message::Message;

/// A queued trigger that never reports back (its report was lost) stops showing as queued this
/// many beats after its target.
pub const QUEUED_EXPIRY_BEATS: f64 = 8.0;

/// The session's launcher grid: tracks are columns, scenes are rows, and the slot of track `t`
/// in scene `s` holds the clip of track `t` that scene `s` launches (if any). Clips in no scene
/// have no slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// `slots[track][scene]`.
    slots: Vec<Vec<Option<ClipId>>>,
    scenes: usize,
}

impl Grid {
    /// The grid of a session.
    pub fn new(session: &Session) -> Grid {
        let slots = (0..session.tracks.len())
            .map(|t| {
                session
                    .scenes
                    .iter()
                    .map(|s| s.clips.iter().copied().find(|c| session.clip(*c).track == TrackId(t as u32)))
                    .collect()
            })
            .collect();
        Grid { slots, scenes: session.scenes.len() }
    }

    /// The clip in a slot.
    pub fn clip(&self, track: usize, scene: usize) -> Option<ClipId> {
        self.slots.get(track).and_then(|t| t.get(scene)).copied().flatten()
    }

    /// Tracks (columns).
    pub fn tracks(&self) -> usize {
        self.slots.len()
    }

    /// Scenes (rows).
    pub fn scenes(&self) -> usize {
        self.scenes
    }

    /// Whether scene `scene` launches any clip.
    pub fn scene_has_clips(&self, scene: usize) -> bool {
        self.slots.iter().any(|t| t.get(scene).copied().flatten().is_some())
    }
}

/// One trigger a press scheduled: a start of `start` (or a stop, `None`) on `track`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queued {
    /// The track.
    pub track: TrackId,
    /// The clip it starts; `None` for a stop.
    pub start: Option<ClipId>,
    /// The scene launch it is part of.
    pub scene: Option<SceneId>,
    /// The beat it is scheduled for (as far as it can be known before it executes).
    pub target: Beats,
}

/// What a control shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedState {
    /// Nothing.
    Off,
    /// A clip (or a scene with clips) that is not playing.
    Stopped,
    /// Waiting for its beat.
    Queued,
    /// Playing.
    Playing,
    /// Playing, with a stop waiting for its beat.
    Stopping,
    /// Record-armed.
    Armed,
}

impl LedState {
    /// This state's value among a control's LED values.
    pub fn led(self, leds: &Leds) -> Led {
        match self {
            LedState::Off => leds.off,
            LedState::Stopped => leds.stopped,
            LedState::Queued => leds.queued,
            LedState::Playing => leds.playing,
            LedState::Stopping => leds.stopping,
            LedState::Armed => leds.armed,
        }
    }
}

/// The feedback state machine. See the module docs. Thread: control.
#[derive(Debug, Clone)]
pub struct Feedback {
    controls: Vec<MappedControl>,
    grid: Grid,
    playing: Vec<Option<ClipId>>,
    pending: Vec<(TriggerId, Queued)>,
    armed: Vec<bool>,
    scene: Option<SceneId>,
    sent: HashMap<Address, Message>,
}

impl Feedback {
    /// Feedback for the controls of `mapping` on `grid`; nothing playing, nothing sent yet (the
    /// first poll sets every LED).
    pub fn new(mapping: &Mapping, grid: Grid) -> Feedback {
        let tracks = grid.tracks();
        Feedback {
            controls: mapping.controls.clone(),
            grid,
            playing: vec![None; tracks],
            pending: Vec::new(),
            armed: vec![false; tracks],
            scene: None,
            sent: HashMap::new(),
        }
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Records a trigger Pulse scheduled for a press.
    pub fn queued(&mut self, id: TriggerId, queued: Queued) {
        self.pending.push((id, queued));
    }

    /// Takes in something Pulse reported.
    pub fn event(&mut self, event: &PulseEvent) {
        match *event {
            PulseEvent::Executed { id, kind, track, clip, scene, .. } => {
                self.pending.retain(|(i, _)| *i != id);
                let Some(slot) = self.playing.get_mut(track.index()) else { return };
                *slot = match kind {
                    loophole_engine::pulse::TriggerKind::Stop => None,
                    _ => clip,
                };
                if scene.is_some() {
                    self.scene = scene;
                }
            }
            PulseEvent::ClipEnded { track, clip, .. } => {
                if let Some(slot) = self.playing.get_mut(track.index())
                    && *slot == Some(clip)
                {
                    *slot = None;
                }
            }
            PulseEvent::Dropped { id } => self.pending.retain(|(i, _)| *i != id),
            // Follow-action decisions, playlist steps and tempo changes show once their
            // triggers execute.
            _ => {}
        }
    }

    /// Arms or disarms a track (out-of-range tracks are ignored).
    pub fn set_armed(&mut self, track: usize, armed: bool) {
        if let Some(a) = self.armed.get_mut(track) {
            *a = armed;
        }
    }

    /// Whether a track is armed.
    pub fn armed(&self, track: usize) -> bool {
        self.armed.get(track).copied().unwrap_or(false)
    }

    /// The clip playing on a track, as far as Signal has reported.
    pub fn playing(&self, track: usize) -> Option<ClipId> {
        self.playing.get(track).copied().flatten()
    }

    /// The latest queued trigger on a track.
    fn latest(&self, track: usize) -> Option<&Queued> {
        self.pending.iter().rev().map(|(_, q)| q).find(|q| q.track.index() == track)
    }

    /// What a control shows now.
    pub fn state(&self, control: &Control) -> LedState {
        match *control {
            Control::Clip { track, scene } => {
                let Some(clip) = self.grid.clip(track, scene) else {
                    return if self.armed(track) { LedState::Armed } else { LedState::Off };
                };
                let playing = self.playing(track) == Some(clip);
                match self.latest(track) {
                    Some(q) if q.start == Some(clip) => LedState::Queued,
                    Some(q) if q.start.is_none() && playing => LedState::Stopping,
                    _ if playing => LedState::Playing,
                    _ => LedState::Stopped,
                }
            }
            Control::SceneLaunch { scene } => {
                if self.pending.iter().any(|(_, q)| q.scene.is_some_and(|s| s.index() == scene)) {
                    LedState::Queued
                } else if self.scene.is_some_and(|s| s.index() == scene)
                    && (0..self.grid.tracks())
                        .any(|t| self.playing(t).is_some() && self.playing(t) == self.grid.clip(t, scene))
                {
                    LedState::Playing
                } else if self.grid.scene_has_clips(scene) {
                    LedState::Stopped
                } else {
                    LedState::Off
                }
            }
            Control::TrackStop { track } => match (self.latest(track), self.playing(track)) {
                (Some(q), Some(_)) if q.start.is_none() => LedState::Queued,
                (_, Some(_)) => LedState::Playing,
                _ => LedState::Off,
            },
            Control::TrackArm { track } => {
                if self.armed(track) {
                    LedState::Armed
                } else {
                    LedState::Off
                }
            }
            Control::StopAll => {
                if self.playing.iter().any(Option::is_some) {
                    LedState::Playing
                } else {
                    LedState::Off
                }
            }
        }
    }

    /// The LED messages to send at beat `now`: every LED whose value differs from what was last
    /// sent for it. Blinking LEDs show their value in the first half of each beat and `off` in
    /// the second. Queued triggers that never reported back expire after
    /// [`QUEUED_EXPIRY_BEATS`].
    pub fn poll(&mut self, now: Beats) -> Vec<Message> {
        self.pending.retain(|(_, q)| q.target.0 + QUEUED_EXPIRY_BEATS > now.0);
        let on_phase = now.0.rem_euclid(1.0) < 0.5;
        let mut out = Vec::new();
        for i in 0..self.controls.len() {
            let c = self.controls[i];
            let mut led = self.state(&c.control).led(&c.leds);
            if led.blink && !on_phase {
                led = c.leds.off;
            }
            let msg = c.address.led_message(led);
            if self.sent.get(&c.address) != Some(&msg) {
                self.sent.insert(c.address, msg);
                out.push(msg);
            }
        }
        out
    }

    /// Forgets what plays and what is queued (the node replaced its engine: a device fallback, a
    /// Link restart); arm states stay. The next poll shows every slot as stopped until new
    /// triggers execute.
    pub fn reset(&mut self) {
        self.playing.iter_mut().for_each(|p| *p = None);
        self.pending.clear();
        self.scene = None;
    }

    /// Forgets what was sent, so the next poll sends every LED (after reconnecting a device).
    pub fn resend(&mut self) {
        self.sent.clear();
    }

    /// The messages that switch every LED to its `off` value (at the end of a performance).
    pub fn blank(&mut self) -> Vec<Message> {
        self.sent.clear();
        self.controls.iter().map(|c| c.address.led_message(c.leds.off)).collect()
    }
}

/// The quantisation Pulse uses for a clip (the action's override, else the clip's, else its
/// scene's, else the session's).
fn clip_quantise(session: &Session, clip: ClipId, over: Option<Quantise>) -> Quantise {
    let c = session.clip(clip);
    let scene_q = session.scene_of_clip(clip).map(|s| session.scene(s).quantise);
    over.unwrap_or(c.quantise).resolve(scene_q, session.quantise)
}

/// The triggers Pulse will schedule for `action` pressed at `now`, in the order it schedules
/// them (so they pair up with the ids `Pulse::press` returns). Call it **before** the press.
///
/// Pulse does not say which trigger id is which, so this follows Pulse's rules through its
/// public plan (`playing_at`, `quantised`). [`confirm`] then drops whatever the plan does not
/// show after the press. Actions it does not know (playlists, the arrangement, ...) give
/// nothing: their executions still update the LEDs, they just do not blink while queued.
pub fn expected_triggers(pulse: &Pulse, action: &Action, now: Beats) -> Vec<Queued> {
    let session = pulse.session().clone();
    let stop = |track: TrackId, mode: StopMode| -> Option<Queued> {
        let playing = pulse.playing_at(track, now)?;
        let target = match mode {
            StopMode::Immediate | StopMode::FadeOut(_) => now,
            StopMode::Quantised => pulse.quantised(now, clip_quantise(&session, playing, None)),
            // Somewhere before the end of the current pass; only used to expire it.
            StopMode::SectionEnd => Beats(now.0 + session.clip(playing).length.0),
        };
        if mode == StopMode::Quantised && pulse.playing_at(track, target).is_none() {
            return None;
        }
        Some(Queued { track, start: None, scene: None, target })
    };
    let tracks = (0..session.tracks.len() as u32).map(TrackId);
    match *action {
        Action::Launch { clip, quantise, .. } => {
            let Some(c) = session.clips.get(clip.index()) else { return Vec::new() };
            let target = pulse.quantised(now, clip_quantise(&session, clip, quantise));
            let stops = c.launch_mode == LaunchMode::Toggle && pulse.playing_at(c.track, target) == Some(clip);
            vec![Queued { track: c.track, start: (!stops).then_some(clip), scene: None, target }]
        }
        Action::Release { clip } => {
            let Some(c) = session.clips.get(clip.index()) else { return Vec::new() };
            if !matches!(c.launch_mode, LaunchMode::Gate | LaunchMode::Repeat) {
                return Vec::new();
            }
            let target = pulse.quantised(now, clip_quantise(&session, clip, None));
            if pulse.playing_at(c.track, target) != Some(clip) {
                return Vec::new();
            }
            vec![Queued { track: c.track, start: None, scene: None, target }]
        }
        Action::StopTrack { track, mode } => stop(track, mode).into_iter().collect(),
        Action::StopAll { mode } => tracks.filter_map(|t| stop(t, mode)).collect(),
        Action::LaunchScene { scene, quantise } => {
            let Some(s) = session.scenes.get(scene.index()) else { return Vec::new() };
            let target =
                pulse.quantised(now, quantise.unwrap_or(Quantise::Global).resolve(Some(s.quantise), session.quantise));
            tracks
                .filter_map(|track| match s.clips.iter().copied().find(|c| session.clip(*c).track == track) {
                    Some(clip) => Some(Queued { track, start: Some(clip), scene: Some(scene), target }),
                    None if s.empty_slots == EmptySlot::Stop && pulse.playing_at(track, target).is_some() => {
                        Some(Queued { track, start: None, scene: Some(scene), target })
                    }
                    None => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Keeps the expected triggers that Pulse's plan shows after the press: a start whose clip plays
/// on its track at its target, a stop after which the track is silent.
pub fn confirm(pulse: &Pulse, expected: Vec<Queued>) -> Vec<Queued> {
    expected
        .into_iter()
        .filter(|q| match q.start {
            Some(clip) => pulse.playing_at(q.track, q.target) == Some(clip),
            None => pulse.playing_at(q.track, Beats(q.target.0 + 1e-6)).is_none(),
        })
        .collect()
}
