//! The capture writer: a thread that drains what the audio callback played (an `rtrb` ring of
//! interleaved stereo samples) into a 32-bit float WAV file.
//!
//! With Link, a **timing sidecar** is written next to it ([`timing_path`]: `OUT.timing.csv`), one
//! line per block: `frame,sample,host_us,beat,frames`, where `frame` is the WAV frame of the block's
//! first sample, `host_us` the host time (Link's clock, µs) at which that sample is heard and
//! `beat` its beat. Two captures made on one machine can so be compared in host time.
//!
//! The callback never waits for it: when the ring is full the callback drops the block and counts
//! it ([`super::core::Transport::dropped_capture`]). The ring holds [`RING_SECONDS`] of audio, so
//! that only a disk stalled that long loses anything.
//!
//! Nothing captured is lost to a failed write (a full disk): the writer stops writing, keeps what
//! reached the file readable ([`FloatWavWriter::salvage`]), writes `OUT.error.toml`
//! ([`error_path`]: the error and the counts), says so on stderr and drains the ring to the end
//! (the performance plays on); [`Capture::finish`] then returns the error, naming what was kept.
//! A failed timing sidecar stops the sidecar only; the WAV file is finished as usual.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use crate::clock::BlockTiming;
use crate::wav::FloatWavWriter;

/// Seconds of audio the capture ring holds.
pub const RING_SECONDS: usize = 4;

/// How often the writer wakes up to drain the ring.
const POLL: Duration = Duration::from_millis(5);

/// A running capture writer.
#[derive(Debug)]
pub struct Capture {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<u64>>>,
}

impl Capture {
    /// Creates the WAV file and starts the writer thread. Returns the ring's producer, to be
    /// given to the audio callback. At most `limit` frames are written (the rest is read and
    /// discarded), so a capture can be cut at exactly the requested length.
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start(path: &Path, sample_rate: u32, limit: Option<u64>) -> anyhow::Result<(Capture, rtrb::Producer<f32>)> {
        Capture::spawn(path, sample_rate, limit, None, |p: &Path| std::fs::File::create(p))
    }

