//! `loophole-node play` / `demo`: live playback, the null device and the fallback to it.

mod common;

use std::time::{Duration, Instant};

use common::*;

const FALLBACK: &str = "playing on the null device, paced in real time, and writing what it plays to";

#[test]
fn demo_without_a_device_plays_on_the_null_device_and_captures_exactly_what_the_offline_render_makes() {
    let dir = scratch("demo-fallback");
    let started = Instant::now();
    let out = run_in(&dir, &["demo", "--seconds", "2", "--capture", "x.wav", "--log", "live.jsonl"]);
    let wall = started.elapsed();
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    let on_a_device = stderr.contains("loophole: playing on audio device");
    if !on_a_device {
        // This machine has no sound card: the node must say so and carry on on the null device.
        assert!(stderr.contains(FALLBACK) && stderr.contains("x.wav"), "no fallback message:\n{stderr}");
        assert!(stderr.contains("no audio device") || stderr.contains("failed"), "no reason given:\n{stderr}");
        assert!(wall >= Duration::from_millis(1800), "2 s on the null device took {wall:?}: not paced");
        assert!(stdout.contains("late callbacks"), "status line:\n{stdout}");
    }
    assert!(stdout.contains("scene 'intro'"), "no human line for the first scene:\n{stdout}");

    let (spec, live) = read_wav(&dir.join("x.wav"));
    assert_eq!((spec.channels, spec.sample_rate, spec.sample_format), (2, 48_000, hound::SampleFormat::Float));
    let frames = live.len() / 2;
    assert!(frames.abs_diff(2 * 48_000) <= 4 * 256, "captured {frames} frames for 2 s");
    assert!(peak(&live) > 0.01, "the capture is silent");

    // The same engine with the same clock: the capture is the offline render, bit for bit.
    assert_ok(&run_in(&dir, &["render", "--demo", "--seconds", "2", "--out", "offline.wav"]));
    let (_, offline) = read_wav(&dir.join("offline.wav"));
    let n = live.len().min(offline.len());
    assert!(n >= 2 * 48_000 * 2 - 8 * 256, "too little to compare: {n} samples");
    if let Some(i) = (0..n).find(|&i| live[i].to_bits() != offline[i].to_bits()) {
        panic!("capture and render differ first at frame {} ({} vs {})", i / 2, live[i], offline[i]);
    }

    let events = read_log(&dir.join("live.jsonl"));
    assert!(!events.is_empty(), "the live log is empty");
    for e in &events {
        assert_eq!(e["source"], "live", "{e}");
        assert!(e["host_time"].as_f64().is_some_and(|t| t >= 0.0), "no host_time in {e}");
    }
    for e in events.iter().filter(|e| e["event"] == "trigger") {
        assert_eq!(e["late"], false, "a scripted trigger was late: {e}");
    }
}

#[test]
fn audio_null_is_honoured_without_a_fallback_or_a_surprise_capture() {
    let dir = scratch("audio-null");
    let out = run_in(&dir, &["play", "--no-link", "--demo", "--audio", "null", "--seconds", "0.5", "--buffer", "128"]);
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("playing on the null device"), "{stderr}");
    assert!(!stderr.contains("no audio device") && !stderr.contains(FALLBACK), "fell back instead:\n{stderr}");
    assert!(stdout.contains("on the null device"), "status line:\n{stdout}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(files.is_empty(), "--audio null without --capture wrote {files:?}");
}

#[test]
fn devices_lists_what_there_is_and_exits_0() {
    let dir = scratch("devices");
    let out = run_in(&dir, &["devices"]);
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    // MIDI ports are listed, or the reason there are none is given on one line.
    assert!(stdout.contains("MIDI"), "{stdout}");
    // Input devices are listed as such, or their absence is said with what --input takes then.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("  input ")) || stdout.contains("audio: no usable input device"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("  ") && l.contains(" ["))
            .all(|l| { l.starts_with("  input ") || l.starts_with("  output ") }),
        "every audio device line says output or input:\n{stdout}"
    );
    assert!(!stdout.contains("not supported yet"), "{stdout}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_and_finishes_the_capture() {
    use std::process::Stdio;
    let dir = scratch("ctrl-c");
    let child = bin()
        .current_dir(&dir)
        .args(["demo", "--audio", "null", "--capture", "x.wav"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    std::thread::sleep(Duration::from_millis(1200));
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "cannot send SIGINT");
    let out = child.wait_with_output().expect("wait for the demo");
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("stopped by Ctrl-C"), "status line:\n{stdout}");
    // The WAV was finished properly: its header gives the length of what was played.
    let (_, samples) = read_wav(&dir.join("x.wav"));
    let seconds = samples.len() as f64 / 2.0 / 48_000.0;
    assert!((0.5..5.0).contains(&seconds), "captured {seconds} s before Ctrl-C");
}

