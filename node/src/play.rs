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
use crate::audio::{AlsaMessages, AudioBackend, AudioCore, ClockSnapshot, EngineSwap, Transport};
use crate::eventlog::{EventLog, LogSource};
use crate::input::{InputArgs, Performance};
use crate::link::control::LinkControl;
use crate::link::{LinkAudio, LinkClock, LinkOptions, Resume};
use crate::midi::{AudioPosition, HostTime, MidiOptions, MidiRig};
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
    /// Ableton Link (`--link`, `--no-link`, `--stopped`, `--stdin-commands`).
    pub link: LinkOptions,
    /// MIDI ports and the controller mapping.
    pub midi: MidiOptions,
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
    /// MIDI controller and ports, if any.
    midi: Option<MidiRig>,
    /// Link, when the node plays on it.
    link: Option<LinkControl>,
    /// Hands the audio core a fresh engine after a Link stop.
    swap: Option<EngineSwap>,
    /// The transport start the script is being performed for.
    epoch: u64,
    /// Meters of engines built after the first.
    new_meters: Vec<Arc<Meters>>,
    /// `quit` was typed on stdin.
    quit: bool,
}

impl Control<'_> {
    fn beats_per_frame(&self) -> f64 {
        match &self.link {
            Some(_) => self.transport.snapshot().beats_per_sample,
            None => self.clock.tempo.beats_per_sample(self.clock.sample_rate),
        }
    }

    /// Lookahead in beats: two blocks plus [`LOOKAHEAD_MARGIN`].
    fn lookahead(&self) -> f64 {
        let block = self.transport.max_block().max(self.block_hint);
        let frames = 2.0 * block as f64 + LOOKAHEAD_MARGIN.as_secs_f64() * self.clock.sample_rate as f64;
        frames * self.beats_per_frame()
    }

    /// Presses what is due, ticks Pulse and drains its events.
    fn step(&mut self) -> anyhow::Result<()> {
        // With Link: the position is the beat the next block starts at; the script is performed
        // from its first action at each start, and not while the transport is stopped.
        let snap = self.transport.snapshot();
        self.link_step(&snap)?;
        let rendered = self.transport.rendered();
        let now = match &self.link {
            Some(_) => Beats(snap.beat),
            None => Beats(rendered as f64 * self.beats_per_frame()),
        };
        if self.link.is_some() && snap.epoch != self.epoch {
            self.epoch = snap.epoch;
            self.next_action = 0;
        }
        let lookahead = self.lookahead();
        while let Some(a) = self.perf.script.actions.get(self.next_action).copied() {
            if a.beat.0 - lookahead > now.0 || !snap.playing {
                break;
            }
            self.next_action += 1;
            let result = self.pulse.tick(a.beat, a.beat).and_then(|()| match &mut self.midi {
                Some(midi) => midi.press(&mut self.pulse, a.action, a.beat),
                None => self.pulse.press(a.action, a.beat),
            });
            if let Err(e) = result {
                self.refused += 1;
                warn_line(format_args!("loophole: warning: script action at beat {} refused: {e}", a.beat));
            }
        }
        let pos = AudioPosition {
            sample: snap.sample.max(0) as u64,
            beat: Beats(snap.beat),
            beats_per_sample: snap.beats_per_sample,
        };
        if let Some(midi) = &mut self.midi {
            for line in midi.step(&mut self.pulse, pos, HostTime::now()) {
                warn_line(format_args!("loophole: {line}"));
            }
        }
        if let Err(e) = self.pulse.tick(now, Beats(now.0 + lookahead)) {
            warn_line(format_args!("loophole: warning: at beat {:.2}: {e}", now.0));
        }
        self.drain()
    }

    /// With Link: polls it, logs what changed, and gives the audio core a fresh engine after a
    /// stop (so the next start performs the script from an empty schedule).
    fn link_step(&mut self, snap: &ClockSnapshot) -> anyhow::Result<()> {
        let Some(link) = &mut self.link else { return Ok(()) };
        let polled = link.poll(snap);
        for w in &polled.warnings {
            warn_line(format_args!("loophole: warning: {w}"));
        }
        for line in &polled.human {
            say(format_args!("{line}"));
        }
        if let Some(log) = &mut self.log {
            let host_time = self.started.elapsed().as_secs_f64();
            for v in polled.lines {
                log.write_value(v, Some(host_time))?;
            }
        }
        self.quit |= polled.quit;
        if polled.stopped {
            self.fresh_engine()?;
        }
        if let Some(swap) = &mut self.swap {
            swap.collect();
        }
        Ok(())
    }

    /// Builds a fresh engine and sends its Signal to the audio core, which swaps it in once the
    /// stopped transport has faded out. The old engine's events are logged first.
    fn fresh_engine(&mut self) -> anyhow::Result<()> {
        if self.swap.as_ref().is_none_or(EngineSwap::pending) {
            return Ok(());
        }
        self.drain()?;
        let (pulse, signal) = loophole_engine::build(
            self.perf.session.clone(),
            &EngineConfig { sample_rate: self.clock.sample_rate, max_block: 1024, queue_capacity: 8192 },
        )
        .map_err(|e| BadInput(e.to_string()))
        .context("cannot build a fresh engine")?;
        self.new_meters.push(signal.meters());
        if let Some(swap) = &mut self.swap
            && swap.send(signal)
        {
            self.pulse = pulse;
            if let Some(midi) = &mut self.midi {
                midi.engine_replaced();
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        while let Some(event) = self.pulse.poll_event() {
            if let Some(midi) = &mut self.midi {
                midi.event(&event);
            }
            if let Some(log) = &mut self.log {
                let host_time = Some(self.started.elapsed().as_secs_f64());
                match (&self.link, event_sample(&event)) {
                    (Some(_), Some(sample)) => {
                        // The Link host time (µs) at which the event's sample is heard.
                        let host_us = self.transport.snapshot().host_of(sample);
                        log.write_with(&event, &self.perf.session, host_time, &[("host_us", host_us.into())])?;
                    }
                    _ => log.write(&event, &self.perf.session, host_time)?,
                }
            }
            if let Some(line) = describe(&event, self.perf, self.beats_per_frame()) {
                say(format_args!("{line}"));
            }
        }
        Ok(())
    }
}

/// The sample an event happened at, if it has one.
fn event_sample(event: &PulseEvent) -> Option<loophole_engine::time::SampleTime> {
    match event {
        PulseEvent::Executed { sample, .. } | PulseEvent::ClipEnded { sample, .. } => Some(*sample),
        #[allow(unreachable_patterns)]
        _ => None,
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
        // Follow-action decisions, playlist steps and tempo changes: no line yet.
        _ => None,
    }
}

/// Builds Pulse and an [`AudioCore`] whose clock starts at sample `start`: Link's when `link` is
/// given, else the sample counter.
fn build_engine(
    perf: &Performance,
    clock: SimClock,
    transport: &Arc<Transport>,
    start: u64,
    link: Option<LinkAudio>,
) -> anyhow::Result<(Pulse, AudioCore, Arc<Meters>)> {
    let (pulse, signal) = loophole_engine::build(
        perf.session.clone(),
        &EngineConfig { sample_rate: clock.sample_rate, max_block: 1024, queue_capacity: 8192 },
    )
    .map_err(|e| BadInput(e.to_string()))
    .context("cannot build the engine")?;
    let meters = signal.meters();
    let core = match link {
        Some(link) => AudioCore::with_link(signal, link, clock, start as i64, transport.clone()),
        None => AudioCore::new(signal, clock, start as i64, transport.clone()),
    };
    Ok((pulse, core, meters))
}

/// Starts the capture writer for `core`; with Link, with the timing sidecar.
fn start_capture(
    core: &mut AudioCore,
    path: &std::path::Path,
    rate: u32,
    limit: Option<u64>,
) -> anyhow::Result<Capture> {
    if core.has_link() {
        let (c, ring, timing) = Capture::start_timed(path, rate, limit)?;
        core.set_capture(ring);
        core.set_capture_timing(timing);
        Ok(c)
    } else {
        let (c, ring) = Capture::start(path, rate, limit)?;
        core.set_capture(ring);
        Ok(c)
    }
}

/// Enables Link and listens for a session for up to [`crate::link::JOIN_WAIT`] before the audio
/// starts. Alone, the node starts at its first sample on its own timeline (so a solo performance
/// is the offline render); with peers it starts on the session's next bar; with `--stopped` it
/// waits for the session (or a `play` command).
fn join_link(opts: &LinkOptions, perf: &Performance, sample_rate: u32) -> (LinkControl, LinkAudio) {
    let mut clock = LinkClock::new(perf.session.tempo.0, perf.session.beats_per_bar, true);
    let wait = if opts.join { crate::link::JOIN_WAIT } else { std::time::Duration::ZERO };
    let peers = clock.wait_for_session(wait, || INTERRUPTED.load(Ordering::SeqCst));
    let view = clock.view();
    let launch_solo = (!opts.stopped && peers == 0).then_some(perf.session.tempo.0);
    let (audio, requests, events) = clock.audio_side(sample_rate, 0, launch_solo, None);
    let mut control =
        LinkControl::new(clock, requests, events, sample_rate, view.tempo, launch_solo.is_some(), opts.stdin_commands);
    let what = match (peers, opts.stopped) {
        (0, false) => format!("no peers; playing on the node's own timeline at {:.2} BPM", perf.session.tempo.0),
        (0, true) => "no peers; stopped until a peer starts the session or `play`".to_string(),
        (n, false) => {
            control.request(control.start_request());
            format!("joined a session of {n} peer(s) at {:.2} BPM; starting on its next bar", view.tempo)
        }
        (n, true) => format!(
            "joined a session of {n} peer(s) at {:.2} BPM ({}); stopped until it starts or `play`",
            view.tempo,
            if view.playing { "playing" } else { "stopped" }
        ),
    };
    warn_line(format_args!("loophole: Link: {what}"));
    (control, audio)
}

/// Plays a performance until its end or Ctrl-C and prints a status line. Thread: main thread.
pub fn run(opts: PlayOptions) -> anyhow::Result<PlaySummary> {
    let perf = Performance::load(&opts.input)?;
    let seconds = opts.seconds.or(perf.natural_seconds);
    // A bad mapping file fails here, before any device or file is opened.
    let (mut midi, midi_lines) =
        MidiRig::open(&opts.midi, &perf.session, opts.midi.backend().as_mut()).map_err(|e| BadInput(e.to_string()))?;
    for line in midi_lines.into_iter().chain(midi.as_ref().map(MidiRig::describe)) {
        warn_line(format_args!("loophole: {line}"));
    }
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
    let (link, link_audio) = match opts.link.enabled {
        true => {
            let (control, audio) = join_link(&opts.link, &perf, sample_rate);
            (Some(control), Some(audio))
        }
        false => (None, None),
    };
    let (pulse, mut core, meters) = build_engine(&perf, clock, &transport, 0, link_audio)?;
    let swap = link.is_some().then(|| core.engine_swap());
    let mut meters = vec![meters];

    let mut capture: Option<Capture> = None;
    if let Some(path) = &opts.capture {
        capture = Some(start_capture(&mut core, path, sample_rate, total)?);
    }
    let log = opts.log.as_deref().map(|p| EventLog::create(p, LogSource::Live)).transpose()?;
    if let Some(midi) = &mut midi {
        midi.set_sample_rate(sample_rate);
    }
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
        midi,
        link,
        swap,
        epoch: 0,
        new_meters: Vec::new(),
        quit: false,
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
                let link_audio = control.link.as_mut().map(|link| {
                    let snap = transport.snapshot();
                    let resume = Resume { playing: snap.playing, epoch: snap.epoch, beat: snap.beat };
                    let (audio, requests, events) = link.clock().audio_side(sample_rate, at as i64, None, Some(resume));
                    link.set_audio_ends(requests, events);
                    audio
                });
                let (pulse, mut core, m) = build_engine(&perf, clock, &transport, at, link_audio)?;
                if core.has_link() {
                    control.swap = Some(core.engine_swap());
                }
                control.pulse = pulse;
                if let Some(midi) = &mut control.midi {
                    midi.engine_replaced();
                }
                meters.push(m);
                core
            }
        };
        if !core.is_capturing() {
            let path = PathBuf::from(format!("loophole-{}.wav", perf.file_stem()));
            let limit = total.map(|t| t.saturating_sub(core.sample().max(0) as u64));
            *capture = Some(start_capture(&mut core, &path, sample_rate, limit)?);
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
        if control.quit || total.is_some_and(|t| rendered >= t) {
            break;
        }
        std::thread::sleep(TICK);
    }

    let on = backend.label();
    let xruns = xruns_before + backend.xruns();
    drop(backend.stop());
    control.drain()?;
    let midi = control.midi.take().map(MidiRig::finish);
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
    meters.append(&mut control.new_meters);
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
    if let Some(link) = &control.link {
        let snap = transport.snapshot();
        status.push_str(&format!("; Link: {} peers, {:.2} BPM", link.clock().peers(), snap.tempo));
    }
    say(format_args!("{status}"));
    if let Some(midi) = midi {
        say(format_args!("{}", midi.line()));
    }
    Ok(summary)
}
