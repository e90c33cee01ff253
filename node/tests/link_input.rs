//! Input alignment under Ableton Link: a node playing a click session on the null device, joined
//! to the reference peer's session (each in its own network namespace, as in `link_plan.rs`),
//! listens to its own output through the loopback input and records it with `--record-input`.
//! The recording must be its capture, bit for bit, at the same frames, through the join (the
//! node waits for the session's next bar) and a tempo change from the peer.
//!
//! Exact, not within a frame: the recorder places input frames on the output's heard times on
//! the node's host clock, which the output core publishes with Link too (`local_us`), so
//! Link's filtered clock, and the jitter of bridging to it, play no part. A recording one frame
//! off differs from the capture at the first click, so an error of 2 frames or more fails.
//!
//! Needs root and `ip netns`: without them it fails under CI (`CI=true`) and is skipped, loudly,
//! elsewhere (`common::skip_or_fail`).

mod common;
mod link_support;

use std::io::Write as _;
use std::path::Path;

use link_support::*;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Interleaved stereo samples of a float WAV file.
fn samples(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    r.samples::<f32>().collect::<Result<_, _>>().expect("float samples")
}

/// A key of the recording's sidecar.
fn sidecar(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key}: {text}"));
    line.split(" = ").nth(1).unwrap().split('#').next().unwrap().trim().to_string()
}

/// Runs the node with `loopback:ms` and `buffer`-frame blocks against the playing peer and
/// checks the recording against the capture.
fn run(rig: &Rig, peer: &mut Peer, dir: &Path, name: &str, ms: &str, buffer: &str) {
    let input = format!("loopback:{ms}");
    let rec = format!("{name}.in.wav");
    let extra = ["--seconds", "4", "--buffer", buffer, "--input", &input, "--record-input", &rec];
    let mut node = node(name, &rig.ns[1], dir, "click.toml", name, &extra);
    node.expect(0, secs(3.0), "peer", |l| l.contains("link: 1 peer"));
    node.expect(0, secs(4.0), "first trigger", |l| l.contains("click: start"));
    std::thread::sleep(secs(0.8));
    // A tempo change from the peer: the beat moves faster, the samples' host times do not.
    peer.send("tempo 137");
    node.expect(0, secs(3.0), "the peer's tempo", |l| l.contains("link: tempo 137.00 BPM"));
    node.finish_ok(secs(30.0));
    let err = node.errors().join("\n");
    assert!(err.contains("joined a session of 1 peer(s)"), "{name}: the node did not join the session:\n{err}");
    assert!(err.contains("listening to the null input (loopback"), "{err}");

    let played = samples(&dir.join(format!("{name}.wav")));
    let heard = samples(&dir.join(&rec));
    let side = dir.join(format!("{name}.in.input.toml"));
    let offset: i64 = sidecar(&side, "offset_frames").parse().unwrap();
    let spread = sidecar(&side, "offset_spread_frames");
    report(&format!(
        "link input {name} (loopback:{ms}, {buffer}-frame blocks): offset {offset} frames, spread {spread}, {} frames",
        played.len() / 2
    ));
    assert_eq!(heard.len(), played.len(), "{name}: the recording is as long as the capture");
    let clicks = onsets(&played.iter().step_by(2).copied().collect::<Vec<_>>());
    assert!(clicks.len() >= 12, "{name}: too few clicks in the capture: {}", clicks.len());
    if let Some(i) = (0..played.len()).find(|&i| played[i].to_bits() != heard[i].to_bits()) {
        let shift = (-8i64..=8).find(|s| {
            clicks.iter().all(|&k| {
                let j = k as i64 + s;
                j >= 0 && (j as usize) < heard.len() / 2 && heard[2 * j as usize].to_bits() == played[2 * k].to_bits()
            })
        });
        panic!(
            "{name}: recording and capture differ first at frame {} ({} vs {}); the clicks are shifted by {shift:?} frames",
            i / 2,
            heard[i],
            played[i]
        );
    }
    assert_eq!(sidecar(&side, "dropped_frames"), "0", "{name}");
    assert_eq!(sidecar(&side, "realigned"), "0", "{name}");
    let log = read_log(&dir.join(format!("{name}.jsonl")));
    let input = log.iter().rfind(|e| e["event"] == "input").expect("the input record");
    assert_eq!(input["offset_frames"].as_i64(), Some(offset), "{input}");
    assert_eq!(input["recorded_frames"].as_u64(), Some(played.len() as u64 / 2), "{input}");
}

#[test]
fn the_input_recorded_under_link_is_the_output_at_the_same_frames() {
    let _serial = serial();
    let Some(rig) = Rig::or_skip(2, "link input alignment") else { return };
    let dir = scratch("link-input");
    click_session(&dir, "click", 120.0, 0.25);
    let mut peer = Peer::start("peer", &rig.ns[0], &dir, &["--tempo", "120", "--play", "--every", "0"]);
    std::thread::sleep(secs(1.0));
    // 3 ms is 144 frames; 21.3 ms is 1022.4 frames, and the null input's deadlines fall anywhere
    // between the output's, so the true offset has a fraction of a frame: it is rounded the same
    // way as the loopback cable rounds it.
    run(&rig, &mut peer, &dir, "a", "3", "256");
    peer.send("tempo 120");
    run(&rig, &mut peer, &dir, "b", "21.3", "128");
}
