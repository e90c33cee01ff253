//! Audio devices through cpal.
//!
//! [`find`] picks a device and a configuration (f32 preferred; i16, u16, i32 and the other integer
//! formats converted in the callback). [`DevicePlan::start`] moves an [`AudioCore`] into a cpal
//! output stream. The stream's data callback owns the core inside a [`CoreSlot`]; whenever the
//! callback is dropped (the stream was dropped, or it could not be built or started), the slot
//! pushes the core into a one-slot `rtrb` ring, and the control thread takes it back from there.
//! That is how a failed device hands Signal and its sample counter over to the null device with
//! no lock anywhere near the callback.
//!
//! The error callback forwards errors through another ring (counting xruns in an atomic); the
//! control thread reads them with [`DeviceStream::failure`].
//!
//! Every data callback is timed into a [`LoadMeter`] (processing time over `frames / rate`), and
//! its `callback` timestamp is compared with the previous one's: a callback that comes more than
//! [`GAP_PERIODS`] (1.5) periods of the previous block after it is a **gap**, counted as the
//! meter's deadline miss (the device ran dry or dropped a period without necessarily reporting an
//! xrun). [`DeviceStream::xruns`] counts the underruns the backend reported; the node reports
//! both. The first callback stores its thread id for realtime scheduling ([`super::rt`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{ErrorKind, FromSample, SampleFormat, SizedSample, StreamConfig};

use super::core::AudioCore;
use super::load::{CallbackTimer, LoadMeter, block_period};
use crate::clock::CallbackTiming;

/// A callback more than this many periods (of the previous block) after the previous one is a gap.
pub const GAP_PERIODS: f64 = 1.5;

/// Whether callbacks `interval` apart, the first of `frames` at `sample_rate`, leave a gap.
pub fn is_gap(interval: Duration, frames: usize, sample_rate: u32) -> bool {
    frames > 0 && interval.as_secs_f64() > GAP_PERIODS * block_period(frames, sample_rate).as_secs_f64()
}

/// Watches a device's data callback: its load, gaps between callbacks and its thread id. Lives
/// inside the callback; [`CallbackWatch::begin`] and [`CallbackWatch::end`] are realtime-safe.
pub struct CallbackWatch {
    load: Arc<LoadMeter>,
    tid: Arc<AtomicI32>,
    /// The previous callback's timestamp and frames.
    prev: Option<(cpal::StreamInstant, usize)>,
    sample_rate: u32,
    channels: usize,
}

impl CallbackWatch {
    /// A watch that records into `load` (gaps as its misses) and stores the callback's thread id
    /// in `tid` on the first call, for a stream of `channels` at `sample_rate`.
    pub fn new(load: Arc<LoadMeter>, tid: Arc<AtomicI32>, sample_rate: u32, channels: usize) -> CallbackWatch {
        CallbackWatch { load, tid, prev: None, sample_rate, channels }
    }

    /// At the start of a callback of `samples` interleaved samples. Thread: audio.
    pub fn begin(&mut self, info: &cpal::OutputCallbackInfo, samples: usize) -> CallbackTimer {
        let timer = CallbackTimer::start();
        let frames = samples / self.channels.max(1);
        let now = info.timestamp().callback;
        match self.prev {
            None => self.tid.store(super::rt::current_thread_id(), Ordering::Release),
            Some((prev, prev_frames)) => {
                if is_gap(now.duration_since(prev), prev_frames, self.sample_rate) {
                    self.load.miss();
                }
            }
        }
        self.prev = Some((now, frames));
        timer
    }

    /// At the end of the callback begun with `timer`. Thread: audio.
    pub fn end(&self, timer: CallbackTimer) {
        let frames = self.prev.map_or(0, |(_, f)| f);
        timer.finish(&self.load, frames, self.sample_rate);
    }
}

/// Why there is no device to play on, as a short phrase for the user (e.g.
/// `no audio device (DeviceNotAvailable)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoDevice(pub String);

impl std::fmt::Display for NoDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device that could not be started, with the core handed back (`None` only if cpal kept the
/// callback of a stream it could not build).
pub struct StartError {
    /// Why.
    pub why: NoDevice,
    /// The core that was to run in the device's callback.
    pub core: Option<AudioCore>,
}

/// A device and the configuration to open it with.
pub struct DevicePlan {
    device: cpal::Device,
    label: String,
    config: StreamConfig,
    format: SampleFormat,
}

impl std::fmt::Debug for DevicePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePlan")
            .field("label", &self.label)
            .field("config", &self.config)
            .field("format", &self.format)
            .finish()
    }
}

