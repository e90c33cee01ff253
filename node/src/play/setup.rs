//! Setting a performance up: the engine (Pulse, and Signal inside the audio core), the capture
//! writer, and joining Link before the audio starts. Control thread (the main thread).

use std::sync::Arc;

use anyhow::Context as _;
use loophole_engine::EngineConfig;
use loophole_engine::model::TempoChange;
use loophole_engine::pulse::Pulse;
use loophole_engine::signal::Meters;
use loophole_engine::time::TempoMap;

use crate::audio::AudioCore;
use crate::audio::capture::Capture;
use crate::clock::Transport;
use crate::input::Performance;
use crate::link::control::LinkControl;
use crate::link::{LinkAudio, LinkClock, LinkOptions};
use crate::{BadInput, warn_line};

/// What [`build_engine`] builds.
pub(super) type Engine = (Pulse, AudioCore, Arc<Meters>, rtrb::Producer<TempoChange>);

/// Builds Pulse and an [`AudioCore`] whose clock starts at sample `start`: Link's when `link` is
/// given, else the sample counter mapped through `clock`; with the ring for tempo changes.
/// `connect` is given the Signal first (to connect external MIDI out).
pub(super) fn build_engine(
    perf: &Performance,
    clock: TempoMap,
    sample_rate: u32,
    transport: &Arc<Transport>,
    start: u64,
    link: Option<LinkAudio>,
    connect: impl FnOnce(&mut loophole_engine::signal::Signal),
) -> anyhow::Result<Engine> {
    build_engine_then(perf, sample_rate, transport, link, connect, || (clock, start))
}

/// [`build_engine`] whose clock and first sample are decided once the engine is built (a band
/// node picks its start on the band's clock as late as it can: building the engine takes time).
pub(super) fn build_engine_then(
    perf: &Performance,
    sample_rate: u32,
    transport: &Arc<Transport>,
    link: Option<LinkAudio>,
    connect: impl FnOnce(&mut loophole_engine::signal::Signal),
    clock: impl FnOnce() -> (TempoMap, u64),
) -> anyhow::Result<Engine> {
    let (pulse, mut signal) = loophole_engine::build(
        perf.session.clone(),
        &EngineConfig { sample_rate, max_block: 1024, queue_capacity: 8192 },
    )
    .map_err(|e| BadInput(e.to_string()))
    .context("cannot build the engine")?;
    connect(&mut signal);
    let (clock, start) = clock();
    let meters = signal.meters();
    let mut core = match link {
        Some(link) => AudioCore::with_link(signal, link, start as i64, transport.clone()),
        None => AudioCore::new(signal, clock, start as i64, transport.clone()),
    };
    let tempo_tx = core.tempo_changes();
    Ok((pulse, core, meters, tempo_tx))
}

/// Starts the capture writer for `core`; with Link, with the timing sidecar.
pub(super) fn start_capture(
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
pub(super) fn join_link(opts: &LinkOptions, perf: &Performance, sample_rate: u32) -> (LinkControl, LinkAudio) {
    let mut clock = LinkClock::new(perf.session.tempo.0, perf.session.beats_per_bar, true);
    let wait = if opts.join { crate::link::JOIN_WAIT } else { std::time::Duration::ZERO };
    let peers = clock.wait_for_session(wait, super::interrupted);
    let view = clock.view();
    let launch_solo = (!opts.stopped && peers == 0).then_some(perf.session.tempo.0);
    let (audio, requests, events) = clock.audio_side(sample_rate, 0, launch_solo, None);
    let mut control = LinkControl::new(clock, requests, events, sample_rate, view.tempo, launch_solo.is_some());
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
