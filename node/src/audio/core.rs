//! The realtime render callback every audio backend calls: [`AudioCore`].
//!
//! Each block's clock comes either from a sample counter mapped through a [`TempoMap`]
//! (`--no-link` and the tests) or from Ableton Link ([`LinkAudio`]).
//!
//! **Tempo changes.** Scenes (and the arrangement) change the tempo and time signature at beats:
//! Pulse emits each as a [`TempoChange`], which the control thread sends through the ring made by
//! [`AudioCore::tempo_changes`]. At the start of each callback the core drains that ring. Without
//! Link it adds each change to its [`TempoMap`] (a change whose beat has already been rendered
//! applies at the current sample instead) and cuts the callback at
//! [`TempoMap::next_change_after`], exactly as the offline renderer does, so no Signal block
//! straddles a change and the output is the offline render's, bit for bit. With Link the changes
//! go to [`LinkAudio`], which cuts the callback at the sample of each change's beat and commits
//! the new tempo to Link there (see [`LinkAudio::tempo_change`]).
//!
//! With Link the core also:
//!
//! - closes a **gate** (a fade to silence over [`GATE_MS`]) while the node's transport is
//!   stopped, so nothing is heard between a stop and the next start;
//! - tells Signal when the transport stops ([`Signal::transport_stopped`]: external synths get
//!   note-offs and All Notes Off);
//! - swaps in a **fresh engine** ([`EngineSwap`]) that the control thread builds after a stop, so
//!   that the next start begins from an empty schedule; the old Signal goes back to the control
//!   thread to be freed there;
//! - sends the **block timing** (sample, host time, beat) to the capture writer, for the capture's
//!   timing sidecar.
//!
//! What the control thread needs of the position is published in [`Transport`]: plain atomics,
//! and a [`ClockSnapshot`] under a sequence lock (the audio thread never waits for it).

use std::sync::Arc;

use cpal::{FromSample, Sample};
use loophole_engine::model::TempoChange;
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, Bpm, SampleTime, TempoMap};

use crate::clock::filter::HostTimeFilter;
use crate::clock::{BlockTiming, CallbackTiming, ClockSnapshot, Transport};
use crate::link::LinkAudio;

/// Frames of the core's stereo scratch buffer: device buffers that need a format or channel
/// conversion are rendered in pieces of at most this many frames.
pub const SCRATCH_FRAMES: usize = 4096;

/// Capacity of the ring of tempo changes from the control thread ([`AudioCore::tempo_changes`]).
pub const TEMPO_RING: usize = 256;

/// Length of the fade to silence when the transport stops (Link).
pub const GATE_MS: f64 = 5.0;

/// The control thread's end of an engine swap: send a fresh Signal to the audio core (it takes it
/// once the gate has closed, after a stop) and free the ones it hands back.
pub struct EngineSwap {
    fresh: rtrb::Producer<Signal>,
    retired: rtrb::Consumer<Signal>,
}

impl EngineSwap {
    /// Sends `signal` to the core. False if one is already waiting to be taken (then `signal` is
    /// dropped here, on the control thread).
    ///
    /// Thread: control.
    pub fn send(&mut self, signal: Signal) -> bool {
        self.fresh.push(signal).is_ok()
    }

    /// Whether the core has not taken the Signal sent last yet.
    pub fn pending(&self) -> bool {
        self.fresh.slots() == 0
    }

    /// Frees the Signals the core has handed back. Thread: control (allocator calls happen here).
    pub fn collect(&mut self) -> usize {
        let mut n = 0;
        while let Ok(old) = self.retired.pop() {
            drop(old);
            n += 1;
        }
        n
    }
}

/// The audio side of [`EngineSwap`].
struct SwapSlot {
    fresh: rtrb::Consumer<Signal>,
    retired: rtrb::Producer<Signal>,
}

