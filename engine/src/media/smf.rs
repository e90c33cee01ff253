//! Standard MIDI Files decoded into clip events (via `midly`). Control thread (or the loader's
//! threads); allocates; never on the audio thread.

use crate::model::{MidiData, MidiEvent, MidiMsg};
use crate::time::Beats;

/// Decodes a Standard MIDI File held in memory into clip events.
///
/// Ticks become beats through the file's ticks per quarter note (files with SMPTE timecode
/// timing are refused). `track` picks one track (0-based, as stored in the file; in format-1
/// files track 0 usually holds only the tempo map); `None` merges all tracks. Note-ons with
/// velocity 0 become note-offs; control changes are kept, everything else (tempo, program
/// changes, SysEx, ...) is dropped: the session's tempo rules. The result is sorted.
pub fn decode_smf(bytes: &[u8], track: Option<usize>) -> Result<MidiData, String> {
    use midly::{MidiMessage, Timing, TrackEventKind};
    // midly negates the SMPTE frame rate byte as an `i8`: -128 overflows (a panic where overflow
    // checks are on). No real file has it; refuse it before parsing.
    if bytes.len() >= 14 && &bytes[..4] == b"MThd" && bytes[12] == 0x80 {
        return Err("not a valid Standard MIDI File (its header's SMPTE frame rate is invalid)".into());
    }
    // Any other panic in the parser on a damaged file is an error, not a crash.
    let parsed = std::panic::catch_unwind(|| midly::Smf::parse(bytes))
        .map_err(|_| "not a valid Standard MIDI File (the MIDI parser could not read it)".to_string())?;
    let smf = parsed.map_err(|e| format!("not a valid Standard MIDI File ({e})"))?;
    let ticks_per_beat = match smf.header.timing {
        Timing::Metrical(t) => t.as_int(),
        Timing::Timecode(fps, sub) => {
            return Err(format!(
                "it uses SMPTE timecode timing ({} fps, {sub} ticks per frame), which has no beats; \
                 export it with beat-based (PPQ) timing",
                fps.as_int()
            ));
        }
    };
    if ticks_per_beat == 0 {
        return Err("its header says 0 ticks per quarter note".into());
    }
    let n = smf.tracks.len();
    let chosen: Vec<usize> = match track {
        Some(i) if i < n => vec![i],
        Some(i) => {
            return Err(match n {
                0 => format!("midi_track = {i}, but the file has no tracks"),
                1 => format!("midi_track = {i}, but the file has one track (midi_track = 0)"),
                _ => format!("midi_track = {i}, but the file has {n} tracks (0..={})", n - 1),
            });
        }
        None if smf.header.format == midly::Format::Sequential && n > 1 => {
            return Err(format!(
                "it is a format-2 file with {n} independent sequences; pick one with midi_track = 0..={}",
                n - 1
            ));
        }
        None => (0..n).collect(),
    };
    let mut events = Vec::new();
    for i in chosen {
        let mut tick: u64 = 0;
        for ev in &smf.tracks[i] {
            tick += u64::from(ev.delta.as_int());
            let TrackEventKind::Midi { channel, message } = ev.kind else { continue };
            let channel = channel.as_int();
            let msg = match message {
                MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                    MidiMsg::NoteOn { channel, key: key.as_int(), velocity: vel.as_int() }
                }
                MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                    MidiMsg::NoteOff { channel, key: key.as_int() }
                }
                MidiMessage::Controller { controller, value } => {
                    MidiMsg::Cc { channel, controller: controller.as_int(), value: value.as_int() }
                }
                _ => continue,
            };
            events.push(MidiEvent { beat: Beats(tick as f64 / f64::from(ticks_per_beat)), msg });
        }
    }
    let mut data = MidiData { events };
    data.sort();
    Ok(data)
}
