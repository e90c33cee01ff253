//! The WAV file of one take: 32-bit float, mono or stereo, written in order, with its header's
//! sizes rewritten and the file synced on demand ([`TakeWav::sync`]), so a file cut off by a kill
//! or a power cut reads as a WAV file holding every frame up to the last sync. Disk thread.

use std::fs::File;
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// Bytes of the header [`header`] writes; samples start there.
pub const HEADER_BYTES: u64 = 44;

/// Most data bytes a RIFF file can describe (its sizes are 32-bit).
pub const MAX_DATA_BYTES: u64 = u32::MAX as u64 - HEADER_BYTES;

/// The 44-byte header of a 32-bit float WAV file with `data_bytes` of samples.
pub fn header(channels: u16, sample_rate: u32, data_bytes: u64) -> [u8; 44] {
    let data = data_bytes.min(MAX_DATA_BYTES) as u32;
    let block_align = channels * 4;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&3u16.to_le_bytes()); // WAVE_FORMAT_IEEE_FLOAT
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&32u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// Reads the channel count and sample rate of a header [`header`] wrote; `None` for any other
/// file.
pub fn read_header(bytes: &[u8]) -> Option<(u16, u32)> {
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..16] != b"WAVEfmt " || &bytes[36..40] != b"data" {
        return None;
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let channels = u16_at(22);
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    (u16_at(20) == 3 && u16_at(34) == 32 && (1..=2).contains(&channels) && rate > 0).then_some((channels, rate))
}

/// One take's file being written. See the module docs.
pub struct TakeWav {
    file: File,
    path: PathBuf,
    channels: u16,
    sample_rate: u32,
    /// Samples not yet written to the file.
    pending: Vec<u8>,
    /// Data bytes in the file (written, maybe not synced).
    written: u64,
    /// Data bytes the header said at the last sync.
    synced: u64,
}

impl TakeWav {
    /// Creates `path` (it must not exist) with a header for no samples, synced.
    pub fn create(path: &Path, channels: u16, sample_rate: u32) -> io::Result<TakeWav> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
        file.write_all(&header(channels, sample_rate, 0))?;
        file.sync_all()?;
        Ok(TakeWav {
            file,
            path: path.to_path_buf(),
            channels,
            sample_rate,
            pending: Vec::with_capacity(1 << 16),
            written: 0,
            synced: 0,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Frames in the file once what is buffered is written.
    pub fn frames(&self) -> u64 {
        (self.written + self.pending.len() as u64) / (4 * u64::from(self.channels))
    }

    /// Frames the header described at the last sync (what a kill now would leave readable).
    pub fn synced_frames(&self) -> u64 {
        self.synced / (4 * u64::from(self.channels))
    }

    /// Data bytes (written and buffered).
    pub fn data_bytes(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Appends interleaved samples (buffered; written when the buffer passes 64 KiB).
    pub fn write(&mut self, samples: &[f32]) -> io::Result<()> {
        for s in samples {
            self.pending.extend_from_slice(&s.to_le_bytes());
        }
        if self.pending.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends `frames` frames of silence.
    pub fn write_silence(&mut self, frames: u64) -> io::Result<()> {
        let zeros = [0f32; 1024];
        let mut left = frames * u64::from(self.channels);
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            self.write(&zeros[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.file.seek(SeekFrom::Start(HEADER_BYTES + self.written))?;
            self.file.write_all(&self.pending)?;
            self.written += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes what is buffered, rewrites the header's sizes and syncs the file: from now on a
    /// kill leaves every frame so far readable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&header(self.channels, self.sample_rate, self.written))?;
        self.file.sync_data()?;
        self.synced = self.written;
        Ok(())
    }

    /// Syncs a last time and closes the file. Returns its frames.
    pub fn finish(mut self) -> io::Result<u64> {
        self.sync()?;
        Ok(self.synced_frames())
    }

    /// After a write error: the header is set to the whole frames that reached the file (no new
    /// space is needed for that), so the file stays readable. Returns those frames.
    pub fn keep_what_is_there(mut self) -> u64 {
        self.pending.clear();
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(HEADER_BYTES + self.synced);
        let frame = 4 * u64::from(self.channels);
        let data = (len.saturating_sub(HEADER_BYTES) / frame * frame).min(self.written.max(self.synced));
        let ok = self.file.seek(SeekFrom::Start(0)).is_ok()
            && self.file.write_all(&header(self.channels, self.sample_rate, data)).is_ok()
            && self.file.sync_data().is_ok();
        if ok { data / frame } else { self.synced_frames() }
    }
}