/// Sample formats the callback converts to.
const FORMATS: [SampleFormat; 8] = [
    SampleFormat::F32,
    SampleFormat::F64,
    SampleFormat::I32,
    SampleFormat::I16,
    SampleFormat::U16,
    SampleFormat::U32,
    SampleFormat::I8,
    SampleFormat::U8,
];

pub(crate) fn format_rank(f: SampleFormat) -> Option<usize> {
    FORMATS.iter().position(|x| *x == f)
}

/// The output device named `name` (an id or a name as `devices` prints them; case-insensitive;
/// a unique part of a name also matches), or the default output device, with a configuration at
/// `sample_rate` (default: the device's) and `buffer` frames (default: the device's).
///
/// Thread: control. Not realtime-safe.
pub fn find(name: Option<&str>, sample_rate: Option<u32>, buffer: Option<u32>) -> Result<DevicePlan, NoDevice> {
    let device = match name {
        None => cpal::default_host()
            .default_output_device()
            .ok_or_else(|| NoDevice("no audio device (no default output device)".into()))?,
        Some(name) => by_name(name, false)?,
    };
    let label = device_label(&device);
    let (config, format) = choose_config(&device, sample_rate).map_err(|why| match name {
        None => NoDevice(format!("no audio device ({why})")),
        Some(_) => NoDevice(format!("cannot use audio device '{label}' ({why})")),
    })?;
    let config =
        StreamConfig { buffer_size: buffer.map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed), ..config };
    Ok(DevicePlan { device, label, config, format })
}

/// The output (or, with `input`, input) device named `name`: an id or a name as `devices` prints
/// them, case-insensitive; a unique part of a name also matches.
///
/// Thread: control. Not realtime-safe.
pub(crate) fn by_name(name: &str, input: bool) -> Result<cpal::Device, NoDevice> {
    let wanted = name.to_lowercase();
    let what = if input { "audio input device" } else { "audio device" };
    let mut partial = Vec::new();
    for host_id in cpal::available_hosts() {
        let Ok(host) = cpal::host_from_id(host_id) else { continue };
        let devices = if input { host.input_devices() } else { host.output_devices() };
        let Ok(devices) = devices else { continue };
        for device in devices {
            let id = device.id().map(|id| id.to_string().to_lowercase()).unwrap_or_default();
            let desc = device.description().map(|d| d.name().to_lowercase()).unwrap_or_default();
            if id == wanted || desc == wanted {
                return Ok(device);
            }
            if desc.contains(&wanted) || id.contains(&wanted) {
                partial.push(device);
            }
        }
    }
    match partial.len() {
        1 => Ok(partial.remove(0)),
        0 => Err(NoDevice(format!("no {what} named '{name}' (see `loophole-node devices`)"))),
        n => Err(NoDevice(format!("'{name}' matches {n} {what}s; give its full id (see `loophole-node devices`)"))),
    }
}

/// A device's name for messages.
pub fn device_label(device: &cpal::Device) -> String {
    match (device.description(), device.id()) {
        (Ok(d), _) => d.name().to_string(),
        (Err(_), Ok(id)) => id.to_string(),
        _ => "unnamed device".into(),
    }
}

fn choose_config(device: &cpal::Device, sample_rate: Option<u32>) -> Result<(StreamConfig, SampleFormat), String> {
    let ranges: Vec<_> = device.supported_output_configs().map(|r| r.collect()).unwrap_or_default();
    // Best usable configuration at `rate`: f32 first, then stereo, then more channels.
    let best_at = |rate: u32| {
        ranges
            .iter()
            .filter(|r| r.contains_rate(rate))
            .filter_map(|r| Some((format_rank(r.sample_format())?, r)))
            .min_by_key(|(rank, r)| (*rank, r.channels() != 2, r.channels() < 2))
            .and_then(|(_, r)| r.try_with_sample_rate(rate))
            .map(|c| (c.config(), c.sample_format()))
    };
    match sample_rate {
        Some(rate) => best_at(rate).ok_or_else(|| format!("it cannot play at {rate} Hz in a usable format")),
        None => {
            let default = device.default_output_config().map_err(|e| format!("{:?}", e.kind()))?;
            let rate = default.sample_rate();
            if default.sample_format() == SampleFormat::F32 {
                return Ok((default.config(), SampleFormat::F32));
            }
            match best_at(rate) {
                Some(c) => Ok(c),
                None if format_rank(default.sample_format()).is_some() => {
                    Ok((default.config(), default.sample_format()))
                }
                None => Err(format!("unsupported sample format {}", default.sample_format())),
            }
        }
    }
}

impl DevicePlan {
    /// The device's name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The sample rate it will run at.
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// The fixed buffer size asked for, if any.
    pub fn buffer(&self) -> Option<u32> {
        match self.config.buffer_size {
            cpal::BufferSize::Fixed(n) => Some(n),
            cpal::BufferSize::Default => None,
        }
    }

