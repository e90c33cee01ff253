//! Signal's record taps: the inputs' rings, read once per block into preallocated buffers, and
//! per track the take being recorded, cut into [`TakeMsg`] chunks for the disk thread.
//!
//! A take starts and stops at the exact frame of its scheduled event (Signal executes
//! [`crate::queue::Op::RecordStart`] / `RecordStop` where the block's beat crosses the target), and
//! the input is read frame for frame in timeline order, so a take is the same whatever the block
//! size. When the take ring is full (the disk fell behind) the frames are counted and sent as a
//! [`TakeMsg::Gap`] as soon as there is room (the file gets silence there and the take stays on
//! its beat); starts and stops are never dropped, only delayed in the ring. An input ring that
//! holds too few frames gives silence for the rest, counted as input underruns.
//!
//! Audio thread: nothing here allocates, locks, blocks or does I/O (after [`Recorder::new`],
//! which runs on the control thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{SceneId, TrackId};
use crate::queue::TakeId;
use crate::queue::takes::{TAKE_CHUNK, TakeMsg};
use crate::time::{Beats, SampleTime};

/// Counters the recorder keeps, readable from any thread.
#[derive(Debug, Default)]
pub struct RecordCounters {
    /// Frames of takes lost because the take ring was full (sent on as gaps).
    pub lost_frames: AtomicU64,
    /// Input frames that were not in an input's ring when a block needed them (silence).
    pub input_underruns: AtomicU64,
    /// Starts, gaps or stops dropped because the disk was stuck for several takes.
    pub lost_messages: AtomicU64,
}

/// One named input: its ring and the block read from it.
struct InputTap {
    ring: rtrb::Consumer<f32>,
    channels: usize,
    /// Interleaved samples of the current block.
    buf: Vec<f32>,
}

/// Starts, gaps and stops a track can owe the ring at once (a stuck disk: a start, a gap and a
/// stop per take, for five takes). Past that a message is dropped and counted.
const OWED: usize = 16;

/// A track's tap: which input channels it takes, and the take it is recording.
struct TrackTap {
    input: usize,
    chans: [usize; 2],
    count: usize,
    take: Option<TakeId>,
    /// Starts, gaps and stops not yet in the ring, in order (sent before anything newer).
    owed: [Option<TakeMsg>; OWED],
    owed_len: usize,
    fill: usize,
    chunk: [f32; TAKE_CHUNK * 2],
}

/// The taps of every input and track. See the module docs.
pub struct Recorder {
    inputs: Vec<InputTap>,
    tracks: Vec<Option<TrackTap>>,
    ring: rtrb::Producer<TakeMsg>,
    counters: Arc<RecordCounters>,
}

/// A track's route to an input: which input (index into the inputs given to
/// [`Recorder::new`]) and which of its channels (0-based, one or two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRoute {
    /// The input's index.
    pub input: usize,
    /// Its channels (one: mono take; two: stereo take).
    pub channels: Vec<u16>,
}

/// The other ends of the rings a [`Recorder`] was built with.
pub struct RecordEnds {
    /// Per input, where its frames go in (interleaved, the input's channel count).
    pub inputs: Vec<rtrb::Producer<f32>>,
    /// What the disk thread reads.
    pub takes: rtrb::Consumer<TakeMsg>,
    /// The recorder's counters.
    pub counters: Arc<RecordCounters>,
}

impl Recorder {
    /// Builds the taps: `inputs` gives each input's channel count, `routes` each track's route
    /// (by track index; `None` for a track that does not record), `input_frames` the frames each
    /// input ring holds and `take_slots` the messages the take ring holds. Control thread;
    /// allocates. Returns the recorder and the other ends of its rings.
    pub fn new(
        inputs: &[usize],
        routes: &[Option<TrackRoute>],
        max_block: usize,
        input_frames: usize,
        take_slots: usize,
    ) -> (Recorder, RecordEnds) {
        let mut producers = Vec::with_capacity(inputs.len());
        let taps = inputs
            .iter()
            .map(|&channels| {
                let channels = channels.max(1);
                let (tx, rx) = rtrb::RingBuffer::new(input_frames.max(max_block) * channels);
                producers.push(tx);
                InputTap { ring: rx, channels, buf: vec![0.0; max_block * channels] }
            })
            .collect();
        let tracks = routes
            .iter()
            .map(|r| {
                r.as_ref().map(|r| {
                    let c0 = r.channels.first().copied().unwrap_or(0) as usize;
                    let c1 = r.channels.get(1).copied().map_or(c0, usize::from);
                    TrackTap {
                        input: r.input,
                        chans: [c0, c1],
                        count: r.channels.len().clamp(1, 2),
                        take: None,
                        owed: [None; OWED],
                        owed_len: 0,
                        fill: 0,
                        chunk: [0.0; TAKE_CHUNK * 2],
                    }
                })
            })
            .collect();
        let (tx, rx) = rtrb::RingBuffer::new(take_slots.max(4));
        let counters = Arc::new(RecordCounters::default());
        let recorder = Recorder { inputs: taps, tracks, ring: tx, counters: counters.clone() };
        (recorder, RecordEnds { inputs: producers, takes: rx, counters })
    }

    /// Free message slots in the take ring (the offline renderer waits for room).
    pub fn free_slots(&self) -> usize {
        self.ring.slots()
    }

    /// Whether any track is recording.
    pub fn recording(&self) -> bool {
        self.tracks.iter().flatten().any(|t| t.take.is_some())
    }

