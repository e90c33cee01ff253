//! Ableton Link: the node's musical clock when it plays with others.
//!
//! - [`LinkClock`] (control thread) owns the `rusty_link::AblLink` instance: enable / disable,
//!   start/stop sync (always on), the quantum (the session's beats per bar), the peer count and a
//!   read-only view of the session state for the log.
//! - [`LinkAudio`] (audio thread, inside [`crate::audio::AudioCore`]) turns each audio block into
//!   a [`loophole_engine::time::BlockClock`]: it captures Link's audio session state (realtime-safe,
//!   into a session state allocated once on the control thread), reads the beat at the host time
//!   at which the block's first sample will be *heard*, follows the session's start/stop state and
//!   carries out the control thread's [`Request`]s (start, stop, tempo) with
//!   `commit_audio_session_state`.
//! - [`control::LinkControl`] (control thread) polls Link and the audio thread's
//!   [`ClockEvent`]s for the `--log` file, passes the inbox's tempo and transport requests on, and hands the audio thread a
//!   fresh engine after a stop.
//! - [`filter::HostTimeFilter`]: the regression that takes the scheduler's jitter out of the
//!   callbacks' host times.
//!
//! Only the audio thread writes Link's session state while audio runs: Link advises against
//! modifying it from an application thread and the audio thread concurrently, and says timing is
//! most accurate from the audio thread (`Link.hpp`). The control thread reads
//! (`capture_app_session_state`) and sends requests through a lock-free ring.
//!
//! No Link callback is registered (`set_*_callback` in rusty_link 0.4 keeps a pointer to a
//! closure it has freed): everything is polled.
//!
//! See `docs/link.md` for the latency model, the start/stop behaviour and measured figures.

pub mod audio;
pub mod control;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusty_link::{AblLink, SessionState};

pub use self::audio::{ClockEvent, LinkAudio, LinkBlock, Request, Resume};

/// How long `play` listens for a Link session before its first block, so that it starts in phase
/// with the session rather than joining it (and jumping) while it plays. Link finds peers in
/// about half a second (two of its 250 ms announcement periods, measured between namespaces).
pub const JOIN_WAIT: Duration = Duration::from_millis(1000);

/// Once a peer is seen during [`JOIN_WAIT`], how long to let Link settle (measure the peer's
/// clock, adopt the session's timeline) before starting.
pub const JOIN_SETTLE: Duration = Duration::from_millis(60);

/// How `play` and `demo` use Link (`--link`, `--no-link`, `--stopped`, `--stdin-commands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOptions {
    /// Join the Link session; otherwise the node plays on its own sample clock, as offline.
    pub enabled: bool,
    /// Start with the transport stopped: play when the session starts or on a `play` command.
    pub stopped: bool,
    /// Read commands (`play`, `stop`, `tempo BPM`, `link on|off`, `quit`) from stdin.
    pub stdin_commands: bool,
    /// Listen for a session for up to [`JOIN_WAIT`] before starting (`play`); otherwise start at
    /// once and join a session whenever one appears (`demo`: the beat moves once if it does).
    pub join: bool,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions { enabled: true, stopped: false, stdin_commands: false, join: true }
    }
}

/// What the control thread sees of the Link session (`capture_app_session_state`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionView {
    /// Link's host clock now (µs).
    pub micros: i64,
    /// The session tempo (BPM).
    pub tempo: f64,
    /// The session's start/stop state.
    pub playing: bool,
    /// When the session last started or stopped (host µs).
    pub start_stop_time: i64,
    /// This peer's beat now (its magnitude is this peer's; its phase is the session's).
    pub beat: f64,
    /// Peers in the session, not counting this one.
    pub peers: u64,
    /// Link is enabled (talking on the network).
    pub enabled: bool,
}

/// The node's Link instance, held by the control thread (and shared read-only with the audio
/// thread's [`LinkAudio`]).
pub struct LinkClock {
    link: Arc<AblLink>,
    quantum: f64,
    /// For `capture_app_session_state` (allocated once, reused).
    app: SessionState,
}

