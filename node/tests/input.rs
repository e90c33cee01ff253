//! Audio input: the null input's loopback and file sources recorded with `--record-input`,
//! aligned with the output (latency compensation), and an input device that does not exist.

mod common;

use std::path::Path;

use common::*;

/// A key of the recording's sidecar (`x.input.toml`).
fn sidecar(path: &Path, key: &str) -> i64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key}: {text}"));
    line.split(" = ").nth(1).unwrap().trim().parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Plays the demo on the null device with the loopback input at `ms` ms, capturing the output
/// and recording the input, and checks that the recording is the capture, frame for frame.
fn loopback_records_the_output_at_the_same_frames(ms: &str, buffer: &str) {
    let dir = scratch(&format!("loopback-{ms}-{buffer}"));
    let input = format!("loopback:{ms}");
    let args = [
        "demo",
        "--audio",
        "null",
        "--buffer",
        buffer,
        "--seconds",
        "1.5",
        "--capture",
        "out.wav",
        "--input",
        &input,
        "--record-input",
        "in.wav",
    ];
    let out = run_in(&dir, &args);
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("listening to the null input (loopback"), "{stderr}");
    assert!(stdout.contains("dropped input frames 0"), "{stdout}");
    assert!(!stdout.contains("loopback frames the output had not rendered"), "the loopback was starved:\n{stdout}");
    let (spec, played) = read_wav(&dir.join("out.wav"));
    let (rspec, heard) = read_wav(&dir.join("in.wav"));
    assert_eq!((rspec.channels, rspec.sample_rate), (spec.channels, spec.sample_rate));
    assert_eq!(played.len(), 72_000 * 2);
    // The input keeps listening until it has heard the output's last frame.
    assert_eq!(heard.len(), played.len(), "the recording is as long as the capture");
    assert!(peak(&heard) > 0.01, "the recording is silent");
    // Bit for bit at the same frames: a recording off by even one frame differs everywhere.
    if let Some(i) = (0..played.len()).find(|&i| played[i].to_bits() != heard[i].to_bits()) {
        let shift = (-8i64..=8)
            .find(|s| (4096..8192).all(|k| played[k].to_bits() == heard[(k as i64 + 2 * s) as usize].to_bits()));
        panic!(
            "loopback:{ms}: recording and capture differ first at frame {} ({} vs {}); shifted by {shift:?} frames",
            i / 2,
            heard[i],
            played[i]
        );
    }
    // The first click of the demo (its first non-silent frame) is at the same frame in both.
    let first = |s: &[f32]| s.iter().position(|v| v.abs() > 1e-3).map(|i| i / 2);
    assert_eq!(first(&heard), first(&played));
    let side = dir.join("in.input.toml");
    assert_eq!(sidecar(&side, "frames"), 72_000);
    assert_eq!(sidecar(&side, "dropped_frames"), 0);
    assert_eq!(sidecar(&side, "first_sample"), 0);
}

#[test]
fn loopback_with_no_extra_latency_is_recorded_in_place() {
    loopback_records_the_output_at_the_same_frames("0", "256");
}

#[test]
fn loopback_with_3_ms_is_recorded_in_place() {
    loopback_records_the_output_at_the_same_frames("3", "128");
}

#[test]
fn loopback_with_21_3_ms_is_recorded_in_place() {
    loopback_records_the_output_at_the_same_frames("21.3", "512");
}

#[test]
fn a_file_played_into_the_null_input_is_recorded() {
    let dir = scratch("input-file");
    // Half a second of distinct values, with a click at frame 1000.
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(dir.join("voice.wav"), spec).unwrap();
    let value = |k: usize, c: usize| if k == 1000 { 1.0 } else { ((k * 7 + c * 3) % 1000) as f32 / 4000.0 - 0.125 };
    for k in 0..24_000 {
        w.write_sample(value(k, 0)).unwrap();
        w.write_sample(value(k, 1)).unwrap();
    }
    w.finalize().unwrap();
    let out = run_in(
        &dir,
        &["demo", "--audio", "null", "--seconds", "1", "--input", "file:voice.wav", "--record-input", "in.wav"],
    );
    assert_ok(&out);
    let (_, heard) = read_wav(&dir.join("in.wav"));
    assert_eq!(heard.len(), 48_000 * 2);
    // Input frame j is file frame j; it was heard with output frame j + offset.
    let offset = sidecar(&dir.join("in.input.toml"), "offset_frames");
    let at = |k: i64| k + offset;
    for k in 0..24_000i64 {
        let f = at(k);
        if (0..48_000).contains(&f) {
            let f = f as usize;
            assert_eq!(
                (heard[2 * f], heard[2 * f + 1]),
                (value(k as usize, 0), value(k as usize, 1)),
                "file frame {k}"
            );
        }
    }
    assert!((0..48_000).contains(&at(1000)), "the click (file frame 1000) is in the recording (offset {offset})");
    assert_eq!(heard[2 * at(1000) as usize], 1.0);
    // After the file: silence.
    assert!(heard[2 * (at(24_000).max(0) as usize)..].iter().all(|s| *s == 0.0));
}

