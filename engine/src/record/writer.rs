//! The disk thread of recording: it drains Signal's take ring ([`TakeMsg`]), writes one 32-bit
//! float WAV file per take ([`TakeWav`]) in the takes folder, syncs every open take at least
//! every `sync_every` (header rewritten, `fdatasync`), rolls a take over to a new file before a
//! file would pass `max_file_bytes` (4 GiB, the most a RIFF header can describe), turns gaps
//! (frames Signal lost because the ring was full) into silence plus a [`TakeEvent::Underrun`],
//! and reports every finished take ([`TakeEvent::Finished`]). A file it cannot write is kept
//! with what reached the disk ([`TakeWav::keep_what_is_there`]) and reported; the ring is
//! drained on regardless, so the audio thread never notices. Disk thread ([`TakeWriter::spawn`]),
//! or called in turn by a test.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::repair::{Marker, marker_of};
use super::wav::{HEADER_BYTES, MAX_DATA_BYTES, TakeWav};
use crate::model::{SceneId, TrackId};
use crate::queue::TakeId;
use crate::queue::takes::TakeMsg;
use crate::time::{Beats, SampleTime};

/// How a [`TakeWriter`] writes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The takes folder (created if missing).
    pub dir: PathBuf,
    /// The engine's sample rate.
    pub sample_rate: u32,
    /// Every open take is synced at least this often.
    pub sync_every: Duration,
    /// A file is rolled over before its data would pass this many bytes.
    pub max_file_bytes: u64,
    /// Track ids by index (file names start with them).
    pub tracks: Vec<String>,
    /// Names a new take must not take (the session's clip ids).
    pub taken: HashSet<String>,
}

impl WriterConfig {
    /// Defaults: synced every second, files up to 4 GiB.
    pub fn new(dir: PathBuf, sample_rate: u32, tracks: Vec<String>) -> WriterConfig {
        WriterConfig {
            dir,
            sample_rate,
            sync_every: Duration::from_secs(1),
            max_file_bytes: MAX_DATA_BYTES,
            tracks,
            taken: HashSet::new(),
        }
    }
}

/// A take the writer finished.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeInfo {
    /// The take.
    pub take: TakeId,
    /// Its name (the first file's stem; the clip id it gets in the session).
    pub name: String,
    /// The track that recorded it.
    pub track: TrackId,
    /// The launcher slot it was recorded into, if any.
    pub slot: Option<SceneId>,
    /// Absolute sample and beat of its first frame.
    pub start: (SampleTime, Beats),
    /// Absolute sample and beat after its last frame (`None`: the render ended first).
    pub stop: Option<(SampleTime, Beats)>,
    /// The beat its length was fixed to end at, if it was.
    pub until: Option<Beats>,
    /// Frames recorded (over all its files).
    pub frames: u64,
    /// 1 or 2.
    pub channels: u16,
    /// Its files, in order (more than one past `max_file_bytes`).
    pub files: Vec<PathBuf>,
    /// Frames lost because the disk fell behind (silence in the file).
    pub lost_frames: u64,
    /// Why writing failed, if it did (the files keep what reached the disk).
    pub error: Option<String>,
}

/// What the writer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TakeEvent {
    /// A take is complete on disk (`record.takeCreated`).
    Finished(TakeInfo),
    /// Frames of a take were lost because the disk fell behind (`record.underrun`).
    Underrun {
        /// The take.
        take: TakeId,
        /// Its track.
        track: TrackId,
        /// Frames lost (silence in the file).
        frames: u64,
    },
    /// A take's file could not be written (`record.error`): it keeps what reached the disk.
    Error {
        /// The take.
        take: TakeId,
        /// Its track.
        track: TrackId,
        /// Why.
        message: String,
    },
}

struct Open {
    info: TakeInfo,
    wav: Option<TakeWav>,
    written: u64,
}

/// The disk side of recording. See the module docs.
pub struct TakeWriter {
    ring: rtrb::Consumer<TakeMsg>,
    config: WriterConfig,
    open: HashMap<TakeId, Open>,
    events: Vec<TakeEvent>,
    last_sync: Instant,
    names: HashSet<String>,
}

impl TakeWriter {
    /// A writer draining `ring` into `config.dir`. Control thread.
    pub fn new(ring: rtrb::Consumer<TakeMsg>, config: WriterConfig) -> TakeWriter {
        let names = config.taken.clone();
        TakeWriter { ring, config, open: HashMap::new(), events: Vec::new(), last_sync: Instant::now(), names }
    }

    /// Drains the ring, writing what it holds, and syncs the open takes when a sync is due.
    /// Returns the messages handled.
    pub fn service(&mut self) -> usize {
        let mut n = 0;
        while let Ok(msg) = self.ring.pop() {
            self.handle(msg);
            n += 1;
        }
        if self.last_sync.elapsed() >= self.config.sync_every {
            self.sync_all();
        }
        n
    }

