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
    /// The connection pressed faster than the conductor's rate limit allows (the driver's
    /// per-connection token bucket); press again later.
    RateLimited,
}

impl std::fmt::Display for PressRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PressRefusal::Observer => f.write_str("observers may not press"),
            PressRefusal::Invalid(why) => write!(f, "{why}"),
            PressRefusal::RateLimited => {
                f.write_str("too many presses on this connection (rate limit); press again later")
            }
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

/// A file of a set: where it goes, relative to the session file's folder, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the session file's folder, with `/` separators, no `..` and not
    /// absolute (a node refuses any other).
    pub path: String,
    /// SHA-256 of the contents: the file's name in a node's cache.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub size: u64,
}

/// What set the conductor serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetKind {
    /// The built-in demo set (`loophole_engine::demo::session`): nothing to fetch.
    Demo,
    /// A session file and every file it references.
    Files {
        /// The session file (its `path` is its file name).
        session: FileRef,
        /// The audio and MIDI files it references.
        files: Vec<FileRef>,
    },
}

/// What a peer asks the conductor (`ctl status`, `ctl log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// The band's state: the nodes, the set, the log's head and its last entries.
    Status,
    /// Log entries after `since`, at most [`LOG_PAGE`] per answer.
    Log {
        /// Entries after this seq.
        since: u64,
    },
}

/// Most log entries in one [`Answer::Log`] (a frame holds at most 64 KiB).
pub const LOG_PAGE: usize = 128;

/// One welcomed node in a [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Smoothed round trip, microseconds.
    pub rtt_us: u64,
    /// Every entry up to this seq was acknowledged.
    pub acked: u64,
    /// What the node last reported of itself (`None`: nothing yet, or `ctl`).
    pub report: Option<NodeReport>,
}

/// What a node reports of itself ([`Message::Report`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeReport {
    /// The tracks it plays.
    pub tracks: Vec<String>,
    /// How far its output position is ahead of the band's time, microseconds (negative:
    /// behind); it includes the output's buffering.
    pub ahead_us: Option<i64>,
    /// Entries that arrived after their beat (started phase-aligned).
    pub late: u64,
    /// Its audio path's underruns, gaps and missed deadlines so far.
    pub xruns: u64,
    /// Presses it applied alone while the conductor was unreachable.
    pub local_presses: u64,
}

/// A node's report that it executed an entry ([`Message::Executed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReport {
    /// The node.
    pub node: String,
    /// Command id.
    pub id: u64,
    /// Beat it executed at.
    pub beat: f64,
    /// Late (arrived after its target).
    pub late: bool,
}

/// The answer to [`Query::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The set's name (the session's name).
    pub set: String,
    /// The set's version (see [`Message::SetOffer`]).
    pub set_version: u32,
    /// Band time, microseconds since the band's origin.
    pub band_us: u64,
    /// The band's beat now.
    pub beat: f64,
    /// The tempo now, beats per minute.
    pub bpm: f64,
    /// Beats per bar now.
    pub beats_per_bar: f64,
    /// The lead a press gets now, microseconds.
    pub lead_us: u64,
    /// The log's last seq.
    pub head: u64,
    /// The welcomed nodes.
    pub nodes: Vec<NodeStatus>,
    /// The last entries of the log (at most 16), oldest first.
    pub recent: Vec<ScheduledCommand>,
    /// The last executions reported (at most 64), oldest first.
    pub executions: Vec<ExecutionReport>,
}

/// The conductor's answer to a [`Message::Query`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// The band's state.
    Status(Box<Status>),
    /// Log entries in seq order, and the head when answered (ask again from the last seq
    /// given while it is below `head`).
    Log {
        /// The entries.
        entries: Vec<ScheduledCommand>,
        /// The log's last seq.
        head: u64,
    },
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
    /// Conductor -> node, after the welcome: the set to load. The node fetches what its cache
    /// lacks ([`Message::Fetch`]).
    SetOffer {
        /// Version of the set (1 for the set the conductor started with).
        version: u32,
        /// The set.
        set: SetKind,
    },
    /// Node -> conductor: send the file with this hash (one the offer names). It comes on a
    /// unidirectional stream: the 32-byte hash, then the contents.
    Fetch {
        /// SHA-256 of the file.
        sha256: [u8; 32],
    },
    /// Conductor -> node: a fetched file cannot be sent.
    FetchFailed {
        /// SHA-256 asked for.
        sha256: [u8; 32],
        /// Why (e.g. not part of the set, or unreadable on the conductor).
        reason: String,
    },
    /// Node -> conductor: a question (`ctl status`, `ctl log`). Answered with
    /// [`Message::Answer`].
    Query(Query),
    /// Conductor -> node: the answer to a [`Message::Query`].
    Answer(Answer),
    /// Node -> conductor: how the node is doing (sent every few seconds), for `status`.
    Report(NodeReport),
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
            Message::SetOffer { .. } => "set-offer",
            Message::Fetch { .. } => "fetch",
            Message::FetchFailed { .. } => "fetch-failed",
            Message::Query(_) => "query",
            Message::Answer(_) => "answer",
            Message::Report(_) => "report",
        }
    }
}
