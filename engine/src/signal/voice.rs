//! The per-sample arithmetic of an audio voice, one routine for resident and streamed clips.
//!
//! [`render`] walks a voice through frames `[from, to)` of a block: loop passes on the beat grid,
//! the steady-gain copy-add, and the per-sample fade-in/fade-out. Where the frames come from is
//! the only difference between a resident clip (its decoded data) and a streamed one (its head
//! and lane, copied into a scratch buffer per segment), so that is all a [`VoiceFrames`] source
//! provides. A streamed clip whose frames arrive in time therefore sounds bit-identical to the
//! resident one. Also the voice itself ([`AudioVoice`]) and its equal-power fades ([`Ramp`]).
//!
//! Audio thread. Realtime: nothing here allocates, locks or blocks.

use crate::model::{AudioData, ClipId};
use crate::time::{Beats, BlockClock};

/// An equal-power gain ramp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ramp {
    pub(crate) pos: u32,
    pub(crate) len: u32,
    pub(crate) fade_in: bool,
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
    pub(crate) fn level(&self) -> f32 {
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
    pub(crate) clip: ClipId,
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
    /// The track lane a streamed clip reads from (`NO_LANE`, `u8::MAX`, otherwise).
    pub(crate) lane: u8,
}

pub(crate) enum VoiceEnd {
    Playing,
    /// A one-shot reached its end at this frame.
    Ended(usize),
    /// A fade-out finished.
    Faded,
}

/// A voice with no lane.
pub(crate) const NO_LANE: u8 = u8::MAX;

/// Where a voice's sample frames come from.
pub(crate) trait VoiceFrames {
    /// The length of the clip's content in frames; positions outside `[0, len)` are silent.
    fn frames(&self) -> i64;

    /// Frames `[pos, pos + n)` of the content, as left and right slices whose index 0 is content
    /// position `start` (the returned `i64`). The slices must hold every position of
    /// `[pos, pos + n)` that lies in `[0, len)`.
    fn segment(&mut self, pos: i64, n: usize) -> (&[f32], &[f32], i64);

    /// The voice wrapped its loop and continues from content position `pos`.
    fn rewind(&mut self, pos: i64);
}

/// A resident clip: all of its frames in memory.
pub(crate) struct Resident<'a>(pub &'a AudioData);

impl VoiceFrames for Resident<'_> {
    #[inline]
    fn frames(&self) -> i64 {
        self.0.left.len() as i64
    }

    #[inline]
    fn segment(&mut self, _pos: i64, _n: usize) -> (&[f32], &[f32], i64) {
        (&self.0.left, &self.0.right, 0)
    }

    #[inline]
    fn rewind(&mut self, _pos: i64) {}
}

/// Renders one audio voice, reading its frames from `src`, into the track buffers for frames
/// `[from, to)`. Returns how the voice stands at the end (`Some` always; `Option` for the caller's
/// convenience).
pub(crate) fn render(
    v: &mut AudioVoice,
    src: &mut impl VoiceFrames,
    clock: &BlockClock,
    (from, to): (usize, usize),
    (left, right): (&mut [f32], &mut [f32]),
) -> Option<VoiceEnd> {
    let data_len = src.frames();
    let mut i = from;
    while i < to {
        // Where this pass of the loop ends (beat grid, so loops never drift from the beat).
        let end_beat = Beats(v.anchor.0 + (v.iteration + 1) as f64 * v.length.0);
        let end_frame = clock.frame_of_beat(end_beat);
        if end_frame <= i as i64 {
            if v.looping {
                v.iteration += 1;
                v.pos = v.offset;
                src.rewind(v.pos);
                continue;
            }
            return Some(VoiceEnd::Ended(i));
        }
        let seg_end = (end_frame.min(to as i64)) as usize;
        let n = seg_end - i;
        let (sl, sr, start) = src.segment(v.pos, n);
        if v.fade_in.is_none() && v.fade_out.is_none() && v.pos >= 0 && v.pos + n as i64 <= data_len {
            // The hot path: a straight copy-add with gain.
            let p = (v.pos - start) as usize;
            let g = v.gain;
            for ((o, s), (or, s2)) in
                left[i..seg_end].iter_mut().zip(&sl[p..p + n]).zip(right[i..seg_end].iter_mut().zip(&sr[p..p + n]))
            {
                *o += s * g;
                *or += s2 * g;
            }
        } else {
            for k in 0..n {
                let p = v.pos + k as i64;
                let mut g = v.gain;
                if let Some(r) = v.fade_in.as_mut() {
                    g *= r.next();
                    if r.done() {
                        v.fade_in = None;
                    }
                }
                let mut faded = false;
                if let Some(r) = v.fade_out.as_mut() {
                    g *= r.next();
                    faded = r.done();
                }
                if p >= 0 && p < data_len {
                    let q = (p - start) as usize;
                    left[i + k] += sl[q] * g;
                    right[i + k] += sr[q] * g;
                }
                if faded {
                    return Some(VoiceEnd::Faded);
                }
            }
        }
        v.pos += n as i64;
        i = seg_end;
    }
    Some(VoiceEnd::Playing)
}
