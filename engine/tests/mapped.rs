//! Offline renders read 32-bit float WAV files in place (`LoadOptions::map_audio`): such a render
//! is bit-identical to the render of the same files decoded into memory, whatever the file's
//! layout (stereo or mono, a sox-style header that leaves the samples at an offset that is not a
//! multiple of 4, non-finite samples, another rate than the render's) and whatever the
//! performance does with them (loops, start offsets, one-shots that run past the file's end,
//! crossfades, legato, stops with fades, block sizes). The loader only probes such files
//! (`Deferral::InPlace`); the offline build maps them and Signal converts them in place with the
//! decoder's own conversion. A live engine (`build`) decodes them instead, with the same samples.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use loophole_engine::files::session::{LoadOptions, load_session_with};
use loophole_engine::model::{Deferral, Session};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::Script;
use loophole_engine::time::SimClock;
use loophole_engine::{EngineConfig, build};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loophole-mapped-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn noise(samples: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..samples)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * 0.5
        })
        .collect()
}

/// A float WAV as sox writes it: an 18-byte `WAVEFORMATEX` and a `fact` chunk, so the samples
/// start at byte 58, not a multiple of 4.
fn write_sox_float(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let data = (samples.len() * 4) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(data + 50).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 4 * channels as u32).to_le_bytes());
    b.extend_from_slice(&(4 * channels).to_le_bytes());
    b.extend_from_slice(&32u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(b"fact");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&(samples.len() as u32 / channels as u32).to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    assert_eq!(b.len(), 58);
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

fn write_hound(path: &Path, rate: u32, channels: u16, float: bool, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: if float { 32 } else { 16 },
        sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        if float {
            w.write_sample(s).unwrap();
        } else {
            w.write_sample((s * 32_000.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

const SESSION: &str = r#"
[session]
name = "mapped"
tempo = 120
beats_per_bar = 4
crossfade_ms = 5.0

[[track]]
id = "a"
kind = "audio"
[[track]]
id = "b"
kind = "audio"
[[track]]
id = "c"
kind = "audio"
[[track]]
id = "d"
kind = "audio"
[[track]]
id = "e"
kind = "audio"

[[clip]]
id = "loop"
track = "a"
file = "stereo.wav"
length_beats = 2.5

[[clip]]
id = "loop-offset"
track = "a"
file = "stereo.wav"
start_offset_beats = 1.25
length_beats = 3
gain_db = -4.5
legato = true

[[clip]]
id = "shot"
track = "b"
file = "mono.wav"
loop = false
length_beats = 6

[[clip]]
id = "other-rate"
track = "c"
file = "44k.wav"

[[clip]]
id = "int"
track = "d"
file = "int16.wav"

[[clip]]
id = "hound"
track = "e"
file = "hound.wav"
length_beats = 1.75

[[scene]]
id = "all"
clips = ["loop", "shot", "other-rate", "int", "hound"]
"#;

const SCRIPT: &str = r#"
[[at]]
beat = 0
scene = "all"
quantise = "none"

[[at]]
beat = 3.3
launch = "loop-offset"
quantise = "none"

[[at]]
beat = 5.1
launch = "loop"
quantise = "none"
behaviour = "legato"

[[at]]
beat = 6.6
launch = "shot"
quantise = "none"

[[at]]
beat = 9.2
stop = "e"
mode = "fade-out"
fade_beats = 0.7

[[at]]
beat = 10
stop = "a"
"#;

/// Writes the session, its files and its script; returns the session file.
fn write_set(dir: &Path) -> PathBuf {
    let mut stereo = noise(48_000 * 3 * 2, 1);
    // Non-finite samples become silence, subnormals stay as they are (Signal flushes them).
    stereo[1000] = f32::NAN;
    stereo[1001] = f32::INFINITY;
    stereo[48_000 * 2 + 7] = f32::NEG_INFINITY;
    stereo[5000] = f32::MIN_POSITIVE / 8.0;
    write_sox_float(&dir.join("stereo.wav"), 48_000, 2, &stereo);
    write_sox_float(&dir.join("mono.wav"), 48_000, 1, &noise(48_000 * 2, 2));
    write_sox_float(&dir.join("44k.wav"), 44_100, 2, &noise(44_100 * 2 * 2, 3));
    write_hound(&dir.join("int16.wav"), 48_000, 2, false, &noise(48_000 * 2, 4));
    write_hound(&dir.join("hound.wav"), 48_000, 2, true, &noise(48_000 * 2 * 2, 5));
    std::fs::write(dir.join("set.toml"), SESSION).unwrap();
    std::fs::write(dir.join("perf.toml"), SCRIPT).unwrap();
    dir.join("set.toml")
}

fn load(path: &Path, map_audio: bool, decode_threads: Option<usize>) -> Session {
    load_session_with(path, LoadOptions { map_audio, decode_threads, ..LoadOptions::default() }).unwrap()
}

fn render(session: &Session, script: &Path, rate: u32, block: usize) -> Vec<f32> {
    let script = Script::load(script, session).unwrap();
    let mut r =
        Renderer::new(Arc::new(session.clone()), script, RenderConfig { sample_rate: rate, block, seconds: 7.0 })
            .unwrap();
    let (audio, _) = r.render_all();
    assert!(r.errors().is_empty(), "{:?}", r.errors());
    audio
}

fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
}

#[test]
fn a_render_of_mapped_float_files_is_bit_identical_to_the_decoded_render() {
    let dir = scratch("renders");
    let set = write_set(&dir);
    let script = dir.join("perf.toml");
    let decoded = load(&set, false, None);
    let mapped = load(&set, true, Some(1));
    // The float files are left to be read in place (their clips hold no decoded frames); the
    // 16-bit one is decoded.
    let is_mapped: Vec<bool> =
        mapped.clips.iter().map(|c| c.deferred.as_ref().is_some_and(|d| d.deferral == Deferral::InPlace)).collect();
    assert_eq!(is_mapped, [true, true, true, true, false, true], "loop, loop-offset, shot, other-rate, int, hound");
    assert!(decoded.clips.iter().all(|c| c.deferred.is_none()));
    // Two threads map and decode the same.
    let two = load(&set, true, Some(2));
    assert_eq!(two.clips.iter().filter(|c| c.deferred.is_some()).count(), 5);
    for (rate, block) in [(48_000, 256), (48_000, 1), (48_000, 1000), (44_100, 512)] {
        let want = render(&decoded, &script, rate, block);
        assert!(want.iter().any(|&s| s != 0.0));
        let got = render(&mapped, &script, rate, block);
        assert_eq!(first_difference(&got, &want), None, "{rate} Hz, block {block}");
        if block == 256 {
            assert_eq!(first_difference(&render(&two, &script, rate, block), &want), None);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_live_engine_decodes_mapped_files_into_the_same_samples() {
    let dir = scratch("live");
    let set = write_set(&dir);
    let decoded = load(&set, false, None);
    let mapped = load(&set, true, None);
    let config = EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 64 };
    let clock = SimClock { sample_rate: 48_000, tempo: loophole_engine::time::Bpm(120.0), quantum: 4.0 };
    let play = |s: &Session| {
        let (mut pulse, mut signal) = build(Arc::new(s.clone()), &config).unwrap();
        let scene = loophole_engine::pulse::Action::LaunchScene {
            scene: loophole_engine::model::SceneId(0),
            quantise: Some(loophole_engine::time::Quantise::None),
        };
        pulse.press(scene, loophole_engine::time::Beats(0.0)).unwrap();
        let mut out = vec![0f32; 48_000 * 2 * 2];
        for (k, chunk) in out.chunks_mut(512).enumerate() {
            let c = clock.block(k as i64 * 256, 256);
            pulse.tick(c.beat_at_first_sample, c.end_beat()).unwrap();
            signal.process(&c, chunk);
        }
        out
    };
    let want = play(&decoded);
    assert!(want.iter().any(|&s| s != 0.0));
    assert_eq!(first_difference(&play(&mapped), &want), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_float_file_that_is_cut_short_is_not_mapped_and_reports_the_decode_error() {
    let dir = scratch("short");
    let set = write_set(&dir);
    let bytes = std::fs::read(dir.join("stereo.wav")).unwrap();
    // 1000 bytes short fails the header's size check; 3 bytes short passes it (the header's own
    // bytes count towards the file's size) and fails while the samples are read.
    for cut in [1000, 3] {
        std::fs::write(dir.join("stereo.wav"), &bytes[..bytes.len() - cut]).unwrap();
        let mapped = load_session_with(&set, LoadOptions { map_audio: true, ..LoadOptions::default() }).unwrap_err();
        let decoded = load_session_with(&set, LoadOptions::default()).unwrap_err();
        assert_eq!(mapped.to_string(), decoded.to_string());
        assert!(mapped.to_string().contains("truncated"), "{mapped}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_float_file_that_changes_after_loading_is_a_clear_error_when_the_engine_is_built() {
    let dir = scratch("changed");
    let set = write_set(&dir);
    let loaded = load(&set, true, None);
    write_sox_float(&dir.join("stereo.wav"), 48_000, 2, &noise(48_000 * 2, 9));
    let config = RenderConfig { sample_rate: 48_000, block: 256, seconds: 1.0 };
    let offline = Renderer::new(Arc::new(loaded.clone()), Script::empty(), config).err().expect("a changed file");
    let live = build(Arc::new(loaded), &EngineConfig::default()).err().expect("a changed file");
    for e in [offline.to_string(), live.to_string()] {
        assert!(e.contains("set.toml:") && e.contains("clip 'loop'") && e.contains("changed"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
