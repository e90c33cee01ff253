//! `loophole-link-peer`: a plain Ableton Link peer, written against `rusty_link` alone (no Loophole
//! code), so that tests check Loophole against Link itself and not only against Loophole.
//!
//! It behaves like Ableton's LinkHut without the audio: it joins the Link session (start/stop sync
//! on), keeps its beat 0 at the start of playback as LinkHut does
//! (`request_beat_at_start_playing_time(0, quantum)` whenever the session starts), and reports its
//! state as JSON lines on stdout.
//!
//! ```text
//! loophole-link-peer [--tempo BPM (120)] [--quantum Q (4)] [--play] [--disabled] [--no-sync]
//!                    [--every MS (100; 0 = only on request)]
//! ```
//!
//! Commands on stdin, one per line: `tempo BPM`, `play`, `stop`, `enable`, `disable`,
//! `status`, `at MICROS` (the beat at a host time), `time BEAT` (the host time of a beat), `quit`.
//! End of input does not stop it: it runs until `quit` or a signal.
//!
//! Lines on stdout (`time` is Link's host clock, in microseconds):
//!
//! ```text
//! {"event":"ready","time":T,"tempo":X,"quantum":Q}
//! {"event":"status","time":T,"beat":B,"phase":P,"tempo":X,"playing":b,"peers":N,"enabled":b}
//! {"event":"peers","peers":N,"time":T}              on every change
//! {"event":"tempo","tempo":X,"time":T}              on every change
//! {"event":"playing","playing":b,"time":T,"start_time":S,"start_beat":B}   on every change
//! {"event":"at","time":T,"beat":B,"phase":P,"tempo":X}
//! {"event":"time","beat":B,"time":T}
//! {"event":"error","message":"..."}
//! ```
//!
//! Threads: the main thread owns the Link instance and polls it every millisecond (Link's
//! callbacks are not used: `rusty_link` keeps a pointer to a closure it has freed); a second
//! thread reads stdin.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusty_link::{AblLink, SessionState};

struct Options {
    tempo: f64,
    quantum: f64,
    play: bool,
    enabled: bool,
    sync: bool,
    every: Option<Duration>,
}

fn usage(problem: &str) -> ! {
    eprintln!("loophole-link-peer: {problem}");
    eprintln!("usage: loophole-link-peer [--tempo BPM] [--quantum Q] [--play] [--disabled] [--no-sync] [--every MS]");
    std::process::exit(2);
}

fn number(args: &mut impl Iterator<Item = String>, flag: &str) -> f64 {
    let text = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a number")));
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => usage(&format!("{flag}: '{text}' is not a number")),
    }
}

fn options() -> Options {
    let mut o = Options { tempo: 120.0, quantum: 4.0, play: false, enabled: true, sync: true, every: None };
    let mut every = 100.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tempo" => o.tempo = number(&mut args, "--tempo"),
            "--quantum" => o.quantum = number(&mut args, "--quantum"),
            "--every" => every = number(&mut args, "--every"),
            "--play" => o.play = true,
            "--disabled" => o.enabled = false,
            "--no-sync" => o.sync = false,
            "-h" | "--help" => usage("a plain Ableton Link peer for tests"),
            other => usage(&format!("unknown argument '{other}'")),
        }
    }
    if !(20.0..=999.0).contains(&o.tempo) {
        usage("--tempo must be within 20..=999");
    }
    if o.quantum <= 0.0 {
        usage("--quantum must be positive");
    }
    o.every = (every > 0.0).then(|| Duration::from_secs_f64(every / 1000.0));
    o
}

/// Prints one line; exits quietly when stdout is gone (the test that read it has finished).
fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    if out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Peer {
    link: AblLink,
    state: SessionState,
    quantum: f64,
    playing: bool,
    peers: u64,
    tempo: f64,
}

impl Peer {
    fn status(&mut self) {
        self.link.capture_app_session_state(&mut self.state);
        let t = self.link.clock_micros();
        emit(format!(
            r#"{{"event":"status","time":{t},"beat":{},"phase":{},"tempo":{},"playing":{},"peers":{},"enabled":{}}}"#,
            self.state.beat_at_time(t, self.quantum),
            self.state.phase_at_time(t, self.quantum),
            self.state.tempo(),
            self.state.is_playing(),
            self.link.num_peers(),
            self.link.is_enabled(),
        ));
    }

