//! Loading a session under a memory budget: the peak memory of loading and preparing a set of
//! long files stays near the budget (a counting global allocator tracks the high-water mark of
//! live bytes), where the whole-file path needs all the decoded audio at once; the cache files,
//! heads and renders are bit-identical to the whole-file path's; a file that changes between
//! loading and preparing is a clear error naming the session line, never a panic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use loophole_engine::files::session::{LoadOptions, load_session, load_session_with};
use loophole_engine::media::stream::{self, StreamError};
use loophole_engine::model::{ClipContent, ClipId, Session};
use loophole_engine::pulse::{Action, PulseEvent};
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::script::{Script, ScriptAction};
use loophole_engine::time::Beats;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this binary run one at a time, so one's allocations do not count in another's peak.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result and the most heap it had live at once beyond what was live
/// before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

const MIB: usize = 1 << 20;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loophole-load-budget-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `seconds` of deterministic 16-bit stereo noise at 44.1 kHz (the engine runs at 48 kHz,
/// so every file is resampled), a block at a time.
fn write_noise(path: &Path, seconds: f64, seed: u32) {
    use std::io::Write;
    let samples = (seconds * 44_100.0) as usize * 2;
    let data = (samples * 2) as u32;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut header = Vec::new();
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&2u16.to_le_bytes()); // stereo
    header.extend_from_slice(&44_100u32.to_le_bytes());
    header.extend_from_slice(&(44_100u32 * 4).to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data.to_le_bytes());
    out.write_all(&header).unwrap();
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    for _ in 0..samples {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.write_all(&((x >> 18) as i16 - 8192).to_le_bytes()).unwrap();
    }
    out.flush().unwrap();
}