/// ALSA's `null` device takes audio as fast as it is given: the node must notice that it is not
/// paced, take Signal back from its callback and carry on on the null device at the same sample.
/// The capture spans both devices and must still be the offline render, bit for bit. (ALSA's
/// `null` may also race through the whole performance before the first check: then it is said
/// to have failed at the end, and there is nothing to carry on with.)
#[test]
fn an_unpaced_device_is_replaced_by_the_null_device_without_losing_a_sample() {
    let dir = scratch("unpaced-device");
    let (devices, _) = texts(&run_in(&dir, &["devices"]));
    if !devices.contains("[alsa:null]") {
        let why = format!("`loophole-node devices` lists no [alsa:null] (libasound2-data missing?):\n{devices}");
        skip_or_fail("an_unpaced_device_is_replaced_by_the_null_device_without_losing_a_sample", &why);
        return;
    }
    let out = run_in(&dir, &["demo", "--audio", "alsa:null", "--seconds", "4", "--capture", "x.wav"]);
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    let at_the_end = stderr.contains("at the end of the performance");
    assert!(stderr.contains("plays faster than real time") && (at_the_end || stderr.contains(FALLBACK)), "{stderr}");
    assert!(stdout.contains("played 4.00 s"), "{stdout}");
    assert_ok(&run_in(&dir, &["render", "--demo", "--seconds", "4", "--out", "offline.wav"]));
    let (_, live) = read_wav(&dir.join("x.wav"));
    let (_, offline) = read_wav(&dir.join("offline.wav"));
    assert_eq!(live.len(), offline.len(), "the capture is not 4 s long");
    if let Some(i) = (0..live.len()).find(|&i| live[i].to_bits() != offline[i].to_bits()) {
        panic!("capture and render differ first at frame {} ({} vs {})", i / 2, live[i], offline[i]);
    }
}

/// Actions pressed while the audio runs (ahead of their beat by the lookahead) land exactly where
/// the offline render puts them: a scene change, a one-shot fill on a beat and an immediate stop.
#[test]
fn actions_pressed_during_playback_land_on_the_same_samples_as_offline() {
    let dir = scratch("live-script");
    std::fs::write(
        dir.join("perf.toml"),
        r#"
[[at]]
beat = 0
scene = "verse"

[[at]]
beat = 2.5
launch = "drums-fill"
quantise = "beat"

[[at]]
beat = 3.5
scene = "chorus"

[[at]]
beat = 5.25
stop = "bass"
mode = "immediate"
"#,
    )
    .unwrap();
    let out = run_in(
        &dir,
        &[
            "play",
            "--no-link",
            "--demo",
            "--script",
            "perf.toml",
            "--audio",
            "null",
            "--capture",
            "live.wav",
            "--log",
            "live.jsonl",
        ],
    );
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("bar 2.1  scene 'chorus'"), "no line for the chorus on bar 2:\n{stdout}");
    let out =
        run_in(&dir, &["render", "--demo", "--script", "perf.toml", "--out", "offline.wav", "--log", "offline.jsonl"]);
    assert_ok(&out);

    // The script's length: last action (5.25) + 2 bars = 13.25 beats = 6.625 s at 120 BPM.
    let (_, live) = read_wav(&dir.join("live.wav"));
    let (_, offline) = read_wav(&dir.join("offline.wav"));
    assert_eq!(offline.len(), 318_000 * 2);
    assert_eq!(live.len(), offline.len(), "live capture and offline render differ in length");
    if let Some(i) = (0..live.len()).find(|&i| live[i].to_bits() != offline[i].to_bits()) {
        panic!("capture and render differ first at frame {} ({} vs {})", i / 2, live[i], offline[i]);
    }
    let key = |e: &serde_json::Value| (e["event"].clone(), e["id"].clone(), e["sample"].clone(), e["late"].clone());
    // The live log also has `load` records (DSP load), which the offline render does not.
    let live_events: Vec<_> =
        read_log(&dir.join("live.jsonl")).iter().filter(|e| e["event"] != "load").map(key).collect();
    let offline_events: Vec<_> = read_log(&dir.join("offline.jsonl")).iter().map(key).collect();
    assert_eq!(live_events, offline_events, "live and offline events differ");
}