    /// Reads `frames` frames of every input into its block buffer. Realtime-safe.
    pub(crate) fn read_inputs(&mut self, frames: usize) {
        for tap in &mut self.inputs {
            let want = (frames * tap.channels).min(tap.buf.len());
            let have = tap.ring.slots().min(want);
            let have = have - have % tap.channels;
            if let Ok(chunk) = tap.ring.read_chunk(have) {
                let (a, b) = chunk.as_slices();
                tap.buf[..a.len()].copy_from_slice(a);
                tap.buf[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
            }
            if have < want {
                tap.buf[have..want].fill(0.0);
                self.counters.input_underruns.fetch_add(((want - have) / tap.channels) as u64, Ordering::Relaxed);
            }
        }
    }

    /// Copies frames `[from, to)` of the block into every recording track's take. Realtime-safe.
    pub(crate) fn capture(&mut self, from: usize, to: usize) {
        for t in self.tracks.iter_mut().flatten() {
            let Some(take) = t.take else { continue };
            let Some(tap) = self.inputs.get(t.input) else { continue };
            let ch = tap.channels;
            let [c0, c1] = [t.chans[0].min(ch - 1), t.chans[1].min(ch - 1)];
            for f in from..to {
                let base = f * ch;
                if t.count == 1 {
                    t.chunk[t.fill] = tap.buf[base + c0];
                } else {
                    t.chunk[2 * t.fill] = tap.buf[base + c0];
                    t.chunk[2 * t.fill + 1] = tap.buf[base + c1];
                }
                t.fill += 1;
                if t.fill == TAKE_CHUNK {
                    flush(t, take, &mut self.ring, &self.counters);
                }
            }
        }
    }

    /// Starts a take on `track` at `sample` (its first frame). Realtime-safe.
    pub(crate) fn start(
        &mut self,
        track: TrackId,
        take: TakeId,
        slot: Option<SceneId>,
        at: (SampleTime, Beats),
        until: Option<Beats>,
    ) {
        let Some(Some(t)) = self.tracks.get_mut(track.index()) else { return };
        if let Some(old) = t.take {
            // A new take on a track still recording: the old one ends here.
            end(t, old, at, &mut self.ring, &self.counters);
        }
        let msg = TakeMsg::Start { take, track, slot, sample: at.0, beat: at.1, channels: t.count as u8, until };
        t.take = Some(take);
        t.fill = 0;
        send(t, msg, &mut self.ring, &self.counters);
    }

    /// Stops the take `take` on `track`: its last frame is the one before `sample`.
    /// Realtime-safe.
    pub(crate) fn stop(&mut self, track: TrackId, take: TakeId, at: (SampleTime, Beats)) {
        let Some(Some(t)) = self.tracks.get_mut(track.index()) else { return };
        if t.take == Some(take) {
            end(t, take, at, &mut self.ring, &self.counters);
        }
    }

    /// Sends what is owed to the ring (starts, gaps, stops) if there is room now. Realtime-safe.
    pub(crate) fn settle(&mut self) {
        for t in self.tracks.iter_mut().flatten() {
            drain_owed(t, &mut self.ring);
        }
    }
}

/// Ends the current take: flushes its last chunk and sends (or owes) its stop.
fn end(
    t: &mut TrackTap,
    take: TakeId,
    at: (SampleTime, Beats),
    ring: &mut rtrb::Producer<TakeMsg>,
    c: &RecordCounters,
) {
    if t.fill > 0 {
        flush(t, take, ring, c);
    }
    t.take = None;
    send(t, TakeMsg::Stop { take, sample: at.0, beat: at.1 }, ring, c);
}

/// Sends the owed messages in order, as far as there is room. True when nothing is owed.
fn drain_owed(t: &mut TrackTap, ring: &mut rtrb::Producer<TakeMsg>) -> bool {
    let mut sent = 0;
    while sent < t.owed_len {
        let Some(msg) = t.owed[sent] else { break };
        if ring.push(msg).is_err() {
            break;
        }
        sent += 1;
    }
    if sent > 0 {
        t.owed.copy_within(sent..t.owed_len, 0);
        t.owed_len -= sent;
    }
    t.owed_len == 0
}

/// Sends a start or a stop after what is owed, or owes it.
fn send(t: &mut TrackTap, msg: TakeMsg, ring: &mut rtrb::Producer<TakeMsg>, c: &RecordCounters) {
    if drain_owed(t, ring) && ring.push(msg).is_ok() {
        return;
    }
    owe(t, msg, c);
}

/// Queues a message for later; consecutive gaps of one take are merged.
fn owe(t: &mut TrackTap, msg: TakeMsg, c: &RecordCounters) {
    if let (TakeMsg::Gap { take, frames }, Some(last)) = (msg, t.owed_len.checked_sub(1))
        && let Some(TakeMsg::Gap { take: last_take, frames: f }) = &mut t.owed[last]
        && *last_take == take
    {
        *f += frames;
        return;
    }
    if t.owed_len < OWED {
        t.owed[t.owed_len] = Some(msg);
        t.owed_len += 1;
    } else {
        c.lost_messages.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends the filled chunk, or counts its frames as lost (a gap) when the ring is full.
fn flush(t: &mut TrackTap, take: TakeId, ring: &mut rtrb::Producer<TakeMsg>, c: &RecordCounters) {
    let frames = t.fill;
    t.fill = 0;
    if drain_owed(t, ring) && ring.push(TakeMsg::Frames { take, frames: frames as u16, data: t.chunk }).is_ok() {
        return;
    }
    c.lost_frames.fetch_add(frames as u64, Ordering::Relaxed);
    owe(t, TakeMsg::Gap { take, frames: frames as u64 }, c);
}
