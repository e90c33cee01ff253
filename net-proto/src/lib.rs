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
//! Times are always musical: a trigger carries the **target beat** at which every node executes it.
//!
//! Thread: Pure functions and state machines: any thread, no I/O.
#![warn(missing_docs)]

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
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello { version: PROTOCOL_VERSION, node: "keys".into(), role: Role::Performer, proof: [7; 32] },
            Message::Welcome { version: PROTOCOL_VERSION, resume_from: 12 },
            Message::Refused { reason: RefuseReason::WrongSecret },
            Message::Trigger(Trigger {
                id: 99,
                seq: 3,
                target_beat: 64.0,
                action: TriggerAction::Scene { scene: "chorus".into(), quantise: "bar".into() },
            }),
            Message::Trigger(Trigger {
                id: 100,
                seq: 4,
                target_beat: 65.5,
                action: TriggerAction::Clip { clip: "bass-a".into(), velocity: 0.8 },
            }),
            Message::Trigger(Trigger {
                id: 101,
                seq: 5,
                target_beat: 68.0,
                action: TriggerAction::Stop { track: Some("drums".into()), fade_beats: 1.0 },
            }),
            Message::Ack { seq: 5 },
            Message::Executed { id: 99, beat: 64.0, late: false },
            Message::Ping { nonce: 1, sent_us: 42 },
            Message::Pong { nonce: 1, sent_us: 42, conductor_us: 1000 },
        ]
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
        fn triggers_round_trip(id in any::<u64>(), seq in any::<u64>(), beat in -1e9f64..1e9, name in "[a-z-]{0,24}") {
            let m = Message::Trigger(Trigger { id, seq, target_beat: beat, action: TriggerAction::Scene { scene: name, quantise: "bar".into() } });
            let mut d = FrameDecoder::new();
            d.push(&encode(&m).unwrap());
            prop_assert_eq!(d.next_message().unwrap(), Some(m));
        }
    }
}
