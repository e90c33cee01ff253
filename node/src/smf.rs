//! `render --midi-out FILE.mid`: what the session's routed tracks sent to their external synths,
//! as a Standard MIDI File (format 1, 960 ticks per beat).
//!
//! Track 0 holds the tempo map (one tempo event at beat 0 and one at every change the render
//! made); then one track per routed session track, named after it, with the port's name as its
//! instrument name, holding the messages at the beats of the samples Signal sent them at. So the
//! file is the external half of the performance, beat for beat: drop it into a DAW next to the
//! rendered WAV.
//!
//! Thread: Main thread, after a render; writes the file.

use std::path::Path;

use anyhow::Context as _;
use loophole_engine::model::{MidiMsg, Session};
use loophole_engine::queue::MidiOutEvent;
use loophole_engine::time::Beats;
use midly::num::{u4, u7, u24, u28};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

/// Ticks per beat (quarter note) of the files written.
pub const TICKS_PER_BEAT: u16 = 960;

/// The tick of a beat.
pub fn tick(beat: Beats) -> u64 {
    (beat.0.max(0.0) * TICKS_PER_BEAT as f64).round() as u64
}

/// Writes `events` (each with the beat of its sample, in sample order) and the tempo map
/// `tempos` (beat, BPM) to `path`. Returns the messages written.
pub fn write(
    path: &Path,
    session: &Session,
    events: &[(MidiOutEvent, Beats)],
    tempos: &[(Beats, f64)],
) -> anyhow::Result<usize> {
    let mut tracks: Vec<Vec<TrackEvent<'_>>> = Vec::new();
    let mut timed: Vec<(u64, TrackEventKind<'_>)> = vec![(0, TrackEventKind::Meta(MetaMessage::TrackName(b"tempo")))];
    for (beat, bpm) in tempos {
        let us = (60_000_000.0 / bpm.max(1e-3)).round().clamp(1.0, 16_777_215.0) as u32;
        timed.push((tick(*beat), TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us)))));
    }
    tracks.push(delta_encode(timed));
    for (i, t) in session.tracks.iter().enumerate() {
        let Some(route) = &t.midi_out else { continue };
        let mut timed = vec![
            (0, TrackEventKind::Meta(MetaMessage::TrackName(t.id.as_bytes()))),
            (0, TrackEventKind::Meta(MetaMessage::InstrumentName(route.port.as_bytes()))),
        ];
        for (e, beat) in events.iter().filter(|(e, _)| e.track.index() == i) {
            let (channel, message) = match e.msg {
                MidiMsg::NoteOn { channel, key, velocity } => {
                    (channel, MidiMessage::NoteOn { key: u7::new(key & 127), vel: u7::new(velocity & 127) })
                }
                MidiMsg::NoteOff { channel, key } => {
                    (channel, MidiMessage::NoteOff { key: u7::new(key & 127), vel: u7::new(0) })
                }
                MidiMsg::Cc { channel, controller, value } => (
                    channel,
                    MidiMessage::Controller { controller: u7::new(controller & 127), value: u7::new(value & 127) },
                ),
            };
            timed.push((tick(*beat), TrackEventKind::Midi { channel: u4::new(channel & 15), message }));
        }
        tracks.push(delta_encode(timed));
    }
    let smf = Smf { header: Header::new(Format::Parallel, Timing::Metrical(TICKS_PER_BEAT.into())), tracks };
    smf.save(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(events.len())
}

/// Events at absolute ticks (in order) → delta times, with the end-of-track.
fn delta_encode(timed: Vec<(u64, TrackEventKind<'_>)>) -> Vec<TrackEvent<'_>> {
    let mut last = 0u64;
    let mut out: Vec<TrackEvent<'_>> = timed
        .into_iter()
        .map(|(t, kind)| {
            let t = t.max(last);
            let delta = u28::new((t - last).min(0x0fff_ffff) as u32);
            last = t;
            TrackEvent { delta, kind }
        })
        .collect();
    out.push(TrackEvent { delta: u28::new(0), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) });
    out
}
