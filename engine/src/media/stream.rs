//! Disk streaming of long audio clips under a memory budget.
//!
//! [`prepare`] decides, once the engine's sample rate is known, which audio clips stay resident
//! (decoded in memory) and which stream: distinct audio files are made resident smallest first
//! until [`StreamSettings::memory_budget_mb`] is used; every other file is converted once to the
//! engine's rate (resampled exactly as a resident clip is) into a raw cache file in the temp
//! directory, a chunk at a time, and its clips keep only a *head* in memory: the first
//! [`StreamSettings::head_seconds`] from the clip's start offset. A session loaded under a budget
//! has its audio files only probed ([`crate::model::Clip::deferred`]); `prepare` decodes them, so
//! the peak memory of loading stays near the budget too.
//!
//! While the engine runs, a non-realtime reader ([`StreamReader`], on its own thread live, called
//! synchronously between blocks offline) fills per-voice *lanes*: lock-free FIFOs of chunks read
//! from the cache file, starting where Signal asked. Signal asks through two atomics per lane (a
//! generation tag and a frame position) whenever a voice starts, wraps its loop or jumps; it plays
//! the head from memory while the lane fills behind it, and for a start that is not in the head
//! (legato launches, late starts, start offsets moved by a tempo change) it pre-warms a spare lane
//! as soon as the trigger reaches its pending list, ahead of its beat. Signal never waits: frames
//! that neither the head nor the lane holds are played as silence and counted as underruns
//! ([`crate::signal::Signal::stream_underruns`]).
//!
//! Pulse refuses, ahead, a pressed launch of a streamed clip that would start outside its head
//! with less than [`StreamSettings::lead_ms`] to its beat, and any launch of a clip whose file the
//! reader could not read ([`crate::pulse::PulseEvent::Refused`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::resample::{Converter, ResampleFailed, Sink};
use super::wav::{WavFrames, advise_huge_pages, open_deferred};
use crate::model::audio::MIN_HEAD_SECONDS;
use crate::model::{AudioData, ClipContent, DeferredAudio, Session, StreamSource, StreamedClip};

/// Why [`prepare`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The cache file could not be written (disk full, no temp directory).
    #[error("cannot write the stream cache file {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The settings are out of range.
    #[error("{0}")]
    Settings(String),
    /// An audio file the loader only probed ([`crate::model::Clip::deferred`]) could not be
    /// decoded: it went away or changed since the session was loaded.
    #[error("{origin}: {problem}")]
    Audio {
        /// Where the session names the file: `session.toml:12:8: clip 'x': audio file 'x.wav'`.
        origin: String,
        /// What is wrong, in words for the user.
        problem: String,
    },
    /// The resampler failed.
    #[error(transparent)]
    Resample(#[from] ResampleFailed),
}

/// A clip that streams, as [`prepare`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedNote {
    /// Clip ids (session file spelling) sharing the file.
    pub clips: Vec<String>,
    /// Decoded size at the engine's rate, MiB.
    pub mb: f64,
}

/// Frames decoded and converted per step while a file is converted; with the resampler's own
/// buffers and the cache file's write buffer, converting a file needs about 2 MiB whatever its
/// length.
const CONVERT_CHUNK: usize = 1 << 16;

/// One distinct audio file of the session (clips may share one).
struct FileUse {
    /// The clips' content: the decoded audio, or (deferred) no frames at the file's rate.
    data: Arc<AudioData>,
    /// The file, when the loader only probed it.
    deferred: Option<Arc<DeferredAudio>>,
    /// Its size decoded at the engine's rate.
    bytes: u64,
    /// The clips using it.
    clips: Vec<usize>,
}

