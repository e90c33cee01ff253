//! Protocol version 1: the messages a conductor and its nodes exchange.
//!
//! Ids in messages are the session file's string ids (inside [`ControlCommand`]), so a conductor
//! and nodes that loaded the same set agree on them without sharing indices. A press travels as
//! a [`ControlCommand`]; the conductor turns it into a [`ScheduledCommand`] with a sequence number
//! and a target beat, and every node executes it exactly there.
//!
//! Thread: Pure data: any thread.

use loophole_engine::control::ControlCommand;
use serde::{Deserialize, Serialize};

/// What a connected peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Plays and may press.
    Performer,
    /// Receives the log only; its presses are refused.
    Observer,
    /// May press, and (later) change the conductor's configuration.
    Admin,
}

impl Role {
    /// The byte the join proof covers (see [`crate::auth`]).
    pub fn code(self) -> u8 {
        match self {
            Role::Performer => 1,
            Role::Observer => 2,
            Role::Admin => 3,
        }
    }

    /// Whether this role may press.
    pub fn may_press(self) -> bool {
        !matches!(self, Role::Observer)
    }
}

/// Why the conductor refused a node's hello. The connection closes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The node does not speak this protocol version. Upgrade the node or the conductor.
    UnsupportedVersion,
    /// The join proof did not verify: the join code's secret is wrong.
    WrongSecret,
    /// The conductor gives no join secret for the role asked for.
    RoleNotAllowed,
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefuseReason::UnsupportedVersion => "the conductor speaks another protocol version",
            RefuseReason::WrongSecret => "the join secret is wrong (check the join code)",
            RefuseReason::RoleNotAllowed => "the conductor does not admit this role",
        })
    }
}

/// Why the conductor did not sequence a press. The node shows it; nothing plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PressRefusal {
    /// Observers may not press.
    Observer,
    /// The command names something the set does not have, or Pulse refused it (the message says
    /// what, e.g. `scene 'outro' does not exist (scenes: intro, verse)`).
    Invalid(String),
}

impl std::fmt::Display for PressRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PressRefusal::Observer => f.write_str("observers may not press"),
            PressRefusal::Invalid(why) => write!(f, "{why}"),
        }
    }
}

/// A press the conductor sequenced: one entry of the band's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledCommand {
    /// Command id, unique in the set's log: every trigger it schedules reports it
    /// (`CommandId`), and re-delivery of the same id is idempotent.
    pub id: u64,
    /// Position in the log, from 1, without gaps (nodes acknowledge it cumulatively).
    pub seq: u64,
    /// The Link beat at which every node executes it.
    pub target_beat: f64,
    /// What it does.
    pub command: ControlCommand,
    /// Who pressed it: a node's name, or `ctl`.
    pub origin: String,
    /// The origin's incarnation (see [`Message::Hello`]; 0 for presses made at the conductor).
    pub incarnation: u64,
    /// The press id the origin gave it (0 for presses made at the conductor).
    pub press: u64,
}

/// One message on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Node -> conductor: the first message, repeated until welcomed.
    Hello {
        /// Protocol version the node speaks.
        version: u16,
        /// Node name (unique in the band).
        node: String,
        /// Role asked for.
        role: Role,
        /// Proof of the join secret for `role` ([`crate::auth::proof`]).
        proof: [u8; 32],
        /// Identifies this run of the node (a random number per start), so press ids of a node
        /// that restarted never collide with its earlier ones.
        incarnation: u64,
        /// The last log sequence number the node holds without gaps (0: none).
        last_seq: u64,
    },
    /// Conductor -> node: accepted.
    Welcome {
        /// Protocol version in use.
        version: u16,
        /// The entries after this sequence number follow.
        resume_from: u64,
        /// The last sequence number of the log at the welcome: the node has caught up when it
        /// holds every entry up to it.
        head: u64,
    },
    /// Conductor -> node: refused; the connection closes.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// Node -> conductor: a performer pressed something. Repeated until it comes back sequenced
    /// (an entry with this node as origin and this press id) or refused.
    Press {
        /// Press id, unique in this incarnation of the node.
        press: u64,
        /// What was pressed.
        command: ControlCommand,
    },
    /// Conductor -> node: a press of this node was not sequenced.
    PressRefused {
        /// The press id.
        press: u64,
        /// Why.
        reason: PressRefusal,
    },
    /// Conductor -> node: schedule this (an entry of the log).
    Scheduled(ScheduledCommand),
    /// Node -> conductor: every entry up to `seq` was received.
    Ack {
        /// Last sequence number received without gaps.
        seq: u64,
    },
    /// Node -> conductor: a command's triggers executed (or the press did nothing audible).
    Executed {
        /// Command id.
        id: u64,
        /// Beat it executed at.
        beat: f64,
        /// It arrived after its target beat and started phase-aligned.
        late: bool,
    },
    /// Liveness and round-trip probe (either way; a datagram in the real driver).
    Ping {
        /// Matches the pong.
        nonce: u64,
        /// Sender's clock, microseconds.
        sent_us: u64,
    },
    /// The answer to a [`Message::Ping`].
    Pong {
        /// From the ping.
        nonce: u64,
        /// From the ping.
        sent_us: u64,
        /// The replier's clock when it answered, microseconds.
        replier_us: u64,
    },
}

impl Message {
    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Welcome { .. } => "welcome",
            Message::Refused { .. } => "refused",
            Message::Press { .. } => "press",
            Message::PressRefused { .. } => "press-refused",
            Message::Scheduled(_) => "scheduled",
            Message::Ack { .. } => "ack",
            Message::Executed { .. } => "executed",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
        }
    }
}