/// The audio callback's state: Signal, the block clock, the capture ring and a scratch buffer.
///
/// Built on the control thread, then moved into an audio backend. A backend that stops hands it
/// back (see [`crate::audio::device`]), so a failed device's successor continues at the same
/// sample with the same Signal.
pub struct AudioCore {
    signal: Signal,
    /// The sample counter's clock (without Link); with Link only its sample rate is used.
    clock: TempoMap,
    sample_rate: u32,
    link: Option<Box<LinkAudio>>,
    sample: SampleTime,
    transport: Arc<Transport>,
    capture: Option<rtrb::Producer<f32>>,
    /// The loopback tap: every rendered frame, and each block's timing on the host clock, for a
    /// simulated cable to the null input.
    tap: Option<(rtrb::Producer<f32>, rtrb::Producer<BlockTiming>)>,
    timing: Option<rtrb::Producer<BlockTiming>>,
    /// Smooths the heard time on the host clock of blocks whose timing jitters (cpal callbacks).
    host_filter: Box<HostTimeFilter>,
    swap: Option<SwapSlot>,
    /// Tempo and time-signature changes from the control thread.
    tempo_in: Option<rtrb::Consumer<TempoChange>>,
    /// Gate gain (1 open, 0 closed) and whether a stop is waiting for a fresh engine.
    gate: f32,
    awaiting_engine: bool,
    was_playing: bool,
    scratch: Vec<f32>,
}

impl AudioCore {
    /// Wraps `signal`, whose blocks are timed by the sample counter mapped through `clock`
    /// (beat 0 is sample 0), starting at sample `start` (`--no-link`, tests).
    ///
    /// Thread: control. Not realtime-safe (allocates the scratch buffer).
    pub fn new(signal: Signal, clock: TempoMap, start: SampleTime, transport: Arc<Transport>) -> AudioCore {
        // Fix the host clock's origin here, on the control thread, not in the callback.
        crate::clock::host::origin();
        let first = clock.block(start, 0);
        let core = AudioCore {
            signal,
            clock,
            sample_rate: first.sample_rate,
            link: None,
            sample: start,
            transport,
            capture: None,
            tap: None,
            timing: None,
            host_filter: Box::new(HostTimeFilter::new(first.sample_rate)),
            swap: None,
            tempo_in: None,
            gate: 1.0,
            awaiting_engine: false,
            was_playing: true,
            scratch: vec![0.0; SCRATCH_FRAMES * 2],
        };
        core.transport.publish(&ClockSnapshot {
            sample: start,
            beat: first.beat_at_first_sample.0,
            beats_per_sample: first.beats_per_sample,
            playing: true,
            epoch: 1,
            tempo: first.tempo().0,
            solo: true,
            quantum: first.quantum,
            ..ClockSnapshot::default()
        });
        core
    }

    /// Wraps `signal`, whose blocks are timed by Link through `link`, starting at sample `start`.
    ///
    /// Thread: control. Not realtime-safe.
    pub fn with_link(signal: Signal, link: LinkAudio, start: SampleTime, transport: Arc<Transport>) -> AudioCore {
        let (beat, playing, epoch, tempo) = link.initial(start);
        let rate = link.sample_rate();
        let quantum = link.quantum();
        let mut core = AudioCore::new(signal, TempoMap::new(rate, Bpm(tempo), quantum), start, transport);
        core.transport.publish(&ClockSnapshot {
            sample: start,
            beat,
            beats_per_sample: Bpm(tempo).beats_per_sample(rate),
            playing,
            epoch,
            tempo,
            solo: true,
            quantum,
            ..ClockSnapshot::default()
        });
        core.gate = if playing { 1.0 } else { 0.0 };
        core.was_playing = playing;
        core.link = Some(Box::new(link));
        core
    }

    /// Starts copying every rendered frame into `ring` (a capture writer drains it). Control
    /// thread, while no backend owns the core.
    pub fn set_capture(&mut self, ring: rtrb::Producer<f32>) {
        self.capture = Some(ring);
    }

    /// Starts sending each block's timing into `ring` (the capture's timing sidecar). Only
    /// blocks timed by Link have a host time; others are not sent.
    pub fn set_capture_timing(&mut self, ring: rtrb::Producer<BlockTiming>) {
        self.timing = Some(ring);
    }

    /// Starts copying every rendered frame into `samples` as well, and each block's timing into
    /// `blocks` with `host_us` on the node's host clock ([`super::host`]) even with Link: the
    /// instant the block's first frame is heard, as the backend reports it. The null input's
    /// loopback source reads them; a block that does not fit is left out of both (it hears
    /// silence there). Control thread, while no backend owns the core.
    pub fn set_tap(&mut self, samples: rtrb::Producer<f32>, blocks: rtrb::Producer<BlockTiming>) {
        self.tap = Some((samples, blocks));
    }

    /// Whether rendered frames are copied to a capture ring.
    pub fn is_capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Whether the core's blocks are timed by Link.
    pub fn has_link(&self) -> bool {
        self.link.is_some()
    }

