//! Proves that the `--record-input` writer writes a long gap (here ten minutes of silence after an
//! input failure, the null input taking over) without a large allocation: silence goes out in
//! bounded chunks. A global allocator records the largest single allocation made on any thread
//! while the writer runs; before the fix the gap was one `Vec` of 230 MB.
//!
//! Alone in its test binary, so that no other test's allocations are seen.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use loophole_engine::EngineConfig;
use loophole_engine::model::Session;
use loophole_engine::time::{Bpm, TempoMap};
use loophole_node::audio::AudioCore;
use loophole_node::audio::input::InputCore;
use loophole_node::audio::record::{RecordConfig, Recorder, SILENCE_CHUNK};
use loophole_node::clock::{CallbackTiming, Transport};

struct Peak;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if ARMED.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// A file that keeps nothing but its length (the gap would be 230 MB on disk).
struct Discard {
    pos: u64,
    len: Arc<AtomicU64>,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pos += buf.len() as u64;
        self.len.fetch_max(self.pos, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.load(Ordering::Relaxed).saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

#[test]
fn ten_minutes_of_failover_silence_are_written_in_bounded_chunks() {
    // An output at 48 kHz whose sample 0 is heard at host time 1 s.
    let session = Arc::new(Session::new("empty", Bpm(120.0)));
    let (_p, signal) =
        loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 1024, queue_capacity: 16 })
            .unwrap();
    let transport = Transport::new();
    let mut core = AudioCore::new(signal, TempoMap::new(48_000, Bpm(120.0), 4.0), 0, transport.clone());
    let timing = CallbackTiming { late_us: 0.0, latency_us: 10_000.0, due_us: 990_000.0 };
    core.render_stereo_timed(&mut vec![0f32; 960], timing);

    let (mut icore, rx) = InputCore::new(48_000);
    let path = std::env::temp_dir().join(format!("loophole-record-gap-{}.wav", std::process::id()));
    let cfg = RecordConfig {
        path: Some(path.clone()),
        sample_rate: 48_000,
        first_sample: 0,
        beat: 0.0,
        limit: None,
        source: "test".into(),
    };
    let len = Arc::new(AtomicU64::new(0));
    let file = Discard { pos: 0, len: len.clone() };
    let rec = Recorder::start_with(cfg, rx, transport, move |_: &Path| Ok(file)).unwrap();
    let us = 1e6 / 48_000.0;
    let blocks: Vec<Vec<f32>> = (0..40).map(|_| vec![0.5f32; 200]).collect();
    ARMED.store(true, Ordering::SeqCst);
    for (k, b) in blocks[..20].iter().enumerate() {
        icore.push(b, 2, 1_002_500.0 + (k * 100) as f64 * us, 0.0);
    }
    // The input fails; the null input's first block comes ten minutes after the failed one's end.
    icore.resume_after_failure();
    let gap = 600 * 48_000u64;
    for (k, b) in blocks[20..].iter().enumerate() {
        icore.push(b, 2, 1_002_500.0 + (2000 + gap as usize + k * 100) as f64 * us, 0.0);
    }
    let s = rec.finish();
    ARMED.store(false, Ordering::SeqCst);
    let s = s.unwrap();
    assert_eq!((s.offset, s.failover_silence, s.write_error), (Some(120), gap, None));
    assert_eq!(s.frames, 120 + 2000 + gap + 2000);
    assert_eq!(len.load(Ordering::Relaxed), 58 + 8 * s.frames, "every frame reached the file");
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= 256 * 1024,
        "the largest allocation while recording was {largest} bytes (silence chunks are {} bytes)",
        SILENCE_CHUNK * 8
    );
    let side = loophole_node::audio::record::sidecar_path(&path);
    let text = std::fs::read_to_string(&side).unwrap();
    assert!(text.contains(&format!("failover_silence_frames = {gap}\n")), "{text}");
    std::fs::remove_file(&side).unwrap();
}
