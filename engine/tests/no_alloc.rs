//! Proves that `Signal::process` never allocates or frees, across every kind of command.
//!
//! This test binary installs a global allocator that counts every allocation, reallocation and
//! free made on a thread while that thread is inside `Signal::process`, per thread
//! (`the_counter_counts_only_its_own_thread` shows that a count takes in nothing another thread
//! does meanwhile). Pulse (which may allocate) runs outside the counted region, exactly as on the
//! node, where it runs on another thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use common::*;
use loophole_engine::EngineConfig;
use loophole_engine::model::*;
use loophole_engine::model::{DrumSpec, InstrumentSpec, SynthSpec};
use loophole_engine::pulse::{Action, StopMode};
use loophole_engine::queue::MixSettings;
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, Bpm, Quantise, SimClock};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    // Per thread, so tests running in parallel (one of which allocates on purpose) cannot add to
    // each other's counts.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.with(|n| n.set(n.get() + 1));
    }
}

fn allocs() -> usize {
    ALLOCS.with(|n| n.get())
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

/// Runs `process` with allocation counting on; returns how many allocations/frees it made.
fn counted(signal: &mut Signal, clock: &loophole_engine::time::BlockClock, out: &mut [f32]) -> usize {
    let before = allocs();
    COUNTING.with(|c| c.set(true));
    signal.process(clock, out);
    COUNTING.with(|c| c.set(false));
    allocs() - before
}

fn rig_session() -> Session {
    let mut s = audio_session(
        120.0,
        vec![
            ("a1", sine(96_000, 48_000, 220.0, 0.3), 4.0, true),
            ("a2", sine(96_000, 48_000, 330.0, 0.3), 4.0, true),
            ("shot", sine(20_000, 48_000, 440.0, 0.3), 1.0, false),
        ],
    );
    s.clips[1].track = TrackId(0);
    s.clips[1].legato = true;
    s.crossfade_ms = 5.0;
    // The synth also plays to an external output (the MIDI-out ring).
    let synth = s.add_track(Track {
        instrument: Some(InstrumentSpec::Synth(SynthSpec::default())),
        midi_out: Some(MidiOutRoute { port: "ext".into(), channel: Some(1) }),
        ..Track::new("synth", TrackKind::Midi)
    });
    let drums = s.add_track(Track {
        instrument: Some(InstrumentSpec::Drums(DrumSpec::default())),
        ..Track::new("drums", TrackKind::Midi)
    });
    let notes: Vec<(f64, f64, u8, u8)> = (0..16).map(|i| (i as f64 * 0.25, 0.5, 48 + (i % 12) as u8, 100)).collect();
    s.add_clip(Clip::new("m1", synth, ClipContent::Midi(Arc::new(MidiData::from_notes(&notes))), Beats(4.0)));
    let beats: Vec<(f64, f64, u8, u8)> = (0..8).map(|i| (i as f64 * 0.5, 0.1, [36, 42, 38, 42][i % 4], 110)).collect();
    s.add_clip(Clip::new("d1", drums, ClipContent::Midi(Arc::new(MidiData::from_notes(&beats))), Beats(4.0)));
    let scene = Scene::new("all", vec![ClipId(0), ClipId(3), ClipId(4)]);
    s.add_scene(scene);
    s
}

#[test]
fn signal_process_never_allocates_or_frees() {
    let session = Arc::new(rig_session());
    let (mut pulse, mut signal) = loophole_engine::build(
        session.clone(),
        &EngineConfig { sample_rate: 48_000, max_block: 128, queue_capacity: 64 },
    )
    .unwrap();
    // A small ring, drained every 100 blocks: the full-ring path is taken too.
    let mut midi_rx = signal.connect_midi_out(4);
    let mut midi_sent = 0usize;
    let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
    let mut out = vec![0f32; 512 * 2];
    let mut t = 0i64;
    let mut total = 0usize;
    let mut step = |pulse: &mut loophole_engine::pulse::Pulse, signal: &mut Signal, blocks: usize, t: &mut i64| {
        let mut n = 0;
        for k in 0..blocks {
            // Vary the block size, including blocks longer than max_block (split inside).
            let frames = [64usize, 1, 128, 333, 512][k % 5];
            let c = clock.block(*t, frames);
            n += counted(signal, &c, &mut out[..frames * 2]);
            *t += frames as i64;
            while pulse.poll_event().is_some() {}
            while k % 100 == 0 && midi_rx.pop().is_ok() {
                midi_sent += 1;
            }
        }
        n
    };
    let now = |t: i64| Beats(t as f64 / 24_000.0);

    // Scene launch: audio + synth + drums start together.
    pulse.press(Action::LaunchScene { scene: SceneId(0), quantise: Some(Quantise::None) }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 400, &mut t);
    // Legato switch on the audio track (crossfade, mid-waveform fade-in).
    pulse
        .press(Action::Launch { clip: ClipId(1), quantise: Some(Quantise::Beat), velocity: Some(0.5) }, now(t))
        .unwrap();
    total += step(&mut pulse, &mut signal, 400, &mut t);
    // Retrigger, one-shot start and end, immediate and quantised stops, fades, section end.
    pulse
        .press(Action::Launch { clip: ClipId(1), quantise: Some(Quantise::HalfBeat), velocity: None }, now(t))
        .unwrap();
    pulse.press(Action::Launch { clip: ClipId(2), quantise: Some(Quantise::None), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 600, &mut t);
    pulse.press(Action::StopTrack { track: TrackId(1), mode: StopMode::FadeOut(Beats(1.0)) }, now(t)).unwrap();
    pulse.press(Action::StopTrack { track: TrackId(2), mode: StopMode::SectionEnd }, now(t)).unwrap();
    pulse.press(Action::StopTrack { track: TrackId(0), mode: StopMode::Quantised }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 900, &mut t);
    // Mixer: gain, pan, mute, solo.
    pulse.press(Action::LaunchScene { scene: SceneId(0), quantise: Some(Quantise::None) }, now(t)).unwrap();
    pulse.set_mix(TrackId(0), MixSettings { gain: 0.5, pan: -0.7, mute: false, solo: true }).unwrap();
    pulse.set_mix(TrackId(1), MixSettings { gain: 1.0, pan: 0.3, mute: true, solo: false }).unwrap();
    total += step(&mut pulse, &mut signal, 300, &mut t);
    // Stop everything immediately.
    pulse.press(Action::StopAll { mode: StopMode::Immediate }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 100, &mut t);
    // Overflow: more events than the pending list holds (64), far in the future.
    for k in 0..40 {
        let _ = pulse.press(
            Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None },
            Beats(1e6 + k as f64),
        );
    }
    total += step(&mut pulse, &mut signal, 2, &mut t);
    for k in 0..40 {
        let _ = pulse.press(
            Action::Launch { clip: ClipId(3), quantise: Some(Quantise::None), velocity: None },
            Beats(2e6 + k as f64),
        );
    }
    total += step(&mut pulse, &mut signal, 2, &mut t);
    // The transport stops: note-offs and All Notes Off into the ring.
    let before = allocs();
    COUNTING.with(|c| c.set(true));
    signal.transport_stopped(t);
    COUNTING.with(|c| c.set(false));
    total += allocs() - before;
    // Sanity: the run made sound and MIDI, so the code paths were exercised.
    assert!(signal.meters().blocks() > 2000);
    assert!(midi_sent > 20, "MIDI-out messages: {midi_sent}");
    assert!(signal.lost_midi_out().load(std::sync::atomic::Ordering::Relaxed) > 0, "the full-ring path was taken");
    assert_eq!(total, 0, "Signal::process allocated or freed {total} times");
}

#[test]
fn signal_with_streamed_clips_never_allocates_or_frees() {
    // Two long clips streamed from disk (zero budget, 0.5 s heads), one legato.
    let mut s = audio_session(
        120.0,
        vec![
            ("s1", sine(4 * 48_000, 48_000, 220.0, 0.3), 8.0, true),
            ("s2", sine(5 * 48_000, 44_100, 330.0, 0.3), 8.0, true),
        ],
    );
    s.clips[1].track = TrackId(0);
    s.clips[1].legato = true;
    s.crossfade_ms = 5.0;
    s.streaming.memory_budget_mb = Some(0.0);
    s.streaming.head_seconds = 0.5;
    let (s, notes) = loophole_engine::media::stream::prepare(&s, 48_000).unwrap();
    assert_eq!(notes.len(), 2);
    let (mut pulse, mut signal, reader) = loophole_engine::build_with_reader(
        Arc::new(s),
        &EngineConfig { sample_rate: 48_000, max_block: 128, queue_capacity: 64 },
    )
    .unwrap();
    let mut reader = reader.expect("a reader for the streamed clips");
    let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
    let mut out = vec![0f32; 512 * 2];
    let mut t = 0i64;
    let mut total = 0usize;
    // The reader runs between blocks (outside the counted region), as on its own thread live.
    let mut step =
        |pulse: &mut loophole_engine::pulse::Pulse, signal: &mut Signal, blocks: usize, t: &mut i64, read: bool| {
            let mut n = 0;
            for k in 0..blocks {
                let frames = [64usize, 1, 128, 333, 512][k % 5];
                let c = clock.block(*t, frames);
                if read {
                    reader.service();
                }
                n += counted(signal, &c, &mut out[..frames * 2]);
                *t += frames as i64;
                while pulse.poll_event().is_some() {}
            }
            n
        };
    let now = |t: i64| Beats(t as f64 / 24_000.0);
    // Start from the head, play past it (lane) and through a loop wrap (4 s).
    pulse.press(Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 1500, &mut t, true);
    // Legato switch mid-clip: pre-warmed lane, crossfade.
    pulse.press(Action::Launch { clip: ClipId(1), quantise: Some(Quantise::Beat), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 600, &mut t, true);
    assert_eq!(signal.stream_underruns(), 0, "the reader kept up");
    // Starve the reader: underruns (silence) inside process, still no allocation.
    total += step(&mut pulse, &mut signal, 600, &mut t, false);
    assert!(signal.stream_underruns() > 0, "the starved path ran");
    // Retrigger from the head, then stop with a fade (lanes released).
    pulse.press(Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 300, &mut t, true);
    pulse.press(Action::StopTrack { track: TrackId(0), mode: StopMode::FadeOut(Beats(1.0)) }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 300, &mut t, true);
    assert!(signal.meters().take_master()[0] > 0.0);
    assert_eq!(total, 0, "Signal::process allocated or freed {total} times with streamed clips");
}

#[test]
fn signal_with_mapped_clips_never_allocates_or_frees() {
    // Two 32-bit float WAV files mapped in place (an offline render's load), one mono, one legato.
    let dir = std::env::temp_dir().join(format!("loophole-no-alloc-mapped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, channels, hz) in [("a.wav", 2u16, 220.0), ("b.wav", 1, 330.0)] {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(dir.join(name), spec).unwrap();
        for i in 0..48_000 * 3 * channels as usize {
            w.write_sample((i as f32 * hz / 48_000.0).sin() * 0.3).unwrap();
        }
        w.finalize().unwrap();
    }
    let toml = "[session]\nname = \"m\"\ntempo = 120\ncrossfade_ms = 5.0\n[[track]]\nid = \"t\"\nkind = \"audio\"\n\
        [[clip]]\nid = \"a\"\ntrack = \"t\"\nfile = \"a.wav\"\nlength_beats = 4\n\
        [[clip]]\nid = \"b\"\ntrack = \"t\"\nfile = \"b.wav\"\nlegato = true\nloop = false\n";
    std::fs::write(dir.join("m.toml"), toml).unwrap();
    let options = loophole_engine::files::session::LoadOptions { map_audio: true, ..Default::default() };
    let s = loophole_engine::files::session::load_session_with(&dir.join("m.toml"), options).unwrap();
    assert!(
        s.clips.iter().all(|c| c.deferred.as_ref().is_some_and(|d| d.deferral == Deferral::InPlace)),
        "both files left to be read in place"
    );
    let (mut pulse, mut signal, _) = loophole_engine::build_with_reader(
        Arc::new(s),
        &EngineConfig { sample_rate: 48_000, max_block: 128, queue_capacity: 64 },
    )
    .unwrap();
    let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
    let mut out = vec![0f32; 512 * 2];
    let mut t = 0i64;
    let mut total = 0usize;
    let mut step = |pulse: &mut loophole_engine::pulse::Pulse, signal: &mut Signal, blocks: usize, t: &mut i64| {
        let mut n = 0;
        for k in 0..blocks {
            let frames = [64usize, 1, 128, 333, 512][k % 5];
            let c = clock.block(*t, frames);
            n += counted(signal, &c, &mut out[..frames * 2]);
            *t += frames as i64;
            while pulse.poll_event().is_some() {}
        }
        n
    };
    let now = |t: i64| Beats(t as f64 / 24_000.0);
    // Play through a loop wrap (2 s), then a legato switch to the mono one-shot, which plays past
    // its file's end; then a retrigger and a fade-out.
    pulse.press(Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 1000, &mut t);
    pulse.press(Action::Launch { clip: ClipId(1), quantise: Some(Quantise::Beat), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 1000, &mut t);
    pulse.press(Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 300, &mut t);
    assert!(signal.meters().take_master()[0] > 0.0);
    pulse.press(Action::StopTrack { track: TrackId(0), mode: StopMode::FadeOut(Beats(1.0)) }, now(t)).unwrap();
    total += step(&mut pulse, &mut signal, 300, &mut t);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(total, 0, "Signal::process allocated or freed {total} times with mapped clips");
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the guard: an allocation inside the counted region is counted.
    let before = allocs();
    COUNTING.with(|c| c.set(true));
    let v: Vec<u8> = Vec::with_capacity(1000);
    drop(std::hint::black_box(v));
    COUNTING.with(|c| c.set(false));
    assert_eq!(allocs() - before, 2);
}

#[test]
fn the_counter_counts_only_its_own_thread() {
    // Tests run in parallel threads of one process, and the one above allocates on purpose: a
    // count must take in nothing another thread does. Another thread allocates and frees, counted
    // on its side, all the while this one counts a region that allocates nothing.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));
    let count = |f: &dyn Fn()| {
        let before = allocs();
        COUNTING.with(|c| c.set(true));
        f();
        COUNTING.with(|c| c.set(false));
        allocs() - before
    };
    let other = {
        let (stop, busy) = (stop.clone(), busy.clone());
        std::thread::spawn(move || {
            count(&|| {
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
    let mine = count(&|| {
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
fn signal_recording_never_allocates_or_frees() {
    // Two armed tracks (stereo and mono) on one input, takes started and stopped on beats, a
    // take ring so small that it fills (gaps and owed starts and stops are taken too).
    use loophole_engine::pulse::RecordAction;
    use loophole_engine::signal::record::TrackRoute;
    let mut s = audio_session(120.0, vec![("a1", sine(96_000, 48_000, 220.0, 0.3), 4.0, true)]);
    for (id, ch) in [("mic", vec![0u16, 1]), ("vox", vec![1])] {
        s.add_track(Track {
            input: Some(TrackInput::Audio { input: "mic".into(), channels: ch }),
            ..Track::new(id, TrackKind::Audio)
        });
    }
    let (mut pulse, mut signal) =
        loophole_engine::build(Arc::new(s), &EngineConfig { sample_rate: 48_000, max_block: 128, queue_capacity: 64 })
            .unwrap();
    let routes =
        [None, Some(TrackRoute { input: 0, channels: vec![0, 1] }), Some(TrackRoute { input: 0, channels: vec![1] })];
    let mut ends = signal.connect_recording(&[2], &routes, 4096, 6);
    let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
    let now = |t: i64| Beats(t as f64 / 24_000.0);
    let rec = |a| Action::Record(a);
    for t in [1, 2] {
        pulse.press(rec(RecordAction::Arm { track: TrackId(t), on: true }), Beats(0.0)).unwrap();
    }
    pulse
        .press(Action::Launch { clip: ClipId(0), quantise: Some(Quantise::None), velocity: None }, Beats(0.0))
        .unwrap();
    let mut out = vec![0f32; 512 * 2];
    let (mut t, mut total, mut msgs) = (0i64, 0usize, 0usize);
    for round in 0..6 {
        pulse.press(rec(RecordAction::Start { quantise: Some(Quantise::Beat) }), now(t)).unwrap();
        pulse.press(rec(RecordAction::Stop { quantise: Some(Quantise::Beat) }), now(t) + Beats(1.5)).unwrap();
        for k in 0..400 {
            let frames = [64usize, 1, 128, 333, 512][k % 5];
            ends.inputs[0].write_chunk_uninit(frames * 2).unwrap().fill_from_iter((0..frames * 2).map(|i| i as f32));
            total += counted(&mut signal, &clock.block(t, frames), &mut out[..frames * 2]);
            t += frames as i64;
            while pulse.poll_event().is_some() {}
            // The disk drains only now and then (in odd rounds, rarely: the ring fills).
            if k % (if round % 2 == 0 { 1 } else { 150 }) == 0 {
                while ends.takes.pop().is_ok() {
                    msgs += 1;
                }
            }
        }
    }
    let lost = ends.counters.lost_frames.load(std::sync::atomic::Ordering::Relaxed);
    assert!(msgs > 100, "takes were recorded ({msgs} messages)");
    assert!(lost > 0, "the full-ring path was taken");
    assert_eq!(total, 0, "Signal::process allocated or freed {total} times while recording");
}
