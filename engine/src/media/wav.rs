//! WAV files read a chunk at a time.
//!
//! One WAV reader ([`WavFrames`]) serves both ways audio reaches the engine. A resident clip is
//! decoded whole ([`decode_wav_stream`]: the chunks are appended to one buffer); a clip that
//! streams under a memory budget is decoded, resampled ([`super::resample`]) and written to its
//! cache file a chunk at a time ([`super::stream::prepare`]), so converting it needs a small
//! working set whatever its length. Both ways read the same samples.
//!
//! When a memory budget is set, the session loader does not decode audio files at all: it reads
//! their headers ([`WavFrames::open`]) and keeps each as a [`DeferredAudio`] for
//! [`super::stream::prepare`], which decodes a file once the engine's rate is known and it knows
//! whether the file stays resident or streams ([`open_deferred`]).
//!
//! For an offline render, files of 32-bit float mono or stereo samples are not decoded either:
//! the loader checks that they can be read in place ([`MappedWav::probe`]) and the offline engine
//! build maps them ([`MappedWav::open`]), handing Signal the mapping as plain bytes to convert a
//! block at a time. Both conversions of such a sample, here and in Signal, are
//! [`crate::model::le_f32`], so the samples read in place are the ones a decode gives.
//!
//! Control thread (or the loader's threads); does file I/O; never on the audio thread (a mapping
//! is made here, and only read by an offline render's Signal).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::model::{AudioData, DeferredAudio, WavHeader, le_f32};

/// Lowest sample rate a WAV file may have.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// Highest sample rate a WAV file may have.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Decodes a WAV file held in memory: 8/16/24/32-bit integer or 32-bit float PCM, any channel
/// count (mono is duplicated to both channels; of more than two channels the first two are
/// kept). Audio stays at the file's sample rate. Non-finite float samples become silence.
///
/// The error says what is wrong, in words for the user.
pub fn decode_wav(bytes: &[u8]) -> Result<AudioData, String> {
    decode_wav_stream(std::io::Cursor::new(bytes), bytes.len())
}

/// Opens a file the loader only probed for reading a chunk at a time, checking it still has the
/// header it had when the session was loaded.
pub fn open_deferred(d: &DeferredAudio) -> Result<WavFrames<BufReader<File>>, String> {
    let wav = WavFrames::open(&d.path)?;
    let (frames, rate) = (wav.header().frames, wav.header().sample_rate);
    if (frames, rate) != (d.header.frames, d.header.sample_rate) {
        return Err(format!(
            "the file changed after the session was loaded (it had {} frames at {} Hz, it has {frames} at {rate} Hz)",
            d.header.frames, d.header.sample_rate
        ));
    }
    Ok(wav)
}

/// How the samples of a WAV file are turned into frames.
enum Body<R> {
    /// 16-bit integer or 32-bit float, one or two channels: converted straight from the bytes, a
    /// whole frame at a time (the common formats, and the fast path).
    Raw { input: R, float: bool, bytes: Vec<u8> },
    /// Every other format, through hound's sample iterator.
    Samples { reader: hound::WavReader<R>, float: bool, scale: f64 },
}

/// A WAV file read a chunk of frames at a time: 8/16/24/32-bit integer or 32-bit float PCM, any
/// channel count (mono is duplicated to both channels; of more than two channels the first two
/// are kept). Non-finite float samples become silence. Every problem the header shows (format,
/// rate, no audio, fewer bytes than it promises) is found by [`WavFrames::new`], before any
/// sample is read.
pub struct WavFrames<R> {
    header: WavHeader,
    /// Frames not read yet.
    remaining: u64,
    body: Body<R>,
}

impl<R> std::fmt::Debug for WavFrames<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavFrames").field("header", &self.header).field("remaining", &self.remaining).finish()
    }
}

/// Frames read in one piece by the raw path (1 MiB of 16-bit stereo).
const RAW_PIECE_BYTES: usize = 1 << 20;

impl WavFrames<BufReader<File>> {
    /// Opens a WAV file and checks its header; no sample is read yet.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let size = file.metadata().map(|m| m.len() as usize).unwrap_or(usize::MAX);
        WavFrames::new(BufReader::with_capacity(1 << 16, file), size)
    }
}

