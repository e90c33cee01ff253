//! A streaming writer of 32-bit float WAV files.
//!
//! Renders and captures are written block by block, never held in memory. The header is the
//! standard one for float audio, as sox writes it (`WAVE_FORMAT_IEEE_FLOAT` in an 18-byte
//! `WAVEFORMATEX`, then a `fact` chunk), with the sizes patched in by [`FloatWavWriter::finish`];
//! sox, hound and libsndfile read it without complaint. Samples go through a byte scratch buffer over
//! whole blocks (`f32::to_le_bytes`, which compiles to a plain copy on little-endian machines)
//! into a large `BufWriter`: no per-sample call reaches the writer.
//!
//! Thread: any non-realtime thread (the render loop, the capture writer thread).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER_LEN: u64 = 58;
/// Offset of the `fact` chunk's frame count.
const FACT_FRAMES_AT: u64 = 46;
/// Offset of the `data` chunk's size field.
const DATA_SIZE_AT: u64 = HEADER_LEN - 4;
const BUFFER_BYTES: usize = 1 << 20;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;

/// Writes an interleaved 32-bit float WAV file as it is produced.
#[derive(Debug)]
pub struct FloatWavWriter {
    out: BufWriter<File>,
    path: PathBuf,
    channels: u16,
    samples: u64,
    scratch: Vec<u8>,
}

impl FloatWavWriter {
    /// Creates (or truncates) `path` and writes a header with zero length.
    pub fn create(path: &Path, sample_rate: u32, channels: u16) -> io::Result<FloatWavWriter> {
        let file = File::create(path)?;
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
        out.write_all(&header(sample_rate, channels, 0, 0))?;
        Ok(FloatWavWriter {
            out,
            path: path.to_path_buf(),
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
    /// A file over 4 GiB keeps the largest size a WAV header can hold.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        let data_bytes = u32::try_from(self.samples * 4).unwrap_or(u32::MAX - HEADER_LEN as u32);
        let frames = u32::try_from(self.frames()).unwrap_or(u32::MAX);
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&(data_bytes + HEADER_LEN as u32 - 8).to_le_bytes())?;
        file.seek(SeekFrom::Start(FACT_FRAMES_AT))?;
        file.write_all(&frames.to_le_bytes())?;
        file.seek(SeekFrom::Start(DATA_SIZE_AT))?;
        file.write_all(&data_bytes.to_le_bytes())?;
        file.flush()?;
        Ok(self.frames())
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
}
