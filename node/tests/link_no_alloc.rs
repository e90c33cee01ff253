//! Proves that the Link path of the audio callback never allocates or frees, on the Rust side
//! and on Link's C++ side: `capture_audio_session_state` into a preallocated session state,
//! `commit_audio_session_state`, `clock_micros`, `num_peers`, the host-time filter, requests
//! (tempo, stop, start), scene tempo and time-signature changes (held until their beat, the
//! callback cut there), the transport gate, the engine swap and the timing sidecar ring.
//!
//! Two counters, both counting only on the thread inside the callback: a Rust global allocator,
//! and `malloc` / `calloc` / `realloc` / `free` interposed in this test binary (C++ `operator
//! new` and `delete` end there), forwarding to glibc's `__libc_*` functions.
//!
//! Link stays disabled here (the test runs in the machine's own network namespace and must not
//! talk on its network); its session state machinery is the same enabled or not. The path with
//! peers is exercised by `link_plan.rs` and `link_onset.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use loophole_engine::EngineConfig;
use loophole_engine::model::TempoChange;
use loophole_engine::time::{Beats, Bpm};
use loophole_node::audio::capture::Capture;
use loophole_node::audio::{AudioCore, CallbackTiming, Transport};
use loophole_node::link::{LinkClock, Request};

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static C_ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
}

fn note_c() {
    if counting() {
        C_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

/// # Safety
/// The C `malloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    note_c();
    unsafe { __libc_malloc(size) }
}

/// # Safety
/// The C `calloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    note_c();
    unsafe { __libc_calloc(n, size) }
}

/// # Safety
/// The C `realloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    note_c();
    unsafe { __libc_realloc(ptr, size) }
}

/// # Safety
/// The C `free` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if !ptr.is_null() {
        note_c();
    }
    unsafe { __libc_free(ptr) }
}

fn counted(f: impl FnOnce()) -> (usize, usize) {
    let (r, c) = (ALLOCS.load(Ordering::Relaxed), C_ALLOCS.load(Ordering::Relaxed));
    COUNTING.with(|x| x.set(true));
    f();
    COUNTING.with(|x| x.set(false));
    (ALLOCS.load(Ordering::Relaxed) - r, C_ALLOCS.load(Ordering::Relaxed) - c)
}

#[test]
fn the_link_audio_callback_never_allocates_or_frees() {
    let session = std::sync::Arc::new(loophole_engine::demo::session());
    let script = loophole_engine::demo::script();
    let rate = 48_000;
    let config = EngineConfig { sample_rate: rate, max_block: 1024, queue_capacity: 8192 };
    let (mut pulse, signal) = loophole_engine::build(session.clone(), &config).unwrap();
    let link = LinkClock::new(session.tempo.0, session.beats_per_bar, false);
    let (audio, mut requests, mut events) = link.audio_side(rate, 0, Some(session.tempo.0), None);
    let transport = Transport::new();
    let mut core = AudioCore::with_link(signal, audio, 0, transport.clone());
    let mut tempo_tx = core.tempo_changes();
    let mut swap = core.engine_swap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("link-no-alloc-capture.wav");
    let (capture, ring, timing) = Capture::start_timed(&path, rate, None).unwrap();
    core.set_capture(ring);
    core.set_capture_timing(timing);

    let mut stereo = vec![0f32; 2 * 256];
    let mut six_u16 = vec![0u16; 6 * 5000];
    let (mut rust, mut c) = (0, 0);
    let mut next = 0;
    let mut pressed = 0;
    let mut swapped = false;
    let mut saw_scene_tempo = false;
    let timing = CallbackTiming { late_us: 0.0, latency_us: 5_333.0, due_us: 0.0 };
    for block in 0..3_000usize {
        // Control thread, not counted: the script, requests at set blocks, the engine swap.
        let snap = transport.snapshot();
        saw_scene_tempo |= snap.tempo == 141.0 && snap.quantum == 3.0;
        let now = snap.beat;
        while let Some(a) = script.actions.get(next).filter(|a| a.beat.0 - 0.2 <= now && snap.playing) {
            pulse.tick(a.beat, a.beat).unwrap();
            let _ = pulse.press(a.action, a.beat);
            next += 1;
            pressed += 1;
        }
        let _ = pulse.tick(Beats(now), Beats(now + 0.2));
        while pulse.poll_event().is_some() {}
        match block {
            500 => requests.push(Request::Tempo(133.0)).unwrap(),
            1_000 => requests.push(Request::Stop).unwrap(),
            1_400 => requests.push(Request::Start { lead_frames: 4_800 }).unwrap(),
            1_800 => requests.push(Request::Tempo(90.0)).unwrap(),
            // Scene tempo changes, held until their beat and committed to Link there.
            200 | 2_000 => {
                let at = snap.beat + 1.3;
                let c = TempoChange { beat: Beats(at), tempo: Some(Bpm(141.0)), beats_per_bar: Some(3.0) };
                tempo_tx.push(c).unwrap();
                let c = TempoChange { beat: Beats(at + 2.0), tempo: Some(Bpm(111.0)), beats_per_bar: Some(4.0) };
                tempo_tx.push(c).unwrap();
            }
            _ => {}
        }
        if block == 1_050 {
            let (fresh_pulse, fresh) = loophole_engine::build(session.clone(), &config).unwrap();
            assert!(swap.send(fresh));
            pulse = fresh_pulse;
            next = 0;
        }
        swapped |= swap.collect() > 0;
        while events.pop().is_ok() {}
        // The callback, counted.
        let (r, cc) = counted(|| match block % 4 {
            3 => core.render_device_timed(&mut six_u16, 6, timing),
            _ => core.render_stereo_timed(&mut stereo, timing),
        });
        rust += r;
        c += cc;
        if block % 8 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    // The demo's playlist was pressed before the engine swap and again after it (the fills
    // come later than this run reaches).
    assert!(pressed >= 2, "the demo's actions were pressed ({pressed})");
    assert!(swapped, "the engine swap was exercised");
    let snap = transport.snapshot();
    assert!(saw_scene_tempo, "the first scene tempo change was never in force");
    assert_eq!((snap.tempo, snap.quantum), (111.0, 4.0), "the last scene tempo change applied");
    assert_eq!(rust, 0, "the Link audio callback allocated or freed {rust} times (Rust)");
    assert_eq!(c, 0, "the Link audio callback called malloc/free {c} times (C/C++)");
    drop(core);
    capture.finish().unwrap();
    drop(link);
}

#[test]
fn the_counters_see_allocations_on_both_sides() {
    let (r, _) = counted(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(r, 2);
    let (_, c) = counted(|| unsafe {
        let p = malloc(16);
        free(std::hint::black_box(p));
    });
    assert_eq!(c, 2);
    // Creating a session state allocates in C++ (the reason it is created on the control thread).
    let (_, c) = counted(|| drop(std::hint::black_box(rusty_link::SessionState::new())));
    assert!(c >= 2, "operator new / delete not seen: {c}");
}
