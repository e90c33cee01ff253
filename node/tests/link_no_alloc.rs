//! Proves that the Link path of the audio callback never allocates or frees, on the Rust side
//! and on Link's C++ side.
//!
//! 1. Link disabled (`the_link_audio_callback_never_allocates_or_frees`): the callback driven
//!    block by block through `capture_audio_session_state` into a preallocated session state,
//!    `commit_audio_session_state`, `clock_micros`, `num_peers`, the host-time filter, requests
//!    (tempo, stop, start), scene tempo and time-signature changes (held until their beat, the
//!    callback cut there), the transport gate, the engine swap and the timing sidecar ring.
//! 2. With a Link peer (`..._with_a_peer_joining_...`): this process's Link instance lives in a
//!    network namespace of its own (a thread enters it with `setns` and creates the instance,
//!    whose threads and sockets are then made there), the reference peer (`loophole-link-peer`)
//!    in another, as in `link_plan.rs`. The audio runs on the node's real null-device backend
//!    (`AudioBackend::start_null`, as `play --audio null --link`), and everything its thread does
//!    is counted across the peer joining (the node leaves its solo timeline for the session's),
//!    a tempo change made by the peer, and a stop and a start made by the peer (with the fresh
//!    engine swapped in after the stop). The control thread's side runs as `play` runs it
//!    (`LinkControl::poll`, the script pressed ahead of the beat, a fresh engine after a stop),
//!    uncounted. Needs root and `ip netns`: without them it fails under CI (`CI=true`) and is
//!    skipped, loudly, elsewhere (`common::skip_or_fail`).
//!
//! Two counters: a Rust global allocator, and `malloc` / `calloc` / `realloc` / `free`
//! interposed in this test binary (C++ `operator new` and `delete` end there), forwarding to
//! glibc's `__libc_*` functions. Both count per thread: on a thread inside [`counted`], or on
//! the one thread [`watch`] names (by kernel thread id), so tests running at the same time
//! (one allocates on purpose) never add to each other's counts.

mod common;
mod link_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loophole_engine::EngineConfig;
use loophole_engine::model::{Session, TempoChange};
use loophole_engine::pulse::Pulse;
use loophole_engine::script::Script;
use loophole_engine::time::{Beats, Bpm};
use loophole_node::audio::capture::Capture;
use loophole_node::audio::{AudioBackend, AudioCore, EngineSwap};
use loophole_node::clock::{CallbackTiming, ClockSnapshot, Transport};
use loophole_node::link::control::LinkControl;
use loophole_node::link::{LinkClock, Request};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// What this thread's counted regions allocated or freed (Rust) and called (C).
    static RUST: Cell<usize> = const { Cell::new(0) };
    static C: Cell<usize> = const { Cell::new(0) };
    /// This thread's kernel thread id (0 until first needed).
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// The thread whose every allocation is counted (kernel thread id; 0 for none), and its counts.
static WATCHED: AtomicI32 = AtomicI32::new(0);
static WATCHED_RUST: AtomicUsize = AtomicUsize::new(0);
static WATCHED_C: AtomicUsize = AtomicUsize::new(0);

fn tid() -> i32 {
    TID.try_with(|t| {
        if t.get() == 0 {
            // SAFETY: gettid has no preconditions (and does not allocate).
            t.set(unsafe { libc::gettid() });
        }
        t.get()
    })
    .unwrap_or(-1)
}

fn note(rust: bool) {
    if COUNTING.try_with(|c| c.get()).unwrap_or(false) {
        let _ = (if rust { &RUST } else { &C }).try_with(|n| n.set(n.get() + 1));
    }
    let watched = WATCHED.load(Ordering::Relaxed);
    if watched != 0 && tid() == watched {
        (if rust { &WATCHED_RUST } else { &WATCHED_C }).fetch_add(1, Ordering::Relaxed);
    }
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(true);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(true);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(true);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(true);
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

/// # Safety
/// The C `malloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    note(false);
    unsafe { __libc_malloc(size) }
}

/// # Safety
/// The C `calloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    note(false);
    unsafe { __libc_calloc(n, size) }
}

/// # Safety
/// The C `realloc` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    note(false);
    unsafe { __libc_realloc(ptr, size) }
}

