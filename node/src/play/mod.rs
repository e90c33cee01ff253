//! `loophole-node play` and `demo`: a live performance.
//!
//! The audio thread (a cpal device or the null device) runs [`crate::audio::AudioCore`]; this
//! module is the control thread (the main thread, or a spawned one when the window takes the main
//! thread: [`crate::window`]). Every [`TICK`] it reads the audio position
//! from the [`crate::clock::Transport`] atomics and ([`control`]):
//!
//! - sends each script action to the inbox once the audio reaches `action.beat - lookahead`,
//!   pressed at `action.beat` (exact, so the schedule is the offline render's), and drains the
//!   inbox (the script, MIDI pads, the terminal): the only caller of Pulse, ticking it to each
//!   press's beat first as the renderer does;
//! - ticks Pulse with `horizon = now + lookahead` (lookahead = two blocks + 10 ms, in beats, at
//!   the fastest tempo the performance has reached or scheduled);
//! - right after each press and tick, sends Pulse's tempo and time-signature changes (scene
//!   tempos, the arrangement's tempo changes) to the audio core through a ring: without Link the
//!   core applies them to its `TempoMap` at their beats, as the offline renderer does; with Link
//!   it commits them to the Link session at their beats;
//! - drains Pulse's events into the `--log` file (with `host_time` and `"source": "live"`) and
//!   prints a short line per trigger, and one per queued launch;
//! - publishes the snapshot every display reads ([`crate::board`]);
//! - watches the device ([`devices`]): if it reports a failure, or stops calling back, the core (Signal and
//!   its sample counter) is taken back from it and the performance carries on on the null device
//!   from the same sample, capturing to a WAV file so the audio is not lost; then, every
//!   [`switchback::RETRY`], it tries the device again and, once it is back, hands the core back
//!   to it at the sample the null device stopped at (`audio::switchback`), unless it failed at
//!   once twice in a row (then it is given up). All are said on the terminal and written to
//!   `--log` (`"event": "device"`);
//! - promotes the audio thread to realtime scheduling (`--realtime`), prints the DSP load and
//!   xruns every few seconds and logs them (see [`crate::health`]).
//!
//! The parts: [`setup`] (the engine, the capture, joining Link), [`control`], [`devices`],
//! [`lines`] (what the terminal prints) and [`summary`] (the end-of-play line).
//!
//! It stops after `--seconds` of audio (default: the script's last action plus two bars, the
//! demo's length, or Ctrl-C), stops the audio, finishes the capture and the log, and prints a
//! status line.

mod band;
mod control;
mod devices;
mod lines;
mod setup;
mod summary;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use loophole_engine::time::SampleTime;

pub use summary::PlaySummary;

use crate::audio::capture::Capture;
use crate::audio::record::LiveInput;
use crate::clock::Transport;
use crate::eventlog::{EventLog, LogSource};
use crate::health::Health;
use crate::input::{InputArgs, Performance};
use crate::link::LinkOptions;
use crate::midi::out::MidiOut;
use crate::midi::{MidiOptions, MidiRig};
use crate::{BadInput, warn_line};
use control::Control;
use devices::Devices;
use setup::{build_engine_then, join_link, start_capture};

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
    /// Play in a band with a conductor (`--conductor CODE`).
    pub band: Option<crate::band::BandOptions>,
    /// The launcher window (`--ui`, `--no-ui`; see [`crate::window`]).
    pub window: crate::ui_link::WindowOptions,
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

