//! The node's MIDI at run time: the ports `play` and `demo` open, the controller, and what the
//! control thread does with them every tick.
//!
//! [`MidiRig::open`] loads the mapping (a bad file is an error: the user's input is wrong) and
//! opens the ports; every MIDI problem — no MIDI subsystem, a port that is not there — is one
//! line of warning, and the performance plays on without it. Every control tick the node then
//! takes the presses ([`MidiRig::poll_presses`]: each input message mapped to the beat it was
//! played at, see [`crate::midi::clock`]) into its inbox, and sends the LED changes for the
//! launcher view ([`MidiRig::update_leds`]).

use std::path::PathBuf;

use loophole_engine::model::Session;
use loophole_engine::pulse::{Action, LauncherView};
use loophole_engine::time::Beats;

use crate::midi::clock::{AudioClock, AudioPosition, HostTime, PortClock};
use crate::midi::controller::Controller;
use crate::midi::fake::FakeMidi;
use crate::midi::mapping::Control;
use crate::midi::mapping::{Mapping, MappingError};
use crate::midi::message::Message;
use crate::midi::ports::{InputPort, MidiBackend, MidirBackend, OutputPort};

/// Which MIDI backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MidiSystem {
    /// The system's MIDI through midir (`--midi system`, the default).
    #[default]
    System,
    /// The in-process fake, with one input and one output both called `fake` (`--midi fake`):
    /// shows the LED feedback a performance would send, with no device.
    Fake,
}

/// The MIDI options of `play` and `demo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MidiOptions {
    /// `--midi`.
    pub system: MidiSystem,
    /// `--midi-in NAME`, repeatable: inputs whose messages go through the controller mapping.
    pub inputs: Vec<String>,
    /// `--midi-out NAME`: where LED feedback goes.
    pub output: Option<String>,
    /// `--controller MAPPING.toml`.
    pub controller: Option<PathBuf>,
}

impl MidiOptions {
    /// Whether any MIDI was asked for.
    pub fn wanted(&self) -> bool {
        !self.inputs.is_empty() || self.output.is_some() || self.controller.is_some() || self.system == MidiSystem::Fake
    }

    /// The backend these options select.
    pub fn backend(&self) -> Box<dyn MidiBackend> {
        match self.system {
            MidiSystem::System => Box::new(MidirBackend::new("loophole")),
            MidiSystem::Fake => Box::new(FakeMidi::new(&["fake"], &["fake"])),
        }
    }
}

/// What the MIDI side did during a performance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MidiSummary {
    /// The inputs that were open.
    pub inputs: Vec<String>,
    /// The LED output, if one was open.
    pub output: Option<String>,
    /// Note and CC messages received.
    pub received: u64,
    /// Messages dropped because an input queue was full.
    pub dropped: u64,
    /// Controller presses performed (Pulse actions and arm toggles).
    pub presses: u64,
    /// Presses Pulse refused.
    pub refused: u64,
    /// LED messages sent.
    pub leds_sent: u64,
    /// LED messages the output refused.
    pub send_errors: u64,
}

impl MidiSummary {
    /// One status line, e.g. `MIDI: 12 messages from 'Launchpad', 10 presses; 240 LED messages to 'Launchpad'`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "MIDI: {} messages from {}, {} presses",
            self.received,
            if self.inputs.is_empty() {
                "no input".to_string()
            } else {
                self.inputs.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
            },
            self.presses
        );
        if self.refused > 0 {
            s.push_str(&format!(" ({} refused)", self.refused));
        }
        if self.dropped > 0 {
            s.push_str(&format!(", {} dropped (input queue full)", self.dropped));
        }
        if let Some(out) = &self.output {
            s.push_str(&format!("; {} LED messages to '{out}'", self.leds_sent));
            if self.send_errors > 0 {
                s.push_str(&format!(" ({} failed)", self.send_errors));
            }
        }
        s
    }
}

/// A controller press, at the beat the performer heard when playing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressed {
    /// The control.
    pub control: Control,
    /// The beat it was played at.
    pub beat: Beats,
    /// What it does.
    pub action: Action,
}

/// The open ports, the controller and the clock mapping. Thread: control.
pub struct MidiRig {
    inputs: Vec<(InputPort, PortClock)>,
    output: Option<Box<dyn OutputPort>>,
    controller: Option<Controller>,
    clock: AudioClock,
    summary: MidiSummary,
    warned_send: bool,
}

