//! Clip content: decoded audio, MIDI events and messages, and the descriptions the media layer
//! attaches to clips whose audio is not (all) in memory: a probed file not yet decoded, or a
//! stream from a cache file. Also the one conversion of a 32-bit float WAV sample ([`le_f32`]),
//! shared by the decoder and Signal's in-place reader. Pure data (the stream's read status is two
//! atomics) and pure functions; any thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::time::Beats;

/// Decoded audio, always stored as two planar channels (mono is duplicated).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioData {
    /// Sample rate of `left`/`right`.
    pub sample_rate: u32,
    /// Left channel.
    pub left: Vec<f32>,
    /// Right channel.
    pub right: Vec<f32>,
}

impl AudioData {
    /// Frames of audio.
    pub fn frames(&self) -> usize {
        self.left.len()
    }
}

/// A MIDI message as the engine uses it (channel kept for external outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MidiMsg {
    /// Note on (velocity 1..=127; a note-on with velocity 0 is stored as a note-off).
    NoteOn {
        /// MIDI channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
        /// Velocity 1..=127.
        velocity: u8,
    },
    /// Note off.
    NoteOff {
        /// MIDI channel 0..=15.
        channel: u8,
        /// Key 0..=127.
        key: u8,
    },
    /// Control change.
    Cc {
        /// MIDI channel 0..=15.
        channel: u8,
        /// Controller number 0..=127.
        controller: u8,
        /// Value 0..=127.
        value: u8,
    },
}

/// A MIDI message at a position in a clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MidiEvent {
    /// Position from the start of the clip content, in beats.
    pub beat: Beats,
    /// The message.
    pub msg: MidiMsg,
}

/// The events of a MIDI clip, sorted by beat (note-offs before note-ons at the same beat).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MidiData {
    /// Sorted events.
    pub events: Vec<MidiEvent>,
}

impl MidiData {
    /// Builds clip data from notes `(start, length, key, velocity)` in beats, sorting the events.
    pub fn from_notes(notes: &[(f64, f64, u8, u8)]) -> MidiData {
        let mut events = Vec::with_capacity(notes.len() * 2);
        for &(start, len, key, velocity) in notes {
            events.push(MidiEvent {
                beat: Beats(start),
                msg: MidiMsg::NoteOn { channel: 0, key, velocity: velocity.clamp(1, 127) },
            });
            events.push(MidiEvent { beat: Beats(start + len.max(0.0)), msg: MidiMsg::NoteOff { channel: 0, key } });
        }
        let mut data = MidiData { events };
        data.sort();
        data
    }

    /// Sorts events by beat, note-offs first at equal beats (so a repeated note retriggers).
    pub fn sort(&mut self) {
        fn rank(m: &MidiMsg) -> u8 {
            match m {
                MidiMsg::NoteOff { .. } => 0,
                MidiMsg::Cc { .. } => 1,
                MidiMsg::NoteOn { .. } => 2,
            }
        }
        self.events.sort_by(|a, b| a.beat.0.total_cmp(&b.beat.0).then_with(|| rank(&a.msg).cmp(&rank(&b.msg))));
    }
}

/// Converts decibels to a linear gain.
#[inline]
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// What a WAV file's header says about its audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavHeader {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Frames of audio the file holds.
    pub frames: u64,
    /// Channels in the file (the engine keeps the first two; mono is duplicated).
    pub channels: u16,
}

/// A little-endian 32-bit float WAV sample as the engine plays it: NaN and infinities become
/// silence. The one conversion of such samples: the WAV decoder (the media layer's `wav`) and
/// Signal's in-place reader of mapped files (`signal::mapped`) both call it, so a clip read in
/// place can never sound different from the same clip decoded. `b` holds at least 4 bytes.
/// Pure; any thread, realtime-safe.
#[inline(always)]
pub fn le_f32(b: &[u8]) -> f32 {
    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if v.is_finite() { v } else { 0.0 }
}

/// An audio file a session uses that the loader has not decoded yet, and why (which says who
/// decodes it). Clips sharing a file share one.
#[derive(Debug, Clone, PartialEq)]
pub struct DeferredAudio {
    /// The file.
    pub path: PathBuf,
    /// Its header, checked when the session was loaded.
    pub header: WavHeader,
    /// Where the session names it, for messages: `session.toml:12:8: clip 'x': file 'x.wav'`.
    pub origin: String,
    /// Why the loader left it undecoded.
    pub deferral: Deferral,
}

