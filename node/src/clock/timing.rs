//! When an audio block is heard: the backend's timing of each callback ([`CallbackTiming`]) and
//! the timing of each rendered block ([`BlockTiming`]) for the capture's sidecar and the
//! loopback tap. Plain data, produced on the audio thread.

use loophole_engine::time::SampleTime;

/// When a callback's first sample will be heard, as the backend knows it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallbackTiming {
    /// How late the callback started after the moment it was due, in µs (the null device knows
    /// its deadlines; cpal callbacks report 0).
    pub late_us: f64,
    /// Output latency in µs: from the moment the callback was due to the moment its first sample
    /// is heard (cpal: `playback - callback`; the null device: one block period).
    pub latency_us: f64,
    /// Host time ([`crate::clock::host`], µs) at which the callback was due, when the backend
    /// knows it exactly (the null device's deadline); 0: the callback's entry minus `late_us`.
    pub due_us: f64,
}

/// The timing of one block, for the capture's timing sidecar (and the loopback tap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockTiming {
    /// The block's first sample.
    pub sample: SampleTime,
    /// Host time (µs) at which that sample is heard: Link's clock in the capture sidecar, the
    /// node's host clock in the loopback tap.
    pub host_us: f64,
    /// The beat at that sample.
    pub beat: f64,
    /// Frames in the block.
    pub frames: u32,
}
