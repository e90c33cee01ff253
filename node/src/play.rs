//! `loophole-node play` and `demo`: a live performance.
//!
//! The audio thread (a cpal device or the null device) runs [`AudioCore`]; this module is the
//! control thread (the main thread). Every [`TICK`] it reads the audio position from the
//! [`Transport`] atomics and:
//!
//! - presses each script action once the audio reaches `action.beat - lookahead`, passing
//!   `now = action.beat` (exact, so the schedule is the offline render's), after ticking Pulse
//!   to that beat as the renderer does;
//! - ticks Pulse with `horizon = now + lookahead` (lookahead = two blocks + 10 ms, in beats, at
//!   the fastest tempo the performance has reached or scheduled);
//! - right after each press and tick, sends Pulse's tempo and time-signature changes (scene
//!   tempos, the arrangement's tempo changes) to the audio core through a ring: without Link the
//!   core applies them to its `TempoMap` at their beats, as the offline renderer does; with Link
//!   it commits them to the Link session at their beats;
//! - drains Pulse's events into the `--log` file (with `host_time` and `"source": "live"`) and
//!   prints a short line per trigger;
//! - watches the device: if it reports a failure, or stops calling back, the core (Signal and
//!   its sample counter) is taken back from it and the performance carries on on the null device
//!   from the same sample, capturing to a WAV file so the audio is not lost; then, every
//!   [`switchback::RETRY`], it tries the device again and, once it is back, hands the core back
//!   to it at the sample the null device stopped at (`audio::switchback`). Both are said on the
//!   terminal and written to `--log` (`"event": "device"`);
//! - promotes the audio thread to realtime scheduling (`--realtime`), prints the DSP load and
//!   xruns every few seconds and logs them (see [`crate::health`]).
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
use loophole_engine::model::TempoChange;
use loophole_engine::pulse::{Pulse, PulseEvent};
use loophole_engine::signal::Meters;
use loophole_engine::time::{Beats, SampleTime, TempoMap};

use crate::audio::capture::Capture;
use crate::audio::device::{self, NoDevice, StartError};
use crate::audio::record::{InputSummary, LiveInput};
use crate::audio::switchback::{self, CpalOpener, Decision, DeviceOpener, Handover, SwitchBack, TestDevice};
use crate::audio::{AlsaMessages, AudioBackend, AudioCore, EngineSwap};
use crate::clock::{ClockSnapshot, Transport};
use crate::eventlog::{EventLog, LogSource};
use crate::health::{Health, HealthFigures};
use crate::input::{InputArgs, Performance};
use crate::link::control::LinkControl;
use crate::link::{LinkAudio, LinkClock, LinkOptions, Resume};
use crate::midi::out::MidiOut;
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
    /// Audio input (`--input`).
    pub audio_input: Option<crate::audio::input::InputSpec>,
    /// Record the input, aligned with the output, to this WAV file (`--record-input`).
    pub record_input: Option<PathBuf>,
    /// Ableton Link (`--link`, `--no-link`, `--stopped`, `--stdin-commands`).
    pub link: LinkOptions,
    /// MIDI ports and the controller mapping.
    pub midi: MidiOptions,
    /// Ask for realtime scheduling of the audio thread (`--realtime`, the default).
    pub realtime: bool,
}

