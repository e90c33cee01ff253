//! Building an engine: a [`Pulse`] for the control thread and a [`Signal`] for the audio thread,
//! connected by their queues, with every buffer Signal will ever need allocated here. Clips that
//! stream from disk get their lanes here, and the reader that fills them comes from the media
//! layer. Audio files the loader left for the engine ([`Deferral::InPlace`]) are mapped here for
//! an offline render (Signal reads them in place) and decoded here for a live engine. Control
//! thread; allocates; does file I/O; not realtime-safe.

use std::sync::Arc;

use crate::media::reader::StreamReader;
use crate::media::resample::resample;
use crate::media::stream::decode_resident;
use crate::media::wav::MappedWav;
use crate::model::{AudioData, ClipContent, Deferral, DeferredAudio, Session, StreamSource, TrackKind};
use crate::pulse::{Pulse, PulseCore};
use crate::queue::MixSettings;
use crate::queue::lanes::{self, Lanes, ReaderLane};
use crate::signal::mapped::MappedAudio;
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
    /// block size: use a real device setting. Also a session whose audio files are not ready:
    /// still only probed under a memory budget, or left for the engine to read and gone or
    /// changed since the session was loaded (the message names the session line).
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
/// ([`model::Clip::deferred`], [`Deferral::Budget`]) is refused with [`EngineError::Config`].
///
/// Audio files the loader left for the engine to read in place (an offline render's load,
/// [`Deferral::InPlace`]) are decoded here, and resampled if need be: the audio thread of a live
/// engine never reads a file's pages, which could mean waiting for the disk.
///
/// Thread: control thread. Not realtime-safe.
pub fn build(session: Arc<Session>, config: &EngineConfig) -> Result<(Pulse, Signal), EngineError> {
    let (mut pulse, signal, reader) = build_engine(session, config, Reading::Decoded)?;
    if let Some(reader) = reader {
        let thread = reader.spawn().map_err(|e| EngineError::Config(format!("cannot start the stream reader: {e}")))?;
        pulse.keep(Box::new(thread));
    }
    Ok((pulse, signal))
}

/// [`build`], but the stream reader (if any clip streams) is returned instead of started, for a
/// caller that runs it itself ([`StreamReader::service`] between blocks, as the offline
/// renderer does).
///
/// Unlike [`build`], clips whose audio file the loader left to be read in place
/// ([`Deferral::InPlace`]: 32-bit float WAV files, for an offline render) and whose rate is the
/// engine's play from the file mapped into memory ([`MappedWav`]): Signal converts each segment
/// a voice plays out of the mapping, with the decoder's own conversion, which may wait for the
/// disk. This is for offline renders; a live audio thread must use [`build`]. Files at another
/// rate are decoded and resampled, as [`build`] does.
///
/// Thread: control thread. Not realtime-safe.
pub fn build_with_reader(
    session: Arc<Session>,
    config: &EngineConfig,
) -> Result<(Pulse, Signal, Option<StreamReader>), EngineError> {
    build_engine(session, config, Reading::InPlace)
}

/// How an engine reads the audio files the loader left to be read in place
/// ([`Deferral::InPlace`]).
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    /// Decoded into memory here (a live engine: its audio thread never touches a file).
    Decoded,
    /// Mapped, and converted by Signal a segment at a time (an offline render).
    InPlace,
}

/// [`build`] and [`build_with_reader`], which differ in how they read [`Deferral::InPlace`] files.
fn build_engine(
    session: Arc<Session>,
    config: &EngineConfig,
    reading: Reading,
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
    // Files left to be read in place, each read once for all the clips that share it.
    let mut files: Vec<(Arc<DeferredAudio>, FileContent)> = Vec::new();
    let mut clips = Vec::with_capacity(session.clips.len());
    for (c, streamed) in session.clips.iter().zip(wiring.slots.drain(..)) {
        let content = match &c.content {
            _ if let Some(s) = streamed => SlotContent::Streamed(s),
            _ if let Some(d) = &c.deferred => {
                let file = match files.iter().find(|(f, _)| Arc::ptr_eq(f, d)) {
                    Some((_, file)) => file.clone(),
                    None => {
                        let file = read_in_place(d, config.sample_rate, reading)?;
                        files.push((d.clone(), file.clone()));
                        file
                    }
                };
                match file {
                    FileContent::Decoded(a) => SlotContent::Audio(a),
                    FileContent::Mapped(m) => SlotContent::Mapped(m),
                }
            }
            ClipContent::Audio(a) if a.sample_rate == config.sample_rate => SlotContent::Audio(a.clone()),
            ClipContent::Audio(a) => SlotContent::Audio(Arc::new(resample(a, config.sample_rate))),
            ClipContent::Midi(m) => SlotContent::Midi(m.clone()),
        };
        clips.push(ClipSlot { content, looping: c.looping, length: c.length, start_offset: c.start_offset });
    }
    drop(files);
    let mix: Vec<MixSettings> = session.tracks.iter().map(MixSettings::of_track).collect();
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
    let pulse = Pulse::new(PulseCore::new(session), cmd_tx, rep_rx, None);
    let reader = reader(wiring.feeds, wiring.sources)?;
    Ok((pulse, signal, reader))
}

