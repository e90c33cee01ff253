//! The node's clock layer, below both audio and Link: the host clock every block and input is
//! stamped on ([`host`]), the timing of callbacks and blocks ([`timing`]), the position the audio
//! thread publishes for the control thread ([`position`]), and the filter that smooths jittery
//! callback times ([`filter`]). Audio backends and Link both build on it and neither imports the
//! other's internals.

pub mod filter;
pub mod host;
pub mod position;
pub mod timing;

pub use position::{ClockSnapshot, Transport};
pub use timing::{BlockTiming, CallbackTiming};
