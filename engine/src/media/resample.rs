//! Resampling audio to the engine's rate, a chunk at a time.
//!
//! One resampler driver ([`Converter`]) serves both ways audio reaches the engine: a resident
//! clip is resampled whole ([`resample`]: the chunks are fed one after the other), and a clip that
//! streams under a memory budget is resampled as it is written to its cache file
//! ([`super::stream::prepare`]). Both run the same arithmetic on the same chunks, so their results
//! are bit-identical. Control thread (or the loader's threads); allocates; never on the audio
//! thread.

use super::wav::{DECODE_CHUNK, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use crate::model::AudioData;

// ------------------------------------------------------------------------------------------------
// Resampling
// ------------------------------------------------------------------------------------------------

/// The band-limited resampler failed mid-way (it does not with the buffers [`Converter`] gives
/// it; this keeps a surprise from being a panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the resampler failed ({0})")]
pub struct ResampleFailed(pub String);

/// Converts audio from one sample rate to another a chunk at a time: feed it the input in pieces
/// of any size ([`Converter::push`]), then [`Converter::finish`]; it hands the output, in order,
/// to a sink. The output is the same, bit for bit, whatever the pieces.
///
/// Rates in [`MIN_SAMPLE_RATE`]`..=`[`MAX_SAMPLE_RATE`] use rubato's synchronous FFT resampler
/// (anti-aliasing filter flat to near the lower Nyquist frequency), driven exactly as rubato's
/// `process_all` drives it over a whole clip: fixed input chunks of about 1024 frames, the last
/// one padded with zeros, then zeros until the output is complete; the resampler's delay is
/// removed exactly, so an event at input time `t` is at output time `t` too. Other rates use
/// linear interpolation. Equal rates copy. The output has `round(frames * to / from)` frames.
pub struct Converter {
    out_frames: u64,
    emitted: u64,
    kind: Kind,
}

impl std::fmt::Debug for Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Copy => "copy",
            Kind::Fft(_) => "fft",
            Kind::Linear(_) => "linear",
        };
        f.debug_struct("Converter").field("kind", &kind).field("out_frames", &self.out_frames).finish()
    }
}

enum Kind {
    Copy,
    Fft(Box<FftState>),
    Linear(LinearState),
}

/// A sink for converted frames (planar left and right, equal lengths).
pub trait Sink<E> {
    /// Takes the next frames.
    fn frames(&mut self, left: &[f32], right: &[f32]) -> Result<(), E>;
}

impl<E, F: FnMut(&[f32], &[f32]) -> Result<(), E>> Sink<E> for F {
    fn frames(&mut self, left: &[f32], right: &[f32]) -> Result<(), E> {
        self(left, right)
    }
}

impl Converter {
    /// A converter for `in_frames` frames at `from` Hz to `to` Hz. A rate of 0 copies.
    pub fn new(from: u32, to: u32, in_frames: u64) -> Converter {
        if from == to || from == 0 || to == 0 {
            return Converter { out_frames: in_frames, emitted: 0, kind: Kind::Copy };
        }
        let out_frames = ((in_frames as u128 * to as u128 + from as u128 / 2) / from as u128) as u64;
        let in_range = |r: u32| (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&r);
        let fft = if in_range(from) && in_range(to) { FftState::new(from, to, in_frames) } else { None };
        let kind = match fft {
            Some(f) => Kind::Fft(Box::new(f)),
            None => Kind::Linear(LinearState::new(from, to)),
        };
        Converter { out_frames, emitted: 0, kind }
    }

    /// The same conversion by linear interpolation (the fallback if the FFT resampler fails).
    fn linear(from: u32, to: u32, in_frames: u64) -> Converter {
        let mut c = Converter::new(from, to, in_frames);
        if let Kind::Fft(_) = c.kind {
            c.kind = Kind::Linear(LinearState::new(from, to));
        }
        c
    }

    /// Frames the output will have.
    pub fn out_frames(&self) -> u64 {
        self.out_frames
    }

