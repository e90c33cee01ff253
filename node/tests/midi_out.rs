//! External MIDI out through the node: a routed track's clip reaches the fake port at the host
//! time its samples are heard, `render --midi-out` writes the same messages at their beats as a
//! Standard MIDI File, and `play` sends them to the port (or says in one line that it is missing
//! and plays on).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use loophole_engine::EngineConfig;
use loophole_engine::model::{Clip, ClipContent, ClipId, MidiData, MidiOutRoute, Session, Track, TrackKind};
use loophole_engine::pulse::{Action, StopMode};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::{Script, ScriptAction};
use loophole_engine::time::{Beats, Bpm, Quantise, SimClock};
use loophole_node::midi::clock::SharedClock;
use loophole_node::midi::out::{ExternalOut, OUT_RING, OutPorts};
use loophole_node::midi::ports::MidiBackend;
use loophole_node::midi::{FakeMidi, HostTime, Message};

const SR: u32 = 48_000;

/// A bass line at 480 BPM (6000 samples a beat) routed to `port` on channel 2; a second MIDI
/// track plays its built-in synth.
fn session(port: &str) -> Session {
    let mut s = Session::new("ext", Bpm(480.0));
    let bass = s.add_track(Track {
        midi_out: Some(MidiOutRoute { port: port.into(), channel: Some(1) }),
        ..Track::new("bass", TrackKind::Midi)
    });
    let line = MidiData::from_notes(&[(0.0, 0.5, 40, 100), (1.0, 0.5, 43, 90), (2.0, 1.5, 45, 80)]);
    s.add_clip(Clip::new("line", bass, ClipContent::Midi(Arc::new(line)), Beats(4.0)));
    s
}

fn script() -> Script {
    let at = |beat: f64, action| ScriptAction { beat: Beats(beat), action };
    Script {
        actions: vec![
            at(0.0, Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }),
            at(6.5, Action::StopTrack { track: loophole_engine::model::TrackId(0), mode: StopMode::Immediate }),
        ],
    }
}

#[test]
fn signal_s_messages_reach_the_fake_port_when_their_samples_are_heard() {
    let s = Arc::new(session("synth"));
    // The offline render's messages are the reference.
    let mut r = Renderer::new(s.clone(), script(), RenderConfig { sample_rate: SR, block: 256, seconds: 1.5 }).unwrap();
    r.render_all();
    let reference = r.take_midi_out();
    assert_eq!(reference.len(), 12, "two passes of three notes, the last cut by the stop: {reference:?}");

    let fake = FakeMidi::new(&[], &["synth"]);
    let mut backend = fake.clone();
    let (ports, lines) = OutPorts::open(&s, &mut backend);
    assert_eq!(lines, vec!["MIDI out: track 'bass' plays to 'synth' on channel 2".to_string()]);
    let (mut pulse, mut signal) =
        loophole_engine::build(s.clone(), &EngineConfig { sample_rate: SR, max_block: 1024, queue_capacity: 64 })
            .unwrap();
    let ring = signal.connect_midi_out(OUT_RING);
    // Sample 0 is heard 100 ms from now.
    let start = HostTime::now().0 + 100_000;
    let out = ExternalOut::start(ring, ports, Arc::new(SharedClock::fixed(HostTime(start), SR))).unwrap();
    // Render the performance ahead of time, as the audio thread would (in 256-frame blocks).
    let clock = SimClock { sample_rate: SR, tempo: Bpm(480.0), quantum: 4.0 };
    let mut buf = vec![0f32; 512];
    let mut t = 0i64;
    let mut next = 0;
    let sc = script();
    while t < (1.5 * SR as f64) as i64 {
        let block = clock.block(t, 256);
        while let Some(a) = sc.actions.get(next).filter(|a| a.beat.0 < block.end_beat().0) {
            pulse.tick(a.beat, a.beat).unwrap();
            pulse.press(a.action, a.beat).unwrap();
            next += 1;
        }
        pulse.tick(block.beat_at_first_sample, block.end_beat()).unwrap();
        signal.process(&block, &mut buf);
        t += 256;
    }
    std::thread::sleep(Duration::from_micros(start + 1_300_000 - HostTime::now().0));
    let stats = out.stop();
    let sent = fake.sent();
    let got: Vec<Message> = sent.iter().filter_map(|s| s.message()).collect();
    let want: Vec<Message> = reference.iter().map(|e| Message::from_engine(e.msg)).collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|m| m.channel() == 1), "all on channel 2");
    let mut errors: Vec<i64> = sent
        .iter()
        .zip(&reference)
        .map(|(s, e)| s.at.0 as i64 - (start + e.sample as u64 * 1_000_000 / 48_000) as i64)
        .collect();
    errors.sort_unstable();
    eprintln!(
        "sent minus due (µs): median {}, min {}, max {}",
        errors[errors.len() / 2],
        errors[0],
        errors[errors.len() - 1]
    );
    for (s, e) in sent.iter().zip(&reference) {
        let due = start + (e.sample as u64 * 1_000_000 / SR as u64);
        let early = due.saturating_sub(s.at.0);
        let late = s.at.0.saturating_sub(due);
        // Sent up to SEND_AHEAD (0.5 ms) early; a loaded 2-core machine may wake late.
        assert!(early <= 600 && late <= 30_000, "{:?} sent at {} µs, due at {due} µs", e.msg, s.at.0);
    }
    assert_eq!((stats.sent, stats.errors), (12, 0));
}