/// Applies the session's memory budget for an engine at `sample_rate`: returns the session with
/// every streamed clip's content cut to its head (and [`crate::model::Clip::stream`] set), and
/// what streams. Without a budget, or when everything fits, the session is returned unchanged,
/// except that files the loader only probed ([`crate::model::Clip::deferred`]) are decoded: after
/// `prepare` no clip is deferred (files left to be read in place,
/// [`crate::model::Deferral::InPlace`], are decoded too, as a live engine build would).
///
/// Which files stay resident is decided from their sizes alone (a probed file's header), before
/// anything is decoded. A probed file that stays resident is decoded and resampled to
/// `sample_rate` a chunk at a time into its final buffer; every streamed file (probed or decoded)
/// is decoded, resampled and written to its cache file a chunk at a time, keeping only its clips'
/// heads. So the peak memory of loading a session under a budget and preparing it is about the
/// budget, plus the heads, plus a working set of about 2 MiB, whatever the files' lengths. The
/// samples are the same, bit for bit, as those of the whole-file path
/// ([`super::resample::resample`] through the same [`Converter`]).
///
/// Thread: control. Slow (decodes, resamples and writes the cache files); not realtime-safe.
pub fn prepare(session: &Session, sample_rate: u32) -> Result<(Session, Vec<StreamedNote>), StreamError> {
    let settings = session.streaming;
    let mut out = session.clone();
    let deferred = session.clips.iter().any(|c| c.deferred.is_some());
    if settings.memory_budget_mb.is_none() && !deferred {
        return Ok((out, Vec::new()));
    }
    if let Some(mb) = settings.memory_budget_mb {
        if !(mb.is_finite() && mb >= 0.0) {
            return Err(StreamError::Settings(format!("memory budget {mb} MiB (give 0 or more)")));
        }
        if !(settings.head_seconds.is_finite() && settings.head_seconds >= MIN_HEAD_SECONDS) {
            return Err(StreamError::Settings(format!(
                "stream head {} s (give at least {MIN_HEAD_SECONDS} s)",
                settings.head_seconds
            )));
        }
    }
    if sample_rate == 0 {
        return Err(StreamError::Settings("sample rate 0 Hz".into()));
    }
    // Distinct audio data (clips may share a file), with its size at the engine's rate.
    let mut files: Vec<FileUse> = Vec::new();
    for (i, c) in session.clips.iter().enumerate() {
        let ClipContent::Audio(a) = &c.content else { continue };
        if c.stream.is_some() {
            continue;
        }
        match files.iter_mut().find(|f| Arc::ptr_eq(a, &f.data)) {
            Some(f) => f.clips.push(i),
            None => {
                let (frames, rate) = match &c.deferred {
                    Some(d) => (d.header.frames, d.header.sample_rate),
                    None => (a.frames() as u64, a.sample_rate),
                };
                let from = rate.max(1) as u128;
                let frames = (frames as u128 * sample_rate as u128 + from / 2) / from;
                files.push(FileUse {
                    data: a.clone(),
                    deferred: c.deferred.clone(),
                    bytes: frames as u64 * 8,
                    clips: vec![i],
                });
            }
        }
    }
    // Smallest first (ties: first clip), so as many clips as possible stay resident.
    files.sort_by_key(|f| (f.bytes, f.clips[0]));
    let budget = settings.memory_budget_mb.map_or(u64::MAX, |mb| (mb * 1024.0 * 1024.0) as u64);
    let mut used = 0u64;
    let mut notes = Vec::new();
    for f in files {
        if used.saturating_add(f.bytes) <= budget {
            used += f.bytes;
            if let Some(d) = &f.deferred {
                let data = Arc::new(decode_resident(d, sample_rate)?);
                for &i in &f.clips {
                    out.clips[i].content = ClipContent::Audio(data.clone());
                    out.clips[i].deferred = None;
                }
            }
            continue;
        }
        let (mut input, converter) = FileInput::open(&f, sample_rate)?;
        let frames = converter.out_frames();
        // The heads: from each clip's start offset (at the session's tempo), head_seconds long.
        let spb = session.tempo.0 / 60.0 / sample_rate as f64;
        let len = (settings.head_seconds * sample_rate as f64).ceil() as u64;
        let heads: Vec<(u64, u64)> = f
            .clips
            .iter()
            .map(|&i| {
                let start = ((session.clips[i].start_offset.0 / spb).round().max(0.0) as u64).min(frames);
                (start, start.saturating_add(len).min(frames))
            })
            .collect();
        let name = &session.clips[f.clips[0]].id;
        let (source, heads) = convert_to_cache(&mut input, converter, sample_rate, &heads, name)?;
        let source = Arc::new(source);
        for (&i, (head, head_start)) in f.clips.iter().zip(heads) {
            let clip = &mut out.clips[i];
            clip.content = ClipContent::Audio(Arc::new(head));
            clip.stream = Some(Arc::new(StreamedClip { source: source.clone(), head_start }));
            clip.deferred = None;
        }
        notes.push(StreamedNote {
            clips: f.clips.iter().map(|&i| session.clips[i].id.clone()).collect(),
            mb: f.bytes as f64 / (1024.0 * 1024.0),
        });
    }
    Ok((out, notes))
}

