//! What one track of Signal plays: its clip slots' content, its audio voices and MIDI clip
//! player, its instrument and external MIDI route, and the operations on them (start a clip,
//! end voices with a fade, render MIDI events into the instrument, release held notes).
//!
//! Audio thread. Realtime: nothing here allocates, locks, blocks or does I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::mapped::MappedAudio;
use super::streamed::{StreamSlot, release_lane, take_lane};
use super::voice::{AudioVoice, NO_LANE, Ramp};
use crate::instrument::Instrument;
use crate::model::{AudioData, ClipId, MidiData, MidiEvent, MidiMsg, TrackId};
use crate::queue::lanes::Lanes;
use crate::queue::{MidiOutEvent, MixSettings, TriggerId};
use crate::time::{Beats, BlockClock, SAMPLE_EPSILON, SampleTime};

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
    Streamed(StreamSlot),
    /// Audio at the engine's sample rate read in place, a segment at a time (an offline render's
    /// mapped 32-bit float WAV file: the engine build for offline renders, `build_with_reader`).
    Mapped(MappedAudio),
}

/// The MIDI clip a MIDI track is playing.
#[derive(Debug, Clone, Copy)]
pub(super) struct MidiVoice {
    pub(super) clip: ClipId,
    pub(super) anchor: Beats,
    pub(super) iteration: i64,
    /// Index of the next event (within the loop window) to play.
    pub(super) next: usize,
    /// Events in `[lo, hi)` form the loop window.
    pub(super) lo: usize,
    pub(super) hi: usize,
    pub(super) length: Beats,
    pub(super) start_offset: Beats,
    pub(super) looping: bool,
    /// Launch gain as MIDI velocity scale.
    pub(super) velocity_scale: f32,
}

/// Signal's producer end of the MIDI-out ring.
pub(super) struct MidiOutRing {
    pub(super) tx: rtrb::Producer<MidiOutEvent>,
    /// Messages dropped because the ring was full.
    pub(super) lost: Arc<AtomicU64>,
    /// Cleared by [`Signal::transport_stopped`]: nothing more goes out.
    pub(super) open: bool,
}

/// Where a track's external messages go, and when: the ring, the track and the sample.
pub(super) struct Sink<'a> {
    pub(super) ring: &'a mut Option<MidiOutRing>,
    pub(super) track: TrackId,
    pub(super) sample: SampleTime,
}

impl Sink<'_> {
    /// Pushes a message; `false` if it was not sent (no ring, transport stopped, ring full).
    #[inline]
    pub(super) fn push(&mut self, msg: MidiMsg) -> bool {
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

/// Lanes per track with streamed clips: one per voice plus spares for pre-warming.
pub(crate) const LANES_PER_TRACK: usize = VOICES_PER_TRACK + 2;

pub(super) struct TrackState {
    /// Whether this node plays the track out (`false`: it is scheduled and run, so its reports
    /// match the band's, but it reaches neither the output nor the meters: another node plays it).
    pub(super) heard: bool,
    pub(super) voices: [Option<AudioVoice>; VOICES_PER_TRACK],
    pub(super) midi: Option<MidiVoice>,
    pub(super) instrument: Option<Instrument>,
    /// Keys currently held by the MIDI clip player (bit per key, channel-agnostic).
    pub(super) held: [u64; 2],
    /// Fade applied to the instrument's output when a MIDI clip is faded out.
    pub(super) midi_fade: Option<Ramp>,
    /// Routed to an external output: `Some(channel override)`.
    pub(super) external: Option<Option<u8>>,
    /// Notes held on the external synth: bit `key` of `ext_held[channel]`.
    pub(super) ext_held: [u128; 16],
    /// Channels the track has sent on (bit per channel), for the all-notes-off.
    pub(super) ext_channels: u16,
    pub(super) mix: MixSettings,
    /// Per-sample ramped linear gains (left, right).
    pub(super) gain_now: [f32; 2],
    pub(super) left: Vec<f32>,
    pub(super) right: Vec<f32>,
    /// Disk-streaming lanes (only on tracks with streamed clips).
    pub(super) lanes: Lanes,
}

pub(super) fn start_fade_out(v: &mut AudioVoice, len: u32) {
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
pub(super) fn end_voices(track: &mut TrackState, clock: &BlockClock, frame: usize, fade: u32) {
    for slot in track.voices.iter_mut() {
        if let Some(v) = slot {
            let pass_end = clock.frame_of_beat(Beats(v.anchor.0 + (v.iteration + 1) as f64 * v.length.0));
            if pass_end <= frame as i64 && v.fade_out.is_none() {
                release_lane(&mut track.lanes, v.lane);
                *slot = None;
            } else {
                start_fade_out(v, fade);
            }
        }
    }
}

/// Sends note-offs for every key the clip player holds (to the instrument and the external
/// output).
pub(super) fn release_held(track: &mut TrackState, sink: &mut Sink<'_>) {
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
pub(super) fn release_external(track: &mut TrackState, sink: &mut Sink<'_>) {
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
pub(super) fn send_external(track: &mut TrackState, sink: &mut Sink<'_>, msg: MidiMsg) {
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
pub(super) fn start_clip(
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
        SlotContent::Audio(_) | SlotContent::Streamed(_) | SlotContent::Mapped(_) => {
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
                lane: NO_LANE,
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
                release_lane(&mut track.lanes, old.lane);
            }
            let mut voice = voice;
            if let SlotContent::Streamed(s) = &slot.content {
                voice.lane = take_lane(&mut track.lanes, s, id, voice.pos);
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

/// Renders a MIDI track (clip events into its instrument) for frames `[from, to)`.
/// Returns the clip and frame if a one-shot MIDI clip ended.
pub(super) fn render_midi_track(
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

pub(super) enum MidiStep {
    Event(MidiMsg),
    PassEnd,
    FadeEnd,
}

pub(super) fn play_clip_msg(track: &mut TrackState, msg: MidiMsg, velocity_scale: f32, sink: &mut Sink<'_>) {
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
pub(super) fn render_instrument(track: &mut TrackState, from: usize, to: usize) {
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
