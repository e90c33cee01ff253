//! Controller mapping files: which pad, button or knob of a MIDI controller does what, and which
//! LED values show each state. The format is documented in `docs/controllers.md`; examples are
//! in `examples/controllers/`.
//!
//! A mapping addresses the session's launcher grid, not clip names: columns are tracks (in
//! session order) and rows are scenes, so one mapping works with any session. Numbers in the
//! file count from 1 (track 1, scene 1, MIDI channel 1), as musicians and devices do; in code
//! they count from 0.
//!
//! Loading never panics. Every problem is a [`MappingError`] that displays as
//! `FILE:LINE:COLUMN: problem`.
//!
//! Thread: Main thread, at start-up; reads the file.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use loophole_engine::files::diagnostics::{line_col, source_line};
use loophole_engine::pulse::StopMode;
use loophole_engine::time::Beats;
use serde::Deserialize;
use toml::Spanned;

use crate::midi::message::Message;

// ------------------------------------------------------------------------------------------------
// The mapping
// ------------------------------------------------------------------------------------------------

/// Where a control sits: a note or a controller number on a channel (0..=15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// Sends note on / note off with this key.
    Note {
        /// Channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
    },
    /// Sends control changes with this controller number.
    Cc {
        /// Channel 0..=15.
        channel: u8,
        /// Controller 0..=127.
        controller: u8,
    },
}

impl Address {
    /// The control a message comes from, and what was done with it.
    pub fn of(msg: Message) -> (Address, Gesture) {
        match msg {
            Message::NoteOn { channel, key, velocity } if velocity > 0 => {
                (Address::Note { channel, key }, Gesture::Press { velocity })
            }
            Message::NoteOn { channel, key, .. } | Message::NoteOff { channel, key, .. } => {
                (Address::Note { channel, key }, Gesture::Release)
            }
            Message::Cc { channel, controller, value } if value > 0 => {
                (Address::Cc { channel, controller }, Gesture::Press { velocity: value })
            }
            Message::Cc { channel, controller, .. } => (Address::Cc { channel, controller }, Gesture::Release),
        }
    }

    /// The message that sets this control's LED to `led`: a note-on (velocity 0 included) or a
    /// control change, on the LED's channel if it has one, else on the control's.
    pub fn led_message(self, led: Led) -> Message {
        match self {
            Address::Note { channel, key } => {
                Message::NoteOn { channel: led.channel.unwrap_or(channel), key, velocity: led.velocity }
            }
            Address::Cc { channel, controller } => {
                Message::Cc { channel: led.channel.unwrap_or(channel), controller, value: led.velocity }
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Note { channel, key } => write!(f, "note {key} on channel {}", channel + 1),
            Address::Cc { channel, controller } => write!(f, "cc {controller} on channel {}", channel + 1),
        }
    }
}

/// What the performer did with a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gesture {
    /// Pressed (note-on with velocity > 0, or a CC value > 0), with its velocity 1..=127.
    Press {
        /// Velocity (or CC value) 1..=127.
        velocity: u8,
    },
    /// Released (note-off, note-on with velocity 0, or CC value 0).
    Release,
}

/// What a control does. Tracks and scenes count from 0 (the file counts from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// The clip slot of a track (column) in a scene (row).
    Clip {
        /// Track index.
        track: usize,
        /// Scene index.
        scene: usize,
    },
    /// Launch a scene.
    SceneLaunch {
        /// Scene index.
        scene: usize,
    },
    /// Stop a track.
    TrackStop {
        /// Track index.
        track: usize,
    },
    /// Toggle a track's record arm.
    TrackArm {
        /// Track index.
        track: usize,
    },
    /// Stop every track.
    StopAll,
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Control::Clip { track, scene } => write!(f, "clip slot (track {}, scene {})", track + 1, scene + 1),
            Control::SceneLaunch { scene } => write!(f, "scene launch {}", scene + 1),
            Control::TrackStop { track } => write!(f, "stop of track {}", track + 1),
            Control::TrackArm { track } => write!(f, "record arm of track {}", track + 1),
            Control::StopAll => write!(f, "stop all"),
        }
    }
}

/// One LED value: a velocity (the colour or brightness, per the device's chart), optionally on
/// another channel (Launchpads flash on channel 2), optionally blinked by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Led {
    /// Velocity (note) or value (CC), 0..=127.
    pub velocity: u8,
    /// Channel 0..=15 to send on instead of the control's own.
    pub channel: Option<u8>,
    /// The node blinks it: this value in the first half of each beat, the control's `off` value
    /// in the second half.
    pub blink: bool,
}

