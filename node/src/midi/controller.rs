//! A controller: its mapping applied to a session. Turns pad presses into actions (which the
//! node sends to its inbox, pressed at the beat they were played), keeps the record-arm state,
//! and drives the LED [`Feedback`] from the launcher view.
//!
//! Sans-IO: it is given messages, beats and views, and returns intents and LED messages; the
//! live node ([`crate::midi::rig`]) reads the ports and sends them. Thread: control.

use loophole_engine::model::{SceneId, Session, TrackId};
use loophole_engine::pulse::{Action, LauncherView};
use loophole_engine::time::Beats;

use crate::midi::feedback::{Feedback, Grid};
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

    /// What `msg` asks for ([`Controller::intent`]), with arm toggles applied here: returns the
    /// control and the action to press, if any. `None` for an unmapped message.
    pub fn handle(&mut self, msg: Message) -> Option<(Control, Option<Action>)> {
        let (control, intent) = self.intent(msg)?;
        Some(match intent {
            Intent::Press(action) => (control, Some(action)),
            Intent::ToggleArm { track } => {
                let armed = !self.feedback.armed(track);
                self.feedback.set_armed(track, armed);
                (control, None)
            }
        })
    }

    /// The LED messages to send at beat `now` with the launcher as `view` plans it
    /// (see [`Feedback::poll`]).
    pub fn leds(&mut self, now: Beats, view: Option<&LauncherView>) -> Vec<Message> {
        self.feedback.poll(now, view)
    }

    /// The messages that switch every LED off.
    pub fn blank(&mut self) -> Vec<Message> {
        self.feedback.blank()
    }
}
