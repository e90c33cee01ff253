//! The inputs of an offline render: each named input (`--input mic=file:x.wav`, `silence`) as
//! frames fed into Signal's input ring before every block, so the taps hear frame k of the input
//! at output frame k. Control thread (the renderer's).
//!
//! **Latency compensation.** Live, input frame j is heard at output frame j + offset (the
//! input's latency plus the output's); the feed drops the first `latency` frames of the source so
//! that what reaches the ring at output frame k is what was played at k. Offline the source is
//! already aligned and the latency is 0; the live path sets it from the aligned input's offset.

use std::sync::Arc;

/// What a named input plays into a render.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// Silence, on `channels` channels.
    Silence {
        /// Channels of the input.
        channels: usize,
    },
    /// Interleaved samples (then silence).
    Samples {
        /// Channels of the input.
        channels: usize,
        /// `frames * channels` samples.
        data: Arc<[f32]>,
    },
}

impl InputSource {
    /// Channels of the input.
    pub fn channels(&self) -> usize {
        match self {
            InputSource::Silence { channels } | InputSource::Samples { channels, .. } => (*channels).max(1),
        }
    }

    /// The frames of a decoded file (stereo: mono files have the same samples on both sides).
    pub fn from_stereo(left: &[f32], right: &[f32]) -> InputSource {
        let data: Vec<f32> = left.iter().zip(right).flat_map(|(l, r)| [*l, *r]).collect();
        InputSource::Samples { channels: 2, data: data.into() }
    }
}

/// One input being fed into its ring. See the module docs.
pub struct InputFeed {
    source: InputSource,
    /// The next source frame to feed.
    pos: u64,
    ring: rtrb::Producer<f32>,
}

impl InputFeed {
    /// A feed of `source` into `ring`, skipping the source's first `latency` frames (see the
    /// module docs; 0 offline).
    pub fn new(source: InputSource, ring: rtrb::Producer<f32>, latency: u64) -> InputFeed {
        InputFeed { source, pos: latency, ring }
    }

    /// Pushes the next `frames` frames (silence past the source's end). Returns the frames
    /// pushed: fewer when the ring has no room for all of them.
    pub fn push(&mut self, frames: usize) -> usize {
        let ch = self.source.channels();
        let frames = frames.min(self.ring.slots() / ch);
        let Ok(mut chunk) = self.ring.write_chunk(frames * ch) else { return 0 };
        let (a, b) = chunk.as_mut_slices();
        let start = self.pos as usize * ch;
        for (i, s) in a.iter_mut().chain(b.iter_mut()).enumerate() {
            *s = match &self.source {
                InputSource::Silence { .. } => 0.0,
                InputSource::Samples { data, .. } => data.get(start + i).copied().unwrap_or(0.0),
            };
        }
        chunk.commit_all();
        self.pos += frames as u64;
        frames
    }
}