impl Led {
    /// A steady LED value on the control's channel.
    pub const fn steady(velocity: u8) -> Led {
        Led { velocity, channel: None, blink: false }
    }
}

/// The LED values of a control for each state it can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leds {
    /// Nothing there: an empty slot, a silent track, an unarmed track.
    pub off: Led,
    /// A slot (or scene) with a clip that is not playing.
    pub stopped: Led,
    /// A launch pressed and waiting for its beat (a track stop button: a stop waiting).
    pub queued: Led,
    /// Playing (a track stop button: the track plays something).
    pub playing: Led,
    /// Playing, with a stop waiting for its beat.
    pub stopping: Led,
    /// A record-armed track: its arm button, and its empty slots.
    pub armed: Led,
}

impl Default for Leds {
    /// For a single-colour button: lit when playing or armed, blinking when queued or stopping.
    fn default() -> Self {
        let blink = Led { velocity: 127, channel: None, blink: true };
        Leds {
            off: Led::steady(0),
            stopped: Led::steady(0),
            queued: blink,
            playing: Led::steady(127),
            stopping: blink,
            armed: Led::steady(127),
        }
    }
}

/// One mapped control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MappedControl {
    /// Where it is.
    pub address: Address,
    /// What it does.
    pub control: Control,
    /// Its LED values.
    pub leds: Leds,
    /// How it stops ([`Control::TrackStop`], [`Control::StopAll`]).
    pub stop: StopMode,
}

/// A loaded mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// `[controller] name`, for messages.
    pub name: Option<String>,
    /// `[controller] port`: part of the port name to use when `--midi-in` / `--midi-out` are not
    /// given.
    pub port: Option<String>,
    /// Every control, in file order.
    pub controls: Vec<MappedControl>,
    index: HashMap<Address, usize>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let bytes = std::fs::read(path)
            .map_err(|e| MappingError::whole(path, format!("cannot read the controller mapping: {e}")))?;
        match String::from_utf8(bytes) {
            Ok(text) => Mapping::parse(&text, path),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
                let (line, column) = line_col(&prefix, valid);
                Err(MappingError {
                    file: path.to_path_buf(),
                    line: Some(line),
                    column: Some(column),
                    message: "the file is not UTF-8 text (save it as UTF-8)".into(),
                })
            }
        }
    }

    /// Parses mapping-file text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Mapping, MappingError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let cx = Cx { file, text };
        let raw: RawFile = parse_toml(text).map_err(|(span, message)| match span {
            Some(span) => cx.err(&span, message),
            None => MappingError::whole(file, message),
        })?;
        cx.build(raw)
    }

    /// The control a message comes from, and the gesture. `None` for unmapped controls.
    pub fn lookup(&self, msg: Message) -> Option<(&MappedControl, Gesture)> {
        let (address, gesture) = Address::of(msg);
        self.index.get(&address).map(|&i| (&self.controls[i], gesture))
    }
}

/// A problem with a mapping file, displayed as `FILE:LINE:COLUMN: problem` (`FILE: problem` when
/// it is not at one place). Fix the file at that place; `docs/controllers.md` lists every key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.location())]
pub struct MappingError {
    /// The mapping file.
    pub file: PathBuf,
    /// 1-based line, when the problem is at one place.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the problem is at one place.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl MappingError {
    fn whole(file: &Path, message: String) -> MappingError {
        MappingError { file: file.to_path_buf(), line: None, column: None, message }
    }

    fn location(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(line) = self.line {
            s.push_str(&format!(":{line}"));
            if let Some(column) = self.column {
                s.push_str(&format!(":{column}"));
            }
        }
        format!("{s}: {}", self.message)
    }
}

