//! The kill test: a render recording a sequence-coded input is killed with SIGKILL at varied
//! moments, 20 times (`LOOPHOLE_KILL_SOAK=N` for N kills). After each kill `takes` repairs the
//! take, the file opens as a WAV file, and every frame in it is the input's frame on that
//! sample: nothing torn, nothing out of order, nothing recorded ever lost once it was synced.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const SET: &str = r#"
[session]
tempo = 120

[[track]]
id = "mic"
kind = "audio"
input = "mic"
channels = [1, 2]
"#;

const PERF: &str =
    "[[at]]\nbeat = 0\ncommand = \"record.arm mic\"\n\n[[at]]\nbeat = 0\ncommand = \"record.start quantise=none\"\n";

/// Input frame i: left (i + 1) / 2^24 (exact), right its negation; 10 s, then silence.
const INPUT_FRAMES: usize = 480_000;

fn expected(i: usize) -> [f32; 2] {
    if i < INPUT_FRAMES {
        let x = (i + 1) as f32 / 16_777_216.0;
        [x, -x]
    } else {
        [0.0, 0.0]
    }
}

fn write_input(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..INPUT_FRAMES {
        let [l, r] = expected(i);
        w.write_sample(l).unwrap();
        w.write_sample(r).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn a_take_killed_at_any_moment_opens_with_every_frame_intact() {
    let kills: usize = std::env::var("LOOPHOLE_KILL_SOAK").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = scratch("record-kill");
    write_input(&dir.join("in.wav"));
    std::fs::write(dir.join("perf.toml"), PERF).unwrap();
    let mut seed = 0x9e37_79b9_u64;
    let mut recovered = 0;
    for k in 0..kills {
        let run = dir.join(format!("run{k}"));
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("set.toml"), SET).unwrap();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let wait = Duration::from_millis(100 + (seed >> 33) % 2400);
        let mut child = bin()
            .current_dir(&run)
            .args(["render", "set.toml", "--script", "../perf.toml", "--input", "mic=file:../in.wav"])
            .args(["--seconds", "3000", "--out", "out.wav", "--block", "512"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lived = started.elapsed();
        let take = run.join("takes/mic-take-1.wav");
        if !take.exists() {
            continue; // killed before the take began
        }
        let out = run_in(&run, &["takes"]);
        assert_ok(&out);
        // `repaired takes/mic-take-1.wav: N frames (its header said M, as of its last sync)`
        let (stdout, _) = texts(&out);
        let number = |after: &str| -> u64 {
            let i = stdout.find(after).unwrap_or_else(|| panic!("kill {k}: no '{after}' in {stdout}")) + after.len();
            stdout[i..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        let (frames, synced) = (number(".wav: "), number("header said "));
        assert!(frames >= synced, "kill {k}: the repair lost synced frames ({frames} < {synced})");
        if lived > Duration::from_millis(2200) {
            // The writer syncs every second: a take alive for over two seconds was synced.
            assert!(synced > 0, "kill {k} after {lived:?}: the header was never synced");
        }
        let (_, samples) = read_wav(&take);
        assert_eq!(samples.len() as u64, frames * 2, "kill {k}");
        for (i, f) in samples.chunks(2).enumerate() {
            assert_eq!(f, expected(i), "kill {k} after {lived:?}: frame {i}");
        }
        if !samples.is_empty() {
            recovered += 1;
        }
        let _ = std::fs::remove_dir_all(&run);
    }
    assert!(recovered * 2 >= kills, "only {recovered} of {kills} kills left frames: the takes were not synced");
}
