//! The control thread of a performance: every [`super::TICK`] it reads the audio position, feeds
//! the script's due actions into the inbox, drains the inbox (the script, MIDI pads, the
//! terminal, the window, later the conductor; a performer's presses are logged with their
//! source) and is the only caller of Pulse, ticks Pulse ahead of the audio, hands tempo changes
//! to the audio core, logs and prints what happened, and publishes the snapshot every display
//! reads. Thread: control (the main thread, or the performance's thread when the window has the
//! main thread: see `crate::window`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use loophole_engine::EngineConfig;
use loophole_engine::control::{ControlCommand, HealthView, LinkView, Resolved, Snapshot, TransportView};
use loophole_engine::model::TempoChange;
use loophole_engine::pulse::{Action, Pulse, StopMode, When};
use loophole_engine::signal::Meters;
use loophole_engine::time::{Beats, SampleTime, TempoMap};

use super::lines::{bar_label, describe, event_sample, queued, status_line};
use crate::audio::EngineSwap;
use crate::board::Board;
use crate::clock::{ClockSnapshot, Transport};
use crate::eventlog::EventLog;
use crate::health::HealthFigures;
use crate::inbox::{Inbox, PressAt, Request, Source};
use crate::input::Performance;
use crate::link::Request as LinkRequest;
use crate::link::control::LinkControl;
use crate::midi::out::MidiOut;
use crate::midi::{AudioPosition, HostTime, MidiRig};
use crate::{BadInput, say, warn_line};

/// Block size assumed for the lookahead until a device has made its first callback.
pub(super) const GUESSED_DEVICE_BLOCK: u64 = 1024;
/// Extra lookahead beyond two blocks.
const LOOKAHEAD_MARGIN: Duration = Duration::from_millis(10);
/// How often the snapshot is published (display rate).
const SNAPSHOT_EVERY: Duration = Duration::from_millis(33);

/// The control thread's state.
pub(super) struct Control<'a> {
    pub(super) perf: &'a Performance,
    pub(super) pulse: Pulse,
    pub(super) sample_rate: u32,
    pub(super) transport: Arc<Transport>,
    /// Sends Pulse's tempo changes to the audio core.
    pub(super) tempo_tx: rtrb::Producer<TempoChange>,
    /// The changes sent so far, applied as the core applies them without Link (for the
    /// position of events in the terminal lines) and kept to rebuild the core's map after a
    /// device failure.
    pub(super) tempo_map: TempoMap,
    pub(super) tempo_log: Vec<TempoChange>,
    /// Beats per sample at the fastest tempo reached or scheduled (for the lookahead).
    pub(super) fastest_bps: f64,
    /// The next script action to send to the inbox.
    pub(super) next_action: usize,
    /// Every input's requests.
    pub(super) inbox: Inbox,
    pub(super) log: Option<EventLog>,
    pub(super) started: Instant,
    /// Presses refused (bad names, Pulse refusals), from every source.
    pub(super) refused: usize,
    /// Block size to assume for the lookahead when the backend does not say.
    pub(super) block_hint: u64,
    /// MIDI controller and ports, if any.
    pub(super) midi: Option<MidiRig>,
    /// External MIDI out of routed tracks, if any.
    pub(super) midi_out: Option<MidiOut>,
    /// Link, when the node plays on it.
    pub(super) link: Option<LinkControl>,
    /// Hands the audio core a fresh engine after a Link stop.
    pub(super) swap: Option<EngineSwap>,
    /// The transport start the script is being performed for.
    pub(super) epoch: u64,
    /// Meters of every engine built so far (the first, then fresh ones).
    pub(super) meters: Vec<Arc<Meters>>,
    /// The master peak over the whole performance (the snapshot takes the meters' peaks).
    pub(super) peak: f32,
    /// `quit` was asked for.
    pub(super) quit: bool,
    /// Where the snapshot is published.
    pub(super) board: Arc<Board>,
    /// The band, when the node plays with a conductor (`--conductor`).
    pub(super) band: Option<crate::band::Band>,
    /// The health figures of the audio path, as the device supervisor last read them.
    pub(super) health: HealthView,
    /// The last warning, for the snapshot's status line.
    pub(super) notice: Option<String>,
    snapshots: u64,
    last_snapshot: Option<Instant>,
}

