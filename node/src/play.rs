//! `loophole-node play` and `demo`: a live performance.
//!
//! The audio thread (a cpal device or the null device) runs [`AudioCore`]; this module is the
//! control thread (the main thread). Every [`TICK`] it reads the audio position from the
//! [`Transport`] atomics and:
//!
//! - presses each script action once the audio reaches `action.beat - lookahead`, passing
//!   `now = action.beat` (exact, so the schedule is the offline render's), after ticking Pulse
//!   to that beat as the renderer does;
//! - ticks Pulse with `horizon = now + lookahead` (lookahead = two blocks + 10 ms, in beats);
//! - drains Pulse's events into the `--log` file (with `host_time` and `"source": "live"`) and
//!   prints a short line per trigger;
//! - watches the device: if it reports a failure, or stops calling back, the core (Signal and
//!   its sample counter) is taken back from it and the performance carries on on the null device
//!   from the same sample, capturing to a WAV file so the audio is not lost.
//!
//! It stops after `--seconds` of audio (default: the script's last action plus two bars, the
//! demo's length, or Ctrl-C), stops the audio, finishes the capture and the log, and prints a
//! status line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use loophole_engine::EngineConfig;
use loophole_engine::pulse::{Pulse, PulseEvent};
use loophole_engine::signal::Meters;
use loophole_engine::time::{Beats, SimClock};

use crate::audio::capture::Capture;
use crate::audio::device::{self, NoDevice, StartError};
use crate::audio::{AlsaMessages, AudioBackend, AudioCore, Transport};
use crate::eventlog::{EventLog, LogSource};
use crate::input::{InputArgs, Performance};
use crate::{BadInput, dbfs, say, warn_line};

/// How often the control thread wakes up.
pub const TICK: Duration = Duration::from_millis(2);
/// Frames per callback of the null device unless `--buffer` says otherwise.
pub const NULL_BLOCK: usize = 256;
/// Sample rate of the null device unless `--sample-rate` says otherwise.
pub const NULL_SAMPLE_RATE: u32 = 48_000;
/// A device that has not called back for this long has failed.
pub const STALL: Duration = Duration::from_secs(2);
/// A device that has played this much more audio than wall-clock time since it started is not
/// paced in real time (ALSA's `null` device, for one) and is replaced by the null device.
pub const UNPACED: Duration = Duration::from_millis(1500);
/// Block size assumed for the lookahead until a device has made its first callback.
const GUESSED_DEVICE_BLOCK: u64 = 1024;
/// Extra lookahead beyond two blocks.
const LOOKAHEAD_MARGIN: Duration = Duration::from_millis(10);

/// Where to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The null device (`--audio null`).
    Null,
    /// A cpal output device: by name, or the default one.
    Device(Option<String>),
}

/// What to play and how.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// The session and script.
    pub input: InputArgs,
    /// Where to play.
    pub backend: Backend,
    /// Sample rate (default: the device's, or [`NULL_SAMPLE_RATE`]).
    pub sample_rate: Option<u32>,
    /// Frames per device buffer (default: the device's, or [`NULL_BLOCK`]).
    pub buffer: Option<u32>,
    /// Length in seconds of audio; `None` for the performance's natural length, or until Ctrl-C.
    pub seconds: Option<f64>,
    /// JSON-lines event log.
    pub log: Option<PathBuf>,
    /// Capture what is played to this WAV file.
    pub capture: Option<PathBuf>,
}

/// What a performance did.
#[derive(Debug, Clone)]
pub struct PlaySummary {
    /// Frames played.
    pub frames: u64,
    /// Callbacks (blocks) rendered.
    pub blocks: u64,
    /// Device underruns plus late callbacks of the null device.
    pub xruns: u64,
    /// Frames that did not fit into the capture ring.
    pub dropped_capture: u64,
    /// Output peak (linear).
    pub peak: f32,
    /// Why the performance moved to the null device, if it did.
    pub fell_back: Option<String>,
    /// The capture file and the frames written to it.
    pub capture: Option<(PathBuf, u64)>,
    /// Script actions Pulse refused.
    pub refused: usize,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn install_ctrlc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
            tracing::warn!("cannot catch Ctrl-C ({e}); stop with --seconds");
        }
    });
    INTERRUPTED.store(false, Ordering::SeqCst);
}

