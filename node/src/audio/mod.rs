//! Audio output and input.
//!
//! Every backend calls the same realtime callback, [`AudioCore`]: it builds the block's clock from
//! a sample counter or from Ableton Link (with the callback's [`CallbackTiming`]), runs Signal,
//! copies the block to the capture ring if there is one, and publishes the position through [`Transport`] atomics for the control thread. Backends:
//!
//! - [`device`]: a cpal output stream (any host, any sample format, any channel count);
//! - [`null`]: the null device, a thread paced by the clock with absolute deadlines, for
//!   machines without a sound card and as the fallback when a device fails.
//!
//! Input ([`input`], [`record`]): a cpal input stream or the null input (silence, a WAV file, or
//! a loopback of the output) whose frames are stamped with their capture instant on the host
//! clock ([`host`]) and recorded aligned with the output (latency compensation).
//!
//! A backend owns the core while it runs and hands it back when stopped ([`AudioBackend::stop`]),
//! so a failed device's successor continues with the same Signal at the same sample, and so does
//! the device again when it comes back ([`switchback`]).

pub mod capture;
pub mod core;
pub mod device;
pub mod input;
pub mod load;
pub mod null;
pub mod record;
pub mod rt;
pub mod switchback;

pub use self::core::{AudioCore, EngineSwap};
use self::device::{CoreSlot, DeviceStream};
use self::load::LoadMeter;
use self::null::{NullConfig, NullStats, NullStream};
use crate::clock::{CallbackTiming, host};

use std::sync::Arc;
use std::time::Duration;

/// A running audio output with an [`AudioCore`] in its callback.
pub enum AudioBackend {
    /// A cpal output stream.
    Device(DeviceStream),
    /// The null device.
    Null {
        /// The device thread.
        stream: NullStream,
        /// Where its callback hands the core back when stopped.
        back: rtrb::Consumer<AudioCore>,
        /// Its counters.
        stats: Arc<NullStats>,
    },
    /// The test device ([`switchback::TestDevice`], a test hook): the null device under another
    /// name, reporting a failure at `fail_at`.
    Test {
        /// The null device it runs on.
        inner: Box<AudioBackend>,
        /// When it reports its failure (once).
        fail_at: Option<std::time::Instant>,
    },
}

impl AudioBackend {
    /// Starts the null device with `core` in its callback (stereo, `block` frames per callback).
    ///
    /// Thread: control.
    pub fn start_null(core: AudioCore, block: usize) -> std::io::Result<AudioBackend> {
        let config = NullConfig { sample_rate: core.sample_rate(), channels: 2, block };
        let (tx, back) = rtrb::RingBuffer::new(1);
        let mut slot = CoreSlot::new(core, tx);
        // The null device's output latency is one block: a block rendered for deadline `n` is
        // "heard" while the next one is rendered, as if the device had a one-block buffer.
        let latency_us = block as f64 * 1e6 / config.sample_rate.max(1) as f64;
        let stream = NullStream::start(config, move |buf, info| match slot.core() {
            Some(core) => {
                let late_us = info.started.saturating_duration_since(info.deadline).as_secs_f64() * 1e6;
                core.render_stereo_timed(
                    buf,
                    CallbackTiming { late_us, latency_us, due_us: host::us_of(info.deadline) },
                )
            }
            None => buf.fill(0.0),
        })?;
        let stats = stream.stats();
        Ok(AudioBackend::Null { stream, back, stats })
    }

    /// What it plays on, for messages.
    pub fn label(&self) -> String {
        match self {
            AudioBackend::Device(d) => format!("audio device '{}'", d.label()),
            AudioBackend::Null { .. } => "the null device".to_string(),
            AudioBackend::Test { .. } => "audio device 'test device'".to_string(),
        }
    }

    /// Whether this is the null device.
    pub fn is_null(&self) -> bool {
        matches!(self, AudioBackend::Null { .. })
    }

    /// Xruns: a device's reported underruns plus the gaps between its callbacks, or the null
    /// device's deadline misses.
    pub fn xruns(&self) -> u64 {
        match self {
            AudioBackend::Device(d) => d.xruns() + d.gaps(),
            AudioBackend::Null { stats, .. } => stats.misses(),
            AudioBackend::Test { inner, .. } => inner.xruns(),
        }
    }

    /// The callback's load meter (with the deadline misses and late starts it counted).
    pub fn load(&self) -> &LoadMeter {
        match self {
            AudioBackend::Device(d) => d.load(),
            AudioBackend::Null { stats, .. } => stats.load(),
            AudioBackend::Test { inner, .. } => inner.load(),
        }
    }

    /// The kernel thread id of the thread running the callback, once it has run.
    pub fn audio_thread_id(&self) -> Option<i32> {
        match self {
            AudioBackend::Device(d) => d.audio_thread_id(),
            AudioBackend::Null { stats, .. } => stats.thread_id(),
            AudioBackend::Test { inner, .. } => inner.audio_thread_id(),
        }
    }

    /// Why the device failed, if it reported a failure since the last call. Control thread.
    pub fn failure(&mut self) -> Option<String> {
        match self {
            AudioBackend::Device(d) => d.failure(),
            AudioBackend::Null { .. } => None,
            AudioBackend::Test { fail_at, .. } => match *fail_at {
                Some(t) if std::time::Instant::now() >= t => {
                    *fail_at = None;
                    Some(format!("injected failure ({})", switchback::TEST_DEVICE_ENV))
                }
                _ => None,
            },
        }
    }

    /// Stops the output and takes the core back (`None` if it could not be recovered).
    ///
    /// Thread: control. Blocks until the backend's thread has stopped.
    pub fn stop(self) -> Option<AudioCore> {
        match self {
            AudioBackend::Device(d) => d.stop(),
            AudioBackend::Test { inner, .. } => inner.stop(),
            AudioBackend::Null { stream, mut back, .. } => {
                stream.stop();
                let until = std::time::Instant::now() + Duration::from_secs(1);
                loop {
                    if let Ok(core) = back.pop() {
                        return Some(core);
                    }
                    if std::time::Instant::now() >= until {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// Routes alsa-lib's messages on this thread (it prints a page of them to stderr while probing a
/// machine without a sound card) into `tracing` at debug level (`RUST_LOG=alsa=debug`).
///
/// Keep the guard alive while probing and opening devices on this thread; call
/// [`AlsaMessages::flush`] to log what was collected.
pub struct AlsaMessages {
    #[cfg(any(target_os = "linux", target_os = "dragonfly", target_os = "freebsd", target_os = "netbsd"))]
    output: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl AlsaMessages {
    /// Starts collecting alsa-lib's messages on the current thread.
    pub fn collect() -> AlsaMessages {
        AlsaMessages {
            #[cfg(any(target_os = "linux", target_os = "dragonfly", target_os = "freebsd", target_os = "netbsd"))]
            output: alsa::Output::local_error_handler().ok(),
        }
    }

    /// Logs the messages collected so far and starts afresh.
    pub fn flush(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "dragonfly", target_os = "freebsd", target_os = "netbsd"))]
        if let Some(output) = &self.output {
            let text = output.borrow().to_string();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::debug!(target: "alsa", "{line}");
            }
            if !text.is_empty() {
                self.output = alsa::Output::local_error_handler().ok();
            }
        }
    }
}

impl Drop for AlsaMessages {
    fn drop(&mut self) {
        self.flush();
    }
}
