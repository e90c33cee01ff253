//! Session files: every setting read, every mistake reported at its line, nothing panics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::media::smf::decode_smf;
use crate::media::wav::decode_wav;
use crate::model::*;
use crate::model::{EmptySlot, LaunchMode};
use crate::model::{MidiEvent, MidiMsg};
use crate::time::{Beats, Bpm, Quantise};
use proptest::prelude::*;

const FILE: &str = "sets/bad.toml";

/// A valid session with inline notes only (no files needed).
const VALID: &str = r#"[session]
name = "Test"
tempo = 120
beats_per_bar = 4
quantise = "bar"

[[track]]
id = "drums"
kind = "midi"
instrument = { type = "drums" }

[[track]]
id = "bass"
kind = "midi"

[[track]]
id = "pad"
kind = "audio"
pan = 0.5

[[clip]]
id = "beat-a"
track = "drums"
notes = [[0, 0.25, 36, 110], [1, 0.25, 38, 100]]

[[clip]]
id = "beat-b"
track = "drums"
notes = [[0, 0.5, 36, 110]]
length_beats = 8

[[clip]]
id = "bass-a"
track = "bass"
notes = [[0, 1, 40, 100]]
quantise = "1/16"

[[scene]]
id = "verse"
clips = ["beat-a", "bass-a"]
"#;

fn parse(text: &str) -> Result<Session, SessionError> {
    parse_session(text, Path::new(FILE))
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Asserts that `text` fails with an error naming `file`, on the line holding `needle`,
/// whose message contains `phrase`.
fn expect_err_in(result: Result<Session, SessionError>, file: &str, text: &str, needle: &str, phrase: &str) {
    let line = line_of(text, needle);
    let e = match result {
        Ok(_) => panic!("expected an error containing {phrase:?}, but the session loaded"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{file}:{line}:")), "wanted {file}:{line}: ..., got: {msg}");
    assert!(msg.contains(phrase), "wanted {phrase:?} in: {msg}");
    assert_eq!(e.line, Some(line), "{msg}");
}

/// `VALID` with `from` replaced by `to` must fail on the line of `needle` with `phrase`.
fn bad(from: &str, to: &str, needle: &str, phrase: &str) {
    assert!(VALID.contains(from), "{from:?} not in VALID");
    let text = VALID.replacen(from, to, 1);
    expect_err_in(parse(&text), FILE, &text, needle, phrase);
}

/// A fresh, empty temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loophole-session-file-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_wav<S: hound::Sample + Copy>(path: &Path, spec: hound::WavSpec, samples: &[S]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn int_spec(channels: u16, bits: u16, rate: u32) -> hound::WavSpec {
    hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: hound::SampleFormat::Int }
}

/// A two-track SMF (format 1, 96 ticks per quarter): track 0 has a tempo and a note on
/// channel 9 at tick 0; track 1 has notes at 48 and 96 (the first ended by a velocity-0
/// note-on) and a CC at 144.
fn test_smf(timing: midly::Timing) -> Vec<u8> {
    use midly::{Format, Header, MetaMessage, MidiMessage, Smf, TrackEvent, TrackEventKind};
    let midi = |delta: u32, channel: u8, message: MidiMessage| TrackEvent {
        delta: delta.into(),
        kind: TrackEventKind::Midi { channel: channel.into(), message },
    };
    let end = TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) };
    let mut smf = Smf::new(Header::new(Format::Parallel, timing));
    smf.tracks.push(vec![
        TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::Tempo(500_000.into())) },
        midi(0, 9, MidiMessage::NoteOn { key: 36.into(), vel: 100.into() }),
        midi(24, 9, MidiMessage::NoteOff { key: 36.into(), vel: 0.into() }),
        end,
    ]);
    smf.tracks.push(vec![
        midi(48, 0, MidiMessage::NoteOn { key: 60.into(), vel: 90.into() }),
        midi(48, 0, MidiMessage::NoteOn { key: 60.into(), vel: 0.into() }),
        midi(0, 0, MidiMessage::NoteOn { key: 64.into(), vel: 80.into() }),
        midi(48, 0, MidiMessage::Controller { controller: 7.into(), value: 99.into() }),
        midi(0, 0, MidiMessage::NoteOff { key: 64.into(), vel: 64.into() }),
        end,
    ]);
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).unwrap();
    bytes
}

// ----------------------------------------------------------------------------- valid files

#[test]
fn valid_session_parses_with_the_right_values() {
    let s = parse(VALID).unwrap();
    assert_eq!(s.name, "Test");
    assert_eq!(s.tempo, Bpm(120.0));
    assert_eq!(s.beats_per_bar, 4.0);
    assert_eq!(s.quantise, Quantise::Bar);
    assert_eq!(s.crossfade_ms, DEFAULT_CROSSFADE_MS);
    assert_eq!(s.tracks.len(), 3);
    assert_eq!(s.tracks[0].id, "drums");
    assert_eq!(s.tracks[0].kind, TrackKind::Midi);
    assert!(matches!(s.tracks[0].instrument, Some(InstrumentSpec::Drums(_))));
    assert_eq!(s.tracks[1].instrument, None);
    assert_eq!(s.tracks[2].kind, TrackKind::Audio);
    assert_eq!(s.tracks[2].pan, 0.5);
    assert_eq!(s.clips.len(), 3);
    let a = s.clip(s.clip_by_name("beat-a").unwrap());
    assert_eq!(a.track, TrackId(0));
    assert_eq!(a.length, Beats(4.0), "one bar, rounded up from the last note-off at 1.25");
    assert!(a.looping);
    assert_eq!(a.quantise, Quantise::Global);
    let ClipContent::Midi(m) = &a.content else { panic!("MIDI expected") };
    assert_eq!(m.events.len(), 4);
    assert_eq!(
        m.events[0],
        MidiEvent { beat: Beats(0.0), msg: MidiMsg::NoteOn { channel: 0, key: 36, velocity: 110 } }
    );
    assert_eq!(m.events[3], MidiEvent { beat: Beats(1.25), msg: MidiMsg::NoteOff { channel: 0, key: 38 } });
    assert_eq!(s.clip(ClipId(1)).length, Beats(8.0));
    assert_eq!(s.clip(ClipId(2)).quantise, Quantise::Division(16));
    assert_eq!(s.scenes.len(), 1);
    assert_eq!(s.scenes[0].clips, vec![ClipId(0), ClipId(2)]);
    assert_eq!(s.scenes[0].empty_slots, EmptySlot::Stop);
}

#[test]
fn every_setting_is_read() {
    let text = r#"
[session]
name = "All"
tempo = 98.5
time_signature = "7/8"
seed = 42
quantise = "2-bars"
crossfade_ms = 10

[[track]]
id = "k"
kind = "midi"
gain_db = -6
pan = -1
mute = true
solo = true
instrument = { type = "synth" }

[[clip]]
id = "c"
track = "k"
notes = []
length_beats = 7
loop = false
start_offset_beats = 3.5
gain_db = -3
quantise = "1/8t"
launch_mode = "repeat"
velocity_amount = 0.25
legato = true

[[scene]]
id = "s"
clips = ["c"]
quantise = "scene"
empty_slots = "continue"
"#;
    let s = parse(text).unwrap();
    assert_eq!((s.name.as_str(), s.tempo, s.beats_per_bar, s.seed), ("All", Bpm(98.5), 3.5, 42));
    assert_eq!((s.quantise, s.crossfade_ms), (Quantise::Bars(2), 10.0));
    let t = &s.tracks[0];
    assert_eq!((t.gain_db, t.pan, t.mute, t.solo), (-6.0, -1.0, true, true));
    assert!(matches!(t.instrument, Some(InstrumentSpec::Synth(_))));
    let c = &s.clips[0];
    assert_eq!((c.length, c.looping, c.start_offset, c.gain_db), (Beats(7.0), false, Beats(3.5), -3.0));
    assert_eq!(
        (c.quantise, c.launch_mode, c.velocity_amount, c.legato),
        (Quantise::Triplet(8), LaunchMode::Repeat, 0.25, true)
    );
    assert_eq!((s.scenes[0].quantise, s.scenes[0].empty_slots), (Quantise::Scene, EmptySlot::Continue));
}