    /// Syncs every open take now.
    pub fn sync_all(&mut self) {
        self.last_sync = Instant::now();
        let ids: Vec<TakeId> = self.open.keys().copied().collect();
        for id in ids {
            let Some(o) = self.open.get_mut(&id) else { continue };
            if let Some(w) = o.wav.as_mut()
                && let Err(e) = w.sync()
            {
                self.fail(id, e.to_string());
            }
        }
    }

    /// Takes the events so far.
    pub fn take_events(&mut self) -> Vec<TakeEvent> {
        std::mem::take(&mut self.events)
    }

    /// Finishes every take still open (the render or the performance ended while it recorded)
    /// and returns the remaining events.
    pub fn close(mut self) -> Vec<TakeEvent> {
        self.service();
        let mut ids: Vec<TakeId> = self.open.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.finish(id, None);
        }
        self.events
    }

    /// Runs the writer on its own thread (`loophole-takes`): it services the ring every 2 ms
    /// and sends its events as they happen. Control thread; spawns.
    pub fn spawn(mut self) -> std::io::Result<WriterThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::Builder::new().name("loophole-takes".into()).spawn(move || {
            loop {
                let stopping = flag.load(Ordering::Acquire);
                let n = self.service();
                for e in self.take_events() {
                    let _ = tx.send(e);
                }
                if stopping {
                    break;
                }
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            for e in self.close() {
                let _ = tx.send(e);
            }
        })?;
        Ok(WriterThread { handle, stop, events: rx })
    }

    fn handle(&mut self, msg: TakeMsg) {
        match msg {
            TakeMsg::Start { take, track, slot, sample, beat, channels, until } => {
                let name = self.name_for(track);
                let info = TakeInfo {
                    take,
                    name,
                    track,
                    slot,
                    start: (sample, beat),
                    stop: None,
                    until,
                    frames: 0,
                    channels: u16::from(channels.clamp(1, 2)),
                    files: Vec::new(),
                    lost_frames: 0,
                    error: None,
                };
                self.open.insert(take, Open { info, wav: None, written: 0 });
                if let Err(e) = self.next_file(take) {
                    self.fail(take, e);
                }
            }
            TakeMsg::Frames { take, frames, data } => {
                let Some(o) = self.open.get(&take) else { return };
                let n = usize::from(frames) * usize::from(o.info.channels);
                self.write(take, &data[..n.min(data.len())]);
            }
            TakeMsg::Gap { take, frames } => {
                let Some(o) = self.open.get_mut(&take) else { return };
                o.info.lost_frames += frames;
                let track = o.info.track;
                self.events.push(TakeEvent::Underrun { take, track, frames });
                let mut left = frames;
                let silence = [0f32; 2048];
                let ch = u64::from(o.info.channels);
                while left > 0 {
                    let n = left.min(silence.len() as u64 / ch);
                    self.write(take, &silence[..(n * ch) as usize]);
                    left -= n;
                }
            }
            TakeMsg::Stop { take, sample, beat } => self.finish(take, Some((sample, beat))),
        }
    }

    /// The first free name `TRACK-take-N` (not a file in the folder, not a clip of the session).
    fn name_for(&mut self, track: TrackId) -> String {
        let track = self.config.tracks.get(track.index()).cloned().unwrap_or_else(|| format!("track{}", track.0));
        let mut n = 1;
        loop {
            let name = format!("{track}-take-{n}");
            let file = self.config.dir.join(format!("{name}.wav"));
            if !self.names.contains(&name) && !file.exists() && !marker_of(&file).exists() {
                self.names.insert(name.clone());
                return name;
            }
            n += 1;
        }
    }

    /// Closes the take's current file (if any) and opens the next one.
    fn next_file(&mut self, take: TakeId) -> Result<(), String> {
        let rate = self.config.sample_rate;
        let dir = self.config.dir.clone();
        let Some(o) = self.open.get_mut(&take) else { return Ok(()) };
        if let Some(w) = o.wav.take() {
            let path = w.path().to_path_buf();
            w.finish().map_err(|e| format!("{}: {e}", path.display()))?;
            let _ = std::fs::remove_file(marker_of(&path));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let part = o.info.files.len() + 1;
        let file = if part == 1 {
            dir.join(format!("{}.wav", o.info.name))
        } else {
            dir.join(format!("{}-part{part}.wav", o.info.name))
        };
        let track = self.config.tracks.get(o.info.track.index()).cloned().unwrap_or_default();
        let marker = Marker { channels: o.info.channels, sample_rate: rate, track, beat: o.info.start.1.0 };
        std::fs::write(marker_of(&file), marker.to_text()).map_err(|e| format!("{}: {e}", file.display()))?;
        let wav = TakeWav::create(&file, o.info.channels, rate).map_err(|e| format!("{}: {e}", file.display()))?;
        o.info.files.push(file);
        o.wav = Some(wav);
        Ok(())
    }

    fn write(&mut self, take: TakeId, mut samples: &[f32]) {
        let max = self.config.max_file_bytes.clamp(HEADER_BYTES, MAX_DATA_BYTES);
        while !samples.is_empty() {
            let Some(o) = self.open.get_mut(&take) else { return };
            let ch = usize::from(o.info.channels);
            o.info.frames += (samples.len() / ch) as u64;
            let Some(w) = o.wav.as_mut() else { return }; // failed: the frames are counted, not kept
            let room = (max.saturating_sub(w.data_bytes()) / (4 * ch as u64)) as usize * ch;
            let (now, later) = samples.split_at(samples.len().min(room));
            o.info.frames -= (later.len() / ch) as u64;
            if let Err(e) = w.write(now) {
                let path = w.path().display().to_string();
                self.fail(take, format!("{path}: {e}"));
                return;
            }
            o.written += (now.len() / ch) as u64;
            samples = later;
            if !samples.is_empty()
                && let Err(e) = self.next_file(take)
            {
                self.fail(take, e);
                return;
            }
        }
    }

    /// Writing the take failed: keep what reached its file, report, and write no more of it.
    fn fail(&mut self, take: TakeId, message: String) {
        let Some(o) = self.open.get_mut(&take) else { return };
        if let Some(w) = o.wav.take() {
            let path = w.path().to_path_buf();
            w.keep_what_is_there();
            let _ = std::fs::remove_file(marker_of(&path));
        }
        if o.info.error.is_none() {
            o.info.error = Some(message.clone());
            self.events.push(TakeEvent::Error { take, track: o.info.track, message });
        }
    }

    fn finish(&mut self, take: TakeId, stop: Option<(SampleTime, Beats)>) {
        let Some(mut o) = self.open.remove(&take) else { return };
        o.info.stop = stop;
        if let Some(w) = o.wav.take() {
            let path = w.path().to_path_buf();
            match w.finish() {
                Ok(_) => {
                    let _ = std::fs::remove_file(marker_of(&path));
                }
                Err(e) => {
                    o.info.error.get_or_insert_with(|| format!("{}: {e}", path.display()));
                }
            }
        }
        o.info.frames = o.written;
        self.events.push(TakeEvent::Finished(o.info));
    }
}

