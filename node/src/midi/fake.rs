//! [`FakeMidi`]: an in-process MIDI backend for tests and demos (`--midi fake`).
//!
//! It has the ports it is created with. A test injects input messages with the timestamps a
//! real port would give ([`FakeMidi::inject`]); they go through the same parsing and queue as
//! midir's callback. Whatever is sent to its outputs is recorded with the host time it was sent
//! at ([`FakeMidi::sent`]). [`FakeMidi::unavailable`] behaves like a machine with no MIDI
//! subsystem. Clones share the same ports, so a test keeps one and hands another to the node.
//!
//! Thread: Any thread: its ports are shared behind a mutex, never touched by the audio thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::midi::clock::HostTime;
use crate::midi::message::Message;
use crate::midi::ports::{InputPort, InputSender, MidiBackend, MidiError, OutputPort, find_port};

/// One message sent to a fake output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The output's name.
    pub port: String,
    /// When it was sent, on the host clock.
    pub at: HostTime,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Sent {
    /// The message, if the bytes are a note or CC message.
    pub fn message(&self) -> Option<Message> {
        Message::parse(&self.bytes)
    }
}

#[derive(Default)]
struct State {
    inputs: Vec<String>,
    outputs: Vec<String>,
    unavailable: Option<String>,
    open_inputs: HashMap<String, Vec<InputSender>>,
    sent: Vec<Sent>,
    failing_sends: bool,
}

/// The fake backend. See the module docs.
#[derive(Clone, Default)]
pub struct FakeMidi {
    state: Arc<Mutex<State>>,
}

impl FakeMidi {
    /// A backend with these input and output ports.
    pub fn new(inputs: &[&str], outputs: &[&str]) -> FakeMidi {
        let state = State {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            ..State::default()
        };
        FakeMidi { state: Arc::new(Mutex::new(state)) }
    }

    /// A backend that fails like a machine with no MIDI subsystem, for `reason`.
    pub fn unavailable(reason: &str) -> FakeMidi {
        let fake = FakeMidi::default();
        fake.lock().unavailable = Some(reason.to_string());
        fake
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure behind a
        // poisoned-lock panic here.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `bytes` to every open connection of the input `port` (exact name), stamped
    /// `port_us` on the port's clock and arriving at `arrived`. Returns how many connections
    /// queued it.
    pub fn inject(&self, port: &str, port_us: u64, arrived: HostTime, bytes: &[u8]) -> usize {
        let state = self.lock();
        state
            .open_inputs
            .get(port)
            .map_or(0, |senders| senders.iter().filter(|s| s.deliver(port_us, arrived, bytes)).count())
    }

    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    /// Everything sent so far, and forgets it.
    pub fn take_sent(&self) -> Vec<Sent> {
        std::mem::take(&mut self.lock().sent)
    }

    /// Makes every send fail (a device unplugged mid-set) or succeed again.
    pub fn set_failing_sends(&self, failing: bool) {
        self.lock().failing_sends = failing;
    }

    fn check(&self) -> Result<(), MidiError> {
        match &self.lock().unavailable {
            Some(why) => Err(MidiError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }
}

impl MidiBackend for FakeMidi {
    fn describe(&self) -> String {
        "fake MIDI".into()
    }

    fn inputs(&mut self) -> Result<Vec<String>, MidiError> {
        self.check()?;
        Ok(self.lock().inputs.clone())
    }

    fn outputs(&mut self) -> Result<Vec<String>, MidiError> {
        self.check()?;
        Ok(self.lock().outputs.clone())
    }

    fn open_input(&mut self, name: &str) -> Result<InputPort, MidiError> {
        self.check()?;
        let mut state = self.lock();
        let i = find_port(&state.inputs, name, "input")?;
        let full = state.inputs[i].clone();
        let (port, sender) = InputPort::new(full.clone(), Box::new(()));
        state.open_inputs.entry(full).or_default().push(sender);
        Ok(port)
    }

    fn open_output(&mut self, name: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        self.check()?;
        let state = self.lock();
        let i = find_port(&state.outputs, name, "output")?;
        Ok(Box::new(FakeOutput { name: state.outputs[i].clone(), fake: self.clone() }))
    }
}

struct FakeOutput {
    name: String,
    fake: FakeMidi,
}

impl OutputPort for FakeOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), MidiError> {
        let mut state = self.fake.lock();
        if state.failing_sends {
            return Err(MidiError::Send { name: self.name.clone(), why: "the fake device is unplugged".into() });
        }
        state.sent.push(Sent { port: self.name.clone(), at: HostTime::now(), bytes: bytes.to_vec() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_messages_reach_open_inputs_and_sends_are_recorded() {
        let fake = FakeMidi::new(&["pads"], &["pads out"]);
        let mut backend = fake.clone();
        assert_eq!(fake.inject("pads", 1, HostTime(2), &[0x90, 1, 2]), 0, "nothing open yet");
        let input = backend.open_input("PADS").unwrap();
        assert_eq!(fake.inject("pads", 10, HostTime(20), &[0x90, 81, 100]), 1);
        let got = input.poll().unwrap();
        assert_eq!((got.port_us, got.arrived), (10, HostTime(20)));
        assert_eq!(got.message, Message::NoteOn { channel: 0, key: 81, velocity: 100 });
        let mut out = backend.open_output("out").unwrap();
        out.send(&[0xb0, 1, 2]).unwrap();
        assert_eq!(fake.sent()[0].message(), Some(Message::Cc { channel: 0, controller: 1, value: 2 }));
        fake.set_failing_sends(true);
        assert!(out.send(&[0xb0, 1, 2]).is_err());
        assert!(backend.open_output("nope").is_err());
    }

    #[test]
    fn an_unavailable_backend_fails_every_call_with_its_reason() {
        let mut fake = FakeMidi::unavailable("no sequencer");
        assert_eq!(fake.inputs(), Err(MidiError::Unavailable("no sequencer".into())));
        assert_eq!(fake.open_input("x").err().map(|e| e.to_string()), Some("not available (no sequencer)".into()));
    }
}