/// Whether Ctrl-C was pressed.
fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Plays a performance until its end or Ctrl-C and prints a status line. Thread: the control
/// thread (the main thread, or the one [`crate::window`] spawns).
pub fn run(opts: PlayOptions) -> anyhow::Result<PlaySummary> {
    // In a band the set comes from the conductor, with the band's log so far.
    let mut joined = opts.band.as_ref().map(crate::band::connect::join).transpose()?;
    let mut perf = match &joined {
        Some(j) => Performance { session: j.session.clone(), script: Default::default(), natural_seconds: None },
        None => Performance::load(&opts.input)?,
    };
    if !opts.link.enabled && opts.link.stopped {
        return Err(BadInput(
            "--stopped waits for a Link session to start, and this performance plays without Link (--no-link); \
             drop --stopped, or play with --link"
                .into(),
        )
        .into());
    }
    let seconds = opts.seconds.or(perf.natural_seconds);
    // A bad mapping file fails here, before any device or file is opened.
    let (mut midi, midi_lines) =
        MidiRig::open(&opts.midi, &perf.session, opts.midi.backend().as_mut()).map_err(|e| BadInput(e.to_string()))?;
    for line in midi_lines.into_iter().chain(midi.as_ref().map(MidiRig::describe)) {
        warn_line(format_args!("loophole: {line}"));
    }
    install_ctrlc();
    let mut devices = Devices::plan(&opts)?;
    let sample_rate = devices.sample_rate;
    crate::streaming::prepare(&mut perf, sample_rate)?;
    let frames = seconds.map(|s| (s * sample_rate as f64).round() as u64);
    let transport = Transport::new();
    let (link, link_audio) = match opts.link.enabled {
        true => {
            let (control, audio) = join_link(&opts.link, &perf, sample_rate);
            (Some(control), Some(audio))
        }
        false => (None, None),
    };
    let new_map = || loophole_engine::time::TempoMap::new(sample_rate, perf.session.tempo, perf.session.beats_per_bar);
    let mut midi_out = None;
    // In a band the node starts at the band's sample and beat a moment from now (band::start),
    // decided once the engine is built.
    let mut band_start = None;
    let (mut pulse, mut core, meters, tempo_tx) = build_engine_then(
        &perf,
        sample_rate,
        &transport,
        link_audio,
        |signal| {
            let (out, lines) = MidiOut::open(&perf.session, opts.midi.backend().as_mut(), sample_rate, signal);
            for line in lines {
                warn_line(format_args!("loophole: {line}"));
            }
            midi_out = out;
            if let Some(j) = &joined {
                band::keep_others_silent(j, signal);
            }
        },
        || match &joined {
            Some(j) => {
                let (at, p) = band::start_ahead(j, &perf, sample_rate);
                let clock = (p.tempo_map(&perf.session, sample_rate), p.sample as u64);
                band_start = Some((at, p));
                clock
            }
            None => (new_map(), 0),
        },
    )?;
    let start = core.sample().max(0) as u64;
    let map = band_start.as_ref().map(|(_, p)| p.tempo_map(&perf.session, sample_rate)).unwrap_or_else(new_map);
    // Frames the performance lasts are counted from its first sample.
    let total = frames.map(|f| start + f);
    if let Some((_, p)) = &band_start {
        band::join_pulse(&mut pulse, p)?;
    }
    let swap = link.is_some().then(|| core.engine_swap());
    let mut capture: Option<Capture> = None;
    if let Some(path) = &opts.capture {
        capture = Some(start_capture(&mut core, path, sample_rate, frames)?);
    }
    let mut input = match &opts.audio_input {
        Some(spec) => {
            let limit = total.map(|t| t.saturating_sub(core.sample().max(0) as u64));
            let (rec, buffer) = (opts.record_input.as_deref(), opts.buffer);
            LiveInput::open(spec, rec, &mut core, &transport, sample_rate, buffer, devices.null_block, limit)?
        }
        None => None,
    };
    let log = opts.log.as_deref().map(|p| EventLog::create(p, LogSource::Live)).transpose()?;
    if let Some(midi) = &mut midi {
        midi.set_sample_rate(sample_rate);
    }
    let mut control =
        Control::new(&perf, pulse, sample_rate, transport.clone(), tempo_tx, log, devices.block_hint(), meters);
    control.midi = midi;
    control.midi_out = midi_out;
    control.link = link;
    control.swap = swap;
    if let (Some(j), Some((_, p))) = (joined.take(), &band_start) {
        control.follow_band(j, p, map);
    }
    if opts.link.stdin_commands {
        crate::stdin::spawn(control.inbox.sender());
    }
    if let Some(window) = &opts.window.link {
        let _ = window.send(crate::ui_link::UiLink {
            board: control.board.clone(),
            inbox: control.inbox.sender(),
            session: perf.session.clone(),
        });
    }
    let inputs =
        crate::input::LiveInputs { stdin: opts.link.stdin_commands, controller: opts.midi.controller.is_some() };
    // A band node plays what the band's log launches: no hint.
    if let Some(hint) = perf.launch_hint(Some(inputs)).filter(|_| control.band.is_none()) {
        warn_line(format_args!("loophole: {hint}"));
    }
    // Press what is due at the very start before the first block is rendered.
    control.step()?;
    if let Some((at, _)) = &band_start {
        // The first sample is the band's at `at`: start the device then.
        band::wait_for_start(control.band.as_ref().map(|b| b.link.as_ref()), *at);
    }
    let mut backend = devices.start(core, total, &mut control, &mut capture)?;

    let mut interrupted = false;
    let mut health = Health::new(opts.realtime);
    loop {
        if let Some(input) = &mut input {
            input.step();
        }
        control.step()?;
        let host_time = control.started.elapsed().as_secs_f64();
        let (rt_warning, due) = health.tick(&backend, control.log.as_mut(), host_time)?;
        if let Some(w) = rt_warning {
            warn_line(format_args!("loophole: warning: {w}"));
        }
        let underruns: u64 = control.meters.iter().map(|m| m.stream_underruns()).sum();
        control.set_health(backend.label(), &health.figures(&backend), underruns);
        if due {
            control.band_clock_line()?;
            let line = control.status_line();
            let refused = match transport.refused_tempo_changes() {
                0 => String::new(),
                n => format!(", {n} tempo change(s) refused (the audio thread's tempo map was full)"),
            };
            warn_line(format_args!("loophole: {line}{refused}"));
        }
        backend = devices.watch(backend, &mut health, &mut control, &mut capture)?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        if control.quit || total.is_some_and(|t| transport.rendered() >= t) {
            break;
        }
        std::thread::sleep(TICK);
    }

    let on = backend.label();
    let figures = health.figures(&backend);
    drop(backend.stop());
    let input = match input {
        Some(input) => {
            Some(input.finish(total.map_or(transport.rendered(), |t| t.min(transport.rendered())) as SampleTime)?)
        }
        None => None,
    };
    control.drain()?;
    let midi = control.midi.take().map(MidiRig::finish);
    let midi_out = control.midi_out.take().map(|out| out.finish().1);
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
    let peak = control.meters.iter().map(|m| m.take_master()).fold(control.peak, |p, [l, r]| p.max(l).max(r));
    // An unpaced device (ALSA's `null`) may render past the end before it is stopped: what the
    // performance played is at most its length.
    let played = total.map_or(transport.rendered(), |t| transport.rendered().min(t));
    if opts.seconds.is_some()
        && !interrupted
        && !control.quit
        && let Some(w) = perf.unplayed_script_warning(control.beat_of_sample(played as SampleTime))
    {
        warn_line(format_args!("loophole: warning: {w}"));
    }
    let summary = PlaySummary {
        frames: played - start,
        blocks: transport.blocks(),
        xruns: figures.xruns,
        health: figures,
        dropped_capture: transport.dropped_capture(),
        peak,
        fell_back: devices.fallback.clone(),
        capture,
        refused: control.refused,
        refused_tempo_changes: transport.refused_tempo_changes(),
        interrupted,
        switched_back: devices.switched_back,
        stream_underruns: control.meters.iter().map(|m| m.stream_underruns()).sum(),
        input,
    };
    summary.print(
        &on,
        sample_rate,
        &perf,
        control.link.as_ref().map(|l| l.clock().peers()),
        transport.snapshot().tempo,
        midi,
        midi_out,
    );
    Ok(summary)
}
