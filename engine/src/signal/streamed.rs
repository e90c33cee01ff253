//! Signal's side of clips streamed from disk: a streamed clip's slot (its head in memory and
//! its stream), taking, seeking and pre-warming a track's lanes, and reading a voice's frames
//! from the head or its lane ([`crate::queue::lanes`]).
//!
//! Audio thread. Realtime: nothing here allocates, locks, blocks or does I/O. Frames neither the
//! head nor the lane holds are played as silence and counted as underruns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::voice::{AudioVoice, NO_LANE, VoiceEnd, VoiceFrames};
use crate::model::AudioData;
use crate::queue::TriggerId;
use crate::queue::lanes::{Lane, Lanes};
use crate::time::BlockClock;

/// A streamed clip as Signal sees it.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    pub head: Arc<AudioData>,
    pub head_start: i64,
    pub head_end: i64,
    pub frames: i64,
    pub stream: u32,
    /// Frames the reader needs to answer a request (the lead, at the engine's rate).
    pub lead: i64,
}

impl StreamSlot {
    fn in_head(&self, p: i64) -> bool {
        p >= self.head_start && p < self.head_end
    }

    /// The first window frame a voice at `p` will need: the end of the head while it plays the
    /// head, else `p`.
    pub fn need_from(&self, p: i64) -> i64 {
        if self.in_head(p) { self.head_end } else { p }
    }
}

/// Takes a lane for a voice of a streamed clip starting at `pos`, for trigger `id`: the lane
/// pre-warmed for it, else any free lane (asked for the frames the voice needs next).
pub(crate) fn take_lane(lanes: &mut Lanes, slot: &StreamSlot, id: TriggerId, pos: i64) -> u8 {
    let need = slot.need_from(pos);
    if let Some(i) = lanes
        .0
        .iter()
        .position(|l| l.prewarm == Some(id) && l.stream == Some(slot.stream) && l.req_pos <= need && !l.owned)
    {
        let l = &mut lanes.0[i];
        l.prewarm = None;
        l.owned = true;
        return i as u8;
    }
    match lanes.0.iter().position(Lane::free) {
        Some(i) => {
            let l = &mut lanes.0[i];
            l.owned = true;
            l.request(Some(slot.stream), need);
            l.discard(None);
            i as u8
        }
        None => NO_LANE,
    }
}

/// Frees a voice's lane.
pub(crate) fn release_lane(lanes: &mut Lanes, lane: u8) {
    if let Some(l) = lanes.0.get_mut(lane as usize) {
        l.release();
    }
}

/// Asks the voice's lane for the frames a voice now at `pos` needs (after a loop wrap or a jump).
pub(crate) fn seek_lane(lanes: &mut Lanes, lane: u8, slot: &StreamSlot, pos: i64) {
    if let Some(l) = lanes.0.get_mut(lane as usize) {
        l.request(Some(slot.stream), slot.need_from(pos));
        l.discard(None);
    }
}

/// Pre-warms a lane for a pending start of a streamed clip that will begin at frame `pos` (an
/// estimate: the tempo may still change), unless `pos` is comfortably inside the head.
pub(crate) fn prewarm(lanes: &mut Lanes, slot: &StreamSlot, id: TriggerId, pos: i64) {
    if lanes.0.iter().any(|l| l.prewarm == Some(id)) {
        return;
    }
    if slot.in_head(pos) && slot.head_end - pos > slot.lead {
        return;
    }
    let from = if slot.in_head(pos) { slot.head_end } else { (pos - slot.lead).max(0) };
    if let Some(l) = lanes.0.iter_mut().find(|l| l.free()) {
        l.prewarm = Some(id);
        l.request(Some(slot.stream), from);
        l.discard(None);
    }
}

/// Frees lanes pre-warmed for triggers that are no longer pending, and drops stale chunks.
pub(crate) fn tidy(lanes: &mut Lanes, pending: impl Fn(TriggerId) -> bool) {
    for l in &mut lanes.0 {
        if let Some(id) = l.prewarm
            && !pending(id)
        {
            l.release();
        }
        l.discard(None);
    }
}

