//! Takes a kill cut off: each take file being written has a marker beside it
//! (`NAME.wav.recording`, removed when the take is finished). [`find_unfinished`] finds the
//! markers in a takes folder, and [`repair`] sets each file's header to the whole frames the
//! file holds (a torn last frame is cut off) and removes the marker, so the take opens as a
//! normal WAV file with everything that reached the disk: at least every frame up to the last
//! sync. Control thread (the node's `takes` command); file I/O.

use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::wav::{HEADER_BYTES, MAX_DATA_BYTES, header};

/// The suffix of the marker beside a take file being written.
pub const MARKER_SUFFIX: &str = ".recording";

/// What the marker of a take file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Channels of the file.
    pub channels: u16,
    /// Its sample rate.
    pub sample_rate: u32,
    /// The track that recorded it.
    pub track: String,
    /// The beat of its first frame.
    pub beat: f64,
}

impl Marker {
    /// The marker's text (`key = value` lines, TOML).
    pub fn to_text(&self) -> String {
        format!(
            "# a take being recorded: `loophole-node takes` repairs it if it is still here after the node stopped\n\
             channels = {}\nsample_rate = {}\ntrack = {:?}\nbeat = {:?}\n",
            self.channels, self.sample_rate, self.track, self.beat
        )
    }

    /// Reads a marker's text; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Marker> {
        let value = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let channels: u16 = value("channels")?.parse().ok()?;
        let sample_rate: u32 = value("sample_rate")?.parse().ok()?;
        let track = value("track")?.trim_matches('"').to_string();
        let beat: f64 = value("beat")?.parse().ok()?;
        ((1..=2).contains(&channels) && sample_rate > 0).then_some(Marker { channels, sample_rate, track, beat })
    }
}

/// The marker path of a take file.
pub fn marker_of(file: &Path) -> PathBuf {
    let mut m = file.as_os_str().to_owned();
    m.push(MARKER_SUFFIX);
    PathBuf::from(m)
}

/// An unfinished take, repaired.
#[derive(Debug, Clone, PartialEq)]
pub struct Repaired {
    /// The take file.
    pub file: PathBuf,
    /// What its marker said.
    pub marker: Marker,
    /// Frames its header described before the repair (as of the last sync).
    pub header_frames: u64,
    /// Frames it holds now.
    pub frames: u64,
}

/// The take files in `dir` that still have a marker, sorted by name.
pub fn find_unfinished(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && let Some(file) = name.strip_suffix(MARKER_SUFFIX)
        {
            out.push(path.with_file_name(file));
        }
    }
    out.sort();
    Ok(out)
}

/// Repairs one unfinished take file (see the module docs) and removes its marker.
pub fn repair(file: &Path) -> io::Result<Repaired> {
    let marker_path = marker_of(file);
    let text = std::fs::read_to_string(&marker_path)?;
    let marker = Marker::parse(&text).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a take marker", marker_path.display()))
    })?;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file)?;
    let mut head = [0u8; 44];
    let len = f.metadata()?.len();
    let header_frames = if len >= HEADER_BYTES {
        use std::io::Read as _;
        f.read_exact(&mut head)?;
        u64::from(u32::from_le_bytes([head[40], head[41], head[42], head[43]])) / (4 * u64::from(marker.channels))
    } else {
        0
    };
    let frame = 4 * u64::from(marker.channels);
    let data = (len.saturating_sub(HEADER_BYTES) / frame * frame).min(MAX_DATA_BYTES / frame * frame);
    f.set_len(HEADER_BYTES + data)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header(marker.channels, marker.sample_rate, data))?;
    f.sync_all()?;
    std::fs::remove_file(&marker_path)?;
    Ok(Repaired { file: file.to_path_buf(), marker, header_frames, frames: data / frame })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::wav::TakeWav;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("loophole-repair-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn samples(from: usize, n: usize) -> Vec<f32> {
        (from..from + n).map(|i| i as f32).collect()
    }

    /// What a kill leaves: the header as of the last sync, more samples after it, the marker.
    fn killed(d: &Path, synced: usize, more: usize) -> PathBuf {
        let file = d.join("mic-take-1.wav");
        let marker = Marker { channels: 2, sample_rate: 48_000, track: "mic".into(), beat: 4.0 };
        std::fs::write(marker_of(&file), marker.to_text()).unwrap();
        let mut w = TakeWav::create(&file, 2, 48_000).unwrap();
        w.write(&samples(0, synced * 2)).unwrap();
        w.sync().unwrap();
        assert_eq!(w.synced_frames(), synced as u64);
        // More than the 64 KiB buffer: these reach the file but the header does not say so.
        w.write(&samples(synced * 2, more * 2)).unwrap();
        drop(w); // killed: no finish
        file
    }

    fn decode(file: &Path) -> Vec<f32> {
        let a = crate::media::wav::decode_wav(&std::fs::read(file).unwrap()).unwrap();
        a.left.iter().zip(&a.right).flat_map(|(l, r)| [*l, *r]).collect()
    }

    #[test]
    fn a_killed_take_opens_with_every_synced_frame_and_is_repaired_to_all_it_holds() {
        let d = dir("killed");
        let file = killed(&d, 5000, 20_000);
        // Before the repair, the file already opens with the synced frames.
        assert_eq!(decode(&file), samples(0, 10_000));
        assert_eq!(find_unfinished(&d).unwrap(), vec![file.clone()]);
        let r = repair(&file).unwrap();
        assert_eq!(r.header_frames, 5000);
        assert!(r.frames >= 5000, "{r:?}");
        let x = decode(&file);
        assert_eq!(x.len() as u64, r.frames * 2);
        assert_eq!(x, samples(0, x.len()), "every frame is intact and in order");
        assert!(find_unfinished(&d).unwrap().is_empty(), "the marker is gone");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_frame_is_cut_off() {
        let d = dir("torn");
        let file = killed(&d, 3000, 0);
        // A kill in the middle of a write: 5 more bytes than whole frames.
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&[1, 2, 3, 4, 5]).unwrap();
        drop(f);
        let r = repair(&file).unwrap();
        assert_eq!((r.header_frames, r.frames), (3000, 3000));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), HEADER_BYTES + 3000 * 8);
        assert_eq!(decode(&file), samples(0, 6000));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_take_killed_before_its_header_was_written_becomes_an_empty_file() {
        let d = dir("empty");
        let file = d.join("vox-take-2.wav");
        std::fs::write(&file, b"").unwrap();
        let m = Marker { channels: 1, sample_rate: 44_100, track: "vox".into(), beat: 0.0 };
        std::fs::write(marker_of(&file), m.to_text()).unwrap();
        let r = repair(&file).unwrap();
        assert_eq!((r.frames, r.marker), (0, m));
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(crate::record::wav::read_header(&bytes), Some((1, 44_100)));
        assert_eq!(bytes.len() as u64, HEADER_BYTES);
        // A marker that is not one is an error, not a panic.
        std::fs::write(marker_of(&file), "nonsense").unwrap();
        assert!(repair(&file).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
