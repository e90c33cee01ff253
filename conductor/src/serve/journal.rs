//! The conductor's `--log FILE`: one JSON object per line for what happened (`sequenced`,
//! `refused`, `press-refused`, `joined`, `lost`, `executed`, ...), with the band time in
//! microseconds, so runs can be compared and checked by scripts.
//!
//! Thread: the session task.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{Value, json};

/// The open log file.
pub struct Journal {
    out: BufWriter<File>,
}

impl Journal {
    /// Creates (or appends to) `path`.
    pub fn open(path: &Path) -> anyhow::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot open the log: {e}", path.display()))?;
        Ok(Journal { out: BufWriter::new(file) })
    }

    /// Writes one line: `{"event": event, "band_us": band_us, ...fields}`.
    pub fn write(&mut self, event: &str, band_us: u64, fields: Value) {
        let mut line = json!({ "event": event, "band_us": band_us });
        if let (Some(l), Value::Object(f)) = (line.as_object_mut(), fields) {
            l.extend(f);
        }
        // A full disk must not stop the band: the log is best effort (tracing has it too).
        let _ = writeln!(self.out, "{line}").and_then(|_| self.out.flush());
    }
}
