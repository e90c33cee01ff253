//! What `play` and `demo` tell about the audio thread's health: DSP load, xruns and deadline
//! misses, and realtime scheduling.
//!
//! The control loop calls [`Health::tick`] every tick. It promotes a new audio thread to
//! realtime scheduling once its id is known (see [`crate::audio::rt`]), and every [`STATUS_EVERY`]
//! writes a `load` record to the `--log` file (smoothed and held-peak DSP load and the xruns so
//! far) and has the status line printed (from the snapshot, which carries the same figures); at the end [`Health::finish`] writes a final
//! record with the load percentiles, and [`summary`] phrases them for the status line.
//!
//! Load figures are fractions of the block period (1.0 = the callback took its whole period).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::audio::AudioBackend;
use crate::audio::load::{LoadStats, percent};
use crate::audio::rt::RealtimeRequest;
use crate::eventlog::EventLog;

/// How often the status line and the periodic `load` log record are written.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The health of the audio thread as reported at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HealthFigures {
    /// The current backend's load meter.
    pub load: LoadStats,
    /// Xruns of every backend so far: a device's reported underruns and callback gaps, the null
    /// device's deadline misses.
    pub xruns: u64,
    /// Late starts of the null device (0 on a device).
    pub late_starts: u64,
    /// Whether the audio thread runs with realtime scheduling.
    pub realtime: bool,
}

/// The control thread's health reporter.
#[derive(Debug)]
pub struct Health {
    rt: RealtimeRequest,
    last: Instant,
    /// Xruns and late starts of backends that were replaced.
    xruns_before: u64,
    late_before: u64,
}

impl Health {
    /// A reporter; `realtime`: whether to ask for realtime scheduling (`--realtime`).
    pub fn new(realtime: bool) -> Health {
        Health { rt: RealtimeRequest::new(realtime), last: Instant::now(), xruns_before: 0, late_before: 0 }
    }

    /// The figures now, for `backend`.
    pub fn figures(&self, backend: &AudioBackend) -> HealthFigures {
        let load = backend.load().stats();
        HealthFigures {
            load,
            xruns: self.xruns_before + backend.xruns(),
            late_starts: self.late_before + if backend.is_null() { load.late_starts } else { 0 },
            realtime: self.rt.priority.is_some(),
        }
    }

    /// Keeps the counts of a backend about to be replaced.
    pub fn retire(&mut self, backend: &AudioBackend) {
        self.xruns_before += backend.xruns();
        if backend.is_null() {
            self.late_before += backend.load().late_starts();
        }
    }

    /// Promotes the audio thread if needed (returning the warning to print if that is refused),
    /// and every [`STATUS_EVERY`] writes a `load` record to `log` and says that the status line
    /// is due (the caller prints it from the snapshot). Thread: control.
    pub fn tick(
        &mut self,
        backend: &AudioBackend,
        log: Option<&mut EventLog>,
        host_time: f64,
    ) -> anyhow::Result<(Option<String>, bool)> {
        let warning = self.rt.poll(backend.audio_thread_id());
        if self.last.elapsed() < STATUS_EVERY {
            return Ok((warning, false));
        }
        self.last = Instant::now();
        let f = self.figures(backend);
        if let Some(log) = log {
            log.write_value(record(&f, false), Some(host_time))?;
        }
        Ok((warning, true))
    }

    /// Writes the final `load` record. Thread: control.
    pub fn finish(&self, f: &HealthFigures, log: Option<&mut EventLog>, host_time: f64) -> anyhow::Result<()> {
        if let Some(log) = log {
            log.write_value(record(f, true), Some(host_time))?;
        }
        Ok(())
    }
}

/// The end-of-play phrase, e.g. `DSP load p50 2.1%, p99 5.3%, max 12.0% (realtime)`.
pub fn summary(f: &HealthFigures) -> String {
    format!(
        "DSP load p50 {}, p99 {}, max {} ({})",
        percent(f.load.p50),
        percent(f.load.p99),
        percent(f.load.max),
        if f.realtime { "realtime priority" } else { "normal priority" }
    )
}

/// A `load` log record: `{"event": "load", "final": bool, "smoothed", "peak", "p50", "p99",
/// "max", "mean" (fractions of the block period), "blocks", "xruns", "late_starts", "realtime"}`.
pub fn record(f: &HealthFigures, last: bool) -> serde_json::Value {
    json!({
        "event": "load",
        "final": last,
        "smoothed": f.load.smoothed,
        "peak": f.load.peak,
        "p50": f.load.p50,
        "p99": f.load.p99,
        "max": f.load.max,
        "mean": f.load.mean,
        "blocks": f.load.blocks,
        "xruns": f.xruns,
        "late_starts": f.late_starts,
        "realtime": f.realtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_are_phrased_and_recorded() {
        let f = HealthFigures {
            load: LoadStats {
                smoothed: 0.031,
                peak: 0.079,
                p50: 0.021,
                p99: 0.053,
                max: 0.12,
                blocks: 9,
                ..Default::default()
            },
            xruns: 2,
            late_starts: 1,
            realtime: true,
        };
        assert_eq!(summary(&f), "DSP load p50 2.1%, p99 5.3%, max 12.0% (realtime priority)");
        let r = record(&f, true);
        assert_eq!(
            (r["event"].as_str(), r["final"].as_bool(), r["xruns"].as_u64()),
            (Some("load"), Some(true), Some(2))
        );
        assert_eq!((r["p99"].as_f64(), r["blocks"].as_u64()), (Some(0.053), Some(9)));
    }
}
