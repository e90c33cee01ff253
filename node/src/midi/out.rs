//! External MIDI out: MIDI clips played by an external synth through an output port, instead of
//! (or as well as) the built-in instrument.
//!
//! A track with `midi_out = "PORT"` in the session (see `docs/session-format.md`) has Signal push
//! every message its clips send, with its absolute sample ([`TimedMidi`], the engine's
//! [`MidiOutEvent`]), into an `rtrb` ring ([`Signal::connect_midi_out`]). [`ExternalOut`] — a
//! non-realtime thread — drains the ring and sends each message through the track's port when its
//! sample is heard, using the audio clock's sample → host-time line ([`SharedClock`], published
//! by the control thread from the positions the audio callback publishes). So a message's time
//! is the beat of its sample, the same beat the built-in instrument would play it at. The
//! scheduling is the sans-IO [`OutScheduler`]; the thread is a thin driver around it.
//!
//! [`MidiOut`] is what `play` and `demo` run: it opens the routes' ports ([`OutPorts::open`]; a
//! missing port is one line of warning and that track plays on without it), connects each engine
//! the node builds, and publishes the clock every control tick.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use loophole_engine::model::{MidiMsg, Session, TrackId, TrackKind};
use loophole_engine::queue::MidiOutEvent;
use loophole_engine::signal::Signal;
use loophole_engine::time::SampleTime;

use crate::midi::clock::{AudioClock, AudioPosition, HostTime, SharedClock};
use crate::midi::message::Message;
use crate::midi::ports::{MidiBackend, MidiError, OutputPort};

/// Capacity to give the ring Signal pushes into: at 1 ms per drain, room for 4 million events
/// per second.
pub const OUT_RING: usize = 4096;
/// How early a message is sent before its sample is heard (the MIDI wire and the synth take
/// about this long).
pub const SEND_AHEAD: Duration = Duration::from_micros(500);
/// How often the thread drains the ring when nothing is due sooner.
pub const POLL: Duration = Duration::from_millis(1);
/// A message sent this long after its time counts as late.
pub const LATE: Duration = Duration::from_millis(2);

/// A MIDI message at an absolute sample, from a track, as Signal hands it out.
pub type TimedMidi = MidiOutEvent;

/// Counters of an external output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutStats {
    /// Messages sent.
    pub sent: u64,
    /// Messages sent more than [`LATE`] after their time.
    pub late: u64,
    /// Messages the port refused.
    pub errors: u64,
}

/// Orders timed messages and says which are due (sans-IO). It also remembers which notes each
/// track holds, so that stopping never leaves a note hanging on the synth.
#[derive(Debug, Clone, Default)]
pub struct OutScheduler {
    queue: VecDeque<TimedMidi>,
    /// Held notes per track: bit `key` of `held[channel]`.
    held: HashMap<TrackId, [u128; 16]>,
}

impl OutScheduler {
    /// An empty scheduler.
    pub fn new() -> OutScheduler {
        OutScheduler::default()
    }

