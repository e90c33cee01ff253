//! Disk streaming under a memory budget, end to end: a live `play` on the null device of a
//! session whose clips exceed a tiny budget captures exactly the fully resident `render`; a
//! start that cannot be ready in time is refused ahead (terminal and `--log`) while the rest
//! plays; a missing file is still a clear load error.

mod common;

use std::path::Path;

use common::*;

/// Writes `seconds` of deterministic 16-bit stereo noise at 44.1 kHz (the engine runs at 48 kHz,
/// so streamed clips are resampled).
fn write_noise(path: &Path, seconds: f64, seed: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    for _ in 0..(seconds * 44_100.0) as usize * 2 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        w.write_sample((x >> 18) as i16 - 8192).unwrap();
    }
    w.finalize().unwrap();
}

const SESSION: &str = r#"
[session]
name = "Streams"
tempo = 120
stream_head_s = 0.5

[[track]]
id = "a"
kind = "audio"

[[track]]
id = "b"
kind = "audio"

[[clip]]
id = "long"
track = "a"
file = "long.wav"
length_beats = 8

[[clip]]
id = "other"
track = "a"
file = "other.wav"
length_beats = 8
legato = true

[[clip]]
id = "pad"
track = "b"
file = "pad.wav"
length_beats = 4
start_offset_beats = 1
"#;

/// `other` lands legato on beat 6, 3 s into it (pre-warmed); the unquantised legato press at
/// beat 9 would start it 1 s in at once, outside its 0.5 s head: refused.
const SCRIPT: &str = r#"
[[at]]
beat = 0
launch = "long"
quantise = "none"

[[at]]
beat = 0
launch = "pad"
quantise = "none"

[[at]]
beat = 5.5
launch = "other"
quantise = "beat"

[[at]]
beat = 7
launch = "long"
quantise = "none"

[[at]]
beat = 9
launch = "other"
quantise = "none"
"#;

fn setup(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    write_noise(&dir.join("long.wav"), 6.0, 1);
    write_noise(&dir.join("other.wav"), 5.0, 2);
    write_noise(&dir.join("pad.wav"), 3.0, 3);
    std::fs::write(dir.join("s.toml"), SESSION).unwrap();
    std::fs::write(dir.join("perf.toml"), SCRIPT).unwrap();
    // The same performance without the press that is refused.
    let cut = SCRIPT.rfind("[[at]]").unwrap();
    std::fs::write(dir.join("accepted.toml"), &SCRIPT[..cut]).unwrap();
    dir
}

fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    (0..a.len().min(b.len())).find(|&i| a[i].to_bits() != b[i].to_bits())
}

#[test]
fn live_play_of_streamed_clips_captures_the_resident_render_bit_for_bit() {
    let dir = setup("stream-live");
    // 1.2 MiB: `pad` (3 s, 1.1 MiB at 48 kHz) stays resident, `long` and `other` stream.
    let out = run_in(
        &dir,
        &[
            "play",
            "s.toml",
            "--script",
            "perf.toml",
            "--no-link",
            "--audio",
            "null",
            "--seconds",
            "6",
            "--capture",
            "live.wav",
            "--log",
            "live.jsonl",
            "--memory-budget",
            "1.2",
        ],
    );
    assert_ok(&out);
    let (stdout, stderr) = texts(&out);
    assert!(stderr.contains("streaming from disk: clip 'long'"), "{stderr}");
    assert!(stderr.contains("streaming from disk: clip 'other'"), "{stderr}");
    assert!(!stderr.contains("clip 'pad'"), "pad fits the budget:\n{stderr}");
    assert!(stdout.contains("stream underruns 0 frames"), "{stdout}");
    assert!(stderr.contains("a: refused other: it starts outside its in-memory head"), "{stderr}");
    let log = read_log(&dir.join("live.jsonl"));
    let refused: Vec<_> = log.iter().filter(|e| e["event"] == "refused").collect();
    assert_eq!(refused.len(), 1, "{log:?}");
    assert_eq!((refused[0]["clip"].as_str(), refused[0]["target"].as_f64()), (Some("other"), Some(9.0)));
    // The others still play: `long` restarted at beat 7 and is still on at the end.
    let starts = log.iter().filter(|e| e["event"] == "trigger").count();
    assert_eq!(starts, 4, "{log:?}");

    // The fully resident render (no budget; without the refused press) and the render with every
    // clip streamed are the same audio.
    let render = |script: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["render", "s.toml", "--script", script, "--seconds", "6", "--out", out];
        args.extend_from_slice(extra);
        assert_ok(&run_in(&dir, &args));
        read_wav(&dir.join(out)).1
    };
    let resident = render("accepted.toml", "resident.wav", &[]);
    let streamed = render("perf.toml", "streamed.wav", &["--memory-budget", "0"]);
    assert!(peak(&resident) > 0.05);
    assert_eq!(first_difference(&streamed, &resident), None, "streamed render differs");
    let (_, live) = read_wav(&dir.join("live.wav"));
    assert!(live.len() >= resident.len() - 8 * 256, "captured {} samples", live.len());
    if let Some(i) = first_difference(&live, &resident) {
        panic!("capture and resident render differ first at frame {} ({} vs {})", i / 2, live[i], resident[i]);
    }
}

#[test]
fn budget_errors_are_clear() {
    let dir = setup("stream-errors");
    let out = run_in(&dir, &["render", "s.toml", "--seconds", "1", "--out", "x.wav", "--memory-budget=-3"]);
    assert_eq!(out.status.code(), Some(2));
    assert_no_panic(&out);
    assert!(texts(&out).1.contains("--memory-budget -3: give 0 MiB or more"), "{}", texts(&out).1);
    std::fs::write(dir.join("bad.toml"), SESSION.replace("stream_head_s = 0.5", "stream_head_s = 0.1")).unwrap();
    let out = run_in(&dir, &["render", "bad.toml", "--seconds", "1", "--out", "x.wav"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("bad.toml:5"), "{}", texts(&out).1);
    // A missing streamed file is the ordinary load error, with its line.
    std::fs::remove_file(dir.join("long.wav")).unwrap();
    let out = run_in(&dir, &["render", "s.toml", "--seconds", "1", "--out", "x.wav", "--memory-budget", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert_no_panic(&out);
    assert!(texts(&out).1.contains("long.wav"), "{}", texts(&out).1);
}
