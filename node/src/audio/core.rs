//! The realtime render callback every audio backend calls: [`AudioCore`].
//!
//! Each block's clock comes either from a sample counter ([`SimClock`], `--no-link` and the
//! tests) or from Ableton Link ([`LinkAudio`]). With Link the core also:
//!
//! - closes a **gate** (a fade to silence over [`GATE_MS`]) while the node's transport is
//!   stopped, so nothing is heard between a stop and the next start;
//! - swaps in a **fresh engine** ([`EngineSwap`]) that the control thread builds after a stop, so
//!   that the next start begins from an empty schedule; the old Signal goes back to the control
//!   thread to be freed there;
//! - sends the **block timing** (sample, host time, beat) to the capture writer, for the capture's
//!   timing sidecar.
//!
//! What the control thread needs of the position is published in [`Transport`]: plain atomics,
//! and a [`ClockSnapshot`] under a sequence lock (the audio thread never waits for it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use cpal::{FromSample, Sample};
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, SampleTime, SimClock};

use crate::link::LinkAudio;

/// Frames of the core's stereo scratch buffer: device buffers that need a format or channel
/// conversion are rendered in pieces of at most this many frames.
pub const SCRATCH_FRAMES: usize = 4096;

/// Length of the fade to silence when the transport stops (Link).
pub const GATE_MS: f64 = 5.0;

/// When a callback's first sample will be heard, as the backend knows it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallbackTiming {
    /// How late the callback started after the moment it was due, in µs (the null device knows
    /// its deadlines; cpal callbacks report 0).
    pub late_us: f64,
    /// Output latency in µs: from the moment the callback was due to the moment its first sample
    /// is heard (cpal: `playback - callback`; the null device: one block period).
    pub latency_us: f64,
}

/// The timing of one block, for the capture's timing sidecar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockTiming {
    /// The block's first sample.
    pub sample: SampleTime,
    /// Host time (Link's clock, µs) at which that sample is heard.
    pub host_us: f64,
    /// The beat at that sample.
    pub beat: f64,
    /// Frames in the block.
    pub frames: u32,
}

/// The audio position as the control thread reads it ([`Transport::snapshot`]): the sample the
/// next block starts at and everything needed to map samples to beats and host time near it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClockSnapshot {
    /// The sample the next block starts at.
    pub sample: SampleTime,
    /// The beat at that sample.
    pub beat: f64,
    /// Beats per sample of the last block.
    pub beats_per_sample: f64,
    /// Host time (Link µs) at which that sample is heard; 0 without Link.
    pub host_us: f64,
    /// Host µs per sample; 0 without Link.
    pub us_per_sample: f64,
    /// The transport plays (always true without Link).
    pub playing: bool,
    /// Starts so far (1 from the start without Link).
    pub epoch: u64,
    /// Tempo (BPM).
    pub tempo: f64,
    /// Alone on its own timeline (no Link peers).
    pub solo: bool,
}

impl ClockSnapshot {
    /// The host time (Link µs) at which `sample` is heard, extrapolated from the snapshot.
    pub fn host_of(&self, sample: SampleTime) -> f64 {
        self.host_us + (sample - self.sample) as f64 * self.us_per_sample
    }
}

/// Words of a [`ClockSnapshot`] under the sequence lock.
const SNAP_WORDS: usize = 9;

/// What the audio thread publishes for the control thread (lock-free, any thread).
#[derive(Debug, Default)]
pub struct Transport {
    /// Frames rendered so far: the sample the next block starts at. Beat 0 is sample 0.
    rendered: AtomicU64,
    /// The beat the next block starts at, as `f64` bits.
    beat: AtomicU64,
    /// Callbacks (blocks) rendered.
    blocks: AtomicU64,
    /// The largest block a callback has asked for.
    max_block: AtomicU64,
    /// Frames that did not fit into the capture ring and were dropped from the capture.
    dropped_capture: AtomicU64,
    /// Sequence number of `snap` (odd while the audio thread writes it).
    seq: AtomicU64,
    snap: [AtomicU64; SNAP_WORDS],
}

impl Transport {
    /// A transport at sample 0.
    pub fn new() -> Arc<Transport> {
        Arc::new(Transport::default())
    }

    /// Frames rendered so far (the sample the next block starts at).
    pub fn rendered(&self) -> u64 {
        self.rendered.load(Ordering::Acquire)
    }

    /// The beat the next block starts at (the beat of [`Transport::rendered`]).
    pub fn beat(&self) -> Beats {
        Beats(f64::from_bits(self.beat.load(Ordering::Acquire)))
    }

