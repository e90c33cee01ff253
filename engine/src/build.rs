//! Building an engine: a [`Pulse`] for the control thread and a [`Signal`] for the audio thread,
//! connected by their queues, with every buffer Signal will ever need allocated here. Clips that
//! stream from disk get their lanes here, and the reader that fills them comes from the media
//! layer. Control thread; allocates; not realtime-safe.

use std::sync::Arc;

use crate::media::reader::StreamReader;
use crate::media::resample::resample;
use crate::model::{ClipContent, Session, StreamSource, TrackKind, db_to_gain};
use crate::pulse::Pulse;
use crate::queue::MixSettings;
use crate::queue::lanes::{self, Lanes, ReaderLane};
use crate::signal::{ClipSlot, LANES_PER_TRACK, Signal, SignalSizes, SlotContent, StreamSlot};
use crate::{instrument, model};

/// Lowest sample rate an engine runs at, in Hz ([`EngineConfig::sample_rate`]).
pub const MIN_ENGINE_SAMPLE_RATE: u32 = 8_000;
/// Highest sample rate an engine runs at, in Hz ([`EngineConfig::sample_rate`]).
pub const MAX_ENGINE_SAMPLE_RATE: u32 = 384_000;

/// Sizes and rates an engine is built with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Sample rate of the audio device (or render):
    /// [`MIN_ENGINE_SAMPLE_RATE`]`..=`[`MAX_ENGINE_SAMPLE_RATE`].
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
    /// A sample rate outside [`MIN_ENGINE_SAMPLE_RATE`]`..=`[`MAX_ENGINE_SAMPLE_RATE`], or a zero
    /// block size. Use a real device setting.
    #[error("unsupported configuration: {0}")]
    Config(String),
}

/// Builds a Pulse (for the control thread) and a Signal (for the audio thread) for a session,
/// connected by lock-free queues. Audio is resampled to the engine's rate and every buffer is
/// allocated here, so Signal never allocates later.
///
/// Clips the session streams from disk ([`crate::media::stream::prepare`]) are read by a reader thread that
/// this starts and Pulse owns (it stops when Pulse is dropped). A session loaded under a memory
/// budget must go through [`crate::media::stream::prepare`] first: a clip whose audio file is still only probed
/// ([`model::Clip::deferred`]) is refused with [`EngineError::Config`].
///
/// Thread: control thread. Not realtime-safe.
pub fn build(session: Arc<Session>, config: &EngineConfig) -> Result<(Pulse, Signal), EngineError> {
    let (mut pulse, signal, reader) = build_with_reader(session, config)?;
    if let Some(reader) = reader {
        let thread = reader.spawn().map_err(|e| EngineError::Config(format!("cannot start the stream reader: {e}")))?;
        pulse.keep_reader(Box::new(thread));
    }
    Ok((pulse, signal))
}