/// Fills `l[..n]`, `r[..n]` with frames `[pos, pos + n)` of a streamed clip: from the head, else
/// from the voice's lane. Frames outside the clip are zero; frames neither holds are zero and
/// counted in `underruns`. If the lane was asked for later frames than `pos`, it is asked again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch(
    slot: &StreamSlot,
    lanes: &mut Lanes,
    lane: u8,
    pos: i64,
    n: usize,
    l: &mut [f32],
    r: &mut [f32],
    underruns: &AtomicU64,
) {
    let mut lane = lanes.0.get_mut(lane as usize);
    let mut missing = 0u64;
    let mut k = 0usize;
    while k < n {
        let p = pos + k as i64;
        if p < 0 || p >= slot.frames {
            l[k] = 0.0;
            r[k] = 0.0;
            k += 1;
            continue;
        }
        if slot.in_head(p) {
            let m = ((slot.head_end - p) as usize).min(n - k);
            let h = (p - slot.head_start) as usize;
            l[k..k + m].copy_from_slice(&slot.head.left[h..h + m]);
            r[k..k + m].copy_from_slice(&slot.head.right[h..h + m]);
            k += m;
            continue;
        }
        if let Some(ln) = lane.as_deref_mut() {
            if p < ln.req_pos || ln.stream != Some(slot.stream) {
                ln.request(Some(slot.stream), p);
            }
            let behind = ln.discard(Some(p));
            let front = ln.rx.peek().map(|c| c.start).ok();
            if front.is_some_and(|s| s > p) || (behind && front.is_none()) {
                // The lane has moved past `p` (the voice went back without a seek), or the reader
                // fell behind the voice: ask again from `p`.
                ln.request(Some(slot.stream), p);
                ln.discard(None);
            }
            if let Ok(c) = ln.rx.peek()
                && c.start <= p
            {
                let off = (p - c.start) as usize;
                let m = (c.len as usize - off).min(n - k);
                for j in 0..m {
                    l[k + j] = c.data[2 * (off + j)];
                    r[k + j] = c.data[2 * (off + j) + 1];
                }
                k += m;
                continue;
            }
        }
        l[k] = 0.0;
        r[k] = 0.0;
        missing += 1;
        k += 1;
    }
    if missing > 0 {
        underruns.fetch_add(missing, Ordering::Relaxed);
    }
}

/// A streamed clip as the source of a voice's frames: each segment is fetched (head, else lane)
/// into the scratch buffers.
struct Streamed<'a> {
    slot: &'a StreamSlot,
    lanes: &'a mut Lanes,
    lane: u8,
    scratch: &'a mut [Vec<f32>; 2],
    underruns: &'a AtomicU64,
}

impl VoiceFrames for Streamed<'_> {
    fn frames(&self) -> i64 {
        self.slot.frames
    }

    fn segment(&mut self, pos: i64, n: usize) -> (&[f32], &[f32], i64) {
        let [sl, sr] = &mut *self.scratch;
        fetch(self.slot, self.lanes, self.lane, pos, n, &mut sl[..n], &mut sr[..n], self.underruns);
        (&sl[..n], &sr[..n], pos)
    }

    fn rewind(&mut self, pos: i64) {
        seek_lane(self.lanes, self.lane, self.slot, pos);
    }
}

/// Renders one voice of a streamed clip into the track buffers for frames `[from, to)`, through
/// the same routine as a resident clip's voice ([`super::voice::render`]), so a streamed clip
/// whose frames arrive in time sounds bit-identical to the resident one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_voice(
    v: &mut AudioVoice,
    slot: &StreamSlot,
    lanes: &mut Lanes,
    clock: &BlockClock,
    span: (usize, usize),
    out: (&mut [f32], &mut [f32]),
    scratch: &mut [Vec<f32>; 2],
    underruns: &AtomicU64,
) -> Option<VoiceEnd> {
    let mut src = Streamed { slot, lanes, lane: v.lane, scratch, underruns };
    super::voice::render(v, &mut src, clock, span, out)
}