/// A file the loader left to be read in place, as the engine reads it.
#[derive(Clone)]
enum FileContent {
    /// Decoded (and resampled) into memory.
    Decoded(Arc<AudioData>),
    /// Mapped, for Signal to read in place.
    Mapped(MappedAudio),
}

/// Reads a file the loader left to be read in place ([`Deferral::InPlace`]): mapped, when the
/// engine reads in place and the file is at its rate; otherwise decoded and resampled to
/// `sample_rate` (the same samples, bit for bit, as the whole-file load's). A file that went away
/// or changed since the session was loaded is an error naming the session line.
fn read_in_place(d: &DeferredAudio, sample_rate: u32, reading: Reading) -> Result<FileContent, EngineError> {
    if reading == Reading::InPlace
        && d.header.sample_rate == sample_rate
        && let Some(wav) = MappedWav::open(&d.path)
        && wav.header() == d.header
        && let Ok(frames) = usize::try_from(d.header.frames)
    {
        let start = wav.start();
        if let Some(audio) = MappedAudio::new(wav.into_bytes(), start, frames, d.header.channels.into()) {
            return Ok(FileContent::Mapped(audio));
        }
    }
    // Otherwise decode; a file that cannot be read (any more) is reported in the decoder's words.
    let audio = decode_resident(d, sample_rate).map_err(|e| EngineError::Config(e.to_string()))?;
    Ok(FileContent::Decoded(Arc::new(audio)))
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
        // Files left to be read in place are the build's to read (`read_in_place`); files only
        // probed under a memory budget must have gone through `stream::prepare`, or the clip would
        // play silence.
        if c.deferred.as_ref().is_some_and(|d| d.deferral == Deferral::Budget) {
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
    use crate::model::{Clip, ClipId, Track, WavHeader};
    use crate::time::{Beats, Bpm};

    /// A session of two clips sharing `path`, a file the loader left undecoded for `deferral`.
    fn deferred_set(path: &std::path::Path, header: WavHeader, deferral: Deferral) -> Session {
        let mut s = Session::new("deferred", Bpm(120.0));
        let t = s.add_track(Track::new("t", TrackKind::Audio));
        let file =
            Arc::new(DeferredAudio { path: path.into(), header, origin: "set.toml:9:8: clip 'a'".into(), deferral });
        let empty = Arc::new(AudioData { sample_rate: header.sample_rate, left: Vec::new(), right: Vec::new() });
        for id in ["a", "b"] {
            let mut c = Clip::new(id, t, ClipContent::Audio(empty.clone()), Beats(2.0));
            c.deferred = Some(file.clone());
            s.add_clip(c);
        }
        s
    }

    #[test]
    fn files_left_to_be_read_in_place_are_mapped_offline_decoded_live_and_shared() {
        let dir = std::env::temp_dir().join(format!("loophole-build-in-place-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("float.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..48_000 * 2 {
            w.write_sample((i as f32 * 0.01).sin() * 0.5).unwrap();
        }
        w.finalize().unwrap();
        let header = MappedWav::probe(&path).unwrap();
        let session = Arc::new(deferred_set(&path, header, Deferral::InPlace));
        let config = |sample_rate| EngineConfig { sample_rate, ..EngineConfig::default() };
        fn slots(s: &Signal) -> (&SlotContent, &SlotContent) {
            (&s.slot(ClipId(0)).content, &s.slot(ClipId(1)).content)
        }

        // Offline at the file's rate: one mapping for both clips.
        let (_, offline, _) = build_with_reader(session.clone(), &config(48_000)).unwrap();
        let (SlotContent::Mapped(a), SlotContent::Mapped(b)) = slots(&offline) else { panic!("not mapped") };
        assert!(a.shares_bytes_with(b));
        // Live, or at another rate: decoded (and resampled) once for both clips.
        let decoded = crate::media::wav::read_wav_file(&path).unwrap();
        for (live, rate) in [(true, 48_000), (false, 44_100), (true, 44_100)] {
            let signal = if live {
                build(session.clone(), &config(rate)).unwrap().1
            } else {
                build_with_reader(session.clone(), &config(rate)).unwrap().1
            };
            let (SlotContent::Audio(a), SlotContent::Audio(b)) = slots(&signal) else { panic!("not decoded") };
            assert!(Arc::ptr_eq(a, b));
            assert_eq!(**a, if rate == 48_000 { decoded.clone() } else { resample(&decoded, rate) });
        }

        // Probed under a memory budget and not prepared: refused, not played as silence.
        let budget = Arc::new(deferred_set(&path, header, Deferral::Budget));
        let Err(EngineError::Config(why)) = build_with_reader(budget, &config(48_000)) else { panic!("built") };
        assert!(why.contains("clip 'a'") && why.contains("not decoded yet"), "{why}");

        // A file that went away since the session was loaded: an error naming the session line.
        std::fs::remove_file(&path).unwrap();
        for live in [true, false] {
            let e = if live {
                build(session.clone(), &config(48_000)).map(|_| ())
            } else {
                build_with_reader(session.clone(), &config(48_000)).map(|_| ())
            };
            let Err(EngineError::Config(why)) = e else { panic!("built without its file") };
            assert!(why.starts_with("set.toml:9:8: clip 'a'"), "{why}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

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