    /// Like [`Capture::start`], writing to what `create` opens for `path` (tests inject an output
    /// that fails, as a full disk does).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start_with<W, F>(
        path: &Path,
        sample_rate: u32,
        limit: Option<u64>,
        create: F,
    ) -> anyhow::Result<(Capture, rtrb::Producer<f32>)>
    where
        W: Write + Seek + Send + 'static,
        F: FnOnce(&Path) -> std::io::Result<W>,
    {
        Capture::spawn(path, sample_rate, limit, None, create)
    }

    /// Like [`Capture::start`], and also writes the timing sidecar ([`timing_path`]) from the
    /// returned timing ring (give it to [`super::AudioCore::set_capture_timing`]).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start_timed(
        path: &Path,
        sample_rate: u32,
        limit: Option<u64>,
    ) -> anyhow::Result<(Capture, rtrb::Producer<f32>, rtrb::Producer<BlockTiming>)> {
        let sidecar = timing_path(path);
        let file = std::fs::File::create(&sidecar)
            .with_context(|| format!("cannot create the capture timing file {}", sidecar.display()))?;
        let (tx, rx) = rtrb::RingBuffer::<BlockTiming>::new(sample_rate as usize * RING_SECONDS / 16 + 64);
        let (capture, samples) = Capture::spawn(
            path,
            sample_rate,
            limit,
            Some((std::io::BufWriter::new(file), rx, sidecar)),
            |p: &Path| std::fs::File::create(p),
        )?;
        Ok((capture, samples, tx))
    }

    fn spawn<W, F>(
        path: &Path,
        sample_rate: u32,
        limit: Option<u64>,
        timing: Option<(std::io::BufWriter<std::fs::File>, rtrb::Consumer<BlockTiming>, PathBuf)>,
        create: F,
    ) -> anyhow::Result<(Capture, rtrb::Producer<f32>)>
    where
        W: Write + Seek + Send + 'static,
        F: FnOnce(&Path) -> std::io::Result<W>,
    {
        let mut timing = timing;
        let wav = create(path)
            .and_then(|out| FloatWavWriter::new(out, path, sample_rate, 2))
            .with_context(|| format!("cannot create the capture file {}", path.display()))?;
        let mut out = Output { wav: Some(wav), sample_rate, taken: 0, failure: None, path: None };
        let (tx, mut rx) = rtrb::RingBuffer::<f32>::new(sample_rate as usize * 2 * RING_SECONDS);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("loophole-capture".into())
                .spawn(move || -> anyhow::Result<u64> {
                    let mut room = limit.map_or(u64::MAX, |f| f.saturating_mul(2));
                    let mut first_sample: Option<i64> = None;
                    let mut timing_error: Option<anyhow::Error> = None;
                    if let Some((out, _, sidecar)) = timing.as_mut()
                        && let Err(e) = writeln!(out, "frame,sample,host_us,beat,frames")
                    {
                        timing_error = Some(
                            anyhow::Error::new(e)
                                .context(format!("cannot write the capture timing file {}", sidecar.display())),
                        );
                    }
                    // A failed timing file stops the timing file only.
                    let mut write_timing = |stopping: bool| {
                        if timing_error.is_some() {
                            return;
                        }
                        if let Err(e) = write_timing_lines(&mut timing, &mut first_sample, limit, stopping) {
                            crate::warn_line(format_args!("loophole: {e:#}; the capture file goes on without it"));
                            timing_error = Some(e);
                        }
                    };
                    loop {
                        // Read the stop flag before draining: everything pushed before it was set
                        // is in the ring now.
                        let stopping = stop.load(Ordering::Acquire) || rx.is_abandoned();
                        write_timing(false);
                        let n = rx.slots();
                        if n > 0 {
                            // `n` slots are there: this cannot fail, but the file is finished
                            // if it does.
                            let Ok(chunk) = rx.read_chunk(n) else { break };
                            let (a, b) = chunk.as_slices();
                            for part in [a, b] {
                                let keep = (part.len() as u64).min(room) as usize;
                                if keep > 0 {
                                    out.write(&part[..keep]);
                                    room -= keep as u64;
                                }
                            }
                            chunk.commit_all();
                        } else if stopping {
                            write_timing(true);
                            break;
                        } else {
                            std::thread::sleep(POLL);
                        }
                    }
                    let frames = out.finish()?;
                    match timing_error {
                        Some(e) => {
                            Err(e.context(format!("the capture file {} is complete ({frames} frames)", path.display())))
                        }
                        None => Ok(frames),
                    }
                })
                .context("cannot start the capture thread")?
        };
        Ok((Capture { path: path.to_path_buf(), stop, thread: Some(thread) }, tx))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what is left in the ring, finishes the file and returns the frames written. Call
    /// it after the audio callback has stopped.
    ///
    /// Thread: control. Blocks until the writer is done.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the capture writer thread panicked"),
            None => Ok(0),
        }
    }
}

/// Writes the timing lines waiting in the timing ring (flushing them when `stopping`).
#[allow(clippy::type_complexity)]
fn write_timing_lines(
    timing: &mut Option<(std::io::BufWriter<std::fs::File>, rtrb::Consumer<BlockTiming>, PathBuf)>,
    first_sample: &mut Option<i64>,
    limit: Option<u64>,
    stopping: bool,
) -> anyhow::Result<()> {
    let Some((out, rx, sidecar)) = timing.as_mut() else { return Ok(()) };
    let fail = |e: std::io::Error| {
        anyhow::Error::new(e).context(format!("cannot write the capture timing file {}", sidecar.display()))
    };
    while let Ok(t) = rx.pop() {
        let first = *first_sample.get_or_insert(t.sample);
        let frame = t.sample - first;
        if limit.is_some_and(|l| frame >= l as i64) {
            continue;
        }
        writeln!(out, "{},{},{:.3},{:.9},{}", frame, t.sample, t.host_us, t.beat, t.frames).map_err(fail)?;
    }
    if stopping {
        out.flush().map_err(fail)?;
    }
    Ok(())
}

