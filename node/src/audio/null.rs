//! The null device: an audio "device" with no sound card, for servers, CI and machines whose
//! device failed.
//!
//! A thread calls the render callback once per block period, exactly like a device would, paced
//! by the clock with **absolute deadlines**: callback `n` is due at `start + n * period`, computed
//! from `n` (never by adding periods up), and the thread sleeps until then. A callback that starts
//! later than one period after its deadline counts as a late callback (the null device's xrun);
//! the following ones run back to back until the deadlines catch up, so no time is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the null device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullConfig {
    /// Sample rate in Hz (sets the block period with `block`).
    pub sample_rate: u32,
    /// Interleaved channels in the callback's buffer.
    pub channels: u16,
    /// Frames per callback.
    pub block: usize,
}

/// What a null-device callback is told, like cpal's `OutputCallbackInfo`.
#[derive(Debug, Clone, Copy)]
pub struct NullCallbackInfo {
    /// Index of this callback (0 for the first).
    pub index: u64,
    /// When it was due.
    pub deadline: Instant,
    /// When it started.
    pub started: Instant,
}

/// Counters of a running null device. Any thread.
#[derive(Debug, Default)]
pub struct NullStats {
    callbacks: AtomicU64,
    late: AtomicU64,
}

impl NullStats {
    /// Callbacks made so far.
    pub fn callbacks(&self) -> u64 {
        self.callbacks.load(Ordering::Relaxed)
    }

    /// Callbacks that started more than one period after their deadline.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }
}

/// A running null device. Dropping it stops the thread (after the callback in progress).
#[derive(Debug)]
pub struct NullStream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<NullStats>,
    config: NullConfig,
}

impl NullStream {
    /// Starts the device thread. The first callback is made at once; `callback` gets a buffer of
    /// `block * channels` interleaved samples to fill, as from a cpal output stream.
    ///
    /// Thread: control. Spawns the device thread, which calls `callback` and does nothing else
    /// between callbacks but sleep.
    pub fn start<F>(config: NullConfig, mut callback: F) -> std::io::Result<NullStream>
    where
        F: FnMut(&mut [f32], &NullCallbackInfo) + Send + 'static,
    {
        let config = NullConfig { block: config.block.max(1), channels: config.channels.max(1), ..config };
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(NullStats::default());
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new().name("loophole-null-audio".into()).spawn(move || {
                let mut buffer = vec![0f32; config.block * config.channels as usize];
                let period = period_of(config, 1);
                let start = Instant::now();
                let mut index = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let deadline = start + period_of(config, index);
                    let now = Instant::now();
                    if deadline > now {
                        std::thread::sleep(deadline - now);
                    }
                    let started = Instant::now();
                    if started.saturating_duration_since(deadline) > period {
                        stats.late.fetch_add(1, Ordering::Relaxed);
                    }
                    callback(&mut buffer, &NullCallbackInfo { index, deadline, started });
                    stats.callbacks.fetch_add(1, Ordering::Relaxed);
                    index += 1;
                }
            })?
        };
        Ok(NullStream { stop, thread: Some(thread), stats, config })
    }

    /// The device's counters.
    pub fn stats(&self) -> Arc<NullStats> {
        self.stats.clone()
    }

    /// How it runs.
    pub fn config(&self) -> NullConfig {
        self.config
    }

    /// Stops the thread and waits for it (at most one callback). The callback is dropped.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the null audio device thread panicked");
        }
    }
}

impl Drop for NullStream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The time from the start to callback `index`: `index * block / sample_rate` seconds, in exact
/// integer nanoseconds.
fn period_of(config: NullConfig, index: u64) -> Duration {
    let nanos = index as u128 * config.block as u128 * 1_000_000_000 / config.sample_rate.max(1) as u128;
    Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn paces_in_real_time_with_contiguous_sample_times() {
        // 48 kHz, 480-frame blocks: 10 ms per callback; 50 callbacks are 0.5 s of audio.
        let config = NullConfig { sample_rate: 48_000, channels: 2, block: 480 };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let t0 = Instant::now();
        let stream = {
            let seen = seen.clone();
            let mut sample = 0u64;
            NullStream::start(config, move |buf, info| {
                assert_eq!(buf.len(), 480 * 2);
                // The sample time the device would report: index * block.
                seen.lock().unwrap().push((info.index, sample));
                sample += (buf.len() / 2) as u64;
                if sample == 50 * 480 {
                    let _ = done_tx.send(Instant::now());
                }
            })
            .unwrap()
        };
        let done = done_rx.recv_timeout(Duration::from_secs(10)).expect("50 callbacks within 10 s");
        stream.stop();
        let elapsed = done - t0;
        // The 50th callback is due 49 periods (0.49 s) after the first.
        assert!(elapsed >= Duration::from_millis(450), "0.5 s of blocks took only {elapsed:?}: not paced");
        let seen = seen.lock().unwrap();
        for (k, (index, sample)) in seen.iter().enumerate() {
            assert_eq!(*index, k as u64);
            assert_eq!(*sample, k as u64 * 480, "callback {k} is not contiguous");
        }
    }

    #[test]
    fn deadlines_do_not_drift() {
        let config = NullConfig { sample_rate: 44_100, channels: 2, block: 441 };
        // 441 frames at 44.1 kHz is exactly 10 ms: the millionth deadline is exactly 10 000 s.
        assert_eq!(period_of(config, 1_000_000), Duration::from_secs(10_000));
        let odd = NullConfig { sample_rate: 48_000, channels: 2, block: 256 };
        // 256 / 48 000 s is not a whole number of nanoseconds; the error must not accumulate.
        assert_eq!(period_of(odd, 48_000 * 3), Duration::from_secs(256 * 3));
    }

    #[test]
    fn late_callbacks_are_counted() {
        let config = NullConfig { sample_rate: 48_000, channels: 2, block: 48 }; // 1 ms period
        let stream = NullStream::start(config, |_, info| {
            if info.index == 2 {
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
        let stats = stream.stats();
        std::thread::sleep(Duration::from_millis(100));
        stream.stop();
        assert!(stats.late() >= 1, "a 20 ms stall of a 1 ms device must make late callbacks");
        assert!(stats.callbacks() >= 60, "the device catches up after a stall: {}", stats.callbacks());
    }
}