impl<R: Read> WavFrames<R> {
    /// Reads and checks the header of a WAV stream of at most `size` bytes. The error says what
    /// is wrong, in words for the user.
    pub fn new(input: R, size: usize) -> Result<Self, String> {
        let reader = hound::WavReader::new(input).map_err(|e| format!("not a readable WAV file ({e})"))?;
        let spec = reader.spec();
        let channels = spec.channels as usize;
        if channels == 0 {
            return Err("the file says it has 0 channels".into());
        }
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&spec.sample_rate) {
            return Err(format!(
                "sample rate {} Hz is not supported (use {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz)",
                spec.sample_rate
            ));
        }
        let float = spec.sample_format == hound::SampleFormat::Float;
        let scale = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, 32) => 1.0,
            (hound::SampleFormat::Int, bits @ 1..=32) => 1.0 / (1u64 << (bits - 1)) as f64,
            (format, bits) => {
                return Err(format!(
                    "{bits}-bit {} samples are not supported (use 8/16/24/32-bit integer or 32-bit float)",
                    if format == hound::SampleFormat::Float { "float" } else { "integer" }
                ));
            }
        };
        let bytes_per_sample = (spec.bits_per_sample as usize).div_ceil(8).max(1);
        let frames = reader.len() as usize / channels;
        // The header's length may lie (a truncated file): the data must fit in the file.
        if frames * bytes_per_sample * channels > size {
            return Err(format!(
                "the audio data is truncated or corrupt (the header promises {frames} frames, the file is only {size} \
                 bytes)"
            ));
        }
        if frames == 0 {
            return Err("the file contains no audio".into());
        }
        let header = WavHeader { sample_rate: spec.sample_rate, frames: frames as u64, channels: spec.channels };
        let raw = channels <= 2 && matches!((float, spec.bits_per_sample), (true, 32) | (false, 16));
        let body = if raw {
            // hound has parsed the header and left the stream at the start of the samples.
            Body::Raw { input: reader.into_inner(), float, bytes: Vec::new() }
        } else {
            Body::Samples { reader, float, scale }
        };
        Ok(WavFrames { header, remaining: frames as u64, body })
    }

    /// The file's header.
    pub fn header(&self) -> WavHeader {
        self.header
    }

    /// Appends the next frames, at most `max`, to `left` and `right` (planar; mono is duplicated);
    /// returns how many (0 once every frame has been read).
    pub fn read(&mut self, max: usize, left: &mut Vec<f32>, right: &mut Vec<f32>) -> Result<usize, String> {
        let n = self.remaining.min(max as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let channels = self.header.channels as usize;
        let (start_l, start_r) = (left.len(), right.len());
        let corrupt = |e: &dyn std::fmt::Display| format!("the audio data is truncated or corrupt ({e})");
        match &mut self.body {
            Body::Raw { input, float, bytes } => {
                let frame_bytes = (if *float { 4 } else { 2 }) * channels;
                let piece = (RAW_PIECE_BYTES / frame_bytes).max(1);
                let mut done = 0;
                while done < n {
                    let m = (n - done).min(piece);
                    bytes.resize(m * frame_bytes, 0);
                    input.read_exact(bytes).map_err(|e| corrupt(&e))?;
                    let frames = bytes.chunks_exact(frame_bytes);
                    // One monomorphic loop per format and channel, and one pass per channel: an
                    // `extend` from an iterator of known length reserves once and stores without
                    // a capacity check per sample, so each compiles to a tight (vector) loop.
                    match (*float, channels == 2) {
                        (true, true) => {
                            left.extend(frames.clone().map(|f| le_f32(&f[..4])));
                            right.extend(frames.map(|f| le_f32(&f[4..8])));
                        }
                        (true, false) => left.extend(frames.map(|f| le_f32(&f[..4]))),
                        (false, true) => {
                            left.extend(frames.clone().map(|f| le_i16(&f[..2])));
                            right.extend(frames.map(|f| le_i16(&f[2..4])));
                        }
                        (false, false) => left.extend(frames.map(|f| le_i16(&f[..2]))),
                    }
                    done += m;
                }
            }
            Body::Samples { reader, float, scale } => {
                let mut push = |i: usize, v: f32| {
                    let v = if v.is_finite() { v } else { 0.0 };
                    match i % channels {
                        0 => left.push(v),
                        1 => right.push(v),
                        _ => {}
                    }
                };
                if *float {
                    for (i, s) in reader.samples::<f32>().take(n * channels).enumerate() {
                        push(i, s.map_err(|e| corrupt(&e))?);
                    }
                } else {
                    for (i, s) in reader.samples::<i32>().take(n * channels).enumerate() {
                        push(i, (s.map_err(|e| corrupt(&e))? as f64 * *scale) as f32);
                    }
                }
            }
        }
        if channels == 1 {
            right.extend_from_slice(&left[start_l..]);
        }
        if left.len() - start_l != n || right.len() - start_r != n {
            return Err(corrupt(&"the samples end early"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A WAV file of 32-bit float samples, one or two channels, mapped into memory so that an offline
/// render reads its samples in place instead of decoding them: a decode is a planar copy of every
/// file in fresh memory, whose page faults cost more than the whole mix; the page cache already
/// holds the file. The engine build hands the mapping to Signal as plain bytes
/// ([`MappedWav::into_bytes`], [`MappedWav::start`]), and Signal converts each block it plays with
/// [`le_f32`], the decoder's own conversion, so the samples are the ones [`read_wav_file`] gives,
/// bit for bit (non-finite samples are silence; mono is duplicated).
///
/// Only offline renders play from a mapping: a page that is not in memory is read from disk when
/// it is touched, which a live audio thread must never wait for (a live engine decodes the file).
pub struct MappedWav {
    map: memmap2::Mmap,
    /// Byte offset of the first sample.
    start: usize,
    header: WavHeader,
}

impl std::fmt::Debug for MappedWav {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedWav").field("header", &self.header).field("start", &self.start).finish()
    }
}

impl MappedWav {
    /// Maps `path` if it is a WAV file of 32-bit float mono or stereo samples whose header passes
    /// every check a decode makes and whose samples are all in the file. `None` otherwise (another
    /// format, or a problem): decode the file instead, which reports any problem in the usual
    /// words.
    pub fn open(path: &Path) -> Option<MappedWav> {
        let file = File::open(path).ok()?;
        // SAFETY: `Mmap::map` is unsafe because the mapping reflects later changes to the file:
        // if another program rewrites the file while it is mapped, the samples read change, and if
        // it truncates the file, reading past the new end raises SIGBUS. The mapping is
        // read-only and private to this process, every byte pattern is a valid sample (read with
        // `f32::from_le_bytes`, never as a reference to `f32`), and only offline renders read it:
        // a file changed under a running render gives that render wrong samples or ends it, as it
        // would any program that maps its input (git, ripgrep); live playback decodes instead.
        let map = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.ok()?;
        let mut cursor = std::io::Cursor::new(&map[..]);
        let wav = WavFrames::new(&mut cursor, map.len()).ok()?;
        let header = wav.header();
        if !matches!(wav.body, Body::Raw { float: true, .. }) {
            return None;
        }
        drop(wav);
        // hound has read the header and left the cursor at the first sample.
        let start = usize::try_from(cursor.position()).ok()?;
        let bytes = usize::try_from(header.frames).ok()?.checked_mul(4 * header.channels as usize)?;
        if start.checked_add(bytes)? > map.len() {
            return None;
        }
        Some(MappedWav { map, start, header })
    }

    /// The header of `path` if an engine can read it in place ([`MappedWav::open`] maps it), for
    /// the loader, which probes files without decoding them; the mapping is not kept.
    pub fn probe(path: &Path) -> Option<WavHeader> {
        MappedWav::open(path).map(|m| m.header)
    }

    /// The file's header.
    pub fn header(&self) -> WavHeader {
        self.header
    }

    /// Byte offset of the first sample in the mapping ([`MappedWav::into_bytes`]); the samples
    /// follow as interleaved little-endian 32-bit floats, `header().frames` frames of
    /// `header().channels` channels, all within the mapping.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The mapping as a shared owner of the file's bytes, for Signal, which knows nothing of
    /// files. It is unmapped when the last owner drops it.
    pub fn into_bytes(self) -> Arc<dyn AsRef<[u8]> + Send + Sync> {
        Arc::new(self.map)
    }
}

/// Frames decoded per chunk when a whole file is decoded.
pub(crate) const DECODE_CHUNK: usize = 1 << 18;

/// Decodes a whole WAV stream of at most `size` bytes into memory, at the file's own rate.
pub fn decode_wav_stream<R: Read>(input: R, size: usize) -> Result<AudioData, String> {
    let mut wav = WavFrames::new(input, size)?;
    let frames = wav.header.frames as usize;
    let mut left = Vec::with_capacity(frames);
    let mut right = Vec::with_capacity(frames);
    advise_huge_pages(&mut left);
    advise_huge_pages(&mut right);
    while wav.read(DECODE_CHUNK, &mut left, &mut right)? > 0 {}
    Ok(AudioData { sample_rate: wav.header.sample_rate, left, right })
}

/// Reads and decodes a whole WAV file from disk, streaming it (the file's bytes are never held
/// in memory whole).
pub fn read_wav_file(path: &Path) -> Result<AudioData, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map(|m| m.len() as usize).unwrap_or(usize::MAX);
    decode_wav_stream(BufReader::with_capacity(1 << 16, file), size)
}

/// Asks the kernel to back a large, still untouched sample buffer with transparent huge pages.
/// Loading a set of long stems is dominated by page faults on fresh memory otherwise (one per
/// 4 KiB); with 2 MiB pages there are 512 times fewer. Purely a hint: without it, or where the
/// kernel says no, the buffer works the same.
pub(crate) fn advise_huge_pages(buf: &mut Vec<f32>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = buf.capacity() * std::mem::size_of::<f32>();
        if bytes < 2 * HUGE {
            return;
        }
        let start = buf.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if end > aligned {
            // SAFETY: the range lies inside the Vec's own allocation (capacity bytes from its
            // pointer); madvise only changes how the kernel backs those pages, not their contents
            // or validity, and its failure is ignored.
            unsafe {
                libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// A little-endian 16-bit integer sample scaled to -1..1.
#[inline(always)]
fn le_i16(b: &[u8]) -> f32 {
    i16::from_le_bytes([b[0], b[1]]) as f32 * (1.0 / 32768.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_in_chunks_gives_the_whole_decode() {
        let dir = std::env::temp_dir().join(format!("loophole-audio-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (channels, bits, float) in [(2u16, 16u16, false), (1, 16, false), (2, 24, false), (3, 32, true)] {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 44_100,
                bits_per_sample: bits,
                sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
            };
            let path = dir.join(format!("{channels}-{bits}.wav"));
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            // A deterministic signal in (-0.5, 0.5) that differs from sample to sample.
            let l: Vec<f32> = (0..5000 * channels as usize).map(|i| (i as f32 * 0.731).sin() * 0.49).collect();
            for v in &l {
                if float {
                    w.write_sample(*v).unwrap();
                } else {
                    w.write_sample((*v * (1 << (bits - 2)) as f32) as i32).unwrap();
                }
            }
            w.finalize().unwrap();
            let whole = read_wav_file(&path).unwrap();
            assert_eq!(whole.frames(), 5000);
            let mut wav = WavFrames::open(&path).unwrap();
            assert_eq!(wav.header(), WavHeader { sample_rate: 44_100, frames: 5000, channels });
            let (mut a, mut b) = (Vec::new(), Vec::new());
            while wav.read(333, &mut a, &mut b).unwrap() > 0 {}
            assert_eq!((a, b), (whole.left.clone(), whole.right.clone()), "{channels} channels, {bits} bits");
            if channels == 1 {
                assert_eq!(whole.left, whole.right);
            }
        }
        // Of these, only 32-bit float mono or stereo files can be read in place.
        assert!(MappedWav::probe(&dir.join("2-16.wav")).is_none());
        assert!(MappedWav::probe(&dir.join("3-32.wav")).is_none(), "three channels");
        // A header promising more than the file holds is refused before any sample is read.
        let path = dir.join("2-16.wav");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let e = WavFrames::open(&path).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn float_files_are_mapped_with_their_header_and_first_sample_only_when_whole() {
        let dir = std::env::temp_dir().join(format!("loophole-mapped-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for channels in [1u16, 2] {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 44_100,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let path = dir.join(format!("{channels}.wav"));
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            let samples: Vec<f32> = (0..1000 * channels as usize).map(|i| (i as f32 * 0.37).sin() * 0.5).collect();
            for s in &samples {
                w.write_sample(*s).unwrap();
            }
            w.finalize().unwrap();
            let wav = MappedWav::open(&path).unwrap();
            assert_eq!(wav.header(), WavHeader { sample_rate: 44_100, frames: 1000, channels });
            assert_eq!(MappedWav::probe(&path), Some(wav.header()));
            let start = wav.start();
            let bytes = wav.into_bytes();
            let first: Vec<f32> = (*bytes).as_ref()[start..].chunks_exact(4).map(le_f32).take(samples.len()).collect();
            assert_eq!(first, samples);
            // A file cut short by a few bytes passes the decoder's size check but is not mapped.
            let whole = std::fs::read(&path).unwrap();
            std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
            assert!(MappedWav::open(&path).is_none());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