/// The control thread's state.
struct Control<'a> {
    perf: &'a Performance,
    pulse: Pulse,
    clock: SimClock,
    transport: Arc<Transport>,
    next_action: usize,
    log: Option<EventLog>,
    started: Instant,
    refused: usize,
    /// Block size to assume for the lookahead when the backend does not say.
    block_hint: u64,
}

impl Control<'_> {
    fn beats_per_frame(&self) -> f64 {
        self.clock.tempo.beats_per_sample(self.clock.sample_rate)
    }

    /// Lookahead in beats: two blocks plus [`LOOKAHEAD_MARGIN`].
    fn lookahead(&self) -> f64 {
        let block = self.transport.max_block().max(self.block_hint);
        let frames = 2.0 * block as f64 + LOOKAHEAD_MARGIN.as_secs_f64() * self.clock.sample_rate as f64;
        frames * self.beats_per_frame()
    }

    /// Presses what is due, ticks Pulse and drains its events.
    fn step(&mut self) -> anyhow::Result<()> {
        let now = Beats(self.transport.rendered() as f64 * self.beats_per_frame());
        let lookahead = self.lookahead();
        while let Some(a) = self.perf.script.actions.get(self.next_action).copied() {
            if a.beat.0 - lookahead > now.0 {
                break;
            }
            self.next_action += 1;
            let result = self.pulse.tick(a.beat, a.beat).and_then(|()| self.pulse.press(a.action, a.beat));
            if let Err(e) = result {
                self.refused += 1;
                warn_line(format_args!("loophole: warning: script action at beat {} refused: {e}", a.beat));
            }
        }
        if let Err(e) = self.pulse.tick(now, Beats(now.0 + lookahead)) {
            warn_line(format_args!("loophole: warning: at beat {:.2}: {e}", now.0));
        }
        self.drain()
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        while let Some(event) = self.pulse.poll_event() {
            if let Some(log) = &mut self.log {
                log.write(&event, &self.perf.session, Some(self.started.elapsed().as_secs_f64()))?;
            }
            if let Some(line) = describe(&event, self.perf, self.beats_per_frame()) {
                say(format_args!("{line}"));
            }
        }
        Ok(())
    }
}

/// A short human line for an event, e.g. `bar 5.1  scene 'verse'  drums: start drums-busy`.
fn describe(event: &PulseEvent, perf: &Performance, beats_per_frame: f64) -> Option<String> {
    let session = &perf.session;
    let track_name = |t: loophole_engine::model::TrackId| session.tracks.get(t.index()).map_or("?", |t| t.id.as_str());
    let clip_name = |c: loophole_engine::model::ClipId| session.clips.get(c.index()).map_or("?", |c| c.id.as_str());
    let q = session.beats_per_bar.max(1e-9);
    let position = |beat: f64| {
        let bar = (beat / q + 1e-6).floor();
        let in_bar = ((beat - bar * q) + 1e-6).floor().max(0.0);
        format!("bar {}.{}", bar as i64 + 1, in_bar as i64 + 1)
    };
    match event {
        PulseEvent::Executed { kind, track, clip, scene, beat, late, .. } => {
            let mut line = position(beat.0);
            if let Some(s) = scene.and_then(|s| session.scenes.get(s.index())) {
                line.push_str(&format!("  scene '{}'", s.id));
            }
            line.push_str(&format!("  {}: {}", track_name(*track), kind.name()));
            if let Some(c) = clip {
                line.push(' ');
                line.push_str(clip_name(*c));
            }
            if *late {
                line.push_str("  (late: started phase-aligned)");
            }
            Some(line)
        }
        PulseEvent::ClipEnded { track, clip, sample } => Some(format!(
            "{}  {}: {} ended",
            position(*sample as f64 * beats_per_frame),
            track_name(*track),
            clip_name(*clip)
        )),
        PulseEvent::Dropped { id } => {
            warn_line(format_args!(
                "loophole: warning: the audio thread dropped trigger {} (its queue was full)",
                id.0
            ));
            None
        }
    }
}