/// Why the loader left an audio file undecoded ([`DeferredAudio::deferral`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// A memory budget is set: the media layer's `stream::prepare` decodes the file (or converts
    /// it to a stream cache file) once the engine's rate is known. An engine refuses a clip whose
    /// file is still deferred this way: it would play silence.
    Budget,
    /// The session was loaded for an offline render (the files layer's `LoadOptions::map_audio`)
    /// and the file holds 32-bit float mono or stereo samples that can be read in place: an
    /// offline engine (`build_with_reader`) maps the file and Signal reads the samples from the
    /// mapping; a live engine (`build`) decodes it, so the audio thread never touches a file.
    InPlace,
}

/// Streaming settings of a session (`[session]` keys `memory_budget_mb`, `stream_head_s`,
/// `stream_lead_ms`; `--memory-budget` overrides the budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamSettings {
    /// Decoded audio (at the engine's rate, 8 bytes per stereo frame) kept in memory, in MiB.
    /// `None`: everything is resident (nothing streams).
    pub memory_budget_mb: Option<f64>,
    /// Seconds of each streamed clip kept in memory from its start offset, so a launch from the
    /// start plays at once while the reader fills the rest.
    pub head_seconds: f64,
    /// The reader's worst-case lead: a launch that starts outside the head needs at least this
    /// long between its press and its beat, or it is refused.
    pub lead_ms: f64,
}

/// Default [`StreamSettings::head_seconds`].
pub const DEFAULT_HEAD_SECONDS: f64 = 2.0;
/// Smallest [`StreamSettings::head_seconds`] (it must exceed the longest block by far).
pub const MIN_HEAD_SECONDS: f64 = 0.5;
/// Default [`StreamSettings::lead_ms`].
pub const DEFAULT_LEAD_MS: f64 = 100.0;

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings { memory_budget_mb: None, head_seconds: DEFAULT_HEAD_SECONDS, lead_ms: DEFAULT_LEAD_MS }
    }
}

/// A clip's audio converted to the engine's rate in a raw cache file (32-bit float
/// little-endian, interleaved stereo), as the media layer's `stream::prepare` made it: where the
/// file is, how long it is, and whether the reader has failed to read it. The file itself
/// belongs to the media layer, which hands in a guard that removes it when the last clip using
/// it is dropped.
pub struct StreamSource {
    path: PathBuf,
    frames: u64,
    sample_rate: u32,
    /// The file the audio came from (for messages).
    origin: String,
    failed: AtomicBool,
    error: OnceLock<String>,
    /// Keeps the cache file (and its lock) alive while the source lives.
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .field("sample_rate", &self.sample_rate)
            .field("origin", &self.origin)
            .finish()
    }
}

impl StreamSource {
    /// A source for the cache file `path` of `frames` frames at `sample_rate`, made from
    /// `origin` (for messages: `clip 'x'`). `guard` is dropped with the source (the media layer's
    /// cache file lock and clean-up). Control thread.
    pub fn new(
        path: PathBuf,
        frames: u64,
        sample_rate: u32,
        origin: String,
        guard: Box<dyn Send + Sync>,
    ) -> StreamSource {
        StreamSource {
            path,
            frames,
            sample_rate,
            origin,
            failed: AtomicBool::new(false),
            error: OnceLock::new(),
            _guard: guard,
        }
    }

    /// Frames of audio (at [`StreamSource::sample_rate`]).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The engine rate the cache file holds.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the reader could not read the file, once it failed. Any thread; lock-free.
    pub fn error(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.error.get().cloned()
    }

    /// Records that the reader could not read the file (the first reason is kept). Reader
    /// thread.
    pub fn fail(&self, why: String) {
        let _ = self.error.set(format!("cannot read the streamed audio of {} ({why})", self.origin));
        self.failed.store(true, Ordering::Release);
    }
}

/// How a streamed clip is played: its head in memory (the clip's content) and the rest from its
/// source.
#[derive(Debug)]
pub struct StreamedClip {
    /// The cache file.
    pub source: Arc<StreamSource>,
    /// The first frame the head holds.
    pub head_start: u64,
}