/// The capture file, and what happened to it after a failed write.
struct Output<W: Write + Seek> {
    wav: Option<FloatWavWriter<W>>,
    sample_rate: u32,
    /// Samples taken from the ring to be written (written or not).
    taken: u64,
    /// The error, and the frames the file kept (`None`: its header could not be finished).
    failure: Option<(std::io::Error, Option<u64>)>,
    /// The file, once it failed.
    path: Option<PathBuf>,
}

impl<W: Write + Seek> Output<W> {
    fn write(&mut self, samples: &[f32]) {
        self.taken += samples.len() as u64;
        if let Some(wav) = &mut self.wav
            && let Err(e) = wav.write(samples)
        {
            self.failed(e);
        }
    }

    /// A write failed: stops writing, keeps what reached the file, writes the error file and
    /// says so.
    fn failed(&mut self, e: std::io::Error) {
        let Some(wav) = self.wav.take() else { return };
        let path = wav.path().to_path_buf();
        let kept = wav.salvage().ok();
        let what = match kept {
            Some(k) => format!(
                "its first {k} frames ({:.1} s) are kept and readable",
                k as f64 / self.sample_rate.max(1) as f64
            ),
            None => "its header could not be finished either: it may read as empty".into(),
        };
        let noted = match self.write_error_file(&path, &e, kept) {
            Ok(side) => format!("{} says so", side.display()),
            Err(s) => format!("{s:#}"),
        };
        crate::warn_line(format_args!(
            "loophole: cannot write the capture file {} ({e}): capture stopped; {what}; {noted}; playing on",
            path.display()
        ));
        self.path = Some(path);
        self.failure = Some((e, kept));
    }

    /// Writes [`error_path`] of `path`: the error and the counts so far.
    fn write_error_file(&self, path: &Path, e: &std::io::Error, kept: Option<u64>) -> anyhow::Result<PathBuf> {
        let side = error_path(path);
        let mut text =
            String::from("# Loophole capture: writing the file failed; it holds the first `frames` frames\n");
        text.push_str(&format!("write_error = {:?}\n", e.to_string()));
        text.push_str(&format!("sample_rate = {}\n", self.sample_rate));
        match kept {
            Some(k) => text.push_str(&format!("frames = {k}\n")),
            None => text.push_str("# the header could not be finished: the frames kept are unknown\n"),
        }
        text.push_str("# frames played that the file does not hold\n");
        text.push_str(&format!("unwritten_frames = {}\n", (self.taken / 2).saturating_sub(kept.unwrap_or(0))));
        std::fs::write(&side, text).with_context(|| format!("cannot write {} either", side.display()))?;
        Ok(side)
    }

    /// Finishes the file; after a failed write, says what was kept as the error.
    fn finish(mut self) -> anyhow::Result<u64> {
        if let Some(mut wav) = self.wav.take() {
            match wav.finish() {
                Ok(frames) => return Ok(frames),
                Err(e) => {
                    self.wav = Some(wav);
                    self.failed(e);
                }
            }
        }
        let Some((e, kept)) = self.failure.take() else { return Ok(0) };
        // The final counts (the ring was drained to the end).
        if let Some(path) = &self.path
            && let Err(s) = self.write_error_file(path, &e, kept)
        {
            crate::warn_line(format_args!("loophole: {s:#}"));
        }
        let unwritten = (self.taken / 2).saturating_sub(kept.unwrap_or(0));
        Err(anyhow::Error::new(e).context(match kept {
            Some(k) => format!(
                "the capture stopped at a write error: the file keeps its first {k} frames (readable); \
                 {unwritten} frames were not written"
            ),
            None => format!("the capture stopped at a write error and its header could not be finished; {unwritten} frames were not written"),
        }))
    }
}

