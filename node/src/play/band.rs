//! The control thread's side of playing in a band ([`crate::band`]): each tick it takes what the
//! conductor client learned (entries of the log, refusals, the conductor going away and coming
//! back), makes the entries whose targets come within Pulse's horizon exactly at their targets,
//! sends the performers' presses to the conductor, and reports each command executed, to the
//! conductor and to `--log` (`"event": "executed"` with the command id, its seq, the beat and the
//! band sample). Thread: control.

use loophole_engine::control::{ConductorView, ControlCommand};
use loophole_engine::pulse::{Action, CommandId, PulseEvent, StopMode, When};
use loophole_engine::time::Beats;
use loophole_net_proto::node::{NodeEvent, Pressed};

use std::time::Duration;

use anyhow::Context as _;
use loophole_engine::model::TrackId;
use loophole_engine::pulse::Pulse;
use loophole_engine::signal::Signal;
use loophole_engine::time::TempoMap;

use super::control::Control;
use crate::band::connect::Joined;
use crate::band::{Band, ConductorLink, Entry, Pushed, StartPoint, start_point};
use crate::inbox::{PressAt, Source};
use crate::input::Performance;
use crate::say;
use crate::warn_line;

/// How far ahead of the band's time now a joining node starts: time to build its audio core and
/// start the device (it waits for the moment, [`wait_for_start`]).
pub(super) const START_AHEAD: Duration = Duration::from_millis(200);

/// The start point of a node that joined: the band's sample and beat [`START_AHEAD`] from now.
pub(super) fn start_ahead(joined: &Joined, perf: &Performance, rate: u32) -> (Duration, StartPoint) {
    let now = joined.link.band_time().unwrap_or_default();
    let at = now + START_AHEAD;
    (at, start_point(&perf.session, &joined.log, at, rate))
}

/// Keeps the tracks this node does not play out of its output.
pub(super) fn keep_others_silent(joined: &Joined, signal: &mut Signal) {
    for t in 0..joined.session.tracks.len() {
        let track = TrackId(t as u32);
        signal.set_heard(track, joined.tracks.contains(&track));
    }
}

/// Brings a fresh Pulse (and its Signal) to the band's state at the start: fast-forwarded through
/// every entry before it, every track's clip resumed phase-aligned.
pub(super) fn join_pulse(pulse: &mut Pulse, start: &StartPoint) -> anyhow::Result<()> {
    let done = pulse.join(&start.presses, start.beat).context("cannot join the band's performance")?;
    // The tempo changes of the way are already in the audio core's map (`StartPoint::tempo_map`).
    let _ = pulse.take_tempo_changes();
    for (beat, e) in done.refused {
        warn_line(format_args!("loophole: warning: the band's entry at beat {:.2} was refused here: {e}", beat.0));
    }
    let bar = super::lines::bar_label(pulse.core(), start.beat.0);
    warn_line(format_args!(
        "loophole: conductor: joining the band at bar {bar} (band sample {}), {} entries of its log replayed",
        start.sample,
        start.presses.len()
    ));
    Ok(())
}

/// Waits until the band's time reaches `at`, when the node's first sample is due (sleeping,
/// then spinning for the last millisecond). Says so if that moment has passed already.
pub(super) fn wait_for_start(link: Option<&dyn ConductorLink>, at: Duration) {
    let Some(link) = link else { return };
    loop {
        let Some(now) = link.band_time() else { return };
        if now >= at {
            let late = now - at;
            if late > Duration::from_millis(5) {
                warn_line(format_args!(
                    "loophole: warning: the node started {:.1} ms after its start point: it plays that much behind the band",
                    late.as_secs_f64() * 1e3
                ));
            }
            return;
        }
        let left = at - now;
        if left > Duration::from_millis(2) {
            std::thread::sleep(left - Duration::from_millis(1));
        } else {
            std::hint::spin_loop();
        }
    }
}