    /// Adds a message. Messages for the same sample keep their order.
    pub fn push(&mut self, e: TimedMidi) {
        let i = self.queue.partition_point(|q| q.sample <= e.sample);
        self.queue.insert(i, e);
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the next message is due (`None` when nothing waits or the clock has no estimate).
    pub fn next_due(&self, clock: &SharedClock) -> Option<HostTime> {
        clock.host_of_sample(self.queue.front()?.sample)
    }

    /// The messages due by `now + ahead`, in order, each with its track and whether it is late
    /// (its time was more than [`LATE`] before `now`). Nothing is due before the clock has an
    /// estimate.
    pub fn due(&mut self, now: HostTime, clock: &SharedClock, ahead: Duration) -> Vec<(TrackId, Message, bool)> {
        let mut out = Vec::new();
        let horizon = now.plus(ahead);
        while let Some(e) = self.queue.front().copied() {
            let Some(at) = clock.host_of_sample(e.sample) else { break };
            if at > horizon {
                break;
            }
            self.queue.pop_front();
            self.track(e.track, e.msg);
            out.push((e.track, Message::from_engine(e.msg), at.plus(LATE) < now));
        }
        out
    }

    fn track(&mut self, track: TrackId, msg: MidiMsg) {
        let held = self.held.entry(track).or_default();
        match msg {
            MidiMsg::NoteOn { channel, key, .. } => held[(channel & 15) as usize] |= 1u128 << (key & 127),
            MidiMsg::NoteOff { channel, key } => held[(channel & 15) as usize] &= !(1u128 << (key & 127)),
            MidiMsg::Cc { .. } => {}
        }
    }

    /// Note-offs for every note still held, by track, and forgets everything waiting (at a stop).
    pub fn release_all(&mut self) -> Vec<(TrackId, Message)> {
        self.queue.clear();
        let mut out = Vec::new();
        let mut tracks: Vec<_> = self.held.drain().collect();
        tracks.sort_by_key(|(t, _)| *t);
        for (track, held) in tracks {
            for (channel, bits) in held.iter().enumerate() {
                for key in 0..128u8 {
                    if *bits & (1u128 << key) != 0 {
                        out.push((track, Message::NoteOff { channel: channel as u8, key, velocity: 0 }));
                    }
                }
            }
        }
        out
    }
}

/// The open output ports of a session's routed tracks, and which port each track plays to.
#[derive(Default)]
pub struct OutPorts {
    ports: Vec<Box<dyn OutputPort>>,
    by_track: Vec<Option<usize>>,
}

impl OutPorts {
    /// Ports and the port index of each track (by track index; `None`: not routed, or its port
    /// is missing).
    pub fn new(ports: Vec<Box<dyn OutputPort>>, by_track: Vec<Option<usize>>) -> OutPorts {
        OutPorts { ports, by_track }
    }

    /// Opens the port of every track with `midi_out` (each port once, however many tracks use
    /// it). Returns the ports and one line per route: where it goes, or why it cannot (no MIDI
    /// subsystem, no such port), in which case the track plays on without it: on its built-in
    /// instrument if the session gives it one, else silently. Thread: control.
    pub fn open(session: &Session, backend: &mut dyn MidiBackend) -> (OutPorts, Vec<String>) {
        let mut lines = Vec::new();
        let mut out = OutPorts { ports: Vec::new(), by_track: vec![None; session.tracks.len()] };
        let mut opened: HashMap<String, Result<usize, MidiError>> = HashMap::new();
        for (i, t) in session.tracks.iter().enumerate() {
            let Some(route) = t.midi_out.as_ref().filter(|_| t.kind == TrackKind::Midi) else { continue };
            let result = opened
                .entry(route.port.clone())
                .or_insert_with(|| {
                    backend.open_output(&route.port).map(|p| {
                        out.ports.push(p);
                        out.ports.len() - 1
                    })
                })
                .clone();
            let channel = route.channel.map_or(String::new(), |c| format!(" on channel {}", c + 1));
            match result {
                Ok(p) => {
                    out.by_track[i] = Some(p);
                    lines.push(format!("MIDI out: track '{}' plays to '{}'{channel}", t.id, out.ports[p].name()));
                }
                Err(e) => {
                    let instead = if t.instrument.is_some() { "on its built-in instrument only" } else { "silently" };
                    lines.push(format!("MIDI out: track '{}': {e}; the track plays on {instead}", t.id));
                }
            }
        }
        (out, lines)
    }

    /// Whether no port is open.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The open ports' names.
    pub fn names(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.name().to_string()).collect()
    }

    /// Sends `msg` to `track`'s port; `None` if the track has none.
    fn send(&mut self, track: TrackId, msg: Message) -> Option<Result<(), MidiError>> {
        let p = (*self.by_track.get(track.index())?)?;
        Some(self.ports[p].send(&msg.to_bytes()))
    }
}

/// A running external MIDI output: a thread that drains Signal's rings and sends each message
/// on time to its track's port. Stop it with [`ExternalOut::stop`] (dropping it stops it too).
pub struct ExternalOut {
    names: Vec<String>,
    stop: Arc<AtomicBool>,
    rings: mpsc::Sender<rtrb::Consumer<TimedMidi>>,
    thread: Option<JoinHandle<OutStats>>,
}

