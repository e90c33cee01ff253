//! The `--log` file: one JSON object per line for every event the engine reports.
//!
//! Each line is [`PulseEvent::to_json`] (fields `event`, `id`, `kind`, `target`, `track`, `clip`,
//! `scene`, `beat`, `sample`, `tempo`, `late`) plus `source` (`"render"` or `"live"`) and, live,
//! `host_time` (seconds since playback started).
//!
//! Thread: control thread. Not realtime-safe.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use loophole_engine::model::Session;
use loophole_engine::pulse::PulseEvent;

/// Where an event was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// An offline render.
    Render,
    /// A live performance, on a device or the null device.
    Live,
}

/// A JSON-lines event log.
#[derive(Debug)]
pub struct EventLog {
    out: BufWriter<File>,
    path: PathBuf,
    source: LogSource,
    lines: u64,
}

impl EventLog {
    /// Creates (or truncates) the log file.
    pub fn create(path: &Path, source: LogSource) -> anyhow::Result<EventLog> {
        let file = File::create(path).with_context(|| format!("cannot create the log file {}", path.display()))?;
        Ok(EventLog { out: BufWriter::new(file), path: path.to_path_buf(), source, lines: 0 })
    }

    /// Appends one event. `host_time` (seconds since the start) is written for live logs.
    pub fn write(&mut self, event: &PulseEvent, session: &Session, host_time: Option<f64>) -> anyhow::Result<()> {
        self.write_with(event, session, host_time, &[])
    }

    /// Appends one event with extra fields (live with Link: `host_us`, the Link host time at
    /// which its sample is heard).
    pub fn write_with(
        &mut self,
        event: &PulseEvent,
        session: &Session,
        host_time: Option<f64>,
        extra: &[(&str, serde_json::Value)],
    ) -> anyhow::Result<()> {
        let mut value = event.to_json(session);
        if let Some(obj) = value.as_object_mut() {
            for (k, v) in extra {
                obj.insert((*k).into(), v.clone());
            }
        }
        self.write_value(value, host_time)
    }

    /// Appends a line that is not an engine event (Link and transport events), adding `source`
    /// and `host_time` as for events.
    pub fn write_value(&mut self, mut value: serde_json::Value, host_time: Option<f64>) -> anyhow::Result<()> {
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "source".into(),
                match self.source {
                    LogSource::Render => "render",
                    LogSource::Live => "live",
                }
                .into(),
            );
            if let Some(t) = host_time {
                obj.insert("host_time".into(), t.into());
            }
        }
        self.write_line(&value).with_context(|| format!("cannot write to the log file {}", self.path.display()))
    }

    fn write_line(&mut self, value: &serde_json::Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    /// Events written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes the file.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("cannot write to the log file {}", self.path.display()))
    }
}
