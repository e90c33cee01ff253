//! [`LinkControl`]: the control thread's side of Link during a performance.
//!
//! Every control tick (a few ms) [`LinkControl::poll`]:
//!
//! - (the commands typed on the terminal reach Link through the node's inbox: `play`, `stop`,
//!   `tempo BPM` become [`Request`]s for the audio thread through [`LinkControl::request`]);
//! - reads the audio thread's [`ClockEvent`]s (the node started, stopped, jumped, went solo);
//! - polls Link (`num_peers`, `capture_app_session_state`) and reports changes of the peer count,
//!   the session tempo, the session's start/stop state and the enabled state.
//!
//! It returns them as JSON objects for the `--log` file and as short lines for the terminal.
//! Thread: control. Not realtime-safe (it allocates the lines).

use serde_json::json;

use super::{ClockEvent, LinkClock, Request};
use crate::clock::ClockSnapshot;

/// How far ahead of the request a `play` command starts (so the first triggers are pressed
/// before beat 0): with peers, the start is the session's next bar line after this.
pub const START_LEAD_SECONDS: f64 = 0.1;

/// Session tempo changes smaller than this (BPM) are not reported (Link's tempo goes through an
/// integer number of µs per beat on the network: 130 BPM comes back as 130.00013).
const TEMPO_EPSILON: f64 = 1e-3;

/// What one poll found.
#[derive(Debug, Default)]
pub struct Polled {
    /// JSON objects for the log (`"event": "link"` or `"transport"`).
    pub lines: Vec<serde_json::Value>,
    /// Short lines for the terminal.
    pub human: Vec<String>,
    /// A new start (its epoch): the performance begins again from its first action.
    pub started: Option<u64>,
    /// The node stopped: give the audio thread a fresh engine.
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy)]
struct Watch {
    peers: u64,
    tempo: f64,
    playing: bool,
    enabled: bool,
    /// The node launched alone and told Link it plays: ignore the session looking stopped until
    /// Link shows that.
    expect_playing: bool,
}

/// The control thread's side of Link. See the module docs.
pub struct LinkControl {
    clock: LinkClock,
    requests: rtrb::Producer<Request>,
    events: rtrb::Consumer<ClockEvent>,
    watch: Watch,
    sample_rate: u32,
}

impl std::fmt::Debug for LinkControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkControl").field("clock", &self.clock).field("watch", &self.watch).finish()
    }
}

impl LinkControl {
    /// Wraps the Link instance and the control thread's ends of the audio thread's rings.
    /// `launched_solo`: the node starts alone at its first block (it will show the session
    /// playing).
    ///
    /// Thread: control.
    pub fn new(
        clock: LinkClock,
        requests: rtrb::Producer<Request>,
        events: rtrb::Consumer<ClockEvent>,
        sample_rate: u32,
        initial_tempo: f64,
        launched_solo: bool,
    ) -> LinkControl {
        let watch = Watch {
            peers: 0,
            tempo: initial_tempo,
            playing: launched_solo,
            enabled: clock.is_enabled(),
            expect_playing: launched_solo,
        };
        LinkControl { clock, requests, events, watch, sample_rate }
    }

    /// The Link instance.
    pub fn clock(&self) -> &LinkClock {
        &self.clock
    }

    /// The Link instance, for a fresh audio side ([`LinkClock::audio_side`]).
    pub fn clock_mut(&mut self) -> &mut LinkClock {
        &mut self.clock
    }

    /// Replaces the ends of the rings to the audio thread (the audio core was rebuilt).
    pub fn set_audio_ends(&mut self, requests: rtrb::Producer<Request>, events: rtrb::Consumer<ClockEvent>) {
        self.requests = requests;
        self.events = events;
    }

    /// Asks the audio thread to do something; false if its ring is full.
    pub fn request(&mut self, r: Request) -> bool {
        self.requests.push(r).is_ok()
    }

