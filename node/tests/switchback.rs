//! The device fails mid-render: playback continues on the null device from the same sample, and
//! the trigger log shows no missed trigger; when the device comes back, the node switches back
//! to it at the sample the null device stopped at. The device is the `LOOPHOLE_TEST_DEVICE` test
//! hook: the null device under another name, failing (and coming back) on cue, driving the same
//! failure path as a real device.

mod common;

use std::path::Path;

use common::*;

/// Executed triggers and clip ends of a log before sample `end`: (event, id, beat, sample, late).
/// (The live node plays up to a device block past its length.)
fn triggers(path: &Path, end: u64) -> Vec<[serde_json::Value; 5]> {
    read_log(path)
        .into_iter()
        .filter(|e| e["event"] == "trigger" || e["event"] == "clip-end")
        .filter(|e| e["sample"].as_u64().is_some_and(|s| s < end))
        .map(|e| [e["event"].clone(), e["id"].clone(), e["beat"].clone(), e["sample"].clone(), e["late"].clone()])
        .collect()
}

/// Scene launches and stops on every bar and between, over 14 beats (7 s at 120 BPM): triggers
/// before, during and after the time on the null device.
const SCRIPT: &str = r#"
[[at]]
beat = 0
scene = "intro"

[[at]]
beat = 1.5
stop = "bass"
mode = "immediate"

[[at]]
beat = 2.5
scene = "verse"
quantise = "beat"

[[at]]
beat = 4.25
stop = "lead"
mode = "immediate"

[[at]]
beat = 5
scene = "chorus"
quantise = "half-beat"

[[at]]
beat = 6.75
scene = "breakdown"
quantise = "bar"

[[at]]
beat = 9.1
scene = "verse"
quantise = "beat"

[[at]]
beat = 11.5
stop = "drums"
mode = "immediate"

[[at]]
beat = 12
scene = "outro"
quantise = "none"

[[at]]
beat = 13.3
stop = "chords"
mode = "immediate"
"#;

/// Plays the demo set with [`SCRIPT`] for `seconds` on the test device configured by `hook`, renders it offline,
/// and checks that every trigger of the render is in the live log at the same beat and sample
/// (and nothing else is), and that the capture is the render, bit for bit. Returns stderr and
/// the live log's device events.
fn play_against_render(name: &str, hook: &str, seconds: &str) -> (String, Vec<serde_json::Value>) {
    let dir = scratch(name);
    std::fs::write(dir.join("perf.toml"), SCRIPT).unwrap();
    let out = bin()
        .current_dir(&dir)
        .env("LOOPHOLE_TEST_DEVICE", hook)
        .args(["demo", "--script", "perf.toml", "--seconds", seconds, "--log", "live.jsonl", "--capture", "live.wav"])
        .output()
        .unwrap();
    assert_ok(&out);
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("playing on audio device 'test device' (the LOOPHOLE_TEST_DEVICE test hook)"), "{stderr}");
    assert!(
        stderr.contains(
            "audio device 'test device' failed (injected failure (LOOPHOLE_TEST_DEVICE)); playing on the null device"
        ),
        "no fallback:\n{stderr}"
    );
    let render = ["render", "--demo", "--script", "perf.toml", "--seconds", seconds, "--out", "offline.wav"];
    let out = run_in(&dir, &[&render[..], &["--log", "offline.jsonl"]].concat());
    assert_ok(&out);
    let end = (seconds.parse::<f64>().unwrap() * 48_000.0) as u64;
    let live = triggers(&dir.join("live.jsonl"), end);
    let offline = triggers(&dir.join("offline.jsonl"), end);
    assert!(offline.len() >= 20, "the script makes triggers all along: {offline:?}");
    for t in &offline {
        assert!(live.contains(t), "missed or moved trigger {t:?}\nlive: {live:?}");
    }
    assert_eq!(live, offline, "live and offline triggers differ");
    let (_, live) = read_wav(&dir.join("live.wav"));
    let (_, offline) = read_wav(&dir.join("offline.wav"));
    assert_eq!(live.len(), offline.len(), "the capture lost or gained frames");
    if let Some(i) = (0..live.len()).find(|&i| live[i].to_bits() != offline[i].to_bits()) {
        panic!("capture and render differ first at frame {} ({} vs {})", i / 2, live[i], offline[i]);
    }
    let devices = read_log(&dir.join("live.jsonl")).into_iter().filter(|e| e["event"] == "device").collect();
    (stderr, devices)
}

#[test]
fn the_device_fails_mid_render_playback_continues_on_null_and_no_trigger_is_missed() {
    let (stderr, devices) = play_against_render("device-fails", "fail_after=1.5", "6");
    assert!(!stderr.contains("switched back"), "{stderr}");
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["what"], "fallback");
    let sample = devices[0]["sample"].as_u64().unwrap();
    // It failed 1.5 s in (give or take the machine's load), not at the start.
    assert!((48_000..=5 * 48_000).contains(&sample), "fell back at sample {sample}");
}

#[test]
fn when_the_device_comes_back_the_node_switches_back_to_it_on_the_same_sample() {
    let (stderr, devices) = play_against_render("device-comes-back", "fail_after=1,back_after=2", "7");
    assert!(stderr.contains("audio device 'test device' is back; switched back to it at bar"), "{stderr}");
    let what: Vec<&str> = devices.iter().map(|d| d["what"].as_str().unwrap()).collect();
    assert_eq!(what, ["fallback", "switched-back"], "{devices:?}");
    let (lost, back) = (devices[0]["sample"].as_u64().unwrap(), devices[1]["sample"].as_u64().unwrap());
    // Tried again every 2 s from the loss: back on the first try after `back_after`.
    let on_null = (back - lost) as f64 / 48_000.0;
    assert!((1.5..=4.5).contains(&on_null), "{on_null} s on the null device");
}
