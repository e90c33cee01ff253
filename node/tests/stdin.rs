//! The terminal: `--stdin-commands` without Link makes it one more input to the node's inbox
//! (typed commands are quantised like pads and scripts, lines that are not commands or name
//! nothing in the session are refused with the reason and counted, `status` reads the snapshot,
//! `quit` ends the performance), and the node says what will happen: how to launch something
//! when nothing would, and every queued press before it lands.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn typed_commands_reach_pulse_through_the_inbox_and_bad_ones_are_refused_with_a_reason() {
    let dir = scratch("stdin-commands");
    let session = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml");
    let started = Instant::now();
    let mut child = bin()
        .current_dir(&dir)
        .args(["play", session.to_str().unwrap(), "--no-link", "--audio", "null", "--stdin-commands"])
        .args(["--seconds", "30", "--log", "live.jsonl", "--capture", "x.wav", "--no-realtime"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loophole-node");
    let mut stdin = child.stdin.take().unwrap();
    // Type once the node plays, a little into the first bar: a line typed while the device
    // starts can land on beat 0 after the null device has already rendered past it (it catches
    // up in a burst), and is then started late, phase-aligned.
    let err_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = err_lines.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(20);
    while !err_lines.lock().unwrap().iter().any(|l| l.contains("playing on")) {
        assert!(Instant::now() < until, "the node did not start playing: {:?}", err_lines.lock().unwrap());
        sleep(Duration::from_millis(10));
    }
    sleep(Duration::from_millis(300));
    // 120 BPM in 4/4: a bar is 2 s. The verse waits for the next bar line.
    writeln!(stdin, "scene.trigger verse").unwrap();
    writeln!(stdin, "launch no-such-clip").unwrap();
    writeln!(stdin, "frobnicate the drums").unwrap();
    sleep(Duration::from_millis(2600));
    writeln!(stdin, "status").unwrap();
    writeln!(stdin, "stop drums").unwrap();
    sleep(Duration::from_millis(2600));
    writeln!(stdin, "quit").unwrap();
    let out = child.wait_with_output().expect("wait for loophole-node");
    let wall = started.elapsed();
    reader.join().unwrap();
    let stderr = err_lines.lock().unwrap().join("\n");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && !stderr.contains("panicked"), "exit {:?}\n{stdout}\n{stderr}", out.status);
    assert!(wall < Duration::from_secs(20), "quit did not end the 30 s performance ({wall:?})\n{stdout}\n{stderr}");

    // What the terminal says when a press waits for its beat (the scene may land on beat 0 if it
    // was typed before the first block; the stop, typed mid-bar, waits).
    assert!(
        stdout.contains("queued: scene 'verse'") || stdout.contains("queued: drums: stop"),
        "no queued line for a typed press:\n{stdout}"
    );
    // The scene launch: every clip of the verse on one bar line.
    let events = read_log(&dir.join("live.jsonl"));
    let verse: Vec<_> = events.iter().filter(|e| e["event"] == "trigger" && e["scene"] == "verse").collect();
    let tracks: Vec<&str> = verse.iter().filter_map(|e| e["track"].as_str()).collect();
    for t in ["drums", "bass", "keys", "pad"] {
        assert!(tracks.contains(&t), "the verse did not start on {t}: {verse:?}");
    }
    let bar = verse[0]["beat"].as_f64().unwrap();
    assert!(bar >= 0.0 && bar % 4.0 == 0.0, "the verse started off a bar line, at beat {bar}");
    for e in &verse {
        assert_eq!(e["beat"].as_f64(), Some(bar), "the verse's clips started apart: {e}");
        assert_eq!(e["late"], false, "{e}");
    }
    // `stop drums`: quantised to a later bar, on the drums only.
    let stop = events
        .iter()
        .find(|e| e["event"] == "trigger" && e["kind"] == "stop" && e["track"] == "drums")
        .unwrap_or_else(|| panic!("no stop on the drums in the log: {events:?}"));
    let at = stop["beat"].as_f64().unwrap();
    assert!(at > bar && at % 4.0 == 0.0, "the drums stopped at beat {at}, not on a bar after {bar}");

    // `status` reads the snapshot: the verse is the current scene.
    assert!(stdout.contains("scene: verse"), "status did not show the verse:\n{stdout}");
    // The two bad lines: refused with the reason, counted in the summary; the set played on.
    assert!(
        stderr.contains("no-such-clip") && stderr.contains("refused"),
        "the unknown clip was not refused:\n{stderr}"
    );
    assert!(stderr.contains("frobnicate"), "the line that is no command was not reported:\n{stderr}");
    assert!(stdout.contains("2 press(es) refused"), "the summary does not count the refusals:\n{stdout}");
    let (_, live) = read_wav(&dir.join("x.wav"));
    assert!(peak(&live) > 0.01, "the typed scene made no sound");
}