    /// Feeds the next input frames (planar; the shorter channel decides how many).
    pub fn push<E: From<ResampleFailed>>(
        &mut self,
        left: &[f32],
        right: &[f32],
        sink: &mut impl Sink<E>,
    ) -> Result<(), E> {
        let n = left.len().min(right.len());
        let limit = self.out_frames;
        match &mut self.kind {
            Kind::Copy => {
                let take = (n as u64).min(limit - self.emitted) as usize;
                if take > 0 {
                    sink.frames(&left[..take], &right[..take])?;
                    self.emitted += take as u64;
                }
            }
            Kind::Fft(f) => {
                let mut k = 0;
                while k < n {
                    let chunk = f.input[0].len();
                    let m = (chunk - f.filled).min(n - k);
                    f.input[0][f.filled..f.filled + m].copy_from_slice(&left[k..k + m]);
                    f.input[1][f.filled..f.filled + m].copy_from_slice(&right[k..k + m]);
                    f.filled += m;
                    k += m;
                    if f.filled == chunk {
                        f.process(&mut self.emitted, limit, sink)?;
                    }
                }
            }
            Kind::Linear(s) => {
                s.buf[0].extend_from_slice(&left[..n]);
                s.buf[1].extend_from_slice(&right[..n]);
                s.emit(&mut self.emitted, limit, false, sink)?;
            }
        }
        Ok(())
    }

    /// Ends the input: hands the sink the rest of the output.
    pub fn finish<E: From<ResampleFailed>>(mut self, sink: &mut impl Sink<E>) -> Result<(), E> {
        let limit = self.out_frames;
        match &mut self.kind {
            Kind::Copy => {}
            Kind::Fft(f) => {
                // The last partial chunk (zero-padded), then zeros until the output is complete.
                let mut idle = 0;
                while self.emitted < limit.min(f.valid) {
                    let before = self.emitted;
                    f.process(&mut self.emitted, limit, sink)?;
                    idle = if self.emitted == before { idle + 1 } else { 0 };
                    if idle > 4 {
                        return Err(ResampleFailed("it stopped giving output".into()).into());
                    }
                }
            }
            Kind::Linear(s) => s.emit(&mut self.emitted, limit, true, sink)?,
        }
        // Frames past what the resampler gives (or input that ended early) are silence.
        let zeros = [0.0f32; 1024];
        while self.emitted < limit {
            let m = (limit - self.emitted).min(zeros.len() as u64) as usize;
            sink.frames(&zeros[..m], &zeros[..m])?;
            self.emitted += m as u64;
        }
        Ok(())
    }
}

/// rubato's FFT resampler and the chunk being filled.
struct FftState {
    resampler: rubato::Fft<f32>,
    /// One input chunk per channel; `filled` frames are real, the rest are zeroed before use.
    input: [Vec<f32>; 2],
    filled: usize,
    output: [Vec<f32>; 2],
    /// Output frames of the resampler's delay still to drop.
    skip: usize,
    /// Output frames rubato's `process_all` keeps (`ceil(ratio * input frames)`); any frame
    /// after them is silence.
    valid: u64,
}