impl ExternalOut {
    /// Starts the thread. `ring` is the consumer end of the ring Signal pushes into, `ports` the
    /// synths' output ports, `clock` the audio clock's line (published by the control thread).
    ///
    /// Thread: control. Not realtime-safe (spawns a thread).
    pub fn start(
        ring: rtrb::Consumer<TimedMidi>,
        mut ports: OutPorts,
        clock: Arc<SharedClock>,
    ) -> std::io::Result<ExternalOut> {
        let names = ports.names();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let (ring_tx, ring_rx) = mpsc::channel::<rtrb::Consumer<TimedMidi>>();
        let thread = std::thread::Builder::new().name("loophole-midi-out".into()).spawn(move || {
            let mut rings = vec![ring];
            let mut sched = OutScheduler::new();
            let mut stats = OutStats::default();
            let send = |ports: &mut OutPorts, track: TrackId, msg: Message, stats: &mut OutStats| match ports
                .send(track, msg)
            {
                Some(Ok(())) => stats.sent += 1,
                Some(Err(e)) => {
                    if stats.errors == 0 {
                        tracing::warn!("{e}; dropping MIDI messages to it");
                    }
                    stats.errors += 1;
                }
                None => {}
            };
            while !stopping.load(Ordering::Acquire) {
                rings.extend(ring_rx.try_iter());
                for ring in &mut rings {
                    while let Ok(e) = ring.pop() {
                        sched.push(e);
                    }
                }
                // A retired engine's ring, drained: forget it.
                rings.retain(|r| !(r.is_abandoned() && r.is_empty()));
                let now = HostTime::now();
                for (track, msg, late) in sched.due(now, &clock, SEND_AHEAD) {
                    stats.late += u64::from(late);
                    send(&mut ports, track, msg, &mut stats);
                }
                let wake = now.plus(POLL);
                let wake = match sched.next_due(&clock) {
                    Some(t) => HostTime(t.0.saturating_sub(SEND_AHEAD.as_micros() as u64)).min(wake),
                    None => wake,
                };
                let now = HostTime::now();
                if wake > now {
                    std::thread::sleep(Duration::from_micros(wake.0 - now.0));
                }
            }
            for (track, msg) in sched.release_all() {
                send(&mut ports, track, msg, &mut stats);
            }
            stats
        })?;
        Ok(ExternalOut { names, stop, rings: ring_tx, thread: Some(thread) })
    }

    /// The ports' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Adds the ring of a new engine's Signal (after an engine swap or a device change); the
    /// old ring is drained until its Signal is gone. Thread: control.
    pub fn add_ring(&self, ring: rtrb::Consumer<TimedMidi>) {
        // The thread only ends at `stop`, which takes `self`: the receiver is alive.
        let _ = self.rings.send(ring);
    }

    /// Stops the thread after sending note-offs for held notes; returns its counters. Messages
    /// not yet due are dropped. Thread: control; blocks for at most about [`POLL`].
    pub fn stop(mut self) -> OutStats {
        self.halt()
    }