/// # Safety
/// The C `free` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if !ptr.is_null() {
        note(false);
    }
    unsafe { __libc_free(ptr) }
}

/// Runs `f` on this thread with counting on; returns what it allocated or freed (Rust) and the
/// `malloc`-family calls it made (C), on this thread only.
fn counted(f: impl FnOnce()) -> (usize, usize) {
    let (r, c) = (RUST.with(Cell::get), C.with(Cell::get));
    COUNTING.with(|x| x.set(true));
    f();
    COUNTING.with(|x| x.set(false));
    (RUST.with(Cell::get) - r, C.with(Cell::get) - c)
}

/// Counts everything the thread with kernel id `tid` does until [`Watch::finish`].
struct Watch {
    _one: std::sync::MutexGuard<'static, ()>,
}

fn watch(tid: i32) -> Watch {
    // One watched thread at a time in this process.
    static ONE: Mutex<()> = Mutex::new(());
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    WATCHED_RUST.store(0, Ordering::Relaxed);
    WATCHED_C.store(0, Ordering::Relaxed);
    WATCHED.store(tid, Ordering::SeqCst);
    Watch { _one: guard }
}

impl Watch {
    /// Stops counting; returns (Rust, C) counts.
    fn finish(self) -> (usize, usize) {
        WATCHED.store(0, Ordering::SeqCst);
        (WATCHED_RUST.load(Ordering::Relaxed), WATCHED_C.load(Ordering::Relaxed))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        WATCHED.store(0, Ordering::SeqCst);
    }
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

#[test]
fn the_counters_count_only_their_own_thread() {
    // Another thread allocates and frees, counted on its side, while this one counts a region
    // that allocates nothing: this one must see none of it, that one all of it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));
    let other = {
        let (stop, busy) = (stop.clone(), busy.clone());
        std::thread::spawn(move || {
            counted(|| {
                while !stop.load(Ordering::Acquire) {
                    drop(std::hint::black_box(vec![1u8; 64]));
                    busy.fetch_add(1, Ordering::Release);
                }
            })
        })
    };
    while busy.load(Ordering::Acquire) < 100 {
        std::thread::yield_now();
    }
    let mine = counted(|| {
        let until = busy.load(Ordering::Acquire) + 1_000;
        while busy.load(Ordering::Acquire) < until {
            std::hint::spin_loop();
        }
    });
    stop.store(true, Ordering::Release);
    let theirs = other.join().unwrap();
    assert!(theirs.0 >= 2_000, "the other thread's allocations were counted on its side: {theirs:?}");
    assert_eq!(mine, (0, 0), "this thread's count took in another thread's allocations");

    // The watched thread: everything it does is counted, nothing any other thread does.
    let (go, done, exit) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let worker_tid = Arc::new(AtomicI32::new(0));
    let worker = {
        let (go, done, exit, worker_tid) = (go.clone(), done.clone(), exit.clone(), worker_tid.clone());
        std::thread::spawn(move || {
            worker_tid.store(tid(), Ordering::Release);
            while go.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            drop(std::hint::black_box(vec![1u8; 10]));
            unsafe { free(std::hint::black_box(malloc(16))) };
            done.store(1, Ordering::Release);
            while exit.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
        })
    };
    while worker_tid.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let w = watch(worker_tid.load(Ordering::Acquire));
    drop(std::hint::black_box(vec![1u8; 10])); // on this thread: not counted
    go.store(1, Ordering::Release);
    while done.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let (r, c) = w.finish();
    exit.store(1, Ordering::Release);
    worker.join().unwrap();
    // Rust's allocation and free go through malloc and free too.
    assert_eq!((r, c), (2, 4), "the watched thread's allocations, and only those");
}

/// Runs `f` on a thread that has entered the network namespace `ns` (made by `ip netns add`);
/// threads it starts are in that namespace too. Returns what `f` returned.
fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd as _;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        // SAFETY: a valid namespace file descriptor; setns changes only this thread's namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns({path}): {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace panicked")
}

