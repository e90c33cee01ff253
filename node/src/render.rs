//! `loophole-node render`: the engine's offline [`Renderer`] (the same Pulse and Signal as live,
//! driven by a simulated clock) streamed block by block to a 32-bit float WAV file.
//!
//! The output is bit-identical whatever `--block` is, and identical to what `play` captures for
//! the same performance. The node adds no per-sample work: each block goes to the WAV writer as
//! one slice, the peak comes from the engine's meters, and events are drained once per block.
//!
//! Thread: Main thread (the render and the WAV writer run on it).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use loophole_engine::render::{RenderConfig, Renderer};
use loophole_engine::time::Beats;

use crate::eventlog::{EventLog, LogSource};
use crate::input::{InputArgs, Performance};
use crate::wav::FloatWavWriter;
use crate::{BadInput, dbfs, say, warn_line};

/// Length of a render when neither `--seconds`, a script nor the demo gives one.
pub const DEFAULT_SECONDS: f64 = 30.0;

/// What to render and how.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The session and script.
    pub input: InputArgs,
    /// Output WAV file.
    pub out: PathBuf,
    /// Frames per block.
    pub block: usize,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Length; `None` for the performance's natural length (or [`DEFAULT_SECONDS`]).
    pub seconds: Option<f64>,
    /// JSON-lines event log.
    pub log: Option<PathBuf>,
    /// Standard MIDI File of what routed tracks send to their external synths (`--midi-out`).
    pub midi_out: Option<PathBuf>,
    /// The inputs armed tracks record from (`--input [NAME=]SOURCE`).
    pub inputs: Vec<crate::takes::NamedInput>,
    /// Where takes go (`--takes-dir`; default `takes/` beside the session).
    pub takes_dir: Option<PathBuf>,
}

/// What a render did.
#[derive(Debug, Clone)]
pub struct RenderSummary {
    /// Frames written.
    pub frames: u64,
    /// Seconds of audio written.
    pub seconds: f64,
    /// Wall-clock time the render took.
    pub wall: Duration,
    /// Output peak (linear, the larger channel).
    pub peak: f32,
    /// Events the engine reported.
    pub events: u64,
    /// Script actions Pulse refused.
    pub refused: usize,
}

