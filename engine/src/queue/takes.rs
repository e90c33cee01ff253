//! The take ring: what Signal (the audio thread) hands the disk thread while recording. A take
//! is a [`TakeMsg::Start`], its frames in fixed-size [`TakeMsg::Frames`] chunks (with a
//! [`TakeMsg::Gap`] wherever the ring was full and frames were lost), and a [`TakeMsg::Stop`].
//! Every message is `Copy` and lives in the ring's preallocated slots: the audio thread never
//! allocates to send one. Written by the audio thread, read by the disk thread.

use crate::model::{SceneId, TrackId};
use crate::time::{Beats, SampleTime};

use super::TakeId;

/// Frames per [`TakeMsg::Frames`] chunk.
pub const TAKE_CHUNK: usize = 256;

/// One message of a take. See the module docs.
// The ring's slots are allocated once; a big variant costs memory there, never an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TakeMsg {
    /// A take begins: its first frame is the one at `sample` (the beat `beat`).
    Start {
        /// The take.
        take: TakeId,
        /// The track it records.
        track: TrackId,
        /// The launcher slot it goes into, if any.
        slot: Option<SceneId>,
        /// Absolute sample of its first frame.
        sample: SampleTime,
        /// The beat of that sample.
        beat: Beats,
        /// 1 (mono) or 2 (stereo).
        channels: u8,
        /// The beat it ends at when its length was fixed at the start.
        until: Option<Beats>,
    },
    /// The next frames of a take, interleaved with the take's channel count.
    Frames {
        /// The take.
        take: TakeId,
        /// Frames used in `data` (1..=TAKE_CHUNK).
        frames: u16,
        /// The samples: `frames * channels` of them are used.
        data: [f32; TAKE_CHUNK * 2],
    },
    /// The next `frames` frames were lost (the ring was full: the disk fell behind); the
    /// writer puts silence there, so what follows stays on its beat, and reports an underrun.
    Gap {
        /// The take.
        take: TakeId,
        /// Frames lost.
        frames: u64,
    },
    /// A take ends: its last frame is the one before `sample`.
    Stop {
        /// The take.
        take: TakeId,
        /// Absolute sample after its last frame.
        sample: SampleTime,
        /// The beat of that sample.
        beat: Beats,
    },
}