/// What a performance did.
#[derive(Debug, Clone)]
pub struct PlaySummary {
    /// Frames played.
    pub frames: u64,
    /// Callbacks (blocks) rendered.
    pub blocks: u64,
    /// Device underruns and callback gaps, plus deadline misses of the null device.
    pub xruns: u64,
    /// DSP load (of the last backend), xruns and late starts, realtime scheduling.
    pub health: HealthFigures,
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
    /// Tempo and time-signature changes the audio thread could not hold
    /// ([`crate::clock::Transport::refused_tempo_changes`]).
    pub refused_tempo_changes: u64,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Times the performance switched back from the null device to its device.
    pub switched_back: u32,
    /// Frames of streamed clips played as silence because the disk reader was behind.
    pub stream_underruns: u64,
    /// What the input (`--input`) did, if there was one.
    pub input: Option<InputSummary>,
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
    sample_rate: u32,
    transport: Arc<Transport>,
    /// Sends Pulse's tempo changes to the audio core.
    tempo_tx: rtrb::Producer<TempoChange>,
    /// The changes sent so far, applied as the core applies them without Link (for the
    /// position of events in the terminal lines) and kept to rebuild the core's map after a
    /// device failure.
    tempo_map: TempoMap,
    tempo_log: Vec<TempoChange>,
    /// Beats per sample at the fastest tempo reached or scheduled (for the lookahead).
    fastest_bps: f64,
    next_action: usize,
    log: Option<EventLog>,
    started: Instant,
    refused: usize,
    /// Block size to assume for the lookahead when the backend does not say.
    block_hint: u64,
    /// MIDI controller and ports, if any.
    midi: Option<MidiRig>,
    /// External MIDI out of routed tracks, if any.
    midi_out: Option<MidiOut>,
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
        self.transport.snapshot().beats_per_sample
    }

    /// The beat heard at `sample` (for the terminal lines): the tempo map without Link, the
    /// audio position's tempo with it.
    fn beat_of_sample(&self, sample: SampleTime) -> f64 {
        match &self.link {
            Some(_) => {
                let snap = self.transport.snapshot();
                snap.beat + (sample - snap.sample) as f64 * snap.beats_per_sample
            }
            None => self.tempo_map.block(sample, 0).beat_at_first_sample.0,
        }
    }

    /// Lookahead in beats: two blocks plus [`LOOKAHEAD_MARGIN`], at the fastest tempo reached or
    /// scheduled (so it is long enough in time after a scheduled speed-up too).
    fn lookahead(&self) -> f64 {
        let block = self.transport.max_block().max(self.block_hint);
        let frames = 2.0 * block as f64 + LOOKAHEAD_MARGIN.as_secs_f64() * self.sample_rate as f64;
        frames * self.beats_per_frame().max(self.fastest_bps)
    }

    /// Sends the tempo and time-signature changes Pulse scheduled since the last call to the
    /// audio core. Called right after every press and tick.
    fn send_tempo_changes(&mut self) {
        for c in self.pulse.take_tempo_changes() {
            if let Some(t) = c.tempo {
                self.fastest_bps = self.fastest_bps.max(t.beats_per_sample(self.sample_rate));
            }
            self.tempo_map.change(c.beat, c.tempo, c.beats_per_bar);
            self.tempo_log.push(c);
            if self.tempo_tx.push(c).is_err() {
                warn_line(format_args!(
                    "loophole: warning: the tempo change at beat {} was dropped (the audio thread's ring is full)",
                    c.beat
                ));
            }
        }
    }

    /// A tempo map with every change sent so far, for a rebuilt audio core. Control thread.
    fn rebuilt_tempo_map(&self) -> TempoMap {
        let mut map = TempoMap::new(self.sample_rate, self.perf.session.tempo, self.perf.session.beats_per_bar);
        for c in &self.tempo_log {
            map.change(c.beat, c.tempo, c.beats_per_bar);
        }
        map
    }

    /// Presses what is due, ticks Pulse and drains its events.
    fn step(&mut self) -> anyhow::Result<()> {
        // With Link: the position is the beat the next block starts at; the script is performed
        // from its first action at each start, and not while the transport is stopped.
        let snap = self.transport.snapshot();
        self.link_step(&snap)?;
        // The beat the next block starts at (with the tempo changes already rendered).
        let now = Beats(snap.beat);
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
            self.send_tempo_changes();
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
        // Where the output says the next sample is heard, on the host clock: the MIDI clocks
        // measure the output latency from it.
        let heard = (snap.local_us_per_sample > 0.0).then_some((snap.sample, snap.local_us));
        if let Some(out) = &mut self.midi_out {
            // Without a heard time, sample `s` is taken to be heard two blocks after the
            // position passes it (see `MidiOut::step`).
            let block = self.transport.max_block().max(self.block_hint);
            let fallback = Duration::from_secs_f64(2.0 * block as f64 / self.sample_rate as f64);
            out.step(pos, HostTime::now(), fallback, heard);
        }
        if let Some(midi) = &mut self.midi {
            // A press is performed at the beat heard when it was played: the controller's
            // clock takes the measured output latency.
            let now = HostTime::now();
            midi.clock_mut().observe_heard(pos, now, heard);
            for line in midi.step(&mut self.pulse, pos, now) {
                warn_line(format_args!("loophole: {line}"));
            }
            self.send_tempo_changes();
        }
        if let Err(e) = self.pulse.tick(now, Beats(now.0 + lookahead)) {
            warn_line(format_args!("loophole: warning: at beat {:.2}: {e}", now.0));
        }
        self.send_tempo_changes();
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
        let (pulse, mut signal) = loophole_engine::build(
            self.perf.session.clone(),
            &EngineConfig { sample_rate: self.sample_rate, max_block: 1024, queue_capacity: 8192 },
        )
        .map_err(|e| BadInput(e.to_string()))
        .context("cannot build a fresh engine")?;
        if let Some(out) = &mut self.midi_out {
            out.connect(&mut signal);
        }
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

    /// Writes a device change (`what`: `fallback` or `switched-back`) at `sample` to the log.
    fn log_device(&mut self, what: &str, device: &str, why: Option<&str>, sample: u64) -> anyhow::Result<()> {
        let beat = self.beat_of_sample(sample as SampleTime);
        let host_time = Some(self.started.elapsed().as_secs_f64());
        if let Some(log) = &mut self.log {
            let v = serde_json::json!({
                "event": "device", "what": what, "device": device, "why": why, "sample": sample, "beat": beat,
            });
            log.write_value(v, host_time)?;
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
            let beat_of_sample = |s: SampleTime| self.beat_of_sample(s);
            let bar_of = |b: f64| bar_label(&self.pulse, b);
            if let Some(line) = describe(&event, self.perf, beat_of_sample, bar_of) {
                say(format_args!("{line}"));
            }
        }
        Ok(())
    }
}

