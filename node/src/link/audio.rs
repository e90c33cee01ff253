//! [`LinkAudio`]: the audio thread's side of Link. One call per block, [`LinkAudio::block`],
//! turns Link's session state into the engine's [`BlockClock`].
//!
//! ## Per block
//!
//! 1. **Host time of the first sample as heard**: Link's clock at callback entry, minus how late
//!    the callback started (the null device knows its deadline), plus the output latency the device
//!    reports (cpal's `playback - callback`; the null device's block period). Filtered by a
//!    [`HostTimeFilter`] over sample time.
//! 2. `capture_audio_session_state` into a session state allocated once (the C wrapper copies
//!    Link's plain-data state into it: no allocation, no lock; Link reads its client state through
//!    a lock-free triple buffer).
//! 3. Requests from the control thread (start, stop, tempo) and the session's start/stop state
//!    are applied, and committed with `commit_audio_session_state` (realtime-safe).
//! 4. The beat: **with peers**, Link's `beat_at_time(host, quantum)`. **Alone** (no peers, or Link
//!    disabled), the node's own timeline: a sample counter anchored at a (sample, beat) with the
//!    tempo, exactly like the offline renderer's clock, so a solo performance is the offline render
//!    bit for bit. Link's timeline is kept on the node's (forced when they drift apart by more than
//!    [`SYNC_MICROS`]), so a peer that joins finds the beat the node plays.
//! 5. `beats_per_sample` = tempo / 60 / sample rate.
//! 6. **Tempo changes of scenes** ([`LinkAudio::tempo_change`]) wait in a list until their beat.
//!    The block ends at the first sample at or after a pending change's beat (the audio core
//!    renders the rest of its callback with [`LinkAudio::block_rest`]); the next piece starts
//!    on that sample, where the new tempo is committed to Link with `set_tempo(bpm, t)`, `t` the
//!    host time at which that sample is heard (Link keeps the beat at `t`, so the beat stays
//!    continuous), and a new time signature becomes the quantum. Alone, the node's own timeline
//!    is re-anchored there exactly as the offline renderer's `TempoMap` makes a new segment, so
//!    a solo performance with scene tempos is still the offline render, bit for bit.
//!
//! ## Start and stop (start/stop sync is always on)
//!
//! - A start (the node's own, or a peer's) maps **beat 0 to the start**: alone, beat 0 is the
//!   start sample; with peers, beat 0 is the session's next bar line at or after the start time
//!   (`request_beat_at_time(0, t, quantum)`), as in LinkHut and Live.
//! - A start the node did not ask for is followed only if it is fresh (less than [`STALE_MICROS`]
//!   old): a node that joins a session which has been playing for a while stays stopped until it
//!   is told to play (STARTSTOPSTATE-2).
//! - A stop (own or a peer's) stops the node at once; its timeline keeps running.
//!
//! Everything here is realtime-safe: no allocation, lock, blocking call or I/O. Events for the log
//! go to the control thread through a ring; when it is full they are counted and dropped.

use std::sync::Arc;

use loophole_engine::model::TempoChange;
use loophole_engine::time::{BlockClock, Bpm, SAMPLE_EPSILON, SampleTime};
use rusty_link::{AblLink, SessionState};

use crate::clock::CallbackTiming;
use crate::clock::filter::HostTimeFilter;

/// Alone, Link's timeline is re-forced onto the node's when they differ by more than this (µs).
pub const SYNC_MICROS: f64 = 20.0;

/// Alone, a difference between Link's tempo and the node's larger than this (BPM) that the node
/// did not ask for is someone else's tempo: the node follows it. Link keeps tempo as whole
/// microseconds per beat, which moves 130 BPM to 130.00013, far below this.
pub const EXTERNAL_TEMPO_BPM: f64 = 0.01;

/// A start of the session older than this (µs) when the node first sees it is not followed: the
/// session was already playing.
pub const STALE_MICROS: f64 = 500_000.0;

/// Tempo changes [`LinkAudio`] holds until their beat (more are refused).
pub const PENDING_TEMPO: usize = 256;

/// A block whose first beat differs from the previous block's last beat by more than this (µs of
/// music) is reported as a timeline jump.
pub const JUMP_MICROS: f64 = 250.0;

