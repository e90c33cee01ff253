//! A streaming writer of 32-bit float WAV files.
//!
//! Renders and captures are written block by block, never held in memory. The header is the
//! standard one for float audio, as sox writes it (`WAVE_FORMAT_IEEE_FLOAT` in an 18-byte
//! `WAVEFORMATEX`, then a `fact` chunk), with the sizes patched in by [`FloatWavWriter::finish`];
//! sox, hound and libsndfile read it without complaint. Samples go through a byte scratch buffer over
//! whole blocks (`f32::to_le_bytes`, which compiles to a plain copy on little-endian machines)
//! into a large `BufWriter`: no per-sample call reaches the writer.
//!
//! The writer is generic over its output (`Write + Seek`, a [`File`] by default), so that the
//! recorders' handling of a failed write (a full disk) can be tested with an output that fails.
//! After a failed write, [`FloatWavWriter::salvage`] keeps what reached the file readable.
//!
//! Thread: any non-realtime thread (the render loop, the capture writer thread).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before the samples in the files this writer makes.
pub const HEADER_LEN: u64 = 58;
/// Offset of the `fact` chunk's frame count.
const FACT_FRAMES_AT: u64 = 46;
/// Offset of the `data` chunk's size field.
const DATA_SIZE_AT: u64 = HEADER_LEN - 4;
const BUFFER_BYTES: usize = 1 << 20;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;

/// Writes an interleaved 32-bit float WAV file as it is produced.
#[derive(Debug)]
pub struct FloatWavWriter<W: Write + Seek = File> {
    out: BufWriter<W>,
    path: PathBuf,
    sample_rate: u32,
    channels: u16,
    samples: u64,
    scratch: Vec<u8>,
}

impl FloatWavWriter<File> {
    /// Creates (or truncates) `path` and writes a header with zero length.
    pub fn create(path: &Path, sample_rate: u32, channels: u16) -> io::Result<FloatWavWriter> {
        FloatWavWriter::new(File::create(path)?, path, sample_rate, channels)
    }
}

impl<W: Write + Seek> FloatWavWriter<W> {
    /// Writes a header with zero length to `out`, which must be empty (`path` names it in
    /// messages).
    pub fn new(out: W, path: &Path, sample_rate: u32, channels: u16) -> io::Result<FloatWavWriter<W>> {
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, out);
        out.write_all(&header(sample_rate, channels, 0, 0))?;
        Ok(FloatWavWriter {
            out,
            path: path.to_path_buf(),
            sample_rate,
            channels: channels.max(1),
            samples: 0,
            scratch: vec![0; 64 * 1024],
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends interleaved samples (a whole number of frames).
    pub fn write(&mut self, samples: &[f32]) -> io::Result<()> {
        for chunk in samples.chunks(self.scratch.len() / 4) {
            let bytes = &mut self.scratch[..chunk.len() * 4];
            for (dst, s) in bytes.chunks_exact_mut(4).zip(chunk) {
                dst.copy_from_slice(&s.to_le_bytes());
            }
            self.out.write_all(bytes)?;
        }
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.samples / self.channels as u64
    }

    /// Flushes the data and writes the final sizes into the header. Returns the frames written.
    /// A file over 4 GiB keeps the largest size a WAV header can hold. After an error, call
    /// [`salvage`](Self::salvage).
    pub fn finish(&mut self) -> io::Result<u64> {
        self.out.flush()?;
        let data_bytes = u32::try_from(self.samples * 4).unwrap_or(u32::MAX - HEADER_LEN as u32);
        let frames = u32::try_from(self.frames()).unwrap_or(u32::MAX);
        patch_sizes(self.out.get_mut(), data_bytes, frames)?;
        Ok(self.frames())
    }

    /// After a failed [`write`](Self::write) or [`finish`](Self::finish) (a full disk, an I/O
    /// error): keeps what reached the output. Tries once more to flush, drops what is still
    /// buffered, and writes into the header the sizes of the whole frames the output holds
    /// (overwriting the header needs no new space on a full disk), so that they read back as a
    /// normal WAV file. Returns those frames. An error here means the header could not be
    /// written either.
    pub fn salvage(mut self) -> io::Result<u64> {
        // What this flush gets through counts; its error is the one already reported.
        let _ = self.out.flush();
        let (mut out, _unwritten) = self.out.into_parts();
        let end = out.seek(SeekFrom::End(0))?;
        if end < HEADER_LEN {
            // Not even the header got through: write it (empty) again.
            out.seek(SeekFrom::Start(0))?;
            out.write_all(&header(self.sample_rate, self.channels, 0, 0))?;
            out.flush()?;
            return Ok(0);
        }
        let block = u64::from(self.channels) * 4;
        let frames = ((end - HEADER_LEN) / block).min(u64::from(u32::MAX) / block);
        patch_sizes(&mut out, (frames * block) as u32, frames as u32)?;
        Ok(frames)
    }
}

/// Writes the final sizes into a header at the start of `out`.
fn patch_sizes<W: Write + Seek>(out: &mut W, data_bytes: u32, frames: u32) -> io::Result<()> {
    out.seek(SeekFrom::Start(4))?;
    out.write_all(&data_bytes.saturating_add(HEADER_LEN as u32 - 8).to_le_bytes())?;
    out.seek(SeekFrom::Start(FACT_FRAMES_AT))?;
    out.write_all(&frames.to_le_bytes())?;
    out.seek(SeekFrom::Start(DATA_SIZE_AT))?;
    out.write_all(&data_bytes.to_le_bytes())?;
    out.flush()
}

/// Outputs for tests of what the writers do when the disk fills up.
#[cfg(test)]
pub(crate) mod testing {
    use std::fs::File;
    use std::io::{self, Seek, SeekFrom, Write};
    use std::path::Path;

    /// A file on a disk that is full past `cap` bytes: writes past it fail with
    /// `StorageFull` (a write that crosses it is cut short, as `write(2)` does), rewriting
    /// bytes before it works.
    pub struct FullAfter {
        file: File,
        cap: u64,
    }

    impl FullAfter {
        /// Creates `path` on a disk with room for `cap` bytes.
        pub fn create(path: &Path, cap: u64) -> io::Result<FullAfter> {
            Ok(FullAfter { file: File::create(path)?, cap })
        }
    }

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let pos = self.file.stream_position()?;
            let room = self.cap.saturating_sub(pos).min(buf.len() as u64) as usize;
            if room == 0 && !buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device (test)"));
            }
            self.file.write(&buf[..room])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl Seek for FullAfter {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.file.seek(pos)
        }
    }
}