#[test]
fn an_unknown_input_device_is_reported_and_the_node_plays_on() {
    let dir = scratch("input-unknown");
    // An earlier take at the path the failed input would have recorded to.
    let earlier = b"RIFF an earlier take, not to be truncated";
    std::fs::write(dir.join("earlier.wav"), earlier).unwrap();
    let out = run_in(
        &dir,
        &[
            "demo",
            "--audio",
            "null",
            "--seconds",
            "0.3",
            "--input",
            "no such microphone",
            "--record-input",
            "in.wav",
            "--capture",
            "out.wav",
        ],
    );
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("no audio input device named 'no such microphone'"), "{stderr}");
    assert!(stderr.contains("playing on without input (nothing is recorded to in.wav)"), "{stderr}");
    assert!(stdout.contains("played 0.3"), "the performance went on:\n{stdout}");
    assert!(!dir.join("in.wav").exists(), "an empty recording was left behind");
    assert!(!dir.join("in.input.toml").exists(), "a sidecar of nothing was left behind");
    let (_, played) = read_wav(&dir.join("out.wav"));
    assert_eq!(played.len(), 2 * 14_400);
    // The same with a file already at the path: it is kept as it was.
    let out = run_in(
        &dir,
        &[
            "demo",
            "--audio",
            "null",
            "--seconds",
            "0.1",
            "--input",
            "no such microphone",
            "--record-input",
            "earlier.wav",
        ],
    );
    assert_ok(&out);
    assert_eq!(std::fs::read(dir.join("earlier.wav")).unwrap(), earlier, "the earlier take was destroyed");
    assert!(!dir.join("earlier.input.toml").exists());
}

#[test]
fn a_missing_input_file_is_bad_input_and_an_unreadable_one_is_reported_and_the_node_plays_on() {
    let dir = scratch("input-missing-file");
    let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "0.2", "--input", "file:nope.wav"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
    assert!(texts(&out).1.contains("file:nope.wav: there is no such file"), "{}", texts(&out).1);
    std::fs::write(dir.join("nope.wav"), "not a WAV file").unwrap();
    let out = run_in(&dir, &["demo", "--audio", "null", "--seconds", "0.2", "--input", "file:nope.wav"]);
    assert_ok(&out);
    let (_, stderr) = texts(&out);
    assert!(
        stderr.contains("cannot play nope.wav into the null input") && stderr.contains("playing on without input"),
        "{stderr}"
    );
}