    /// A description such as `48000 Hz, 2 channels, f32`.
    pub fn describe(&self) -> String {
        format!("{} Hz, {} channels, {}", self.config.sample_rate, self.config.channels, self.format)
    }

    /// Builds and starts the output stream with `core` in its callback. On failure the core is
    /// handed back with the reason (`None` only if cpal kept the callback of a stream it could not
    /// build for more than two seconds).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start(self, core: AudioCore) -> Result<DeviceStream, Box<StartError>> {
        let (back_tx, mut back_rx) = rtrb::RingBuffer::new(1);
        let (err_tx, err_rx) = rtrb::RingBuffer::new(64);
        let xruns = Arc::new(AtomicU64::new(0));
        let load = Arc::new(LoadMeter::new());
        let tid = Arc::new(AtomicI32::new(0));
        let slot = CoreSlot { core: Some(core), back: back_tx };
        let errors = ErrorSink { ring: err_tx, xruns: xruns.clone() };
        let channels = self.config.channels as usize;
        let watch = CallbackWatch::new(load.clone(), tid.clone(), self.config.sample_rate, channels);
        let built = match self.format {
            SampleFormat::F32 if channels == 2 => {
                let mut slot = slot;
                let mut errors = errors;
                let mut watch = watch;
                self.device.build_output_stream::<f32, _, _>(
                    self.config,
                    move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                        let timer = watch.begin(info, data.len());
                        match slot.core.as_mut() {
                            Some(core) => core.render_stereo_timed(data, timing_of(info)),
                            None => data.fill(0.0),
                        }
                        watch.end(timer);
                    },
                    move |e| errors.report(e),
                    None,
                )
            }
            SampleFormat::F32 => build::<f32>(&self.device, self.config, slot, errors, watch),
            SampleFormat::F64 => build::<f64>(&self.device, self.config, slot, errors, watch),
            SampleFormat::I32 => build::<i32>(&self.device, self.config, slot, errors, watch),
            SampleFormat::I16 => build::<i16>(&self.device, self.config, slot, errors, watch),
            SampleFormat::U16 => build::<u16>(&self.device, self.config, slot, errors, watch),
            SampleFormat::U32 => build::<u32>(&self.device, self.config, slot, errors, watch),
            SampleFormat::I8 => build::<i8>(&self.device, self.config, slot, errors, watch),
            SampleFormat::U8 => build::<u8>(&self.device, self.config, slot, errors, watch),
            other => {
                drop(slot);
                let core = take_back(&mut back_rx, Duration::from_secs(1));
                let why = NoDevice(format!("cannot use audio device '{}' (sample format {other})", self.label));
                return Err(Box::new(StartError { why, core }));
            }
        };
        let failed = |why: String, mut back_rx: rtrb::Consumer<AudioCore>| {
            let core = take_back(&mut back_rx, Duration::from_secs(2));
            Box::new(StartError { why: NoDevice(format!("cannot open audio device '{}' ({why})", self.label)), core })
        };
        let stream = match built {
            Ok(stream) => stream,
            Err(e) => return Err(failed(format!("{:?}: {e}", e.kind()), back_rx)),
        };
        if let Err(e) = stream.play() {
            drop(stream);
            return Err(failed(format!("{:?}: {e}", e.kind()), back_rx));
        }
        Ok(DeviceStream { stream: Some(stream), back: back_rx, errors: err_rx, xruns, load, tid, label: self.label })
    }
}

fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut slot: CoreSlot,
    mut errors: ErrorSink,
    mut watch: CallbackWatch,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = config.channels as usize;
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
            let timer = watch.begin(info, data.len());
            match slot.core.as_mut() {
                Some(core) => core.render_device_timed(data, channels, timing_of(info)),
                None => data.fill(T::EQUILIBRIUM),
            }
            watch.end(timer);
        },
        move |e| errors.report(e),
        None,
    )
}

/// The callback's timing as cpal reports it: the output latency is the time from the callback to
/// the predicted playback of its first sample.
fn timing_of(info: &cpal::OutputCallbackInfo) -> CallbackTiming {
    let ts = info.timestamp();
    let latency_us = ts.playback.duration_since(ts.callback).as_secs_f64() * 1e6;
    CallbackTiming { late_us: 0.0, latency_us, due_us: 0.0 }
}

