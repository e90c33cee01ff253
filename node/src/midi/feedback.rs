//! LED feedback: what each control of a controller should show, as a sans-IO state machine.
//!
//! [`Feedback`] is polled with the beat heard and the launcher as Pulse plans it at that beat
//! (the snapshot's [`LauncherView`], as every display reads it) ([`Feedback::poll`]); it returns
//! the LED messages to send: only for LEDs whose value changed since they were last sent, plus the
//! blink toggles of LEDs the node blinks. It never reads a clock and does no I/O, so tests drive
//! it with made-up beats and views.
//!
//! States, per track, come from the view:
//!
//! - **queued**: a start of the slot's clip waits for its beat;
//! - **playing**: the slot's clip plays (whatever launched it: a pad, a scene, a follow action,
//!   the conductor);
//! - **stopping**: playing, with a stop waiting for its beat;
//! - **armed**: the track is record-armed (kept here: the engine has no record arm yet);
//! - otherwise a slot with a clip is **stopped**, one without is **off**.
//!
//! Thread: control.

use std::collections::HashMap;

use loophole_engine::model::{ClipId, Session, TrackId};
use loophole_engine::pulse::LauncherView;
use loophole_engine::time::Beats;

use crate::midi::mapping::{Address, Control, Led, Leds, MappedControl, Mapping};
use crate::midi::message::Message;

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
    armed: Vec<bool>,
    sent: HashMap<Address, Message>,
}

impl Feedback {
    /// Feedback for the controls of `mapping` on `grid`; nothing sent yet (the first poll sets
    /// every LED).
    pub fn new(mapping: &Mapping, grid: Grid) -> Feedback {
        let tracks = grid.tracks();
        Feedback { controls: mapping.controls.clone(), grid, armed: vec![false; tracks], sent: HashMap::new() }
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        &self.grid
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

    /// What a control shows, with the launcher as `view` plans it (`None`: no engine yet,
    /// nothing plays).
    pub fn state(&self, control: &Control, view: Option<&LauncherView>) -> LedState {
        let track = |t: usize| view.and_then(|v| v.tracks.get(t));
        let playing = |t: usize| track(t).and_then(|t| t.playing).map(|p| p.clip);
        let queued = |t: usize| track(t).and_then(|t| t.queued).map(|(c, _)| c);
        match *control {
            Control::Clip { track, scene } => {
                let Some(clip) = self.grid.clip(track, scene) else {
                    return if self.armed(track) { LedState::Armed } else { LedState::Off };
                };
                let is_playing = playing(track) == Some(clip);
                match queued(track) {
                    Some(Some(q)) if q == clip => LedState::Queued,
                    Some(None) if is_playing => LedState::Stopping,
                    _ if is_playing => LedState::Playing,
                    _ => LedState::Stopped,
                }
            }
            Control::SceneLaunch { scene } => {
                let v = view;
                if v.and_then(|v| v.queued_scene).is_some_and(|(s, _)| s.is_some_and(|s| s.index() == scene)) {
                    LedState::Queued
                } else if v.and_then(|v| v.scene).is_some_and(|s| s.index() == scene)
                    && (0..self.grid.tracks()).any(|t| playing(t).is_some() && playing(t) == self.grid.clip(t, scene))
                {
                    LedState::Playing
                } else if self.grid.scene_has_clips(scene) {
                    LedState::Stopped
                } else {
                    LedState::Off
                }
            }
            Control::TrackStop { track } => match (queued(track), playing(track)) {
                (Some(None), Some(_)) => LedState::Queued,
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
                if (0..self.grid.tracks()).any(|t| playing(t).is_some()) {
                    LedState::Playing
                } else {
                    LedState::Off
                }
            }
        }
    }

    /// The LED messages to send at beat `now`, with the launcher as `view` plans it at that beat:
    /// every LED whose value differs from what was last sent for it. Blinking LEDs show their
    /// value in the first half of each beat and `off` in the second.
    pub fn poll(&mut self, now: Beats, view: Option<&LauncherView>) -> Vec<Message> {
        let on_phase = now.0.rem_euclid(1.0) < 0.5;
        let mut out = Vec::new();
        for i in 0..self.controls.len() {
            let c = self.controls[i];
            let mut led = self.state(&c.control, view).led(&c.leds);
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
