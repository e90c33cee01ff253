//! # loophole-engine
//!
//! The music of Loophole, with no sockets, devices or Link: everything here runs offline and is
//! deterministic.
//!
//! - [`time`]: beats, tempo mapping, quantisation grids and the [`time::BlockClock`].
//! - [`model`]: the session: tracks, clips, scenes.
//! - [`session_file`]: loading sessions from TOML, audio from WAV, MIDI from Standard MIDI Files.
//! - [`audio_file`]: WAV files read, and audio resampled, a chunk at a time.
//! - [`instrument`]: the built-in synth and drum sampler that play MIDI clips.
//! - [`pulse`]: the scheduler. Turns presses into triggers at target beats. Never reads a clock.
//! - [`signal`]: the realtime renderer. Executes triggers at the exact sample; never allocates.
//! - [`render`]: offline rendering: the same Pulse and Signal driven by a simulated clock.
//! - [`script`]: performance scripts (timed actions) for renders and tests.
//! - [`demo`]: the built-in demo set, generated in code.
#![warn(missing_docs)]

pub mod audio_file;
pub mod demo;
pub mod instrument;
pub mod model;
pub mod pulse;
pub mod queue;
pub mod render;
pub mod script;
pub mod session_file;
pub mod signal;
pub mod stream;
pub mod time;

use std::sync::Arc;

use model::{ClipContent, Session, TrackKind, db_to_gain};
use pulse::Pulse;
use queue::MixSettings;
use signal::{ClipSlot, Signal, SignalSizes, SlotContent};

/// Sizes and rates an engine is built with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Sample rate of the audio device (or render).
    pub sample_rate: u32,
    /// Largest block Signal renders in one piece (longer blocks are split, with identical output).
    pub max_block: usize,
    /// Capacity of the Pulse -> Signal command queue, Signal's pending-event list and the report
    /// queue. A full queue refuses new triggers with an error rather than blocking or allocating.
    pub queue_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { sample_rate: 48_000, max_block: 1024, queue_capacity: 4096 }
    }
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The session breaks an invariant (see [`Session::validate`]); fix the session.
    #[error("invalid session: {0}")]
    InvalidSession(String),
    /// A sample rate of zero or above 384 kHz, or a zero block size. Use a real device setting.
    #[error("unsupported configuration: {0}")]
    Config(String),
}

/// Builds a Pulse (for the control thread) and a Signal (for the audio thread) for a session,
/// connected by lock-free queues. Audio is resampled to the engine's rate and every buffer is
/// allocated here, so Signal never allocates later.
///
/// Clips the session streams from disk ([`stream::prepare`]) are read by a reader thread that
/// this starts and Pulse owns (it stops when Pulse is dropped). A session loaded under a memory
/// budget must go through [`stream::prepare`] first: a clip whose audio file is still only probed
/// ([`model::Clip::deferred`]) is refused with [`EngineError::Config`].
///
/// Thread: control thread. Not realtime-safe.
pub fn build(session: Arc<Session>, config: &EngineConfig) -> Result<(Pulse, Signal), EngineError> {
    let (mut pulse, signal, reader) = build_with_reader(session, config)?;
    if let Some(reader) = reader {
        let thread = reader.spawn().map_err(|e| EngineError::Config(format!("cannot start the stream reader: {e}")))?;
        pulse.keep_reader(thread);
    }
    Ok((pulse, signal))
}

/// [`build`], but the stream reader (if any clip streams) is returned instead of started, for a
/// caller that runs it itself ([`stream::StreamReader::service`] between blocks, as the offline
/// renderer does).
///
/// Thread: control thread. Not realtime-safe.
pub fn build_with_reader(
    session: Arc<Session>,
    config: &EngineConfig,
) -> Result<(Pulse, Signal, Option<stream::StreamReader>), EngineError> {
    session.validate().map_err(EngineError::InvalidSession)?;
    if config.sample_rate == 0 || config.sample_rate > 384_000 {
        return Err(EngineError::Config(format!("sample rate {} Hz", config.sample_rate)));
    }
    if config.max_block == 0 || config.queue_capacity == 0 {
        return Err(EngineError::Config("block size and queue capacity must be at least 1".into()));
    }
    let mut wiring = stream::wire(&session, config.sample_rate).map_err(EngineError::Config)?;
    let clips = session
        .clips
        .iter()
        .zip(wiring.slots.drain(..))
        .map(|(c, streamed)| ClipSlot {
            content: match &c.content {
                _ if let Some(s) = streamed => SlotContent::Streamed(s),
                ClipContent::Audio(a) if a.sample_rate == config.sample_rate => SlotContent::Audio(a.clone()),
                ClipContent::Audio(a) => SlotContent::Audio(Arc::new(session_file::resample(a, config.sample_rate))),
                ClipContent::Midi(m) => SlotContent::Midi(m.clone()),
            },
            looping: c.looping,
            length: c.length,
            start_offset: c.start_offset,
        })
        .collect();
    let mix: Vec<MixSettings> = session
        .tracks
        .iter()
        .map(|t| MixSettings { gain: db_to_gain(t.gain_db) as f32, pan: t.pan as f32, mute: t.mute, solo: t.solo })
        .collect();
    let tracks = session
        .tracks
        .iter()
        .zip(&mix)
        .zip(wiring.lanes.drain(..))
        .map(|((t, m), lanes)| {
            let inst = match t.kind {
                // A track routed to an external synth plays the built-in one only if it names it.
                TrackKind::Midi if t.midi_out.is_some() && t.instrument.is_none() => None,
                TrackKind::Midi => Some(instrument::Instrument::new(
                    &t.instrument.clone().unwrap_or(model::InstrumentSpec::Synth(Default::default())),
                    config.sample_rate,
                )),
                TrackKind::Audio => None,
            };
            let route = match t.kind {
                TrackKind::Midi => t.midi_out.clone(),
                TrackKind::Audio => None,
            };
            (*m, inst, route, lanes)
        })
        .collect();
    let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(config.queue_capacity);
    let (rep_tx, rep_rx) = rtrb::RingBuffer::new(config.queue_capacity);
    let signal = Signal::new(
        SignalSizes {
            sample_rate: config.sample_rate,
            max_block: config.max_block,
            pending: config.queue_capacity,
            declick_ms: session.crossfade_ms,
        },
        clips,
        tracks,
        cmd_rx,
        rep_tx,
    );
    let pulse = Pulse::new(session, cmd_tx, rep_rx, mix);
    drop(wiring.sources);
    Ok((pulse, signal, wiring.reader))
}