/// The control thread's side of a Link performance, as `play` runs it: Link polled (its log
/// lines kept), a fresh engine after every stop, the script performed from its first action at
/// each start, pressed ahead of the beat, Pulse ticked and drained. Nothing here is counted.
struct Ctl {
    link: LinkControl,
    pulse: Pulse,
    swap: EngineSwap,
    tempo_tx: rtrb::Producer<TempoChange>,
    transport: Arc<Transport>,
    session: Arc<Session>,
    script: Script,
    config: EngineConfig,
    snap: ClockSnapshot,
    /// Everything `LinkControl::poll` reported.
    lines: Vec<serde_json::Value>,
    epoch: u64,
    next: usize,
    /// Script actions pressed since the last start.
    pressed: usize,
    /// Fresh engines sent, and old ones that came back.
    fresh: usize,
    retired: usize,
}

impl Ctl {
    fn tick(&mut self) {
        self.snap = self.transport.snapshot();
        let polled = self.link.poll(&self.snap);
        self.lines.extend(polled.lines);
        if polled.stopped && !self.swap.pending() {
            let (pulse, signal) = loophole_engine::build(self.session.clone(), &self.config).unwrap();
            assert!(self.swap.send(signal), "the fresh engine was taken");
            self.pulse = pulse;
            self.fresh += 1;
        }
        self.retired += self.swap.collect();
        if self.snap.epoch != self.epoch {
            (self.epoch, self.next, self.pressed) = (self.snap.epoch, 0, 0);
        }
        let now = self.snap.beat;
        let lookahead = 0.3;
        while let Some(a) =
            self.script.actions.get(self.next).filter(|a| self.snap.playing && a.beat.0 - lookahead <= now)
        {
            self.pulse.tick(a.beat, a.beat).unwrap();
            let _ = self.pulse.press(a.action, a.beat);
            (self.next, self.pressed) = (self.next + 1, self.pressed + 1);
        }
        let _ = self.pulse.tick(Beats(now), Beats(now + lookahead));
        for c in self.pulse.take_tempo_changes() {
            self.tempo_tx.push(c).unwrap();
        }
        while self.pulse.poll_event().is_some() {}
    }

