//! A streaming writer of 32-bit float WAV files.
//!
//! Renders and captures are written block by block, never held in memory. The header is the one
//! `hound` writes for float audio (`WAVE_FORMAT_EXTENSIBLE` with the IEEE float subtype), with the
//! sizes patched in by [`FloatWavWriter::finish`]. Samples go through a byte scratch buffer over
//! whole blocks (`f32::to_le_bytes`, which compiles to a plain copy on little-endian machines)
//! into a large `BufWriter`: no per-sample call reaches the writer.
//!
//! Thread: any non-realtime thread (the render loop, the capture writer thread).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER_LEN: u64 = 68;
/// Offset of the data chunk's size field.
const DATA_SIZE_AT: u64 = HEADER_LEN - 4;
const BUFFER_BYTES: usize = 1 << 20;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xfffe;

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
        out.write_all(&header(sample_rate, channels, 0))?;
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
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&(data_bytes + HEADER_LEN as u32 - 8).to_le_bytes())?;
        file.seek(SeekFrom::Start(DATA_SIZE_AT))?;
        file.write_all(&data_bytes.to_le_bytes())?;
        file.flush()?;
        Ok(self.frames())
    }
}

/// KSDATAFORMAT_SUBTYPE_IEEE_FLOAT.
const SUBTYPE_IEEE_FLOAT: [u8; 16] =
    [0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

/// A RIFF/WAVE header for float samples with `data_bytes` of audio: `WAVEFORMATEXTENSIBLE` with
/// the IEEE float subtype, byte for byte what `hound` writes.
fn header(sample_rate: u32, channels: u16, data_bytes: u32) -> [u8; HEADER_LEN as usize] {
    let channels = channels.max(1);
    let block_align = channels * 4;
    let mask = (0..u32::from(channels.min(18))).fold(0u32, |m, c| m | (1 << c));
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&data_bytes.saturating_add(HEADER_LEN as u32 - 8).to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&40u32.to_le_bytes());
    h.extend_from_slice(&WAVE_FORMAT_EXTENSIBLE.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate.saturating_mul(u32::from(block_align))).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&32u16.to_le_bytes()); // container bits
    h.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    h.extend_from_slice(&32u16.to_le_bytes()); // valid bits
    h.extend_from_slice(&mask.to_le_bytes());
    h.extend_from_slice(&SUBTYPE_IEEE_FLOAT);
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
    fn the_header_matches_the_one_hound_writes() {
        let ours = temp("ours.wav");
        let theirs = temp("theirs.wav");
        let samples = [0.25f32, -0.5, 1.0, 0.0];
        let mut w = FloatWavWriter::create(&ours, 48_000, 2).unwrap();
        w.write(&samples).unwrap();
        w.finish().unwrap();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut h = hound::WavWriter::create(&theirs, spec).unwrap();
        for s in samples {
            h.write_sample(s).unwrap();
        }
        h.finalize().unwrap();
        assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
        std::fs::remove_file(&ours).unwrap();
        std::fs::remove_file(&theirs).unwrap();
    }
}