/// A session of `long` files (one per track) and one short `pad`.
fn write_set(dir: &Path, long: &[(&str, f64)], pad_seconds: f64) -> PathBuf {
    let mut toml = String::from("[session]\nname = \"Set\"\ntempo = 120\n");
    let mut clips = String::new();
    for (i, (id, seconds)) in long.iter().enumerate() {
        write_noise(&dir.join(format!("{id}.wav")), *seconds, i as u32 + 1);
        toml.push_str(&format!("\n[[track]]\nid = \"t{i}\"\nkind = \"audio\"\n"));
        clips
            .push_str(&format!("\n[[clip]]\nid = \"{id}\"\ntrack = \"t{i}\"\nfile = \"{id}.wav\"\nlength_beats = 8\n"));
    }
    write_noise(&dir.join("pad.wav"), pad_seconds, 99);
    toml.push_str("\n[[track]]\nid = \"p\"\nkind = \"audio\"\n");
    clips.push_str("\n[[clip]]\nid = \"pad\"\ntrack = \"p\"\nfile = \"pad.wav\"\nstart_offset_beats = 1\n");
    toml.push_str(&clips);
    let path = dir.join("set.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The whole stream cache file of a streamed clip.
fn cache_of(s: &Session, clip: usize) -> Vec<u8> {
    std::fs::read(s.clips[clip].stream.as_ref().expect("the clip streams").source.path()).unwrap()
}

fn audio_of(s: &Session, clip: usize) -> Arc<loophole_engine::model::AudioData> {
    let ClipContent::Audio(a) = &s.clips[clip].content else { panic!("audio clip") };
    a.clone()
}

#[test]
fn loading_long_files_under_a_budget_peaks_near_the_budget_not_at_the_set_size() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("peak");
    // Three 60 s stereo files (21 MiB each decoded at 44.1 kHz, 22 MiB at 48 kHz) and a 1 s pad.
    let path = write_set(&dir, &[("a", 60.0), ("b", 60.0), ("c", 60.0)], 1.0);
    let budget_mb = 1.0;
    let rate = 48_000;

    // Under the budget: the loader only probes the files, prepare converts them a chunk at a time.
    let ((budgeted, notes), peak) = peak_of(|| {
        let loaded =
            load_session_with(&path, LoadOptions { memory_budget_mb: Some(budget_mb), ..LoadOptions::default() })
                .unwrap();
        assert!(loaded.clips.iter().all(|c| c.deferred.is_some()), "nothing is decoded at load");
        assert!((0..loaded.clips.len()).all(|i| audio_of(&loaded, i).frames() == 0));
        assert_eq!(loaded.clips[0].length, Beats(8.0));
        assert_eq!(loaded.clips[3].length, Beats(2.0), "the pad's length comes from its header (1 s)");
        stream::prepare(&loaded, rate).unwrap()
    });
    assert_eq!(notes.iter().map(|n| n.clips.join(",")).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(budgeted.clips.iter().all(|c| c.deferred.is_none()));
    let pad = audio_of(&budgeted, 3);
    assert_eq!((pad.sample_rate, pad.frames()), (rate, 48_000), "the pad stays resident, at the engine's rate");
    // What may be live: the resident pad (0.4 MiB), three 2 s heads (0.7 MiB each) and the
    // working set of one conversion (about 2 MiB), with room for the rest of the session.
    let heads = 3 * 2 * rate as usize * 8;
    let bound = (budget_mb * MIB as f64) as usize + heads + 5 * MIB;
    eprintln!("peak while loading under a {budget_mb} MiB budget: {:.1} MiB (bound {:.1} MiB)", mib(peak), mib(bound));
    assert!(peak < bound, "peak {:.1} MiB while loading, bound {:.1} MiB", mib(peak), mib(bound));

    // The whole-file path (decode everything at load, apply the budget afterwards) gives the same
    // cache files, heads and resident audio, and needs far more memory: the test can tell.
    let ((whole, _), whole_peak) = peak_of(|| {
        let mut loaded = load_session(&path).unwrap();
        loaded.streaming.memory_budget_mb = Some(budget_mb);
        stream::prepare(&loaded, rate).unwrap()
    });
    eprintln!("peak of the whole-file path: {:.1} MiB", mib(whole_peak));
    assert!(whole_peak > 3 * bound, "the whole-file path peaks at {:.1} MiB", mib(whole_peak));
    for clip in 0..3 {
        assert_eq!(budgeted.clips[clip].stream.as_ref().unwrap().source.frames(), 60 * rate as u64);
        assert!(cache_of(&budgeted, clip) == cache_of(&whole, clip), "clip {clip}: cache files differ");
        assert_eq!(audio_of(&budgeted, clip), audio_of(&whole, clip), "clip {clip}: heads differ");
    }
    // The whole-file path leaves the resident pad at the file's rate for the engine to resample.
    let resampled = loophole_engine::media::resample::resample(&audio_of(&whole, 3), rate);
    assert_eq!(*pad, resampled, "the pad decoded at load time and resampled by the engine");
    drop((budgeted, whole));
    let _ = std::fs::remove_dir_all(&dir);
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

fn launch_at(beat: f64, clip: u32) -> ScriptAction {
    ScriptAction {
        beat: Beats(beat),
        action: Action::Launch {
            clip: ClipId(clip),
            quantise: Some(loophole_engine::time::Quantise::None),
            velocity: None,
        },
    }
}

fn render(s: Session, block: usize) -> (Vec<f32>, u64) {
    let script = Script { actions: vec![launch_at(0.0, 0), launch_at(0.0, 3), launch_at(1.0, 1), launch_at(3.0, 2)] };
    let mut r = Renderer::new(Arc::new(s), script, RenderConfig { sample_rate: 48_000, block, seconds: 4.0 }).unwrap();
    let (audio, events) = r.render_all();
    assert!(!events.iter().any(|e| matches!(e, PulseEvent::Refused { .. })), "{events:?}");
    (audio, r.signal().stream_underruns())
}

#[test]
fn a_set_loaded_under_a_budget_renders_bit_for_bit_as_the_whole_file_load() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("render");
    let path = write_set(&dir, &[("a", 5.0), ("b", 3.3), ("c", 4.1)], 1.0);
    let (want, _) = render(load_session(&path).unwrap(), 256);
    assert!(want.iter().any(|&x| x != 0.0));
    // 0: everything streams; 0.5: the pad (0.37 MiB at 48 kHz) is decoded resident by prepare.
    for budget in [0.0, 0.5] {
        let loaded =
            load_session_with(&path, LoadOptions { memory_budget_mb: Some(budget), ..LoadOptions::default() }).unwrap();
        let (prepared, notes) = stream::prepare(&loaded, 48_000).unwrap();
        assert_eq!(notes.len(), if budget == 0.0 { 4 } else { 3 });
        for block in [64, 1000] {
            let (got, underruns) = render(prepared.clone(), block);
            assert_eq!(underruns, 0);
            assert_eq!(got.len(), want.len());
            let first = got.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(first, None, "budget {budget}, block {block}: first differing sample");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_deferred_file_that_changes_before_prepare_is_a_clear_error_and_unprepared_sessions_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("changed");
    let path = write_set(&dir, &[("a", 2.0)], 1.0);
    let loaded =
        load_session_with(&path, LoadOptions { memory_budget_mb: Some(0.0), ..LoadOptions::default() }).unwrap();
    // Built without prepare, the engine refuses the session instead of playing silence.
    let e = Renderer::new(
        Arc::new(loaded.clone()),
        Script { actions: vec![] },
        RenderConfig { sample_rate: 48_000, block: 256, seconds: 1.0 },
    )
    .err()
    .expect("an unprepared session is refused");
    assert!(e.to_string().contains("not decoded yet"), "{e}");
    // The file is replaced by a shorter one after loading: prepare names the session line.
    write_noise(&dir.join("a.wav"), 1.0, 5);
    let e = stream::prepare(&loaded, 48_000).expect_err("a changed file is an error");
    assert!(matches!(e, StreamError::Audio { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("set.toml:") && text.contains("clip 'a'") && text.contains("changed"), "{text}");
    // A file that went away.
    std::fs::remove_file(dir.join("pad.wav")).unwrap();
    let loaded = load_session_with(&path, LoadOptions { memory_budget_mb: Some(0.0), ..LoadOptions::default() })
        .expect_err("missing file");
    assert!(loaded.to_string().contains("pad.wav"), "{loaded}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probing_under_a_budget_finds_every_bad_file_the_full_decode_finds_with_the_same_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("bad");
    let wav = |name: &str, channels: u16, rate: u32, bits: u16, frames: usize| {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.join(name), spec).unwrap();
        for i in 0..frames * channels as usize {
            w.write_sample((i % 100) as i32).unwrap();
        }
        w.finalize().unwrap();
    };
    wav("short16.wav", 2, 44_100, 16, 1000);
    wav("short24.wav", 2, 44_100, 24, 1000);
    wav("empty.wav", 2, 44_100, 16, 0);
    wav("slow.wav", 1, 500, 16, 100);
    for name in ["short16.wav", "short24.wav"] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        std::fs::write(dir.join(name), &bytes[..bytes.len() - 100]).unwrap();
    }
    std::fs::write(dir.join("corrupt.wav"), b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").unwrap();
    let session = dir.join("set.toml");
    for (file, phrase) in [
        ("short16.wav", "truncated"),
        ("short24.wav", "truncated"),
        ("empty.wav", "contains no audio"),
        ("slow.wav", "sample rate 500 Hz is not supported"),
        ("corrupt.wav", "not a readable WAV file"),
        ("missing.wav", "not found"),
        ("", "path is empty"),
    ] {
        let text = format!(
            "[session]\ntempo = 120\n\n[[track]]\nid = \"t\"\nkind = \"audio\"\n\n[[clip]]\nid = \"c\"\ntrack = \"t\"\n\
             file = \"{file}\"\n"
        );
        std::fs::write(&session, &text).unwrap();
        let whole = load_session(&session).expect_err("a bad file").to_string();
        let probed = load_session_with(&session, LoadOptions { memory_budget_mb: Some(1.0), ..LoadOptions::default() })
            .expect_err("a bad file under a budget")
            .to_string();
        assert!(whole.contains(phrase) && whole.contains("set.toml:11:8:"), "{file}: {whole}");
        assert_eq!(probed, whole, "{file}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