fn take_back(ring: &mut rtrb::Consumer<AudioCore>, wait: Duration) -> Option<AudioCore> {
    let until = Instant::now() + wait;
    loop {
        if let Ok(core) = ring.pop() {
            return Some(core);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Owns the [`AudioCore`] inside a device callback, and hands it back through a one-slot ring
/// when the callback is dropped. Realtime-safe: the push moves the core into a preallocated slot.
pub struct CoreSlot {
    core: Option<AudioCore>,
    back: rtrb::Producer<AudioCore>,
}

impl CoreSlot {
    /// A slot holding `core`, handing it back into `back` on drop.
    pub fn new(core: AudioCore, back: rtrb::Producer<AudioCore>) -> CoreSlot {
        CoreSlot { core: Some(core), back }
    }

    /// The core, while the slot holds it.
    pub fn core(&mut self) -> Option<&mut AudioCore> {
        self.core.as_mut()
    }
}

impl Drop for CoreSlot {
    fn drop(&mut self) {
        if let Some(core) = self.core.take()
            && self.back.push(core).is_err()
        {
            tracing::error!("could not hand the audio engine back (ring full)");
        }
    }
}

/// The error callback's side: xruns are counted, everything else is forwarded to the control
/// thread (dropped, not blocked on, when 64 are waiting).
struct ErrorSink {
    ring: rtrb::Producer<cpal::Error>,
    xruns: Arc<AtomicU64>,
}

impl ErrorSink {
    fn report(&mut self, e: cpal::Error) {
        if e.kind() == ErrorKind::Xrun {
            self.xruns.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.ring.push(e);
        }
    }
}

/// A running cpal output stream with the core in its callback.
pub struct DeviceStream {
    stream: Option<cpal::Stream>,
    back: rtrb::Consumer<AudioCore>,
    errors: rtrb::Consumer<cpal::Error>,
    xruns: Arc<AtomicU64>,
    load: Arc<LoadMeter>,
    tid: Arc<AtomicI32>,
    label: String,
}

impl DeviceStream {
    /// The device's name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Underruns the device reported.
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    /// Gaps between callbacks (see the module docs).
    pub fn gaps(&self) -> u64 {
        self.load.misses()
    }

    /// The callback's load meter; its misses are the gaps.
    pub fn load(&self) -> &LoadMeter {
        &self.load
    }

    /// The kernel thread id of the callback's thread, once it has been called.
    pub fn audio_thread_id(&self) -> Option<i32> {
        Some(self.tid.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// Reads the errors the device reported since the last call. Returns why the device failed,
    /// if it did; notices (route changed, realtime priority refused) are only logged.
    ///
    /// Thread: control.
    pub fn failure(&mut self) -> Option<String> {
        while let Ok(e) = self.errors.pop() {
            match e.kind() {
                ErrorKind::DeviceChanged | ErrorKind::RealtimeDenied | ErrorKind::DeviceBusy => {
                    tracing::warn!("audio device '{}': {e}", self.label);
                }
                kind => return Some(format!("{kind:?}: {e}")),
            }
        }
        None
    }

    /// Stops the stream and takes the core back (`None` if the backend kept the callback for
    /// more than a second after the stream was dropped).
    ///
    /// Thread: control. Blocks until the stream's thread has stopped.
    pub fn stop(mut self) -> Option<AudioCore> {
        drop(self.stream.take());
        take_back(&mut self.back, Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_more_than_one_and_a_half_periods() {
        // 128 frames at 48 kHz: 2.667 ms per period.
        assert!(!is_gap(Duration::from_micros(2667), 128, 48_000));
        assert!(!is_gap(Duration::from_micros(3990), 128, 48_000));
        assert!(is_gap(Duration::from_micros(4010), 128, 48_000));
        assert!(is_gap(Duration::from_micros(5334), 128, 48_000), "a dropped period");
        assert!(!is_gap(Duration::from_millis(100), 0, 48_000));
    }

    #[test]
    fn the_watch_counts_gaps_times_callbacks_and_stores_its_thread_id() {
        let load = Arc::new(LoadMeter::new());
        let tid = Arc::new(AtomicI32::new(0));
        let mut watch = CallbackWatch::new(load.clone(), tid.clone(), 48_000, 2);
        let info = |us: u64| {
            let at = cpal::StreamInstant::from_micros(us);
            cpal::OutputCallbackInfo::new(cpal::OutputStreamTimestamp { callback: at, playback: at })
        };
        // 128-frame stereo callbacks every 2.667 ms, one period dropped (5.333 ms), then a late
        // one 3.9 ms after (under 1.5 periods: not a gap), and a 1 ms stall inside one callback.
        for (k, us) in [0u64, 2_667, 5_333, 10_667, 14_567].into_iter().enumerate() {
            let timer = watch.begin(&info(us), 256);
            if k == 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            watch.end(timer);
        }
        let s = load.stats();
        assert_eq!((s.blocks, s.misses), (5, 1), "{s:?}");
        assert!(s.max >= 0.3, "a 1 ms stall in a 2.667 ms period: {s:?}");
        assert_eq!(tid.load(Ordering::Relaxed), crate::audio::rt::current_thread_id());
    }
}
