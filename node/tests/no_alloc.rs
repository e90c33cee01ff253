//! Proves that the node's audio callback ([`AudioCore`]) never allocates or frees: Signal, the
//! block clock, the capture ring push, the position atomics and the sample-format and channel
//! conversions, over the demo performance with its scene changes, and tempo and time-signature
//! changes sent through the tempo ring (the tempo map takes them and cuts blocks at them), and a
//! track routed to an external synth (Signal pushing into the MIDI-out ring).
//!
//! A global allocator counts allocations, reallocations and frees made on a thread while it is
//! inside the callback. Pulse and the capture writer run outside the counted region, as live.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use loophole_engine::EngineConfig;
use loophole_engine::model::TempoChange;
use loophole_engine::time::{Beats, Bpm, TempoMap};
use loophole_node::audio::capture::Capture;
use loophole_node::audio::{AudioCore, Transport};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn the_audio_callback_never_allocates_or_frees() {
    // The bass also plays to an external synth: Signal pushes its notes into the MIDI-out ring.
    let mut session = loophole_engine::demo::session();
    let bass = session.tracks.iter().position(|t| t.id == "bass").unwrap();
    session.tracks[bass].midi_out = Some(loophole_engine::model::MidiOutRoute { port: "synth".into(), channel: None });
    let session = std::sync::Arc::new(session);
    let script = loophole_engine::demo::script();
    let rate = 48_000;
    let (mut pulse, mut signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: rate, max_block: 1024, queue_capacity: 8192 },
    )
    .unwrap();
    let mut midi_rx = signal.connect_midi_out(4096);
    let mut midi_sent = 0usize;
    let clock = TempoMap::new(rate, session.tempo, session.beats_per_bar);
    let transport = Transport::new();
    let mut core = AudioCore::new(signal, clock, 0, transport.clone());
    let mut tempo_tx = core.tempo_changes();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-alloc-capture.wav");
    let (capture, ring) = Capture::start(&path, rate, None).unwrap();
    core.set_capture(ring);

    // Tempo changes the control thread sends on top of the demo's own (it has none): a new
    // tempo, a new time signature, both, and one the audio has already passed (applied late).
    let extra = [
        (4.0, TempoChange { beat: Beats(9.5), tempo: Some(Bpm(133.0)), beats_per_bar: None }),
        (12.0, TempoChange { beat: Beats(16.25), tempo: None, beats_per_bar: Some(3.0) }),
        (20.0, TempoChange { beat: Beats(24.0), tempo: Some(Bpm(97.0)), beats_per_bar: Some(4.0) }),
        (30.0, TempoChange { beat: Beats(29.0), tempo: Some(Bpm(120.0)), beats_per_bar: None }),
    ];
    let mut sent = 0;
    let mut stereo = vec![0f32; 2 * 2048];
    let mut mono_i16 = vec![0i16; 300];
    let mut six_u16 = vec![0u16; 6 * 5000];
    let mut next = 0;
    let mut allocs = 0;
    let mut block = 0usize;
    let mut steps = 0;
    let seconds = loophole_engine::demo::SECONDS.min(40.0);
    while (transport.rendered() as f64) < seconds * rate as f64 {
        // Control thread's work, not counted: press what is due within the lookahead, tick.
        let now = transport.snapshot().beat;
        while let Some(a) = script.actions.get(next).filter(|a| a.beat.0 - 0.1 <= now) {
            pulse.tick(a.beat, a.beat).unwrap();
            pulse.press(a.action, a.beat).unwrap();
            next += 1;
            for c in pulse.take_tempo_changes() {
                tempo_tx.push(c).unwrap();
            }
        }
        pulse.tick(Beats(now), Beats(now + 0.1)).unwrap();
        for c in pulse.take_tempo_changes() {
            tempo_tx.push(c).unwrap();
        }
        while let Some((_, c)) = extra.get(sent).filter(|(at, _)| *at <= now) {
            tempo_tx.push(*c).unwrap();
            sent += 1;
        }
        while midi_rx.pop().is_ok() {
            midi_sent += 1;
        }
        while let Some(e) = pulse.poll_event() {
            if matches!(e, loophole_engine::pulse::PulseEvent::Step { .. }) {
                steps += 1;
            }
        }
        // The callback, counted: stereo f32 in varying sizes, mono i16, 6-channel u16 (more
        // frames than the scratch buffer holds).
        allocs += counted(|| match block % 3 {
            0 => core.render_stereo(&mut stereo[..2 * (64 + block % 1900)]),
            1 => core.render_device(&mut mono_i16, 1),
            _ => core.render_device(&mut six_u16, 6),
        });
        block += 1;
        std::thread::yield_now();
    }
    // The demo is performed by its playlist (plus hand-pressed fills): its scene changes came.
    assert!(next >= 2 && steps >= 3, "the demo's presses ({next}) and playlist steps ({steps}) ran");
    assert_eq!(sent, extra.len(), "every tempo change was sent");
    let snap = transport.snapshot();
    assert_eq!((snap.tempo, snap.quantum), (120.0, 4.0), "the last tempo change applied");
    assert_eq!(transport.refused_tempo_changes(), 0);
    assert!(midi_sent > 50, "the bass sent {midi_sent} MIDI-out messages");
    assert_eq!(allocs, 0, "the audio callback allocated or freed {allocs} times");
    drop(core);
    capture.finish().unwrap();
}

#[test]
fn the_counter_sees_allocations() {
    // The proof above is only as good as the counter: it must see an allocation and a free.
    assert_eq!(counted(|| drop(std::hint::black_box(vec![1u8; 10]))), 2);
}
