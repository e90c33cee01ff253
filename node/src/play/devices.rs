//! The device supervisor of a performance: picks where the audio plays (a cpal device, the test
//! device hook, or the null device), starts it, and every control tick watches it. A device that
//! reports a failure, stops calling back or plays faster than real time hands its core (Signal
//! and its sample counter) back, and the performance carries on on the null device from the same
//! sample, capturing to a WAV file so nothing is lost; every [`switchback::RETRY`] the device is
//! tried again and, once it is back, takes the core back at the sample the null device stopped at.
//! A device that fails within [`FAILS_AT_ONCE`] of its start [`GIVE_UP_AFTER`] times in a row
//! (ALSA's `null`) is given up. All of it is said on the terminal and written to `--log`
//! (`"event": "device"`). The fallback's capture never overwrites a file
//! ([`fallback_capture_path`]), and when it cannot be created the performance plays on without it.
//! Thread: control (the main thread).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use loophole_engine::time::SampleTime;

use super::control::{Control, GUESSED_DEVICE_BLOCK};
use super::setup::{build_engine, start_capture};
use super::{Backend, NULL_BLOCK, NULL_SAMPLE_RATE, PlayOptions, STALL, UNPACED};
use crate::audio::capture::Capture;
use crate::audio::device::{self, DevicePlan, NoDevice, StartError};
use crate::audio::switchback::{self, CpalOpener, Decision, DeviceOpener, Handover, SwitchBack, TestDevice};
use crate::audio::{AlsaMessages, AudioBackend, AudioCore};
use crate::health::Health;
use crate::link::Resume;
use crate::{BadInput, warn_line};

/// The capture a fallback writes when there is no `--capture`: `loophole-<stem>.wav` in `dir`,
/// or, if that exists, the first of `loophole-<stem>-2.wav`, `-3`, … that does not, so that a
/// second performance in the same folder never overwrites the first one's audio.
pub(crate) fn fallback_capture_path(dir: &std::path::Path, stem: &str) -> PathBuf {
    let taken = |p: &PathBuf| p.symlink_metadata().is_ok();
    let first = dir.join(format!("loophole-{stem}.wav"));
    if !taken(&first) {
        return strip_dot(first);
    }
    let n = (2u64..).find(|n| !taken(&dir.join(format!("loophole-{stem}-{n}.wav")))).unwrap_or(u64::MAX);
    strip_dot(dir.join(format!("loophole-{stem}-{n}.wav")))
}

/// `./x` as `x`, as the user would write it.
fn strip_dot(p: PathBuf) -> PathBuf {
    p.strip_prefix(".").map(std::path::Path::to_path_buf).unwrap_or(p)
}

/// Where a performance plays, and how it recovers. See the module docs.
pub(super) struct Devices {
    alsa: AlsaMessages,
    /// Frames per block of the null device.
    pub(super) null_block: usize,
    /// The device to open first, if one was found.
    plan: Option<DevicePlan>,
    /// The device to switch back to after a failure.
    opener: Option<Box<dyn DeviceOpener>>,
    /// The test hook stands in for the device.
    test_active: bool,
    switch_back: SwitchBack,
    /// Times the performance switched back to its device.
    pub(super) switched_back: u32,
    /// Why the performance moved to the null device, if it did.
    pub(super) fallback: Option<String>,
    /// Frames the performance lasts.
    total: Option<u64>,
    /// The output's sample rate.
    pub(super) sample_rate: u32,
    /// Where the current backend's clock started (a device that plays much faster is unpaced).
    paced_from: (u64, Instant),
    /// The last time the audio position moved.
    last_progress: (u64, Instant),
    /// When the device (not the null device) last started.
    device_since: Option<Instant>,
    /// Failures in a row within [`FAILS_AT_ONCE`] of the device's start.
    quick_failures: u32,
}