#[test]
fn defaults_without_a_session_table() {
    let s = parse("[[track]]\nid = \"k\"\nkind = \"midi\"\n").unwrap();
    assert_eq!(s.name, "bad", "named after the file");
    assert_eq!((s.tempo, s.beats_per_bar, s.seed, s.quantise), (Bpm(120.0), 4.0, 0, Quantise::Bar));
    let waltz = parse("[session]\nbeats_per_bar = 3\n[[track]]\nid='k'\nkind='midi'\n[[clip]]\nid='c'\ntrack='k'\nnotes=[[3.5,0.5,60,100]]\n").unwrap();
    assert_eq!(waltz.clips[0].length, Beats(6.0), "rounded up to whole 3/4 bars");
    let empty = parse("[[track]]\nid='k'\nkind='midi'\n[[clip]]\nid='c'\ntrack='k'\nnotes=[]\n").unwrap();
    assert_eq!(empty.clips[0].length, Beats(4.0), "an empty clip is one bar");
}

// ------------------------------------------------------------------------------ bad files

#[test]
fn toml_syntax_error() {
    bad("tempo = 120", "tempo = = 120", "tempo = = 120", "TOML syntax error");
    bad("name = \"Test\"", "name = \"Test", "name = \"Test", "TOML syntax error");
    bad("kind = \"audio\"", "kind = \"audio\"\nkind = \"midi\"", "kind = \"midi\"\npan", "duplicate key");
}

#[test]
fn wrong_types() {
    bad("tempo = 120", "tempo = \"fast\"", "tempo = \"fast\"", "expected a number");
    bad("pan = 0.5", "pan = \"left\"", "pan = \"left\"", "expected a number");
    bad("[[0, 1, 40, 100]]", "[[0, 1, 40.5, 100]]", "40.5", "expected an integer");
    bad("[[0, 1, 40, 100]]", "[[0, 1, 40]]", "[[0, 1, 40]]", "[start_beat, length_beats, key, velocity]");
    bad("kind = \"audio\"", "kind = \"video\"", "kind = \"video\"", "unknown variant `video`");
    bad(
        "[[scene]]\nid = \"verse\"",
        "[[scene]]\nid = \"verse\"\nempty_slots = \"keep\"",
        "empty_slots",
        "unknown variant `keep`",
    );
    let err = parse("[track]\nid = 'x'\nkind = 'midi'\n").unwrap_err().to_string();
    assert!(err.starts_with("sets/bad.toml:1:") && err.contains("[[track]]"), "{err}");
}

#[test]
fn unknown_fields_are_typos() {
    bad("tempo = 120", "tempoo = 120", "tempoo", "unknown field `tempoo`");
    bad("pan = 0.5", "pann = 0.5", "pann", "unknown field `pann`");
    bad("length_beats = 8", "lenght_beats = 8", "lenght_beats", "unknown field `lenght_beats`");
    bad("[[scene]]", "[[scenes]]", "[[scenes]]", "unknown field `scenes`");
}

#[test]
fn missing_required_keys() {
    bad("id = \"bass\"\nkind = \"midi\"\n", "id = \"bass\"\n", "[[track]]\nid = \"bass\"", "missing field `kind`");
    bad("[[scene]]\nid = \"verse\"\n", "[[scene]]\n", "[[scene]]", "missing field `id`");
}

#[test]
fn unknown_track_in_a_clip() {
    bad(
        "track = \"bass\"",
        "track = \"bas\"",
        "track = \"bas\"",
        "clip 'bass-a': track 'bas' does not exist (tracks: drums, bass, pad)",
    );
}

#[test]
fn unknown_clip_in_a_scene() {
    bad(
        "clips = [\"beat-a\", \"bass-a\"]",
        "clips = [\"beat-a\", \"bass-b\"]",
        "clips = [",
        "scene 'verse': clip 'bass-b' does not exist",
    );
}

#[test]
fn duplicate_ids() {
    bad(
        "id = \"bass\"",
        "id = \"drums\"",
        "id = \"drums\"\nkind = \"midi\"\n\n[[track]]\nid = \"pad\"",
        "duplicate track id 'drums' (already used on line 8)",
    );
    bad(
        "id = \"beat-b\"",
        "id = \"beat-a\"",
        "id = \"beat-a\"\ntrack = \"drums\"\nnotes = [[0, 0.5",
        "duplicate clip id 'beat-a'",
    );
    let text = format!("{VALID}\n[[scene]]\nid = \"verse\" # again\n");
    expect_err_in(parse(&text), FILE, &text, "# again", "duplicate scene id 'verse'");
    bad("id = \"bass\"", "id = \"  \"", "id = \"  \"", "track id is empty");
}

#[test]
fn midi_clip_on_an_audio_track() {
    bad(
        "track = \"bass\"",
        "track = \"pad\"",
        "track = \"pad\"",
        "clip 'bass-a' is a MIDI clip but track 'pad' is an audio track",
    );
}