#[test]
fn a_bad_loopback_latency_is_bad_input() {
    let dir = scratch("input-bad-loopback");
    let out = run_in(&dir, &["demo", "--audio", "null", "--input", "loopback:soon"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
}

/// ALSA's `null` capture device delivers frames as fast as it is asked: the node must open it,
/// notice that it runs ahead of the clock, stop listening to it, and play on to the end.
#[test]
fn an_input_that_is_not_paced_in_real_time_is_stopped_and_the_node_plays_on() {
    let dir = scratch("input-unpaced");
    let (devices, _) = texts(&run_in(&dir, &["devices"]));
    if !devices.lines().any(|l| l.trim_start().starts_with("input ") && l.contains("[alsa:null]")) {
        let why = format!("`loophole-node devices` lists no [alsa:null] input (libasound2-data missing?):\n{devices}");
        skip_or_fail("an_input_that_is_not_paced_in_real_time_is_stopped_and_the_node_plays_on", &why);
        return;
    }
    let out = run_in(
        &dir,
        &["demo", "--audio", "null", "--seconds", "2.5", "--input", "alsa:null", "--record-input", "in.wav"],
    );
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    // The real path: the device was opened and listened to (not "playing on without input")...
    assert!(stderr.contains("loophole: listening to input device"), "the ALSA null input was not opened:\n{stderr}");
    assert!(!stderr.contains("playing on without input"), "{stderr}");
    // ...then found running ahead of the clock and stopped, once.
    let stopped: Vec<&str> = stderr.lines().filter(|l| l.contains("is not paced in real time")).collect();
    assert_eq!(stopped.len(), 1, "one unpaced-input notice:\n{stderr}");
    assert!(stopped[0].contains("s ahead of the clock); stopped listening to it"), "{}", stopped[0]);
    assert!(stdout.contains("played 2.5"), "the node played on to the end:\n{stdout}");
}

#[test]
fn the_silent_null_input_records_silence_aligned_with_the_output() {
    let dir = scratch("input-silence");
    let out = run_in(
        &dir,
        &["demo", "--audio", "null", "--seconds", "0.5", "--input", "silence", "--record-input", "in.wav"],
    );
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("input: ") && stdout.contains("dropped input frames 0"), "{stdout}");
    let (_, heard) = read_wav(&dir.join("in.wav"));
    assert_eq!(heard.len(), 24_000 * 2);
    assert!(heard.iter().all(|s| *s == 0.0));
    let side = dir.join("in.input.toml");
    assert_eq!(sidecar(&side, "frames"), 24_000);
    sidecar(&side, "offset_frames");
}

#[test]
fn an_input_that_fails_mid_set_is_followed_by_silence_on_the_same_timeline() {
    // The fault hook makes the input report `StreamInvalidated` through the same path as cpal's
    // error callback after 0.5 s of input, and deliver nothing more, as an unplugged device.
    let dir = scratch("input-fails");
    let args = [
        "demo",
        "--audio",
        "null",
        "--seconds",
        "1.5",
        "--capture",
        "out.wav",
        "--input",
        "loopback:3",
        "--record-input",
        "in.wav",
        "--log",
        "log.jsonl",
    ];
    let out = bin().current_dir(&dir).args(args).env("LOOPHOLE_TEST_INPUT_FAILS_AFTER", "0.5").output().unwrap();
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(
        stderr.contains("the null input (loopback, 3 ms) failed (StreamInvalidated")
            && stderr.contains("recording silence from the null input"),
        "{stderr}"
    );
    assert!(stdout.contains("played 1.5"), "the performance went on:\n{stdout}");
    let (_, played) = read_wav(&dir.join("out.wav"));
    let (_, heard) = read_wav(&dir.join("in.wav"));
    assert_eq!(heard.len(), played.len(), "the recording goes on to the end");
    let side = dir.join("in.input.toml");
    assert_eq!(sidecar(&side, "frames"), 72_000);
    assert_eq!(sidecar(&side, "input_failures"), 1);
    assert_eq!(sidecar(&side, "dropped_frames"), 0);
    assert_eq!(sidecar(&side, "realigned"), 0, "the offset held across the failover");
    let gap = sidecar(&side, "failover_silence_frames");
    assert!(gap > 0 && gap < 9_600, "the silence between the failed input and the null input: {gap}");
    // The failed input delivered its first 24064 frames (whole 256-frame blocks up to 0.5 s):
    // they are in the recording, bit for bit the capture at the same frames; after them, silence.
    let offset = sidecar(&side, "offset_frames");
    let until = (24_064 + offset) as usize;
    assert!(peak(&played[..2 * until]) > 0.01 && peak(&played[2 * until..]) > 0.01, "the demo plays throughout");
    if let Some(i) = (0..2 * until).find(|&i| played[i].to_bits() != heard[i].to_bits()) {
        panic!("before the failure, recording and capture differ at frame {}", i / 2);
    }
    assert!(heard[2 * until..].iter().all(|s| *s == 0.0), "after the failure the null input hears silence");
    // The summary and the log's final input record say so.
    assert!(
        stdout.contains("; input: recorded 72000 frames") && stdout.contains("failed (StreamInvalidated"),
        "{stdout}"
    );
    let log = read_log(&dir.join("log.jsonl"));
    let input = log.iter().rfind(|e| e["event"] == "input").expect("an input record");
    assert_eq!(input["recorded_frames"], 72_000);
    assert_eq!(input["failover_silence_frames"], gap);
    assert_eq!(input["offset_frames"], offset);
    assert!(input["failed"].as_str().is_some_and(|f| f.starts_with("StreamInvalidated")), "{input}");
}

#[test]
fn the_summary_and_the_log_carry_the_input_figures() {
    let dir = scratch("input-summary");
    let args = [
        "demo",
        "--audio",
        "null",
        "--seconds",
        "0.6",
        "--input",
        "loopback:2",
        "--record-input",
        "in.wav",
        "--log",
        "log.jsonl",
    ];
    let out = run_in(&dir, &args);
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    let side = dir.join("in.input.toml");
    let offset = sidecar(&side, "offset_frames");
    let status = stdout.lines().find(|l| l.starts_with("played ")).expect("the status line");
    assert!(
        status.contains(&format!("; input: recorded 28800 frames, offset {offset:+} frames (spread "))
            && status.contains("dropped 0, realigned 0"),
        "{status}"
    );
    let log = read_log(&dir.join("log.jsonl"));
    let last = log.last().expect("a log");
    assert_eq!(last["event"], "input", "the input record comes last: {last}");
    assert_eq!(last["recorded_frames"], 28_800);
    assert_eq!(last["offset_frames"], offset);
    assert_eq!(last["dropped_frames"], 0);
    assert_eq!(last["realigned"], 0);
    assert_eq!(last["failed"], serde_json::Value::Null);
    assert_eq!(last["file"], "in.wav");
    let spread = last["spread_frames"].as_array().expect("spread");
    assert!(spread.iter().all(|v| v.as_f64().is_some_and(|d| d.abs() <= 0.5)), "{last}");
}
