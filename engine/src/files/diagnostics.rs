//! Diagnostics shared by every file the engine reads (sessions, performance scripts): TOML
//! parsed with the span of each problem, `file:line:column` locations, the offending source
//! line, and lists of the ids a misspelt one could have been. Control thread.

use std::fmt;
use std::ops::Range;
use std::path::Path;

/// Formats `file:line:column: what`.
pub(crate) struct Location<'a, W: fmt::Display> {
    pub(crate) file: &'a Path,
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) what: &'a W,
}

impl<W: fmt::Display> fmt::Display for Location<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.what)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`: how every file-format error
/// in Loophole (sessions, scripts, controller mappings) says where it is.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

/// The trimmed source line containing byte `offset`, shortened to 72 characters for messages.
pub fn source_line(text: &str, offset: usize) -> String {
    let bytes = text.as_bytes();
    let offset = offset.min(bytes.len());
    let start = bytes[..offset].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = bytes[offset..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| offset + i);
    let line = String::from_utf8_lossy(&bytes[start..end]);
    let line = line.trim();
    if line.chars().count() > 72 {
        let short: String = line.chars().take(69).collect();
        format!("{short}...")
    } else {
        line.to_string()
    }
}

/// Why a TOML document could not be deserialised.
pub(crate) enum TomlProblem {
    /// The text is not TOML.
    Syntax(String),
    /// The TOML does not fit the format.
    Schema(String),
}

/// Parses `text` as TOML into `T`, reporting syntax errors separately from schema errors, with
/// friendlier wording than serde's and the offending line quoted.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (Option<Range<usize>>, TomlProblem)> {
    if let Err(e) = text.parse::<toml::Table>() {
        let mut message = e.message().trim().to_string();
        if let Some(span) = e.span() {
            let line = source_line(text, span.start);
            if message.contains("duplicate key") && line.starts_with('[') && !line.starts_with("[[") {
                message.push_str("; a table that is repeated is written with double brackets, e.g. [[clip]]");
            }
            if !line.is_empty() {
                message.push_str(&format!(" (in `{line}`)"));
            }
        }
        return Err((e.span(), TomlProblem::Syntax(message)));
    }
    toml::from_str::<T>(text).map_err(|e| {
        let raw = e.message().trim();
        let mut message = friendly_serde_message(raw);
        if let Some(span) = e.span() {
            let line = source_line(text, span.start);
            if line.starts_with('[') && !line.starts_with("[[") && raw.contains("expected a sequence") {
                message.push_str("; each entry of a list of tables is written with double brackets, e.g. [[track]]");
            }
            if !line.is_empty() {
                message.push_str(&format!(" (in `{line}`)"));
            }
        }
        (e.span(), TomlProblem::Schema(message))
    })
}

/// Rewords serde's type names into the words of the session format.
fn friendly_serde_message(message: &str) -> String {
    let mut m = message
        .replace(" as i128, expected i64", ", expected an integer that fits in 64 bits")
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected a tuple of size 4", "expected [start_beat, length_beats, key, velocity]")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    // "expected struct RawClip" -> "expected a table"
    while let Some(i) = m.find("expected struct ") {
        let rest = &m[i + "expected struct ".len()..];
        let end = rest.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(rest.len());
        m = format!("{}expected a table{}", &m[..i], &rest[end..]);
    }
    m
}

/// A short, comma-separated list of ids for messages.
pub(crate) fn known_list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return "none defined".into();
    }
    const MAX: usize = 20;
    let mut s = ids.iter().take(MAX).copied().collect::<Vec<_>>().join(", ");
    if ids.len() > MAX {
        s.push_str(&format!(", ... ({} in all)", ids.len()));
    }
    s
}
