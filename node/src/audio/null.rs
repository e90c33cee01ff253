//! The null device: an audio "device" with no sound card, for servers, CI and machines whose
//! device failed.
//!
//! A thread calls the render callback once per block period, exactly like a device would, paced
//! by the clock with **absolute deadlines**: callback `n` is due at `start + n * period`, computed
//! from `n` (never by adding periods up), and the thread sleeps until then. After a stall the
//! following callbacks run back to back until the deadlines catch up, so no time is lost.
//!
//! **Deadline misses.** The null device behaves like a device with a one-block output buffer:
//! the block of callback `n`, due at `D(n) = start + n * period`, is heard from `D(n) + period`
//! on (while callback `n + 1` renders), which is the output latency it reports to the core. A
//! callback that *finishes* after `D(n) + period` is a **deadline miss**: a real device would
//! have played something else (silence or a repeat) where its first sample belongs. Each such
//! block counts once, so a long stall counts every block it delays. Separately, a callback that
//! *starts* more than half a period after `D(n)` is a **late start** (the thread woke up late and
//! had less than half the period left); a late start need not be a miss. A miss whose callback
//! itself ran longer than half a period is also counted as a **slow miss**: the others are the
//! machine's doing (the thread woke late, or a stall came before the callback), not the
//! callback's.
//!
//! Each callback is timed (the time from its start to its end over the period) into the
//! stream's [`LoadMeter`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::load::{CallbackTimer, LoadMeter};

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
    /// The device thread's kernel thread id (0 until it has started).
    tid: AtomicI32,
    load: LoadMeter,
}

impl NullStats {
    /// Callbacks made so far.
    pub fn callbacks(&self) -> u64 {
        self.callbacks.load(Ordering::Relaxed)
    }

    /// Callbacks that finished after their block was due to be heard (see the module docs).
    pub fn misses(&self) -> u64 {
        self.load.misses()
    }

    /// Callbacks that started more than half a period after their deadline.
    pub fn late_starts(&self) -> u64 {
        self.load.late_starts()
    }

    /// The callback's load meter (with the misses and late starts).
    pub fn load(&self) -> &LoadMeter {
        &self.load
    }

    /// The device thread's kernel thread id, once it runs (for realtime priority).
    pub fn thread_id(&self) -> Option<i32> {
        Some(self.tid.load(Ordering::Acquire)).filter(|&t| t != 0)
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
                let half = period / 2;
                stats.tid.store(super::rt::current_thread_id(), Ordering::Release);
                let start = Instant::now();
                let mut index = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let deadline = start + period_of(config, index);
                    let now = Instant::now();
                    if deadline > now {
                        std::thread::sleep(deadline - now);
                    }
                    let timer = CallbackTimer::start();
                    let started = timer.started();
                    if started.saturating_duration_since(deadline) > half {
                        stats.load.late_start();
                    }
                    callback(&mut buffer, &NullCallbackInfo { index, deadline, started });
                    let done = timer.finish(&stats.load, config.block, config.sample_rate);
                    // Heard from `deadline + period` on (a one-block buffer).
                    if done > deadline + period {
                        stats.load.miss();
                        if done.saturating_duration_since(started) > half {
                            stats.load.slow_miss();
                        }
                    }
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
    fn a_stall_counts_misses_and_late_starts_and_the_device_catches_up() {
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
        // The stalled block finished ~19 ms after it was due to be heard; the blocks delayed
        // behind it started late, and the first of them finished late too.
        assert!(stats.misses() >= 2, "a 20 ms stall of a 1 ms device must miss deadlines: {}", stats.misses());
        assert!(stats.late_starts() >= 10, "blocks after the stall start late: {}", stats.late_starts());
        let load = stats.load().stats();
        // Only the stalled callback was slow; the blocks behind it missed because they started late.
        assert_eq!(load.slow_misses, 1, "{load:?}");
        assert!(load.max >= 15.0, "a 20 ms callback in a 1 ms period is a load of ~2000 %: {}", load.max);
        assert_eq!(load.blocks, stats.callbacks());
        assert!(stats.callbacks() >= 60, "the device catches up after a stall: {}", stats.callbacks());
    }

    #[test]
    fn a_callback_slower_than_its_period_misses_every_deadline_and_loads_over_100_percent() {
        let config = NullConfig { sample_rate: 48_000, channels: 2, block: 96 }; // 2 ms period
        let stream = NullStream::start(config, |_, _| std::thread::sleep(Duration::from_millis(3))).unwrap();
        let stats = stream.stats();
        std::thread::sleep(Duration::from_millis(200));
        stream.stop();
        let n = stats.callbacks();
        assert!(n >= 20, "{n} callbacks");
        // From the second block on each one finishes later than the one before it was heard.
        assert!(stats.misses() + 2 >= n, "{} misses in {n} callbacks", stats.misses());
        let load = stats.load().stats();
        assert_eq!(load.slow_misses, load.misses, "every miss is the callback's own: {load:?}");
        assert!(load.p50 >= 1.4 && load.smoothed >= 1.4 && load.peak >= 1.4, "{load:?}");
    }

    #[test]
    fn a_light_callback_misses_nothing() {
        let config = NullConfig { sample_rate: 48_000, channels: 2, block: 480 }; // 10 ms period
        let stream = NullStream::start(config, |buf, _| buf.fill(0.0)).unwrap();
        let stats = stream.stats();
        std::thread::sleep(Duration::from_millis(300));
        stream.stop();
        // 10 ms of slack per block: only a machine stalled for > 10 ms could miss.
        assert_eq!(stats.misses(), 0);
        let load = stats.load().stats();
        assert!(load.blocks >= 20 && load.max < 0.5, "{load:?}");
        assert!(stats.thread_id().is_some());
    }
}
