//! A controller: its mapping applied to a session. Turns pad presses into Pulse actions at the
//! beat they were made, keeps the record-arm state, and drives the LED [`Feedback`].
//!
//! Sans-IO: it is given messages, beats and Pulse, and returns LED messages; the live node
//! ([`crate::midi::rig`]) reads the ports and sends them.

use loophole_engine::model::{SceneId, Session, TrackId};
use loophole_engine::pulse::{Action, Pulse, PulseError, PulseEvent};
use loophole_engine::queue::TriggerId;
use loophole_engine::time::Beats;

use crate::midi::feedback::{Feedback, Grid, confirm, expected_triggers};
use crate::midi::mapping::{Control, Gesture, Mapping};
use crate::midi::message::Message;

/// What a controller message asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intent {
    /// An action for Pulse.
    Press(Action),
    /// Toggle a track's record arm.
    ToggleArm {
        /// The track.
        track: usize,
    },
}

/// What [`Controller::handle`] did with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// Pulse took the action and scheduled these triggers (none when it changed nothing).
    Pressed {
        /// The control.
        control: Control,
        /// The action.
        action: Action,
        /// The triggers scheduled.
        ids: Vec<TriggerId>,
    },
    /// Pulse refused the action.
    Refused {
        /// The control.
        control: Control,
        /// Why.
        error: PulseError,
    },
    /// A track's record arm changed.
    Armed {
        /// The track.
        track: usize,
        /// Armed now.
        armed: bool,
    },
}

/// A mapping applied to a session. Thread: control.
#[derive(Debug, Clone)]
pub struct Controller {
    mapping: Mapping,
    feedback: Feedback,
}

impl Controller {
    /// The controller for `mapping` on `session`'s grid.
    pub fn new(mapping: Mapping, session: &Session) -> Controller {
        let feedback = Feedback::new(&mapping, Grid::new(session));
        Controller { mapping, feedback }
    }

    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The LED state machine.
    pub fn feedback(&self) -> &Feedback {
        &self.feedback
    }

    /// The grid.
    pub fn grid(&self) -> &Grid {
        self.feedback.grid()
    }

    /// What `msg` asks for, and from which control: pads launch their slot's clip with the pad's
    /// velocity (1..=127 → 1/127..=1) and release it on note-off; scene buttons launch their
    /// scene; stop buttons stop their track (or every track) with the mapping's stop mode; arm
    /// buttons toggle the track's arm. `None` for unmapped controls, releases of anything but
    /// pads, and slots, scenes or tracks the session does not have.
    pub fn intent(&self, msg: Message) -> Option<(Control, Intent)> {
        let (mapped, gesture) = self.mapping.lookup(msg)?;
        let grid = self.feedback.grid();
        let intent = match (mapped.control, gesture) {
            (Control::Clip { track, scene }, gesture) => {
                let clip = grid.clip(track, scene)?;
                match gesture {
                    Gesture::Press { velocity } => Intent::Press(Action::Launch {
                        clip,
                        quantise: None,
                        velocity: Some(f64::from(velocity) / 127.0),
                    }),
                    Gesture::Release => Intent::Press(Action::Release { clip }),
                }
            }
            (_, Gesture::Release) => return None,
            (Control::SceneLaunch { scene }, _) if scene < grid.scenes() => {
                Intent::Press(Action::LaunchScene { scene: SceneId(scene as u32), quantise: None })
            }
            (Control::TrackStop { track }, _) if track < grid.tracks() => {
                Intent::Press(Action::StopTrack { track: TrackId(track as u32), mode: mapped.stop })
            }
            (Control::TrackArm { track }, _) if track < grid.tracks() => Intent::ToggleArm { track },
            (Control::StopAll, _) => Intent::Press(Action::StopAll { mode: mapped.stop }),
            _ => return None,
        };
        Some((mapped.control, intent))
    }

    /// Performs what `msg` asks for at beat `now` (the beat the performer heard when pressing).
    pub fn handle(&mut self, msg: Message, now: Beats, pulse: &mut Pulse) -> Option<Handled> {
        let (control, intent) = self.intent(msg)?;
        Some(match intent {
            Intent::Press(action) => match self.press(pulse, action, now) {
                Ok(ids) => Handled::Pressed { control, action, ids },
                Err(error) => Handled::Refused { control, error },
            },
            Intent::ToggleArm { track } => {
                let armed = !self.feedback.armed(track);
                self.feedback.set_armed(track, armed);
                Handled::Armed { track, armed }
            }
        })
    }

    /// Presses `action` on Pulse at `now` and shows its triggers as queued. Use it for every
    /// press (scripts, the conductor, the UI), so the LEDs show them all.
    pub fn press(&mut self, pulse: &mut Pulse, action: Action, now: Beats) -> Result<Vec<TriggerId>, PulseError> {
        let expected = expected_triggers(pulse, &action, now);
        let ids = pulse.press(action, now)?;
        let confirmed = confirm(pulse, expected);
        if confirmed.len() == ids.len() {
            for (id, q) in ids.iter().zip(confirmed) {
                self.feedback.queued(*id, q);
            }
        } else {
            tracing::debug!(
                "LED feedback: {} triggers scheduled for {action:?}, {} expected; not shown as queued",
                ids.len(),
                confirmed.len()
            );
        }
        Ok(ids)
    }

    /// Takes in something Pulse reported.
    pub fn event(&mut self, event: &PulseEvent) {
        self.feedback.event(event);
    }

    /// Forgets what plays and what is queued (see [`Feedback::reset`]).
    pub fn reset(&mut self) {
        self.feedback.reset();
    }

    /// The LED messages to send at beat `now` (see [`Feedback::poll`]).
    pub fn leds(&mut self, now: Beats) -> Vec<Message> {
        self.feedback.poll(now)
    }

    /// The messages that switch every LED off.
    pub fn blank(&mut self) -> Vec<Message> {
        self.feedback.blank()
    }
}