impl std::fmt::Debug for LinkClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkClock")
            .field("quantum", &self.quantum)
            .field("enabled", &self.link.is_enabled())
            .field("peers", &self.link.num_peers())
            .finish()
    }
}

impl LinkClock {
    /// Creates the Link instance with the session's tempo and quantum (beats per bar), enables
    /// start/stop sync and, if `enable`, Link itself.
    ///
    /// A new Link instance joins an existing session's tempo and phase when it finds one; it
    /// never imposes its own tempo on it (TEMPO-2, TEMPO-3).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn new(tempo: f64, quantum: f64, enable: bool) -> LinkClock {
        let link =
            Arc::new(AblLink::new(tempo.clamp(loophole_engine::time::Bpm::MIN, loophole_engine::time::Bpm::MAX)));
        link.enable_start_stop_sync(true);
        link.enable(enable);
        LinkClock { link, quantum: if quantum > 0.0 { quantum } else { 4.0 }, app: SessionState::new() }
    }

    /// Enables or disables Link. Without peers this changes neither the tempo nor the beat
    /// (TEMPO-5, BEATTIME-1). Thread: control. Not realtime-safe.
    pub fn enable(&self, on: bool) {
        self.link.enable(on);
    }

    /// Whether Link is enabled. Any thread; realtime-safe.
    pub fn is_enabled(&self) -> bool {
        self.link.is_enabled()
    }

    /// Peers in the session (not counting this one). Any thread; realtime-safe.
    pub fn peers(&self) -> u64 {
        self.link.num_peers()
    }

    /// Link's host clock (µs; `CLOCK_MONOTONIC_RAW` on Linux). Any thread; realtime-safe.
    pub fn micros(&self) -> i64 {
        self.link.clock_micros()
    }

    /// Beats per bar.
    pub fn quantum(&self) -> f64 {
        self.quantum
    }

    /// The session as this peer sees it now. Thread: control (the one app thread). Does not
    /// allocate.
    pub fn view(&mut self) -> SessionView {
        self.link.capture_app_session_state(&mut self.app);
        let micros = self.link.clock_micros();
        SessionView {
            micros,
            tempo: self.app.tempo(),
            playing: self.app.is_playing(),
            start_stop_time: self.app.time_for_is_playing(),
            beat: self.app.beat_at_time(micros, self.quantum),
            peers: self.link.num_peers(),
            enabled: self.link.is_enabled(),
        }
    }

    /// Waits up to `max` for a Link session to show up (returning early, after [`JOIN_SETTLE`],
    /// once one has), or until `stop()` says so. Returns the peer count.
    ///
    /// Thread: control, before the audio starts.
    pub fn wait_for_session(&self, max: Duration, stop: impl Fn() -> bool) -> u64 {
        if !self.link.is_enabled() {
            return 0;
        }
        let until = Instant::now() + max;
        while Instant::now() < until && !stop() {
            if self.link.num_peers() > 0 {
                std::thread::sleep(JOIN_SETTLE);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.link.num_peers()
    }

    /// The audio thread's side, with its rings: requests from the control thread and clock
    /// events back. With `launch_solo`, the node starts playing at the first block with beat 0
    /// on its first sample (a node alone at launch); otherwise it plays when a
    /// [`Request::Start`] or the session says so.
    ///
    /// Thread: control. Not realtime-safe (allocates the session state and the rings).
    pub fn audio_side(
        &self,
        sample_rate: u32,
        start_sample: i64,
        launch_solo: Option<f64>,
        resume: Option<audio::Resume>,
    ) -> (LinkAudio, rtrb::Producer<Request>, rtrb::Consumer<ClockEvent>) {
        let (req_tx, req_rx) = rtrb::RingBuffer::new(64);
        let (ev_tx, ev_rx) = rtrb::RingBuffer::new(256);
        let mut state = SessionState::new();
        self.link.capture_app_session_state(&mut state);
        let audio = LinkAudio::new(
            self.link.clone(),
            audio::Setup {
                quantum: self.quantum,
                sample_rate,
                tempo: state.tempo(),
                start_sample,
                launch: launch_solo,
                resume,
            },
            req_rx,
            ev_tx,
        );
        (audio, req_tx, ev_rx)
    }
}