    /// Blocks rendered so far.
    pub fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Relaxed)
    }

    /// The largest block asked for so far (0 before the first).
    pub fn max_block(&self) -> u64 {
        self.max_block.load(Ordering::Relaxed)
    }

    /// Frames dropped from the capture because its ring was full.
    pub fn dropped_capture(&self) -> u64 {
        self.dropped_capture.load(Ordering::Relaxed)
    }

    /// A consistent copy of the clock the audio thread published last. Any thread; retries
    /// (without blocking the writer) while the audio thread is writing.
    pub fn snapshot(&self) -> ClockSnapshot {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let w: [u64; SNAP_WORDS] = std::array::from_fn(|i| self.snap[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return ClockSnapshot {
                    sample: w[0] as i64,
                    beat: f64::from_bits(w[1]),
                    beats_per_sample: f64::from_bits(w[2]),
                    host_us: f64::from_bits(w[3]),
                    us_per_sample: f64::from_bits(w[4]),
                    playing: w[5] != 0,
                    epoch: w[6],
                    tempo: f64::from_bits(w[7]),
                    solo: w[8] != 0,
                };
            }
        }
    }

    /// Publishes a snapshot. Single writer (the thread that owns the core). Realtime-safe.
    fn publish(&self, s: &ClockSnapshot) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let w = [
            s.sample as u64,
            s.beat.to_bits(),
            s.beats_per_sample.to_bits(),
            s.host_us.to_bits(),
            s.us_per_sample.to_bits(),
            s.playing as u64,
            s.epoch,
            s.tempo.to_bits(),
            s.solo as u64,
        ];
        for (slot, v) in self.snap.iter().zip(w) {
            slot.store(v, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
        self.rendered.store(s.sample.max(0) as u64, Ordering::Release);
        self.beat.store(s.beat.to_bits(), Ordering::Release);
    }
}

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
    clock: SimClock,
    link: Option<Box<LinkAudio>>,
    sample: SampleTime,
    transport: Arc<Transport>,
    capture: Option<rtrb::Producer<f32>>,
    timing: Option<rtrb::Producer<BlockTiming>>,
    swap: Option<SwapSlot>,
    /// Gate gain (1 open, 0 closed) and whether a stop is waiting for a fresh engine.
    gate: f32,
    awaiting_engine: bool,
    was_playing: bool,
    scratch: Vec<f32>,
}

impl AudioCore {
    /// Wraps `signal`, whose blocks are timed by `clock` starting at sample `start` (the sample
    /// counter: `--no-link`, tests).
    ///
    /// Thread: control. Not realtime-safe (allocates the scratch buffer).
    pub fn new(signal: Signal, clock: SimClock, start: SampleTime, transport: Arc<Transport>) -> AudioCore {
        let first = clock.block(start, 0);
        let core = AudioCore {
            signal,
            clock,
            link: None,
            sample: start,
            transport,
            capture: None,
            timing: None,
            swap: None,
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
            tempo: clock.tempo.0,
            solo: true,
            ..ClockSnapshot::default()
        });
        core
    }

    /// Wraps `signal`, whose blocks are timed by Link through `link`, starting at sample `start`.
    /// `fallback` gives the quantum and sample rate (its tempo is only used until the first
    /// block).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn with_link(
        signal: Signal,
        link: LinkAudio,
        fallback: SimClock,
        start: SampleTime,
        transport: Arc<Transport>,
    ) -> AudioCore {
        let (beat, playing, epoch, tempo) = link.initial(start);
        let mut core =
            AudioCore::new(signal, SimClock { tempo: loophole_engine::time::Bpm(tempo), ..fallback }, start, transport);
        core.transport.publish(&ClockSnapshot {
            sample: start,
            beat,
            beats_per_sample: loophole_engine::time::Bpm(tempo).beats_per_sample(fallback.sample_rate),
            playing,
            epoch,
            tempo,
            solo: true,
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
        self.clock.sample_rate
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
        let (clock, snap) = match self.link.as_deref_mut() {
            None => {
                let clock = self.clock.block(self.sample, frames);
                let snap = ClockSnapshot {
                    sample: self.sample + frames as SampleTime,
                    beat: clock.end_beat().0,
                    beats_per_sample: clock.beats_per_sample,
                    playing: true,
                    epoch: 1,
                    tempo: self.clock.tempo.0,
                    solo: true,
                    ..ClockSnapshot::default()
                };
                (clock, snap)
            }
            Some(link) => {
                let b = link.block(self.sample, frames, timing);
                let snap = ClockSnapshot {
                    sample: self.sample + frames as SampleTime,
                    beat: b.clock.end_beat().0,
                    beats_per_sample: b.clock.beats_per_sample,
                    host_us: b.host_us + frames as f64 * b.us_per_sample,
                    us_per_sample: b.us_per_sample,
                    playing: b.playing,
                    epoch: b.epoch,
                    tempo: b.tempo,
                    solo: b.solo,
                };
                if let Some(ring) = &mut self.timing {
                    let t = BlockTiming {
                        sample: self.sample,
                        host_us: b.host_us,
                        beat: b.clock.beat_at_first_sample.0,
                        frames: frames as u32,
                    };
                    let _ = ring.push(t);
                }
                (b.clock, snap)
            }
        };
        self.signal.process(&clock, out);
        if self.link.is_some() {
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
                    self.transport.dropped_capture.fetch_add(frames as u64, Ordering::Relaxed);
                }
            }
        }
        self.sample += frames as SampleTime;
        self.transport.max_block.fetch_max(frames as u64, Ordering::Relaxed);
        self.transport.blocks.fetch_add(1, Ordering::Relaxed);
        self.transport.publish(&snap);
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
        let step = (1000.0 / (GATE_MS * self.clock.sample_rate as f64)) as f32;
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
        let us_per_frame = 1e6 / self.clock.sample_rate.max(1) as f64;
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
    use loophole_engine::time::Bpm;

    fn core() -> (AudioCore, Arc<Transport>) {
        let session = Arc::new(Session::new("empty", Bpm(120.0)));
        let (_pulse, signal) =
            loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 256, queue_capacity: 16 })
                .unwrap();
        let transport = Transport::new();
        let clock = SimClock { sample_rate: 48_000, tempo: Bpm(120.0), quantum: 4.0 };
        (AudioCore::new(signal, clock, 0, transport.clone()), transport)
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
