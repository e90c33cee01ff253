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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::core::BlockTiming;
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
        Capture::spawn(path, sample_rate, limit, None)
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
        let (capture, samples) =
            Capture::spawn(path, sample_rate, limit, Some((std::io::BufWriter::new(file), rx, sidecar)))?;
        Ok((capture, samples, tx))
    }

    fn spawn(
        path: &Path,
        sample_rate: u32,
        limit: Option<u64>,
        timing: Option<(std::io::BufWriter<std::fs::File>, rtrb::Consumer<BlockTiming>, PathBuf)>,
    ) -> anyhow::Result<(Capture, rtrb::Producer<f32>)> {
        let mut timing = timing;
        let mut wav = FloatWavWriter::create(path, sample_rate, 2)
            .with_context(|| format!("cannot create the capture file {}", path.display()))?;
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
                    if let Some((out, _, sidecar)) = timing.as_mut() {
                        use std::io::Write as _;
                        writeln!(out, "frame,sample,host_us,beat,frames")
                            .with_context(|| format!("cannot write the capture timing file {}", sidecar.display()))?;
                    }
                    let mut write_timing = |stopping: bool| -> anyhow::Result<()> {
                        use std::io::Write as _;
                        let Some((out, rx, sidecar)) = timing.as_mut() else { return Ok(()) };
                        let fail = |e: std::io::Error| {
                            anyhow::Error::new(e)
                                .context(format!("cannot write the capture timing file {}", sidecar.display()))
                        };
                        while let Ok(t) = rx.pop() {
                            let first = *first_sample.get_or_insert(t.sample);
                            let frame = t.sample - first;
                            if limit.is_some_and(|l| frame >= l as i64) {
                                continue;
                            }
                            writeln!(out, "{},{},{:.3},{:.9},{}", frame, t.sample, t.host_us, t.beat, t.frames)
                                .map_err(fail)?;
                        }
                        if stopping {
                            out.flush().map_err(fail)?;
                        }
                        Ok(())
                    };
                    loop {
                        // Read the stop flag before draining: everything pushed before it was set
                        // is in the ring now.
                        let stopping = stop.load(Ordering::Acquire) || rx.is_abandoned();
                        write_timing(false)?;
                        let n = rx.slots();
                        if n > 0 {
                            let chunk = rx.read_chunk(n).context("capture ring")?;
                            let (a, b) = chunk.as_slices();
                            for part in [a, b] {
                                let keep = (part.len() as u64).min(room) as usize;
                                if keep > 0 {
                                    wav.write(&part[..keep])
                                        .with_context(|| format!("cannot write the capture file {}", path.display()))?;
                                    room -= keep as u64;
                                }
                            }
                            chunk.commit_all();
                        } else if stopping {
                            write_timing(true)?;
                            break;
                        } else {
                            std::thread::sleep(POLL);
                        }
                    }
                    wav.finish().with_context(|| format!("cannot finish the capture file {}", path.display()))
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
}
