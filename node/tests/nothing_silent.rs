//! Nothing silent, nothing overwritten (issue 12, item 5): the fallback capture is numbered rather
//! than overwritten and is not needed to play, script entries cut off by `--seconds` and very long
//! renders are announced, `--midi fake` alone opens no input, and a device that fails at once is
//! given up after a few starts, named one way, with an honest played length.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;

const TEST_DEVICE: &str = "LOOPHOLE_TEST_DEVICE";
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// `demo` on the test device, which fails after 0.2 s so that the performance falls back to the
/// null device and writes the default capture (whatever sound card the machine has).
fn demo_that_falls_back(dir: &Path, seconds: &str) -> std::process::Output {
    bin()
        .current_dir(dir)
        .env(TEST_DEVICE, "fail_after=0.2")
        .args(["demo", "--seconds", seconds])
        .output()
        .expect("run loophole-node")
}

#[test]
fn a_second_demo_in_the_same_folder_numbers_its_capture_instead_of_overwriting_the_first() {
    let dir = scratch("capture-numbered");
    let out = demo_that_falls_back(&dir, "0.6");
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("writing what it plays to loophole-demo.wav"), "{stderr}");
    assert!(stdout.contains("to loophole-demo.wav"), "the summary does not name the capture:\n{stdout}");
    let first = std::fs::read(dir.join("loophole-demo.wav")).expect("the first capture");

    for n in [2, 3] {
        let out = demo_that_falls_back(&dir, "0.6");
        assert_ok(&out);
        let (stdout, stderr) = texts(&out);
        let name = format!("loophole-demo-{n}.wav");
        assert!(stderr.contains(&format!("writing what it plays to {name}")), "run {n}:\n{stderr}");
        assert!(stdout.contains(&format!("to {name}")), "run {n}: the summary does not name {name}:\n{stdout}");
        let (_, samples) = read_wav(&dir.join(&name));
        assert!(peak(&samples) > 0.01, "{name} is silent");
    }
    assert_eq!(std::fs::read(dir.join("loophole-demo.wav")).unwrap(), first, "the first capture was overwritten");
}

#[test]
fn demo_plays_on_and_warns_when_the_fallback_capture_cannot_be_written() {
    // A working directory that no longer exists: no file can be created in it, by root or anyone.
    let dir = scratch("capture-unwritable");
    let child = bin()
        .current_dir(&dir)
        .env(TEST_DEVICE, "fail_after=0.2")
        .args(["demo", "--seconds", "0.8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loophole-node");
    // `spawn` returns once the child has exec'd, so it is in `dir` already.
    std::fs::remove_dir(&dir).expect("remove the child's working directory");
    let out = child.wait_with_output().expect("wait for loophole-node");
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("cannot create the capture file loophole-demo.wav"), "no warning:\n{stderr}");
    assert!(stderr.contains("plays on without writing what it plays"), "{stderr}");
    assert!(stdout.contains("played 0.80 s"), "it did not play on to the end:\n{stdout}");
    assert!(!stdout.contains("captured"), "{stdout}");
}

/// examples/minimal.toml (120 BPM, 4/4) as set.toml, and a script for it with actions at `beats`.
fn script(dir: &Path, beats: &[f64]) {
    std::fs::copy(Path::new(EXAMPLES).join("minimal.toml"), dir.join("set.toml")).unwrap();
    let text: String = beats.iter().map(|b| format!("[[at]]\nbeat = {b}\nscene = \"only\"\n\n")).collect();
    std::fs::write(dir.join("perf.toml"), text).unwrap();
}

#[test]
fn script_entries_after_seconds_are_warned_about_once_with_their_count_and_first_beat() {
    let dir = scratch("script-after-seconds");
    script(&dir, &[0.0, 8.0, 30.0, 12.0]);
    const WARNING: &str = "script action(s) after the end";
    for args in [
        &["render", "set.toml", "--script", "perf.toml", "--seconds", "2", "--out", "x.wav"][..],
        &["play", "set.toml", "--script", "perf.toml", "--seconds", "2", "--no-link", "--audio", "null"],
    ] {
        let out = run_in(&dir, args);
        assert_ok(&out);
        let (_, stderr) = texts(&out);
        // 2 s at 120 BPM ends at beat 4: the actions at 8, 12 and 30 did not play.
        assert_eq!(stderr.matches(WARNING).count(), 1, "{args:?}:\n{stderr}");
        assert!(stderr.contains(&format!("3 {WARNING} at beat 4.00")), "{args:?}:\n{stderr}");
        assert!(stderr.contains("the first at beat 8"), "{args:?}:\n{stderr}");
    }
    // Long enough for every action: no warning.
    let out = run_in(&dir, &["render", "set.toml", "--script", "perf.toml", "--seconds", "16", "--out", "x.wav"]);
    assert_ok(&out);
    assert!(!texts(&out).1.contains(WARNING), "{}", texts(&out).1);
}

