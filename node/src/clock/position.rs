//! The audio position the audio thread publishes for the control thread ([`Transport`]): plain
//! atomics, and a [`ClockSnapshot`] (sample, beat, tempo, host time) under a sequence lock, so
//! the audio thread never waits and a reader never sees half a snapshot. Written on the audio
//! thread, read on any thread; lock-free.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use loophole_engine::time::{Beats, SampleTime};

/// The audio position as the control thread reads it ([`Transport::snapshot`]): the sample the
/// next block starts at and everything needed to map samples to beats and host time near it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClockSnapshot {
    /// The sample the next block starts at.
    pub sample: SampleTime,
    /// The beat at that sample.
    pub beat: f64,
    /// Beats per sample in force at `sample` (after any tempo change there).
    pub beats_per_sample: f64,
    /// Host time at which that sample is heard, in µs: Link's clock with Link, else the node's
    /// host clock ([`crate::clock::host`]); 0 before the first block.
    pub host_us: f64,
    /// Host µs per sample; 0 before the first block.
    pub us_per_sample: f64,
    /// The transport plays (always true without Link).
    pub playing: bool,
    /// Starts so far (1 from the start without Link).
    pub epoch: u64,
    /// Tempo (BPM) in force at `sample`.
    pub tempo: f64,
    /// Alone on its own timeline (no Link peers).
    pub solo: bool,
    /// Beats per bar (the quantum) in force at `sample`.
    pub quantum: f64,
    /// Host time at which `sample` is heard on the node's host clock ([`crate::clock::host`]),
    /// with or without Link, as the output backend reports it (exact on the null device,
    /// smoothed for cpal); 0 before the first block. The input recorder aligns with it: input
    /// blocks are stamped on the same clock.
    pub local_us: f64,
    /// Host-clock µs per sample of that line; 0 before the first block.
    pub local_us_per_sample: f64,
}

impl ClockSnapshot {
    /// The host time (Link µs) at which `sample` is heard, extrapolated from the snapshot.
    pub fn host_of(&self, sample: SampleTime) -> f64 {
        self.host_us + (sample - self.sample) as f64 * self.us_per_sample
    }
}

/// Words of a [`ClockSnapshot`] under the sequence lock.
const SNAP_WORDS: usize = 12;

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
    /// Tempo changes the audio thread could not hold (its tempo map or Link's pending list was
    /// full).
    refused_tempo: AtomicU64,
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

    /// Tempo changes the audio thread refused because its tempo map (or Link's list of pending
    /// changes) was full.
    pub fn refused_tempo_changes(&self) -> u64 {
        self.refused_tempo.load(Ordering::Relaxed)
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
                    quantum: f64::from_bits(w[9]),
                    local_us: f64::from_bits(w[10]),
                    local_us_per_sample: f64::from_bits(w[11]),
                };
            }
        }
    }

    /// Counts frames dropped from the capture (its ring was full). Audio thread; realtime-safe.
    pub(crate) fn drop_capture(&self, frames: u64) {
        self.dropped_capture.fetch_add(frames, Ordering::Relaxed);
    }

    /// Counts a rendered block of `frames`. Audio thread; realtime-safe.
    pub(crate) fn count_block(&self, frames: u64) {
        self.max_block.fetch_max(frames, Ordering::Relaxed);
        self.blocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tempo change the audio thread could not hold. Audio thread; realtime-safe.
    pub(crate) fn refuse_tempo_change(&self) {
        self.refused_tempo.fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes a snapshot. Single writer (the thread that owns the core). Realtime-safe.
    pub(crate) fn publish(&self, s: &ClockSnapshot) {
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
            s.quantum.to_bits(),
            s.local_us.to_bits(),
            s.local_us_per_sample.to_bits(),
        ];
        for (slot, v) in self.snap.iter().zip(w) {
            slot.store(v, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
        self.rendered.store(s.sample.max(0) as u64, Ordering::Release);
        self.beat.store(s.beat.to_bits(), Ordering::Release);
    }
}
