//! Connecting an offline render's inputs to Signal: each track's `input = "NAME"` is resolved
//! against the inputs the render was given (`--input NAME=SOURCE`), Signal's record taps are
//! connected, and before every block each input's next frames go into its ring. A track whose
//! input the render was not given records silence (the caller is told which names those are).
//! Control thread (the renderer's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::feed::{InputFeed, InputSource};
use crate::model::{Session, TrackInput};
use crate::queue::takes::{TAKE_CHUNK, TakeMsg};
use crate::signal::Signal;
use crate::signal::record::{RecordCounters, TrackRoute};

/// How long a render waits for the disk thread to make room in the take ring before it goes on
/// (and the frames that do not fit are lost and reported as underruns).
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The inputs of a render, connected. See the module docs.
pub struct RenderInputs {
    feeds: Vec<InputFeed>,
    routed: usize,
    /// Inputs named by tracks that the render was not given: they record silence.
    pub unbound: Vec<String>,
    /// Signal's record counters.
    pub counters: Arc<RecordCounters>,
}

impl RenderInputs {
    /// Connects `inputs` (name, source) to `signal` for the tracks of `session`, for blocks of up
    /// to `block` frames. Returns the
    /// inputs and the take ring's reading end (for the disk thread). An error names the track
    /// and the channel that does not exist.
    pub fn connect(
        session: &Session,
        signal: &mut Signal,
        mut inputs: Vec<(String, InputSource)>,
        block: usize,
    ) -> Result<(RenderInputs, rtrb::Consumer<TakeMsg>), String> {
        let mut unbound = Vec::new();
        let mut routes = Vec::with_capacity(session.tracks.len());
        for t in &session.tracks {
            let Some(TrackInput::Audio { input, channels }) = &t.input else {
                routes.push(None);
                continue;
            };
            let need = channels.iter().copied().max().unwrap_or(0) as usize + 1;
            let i = match inputs.iter().position(|(n, _)| n == input) {
                Some(i) => i,
                None => {
                    unbound.push(input.clone());
                    inputs.push((input.clone(), InputSource::Silence { channels: need.max(2) }));
                    inputs.len() - 1
                }
            };
            let have = inputs[i].1.channels();
            if need > have {
                let (i, ch) = (inputs[i].0.clone(), need);
                return Err(format!(
                    "track '{}' records channel {ch} of input '{i}', which has {have} channel{}",
                    t.id,
                    if have == 1 { "" } else { "s" }
                ));
            }
            routes.push(Some(TrackRoute { input: i, channels: channels.clone() }));
        }
        let routed = routes.iter().flatten().count();
        let ring_frames = block.max(4096) * 2;
        let slots = (routed.max(1) * (ring_frames / TAKE_CHUNK + 8)).max(64);
        let channels: Vec<usize> = inputs.iter().map(|(_, s)| s.channels()).collect();
        let ends = signal.connect_recording(&channels, &routes, ring_frames, slots);
        let feeds = inputs.into_iter().zip(ends.inputs).map(|((_, src), ring)| InputFeed::new(src, ring, 0)).collect();
        Ok((RenderInputs { feeds, routed, unbound, counters: ends.counters }, ends.takes))
    }

    /// Before a block of `frames` frames: waits (up to [`MAX_WAIT`]) until the take ring has
    /// room for what the block can record, then feeds every input its next `frames` frames.
    pub fn before_block(&mut self, signal: &Signal, frames: usize) {
        let needed = self.routed * (frames / TAKE_CHUNK + 3);
        let start = Instant::now();
        while signal.take_ring_free() < needed && start.elapsed() < MAX_WAIT {
            std::thread::sleep(Duration::from_micros(200));
        }
        for f in &mut self.feeds {
            f.push(frames);
        }
    }
}