/// Where a capture whose writes failed says so: `x.wav` -> `x.error.toml`.
pub fn error_path(capture: &Path) -> PathBuf {
    capture.with_extension("error.toml")
}

/// The timing sidecar of a capture file: `x.wav` -> `x.timing.csv`.
pub fn timing_path(capture: &Path) -> PathBuf {
    capture.with_extension("timing.csv")
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_everything_pushed_up_to_the_limit() {
        let path = std::env::temp_dir().join(format!("loophole-node-capture-{}.wav", std::process::id()));
        let (capture, mut tx) = Capture::start(&path, 8_000, Some(1_000)).unwrap();
        for i in 0..30 {
            let block: Vec<f32> = (0..128).map(|k| (i * 128 + k) as f32).collect();
            let chunk = tx.write_chunk_uninit(128).unwrap();
            chunk.fill_from_iter(block);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(capture.finish().unwrap(), 1_000);
        let mut r = hound::WavReader::open(&path).unwrap();
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
        assert_eq!(got.len(), 2_000);
        assert!(got.iter().enumerate().all(|(i, s)| *s == i as f32));
        std::fs::remove_file(&path).unwrap();
    }

    fn push_ramp(tx: &mut rtrb::Producer<f32>, blocks: usize) {
        for i in 0..blocks {
            // Wait for room: the writer drains 4 s of ring.
            while tx.slots() < 1024 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let chunk = tx.write_chunk_uninit(1024).unwrap();
            chunk.fill_from_iter((0..1024).map(|k| ((i * 1024 + k) % 1_000_003) as f32));
        }
    }

    #[test]
    fn a_full_disk_keeps_what_was_written_readable_and_says_so() {
        let path = std::env::temp_dir().join(format!("loophole-node-capture-full-{}.wav", std::process::id()));
        // Room for 150 000 frames and half of one: more than the writer's 1 MiB buffer, so a
        // write fails in the middle of the run, and later blocks are only drained.
        let cap = 58 + 8 * 150_000 + 4;
        let (capture, mut tx) =
            Capture::start_with(&path, 48_000, None, |p: &Path| crate::wav::testing::FullAfter::create(p, cap))
                .unwrap();
        push_ramp(&mut tx, 400); // 204 800 frames
        let err = format!("{:#}", capture.finish().unwrap_err());
        assert!(
            err.contains("keeps its first 150000 frames") && err.contains("54800 frames were not written"),
            "{err}"
        );
        assert!(err.contains("No space left on device"), "{err}");
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 150_000);
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
        assert!(got.iter().enumerate().all(|(i, s)| *s == (i % 1_000_003) as f32));
        let side = std::fs::read_to_string(error_path(&path)).unwrap();
        assert!(side.contains("frames = 150000\n") && side.contains("unwritten_frames = 54800\n"), "{side}");
        assert!(side.contains("write_error = \"No space left on device"), "{side}");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(error_path(&path)).unwrap();
    }

    #[test]
    fn a_failed_timing_file_leaves_the_capture_file_complete() {
        let path = std::env::temp_dir().join(format!("loophole-node-capture-timing-{}.wav", std::process::id()));
        // The timing file is on a full disk: /dev/full fails every write with ENOSPC.
        let _ = std::fs::remove_file(timing_path(&path));
        std::os::unix::fs::symlink("/dev/full", timing_path(&path)).unwrap();
        let (capture, mut tx, mut ttx) = Capture::start_timed(&path, 48_000, None).unwrap();
        for k in 0..2_000i64 {
            let t = BlockTiming { sample: k * 512, host_us: k as f64, beat: 0.0, frames: 512 };
            while ttx.push(t).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        push_ramp(&mut tx, 100);
        let err = format!("{:#}", capture.finish().unwrap_err());
        assert!(err.contains("is complete (51200 frames)") && err.contains("timing file"), "{err}");
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 51_200);
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(timing_path(&path)).unwrap();
    }
}
