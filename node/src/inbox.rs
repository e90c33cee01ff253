//! The node's one inbox: every input (the script, MIDI pads, the terminal, the UI, the
//! conductor) sends what the performer did as a [`Request`] tagged with its [`Source`]; the
//! control thread drains it each tick and is the only caller of Pulse. A new input is one more
//! sender ([`InboxSender`], cheap to clone, any thread).

use std::sync::mpsc;

use loophole_engine::control::ControlCommand;
use loophole_engine::pulse::CommandId;
use loophole_engine::time::Beats;

/// Where a request came from (the log and the terminal say it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The performance script (`--script`, the demo's, a preview).
    Script,
    /// A MIDI controller pad or button.
    Midi,
    /// A line typed on the terminal (`--stdin-commands`).
    Stdin,
    /// The window.
    Ui,
    /// The conductor.
    Conductor,
}

impl Source {
    /// The log spelling.
    pub fn name(self) -> &'static str {
        match self {
            Source::Script => "script",
            Source::Midi => "midi",
            Source::Stdin => "stdin",
            Source::Ui => "ui",
            Source::Conductor => "conductor",
        }
    }
}

/// When a request's press happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PressAt {
    /// Now: at the beat the control thread drains it (the beat about to be heard).
    Now,
    /// At the beat the performer heard when pressing (a MIDI pad), or the script's beat.
    Beat(Beats),
    /// Exactly at this beat, whatever the quantisation, reporting this id (the conductor).
    Exact(Beats, CommandId),
}

/// What an input asks of the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A performer's command.
    Command {
        /// Who sent it.
        source: Source,
        /// When it is pressed.
        at: PressAt,
        /// What it does.
        command: ControlCommand,
    },
    /// Print what plays and what is queued.
    Status,
    /// Print the commands.
    Help,
    /// End the performance.
    Quit,
    /// Enable or disable Ableton Link.
    Link(bool),
    /// Something an input could not understand (a mistyped line): say so.
    Invalid {
        /// Who sent it.
        source: Source,
        /// What is wrong.
        why: String,
    },
}

/// The sending end of the inbox. Any thread.
#[derive(Debug, Clone)]
pub struct InboxSender(mpsc::Sender<Request>);

impl InboxSender {
    /// Sends a request; false if the node has finished.
    pub fn send(&self, r: Request) -> bool {
        self.0.send(r).is_ok()
    }
}

/// The receiving end: the control thread's. Not realtime-safe.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Request>,
    tx: mpsc::Sender<Request>,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Inbox {
        let (tx, rx) = mpsc::channel();
        Inbox { rx, tx }
    }

    /// A sender for one more input.
    pub fn sender(&self) -> InboxSender {
        InboxSender(self.tx.clone())
    }

    /// The requests that arrived since the last call, in arrival order.
    pub fn drain(&self) -> Vec<Request> {
        self.rx.try_iter().collect()
    }
}