#[test]
fn a_track_whose_port_is_missing_is_one_line_and_plays_on() {
    let mut with_synth = session("Minilogue");
    with_synth.tracks[0].instrument = Some(loophole_engine::model::InstrumentSpec::Synth(Default::default()));
    let mut backend: Box<dyn MidiBackend> = Box::new(FakeMidi::new(&[], &["fake"]));
    let (ports, lines) = OutPorts::open(&with_synth, backend.as_mut());
    assert!(ports.is_empty());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("MIDI out: track 'bass': no MIDI output matches 'Minilogue'"), "{}", lines[0]);
    assert!(lines[0].ends_with("the track plays on on its built-in instrument only"), "{}", lines[0]);
    let (_, lines) = OutPorts::open(&session("Minilogue"), backend.as_mut());
    assert!(lines[0].ends_with("the track plays on silently"), "{}", lines[0]);
}

const SESSION: &str = r#"
[session]
tempo = 120

[[track]]
id = "bass"
kind = "midi"
midi_out = "PORT"
midi_channel = 2

[[track]]
id = "keys"
kind = "midi"

[[clip]]
id = "line"
track = "bass"
length_beats = 4
notes = [[0.0, 0.5, 40, 100], [1.0, 0.5, 43, 90], [2.0, 1.5, 45, 80]]

[[clip]]
id = "chords"
track = "keys"
notes = [[0.0, 2.0, 60, 90]]
"#;

const SCRIPT: &str = r#"
[[at]]
beat = 0
launch = "line"
quantise = "none"

[[at]]
beat = 0
launch = "chords"
quantise = "none"

[[at]]
beat = 6.5
stop = "bass"
mode = "immediate"
"#;

fn files(name: &str, port: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("set.toml"), SESSION.replace("PORT", port)).unwrap();
    std::fs::write(dir.join("perf.toml"), SCRIPT).unwrap();
    dir
}

#[test]
fn render_midi_out_writes_the_routed_track_s_messages_at_their_beats() {
    let dir = files("midi-out-render", "fake");
    let out = run_in(
        &dir,
        &["render", "set.toml", "--script", "perf.toml", "--out", "x.wav", "--seconds", "4", "--midi-out", "x.mid"],
    );
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("; 12 MIDI messages -> x.mid"), "{stdout}");
    let bytes = std::fs::read(dir.join("x.mid")).unwrap();
    let smf = midly::Smf::parse(&bytes).unwrap();
    assert_eq!(smf.header.timing, midly::Timing::Metrical(960.into()));
    assert_eq!(smf.tracks.len(), 2, "the tempo track and the one routed track");
    assert!(
        smf.tracks[0].iter().any(|e| e.kind == midly::TrackEventKind::Meta(midly::MetaMessage::Tempo(500_000.into())))
    );
    let mut tick = 0u32;
    let mut notes = Vec::new();
    for e in &smf.tracks[1] {
        tick += e.delta.as_int();
        if let midly::TrackEventKind::Midi { channel, message } = e.kind {
            let (on, key) = match message {
                midly::MidiMessage::NoteOn { key, .. } => (true, key.as_int()),
                midly::MidiMessage::NoteOff { key, .. } => (false, key.as_int()),
                m => panic!("unexpected {m:?}"),
            };
            assert_eq!(channel.as_int(), 1, "midi_channel = 2");
            notes.push((tick as f64 / 960.0, on, key));
        }
    }
    // The clip's notes on two passes; the stop at beat 6.5 releases the held 45.
    let want = [
        (0.0, true, 40),
        (0.5, false, 40),
        (1.0, true, 43),
        (1.5, false, 43),
        (2.0, true, 45),
        (3.5, false, 45),
        (4.0, true, 40),
        (4.5, false, 40),
        (5.0, true, 43),
        (5.5, false, 43),
        (6.0, true, 45),
        (6.5, false, 45),
    ];
    assert_eq!(notes, want);
    // --midi-out with no routed track is an error, not an empty file.
    std::fs::write(dir.join("plain.toml"), SESSION.replace("midi_out = \"PORT\"\nmidi_channel = 2\n", "")).unwrap();
    let out = run_in(&dir, &["render", "plain.toml", "--out", "y.wav", "--seconds", "1", "--midi-out", "y.mid"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
    assert!(texts(&out).1.contains("no track of this session has midi_out"), "{}", texts(&out).1);
    assert!(!dir.join("y.mid").exists());
}

#[test]
fn play_sends_the_routed_track_to_its_port_and_a_missing_port_is_one_line() {
    let dir = files("midi-out-play", "fake");
    let args = ["play", "set.toml", "--script", "perf.toml", "--no-link", "--audio", "null", "--midi", "fake"];
    let out = run_in(&dir, &[&args[..], &["--seconds", "4"]].concat());
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("MIDI out: track 'bass' plays to 'fake' on channel 2"), "{stderr}");
    // Everything the render writes, none lost or refused (a loaded machine may send one late).
    let line = stdout.lines().find(|l| l.starts_with("MIDI out: ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.starts_with("MIDI out: 12 messages to 'fake'"), "{line}");
    assert!(!line.contains("lost") && !line.contains("refused"), "{line}");

    let dir = files("midi-out-play-missing", "Minilogue");
    let out = run_in(&dir, &[&args[..], &["--seconds", "1"]].concat());
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("MIDI out")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("no MIDI output matches 'Minilogue'") && lines[0].ends_with("plays on silently"),
        "{stderr}"
    );
    assert!(stdout.contains("played 1."), "{stdout}");
}
