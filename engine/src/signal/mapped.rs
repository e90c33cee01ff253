//! Audio read in place: a clip whose samples Signal converts, a segment at a time, out of bytes
//! that someone else owns (an offline render's 32-bit float WAV files, which the engine build
//! maps), instead of reading decoded frames.
//!
//! Signal knows nothing of files or mappings: [`MappedAudio`] holds the bytes through an opaque
//! shared owner, with where the samples start, how many frames there are and how many channels.
//! Each sample is converted with [`crate::model::le_f32`], the WAV decoder's own conversion, and
//! then played by the resident voice's routine ([`super::voice::render`]), so a clip read in
//! place is bit-identical to the same clip decoded.
//!
//! Audio thread (of offline renders only: reading a mapped page may wait for the disk, which a
//! live engine never does; it decodes instead). Realtime otherwise: nothing here allocates,
//! locks or frees.

use std::sync::Arc;

use super::voice::{AudioVoice, VoiceEnd, VoiceFrames};
use crate::model::le_f32;
use crate::time::BlockClock;

/// Interleaved little-endian 32-bit float samples, one or two channels, read in place (for an
/// offline render, a mapped WAV file's). Clones share the bytes.
#[derive(Clone)]
pub(crate) struct MappedAudio {
    /// The owner of the bytes (for an offline render, a file's mapping).
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// Byte offset of the first sample.
    start: usize,
    /// Frames of audio.
    frames: usize,
    /// 1 or 2.
    channels: usize,
}

impl std::fmt::Debug for MappedAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedAudio")
            .field("start", &self.start)
            .field("frames", &self.frames)
            .field("channels", &self.channels)
            .finish()
    }
}

impl MappedAudio {
    /// `frames` frames of `channels` (1 or 2) interleaved little-endian 32-bit float samples
    /// from byte `start` of `bytes`. `None` unless there are 1 or 2 channels and every sample
    /// lies within the bytes. Control thread.
    // Only the engine build (feature `media`) maps files.
    #[cfg_attr(not(feature = "media"), allow(dead_code))]
    pub(crate) fn new(
        bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        frames: usize,
        channels: usize,
    ) -> Option<MappedAudio> {
        let len = frames.checked_mul(4 * channels)?;
        if !(1..=2).contains(&channels) || start.checked_add(len)? > (*bytes).as_ref().len() {
            return None;
        }
        Some(MappedAudio { bytes, start, frames, channels })
    }

    /// Whether `self` and `other` read the same bytes (clips sharing a file share its mapping).
    #[cfg(test)]
    pub(crate) fn shares_bytes_with(&self, other: &MappedAudio) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
    }

    /// Copies frames `[pos, pos + left.len())` into `left` and `right` (planar; mono to both) as a
    /// decode makes them ([`le_f32`]); frames outside the audio are silence. `right` must be as
    /// long as `left`. Allocates nothing, locks nothing.
    pub(crate) fn read_into(&self, pos: i64, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let frames = self.frames as i64;
        // The part of the window that lies in the audio: window indices [a, b).
        let a = (-pos).clamp(0, n as i64) as usize;
        let b = (frames - pos).clamp(a as i64, n as i64) as usize;
        left[..a].fill(0.0);
        right[..a].fill(0.0);
        left[b..n].fill(0.0);
        right[b..n].fill(0.0);
        if b == a {
            return;
        }
        let first = (pos + a as i64) as usize;
        let frame_bytes = 4 * self.channels;
        let from = self.start + first * frame_bytes;
        let bytes = &(*self.bytes).as_ref()[from..from + (b - a) * frame_bytes];
        let (left, right) = (&mut left[a..b], &mut right[a..b]);
        if self.channels == 2 {
            for ((l, r), f) in left.iter_mut().zip(right.iter_mut()).zip(bytes.chunks_exact(8)) {
                *l = le_f32(&f[..4]);
                *r = le_f32(&f[4..8]);
            }
        } else {
            for ((l, r), f) in left.iter_mut().zip(right.iter_mut()).zip(bytes.chunks_exact(4)) {
                let v = le_f32(f);
                *l = v;
                *r = v;
            }
        }
    }
}

/// A clip read in place as the source of a voice's frames: each segment is converted into the
/// scratch buffers.
struct Mapped<'a> {
    audio: &'a MappedAudio,
    scratch: &'a mut [Vec<f32>; 2],
}

impl VoiceFrames for Mapped<'_> {
    #[inline]
    fn frames(&self) -> i64 {
        self.audio.frames as i64
    }

    #[inline]
    fn segment(&mut self, pos: i64, n: usize) -> (&[f32], &[f32], i64) {
        let [sl, sr] = &mut *self.scratch;
        self.audio.read_into(pos, &mut sl[..n], &mut sr[..n]);
        (&sl[..n], &sr[..n], pos)
    }

    #[inline]
    fn rewind(&mut self, _pos: i64) {}
}

/// Renders one voice of a clip read in place into the track buffers for frames `[from, to)`,
/// through the same routine as a resident clip's voice ([`super::voice::render`]). `scratch`
/// holds at least `to - from` frames per channel.
pub(crate) fn render_voice(
    v: &mut AudioVoice,
    audio: &MappedAudio,
    clock: &BlockClock,
    span: (usize, usize),
    out: (&mut [f32], &mut [f32]),
    scratch: &mut [Vec<f32>; 2],
) -> Option<VoiceEnd> {
    super::voice::render(v, &mut Mapped { audio, scratch }, clock, span, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interleaved samples as the bytes of a file, `start` bytes of header first.
    fn bytes(start: usize, samples: &[f32]) -> Arc<dyn AsRef<[u8]> + Send + Sync> {
        let mut b = vec![0xAB; start];
        for s in samples {
            b.extend_from_slice(&s.to_le_bytes());
        }
        Arc::new(b)
    }

    #[test]
    fn reads_frames_as_a_decode_makes_them_and_silence_outside() {
        let samples = [0.5, -0.25, f32::NAN, 1.0, f32::INFINITY, f32::NEG_INFINITY];
        // Stereo, starting at an offset that is not a multiple of 4 (sox's 58-byte header).
        let a = MappedAudio::new(bytes(58, &samples), 58, 3, 2).unwrap();
        let (mut l, mut r) = ([9.0; 6], [9.0; 6]);
        a.read_into(-2, &mut l, &mut r);
        assert_eq!(l, [0.0, 0.0, 0.5, 0.0, 0.0, 0.0]);
        assert_eq!(r, [0.0, 0.0, -0.25, 1.0, 0.0, 0.0]);
        // Mono is duplicated.
        let m = MappedAudio::new(bytes(3, &samples), 3, 6, 1).unwrap();
        let (mut l, mut r) = ([9.0; 2], [9.0; 2]);
        m.read_into(1, &mut l, &mut r);
        assert_eq!((l, r), ([-0.25, 0.0], [-0.25, 0.0]));
        m.read_into(6, &mut l, &mut r);
        assert_eq!((l, r), ([0.0; 2], [0.0; 2]));
        // Samples beyond the bytes, or other channel counts, are refused up front.
        assert!(MappedAudio::new(bytes(58, &samples), 58, 4, 2).is_none());
        assert!(MappedAudio::new(bytes(0, &samples), 0, 2, 3).is_none());
        assert!(MappedAudio::new(bytes(0, &samples), 0, usize::MAX, 2).is_none());
    }
}
