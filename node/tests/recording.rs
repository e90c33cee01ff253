//! `render --input NAME=SOURCE` records the armed tracks into takes, on the beat and sample for
//! sample, writes them into the session file, and the next render plays them back; `takes`
//! repairs a take a kill cut off; bad inputs are refused with exit code 2.

mod common;

use std::path::Path;

use common::*;

const SET: &str = r#"
[session]
tempo = 120

[[track]]
id = "bed"
kind = "audio"

[[track]]
id = "mic"
kind = "audio"
input = "mic"
channels = [2]

[[clip]]
id = "pad"  # a comment that stays
track = "bed"
file = "in.wav"
length_beats = 4

[[scene]]
id = "one"
clips = ["pad"]

[[scene]]
id = "two"
"#;

const PERF: &str = r#"
[[at]]
beat = 0
command = "record.arm mic"

[[at]]
beat = 1
command = "record.start"

[[at]]
beat = 9
command = "record.stop"

[[at]]
beat = 13
command = "clip.record mic two bars=1"
"#;

/// 20 s of sequence-coded stereo at 48 kHz: right channel frame i = -(i + 1) / 2^20.
fn coded(i: usize) -> f32 {
    -((i + 1) as f32) / 1_048_576.0
}

fn write_input(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..48_000 * 20 {
        w.write_sample(0.1f32).unwrap();
        w.write_sample(coded(i)).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn a_render_records_takes_into_the_set_and_the_next_render_plays_them() {
    let dir = scratch("recording");
    write_input(&dir.join("in.wav"));
    std::fs::write(dir.join("set.toml"), SET).unwrap();
    std::fs::write(dir.join("perf.toml"), PERF).unwrap();
    let out = run_in(
        &dir,
        &[
            "render",
            "set.toml",
            "--script",
            "perf.toml",
            "--input",
            "mic=file:in.wav",
            "--out",
            "out.wav",
            "--log",
            "log.jsonl",
            "--block",
            "1000",
        ],
    );
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("recorded 2 takes"), "{stdout}");
    // Take 1: beats 4..12 = frames 96000..288000 of the input's second channel, mono.
    let (spec, take) = read_wav(&dir.join("takes/mic-take-1.wav"));
    assert_eq!(spec.channels, 1);
    assert_eq!(take.len(), 192_000);
    for (k, x) in take.iter().enumerate() {
        assert_eq!(*x, coded(96_000 + k), "take 1 frame {k}");
    }
    // Take 2: one bar into scene two's slot, beats 16..20.
    let (_, take2) = read_wav(&dir.join("takes/mic-take-2.wav"));
    assert_eq!(take2.len(), 96_000);
    assert_eq!((take2[0], take2[95_999]), (coded(384_000), coded(479_999)));
    assert!(!dir.join("takes/mic-take-1.wav.recording").exists());
    // The log.
    let log = read_log(&dir.join("log.jsonl"));
    let created: Vec<&serde_json::Value> = log.iter().filter(|e| e["event"] == "record.takeCreated").collect();
    assert_eq!(created.len(), 2);
    assert_eq!((created[0]["start_sample"].as_i64(), created[0]["stop_beat"].as_f64()), (Some(96_000), Some(12.0)));
    assert_eq!(created[1]["slot"], "two");
    let starts = log.iter().filter(|e| e["event"] == "trigger" && e["kind"] == "record-start").count();
    assert_eq!(starts, 2);
    // The set: two new clips, scene two holds the slot take, the rest byte for byte.
    let set = std::fs::read_to_string(dir.join("set.toml")).unwrap();
    assert!(set.starts_with(&SET[..SET.find("[[scene]]\nid = \"two\"").unwrap()]), "{set}");
    assert!(set.contains("id = \"two\"\nclips = [\"mic-take-2\"]"), "{set}");
    assert!(set.contains("file = \"takes/mic-take-1.wav\"\nlength_beats = 8.0"), "{set}");
    // The next render plays take 1 back, sample for sample (after the declick fade-in).
    std::fs::write(dir.join("play.toml"), "[[at]]\nbeat = 0\nlaunch = \"mic-take-1\"\nquantise = \"none\"\n").unwrap();
    let out = run_in(&dir, &["render", "set.toml", "--script", "play.toml", "--seconds", "3", "--out", "back.wav"]);
    assert_ok(&out);
    let (_, back) = read_wav(&dir.join("back.wav"));
    for k in 1000..144_000 {
        assert_eq!([back[2 * k], back[2 * k + 1]], [take[k], take[k]], "played back frame {k}");
    }
    // Recording again names the takes after the ones the set has.
    let out = run_in(
        &dir,
        &["render", "set.toml", "--script", "perf.toml", "--input", "silence", "--out", "out2.wav", "--seconds", "7"],
    );
    assert_ok(&out);
    assert!(dir.join("takes/mic-take-3.wav").exists());
}

#[test]
fn takes_repairs_a_take_a_kill_cut_off() {
    use loophole_engine::record::repair::{Marker, marker_of};
    use loophole_engine::record::wav::TakeWav;
    let dir = scratch("takes-repair");
    let takes = dir.join("takes");
    std::fs::create_dir_all(&takes).unwrap();
    let file = takes.join("mic-take-1.wav");
    let m = Marker { channels: 1, sample_rate: 48_000, track: "mic".into(), beat: 4.0 };
    std::fs::write(marker_of(&file), m.to_text()).unwrap();
    let mut w = TakeWav::create(&file, 1, 48_000).unwrap();
    let x: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
    w.write(&x[..48_000]).unwrap();
    w.sync().unwrap();
    w.write(&x[48_000..]).unwrap();
    drop(w); // a kill: the header says 48000 frames, the file holds more
    let out = run_in(&dir, &["takes"]);
    assert_ok(&out);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("repaired") && stdout.contains("header said 48000"), "{stdout}");
    assert!(stdout.contains("1 take in takes, 1 repaired"), "{stdout}");
    let (_, back) = read_wav(&file);
    assert!(back.len() >= 48_000);
    assert_eq!(back[..], x[..back.len()]);
    assert!(!marker_of(&file).exists());
    let out = run_in(&dir, &["takes", "--takes-dir", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_inputs_are_refused() {
    let dir = scratch("recording-bad");
    std::fs::write(
        dir.join("set.toml"),
        SET.replace("file = \"in.wav\"", "notes = []")
            .replace("kind = \"audio\"\n\n[[track]]", "kind = \"midi\"\n\n[[track]]"),
    )
    .unwrap();
    for (input, needle) in [
        ("mic=file:missing.wav", "no such file"),
        ("drums=silence", "no track records from input 'drums'"),
        ("mic=loopback:5", "file:PATH.wav or silence"),
        ("=silence", "NAME=SOURCE"),
    ] {
        let out = run_in(&dir, &["render", "set.toml", "--input", input, "--out", "x.wav", "--seconds", "1"]);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{input}: {stderr}");
        assert!(stderr.contains(needle), "{input}: {stderr}");
        assert_no_panic(&out);
    }
}