    /// Creates the channel through which the control thread hands the core fresh engines (see
    /// [`EngineSwap`]); replaces any previous one. Control thread, while no backend owns the core.
    pub fn engine_swap(&mut self) -> EngineSwap {
        let (fresh_tx, fresh_rx) = rtrb::RingBuffer::new(1);
        let (retired_tx, retired_rx) = rtrb::RingBuffer::new(4);
        self.swap = Some(SwapSlot { fresh: fresh_rx, retired: retired_tx });
        EngineSwap { fresh: fresh_tx, retired: retired_rx }
    }

    /// Creates the ring through which the control thread sends Pulse's tempo and time-signature
    /// changes ([`loophole_engine::pulse::Pulse::take_tempo_changes`]) to the core, which applies
    /// each at its beat; replaces any previous one. Control thread, while no backend owns the
    /// core.
    pub fn tempo_changes(&mut self) -> rtrb::Producer<TempoChange> {
        let (tx, rx) = rtrb::RingBuffer::new(TEMPO_RING);
        self.tempo_in = Some(rx);
        tx
    }

    /// The sample the next block starts at.
    pub fn sample(&self) -> SampleTime {
        self.sample
    }

    /// The beat the next block starts at.
    pub fn beat(&self) -> Beats {
        Beats(self.transport.snapshot().beat)
    }

    /// The sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Renders the next `out.len() / 2` frames of interleaved stereo into `out` with no timing
    /// information from the device (see [`AudioCore::render_stereo_timed`]).
    ///
    /// Thread: audio. Realtime-safe.
    pub fn render_stereo(&mut self, out: &mut [f32]) {
        self.render_stereo_timed(out, CallbackTiming::default());
    }