impl FftState {
    fn new(from: u32, to: u32, in_frames: u64) -> Option<FftState> {
        use rubato::{Fft, FixedSync, Resampler, WindowFunction};
        fn gcd(a: usize, b: usize) -> usize {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        let (from, to) = (from as usize, to as usize);
        let in_block = from / gcd(from, to);
        // FFT blocks of about 1024 input frames or more. The multiple is even so that both FFT
        // sizes are even: rubato's delay is then exactly half a block on both sides, an integer
        // number of output frames, which is trimmed off, leaving no fractional offset.
        let mut multiple = 1024usize.div_ceil(in_block).max(1);
        if multiple % 2 == 1 {
            multiple += 1;
        }
        let mut resampler = Fft::<f32>::new_custom(
            from,
            to,
            multiple * in_block,
            1,
            2,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .ok()?;
        resampler.reset();
        let chunk = resampler.input_frames_next();
        let out = resampler.output_frames_max();
        let valid = (resampler.resample_ratio() * in_frames as f64).ceil() as u64;
        let skip = resampler.output_delay();
        Some(FftState {
            resampler,
            input: [vec![0.0; chunk], vec![0.0; chunk]],
            filled: 0,
            output: [vec![0.0; out], vec![0.0; out]],
            skip,
            valid,
        })
    }

    /// Resamples the input chunk (zero-padded past `filled`) and hands on the output past the
    /// delay, up to `min(limit, valid)` frames in all.
    fn process<E: From<ResampleFailed>>(
        &mut self,
        emitted: &mut u64,
        limit: u64,
        sink: &mut impl Sink<E>,
    ) -> Result<(), E> {
        use rubato::Resampler;
        use rubato::audioadapter_buffers::direct::SequentialSliceOfSlices;
        let failed = |e: &dyn std::fmt::Display| ResampleFailed(e.to_string());
        let FftState { resampler, input, filled, output, skip, valid } = self;
        for c in input.iter_mut() {
            c[*filled..].fill(0.0);
        }
        *filled = 0;
        let [il, ir] = input;
        let chunk = il.len();
        let ins: [&[f32]; 2] = [il.as_slice(), ir.as_slice()];
        let adapter_in = SequentialSliceOfSlices::new(&ins[..], 2, chunk).map_err(|e| failed(&e))?;
        let [ol, or] = output;
        let out_len = ol.len();
        let mut outs: [&mut [f32]; 2] = [ol.as_mut_slice(), or.as_mut_slice()];
        let mut adapter_out = SequentialSliceOfSlices::new_mut(&mut outs[..], 2, out_len).map_err(|e| failed(&e))?;
        let (_, produced) =
            resampler.process_into_buffer(&adapter_in, &mut adapter_out, None).map_err(|e| failed(&e))?;
        let dropped = (*skip).min(produced);
        *skip -= dropped;
        let take = ((produced - dropped) as u64).min(limit.min(*valid).saturating_sub(*emitted)) as usize;
        if take > 0 {
            let [ol, or] = &self.output;
            sink.frames(&ol[dropped..dropped + take], &or[dropped..dropped + take])?;
            *emitted += take as u64;
        }
        Ok(())
    }
}

/// Linear interpolation over a sliding window of the input.
struct LinearState {
    /// Input frames per output frame.
    step: f64,
    /// Input frames `base..base + buf[0].len()`.
    buf: [Vec<f32>; 2],
    base: u64,
}

impl LinearState {
    fn new(from: u32, to: u32) -> LinearState {
        LinearState { step: from as f64 / to as f64, buf: [Vec::new(), Vec::new()], base: 0 }
    }

    /// Hands on every output frame the input received so far allows (all of them at the end:
    /// input past its end is silence).
    fn emit<E>(&mut self, emitted: &mut u64, limit: u64, end: bool, sink: &mut impl Sink<E>) -> Result<(), E> {
        let received = self.base + self.buf[0].len() as u64;
        let mut out = [[0.0f32; 256]; 2];
        loop {
            let mut m = 0;
            while m < 256 && *emitted + (m as u64) < limit {
                let t = (*emitted + m as u64) as f64 * self.step;
                let k = t.floor() as u64;
                if !end && k + 1 >= received {
                    break;
                }
                let frac = (t - k as f64) as f32;
                for (c, o) in out.iter_mut().enumerate() {
                    let at = |j: u64| {
                        if j >= self.base && j < received { self.buf[c][(j - self.base) as usize] } else { 0.0 }
                    };
                    let (a, b) = (at(k), at(k + 1));
                    o[m] = a + (b - a) * frac;
                }
                m += 1;
            }
            if m == 0 {
                break;
            }
            sink.frames(&out[0][..m], &out[1][..m])?;
            *emitted += m as u64;
        }
        // Keep the input from the next output frame's first input frame on.
        let next = ((*emitted as f64 * self.step).floor() as u64).clamp(self.base, received);
        let used = (next - self.base) as usize;
        for c in &mut self.buf {
            c.drain(..used);
        }
        self.base = next;
        Ok(())
    }
}

/// Resamples audio to `to_rate` ([`Converter`]), the whole clip in memory. Equal rates (or a rate
/// of 0) return a clone. Not realtime-safe: it allocates.
pub fn resample(data: &AudioData, to_rate: u32) -> AudioData {
    let from = data.sample_rate;
    if from == to_rate || to_rate == 0 || from == 0 {
        return data.clone();
    }
    let frames = data.frames().min(data.right.len());
    let (l, r) = (&data.left[..frames], &data.right[..frames]);
    let run = |mut c: Converter| -> Result<(Vec<f32>, Vec<f32>), ResampleFailed> {
        let n = c.out_frames() as usize;
        let (mut left, mut right) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut sink = |a: &[f32], b: &[f32]| -> Result<(), ResampleFailed> {
            left.extend_from_slice(a);
            right.extend_from_slice(b);
            Ok(())
        };
        for k in (0..frames).step_by(DECODE_CHUNK) {
            let e = (k + DECODE_CHUNK).min(frames);
            c.push(&l[k..e], &r[k..e], &mut sink)?;
        }
        c.finish(&mut sink)?;
        Ok((left, right))
    };
    let (left, right) = run(Converter::new(from, to_rate, frames as u64))
        .or_else(|_| run(Converter::linear(from, to_rate, frames as u64)))
        .unwrap_or_default();
    AudioData { sample_rate: to_rate, left, right }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(frames: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f32 / u32::MAX as f32 - 0.5
        };
        let l: Vec<f32> = (0..frames).map(|_| next()).collect();
        let r: Vec<f32> = (0..frames).map(|_| next()).collect();
        (l, r)
    }

    /// The resampling as rubato's `process_all` does it over the whole clip (what `resample`
    /// did before it was made incremental).
    fn whole_clip_reference(l: &[f32], r: &[f32], from: u32, to: u32) -> (Vec<f32>, Vec<f32>) {
        use rubato::audioadapter_buffers::direct::SequentialSliceOfSlices;
        use rubato::{Fft, FixedSync, Resampler, WindowFunction};
        let g = {
            let (mut a, mut b) = (from as usize, to as usize);
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let in_block = from as usize / g;
        let mut multiple = 1024usize.div_ceil(in_block).max(1);
        if multiple % 2 == 1 {
            multiple += 1;
        }
        let mut rs = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            multiple * in_block,
            1,
            2,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .unwrap();
        let frames = l.len();
        let chans: [&[f32]; 2] = [l, r];
        let input = SequentialSliceOfSlices::new(&chans, 2, frames).unwrap();
        let data = rs.process_all(&input, frames, None).unwrap().take_data();
        let out = ((frames as u128 * to as u128 + from as u128 / 2) / from as u128) as usize;
        let mut a: Vec<f32> = data.chunks_exact(2).map(|f| f[0]).collect();
        let mut b: Vec<f32> = data.chunks_exact(2).map(|f| f[1]).collect();
        a.resize(out, 0.0);
        b.resize(out, 0.0);
        (a, b)
    }

    fn convert_in_pieces(l: &[f32], r: &[f32], from: u32, to: u32, pieces: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let mut c = Converter::new(from, to, l.len() as u64);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut sink = |x: &[f32], y: &[f32]| -> Result<(), ResampleFailed> {
            a.extend_from_slice(x);
            b.extend_from_slice(y);
            Ok(())
        };
        let mut k = 0;
        let mut i = 0;
        while k < l.len() {
            let e = (k + pieces[i % pieces.len()]).min(l.len());
            c.push(&l[k..e], &r[k..e], &mut sink).unwrap();
            k = e;
            i += 1;
        }
        c.finish(&mut sink).unwrap();
        (a, b)
    }

    fn same_bits(a: &[f32], b: &[f32]) -> Option<usize> {
        if a.len() != b.len() {
            return Some(a.len().min(b.len()));
        }
        a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
    }

    #[test]
    fn chunked_conversion_equals_rubatos_whole_clip_resampling_bit_for_bit() {
        // Lengths shorter than one resampler chunk, exactly a chunk multiple, and long odd ones.
        for (from, to, frames) in [
            (44_100, 48_000, 44_100 * 3 + 17),
            (48_000, 44_100, 48_001),
            (22_050, 48_000, 500),
            (96_000, 48_000, 96_000),
            (44_100, 48_000, 1176 * 20),
            (8_000, 48_000, 1),
        ] {
            let (l, r) = noise(frames, from ^ frames as u32);
            let (wl, wr) = whole_clip_reference(&l, &r, from, to);
            let whole = resample(&AudioData { sample_rate: from, left: l.clone(), right: r.clone() }, to);
            assert_eq!(same_bits(&whole.left, &wl), None, "{from}->{to}, {frames} frames: left");
            assert_eq!(same_bits(&whole.right, &wr), None, "{from}->{to}, {frames} frames: right");
            for pieces in [&[1usize][..], &[7, 1000, 3][..], &[65_536][..], &[1176][..]] {
                if pieces == [1].as_slice() && frames > 50_000 {
                    continue;
                }
                let (pl, pr) = convert_in_pieces(&l, &r, from, to, pieces);
                assert_eq!(same_bits(&pl, &wl), None, "{from}->{to}, {frames} frames, pieces {pieces:?}");
                assert_eq!(same_bits(&pr, &wr), None, "{from}->{to}, {frames} frames, pieces {pieces:?}");
            }
        }
    }

    #[test]
    fn linear_conversion_is_the_same_in_any_pieces() {
        let (l, r) = noise(10_007, 3);
        // 500 Hz is outside the FFT resampler's range: linear interpolation.
        let (wl, wr) = convert_in_pieces(&l, &r, 44_100, 500, &[10_007]);
        assert_eq!(wl.len(), 113);
        let step = 44_100.0 / 500.0;
        for (i, &v) in wl.iter().enumerate() {
            let t = i as f64 * step;
            let k = t.floor() as usize;
            let (a, b) = (l[k], l.get(k + 1).copied().unwrap_or(0.0));
            assert_eq!(v.to_bits(), (a + (b - a) * (t - k as f64) as f32).to_bits(), "frame {i}");
        }
        for pieces in [&[1usize][..], &[3, 250, 89][..]] {
            let (pl, pr) = convert_in_pieces(&l, &r, 44_100, 500, pieces);
            assert_eq!(same_bits(&pl, &wl), None);
            assert_eq!(same_bits(&pr, &wr), None);
        }
    }

    /// Least-squares fit of a sine at `freq` Hz over `x[skip..len-skip]`: (amplitude, delay in
    /// samples relative to `sin(2 pi f n / rate)`).
    fn fit_sine(x: &[f32], rate: u32, freq: f64, skip: usize) -> (f64, f64) {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &y) in x.iter().enumerate().take(x.len() - skip).skip(skip) {
            let (s, c) = (w * i as f64).sin_cos();
            let y = f64::from(y);
            ss += s * s;
            sc += s * c;
            cc += c * c;
            ys += y * s;
            yc += y * c;
        }
        let det = ss * cc - sc * sc;
        let a = (ys * cc - yc * sc) / det;
        let b = (yc * ss - ys * sc) / det;
        ((a * a + b * b).sqrt(), -b.atan2(a) / w)
    }

    fn sine(rate: u32, freq: f64, frames: usize) -> AudioData {
        let left: Vec<f32> =
            (0..frames).map(|i| (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin() as f32).collect();
        AudioData { sample_rate: rate, right: left.iter().map(|v| v * 0.5).collect(), left }
    }

    #[test]
    fn resampling_a_sine_keeps_frequency_level_and_timing() {
        for (from, to, frames) in [(44_100, 48_000, 44_100), (48_000, 44_100, 48_001), (22_050, 48_000, 22_050 * 2 + 7)]
        {
            let input = sine(from, 1000.0, frames);
            let out = resample(&input, to);
            assert_eq!(out.sample_rate, to);
            let expected_len = (frames as f64 * f64::from(to) / f64::from(from)).round() as usize;
            assert_eq!((out.left.len(), out.right.len()), (expected_len, expected_len), "{from} -> {to}");
            let (amp, delay) = fit_sine(&out.left, to, 1000.0, 2000);
            assert!((amp - 1.0).abs() < 1e-3, "{from} -> {to}: level {amp}");
            assert!(delay.abs() < 0.01, "{from} -> {to}: output is offset by {delay} samples");
            let (amp_r, _) = fit_sine(&out.right, to, 1000.0, 2000);
            assert!((amp_r - 0.5).abs() < 1e-3, "right channel level {amp_r}");
            // The same fit at a neighbouring frequency finds (almost) nothing: the pitch is right.
            let (wrong, _) = fit_sine(&out.left, to, 1010.0, 2000);
            assert!(wrong < 0.05, "{from} -> {to}: energy at 1010 Hz: {wrong}");
        }
    }

    #[test]
    fn resampling_keeps_an_impulse_at_the_same_time() {
        let mut left = vec![0.0f32; 44_100];
        left[4_410] = 1.0; // 100 ms
        let input = AudioData { sample_rate: 44_100, right: left.clone(), left };
        let out = resample(&input, 48_000);
        let peak =
            out.left.iter().enumerate().fold((0, 0.0f32), |best, (i, &v)| if v > best.1 { (i, v) } else { best });
        assert_eq!(peak.0, 4_800, "the impulse is at 100 ms in the output too");
    }

    #[test]
    fn resampling_to_the_same_rate_is_a_copy_and_odd_rates_do_not_panic() {
        let input = sine(48_000, 440.0, 1000);
        assert_eq!(resample(&input, 48_000), input);
        let out = resample(&input, 44_099);
        assert_eq!(out.frames(), 919);
        let tiny = AudioData { sample_rate: 100, left: vec![1.0; 10], right: vec![1.0; 10] };
        assert_eq!(resample(&tiny, 48_000).frames(), 4_800);
        let one = AudioData { sample_rate: 44_100, left: vec![1.0], right: vec![1.0] };
        assert_eq!(resample(&one, 48_000).frames(), 1);
        let empty = AudioData { sample_rate: 44_100, left: vec![], right: vec![] };
        assert_eq!(resample(&empty, 48_000).frames(), 0);
    }
}