impl Control<'_> {
    /// Follows the band from the start point: the log held from there, the tempo map it started
    /// with (kept to rebuild the audio core's after a device failure).
    pub(super) fn follow_band(&mut self, joined: Joined, start: &StartPoint, map: TempoMap) {
        let Joined { link, mut log, name, tracks, session } = joined;
        let tracks = tracks.iter().map(|t| session.tracks[t.index()].id.clone()).collect();
        log.start_at(start.beat);
        self.tempo_map = map;
        self.tempo_log = start.tempo_changes.clone();
        for c in &start.tempo_changes {
            if let Some(t) = c.tempo {
                self.fastest_bps = self.fastest_bps.max(t.beats_per_sample(self.sample_rate));
            }
        }
        self.band = Some(Band::new(link, log, name, tracks));
        let line = serde_json::json!({
            "sample": start.sample, "beat": start.beat.0, "replayed": start.presses.len(),
        });
        if let Err(e) = self.band_line("band-start", line) {
            self.warn(format!("cannot write the log: {e:#}"));
        }
    }

    /// What the snapshot shows of the band.
    pub(super) fn band_view(&self, snap: &crate::clock::ClockSnapshot) -> Option<ConductorView> {
        let band = self.band.as_ref()?;
        let ahead_ms =
            band.link.band_time().map(|t| (snap.sample as f64 / self.sample_rate as f64 - t.as_secs_f64()) * 1e3);
        Some(ConductorView {
            node: band.name.clone(),
            connected: band.connected,
            rtt_ms: band.link.rtt().map(|d| d.as_secs_f64() * 1e3),
            ahead_ms,
            entries: band.log.len() as u64,
            late: band.log.late(),
            local_presses: band.local_presses,
        })
    }

    /// Takes the client's news and makes the entries due before `horizon` (in target order,
    /// before Pulse is ticked there).
    pub(super) fn band_step(&mut self, now: Beats, horizon: Beats) -> anyhow::Result<()> {
        let Some(band) = &mut self.band else { return Ok(()) };
        let mut events = Vec::new();
        while let Some(e) = band.link.try_event() {
            events.push(e);
        }
        for e in events {
            self.band_event(e, now)?;
        }
        let due = match &mut self.band {
            Some(band) => band.log.release(horizon),
            None => return Ok(()),
        };
        for entry in due {
            self.make_entry(entry, now)?;
        }
        Ok(())
    }

    fn band_event(&mut self, event: NodeEvent, now: Beats) -> anyhow::Result<()> {
        let Some(band) = &mut self.band else { return Ok(()) };
        match event {
            NodeEvent::ScheduleAt { seq, id, beat, command, origin } => {
                let entry = Entry { seq, id, target: beat, command, origin };
                match band.log.push(entry.clone()) {
                    Pushed::Held | Pushed::Duplicate => {}
                    Pushed::Late => {
                        self.warn(format!(
                            "conductor entry {seq} ('{}' from {}) arrived after its beat {:.2}: it starts phase-aligned, late",
                            entry.command.name(),
                            entry.origin,
                            beat.0
                        ));
                        self.make_entry(entry, now)?;
                    }
                }
            }
            NodeEvent::Welcomed { resume_from, head } => {
                if !band.connected {
                    band.connected = true;
                    say(format_args!(
                        "conductor: back; resuming after entry {resume_from} (the band's log is at {head})"
                    ));
                    self.band_line("welcomed", serde_json::json!({ "resume_from": resume_from, "head": head }))?;
                }
            }
            NodeEvent::CaughtUp { .. } => {}
            NodeEvent::Unreachable => {
                band.connected = false;
                self.warn(
                    "the conductor is unreachable: playing on with the band's log; presses now apply on this node only"
                        .into(),
                );
                self.band_line("unreachable", serde_json::json!({}))?;
            }
            NodeEvent::Local { command } => {
                band.local_presses += 1;
                say(format_args!("local (the conductor is unreachable): {}", command.name()));
                self.perform(Source::Stdin, PressAt::Now, command, now, true)?;
            }
            NodeEvent::PressDropped { command, .. } => {
                self.warn(format!(
                    "'{}' was not sequenced before the conductor went away: dropped (it would land late)",
                    command.name()
                ));
            }
            NodeEvent::PressRefused { reason, .. } => {
                band.refused += 1;
                self.reject(format!("the conductor refused the press: {reason}"));
            }
            NodeEvent::Refused { reason } => {
                band.connected = false;
                self.reject(format!("the conductor refused this node: {reason}"));
            }
        }
        Ok(())
    }

    /// Makes one entry of the band's log exactly at its target.
    fn make_entry(&mut self, entry: Entry, now: Beats) -> anyhow::Result<()> {
        let Entry { id, target, command, .. } = entry;
        let playing = self.transport.snapshot().playing;
        let scheduled =
            self.perform(Source::Conductor, PressAt::Exact(target, CommandId(id)), command, now, playing)?;
        // A command that schedules no trigger (a tempo, the mixer, a setting, a stop of a silent
        // track) executed when it was made at its target: report it now. Triggers report as
        // they execute (`band_executed`).
        if scheduled == 0 {
            self.report_executed(id, target.0, None, false)?;
        }
        Ok(())
    }

    /// A transport start or stop of the band's log, at its exact target: the node's clock (the
    /// band's) always runs, so a stop stops every track at that beat and a start does nothing.
    pub(super) fn band_transport(&mut self, start: bool, beat: Beats, id: CommandId) {
        if start {
            return;
        }
        let stop = Action::StopAll { mode: StopMode::Immediate };
        let fold = Beats(beat.0.min(self.transport.snapshot().beat));
        let pressed =
            self.pulse.tick(fold, beat).and_then(|()| self.pulse.press_when(stop, When::At { beat, id }, fold));
        if let Err(e) = pressed {
            self.warn(format!("stop at beat {:.2}: {e}", beat.0));
        }
    }

    /// Sends a performer's press to the conductor.
    pub(super) fn send_to_conductor(&mut self, source: Source, command: ControlCommand) {
        let Some(band) = &mut self.band else { return };
        match band.link.press(command.clone()) {
            Pressed::Sent(press) => {
                say(format_args!("{}: '{}' sent to the conductor (press {press})", source.name(), command.name()))
            }
            // The client queued a `NodeEvent::Local`: `band_step` performs it on this node.
            Pressed::Local => {}
        }
    }

    /// Reports the first executed trigger of each conductor command.
    pub(super) fn band_executed(&mut self, event: &PulseEvent) -> anyhow::Result<()> {
        if let PulseEvent::Executed { command: Some(CommandId(id)), sample, late, .. } = event
            && self.band.is_some()
        {
            // The band's beat of the sample (from the band's tempo map, a function of the sample
            // alone), so every node reports the same number whatever its block boundaries.
            let beat = self.tempo_map.block(*sample, 0).beat_at_first_sample.0;
            self.report_executed(*id, beat, Some(*sample), *late)?;
        }
        Ok(())
    }

    fn report_executed(&mut self, id: u64, beat: f64, sample: Option<i64>, late: bool) -> anyhow::Result<()> {
        let Some(band) = &mut self.band else { return Ok(()) };
        if !band.reported.insert(id) {
            return Ok(());
        }
        band.link.executed(id, beat, late);
        let (seq, origin, target, command) = match band.log.by_id(id) {
            Some(e) => (Some(e.seq), Some(e.origin.clone()), Some(e.target.0), Some(e.command.name())),
            None => (None, None, None, None),
        };
        self.band_line(
            "executed",
            serde_json::json!({
                "id": id, "seq": seq, "origin": origin, "command": command, "target": target,
                "beat": beat, "sample": sample, "late": late,
            }),
        )
    }

    /// With the periodic status: reports the node to the conductor (its tracks, how far its
    /// output is from the band's time, late entries, xruns: `ctl status` shows them), and writes
    /// the clock figures to `--log` (`band-clock`): the measure of how well the band's laptops
    /// agree in time.
    pub(super) fn band_clock_line(&mut self) -> anyhow::Result<()> {
        let snap = self.transport.snapshot();
        let Some(view) = self.band_view(&snap) else { return Ok(()) };
        let spread_ms = self.band.as_ref().and_then(|b| b.link.offset_spread()).map(|d| d.as_secs_f64() * 1e3);
        if let Some(band) = &self.band {
            band.link.report(loophole_net_proto::v1::NodeReport {
                tracks: band.tracks.clone(),
                ahead_us: view.ahead_ms.map(|a| (a * 1e3).round() as i64),
                late: view.late,
                xruns: self.health.xruns,
                local_presses: view.local_presses,
            });
        }
        self.band_line(
            "band-clock",
            serde_json::json!({
                "ahead_ms": view.ahead_ms, "rtt_ms": view.rtt_ms, "spread_ms": spread_ms,
                "connected": view.connected, "sample": snap.sample,
            }),
        )
    }

    /// Writes a band line to `--log`.
    fn band_line(&mut self, event: &str, mut value: serde_json::Value) -> anyhow::Result<()> {
        if let Some(log) = &mut self.log {
            value["event"] = serde_json::json!(event);
            if let Some(band) = &self.band {
                value["node"] = serde_json::json!(band.name);
            }
            log.write_value(value, Some(self.started.elapsed().as_secs_f64()))?;
        }
        Ok(())
    }
}
