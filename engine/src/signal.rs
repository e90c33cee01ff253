//! Signal: the realtime renderer.
//!
//! Signal is built on the control thread ([`crate::build`]) with every buffer and queue sized,
//! then moved to the audio thread. There, [`Signal::process`] renders one block:
//!
//! 1. drains the command queue from Pulse into a fixed-capacity pending list;
//! 2. executes every pending event at the exact sample where the block's beat crosses the
//!    event's target beat ([`BlockClock::frame_of_beat`]), splitting the block there;
//! 3. renders clip players (audio voices with equal-power crossfades, MIDI clips into the track's
//!    built-in instrument), applies the mixer (gain, balance, mute, solo) and meters the result;
//! 4. reports what it executed through the report queue;
//! 5. for tracks routed to an external MIDI output, pushes each message the clip player sends
//!    (with its absolute sample) into the MIDI-out ring ([`Signal::connect_midi_out`]), with
//!    note-offs for every held note when a clip stops, is cut by another, wraps its loop or the
//!    timeline jumps, and an all-notes-off when the transport stops ([`Signal::transport_stopped`]).
//!
//! Clips streamed from disk ([`crate::stream`]) play their in-memory head and then the frames a
//! reader thread has put in the voice's lane; pending starts of streamed clips pre-warm a lane as
//! soon as they arrive. Missing frames are silence, counted in [`Meters::stream_underruns`].
//!
//! `process` never allocates, frees, locks, blocks or does I/O (proved by
//! `engine/tests/no_alloc.rs`). All state evolves per sample, so the same timeline cut into any
//! block sizes gives bit-identical output.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::instrument::Instrument;
use crate::model::{AudioData, ClipId, MidiData, MidiEvent, MidiMsg, MidiOutRoute, TrackId};
use crate::queue::{ALL_NOTES_OFF, Command, MidiOutEvent, MixSettings, Op, Report, Scheduled, TriggerId};
use crate::time::{Beats, BlockClock, SAMPLE_EPSILON, SampleTime};

/// Peak meters, readable from any thread without locks. Each peak holds the largest absolute
/// sample since it was last taken.
#[derive(Debug)]
pub struct Meters {
    tracks: Vec<[AtomicU32; 2]>,
    master: [AtomicU32; 2],
    /// Blocks processed (for load and liveness displays).
    blocks: AtomicU64,
    /// Frames of streamed clips played as silence because the disk reader was behind.
    stream_underruns: AtomicU64,
}

impl Meters {
    fn new(tracks: usize) -> Meters {
        Meters {
            tracks: (0..tracks).map(|_| [AtomicU32::new(0), AtomicU32::new(0)]).collect(),
            master: [AtomicU32::new(0), AtomicU32::new(0)],
            blocks: AtomicU64::new(0),
            stream_underruns: AtomicU64::new(0),
        }
    }

    /// Takes (reads and resets) the left/right peaks of a track. Thread-safe, lock-free.
    pub fn take_track(&self, track: TrackId) -> [f32; 2] {
        let t = &self.tracks[track.index()];
        [f32::from_bits(t[0].swap(0, Ordering::Relaxed)), f32::from_bits(t[1].swap(0, Ordering::Relaxed))]
    }

    /// Takes (reads and resets) the master peaks. Thread-safe, lock-free.
    pub fn take_master(&self) -> [f32; 2] {
        [
            f32::from_bits(self.master[0].swap(0, Ordering::Relaxed)),
            f32::from_bits(self.master[1].swap(0, Ordering::Relaxed)),
        ]
    }

    /// Blocks processed so far.
    pub fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Relaxed)
    }

    /// Stream underruns so far: frames of streamed clips played as silence because the disk
    /// reader had not delivered them in time (see [`crate::stream`]).
    pub fn stream_underruns(&self) -> u64 {
        self.stream_underruns.load(Ordering::Relaxed)
    }

    #[inline]
    fn hold(slot: &AtomicU32, peak: f32) {
        // Non-negative floats order like their bit patterns.
        slot.fetch_max(peak.abs().to_bits(), Ordering::Relaxed);
    }
}

/// Everything Signal needs about one clip, resolved at build time.
#[derive(Debug)]
pub(crate) struct ClipSlot {
    pub content: SlotContent,
    pub looping: bool,
    pub length: Beats,
    pub start_offset: Beats,
}

#[derive(Debug)]
pub(crate) enum SlotContent {
    /// Audio at the engine's sample rate (shared with the session when the rates match).
    Audio(Arc<AudioData>),
    Midi(Arc<MidiData>),
    /// Audio streamed from disk: a head in memory, the rest through the track's lanes.
    Streamed(crate::stream::StreamSlot),
}

/// An equal-power gain ramp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ramp {
    pos: u32,
    len: u32,
    fade_in: bool,
}

impl Ramp {
    /// Gain at the current position; then advances.
    #[inline]
    pub(crate) fn next(&mut self) -> f32 {
        let g = self.level();
        if self.pos < self.len {
            self.pos += 1;
        }
        g
    }

    #[inline]
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.len
    }

    /// The gain the ramp is at now (without advancing).
    #[inline]
    fn level(&self) -> f32 {
        if self.pos >= self.len {
            // Exactly silent (or exactly unity) at the end: cos(pi/2) is not 0 in f32.
            return if self.fade_in { 1.0 } else { 0.0 };
        }
        let t = self.pos as f32 / self.len as f32;
        let angle = t * std::f32::consts::FRAC_PI_2;
        if self.fade_in { angle.sin() } else { angle.cos() }
    }
}