impl<'a> Control<'a> {
    /// The control state for a performance of `perf` with `pulse`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        perf: &'a Performance,
        pulse: Pulse,
        sample_rate: u32,
        transport: Arc<Transport>,
        tempo_tx: rtrb::Producer<TempoChange>,
        log: Option<EventLog>,
        block_hint: u64,
        meters: Arc<Meters>,
    ) -> Control<'a> {
        Control {
            perf,
            pulse,
            sample_rate,
            transport,
            tempo_tx,
            tempo_map: TempoMap::new(sample_rate, perf.session.tempo, perf.session.beats_per_bar),
            tempo_log: Vec::new(),
            fastest_bps: perf.session.tempo.beats_per_sample(sample_rate),
            next_action: 0,
            inbox: Inbox::new(),
            log,
            started: Instant::now(),
            refused: 0,
            block_hint,
            midi: None,
            midi_out: None,
            link: None,
            swap: None,
            epoch: 0,
            meters: vec![meters],
            peak: 0.0,
            quit: false,
            board: Board::new(),
            band: None,
            health: HealthView::default(),
            notice: None,
            snapshots: 0,
            last_snapshot: None,
        }
    }

    fn beats_per_frame(&self) -> f64 {
        self.transport.snapshot().beats_per_sample
    }

    /// The beat heard at `sample` (for the terminal lines): the tempo map without Link, the
    /// audio position's tempo with it.
    pub(super) fn beat_of_sample(&self, sample: SampleTime) -> f64 {
        match &self.link {
            Some(_) => {
                let snap = self.transport.snapshot();
                snap.beat + (sample - snap.sample) as f64 * snap.beats_per_sample
            }
            None => self.tempo_map.block(sample, 0).beat_at_first_sample.0,
        }
    }

    /// The bar label of `beat`.
    pub(super) fn bar(&self, beat: f64) -> String {
        bar_label(self.pulse.core(), beat)
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
    pub(super) fn send_tempo_changes(&mut self) {
        for c in self.pulse.take_tempo_changes() {
            if let Some(t) = c.tempo {
                self.fastest_bps = self.fastest_bps.max(t.beats_per_sample(self.sample_rate));
            }
            self.tempo_map.change(c.beat, c.tempo, c.beats_per_bar);
            self.tempo_log.push(c);
            if self.tempo_tx.push(c).is_err() {
                self.warn(format!("the tempo change at beat {} was dropped (the audio thread's ring is full)", c.beat));
            }
        }
    }

    /// A tempo map with every change sent so far, for a rebuilt audio core. Control thread.
    pub(super) fn rebuilt_tempo_map(&self) -> TempoMap {
        let mut map = TempoMap::new(self.sample_rate, self.perf.session.tempo, self.perf.session.beats_per_bar);
        for c in &self.tempo_log {
            map.change(c.beat, c.tempo, c.beats_per_bar);
        }
        map
    }

    /// Prints a warning and keeps it for the snapshot's status line.
    pub(super) fn warn(&mut self, line: String) {
        warn_line(format_args!("loophole: warning: {line}"));
        self.notice = Some(line);
    }

    /// One control tick: feeds the script, performs what the inbox holds, ticks Pulse ahead of
    /// the audio, drains Pulse's events and publishes the snapshot.
    pub(super) fn step(&mut self) -> anyhow::Result<()> {
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
        let inbox = self.inbox.sender();
        while let Some(a) = self.perf.script.actions.get(self.next_action).copied() {
            if a.beat.0 - lookahead > now.0 || !snap.playing {
                break;
            }
            self.next_action += 1;
            match ControlCommand::from_action(&a.action, &self.perf.session) {
                Some(command) => {
                    inbox.send(Request::Command { source: Source::Script, at: PressAt::Beat(a.beat), command });
                }
                None => {
                    self.reject(format!("script action at beat {} names nothing in the session", a.beat));
                }
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
            let host = HostTime::now();
            midi.clock_mut().observe_heard(pos, host, heard);
            let (presses, warnings) = midi.poll_presses(pos, host);
            for w in warnings {
                warn_line(format_args!("loophole: {w}"));
            }
            for p in presses {
                match ControlCommand::from_action(&p.action, &self.perf.session) {
                    Some(command) => {
                        inbox.send(Request::Command { source: Source::Midi, at: PressAt::Beat(p.beat), command });
                    }
                    None => {
                        self.refused += 1;
                        midi.note_refused();
                    }
                }
            }
        }
        for request in self.inbox.drain() {
            self.apply(request, now, snap.playing)?;
        }
        self.band_step(now, Beats(now.0 + lookahead))?;
        if let Err(e) = self.pulse.tick(now, Beats(now.0 + lookahead)) {
            self.warn(format!("at beat {:.2}: {e}", now.0));
        }
        self.send_tempo_changes();
        self.drain()?;
        if let Some(midi) = &mut self.midi {
            let beat = midi.heard_beat(HostTime::now());
            let view = self.pulse.core().view(beat);
            if let Some(w) = midi.update_leds(beat, Some(&view)) {
                warn_line(format_args!("loophole: {w}"));
            }
        }
        if self.last_snapshot.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY) {
            self.publish(&snap);
        }
        Ok(())
    }

    /// Performs one request from the inbox at beat `now` (the beat the next block starts at).
    fn apply(&mut self, request: Request, now: Beats, playing: bool) -> anyhow::Result<()> {
        let (source, at, command) = match request {
            Request::Command { source, at, command } => (source, at, command),
            Request::Status => {
                let snap = self.transport.snapshot();
                self.publish(&snap);
                if let Some(s) = self.board.latest() {
                    for line in s.status_lines(&self.perf.session) {
                        say(format_args!("{line}"));
                    }
                }
                return Ok(());
            }
            Request::Help => {
                say(format_args!("{}", loophole_engine::control::HELP));
                return Ok(());
            }
            Request::Quit => {
                self.quit = true;
                return Ok(());
            }
            Request::Link(on) => {
                match &self.link {
                    Some(link) => link.clock().enable(on),
                    None => self.warn("link on/off: this performance plays without Link (--no-link)".into()),
                }
                return Ok(());
            }
            Request::Invalid { source, why } => {
                self.reject(format!("{}: {why}; type help for the commands", source.name()));
                return Ok(());
            }
        };
        // What a performer pressed (not the script's actions, which the offline render's log
        // has no line for, nor the band's entries, which have `executed` lines) goes to the log
        // with its source: the window's clicks show as `ui`.
        if !matches!(source, Source::Script | Source::Conductor)
            && let Some(log) = &mut self.log
        {
            let line = serde_json::json!({
                "event": "press", "from": source.name(), "command": command.name(), "what": command, "beat": now.0,
            });
            log.write_value(line, Some(self.started.elapsed().as_secs_f64()))?;
        }
        // In a band, a performer's press goes to the conductor and comes back as an entry of
        // the log (made by `band_step`), as every node's does.
        if self.band.is_some() && source != Source::Conductor {
            self.send_to_conductor(source, command);
            return Ok(());
        }
        self.perform(source, at, command, now, playing)?;
        Ok(())
    }

    /// Performs a command at beat `now`: resolved against the set, then pressed in Pulse (or
    /// the transport).
    pub(super) fn perform(
        &mut self,
        source: Source,
        at: PressAt,
        command: ControlCommand,
        now: Beats,
        playing: bool,
    ) -> anyhow::Result<usize> {
        let resolved = match command.resolve(&self.perf.session) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(source, &command, e.to_string());
                return Ok(0);
            }
        };
        let action = match resolved {
            Resolved::Transport(start) => {
                match at {
                    PressAt::Exact(beat, id) => self.band_transport(start, beat, id),
                    _ => self.transport_request(start, now),
                }
                return Ok(0);
            }
            Resolved::Pulse(Action::SetTempo { bpm }) if self.link.is_some() => {
                // With Link the session's tempo is the clock: Link applies it at once.
                if !(loophole_engine::time::Bpm::MIN..=loophole_engine::time::Bpm::MAX).contains(&bpm.0) {
                    self.refuse(source, &command, "the tempo must be 20..=999 BPM".into());
                } else if let Some(link) = &mut self.link
                    && !link.request(LinkRequest::Tempo(bpm.0))
                {
                    self.warn("tempo change dropped: the audio thread is not taking requests".into());
                }
                return Ok(0);
            }
            Resolved::Pulse(a) => a,
        };
        if !playing && source != Source::Script {
            self.reject(format!(
                "{}: '{}' while the transport is stopped: start it first",
                source.name(),
                command.name()
            ));
            return Ok(0);
        }
        let (beat, when) = match at {
            PressAt::Now => (now, When::Pressed),
            PressAt::Beat(b) => (b, When::Pressed),
            PressAt::Exact(b, id) => (b, When::At { beat: b, id }),
        };
        // Ticked up to the press first, as the offline renderer does, so the schedule is the
        // render's whatever the tick rate. A press is made at its beat (a script's action, the
        // beat a pad was heard at), which quantisation and immediate stops count from. An exact
        // press ahead of the audio folds Pulse's plan only up to now: the displays still show
        // what plays until then.
        let fold = Beats(beat.0.min(now.0));
        let ticked = self.pulse.tick(fold, beat);
        let pressed_at = match when {
            When::Pressed => beat,
            When::At { .. } => fold,
        };
        let pressed = ticked.and_then(|()| self.pulse.press_when(action, when, pressed_at));
        self.send_tempo_changes();
        let scheduled = pressed.as_ref().map_or(0, Vec::len);
        match pressed {
            Ok(_) => {
                // What the press will do and when, from every source (scripts too): the terminal
                // says what will happen, not only what happened.
                let core = self.pulse.core();
                let view = core.view(now);
                for line in queued(&action, &view, &self.perf.session, |b| bar_label(core, b)) {
                    say(format_args!("{line}"));
                }
            }
            Err(e) => {
                if source == Source::Midi
                    && let Some(midi) = &mut self.midi
                {
                    midi.note_refused();
                }
                self.refuse(source, &command, e.to_string());
            }
        }
        Ok(scheduled)
    }

    /// Refuses `command` from `source` with the reason: said, kept for the snapshot and counted.
    pub(super) fn refuse(&mut self, source: Source, command: &ControlCommand, why: String) {
        let what = match source {
            Source::Script => "script action".to_string(),
            other => format!("{} '{}'", other.name(), command.name()),
        };
        self.reject(format!("{what} refused: {why}"));
    }

    /// Something refused: said as a warning and counted in the summary and the snapshot.
    pub(super) fn reject(&mut self, line: String) {
        self.refused += 1;
        self.warn(line);
    }

    /// Starts or stops the transport: Link's start/stop with Link; without it the node's clock
    /// always runs, so a stop silences every track at once and a start says so.
    fn transport_request(&mut self, start: bool, now: Beats) {
        match &mut self.link {
            Some(link) => {
                let r = if start { link.start_request() } else { LinkRequest::Stop };
                if !link.request(r) {
                    self.warn("transport request dropped: the audio thread is not taking requests".into());
                }
            }
            None if start => {
                say(format_args!("transport: the node's own clock always runs (no Link); launch a scene or a clip"))
            }
            None => {
                let stop = Action::StopAll { mode: StopMode::Immediate };
                if let Err(e) = self.pulse.press(stop, now) {
                    self.warn(format!("stop: {e}"));
                }
                say(format_args!("transport: every track stops at bar {} (the node's clock runs on)", self.bar(now.0)));
            }
        }
    }

    /// Publishes the snapshot for the displays.
    fn publish(&mut self, snap: &ClockSnapshot) {
        let launcher = self.pulse.core().view(Beats(snap.beat));
        let current = self.meters.last().cloned();
        let meters = match &current {
            Some(m) => (0..self.perf.session.tracks.len())
                .map(|t| m.take_track(loophole_engine::model::TrackId(t as u32)))
                .collect(),
            None => Vec::new(),
        };
        let master = current.map_or([0.0; 2], |m| m.take_master());
        self.peak = self.peak.max(master[0]).max(master[1]);
        self.snapshots += 1;
        self.last_snapshot = Some(Instant::now());
        let health = HealthView { refused: self.refused as u64, ..self.health.clone() };
        self.board.publish(Snapshot {
            seq: self.snapshots,
            launcher,
            transport: TransportView {
                playing: snap.playing,
                beat: snap.beat,
                tempo: snap.tempo,
                sample: snap.sample,
                sample_rate: self.sample_rate,
            },
            link: self.link.as_ref().map(|l| LinkView { enabled: l.clock().is_enabled(), peers: l.clock().peers() }),
            meters,
            master,
            health,
            notice: self.notice.clone(),
            conductor: self.band_view(snap),
        });
    }

    /// Takes the audio path's figures (from the device supervisor) for the next snapshot.
    pub(super) fn set_health(&mut self, device: String, f: &HealthFigures, stream_underruns: u64) {
        self.health = HealthView {
            device,
            dsp_load: f.load.smoothed,
            dsp_peak: f.load.peak,
            xruns: f.xruns,
            refused: self.refused as u64,
            stream_underruns,
        };
    }

    /// The periodic status line (from a fresh snapshot).
    pub(super) fn status_line(&mut self) -> String {
        let snap = self.transport.snapshot();
        self.publish(&snap);
        self.board.latest().map_or_else(String::new, |s| status_line(&s))
    }

    /// With Link: polls it, logs what changed, and gives the audio core a fresh engine after a
    /// stop (so the next start performs the script from an empty schedule).
    fn link_step(&mut self, snap: &ClockSnapshot) -> anyhow::Result<()> {
        let Some(link) = &mut self.link else { return Ok(()) };
        let polled = link.poll(snap);
        for line in &polled.human {
            say(format_args!("{line}"));
        }
        if let Some(log) = &mut self.log {
            let host_time = self.started.elapsed().as_secs_f64();
            for v in polled.lines {
                log.write_value(v, Some(host_time))?;
            }
        }
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
        let meters = signal.meters();
        if let Some(swap) = &mut self.swap
            && swap.send(signal)
        {
            self.pulse = pulse;
            self.meters.push(meters);
        }
        Ok(())
    }

    /// Writes a device change (`what`: `fallback` or `switched-back`) at `sample` to the log.
    pub(super) fn log_device(
        &mut self,
        what: &str,
        device: &str,
        why: Option<&str>,
        sample: u64,
    ) -> anyhow::Result<()> {
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

    /// Logs and prints what Pulse reported.
    pub(super) fn drain(&mut self) -> anyhow::Result<()> {
        while let Some(event) = self.pulse.poll_event() {
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
            let bar_of = |b: f64| bar_label(self.pulse.core(), b);
            if let Some(line) = describe(&event, self.perf, beat_of_sample, bar_of) {
                say(format_args!("{line}"));
            }
            self.band_executed(&event)?;
        }
        Ok(())
    }
}