#[test]
fn audio_clip_on_a_midi_track_and_other_file_problems() {
    let dir = temp_dir("kinds");
    write_wav(&dir.join("pad.wav"), int_spec(1, 16, 22_050), &[0i16; 2205]);
    std::fs::write(dir.join("corrupt.wav"), b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").unwrap();
    std::fs::write(dir.join("corrupt.mid"), b"MThd\x00\x00\x00\x06\x00\x01").unwrap();
    std::fs::write(dir.join("smpte.mid"), test_smf(midly::Timing::Timecode(midly::Fps::Fps25, 40))).unwrap();
    std::fs::write(dir.join("ok.mid"), test_smf(midly::Timing::Metrical(96.into()))).unwrap();
    let session = dir.join("set.toml");
    let shown = session.display().to_string();
    let base = "[[track]]\nid = \"keys\"\nkind = \"midi\"\n\n[[track]]\nid = \"pad\"\nkind = \"audio\"\n\n[[clip]]\nid = \"c\"\n";
    let check = |clip: &str, needle: &str, phrase: &str| {
        let text = format!("{base}{clip}\n");
        std::fs::write(&session, &text).unwrap();
        expect_err_in(load_session(&session), &shown, &text, needle, phrase);
    };
    check(
        "track = \"keys\"\nfile = \"pad.wav\"",
        "track = \"keys\"\nfile",
        "clip 'c' is an audio clip but track 'keys' is a MIDI track",
    );
    check("track = \"pad\"\nfile = \"loops/missing.wav\"", "file = ", "audio file 'loops/missing.wav' not found");
    check("track = \"keys\"\nmidi_file = \"nope.mid\"", "midi_file = ", "MIDI file 'nope.mid' not found");
    check("track = \"pad\"\nfile = \"corrupt.wav\"", "file = ", "cannot load WAV file 'corrupt.wav'");
    check(
        "track = \"keys\"\nmidi_file = \"corrupt.mid\"",
        "midi_file = ",
        "cannot load MIDI file 'corrupt.mid': not a valid Standard MIDI File",
    );
    check("track = \"keys\"\nmidi_file = \"smpte.mid\"", "midi_file = ", "SMPTE timecode");
    check(
        "track = \"keys\"\nmidi_file = \"ok.mid\"\nmidi_track = 2",
        "midi_track = 2",
        "the file has 2 tracks (0..=1)",
    );
    check("track = \"keys\"\nnotes = []\nmidi_track = 1", "midi_track = 1", "midi_track only applies with midi_file");
    check("track = \"keys\"\nnotes = []\nfile = \"pad.wav\"", "file = ", "has both `notes` (line 12) and `file`");
    check(
        "track = \"keys\"\nmidi_file = \"ok.mid\"\nnotes = []",
        "notes = ",
        "has both `midi_file` (line 12) and `notes`",
    );
    check("track = \"keys\"", "[[clip]]", "clip 'c': has no content");
    check(
        "track = \"pad\"\nfile = \"pad.wav\"\nstart_offset_beats = 0.2",
        "start_offset_beats",
        "less than the clip's length (0.2 beats)",
    );
    // An instrument on an audio track is refused.
    let text = "[[track]]\nid = \"pad\"\nkind = \"audio\"\ninstrument = { type = \"synth\" }\n";
    std::fs::write(&session, text).unwrap();
    expect_err_in(load_session(&session), &shown, text, "instrument", "an audio track has no instrument");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn midi_out_routes_a_midi_track_to_a_port_and_bad_routes_are_errors() {
    let midi = "[[track]]\nid = \"bass\"\nkind = \"midi\"\n";
    let s = parse(&format!("{midi}midi_out = \"Minilogue\"\nmidi_channel = 3\n")).unwrap();
    assert_eq!(s.tracks[0].midi_out, Some(MidiOutRoute { port: "Minilogue".into(), channel: Some(2) }));
    let s = parse(&format!("{midi}midi_out = \"Minilogue\"\n")).unwrap();
    assert_eq!(s.tracks[0].midi_out, Some(MidiOutRoute { port: "Minilogue".into(), channel: None }));
    assert_eq!(parse(midi).unwrap().tracks[0].midi_out, None);
    let bad = |text: String, needle: &str, phrase: &str| expect_err_in(parse(&text), FILE, &text, needle, phrase);
    bad(format!("{midi}midi_out = \"x\"\nmidi_channel = 17\n"), "midi_channel", "track 'bass': midi_channel is 17");
    bad(format!("{midi}midi_out = \"x\"\nmidi_channel = 0\n"), "midi_channel", "1..=16");
    bad(format!("{midi}midi_channel = 2\n"), "midi_channel", "midi_channel needs midi_out");
    bad(format!("{midi}midi_out = \" \"\n"), "midi_out", "midi_out needs a port name");
    bad(
        "[[track]]\nid = \"pad\"\nkind = \"audio\"\nmidi_out = \"x\"\n".into(),
        "midi_out",
        "an audio track sends no MIDI",
    );
}

#[test]
fn instrument_settings_are_checked() {
    bad(
        "instrument = { type = \"drums\" }",
        "instrument = { type = \"drums\", tune = 40 }",
        "instrument = {",
        "track 'drums': instrument parameter `tune` is 40",
    );
    bad(
        "instrument = { type = \"drums\" }",
        "instrument = { type = \"drum\" }",
        "instrument = {",
        "unknown variant `drum`",
    );
    bad("instrument = { type = \"drums\" }", "instrument = { kind = \"drums\" }", "instrument = {", "type");
}

#[test]
fn clip_with_both_notes_and_file() {
    bad("length_beats = 8", "length_beats = 8\nfile = \"x.wav\"", "file = ", "has both `notes`");
}

#[test]
fn two_clips_of_one_track_in_a_scene() {
    bad(
        "clips = [\"beat-a\", \"bass-a\"]",
        "clips = [\"beat-a\", \"bass-a\", \"beat-b\"]",
        "clips = [",
        "clips 'beat-a' and 'beat-b' are both on track 'drums'",
    );
    bad(
        "clips = [\"beat-a\", \"bass-a\"]",
        "clips = [\"beat-a\", \"beat-a\"]",
        "clips = [",
        "clip 'beat-a' is listed twice",
    );
}

#[test]
fn out_of_range_values() {
    bad("tempo = 120", "tempo = 1000", "tempo = 1000", "tempo is 1000; it must be between 20 and 999 BPM");
    bad("tempo = 120", "tempo = 19.5", "tempo = 19.5", "tempo is 19.5");
    bad("tempo = 120", "tempo = nan", "tempo = nan", "tempo is NaN");
    bad("beats_per_bar = 4", "beats_per_bar = 0", "beats_per_bar = 0", "beats_per_bar is 0");
    bad("beats_per_bar = 4", "beats_per_bar = 3\ntime_signature = \"3/4\"", "time_signature", "not both");
    bad("beats_per_bar = 4", "time_signature = \"3/5\"", "time_signature", "not a time signature");
    bad(
        "[[0, 1, 40, 100]]",
        "[[0, 1, 40, 100], [1, 1, 128, 100]]",
        "128",
        "clip 'bass-a': note 2 key is 128; it must be between 0 and 127",
    );
    bad("[[0, 1, 40, 100]]", "[[0, 1, 40, 0]]", "[[0, 1, 40, 0]]", "note 1 velocity is 0");
    bad(
        "[[0, 1, 40, 100]]",
        "[[0, -1, 40, 100]]",
        "[[0, -1",
        "note 1 length is -1; it must be greater than 0 and at most 100000 beats",
    );
    bad("[[0, 1, 40, 100]]", "[[-2, 1, 40, 100]]", "[[-2", "note 1 start beat is -2");
    bad(
        "length_beats = 8",
        "length_beats = -8",
        "length_beats = -8",
        "clip 'beat-b': length_beats is -8; it must be greater than 0",
    );
    bad("length_beats = 8", "length_beats = 0", "length_beats = 0", "length_beats is 0");
    bad("pan = 0.5", "pan = 1.5", "pan = 1.5", "track 'pad': pan is 1.5; it must be between -1 (left) and 1 (right)");
    bad("pan = 0.5", "pan = -2", "pan = -2", "pan is -2");
    bad("pan = 0.5", "gain_db = 40", "gain_db = 40", "track 'pad': gain_db is 40");
    bad("quantise = \"1/16\"", "quantise = \"1/16\"\nvelocity_amount = 2", "velocity_amount", "velocity_amount is 2");
    bad("name = \"Test\"", "name = \"Test\"\nseed = -1", "seed = -1", "seed is -1; it must be 0 or more");
    bad("name = \"Test\"", "name = \"Test\"\ncrossfade_ms = -1", "crossfade_ms", "crossfade_ms is -1");
}

#[test]
fn unparseable_quantise() {
    bad(
        "quantise = \"1/16\"",
        "quantise = \"sometimes\"",
        "quantise = \"sometimes\"",
        "clip 'bass-a': quantise: 'sometimes' is not a quantisation",
    );
    bad(
        "quantise = \"bar\"",
        "quantise = \"3/4\"",
        "quantise = \"3/4\"",
        "session quantise: '3/4' is not a quantisation",
    );
    bad(
        "quantise = \"bar\"",
        "quantise = \"global\"",
        "quantise = \"global\"",
        "session quantise: 'global' is not a quantisation",
    );
}

#[test]
fn not_utf8_and_unreadable_files() {
    let dir = temp_dir("utf8");
    let path = dir.join("latin1.toml");
    std::fs::write(&path, b"[session]\nname = \"Caf\xe9\"\n").unwrap();
    let e = load_session(&path).unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    let missing = dir.join("missing.toml");
    let e = load_session(&missing).unwrap_err();
    assert!(matches!(*e.kind, SessionErrorKind::Io(_)));
    assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_have_a_column() {
    let e = parse(&VALID.replacen("tempo = 120", "tempo = \"fast\"", 1)).unwrap_err();
    assert_eq!((e.line, e.column), (Some(3), Some(9)));
    assert!(e.to_string().starts_with("sets/bad.toml:3:9: "), "{e}");
    assert!(e.to_string().contains("(in `tempo = \"fast\"`)"), "{e}");
}

// ------------------------------------------------------------------------ WAV and MIDI

#[test]
fn wav_mono_16_bit_is_duplicated_to_both_channels() {
    let dir = temp_dir("wav16");
    write_wav(&dir.join("m.wav"), int_spec(1, 16, 22_050), &[0i16, 16_384, -16_384, i16::MIN]);
    let a = decode_wav(&std::fs::read(dir.join("m.wav")).unwrap()).unwrap();
    assert_eq!(a.sample_rate, 22_050);
    assert_eq!(a.left, vec![0.0, 0.5, -0.5, -1.0]);
    assert_eq!(a.right, a.left);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wav_stereo_24_bit_and_8_bit_and_32_bit_int() {
    let dir = temp_dir("wav24");
    write_wav(&dir.join("s24.wav"), int_spec(2, 24, 48_000), &[4_194_304i32, -4_194_304, 0, 8_388_607]);
    let a = decode_wav(&std::fs::read(dir.join("s24.wav")).unwrap()).unwrap();
    assert_eq!((a.sample_rate, a.frames()), (48_000, 2));
    assert_eq!(a.left, vec![0.5, 0.0]);
    assert_eq!(a.right[0], -0.5);
    assert!((a.right[1] - 1.0).abs() < 1e-6);
    write_wav(&dir.join("m8.wav"), int_spec(1, 8, 8_000), &[64i8, -128]);
    let a = decode_wav(&std::fs::read(dir.join("m8.wav")).unwrap()).unwrap();
    assert_eq!(a.left, vec![0.5, -1.0]);
    write_wav(&dir.join("s32.wav"), int_spec(2, 32, 44_100), &[i32::MIN, 1 << 30]);
    let a = decode_wav(&std::fs::read(dir.join("s32.wav")).unwrap()).unwrap();
    assert_eq!((a.left[0], a.right[0]), (-1.0, 0.5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wav_float_stereo_and_more_than_two_channels() {
    let dir = temp_dir("wavf");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    write_wav(&dir.join("f.wav"), spec, &[0.25f32, -0.75, f32::NAN, 1.5]);
    let a = decode_wav(&std::fs::read(dir.join("f.wav")).unwrap()).unwrap();
    assert_eq!(a.left, vec![0.25, 0.0], "non-finite samples become silence");
    assert_eq!(a.right, vec![-0.75, 1.5]);
    write_wav(&dir.join("quad.wav"), int_spec(4, 16, 44_100), &[1i16, 2, 3, 4, 5, 6, 7, 8]);
    let a = decode_wav(&std::fs::read(dir.join("quad.wav")).unwrap()).unwrap();
    assert_eq!(a.frames(), 2);
    assert_eq!(a.left, vec![1.0 / 32_768.0, 5.0 / 32_768.0]);
    assert_eq!(a.right, vec![2.0 / 32_768.0, 6.0 / 32_768.0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn audio_clip_length_defaults_to_the_file_duration() {
    let dir = temp_dir("audioclip");
    write_wav(&dir.join("one-second.wav"), int_spec(1, 16, 22_050), &vec![100i16; 22_050]);
    let text = "[session]\ntempo = 90\n[[track]]\nid='a'\nkind='audio'\n[[clip]]\nid='x'\ntrack='a'\nfile='one-second.wav'\n[[clip]]\nid='y'\ntrack='a'\nfile='one-second.wav'\nlength_beats=4\n";
    let s = parse_session(text, &dir.join("set.toml")).unwrap();
    assert_eq!(s.clips[0].length, Beats(1.5), "1 s at 90 BPM");
    assert_eq!(s.clips[1].length, Beats(4.0));
    let (ClipContent::Audio(x), ClipContent::Audio(y)) = (&s.clips[0].content, &s.clips[1].content) else {
        panic!("audio expected")
    };
    assert!(Arc::ptr_eq(x, y), "a file used twice is loaded once");
    assert_eq!((x.sample_rate, x.frames()), (22_050, 22_050));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smf_import_gives_the_right_beats() {
    let bytes = test_smf(midly::Timing::Metrical(96.into()));
    let all = decode_smf(&bytes, None).unwrap();
    let on = |channel, key, velocity| MidiMsg::NoteOn { channel, key, velocity };
    let off = |channel, key| MidiMsg::NoteOff { channel, key };
    let expected = vec![
        MidiEvent { beat: Beats(0.0), msg: on(9, 36, 100) },
        MidiEvent { beat: Beats(0.25), msg: off(9, 36) },
        MidiEvent { beat: Beats(0.5), msg: on(0, 60, 90) },
        MidiEvent { beat: Beats(1.0), msg: off(0, 60) },
        MidiEvent { beat: Beats(1.0), msg: on(0, 64, 80) },
        MidiEvent { beat: Beats(1.5), msg: off(0, 64) },
        MidiEvent { beat: Beats(1.5), msg: MidiMsg::Cc { channel: 0, controller: 7, value: 99 } },
    ];
    assert_eq!(all.events, expected);
    let one = decode_smf(&bytes, Some(1)).unwrap();
    assert_eq!(one.events, expected[2..].to_vec());
    assert!(decode_smf(&bytes, Some(2)).is_err());

    // Through a session: default length is the last event rounded up to a bar.
    let dir = temp_dir("smf");
    std::fs::write(dir.join("song.mid"), &bytes).unwrap();
    let text = "[session]\nbeats_per_bar = 3\n[[track]]\nid='k'\nkind='midi'\n[[clip]]\nid='c'\ntrack='k'\nmidi_file='song.mid'\nmidi_track=1\n";
    let s = parse_session(text, &dir.join("set.toml")).unwrap();
    assert_eq!(s.clips[0].length, Beats(3.0));
    let ClipContent::Midi(m) = &s.clips[0].content else { panic!("MIDI expected") };
    assert_eq!(m.events, expected[2..].to_vec());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn format_2_files_need_a_track() {
    use midly::{Format, Header, MetaMessage, Smf, Timing, TrackEvent, TrackEventKind};
    let end = TrackEvent { delta: 0.into(), kind: TrackEventKind::Meta(MetaMessage::EndOfTrack) };
    let mut smf = Smf::new(Header::new(Format::Sequential, Timing::Metrical(96.into())));
    smf.tracks = vec![vec![end], vec![end]];
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).unwrap();
    assert!(decode_smf(&bytes, None).unwrap_err().contains("format-2"));
    assert!(decode_smf(&bytes, Some(1)).is_ok());
}

// -------------------------------------------------------------------------- resampling

// ------------------------------------------- follow actions, scenes, playlists, arrangement

/// A session with every new setting: keep_playing, follow actions on clips and scenes, scene
/// tempo and time signature, playlists and an arrangement.
const SET: &str = r#"[session]
seed = 3

[[track]]
id = "drums"
kind = "midi"
keep_playing = true

[[track]]
id = "bass"
kind = "midi"

[[track]]
id = "pad"
kind = "audio"

[[clip]]
id = "d1"
track = "drums"
notes = []
follow = { after_loops = 2, a = { next = "next", chance = 0.7, no_repeat = true, exclude = ["d3"] }, b = { next = { clip = "d3" }, chance = 0.3 } }

[[clip]]
id = "d2"
track = "drums"
notes = []
follow = { a = { next = "random", only = ["d1", "d2"] } }

[[clip]]
id = "d3"
track = "drums"
notes = []

[[clip]]
id = "b1"
track = "bass"
notes = []
length_beats = 8

[[scene]]
id = "intro"
clips = ["d1"]
tempo = 128
time_signature = "3/4"
follow = { a = { next = { scene = "verse" } }, b = { next = "stop" } }

[[scene]]
id = "verse"
clips = ["d2", "b1"]
beats_per_bar = 3.5
follow = { after_loops = 4, a = { next = "previous", chance = 0.25 }, b = { next = "first", chance = 0.25, exclude = ["verse"] } }

# ---- the arrangement
[[arrangement.clip]]
track = "bass"
clip = "b1"
start = 0

[[arrangement.clip]]
clip = "d1"
start = 8.5
length = 16
offset = 1.5

[[arrangement.tempo_change]]
beat = 32
tempo = 100
time_signature = "3/4"

[[arrangement.tempo_change]]
beat = 16
beats_per_bar = 5

# ---- playlists
[[playlist]]
id = "song"
steps = ["intro", { scene = "verse", repeat = 2 }, { scene = "intro" }]
loop = true

[[playlist]]
id = "short"
steps = ["verse"]
"#;

#[test]
fn autoplay_names_a_playlist_of_the_file() {
    assert_eq!(parse(SET).unwrap().autoplay, None);
    let set = SET.replacen("seed = 3\n", "seed = 3\nautoplay = \"short\"\n", 1);
    assert_eq!(parse(&set).unwrap().autoplay, Some(1));
    bad_set("seed = 3\n", "seed = 3\nautoplay = \"long\"\n", "autoplay", "playlists: song, short");
}

/// `SET` with `from` replaced by `to` must fail on the line of `needle` with `phrase`.
fn bad_set(from: &str, to: &str, needle: &str, phrase: &str) {
    assert!(SET.contains(from), "{from:?} not in SET");
    let text = SET.replacen(from, to, 1);
    expect_err_in(parse(&text), FILE, &text, needle, phrase);
}

fn action(next: FollowTarget, chance: f64) -> FollowAction {
    FollowAction { next, chance, constraints: FollowConstraints::default() }
}

#[test]
fn follow_actions_scenes_playlists_and_the_arrangement_are_read() {
    let s = parse(SET).unwrap();
    assert_eq!((s.tracks[0].keep_playing, s.tracks[1].keep_playing), (true, false));
    let d1 = s.clip(s.clip_by_name("d1").unwrap());
    assert_eq!(
        d1.follow,
        Some(FollowActions {
            after_loops: 2,
            a: FollowAction {
                next: FollowTarget::Next,
                chance: 0.7,
                constraints: FollowConstraints { no_repeat: true, exclude: vec![2], only: vec![] },
            },
            b: Some(action(FollowTarget::Clip(ClipId(2)), 0.3)),
        })
    );
    let d2 = s.clip(ClipId(1));
    assert_eq!(
        d2.follow,
        Some(FollowActions {
            after_loops: 1,
            a: FollowAction {
                next: FollowTarget::Random,
                chance: 1.0,
                constraints: FollowConstraints { no_repeat: false, exclude: vec![], only: vec![0, 1] },
            },
            b: None,
        })
    );
    assert_eq!(s.clip(ClipId(2)).follow, None);

    let intro = s.scene(SceneId(0));
    assert_eq!((intro.tempo, intro.beats_per_bar), (Some(Bpm(128.0)), Some(3.0)));
    assert_eq!(
        intro.follow,
        Some(FollowActions {
            after_loops: 1,
            a: action(FollowTarget::Scene(SceneId(1)), 0.5),
            b: Some(action(FollowTarget::Stop, 0.5)),
        })
    );
    let verse = s.scene(SceneId(1));
    assert_eq!((verse.tempo, verse.beats_per_bar), (None, Some(3.5)));
    let f = verse.follow.as_ref().unwrap();
    assert_eq!((f.after_loops, f.a.next, f.a.chance), (4, FollowTarget::Previous, 0.25));
    let b = f.b.as_ref().unwrap();
    assert_eq!((b.next, b.chance, b.constraints.exclude.as_slice()), (FollowTarget::First, 0.25, &[1u32][..]));

    let step = |scene, repeat| PlaylistStep { scene: SceneId(scene), repeat };
    assert_eq!(
        s.playlists,
        vec![
            Playlist { id: "song".into(), steps: vec![step(0, 1), step(1, 2), step(0, 1)], looping: true },
            Playlist { id: "short".into(), steps: vec![step(1, 1)], looping: false },
        ]
    );
    assert_eq!(s.playlist_by_name("short"), Some(1));

    assert_eq!(
        s.arrangement.clips,
        vec![
            Placement { track: TrackId(1), clip: ClipId(3), start: Beats(0.0), length: Beats(8.0), offset: Beats(0.0) },
            Placement {
                track: TrackId(0),
                clip: ClipId(0),
                start: Beats(8.5),
                length: Beats(16.0),
                offset: Beats(1.5)
            },
        ],
        "the lane defaults to the clip's track and the length to the clip's"
    );
    assert_eq!(
        s.arrangement.tempo,
        vec![
            TempoChange { beat: Beats(16.0), tempo: None, beats_per_bar: Some(5.0) },
            TempoChange { beat: Beats(32.0), tempo: Some(Bpm(100.0)), beats_per_bar: Some(3.0) },
        ],
        "sorted by beat"
    );
    assert_eq!(s.arrangement.end(), Beats(24.5));

    // Nothing new is required: VALID has none of it.
    let v = parse(VALID).unwrap();
    assert!(v.playlists.is_empty() && v.arrangement == Arrangement::default());
    assert!(v.clips.iter().all(|c| c.follow.is_none()) && !v.tracks[0].keep_playing);
    assert_eq!((v.scenes[0].tempo, v.scenes[0].beats_per_bar, &v.scenes[0].follow), (None, None, &None));
}

#[test]
fn a_clip_may_follow_on_to_a_scene_and_a_scene_to_any_clip() {
    let text = SET.replacen("{ clip = \"d3\" }", "{ scene = \"verse\" }", 1).replacen(
        "next = { scene = \"verse\" } }",
        "next = { clip = \"b1\" } }",
        1,
    );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let clip_follow = s.clips[0].follow.as_ref().unwrap();
    assert_eq!(clip_follow.b.as_ref().unwrap().next, FollowTarget::Scene(SceneId(1)));
    let scene_follow = s.scenes[0].follow.as_ref().unwrap();
    assert_eq!(scene_follow.a.next, FollowTarget::Clip(ClipId(3)), "a clip on another track than the scene's");
}

#[test]
fn follow_chances_left_out_share_what_is_left_of_one() {
    let chances = |follow: &str| {
        let text = SET.replacen("follow = { a = { next = \"random\", only = [\"d1\", \"d2\"] } }", follow, 1);
        let f = parse(&text).unwrap().clips[1].follow.clone().unwrap();
        (f.a.chance, f.b.map(|b| b.chance))
    };
    assert_eq!(chances("follow = { a = { next = \"next\" } }"), (1.0, None));
    assert_eq!(chances("follow = { a = { next = \"next\", chance = 0.4 } }"), (0.4, None));
    assert_eq!(chances("follow = { a = { next = \"next\" }, b = { next = \"stop\" } }"), (0.5, Some(0.5)));
    assert_eq!(
        chances("follow = { a = { next = \"next\", chance = 0.75 }, b = { next = \"stop\" } }"),
        (0.75, Some(0.25))
    );
    assert_eq!(
        chances("follow = { a = { next = \"next\" }, b = { next = \"stop\", chance = 0.25 } }"),
        (0.75, Some(0.25))
    );
    assert_eq!(
        chances("follow = { a = { next = \"next\", chance = 0.1 }, b = { next = \"stop\", chance = 0.2 } }"),
        (0.1, Some(0.2))
    );
    // Every spelling of `next`, and the table layout of a follow action.
    for (word, target) in [
        ("next", FollowTarget::Next),
        ("previous", FollowTarget::Previous),
        ("first", FollowTarget::First),
        ("last", FollowTarget::Last),
        ("random", FollowTarget::Random),
        ("Repeat", FollowTarget::Repeat),
        ("stop", FollowTarget::Stop),
    ] {
        let text = SET.replacen(
            "follow = { a = { next = \"random\", only = [\"d1\", \"d2\"] } }",
            &format!("[clip.follow]\nafter_loops = 3\n[clip.follow.a]\nnext = \"{word}\"\n"),
            1,
        );
        let f = parse(&text).unwrap_or_else(|e| panic!("{e}")).clips[1].follow.clone().unwrap();
        assert_eq!((f.after_loops, f.a.next, f.a.chance), (3, target, 1.0), "{word}");
    }
}

#[test]
fn bad_follow_actions_name_their_line() {
    bad_set(
        "next = \"next\"",
        "next = \"nxt\"",
        "next = \"nxt\"",
        "clip 'd1': follow action: 'nxt' is not a follow action (use next, previous, first, last, random, repeat, stop, { clip = \"id\" } or { scene = \"id\" })",
    );
    bad_set(
        "{ clip = \"d3\" }",
        "{ clip = \"b1\" }",
        "{ clip = \"b1\" }",
        "clip 'd1': follow action: clip 'b1' is on track 'bass', not 'drums'; a clip's follow action chooses among the clips of its own track (d1, d2, d3)",
    );
    bad_set(
        "exclude = [\"d3\"]",
        "exclude = [\"d9\"]",
        "exclude = [\"d9\"]",
        "clip 'd9' does not exist (clips of track 'drums': d1, d2, d3)",
    );
    bad_set(
        "only = [\"d1\", \"d2\"]",
        "only = [\"d1\", \"b1\"]",
        "only = [\"d1\", \"b1\"]",
        "clip 'd2': follow action: clip 'b1' is on track 'bass'",
    );
    bad_set(
        "{ scene = \"verse\" }",
        "{ clip = \"d9\" }",
        "{ clip = \"d9\" }",
        "scene 'intro': follow action: clip 'd9' does not exist (clips: d1, d2, d3, b1)",
    );
    bad_set(
        "{ clip = \"d3\" }",
        "{ scene = \"outro\" }",
        "{ scene = \"outro\" }",
        "clip 'd1': follow action: scene 'outro' does not exist (scenes: intro, verse)",
    );
    bad_set(
        "{ scene = \"verse\" }",
        "{ scene = \"chorus\" }",
        "{ scene = \"chorus\" }",
        "scene 'chorus' does not exist (scenes: intro, verse)",
    );
    bad_set(
        "exclude = [\"verse\"]",
        "exclude = [\"vers\"]",
        "exclude = [\"vers\"]",
        "scene 'verse': follow action: scene 'vers' does not exist",
    );
    bad_set(
        "after_loops = 2",
        "after_loops = 0",
        "after_loops = 0",
        "clip 'd1': follow after_loops is 0; it must be a whole number from 1 to 10000",
    );
    bad_set("after_loops = 4", "after_loops = -4", "after_loops = -4", "scene 'verse': follow after_loops is -4");
    bad_set("after_loops = 2", "after_loops = 2.5", "after_loops = 2.5", "expected an integer");
    bad_set(
        "chance = 0.7",
        "chance = 1.5",
        "chance = 1.5",
        "clip 'd1': follow a chance is 1.5; it must be between 0 and 1",
    );
    bad_set("chance = 0.3", "chance = -0.3", "chance = -0.3", "follow b chance is -0.3");
    bad_set("chance = 0.3 }", "chance = nan }", "chance = nan }", "follow b chance is NaN");
    bad_set(
        "next = { clip = \"d3\" }, chance = 0.3",
        "next = \"repeat\", chance = 0.3, no_repeat = true",
        "no_repeat = true }",
        "`no_repeat` only applies when next is next, previous, first, last or random",
    );
    bad_set(
        "next = { scene = \"verse\" } }",
        "next = \"stop\", only = [\"verse\"] }",
        "only = [\"verse\"] }",
        "`only` only applies when next is",
    );
    bad_set(
        "only = [\"d1\", \"d2\"]",
        "only = [\"d2\"], no_repeat = true",
        "only = [\"d2\"]",
        "clip 'd2': follow action: the constraints leave no clip to choose",
    );
    bad_set(
        "exclude = [\"verse\"]",
        "exclude = [\"verse\", \"intro\"]",
        "exclude = [\"verse\", \"intro\"]",
        "the constraints leave no scene to choose",
    );
    bad_set("chance = 0.7", "chanse = 0.7", "chanse = 0.7", "unknown field `chanse`");
    bad_set("next = \"random\"", "next = 3", "next = 3", "expected next, previous, first, last, random, repeat, stop");
    bad_set(
        "{ clip = \"d3\" }",
        "{ clips = \"d3\" }",
        "{ clips = \"d3\" }",
        "unknown field `clips`, expected `clip` or `scene`",
    );
    bad_set(
        "{ clip = \"d3\" }",
        "{ clip = \"d3\", scene = \"intro\" }",
        "{ clip = \"d3\", scene",
        "give `clip` or `scene`, not both",
    );
    bad_set("{ clip = \"d3\" }", "{}", "next = {}", "an empty table");
    bad_set(
        "follow = { a = { next = \"random\"",
        "follow = { b = { next = \"random\"",
        "follow = { b",
        "missing field `a`",
    );
    bad_set("keep_playing = true", "keep_playing = \"yes\"", "keep_playing = \"yes\"", "expected a boolean");
}

#[test]
fn bad_scene_tempo_and_playlists_name_their_line() {
    bad_set(
        "tempo = 128",
        "tempo = 1000",
        "tempo = 1000",
        "scene 'intro': tempo is 1000; it must be between 20 and 999 BPM",
    );
    bad_set(
        "beats_per_bar = 3.5",
        "beats_per_bar = 3.5\ntime_signature = \"7/8\"",
        "time_signature = \"7/8\"",
        "scene 'verse': give either beats_per_bar or time_signature, not both",
    );
    bad_set("beats_per_bar = 3.5", "beats_per_bar = 0", "beats_per_bar = 0", "scene 'verse': beats_per_bar is 0");
    bad_set(
        "time_signature = \"3/4\"\nfollow",
        "time_signature = \"3/5\"\nfollow",
        "time_signature = \"3/5\"",
        "time_signature '3/5' is not a time signature",
    );
    bad_set(
        "{ scene = \"intro\" }]",
        "{ scene = \"outro\" }]",
        "steps = [\"intro\"",
        "playlist 'song': step 3: scene 'outro' does not exist (scenes: intro, verse)",
    );
    bad_set(
        "steps = [\"verse\"]",
        "steps = [\"chorus\"]",
        "steps = [\"chorus\"]",
        "playlist 'short': step 1: scene 'chorus' does not exist",
    );
    bad_set(
        "repeat = 2",
        "repeat = 0",
        "repeat = 0",
        "playlist 'song': step 2 repeat is 0; it must be a whole number from 1 to 10000",
    );
    bad_set("repeat = 2", "repeat = 2.5", "repeat = 2.5", "expected an integer");
    bad_set("steps = [\"verse\"]", "steps = []", "steps = []", "playlist 'short': has no steps");
    bad_set("id = \"short\"", "id = \"song\"", "id = \"song\"\nsteps = [\"verse\"]", "duplicate playlist id 'song'");
    bad_set(
        "{ scene = \"intro\" }]",
        "{ scene = \"intro\", times = 2 }]",
        "times = 2",
        "unknown field `times`, expected `scene` or `repeat`",
    );
    bad_set("{ scene = \"intro\" }]", "{ repeat = 2 }]", "{ repeat = 2 }]", "missing field `scene`");
    bad_set(
        "steps = [\"intro\",",
        "steps = [3,",
        "steps = [3,",
        "expected a scene id or { scene = \"id\", repeat = N }",
    );
    bad_set("loop = true", "loop = 1", "loop = 1", "expected a boolean");
    bad_set(
        "[[playlist]]\nid = \"short\"",
        "[[playlist]]\nname = \"short\"",
        "name = \"short\"",
        "unknown field `name`",
    );
}

#[test]
fn bad_arrangements_name_their_line() {
    bad_set(
        "track = \"bass\"\nclip = \"b1\"",
        "track = \"pad\"\nclip = \"b1\"",
        "track = \"pad\"\nclip",
        "arrangement: clip 'b1' is a MIDI clip and cannot go on lane 'pad', an audio track",
    );
    bad_set(
        "clip = \"d1\"\nstart",
        "clip = \"d9\"\nstart",
        "clip = \"d9\"",
        "arrangement: clip 'd9' does not exist (clips: d1, d2, d3, b1)",
    );
    bad_set(
        "track = \"bass\"\nclip = \"b1\"",
        "track = \"gtr\"\nclip = \"b1\"",
        "track = \"gtr\"",
        "arrangement: track 'gtr' does not exist (tracks: drums, bass, pad)",
    );
    bad_set(
        "start = 8.5",
        "start = -1",
        "start = -1",
        "arrangement clip 'd1': start is -1; it must be between 0 and 100000 beats",
    );
    bad_set("length = 16", "length = 0", "length = 0", "arrangement clip 'd1': length is 0; it must be greater than 0");
    bad_set("offset = 1.5", "offset = -1.5", "offset = -1.5", "arrangement clip 'd1': offset is -1.5");
    bad_set(
        "clip = \"b1\"\nstart = 0\n",
        "clip = \"b1\"\n",
        "[[arrangement.clip]]\ntrack = \"bass\"",
        "missing field `start`",
    );
    bad_set("offset = 1.5", "ofset = 1.5", "ofset = 1.5", "unknown field `ofset`");
    bad_set(
        "[[arrangement.tempo_change]]\nbeat = 16",
        "[[arrangement.tempo_changes]]\nbeat = 16",
        "[[arrangement.tempo_changes]]",
        "unknown field `tempo_changes`",
    );
    bad_set(
        "beat = 16\nbeats_per_bar = 5",
        "beat = 16",
        "[[arrangement.tempo_change]]\nbeat = 16",
        "arrangement: the tempo change at beat 16 changes nothing; give tempo, time_signature or beats_per_bar",
    );
    bad_set(
        "beat = 16\n",
        "beat = 32\n",
        "beat = 32\nbeats_per_bar = 5",
        "arrangement: two tempo changes at beat 32 (the other is on line 66); merge them",
    );
    bad_set("tempo = 100", "tempo = 5", "tempo = 5", "arrangement tempo_change at beat 32: tempo is 5");
    bad_set(
        "beats_per_bar = 5",
        "beats_per_bar = 5\ntime_signature = \"5/4\"",
        "time_signature = \"5/4\"",
        "arrangement tempo_change at beat 16: give either beats_per_bar or time_signature, not both",
    );
    bad_set("beat = 16", "beat = -16", "beat = -16", "arrangement tempo_change beat is -16");
}

#[test]
fn an_audio_clip_on_a_midi_lane_is_refused() {
    let dir = temp_dir("lanes");
    write_wav(&dir.join("pad.wav"), int_spec(1, 16, 22_050), &[0i16; 2205]);
    let session = dir.join("set.toml");
    let text = "[[track]]\nid = \"keys\"\nkind = \"midi\"\n[[track]]\nid = \"pad\"\nkind = \"audio\"\n[[clip]]\nid = \"p\"\ntrack = \"pad\"\nfile = \"pad.wav\"\n[[arrangement.clip]]\nclip = \"p\"\nstart = 4\ntrack = \"keys\"\n";
    std::fs::write(&session, text).unwrap();
    let shown = session.display().to_string();
    expect_err_in(
        load_session(&session),
        &shown,
        text,
        "track = \"keys\"\n",
        "arrangement: clip 'p' is an audio clip and cannot go on lane 'keys', a MIDI track",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The part of `text` before the arrangement section, and the part after it.
fn around_the_arrangement(text: &str) -> (&str, &str) {
    let start = text.find("# ---- the arrangement").expect("the arrangement's heading");
    let end = text.find("# ---- playlists").expect("the playlists' heading");
    (&text[..start], &text[end..])
}

#[test]
fn a_clip_moved_onto_the_arrangement_leaves_its_scenes_in_the_file_too() {
    let dir = temp_dir("save-move");
    let path = dir.join("set.toml");
    std::fs::write(&path, SET).unwrap();
    let mut s = load_session(&path).unwrap();
    // b1 (bass, in the verse with d2) moves onto the drums lane.
    let b1 = s.clip_by_name("b1").unwrap();
    s.place_clip(b1, TrackId(0), Beats(200.0), None, false).unwrap();
    save_arrangement(&path, &s).unwrap();
    let saved = std::fs::read_to_string(&path).unwrap();
    let reloaded = load_session(&path).unwrap_or_else(|e| panic!("{e}\n{saved}"));
    let lists = |x: &Session| x.scenes.iter().map(|sc| sc.clips.clone()).collect::<Vec<_>>();
    assert_eq!(lists(&reloaded), lists(&s), "the file's scenes are not the session's:\n{saved}");
    assert!(saved.contains("clips = [\"d2\"]"), "b1 is still in the verse:\n{saved}");
    assert_eq!(reloaded.track(reloaded.clip(b1).track).id, "drums", "{saved}");
    assert_eq!(reloaded.arrangement, s.arrangement);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn save_arrangement_round_trips_and_keeps_the_rest_of_the_file_byte_for_byte() {
    let dir = temp_dir("save");
    let path = dir.join("set.toml");
    // Comments and odd spacing elsewhere must survive.
    let original = SET.replacen("[session]\n", "[session]   # the whole set\n", 1).replacen(
        "\n[[scene]]\nid = \"intro\"",
        "\n# first scene\n[[scene]]\nid   =   \"intro\"",
        1,
    );
    std::fs::write(&path, &original).unwrap();
    let mut s = load_session(&path).unwrap();
    // Move d3 onto the arrangement; change a tempo change; add one.
    let d3 = s.clip_by_name("d3").unwrap();
    s.place_clip(d3, TrackId(0), Beats(40.0), Some(Beats(6.25)), false).unwrap();
    s.arrangement.clips[0].offset = Beats(0.5);
    s.arrangement.tempo[0].tempo = Some(Bpm(97.5));
    s.arrangement.tempo.push(TempoChange { beat: Beats(64.0), tempo: Some(Bpm(140.0)), beats_per_bar: None });
    save_arrangement(&path, &s).unwrap();

    let saved = std::fs::read_to_string(&path).unwrap();
    let reloaded = load_session(&path).unwrap_or_else(|e| panic!("{e}\n{saved}"));
    assert_eq!(reloaded.arrangement, s.arrangement, "the arrangement survives the round trip:\n{saved}");
    assert_eq!(around_the_arrangement(&saved), around_the_arrangement(&original), "{saved}");
    assert!(saved.contains("\n# ---- the arrangement\n[[arrangement.clip]]\ntrack = \"bass\"\nclip = \"b1\"\nstart = 0\nlength = 8\noffset = 0.5\n"), "{saved}");
    assert!(saved.contains("[[arrangement.tempo_change]]\nbeat = 16\ntempo = 97.5\nbeats_per_bar = 5\n"), "{saved}");
    // The moved clip has left the launcher in the file too, and its entry names its new lane.
    assert!(reloaded.scenes.iter().all(|sc| !sc.clips.contains(&d3)), "the moved clip is still in a scene:\n{saved}");
    assert_eq!(reloaded.track(reloaded.clip(d3).track).id, s.track(s.clip(d3).track).id);
    // Everything but the arrangement, the moved clip's scenes and its track is as it was.
    assert_eq!(reloaded.playlists, s.playlists);
    assert_eq!(reloaded.clips.len(), s.clips.len());

    // Saving again changes nothing.
    save_arrangement(&path, &reloaded).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), saved);

    // An empty arrangement removes the section and nothing else.
    let mut empty = reloaded.clone();
    empty.arrangement = Arrangement::default();
    save_arrangement(&path, &empty).unwrap();
    let (before, after) = around_the_arrangement(&original);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{before}{after}"));
    assert_eq!(load_session(&path).unwrap().arrangement, Arrangement::default());

    // Into a file with no arrangement: at the end, the rest untouched.
    let plain = format!("{before}{after}");
    save_arrangement(&path, &s).unwrap();
    let appended = std::fs::read_to_string(&path).unwrap();
    assert!(appended.starts_with(&plain), "{appended}");
    assert!(appended[plain.len()..].starts_with("\n[[arrangement.clip]]"), "{appended}");
    assert_eq!(load_session(&path).unwrap().arrangement, s.arrangement);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn save_arrangement_writes_duplicated_clips_and_refuses_clips_the_file_lacks() {
    let dir = temp_dir("save-copies");
    let path = dir.join("set.toml");
    std::fs::write(&path, SET).unwrap();
    let mut s = load_session(&path).unwrap();
    let b1 = s.clip_by_name("b1").unwrap();
    let copy = s.place_clip(b1, TrackId(1), Beats(48.0), Some(Beats(4.0)), true).unwrap();
    assert_eq!(s.clip(copy).id, "b1-copy");
    save_arrangement(&path, &s).unwrap();
    let saved = std::fs::read_to_string(&path).unwrap();
    let reloaded = load_session(&path).unwrap_or_else(|e| panic!("{e}\n{saved}"));
    assert_eq!(reloaded.arrangement, s.arrangement, "{saved}");
    let c = reloaded.clip(reloaded.clip_by_name("b1-copy").unwrap());
    assert_eq!((c.track, c.length), (TrackId(1), Beats(8.0)));
    assert!(
        saved.contains("\n[[clip]]\nid = \"b1-copy\"\ntrack = \"bass\"\nnotes = []\nlength_beats = 8\n"),
        "{saved}"
    );

    // A clip that is neither in the file nor a copy of one: an error, and the file is as it was.
    let mut other = s.clone();
    let new =
        other.add_clip(Clip::new("new", TrackId(1), ClipContent::Midi(Arc::new(MidiData::default())), Beats(4.0)));
    other.place_clip(new, TrackId(1), Beats(0.0), None, false).unwrap();
    let e = save_arrangement(&path, &other).unwrap_err();
    assert!(e.to_string().contains("cannot save the arrangement: clip 'new' is not in the session file"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), saved);

    // A file that is not TOML is reported with its line, and left alone.
    std::fs::write(&path, "[session]\ntempo = = 1\n").unwrap();
    let e = save_arrangement(&path, &s).unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = save_arrangement(&dir.join("missing.toml"), &s).unwrap_err();
    assert!(matches!(*e.kind, SessionErrorKind::Io(_)), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------- examples

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let band = load_session(&dir.join("band.toml")).unwrap_or_else(|e| panic!("{e}"));
    let mut sessions = 0;
    let mut scripts = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix("-script.toml") {
            // A script performs the session named like it (`x-script.toml`: `x.toml`), else the band.
            let own = dir.join(format!("{stem}.toml"));
            let session =
                if own.exists() { load_session(&own).unwrap_or_else(|e| panic!("{e}")) } else { band.clone() };
            let script = crate::script::Script::load(&path, &session).unwrap_or_else(|e| panic!("{e}"));
            assert!(!script.actions.is_empty(), "{name} is empty");
            scripts += 1;
        } else {
            load_session(&path).unwrap_or_else(|e| panic!("{e}"));
            sessions += 1;
        }
    }
    assert!(sessions >= 3 && scripts >= 1, "{sessions} sessions, {scripts} scripts");

    // Spot checks of band.toml: the audio clip and the MIDI-file clip.
    let pad = band.clip(band.clip_by_name("pad-a").unwrap());
    let ClipContent::Audio(audio) = &pad.content else { panic!("pad-a is audio") };
    assert_eq!(audio.sample_rate, 22_050);
    assert!((pad.length.0 - 8.0).abs() < 1e-9, "4 s at 120 BPM: {}", pad.length);
    let bass = band.clip(band.clip_by_name("bass-a").unwrap());
    assert_eq!(bass.length, Beats(8.0));
    let ClipContent::Midi(m) = &bass.content else { panic!("bass-a is MIDI") };
    assert!(m.events.iter().any(|e| matches!(e.msg, MidiMsg::NoteOn { key: 45, .. })));
    assert!(band.scenes.len() >= 3);
    let waltz = load_session(&dir.join("waltz.toml")).unwrap();
    assert_eq!(waltz.beats_per_bar, 3.0);
}

#[test]
fn every_example_script_performs_without_refusals() {
    use crate::pulse::PulseEvent;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let band = Arc::new(load_session(&dir.join("band.toml")).unwrap());
    let render = |name: &str| {
        let script = crate::script::Script::load(&dir.join(name), &band).unwrap_or_else(|e| panic!("{e}"));
        let beats = script.actions.last().map_or(0.0, |a| a.beat.0) + 8.0;
        let config = crate::render::RenderConfig { sample_rate: 8_000, block: 256, seconds: beats * 60.0 / 100.0 };
        let mut r = crate::render::Renderer::new(band.clone(), script, config).unwrap();
        let (_, events) = r.render_all();
        assert!(r.errors().is_empty(), "{name}: Pulse refused {:?}", r.errors());
        events
    };
    for name in ["band-script.toml", "band-follow-script.toml", "band-arrangement-script.toml"] {
        let events = render(name);
        assert!(events.iter().any(|e| matches!(e, PulseEvent::Executed { .. })), "{name} triggers nothing");
    }
    // The follow script's playlist and playthrough steps land where its comments say.
    let steps: Vec<(f64, String)> = render("band-follow-script.toml")
        .iter()
        .filter_map(|e| match e {
            PulseEvent::Step { scene, beat, .. } => Some((beat.0, band.scene(*scene).id.clone())),
            _ => None,
        })
        .collect();
    let expected = [(0.0, "intro"), (8.0, "verse"), (24.0, "chorus"), (40.0, "bridge"), (48.0, "outro")]
        .into_iter()
        .chain([(80.0, "verse"), (88.0, "chorus")])
        .map(|(b, s)| (b, s.to_string()))
        .collect::<Vec<_>>();
    assert_eq!(steps, expected);
}

// ----------------------------------------------------------------------- never panics

/// Fragments spliced into a valid session to reach the semantic checks.
const FRAGMENTS: &[&str] = &[
    "\n[[clip]]\nid = \"x\"\ntrack = \"drums\"\n",
    "\n[[scene]]\nid = \"verse\"\nclips = [\"x\", \"beat-a\"]\n",
    "\n[[track]]\nid = \"drums\"\nkind = \"audio\"\n",
    "\nfile = \"missing.wav\"\n",
    "\nmidi_file = \"missing.mid\"\nmidi_track = -3\n",
    "\nlength_beats = -1e308\n",
    "\nstart_offset_beats = inf\n",
    "\nquantise = \"1/0t\"\n",
    "\nnotes = [[1e308, 1e308, 127, 127]]\n",
    "\ntime_signature = \"0/0\"\n",
    "\nkeep_playing = true\n",
    "\nfollow = { a = { next = \"random\", no_repeat = true }, b = { next = { clip = \"beat-b\" } } }\n",
    "\nfollow = { after_loops = 0, a = { next = { scene = \"verse\" }, only = [\"verse\"] } }\n",
    "\ntempo = 5\n",
    "\n[[playlist]]\nid = \"p\"\nsteps = [\"verse\", { scene = \"verse\", repeat = 3 }]\n",
    "\n[[arrangement.clip]]\nclip = \"beat-a\"\nstart = 4\n",
    "\n[[arrangement.clip]]\nclip = \"bass-a\"\ntrack = \"pad\"\nstart = 0\n",
    "\n[[arrangement.tempo_change]]\nbeat = 8\ntempo = 90\n",
    "\n[arrangement]\n",
    "[",
    "]",
    "\"",
    "=",
    "\n",
    "nan",
    "-",
    "\u{e9}",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = parse(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
        let _ = decode_wav(&bytes);
        let _ = decode_smf(&bytes, None);
    }

    #[test]
    fn mutated_sessions_never_panic(
        edits in proptest::collection::vec((0usize..2000, 0usize..FRAGMENTS.len(), 0usize..40, any::<bool>()), 1..5)
    ) {
        let mut text = VALID.to_string();
        for (at, fragment, cut, insert) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            if insert {
                text.insert_str(at, FRAGMENTS[fragment]);
            } else {
                let mut end = (at + cut).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.replace_range(at..end, "");
            }
        }
        match parse(&text) {
            // Every error names the file.
            Err(e) => prop_assert!(e.to_string().starts_with(FILE)),
            // Whatever loads saves its arrangement, and loads back with the same arrangement.
            Ok(session) => {
                let saved = replace_arrangement(&text, Path::new(FILE), &session);
                prop_assert!(saved.is_ok(), "{:?}", saved.err().map(|e| e.to_string()));
                let saved = saved.unwrap();
                let again = parse(&saved);
                prop_assert!(again.is_ok(), "{}\n{saved}", again.err().map(|e| e.to_string()).unwrap_or_default());
                prop_assert_eq!(again.unwrap().arrangement, session.arrangement);
            }
        }
    }

    #[test]
    fn corrupted_wav_and_midi_never_panic(index in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let mut wav = Vec::new();
        {
            let mut w = hound::WavWriter::new(std::io::Cursor::new(&mut wav), int_spec(2, 16, 44_100)).unwrap();
            for i in 0..64i16 {
                w.write_sample(i * 100).unwrap();
            }
            w.finalize().unwrap();
        }
        let mut smf = test_smf(midly::Timing::Metrical(96.into()));
        for data in [&mut wav, &mut smf] {
            let i = index % data.len();
            data[i] = byte;
            data.truncate(data.len().saturating_sub(cut % 8));
        }
        let _ = decode_wav(&wav);
        let _ = decode_smf(&smf, None);
        let _ = decode_smf(&smf, Some(index % 3));
    }
}

#[test]
fn a_midi_file_with_frame_rate_minus_128_is_an_error_not_a_panic() {
    // Found by `corrupted_wav_and_midi_never_panic`: midly negates this byte as an i8.
    let mut smf = test_smf(midly::Timing::Metrical(96.into()));
    smf[12] = 0x80;
    let err = decode_smf(&smf, None).unwrap_err();
    assert!(err.contains("SMPTE frame rate is invalid"), "{err}");
}

#[test]
fn referenced_files_lists_each_audio_and_midi_file_once() {
    let text = r#"
[[track]]
id = "a"
kind = "audio"
[[track]]
id = "m"
kind = "midi"
[[clip]]
id = "x"
track = "a"
file = "audio/pad.wav"
[[clip]]
id = "y"
track = "a"
file = "audio/pad.wav"
[[clip]]
id = "z"
track = "m"
midi_file = "midi/bass.mid"
[[clip]]
id = "n"
track = "m"
notes = [[0.0, 1.0, 60, 100]]
"#;
    let files = super::referenced_files(text, std::path::Path::new("set.toml")).unwrap();
    assert_eq!(files, vec!["audio/pad.wav".to_string(), "midi/bass.mid".to_string()]);
    let err = super::referenced_files("[[clip]]\nid = 3\n", std::path::Path::new("bad.toml")).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
}