/// Where a file's frames come from while it is converted.
enum FileInput<'a> {
    /// Audio decoded in memory.
    Memory { data: &'a AudioData, pos: usize, frames: usize },
    /// The file, read a chunk at a time.
    File { wav: Box<WavFrames<std::io::BufReader<File>>>, origin: &'a str, left: Vec<f32>, right: Vec<f32> },
}

impl<'a> FileInput<'a> {
    /// The file's frames and a converter from its rate to `sample_rate`.
    fn open(f: &'a FileUse, sample_rate: u32) -> Result<(FileInput<'a>, Converter), StreamError> {
        Ok(match &f.deferred {
            Some(d) => {
                let wav =
                    open_deferred(d).map_err(|problem| StreamError::Audio { origin: d.origin.clone(), problem })?;
                let converter = Converter::new(d.header.sample_rate, sample_rate, d.header.frames);
                let (left, right) = (Vec::with_capacity(CONVERT_CHUNK), Vec::with_capacity(CONVERT_CHUNK));
                (FileInput::File { wav: Box::new(wav), origin: &d.origin, left, right }, converter)
            }
            None => {
                let frames = f.data.frames().min(f.data.right.len());
                let converter = Converter::new(f.data.sample_rate, sample_rate, frames as u64);
                (FileInput::Memory { data: &f.data, pos: 0, frames }, converter)
            }
        })
    }

    /// Feeds every frame through `converter` to `sink`, a chunk at a time, and finishes it.
    fn convert(&mut self, mut converter: Converter, sink: &mut impl Sink<StreamError>) -> Result<(), StreamError> {
        match self {
            FileInput::Memory { data, pos, frames } => {
                while *pos < *frames {
                    let e = (*pos + CONVERT_CHUNK).min(*frames);
                    converter.push(&data.left[*pos..e], &data.right[*pos..e], sink)?;
                    *pos = e;
                }
            }
            FileInput::File { wav, origin, left, right } => loop {
                left.clear();
                right.clear();
                let n = wav
                    .read(CONVERT_CHUNK, left, right)
                    .map_err(|problem| StreamError::Audio { origin: origin.to_string(), problem })?;
                if n == 0 {
                    break;
                }
                converter.push(&left[..], &right[..], sink)?;
            },
        }
        converter.finish(sink)
    }
}

/// Decodes a probed file that stays resident, converted to `sample_rate` on the way (the same
/// samples as decoding it whole and resampling it with [`super::resample::resample`]). Also how a
/// live engine build decodes a file the loader left to be read in place
/// ([`crate::model::Deferral::InPlace`]).
pub(crate) fn decode_resident(d: &DeferredAudio, sample_rate: u32) -> Result<AudioData, StreamError> {
    let wav = open_deferred(d).map_err(|problem| StreamError::Audio { origin: d.origin.clone(), problem })?;
    let converter = Converter::new(d.header.sample_rate, sample_rate, d.header.frames);
    let n = converter.out_frames() as usize;
    let (mut left, mut right) = (Vec::with_capacity(n), Vec::with_capacity(n));
    advise_huge_pages(&mut left);
    advise_huge_pages(&mut right);
    let mut sink = |a: &[f32], b: &[f32]| -> Result<(), StreamError> {
        left.extend_from_slice(a);
        right.extend_from_slice(b);
        Ok(())
    };
    let (l, r) = (Vec::with_capacity(CONVERT_CHUNK), Vec::with_capacity(CONVERT_CHUNK));
    FileInput::File { wav: Box::new(wav), origin: &d.origin, left: l, right: r }.convert(converter, &mut sink)?;
    Ok(AudioData { sample_rate, left, right })
}

/// Converts a file into a fresh cache file a chunk at a time, keeping the frames
/// `[start, end)` of each of `heads`. Returns the source and each head with its start.
fn convert_to_cache(
    input: &mut FileInput<'_>,
    converter: Converter,
    sample_rate: u32,
    heads: &[(u64, u64)],
    name: &str,
) -> Result<(StreamSource, Vec<(AudioData, u64)>), StreamError> {
    let mut writer = CacheWriter::create()?;
    let mut kept: Vec<(AudioData, u64)> = heads
        .iter()
        .map(|&(s, e)| {
            let n = (e - s) as usize;
            (AudioData { sample_rate, left: Vec::with_capacity(n), right: Vec::with_capacity(n) }, s)
        })
        .collect();
    let mut at = 0u64;
    let mut sink = |l: &[f32], r: &[f32]| -> Result<(), StreamError> {
        for (&(s, e), (head, _)) in heads.iter().zip(kept.iter_mut()) {
            let (a, b) = (s.max(at), e.min(at + l.len() as u64));
            if a < b {
                let (a, b) = ((a - at) as usize, (b - at) as usize);
                head.left.extend_from_slice(&l[a..b]);
                head.right.extend_from_slice(&r[a..b]);
            }
        }
        writer.write(l, r)?;
        at += l.len() as u64;
        Ok(())
    };
    input.convert(converter, &mut sink)?;
    let source = writer.finish(sample_rate, name)?;
    Ok((source, kept))
}

/// The prefix of a process's cache directory in the temp directory (`loophole-stream-PID`).
const CACHE_DIR_PREFIX: &str = "loophole-stream-";

/// A cache file being written: raw 32-bit float little-endian, interleaved stereo. Removed if it
/// is dropped before [`CacheWriter::finish`].
struct CacheWriter {
    path: PathBuf,
    /// Taken by [`CacheWriter::finish`].
    out: Option<std::io::BufWriter<File>>,
    bytes: Vec<u8>,
    frames: u64,
    done: bool,
}

impl CacheWriter {
    /// Creates a fresh cache file in the temp directory (after sweeping what processes that are
    /// gone left there).
    fn create() -> Result<CacheWriter, StreamError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = std::env::temp_dir();
        sweep_stale(&tmp);
        let dir = tmp.join(format!("{CACHE_DIR_PREFIX}{}", std::process::id()));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{n}.f32"));
        // Another engine's last cache file may take the directory away between the two calls.
        let mut attempt = 0;
        let file = loop {
            let made = std::fs::create_dir_all(&dir).and_then(|()| File::create(&path));
            match made {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 3 => attempt += 1,
                other => break other.map_err(|source| StreamError::Cache { path: path.clone(), source })?,
            }
        };
        // Held (shared) until the source is dropped; a lock the file system does not support only
        // leaves the file to the process-id test of `sweep_stale`.
        let _ = file.lock_shared();
        let out = Some(std::io::BufWriter::with_capacity(1 << 20, file));
        Ok(CacheWriter { path, out, bytes: Vec::new(), frames: 0, done: false })
    }

    fn write(&mut self, left: &[f32], right: &[f32]) -> Result<(), StreamError> {
        self.bytes.clear();
        for (l, r) in left.iter().zip(right) {
            self.bytes.extend_from_slice(&l.to_le_bytes());
            self.bytes.extend_from_slice(&r.to_le_bytes());
        }
        let err = |source| StreamError::Cache { path: self.path.clone(), source };
        match self.out.as_mut() {
            Some(out) => out.write_all(&self.bytes).map_err(err)?,
            None => return Err(err(std::io::Error::other("the cache file was already finished"))),
        }
        self.frames += left.len().min(right.len()) as u64;
        Ok(())
    }

    fn finish(mut self, sample_rate: u32, name: &str) -> Result<StreamSource, StreamError> {
        let err = |source| StreamError::Cache { path: self.path.clone(), source };
        let lock = match self.out.take() {
            Some(out) => out.into_inner().map_err(|e| err(e.into_error()))?,
            None => return Err(err(std::io::Error::other("the cache file was already finished"))),
        };
        self.done = true;
        let guard = CacheGuard { lock: Some(lock), path: self.path.clone() };
        Ok(StreamSource::new(self.path.clone(), self.frames, sample_rate, format!("clip '{name}'"), Box::new(guard)))
    }
}