impl MidiRig {
    /// Loads the mapping and opens the ports `opts` asks for on `backend`. The audio clock
    /// assumes 48 kHz until [`MidiRig::set_sample_rate`].
    ///
    /// Returns the rig (`None` when no MIDI was asked for or none could be opened) and the
    /// warnings to print, one line each. A mapping file that does not load is an error; no
    /// MIDI subsystem, or a missing port, is only a warning. Inputs default to the mapping's
    /// `port`; the LED output to `--midi-out`, else the output named like the first input that
    /// opened (controllers have both), else the mapping's `port`, when there is one.
    pub fn open(
        opts: &MidiOptions,
        session: &Session,
        backend: &mut dyn MidiBackend,
    ) -> Result<(Option<MidiRig>, Vec<String>), MappingError> {
        let mapping = opts.controller.as_deref().map(Mapping::load).transpose()?;
        let mut warnings = Vec::new();
        if !opts.wanted() {
            return Ok((None, warnings));
        }
        // The fake's ports are all called `fake`: the mapping's port name does not apply. Without a
        // mapping there is no controller to connect, so `--midi fake` alone opens no input (its
        // output `fake` is for tracks' `midi_out`).
        let port_hint = match opts.system {
            MidiSystem::System => mapping.as_ref().and_then(|m| m.port.clone()),
            MidiSystem::Fake => mapping.as_ref().map(|_| "fake".to_string()),
        };
        let mut input_names = opts.inputs.clone();
        if input_names.is_empty()
            && let Some(p) = &port_hint
        {
            input_names.push(p.clone());
        }
        if mapping.is_some() && input_names.is_empty() && opts.system == MidiSystem::System {
            warnings.push(
                "MIDI: --controller needs --midi-in NAME (or port = \"NAME\" in the mapping's [controller]); the controller is not connected"
                    .to_string(),
            );
        }
        // One probe, so that a machine without MIDI gets one line, not one per port.
        if let Err(e) = backend.inputs() {
            warnings.push(format!("MIDI: {e}; playing on without MIDI"));
            return Ok((None, warnings));
        }
        let mut inputs = Vec::new();
        for name in &input_names {
            match backend.open_input(name) {
                Ok(port) => inputs.push((port, PortClock::new())),
                Err(e) => warnings.push(format!("MIDI: {e}; playing on without it")),
            }
        }
        let explicit = opts.output.clone();
        // The controller's output: the one named like its input, else the mapping's port.
        let implicit = inputs.first().map(|(p, _)| p.name().to_string()).or(port_hint);
        let output = match (&explicit, &implicit) {
            (Some(name), _) => match backend.open_output(name) {
                Ok(port) => Some(port),
                Err(e) => {
                    warnings.push(format!("MIDI: {e}; no LED feedback"));
                    None
                }
            },
            (None, Some(name)) if mapping.is_some() => match backend.open_output(name) {
                Ok(port) => Some(port),
                Err(e) => {
                    tracing::info!("no LED feedback: {e}");
                    None
                }
            },
            (None, _) => None,
        };
        if inputs.is_empty() && output.is_none() {
            return Ok((None, warnings));
        }
        let controller = mapping.map(|m| Controller::new(m, session));
        let summary = MidiSummary {
            inputs: inputs.iter().map(|(p, _)| p.name().to_string()).collect(),
            output: output.as_ref().map(|o| o.name().to_string()),
            ..MidiSummary::default()
        };
        let rig = MidiRig { inputs, output, controller, clock: AudioClock::new(48_000), summary, warned_send: false };
        Ok((Some(rig), warnings))
    }

    /// One line saying what is connected, e.g. `MIDI: controller 'Launchpad X' on 'LPX MIDI', LEDs to 'LPX MIDI'`.
    pub fn describe(&self) -> String {
        let what = match &self.controller {
            Some(c) => format!("controller '{}'", c.mapping().name.as_deref().unwrap_or("(unnamed mapping)")),
            None => "inputs (no --controller: messages are counted, not mapped)".to_string(),
        };
        let ins = self.summary.inputs.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        let mut s = format!("MIDI: {what} on {}", if ins.is_empty() { "no input".into() } else { ins });
        if let Some(out) = &self.summary.output {
            s.push_str(&format!(", LEDs to '{out}'"));
        }
        s
    }

