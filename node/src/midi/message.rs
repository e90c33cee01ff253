//! The MIDI messages the node reads from controllers and sends to them: note on, note off and
//! control change, as bytes on the wire and as values.
//!
//! Thread: Pure data and parsing: any thread.

use loophole_engine::model::MidiMsg;

/// A channel voice message the node understands. Channels are 0..=15 here (1..=16 in files and on
/// devices); every data byte is 0..=127.
///
/// Unlike the engine's [`MidiMsg`], a note-on keeps velocity 0: controllers send it as a release,
/// and LEDs are switched off with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// Note on (`0x9n`). Velocity 0 means a release.
    NoteOn {
        /// Channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
        /// Velocity 0..=127.
        velocity: u8,
    },
    /// Note off (`0x8n`).
    NoteOff {
        /// Channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
        /// Release velocity 0..=127.
        velocity: u8,
    },
    /// Control change (`0xBn`).
    Cc {
        /// Channel 0..=15.
        channel: u8,
        /// Controller 0..=127.
        controller: u8,
        /// Value 0..=127.
        value: u8,
    },
}

impl Message {
    /// Parses one complete message as a MIDI port delivers it. Anything that is not a note on,
    /// note off or control change (SysEx, clock, pitch bend, a truncated message, ...) is `None`.
    pub fn parse(bytes: &[u8]) -> Option<Message> {
        let [status, a, b, ..] = *bytes else { return None };
        if a > 127 || b > 127 {
            return None;
        }
        let channel = status & 0x0f;
        match status & 0xf0 {
            0x80 => Some(Message::NoteOff { channel, key: a, velocity: b }),
            0x90 => Some(Message::NoteOn { channel, key: a, velocity: b }),
            0xb0 => Some(Message::Cc { channel, controller: a, value: b }),
            _ => None,
        }
    }

    /// The three bytes on the wire. Out-of-range fields are masked into range.
    pub fn to_bytes(self) -> [u8; 3] {
        match self {
            Message::NoteOff { channel, key, velocity } => [0x80 | (channel & 0x0f), key & 0x7f, velocity & 0x7f],
            Message::NoteOn { channel, key, velocity } => [0x90 | (channel & 0x0f), key & 0x7f, velocity & 0x7f],
            Message::Cc { channel, controller, value } => [0xb0 | (channel & 0x0f), controller & 0x7f, value & 0x7f],
        }
    }

    /// The engine's message on the wire (its note-offs have release velocity 0).
    pub fn from_engine(msg: MidiMsg) -> Message {
        match msg {
            MidiMsg::NoteOn { channel, key, velocity } => Message::NoteOn { channel, key, velocity },
            MidiMsg::NoteOff { channel, key } => Message::NoteOff { channel, key, velocity: 0 },
            MidiMsg::Cc { channel, controller, value } => Message::Cc { channel, controller, value },
        }
    }

    /// The channel, 0..=15.
    pub fn channel(self) -> u8 {
        match self {
            Message::NoteOn { channel, .. } | Message::NoteOff { channel, .. } | Message::Cc { channel, .. } => channel,
        }
    }
}

impl std::fmt::Display for Message {
    /// As in the docs: `note-on ch 1 key 81 vel 100`, channels counted from 1.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Message::NoteOn { channel, key, velocity } => {
                write!(f, "note-on ch {} key {key} vel {velocity}", channel + 1)
            }
            Message::NoteOff { channel, key, velocity } => {
                write!(f, "note-off ch {} key {key} vel {velocity}", channel + 1)
            }
            Message::Cc { channel, controller, value } => write!(f, "cc ch {} #{controller} = {value}", channel + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_bytes() {
        for m in [
            Message::NoteOn { channel: 0, key: 60, velocity: 100 },
            Message::NoteOn { channel: 15, key: 127, velocity: 0 },
            Message::NoteOff { channel: 9, key: 36, velocity: 64 },
            Message::Cc { channel: 3, controller: 89, value: 127 },
        ] {
            assert_eq!(Message::parse(&m.to_bytes()), Some(m), "{m}");
        }
    }

    #[test]
    fn other_messages_and_garbage_are_ignored() {
        assert_eq!(Message::parse(&[]), None);
        assert_eq!(Message::parse(&[0x90, 60]), None, "truncated");
        assert_eq!(Message::parse(&[0xe0, 0, 64]), None, "pitch bend");
        assert_eq!(Message::parse(&[0xf0, 0x7e, 0x7f, 0x06, 0x01, 0xf7]), None, "SysEx");
        assert_eq!(Message::parse(&[0xf8]), None, "clock");
        assert_eq!(Message::parse(&[0x90, 200, 1]), None, "data byte with the top bit set");
        assert_eq!(Message::parse(&[0x40, 1, 1]), None, "running status without a status byte");
    }

    #[test]
    fn engine_messages_map_to_the_wire() {
        assert_eq!(
            Message::from_engine(MidiMsg::NoteOff { channel: 2, key: 40 }).to_bytes(),
            [0x82, 40, 0],
            "note-off with release velocity 0"
        );
        assert_eq!(
            Message::from_engine(MidiMsg::Cc { channel: 0, controller: 123, value: 0 }).to_bytes(),
            [0xb0, 123, 0]
        );
    }
}