/// A device that fails this soon after it starts has failed "at once" (ALSA's `null` device
/// plays seconds ahead of the clock within milliseconds; a device that never calls back fails
/// after [`STALL`]).
pub(super) const FAILS_AT_ONCE: std::time::Duration = std::time::Duration::from_secs(3);
/// A device that fails at once this many times in a row is not tried again.
pub(super) const GIVE_UP_AFTER: u32 = 2;

impl Devices {
    /// Finds the device `opts` asks for (or the test hook's). A missing device is not an
    /// error: the performance will play on the null device and say why.
    pub(super) fn plan(opts: &PlayOptions) -> anyhow::Result<Devices> {
        let mut fallback: Option<String> = None;
        let alsa = AlsaMessages::collect();
        let null_block = opts.buffer.map_or(NULL_BLOCK, |b| b as usize);
        // The test hook that stands in for a device which fails and comes back.
        let test_device = match &opts.backend {
            Backend::Device(_) => TestDevice::from_env(null_block).map_err(BadInput)?,
            Backend::Null => None,
        };
        let test_active = test_device.is_some();
        let plan = match &opts.backend {
            Backend::Null => None,
            Backend::Device(_) if test_active => None,
            Backend::Device(name) => match device::find(name.as_deref(), opts.sample_rate, opts.buffer) {
                Ok(plan) => Some(plan),
                Err(NoDevice(why)) => {
                    fallback = Some(why);
                    None
                }
            },
        };
        let sample_rate = plan.as_ref().map_or(opts.sample_rate.unwrap_or(NULL_SAMPLE_RATE), |p| p.sample_rate());
        let opener: Option<Box<dyn DeviceOpener>> = match (&opts.backend, test_device) {
            (Backend::Null, _) => None,
            (_, Some(t)) => Some(Box::new(t)),
            (Backend::Device(name), None) => {
                let found_as = plan.as_ref().map(|p| p.label().to_string());
                Some(Box::new(CpalOpener { name: name.clone(), sample_rate, buffer: opts.buffer, found_as }))
            }
        };
        let now = (0, Instant::now());
        Ok(Devices {
            alsa,
            null_block,
            plan,
            opener,
            test_active,
            switch_back: SwitchBack::new(switchback::RETRY),
            switched_back: 0,
            fallback,
            total: None,
            sample_rate,
            paced_from: now,
            last_progress: now,
            device_since: None,
            quick_failures: 0,
        })
    }

    /// The block size to assume for the lookahead until the device says.
    pub(super) fn block_hint(&self) -> u64 {
        match &self.plan {
            Some(p) => p.buffer().map_or(GUESSED_DEVICE_BLOCK, u64::from),
            None => self.null_block as u64,
        }
    }

    /// Starts the audio with `core`: on the planned device, the test hook, or the null device.
    /// `total`: frames the performance lasts (for the capture a fallback starts).
    pub(super) fn start(
        &mut self,
        core: AudioCore,
        total: Option<u64>,
        control: &mut Control<'_>,
        capture: &mut Option<Capture>,
    ) -> anyhow::Result<AudioBackend> {
        self.total = total;
        let backend = match self.plan.take() {
            Some(plan) => {
                let what = format!("audio device '{}' ({})", plan.label(), plan.describe());
                match plan.start(core) {
                    Ok(stream) => {
                        warn_line(format_args!("loophole: playing on {what}"));
                        AudioBackend::Device(stream)
                    }
                    Err(failed) => {
                        let StartError { why: NoDevice(why), core } = *failed;
                        self.fallback = Some(why.clone());
                        self.fall_back(why, core, control, capture)?
                    }
                }
            }
            None => match (self.fallback.clone(), self.test_active) {
                (Some(why), _) => self.fall_back(why, Some(core), control, capture)?,
                (None, true) => {
                    let test = self.opener.as_mut().expect("the test hook is the opener");
                    match test.start(core) {
                        Ok(backend) => {
                            warn_line(format_args!(
                                "loophole: playing on {} (the {} test hook)",
                                test.label(),
                                switchback::TEST_DEVICE_ENV
                            ));
                            backend
                        }
                        Err(failed) => {
                            let StartError { why: NoDevice(why), core } = *failed;
                            self.fall_back(why, core, control, capture)?
                        }
                    }
                }
                (None, false) => {
                    match capture {
                        Some(c) => warn_line(format_args!(
                            "loophole: playing on the null device, paced in real time, and writing what it plays to {}",
                            c.path().display()
                        )),
                        None => warn_line(format_args!("loophole: playing on the null device, paced in real time")),
                    }
                    AudioBackend::start_null(core, self.null_block).context("cannot start the null audio device")?
                }
            },
        };
        self.alsa.flush();
        control.started = Instant::now();
        self.device_since = (!backend.is_null()).then(Instant::now);
        self.reset_watch(control);
        Ok(backend)
    }