#[test]
fn a_render_longer_than_ten_minutes_says_its_length_and_size_first() {
    let dir = scratch("long-render");
    // One stray entry far away: beat 1300 plus two bars at 120 BPM is 654 s.
    script(&dir, &[0.0, 1300.0]);
    let args = ["render", "set.toml", "--script", "perf.toml", "--sample-rate", "8000", "--out", "long.wav"];
    let out = run_in(&dir, &args);
    assert_ok(&out);
    let (_, stderr) = texts(&out);
    // 654 s at 8 kHz, stereo 32-bit float: 41.9 MB.
    assert!(stderr.contains("rendering 10:54 of audio (654 s), about 42 MB to long.wav"), "{stderr}");
    let _ = std::fs::remove_file(dir.join("long.wav"));
    let out = run_in(&dir, &["render", "set.toml", "--seconds", "600", "--sample-rate", "8000", "--out", "ten.wav"]);
    assert_ok(&out);
    assert!(!texts(&out).1.contains("rendering"), "ten minutes is not long:\n{}", texts(&out).1);
    let _ = std::fs::remove_file(dir.join("ten.wav"));
}

#[test]
fn midi_fake_alone_opens_no_input_but_with_a_controller_it_does() {
    let dir = scratch("midi-fake-alone");
    let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "0.3", "--midi", "fake"]);
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(!stderr.contains("on 'fake'") && !stdout.contains("from 'fake'"), "opened an input:\n{stderr}\n{stdout}");
    let mapping = Path::new(EXAMPLES).join("controllers/apc.toml");
    let out = run_in(
        &dir,
        &["demo", "--audio", "null", "--seconds", "0.3", "--midi", "fake", "--controller", mapping.to_str().unwrap()],
    );
    assert_ok(&out);
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("on 'fake'"), "the fake controller is not connected:\n{stderr}");
}

#[test]
fn a_device_that_fails_at_once_every_time_is_given_up_once_and_the_played_length_is_exact() {
    let dir = scratch("device-gives-up");
    let out = bin()
        .current_dir(&dir)
        .env(TEST_DEVICE, "fail_after=0.2,back_after=0,fail_every_start=1")
        .args(["demo", "--seconds", "6", "--log", "live.jsonl"])
        .output()
        .expect("run loophole-node");
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(stderr.matches("not trying it again").count(), 1, "{stderr}");
    assert!(stderr.contains("audio device 'test device' failed within 3 s of each of its last 2 starts"), "{stderr}");
    assert_eq!(stderr.matches("is back; switched back").count(), 1, "tried again after giving up:\n{stderr}");
    assert!(stdout.contains("played 6.00 s"), "{stdout}");
    let what: Vec<String> = read_log(&dir.join("live.jsonl"))
        .into_iter()
        .filter(|e| e["event"] == "device")
        .map(|e| e["what"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(what, ["fallback", "switched-back", "fallback", "given-up"]);
}

#[test]
fn alsa_null_is_named_one_way_and_the_played_length_is_the_asked_one() {
    let dir = scratch("alsa-null");
    let out = run_in(&dir, &["demo", "--audio", "alsa:null", "--seconds", "6"]);
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    if !stderr.contains("loophole: playing on audio device '") {
        skip_or_fail(
            "alsa_null_is_named_one_way_and_the_played_length_is_the_asked_one",
            &format!("ALSA's null device did not open here:\n{stderr}"),
        );
        return;
    }
    let names: std::collections::BTreeSet<&str> =
        stderr.split("audio device '").skip(1).filter_map(|rest| rest.split('\'').next()).collect();
    assert_eq!(names.len(), 1, "the device is named {names:?}:\n{stderr}");
    assert!(stdout.contains("played 6.00 s"), "{stdout}");
    assert!(stderr.matches("is back").count() <= 1, "retried after failing at once:\n{stderr}");
}
