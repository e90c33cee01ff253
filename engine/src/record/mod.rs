//! Recording's disk side: the inputs a render feeds Signal ([`feed`], connected by [`wire`]), the crash-safe 32-bit
//! float WAV files takes are written to ([`wav`]), the disk thread that turns Signal's take ring
//! into those files ([`writer`]), and the repair of takes a kill cut off ([`repair`]).
//!
//! Signal's side (the taps, the take ring) is `signal::record`; Pulse's (arming, quantised starts
//! and stops) is `pulse::record`. See `docs/recording.md`. Nothing here runs on the audio thread.

pub mod feed;
pub mod repair;
pub mod wav;
pub mod wire;
pub mod writer;