/// What the control thread asks the audio thread to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Request {
    /// Start playing `lead_frames` after the block that sees the request (with peers: at the
    /// session's next bar line after that).
    Start {
        /// Frames between the request and the start, so that the first triggers can be pressed
        /// ahead of beat 0.
        lead_frames: u32,
    },
    /// Stop playing (now).
    Stop,
    /// Change the tempo (BPM, clamped to Link's 20..=999), from this block on.
    Tempo(f64),
}

/// What the audio thread tells the control thread (for the log and to restart the engine).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClockEvent {
    /// The node started playing.
    Started {
        /// Starts so far, this one included.
        epoch: u64,
        /// First sample of the block that started.
        sample: SampleTime,
        /// Beat at that sample (negative until beat 0).
        beat: f64,
        /// Host time (µs) at which beat 0 is heard.
        zero_host_us: f64,
        /// Peers at that moment.
        peers: u64,
        /// The node asked for it (a [`Request::Start`]), rather than following the session.
        own: bool,
    },
    /// The node stopped.
    Stopped {
        /// First sample of the block that stopped.
        sample: SampleTime,
        /// Beat at that sample.
        beat: f64,
        /// Host time (µs) of that sample.
        host_us: f64,
        /// The node asked for it.
        own: bool,
    },
    /// The beat did not continue from the previous block (a session was joined, a peer forced
    /// the timeline).
    Jump {
        /// First sample of the block.
        sample: SampleTime,
        /// The beat the block should have started at.
        from: f64,
        /// The beat it starts at.
        to: f64,
        /// Host time (µs) of the sample.
        host_us: f64,
    },
    /// The node went from its own timeline to the session's (`solo == false`) or back.
    Solo {
        /// Alone now.
        solo: bool,
        /// First sample of the block.
        sample: SampleTime,
        /// Beat at that sample.
        beat: f64,
    },
}

/// The clock of one block and what the audio core publishes about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkBlock {
    /// The clock Signal renders the block with.
    pub clock: BlockClock,
    /// Host time (µs, Link's clock) at which the block's first sample is heard.
    pub host_us: f64,
    /// Host µs per sample (the device's real rate, from the filter).
    pub us_per_sample: f64,
    /// The node is playing (it may launch clips).
    pub playing: bool,
    /// Starts so far.
    pub epoch: u64,
    /// Session tempo (BPM).
    pub tempo: f64,
    /// The node runs on its own timeline (no peers).
    pub solo: bool,
}

/// The transport state a fresh [`LinkAudio`] continues from (the audio engine was rebuilt at
/// sample `sample` after a device failure).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resume {
    /// Playing.
    pub playing: bool,
    /// Starts so far.
    pub epoch: u64,
    /// The beat at the first sample of the new engine.
    pub beat: f64,
}

/// The node's own timeline: beat = `beat + (s - sample) * tempo / 60 / rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Solo {
    sample: SampleTime,
    beat: f64,
    tempo: f64,
}

impl Solo {
    fn bps(&self, rate: u32) -> f64 {
        Bpm(self.tempo).beats_per_sample(rate)
    }

    /// Computed like `SimClock::block`: from the anchor, never accumulated.
    fn beat_at(&self, s: SampleTime, rate: u32) -> f64 {
        self.beat + (s - self.sample) as f64 * self.bps(rate)
    }
}

/// The audio thread's side of Link. See the module docs.
///
/// Built on the control thread ([`super::LinkClock::audio_side`]), then moved into the audio
/// core. Thread: audio.
pub struct LinkAudio {
    link: Arc<AblLink>,
    state: SessionState,
    filter: HostTimeFilter,
    quantum: f64,
    sample_rate: u32,
    requests: rtrb::Consumer<Request>,
    events: rtrb::Producer<ClockEvent>,
    playing: bool,
    epoch: u64,
    /// Start time of the last session start looked at (followed or found stale).
    seen_start: Option<i64>,
    solo: Option<Solo>,
    /// Start at the first block, beat 0 on its first sample, with this tempo.
    launch: Option<f64>,
    /// `(sample, beat)` just after the previous block.
    last_end: Option<(SampleTime, f64)>,
    lost_events: u64,
    /// The session tempo when built (for [`LinkAudio::initial`]).
    tempo_hint: f64,
    /// Scene tempo changes not reached yet, in beat order (capacity [`PENDING_TEMPO`]).
    pending: Vec<TempoChange>,
}

