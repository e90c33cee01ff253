//! The node's host clock: microseconds since a process-wide origin, on `std::time::Instant`
//! (`CLOCK_MONOTONIC` on Linux). Output blocks without Link and every input block are stamped on
//! it, so that a captured input frame can be placed against the output frame that was at the
//! speaker at the same instant. (Link has its own clock, `CLOCK_MONOTONIC_RAW` on Linux; the
//! output core publishes every block's heard time on this clock too, with or without Link, so a
//! recording never needs Link's clock: see [`crate::audio::record`].)
//!
//! Thread: Any thread, the audio thread included: reading it never allocates or blocks.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The clock's origin (the first call fixes it). Call it once on the control thread before any
/// audio thread starts, so the audio threads never initialise it.
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Host time of `instant` in µs (negative before the origin). Realtime-safe.
pub fn us_of(instant: Instant) -> f64 {
    let origin = origin();
    match instant.checked_duration_since(origin) {
        Some(d) => d.as_nanos() as f64 / 1e3,
        None => -(origin.duration_since(instant).as_nanos() as f64 / 1e3),
    }
}

/// The host time now, in µs. Realtime-safe (a vDSO clock read).
pub fn now_us() -> f64 {
    us_of(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn host_time_follows_instants_exactly() {
        let a = Instant::now();
        let b = a + Duration::from_micros(1_234_567);
        assert!((us_of(b) - us_of(a) - 1_234_567.0).abs() < 1e-3);
        assert!(now_us() >= us_of(a));
        assert!(us_of(origin() - Duration::from_millis(3)) == -3000.0);
    }
}
