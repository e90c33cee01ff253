//! Proves that the node's audio callbacks never allocate or free. The output ([`AudioCore`]):
//! Signal, the block clock, the capture ring push, the loopback tap, the position atomics and
//! the sample-format and channel conversions, over the demo performance with its scene changes,
//! tempo and time-signature changes sent through the tempo ring (the tempo map takes them
//! and cuts blocks at them), and a track routed to an external synth (Signal pushing into the
//! MIDI-out ring). The input ([`InputSlot::push`] around [`InputCore::push`]): the
//! conversion to stereo, the capture-time smoothing, the ring pushes and the dropped-frame count
//! when the rings are full, the error callback's [`InputStats::report`], the fault hook, and the
//! first block of a successor input after a failure (the gap skipped and counted).
//!
//! A second test runs the null device with the core in its callback and counts everything its
//! thread does from the first callback to the 300th: the callbacks, and between them the load
//! meter, the deadline-miss and late-start checks and the sleep until the next deadline.
//!
//! A third covers what a cpal data callback adds around the core (its load meter, gap check and
//! thread id).
//!
//! A global allocator counts allocations, reallocations and frees made on a thread while it is
//! inside the callback, per thread (`the_counter_counts_only_its_own_thread` shows that a count
//! takes in nothing another thread does meanwhile). Pulse and the capture writer run outside the counted region, as live.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use loophole_engine::EngineConfig;
use loophole_engine::model::TempoChange;
use loophole_engine::time::{Beats, Bpm, TempoMap};
use loophole_node::audio::AudioCore;
use loophole_node::audio::capture::Capture;
use loophole_node::audio::input::{InputCore, InputSlot};
use loophole_node::clock::Transport;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// What this thread's counted regions allocated. Per thread: tests run in parallel threads
    /// of one process (one allocates on purpose) and must not add to each other's counts.
    static LOCAL: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        LOCAL.with(|l| l.set(l.get() + 1));
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

