//! MIDI ports behind one trait, [`MidiBackend`]: the system's ports through midir
//! ([`MidirBackend`]) or the in-process fake ([`crate::midi::fake::FakeMidi`]).
//!
//! Inputs are polled queues: the backend's thread (midir's, or the test that injects into the
//! fake) parses each message, stamps it with its arrival on the host clock and pushes it into a
//! bounded queue of [`INPUT_QUEUE`] messages; the control thread drains it every tick. When the
//! queue is full the message is dropped and counted ([`InputPort::dropped`]): the backend's
//! thread never blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::midi::clock::HostTime;
use crate::midi::message::Message;

/// Messages an input holds before it drops new ones.
pub const INPUT_QUEUE: usize = 1024;

/// Why a MIDI operation failed. None of these stops a performance: the node says so in one line
/// and plays on without the port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MidiError {
    /// There is no MIDI subsystem (no ALSA sequencer, for one). Nothing to do for the
    /// performance; load the system's MIDI support (`modprobe snd-seq`) to use controllers.
    #[error("not available ({0})")]
    Unavailable(String),
    /// No port has this name. Pick one of those listed (`loophole-node devices`).
    #[error("no MIDI {dir} matches '{wanted}' ({known})")]
    NoSuchPort {
        /// `input` or `output`.
        dir: &'static str,
        /// The name asked for.
        wanted: String,
        /// The ports there are, for the message.
        known: String,
    },
    /// The name is part of several port names. Give more of the name.
    #[error("'{wanted}' matches several MIDI {dir}s ({matches}); give more of the name")]
    Ambiguous {
        /// `input` or `output`.
        dir: &'static str,
        /// The name asked for.
        wanted: String,
        /// The ports it matches.
        matches: String,
    },
    /// The port exists but could not be opened (unplugged, or in exclusive use). Check the
    /// device and try again.
    #[error("cannot open MIDI {dir} '{name}': {why}")]
    Open {
        /// `input` or `output`.
        dir: &'static str,
        /// The port.
        name: String,
        /// What the system said.
        why: String,
    },
    /// A message could not be sent (the device went away). It is dropped; the node carries on.
    #[error("cannot send to MIDI output '{name}': {why}")]
    Send {
        /// The port.
        name: String,
        /// What the system said.
        why: String,
    },
}

/// A source of MIDI ports. Thread: control (the backend itself need not be shared).
pub trait MidiBackend: Send {
    /// What it is, for messages (`ALSA sequencer`, `fake`).
    fn describe(&self) -> String;
    /// The input ports' names.
    fn inputs(&mut self) -> Result<Vec<String>, MidiError>;
    /// The output ports' names.
    fn outputs(&mut self) -> Result<Vec<String>, MidiError>;
    /// Opens the input `name` (see [`find_port`] for how names match).
    fn open_input(&mut self, name: &str) -> Result<InputPort, MidiError>;
    /// Opens the output `name` (see [`find_port`] for how names match).
    fn open_output(&mut self, name: &str) -> Result<Box<dyn OutputPort>, MidiError>;
}

/// An open output port.
pub trait OutputPort: Send {
    /// Its full name.
    fn name(&self) -> &str;
    /// Sends one complete message. Thread: whichever owns the port; may block briefly in the
    /// system's MIDI layer, so never the audio thread.
    fn send(&mut self, bytes: &[u8]) -> Result<(), MidiError>;
}

/// One message from an input port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedInput {
    /// The port's timestamp in µs (its own clock; 0 when the backend gives none).
    pub port_us: u64,
    /// When it reached the node, on the host clock.
    pub arrived: HostTime,
    /// The message.
    pub message: Message,
}

#[derive(Debug, Default)]
struct InputStats {
    received: AtomicU64,
    dropped: AtomicU64,
    ignored: AtomicU64,
}

/// An open input: a queue the backend fills and the control thread drains with
/// [`InputPort::poll`]. Dropping it closes the connection.
pub struct InputPort {
    name: String,
    rx: mpsc::Receiver<TimedInput>,
    stats: Arc<InputStats>,
    _connection: Box<dyn Send>,
}