    /// Ticks every 2 ms until `done` holds, for at most `timeout` (then panics with the log).
    fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Ctl) -> bool) {
        let until = Instant::now() + timeout;
        loop {
            self.tick();
            if done(self) {
                return;
            }
            assert!(Instant::now() < until, "no {what} within {timeout:?}: {:?}\nlog: {:#?}", self.snap, self.lines);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A `transport` line of the log (the node started or stopped) that `pred` accepts.
    fn transport(&self, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
        self.lines.iter().any(|l| l["event"] == "transport" && pred(l))
    }
}

#[test]
fn the_audio_thread_never_allocates_or_frees_with_a_peer_joining_changing_tempo_starting_and_stopping() {
    const TEST: &str =
        "the_audio_thread_never_allocates_or_frees_with_a_peer_joining_changing_tempo_starting_and_stopping";
    const PROPAGATE: Duration = Duration::from_secs(4);
    let _serial = link_support::serial();
    let Some(rig) = link_support::Rig::or_skip(2, TEST) else { return };
    let dir = link_support::scratch("no-alloc-peer");
    let started = Instant::now();
    // The peer plays at 100 BPM with Link on from the start. The node enables Link later (as
    // `link on` does), which founds its session anew. When two sessions meet, Link keeps the
    // one founded first if they were founded more than 0.5 s apart (`Sessions.hpp`), so the
    // node, enabling more than a second after the peer, joins the peer's session: it jumps to
    // its timeline and takes its tempo.
    let mut peer = link_support::Peer::start("peer", &rig.ns[1], &dir, &["--tempo", "100", "--play", "--every", "0"]);
    let founded = Instant::now(); // its ready line comes after it enabled Link

    let session = Arc::new(loophole_engine::demo::session());
    let rate = 48_000;
    let (tempo, quantum) = (session.tempo.0, session.beats_per_bar);
    assert!((tempo - 100.0).abs() > 1.0, "the demo's tempo must differ from the peer's");
    // This process's Link, in the other namespace, disabled for now; alone, the node launches
    // on its own timeline at the first block (as `play` does with no peers).
    let clock = in_namespace(&rig.ns[0], move || LinkClock::new(tempo, quantum, false));
    let (audio, requests, events) = clock.audio_side(rate, 0, Some(tempo), None);
    let link = LinkControl::new(clock, requests, events, rate, tempo, true);
    let config = EngineConfig { sample_rate: rate, max_block: 1024, queue_capacity: 8192 };
    let (pulse, signal) = loophole_engine::build(session.clone(), &config).unwrap();
    let transport = Transport::new();
    let mut core = AudioCore::with_link(signal, audio, 0, transport.clone());
    let tempo_tx = core.tempo_changes();
    let swap = core.engine_swap();
    let (capture, ring, timing) = Capture::start_timed(&dir.join("node.wav"), rate, None).unwrap();
    core.set_capture(ring);
    core.set_capture_timing(timing);
    let mut ctl = Ctl {
        link,
        pulse,
        swap,
        tempo_tx,
        transport: transport.clone(),
        session: session.clone(),
        script: loophole_engine::demo::script(),
        config,
        snap: ClockSnapshot::default(),
        lines: Vec::new(),
        epoch: 0,
        next: 0,
        pressed: 0,
        fresh: 0,
        retired: 0,
    };
    ctl.tick();
    let backend = AudioBackend::start_null(core, 128).expect("start the null device");
    ctl.until("first blocks, a second after the peer's session was founded", PROPAGATE, |c| {
        c.transport.blocks() >= 40 && founded.elapsed() >= Duration::from_millis(1_100)
    });
    let tid = backend.audio_thread_id().expect("the audio thread's id");

    // From here on, everything the audio thread does is counted.
    let counting = watch(tid);
    let blocks = transport.blocks();
    assert!(ctl.snap.solo && ctl.snap.playing && (ctl.snap.tempo - tempo).abs() < 1e-6, "{:?}", ctl.snap);

    // The node joins the peer's session: it leaves its own timeline for the session's, and
    // takes its tempo.
    ctl.link.clock().enable(true);
    // (The peer is reachable only from the node's namespace: this proves Link runs there.)
    peer.expect(0, PROPAGATE, "peers", |v| v["peers"] == 1);
    ctl.until("the node on the session's timeline", PROPAGATE, |c| {
        !c.snap.solo && c.snap.playing && (c.snap.tempo - 100.0).abs() < 0.01
    });
    assert!(ctl.lines.iter().any(|l| l["event"] == "link" && l["peers"] == 1), "{:#?}", ctl.lines);

    // A tempo change made by the peer.
    let mark = peer.mark();
    peer.send("tempo 133");
    peer.expect(mark, PROPAGATE, "tempo", |v| (v["tempo"].as_f64().unwrap() - 133.0).abs() < 0.01);
    ctl.until("the peer's tempo", PROPAGATE, |c| (c.snap.tempo - 133.0).abs() < 0.01 && c.snap.playing);

    // A stop made by the peer: the node stops, and takes a fresh engine while stopped.
    peer.send("stop");
    ctl.until("the session's stop", PROPAGATE, |c| {
        !c.snap.playing && c.transport(|l| l["playing"] == false && l["own"] == false)
    });
    ctl.until("the fresh engine swapped in", PROPAGATE, |c| c.fresh >= 1 && c.retired >= 1);

    // A start made by the peer: the node starts again, the script from its first action.
    peer.send("play");
    ctl.until("the session's start", PROPAGATE, |c| {
        c.snap.playing
            && c.transport(|l| l["playing"] == true && l["own"] == false && l["epoch"] == 2)
            && c.pressed >= 1
    });
    let again = Instant::now() + Duration::from_millis(500);
    ctl.until("half a second of playing", PROPAGATE, |_| Instant::now() >= again);

    let (rust, c) = counting.finish();
    let counted_blocks = transport.blocks() - blocks;
    let core = backend.stop().expect("the core came back from the null device");
    drop(core);
    capture.finish().unwrap();
    peer.send("quit");
    peer.0.finish_ok(Duration::from_secs(5));
    eprintln!("{counted_blocks} blocks counted in {:.1} s", started.elapsed().as_secs_f64());
    assert!(ctl.epoch >= 2, "the node started again ({:?})", ctl.snap);
    assert!(counted_blocks >= 300, "the audio thread ran {counted_blocks} blocks while counted");
    assert_eq!(rust, 0, "with a peer, the audio thread allocated or freed {rust} times (Rust)");
    assert_eq!(c, 0, "with a peer, the audio thread called malloc/free {c} times (C/C++)");
}