    /// Renders the next `out.len() / 2` frames of interleaved stereo into `out`: builds the
    /// block's clock (sample counter or Link, with `timing`), runs Signal, applies the transport
    /// gate, copies the block to the capture ring (or counts it as dropped when the ring is full),
    /// and publishes the new position.
    ///
    /// Thread: audio. Realtime-safe: no allocation, lock, blocking call, I/O or formatting.
    pub fn render_stereo_timed(&mut self, out: &mut [f32], timing: CallbackTiming) {
        let frames = out.len() / 2;
        let out = &mut out[..frames * 2];
        if self.gate == 0.0
            && let Some(swap) = &mut self.swap
            && swap.retired.slots() > 0
            && let Ok(fresh) = swap.fresh.pop()
        {
            let old = std::mem::replace(&mut self.signal, fresh);
            // Cannot fail: a slot was checked free above, and only this thread pushes.
            let _ = swap.retired.push(old);
            self.awaiting_engine = false;
        }
        self.take_tempo_changes();
        // The callback in pieces, cut at every tempo change so that no Signal block straddles
        // one (a single piece when none falls inside it).
        // On the host clock (with or without Link: the snapshot's `local_us`, the tap): when the
        // callback's first frame is heard, as the backend says, and as the snapshot publishes it:
        // exact when the backend knows its deadline (the null device), else smoothed by a
        // regression over recent blocks.
        let (heard_us, line_us, us_per_sample) = if timing.due_us != 0.0 {
            let heard = timing.due_us + timing.latency_us;
            (heard, heard, 1e6 / self.sample_rate.max(1) as f64)
        } else {
            let heard = crate::clock::host::now_us() - timing.late_us + timing.latency_us;
            let line = self.host_filter.update(self.sample, heard);
            (heard, line, self.host_filter.micros_per_sample())
        };
        let mut done = 0;
        let snap = loop {
            let at = self.sample + done as SampleTime;
            let rest = frames - done;
            let (clock, snap) = match self.link.as_deref_mut() {
                None => {
                    let n = self.clock.next_change_after(at).map_or(rest, |c| rest.min((c - at) as usize));
                    let clock = self.clock.block(at, n);
                    // What is in force at the next sample (a change may start there).
                    let next = self.clock.block(at + n as SampleTime, 0);
                    let snap = ClockSnapshot {
                        sample: at + n as SampleTime,
                        beat: next.beat_at_first_sample.0,
                        beats_per_sample: next.beats_per_sample,
                        playing: true,
                        epoch: 1,
                        tempo: next.tempo().0,
                        solo: true,
                        quantum: next.quantum,
                        host_us: line_us + (done + n) as f64 * us_per_sample,
                        us_per_sample,
                        local_us: line_us + (done + n) as f64 * us_per_sample,
                        local_us_per_sample: us_per_sample,
                    };
                    (clock, snap)
                }
                Some(link) => {
                    // A piece after a tempo change continues on the host-time line of the first.
                    let b = if done == 0 { link.block(at, rest, timing) } else { link.block_rest(at, rest) };
                    let n = b.clock.frames;
                    let snap = ClockSnapshot {
                        sample: at + n as SampleTime,
                        beat: b.clock.end_beat().0,
                        beats_per_sample: b.clock.beats_per_sample,
                        host_us: b.host_us + n as f64 * b.us_per_sample,
                        us_per_sample: b.us_per_sample,
                        playing: b.playing,
                        epoch: b.epoch,
                        tempo: b.tempo,
                        solo: b.solo,
                        quantum: b.clock.quantum,
                        local_us: line_us + (done + n) as f64 * us_per_sample,
                        local_us_per_sample: us_per_sample,
                    };
                    if let Some(ring) = &mut self.timing {
                        let t = BlockTiming {
                            sample: at,
                            host_us: b.host_us,
                            beat: b.clock.beat_at_first_sample.0,
                            frames: n as u32,
                        };
                        let _ = ring.push(t);
                    }
                    (b.clock, snap)
                }
            };
            let n = clock.frames.min(rest);
            debug_assert!(n > 0 || rest == 0, "a piece of no frames");
            self.signal.process(&clock, &mut out[done * 2..(done + n) * 2]);
            done += n;
            if done >= frames || n == 0 {
                break snap;
            }
        };
        if self.link.is_some() {
            if self.was_playing && !snap.playing {
                // External synths: release held notes and All Notes Off; nothing more from this
                // engine (the next start gets a fresh one).
                self.signal.transport_stopped(self.sample + frames as SampleTime);
            }
            if self.was_playing && !snap.playing && self.swap.is_some() {
                self.awaiting_engine = true;
            }
            self.was_playing = snap.playing;
            self.apply_gate(out, snap.playing && !self.awaiting_engine);
        }
        if let Some(ring) = &mut self.capture {
            match ring.write_chunk_uninit(out.len()) {
                Ok(chunk) => {
                    chunk.fill_from_iter(out.iter().copied());
                }
                Err(_) => {
                    self.transport.drop_capture(frames as u64);
                }
            }
        }
        if let Some((ring, blocks)) = &mut self.tap
            && blocks.slots() > 0
            && let Ok(chunk) = ring.write_chunk_uninit(out.len())
        {
            chunk.fill_from_iter(out.iter().copied());
            let beat = self.transport.beat().0;
            // Cannot fail: a slot was checked free above, and only this thread pushes.
            let _ = blocks.push(BlockTiming { sample: self.sample, host_us: heard_us, beat, frames: frames as u32 });
        }
        self.sample += frames as SampleTime;
        self.transport.count_block(frames as u64);
        self.transport.publish(&snap);
    }

    /// Drains the control thread's tempo changes: into Link's pending list, or into the tempo
    /// map. A change whose beat has already been rendered (the control thread was late) applies
    /// at the next sample, so the beat stays continuous. Realtime-safe: the map and the list
    /// never allocate; a change they cannot hold is counted in
    /// [`Transport::refused_tempo_changes`].
    fn take_tempo_changes(&mut self) {
        let Some(rx) = &mut self.tempo_in else { return };
        while let Ok(c) = rx.pop() {
            let held = match self.link.as_deref_mut() {
                Some(link) => link.tempo_change(c),
                None => {
                    let now = self.clock.block(self.sample, 0).beat_at_first_sample;
                    self.clock.change(c.beat.max(now), c.tempo, c.beats_per_bar)
                }
            };
            if !held {
                self.transport.refuse_tempo_change();
            }
        }
    }

    /// Opens the gate at once (a fresh engine is silent until its first trigger) or closes it
    /// with a linear fade over [`GATE_MS`].
    fn apply_gate(&mut self, out: &mut [f32], open: bool) {
        if open {
            self.gate = 1.0;
            return;
        }
        if self.gate == 0.0 {
            out.fill(0.0);
            return;
        }
        let step = (1000.0 / (GATE_MS * self.sample_rate as f64)) as f32;
        for frame in out.chunks_exact_mut(2) {
            self.gate = (self.gate - step).max(0.0);
            frame[0] *= self.gate;
            frame[1] *= self.gate;
        }
    }