impl InputPort {
    /// A port named `name` and the sender its backend delivers messages with. `connection` is
    /// kept alive as long as the port (midir's connection, for one).
    pub fn new(name: impl Into<String>, connection: Box<dyn Send>) -> (InputPort, InputSender) {
        let (tx, rx) = mpsc::sync_channel(INPUT_QUEUE);
        let stats = Arc::new(InputStats::default());
        let port = InputPort { name: name.into(), rx, stats: stats.clone(), _connection: connection };
        (port, InputSender { tx, stats })
    }

    /// Its full name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message, if one is waiting. Thread: control. Never blocks.
    pub fn poll(&self) -> Option<TimedInput> {
        self.rx.try_recv().ok()
    }

    /// Note, note-off and CC messages received so far.
    pub fn received(&self) -> u64 {
        self.stats.received.load(Ordering::Relaxed)
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Other messages (clock, SysEx, pitch bend, ...), which the node ignores.
    pub fn ignored(&self) -> u64 {
        self.stats.ignored.load(Ordering::Relaxed)
    }
}

/// The backend's end of an [`InputPort`]'s queue.
#[derive(Clone)]
pub struct InputSender {
    tx: mpsc::SyncSender<TimedInput>,
    stats: Arc<InputStats>,
}

impl InputSender {
    /// Parses `bytes` and queues the message; returns whether it was queued. Thread: the
    /// backend's. Never blocks: a full queue drops the message and counts it.
    pub fn deliver(&self, port_us: u64, arrived: HostTime, bytes: &[u8]) -> bool {
        let Some(message) = Message::parse(bytes) else {
            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match self.tx.try_send(TimedInput { port_us, arrived, message }) {
            Ok(()) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Picks the port called `wanted` among `names`: an exact match (ignoring case) first, else the
/// one port whose name contains it (ALSA names are long, e.g. `Launchpad Pro MK3:Launchpad Pro
/// MK3 LPProMK3 MIDI 20:0`, so `launchpad pro` is enough).
pub fn find_port(names: &[String], wanted: &str, dir: &'static str) -> Result<usize, MidiError> {
    let w = wanted.trim().to_lowercase();
    if let Some(i) = names.iter().position(|n| n.to_lowercase() == w) {
        return Ok(i);
    }
    let matches: Vec<usize> =
        names.iter().enumerate().filter(|(_, n)| n.to_lowercase().contains(&w)).map(|(i, _)| i).collect();
    match matches.as_slice() {
        [i] if !w.is_empty() => Ok(*i),
        [] | [_] => Err(MidiError::NoSuchPort { dir, wanted: wanted.to_string(), known: port_list(names, dir) }),
        many => Err(MidiError::Ambiguous {
            dir,
            wanted: wanted.to_string(),
            matches: many.iter().map(|&i| format!("'{}'", names[i])).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// `inputs: 'a', 'b'` or `there are no MIDI inputs`, for messages.
pub fn port_list(names: &[String], dir: &str) -> String {
    if names.is_empty() {
        format!("there are no MIDI {dir}s")
    } else {
        format!("{dir}s: {}", names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "))
    }
}

/// The system's MIDI ports through midir (ALSA sequencer on Linux, CoreMIDI, WinMM).
pub struct MidirBackend {
    client: String,
}

impl MidirBackend {
    /// A backend whose connections carry the client name `client` (shown by other MIDI apps).
    pub fn new(client: impl Into<String>) -> MidirBackend {
        MidirBackend { client: client.into() }
    }

    fn midi_in(&self) -> Result<midir::MidiInput, MidiError> {
        let _alsa = crate::audio::AlsaMessages::collect();
        let mut input =
            midir::MidiInput::new(&self.client).map_err(|e| MidiError::Unavailable(unavailable_reason(&e)))?;
        input.ignore(midir::Ignore::All);
        Ok(input)
    }

    fn midi_out(&self) -> Result<midir::MidiOutput, MidiError> {
        let _alsa = crate::audio::AlsaMessages::collect();
        midir::MidiOutput::new(&self.client).map_err(|e| MidiError::Unavailable(unavailable_reason(&e)))
    }
}

/// Why midir could not start, in words that say what to do.
fn unavailable_reason(e: &midir::InitError) -> String {
    if cfg!(target_os = "linux") && !std::path::Path::new("/dev/snd/seq").exists() {
        "no ALSA sequencer: /dev/snd/seq does not exist; load the snd-seq kernel module to use MIDI".to_string()
    } else {
        e.to_string()
    }
}

fn names<T: midir::MidiIO>(io: &T) -> Vec<String> {
    io.ports().iter().map(|p| io.port_name(p).unwrap_or_else(|_| "?".to_string())).collect()
}

impl MidiBackend for MidirBackend {
    fn describe(&self) -> String {
        if cfg!(target_os = "linux") { "ALSA sequencer".into() } else { "system MIDI".into() }
    }

    fn inputs(&mut self) -> Result<Vec<String>, MidiError> {
        Ok(names(&self.midi_in()?))
    }

    fn outputs(&mut self) -> Result<Vec<String>, MidiError> {
        Ok(names(&self.midi_out()?))
    }

    fn open_input(&mut self, name: &str) -> Result<InputPort, MidiError> {
        let input = self.midi_in()?;
        let ports = input.ports();
        let all = names(&input);
        let i = find_port(&all, name, "input")?;
        let full = all[i].clone();
        let (mut port, sender) = InputPort::new(full.clone(), Box::new(()));
        let _alsa = crate::audio::AlsaMessages::collect();
        let connection = input
            .connect(
                &ports[i],
                "loophole-in",
                move |us, bytes, _: &mut ()| {
                    sender.deliver(us, HostTime::now(), bytes);
                },
                (),
            )
            .map_err(|e| MidiError::Open { dir: "input", name: full.clone(), why: e.kind().to_string() })?;
        port._connection = Box::new(connection);
        Ok(port)
    }

    fn open_output(&mut self, name: &str) -> Result<Box<dyn OutputPort>, MidiError> {
        let output = self.midi_out()?;
        let ports = output.ports();
        let all = names(&output);
        let i = find_port(&all, name, "output")?;
        let full = all[i].clone();
        let _alsa = crate::audio::AlsaMessages::collect();
        let connection = output.connect(&ports[i], "loophole-out").map_err(|e| MidiError::Open {
            dir: "output",
            name: full.clone(),
            why: e.kind().to_string(),
        })?;
        Ok(Box::new(MidirOutput { name: full, connection }))
    }
}

struct MidirOutput {
    name: String,
    connection: midir::MidiOutputConnection,
}

impl OutputPort for MidirOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), MidiError> {
        self.connection.send(bytes).map_err(|e| MidiError::Send { name: self.name.clone(), why: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ports_match_exactly_then_by_a_unique_part_of_the_name() {
        let names = ports(&[
            "Midi Through:Midi Through Port-0 14:0",
            "Launchpad Pro MK3:LPProMK3 MIDI 20:0",
            "Launchpad X:LPX MIDI 24:0",
        ]);
        assert_eq!(find_port(&names, "launchpad pro", "input"), Ok(1));
        assert_eq!(find_port(&names, "Launchpad X:LPX MIDI 24:0", "input"), Ok(2));
        let err = find_port(&names, "launchpad", "input").unwrap_err();
        assert!(matches!(err, MidiError::Ambiguous { .. }), "{err}");
        let err = find_port(&names, "apc", "input").unwrap_err().to_string();
        assert!(err.contains("no MIDI input matches 'apc'") && err.contains("'Launchpad X:LPX MIDI 24:0'"), "{err}");
        assert!(find_port(&[], "x", "output").unwrap_err().to_string().contains("there are no MIDI outputs"));
        assert!(find_port(&names, "", "input").is_err(), "an empty name matches nothing");
    }

    #[test]
    fn a_full_input_queue_drops_and_counts_instead_of_blocking() {
        let (port, tx) = InputPort::new("x", Box::new(()));
        for i in 0..INPUT_QUEUE + 10 {
            tx.deliver(i as u64, HostTime(0), &[0x90, 60, 100]);
        }
        assert!(!tx.deliver(0, HostTime(0), &[0xf8]), "clock is ignored");
        assert_eq!((port.received(), port.dropped(), port.ignored()), (INPUT_QUEUE as u64, 10, 1));
        assert_eq!(port.poll().map(|m| m.port_us), Some(0));
    }
}
