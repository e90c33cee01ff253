//! What both ends agree on beyond `net-proto`'s frames: the QUIC close codes (with a reason
//! text for people), the datagram encoding of clock pings (postcard of a [`Message::Ping`] or
//! [`Message::Pong`], no length prefix), and the header of a file stream.
//!
//! Thread: pure functions; any task.

use loophole_net_proto::v1::Message;

/// The connection ended normally (a client that was dropped, a conductor shutting down).
pub const CLOSE_NORMAL: u32 = 0;
/// The hello was refused (wrong secret, version or role); the node must not retry.
pub const CLOSE_REFUSED: u32 = 1;
/// The peer broke the protocol (malformed, oversized or unexpected frame or datagram).
pub const CLOSE_PROTOCOL: u32 = 2;
/// The peer sent more than the rate limit allows.
pub const CLOSE_RATE: u32 = 3;
/// The conductor forgot the node (not heard for 2 s); it may rejoin.
pub const CLOSE_LOST: u32 = 4;
/// The node joined again on another connection; this one is closed.
pub const CLOSE_REPLACED: u32 = 5;

/// Largest datagram accepted (a ping or a pong is about 20 bytes).
pub const MAX_DATAGRAM: usize = 64;

/// Encodes a ping or pong as a datagram.
pub fn encode_datagram(message: &Message) -> Vec<u8> {
    // Plain data into a Vec: cannot fail.
    postcard::to_allocvec(message).unwrap_or_default()
}

/// Decodes a datagram: a ping or a pong, or why it is neither.
pub fn decode_datagram(bytes: &[u8]) -> Result<Message, String> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(format!("datagram of {} bytes (at most {MAX_DATAGRAM})", bytes.len()));
    }
    match postcard::from_bytes::<Message>(bytes) {
        Ok(m @ (Message::Ping { .. } | Message::Pong { .. })) => Ok(m),
        Ok(m) => Err(format!("a {} message in a datagram (only ping and pong go there)", m.name())),
        Err(e) => Err(format!("malformed datagram: {e}")),
    }
}

/// The name of a close code, for messages.
pub fn close_kind(code: u32) -> &'static str {
    match code {
        CLOSE_NORMAL => "closed",
        CLOSE_REFUSED => "refused",
        CLOSE_PROTOCOL => "protocol error",
        CLOSE_RATE => "rate limit",
        CLOSE_LOST => "lost",
        CLOSE_REPLACED => "replaced",
        _ => "closed with an unknown code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_carry_pings_only() {
        let ping = Message::Ping { nonce: 3, sent_us: 99 };
        assert_eq!(decode_datagram(&encode_datagram(&ping)), Ok(ping));
        assert!(decode_datagram(&encode_datagram(&Message::Ack { seq: 1 })).unwrap_err().contains("ack"));
        assert!(decode_datagram(&[0xff; 8]).unwrap_err().contains("malformed"));
        assert!(decode_datagram(&[0; 200]).unwrap_err().contains("200 bytes"));
    }
}