/// The musician's `N.M` (bar, beat in the bar, from 1) of `beat`, counted across the scenes'
/// time-signature changes ([`Pulse::bar_position`]).
fn bar_label(pulse: &Pulse, beat: f64) -> String {
    let (bar, in_bar) = pulse.bar_position(Beats(beat));
    format!("{}.{}", bar + 1, (in_bar + 1e-6).floor() as i64 + 1)
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
///
/// `bar_of` labels a beat's bar ([`bar_label`]).
fn describe(
    event: &PulseEvent,
    perf: &Performance,
    beat_of_sample: impl Fn(SampleTime) -> f64,
    bar_of: impl Fn(f64) -> String,
) -> Option<String> {
    let session = &perf.session;
    let track_name = |t: loophole_engine::model::TrackId| session.tracks.get(t.index()).map_or("?", |t| t.id.as_str());
    let clip_name = |c: loophole_engine::model::ClipId| session.clips.get(c.index()).map_or("?", |c| c.id.as_str());
    let position = |beat: f64| format!("bar {}", bar_of(beat));
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
        PulseEvent::ClipEnded { track, clip, sample } => {
            Some(format!("{}  {}: {} ended", position(beat_of_sample(*sample)), track_name(*track), clip_name(*clip)))
        }
        PulseEvent::Refused { .. } => {
            warn_line(format_args!("loophole: warning: {}", crate::streaming::describe_refusal(event, session)?));
            None
        }
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

/// What [`build_engine`] builds.
type Engine = (Pulse, AudioCore, Arc<Meters>, rtrb::Producer<TempoChange>);

/// Builds Pulse and an [`AudioCore`] whose clock starts at sample `start`: Link's when `link` is
/// given, else the sample counter mapped through `clock`; with the ring for tempo changes.
/// `connect` is given the Signal first (to connect external MIDI out).
fn build_engine(
    perf: &Performance,
    clock: TempoMap,
    sample_rate: u32,
    transport: &Arc<Transport>,
    start: u64,
    link: Option<LinkAudio>,
    connect: impl FnOnce(&mut loophole_engine::signal::Signal),
) -> anyhow::Result<Engine> {
    let (pulse, mut signal) = loophole_engine::build(
        perf.session.clone(),
        &EngineConfig { sample_rate, max_block: 1024, queue_capacity: 8192 },
    )
    .map_err(|e| BadInput(e.to_string()))
    .context("cannot build the engine")?;
    connect(&mut signal);
    let meters = signal.meters();
    let mut core = match link {
        Some(link) => AudioCore::with_link(signal, link, start as i64, transport.clone()),
        None => AudioCore::new(signal, clock, start as i64, transport.clone()),
    };
    let tempo_tx = core.tempo_changes();
    Ok((pulse, core, meters, tempo_tx))
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
    let mut perf = Performance::load(&opts.input)?;
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
    // The device to switch back to after a failure.
    let mut opener: Option<Box<dyn DeviceOpener>> = match (&opts.backend, test_device) {
        (Backend::Null, _) => None,
        (_, Some(t)) => Some(Box::new(t)),
        (Backend::Device(name), None) => {
            Some(Box::new(CpalOpener { name: name.clone(), sample_rate, buffer: opts.buffer }))
        }
    };
    let mut switch_back = SwitchBack::new(switchback::RETRY);
    let mut switched_back = 0u32;
    crate::streaming::prepare(&mut perf, sample_rate)?;
    let total = seconds.map(|s| (s * sample_rate as f64).round() as u64);
    let new_map = || TempoMap::new(sample_rate, perf.session.tempo, perf.session.beats_per_bar);
    let transport = Transport::new();
    let (link, link_audio) = match opts.link.enabled {
        true => {
            let (control, audio) = join_link(&opts.link, &perf, sample_rate);
            (Some(control), Some(audio))
        }
        false => (None, None),
    };
    let mut midi_out = None;
    let (pulse, mut core, meters, tempo_tx) =
        build_engine(&perf, new_map(), sample_rate, &transport, 0, link_audio, |signal| {
            let (out, lines) = MidiOut::open(&perf.session, opts.midi.backend().as_mut(), sample_rate, signal);
            for line in lines {
                warn_line(format_args!("loophole: {line}"));
            }
            midi_out = out;
        })?;
    let swap = link.is_some().then(|| core.engine_swap());
    let mut meters = vec![meters];

    let mut capture: Option<Capture> = None;
    if let Some(path) = &opts.capture {
        capture = Some(start_capture(&mut core, path, sample_rate, total)?);
    }
    let mut input = match &opts.audio_input {
        Some(spec) => {
            let limit = total.map(|t| t.saturating_sub(core.sample().max(0) as u64));
            let (rec, buffer) = (opts.record_input.as_deref(), opts.buffer);
            LiveInput::open(spec, rec, &mut core, &transport, sample_rate, buffer, null_block, limit)?
        }
        None => None,
    };
    let log = opts.log.as_deref().map(|p| EventLog::create(p, LogSource::Live)).transpose()?;
    if let Some(midi) = &mut midi {
        midi.set_sample_rate(sample_rate);
    }
    let mut control = Control {
        perf: &perf,
        pulse,
        sample_rate,
        transport: transport.clone(),
        tempo_tx,
        tempo_map: new_map(),
        tempo_log: Vec::new(),
        fastest_bps: perf.session.tempo.beats_per_sample(sample_rate),
        next_action: 0,
        log,
        started: Instant::now(),
        refused: 0,
        block_hint: match &plan {
            Some(p) => p.buffer().map_or(GUESSED_DEVICE_BLOCK, u64::from),
            None => null_block as u64,
        },
        midi,
        midi_out,
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
                    "loophole: the audio engine could not be taken back from the device; continuing with a fresh one at bar {}",
                    bar_label(&control.pulse, control.beat_of_sample(at as SampleTime))
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
                    build_engine(&perf, map, sample_rate, &transport, at, link_audio, |signal| {
                        if let Some(out) = midi_out {
                            out.connect(signal);
                        }
                    })?;
                control.tempo_tx = tempo_tx;
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
        None => match (fallback.clone(), opener.as_mut().filter(|_| test_active)) {
            (Some(why), _) => fall_back(why, Some(core), &mut control, &mut capture, &mut meters)?,
            (None, Some(test)) => match test.start(core) {
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
                    fall_back(why, core, &mut control, &mut capture, &mut meters)?
                }
            },
            (None, None) => {
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
    let mut health = Health::new(opts.realtime);
    loop {
        if let Some(input) = &mut input {
            input.step();
        }
        control.step()?;
        let host_time = control.started.elapsed().as_secs_f64();
        let (rt_warning, status) = health.tick(&backend, control.log.as_mut(), host_time)?;
        if let Some(w) = rt_warning {
            warn_line(format_args!("loophole: warning: {w}"));
        }
        if let Some(line) = status {
            let bar = bar_label(&control.pulse, transport.snapshot().beat);
            let refused = match transport.refused_tempo_changes() {
                0 => String::new(),
                n => format!(", {n} tempo change(s) refused (the audio thread's tempo map was full)"),
            };
            warn_line(format_args!("loophole: bar {bar}  {line}{refused}"));
        }
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
            health.retire(&backend);
            let core = backend.stop();
            let why = format!("{label} failed ({why})");
            fallback = Some(why.clone());
            let at = transport.rendered();
            backend = fall_back(why.clone(), core, &mut control, &mut capture, &mut meters)?;
            control.log_device("fallback", &label, Some(&why), at)?;
            if opener.is_some() {
                switch_back.lost(control.started.elapsed());
            }
            alsa.flush();
            last_progress = (transport.rendered(), Instant::now());
            paced_from = last_progress;
            continue;
        }
        if backend.is_null()
            && let Some(device) = opener.as_deref_mut()
        {
            let busy = control.swap.as_ref().is_some_and(EngineSwap::pending);
            match switch_back.poll(control.started.elapsed(), busy, device) {
                Decision::Wait => {}
                Decision::StillMissing(why) => tracing::debug!("{} is still missing: {why}", device.label()),
                Decision::SwitchBack => {
                    let label = device.label();
                    health.retire(&backend);
                    let at = transport.rendered();
                    let bar = bar_label(&control.pulse, control.beat_of_sample(at as SampleTime));
                    backend = match switchback::hand_back(backend, device, null_block) {
                        Handover::Back(back) => {
                            switched_back += 1;
                            control.block_hint = GUESSED_DEVICE_BLOCK;
                            warn_line(format_args!(
                                "loophole: {label} is back; switched back to it at bar {bar} (sample {at})"
                            ));
                            control.log_device("switched-back", &label, None, at)?;
                            back
                        }
                        Handover::Stayed { null, why } => {
                            switch_back.start_failed(control.started.elapsed());
                            warn_line(format_args!("loophole: {why}; staying on the null device"));
                            null
                        }
                        Handover::Lost(why) => {
                            switch_back.start_failed(control.started.elapsed());
                            fall_back(why, None, &mut control, &mut capture, &mut meters)?
                        }
                    };
                    alsa.flush();
                    last_progress = (transport.rendered(), Instant::now());
                    paced_from = last_progress;
                    continue;
                }
            }
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
    let figures = health.figures(&backend);
    let xruns = figures.xruns;
    drop(backend.stop());
    let input = match input {
        Some(input) => {
            Some(input.finish(total.map_or(transport.rendered(), |t| t.min(transport.rendered())) as SampleTime)?)
        }
        None => None,
    };
    control.drain()?;
    let midi = control.midi.take().map(MidiRig::finish);
    let midi_out = control.midi_out.take().map(MidiOut::finish);
    let refused = control.refused;
    health.finish(&figures, control.log.as_mut(), control.started.elapsed().as_secs_f64())?;
    if let (Some(log), Some(input)) = (&mut control.log, &input) {
        log.write_value(input.record(sample_rate), Some(control.started.elapsed().as_secs_f64()))?;
    }
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
        health: figures,
        dropped_capture: transport.dropped_capture(),
        peak,
        fell_back: fallback,
        capture,
        refused,
        refused_tempo_changes: transport.refused_tempo_changes(),
        interrupted,
        switched_back,
        stream_underruns: meters.iter().map(|m| m.stream_underruns()).sum(),
        input,
    };
    let mut status = format!(
        "{} {:.2} s ({} frames, {} blocks) on {on}; {}; {}; dropped capture frames {}; output peak {}",
        if interrupted { "stopped by Ctrl-C after" } else { "played" },
        frames as f64 / sample_rate as f64,
        frames,
        summary.blocks,
        if on.contains("null") {
            format!("deadline misses {xruns}, late callbacks {}", figures.late_starts)
        } else {
            format!("xruns {xruns}")
        },
        crate::health::summary(&figures),
        summary.dropped_capture,
        dbfs(peak),
    );
    if switched_back > 0 {
        status.push_str(&format!("; switched back from the null device {switched_back} time(s)"));
    }
    if let Some((path, n)) = &summary.capture {
        status.push_str(&format!("; captured {n} frames to {}", path.display()));
    }
    if let Some(input) = &summary.input {
        status.push_str(&format!("; {}", input.phrase()));
    }
    if let Some(link) = &control.link {
        let snap = transport.snapshot();
        status.push_str(&format!("; Link: {} peers, {:.2} BPM", link.clock().peers(), snap.tempo));
    }
    if summary.refused_tempo_changes > 0 {
        status.push_str(&format!(
            "; {} tempo change(s) refused (the audio thread's tempo map was full)",
            summary.refused_tempo_changes
        ));
    }
    if perf.session.clips.iter().any(|c| c.stream.is_some()) {
        status.push_str(&format!("; stream underruns {} frames", summary.stream_underruns));
    }
    say(format_args!("{status}"));
    if let Some(midi) = midi {
        say(format_args!("{}", midi.line()));
    }
    if let Some((_, line)) = midi_out {
        say(format_args!("{line}"));
    }
    Ok(summary)
}