/// How a [`LinkAudio`] is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Setup {
    pub quantum: f64,
    pub sample_rate: u32,
    /// The session tempo now.
    pub tempo: f64,
    /// The first sample the engine will render.
    pub start_sample: SampleTime,
    /// Start at the first block with this tempo, beat 0 on `start_sample` (launched alone).
    pub launch: Option<f64>,
    /// Continue a transport.
    pub resume: Option<Resume>,
}

impl LinkAudio {
    pub(crate) fn new(
        link: Arc<AblLink>,
        setup: Setup,
        requests: rtrb::Consumer<Request>,
        events: rtrb::Producer<ClockEvent>,
    ) -> LinkAudio {
        let Setup { quantum, sample_rate, tempo, start_sample, launch, resume } = setup;
        let mut audio = LinkAudio {
            link,
            state: SessionState::new(),
            filter: HostTimeFilter::new(sample_rate),
            quantum,
            sample_rate,
            requests,
            events,
            playing: false,
            epoch: 0,
            seen_start: None,
            solo: None,
            launch,
            last_end: None,
            lost_events: 0,
            tempo_hint: tempo,
            pending: Vec::with_capacity(PENDING_TEMPO),
        };
        if let Some(tempo) = launch {
            audio.solo = Some(Solo { sample: start_sample, beat: 0.0, tempo });
            audio.playing = true;
            audio.epoch = 1;
        }
        if let Some(r) = resume {
            audio.playing = r.playing;
            audio.epoch = r.epoch;
            audio.last_end = Some((start_sample, r.beat));
        }
        audio
    }

    /// What the first block will look like, before any block is rendered: `(beat, playing,
    /// epoch, tempo)` at `sample` (known exactly only for a solo launch and a resume).
    pub fn initial(&self, sample: SampleTime) -> (f64, bool, u64, f64) {
        let tempo = self.solo.map_or(self.tempo_hint, |s| s.tempo);
        let beat = match (self.solo, self.last_end) {
            (Some(s), _) => s.beat_at(sample, self.sample_rate),
            (None, Some((_, b))) => b,
            _ => 0.0,
        };
        (beat, self.playing, self.epoch, tempo)
    }

    /// Sample rate the clock was built for.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Beats per bar (Link's quantum) now.
    pub fn quantum(&self) -> f64 {
        self.quantum
    }

    /// Holds a tempo / time-signature change until the block that reaches its beat (see the
    /// module docs, step 6). False (and dropped) when [`PENDING_TEMPO`] changes are waiting.
    ///
    /// Thread: audio. Realtime-safe: inserts into a list allocated once.
    pub fn tempo_change(&mut self, c: TempoChange) -> bool {
        if self.pending.len() >= self.pending.capacity() {
            return false;
        }
        let i = self.pending.partition_point(|p| p.beat.0 <= c.beat.0);
        self.pending.insert(i, c);
        true
    }

    /// Clock events that did not fit into the ring.
    pub fn lost_events(&self) -> u64 {
        self.lost_events
    }

    fn emit(&mut self, e: ClockEvent) {
        if self.events.push(e).is_err() {
            self.lost_events += 1;
        }
    }

    /// The clock of the block that starts at `sample` and lasts `frames` frames, the callback
    /// having started as `timing` says.
    ///
    /// Thread: audio. Realtime-safe: `clock_micros`, `num_peers`, `capture_audio_session_state`
    /// and `commit_audio_session_state` are realtime-safe in Link, and nothing here allocates.
    ///
    /// The returned clock may be shorter than `frames` (its `frames` says): it ends where a
    /// pending tempo change begins. Render the rest with [`LinkAudio::block_rest`].
    pub fn block(&mut self, sample: SampleTime, frames: usize, timing: CallbackTiming) -> LinkBlock {
        let entry = self.link.clock_micros() as f64;
        let host = self.filter.update(sample, entry - timing.late_us + timing.latency_us);
        self.block_at(sample, frames, host, entry)
    }

