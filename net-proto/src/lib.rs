//! # loophole-net-proto
//!
//! Every message between the conductor and the nodes, and how they are framed on a QUIC stream.
//! No sockets here: the codec is a pure function of bytes, so it is tested (and fuzzed) offline.
//!
//! - Messages are versioned ([`v1`]); a node and a conductor agree on [`PROTOCOL_VERSION`] in the
//!   handshake ([`v1::Message::Hello`]).
//! - A frame is a 4-byte little-endian length followed by a postcard-encoded [`v1::Message`]. Frames
//!   longer than [`MAX_FRAME`] are refused before any allocation.
//! - Decoding arbitrary bytes returns an error, never panics ([`FrameDecoder`]).
//!
//! Times are always musical: a scheduled command carries the **target beat** at which every node
//! executes it.
//!
//! The sans-IO cores, in the style of `quinn-proto` (no sockets, no tokio, no clock reads: time
//! is passed in as a [`std::time::Duration`] since an origin the driver picks, plus the Link beat
//! for the conductor):
//! - [`conductor`]: the conductor's session state machine (registry, join proofs, sequencing
//!   with its own Pulse, the log, acknowledgements, resends, catch-up);
//! - [`node`]: the node's conductor client;
//! - [`auth`]: the join proof; [`rtt`]: round-trip estimation.
//!
//! `docs/conductor.md` has the sequence diagrams, the message reference and the failure cases.
//!
//! Thread: Pure functions and state machines: any thread, no I/O.
#![warn(missing_docs)]

pub mod auth;
pub mod conductor;
pub mod node;
pub mod rtt;
pub mod v1;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame body accepted, in bytes. Bulk data (recorded takes) uses separate streams.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame announces (or would need) more than [`MAX_FRAME`] bytes. The peer is broken or
    /// hostile: close the connection.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The frame body is not a valid message of this protocol version. Close the connection.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes one message as a length-prefixed frame.
pub fn encode(msg: &v1::Message) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_allocvec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or an error (after which
    /// the stream is unusable: close it).
    pub fn next_message(&mut self) -> Result<Option<v1::Message>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let result = postcard::from_bytes::<v1::Message>(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        result.map(Some).map_err(|e| FrameError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::v1::*;
    use super::*;
    use loophole_engine::control::ControlCommand;
    use loophole_engine::pulse::{Behaviour, MixChange, SceneMode, StopMode};
    use loophole_engine::time::{Beats, Quantise};
    use proptest::prelude::*;

    /// One of every command, with the options set.
    fn commands() -> Vec<ControlCommand> {
        use ControlCommand::*;
        vec![
            ClipTrigger {
                clip: "bass-a".into(),
                quantise: Some(Quantise::Bar),
                behaviour: Some(Behaviour::Legato),
                velocity: Some(0.8),
            },
            ClipTrigger { clip: "fill".into(), quantise: None, behaviour: None, velocity: None },
            ClipRelease { clip: "lead-gate".into() },
            SceneTrigger {
                scene: "chorus".into(),
                quantise: Some(Quantise::Division(16)),
                mode: Some(SceneMode::Partial),
            },
            TrackStop { track: "drums".into(), mode: Some(StopMode::FadeOut(Beats(1.5))) },
            StopAll { mode: Some(StopMode::SectionEnd) },
            PlaylistStart { playlist: "set".into(), step: 2, quantise: None },
            Playthrough { from: Some("intro".into()), to: None, quantise: Some(Quantise::Beat) },
            ArrangementPlay,
            BackToArrangement { quantise: Some(Quantise::Global) },
            Tempo { bpm: 128.5 },
            LauncherQuantise { quantise: Quantise::Scene },
            Mix {
                track: "keys".into(),
                change: MixChange { gain_db: Some(-6.0), pan: None, mute: Some(true), solo: None },
            },
            TransportStart,
            TransportStop,
            RecordArm { track: "mic".into() },
            RecordDisarm { track: "mic".into() },
            RecordStart { quantise: None },
            RecordStop { quantise: Some(Quantise::Beat) },
            ClipRecord { track: "mic".into(), scene: "verse".into(), bars: Some(4) },
        ]
    }

    fn samples() -> Vec<Message> {
        let entry = |seq: u64, beat: f64, command: ControlCommand| {
            Message::Scheduled(ScheduledCommand {
                id: seq + 100,
                seq,
                target_beat: beat,
                command,
                origin: "keys".into(),
                incarnation: 77,
                press: seq,
            })
        };
        let mut msgs = vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                node: "keys".into(),
                role: Role::Performer,
                proof: [7; 32],
                incarnation: 77,
                last_seq: 12,
            },
            Message::Welcome { version: PROTOCOL_VERSION, resume_from: 12, head: 40 },
            Message::Refused { reason: RefuseReason::WrongSecret },
            Message::Refused { reason: RefuseReason::RoleNotAllowed },
            Message::Press { press: 3, command: ControlCommand::ArrangementPlay },
            Message::PressRefused { press: 3, reason: PressRefusal::Observer },
            Message::PressRefused { press: 4, reason: PressRefusal::Invalid("scene 'x' does not exist".into()) },
            Message::Ack { seq: 5 },
            Message::Executed { id: 99, beat: 64.0, late: false },
            Message::Ping { nonce: 1, sent_us: 42 },
            Message::Pong { nonce: 1, sent_us: 42, replier_us: 1000 },
            Message::Report(NodeReport {
                tracks: vec!["bass".into(), "keys".into()],
                ahead_us: Some(-1500),
                late: 1,
                xruns: 2,
                local_presses: 0,
            }),
        ];
        for (i, command) in commands().into_iter().enumerate() {
            msgs.push(entry(i as u64 + 1, 64.0 + i as f64, command.clone()));
            msgs.push(Message::Press { press: i as u64, command });
        }
        msgs
    }

    #[test]
    fn every_message_round_trips_split_anywhere() {
        let msgs = samples();
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode(m).unwrap());
        }
        for split in [1usize, 2, 3, 7, 64, bytes.len()] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(split) {
                d.push(chunk);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, msgs, "split {split}");
        }
    }

    #[test]
    fn oversize_frame_is_refused_before_allocating() {
        let mut d = FrameDecoder::new();
        d.push(&(u32::MAX).to_le_bytes());
        assert_eq!(d.next_message(), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn malformed_body_is_an_error() {
        let mut d = FrameDecoder::new();
        d.push(&[2, 0, 0, 0, 0xff, 0xff]);
        assert!(matches!(d.next_message(), Err(FrameError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            for _ in 0..8 {
                match d.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn scheduled_commands_round_trip(id in any::<u64>(), seq in any::<u64>(), beat in -1e9f64..1e9, name in "[a-z-]{0,24}", origin in "[a-z]{0,12}") {
            let command = ControlCommand::SceneTrigger { scene: name, quantise: Some(Quantise::Bar), mode: None };
            let m = Message::Scheduled(ScheduledCommand { id, seq, target_beat: beat, command, origin, incarnation: id ^ seq, press: seq });
            let mut d = FrameDecoder::new();
            d.push(&encode(&m).unwrap());
            prop_assert_eq!(d.next_message().unwrap(), Some(m));
        }
    }
}