    /// Fills a device buffer of `channels` interleaved channels in any sample format (see
    /// [`AudioCore::render_device_timed`]) with no timing information from the device.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn render_device<T>(&mut self, data: &mut [T], channels: usize)
    where
        T: Sample + FromSample<f32>,
    {
        self.render_device_timed(data, channels, CallbackTiming::default());
    }

    /// Fills a device buffer of `channels` interleaved channels in any sample format: renders
    /// stereo into the scratch buffer (in pieces of at most [`SCRATCH_FRAMES`]) and converts.
    /// Mono gets the average of left and right; more than two channels get left and right on the
    /// first two and silence on the rest.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn render_device_timed<T>(&mut self, data: &mut [T], channels: usize, timing: CallbackTiming)
    where
        T: Sample + FromSample<f32>,
    {
        let channels = channels.max(1);
        let total = data.len() / channels;
        let us_per_frame = 1e6 / self.sample_rate.max(1) as f64;
        let mut done = 0;
        while done < total {
            let n = (total - done).min(SCRATCH_FRAMES);
            let mut scratch = std::mem::take(&mut self.scratch);
            let piece = CallbackTiming { latency_us: timing.latency_us + done as f64 * us_per_frame, ..timing };
            self.render_stereo_timed(&mut scratch[..n * 2], piece);
            let dst = &mut data[done * channels..(done + n) * channels];
            for (frame, lr) in dst.chunks_exact_mut(channels).zip(scratch.chunks_exact(2)) {
                match channels {
                    1 => frame[0] = T::from_sample((lr[0] + lr[1]) * 0.5),
                    _ => {
                        frame[0] = T::from_sample(lr[0]);
                        frame[1] = T::from_sample(lr[1]);
                        for s in &mut frame[2..] {
                            *s = T::EQUILIBRIUM;
                        }
                    }
                }
            }
            self.scratch = scratch;
            done += n;
        }
        for s in &mut data[total * channels..] {
            *s = T::EQUILIBRIUM;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::EngineConfig;
    use loophole_engine::model::Session;
    use loophole_engine::model::{AudioData, Clip, ClipContent, Scene, Track, TrackKind};
    use loophole_engine::pulse::Action;
    use loophole_engine::time::Quantise;

    fn core() -> (AudioCore, Arc<Transport>) {
        let session = Arc::new(Session::new("empty", Bpm(120.0)));
        let (_pulse, signal) =
            loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 16 })
                .unwrap();
        let transport = Transport::new();
        let clock = TempoMap::new(48_000, Bpm(120.0), 4.0);
        (AudioCore::new(signal, clock, 0, transport.clone()), transport)
    }

    /// DC audio on two tracks (track 0 at 0.1, track 1 at 0.2), no crossfades: the output level
    /// tells which clips play from which sample.
    fn dc_session() -> Session {
        let mut s = Session::new("dc", Bpm(120.0));
        s.crossfade_ms = 0.0;
        for (t, level) in [(0, 0.1f32), (1, 0.2)] {
            let track = s.add_track(Track::new(format!("t{t}"), TrackKind::Audio));
            let dc = AudioData { sample_rate: 48_000, left: vec![level; 8 * 24_000], right: vec![level; 8 * 24_000] };
            s.add_clip(Clip::new(format!("c{t}"), track, ClipContent::Audio(Arc::new(dc)), Beats(8.0)));
        }
        let c0 = s.clip_by_name("c0").unwrap();
        let mut slow = Scene::new("slow", vec![c0]);
        slow.tempo = Some(Bpm(60.0));
        slow.beats_per_bar = Some(3.0);
        s.add_scene(slow);
        s
    }

