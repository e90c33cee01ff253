//! Recording in the session file (`input`, `channels`, `midi_in`), the record commands in
//! their text form, JSON and scripts (`command = "..."`), and the errors bad input gets.

use std::path::Path;

use loophole_engine::control::text::{TextCommand, parse};
use loophole_engine::control::{ControlCommand, Resolved};
use loophole_engine::files::session::parse_session;
use loophole_engine::model::{SceneId, TrackId, TrackInput};
use loophole_engine::pulse::{Action, RecordAction};
use loophole_engine::script::Script;
use loophole_engine::time::{Beats, Quantise};

const SET: &str = r#"
[[track]]
id = "mic"
kind = "audio"
input = "mic"
channels = [1, 2]

[[track]]
id = "vox"
kind = "audio"
input = "mic"
channels = [2]

[[track]]
id = "keys"
kind = "midi"
midi_in = "keys"

[[track]]
id = "bed"
kind = "audio"

[[scene]]
id = "verse"
"#;

fn err(text: &str) -> String {
    parse_session(text, Path::new("set.toml")).unwrap_err().to_string()
}

#[test]
fn tracks_name_their_inputs() {
    let s = parse_session(SET, Path::new("set.toml")).unwrap();
    assert_eq!(s.tracks[0].input, Some(TrackInput::Audio { input: "mic".into(), channels: vec![0, 1] }));
    assert_eq!(s.tracks[1].input, Some(TrackInput::Audio { input: "mic".into(), channels: vec![1] }));
    assert_eq!(s.tracks[2].input, Some(TrackInput::Midi { port: "keys".into() }));
    assert_eq!(s.tracks[3].input, None);
    // No channels: the input's first two.
    let s = parse_session("[[track]]\nid = \"a\"\nkind = \"audio\"\ninput = \"line\"\n", Path::new("x.toml")).unwrap();
    assert_eq!(s.tracks[0].input, Some(TrackInput::Audio { input: "line".into(), channels: vec![0, 1] }));
}

#[test]
fn bad_inputs_are_refused_with_their_line() {
    let audio = |extra: &str| format!("[[track]]\nid = \"a\"\nkind = \"audio\"\n{extra}\n");
    let midi = |extra: &str| format!("[[track]]\nid = \"m\"\nkind = \"midi\"\n{extra}\n");
    for (text, line, needle) in [
        (audio("input = \"mic\"\nchannels = [0]"), 5, "1..=64"),
        (audio("input = \"mic\"\nchannels = [1, 2, 3]"), 5, "one channel"),
        (audio("input = \"mic\"\nchannels = []"), 5, "one channel"),
        (audio("input = \"mic\"\nchannels = [2, 2]"), 5, "twice"),
        (audio("channels = [1]"), 4, "needs input"),
        (audio("input = \"\""), 4, "needs a name"),
        (audio("midi_in = \"keys\""), 4, "records audio"),
        (midi("input = \"mic\""), 4, "midi_in"),
        (midi("midi_in = \"  \""), 4, "needs an input name"),
        (midi("midi_in = \"k\"\nchannels = [1]"), 5, "audio input"),
        (audio("input = 3"), 4, "string"),
    ] {
        let e = err(&text);
        assert!(e.starts_with(&format!("set.toml:{line}:")), "{text}\n=> {e}");
        assert!(e.contains(needle), "{text}\n=> {e} (wanted {needle})");
    }
}