/// One playing instance of an audio clip.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AudioVoice {
    clip: ClipId,
    /// Position in the content, in samples.
    pub(crate) pos: i64,
    /// Content sample where the loop (and playback) starts.
    pub(crate) offset: i64,
    pub(crate) anchor: Beats,
    /// Loop iteration (0 = first pass).
    pub(crate) iteration: i64,
    pub(crate) length: Beats,
    pub(crate) looping: bool,
    pub(crate) gain: f32,
    pub(crate) fade_in: Option<Ramp>,
    pub(crate) fade_out: Option<Ramp>,
    /// The track lane a streamed clip reads from ([`crate::stream::NO_LANE`] otherwise).
    pub(crate) lane: u8,
}

/// The MIDI clip a MIDI track is playing.
#[derive(Debug, Clone, Copy)]
struct MidiVoice {
    clip: ClipId,
    anchor: Beats,
    iteration: i64,
    /// Index of the next event (within the loop window) to play.
    next: usize,
    /// Events in `[lo, hi)` form the loop window.
    lo: usize,
    hi: usize,
    length: Beats,
    start_offset: Beats,
    looping: bool,
    /// Launch gain as MIDI velocity scale.
    velocity_scale: f32,
}

/// Signal's producer end of the MIDI-out ring.
struct MidiOutRing {
    tx: rtrb::Producer<MidiOutEvent>,
    /// Messages dropped because the ring was full.
    lost: Arc<AtomicU64>,
    /// Cleared by [`Signal::transport_stopped`]: nothing more goes out.
    open: bool,
}

/// Where a track's external messages go, and when: the ring, the track and the sample.
struct Sink<'a> {
    ring: &'a mut Option<MidiOutRing>,
    track: TrackId,
    sample: SampleTime,
}

