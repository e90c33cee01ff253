//! Peak meters and counters Signal writes on the audio thread and any thread reads, without
//! locks (relaxed atomics).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::model::TrackId;

/// Peak meters, readable from any thread without locks. Each peak holds the largest absolute
/// sample since it was last taken.
#[derive(Debug)]
pub struct Meters {
    pub(super) tracks: Vec<[AtomicU32; 2]>,
    pub(super) master: [AtomicU32; 2],
    /// Blocks processed (for load and liveness displays).
    pub(super) blocks: AtomicU64,
    /// Frames of streamed clips played as silence because the disk reader was behind.
    pub(super) stream_underruns: AtomicU64,
}

impl Meters {
    pub(crate) fn new(tracks: usize) -> Meters {
        Meters {
            tracks: (0..tracks).map(|_| [AtomicU32::new(0), AtomicU32::new(0)]).collect(),
            master: [AtomicU32::new(0), AtomicU32::new(0)],
            blocks: AtomicU64::new(0),
            stream_underruns: AtomicU64::new(0),
        }
    }

    /// Takes (reads and resets) the left/right peaks of a track. Thread-safe, lock-free.
    pub fn take_track(&self, track: TrackId) -> [f32; 2] {
        let t = &self.tracks[track.index()];
        [f32::from_bits(t[0].swap(0, Ordering::Relaxed)), f32::from_bits(t[1].swap(0, Ordering::Relaxed))]
    }

    /// Takes (reads and resets) the master peaks. Thread-safe, lock-free.
    pub fn take_master(&self) -> [f32; 2] {
        [
            f32::from_bits(self.master[0].swap(0, Ordering::Relaxed)),
            f32::from_bits(self.master[1].swap(0, Ordering::Relaxed)),
        ]
    }

    /// Blocks processed so far.
    pub fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Relaxed)
    }

    /// Stream underruns so far: frames of streamed clips played as silence because the disk
    /// reader had not delivered them in time (see `media::stream`).
    pub fn stream_underruns(&self) -> u64 {
        self.stream_underruns.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn hold(slot: &AtomicU32, peak: f32) {
        // Non-negative floats order like their bit patterns.
        slot.fetch_max(peak.abs().to_bits(), Ordering::Relaxed);
    }
}