/// A [`TakeWriter`] running on its thread.
pub struct WriterThread {
    handle: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    events: mpsc::Receiver<TakeEvent>,
}

impl WriterThread {
    /// The events sent so far.
    pub fn poll(&self) -> Vec<TakeEvent> {
        self.events.try_iter().collect()
    }

    /// Stops the thread once the ring is drained, finishes the open takes and returns the
    /// events not polled yet.
    pub fn finish(self) -> Vec<TakeEvent> {
        self.stop.store(true, Ordering::Release);
        let _ = self.handle.join();
        self.events.try_iter().collect()
    }
}

/// The folder takes go to by default: `takes/` beside the session file.
pub fn default_dir(session_file: &Path) -> PathBuf {
    session_file.parent().unwrap_or(Path::new(".")).join("takes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::takes::TAKE_CHUNK;

    fn frames_msg(take: TakeId, from: usize) -> TakeMsg {
        let mut data = [0f32; TAKE_CHUNK * 2];
        for (i, x) in data.iter_mut().take(TAKE_CHUNK).enumerate() {
            *x = (from + i) as f32;
        }
        TakeMsg::Frames { take, frames: TAKE_CHUNK as u16, data }
    }

    #[test]
    fn a_take_past_the_file_limit_rolls_over_losing_nothing_and_gaps_become_silence() {
        let dir = std::env::temp_dir().join(format!("loophole-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut tx, rx) = rtrb::RingBuffer::new(64);
        let mut config = WriterConfig::new(dir.clone(), 48_000, vec!["vox".into()]);
        config.max_file_bytes = 1000 * 4; // 1000 mono frames per file
        config.taken.insert("vox-take-1".into());
        let mut w = TakeWriter::new(rx, config);
        let take = TakeId(7);
        let start = TakeMsg::Start {
            take,
            track: TrackId(0),
            slot: None,
            sample: 0,
            beat: Beats(0.0),
            channels: 1,
            until: None,
        };
        tx.push(start).unwrap();
        for k in 0..10 {
            tx.push(frames_msg(take, k * TAKE_CHUNK)).unwrap();
        }
        tx.push(TakeMsg::Gap { take, frames: 100 }).unwrap();
        tx.push(TakeMsg::Stop { take, sample: 2660, beat: Beats(0.1) }).unwrap();
        w.service();
        let events = w.close();
        let TakeEvent::Underrun { frames: 100, .. } = events[0] else { panic!("{events:?}") };
        let TakeEvent::Finished(info) = &events[1] else { panic!("{events:?}") };
        assert_eq!(info.name, "vox-take-2", "a name the session has is skipped");
        assert_eq!((info.frames, info.lost_frames, info.files.len()), (2660, 100, 3));
        let mut all = Vec::new();
        for f in &info.files {
            assert!(!marker_of(f).exists());
            let a = crate::media::wav::decode_wav(&std::fs::read(f).unwrap()).unwrap();
            assert!(a.left.len() <= 1000);
            all.extend(a.left);
        }
        let mut want: Vec<f32> = (0..2560).map(|i| i as f32).collect();
        want.extend([0.0; 100]);
        assert!(all == want, "the parts join up to the take");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
