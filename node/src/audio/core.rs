//! The realtime render callback every audio backend calls: [`AudioCore`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cpal::{FromSample, Sample};
use loophole_engine::signal::Signal;
use loophole_engine::time::{Beats, SampleTime, SimClock};

/// Frames of the core's stereo scratch buffer: device buffers that need a format or channel
/// conversion are rendered in pieces of at most this many frames.
pub const SCRATCH_FRAMES: usize = 4096;

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
}

/// The audio callback's state: Signal, the sample clock, the capture ring and a scratch buffer.
///
/// Built on the control thread, then moved into an audio backend. A backend that stops hands it
/// back (see [`crate::audio::device`]), so a failed device's successor continues at the same
/// sample with the same Signal.
pub struct AudioCore {
    signal: Signal,
    clock: SimClock,
    sample: SampleTime,
    transport: Arc<Transport>,
    capture: Option<rtrb::Producer<f32>>,
    scratch: Vec<f32>,
}

impl AudioCore {
    /// Wraps `signal`, whose blocks are timed by `clock` starting at sample `start`.
    ///
    /// Thread: control. Not realtime-safe (allocates the scratch buffer).
    pub fn new(signal: Signal, clock: SimClock, start: SampleTime, transport: Arc<Transport>) -> AudioCore {
        transport.rendered.store(start.max(0) as u64, Ordering::Release);
        transport.beat.store(clock.block(start, 0).beat_at_first_sample.0.to_bits(), Ordering::Release);
        AudioCore { signal, clock, sample: start, transport, capture: None, scratch: vec![0.0; SCRATCH_FRAMES * 2] }
    }

    /// Starts copying every rendered frame into `ring` (a capture writer drains it). Control
    /// thread, while no backend owns the core.
    pub fn set_capture(&mut self, ring: rtrb::Producer<f32>) {
        self.capture = Some(ring);
    }

    /// Whether rendered frames are copied to a capture ring.
    pub fn is_capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// The sample the next block starts at.
    pub fn sample(&self) -> SampleTime {
        self.sample
    }

    /// The beat the next block starts at.
    pub fn beat(&self) -> Beats {
        self.clock.block(self.sample, 0).beat_at_first_sample
    }

    /// The sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.clock.sample_rate
    }

    /// Renders the next `out.len() / 2` frames of interleaved stereo into `out`: builds the
    /// block's clock from the sample counter, runs Signal, copies the block to the capture ring
    /// (or counts it as dropped when the ring is full), and publishes the new position.
    ///
    /// Thread: audio. Realtime-safe: no allocation, lock, blocking call, I/O or formatting.
    pub fn render_stereo(&mut self, out: &mut [f32]) {
        let frames = out.len() / 2;
        let out = &mut out[..frames * 2];
        let clock = self.clock.block(self.sample, frames);
        self.signal.process(&clock, out);
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
        self.transport.beat.store(clock.end_beat().0.to_bits(), Ordering::Release);
        self.transport.max_block.fetch_max(frames as u64, Ordering::Relaxed);
        self.transport.blocks.fetch_add(1, Ordering::Relaxed);
        self.transport.rendered.store(self.sample as u64, Ordering::Release);
    }

    /// Fills a device buffer of `channels` interleaved channels in any sample format: renders
    /// stereo into the scratch buffer (in pieces of at most [`SCRATCH_FRAMES`]) and converts.
    /// Mono gets the average of left and right; more than two channels get left and right on the
    /// first two and silence on the rest.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn render_device<T>(&mut self, data: &mut [T], channels: usize)
    where
        T: Sample + FromSample<f32>,
    {
        let channels = channels.max(1);
        let total = data.len() / channels;
        let mut done = 0;
        while done < total {
            let n = (total - done).min(SCRATCH_FRAMES);
            let mut scratch = std::mem::take(&mut self.scratch);
            self.render_stereo(&mut scratch[..n * 2]);
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