#[test]
fn record_commands_parse_resolve_and_round_trip() {
    let s = parse_session(SET, Path::new("set.toml")).unwrap();
    let control = |line: &str| match parse(line).unwrap() {
        TextCommand::Control(c) => c,
        other => panic!("{other:?}"),
    };
    let action = |line: &str| match control(line).resolve(&s).unwrap() {
        Resolved::Pulse(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(control("record.arm mic"), control("arm mic"));
    assert_eq!(action("arm vox"), Action::Record(RecordAction::Arm { track: TrackId(1), on: true }));
    assert_eq!(action("record.disarm vox"), Action::Record(RecordAction::Arm { track: TrackId(1), on: false }));
    assert_eq!(action("record.start"), Action::Record(RecordAction::Start { quantise: None }));
    assert_eq!(action("record quantise=beat"), Action::Record(RecordAction::Start { quantise: Some(Quantise::Beat) }));
    assert_eq!(
        action("record.stop quantise=none"),
        Action::Record(RecordAction::Stop { quantise: Some(Quantise::None) })
    );
    assert_eq!(
        action("clip.record mic verse bars=4"),
        Action::Record(RecordAction::IntoSlot { track: TrackId(0), scene: SceneId(0), bars: Some(4) })
    );
    for line in [
        "arm mic",
        "disarm mic",
        "record",
        "record.stop quantise=bar",
        "clip.record vox verse",
        "clip.record mic verse bars=2",
    ] {
        let c = control(line);
        // The serde names are the issue's.
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(c.name()), "{json}");
        assert_eq!(serde_json::from_str::<ControlCommand>(&json).unwrap(), c);
        // Action -> command -> action.
        let a = action(line);
        let back = ControlCommand::from_action(&a, &s).unwrap();
        assert_eq!(back.resolve(&s).unwrap(), Resolved::Pulse(a));
    }
    for (line, needle) in [
        ("arm", "give a track id"),
        ("clip.record mic", "scene id"),
        ("clip.record mic verse bars=0", "bars=0"),
        ("clip.record mic verse bars=1.5", "whole number"),
        ("record quantise=often", "quantis"),
    ] {
        let e = parse(line).unwrap_err();
        assert!(e.contains(needle), "{line} => {e}");
    }
    let e = control("arm nobody").resolve(&s).unwrap_err().to_string();
    assert!(e.contains("track 'nobody' does not exist"), "{e}");
    assert!(loophole_engine::control::text::HELP.contains("record.arm TRACK"));
}

#[test]
fn scripts_record_with_command_entries() {
    let s = parse_session(SET, Path::new("set.toml")).unwrap();
    let text = "[[at]]\nbeat = 0\ncommand = \"record.arm mic\"\n\n[[at]]\nbeat = 1\ncommand = \"record.start\"\n";
    let script = Script::parse(text, Path::new("perf.toml"), &s).unwrap();
    assert_eq!(script.actions[0].action, Action::Record(RecordAction::Arm { track: TrackId(0), on: true }));
    assert_eq!(script.actions[1].beat, Beats(1.0));
    for (text, needle) in [
        ("[[at]]\nbeat = 0\ncommand = \"arm nobody\"\n", "track 'nobody' does not exist"),
        ("[[at]]\nbeat = 0\ncommand = \"frobnicate\"\n", "is not a command"),
        ("[[at]]\nbeat = 0\ncommand = \"status\"\n", "not a control command"),
        ("[[at]]\nbeat = 0\ncommand = \"transport.stop\"\n", "transport"),
        ("[[at]]\nbeat = 0\ncommand = \"record\"\nlaunch = \"x\"\n", "write one action"),
    ] {
        let e = Script::parse(text, Path::new("perf.toml"), &s).unwrap_err().to_string();
        assert!(e.starts_with("perf.toml:"), "{e}");
        assert!(e.contains(needle), "{text} => {e}");
    }
}

#[test]
fn takes_go_into_the_session_file_keeping_the_rest_byte_for_byte() {
    use loophole_engine::files::session::{NewTake, add_takes, add_takes_text};
    let dir = std::env::temp_dir().join(format!("loophole-takes-set-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("takes")).unwrap();
    // A take file for the clip to load.
    let mut wav = loophole_engine::record::wav::TakeWav::create(&dir.join("takes/mic-take-1.wav"), 2, 48_000).unwrap();
    wav.write(&vec![0.25f32; 2 * 48_000]).unwrap();
    wav.finish().unwrap();
    let text = format!("# my set\n{SET}\n# the end, a comment that stays\n")
        .replace("id = \"verse\"", "id = \"verse\" # first\nclips = []");
    let path = dir.join("set.toml");
    std::fs::write(&path, &text).unwrap();
    let take = |scene: Option<&str>| NewTake {
        id: "mic-take-1".into(),
        track: "mic".into(),
        file: "takes/mic-take-1.wav".into(),
        length_beats: 2.0,
        scene: scene.map(String::from),
    };
    // Without a slot, the file only gains the new entry (before the file's closing comment):
    // take it out and the old text is back, byte for byte.
    let grown = add_takes_text(&text, &path, &[take(None)]).unwrap();
    let entry = "\n# recorded take\n[[clip]]\nid = \"mic-take-1\"\ntrack = \"mic\"\nfile = \"takes/mic-take-1.wav\"\nlength_beats = 2.0\n";
    assert!(grown.contains(entry), "{grown}");
    assert_eq!(grown.replacen(entry, "", 1), text);
    // Into a slot: the scene's clips list gets the id, nothing else changes.
    add_takes(&path, &[take(Some("verse"))]).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert_eq!(new.replace("clips = [\"mic-take-1\"]", "clips = []"), grown, "{new}");
    let s = loophole_engine::files::session::load_session(&path).unwrap();
    let c = s.clip_by_name("mic-take-1").unwrap();
    assert_eq!((s.clip(c).track, s.clip(c).length), (TrackId(0), Beats(2.0)));
    assert_eq!(s.scene(SceneId(0)).clips, vec![c]);
    // A take for a scene the file does not hold leaves the file as it was.
    let before = std::fs::read_to_string(&path).unwrap();
    let mut t = take(Some("chorus"));
    t.id = "mic-take-2".into();
    let e = add_takes(&path, &[t]).unwrap_err().to_string();
    assert!(e.contains("chorus"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}
