//! A track's recording input from the session file: `input = "NAME"` with `channels = [1, 2]`
//! on an audio track, `midi_in = "NAME"` on a MIDI track, checked with the line of every problem.
//! Control thread.

use std::ops::Range;

use super::Ctx;
use crate::files::session::error::{SessionError, SessionErrorKind};
use crate::files::session::raw::RawTrack;
use crate::model::{TrackInput, TrackKind};

/// Most channels an input may have (`channels` values are 1..=this).
pub const MAX_INPUT_CHANNELS: i64 = 64;

impl Ctx<'_> {
    /// The track's `input`/`channels` or `midi_in`, checked.
    pub(super) fn track_input(&self, id: &str, t: &RawTrack) -> Result<Option<TrackInput>, SessionError> {
        let misplaced = |span: &Range<usize>, why: String| self.err(span, SessionErrorKind::Misplaced(why));
        if let Some(m) = &t.midi_in {
            if t.kind == TrackKind::Audio {
                return Err(misplaced(
                    &m.span(),
                    format!(
                        "track '{id}': an audio track records audio; use input = \"NAME\" with channels, or make it \
                         kind = \"midi\""
                    ),
                ));
            }
            if let Some(i) = &t.input {
                return Err(misplaced(
                    &i.span(),
                    format!("track '{id}': a MIDI track records from midi_in = \"NAME\", not input"),
                ));
            }
            if m.get_ref().trim().is_empty() {
                return Err(misplaced(&m.span(), format!("track '{id}': midi_in needs an input name")));
            }
            if let Some(c) = &t.channels {
                return Err(misplaced(&c.span(), format!("track '{id}': channels belong to an audio input")));
            }
            return Ok(Some(TrackInput::Midi { port: m.get_ref().trim().to_string() }));
        }
        let Some(input) = &t.input else {
            return match &t.channels {
                Some(c) => Err(misplaced(
                    &c.span(),
                    format!("track '{id}': channels needs input = \"NAME\" (the input they are taken from)"),
                )),
                None => Ok(None),
            };
        };
        if t.kind == TrackKind::Midi {
            return Err(misplaced(
                &input.span(),
                format!("track '{id}': a MIDI track records from midi_in = \"NAME\"; input is for audio tracks"),
            ));
        }
        let name = input.get_ref().trim();
        if name.is_empty() || name.contains('=') || name.contains(':') {
            return Err(misplaced(
                &input.span(),
                format!("track '{id}': input needs a name (letters, digits, '-' or '_'), e.g. input = \"mic\""),
            ));
        }
        let channels = match &t.channels {
            None => vec![0, 1],
            Some(c) => {
                let list = c.get_ref();
                if list.is_empty() || list.len() > 2 {
                    return Err(self.err(
                        &c.span(),
                        SessionErrorKind::OutOfRange {
                            what: format!("track '{id}': channels"),
                            value: format!("{} channels", list.len()),
                            expected: "one channel (mono, e.g. [1]) or two (stereo, e.g. [1, 2])".into(),
                        },
                    ));
                }
                let mut out = Vec::with_capacity(2);
                for ch in list {
                    if !(1..=MAX_INPUT_CHANNELS).contains(ch.get_ref()) {
                        return Err(self.err(
                            &ch.span(),
                            SessionErrorKind::OutOfRange {
                                what: format!("track '{id}': channel"),
                                value: ch.get_ref().to_string(),
                                expected: format!("an input channel 1..={MAX_INPUT_CHANNELS}"),
                            },
                        ));
                    }
                    out.push((*ch.get_ref() - 1) as u16);
                }
                if out.len() == 2 && out[0] == out[1] {
                    return Err(misplaced(
                        &c.span(),
                        format!(
                            "track '{id}': channels names channel {} twice; give [{}] for mono",
                            out[0] + 1,
                            out[0] + 1
                        ),
                    ));
                }
                out
            }
        };
        Ok(Some(TrackInput::Audio { input: name.to_string(), channels }))
    }
}