/// A set with nothing that launches a clip says how to launch something, in `render` and in
/// `play`, instead of rendering silence without a word; a script's quantised presses are told
/// before they land.
#[test]
fn a_performance_that_launches_nothing_says_how_to_launch_something() {
    let dir = scratch("launch-hint");
    let session = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal.toml");
    let session = session.to_str().unwrap();
    let out = run_in(&dir, &["render", session, "--seconds", "1", "--out", "x.wav"]);
    assert_ok(&out);
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("nothing launches a clip") && stderr.contains("--playthrough"), "{stderr}");

    let live = ["play", session, "--no-link", "--audio", "null", "--seconds", "0.3", "--no-realtime"];
    let out = run_in(&dir, &live);
    assert_ok(&out);
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("--stdin-commands") && stderr.contains("scene.trigger only"), "{stderr}");

    // Something that plays by itself needs no hint.
    let out = run_in(&dir, &["render", session, "--playthrough", "--seconds", "1", "--out", "y.wav"]);
    assert_ok(&out);
    assert!(!texts(&out).1.contains("nothing launches"), "{}", texts(&out).1);
}

#[test]
fn scripted_presses_are_told_before_they_land() {
    let dir = scratch("queued-script");
    let session = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml");
    // The verse is pressed on beat 1.5 and lands on the next bar line, beat 4.
    std::fs::write(
        dir.join("s.toml"),
        "[[at]]\nbeat = 0\nscene = \"intro\"\n\n[[at]]\nbeat = 1.5\nscene = \"verse\"\n",
    )
    .unwrap();
    let args = ["play", session.to_str().unwrap(), "--script", "s.toml", "--no-link"];
    let out = run_in(&dir, &[&args[..], &["--audio", "null", "--seconds", "3", "--no-realtime"]].concat());
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    let queued = stdout.lines().position(|l| l.starts_with("queued: scene 'verse' at bar 2.1"));
    let queued = queued.unwrap_or_else(|| panic!("no queued line for a scripted press:\n{stdout}"));
    let landed = stdout.lines().position(|l| l.starts_with("bar 2.1  scene 'verse'"));
    assert!(landed.is_some_and(|l| l > queued), "the verse did not land after its queued line:\n{stdout}");
}

/// `[session] autoplay = "song"`: the set plays its playlist by itself, for one pass plus a bar.
#[test]
fn an_autoplay_set_plays_its_playlist_by_itself() {
    let dir = scratch("autoplay");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let text = std::fs::read_to_string(examples.join("band.toml")).unwrap();
    let text = text.replacen("[session]\n", "[session]\nautoplay = \"song\"\n", 1);
    // The set's audio and MIDI files are found beside it.
    for sub in ["audio", "midi"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for f in std::fs::read_dir(examples.join(sub)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(sub).join(f.file_name())).unwrap();
        }
    }
    std::fs::write(dir.join("set.toml"), text).unwrap();
    let out = run_in(&dir, &["render", "set.toml", "--out", "x.wav", "--log", "x.jsonl"]);
    assert_ok(&out);
    assert!(!texts(&out).1.contains("nothing launches"), "{}", texts(&out).1);
    let events = read_log(&dir.join("x.jsonl"));
    let steps = events.iter().filter(|e| e["event"] == "step" && e["playlist"] == "song").count();
    assert_eq!(steps, 5, "the song's five steps: {events:?}");
    let (_, audio) = read_wav(&dir.join("x.wav"));
    assert!(peak(&audio) > 0.01, "the autoplay render is silent");
    // Not the 30 s of a set with nothing to perform: one pass of the song plus a bar.
    assert!(audio.len() / 2 != 30 * 48_000, "rendered the default 30 s");
}