    /// A start request with the usual lead.
    pub fn start_request(&self) -> Request {
        Request::Start { lead_frames: (START_LEAD_SECONDS * self.sample_rate as f64) as u32 }
    }

    /// One control tick. `snap` is the audio position (for the tempo of beat jumps).
    pub fn poll(&mut self, snap: &ClockSnapshot) -> Polled {
        let mut out = Polled::default();
        while let Ok(e) = self.events.pop() {
            self.clock_event(e, snap, &mut out);
        }
        let v = self.clock.view();
        let now = v.micros;
        if v.enabled != self.watch.enabled {
            self.watch.enabled = v.enabled;
            out.lines.push(json!({"event": "link", "enabled": v.enabled, "host_us": now}));
            out.human.push(format!("link: {}", if v.enabled { "enabled" } else { "disabled" }));
        }
        if v.peers != self.watch.peers {
            self.watch.peers = v.peers;
            out.lines.push(json!({"event": "link", "peers": v.peers, "host_us": now}));
            out.human.push(format!("link: {} peer{}", v.peers, if v.peers == 1 { "" } else { "s" }));
        }
        if (v.tempo - self.watch.tempo).abs() > TEMPO_EPSILON {
            self.watch.tempo = v.tempo;
            out.lines.push(json!({"event": "link", "tempo": v.tempo, "host_us": now}));
            out.human.push(format!("link: tempo {:.2} BPM", v.tempo));
        }
        if self.watch.expect_playing && v.playing {
            self.watch.expect_playing = false;
        }
        if v.playing != self.watch.playing && !self.watch.expect_playing {
            self.watch.playing = v.playing;
            out.lines.push(json!({
                "event": "link", "playing": v.playing, "start_stop_time": v.start_stop_time, "host_us": now
            }));
            out.human.push(format!("link: the session {}", if v.playing { "plays" } else { "stopped" }));
        }
        out
    }

    fn clock_event(&mut self, e: ClockEvent, snap: &ClockSnapshot, out: &mut Polled) {
        let q = self.clock.quantum();
        match e {
            ClockEvent::Started { epoch, sample, beat, zero_host_us, peers, own } => {
                out.started = Some(epoch);
                out.lines.push(json!({
                    "event": "transport", "playing": true, "epoch": epoch, "sample": sample, "beat": beat,
                    "zero_host_us": zero_host_us, "peers": peers, "own": own,
                }));
                out.human.push(format!(
                    "transport: {} (beat 0 in {:.0} ms{})",
                    if own { "play" } else { "the session starts: play" },
                    (zero_host_us - self.clock.micros() as f64) / 1000.0,
                    if peers > 0 { ", on the session's bar" } else { "" }
                ));
            }
            ClockEvent::Stopped { sample, beat, host_us, own } => {
                out.stopped = true;
                out.lines.push(json!({
                    "event": "transport", "playing": false, "sample": sample, "beat": beat, "host_us": host_us, "own": own,
                }));
                // Bars written as everywhere else: bar.beat, counted from 1.
                let bar = loophole_engine::control::bar_label((beat / q).floor() as i64, beat.rem_euclid(q));
                out.human
                    .push(format!("transport: {} at bar {bar}", if own { "stop" } else { "the session stops: stop" },));
            }
            ClockEvent::Jump { sample, from, to, host_us } => {
                let ms = (to - from) * 60_000.0 / snap.tempo.max(1.0);
                out.lines.push(json!({
                    "event": "link", "jump": to - from, "ms": ms, "from": from, "to": to, "sample": sample, "host_us": host_us,
                }));
                out.human.push(format!("link: the beat jumped by {:+.3} beats ({ms:+.1} ms)", to - from));
            }
            ClockEvent::Solo { solo, sample, beat } => {
                out.lines.push(json!({"event": "link", "solo": solo, "sample": sample, "beat": beat}));
                out.human.push(
                    if solo { "link: alone, on the node's own timeline" } else { "link: on the session's timeline" }
                        .to_string(),
                );
            }
        }
    }
}