impl Sink<'_> {
    /// Pushes a message; `false` if it was not sent (no ring, transport stopped, ring full).
    #[inline]
    fn push(&mut self, msg: MidiMsg) -> bool {
        let Some(r) = self.ring.as_mut() else { return false };
        if !r.open {
            return false;
        }
        if r.tx.push(MidiOutEvent { sample: self.sample, track: self.track, msg }).is_err() {
            r.lost.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Audio voices per track (a playing clip plus crossfading ones).
pub(crate) const VOICES_PER_TRACK: usize = 4;

struct TrackState {
    voices: [Option<AudioVoice>; VOICES_PER_TRACK],
    midi: Option<MidiVoice>,
    instrument: Option<Instrument>,
    /// Keys currently held by the MIDI clip player (bit per key, channel-agnostic).
    held: [u64; 2],
    /// Fade applied to the instrument's output when a MIDI clip is faded out.
    midi_fade: Option<Ramp>,
    /// Routed to an external output: `Some(channel override)`.
    external: Option<Option<u8>>,
    /// Notes held on the external synth: bit `key` of `ext_held[channel]`.
    ext_held: [u128; 16],
    /// Channels the track has sent on (bit per channel), for the all-notes-off.
    ext_channels: u16,
    mix: MixSettings,
    /// Per-sample ramped linear gains (left, right).
    gain_now: [f32; 2],
    left: Vec<f32>,
    right: Vec<f32>,
    /// Disk-streaming lanes (only on tracks with streamed clips).
    lanes: crate::stream::Lanes,
}

/// The realtime renderer. See the module docs.
pub struct Signal {
    sample_rate: u32,
    max_block: usize,
    declick: u32,
    clips: Vec<ClipSlot>,
    tracks: Vec<TrackState>,
    pending: Vec<Scheduled>,
    commands: rtrb::Consumer<Command>,
    reports: rtrb::Producer<Report>,
    meters: Arc<Meters>,
    any_solo: bool,
    master_left: Vec<f32>,
    master_right: Vec<f32>,
    /// Reports that could not be pushed because the report queue was full.
    lost_reports: Arc<AtomicU64>,
    /// The beat the next block should start at if the timeline runs on.
    expected_beat: Option<f64>,
    /// The MIDI-out ring, once connected.
    midi_out: Option<MidiOutRing>,
    /// MIDI-out messages dropped because the ring was full.
    lost_midi: Arc<AtomicU64>,
    /// Scratch for streamed frames.
    scratch: [Vec<f32>; 2],
}

/// A block whose first beat differs from the last block's end by more than this many beats is a
/// timeline jump (Link's own corrections are far smaller).
const BEAT_JUMP: f64 = 0.01;

/// Sizes fixed when Signal is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignalSizes {
    pub sample_rate: u32,
    pub max_block: usize,
    pub pending: usize,
    pub declick_ms: f64,
}

impl Signal {
    /// Builds Signal. Control thread; allocates.
    pub(crate) fn new(
        sizes: SignalSizes,
        clips: Vec<ClipSlot>,
        tracks: Vec<(MixSettings, Option<Instrument>, Option<MidiOutRoute>, crate::stream::Lanes)>,
        commands: rtrb::Consumer<Command>,
        reports: rtrb::Producer<Report>,
    ) -> Signal {
        let max_block = sizes.max_block.max(1);
        let any_solo = tracks.iter().any(|(m, _, _, _)| m.solo);
        let tracks: Vec<TrackState> = tracks
            .into_iter()
            .map(|(mix, instrument, route, lanes)| {
                let g = audible_gains(&mix, any_solo);
                TrackState {
                    voices: [None; VOICES_PER_TRACK],
                    midi: None,
                    instrument,
                    held: [0; 2],
                    midi_fade: None,
                    external: route.map(|r| r.channel),
                    ext_held: [0; 16],
                    ext_channels: 0,
                    mix,
                    gain_now: g,
                    left: vec![0.0; max_block],
                    right: vec![0.0; max_block],
                    lanes,
                }
            })
            .collect();
        let meters = Arc::new(Meters::new(tracks.len()));
        Signal {
            sample_rate: sizes.sample_rate,
            max_block,
            declick: (sizes.declick_ms.max(0.0) * 1e-3 * sizes.sample_rate as f64).round() as u32,
            clips,
            tracks,
            pending: Vec::with_capacity(sizes.pending.max(1)),
            commands,
            reports,
            meters,
            any_solo,
            master_left: vec![0.0; max_block],
            master_right: vec![0.0; max_block],
            lost_reports: Arc::new(AtomicU64::new(0)),
            expected_beat: None,
            scratch: [vec![0.0; max_block], vec![0.0; max_block]],
            midi_out: None,
            lost_midi: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether any track is routed to an external MIDI output.
    pub fn has_midi_out(&self) -> bool {
        self.tracks.iter().any(|t| t.external.is_some())
    }

    /// Connects the MIDI-out ring: from now on every message a routed track's clips send is
    /// pushed into it as a [`MidiOutEvent`], and the consumer end is returned (drain it on the
    /// control thread or a MIDI-out thread). Before this is called, routed tracks send nothing.
    /// A full ring drops messages and counts them ([`Signal::lost_midi_out`]); it never blocks.
    ///
    /// Thread: control, before Signal moves to the audio thread. Allocates the ring.
    pub fn connect_midi_out(&mut self, capacity: usize) -> rtrb::Consumer<MidiOutEvent> {
        let (tx, rx) = rtrb::RingBuffer::new(capacity.max(1));
        self.midi_out = Some(MidiOutRing { tx, lost: self.lost_midi.clone(), open: true });
        rx
    }

    /// A counter of MIDI-out messages dropped because the ring was full. Any thread.
    pub fn lost_midi_out(&self) -> Arc<AtomicU64> {
        self.lost_midi.clone()
    }

    /// The transport stopped at `sample`: every routed track releases its held notes and sends
    /// All Notes Off (CC 123) on each channel it used, and nothing more goes out from this
    /// Signal (a stopped transport's next start gets a fresh engine). The built-in instruments
    /// are not touched (the audio is gated by the caller).
    ///
    /// Audio thread. Realtime-safe.
    pub fn transport_stopped(&mut self, sample: SampleTime) {
        for (ti, t) in self.tracks.iter_mut().enumerate() {
            if t.external.is_none() {
                continue;
            }
            let mut sink = Sink { ring: &mut self.midi_out, track: TrackId(ti as u32), sample };
            release_external(t, &mut sink);
            let mut used = t.ext_channels;
            while used != 0 {
                let channel = used.trailing_zeros() as u8;
                used &= used - 1;
                sink.push(MidiMsg::Cc { channel, controller: ALL_NOTES_OFF, value: 0 });
            }
        }
        if let Some(r) = self.midi_out.as_mut() {
            r.open = false;
        }
    }

    /// The meters this Signal writes. Any thread.
    pub fn meters(&self) -> Arc<Meters> {
        self.meters.clone()
    }

    /// A counter of reports dropped because the report queue was full. Any thread.
    pub fn lost_reports(&self) -> Arc<AtomicU64> {
        self.lost_reports.clone()
    }

    /// Stream underruns so far ([`Meters::stream_underruns`]). Any thread.
    pub fn stream_underruns(&self) -> u64 {
        self.meters.stream_underruns()
    }

    /// Takes the commands Pulse has sent and pre-warms the streams of pending starts, as
    /// [`Signal::process`] does first. The offline renderer calls it (then runs the stream reader)
    /// before `process`, so streamed clips render deterministically. Realtime-safe.
    pub fn prepare(&mut self, clock: &BlockClock) {
        self.drain_commands(clock.sample_time);
        self.prewarm_streams(clock);
    }

    /// The sample rate Signal was built for.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Renders one block of interleaved stereo into `out` (`out.len() == clock.frames * 2`;
    /// extra samples are left untouched, a short buffer renders only what fits).
    ///
    /// Audio thread. Realtime-safe: no allocation, lock, blocking or I/O. Blocks longer than the
    /// `max_block` Signal was built with are rendered in pieces, with identical output.
    pub fn process(&mut self, clock: &BlockClock, out: &mut [f32]) {
        // Denormals (numbers below ~1e-38, as in decaying filter and envelope tails) are flushed
        // to zero while Signal runs: on many CPUs they cost a hundred times a normal number. The
        // offline renderer runs this same code, so renders and live playback stay identical.
        let _ftz = FlushDenormals::new();
        self.prepare(clock);
        // A timeline that jumps (a Link session merging moves the beat by up to half a bar, either
        // way) would leave loops out of phase: put every player where the new beat says.
        if let Some(expected) = self.expected_beat
            && (clock.beat_at_first_sample.0 - expected).abs() > BEAT_JUMP
        {
            self.resync(clock);
        }
        self.expected_beat = Some(clock.end_beat().0);
        let frames = clock.frames.min(out.len() / 2);
        let mut done = 0usize;
        while done < frames {
            let n = (frames - done).min(self.max_block);
            let sub = BlockClock {
                sample_time: clock.sample_time + done as i64,
                beat_at_first_sample: clock.beat_at_frame(done as i64),
                frames: n,
                ..*clock
            };
            self.process_block(&sub, &mut out[done * 2..(done + n) * 2]);
            done += n;
        }
        self.meters.blocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-derives every player's position from its anchor at the block's first beat (after a
    /// timeline jump). Audio voices continue there with a declick fade-in; MIDI clips release
    /// their notes and continue from the next event after the new position.
    fn resync(&mut self, clock: &BlockClock) {
        let beat = clock.beat_at_first_sample.0;
        let spb = 1.0 / clock.beats_per_sample;
        let declick = self.declick;
        for (ti, track) in self.tracks.iter_mut().enumerate() {
            for slot in track.voices.iter_mut() {
                let Some(v) = slot else { continue };
                if v.fade_out.is_some() {
                    continue;
                }
                let len = v.length.0.max(1e-9);
                let elapsed = (beat - v.anchor.0).max(0.0);
                let iteration = (elapsed / len).floor() as i64;
                if !v.looping && iteration > 0 {
                    crate::stream::release_lane(&mut track.lanes, v.lane);
                    *slot = None;
                    continue;
                }
                v.iteration = iteration;
                v.pos = v.offset + ((elapsed - iteration as f64 * len) * spb + SAMPLE_EPSILON).floor() as i64;
                v.fade_in = Some(Ramp { pos: 0, len: declick, fade_in: true });
                if let Some(ClipSlot { content: SlotContent::Streamed(s), .. }) = self.clips.get(v.clip.index()) {
                    crate::stream::seek_lane(&mut track.lanes, v.lane, s, v.pos);
                }
            }
            if let Some(m) = track.midi.as_mut() {
                let len = m.length.0.max(1e-9);
                let elapsed = (beat - m.anchor.0).max(0.0);
                let iteration = if m.looping { (elapsed / len).floor() as i64 } else { 0 };
                let into = elapsed - iteration as f64 * len;
                if let Some(SlotContent::Midi(data)) = self.clips.get(m.clip.index()).map(|s| &s.content) {
                    m.iteration = iteration;
                    m.next =
                        m.lo + data.events[m.lo..m.hi].partition_point(|e| e.beat.0 - m.start_offset.0 < into - 1e-9);
                }
                let mut sink = Sink { ring: &mut self.midi_out, track: TrackId(ti as u32), sample: clock.sample_time };
                release_held(track, &mut sink);
            }
        }
    }

    fn drain_commands(&mut self, sample: SampleTime) {
        while let Ok(cmd) = self.commands.pop() {
            match cmd {
                Command::Schedule(ev) => {
                    if self.pending.len() < self.pending.capacity() {
                        self.pending.push(ev);
                    } else {
                        self.report(Report::Overflow { event: ev });
                    }
                }
                Command::Mix { track, settings } => {
                    if let Some(t) = self.tracks.get_mut(track.index()) {
                        t.mix = settings;
                    }
                    self.any_solo = self.tracks.iter().any(|t| t.mix.solo);
                }
                Command::Cancel { id } => {
                    if let Some(i) = self.pending.iter().position(|e| e.id == id) {
                        self.pending.swap_remove(i);
                    }
                }
                Command::Panic => {
                    self.pending.clear();
                    let declick = self.declick;
                    for (ti, t) in self.tracks.iter_mut().enumerate() {
                        for v in t.voices.iter_mut().flatten() {
                            start_fade_out(v, declick);
                        }
                        if t.midi.take().is_some() || t.held != [0; 2] || t.ext_held != [0; 16] {
                            t.midi_fade = None;
                            let mut sink = Sink { ring: &mut self.midi_out, track: TrackId(ti as u32), sample };
                            release_held(t, &mut sink);
                        }
                    }
                }
            }
        }
    }

    /// Pre-warms a lane for every pending start of a streamed clip that will not begin inside
    /// its head, and frees lanes pre-warmed for triggers no longer pending. Realtime-safe.
    fn prewarm_streams(&mut self, clock: &BlockClock) {
        if self.tracks.iter().all(|t| t.lanes.0.is_empty()) {
            return;
        }
        let spb = 1.0 / clock.beats_per_sample;
        for ev in &self.pending {
            let Op::Start { clip, anchor, .. } = ev.op else { continue };
            let (Some(slot), Some(track)) = (self.clips.get(clip.index()), self.tracks.get_mut(ev.track.index()))
            else {
                continue;
            };
            let SlotContent::Streamed(s) = &slot.content else { continue };
            // Where the clip will be at its target (at today's tempo), as start_clip computes it.
            let length = slot.length.0.max(1e-9);
            let elapsed = (ev.target.0 - anchor.0).max(0.0);
            let iteration = if slot.looping { (elapsed / length).floor() } else { 0.0 };
            let into = elapsed - iteration * length;
            let pos = (slot.start_offset.0 * spb).round() as i64 + (into * spb + SAMPLE_EPSILON).floor() as i64;
            crate::stream::prewarm(&mut track.lanes, s, ev.id, pos);
        }
        let pending = &self.pending;
        for t in &mut self.tracks {
            crate::stream::tidy(&mut t.lanes, |id| pending.iter().any(|e| e.id == id));
        }
    }

    #[inline]
    fn report(&mut self, r: Report) {
        push_report(&mut self.reports, &self.lost_reports, r);
    }

    fn process_block(&mut self, clock: &BlockClock, out: &mut [f32]) {
        let frames = clock.frames;
        for t in &mut self.tracks {
            t.left[..frames].fill(0.0);
            t.right[..frames].fill(0.0);
        }
        let mut cursor = 0usize;
        loop {
            // The earliest pending event (ties: lowest id) that falls in this block.
            let mut best: Option<(usize, i64)> = None;
            for (i, ev) in self.pending.iter().enumerate() {
                let f = clock.frame_of_beat(ev.target);
                if f >= frames as i64 {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((j, bf)) => f < bf || (f == bf && ev.id < self.pending[j].id),
                };
                if better {
                    best = Some((i, f));
                }
            }
            let Some((i, f)) = best else { break };
            let at = (f.max(cursor as i64)) as usize;
            self.render_tracks(clock, cursor, at);
            cursor = at;
            let ev = self.pending.swap_remove(i);
            self.execute(clock, ev, at, f < 0);
        }
        self.render_tracks(clock, cursor, frames);
        self.mix(frames, out);
    }

    fn execute(&mut self, clock: &BlockClock, ev: Scheduled, frame: usize, late: bool) {
        let Some(track) = self.tracks.get_mut(ev.track.index()) else { return };
        let beat = clock.beat_at_frame(frame as i64);
        let declick = self.declick;
        match ev.op {
            Op::Start { clip, anchor, gain } => {
                if let Some(slot) = self.clips.get(clip.index()) {
                    let mut sink =
                        Sink { ring: &mut self.midi_out, track: ev.track, sample: clock.sample_time + frame as i64 };
                    start_clip(track, slot, ev.id, clip, anchor, gain, frame, clock, declick, &mut sink);
                }
            }
            Op::Stop { fade } => {
                let len = match fade {
                    Some(b) => (b.0 / clock.beats_per_sample).round().max(0.0) as u32,
                    None => declick,
                };
                end_voices(track, clock, frame, len);
                if track.midi.take().is_some() {
                    if fade.is_some() && len > 0 {
                        // Keep the notes sounding through the fade; silence them at its end.
                        track.midi_fade = Some(Ramp { pos: 0, len, fade_in: false });
                    } else {
                        let mut sink = Sink {
                            ring: &mut self.midi_out,
                            track: ev.track,
                            sample: clock.sample_time + frame as i64,
                        };
                        release_held(track, &mut sink);
                    }
                }
            }
        }
        self.report(Report::Executed {
            event: ev,
            beat,
            sample: clock.sample_time + frame as i64,
            tempo: clock.tempo().0,
            late,
        });
    }

    /// Renders every track's clip players for frames `[from, to)` of the block.
    fn render_tracks(&mut self, clock: &BlockClock, from: usize, to: usize) {
        if to <= from {
            return;
        }
        for ti in 0..self.tracks.len() {
            let track = &mut self.tracks[ti];
            for vi in 0..VOICES_PER_TRACK {
                if let Some(mut v) = track.voices[vi] {
                    let alive = match self.clips.get(v.clip.index()).map(|s| &s.content) {
                        Some(SlotContent::Audio(a)) => crate::voice::render(
                            &mut v,
                            &mut crate::voice::Resident(a),
                            clock,
                            (from, to),
                            (&mut track.left, &mut track.right),
                        ),
                        Some(SlotContent::Streamed(s)) => crate::stream::render_voice(
                            &mut v,
                            s,
                            &mut track.lanes,
                            clock,
                            (from, to),
                            (&mut track.left, &mut track.right),
                            &mut self.scratch,
                            &self.meters.stream_underruns,
                        ),
                        _ => None,
                    };
                    if !matches!(alive, Some(VoiceEnd::Playing)) {
                        crate::stream::release_lane(&mut track.lanes, v.lane);
                    }
                    match alive {
                        Some(VoiceEnd::Playing) => track.voices[vi] = Some(v),
                        Some(VoiceEnd::Ended(frame)) => {
                            track.voices[vi] = None;
                            if v.fade_out.is_none() {
                                let r = Report::ClipEnded {
                                    track: TrackId(ti as u32),
                                    clip: v.clip,
                                    sample: clock.sample_time + frame as i64,
                                };
                                push_report(&mut self.reports, &self.lost_reports, r);
                            }
                        }
                        Some(VoiceEnd::Faded) | None => track.voices[vi] = None,
                    }
                }
            }
            if (track.instrument.is_some() || track.external.is_some())
                && let Some((clip, frame)) =
                    render_midi_track(track, &self.clips, clock, from, to, &mut self.midi_out, TrackId(ti as u32))
            {
                let r = Report::ClipEnded { track: TrackId(ti as u32), clip, sample: clock.sample_time + frame as i64 };
                push_report(&mut self.reports, &self.lost_reports, r);
            }
        }
    }

    fn mix(&mut self, frames: usize, out: &mut [f32]) {
        let step = if self.declick == 0 { 1.0 } else { 1.0 / self.declick as f32 };
        self.master_left[..frames].fill(0.0);
        self.master_right[..frames].fill(0.0);
        for (ti, t) in self.tracks.iter_mut().enumerate() {
            let target = audible_gains(&t.mix, self.any_solo);
            let mut peak = [0f32; 2];
            let (ml, mr) = (&mut self.master_left[..frames], &mut self.master_right[..frames]);
            if t.gain_now == target {
                // Steady gain: the common case, a straight multiply-add per channel. The peak is
                // kept as the integer bits of |x| (which order like the floats), so the loop
                // vectorises: a float max reduction would not, without fast-math.
                for (c, (m, src)) in [(ml, &t.left[..frames]), (mr, &t.right[..frames])].into_iter().enumerate() {
                    let g = target[c];
                    let mut bits = 0u32;
                    for (m, &x) in m.iter_mut().zip(src) {
                        let y = x * g;
                        bits = bits.max(y.to_bits() & 0x7fff_ffff);
                        *m += y;
                    }
                    peak[c] = f32::from_bits(bits);
                }
            } else {
                // Ramping towards a new gain, one step per sample (declick).
                for i in 0..frames {
                    for (g, tg) in t.gain_now.iter_mut().zip(target) {
                        let d = tg - *g;
                        *g = if d.abs() <= step { tg } else { *g + step * d.signum() };
                    }
                    let l = t.left[i] * t.gain_now[0];
                    let r = t.right[i] * t.gain_now[1];
                    peak[0] = peak[0].max(l.abs());
                    peak[1] = peak[1].max(r.abs());
                    ml[i] += l;
                    mr[i] += r;
                }
            }
            Meters::hold(&self.meters.tracks[ti][0], peak[0]);
            Meters::hold(&self.meters.tracks[ti][1], peak[1]);
        }
        let mut peak = [0f32; 2];
        for i in 0..frames {
            let l = self.master_left[i];
            let r = self.master_right[i];
            peak[0] = peak[0].max(l.abs());
            peak[1] = peak[1].max(r.abs());
            out[2 * i] = l;
            out[2 * i + 1] = r;
        }
        Meters::hold(&self.meters.master[0], peak[0]);
        Meters::hold(&self.meters.master[1], peak[1]);
    }
}

/// Sets the CPU's flush-to-zero and denormals-are-zero modes for the current thread, and puts
/// the previous mode back when dropped. Realtime-safe: two register writes.
struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
    #[cfg(target_arch = "aarch64")]
    saved: u64,
}

impl FlushDenormals {
    #[inline]
    fn new() -> FlushDenormals {
        #[cfg(target_arch = "x86_64")]
        {
            let mut saved: u32 = 0;
            // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register; setting
            // FTZ (bit 15) and DAZ (bit 6) only changes how denormal results are rounded.
            unsafe {
                std::arch::asm!("stmxcsr [{}]", in(reg) &mut saved, options(nostack, preserves_flags));
                let set = saved | (1 << 15) | (1 << 6);
                std::arch::asm!("ldmxcsr [{}]", in(reg) &set, options(nostack, preserves_flags, readonly));
            }
            FlushDenormals { saved }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let saved: u64;
            // SAFETY: reads and writes this thread's FPCR; FZ (bit 24) flushes denormals to zero.
            unsafe {
                std::arch::asm!("mrs {}, fpcr", out(reg) saved, options(nomem, nostack, preserves_flags));
                std::arch::asm!("msr fpcr, {}", in(reg) saved | (1 << 24), options(nomem, nostack, preserves_flags));
            }
            FlushDenormals { saved }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        FlushDenormals {}
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the value read in `new`.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &self.saved, options(nostack, preserves_flags, readonly));
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: restores the value read in `new`.
        unsafe {
            std::arch::asm!("msr fpcr, {}", in(reg) self.saved, options(nomem, nostack, preserves_flags));
        }
    }
}

/// Pushes a report; a full queue counts it as lost instead of blocking.
#[inline]
fn push_report(reports: &mut rtrb::Producer<Report>, lost: &AtomicU64, r: Report) {
    if reports.push(r).is_err() {
        lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// Left/right linear gains of a track given mute, solo, fader and balance.
fn audible_gains(mix: &MixSettings, any_solo: bool) -> [f32; 2] {
    if mix.mute || (any_solo && !mix.solo) {
        return [0.0, 0.0];
    }
    let p = mix.pan.clamp(-1.0, 1.0);
    let l = if p > 0.0 { (p * std::f32::consts::FRAC_PI_2).cos() } else { 1.0 };
    let r = if p < 0.0 { (-p * std::f32::consts::FRAC_PI_2).cos() } else { 1.0 };
    [mix.gain * l, mix.gain * r]
}

fn start_fade_out(v: &mut AudioVoice, len: u32) {
    // Continue from the level any fade-in had reached, so a fade-out never jumps up.
    let level = v.fade_in.map(|r| r.level()).unwrap_or(1.0);
    v.fade_in = None;
    match v.fade_out {
        Some(r) if r.len.saturating_sub(r.pos) <= len => {}
        _ => {
            // Start the cosine at the angle whose value is the current level.
            // A zero-length fade silences the voice at once (the ramp's level is then 0).
            let start = (level.clamp(0.0, 1.0).acos() / std::f32::consts::FRAC_PI_2 * len as f32) as u32;
            v.fade_out = Some(Ramp { pos: start.min(len), len, fade_in: false });
        }
    }
}

/// Ends a track's audio voices at `frame`: a voice whose loop pass (or one-shot) ends exactly
/// here stops with it, with no fade into its next pass (so a switch on a loop boundary has no
/// overlap); any other fades out over `fade` samples.
fn end_voices(track: &mut TrackState, clock: &BlockClock, frame: usize, fade: u32) {
    for slot in track.voices.iter_mut() {
        if let Some(v) = slot {
            let pass_end = clock.frame_of_beat(Beats(v.anchor.0 + (v.iteration + 1) as f64 * v.length.0));
            if pass_end <= frame as i64 && v.fade_out.is_none() {
                crate::stream::release_lane(&mut track.lanes, v.lane);
                *slot = None;
            } else {
                start_fade_out(v, fade);
            }
        }
    }
}

/// Sends note-offs for every key the clip player holds (to the instrument and the external
/// output).
fn release_held(track: &mut TrackState, sink: &mut Sink<'_>) {
    release_external(track, sink);
    if let Some(inst) = track.instrument.as_mut() {
        for key in 0..128u8 {
            let (w, b) = ((key / 64) as usize, key % 64);
            if track.held[w] & (1 << b) != 0 {
                inst.handle(MidiMsg::NoteOff { channel: 0, key });
            }
        }
    }
    track.held = [0; 2];
}

/// Note-offs to the external output for every note held there. A note-off the full ring refuses
/// stays held, so the next release sends it again.
fn release_external(track: &mut TrackState, sink: &mut Sink<'_>) {
    for channel in 0..16u8 {
        let mut bits = track.ext_held[channel as usize];
        while bits != 0 {
            let key = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            if sink.push(MidiMsg::NoteOff { channel, key }) {
                track.ext_held[channel as usize] &= !(1u128 << key);
            }
        }
    }
}

/// Sends a clip message to the track's external output (on the route's channel), keeping
/// track of the notes it holds there.
fn send_external(track: &mut TrackState, sink: &mut Sink<'_>, msg: MidiMsg) {
    let Some(route_channel) = track.external else { return };
    let msg = match (msg, route_channel) {
        (m, None) => m,
        (MidiMsg::NoteOn { key, velocity, .. }, Some(channel)) => MidiMsg::NoteOn { channel, key, velocity },
        (MidiMsg::NoteOff { key, .. }, Some(channel)) => MidiMsg::NoteOff { channel, key },
        (MidiMsg::Cc { controller, value, .. }, Some(channel)) => MidiMsg::Cc { channel, controller, value },
    };
    if !sink.push(msg) {
        return;
    }
    match msg {
        MidiMsg::NoteOn { channel, key, .. } => {
            track.ext_held[(channel & 15) as usize] |= 1u128 << (key & 127);
            track.ext_channels |= 1 << (channel & 15);
        }
        MidiMsg::NoteOff { channel, key } => track.ext_held[(channel & 15) as usize] &= !(1u128 << (key & 127)),
        MidiMsg::Cc { channel, .. } => track.ext_channels |= 1 << (channel & 15),
    }
}

#[allow(clippy::too_many_arguments)]
fn start_clip(
    track: &mut TrackState,
    slot: &ClipSlot,
    id: TriggerId,
    clip: ClipId,
    anchor: Beats,
    gain: f32,
    frame: usize,
    clock: &BlockClock,
    declick: u32,
    sink: &mut Sink<'_>,
) {
    let beat = clock.beat_at_frame(frame as i64);
    // Position of the clip at this beat, in beats from its start offset.
    let length = slot.length.0.max(1e-9);
    let elapsed = (beat.0 - anchor.0).max(0.0);
    let mut iteration = (elapsed / length).floor() as i64;
    if !slot.looping && iteration > 0 {
        // A one-shot whose time has passed does not start.
        return;
    }
    if !slot.looping {
        iteration = 0;
    }
    let into = elapsed - iteration as f64 * length;
    match &slot.content {
        SlotContent::Audio(_) | SlotContent::Streamed(_) => {
            end_voices(track, clock, frame, declick);
            let spb = 1.0 / clock.beats_per_sample;
            let offset = (slot.start_offset.0 * spb).round() as i64;
            // Clip sample k is heard at the first engine sample whose beat is at or after
            // `anchor + k` samples' worth of beats (the crossing rule): so floor, not round. A
            // start executed a fraction of a sample after its beat (as Link timelines make) then
            // still starts at sample 0, with no fade-in.
            let into_samples = (into * spb + SAMPLE_EPSILON).floor() as i64;
            let voice = AudioVoice {
                clip,
                pos: offset + into_samples,
                offset,
                anchor,
                iteration,
                length: slot.length,
                looping: slot.looping,
                gain,
                fade_in: if into_samples != 0 { Some(Ramp { pos: 0, len: declick, fade_in: true }) } else { None },
                fade_out: None,
                lane: crate::stream::NO_LANE,
            };
            // A free slot, or else the voice that is quietest (furthest into its fade-out).
            let idx = track.voices.iter().position(|v| v.is_none()).unwrap_or_else(|| {
                let mut best = 0;
                let mut best_level = f32::MAX;
                for (i, v) in track.voices.iter().enumerate() {
                    let level = v.and_then(|v| v.fade_out).map(|r| r.level()).unwrap_or(1.0);
                    if level < best_level {
                        best_level = level;
                        best = i;
                    }
                }
                best
            });
            if let Some(old) = track.voices[idx].take() {
                crate::stream::release_lane(&mut track.lanes, old.lane);
            }
            let mut voice = voice;
            if let SlotContent::Streamed(s) = &slot.content {
                voice.lane = crate::stream::take_lane(&mut track.lanes, s, id, voice.pos);
            }
            track.voices[idx] = Some(voice);
        }
        SlotContent::Midi(data) => {
            release_held(track, sink);
            track.midi_fade = None;
            let lo = data.events.partition_point(|e| e.beat.0 < slot.start_offset.0 - 1e-9);
            let hi = data.events.partition_point(|e| e.beat.0 < slot.start_offset.0 + slot.length.0 - 1e-9);
            let next = lo + data.events[lo..hi].partition_point(|e| e.beat.0 - slot.start_offset.0 < into - 1e-9);
            track.midi = Some(MidiVoice {
                clip,
                anchor,
                iteration,
                next,
                lo,
                hi,
                length: slot.length,
                start_offset: slot.start_offset,
                looping: slot.looping,
                velocity_scale: gain,
            });
        }
    }
}

pub(crate) enum VoiceEnd {
    Playing,
    /// A one-shot reached its end at this frame.
    Ended(usize),
    /// A fade-out finished.
    Faded,
}

/// Renders a MIDI track (clip events into its instrument) for frames `[from, to)`.
/// Returns the clip and frame if a one-shot MIDI clip ended.
fn render_midi_track(
    track: &mut TrackState,
    clips: &[ClipSlot],
    clock: &BlockClock,
    from: usize,
    to: usize,
    ring: &mut Option<MidiOutRing>,
    track_id: TrackId,
) -> Option<(ClipId, usize)> {
    let mut ended = None;
    let mut i = from;
    while i < to {
        // Next thing that happens: a clip event or the end of a loop pass.
        let mut next_frame = to;
        let mut action: Option<MidiStep> = None;
        if let Some(m) = track.midi.as_ref()
            && let Some(SlotContent::Midi(data)) = clips.get(m.clip.index()).map(|s| &s.content)
        {
            let base = m.anchor.0 + m.iteration as f64 * m.length.0 - m.start_offset.0;
            let pass_end = clock.frame_of_beat(Beats(m.anchor.0 + (m.iteration + 1) as f64 * m.length.0));
            let ev_frame = data
                .events
                .get(m.next)
                .filter(|_| m.next < m.hi)
                .map(|e: &MidiEvent| (clock.frame_of_beat(Beats(base + e.beat.0)), *e));
            match ev_frame {
                Some((f, e)) if f < pass_end => {
                    if f < next_frame as i64 {
                        next_frame = f.max(i as i64) as usize;
                        action = Some(MidiStep::Event(e.msg));
                    }
                }
                _ => {
                    if pass_end < next_frame as i64 {
                        next_frame = pass_end.max(i as i64) as usize;
                        action = Some(MidiStep::PassEnd);
                    }
                }
            }
        }
        if let Some(r) = track.midi_fade {
            // The fade ends within this span?
            let left_in_fade = (r.len - r.pos) as usize;
            if i + left_in_fade < next_frame {
                next_frame = i + left_in_fade;
                action = Some(MidiStep::FadeEnd);
            }
        }
        render_instrument(track, i, next_frame);
        i = next_frame;
        let mut sink = Sink { ring: &mut *ring, track: track_id, sample: clock.sample_time + i as i64 };
        match action {
            None => {}
            Some(MidiStep::Event(msg)) => {
                let Some(m) = track.midi.as_mut() else { continue };
                m.next += 1;
                let scale = m.velocity_scale;
                play_clip_msg(track, msg, scale, &mut sink);
            }
            Some(MidiStep::PassEnd) => {
                let Some(m) = track.midi.as_mut() else { continue };
                if m.looping {
                    m.iteration += 1;
                    m.next = m.lo;
                    release_held(track, &mut sink);
                } else {
                    ended = Some((m.clip, i));
                    track.midi = None;
                    release_held(track, &mut sink);
                }
            }
            Some(MidiStep::FadeEnd) => {
                track.midi_fade = None;
                release_held(track, &mut sink);
                if let Some(inst) = track.instrument.as_mut() {
                    // All Sound Off: the fade has reached silence, so cut the release tails.
                    inst.handle(MidiMsg::Cc { channel: 0, controller: 120, value: 0 });
                }
            }
        }
    }
    ended
}

enum MidiStep {
    Event(MidiMsg),
    PassEnd,
    FadeEnd,
}

fn play_clip_msg(track: &mut TrackState, msg: MidiMsg, velocity_scale: f32, sink: &mut Sink<'_>) {
    let msg = match msg {
        MidiMsg::NoteOn { channel, key, velocity } => {
            let v = ((velocity as f32 * velocity_scale).round() as i32).clamp(1, 127) as u8;
            MidiMsg::NoteOn { channel, key, velocity: v }
        }
        m => m,
    };
    send_external(track, sink, msg);
    let Some(inst) = track.instrument.as_mut() else { return };
    match msg {
        MidiMsg::NoteOn { key, .. } => {
            let (w, b) = ((key / 64) as usize & 1, key % 64);
            track.held[w] |= 1 << b;
            inst.handle(msg);
        }
        MidiMsg::NoteOff { key, .. } => {
            let (w, b) = ((key / 64) as usize & 1, key % 64);
            track.held[w] &= !(1 << b);
            inst.handle(msg);
        }
        MidiMsg::Cc { .. } => inst.handle(msg),
    }
}

/// Renders the track's instrument into its buffers for `[from, to)`, applying a MIDI fade.
fn render_instrument(track: &mut TrackState, from: usize, to: usize) {
    if to <= from {
        return;
    }
    let Some(inst) = track.instrument.as_mut() else {
        // No instrument (an external synth only): the fade still runs, so that its end releases
        // the notes on time.
        if let Some(r) = track.midi_fade.as_mut() {
            r.pos = r.pos.saturating_add((to - from) as u32).min(r.len);
        }
        return;
    };
    if let Some(r) = track.midi_fade.as_mut() {
        // Render into the (zeroed) tail of the buffer region, then scale.
        let (l, rr) = (&mut track.left[from..to], &mut track.right[from..to]);
        // The buffers may already hold nothing but zeros for a MIDI track (no audio voices).
        let mut tmp_l = [0f32; 64];
        let mut tmp_r = [0f32; 64];
        let mut k = 0;
        while k < l.len() {
            let n = (l.len() - k).min(64);
            tmp_l[..n].fill(0.0);
            tmp_r[..n].fill(0.0);
            inst.render(&mut tmp_l[..n], &mut tmp_r[..n]);
            for j in 0..n {
                let g = r.next();
                l[k + j] += tmp_l[j] * g;
                rr[k + j] += tmp_r[j] * g;
            }
            k += n;
        }
    } else {
        inst.render(&mut track.left[from..to], &mut track.right[from..to]);
    }
}

#[cfg(test)]
mod tests {
    use super::FlushDenormals;

    #[test]
    fn denormals_are_flushed_inside_and_restored_after() {
        let tiny = std::hint::black_box(1e-39_f32);
        let half = std::hint::black_box(0.5_f32);
        assert!(tiny * half != 0.0, "denormals work outside");
        {
            let _g = FlushDenormals::new();
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            assert_eq!(std::hint::black_box(tiny) * half, 0.0, "flushed inside");
        }
        assert!(std::hint::black_box(tiny) * half != 0.0, "restored after");
    }
}