    fn command(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else { return true };
        let arg = words.next().map(str::parse::<f64>);
        let q = self.quantum;
        match (verb, arg) {
            ("quit", _) => return false,
            ("status", _) => self.status(),
            ("enable", _) => self.link.enable(true),
            ("disable", _) => self.link.enable(false),
            ("tempo", Some(Ok(bpm))) if bpm.is_finite() => {
                self.link.capture_app_session_state(&mut self.state);
                self.state.set_tempo(bpm, self.link.clock_micros());
                self.link.commit_app_session_state(&self.state);
            }
            ("play", _) => {
                self.link.capture_app_session_state(&mut self.state);
                if !self.state.is_playing() {
                    let now = self.link.clock_micros();
                    self.state.set_is_playing_and_request_beat_at_time(true, now, 0.0, q);
                    self.link.commit_app_session_state(&self.state);
                }
            }
            ("stop", _) => {
                self.link.capture_app_session_state(&mut self.state);
                if self.state.is_playing() {
                    self.state.set_is_playing(false, self.link.clock_micros());
                    self.link.commit_app_session_state(&self.state);
                }
            }
            ("at", Some(Ok(t))) if t.is_finite() => {
                self.link.capture_app_session_state(&mut self.state);
                let t = t.round() as i64;
                emit(format!(
                    r#"{{"event":"at","time":{t},"beat":{},"phase":{},"tempo":{}}}"#,
                    self.state.beat_at_time(t, q),
                    self.state.phase_at_time(t, q),
                    self.state.tempo()
                ));
            }
            ("time", Some(Ok(b))) if b.is_finite() => {
                self.link.capture_app_session_state(&mut self.state);
                emit(format!(r#"{{"event":"time","beat":{b},"time":{}}}"#, self.state.time_at_beat(b, q)));
            }
            _ => emit(format!(r#"{{"event":"error","message":{}}}"#, json_str(&format!("unknown command '{line}'")))),
        }
        true
    }

    /// Reports changes and, like LinkHut's audio engine, puts beat 0 at the start of playback.
    fn poll(&mut self) {
        self.link.capture_app_session_state(&mut self.state);
        let now = self.link.clock_micros();
        let peers = self.link.num_peers();
        if peers != self.peers {
            self.peers = peers;
            emit(format!(r#"{{"event":"peers","peers":{peers},"time":{now}}}"#));
        }
        let tempo = self.state.tempo();
        if (tempo - self.tempo).abs() > 1e-9 {
            self.tempo = tempo;
            emit(format!(r#"{{"event":"tempo","tempo":{tempo},"time":{now}}}"#));
        }
        let playing = self.state.is_playing();
        if playing != self.playing {
            self.playing = playing;
            if playing {
                self.state.request_beat_at_start_playing_time(0.0, self.quantum);
                self.link.commit_app_session_state(&self.state);
            }
            let start = self.state.time_for_is_playing();
            emit(format!(
                r#"{{"event":"playing","playing":{playing},"time":{now},"start_time":{start},"start_beat":{}}}"#,
                self.state.beat_at_time(start, self.quantum)
            ));
        }
    }
}

fn main() {
    let o = options();
    let link = AblLink::new(o.tempo);
    link.enable_start_stop_sync(o.sync);
    let mut peer =
        Peer { link, state: SessionState::new(), quantum: o.quantum, playing: false, peers: 0, tempo: o.tempo };
    peer.link.enable(o.enabled);
    if o.play {
        peer.command("play");
    }
    emit(format!(
        r#"{{"event":"ready","time":{},"tempo":{},"quantum":{}}}"#,
        peer.link.clock_micros(),
        o.tempo,
        o.quantum
    ));

    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    if let Err(e) = reader {
        emit(format!(r#"{{"event":"error","message":{}}}"#, json_str(&format!("cannot read stdin: {e}"))));
    }

    let mut next_status = Instant::now();
    loop {
        while let Ok(line) = rx.try_recv() {
            if !peer.command(line.trim()) {
                peer.link.enable(false);
                return;
            }
        }
        peer.poll();
        if let Some(every) = o.every
            && Instant::now() >= next_status
        {
            peer.status();
            next_status += every;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
