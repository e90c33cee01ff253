//! The capture writer: a thread that drains what the audio callback played (an `rtrb` ring of
//! interleaved stereo samples) into a 32-bit float WAV file.
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
                    loop {
                        // Read the stop flag before draining: everything pushed before it was set
                        // is in the ring now.
                        let stopping = stop.load(Ordering::Acquire) || rx.is_abandoned();
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
