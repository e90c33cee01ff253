//! Audio input: a cpal input stream, or the null input (paced by the clock like the null output).
//!
//! Every input backend calls the same realtime callback, [`InputCore::push`]: it converts the
//! device's frames to interleaved stereo `f32` (mono is copied to both sides; channels past the
//! second are left out), pushes them into an `rtrb` ring, and pushes an [`InputBlock`] record
//! with the block's first input frame and its **capture time** on the node's host clock
//! ([`super::host`]): the instant the first frame was captured by the converter. When either ring
//! is full the block is counted as dropped ([`InputStats::dropped`]) and the frame counter still
//! advances, so the writer sees the gap and nothing after it moves.
//!
//! The capture time comes from the backend:
//!
//! - cpal: the callback's entry on the host clock minus `callback - capture` from cpal's
//!   `InputCallbackInfo` timestamps (the driver's input latency);
//! - the null input: its deadline (absolute, as the null output's) minus one block minus the
//!   simulated latency.
//!
//! The null input's sources ([`InputSpec`]): `silence`; `file:PATH.wav` (the file as if it were
//! played into the microphone from the input's first frame, then silence); and
//! `loopback[:MS]`, the node's own output fed back to its input as a cable from the interface's
//! output to its input would: the frame it captures at host time `t` is the output frame that was
//! at the speaker at `t` (read from the output core's tap, [`super::AudioCore::set_tap`], placed
//! by the heard time the output backend reported for each block: the "physics", independent of
//! the clock snapshot the recorder aligns with), and the input callback gets it `MS` ms plus one
//! block later. The round trip from the output callback to the input callback is so the output
//! latency (one block on the null output) + one block + `MS`.
//!
//! [`super::record`] turns the rings into a WAV file aligned with the output.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{ErrorKind, FromSample, SampleFormat, SizedSample, StreamConfig};

use super::device::{NoDevice, by_name, device_label, format_rank};
use super::null::{NullConfig, NullStream};
use crate::clock::BlockTiming;
use crate::clock::filter::HostTimeFilter;
use crate::clock::host;

/// Seconds of input the rings hold.
pub const RING_SECONDS: usize = 4;

/// The loopback latency when `loopback` gives none, in ms.
pub const DEFAULT_LOOPBACK_MS: f64 = 5.0;

/// How long the loopback source waits for output frames a late null output has not rendered yet.
const LOOPBACK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Seconds of output the loopback source keeps to read from.
const LOOPBACK_HISTORY_SECONDS: usize = 2;

/// Where the input comes from (`--input`).
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    /// A cpal input device, by name or id as `devices` lists it.
    Device(String),
    /// The null input, hearing silence (`silence` or `null`).
    Silence,
    /// The null input, hearing a WAV file played into it once from its first frame
    /// (`file:PATH.wav`).
    File(PathBuf),
    /// The null input, hearing the node's own output after `latency_ms` ms of simulated input
    /// latency (`loopback[:MS]`).
    Loopback {
        /// Simulated input latency beyond one block, in ms.
        latency_ms: f64,
    },
}

impl InputSpec {
    /// Parses an `--input` value: `silence`, `null`, `file:PATH`, `loopback`, `loopback:MS`, or
    /// anything else as a device name.
    pub fn parse(s: &str) -> Result<InputSpec, String> {
        let lower = s.to_ascii_lowercase();
        if lower == "silence" || lower == "null" {
            return Ok(InputSpec::Silence);
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a WAV file's path, e.g. `file:voice.wav`".into());
            }
            return Ok(InputSpec::File(PathBuf::from(path)));
        }
        if lower == "loopback" {
            return Ok(InputSpec::Loopback { latency_ms: DEFAULT_LOOPBACK_MS });
        }
        if let Some(ms) = lower.strip_prefix("loopback:") {
            return match ms.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.0..=1000.0).contains(&v) => Ok(InputSpec::Loopback { latency_ms: v }),
                _ => Err(format!("`loopback:{ms}`: the latency must be a number of ms from 0 to 1000")),
            };
        }
        Ok(InputSpec::Device(s.to_string()))
    }

    /// A short name for messages, e.g. `the null input (loopback, 5 ms)`.
    pub fn label(&self) -> String {
        match self {
            InputSpec::Device(name) => format!("input device '{name}'"),
            InputSpec::Silence => "the null input (silence)".into(),
            InputSpec::File(p) => format!("the null input (file {})", p.display()),
            InputSpec::Loopback { latency_ms } => format!("the null input (loopback, {latency_ms} ms)"),
        }
    }
}