/// A RIFF/WAVE header for float samples: a `WAVEFORMATEX` `fmt ` chunk (`WAVE_FORMAT_IEEE_FLOAT`,
/// `cbSize` 0) and the `fact` chunk non-PCM formats carry, the layout sox itself writes.
fn header(sample_rate: u32, channels: u16, frames: u32, data_bytes: u32) -> [u8; HEADER_LEN as usize] {
    let channels = channels.max(1);
    let block_align = channels * 4;
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&data_bytes.saturating_add(HEADER_LEN as u32 - 8).to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&18u32.to_le_bytes());
    h.extend_from_slice(&WAVE_FORMAT_IEEE_FLOAT.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate.saturating_mul(u32::from(block_align))).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&32u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
    h.extend_from_slice(b"fact");
    h.extend_from_slice(&4u32.to_le_bytes());
    h.extend_from_slice(&frames.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_bytes.to_le_bytes());
    let mut out = [0u8; HEADER_LEN as usize];
    out.copy_from_slice(&h);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("loophole-node-wav-{}-{name}", std::process::id()))
    }

    #[test]
    fn hound_reads_back_what_was_written() {
        let path = temp("roundtrip.wav");
        let mut w = FloatWavWriter::create(&path, 44_100, 2).unwrap();
        let block: Vec<f32> = (0..512).map(|i| (i as f32 - 256.0) / 300.0).collect();
        // More than one scratch buffer's worth, in uneven pieces.
        for _ in 0..40 {
            w.write(&block).unwrap();
        }
        w.write(&block[..6]).unwrap();
        assert_eq!(w.finish().unwrap(), (40 * 512 + 6) / 2);
        let mut r = hound::WavReader::open(&path).unwrap();
        let spec = r.spec();
        assert_eq!(spec.channels, 2);
        assert_eq!(spec.sample_rate, 44_100);
        assert_eq!(spec.bits_per_sample, 32);
        assert_eq!(spec.sample_format, hound::SampleFormat::Float);
        assert_eq!(r.duration(), (40 * 512 + 6) / 2);
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
        assert_eq!(&got[..512], &block[..]);
        assert_eq!(&got[40 * 512..], &block[..6]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_header_is_a_float_waveformatex_with_a_fact_chunk_and_final_sizes() {
        let path = temp("header.wav");
        let mut w = FloatWavWriter::create(&path, 48_000, 2).unwrap();
        w.write(&[0.25f32, -0.5, 1.0, 0.0, 0.5, 0.5]).unwrap();
        w.finish().unwrap();
        let b = std::fs::read(&path).unwrap();
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        assert_eq!(b.len(), 58 + 24);
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32_at(4) as usize, b.len() - 8);
        assert_eq!((&b[8..16], u32_at(16)), (&b"WAVEfmt "[..], 18));
        assert_eq!((u16_at(20), u16_at(22), u32_at(24)), (3, 2, 48_000), "float, stereo, 48 kHz");
        assert_eq!((u32_at(28), u16_at(32), u16_at(34), u16_at(36)), (48_000 * 8, 8, 32, 0));
        assert_eq!((&b[38..42], u32_at(42), u32_at(46)), (&b"fact"[..], 4, 3), "fact: 3 frames");
        assert_eq!((&b[50..54], u32_at(54)), (&b"data"[..], 24));
        assert_eq!(&b[58..62], &0.25f32.to_le_bytes());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn what_reached_a_full_disk_is_kept_readable() {
        let path = temp("full.wav");
        // Room for the header and 1000.5 frames: the writes fail once the buffer is flushed.
        let out = testing::FullAfter::create(&path, HEADER_LEN + 8 * 1000 + 4).unwrap();
        let mut w = FloatWavWriter::new(out, &path, 48_000, 2).unwrap();
        let block: Vec<f32> = (0..2 * 128).map(|i| i as f32).collect();
        let mut failed = false;
        for _ in 0..20_000 {
            if w.write(&block).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "the disk filled up");
        assert_eq!(w.salvage().unwrap(), 1000);
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 1000);
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
        assert_eq!(got.len(), 2000);
        assert!(got.iter().enumerate().all(|(i, s)| *s == (i % 256) as f32));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_failed_finish_is_salvaged_to_the_whole_frames_written() {
        let path = temp("full-finish.wav");
        let out = testing::FullAfter::create(&path, HEADER_LEN + 8 * 3 + 7).unwrap();
        let mut w = FloatWavWriter::new(out, &path, 48_000, 2).unwrap();
        w.write(&[0.5f32; 2 * 10]).unwrap();
        assert_eq!(w.finish().unwrap_err().kind(), io::ErrorKind::StorageFull, "the buffer did not fit");
        assert_eq!(w.salvage().unwrap(), 3);
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 3);
        std::fs::remove_file(&path).unwrap();
    }
}