/// [`build`], but the stream reader (if any clip streams) is returned instead of started, for a
/// caller that runs it itself ([`StreamReader::service`] between blocks, as the offline
/// renderer does).
///
/// Thread: control thread. Not realtime-safe.
pub fn build_with_reader(
    session: Arc<Session>,
    config: &EngineConfig,
) -> Result<(Pulse, Signal, Option<StreamReader>), EngineError> {
    session.validate().map_err(EngineError::InvalidSession)?;
    if !(MIN_ENGINE_SAMPLE_RATE..=MAX_ENGINE_SAMPLE_RATE).contains(&config.sample_rate) {
        return Err(EngineError::Config(format!(
            "sample rate {} Hz (the engine runs at {MIN_ENGINE_SAMPLE_RATE}..={MAX_ENGINE_SAMPLE_RATE} Hz)",
            config.sample_rate
        )));
    }
    if config.max_block == 0 || config.queue_capacity == 0 {
        return Err(EngineError::Config("block size and queue capacity must be at least 1".into()));
    }
    let mut wiring = wire(&session, config.sample_rate).map_err(EngineError::Config)?;
    let clips = session
        .clips
        .iter()
        .zip(wiring.slots.drain(..))
        .map(|(c, streamed)| ClipSlot {
            content: match &c.content {
                _ if let Some(s) = streamed => SlotContent::Streamed(s),
                ClipContent::Audio(a) if a.sample_rate == config.sample_rate => SlotContent::Audio(a.clone()),
                ClipContent::Audio(a) => SlotContent::Audio(Arc::new(resample(a, config.sample_rate))),
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
    let reader = reader(wiring.feeds, wiring.sources)?;
    Ok((pulse, signal, reader))
}

/// The stream reader of a build, if any clip streams.
fn reader(feeds: Vec<ReaderLane>, sources: Vec<Arc<StreamSource>>) -> Result<Option<StreamReader>, EngineError> {
    Ok((!sources.is_empty()).then(|| StreamReader::new(feeds, sources)))
}

/// The streaming side of a build: Signal's slots and lanes, the reader's ends of the lanes and
/// the sources they read.
pub(crate) struct StreamWiring {
    /// Per clip: its Signal slot data, if it streams.
    pub slots: Vec<Option<StreamSlot>>,
    /// Per track: its lanes.
    pub lanes: Vec<Lanes>,
    /// The reader's end of every lane, in track order.
    pub feeds: Vec<ReaderLane>,
    /// The distinct sources (a lane's request names one by index).
    pub sources: Vec<Arc<StreamSource>>,
}

/// Plans Signal's lanes and the reader's ends of them for a prepared session. Control thread;
/// allocates.
pub(crate) fn wire(session: &Session, sample_rate: u32) -> Result<StreamWiring, String> {
    let mut sources: Vec<Arc<StreamSource>> = Vec::new();
    let mut slots = Vec::with_capacity(session.clips.len());
    let mut tracks_streaming = vec![false; session.tracks.len()];
    let lead = (session.streaming.lead_ms.max(0.0) * 1e-3 * sample_rate as f64).ceil() as i64;
    for c in &session.clips {
        if c.deferred.is_some() {
            return Err(format!(
                "clip '{}': its audio file is not decoded yet (a session loaded under a memory budget goes through \
                 the media layer's stream::prepare first)",
                c.id
            ));
        }
        let (Some(s), ClipContent::Audio(head)) = (&c.stream, &c.content) else {
            slots.push(None);
            continue;
        };
        if s.source.sample_rate() != sample_rate {
            return Err(format!(
                "clip '{}' was prepared for streaming at {} Hz, the engine runs at {sample_rate} Hz",
                c.id,
                s.source.sample_rate()
            ));
        }
        let idx = match sources.iter().position(|x| Arc::ptr_eq(x, &s.source)) {
            Some(i) => i,
            None => {
                sources.push(s.source.clone());
                sources.len() - 1
            }
        };
        tracks_streaming[c.track.index()] = true;
        slots.push(Some(StreamSlot {
            head: head.clone(),
            head_start: s.head_start as i64,
            head_end: (s.head_start + head.frames() as u64) as i64,
            frames: s.source.frames() as i64,
            stream: idx as u32,
            lead,
        }));
    }
    let capacity = lanes::capacity(sample_rate);
    let mut reader_lanes = Vec::new();
    let lanes = tracks_streaming
        .iter()
        .map(|&on| {
            if !on {
                return Lanes::default();
            }
            Lanes(
                (0..LANES_PER_TRACK)
                    .map(|_| {
                        let (lane, feed) = lanes::pair(capacity);
                        reader_lanes.push(feed);
                        lane
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(StreamWiring { slots, lanes, feeds: reader_lanes, sources })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_runs_only_at_the_supported_sample_rates() {
        let session = Arc::new(Session::new("empty", crate::time::Bpm(120.0)));
        let at = |sample_rate| build(session.clone(), &EngineConfig { sample_rate, ..EngineConfig::default() });
        for rate in [MIN_ENGINE_SAMPLE_RATE, 44_100, MAX_ENGINE_SAMPLE_RATE] {
            assert!(at(rate).is_ok(), "{rate} Hz is supported");
        }
        for rate in [0, 1, MIN_ENGINE_SAMPLE_RATE - 1, MAX_ENGINE_SAMPLE_RATE + 1, u32::MAX] {
            match at(rate) {
                Err(EngineError::Config(why)) => assert!(why.contains(&format!("sample rate {rate} Hz")), "{why}"),
                other => panic!("{rate} Hz: {:?}", other.map(|_| ())),
            }
        }
    }
}