    /// The controller, if a mapping was given.
    pub fn controller(&self) -> Option<&Controller> {
        self.controller.as_ref()
    }

    /// Sets the audio sample rate (before the first [`MidiRig::step`]; [`MidiRig::open`] assumes
    /// 48 kHz). Forgets the clock's observations.
    pub fn set_sample_rate(&mut self, sample_rate: u32) {
        let latency = self.clock.output_latency();
        self.clock = AudioClock::new(sample_rate);
        self.clock.set_output_latency(latency);
    }

    /// The audio clock mapping (to set the output latency, or publish it for external MIDI out).
    pub fn clock_mut(&mut self) -> &mut AudioClock {
        &mut self.clock
    }

    /// Notes the audio position at host time `now` and takes the controller presses that
    /// arrived, each at the beat it was played (the node sends them to its inbox). Returns the
    /// presses and warnings to print.
    pub fn poll_presses(&mut self, pos: AudioPosition, now: HostTime) -> (Vec<Pressed>, Vec<String>) {
        self.clock.observe(pos, now);
        let mut presses = Vec::new();
        for (port, port_clock) in &mut self.inputs {
            while let Some(m) = port.poll() {
                self.summary.received += 1;
                let at = port_clock.to_host(m.port_us, m.arrived);
                let beat = self.clock.beat_at(at).max(Beats::ZERO);
                let Some(c) = &mut self.controller else {
                    tracing::debug!("MIDI in '{}' at beat {:.3}: {}", port.name(), beat.0, m.message);
                    continue;
                };
                match c.handle(m.message) {
                    Some((control, action)) => {
                        self.summary.presses += 1;
                        if let Some(action) = action {
                            presses.push(Pressed { control, beat, action });
                        }
                    }
                    None => tracing::debug!("MIDI in '{}': {} is not mapped", port.name(), m.message),
                }
            }
        }
        (presses, Vec::new())
    }

    /// The beat heard at host time `now` (for the LEDs).
    pub fn heard_beat(&self, now: HostTime) -> Beats {
        self.clock.beat_at(now).max(Beats::ZERO)
    }

    /// Sends the LED changes for beat `beat` with the launcher as `view` plans it there.
    /// Returns a warning to print when the LED output starts failing.
    pub fn update_leds(&mut self, beat: Beats, view: Option<&LauncherView>) -> Option<String> {
        let leds = self.controller.as_mut()?.leds(beat, view);
        self.send(&leds)
    }

    /// Counts a controller press the node refused (for the summary).
    pub fn note_refused(&mut self) {
        self.summary.refused += 1;
    }

    fn send(&mut self, messages: &[Message]) -> Option<String> {
        let out = self.output.as_mut()?;
        let mut warning = None;
        for m in messages {
            match out.send(&m.to_bytes()) {
                Ok(()) => self.summary.leds_sent += 1,
                Err(e) => {
                    self.summary.send_errors += 1;
                    if !self.warned_send {
                        self.warned_send = true;
                        warning = Some(format!("MIDI: {e}; LED feedback stops until it works again"));
                    }
                }
            }
        }
        warning
    }

    /// Switches the LEDs off and returns what happened.
    pub fn finish(mut self) -> MidiSummary {
        if let Some(c) = &mut self.controller {
            let blank = c.blank();
            self.send(&blank);
        }
        for (port, _) in &self.inputs {
            self.summary.dropped += port.dropped();
        }
        self.summary
    }
}

/// `loophole-node devices`: the MIDI inputs and outputs, or `MIDI: not available (reason)`.
pub fn device_lines(backend: &mut dyn MidiBackend) -> Vec<String> {
    let inputs = match backend.inputs() {
        Ok(i) => i,
        Err(e) => return vec![format!("MIDI: {e}")],
    };
    let outputs = backend.outputs().unwrap_or_default();
    let mut lines = vec![format!("MIDI ({})", backend.describe())];
    let list = |lines: &mut Vec<String>, dir: &str, names: &[String]| {
        if names.is_empty() {
            lines.push(format!("  no {dir}s"));
        }
        for n in names {
            lines.push(format!("  {dir}: {n}"));
        }
    };
    list(&mut lines, "input", &inputs);
    list(&mut lines, "output", &outputs);
    lines
}
