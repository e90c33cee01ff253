//! Protocol version 1: the messages a conductor and its nodes exchange.
//!
//! Ids in messages are the session file's string ids, so a conductor and nodes that loaded the
//! same session agree on them without sharing indices.
//!
//! Thread: Pure data: any thread.

use serde::{Deserialize, Serialize};

/// What a connected peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Plays and may trigger.
    Performer,
    /// Receives state only.
    Observer,
    /// May also change the conductor's configuration.
    Admin,
}

/// Why the conductor refused a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The node does not speak this protocol version.
    UnsupportedVersion,
    /// The join secret's proof did not verify.
    WrongSecret,
    /// The role asked for is not allowed for this node.
    RoleNotAllowed,
}

/// What a trigger does when its target beat arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TriggerAction {
    /// Launch a scene.
    Scene {
        /// Scene id.
        scene: String,
        /// Quantisation it was resolved with (informational; the target beat is authoritative).
        quantise: String,
    },
    /// Launch a clip.
    Clip {
        /// Clip id.
        clip: String,
        /// Launch velocity 0..=1.
        velocity: f32,
    },
    /// Stop a track (or every track).
    Stop {
        /// Track id, or every track.
        track: Option<String>,
        /// Fade length in beats (0 = declick only).
        fade_beats: f64,
    },
}

/// A band-wide action resolved by the conductor to a target beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// Trigger id; re-delivery of the same id is idempotent.
    pub id: u64,
    /// Sequence number on the control stream (nodes acknowledge it).
    pub seq: u64,
    /// The Link beat at which every node executes it.
    pub target_beat: f64,
    /// What it does.
    pub action: TriggerAction,
}

/// One message on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Node -> conductor: the first message.
    Hello {
        /// Protocol version the node speaks.
        version: u16,
        /// Node name.
        node: String,
        /// Role asked for.
        role: Role,
        /// Proof of the join secret.
        proof: [u8; 32],
    },
    /// Conductor -> node: accepted.
    Welcome {
        /// Protocol version in use.
        version: u16,
        /// The sequence number the node resumes after.
        resume_from: u64,
    },
    /// Conductor -> node: refused; the connection closes.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// Conductor -> node: schedule this.
    Trigger(Trigger),
    /// Node -> conductor: every message up to `seq` was received.
    Ack {
        /// Last sequence number received.
        seq: u64,
    },
    /// Node -> conductor: a trigger was executed.
    Executed {
        /// Trigger id.
        id: u64,
        /// Beat it executed at.
        beat: f64,
        /// It arrived after its target beat.
        late: bool,
    },
    /// Clock ping (datagram).
    Ping {
        /// Matches the pong.
        nonce: u64,
        /// Sender's clock, microseconds.
        sent_us: u64,
    },
    /// Clock pong (datagram).
    Pong {
        /// From the ping.
        nonce: u64,
        /// From the ping.
        sent_us: u64,
        /// Conductor's clock when it answered, microseconds.
        conductor_us: u64,
    },
}
