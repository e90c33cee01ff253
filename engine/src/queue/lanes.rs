//! Stream lanes: the lock-free queues through which the disk reader (its own thread live,
//! called between blocks offline) hands Signal (the audio thread) the frames of clips streamed
//! from disk.
//!
//! Each lane is an `rtrb` ring of fixed-size [`Chunk`]s plus a request (two atomics): Signal asks
//! for a stream from a frame by bumping the request's generation ([`Lane::request`]); the reader
//! answers with chunks tagged with that generation, and Signal drops chunks of older requests.
//! [`Lane`] is Signal's end (realtime: no allocation, lock or I/O); [`ReaderLane`] is the
//! reader's. Neither end knows about files: the media layer's reader fills [`ReaderLane`]s,
//! Signal's streamed voices read [`Lane`]s.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::TriggerId;

/// Frames per chunk the reader hands Signal.
pub(crate) const CHUNK: usize = 1024;

/// Seconds of audio a lane holds.
pub(crate) const LANE_SECONDS: f64 = 1.5;

/// A run of frames read from a cache file.
#[derive(Clone, Copy)]
pub(crate) struct Chunk {
    pub(crate) generation: u32,
    pub(crate) start: i64,
    pub(crate) len: u32,
    /// Interleaved stereo.
    pub(crate) data: [f32; CHUNK * 2],
}

/// What Signal asks a lane's reader for. Written by Signal only, read by the reader only.
#[derive(Debug, Default)]
pub(crate) struct LaneRequest {
    /// `generation << 32 | (stream index + 1)`; stream 0 means idle.
    pub(crate) tag: AtomicU64,
    /// First frame wanted.
    pub(crate) pos: AtomicI64,
}

/// Signal's end of a lane.
pub(crate) struct Lane {
    pub(crate) rx: rtrb::Consumer<Chunk>,
    pub(crate) request: Arc<LaneRequest>,
    pub(crate) generation: u32,
    /// The stream requested (`None`: idle).
    pub(crate) stream: Option<u32>,
    pub(crate) req_pos: i64,
    /// A voice plays from it.
    pub(crate) owned: bool,
    /// Pre-warmed for this pending trigger.
    pub(crate) prewarm: Option<TriggerId>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("generation", &self.generation).field("stream", &self.stream).finish()
    }
}

impl Lane {
    pub(crate) fn request(&mut self, stream: Option<u32>, pos: i64) {
        self.generation = self.generation.wrapping_add(1);
        self.stream = stream;
        self.req_pos = pos;
        self.request.pos.store(pos, Ordering::Relaxed);
        let s = stream.map_or(0, |s| s as u64 + 1);
        self.request.tag.store((self.generation as u64) << 32 | s, Ordering::Release);
    }

    /// Drops chunks of an older request (and, with `before`, chunks that end at or before it).
    /// Returns whether it dropped any chunk of the current request.
    pub(crate) fn discard(&mut self, before: Option<i64>) -> bool {
        let mut behind = false;
        loop {
            let stale = match self.rx.peek() {
                Ok(c) => c.generation != self.generation || before.is_some_and(|p| c.start + c.len as i64 <= p),
                Err(_) => false,
            };
            if !stale {
                return behind;
            }
            behind |= self.rx.peek().is_ok_and(|c| c.generation == self.generation);
            if let Ok(c) = self.rx.read_chunk(1) {
                c.commit_all();
            }
        }
    }

    pub(crate) fn release(&mut self) {
        self.owned = false;
        self.prewarm = None;
        self.request(None, 0);
        self.discard(None);
    }

    pub(crate) fn free(&self) -> bool {
        !self.owned && self.prewarm.is_none()
    }
}

/// The lanes of one track (empty for tracks without streamed clips).
#[derive(Debug, Default)]
pub(crate) struct Lanes(pub Vec<Lane>);

/// The reader's end of a lane.
pub(crate) struct ReaderLane {
    pub(crate) tx: rtrb::Producer<Chunk>,
    pub(crate) request: Arc<LaneRequest>,
    pub(crate) tag: u64,
    pub(crate) stream: Option<usize>,
    pub(crate) pos: i64,
    /// Frames read since the request (a failure is reported once).
    pub(crate) failed: bool,
}

/// A new lane of `capacity` chunks: Signal's end and the reader's. Control thread; allocates.
pub(crate) fn pair(capacity: usize) -> (Lane, ReaderLane) {
    let (tx, rx) = rtrb::RingBuffer::new(capacity);
    let request = Arc::new(LaneRequest::default());
    let feed = ReaderLane { tx, request: request.clone(), tag: 0, stream: None, pos: 0, failed: false };
    (Lane { rx, request, generation: 0, stream: None, req_pos: 0, owned: false, prewarm: None }, feed)
}

/// Chunks a lane holds at `sample_rate` ([`LANE_SECONDS`] of audio, at least 4).
pub(crate) fn capacity(sample_rate: u32) -> usize {
    ((LANE_SECONDS * sample_rate as f64) as usize).div_ceil(CHUNK).max(4)
}