/// Keeps a finished cache file open with a shared lock for as long as its [`StreamSource`] lives
/// (the sign, to [`sweep_stale`] in other processes, that the file is in use), and removes the
/// file (and the process's cache directory with its last file) when it is dropped.
struct CacheGuard {
    lock: Option<File>,
    path: PathBuf,
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        drop(self.lock.take());
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes the cache files that processes which are gone left in the temp directory `tmp` (a
/// render stopped with Ctrl-C, a killed or crashed node never drops its engines, and its cache
/// holds the decoded audio of every streamed clip). A file goes only when the process named by
/// its directory no longer exists *and* no process holds its lock (a live process in another PID
/// namespace sharing the directory keeps its files); the emptied directory goes with it.
fn sweep_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) =
            name.to_str().and_then(|n| n.strip_prefix(CACHE_DIR_PREFIX)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else { continue };
        for f in files.flatten() {
            let unused = File::open(f.path()).is_ok_and(|file| file.try_lock().is_ok());
            if unused {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

/// Whether process `pid` exists (or may: anything but "no such process" counts as alive).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; the call only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether process `pid` exists: without a way to ask, every process may.
#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

// --- Signal side (audio thread: no allocation, locks or I/O below). ---

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::wire;
    use crate::model::{Clip, Track, TrackKind};
    use crate::pulse::state::StreamGate;
    use crate::queue::TriggerId;
    use crate::signal::streamed::{fetch, take_lane};
    use crate::signal::voice::NO_LANE;
    use crate::time::{Beats, Bpm};

    fn ramp_session(frames: usize, rate: u32) -> Session {
        let mut s = Session::new("t", Bpm(120.0));
        let t = s.add_track(Track::new("a", TrackKind::Audio));
        let left: Vec<f32> = (0..frames).map(|i| i as f32 / frames as f32).collect();
        let right: Vec<f32> = left.iter().map(|v| -v).collect();
        let data = Arc::new(AudioData { sample_rate: rate, left, right });
        s.add_clip(Clip::new("long", t, ClipContent::Audio(data), Beats(8.0)));
        s.streaming.memory_budget_mb = Some(0.0);
        s.streaming.head_seconds = 0.5;
        s
    }

    #[test]
    fn a_starved_lane_gives_silence_and_counts_underruns_never_garbage() {
        let rate: u32 = 8_000;
        let (s, notes) = prepare(&ramp_session(rate as usize * 4, rate), rate).unwrap();
        assert_eq!(notes.len(), 1, "the clip streams under a zero budget");
        let mut w = wire(&s, rate).unwrap();
        let slot = w.slots[0].take().unwrap();
        let mut lanes = std::mem::take(&mut w.lanes[0]);
        let mut reader = crate::media::reader::StreamReader::new(std::mem::take(&mut w.feeds), w.sources.clone());
        let underruns = AtomicU64::new(0);
        let lane = take_lane(&mut lanes, &slot, TriggerId(1), 0);
        assert_ne!(lane, NO_LANE);
        let (mut l, mut r) = (vec![7.0f32; 512], vec![7.0f32; 512]);
        // Past the head, the reader has not run: silence, every frame counted.
        let past = slot.head_end + 100;
        fetch(&slot, &mut lanes, lane, past, 512, &mut l, &mut r, &underruns);
        assert!(l.iter().chain(&r).all(|&v| v == 0.0), "silence, not stale or garbage samples");
        assert_eq!(underruns.load(Ordering::Relaxed), 512);
        // The head plays from memory without the reader.
        fetch(&slot, &mut lanes, lane, 0, 512, &mut l, &mut r, &underruns);
        assert_eq!(l[1], 1.0 / (rate * 4) as f32);
        assert_eq!(underruns.load(Ordering::Relaxed), 512);
        // Once the reader has filled the lane, the same frames are the file's.
        reader.service();
        fetch(&slot, &mut lanes, lane, past, 512, &mut l, &mut r, &underruns);
        assert_eq!(underruns.load(Ordering::Relaxed), 512);
        for (k, (&a, &b)) in l.iter().zip(&r).enumerate() {
            let want = (past + k as i64) as f32 / (rate * 4) as f32;
            assert_eq!((a, b), (want, -want), "frame {k}");
        }
        // The voice runs past everything the lane holds (the reader fell behind): silence and a
        // new request from there; once the reader has run, the right frames again.
        let far = past + (3.2 * rate as f64) as i64;
        fetch(&slot, &mut lanes, lane, far, 512, &mut l, &mut r, &underruns);
        assert!(l.iter().all(|&v| v == 0.0));
        assert_eq!(underruns.load(Ordering::Relaxed), 1024);
        reader.service();
        fetch(&slot, &mut lanes, lane, far, 512, &mut l, &mut r, &underruns);
        assert_eq!(underruns.load(Ordering::Relaxed), 1024);
        assert_eq!(l[7], (far + 7) as f32 / (rate * 4) as f32);
    }

    #[test]
    fn a_missing_cache_file_marks_the_source_failed_with_a_message() {
        let rate: u32 = 8_000;
        let (s, _) = prepare(&ramp_session(rate as usize * 4, rate), rate).unwrap();
        let gate = StreamGate::of(&s)[0].clone().unwrap();
        std::fs::remove_file(gate.source.path()).unwrap();
        let mut w = wire(&s, rate).unwrap();
        let slot = w.slots[0].take().unwrap();
        let mut lanes = std::mem::take(&mut w.lanes[0]);
        let mut reader = crate::media::reader::StreamReader::new(std::mem::take(&mut w.feeds), w.sources.clone());
        let lane = take_lane(&mut lanes, &slot, TriggerId(1), 0);
        reader.service();
        let e = gate.source.error().expect("the reader reports the failure");
        assert!(e.contains("clip 'long'"), "{e}");
        let underruns = AtomicU64::new(0);
        let (mut l, mut r) = (vec![7.0f32; 64], vec![7.0f32; 64]);
        fetch(&slot, &mut lanes, lane, slot.head_end, 64, &mut l, &mut r, &underruns);
        assert!(l.iter().all(|&v| v == 0.0));
        assert_eq!(underruns.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn a_head_longer_than_the_clip_is_the_rest_of_the_clip() {
        let rate: u32 = 8_000;
        let mut s = ramp_session(rate as usize * 4, rate);
        // One beat in (0.5 s at 120 BPM), with a head no clip is that long.
        s.clips[0].start_offset = Beats(1.0);
        s.streaming.head_seconds = 1e30;
        let (p, _) = prepare(&s, rate).unwrap();
        let ClipContent::Audio(head) = &p.clips[0].content else { panic!() };
        assert_eq!(head.frames(), rate as usize * 4 - rate as usize / 2);
        assert_eq!(head.left[0], (rate / 2) as f32 / (rate * 4) as f32);
    }

    #[cfg(unix)]
    #[test]
    fn cache_files_left_by_processes_that_are_gone_are_swept_unless_locked() {
        // Two processes that have ended (their ids name no process now).
        let ended = || {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            child.wait().unwrap();
            child.id()
        };
        let (gone, held) = (ended(), ended());
        assert_ne!(gone, held);
        let tmp = std::env::temp_dir();
        let dir_of = |pid: u32| tmp.join(format!("{CACHE_DIR_PREFIX}{pid}"));
        std::fs::create_dir_all(dir_of(gone)).unwrap();
        std::fs::write(dir_of(gone).join("0.f32"), [0u8; 64]).unwrap();
        // `held`'s file is locked, as a live process in another PID namespace holds its files:
        // locked before it is moved in (other tests' sweeps run in parallel).
        let outside = tmp.join(format!("loophole-sweep-test-{}.f32", std::process::id()));
        let lock = File::create(&outside).unwrap();
        lock.lock_shared().unwrap();
        let mut tries = 0;
        while let Err(e) =
            std::fs::create_dir_all(dir_of(held)).and_then(|()| std::fs::rename(&outside, dir_of(held).join("0.f32")))
        {
            // A parallel sweep may take the empty directory away between the two calls.
            tries += 1;
            assert!(tries < 100, "{e}");
        }
        // The next cache file written sweeps the temp directory.
        let rate: u32 = 8_000;
        let (p, notes) = prepare(&ramp_session(rate as usize * 4, rate), rate).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(!dir_of(gone).exists(), "the cache of a process that is gone was left behind");
        assert!(dir_of(held).join("0.f32").exists(), "a locked cache file was removed");
        // This process's own cache file is locked while in use, and kept.
        let own = p.clips[0].stream.as_ref().unwrap().source.path().to_path_buf();
        assert!(File::open(&own).unwrap().try_lock().is_err(), "the cache file in use is not locked");
        drop(lock);
        std::fs::remove_dir_all(dir_of(held)).unwrap();
        drop(p);
        assert!(!own.exists());
    }

    #[test]
    fn the_budget_keeps_the_smallest_files_resident() {
        let rate: u32 = 8_000;
        let mut s = ramp_session(rate as usize * 4, rate);
        let t = crate::model::TrackId(0);
        let small =
            Arc::new(AudioData { sample_rate: rate, left: vec![0.5; rate as usize], right: vec![0.5; rate as usize] });
        s.add_clip(Clip::new("small", t, ClipContent::Audio(small), Beats(2.0)));
        // Room for the small file (64 000 bytes) but not the long one (256 000 bytes).
        s.streaming.memory_budget_mb = Some(0.1);
        let (p, notes) = prepare(&s, rate).unwrap();
        assert_eq!(notes, vec![StreamedNote { clips: vec!["long".into()], mb: 256_000.0 / 1048576.0 }]);
        assert!(p.clips[0].stream.is_some() && p.clips[1].stream.is_none());
        let ClipContent::Audio(head) = &p.clips[0].content else { panic!() };
        assert_eq!(head.frames(), rate as usize / 2, "only the head stays in memory");
        // The cache file holds the whole clip, and goes with the last clip using it.
        let path = p.clips[0].stream.as_ref().unwrap().source.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), rate as u64 * 4 * 8);
        drop(p);
        assert!(!path.exists());
    }
}
