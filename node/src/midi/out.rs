//! External MIDI out: MIDI clips played by an external synth through an output port instead of
//! the built-in instrument.
//!
//! Signal renders MIDI clips on the audio thread, at the exact sample of each event. To reach an
//! external port, those events must leave the audio thread without blocking: Signal pushes
//! `(sample, message)` pairs ([`TimedMidi`]) into an `rtrb` ring, and [`ExternalOut`] — a
//! non-realtime thread — drains it and sends each message when its sample is heard, using the
//! audio clock's sample → host-time line ([`SharedClock`], published by the control thread).
//! The scheduling is the sans-IO [`OutScheduler`]; the thread is a thin driver around it.
//!
//! The engine side (a track routed to a port, Signal pushing its events into the ring) is not
//! there yet; see `docs/controllers.md`, "External synths".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use loophole_engine::model::MidiMsg;
use loophole_engine::time::SampleTime;

use crate::midi::clock::{HostTime, SharedClock};
use crate::midi::message::Message;
use crate::midi::ports::OutputPort;

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

/// A MIDI message at an absolute sample, as Signal hands it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedMidi {
    /// The sample it belongs to.
    pub sample: SampleTime,
    /// The message.
    pub msg: MidiMsg,
}

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

/// Orders timed messages and says which are due (sans-IO). It also remembers which notes are
/// held, so that stopping never leaves a note hanging on the synth.
#[derive(Debug, Clone, Default)]
pub struct OutScheduler {
    queue: std::collections::VecDeque<TimedMidi>,
    /// Held notes: bit `key` of `held[channel]`.
    held: [u128; 16],
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

    /// The messages due by `now + ahead`, in order, each with whether it is late (its time was
    /// more than [`LATE`] before `now`). Nothing is due before the clock has an estimate.
    pub fn due(&mut self, now: HostTime, clock: &SharedClock, ahead: Duration) -> Vec<(Message, bool)> {
        let mut out = Vec::new();
        let horizon = now.plus(ahead);
        while let Some(e) = self.queue.front().copied() {
            let Some(at) = clock.host_of_sample(e.sample) else { break };
            if at > horizon {
                break;
            }
            self.queue.pop_front();
            self.track(e.msg);
            out.push((Message::from_engine(e.msg), at.plus(LATE) < now));
        }
        out
    }

    fn track(&mut self, msg: MidiMsg) {
        match msg {
            MidiMsg::NoteOn { channel, key, .. } => self.held[(channel & 15) as usize] |= 1u128 << (key & 127),
            MidiMsg::NoteOff { channel, key } => self.held[(channel & 15) as usize] &= !(1u128 << (key & 127)),
            MidiMsg::Cc { .. } => {}
        }
    }

    /// Note-offs for every note still held, and forgets everything waiting (at a stop).
    pub fn release_all(&mut self) -> Vec<Message> {
        self.queue.clear();
        let mut out = Vec::new();
        for (channel, bits) in self.held.iter_mut().enumerate() {
            for key in 0..128u8 {
                if *bits & (1u128 << key) != 0 {
                    out.push(Message::NoteOff { channel: channel as u8, key, velocity: 0 });
                }
            }
            *bits = 0;
        }
        out
    }
}

/// A running external MIDI output: a thread that drains Signal's ring and sends each message on
/// time. Stop it with [`ExternalOut::stop`] (dropping it stops it too).
pub struct ExternalOut {
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<OutStats>>,
}

impl ExternalOut {
    /// Starts the thread. `ring` is the consumer end of the ring Signal pushes into, `port` the
    /// synth's output port, `clock` the audio clock's line (published by the control thread).
    ///
    /// Thread: control. Not realtime-safe (spawns a thread).
    pub fn start(
        mut ring: rtrb::Consumer<TimedMidi>,
        mut port: Box<dyn OutputPort>,
        clock: Arc<SharedClock>,
    ) -> std::io::Result<ExternalOut> {
        let name = port.name().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new().name("loophole-midi-out".into()).spawn(move || {
            let mut sched = OutScheduler::new();
            let mut stats = OutStats::default();
            let send =
                |port: &mut Box<dyn OutputPort>, msg: Message, stats: &mut OutStats| match port.send(&msg.to_bytes()) {
                    Ok(()) => stats.sent += 1,
                    Err(e) => {
                        if stats.errors == 0 {
                            tracing::warn!("{e}; dropping MIDI messages to it");
                        }
                        stats.errors += 1;
                    }
                };
            while !stopping.load(Ordering::Acquire) {
                while let Ok(e) = ring.pop() {
                    sched.push(e);
                }
                let now = HostTime::now();
                for (msg, late) in sched.due(now, &clock, SEND_AHEAD) {
                    stats.late += u64::from(late);
                    send(&mut port, msg, &mut stats);
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
            for msg in sched.release_all() {
                send(&mut port, msg, &mut stats);
            }
            stats
        })?;
        Ok(ExternalOut { name, stop, thread: Some(thread) })
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.name
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

#[cfg(test)]
mod tests {
    use super::*;

    fn on(sample: SampleTime, key: u8) -> TimedMidi {
        TimedMidi { sample, msg: MidiMsg::NoteOn { channel: 0, key, velocity: 100 } }
    }

    fn off(sample: SampleTime, key: u8) -> TimedMidi {
        TimedMidi { sample, msg: MidiMsg::NoteOff { channel: 0, key } }
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
        assert_eq!(first, vec![(Message::NoteOn { channel: 0, key: 60, velocity: 100 }, false)]);
        assert_eq!(s.next_due(&clock), Some(HostTime(1_100_000)));
        // Much later: both due, and late.
        let rest = s.due(HostTime(1_200_000), &clock, Duration::ZERO);
        assert_eq!(
            rest,
            vec![
                (Message::NoteOn { channel: 0, key: 62, velocity: 100 }, true),
                (Message::NoteOff { channel: 0, key: 60, velocity: 0 }, true)
            ]
        );
        // 62 is still held: a stop releases it.
        assert_eq!(s.release_all(), vec![Message::NoteOff { channel: 0, key: 62, velocity: 0 }]);
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