/// Runs a render and prints its summary line. Thread: main thread.
pub fn run(opts: &RenderOptions) -> anyhow::Result<RenderSummary> {
    let mut perf = Performance::load_for_render(&opts.input)?;
    crate::streaming::prepare(&mut perf, opts.sample_rate)?;
    let seconds = opts.seconds.or(perf.natural_seconds).unwrap_or(DEFAULT_SECONDS);
    if let Some(hint) = perf.launch_hint(None) {
        warn_line(format_args!("loophole: {hint}"));
    }
    let started = Instant::now();
    let mut renderer = Renderer::new(
        perf.session.clone(),
        perf.script.clone(),
        RenderConfig { sample_rate: opts.sample_rate, block: opts.block, seconds },
    )
    .map_err(|e| BadInput(e.to_string()))
    .context("cannot set up the render")?;
    if opts.midi_out.is_some() && !perf.session.tracks.iter().any(|t| t.midi_out.is_some()) {
        return Err(BadInput(
            "--midi-out: no track of this session has midi_out = \"PORT\"; there is no external MIDI to write".into(),
        )
        .into());
    }
    let mut midi_events = Vec::new();
    let mut tempos = vec![(Beats::ZERO, renderer.tempo().0)];
    let mut wav = FloatWavWriter::create(&opts.out, opts.sample_rate, 2)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut log = opts.log.as_deref().map(|p| EventLog::create(p, LogSource::Render)).transpose()?;
    let session_file = match &opts.input.source {
        crate::input::Source::File(p) => Some(p.clone()),
        crate::input::Source::Demo => None,
    };
    let records = perf.script.actions.iter().any(|a| matches!(a.action, loophole_engine::pulse::Action::Record(_)));
    let mut recording = if !opts.inputs.is_empty() || (records && perf.session.tracks.iter().any(|t| t.input.is_some()))
    {
        let inputs = crate::takes::load_inputs(&opts.inputs, &perf.session, opts.sample_rate)?;
        let dir = opts.takes_dir.clone().unwrap_or_else(|| match &session_file {
            Some(f) => loophole_engine::record::writer::default_dir(f),
            None => PathBuf::from("takes"),
        });
        Some(crate::takes::RenderRecording::start(&mut renderer, inputs, &dir)?)
    } else {
        None
    };
    let meters = renderer.signal().meters();
    let total = renderer.total_frames();
    if seconds > LONG_RENDER_SECONDS {
        // A stray script entry far away makes a long, large file: say so before spending the time.
        warn_line(format_args!(
            "loophole: rendering {} of audio ({:.0} s), about {} to {}",
            minutes(seconds),
            seconds,
            size_text(crate::wav::HEADER_LEN + total * 2 * 4),
            opts.out.display()
        ));
    }

    let progress = std::io::stderr().is_terminal().then(|| progress_bar(total, opts.sample_rate));
    let mut buf = vec![0f32; opts.block * 2];
    let mut events = 0u64;
    let mut since_progress = 0u64;
    loop {
        let n = renderer.render_block(&mut buf);
        if n == 0 {
            break;
        }
        wav.write(&buf[..n * 2]).with_context(|| format!("cannot write {}", opts.out.display()))?;
        if opts.midi_out.is_some() {
            for e in renderer.take_midi_out() {
                midi_events.push((e, renderer.beat_at(e.sample)));
            }
            // The render cuts blocks at tempo changes: a new tempo starts at the next block.
            let tempo = renderer.tempo().0;
            if tempos.last().is_some_and(|(_, t)| *t != tempo) {
                tempos.push((renderer.beat_at(renderer.position() as i64), tempo));
            }
        }
        while let Some(event) = renderer.poll_event() {
            events += 1;
            if let Some(log) = &mut log {
                log.write(&event, &perf.session, None)?;
            }
            if let Some(line) = crate::streaming::describe_refusal(&event, &perf.session) {
                warn_line(format_args!("loophole: warning: {line}"));
            }
        }
        if let Some(rec) = &mut recording {
            rec.poll(&perf.session, &mut log)?;
        }
        since_progress += n as u64;
        if let Some(bar) = &progress
            && since_progress >= opts.sample_rate as u64 / 10
        {
            bar.set_position(renderer.position());
            since_progress = 0;
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let frames = wav.finish().with_context(|| format!("cannot finish {}", opts.out.display()))?;
    let record_line = match recording {
        Some(rec) => {
            let tempo = renderer.tempo().0;
            Some(rec.finish(&perf.session, session_file.as_deref(), |_| tempo, &mut log)?)
        }
        None => None,
    };
    if let Some(log) = log {
        log.finish()?;
    }
    let midi_line = match &opts.midi_out {
        Some(path) => {
            let n = crate::smf::write(path, &perf.session, &midi_events, &tempos)?;
            let lost = renderer.lost_midi_out();
            let lost = if lost > 0 { format!(" ({lost} lost: the ring was full)") } else { String::new() };
            format!("; {n} MIDI messages{lost} -> {}", path.display())
        }
        None => String::new(),
    };
    if opts.seconds.is_some()
        && let Some(w) = perf.unplayed_script_warning(renderer.beat_at(renderer.position() as i64).0)
    {
        warn_line(format_args!("loophole: warning: {w}"));
    }
    for (beat, err) in renderer.errors() {
        warn_line(format_args!("loophole: warning: script action at beat {beat} refused: {err}"));
    }
    let wall = started.elapsed();
    let [l, r] = meters.take_master();
    let summary = RenderSummary {
        frames,
        seconds: frames as f64 / opts.sample_rate as f64,
        wall,
        peak: l.max(r),
        events,
        refused: renderer.errors().len(),
    };
    say(format_args!(
        "rendered {} frames ({:.2} s of audio) in {:.2} s wall, {:.1}x realtime, peak {}, {} events -> {}{midi_line}",
        summary.frames,
        summary.seconds,
        wall.as_secs_f64(),
        summary.seconds / wall.as_secs_f64().max(1e-9),
        dbfs(summary.peak),
        summary.events,
        opts.out.display()
    ));
    if let Some(line) = record_line {
        say(format_args!("{line}"));
    }
    Ok(summary)
}

/// A render longer than this (10 minutes) says its length and size before it starts.
pub const LONG_RENDER_SECONDS: f64 = 600.0;

/// `2504.2` as `41:44`.
fn minutes(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// A byte count in the unit a person reads (`1.1 GB`, `230 MB`).
fn size_text(bytes: u64) -> String {
    match bytes as f64 {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b => format!("{:.0} kB", b / 1e3),
    }
}

fn progress_bar(total: u64, sample_rate: u32) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template("{spinner} rendering [{bar:40}] {percent:>3}% {msg} eta {eta}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("{:.0} s of audio", total as f64 / sample_rate as f64));
    bar
}