    /// The clock of the rest of a callback that [`LinkAudio::block`] cut short at a tempo
    /// change, starting at `sample`: its host time is taken from the filter's line (the same
    /// line the callback's first piece was placed on), not measured again.
    ///
    /// Thread: audio. Realtime-safe.
    pub fn block_rest(&mut self, sample: SampleTime, frames: usize) -> LinkBlock {
        let entry = self.link.clock_micros() as f64;
        let host = self.filter.host_of(sample);
        self.block_at(sample, frames, host, entry)
    }

    fn block_at(&mut self, sample: SampleTime, frames: usize, host: f64, entry: f64) -> LinkBlock {
        let rate = self.sample_rate;
        let q = self.quantum;
        let host_i = host.round() as i64;
        let us_per_sample = self.filter.micros_per_sample();
        let host_of = |s: SampleTime| (host + (s - sample) as f64 * us_per_sample).round() as i64;
        self.link.capture_audio_session_state(&mut self.state);
        let peers = self.link.num_peers();
        let mut commit = false;
        let mut started: Option<bool> = None; // Some(own)
        let mut stopped: Option<bool> = None;

        if let Some(tempo) = self.launch.take() {
            // Launched alone: beat 0 is this block's first sample (set up in `new`); tell Link.
            self.state.set_tempo(tempo, host_i);
            self.state.set_is_playing(true, host_i);
            self.seen_start = Some(host_i);
            commit = true;
        }

        while let Ok(r) = self.requests.pop() {
            match r {
                Request::Tempo(bpm) => {
                    let bpm = bpm.clamp(Bpm::MIN, Bpm::MAX);
                    if let Some(solo) = &mut self.solo {
                        *solo = Solo { sample, beat: solo.beat_at(sample, rate), tempo: bpm };
                    }
                    self.state.set_tempo(bpm, host_i);
                    commit = true;
                }
                Request::Start { lead_frames } if !self.playing => {
                    let at = sample + lead_frames as SampleTime;
                    let t = host_of(at);
                    if peers == 0 {
                        let tempo = self.solo.map_or(self.state.tempo(), |s| s.tempo);
                        self.solo = Some(Solo { sample: at, beat: 0.0, tempo });
                        self.state.set_is_playing(true, t);
                    } else if self.state.is_playing() {
                        self.state.request_beat_at_time(0.0, t, q);
                    } else {
                        self.state.set_is_playing_and_request_beat_at_time(true, t, 0.0, q);
                    }
                    self.seen_start = Some(self.state.time_for_is_playing());
                    self.playing = true;
                    started = Some(true);
                    commit = true;
                }
                Request::Stop if self.playing => {
                    self.state.set_is_playing(false, host_i);
                    self.playing = false;
                    stopped = Some(true);
                    commit = true;
                }
                Request::Start { .. } | Request::Stop => {}
            }
        }

        // Follow the session's start/stop state.
        if started.is_none() && stopped.is_none() {
            let session_playing = self.state.is_playing();
            let start_time = self.state.time_for_is_playing();
            if self.playing && !session_playing {
                self.playing = false;
                stopped = Some(false);
            } else if !self.playing && session_playing && self.seen_start != Some(start_time) {
                self.seen_start = Some(start_time);
                if start_time as f64 >= entry - STALE_MICROS {
                    self.state.request_beat_at_start_playing_time(0.0, q);
                    commit = true;
                    self.playing = true;
                    started = Some(false);
                    if peers == 0 {
                        // Alone (the last peer left as it started): take the mapping over.
                        self.solo = None;
                    }
                }
            }
        }

        // The beat of this block.
        let tempo_link = self.state.tempo();
        let link_beat = self.state.beat_at_time(host_i, q) + (host - host_i as f64) * tempo_link / 60e6;
        let mut solo_now = false;
        let beat0 = if peers == 0 {
            let solo = match self.solo {
                Some(s) => s,
                None => {
                    let s = Solo { sample, beat: link_beat, tempo: tempo_link };
                    self.solo = Some(s);
                    self.emit(ClockEvent::Solo { solo: true, sample, beat: link_beat });
                    s
                }
            };
            solo_now = true;
            let mut beat0 = solo.beat_at(sample, rate);
            let drift_us = (link_beat - beat0).abs() * 60e6 / solo.tempo;
            // Link's tempo changed without a request from here (beyond Link's own rounding to
            // whole microseconds per beat): someone else set it, e.g. the session this node is
            // joining before Link counts the peer. Follow it; never force this node's tempo onto
            // a session. (A beat difference alone is corrected as drift below: callbacks that
            // come late or early move it too, and a solo node's own beat must stay continuous.)
            let external = !commit && (tempo_link - solo.tempo).abs() > EXTERNAL_TEMPO_BPM;
            if external {
                self.solo = Some(Solo { sample, beat: link_beat, tempo: tempo_link });
                beat0 = link_beat;
            } else if drift_us > SYNC_MICROS || commit {
                // Keep Link on the node's timeline, so a peer that joins finds the beat it hears.
                if (tempo_link - solo.tempo).abs() > 1e-6 {
                    self.state.set_tempo(solo.tempo, host_i);
                }
                let at_host_i = beat0 - (host - host_i as f64) * solo.tempo / 60e6;
                self.state.force_beat_at_time(at_host_i, host_i, q);
                commit = true;
            }
            beat0
        } else {
            if self.solo.take().is_some() {
                self.emit(ClockEvent::Solo { solo: false, sample, beat: link_beat });
            }
            link_beat
        };
        // Scene tempo changes: those due at this block's first sample (or missed) apply here;
        // the block ends where the next one begins. A stop forgets them (the next start
        // performs from beat 0 again).
        if !self.playing {
            self.pending.clear();
        }
        let mut frames = frames;
        while let Some(c) = self.pending.first().copied() {
            // The first sample at or after the change's beat (alone: from the timeline's anchor,
            // as the offline `TempoMap` computes it).
            let at = match self.solo {
                Some(s) => {
                    s.sample + ((c.beat.0 - s.beat) / s.bps(rate) - SAMPLE_EPSILON).ceil().max(0.0) as SampleTime
                }
                None => {
                    let bps = Bpm(self.state.tempo()).beats_per_sample(rate);
                    sample + ((c.beat.0 - beat0) / bps - SAMPLE_EPSILON).ceil() as SampleTime
                }
            };
            if at > sample {
                frames = frames.min((at - sample) as usize);
                break;
            }
            self.pending.remove(0);
            if let Some(t) = c.tempo {
                let bpm = t.0.clamp(Bpm::MIN, Bpm::MAX);
                if let Some(solo) = &mut self.solo {
                    *solo = Solo { sample, beat: beat0, tempo: bpm };
                }
                // Link keeps the beat at `host_i` and runs at `bpm` from there.
                self.state.set_tempo(bpm, host_i);
                commit = true;
            }
            if let Some(q) = c.beats_per_bar.filter(|q| *q > 0.0) {
                self.quantum = q;
            }
        }
        if commit {
            self.link.commit_audio_session_state(&self.state);
        }
        let tempo = self.solo.map_or_else(|| self.state.tempo(), |s| s.tempo);
        let bps = Bpm(tempo).beats_per_sample(rate);

        if let Some(own) = started {
            self.epoch += 1;
            let zero_host_us = match self.solo {
                Some(s) => host + (s.sample - sample) as f64 * us_per_sample,
                None => self.state.time_at_beat(0.0, q) as f64,
            };
            let e = ClockEvent::Started { epoch: self.epoch, sample, beat: beat0, zero_host_us, peers, own };
            self.emit(e);
        } else if let Some((end_sample, end_beat)) = self.last_end
            && end_sample == sample
            && (beat0 - end_beat).abs() / bps * us_per_sample > JUMP_MICROS
        {
            self.emit(ClockEvent::Jump { sample, from: end_beat, to: beat0, host_us: host });
        }
        if let Some(own) = stopped {
            self.emit(ClockEvent::Stopped { sample, beat: beat0, host_us: host, own });
        }
        self.last_end = Some((sample + frames as SampleTime, beat0 + frames as f64 * bps));

        LinkBlock {
            clock: BlockClock {
                sample_time: sample,
                beat_at_first_sample: loophole_engine::time::Beats(beat0),
                beats_per_sample: bps,
                quantum: self.quantum,
                frames,
                sample_rate: rate,
            },
            host_us: host,
            us_per_sample,
            playing: self.playing,
            epoch: self.epoch,
            tempo,
            solo: solo_now,
        }
    }
}