// ------------------------------------------------------------------------------------------------
// TOML
// ------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    controller: Option<RawController>,
    leds: Option<RawLeds>,
    clips: Option<Spanned<RawGrid>>,
    scene_launch: Option<Spanned<RawRow>>,
    track_stop: Option<Spanned<RawRow>>,
    track_arm: Option<Spanned<RawRow>>,
    stop_all: Option<Spanned<RawOne>>,
    #[serde(default)]
    button: Vec<Spanned<RawButton>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    name: Option<String>,
    port: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLeds {
    off: Option<Spanned<RawLed>>,
    stopped: Option<Spanned<RawLed>>,
    queued: Option<Spanned<RawLed>>,
    playing: Option<Spanned<RawLed>>,
    stopping: Option<Spanned<RawLed>>,
    armed: Option<Spanned<RawLed>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawLed {
    Velocity(i64),
    Table(RawLedTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedTable {
    velocity: i64,
    channel: Option<i64>,
    #[serde(default)]
    blink: bool,
}

/// The keys every control group has.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWhere {
    note: Option<Spanned<i64>>,
    cc: Option<Spanned<i64>>,
    channel: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    tracks: Spanned<i64>,
    scenes: Spanned<i64>,
    note: Option<Spanned<i64>>,
    cc: Option<Spanned<i64>>,
    channel: Option<Spanned<i64>>,
    track_step: Option<Spanned<i64>>,
    scene_step: Option<Spanned<i64>>,
    channel_track_step: Option<Spanned<i64>>,
    channel_scene_step: Option<Spanned<i64>>,
    leds: Option<RawLeds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow {
    count: Spanned<i64>,
    note: Option<Spanned<i64>>,
    cc: Option<Spanned<i64>>,
    channel: Option<Spanned<i64>>,
    step: Option<Spanned<i64>>,
    channel_step: Option<Spanned<i64>>,
    leds: Option<RawLeds>,
    mode: Option<Spanned<String>>,
    fade_beats: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOne {
    note: Option<Spanned<i64>>,
    cc: Option<Spanned<i64>>,
    channel: Option<Spanned<i64>>,
    leds: Option<RawLeds>,
    mode: Option<Spanned<String>>,
    fade_beats: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawButton {
    note: Option<Spanned<i64>>,
    cc: Option<Spanned<i64>>,
    channel: Option<Spanned<i64>>,
    clip: Option<Spanned<Vec<Spanned<i64>>>>,
    scene: Option<Spanned<i64>>,
    stop_track: Option<Spanned<i64>>,
    arm: Option<Spanned<i64>>,
    stop_all: Option<Spanned<bool>>,
    leds: Option<RawLeds>,
    mode: Option<Spanned<String>>,
    fade_beats: Option<Spanned<f64>>,
}

/// Parses TOML into `T`, with syntax and schema errors worded for people and the offending line
/// quoted.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (Option<Range<usize>>, String)> {
    let quote = |span: &Option<Range<usize>>, mut message: String| {
        if let Some(span) = span {
            let line = source_line(text, span.start);
            if !line.is_empty() {
                message.push_str(&format!(" (in `{line}`)"));
            }
        }
        message
    };
    if let Err(e) = text.parse::<toml::Table>() {
        let message = format!("TOML syntax error: {}", e.message().trim());
        return Err((e.span(), quote(&e.span(), message)));
    }
    toml::from_str::<T>(text).map_err(|e| (e.span(), quote(&e.span(), friendly(e.message().trim()))))
}

/// Rewords serde's type names into the words of the mapping format.
fn friendly(message: &str) -> String {
    let mut m = message
        .replace(
            "data did not match any variant of untagged enum RawLed",
            "an LED value is a velocity 0..=127 or a table like { velocity = 21, channel = 2, blink = true }",
        )
        .replace(" as i128, expected i64", ", expected an integer that fits in 64 bits")
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    while let Some(i) = m.find("expected struct ") {
        let rest = &m[i + "expected struct ".len()..];
        let end = rest.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(rest.len());
        m = format!("{}expected a table{}", &m[..i], &rest[end..]);
    }
    m
}

// ------------------------------------------------------------------------------------------------
// Checking and building
// ------------------------------------------------------------------------------------------------

/// Largest grid, row or track/scene number a mapping may use.
const MAX_COUNT: i64 = 128;

struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
}

/// A control group's address formula: `base + i * step` for the number and the channel.
#[derive(Clone, Copy)]
struct Formula {
    cc: bool,
    number: i64,
    channel: i64,
}

impl Cx<'_> {
    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> MappingError {
        let (line, column) = line_col(self.text, span.start);
        MappingError { file: self.file.to_path_buf(), line: Some(line), column: Some(column), message: message.into() }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn int(&self, v: &Spanned<i64>, what: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, MappingError> {
        let x = *v.get_ref();
        if range.contains(&x) {
            Ok(x)
        } else {
            Err(self.err(&v.span(), format!("{what} is {x}; it must be {}..={}", range.start(), range.end())))
        }
    }

    /// `note` or `cc` (exactly one) and `channel` (1..=16, default 1) of a group at `span`.
    fn formula(&self, w: RawWhere, group: &str, span: &Range<usize>) -> Result<Formula, MappingError> {
        let (cc, number) = match (&w.note, &w.cc) {
            (Some(n), None) => (false, self.int(n, "note", 0..=127)?),
            (None, Some(c)) => (true, self.int(c, "cc", 0..=127)?),
            (Some(_), Some(c)) => {
                return Err(self.err(&c.span(), format!("{group}: give `note` or `cc`, not both")));
            }
            (None, None) => {
                return Err(self.err(span, format!("{group}: give `note = N` or `cc = N` (the MIDI number it sends)")));
            }
        };
        let channel = match &w.channel {
            Some(c) => self.int(c, "channel", 1..=16)? - 1,
            None => 0,
        };
        Ok(Formula { cc, number, channel })
    }

    /// The address of element `(i, j)` of a group, checked to be in range.
    fn address(
        &self,
        f: Formula,
        number: i64,
        channel: i64,
        span: &Range<usize>,
        what: &dyn Fn() -> String,
    ) -> Result<Address, MappingError> {
        let kind = if f.cc { "cc" } else { "note" };
        if !(0..=127).contains(&number) {
            return Err(self.err(
                span,
                format!("the {} would be {kind} {number}; every {kind} must be 0..=127 (check the steps)", what()),
            ));
        }
        if !(0..=15).contains(&channel) {
            return Err(self.err(
                span,
                format!(
                    "the {} would be on channel {}; channels are 1..=16 (check the channel steps)",
                    what(),
                    channel + 1
                ),
            ));
        }
        let (channel, n) = (channel as u8, number as u8);
        Ok(if f.cc { Address::Cc { channel, controller: n } } else { Address::Note { channel, key: n } })
    }

    fn led(&self, v: &Spanned<RawLed>) -> Result<Led, MappingError> {
        let span = v.span();
        let (velocity, channel, blink) = match v.get_ref() {
            RawLed::Velocity(x) => (*x, None, false),
            RawLed::Table(t) => (t.velocity, t.channel, t.blink),
        };
        if !(0..=127).contains(&velocity) {
            return Err(self.err(&span, format!("LED velocity is {velocity}; it must be 0..=127")));
        }
        let channel = match channel {
            Some(c) if !(1..=16).contains(&c) => {
                return Err(self.err(&span, format!("LED channel is {c}; channels are 1..=16")));
            }
            Some(c) => Some((c - 1) as u8),
            None => None,
        };
        Ok(Led { velocity: velocity as u8, channel, blink })
    }

    fn leds(&self, base: Leds, raw: Option<&RawLeds>) -> Result<Leds, MappingError> {
        let Some(raw) = raw else { return Ok(base) };
        let mut leds = base;
        for (slot, value) in [
            (&mut leds.off, &raw.off),
            (&mut leds.stopped, &raw.stopped),
            (&mut leds.queued, &raw.queued),
            (&mut leds.playing, &raw.playing),
            (&mut leds.stopping, &raw.stopping),
            (&mut leds.armed, &raw.armed),
        ] {
            if let Some(v) = value {
                *slot = self.led(v)?;
            }
        }
        Ok(leds)
    }

    fn stop_mode(
        &self,
        mode: Option<&Spanned<String>>,
        fade: Option<&Spanned<f64>>,
        applies: bool,
        group: &str,
    ) -> Result<StopMode, MappingError> {
        if !applies {
            if let Some(m) = mode {
                return Err(self.err(&m.span(), format!("{group}: `mode` only applies to stop buttons")));
            }
            if let Some(f) = fade {
                return Err(self.err(&f.span(), format!("{group}: `fade_beats` only applies to stop buttons")));
            }
            return Ok(StopMode::Quantised);
        }
        let mode_name = mode.map(|m| m.get_ref().trim().to_lowercase());
        let stop = match mode_name.as_deref() {
            None | Some("quantised" | "quantized") => StopMode::Quantised,
            Some("immediate") => StopMode::Immediate,
            Some("section-end") => StopMode::SectionEnd,
            Some("fade-out") => {
                let Some(f) = fade else {
                    let span = mode.map(|m| m.span()).unwrap_or_default();
                    return Err(
                        self.err(&span, "mode = \"fade-out\" needs fade_beats = N (the fade's length in beats)")
                    );
                };
                let beats = *f.get_ref();
                if !(beats > 0.0 && beats <= 1024.0) {
                    return Err(self.err(&f.span(), format!("fade_beats is {beats}; it must be > 0 and <= 1024")));
                }
                return Ok(StopMode::FadeOut(Beats(beats)));
            }
            Some(other) => {
                let span = mode.map(|m| m.span()).unwrap_or_default();
                return Err(self.err(
                    &span,
                    format!("'{other}' is not a stop mode (use immediate, quantised, section-end or fade-out)"),
                ));
            }
        };
        if let Some(f) = fade {
            return Err(self.err(&f.span(), "fade_beats only applies with mode = \"fade-out\""));
        }
        Ok(stop)
    }

    fn build(&self, raw: RawFile) -> Result<Mapping, MappingError> {
        let base = self.leds(Leds::default(), raw.leds.as_ref())?;
        let mut b = Builder { cx: self, controls: Vec::new(), lines: Vec::new(), index: HashMap::new() };

        if let Some(g) = raw.clips {
            let span = g.span();
            let g = g.into_inner();
            let tracks = self.int(&g.tracks, "clips: tracks", 1..=MAX_COUNT)?;
            let scenes = self.int(&g.scenes, "clips: scenes", 1..=MAX_COUNT)?;
            let f = self.formula(
                RawWhere { note: g.note.clone(), cc: g.cc.clone(), channel: g.channel },
                "[clips]",
                &span,
            )?;
            let step = |s: &Option<Spanned<i64>>, default: i64| -> Result<i64, MappingError> {
                s.as_ref().map_or(Ok(default), |s| self.int(s, "a step", -127..=127))
            };
            let (ts, ss) = (step(&g.track_step, 1)?, step(&g.scene_step, tracks)?);
            let (cts, css) = (step(&g.channel_track_step, 0)?, step(&g.channel_scene_step, 0)?);
            let leds = self.leds(base, g.leds.as_ref())?;
            let at = g.note.as_ref().or(g.cc.as_ref()).map_or(span.clone(), |s| s.span());
            for scene in 0..scenes {
                for track in 0..tracks {
                    let control = Control::Clip { track: track as usize, scene: scene as usize };
                    let address = self.address(
                        f,
                        f.number + track * ts + scene * ss,
                        f.channel + track * cts + scene * css,
                        &at,
                        &|| control.to_string(),
                    )?;
                    b.add(address, control, leds, StopMode::Quantised, &at)?;
                }
            }
        }

        let rows = [
            ("[scene_launch]", raw.scene_launch, 0),
            ("[track_stop]", raw.track_stop, 1),
            ("[track_arm]", raw.track_arm, 2),
        ];
        for (group, row, kind) in rows {
            let Some(row) = row else { continue };
            let span = row.span();
            let r = row.into_inner();
            let count = self.int(&r.count, &format!("{group} count"), 1..=MAX_COUNT)?;
            let f =
                self.formula(RawWhere { note: r.note.clone(), cc: r.cc.clone(), channel: r.channel }, group, &span)?;
            let step = r.step.as_ref().map_or(Ok(1), |s| self.int(s, "step", -127..=127))?;
            let channel_step = r.channel_step.as_ref().map_or(Ok(0), |s| self.int(s, "channel_step", -15..=15))?;
            let leds = self.leds(base, r.leds.as_ref())?;
            let stop = self.stop_mode(r.mode.as_ref(), r.fade_beats.as_ref(), kind == 1, group)?;
            let at = r.note.as_ref().or(r.cc.as_ref()).map_or(span.clone(), |s| s.span());
            for i in 0..count {
                let n = i as usize;
                let control = match kind {
                    0 => Control::SceneLaunch { scene: n },
                    1 => Control::TrackStop { track: n },
                    _ => Control::TrackArm { track: n },
                };
                let address =
                    self.address(f, f.number + i * step, f.channel + i * channel_step, &at, &|| control.to_string())?;
                b.add(address, control, leds, stop, &at)?;
            }
        }

        if let Some(one) = raw.stop_all {
            let span = one.span();
            let o = one.into_inner();
            let f = self.formula(
                RawWhere { note: o.note.clone(), cc: o.cc.clone(), channel: o.channel },
                "[stop_all]",
                &span,
            )?;
            let leds = self.leds(base, o.leds.as_ref())?;
            let stop = self.stop_mode(o.mode.as_ref(), o.fade_beats.as_ref(), true, "[stop_all]")?;
            let at = o.note.as_ref().or(o.cc.as_ref()).map_or(span.clone(), |s| s.span());
            let address = self.address(f, f.number, f.channel, &at, &|| "stop-all button".into())?;
            b.add(address, Control::StopAll, leds, stop, &at)?;
        }

        for button in raw.button {
            let span = button.span();
            let r = button.into_inner();
            let f = self.formula(
                RawWhere { note: r.note.clone(), cc: r.cc.clone(), channel: r.channel },
                "[[button]]",
                &span,
            )?;
            let index = |v: &Spanned<i64>, what: &str| -> Result<usize, MappingError> {
                Ok(self.int(v, what, 1..=MAX_COUNT)? as usize - 1)
            };
            let mut actions: Vec<(Control, Range<usize>, &str)> = Vec::new();
            if let Some(c) = &r.clip {
                let control = match c.get_ref().as_slice() {
                    [t, s] => Control::Clip { track: index(t, "clip track")?, scene: index(s, "clip scene")? },
                    _ => return Err(self.err(&c.span(), "clip = [track, scene], both counted from 1")),
                };
                actions.push((control, c.span(), "clip"));
            }
            if let Some(s) = &r.scene {
                actions.push((Control::SceneLaunch { scene: index(s, "scene")? }, s.span(), "scene"));
            }
            if let Some(t) = &r.stop_track {
                actions.push((Control::TrackStop { track: index(t, "stop_track")? }, t.span(), "stop_track"));
            }
            if let Some(t) = &r.arm {
                actions.push((Control::TrackArm { track: index(t, "arm")? }, t.span(), "arm"));
            }
            if let Some(s) = &r.stop_all {
                if !*s.get_ref() {
                    return Err(
                        self.err(&s.span(), "stop_all = false does nothing; write stop_all = true or remove it")
                    );
                }
                actions.push((Control::StopAll, s.span(), "stop_all"));
            }
            let control = match actions.as_slice() {
                [(control, _, _)] => *control,
                [] => {
                    return Err(self
                        .err(&span, "this button does nothing; give one of clip, scene, stop_track, arm or stop_all"));
                }
                [(_, first, a), (_, second, b2), ..] => {
                    return Err(self.err(
                        second,
                        format!(
                            "this button has both `{a}` (line {}) and `{b2}`; give one action per [[button]]",
                            self.line(first)
                        ),
                    ));
                }
            };
            let stops = matches!(control, Control::TrackStop { .. } | Control::StopAll);
            let stop = self.stop_mode(r.mode.as_ref(), r.fade_beats.as_ref(), stops, "[[button]]")?;
            let leds = self.leds(base, r.leds.as_ref())?;
            let at = r.note.as_ref().or(r.cc.as_ref()).map_or(span.clone(), |s| s.span());
            let address = self.address(f, f.number, f.channel, &at, &|| "button".into())?;
            b.add(address, control, leds, stop, &at)?;
        }

        if b.controls.is_empty() {
            return Err(MappingError::whole(
                self.file,
                "the mapping maps no controls; add [clips], [scene_launch], [track_stop], [track_arm], [stop_all] or [[button]]"
                    .into(),
            ));
        }
        let controller = raw.controller.unwrap_or(RawController { name: None, port: None });
        Ok(Mapping {
            name: controller.name.filter(|n| !n.trim().is_empty()),
            port: controller.port.filter(|p| !p.trim().is_empty()),
            controls: b.controls,
            index: b.index,
        })
    }
}

struct Builder<'a, 'b> {
    cx: &'a Cx<'b>,
    controls: Vec<MappedControl>,
    lines: Vec<usize>,
    index: HashMap<Address, usize>,
}

impl Builder<'_, '_> {
    fn add(
        &mut self,
        address: Address,
        control: Control,
        leds: Leds,
        stop: StopMode,
        span: &Range<usize>,
    ) -> Result<(), MappingError> {
        if let Some(&i) = self.index.get(&address) {
            let other = &self.controls[i];
            return Err(self.cx.err(
                span,
                format!(
                    "{address} is mapped twice: to the {control} here and to the {} on line {}",
                    other.control, self.lines[i]
                ),
            ));
        }
        self.index.insert(address, self.controls.len());
        self.controls.push(MappedControl { address, control, leds, stop });
        self.lines.push(self.cx.line(span));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Mapping, MappingError> {
        Mapping::parse(text, Path::new("pads.toml"))
    }

    #[test]
    fn a_grid_formula_covers_every_slot() {
        let m = parse("[clips]\ntracks = 8\nscenes = 8\nnote = 81\nscene_step = -10\n").unwrap();
        assert_eq!(m.controls.len(), 64);
        let press = |key| m.lookup(Message::NoteOn { channel: 0, key, velocity: 99 }).map(|(c, g)| (c.control, g));
        assert_eq!(press(81), Some((Control::Clip { track: 0, scene: 0 }, Gesture::Press { velocity: 99 })));
        assert_eq!(press(88), Some((Control::Clip { track: 7, scene: 0 }, Gesture::Press { velocity: 99 })));
        assert_eq!(press(11), Some((Control::Clip { track: 0, scene: 7 }, Gesture::Press { velocity: 99 })));
        assert_eq!(press(19), None);
        let (c, g) = m.lookup(Message::NoteOff { channel: 0, key: 82, velocity: 0 }).unwrap();
        assert_eq!((c.control, g), (Control::Clip { track: 1, scene: 0 }, Gesture::Release));
        assert!(m.lookup(Message::NoteOn { channel: 1, key: 81, velocity: 9 }).is_none(), "other channel");
    }

    #[test]
    fn channels_can_step_per_track_and_leds_override_per_group() {
        let m = parse(
            "[leds]\nplaying = 1\nqueued = { velocity = 2 }\n\
             [clips]\ntracks = 8\nscenes = 5\nnote = 53\ntrack_step = 0\nscene_step = 1\nchannel_track_step = 1\n\
             [track_stop]\ncount = 8\nnote = 52\nstep = 0\nchannel_step = 1\nmode = \"immediate\"\n\
             leds = { playing = { velocity = 5, channel = 3, blink = true } }\n",
        )
        .unwrap();
        let (c, _) = m.lookup(Message::NoteOn { channel: 7, key: 57, velocity: 1 }).unwrap();
        assert_eq!(c.control, Control::Clip { track: 7, scene: 4 });
        assert_eq!(c.leds.playing, Led::steady(1));
        assert_eq!(c.leds.queued, Led::steady(2));
        assert_eq!(c.leds.armed, Led::steady(127), "default");
        let (s, _) = m.lookup(Message::NoteOn { channel: 2, key: 52, velocity: 1 }).unwrap();
        assert_eq!(s.control, Control::TrackStop { track: 2 });
        assert_eq!(s.stop, StopMode::Immediate);
        assert_eq!(s.leds.playing, Led { velocity: 5, channel: Some(2), blink: true });
        assert_eq!(s.leds.queued, Led::steady(2), "the rest comes from [leds]");
    }

    #[test]
    fn led_messages_use_the_led_channel_and_keep_velocity_zero() {
        let a = Address::Note { channel: 0, key: 81 };
        assert_eq!(a.led_message(Led { velocity: 21, channel: Some(1), blink: false }).to_bytes(), [0x91, 81, 21]);
        assert_eq!(a.led_message(Led::steady(0)).to_bytes(), [0x90, 81, 0]);
        assert_eq!(Address::Cc { channel: 0, controller: 89 }.led_message(Led::steady(5)).to_bytes(), [0xb0, 89, 5]);
    }

    #[test]
    fn buttons_map_single_controls() {
        let m = parse(
            "[[button]]\nnote = 36\nchannel = 10\nclip = [2, 3]\n\
             [[button]]\ncc = 20\nstop_all = true\nmode = \"fade-out\"\nfade_beats = 8\n\
             [[button]]\ncc = 21\narm = 1\n",
        )
        .unwrap();
        assert_eq!(m.controls[0].control, Control::Clip { track: 1, scene: 2 });
        assert_eq!(m.controls[0].address, Address::Note { channel: 9, key: 36 });
        assert_eq!(m.controls[1].stop, StopMode::FadeOut(Beats(8.0)));
        let (c, g) = m.lookup(Message::Cc { channel: 0, controller: 21, value: 0 }).unwrap();
        assert_eq!((c.control, g), (Control::TrackArm { track: 0 }, Gesture::Release));
    }
}