    fn reset_watch(&mut self, control: &Control<'_>) {
        self.last_progress = (control.transport.rendered(), Instant::now());
        self.paced_from = self.last_progress;
    }

    /// Moves the performance to the null device, continuing at the core's sample (or, when the
    /// device kept the core, with a fresh engine there).
    fn fall_back(
        &mut self,
        why: String,
        core: Option<AudioCore>,
        control: &mut Control<'_>,
        capture: &mut Option<Capture>,
    ) -> anyhow::Result<AudioBackend> {
        let sample_rate = self.sample_rate;
        let transport = control.transport.clone();
        let mut core = match core {
            Some(core) => core,
            None => {
                // The device kept the engine: carry on with a fresh one at the same sample.
                let at = transport.rendered();
                warn_line(format_args!(
                    "loophole: the audio engine could not be taken back from the device; continuing with a fresh one at bar {}",
                    control.bar(control.beat_of_sample(at as SampleTime))
                ));
                let link_audio = control.link.as_mut().map(|link| {
                    let snap = transport.snapshot();
                    let resume = Resume { playing: snap.playing, epoch: snap.epoch, beat: snap.beat };
                    let (audio, requests, events) = link.clock().audio_side(sample_rate, at as i64, None, Some(resume));
                    link.set_audio_ends(requests, events);
                    audio
                });
                let map = control.rebuilt_tempo_map();
                let midi_out = &mut control.midi_out;
                let (pulse, mut core, m, tempo_tx) =
                    build_engine(control.perf, map, sample_rate, &transport, at, link_audio, |signal| {
                        if let Some(out) = midi_out {
                            out.connect(signal);
                        }
                    })?;
                control.tempo_tx = tempo_tx;
                if core.has_link() {
                    control.swap = Some(core.engine_swap());
                }
                control.pulse = pulse;
                control.meters.push(m);
                core
            }
        };
        if !core.is_capturing() {
            let path = fallback_capture_path(std::path::Path::new("."), &control.perf.file_stem());
            let limit = self.total.map(|t| t.saturating_sub(core.sample().max(0) as u64));
            match start_capture(&mut core, &path, sample_rate, limit) {
                Ok(c) => *capture = Some(c),
                // The music matters more than its copy: play on, and say that nothing is kept.
                Err(e) => warn_line(format_args!(
                    "loophole: warning: {e:#}; the null device plays on without writing what it plays"
                )),
            }
        }
        match capture {
            Some(c) => warn_line(format_args!(
                "loophole: {why}; playing on the null device, paced in real time, and writing what it plays to {}",
                c.path().display()
            )),
            None => warn_line(format_args!("loophole: {why}; playing on the null device, paced in real time")),
        }
        control.block_hint = self.null_block as u64;
        AudioBackend::start_null(core, self.null_block).context("cannot start the null audio device")
    }

