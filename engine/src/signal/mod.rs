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
//! Clips streamed from disk (the media layer's `stream`) play their in-memory head and then the frames a
//! reader thread has put in the voice's lane; pending starts of streamed clips pre-warm a lane as
//! soon as they arrive. Missing frames are silence, counted in [`Meters::stream_underruns`].
//! In an offline render, clips of 32-bit float WAV files are read in place ([`mapped`]): each
//! segment a voice plays is converted out of the file's mapped bytes.
//!
//! `process` never allocates, frees, locks, blocks or does I/O (proved by
//! `engine/tests/no_alloc.rs`). All state evolves per sample, so the same timeline cut into any
//! block sizes gives bit-identical output.

pub(crate) mod mapped;
mod meters;
pub mod record;
pub(crate) mod streamed;
mod track;
pub(crate) mod voice;

pub use meters::Meters;
pub(crate) use streamed::StreamSlot;
pub(crate) use track::{ClipSlot, LANES_PER_TRACK, SlotContent};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::instrument::Instrument;
use crate::model::{MidiMsg, MidiOutRoute, TrackId};
use crate::queue::lanes::Lanes;
use crate::queue::{ALL_NOTES_OFF, Command, MidiOutEvent, MixSettings, Op, Report, Scheduled};
use crate::time::{BlockClock, SAMPLE_EPSILON, SampleTime};
use track::{
    MidiOutRing, Sink, TrackState, VOICES_PER_TRACK, end_voices, release_external, release_held, render_midi_track,
    start_clip, start_fade_out,
};
use voice::{Ramp, VoiceEnd};

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
    /// The record taps, once connected.
    recorder: Option<record::Recorder>,
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
        tracks: Vec<(MixSettings, Option<Instrument>, Option<MidiOutRoute>, Lanes)>,
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
                    heard: true,
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
            recorder: None,
        }
    }

    /// Keeps `track` out of this node's output: it is still scheduled and run (its clips start,
    /// loop and end, and are reported, exactly as on the node that plays it), but neither the
    /// output nor the meters hear it. A band's nodes each play their own tracks this way.
    /// Control thread, before the audio starts.
    pub fn set_heard(&mut self, track: TrackId, heard: bool) {
        if let Some(t) = self.tracks.get_mut(track.index()) {
            t.heard = heard;
        }
    }

    /// Connects the record taps: from now on Signal reads `inputs.len()` input rings (each with
    /// that many interleaved channels) every block, and records the tracks with a route when
    /// their scheduled takes start. Returns the rings' other ends (see [`record::Recorder::new`]).
    ///
    /// Thread: control, before Signal moves to the audio thread. Allocates the rings.
    pub fn connect_recording(
        &mut self,
        inputs: &[usize],
        routes: &[Option<record::TrackRoute>],
        input_frames: usize,
        take_slots: usize,
    ) -> record::RecordEnds {
        let (recorder, ends) = record::Recorder::new(inputs, routes, self.max_block, input_frames, take_slots);
        self.recorder = Some(recorder);
        ends
    }

    /// Free slots in the take ring (`usize::MAX` when recording is not connected). Any thread
    /// that owns Signal; the offline renderer waits for room before a block.
    pub fn take_ring_free(&self) -> usize {
        self.recorder.as_ref().map_or(usize::MAX, |r| r.free_slots())
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

    /// What clip `clip` plays, as the build resolved it (for the build's tests).
    #[cfg(test)]
    pub(crate) fn slot(&self, clip: crate::model::ClipId) -> &ClipSlot {
        &self.clips[clip.index()]
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
                    streamed::release_lane(&mut track.lanes, v.lane);
                    *slot = None;
                    continue;
                }
                v.iteration = iteration;
                v.pos = v.offset + ((elapsed - iteration as f64 * len) * spb + SAMPLE_EPSILON).floor() as i64;
                v.fade_in = Some(Ramp { pos: 0, len: declick, fade_in: true });
                if let Some(ClipSlot { content: SlotContent::Streamed(s), .. }) = self.clips.get(v.clip.index()) {
                    streamed::seek_lane(&mut track.lanes, v.lane, s, v.pos);
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
            streamed::prewarm(&mut track.lanes, s, ev.id, pos);
        }
        let pending = &self.pending;
        for t in &mut self.tracks {
            streamed::tidy(&mut t.lanes, |id| pending.iter().any(|e| e.id == id));
        }
    }

    #[inline]
    fn report(&mut self, r: Report) {
        push_report(&mut self.reports, &self.lost_reports, r);
    }

    fn process_block(&mut self, clock: &BlockClock, out: &mut [f32]) {
        let frames = clock.frames;
        if let Some(r) = self.recorder.as_mut() {
            r.settle();
            r.read_inputs(frames);
        }
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
        let at = (clock.sample_time + frame as i64, beat);
        match ev.op {
            Op::RecordStart { take, slot, until } => {
                if let Some(r) = self.recorder.as_mut() {
                    r.start(ev.track, take, slot, at, until);
                }
            }
            Op::RecordStop { take } => {
                if let Some(r) = self.recorder.as_mut() {
                    r.stop(ev.track, take, at);
                }
            }
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

    /// Renders every track's clip players for frames `[from, to)` of the block, and records
    /// those frames into the takes that are open.
    fn render_tracks(&mut self, clock: &BlockClock, from: usize, to: usize) {
        if to <= from {
            return;
        }
        if let Some(r) = self.recorder.as_mut() {
            r.capture(from, to);
        }
        for ti in 0..self.tracks.len() {
            let track = &mut self.tracks[ti];
            for vi in 0..VOICES_PER_TRACK {
                if let Some(mut v) = track.voices[vi] {
                    let alive = match self.clips.get(v.clip.index()).map(|s| &s.content) {
                        Some(SlotContent::Audio(a)) => voice::render(
                            &mut v,
                            &mut voice::Resident(a),
                            clock,
                            (from, to),
                            (&mut track.left, &mut track.right),
                        ),
                        Some(SlotContent::Mapped(m)) => mapped::render_voice(
                            &mut v,
                            m,
                            clock,
                            (from, to),
                            (&mut track.left, &mut track.right),
                            &mut self.scratch,
                        ),
                        Some(SlotContent::Streamed(s)) => streamed::render_voice(
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
                        streamed::release_lane(&mut track.lanes, v.lane);
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
            if !t.heard {
                continue;
            }
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