/// Builds Pulse and an [`AudioCore`] whose clock starts at sample `start`.
fn build_engine(
    perf: &Performance,
    clock: SimClock,
    transport: &Arc<Transport>,
    start: u64,
) -> anyhow::Result<(Pulse, AudioCore, Arc<Meters>)> {
    let (pulse, signal) = loophole_engine::build(
        perf.session.clone(),
        &EngineConfig { sample_rate: clock.sample_rate, max_block: 1024, queue_capacity: 8192 },
    )
    .map_err(|e| BadInput(e.to_string()))
    .context("cannot build the engine")?;
    let meters = signal.meters();
    Ok((pulse, AudioCore::new(signal, clock, start as i64, transport.clone()), meters))
}

/// Plays a performance until its end or Ctrl-C and prints a status line. Thread: main thread.
pub fn run(opts: PlayOptions) -> anyhow::Result<PlaySummary> {
    let perf = Performance::load(&opts.input)?;
    let seconds = opts.seconds.or(perf.natural_seconds);
    install_ctrlc();

    let mut fallback: Option<String> = None;
    let mut alsa = AlsaMessages::collect();
    let plan = match &opts.backend {
        Backend::Null => None,
        Backend::Device(name) => match device::find(name.as_deref(), opts.sample_rate, opts.buffer) {
            Ok(plan) => Some(plan),
            Err(NoDevice(why)) => {
                fallback = Some(why);
                None
            }
        },
    };
    let sample_rate = plan.as_ref().map_or(opts.sample_rate.unwrap_or(NULL_SAMPLE_RATE), |p| p.sample_rate());
    let null_block = opts.buffer.map_or(NULL_BLOCK, |b| b as usize);
    let total = seconds.map(|s| (s * sample_rate as f64).round() as u64);
    let clock = SimClock { sample_rate, tempo: perf.session.tempo, quantum: perf.session.beats_per_bar };
    let transport = Transport::new();
    let (pulse, mut core, meters) = build_engine(&perf, clock, &transport, 0)?;
    let mut meters = vec![meters];

    let mut capture: Option<Capture> = None;
    if let Some(path) = &opts.capture {
        let (c, ring) = Capture::start(path, sample_rate, total)?;
        core.set_capture(ring);
        capture = Some(c);
    }
    let log = opts.log.as_deref().map(|p| EventLog::create(p, LogSource::Live)).transpose()?;
    let mut control = Control {
        perf: &perf,
        pulse,
        clock,
        transport: transport.clone(),
        next_action: 0,
        log,
        started: Instant::now(),
        refused: 0,
        block_hint: match &plan {
            Some(p) => p.buffer().map_or(GUESSED_DEVICE_BLOCK, u64::from),
            None => null_block as u64,
        },
    };
    // Press what is due at the very start before the first block is rendered.
    control.step()?;

    // Moves the performance to the null device, continuing at the core's sample.
    let fall_back = |why: String,
                     core: Option<AudioCore>,
                     control: &mut Control<'_>,
                     capture: &mut Option<Capture>,
                     meters: &mut Vec<Arc<Meters>>|
     -> anyhow::Result<AudioBackend> {
        let mut core = match core {
            Some(core) => core,
            None => {
                // The device kept the engine: carry on with a fresh one at the same sample.
                let at = transport.rendered();
                warn_line(format_args!(
                    "loophole: the audio engine could not be taken back from the device; continuing with a fresh one at bar {:.1}",
                    at as f64 * control.beats_per_frame() / clock.quantum + 1.0
                ));
                let (pulse, core, m) = build_engine(&perf, clock, &transport, at)?;
                control.pulse = pulse;
                meters.push(m);
                core
            }
        };
        if !core.is_capturing() {
            let path = PathBuf::from(format!("loophole-{}.wav", perf.file_stem()));
            let limit = total.map(|t| t.saturating_sub(core.sample().max(0) as u64));
            let (c, ring) = Capture::start(&path, sample_rate, limit)?;
            core.set_capture(ring);
            *capture = Some(c);
        }
        let path = capture.as_ref().map(|c| c.path().display().to_string()).unwrap_or_default();
        warn_line(format_args!(
            "loophole: {why}; playing on the null device, paced in real time, and writing what it plays to {path}"
        ));
        control.block_hint = null_block as u64;
        AudioBackend::start_null(core, null_block).context("cannot start the null audio device")
    };

    let mut backend = match plan {
        Some(plan) => {
            let what = format!("audio device '{}' ({})", plan.label(), plan.describe());
            match plan.start(core) {
                Ok(stream) => {
                    warn_line(format_args!("loophole: playing on {what}"));
                    AudioBackend::Device(stream)
                }
                Err(failed) => {
                    let StartError { why: NoDevice(why), core } = *failed;
                    fallback = Some(why.clone());
                    fall_back(why, core, &mut control, &mut capture, &mut meters)?
                }
            }
        }
        None => match fallback.clone() {
            Some(why) => fall_back(why, Some(core), &mut control, &mut capture, &mut meters)?,
            None => {
                match &capture {
                    Some(c) => warn_line(format_args!(
                        "loophole: playing on the null device, paced in real time, and writing what it plays to {}",
                        c.path().display()
                    )),
                    None => warn_line(format_args!("loophole: playing on the null device, paced in real time")),
                }
                AudioBackend::start_null(core, null_block).context("cannot start the null audio device")?
            }
        },
    };
    alsa.flush();
    control.started = Instant::now();
    // Where the device's clock started: the performance's first sample, or the first sample the
    // current backend played. A device that plays much faster than this is not paced.
    let mut paced_from = (transport.rendered(), Instant::now());

    let mut interrupted = false;
    let mut last_progress = (transport.rendered(), Instant::now());
    let mut xruns_before = 0;
    loop {
        control.step()?;
        let rendered = transport.rendered();
        if rendered != last_progress.0 {
            last_progress = (rendered, Instant::now());
        }
        let ahead =
            (rendered.saturating_sub(paced_from.0)) as f64 / sample_rate as f64 - paced_from.1.elapsed().as_secs_f64();
        let failed = match backend.failure() {
            Some(why) => Some(why),
            None if backend.is_null() => None,
            None if last_progress.1.elapsed() > STALL => {
                Some(format!("it has not asked for audio for {} s", STALL.as_secs()))
            }
            None if ahead > UNPACED.as_secs_f64() => {
                Some(format!("it plays faster than real time, {ahead:.1} s ahead of the clock"))
            }
            None => None,
        };
        if let Some(why) = failed {
            let label = backend.label();
            xruns_before += backend.xruns();
            let core = backend.stop();
            let why = format!("{label} failed ({why})");
            fallback = Some(why.clone());
            backend = fall_back(why, core, &mut control, &mut capture, &mut meters)?;
            alsa.flush();
            last_progress = (transport.rendered(), Instant::now());
            paced_from = last_progress;
            continue;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        if total.is_some_and(|t| rendered >= t) {
            break;
        }
        std::thread::sleep(TICK);
    }

    let on = backend.label();
    let xruns = xruns_before + backend.xruns();
    drop(backend.stop());
    control.drain()?;
    let refused = control.refused;
    if let Some(log) = control.log.take() {
        log.finish()?;
    }
    let capture = match capture {
        Some(c) => {
            let path = c.path().to_path_buf();
            Some((path, c.finish()?))
        }
        None => None,
    };
    let peak = meters.iter().map(|m| m.take_master()).fold(0f32, |p, [l, r]| p.max(l).max(r));
    let frames = transport.rendered();
    let summary = PlaySummary {
        frames,
        blocks: transport.blocks(),
        xruns,
        dropped_capture: transport.dropped_capture(),
        peak,
        fell_back: fallback,
        capture,
        refused,
        interrupted,
    };
    let mut status = format!(
        "{} {:.2} s ({} frames, {} blocks) on {on}; {} {}; dropped capture frames {}; output peak {}",
        if interrupted { "stopped by Ctrl-C after" } else { "played" },
        frames as f64 / sample_rate as f64,
        frames,
        summary.blocks,
        if on.contains("null") { "late callbacks" } else { "xruns" },
        xruns,
        summary.dropped_capture,
        dbfs(peak),
    );
    if let Some((path, n)) = &summary.capture {
        status.push_str(&format!("; captured {n} frames to {}", path.display()));
    }
    say(format_args!("{status}"));
    Ok(summary)
}