    /// Watches the backend once per control tick: a failed, stalled or unpaced device hands over
    /// to the null device; on the null device, the device is tried again every
    /// [`switchback::RETRY`] and takes the performance back once it works.
    pub(super) fn watch(
        &mut self,
        mut backend: AudioBackend,
        health: &mut Health,
        control: &mut Control<'_>,
        capture: &mut Option<Capture>,
    ) -> anyhow::Result<AudioBackend> {
        let rendered = control.transport.rendered();
        if rendered != self.last_progress.0 {
            self.last_progress = (rendered, Instant::now());
        }
        let ahead = (rendered.saturating_sub(self.paced_from.0)) as f64 / self.sample_rate as f64
            - self.paced_from.1.elapsed().as_secs_f64();
        let failed = match backend.failure() {
            Some(why) => Some(why),
            None if backend.is_null() => None,
            None if self.last_progress.1.elapsed() > STALL => {
                Some(format!("it has not asked for audio for {} s", STALL.as_secs()))
            }
            None if ahead > UNPACED.as_secs_f64() => {
                Some(format!("it plays faster than real time, {ahead:.1} s ahead of the clock"))
            }
            None => None,
        };
        if let Some(why) = failed {
            let label = backend.label();
            if self.total.is_some_and(|t| rendered >= t) {
                // The performance is over (an unpaced device gets there at once): nothing to
                // carry on with; the caller stops the device.
                warn_line(format_args!("loophole: {label} failed ({why}) at the end of the performance"));
                return Ok(backend);
            }
            let quick = self.device_since.take().is_some_and(|t| t.elapsed() < FAILS_AT_ONCE);
            self.quick_failures = if quick { self.quick_failures + 1 } else { 0 };
            health.retire(&backend);
            let core = backend.stop();
            let why = format!("{label} failed ({why})");
            self.fallback = Some(why.clone());
            let at = control.transport.rendered();
            let backend = self.fall_back(why.clone(), core, control, capture)?;
            control.log_device("fallback", &label, Some(&why), at)?;
            if self.opener.is_some() && self.quick_failures >= GIVE_UP_AFTER {
                self.opener = None;
                let n = self.quick_failures;
                warn_line(format_args!(
                    "loophole: {label} failed within {} s of each of its last {n} starts; not trying it again (the performance stays on the null device)",
                    FAILS_AT_ONCE.as_secs()
                ));
                let why = format!("it failed within {} s of each of its last {n} starts", FAILS_AT_ONCE.as_secs());
                control.log_device("given-up", &label, Some(&why), at)?;
            } else if self.opener.is_some() {
                self.switch_back.lost(control.started.elapsed());
            }
            self.alsa.flush();
            self.reset_watch(control);
            return Ok(backend);
        }
        if !backend.is_null() {
            return Ok(backend);
        }
        let Some(device) = self.opener.as_deref_mut() else { return Ok(backend) };
        let busy = control.swap.as_ref().is_some_and(crate::audio::EngineSwap::pending);
        match self.switch_back.poll(control.started.elapsed(), busy, device) {
            Decision::Wait => Ok(backend),
            Decision::StillMissing(why) => {
                tracing::debug!("{} is still missing: {why}", device.label());
                Ok(backend)
            }
            Decision::SwitchBack => {
                let label = device.label();
                health.retire(&backend);
                let at = control.transport.rendered();
                let bar = control.bar(control.beat_of_sample(at as SampleTime));
                let backend = match switchback::hand_back(backend, device, self.null_block) {
                    Handover::Back(back) => {
                        self.switched_back += 1;
                        self.device_since = Some(Instant::now());
                        control.block_hint = GUESSED_DEVICE_BLOCK;
                        warn_line(format_args!(
                            "loophole: {label} is back; switched back to it at bar {bar} (sample {at})"
                        ));
                        control.log_device("switched-back", &label, None, at)?;
                        back
                    }
                    Handover::Stayed { null, why } => {
                        self.switch_back.start_failed(control.started.elapsed());
                        warn_line(format_args!("loophole: {why}; staying on the null device"));
                        null
                    }
                    Handover::Lost(why) => {
                        self.switch_back.start_failed(control.started.elapsed());
                        self.fall_back(why, None, control, capture)?
                    }
                };
                self.alsa.flush();
                self.reset_watch(control);
                Ok(backend)
            }
        }
    }
}