    #[test]
    fn a_tempo_change_from_the_ring_cuts_the_block_and_changes_the_beat_rate_on_its_sample() {
        let session = Arc::new(dc_session());
        let (mut pulse, signal) = loophole_engine::build(
            session.clone(),
            &EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 64 },
        )
        .unwrap();
        let transport = Transport::new();
        let mut core = AudioCore::new(signal, TempoMap::new(48_000, Bpm(120.0), 4.0), 0, transport.clone());
        let mut tx = core.tempo_changes();
        // The scene (60 BPM, 3/4) at beat 1 = sample 24 000; track 1's clip at beat 1.25, which
        // after the change is sample 24 000 + 0.25 × 48 000 = 36 000 (30 000 at 120 BPM).
        let scene = session.scene_by_name("slow").unwrap();
        let c1 = session.clip_by_name("c1").unwrap();
        pulse.press(Action::LaunchScene { scene, quantise: Some(Quantise::None) }, Beats(1.0)).unwrap();
        pulse.press(Action::Launch { clip: c1, quantise: Some(Quantise::None), velocity: None }, Beats(1.25)).unwrap();
        pulse.tick(Beats(0.0), Beats(2.0)).unwrap();
        let changes = pulse.take_tempo_changes();
        assert_eq!(changes.len(), 1);
        for c in changes {
            tx.push(c).unwrap();
        }
        let mut out = vec![0f32; 2 * 20_000];
        core.render_stereo(&mut out);
        assert!(out.iter().all(|s| *s == 0.0));
        assert_eq!(transport.snapshot().tempo, 120.0, "the change is not reached yet");
        // One callback across both the change (24 000) and the launch after it (36 000).
        core.render_stereo(&mut out);
        let level = |sample: usize| out[2 * (sample - 20_000)];
        assert_eq!(level(23_999), 0.0);
        assert_eq!(level(24_000), 0.1, "the scene starts on the change's sample");
        assert_eq!(level(35_999), 0.1);
        assert!((level(36_000) - 0.3).abs() < 1e-6, "beat 1.25 is heard at the new tempo's sample");
        let snap = transport.snapshot();
        assert_eq!((snap.sample, snap.tempo, snap.quantum), (40_000, 60.0, 3.0));
        assert_eq!(snap.beat, 1.0 + 16_000.0 / 48_000.0);
        assert_eq!(snap.beats_per_sample, Bpm(60.0).beats_per_sample(48_000));
    }

    #[test]
    fn a_tempo_change_that_arrives_late_applies_at_the_next_sample_without_a_jump() {
        let (mut core, transport) = core();
        let mut tx = core.tempo_changes();
        let mut buf = vec![0f32; 2 * 1000];
        core.render_stereo(&mut buf);
        let before = transport.snapshot().beat;
        // Beat 0.01 is sample 240, already rendered.
        tx.push(TempoChange { beat: Beats(0.01), tempo: Some(Bpm(90.0)), beats_per_bar: None }).unwrap();
        core.render_stereo(&mut buf);
        let snap = transport.snapshot();
        assert_eq!(snap.tempo, 90.0);
        assert_eq!(snap.beat, before + 1000.0 * Bpm(90.0).beats_per_sample(48_000));
    }

    #[test]
    fn the_position_advances_by_each_block_and_is_published() {
        let (mut core, transport) = core();
        let mut buf = vec![1.0f32; 512];
        core.render_stereo(&mut buf);
        core.render_stereo(&mut buf[..100]);
        assert_eq!(core.sample(), 256 + 50);
        assert_eq!(transport.rendered(), 306);
        assert_eq!(transport.beat(), Beats(306.0 * 120.0 / 60.0 / 48_000.0));
        assert_eq!(transport.blocks(), 2);
        assert_eq!(transport.max_block(), 256);
        assert!(buf.iter().all(|s| *s == 0.0), "an empty session renders silence");
    }

    #[test]
    fn device_buffers_are_converted_and_mapped_to_any_channel_count() {
        let (mut core, transport) = core();
        let mut mono = vec![7i16; 10_000];
        core.render_device(&mut mono, 1);
        assert!(mono.iter().all(|s| *s == 0));
        let mut six = vec![9u16; 6 * 5000 + 3];
        core.render_device(&mut six, 6);
        assert!(six.iter().all(|s| *s == u16::EQUILIBRIUM), "silence is the unsigned midpoint");
        assert_eq!(transport.rendered(), 10_000 + 5000);
    }

    #[test]
    fn a_full_capture_ring_counts_dropped_frames_instead_of_blocking() {
        let (mut core, transport) = core();
        let (tx, mut rx) = rtrb::RingBuffer::new(300);
        core.set_capture(tx);
        let mut buf = vec![0f32; 256];
        core.render_stereo(&mut buf); // 128 frames fit
        core.render_stereo(&mut buf); // 22 slots left: dropped
        assert_eq!(transport.dropped_capture(), 128);
        assert_eq!(rx.slots(), 256);
        rx.read_chunk(256).unwrap().commit_all();
        core.render_stereo(&mut buf);
        assert_eq!(rx.slots(), 256);
    }
}