/// One input block as the writer gets it, next to its frames in the sample ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputBlock {
    /// The input frame index of the block's first frame (0 for the stream's first frame).
    pub frame: u64,
    /// Host time ([`super::host`], µs) at which that frame was captured.
    pub capture_us: f64,
    /// Frames in the block.
    pub frames: u32,
    /// Of the frames missing right before this block (its `frame` minus the previous block's
    /// end), those lost when the input failed and the null input took over (the rest were
    /// dropped).
    pub lost: u64,
}

/// Counters of a running input. Any thread.
#[derive(Debug, Default)]
pub struct InputStats {
    callbacks: AtomicU64,
    frames: AtomicU64,
    dropped: AtomicU64,
    latency_us: AtomicU64,
    errors: AtomicU64,
    loopback_missing: AtomicU64,
    output_stopped: std::sync::atomic::AtomicBool,
    xruns: AtomicU64,
    /// The first failure not yet taken: its index in [`FAILURES`] plus 1 (0: none).
    failure: AtomicU8,
    failovers: AtomicU64,
    lost: AtomicU64,
}

/// The error kinds that mean the input stream is gone (cpal's [`ErrorKind`]s other than xruns
/// and notices), in the order [`InputStats`] stores them.
const FAILURES: [ErrorKind; 10] = [
    ErrorKind::DeviceNotAvailable,
    ErrorKind::HostUnavailable,
    ErrorKind::InvalidInput,
    ErrorKind::PermissionDenied,
    ErrorKind::ResourceExhausted,
    ErrorKind::StreamInvalidated,
    ErrorKind::UnsupportedConfig,
    ErrorKind::UnsupportedOperation,
    ErrorKind::BackendError,
    ErrorKind::Other,
];

/// The environment variable of the fault-injection **test hook**: `SECONDS` of input after
/// which the input stream (a device or the null input) reports `StreamInvalidated` through
/// [`InputStats::report`], exactly as cpal's error callback does, and delivers nothing more, as
/// a failed device. Only tests set it; see [`super::record::LiveInput::step`].
pub const FAULT_ENV: &str = "LOOPHOLE_TEST_INPUT_FAILS_AFTER";

impl InputStats {
    /// Input callbacks so far.
    pub fn callbacks(&self) -> u64 {
        self.callbacks.load(Ordering::Relaxed)
    }

    /// Frames the device delivered (including dropped ones).
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Frames dropped because the rings were full (the writer fell behind).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The input latency the last callback reported (callback minus capture), in µs.
    pub fn latency_us(&self) -> f64 {
        f64::from_bits(self.latency_us.load(Ordering::Relaxed))
    }