/// Scenes that change the tempo and the time signature, launched while the audio runs: the live
/// node applies each change on the sample of its beat (its tempo map cut there, as the offline
/// renderer's), so the capture is the offline render, bit for bit, and every trigger lands on
/// the same sample, including the bar-quantised ones after a new time signature.
#[test]
fn scene_tempos_and_time_signatures_played_live_are_the_offline_render_bit_for_bit() {
    let dir = scratch("live-scene-tempo");
    std::fs::write(
        dir.join("set.toml"),
        r#"
[session]
name = "Tempo scenes"
tempo = 120
beats_per_bar = 4
quantise = "bar"

[[track]]
id = "drums"
kind = "midi"
instrument = { type = "drums" }

[[track]]
id = "keys"
kind = "midi"
instrument = { type = "synth" }

[[clip]]
id = "beat"
track = "drums"
notes = [[0, 0.25, 36, 110], [1, 0.25, 38, 90], [2, 0.25, 36, 110], [3, 0.25, 38, 90]]

[[clip]]
id = "arp"
track = "keys"
notes = [[0, 0.5, 60, 100], [1, 0.5, 64, 90], [2, 0.5, 67, 90], [3, 0.5, 72, 100]]

[[scene]]
id = "start"
clips = ["beat", "arp"]

[[scene]]
id = "slow"
clips = ["beat"]
tempo = 96

[[scene]]
id = "three"
clips = ["beat", "arp"]
time_signature = "3/4"

[[scene]]
id = "fast"
clips = ["arp"]
tempo = 150
beats_per_bar = 5
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("perf.toml"),
        r#"
[[at]]
beat = 0
scene = "start"

[[at]]
beat = 3
scene = "slow"

[[at]]
beat = 6
scene = "three"

[[at]]
beat = 9
launch = "arp"

[[at]]
beat = 12
scene = "fast"

[[at]]
beat = 15.5
stop = "drums"
mode = "immediate"
"#,
    )
    .unwrap();
    let common = ["set.toml", "--script", "perf.toml", "--seconds", "9"];
    let live_args = ["--no-link", "--audio", "null", "--capture", "live.wav", "--log", "live.jsonl"];
    let out = run_in(&dir, &[&["play"][..], &common, &live_args].concat());
    assert_ok(&out);
    // Bars are numbered across the time signatures: 4/4 for bars 1-2, 3/4 from beat 8 (bar 3),
    // so the arp pressed at beat 9 starts on bar 4 (beat 11) and 5/4 begins on bar 5 (beat 14).
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["bar 3.1  scene 'three'", "bar 4.1  keys: retrigger arp", "bar 5.1  scene 'fast'"] {
        assert!(stdout.contains(line), "no line '{line}':\n{stdout}");
    }
    let out = run_in(&dir, &[&["render"][..], &common, &["--out", "offline.wav", "--log", "offline.jsonl"]].concat());
    assert_ok(&out);

    let (_, live) = read_wav(&dir.join("live.wav"));
    let (_, offline) = read_wav(&dir.join("offline.wav"));
    assert_eq!(offline.len(), 9 * 48_000 * 2);
    assert_eq!(live.len(), offline.len(), "live capture and offline render differ in length");
    if let Some(i) = (0..live.len()).find(|&i| live[i].to_bits() != offline[i].to_bits()) {
        panic!("capture and render differ first at frame {} ({} vs {})", i / 2, live[i], offline[i]);
    }
    let key = |e: &serde_json::Value| (e["event"].clone(), e["id"].clone(), e["sample"].clone(), e["late"].clone());
    let live_log: Vec<_> = read_log(&dir.join("live.jsonl")).into_iter().filter(|e| e["event"] != "load").collect();
    let live_events: Vec<_> = live_log.iter().map(key).collect();
    let offline_events: Vec<_> = read_log(&dir.join("offline.jsonl")).iter().map(key).collect();
    assert_eq!(live_events, offline_events, "live and offline events differ");
    // The changes were made (a tempo, a time signature, both), and the launches after them came
    // where the tempo map puts them: beat 4 at 120 BPM is sample 96 000; the 3/4 scene at beat 8
    // (4 beats at 96 BPM later: + 120 000); the arp relaunch on the next 3/4 bar, beat 11
    // (+ 90 000); the fast scene on beat 14 (+ 90 000).
    let changes: Vec<_> = live_log
        .iter()
        .filter(|e| e["event"] == "tempo-change")
        .map(|e| (e["beat"].as_f64(), e["tempo"].as_f64(), e["beats_per_bar"].as_f64()))
        .collect();
    assert_eq!(
        changes,
        [(Some(4.0), Some(96.0), None), (Some(8.0), None, Some(3.0)), (Some(14.0), Some(150.0), Some(5.0))],
        "tempo changes in the live log"
    );
    let trigger_samples: Vec<i64> =
        live_log.iter().filter(|e| e["event"] == "trigger").filter_map(|e| e["sample"].as_i64()).collect();
    for sample in [96_000, 216_000, 306_000, 396_000] {
        assert!(trigger_samples.contains(&sample), "no trigger at sample {sample}: {trigger_samples:?}");
    }
}