/// Runs `f` with counting on; returns what it allocated or freed on this thread.
fn counted(f: impl FnOnce()) -> usize {
    let before = LOCAL.with(|l| l.get());
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    LOCAL.with(|l| l.get()) - before
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
    let (tap, mut tap_rx) = rtrb::RingBuffer::new(rate as usize);
    let (tap_blocks, mut tap_blocks_rx) = rtrb::RingBuffer::new(64);
    core.set_tap(tap, tap_blocks);

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
        // The loopback source's side of the tap (sometimes left full, so pushes fail too).
        if !block.is_multiple_of(7) {
            let n = tap_rx.slots();
            tap_rx.read_chunk(n).unwrap().commit_all();
            while tap_blocks_rx.pop().is_ok() {}
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
fn the_input_callback_never_allocates_or_frees() {
    let rate = 48_000;
    // Smoothed, as for a cpal device (the regression over recent blocks runs in the callback).
    let (input, mut rx) = InputCore::new(rate);
    let stats = input.stats();
    // The fault hook fires once 1.2 M frames have come (blocks average 479 frames: after the
    // writer's stall below, around block 2500).
    let (mut slot, mut back) = InputSlot::new(input.smoothed(), Some(1_200_000));
    let stereo: Vec<f32> = (0..2 * 256).map(|i| (i as f32 * 0.01).sin()).collect();
    let mono_i16: Vec<i16> = (0..300).map(|i| (i * 97) as i16).collect();
    let six_u16: Vec<u16> = (0..6 * 1000).map(|i| (i * 13) as u16).collect();
    let mut allocs = 0;
    let mut t = 0.0;
    for block in 0..4000usize {
        if block == 3000 {
            // The input failed (the hook fired): its core is handed back and the successor
            // continues on it, after a gap.
            assert!(stats.take_failure().is_some(), "the fault hook fired");
            drop(slot);
            let mut core = back.pop().expect("the core came back");
            core.resume_after_failure();
            (slot, back) = InputSlot::new(core, None);
            t += 1e6;
        }
        allocs += counted(|| match block % 3 {
            0 => slot.push(&stereo[..2 * (16 + block % 240)], 2, t, 5_000.0),
            1 => slot.push(&mono_i16, 1, t, 5_000.0),
            _ => slot.push(&six_u16, 6, t, 5_000.0),
        });
        if block % 500 == 7 {
            // cpal's error callback (on the device's thread): an xrun, a notice, a failure.
            allocs += counted(|| {
                stats.report(&cpal::Error::new(cpal::ErrorKind::Xrun));
                stats.report(&cpal::Error::new(cpal::ErrorKind::DeviceChanged));
            });
        }
        t += 5_000.0;
        // The writer drains most of the time; for a while it stalls and the rings fill up.
        if !(1000..2000).contains(&block) {
            while rx.blocks.pop().is_ok() {}
            let n = rx.samples.slots();
            rx.samples.read_chunk(n).unwrap().commit_all();
        }
    }
    assert!(rx.stats.dropped() > 0, "the stall made the input drop frames (the full-ring path ran)");
    assert!(stats.lost() > 0 && stats.xruns() == 8, "the successor's gap was counted");
    assert!(rx.stats.callbacks() < 4000, "the failed input took no frames after the hook fired");
    assert_eq!(allocs, 0, "the input callback allocated or freed {allocs} times");
}

#[test]
fn the_counter_sees_allocations() {
    // The proof above is only as good as the counter: it must see an allocation and a free.
    assert_eq!(counted(|| drop(std::hint::black_box(vec![1u8; 10]))), 2);
}

#[test]
fn the_counter_counts_only_its_own_thread() {
    // Tests run in parallel threads of one process, and the one above allocates on purpose: a
    // count must take in nothing another thread does. Another thread allocates and frees, counted
    // on its side, all the while this one counts a region that allocates nothing.
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
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
    assert!(theirs >= 2_000, "the other thread's allocations were counted on its side: {theirs}");
    assert_eq!(mine, 0, "this thread's count took in another thread's allocations");
}

#[test]
fn the_null_device_loop_with_its_load_meter_never_allocates_between_or_in_callbacks() {
    use loophole_node::audio::null::{NullConfig, NullStream};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let session = Arc::new(loophole_engine::demo::session());
    let rate = 48_000;
    let (mut pulse, signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: rate, max_block: 1024, queue_capacity: 8192 },
    )
    .unwrap();
    for a in loophole_engine::demo::script().actions.iter().take_while(|a| a.beat.0 <= 0.0) {
        pulse.press(a.action, a.beat).unwrap();
    }
    pulse.tick(Beats(0.0), Beats(8.0)).unwrap();
    let transport = Transport::new();
    let mut core = AudioCore::new(signal, TempoMap::new(rate, session.tempo, session.beats_per_bar), 0, transport);
    // Counting starts in the first callback and stays on across the device loop (the load
    // meter, the miss and late-start checks, the sleep until the next deadline) until callback
    // 300 turns it off: everything that thread did in between is counted.
    let allocs = Arc::new(AtomicUsize::new(usize::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let stream = {
        let (allocs, done) = (allocs.clone(), done.clone());
        let mut start = 0;
        NullStream::start(NullConfig { sample_rate: rate, channels: 2, block: 64 }, move |buf, info| {
            match info.index {
                0 => {
                    start = LOCAL.with(|l| l.get());
                    COUNTING.with(|c| c.set(true));
                }
                300 => {
                    COUNTING.with(|c| c.set(false));
                    allocs.store(LOCAL.with(|l| l.get()) - start, Ordering::Relaxed);
                    done.store(true, Ordering::Release);
                }
                _ => {}
            }
            // The timing `AudioBackend::start_null` gives its callback: the deadline on the host
            // clock (the exact heard-time line, not the smoothing filter) and a block of latency.
            let timing = loophole_node::clock::CallbackTiming {
                late_us: info.started.saturating_duration_since(info.deadline).as_secs_f64() * 1e6,
                latency_us: 64.0 * 1e6 / rate as f64,
                due_us: loophole_node::clock::host::us_of(info.deadline),
            };
            core.render_stereo_timed(buf, timing);
        })
        .unwrap()
    };
    let stats = stream.stats();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done.load(Ordering::Acquire) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stream.stop();
    assert!(done.load(Ordering::Acquire), "300 callbacks within 10 s");
    assert!(stats.load().stats().blocks >= 300, "the meter measured the callbacks");
    assert_eq!(allocs.load(Ordering::Relaxed), 0, "the null device's loop or callback allocated or freed");
}

#[test]
fn the_device_callback_watch_never_allocates() {
    use loophole_node::audio::device::CallbackWatch;
    use loophole_node::audio::load::LoadMeter;
    use std::sync::Arc;
    let load = Arc::new(LoadMeter::new());
    let mut watch = CallbackWatch::new(load.clone(), Arc::new(std::sync::atomic::AtomicI32::new(0)), 48_000, 2);
    let allocs = counted(|| {
        for k in 0..1000u64 {
            // Every tenth callback comes a period late: a gap.
            let at = cpal::StreamInstant::from_micros(k * 2_667 + (k / 10) * 2_667);
            let info = cpal::OutputCallbackInfo::new(cpal::OutputStreamTimestamp { callback: at, playback: at });
            let timer = watch.begin(&info, 256);
            watch.end(timer);
        }
    });
    assert_eq!(allocs, 0, "the device callback's watch allocated or freed");
    assert_eq!((load.stats().blocks, load.stats().misses), (1000, 99));
}
