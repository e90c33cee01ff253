//! The disk reader of clips streamed from disk: it answers the requests Signal makes on each
//! lane ([`crate::queue::lanes`]) with chunks read from the clips' cache files. Live it runs on
//! a thread of its own ([`StreamReader::spawn`]); offline the renderer calls
//! [`StreamReader::service`] before each block, so renders do not depend on disk timing.
//!
//! Reader thread (or the control thread between blocks offline); does file I/O; never on the
//! audio thread. A file that cannot be read marks its source failed
//! ([`crate::model::StreamSource::fail`]) and Pulse refuses further launches of its clips.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::model::StreamSource;
use crate::queue::lanes::{CHUNK, Chunk, ReaderLane};

/// The non-realtime reader: fills every lane from the cache files. Live it runs on its own thread
/// ([`StreamReader::spawn`]); offline the renderer calls [`StreamReader::service`] before each
/// block, so renders are deterministic.
pub struct StreamReader {
    lanes: Vec<ReaderLane>,
    sources: Vec<Arc<StreamSource>>,
    files: Vec<Option<File>>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader").field("lanes", &self.lanes.len()).field("sources", &self.sources).finish()
    }
}

impl StreamReader {
    /// A reader for the given lane ends and the sources their requests name (by index).
    /// Control thread; allocates its read buffer.
    pub(crate) fn new(lanes: Vec<ReaderLane>, sources: Vec<Arc<StreamSource>>) -> StreamReader {
        StreamReader { lanes, files: sources.iter().map(|_| None).collect(), sources, bytes: vec![0u8; CHUNK * 8] }
    }

    /// Answers new requests and fills every lane as far as it has room. Returns whether it read
    /// anything. Control or reader thread; does file I/O.
    pub fn service(&mut self) -> bool {
        let mut worked = false;
        for li in 0..self.lanes.len() {
            loop {
                let lane = &mut self.lanes[li];
                let tag = lane.request.tag.load(Ordering::Acquire);
                if tag != lane.tag {
                    lane.tag = tag;
                    lane.pos = lane.request.pos.load(Ordering::Relaxed).max(0);
                    lane.stream = match tag & 0xffff_ffff {
                        0 => None,
                        s => Some(s as usize - 1),
                    };
                    lane.failed = false;
                }
                let Some(s) = lane.stream else { break };
                if lane.failed || lane.tx.slots() == 0 {
                    break;
                }
                let source = &self.sources[s];
                let frames = source.frames() as i64;
                if lane.pos >= frames {
                    break;
                }
                let n = (frames - lane.pos).min(CHUNK as i64) as usize;
                let pos = lane.pos;
                match read_frames(&mut self.files[s], source, pos, &mut self.bytes[..n * 8]) {
                    Ok(()) => {
                        let mut chunk =
                            Chunk { generation: (tag >> 32) as u32, start: pos, len: n as u32, data: [0.0; CHUNK * 2] };
                        for (d, b) in chunk.data.iter_mut().zip(self.bytes[..n * 8].chunks_exact(4)) {
                            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        }
                        let lane = &mut self.lanes[li];
                        let _ = lane.tx.push(chunk);
                        lane.pos += n as i64;
                        worked = true;
                    }
                    Err(e) => {
                        source.fail(e.to_string());
                        self.files[s] = None;
                        self.lanes[li].failed = true;
                    }
                }
            }
        }
        worked
    }

    /// Runs [`StreamReader::service`] on a thread of its own until the returned guard is dropped.
    pub fn spawn(mut self) -> std::io::Result<ReaderThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new().name("loophole-stream".into()).spawn(move || {
            while !flag.load(Ordering::Acquire) {
                if !self.service() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })?;
        Ok(ReaderThread { stop, handle: Some(handle) })
    }
}

/// Reads frames `[pos, pos + out.len() / 8)` of a cache file.
fn read_frames(file: &mut Option<File>, source: &StreamSource, pos: i64, out: &mut [u8]) -> std::io::Result<()> {
    if file.is_none() {
        *file = Some(File::open(source.path())?);
    }
    let Some(f) = file.as_mut() else { return Ok(()) };
    f.seek(SeekFrom::Start(pos as u64 * 8))?;
    f.read_exact(out)
}

/// The live reader thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct ReaderThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ReaderThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