    /// Errors the device reported (cpal's error callback), xruns excepted.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Overruns the device reported.
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    /// Takes an error the input stream reported (cpal's error callback, or the fault hook
    /// [`FAULT_ENV`]): an xrun is counted; a notice (the route changed, realtime scheduling
    /// refused, the device busy) is counted as an error; any other kind also marks the input
    /// failed (the first such kind is kept until [`InputStats::take_failure`]).
    ///
    /// Thread: any (the device's error callback). Realtime-safe.
    pub fn report(&self, e: &cpal::Error) {
        let kind = e.kind();
        if kind == ErrorKind::Xrun {
            self.xruns.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = FAILURES.iter().position(|k| *k == kind) {
            let _ = self.failure.compare_exchange(0, i as u8 + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The kind of failure the input reported since the last call, if any. Thread: control.
    pub fn take_failure(&self) -> Option<ErrorKind> {
        match self.failure.swap(0, Ordering::AcqRel) {
            0 => None,
            i => FAILURES.get(i as usize - 1).copied(),
        }
    }

    /// Times the input failed and the null input took over ([`InputCore::resume_after_failure`]).
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Input frames lost between a failed input's last block and the null input's first (the
    /// recording has silence there).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Tells the loopback source that the output has stopped: frames past its last are silence,
    /// not missing, and are not waited for. Thread: control.
    pub fn output_stopped(&self) {
        self.output_stopped.store(true, Ordering::Release);
    }

    /// Loopback frames the output had not rendered (or had already overwritten) when the null
    /// input needed them; they were heard as silence.
    pub fn loopback_missing(&self) -> u64 {
        self.loopback_missing.load(Ordering::Relaxed)
    }
}

/// The realtime input callback's state: the rings to the writer and the frame counter.
pub struct InputCore {
    samples: rtrb::Producer<f32>,
    blocks: rtrb::Producer<InputBlock>,
    frame: u64,
    stats: Arc<InputStats>,
    /// Smooths jittery capture times (cpal), if set.
    filter: Option<Box<HostTimeFilter>>,
    sample_rate: u32,
    /// The capture time of the frame after the last block (µs), to place a successor's first
    /// block after a failure.
    end_us: f64,
    /// The next block is the first of a successor input ([`InputCore::resume_after_failure`]).
    resume: bool,
    /// Frames lost at a failover, not yet reported in a block.
    lost: u64,
}

/// The writer's end of an [`InputCore`]'s rings.
pub struct InputReceiver {
    /// Interleaved stereo frames.
    pub samples: rtrb::Consumer<f32>,
    /// One record per block, pushed after its frames.
    pub blocks: rtrb::Consumer<InputBlock>,
    /// The core's counters.
    pub stats: Arc<InputStats>,
}

impl InputCore {
    /// A core with rings for [`RING_SECONDS`] of input at `sample_rate`.
    ///
    /// Thread: control. Not realtime-safe (allocates the rings).
    pub fn new(sample_rate: u32) -> (InputCore, InputReceiver) {
        let frames = sample_rate.max(1) as usize * RING_SECONDS;
        let (samples, samples_rx) = rtrb::RingBuffer::new(frames * 2);
        // Blocks of 16 frames and more fill the sample ring first.
        let (blocks, blocks_rx) = rtrb::RingBuffer::new(frames / 16 + 64);
        let stats = Arc::new(InputStats::default());
        let core = InputCore {
            samples,
            blocks,
            frame: 0,
            stats: stats.clone(),
            filter: None,
            sample_rate,
            end_us: 0.0,
            resume: false,
            lost: 0,
        };
        (core, InputReceiver { samples: samples_rx, blocks: blocks_rx, stats })
    }

    /// Smooths the capture times the backend gives with a regression over recent blocks (for
    /// backends whose timestamps jitter with the callback's wake-up, as cpal's do).
    ///
    /// Thread: control. Not realtime-safe (allocates the filter).
    pub fn smoothed(mut self) -> InputCore {
        self.filter = Some(Box::new(HostTimeFilter::new(self.sample_rate)));
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<InputStats> {
        self.stats.clone()
    }

    /// Input frames taken so far (the index of the next block's first frame).
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// Prepares the core for a successor input after its input failed (the null input, on the
    /// same timeline): the successor's first block is placed by its capture time after the
    /// failed input's last block, the frames between are counted as lost ([`InputStats::lost`],
    /// [`InputBlock::lost`]) and the frame counter skips them, so the offset the recorder found
    /// holds; the smoothing is dropped (the null input's capture times are exact).
    ///
    /// Thread: control, while no stream owns the core.
    pub fn resume_after_failure(&mut self) {
        self.filter = None;
        self.resume = true;
        self.stats.failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// Advances the frame counter as if `frames` had been dropped (for tests of the writer).
    #[cfg(test)]
    pub(crate) fn skip_frames(&mut self, frames: u64) {
        self.frame += frames;
    }

    /// Takes one device buffer of `channels` interleaved channels whose first frame was
    /// captured at host time `capture_us` (`latency_us` before the callback): converts it to
    /// stereo `f32` into the sample ring and records the block, or counts it as dropped when
    /// either ring is full.
    ///
    /// Thread: audio (input). Realtime-safe: no allocation, lock, blocking call, I/O or
    /// formatting.
    pub fn push<T>(&mut self, data: &[T], channels: usize, capture_us: f64, latency_us: f64)
    where
        T: Copy,
        f32: FromSample<T>,
    {
        let channels = channels.max(1);
        let frames = data.len() / channels;
        if frames == 0 {
            return;
        }
        self.stats.callbacks.fetch_add(1, Ordering::Relaxed);
        self.stats.frames.fetch_add(frames as u64, Ordering::Relaxed);
        self.stats.latency_us.store(latency_us.to_bits(), Ordering::Relaxed);
        let capture_us = match &mut self.filter {
            Some(f) => f.update(self.frame as i64, capture_us),
            None => capture_us,
        };
        let us_per_frame = 1e6 / self.sample_rate.max(1) as f64;
        if std::mem::take(&mut self.resume) && self.frame > 0 {
            let gap = ((capture_us - self.end_us) / us_per_frame).round();
            if gap >= 1.0 {
                let gap = gap as u64;
                self.frame += gap;
                self.lost += gap;
                self.stats.lost.fetch_add(gap, Ordering::Relaxed);
            }
        }
        self.end_us = capture_us + frames as f64 * us_per_frame;
        let block = InputBlock { frame: self.frame, capture_us, frames: frames as u32, lost: self.lost };
        self.frame += frames as u64;
        if self.blocks.slots() == 0 {
            self.stats.dropped.fetch_add(frames as u64, Ordering::Relaxed);
            return;
        }
        match self.samples.write_chunk_uninit(frames * 2) {
            Ok(chunk) => {
                chunk.fill_from_iter(data.chunks_exact(channels).flat_map(|f| {
                    let left = <f32 as FromSample<T>>::from_sample_(f[0]);
                    let right = if channels > 1 { <f32 as FromSample<T>>::from_sample_(f[1]) } else { left };
                    [left, right]
                }));
                // Cannot fail: a slot was checked free above, and only this thread pushes.
                let _ = self.blocks.push(block);
                self.lost = 0;
            }
            Err(_) => {
                self.stats.dropped.fetch_add(frames as u64, Ordering::Relaxed);
            }
        }
    }
}

/// What the null input hears.
enum NullSource {
    Silence,
    File { left: Vec<f32>, right: Vec<f32>, pos: usize },
    Loopback(Loopback),
}

/// The loopback cable: the output's frames (from the core's tap) kept by output sample, read at
/// the output sample that was at the speaker at each capture instant, as the output backend
/// reported it for each block (the tap's timing, on the host clock).
struct Loopback {
    tap: rtrb::Consumer<f32>,
    tap_blocks: rtrb::Consumer<BlockTiming>,
    /// Interleaved stereo, frame `s` of the output at `(s mod len) * 2`.
    history: Vec<f32>,
    /// The output sample after the last frame taken from the tap.
    next: i64,
    /// The frames the tap has delivered, by output sample: `[first, next)` minus what the
    /// history has overwritten.
    first: Option<i64>,
    /// The last block's first sample and the host time it was heard at.
    line: Option<(i64, f64)>,
    us_per_sample: f64,
    stats: Arc<InputStats>,
}

impl Loopback {
    /// Fills `buf` (stereo) with what was at the speaker from host time `capture_us` on.
    /// Thread: the null input's. Does not allocate.
    fn fill(&mut self, buf: &mut [f32], capture_us: f64) {
        self.drain_tap();
        let frames = buf.len() as i64 / 2;
        if !self.stats.output_stopped.load(Ordering::Acquire) {
            // The null output's late callbacks lose no audio (they catch up): wait for them, as
            // the cable would have carried what they render.
            let until = std::time::Instant::now() + LOOPBACK_WAIT;
            while self.sample_at(capture_us).is_some_and(|s| self.next < s + frames)
                && std::time::Instant::now() < until
                && !self.tap.is_abandoned()
            {
                std::thread::sleep(std::time::Duration::from_micros(200));
                self.drain_tap();
            }
        }
        self.place(buf, capture_us);
    }

    /// The output sample at the speaker at host time `t` (`None` before the output played).
    fn sample_at(&self, t: f64) -> Option<i64> {
        let (sample, heard) = self.line?;
        Some((sample as f64 + (t - heard) / self.us_per_sample).round() as i64)
    }

    fn drain_tap(&mut self) {
        let len = (self.history.len() / 2) as i64;
        while let Ok(b) = self.tap_blocks.pop() {
            let Ok(chunk) = self.tap.read_chunk(b.frames as usize * 2) else { break };
            self.next = b.sample;
            self.first.get_or_insert(b.sample);
            let (x, y) = chunk.as_slices();
            for pair in x.chunks_exact(2).chain(y.chunks_exact(2)) {
                let at = (self.next.rem_euclid(len) * 2) as usize;
                self.history[at..at + 2].copy_from_slice(pair);
                self.next += 1;
            }
            chunk.commit_all();
            self.line = Some((b.sample, b.host_us));
        }
    }

    fn place(&mut self, buf: &mut [f32], capture_us: f64) {
        let len = (self.history.len() / 2) as i64;
        let (Some(first_sample), Some(start)) = (self.sample_at(capture_us), self.first) else {
            // The output has not played yet: the cable carries silence.
            buf.fill(0.0);
            return;
        };
        let mut missing = 0u64;
        for (i, out) in buf.chunks_exact_mut(2).enumerate() {
            let s = first_sample + i as i64;
            if s < self.next && s >= self.next - len && s >= start {
                let at = (s.rem_euclid(len) * 2) as usize;
                out.copy_from_slice(&self.history[at..at + 2]);
            } else {
                out.fill(0.0);
                // Before the output's first frame nothing was played; otherwise the frame came
                // too late or was overwritten.
                missing += u64::from(s >= start);
            }
        }
        if missing > 0 && !self.stats.output_stopped.load(Ordering::Acquire) {
            self.stats.loopback_missing.fetch_add(missing, Ordering::Relaxed);
        }
    }
}

impl NullSource {
    fn fill(&mut self, buf: &mut [f32], capture_us: f64) {
        match self {
            NullSource::Silence => buf.fill(0.0),
            NullSource::File { left, right, pos } => {
                for frame in buf.chunks_exact_mut(2) {
                    let (l, r) = (left.get(*pos).copied().unwrap_or(0.0), right.get(*pos).copied().unwrap_or(0.0));
                    frame[0] = l;
                    frame[1] = r;
                    *pos = pos.saturating_add(1);
                }
            }
            NullSource::Loopback(l) => l.fill(buf, capture_us),
        }
    }
}

/// A cpal input device and the configuration to open it with.
pub struct InputPlan {
    device: cpal::Device,
    label: String,
    config: StreamConfig,
    format: SampleFormat,
}

impl InputPlan {
    /// The input device named `name` with a configuration at `sample_rate` and `buffer` frames
    /// (default: the device's): f32 preferred, then stereo.
    ///
    /// Thread: control. Not realtime-safe.
    pub fn find(name: &str, sample_rate: u32, buffer: Option<u32>) -> Result<InputPlan, NoDevice> {
        let device = by_name(name, true)?;
        let label = device_label(&device);
        let ranges: Vec<_> = match device.supported_input_configs() {
            Ok(r) => r.collect(),
            Err(e) => return Err(NoDevice(format!("cannot use audio input device '{label}' ({e})"))),
        };
        if ranges.is_empty() {
            return Err(NoDevice(format!("audio device '{label}' has no input")));
        }
        let best = ranges
            .iter()
            .filter(|r| r.contains_rate(sample_rate))
            .filter_map(|r| Some((format_rank(r.sample_format())?, r)))
            .min_by_key(|(rank, r)| (*rank, r.channels() != 2, r.channels() < 2))
            .and_then(|(_, r)| r.try_with_sample_rate(sample_rate));
        let Some(c) = best else {
            return Err(NoDevice(format!(
                "audio input device '{label}' cannot record at {sample_rate} Hz (the output's rate) in a usable format"
            )));
        };
        let config = StreamConfig {
            buffer_size: buffer.map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed),
            ..c.config()
        };
        Ok(InputPlan { device, label, config, format: c.sample_format() })
    }

    /// Builds and starts the input stream with `core` in its callback (smoothed: cpal's
    /// timestamps jitter). `fail_after`: the fault hook ([`FAULT_ENV`]), in input frames.
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start(self, core: InputCore, fail_after: Option<u64>) -> Result<InputStream, NoDevice> {
        let stats = core.stats();
        let (slot, back) = InputSlot::new(core.smoothed(), fail_after);
        let built = match self.format {
            SampleFormat::F32 => build::<f32>(&self.device, self.config, slot, stats),
            SampleFormat::F64 => build::<f64>(&self.device, self.config, slot, stats),
            SampleFormat::I32 => build::<i32>(&self.device, self.config, slot, stats),
            SampleFormat::I16 => build::<i16>(&self.device, self.config, slot, stats),
            SampleFormat::U16 => build::<u16>(&self.device, self.config, slot, stats),
            SampleFormat::U32 => build::<u32>(&self.device, self.config, slot, stats),
            SampleFormat::I8 => build::<i8>(&self.device, self.config, slot, stats),
            SampleFormat::U8 => build::<u8>(&self.device, self.config, slot, stats),
            other => {
                return Err(NoDevice(format!(
                    "cannot use audio input device '{}' (sample format {other})",
                    self.label
                )));
            }
        };
        let fail = |e: cpal::Error| NoDevice(format!("cannot open audio input device '{}' ({e})", self.label));
        let stream = built.map_err(fail)?;
        stream.play().map_err(fail)?;
        Ok(InputStream { running: Running::Device(stream), back })
    }

    /// The device's name.
    pub fn label(&self) -> &str {
        &self.label
    }
}

fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut slot: InputSlot,
    stats: Arc<InputStats>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = config.channels as usize;
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], info: &cpal::InputCallbackInfo| {
            let now = host::now_us();
            let ts = info.timestamp();
            let latency_us = ts.callback.duration_since(ts.capture).as_secs_f64() * 1e6;
            slot.push(data, channels, now - latency_us, latency_us);
        },
        move |e| stats.report(&e),
        None,
    )
}

/// Owns the [`InputCore`] inside an input callback and hands it back through a one-slot ring
/// when the callback is dropped (the stream stopped), so that a successor input can continue
/// on the same rings and timeline. Carries the fault hook ([`FAULT_ENV`]).
///
/// Realtime-safe: the hand-back moves the core into a preallocated slot.
pub struct InputSlot {
    core: Option<InputCore>,
    back: rtrb::Producer<InputCore>,
    /// The fault hook: fail once this many frames have been taken.
    fail_after: Option<u64>,
    /// The hook fired: the input delivers nothing more, as a failed device.
    dead: bool,
}

impl InputSlot {
    /// A slot holding `core` and the ring it comes back through. `fail_after`: see
    /// [`FAULT_ENV`].
    pub fn new(core: InputCore, fail_after: Option<u64>) -> (InputSlot, rtrb::Consumer<InputCore>) {
        let (back, rx) = rtrb::RingBuffer::new(1);
        (InputSlot { core: Some(core), back, fail_after, dead: false }, rx)
    }

    /// [`InputCore::push`], unless the fault hook has fired: then the failure is reported
    /// through [`InputStats::report`] (as cpal's error callback would) and nothing is taken.
    ///
    /// Thread: audio (input). Realtime-safe.
    pub fn push<T>(&mut self, data: &[T], channels: usize, capture_us: f64, latency_us: f64)
    where
        T: Copy,
        f32: FromSample<T>,
    {
        let Some(core) = self.core.as_mut() else { return };
        if self.dead {
            return;
        }
        if self.fail_after.is_some_and(|at| core.frame >= at) {
            self.dead = true;
            core.stats.report(&cpal::Error::with_message(ErrorKind::StreamInvalidated, FAULT_ENV));
            return;
        }
        core.push(data, channels, capture_us, latency_us);
    }
}

impl Drop for InputSlot {
    fn drop(&mut self) {
        if let Some(core) = self.core.take()
            && self.back.push(core).is_err()
        {
            tracing::error!("could not hand the input core back (ring full)");
        }
    }
}

/// What the loopback source listens to: the output core's tap rings (frames, and each block's
/// timing on the host clock), see [`super::AudioCore::set_tap`].
pub type LoopbackTap = (rtrb::Consumer<f32>, rtrb::Consumer<BlockTiming>);

/// A running input: a cpal stream or the null input, with the ring its core comes back through.
pub struct InputStream {
    running: Running,
    back: rtrb::Consumer<InputCore>,
}

enum Running {
    Device(cpal::Stream),
    Null(NullStream),
}

impl InputStream {
    /// Starts the null input at `sample_rate` with `block` frames per callback, hearing
    /// `spec`'s source (a device spec is refused). For `loopback`, `loopback` is the output
    /// core's tap ([`super::AudioCore::set_tap`]). `fail_after`: see [`FAULT_ENV`].
    ///
    /// Thread: control. Not realtime-safe (reads the WAV file).
    pub fn start_null(
        spec: &InputSpec,
        sample_rate: u32,
        block: usize,
        core: InputCore,
        loopback: Option<LoopbackTap>,
        fail_after: Option<u64>,
    ) -> Result<InputStream, NoDevice> {
        let stats = core.stats();
        let mut source = match spec {
            InputSpec::Device(name) => return Err(NoDevice(format!("'{name}' is a device, not a null input source"))),
            InputSpec::Silence => NullSource::Silence,
            InputSpec::File(path) => {
                let data = loophole_engine::media::wav::read_wav_file(path)
                    .map_err(|e| NoDevice(format!("cannot play {} into the null input ({e})", path.display())))?;
                let data = loophole_engine::media::resample::resample(&data, sample_rate);
                NullSource::File { left: data.left, right: data.right, pos: 0 }
            }
            InputSpec::Loopback { .. } => {
                let Some((tap, tap_blocks)) = loopback else {
                    return Err(NoDevice("the loopback input has no output to listen to".into()));
                };
                let len = sample_rate.max(1) as usize * LOOPBACK_HISTORY_SECONDS;
                NullSource::Loopback(Loopback {
                    tap,
                    tap_blocks,
                    history: vec![0.0; len * 2],
                    next: 0,
                    first: None,
                    line: None,
                    us_per_sample: 1e6 / sample_rate.max(1) as f64,
                    stats,
                })
            }
        };
        let extra_us = match spec {
            InputSpec::Loopback { latency_ms } => latency_ms * 1e3,
            _ => 0.0,
        };
        let block = block.max(1);
        let block_us = block as f64 * 1e6 / sample_rate.max(1) as f64;
        let (mut slot, back) = InputSlot::new(core, fail_after);
        let config = NullConfig { sample_rate, channels: 2, block };
        let stream = NullStream::start(config, move |buf, info| {
            // The block was captured from one block plus the latency before its deadline.
            let capture_us = host::us_of(info.deadline) - block_us - extra_us;
            source.fill(buf, capture_us);
            slot.push(&*buf, 2, capture_us, block_us + extra_us);
        })
        .map_err(|e| NoDevice(format!("cannot start the null input ({e})")))?;
        Ok(InputStream { running: Running::Null(stream), back })
    }

    /// Stops the input (the callback is dropped) and takes its core back (`None` if the backend
    /// kept the callback for more than a second). Thread: control.
    pub fn stop(self) -> Option<InputCore> {
        let InputStream { running, mut back } = self;
        match running {
            Running::Device(stream) => drop(stream),
            Running::Null(stream) => stream.stop(),
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            if let Ok(core) = back.pop() {
                return Some(core);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_specs_parse() {
        assert_eq!(InputSpec::parse("silence"), Ok(InputSpec::Silence));
        assert_eq!(InputSpec::parse("NULL"), Ok(InputSpec::Silence));
        assert_eq!(InputSpec::parse("file:a b.wav"), Ok(InputSpec::File("a b.wav".into())));
        assert_eq!(InputSpec::parse("loopback"), Ok(InputSpec::Loopback { latency_ms: DEFAULT_LOOPBACK_MS }));
        assert_eq!(InputSpec::parse("loopback:12.5"), Ok(InputSpec::Loopback { latency_ms: 12.5 }));
        assert!(InputSpec::parse("loopback:-1").is_err());
        assert!(InputSpec::parse("loopback:x").is_err());
        assert!(InputSpec::parse("file:").is_err());
        assert_eq!(InputSpec::parse("hw:1,0"), Ok(InputSpec::Device("hw:1,0".into())));
    }

    #[test]
    fn the_core_converts_to_stereo_and_counts_what_does_not_fit() {
        let (mut core, mut rx) = InputCore::new(100); // rings of 400 frames
        core.push(&[0.5f32, -0.5, 0.25, -0.25], 2, 10.0, 1.0);
        core.push(&[i16::MAX, 0, 0, 7], 2, 20.0, 1.0);
        core.push(&[16_384i16], 1, 30.0, 1.0);
        let b: Vec<_> = std::iter::from_fn(|| rx.blocks.pop().ok()).collect();
        assert_eq!(b.iter().map(|b| (b.frame, b.frames)).collect::<Vec<_>>(), [(0, 2), (2, 2), (4, 1)]);
        assert_eq!(b[2].capture_us, 30.0);
        let s: Vec<f32> = std::iter::from_fn(|| rx.samples.pop().ok()).collect();
        assert_eq!(&s[..4], &[0.5, -0.5, 0.25, -0.25]);
        assert!((s[4] - 1.0).abs() < 1e-4 && s[5] == 0.0, "i16 full scale is 1.0: {s:?}");
        assert_eq!(&s[8..], &[0.5, 0.5], "mono is heard on both sides");
        // 500 frames do not fit into the 400-frame ring: dropped, and the counter moves on.
        core.push(&vec![0.0f32; 1000], 2, 40.0, 1.0);
        core.push(&[1.0f32, 1.0], 2, 50.0, 1.0);
        assert_eq!(rx.stats.dropped(), 500);
        assert_eq!(rx.blocks.pop().unwrap().frame, 505);
        assert_eq!(rx.stats.frames(), 506);
    }

    #[test]
    fn errors_are_sorted_into_xruns_notices_and_failures() {
        let (core, _rx) = InputCore::new(1000);
        let stats = core.stats();
        stats.report(&cpal::Error::new(ErrorKind::Xrun));
        stats.report(&cpal::Error::new(ErrorKind::DeviceChanged));
        stats.report(&cpal::Error::new(ErrorKind::RealtimeDenied));
        assert_eq!((stats.xruns(), stats.errors(), stats.take_failure()), (1, 2, None));
        stats.report(&cpal::Error::new(ErrorKind::DeviceNotAvailable));
        stats.report(&cpal::Error::new(ErrorKind::StreamInvalidated));
        assert_eq!(stats.take_failure(), Some(ErrorKind::DeviceNotAvailable), "the first failure is kept");
        assert_eq!(stats.take_failure(), None, "and taken once");
        assert_eq!(stats.errors(), 4);
    }

    #[test]
    fn the_slot_hands_its_core_back_and_the_fault_hook_fails_it_like_a_device() {
        let (core, mut rx) = InputCore::new(1000);
        let stats = core.stats();
        let (mut slot, mut back) = InputSlot::new(core, Some(300));
        for k in 0..5 {
            slot.push(&[0.5f32; 200], 2, k as f64 * 100_000.0, 0.0);
        }
        // Blocks 0..2 (frames 0..300) came; the fourth callback found 300 frames taken and failed.
        assert_eq!(stats.take_failure(), Some(ErrorKind::StreamInvalidated));
        assert_eq!(stats.frames(), 300);
        assert!(back.pop().is_err(), "the slot keeps the core while it lives");
        drop(slot);
        let mut core = back.pop().expect("the core comes back when the callback is dropped");
        assert_eq!(core.frame(), 300);
        // The successor's first block comes 0.5 s (500 frames) after the failed one's end.
        core.resume_after_failure();
        core.push(&[0.25f32; 200], 2, 300_000.0 + 500_000.0, 0.0);
        let b: Vec<_> = std::iter::from_fn(|| rx.blocks.pop().ok()).collect();
        assert_eq!(b.len(), 4);
        assert_eq!((b[3].frame, b[3].lost, b[2].lost), (800, 500, 0));
        assert_eq!((stats.lost(), stats.failovers()), (500, 1));
    }
}
