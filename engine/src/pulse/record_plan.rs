//! The data of Pulse's recording: what a performer does about recording ([`RecordAction`]) and
//! which tracks are armed and which takes are open ([`RecordPlan`]). The logic that resolves
//! actions to exact beats is in `record.rs`. Control thread.

use crate::model::{SceneId, TrackId};
use crate::queue::TakeId;
use crate::time::{Beats, Quantise};

/// Longest fixed recording length, in bars.
pub const MAX_RECORD_BARS: u32 = 1024;

/// What a performer does about recording, in session indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RecordAction {
    /// Arm (`true`) or disarm a track: `record.start` records the armed tracks.
    Arm {
        /// The track.
        track: TrackId,
        /// Armed or not.
        on: bool,
    },
    /// Start recording every armed track that is not recording yet, at the next point of
    /// `quantise` (default: the next bar).
    Start {
        /// When (default: the next bar).
        quantise: Option<Quantise>,
    },
    /// Stop every take that is recording (or about to), at the next point of `quantise`
    /// (default: the next bar).
    Stop {
        /// When (default: the next bar).
        quantise: Option<Quantise>,
    },
    /// Launcher recording: record the track's input into an empty slot from the next bar, for
    /// `bars` bars if given (else until `record.stop`).
    IntoSlot {
        /// The track.
        track: TrackId,
        /// The slot's scene.
        scene: SceneId,
        /// A fixed length in bars.
        bars: Option<u32>,
    },
}

/// An open take: scheduled to start, maybe with its stop scheduled too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OpenTake {
    pub(crate) take: TakeId,
    pub(crate) start: Beats,
    pub(crate) stop: Option<Beats>,
    pub(crate) slot: Option<SceneId>,
}

/// Pulse's record state.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordPlan {
    /// Per track: armed.
    pub(crate) armed: Vec<bool>,
    /// Per track: the take recording or about to (forgotten once its stop beat has passed).
    pub(crate) open: Vec<Option<OpenTake>>,
    /// The last take number given.
    pub(crate) last_take: u32,
}

impl RecordPlan {
    pub(crate) fn new(tracks: usize) -> RecordPlan {
        RecordPlan { armed: vec![false; tracks], open: vec![None; tracks], last_take: 0 }
    }

    /// Forgets the takes that have stopped by `now`.
    pub(crate) fn fold(&mut self, now: Beats) {
        for o in &mut self.open {
            if o.is_some_and(|t| t.stop.is_some_and(|s| s.0 <= now.0 + 1e-9)) {
                *o = None;
            }
        }
    }
}