    fn halt(&mut self) -> OutStats {
        self.stop.store(true, Ordering::Release);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for ExternalOut {
    fn drop(&mut self) {
        self.halt();
    }
}

/// External MIDI out as `play` and `demo` run it: the ports, the thread, and the audio clock it
/// reads. Thread: control.
pub struct MidiOut {
    out: ExternalOut,
    clock: AudioClock,
    shared: Arc<SharedClock>,
    lost: Vec<Arc<std::sync::atomic::AtomicU64>>,
}

impl MidiOut {
    /// Opens the ports of the session's routed tracks and starts the thread, with `signal`'s
    /// ring. Returns `None` (and says why in the lines) when no track is routed or no port opened.
    pub fn open(
        session: &Session,
        backend: &mut dyn MidiBackend,
        sample_rate: u32,
        signal: &mut Signal,
    ) -> (Option<MidiOut>, Vec<String>) {
        if !session.tracks.iter().any(|t| t.midi_out.is_some()) {
            return (None, Vec::new());
        }
        if let Err(e) = backend.outputs() {
            return (None, vec![format!("MIDI out: {e}; routed tracks play on without their external synths")]);
        }
        let (ports, mut lines) = OutPorts::open(session, backend);
        if ports.is_empty() {
            return (None, lines);
        }
        let shared = Arc::new(SharedClock::new());
        let lost = vec![signal.lost_midi_out()];
        match ExternalOut::start(signal.connect_midi_out(OUT_RING), ports, shared.clone()) {
            Ok(out) => (Some(MidiOut { out, clock: AudioClock::new(sample_rate), shared, lost }), lines),
            Err(e) => {
                lines.push(format!("MIDI out: cannot start its thread ({e}); playing on without it"));
                (None, lines)
            }
        }
    }

    /// Connects a new engine's Signal (built after a device failure or a Link stop).
    pub fn connect(&mut self, signal: &mut Signal) {
        self.lost.push(signal.lost_midi_out());
        self.out.add_ring(signal.connect_midi_out(OUT_RING));
    }

    /// Notes the audio position seen at `now` and publishes the sample → host-time line to the
    /// thread. The output latency (from the position passing a sample to the sample being
    /// heard) is measured from `heard`, where the audio core says a sample is heard
    /// ([`AudioClock::set_heard`]), else taken as `fallback` (the audio callback renders a block
    /// one period before it is due, and the device plays it one period later: two blocks).
    /// Call every control tick.
    pub fn step(&mut self, pos: AudioPosition, now: HostTime, fallback: Duration, heard: Option<(SampleTime, f64)>) {
        if !self.clock.observe_heard(pos, now, heard) {
            self.clock.set_output_latency(fallback);
        }
        self.clock.publish(&self.shared);
    }

    /// Stops the thread (note-offs for held notes) and returns a status line, e.g.
    /// `MIDI out: 96 messages to 'Minilogue'`.
    pub fn finish(self) -> (OutStats, String) {
        let names = self.out.names().iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        let stats = self.out.stop();
        let lost: u64 = self.lost.iter().map(|l| l.load(Ordering::Relaxed)).sum();
        let mut line = format!("MIDI out: {} messages to {names}", stats.sent);
        if stats.late > 0 {
            line.push_str(&format!(", {} late", stats.late));
        }
        if stats.errors > 0 {
            line.push_str(&format!(", {} refused by the port", stats.errors));
        }
        if lost > 0 {
            line.push_str(&format!(", {lost} lost (ring full)"));
        }
        (stats, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use loophole_engine::time::SampleTime;

    const T: TrackId = TrackId(1);

    fn on(sample: SampleTime, key: u8) -> TimedMidi {
        TimedMidi { sample, track: T, msg: MidiMsg::NoteOn { channel: 0, key, velocity: 100 } }
    }

    fn off(sample: SampleTime, key: u8) -> TimedMidi {
        TimedMidi { sample, track: T, msg: MidiMsg::NoteOff { channel: 0, key } }
    }

    #[test]
    fn messages_come_out_in_sample_order_when_their_sample_is_heard() {
        // Sample 0 is heard at host 1 s; 48 kHz.
        let clock = SharedClock::fixed(HostTime(1_000_000), 48_000);
        let mut s = OutScheduler::new();
        s.push(on(4_800, 62)); // heard at 1.1 s
        s.push(on(0, 60)); // 1.0 s
        s.push(off(4_800, 60)); // 1.1 s, after the note-on pushed earlier for the same sample
        assert_eq!(s.next_due(&clock), Some(HostTime(1_000_000)));
        assert!(s.due(HostTime(999_000), &clock, Duration::ZERO).is_empty(), "not yet");
        let first = s.due(HostTime(999_600), &clock, SEND_AHEAD);
        assert_eq!(first, vec![(T, Message::NoteOn { channel: 0, key: 60, velocity: 100 }, false)]);
        assert_eq!(s.next_due(&clock), Some(HostTime(1_100_000)));
        // Much later: both due, and late.
        let rest = s.due(HostTime(1_200_000), &clock, Duration::ZERO);
        assert_eq!(
            rest,
            vec![
                (T, Message::NoteOn { channel: 0, key: 62, velocity: 100 }, true),
                (T, Message::NoteOff { channel: 0, key: 60, velocity: 0 }, true)
            ]
        );
        // 62 is still held: a stop releases it.
        assert_eq!(s.release_all(), vec![(T, Message::NoteOff { channel: 0, key: 62, velocity: 0 })]);
        assert!(s.release_all().is_empty());
    }

    #[test]
    fn nothing_is_sent_before_the_clock_is_known() {
        let clock = SharedClock::new();
        let mut s = OutScheduler::new();
        s.push(on(0, 60));
        assert!(s.due(HostTime(u64::MAX / 2), &clock, SEND_AHEAD).is_empty());
        assert_eq!(s.len(), 1);
    }
}
