//! Recording the input aligned with the output (latency compensation), and [`LiveInput`], what
//! `play` runs for `--input` and `--record-input`.
//!
//! The writer thread drains an [`InputCore`]'s rings. Each [`InputBlock`] says at which host
//! instant its first frame was captured; the output's [`ClockSnapshot`] says at which host
//! instant each output sample is at the speaker (`local_us`: on the node's host clock with or
//! without Link, so Link's clock and its filter play no part). So input frame `j` was heard
//! while output sample
//!
//! ```text
//! x(j) = snap.sample + (capture_us(j) - snap.local_us) / snap.local_us_per_sample
//! ```
//!
//! was at the speaker. The writer takes the **offset** `round(x(j) - j)` as the median over the
//! first [`ESTIMATE_BLOCKS`] blocks (device timestamps jitter; the null devices' do not) and keeps
//! it, so every input frame is written exactly once, in order, with no resampling (unless the
//! median of the last [`REALIGN_WINDOW`] blocks' estimates is more than [`REALIGN_FRAMES`] off it:
//! then it moves by that median, see [`RecordSummary::realigned`]): frame `k` of the file is
//! what the input heard while output sample `first_sample + k` (frame `k` of a `--capture` of
//! the same run) was at the speaker. Input captured before that sample is left out; frames
//! missing at the start (the input started later) and frames the input callback dropped are
//! written as silence and counted.
//!
//! Next to `OUT.wav` the writer leaves `OUT.input.toml` ([`sidecar_path`]): the sample rate, the
//! output sample and beat of frame 0, the offset in frames and ms, the input latency the device
//! reported, and the counts.
//!
//! Nothing recorded is lost to a failed write (a full disk): the writer stops writing, keeps
//! what reached the file readable ([`FloatWavWriter::salvage`]), writes the sidecar with the
//! error and the counts ([`RecordSummary::write_error`], [`RecordSummary::unwritten`]), says so
//! on stderr and carries on aligning (the performance plays on). Silence is written in chunks of
//! [`SILENCE_CHUNK`] frames from a static buffer: a gap of any length allocates nothing.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::core::AudioCore;
use super::device::NoDevice;
use super::input::{InputBlock, InputCore, InputPlan, InputReceiver, InputSpec, InputStats, InputStream};
use crate::clock::host;
use crate::clock::{ClockSnapshot, Transport};
use crate::wav::FloatWavWriter;

/// Blocks whose offsets are estimated before the median is taken.
pub const ESTIMATE_BLOCKS: usize = 8;

/// How far (frames) the median of the last [`REALIGN_WINDOW`] blocks' estimates may be off the
/// offset before it is measured again.
pub const REALIGN_FRAMES: f64 = 2.0;

/// Blocks whose estimates' median decides a realignment.
pub const REALIGN_WINDOW: usize = 16;

/// Blocks the writer holds back once the offset is known, so that the blocks that reveal a
/// realignment (8 or 9 of the last [`REALIGN_WINDOW`], depending on its direction, for the
/// median to move) are written at the new offset.
pub const HOLD_BLOCKS: usize = REALIGN_WINDOW / 2 + 1;

/// Frames of silence written at a time (from a static buffer) for a gap.
pub const SILENCE_CHUNK: usize = 4096;

/// The silence written for gaps.
static SILENCE: [f32; 2 * SILENCE_CHUNK] = [0.0; 2 * SILENCE_CHUNK];

/// How often the writer wakes up.
const POLL: Duration = Duration::from_millis(5);

/// How long [`LiveInput::finish`] waits for the input to hear the output's last frame.
const TAIL_WAIT: Duration = Duration::from_secs(1);

/// The recording's sidecar: `x.wav` -> `x.input.toml`.
pub fn sidecar_path(recording: &Path) -> PathBuf {
    recording.with_extension("input.toml")
}

/// What a recording is aligned to.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// The WAV file to write (`None`: measure the offset only).
    pub path: Option<PathBuf>,
    /// Sample rate (the output's).
    pub sample_rate: u32,
    /// The output sample of the file's frame 0 (where the output started).
    pub first_sample: i64,
    /// The beat of that sample.
    pub beat: f64,
    /// At most this many frames are written.
    pub limit: Option<u64>,
    /// What the input is, for the sidecar.
    pub source: String,
}

/// What a recording did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordSummary {
    /// Frames written to the file (including silence written for missing frames).
    pub frames: u64,
    /// Input frame `j` was heard while output sample `j + offset` was at the speaker (`None` if
    /// the output never gave a clock).
    pub offset: Option<i64>,
    /// Silent frames written at the start, before the input's first frame.
    pub leading: u64,
    /// Input frames dropped by the input callback (rings full), written as silence.
    pub dropped: u64,
    /// Input frames captured before the recording's frame 0 (or past its end), left out.
    pub skipped: u64,
    /// The smallest and largest deviation (frames) of a block's own estimate of the offset from
    /// the offset used, over the whole recording: the timestamps' jitter and any drift between
    /// the input's and the output's clocks.
    pub spread: Option<(f64, f64)>,
    /// Times the offset was measured again because the median of the last [`REALIGN_WINDOW`]
    /// blocks' estimates was more than [`REALIGN_FRAMES`] off it (the output moved to another
    /// device, or the clocks drifted apart).
    pub realigned: u64,
    /// Silent frames written where a realignment moved the input later.
    pub realign_silence: u64,
    /// Silent frames written where the input failed and the null input took over (the time
    /// between the failed input's last block and the null input's first).
    pub failover_silence: u64,
    /// Why writing the file failed (a full disk, an I/O error), if it did. The file then holds
    /// the [`frames`](Self::frames) that reached it, readable, and nothing after them.
    pub write_error: Option<String>,
    /// Frames not written because writing had failed before them (0 without a write error).
    pub unwritten: u64,
}

/// The writer's state (on its own thread).
struct Writer<W: Write + Seek> {
    cfg: RecordConfig,
    wav: Option<FloatWavWriter<W>>,
    /// Frames the file holds, once a write failed.
    kept: Option<u64>,
    transport: Arc<Transport>,
    pending: Vec<(InputBlock, Vec<f32>)>,
    estimates: Vec<f64>,
    /// The last [`REALIGN_WINDOW`] blocks' deviations from the offset.
    recent: std::collections::VecDeque<f64>,
    /// Blocks not written yet (at most [`HOLD_BLOCKS`]), with their deviations.
    held: std::collections::VecDeque<(InputBlock, Vec<f32>, f64)>,
    next_in: Option<u64>,
    summary: RecordSummary,
    /// The output sample the input has heard up to (exclusive), for [`LiveInput::finish`].
    heard: Arc<AtomicI64>,
}

impl<W: Write + Seek> Writer<W> {
    /// Where block `b`'s first frame falls on the output's sample line, minus its input frame.
    fn estimate(&self, b: &InputBlock, snap: &ClockSnapshot) -> f64 {
        snap.sample as f64 + (b.capture_us - snap.local_us) / snap.local_us_per_sample - b.frame as f64
    }

    fn take(&mut self, block: InputBlock, samples: Vec<f32>) {
        let snap = self.transport.snapshot();
        let end = block.frame as i64 + block.frames as i64;
        if let Some(offset) = self.summary.offset {
            let d = if snap.local_us_per_sample > 0.0 { self.estimate(&block, &snap) - offset as f64 } else { 0.0 };
            self.held.push_back((block, samples, d));
            if snap.local_us_per_sample > 0.0 {
                let (lo, hi) = self.summary.spread.unwrap_or((d, d));
                self.summary.spread = Some((lo.min(d), hi.max(d)));
                if self.recent.len() == REALIGN_WINDOW {
                    self.recent.pop_front();
                }
                self.recent.push_back(d);
                if self.recent.len() == REALIGN_WINDOW {
                    let mut e: Vec<f64> = self.recent.iter().copied().collect();
                    e.sort_by(f64::total_cmp);
                    let median = e[e.len() / 2];
                    if median.abs() > REALIGN_FRAMES {
                        let moved = median.round();
                        // The held blocks from the first one closer to the new offset than to
                        // the old on are written at the new offset.
                        let keep = self.held.iter().position(|h| (h.2 - moved).abs() < h.2.abs());
                        for _ in 0..keep.unwrap_or(self.held.len()) {
                            self.write_held();
                        }
                        self.summary.offset = Some(offset + moved as i64);
                        self.summary.realigned += 1;
                        self.recent.clear();
                    }
                }
            }
            while self.held.len() > HOLD_BLOCKS {
                self.write_held();
            }
        } else {
            if snap.local_us_per_sample > 0.0 {
                self.estimates.push(self.estimate(&block, &snap));
            }
            self.pending.push((block, samples));
            // Input captured long before the output gave a clock: before frame 0 in any case.
            while self.pending.len() > 4 * ESTIMATE_BLOCKS && self.estimates.is_empty() {
                let (b, _) = self.pending.remove(0);
                self.summary.skipped += b.frames as u64;
            }
            if self.estimates.len() >= ESTIMATE_BLOCKS {
                self.decide();
            }
        }
        if let Some(offset) = self.summary.offset {
            self.heard.store(end + offset, Ordering::Release);
        }
    }

    /// Writes the oldest held block at the current offset.
    fn write_held(&mut self) {
        if let Some((b, s, _)) = self.held.pop_front() {
            self.write_block(&b, &s);
        }
    }

    fn decide(&mut self) {
        let mut e = std::mem::take(&mut self.estimates);
        e.sort_by(f64::total_cmp);
        let offset = e[e.len() / 2].round() as i64;
        self.summary.offset = Some(offset);
        let d = |x: f64| x - offset as f64;
        self.summary.spread = Some((d(e[0]), d(e[e.len() - 1])));
        for (b, s) in std::mem::take(&mut self.pending) {
            self.write_block(&b, &s);
        }
    }

    fn room(&self) -> u64 {
        self.cfg.limit.map_or(u64::MAX, |l| l.saturating_sub(self.summary.frames))
    }

    /// Writes `samples` (after a write error: counts them only). `summary.frames` counts the
    /// frames of the recording's timeline, written or not, so that alignment carries on.
    fn write(&mut self, samples: &[f32]) {
        let frames = (samples.len() / 2) as u64;
        if let Some(wav) = &mut self.wav
            && let Err(e) = wav.write(samples)
        {
            self.write_failed(e);
        }
        self.summary.frames += frames;
    }

    /// Writes `frames` of silence, in chunks of [`SILENCE_CHUNK`].
    fn write_silence(&mut self, mut frames: u64) {
        while frames > 0 {
            let n = frames.min(SILENCE_CHUNK as u64);
            self.write(&SILENCE[..n as usize * 2]);
            frames -= n;
        }
    }

    /// A write failed: stops writing, keeps what reached the file readable, writes the sidecar
    /// with the error and says so.
    fn write_failed(&mut self, e: std::io::Error) {
        let Some(wav) = self.wav.take() else { return };
        let path = wav.path().to_path_buf();
        let salvaged = wav.salvage();
        self.kept = Some(*salvaged.as_ref().unwrap_or(&0));
        self.summary.write_error = Some(e.to_string());
        let kept = match &salvaged {
            Ok(k) => format!(
                "its first {k} frames ({:.1} s) are kept and readable",
                *k as f64 / self.cfg.sample_rate.max(1) as f64
            ),
            Err(h) => format!("its header could not be finished either ({h}): it may read as empty"),
        };
        let side = match self.write_sidecar(&path, None) {
            Ok(()) => format!("the sidecar {} says so", sidecar_path(&path).display()),
            Err(s) => format!("{s:#}"),
        };
        crate::warn_line(format_args!(
            "loophole: cannot write the input recording {} ({e}): recording stopped; {kept}; {side}; playing on",
            path.display()
        ));
    }

    /// The summary as the file sees it: after a write error, `frames` is what the file kept.
    fn file_summary(&self) -> RecordSummary {
        let mut s = self.summary.clone();
        if let Some(kept) = self.kept {
            s.unwritten = s.frames.saturating_sub(kept);
            s.frames = kept;
        }
        s
    }

    fn write_block(&mut self, b: &InputBlock, samples: &[f32]) {
        let offset = self.summary.offset.unwrap_or(0);
        let frames = b.frames as u64;
        let gap = self.next_in.map_or(0, |n| b.frame.saturating_sub(n));
        let lost = b.lost.min(gap);
        self.next_in = Some(b.frame + frames);
        // The file frame of the block's first frame.
        let target = b.frame as i64 + offset - self.cfg.first_sample;
        let written = self.summary.frames as i64;
        let mut skip = 0u64;
        if target < written {
            skip = ((written - target) as u64).min(frames);
            self.summary.skipped += skip;
        } else if target > written {
            let silence = ((target - written) as u64).min(self.room());
            if self.summary.frames == 0 {
                self.summary.leading += silence;
            } else {
                self.summary.realign_silence += silence.saturating_sub(gap);
                self.summary.failover_silence += silence.min(lost);
            }
            self.write_silence(silence);
        }
        self.summary.dropped += gap - lost;
        let keep = (frames - skip).min(self.room());
        self.summary.skipped += frames - skip - keep;
        self.write(&samples[skip as usize * 2..(skip + keep) as usize * 2]);
    }

    fn run(mut self, mut rx: InputReceiver, stop: Arc<AtomicBool>) -> anyhow::Result<RecordSummary> {
        let mut broken = None;
        'drain: loop {
            let stopping = stop.load(Ordering::Acquire);
            let mut any = false;
            while let Ok(b) = rx.blocks.pop() {
                any = true;
                let n = b.frames as usize * 2;
                let chunk = match rx.samples.read_chunk(n) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        // Finish what was written before giving up.
                        broken = Some(anyhow::Error::new(e).context("the input ring lost frames"));
                        break 'drain;
                    }
                };
                let (a, c) = chunk.as_slices();
                let mut samples = Vec::with_capacity(n);
                samples.extend_from_slice(a);
                samples.extend_from_slice(c);
                chunk.commit_all();
                self.take(b, samples);
            }
            if stopping && !any {
                break;
            }
            if !any {
                std::thread::sleep(POLL);
            }
        }
        if self.summary.offset.is_none() && !self.estimates.is_empty() {
            self.decide();
        }
        while !self.held.is_empty() {
            self.write_held();
        }
        if let Some(mut wav) = self.wav.take()
            && let Err(e) = wav.finish()
        {
            // The last buffered frames did not fit: keep what did.
            self.wav = Some(wav);
            self.write_failed(e);
        }
        if let Some(path) = self.cfg.path.clone() {
            let sidecar = self.write_sidecar(&path, Some(&rx.stats));
            if self.kept.is_none() {
                sidecar?;
            } else if let Err(e) = sidecar {
                crate::warn_line(format_args!("loophole: {e:#}"));
            }
        }
        match broken {
            Some(e) => Err(e),
            None => Ok(self.file_summary()),
        }
    }

    /// Writes the sidecar of `path` (`stats`: the input's, at the end; `None` at a write
    /// error, when the input's figures are not final).
    fn write_sidecar(&self, path: &Path, stats: Option<&InputStats>) -> anyhow::Result<()> {
        let summary = self.file_summary();
        let side = sidecar_path(path);
        let rate = self.cfg.sample_rate.max(1) as f64;
        let mut text = String::from("# Loophole input recording: frame k of the WAV file is what the input heard\n");
        text.push_str("# while output sample first_sample + k was at the speaker.\n");
        text.push_str(&format!("source = {:?}\n", self.cfg.source));
        text.push_str(&format!("sample_rate = {}\n", self.cfg.sample_rate));
        text.push_str(&format!("first_sample = {}\n", self.cfg.first_sample));
        text.push_str(&format!("beat = {:?}\n", self.cfg.beat));
        match self.summary.offset {
            Some(o) => {
                text.push_str("# input frame j was heard with output sample j + offset_frames\n");
                text.push_str(&format!("offset_frames = {o}\n"));
                text.push_str(&format!("offset_ms = {:.3}\n", o as f64 * 1e3 / rate));
                if let Some((lo, hi)) = self.summary.spread {
                    text.push_str("# each block's own estimate minus offset_frames, smallest and largest\n");
                    text.push_str(&format!("offset_spread_frames = [{lo:.3}, {hi:.3}]\n"));
                }
            }
            None => text.push_str("# the output gave no clock: nothing could be aligned\n"),
        }
        if let Some(stats) = stats {
            text.push_str(&format!("input_latency_ms = {:.3}\n", stats.latency_us() / 1e3));
        }
        if let Some(e) = &summary.write_error {
            text.push_str("# writing the file failed: it holds the first `frames` frames, readable; what came after\n");
            text.push_str("# was not recorded\n");
            text.push_str(&format!("write_error = {e:?}\n"));
            text.push_str(&format!("unwritten_frames = {}\n", summary.unwritten));
        }
        text.push_str(&format!("frames = {}\n", summary.frames));
        text.push_str(&format!("leading_silence_frames = {}\n", summary.leading));
        let pending = stats.map_or(0, |s| self.pending_dropped(s));
        text.push_str(&format!("dropped_frames = {}\n", summary.dropped + pending));
        text.push_str(&format!("skipped_frames = {}\n", summary.skipped));
        text.push_str(&format!("realigned = {}\n", summary.realigned));
        text.push_str(&format!("realign_silence_frames = {}\n", summary.realign_silence));
        if let Some(stats) = stats {
            text.push_str("# times the input failed and the null input took over; the silence written between\n");
            text.push_str(&format!("input_failures = {}\n", stats.failovers()));
        }
        text.push_str(&format!("failover_silence_frames = {}\n", summary.failover_silence));
        let mut f =
            std::fs::File::create(&side).with_context(|| format!("cannot create the sidecar {}", side.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("cannot write the sidecar {}", side.display()))
    }

    /// Frames the callback dropped after the last block the writer saw (no later block shows
    /// the gap).
    fn pending_dropped(&self, stats: &InputStats) -> u64 {
        let seen = self.next_in.unwrap_or(0);
        (stats.frames() + stats.lost()).saturating_sub(seen).min(stats.dropped())
    }
}

/// A running writer thread.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<RecordSummary>>>,
    heard: Arc<AtomicI64>,
    path: Option<PathBuf>,
}

impl Recorder {
    /// Creates the file (if any) and starts the writer on `rx`, aligning with `transport`'s
    /// clock on the host clock ([`ClockSnapshot::local_us`]).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start(cfg: RecordConfig, rx: InputReceiver, transport: Arc<Transport>) -> anyhow::Result<Recorder> {
        Recorder::start_with(cfg, rx, transport, |p: &Path| std::fs::File::create(p))
    }

    /// Like [`Recorder::start`], writing the file (if `cfg.path` is set) to what `create` opens
    /// for that path (tests inject an output that fails, as a full disk does).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start_with<W, F>(
        cfg: RecordConfig,
        rx: InputReceiver,
        transport: Arc<Transport>,
        create: F,
    ) -> anyhow::Result<Recorder>
    where
        W: Write + Seek + Send + 'static,
        F: FnOnce(&Path) -> std::io::Result<W>,
    {
        let wav = match &cfg.path {
            Some(p) => Some(
                create(p)
                    .and_then(|out| FloatWavWriter::new(out, p, cfg.sample_rate, 2))
                    .with_context(|| format!("cannot create the input recording {}", p.display()))?,
            ),
            None => None,
        };
        let heard = Arc::new(AtomicI64::new(i64::MIN));
        let stop = Arc::new(AtomicBool::new(false));
        let path = cfg.path.clone();
        let writer = Writer {
            cfg,
            wav,
            kept: None,
            transport,
            pending: Vec::new(),
            estimates: Vec::new(),
            recent: std::collections::VecDeque::with_capacity(REALIGN_WINDOW),
            held: std::collections::VecDeque::with_capacity(HOLD_BLOCKS + 1),
            next_in: None,
            summary: RecordSummary::default(),
            heard: heard.clone(),
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("loophole-record".into())
                .spawn(move || writer.run(rx, stop))
                .context("cannot start the input recording thread")?
        };
        Ok(Recorder { stop, thread: Some(thread), heard, path })
    }

    /// The output sample the input has heard up to (exclusive), once the offset is known.
    pub fn heard_until(&self) -> Option<i64> {
        Some(self.heard.load(Ordering::Acquire)).filter(|h| *h != i64::MIN)
    }

    /// The file being written.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes what is left, finishes the file and its sidecar. Call after the input stopped.
    ///
    /// Thread: control. Blocks until the writer is done.
    pub fn finish(mut self) -> anyhow::Result<RecordSummary> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the input recording thread panicked"),
            None => Ok(RecordSummary::default()),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The input of a live performance: the running stream and its writer.
pub struct LiveInput {
    stream: Option<InputStream>,
    stats: Arc<InputStats>,
    recorder: Recorder,
    label: String,
    sample_rate: u32,
    null_block: usize,
    started: Instant,
    /// Why the input failed (the null input took over), if it did.
    failed: Option<String>,
}

/// An input that has delivered this much more audio than wall-clock time since it started is
/// not paced in real time (ALSA's `null` capture, for one) and is stopped.
pub const UNPACED: Duration = Duration::from_millis(1000);

/// What the input did in a performance: [`LiveInput::finish`]'s figures, for the end-of-play
/// summary and the final `input` record of the `--log`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSummary {
    /// What the input was (`--input`), e.g. `the null input (loopback, 5 ms)`.
    pub source: String,
    /// Frames the input delivered (including dropped ones).
    pub frames_in: u64,
    /// The input latency the input reported last (callback minus capture), in ms.
    pub latency_ms: f64,
    /// The recording file, if `--record-input` gave one.
    pub path: Option<PathBuf>,
    /// What the writer did: frames recorded, offset, spread, realignments, silences.
    pub record: RecordSummary,
    /// Input frames dropped (the writer fell behind), in all.
    pub dropped: u64,
    /// Errors the input device reported (xruns excepted).
    pub errors: u64,
    /// Why the input failed mid-set (the null input took over), if it did.
    pub failed: Option<String>,
}

impl InputSummary {
    /// The end-of-play phrase, e.g. `input: recorded 72000 frames, offset -754 frames (spread
    /// +0.00..+0.00), dropped 0, realigned 0`.
    pub fn phrase(&self) -> String {
        let r = &self.record;
        let mut p = match &self.path {
            Some(_) => format!("input: recorded {} frames", r.frames),
            None => format!("input: {} frames heard", self.frames_in),
        };
        match (r.offset, r.spread) {
            (Some(o), Some((lo, hi))) => p.push_str(&format!(", offset {o:+} frames (spread {lo:+.2}..{hi:+.2})")),
            (Some(o), None) => p.push_str(&format!(", offset {o:+} frames")),
            (None, _) => p.push_str(", not aligned (no output clock)"),
        }
        p.push_str(&format!(", dropped {}, realigned {}", self.dropped, r.realigned));
        if let Some(why) = &self.failed {
            p.push_str(&format!(", failed ({why}; {} silent frames to the null input)", r.failover_silence));
        }
        if let Some(e) = &r.write_error {
            p.push_str(&format!(", write failed ({e}; {} frames not recorded)", r.unwritten));
        }
        p
    }

    /// The final `input` record of the `--log`: `{"event": "input", "source", "frames_in",
    /// "recorded_frames", "file", "offset_frames", "offset_ms", "spread_frames": [lo, hi],
    /// "latency_ms", "dropped_frames", "skipped_frames", "leading_silence_frames", "realigned",
    /// "realign_silence_frames", "failed", "failover_silence_frames", "write_error",
    /// "unwritten_frames", "errors"}` (unknown figures, and `write_error` without one, are `null`).
    pub fn record(&self, sample_rate: u32) -> serde_json::Value {
        let r = &self.record;
        serde_json::json!({
            "event": "input",
            "source": self.source,
            "frames_in": self.frames_in,
            "recorded_frames": r.frames,
            "file": self.path.as_ref().map(|p| p.display().to_string()),
            "offset_frames": r.offset,
            "offset_ms": r.offset.map(|o| o as f64 * 1e3 / sample_rate.max(1) as f64),
            "spread_frames": r.spread.map(|(lo, hi)| [lo, hi]),
            "latency_ms": self.latency_ms,
            "dropped_frames": self.dropped,
            "skipped_frames": r.skipped,
            "leading_silence_frames": r.leading,
            "realigned": r.realigned,
            "realign_silence_frames": r.realign_silence,
            "failed": self.failed,
            "failover_silence_frames": r.failover_silence,
            "write_error": r.write_error,
            "unwritten_frames": r.unwritten,
            "errors": self.errors,
        })
    }
}

impl LiveInput {
    /// Opens `spec` at the output's `sample_rate` and `buffer` (the null input uses
    /// `null_block` frames per callback) and starts the writer, recording to `record` if given,
    /// aligned with the output `core` is about to play (at most `limit` frames). A device that
    /// cannot be used is reported on stderr and gives `Ok(None)`: the node plays on without
    /// input, and no file is created or removed (an earlier recording at `record` stays as it
    /// was). A recording file that cannot be created is an error.
    ///
    /// With [`super::input::FAULT_ENV`] set (a test hook), the input fails after that many
    /// seconds of input.
    ///
    /// Thread: control, before `core` is moved into an output backend.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        spec: &InputSpec,
        record: Option<&Path>,
        core: &mut AudioCore,
        transport: &Arc<Transport>,
        sample_rate: u32,
        buffer: Option<u32>,
        null_block: usize,
        limit: Option<u64>,
    ) -> anyhow::Result<Option<LiveInput>> {
        host::origin();
        let (icore, rx) = InputCore::new(sample_rate);
        let stats = icore.stats();
        let snap = transport.snapshot();
        let cfg = RecordConfig {
            path: record.map(Path::to_path_buf),
            sample_rate,
            first_sample: core.sample(),
            beat: snap.beat,
            limit,
            source: spec.label(),
        };
        let fail_after = std::env::var(super::input::FAULT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| (s * sample_rate as f64).round() as u64);
        // The input first: if it cannot be used, no file is touched (an earlier recording at the
        // same path is kept, and no empty recording or sidecar is left behind).
        let started = match spec {
            InputSpec::Device(name) => {
                InputPlan::find(name, sample_rate, buffer).and_then(|p| p.start(icore, fail_after))
            }
            _ => {
                let loopback = matches!(spec, InputSpec::Loopback { .. }).then(|| {
                    // A second of output, in blocks of 16 frames or more.
                    let (tx, rx) = rtrb::RingBuffer::new(sample_rate.max(1) as usize * 2);
                    let (btx, brx) = rtrb::RingBuffer::new(sample_rate.max(1) as usize / 16 + 64);
                    core.set_tap(tx, btx);
                    (rx, brx)
                });
                InputStream::start_null(spec, sample_rate, null_block, icore, loopback, fail_after)
            }
        };
        let stream = match started {
            Ok(stream) => stream,
            Err(NoDevice(why)) => {
                crate::warn_line(format_args!(
                    "loophole: {why}; playing on without input{}",
                    record.map(|p| format!(" (nothing is recorded to {})", p.display())).unwrap_or_default()
                ));
                return Ok(None);
            }
        };
        // The rings hold RING_SECONDS of input until the writer drains them.
        let recorder = match Recorder::start(cfg, rx, transport.clone()) {
            Ok(recorder) => recorder,
            Err(e) => {
                drop(stream.stop());
                return Err(e);
            }
        };
        let label = spec.label();
        crate::warn_line(format_args!(
            "loophole: listening to {label}{}",
            record.map(|p| format!(", recording it to {}", p.display())).unwrap_or_default()
        ));
        Ok(Some(LiveInput {
            stream: Some(stream),
            stats,
            recorder,
            label,
            sample_rate,
            null_block,
            started: Instant::now(),
            failed: None,
        }))
    }

    /// Watches the input. One that reported a failure (cpal's error callback: the device was
    /// unplugged, the stream invalidated) is stopped, its core taken back, and the null input
    /// (silence) carries on from it on the same timeline: what was recorded stays, the time
    /// between is written as silence and counted (`failover_silence_frames`), and the offset
    /// holds. One that runs faster than real time (by more than [`UNPACED`]) is stopped: what
    /// it recorded so far stays. Either is said on stderr.
    ///
    /// Thread: control, every tick.
    pub fn step(&mut self) {
        if let Some(kind) = self.stats.take_failure()
            && self.failed.is_none()
            && let Some(stream) = self.stream.take()
        {
            let why = format!("{kind:?}: {kind}");
            let core = stream.stop();
            let successor = core.map(|mut core| {
                core.resume_after_failure();
                let spec = InputSpec::Silence;
                InputStream::start_null(&spec, self.sample_rate, self.null_block, core, None, None)
            });
            match successor {
                Some(Ok(stream)) => {
                    self.stream = Some(stream);
                    crate::warn_line(format_args!(
                        "loophole: {} failed ({why}); recording silence from the null input from here on, on the same timeline",
                        self.label
                    ));
                }
                Some(Err(NoDevice(e))) => crate::warn_line(format_args!(
                    "loophole: {} failed ({why}) and the null input cannot take over ({e}); the recording ends here",
                    self.label
                )),
                None => crate::warn_line(format_args!(
                    "loophole: {} failed ({why}) and did not hand its input back; the recording ends here",
                    self.label
                )),
            }
            self.failed = Some(why);
            return;
        }
        let ahead = self.stats.frames() as f64 / self.sample_rate.max(1) as f64 - self.started.elapsed().as_secs_f64();
        if ahead > UNPACED.as_secs_f64()
            && self.failed.is_none()
            && let Some(stream) = self.stream.take()
        {
            drop(stream.stop());
            crate::warn_line(format_args!(
                "loophole: {} is not paced in real time ({ahead:.1} s ahead of the clock); stopped listening to it",
                self.label
            ));
        }
    }

    /// Input frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    /// Waits (at most a second) until the input has heard the output up to `end` (exclusive),
    /// stops it, finishes the recording and prints a status line. Call after the output stopped.
    ///
    /// Thread: control.
    pub fn finish(mut self, end: i64) -> anyhow::Result<InputSummary> {
        self.stats.output_stopped();
        let until = Instant::now() + TAIL_WAIT;
        while self.stream.is_some() && Instant::now() < until && self.recorder.heard_until().is_none_or(|h| h < end) {
            std::thread::sleep(POLL);
        }
        if let Some(s) = self.stream.take() {
            drop(s.stop());
        }
        let path = self.recorder.path().map(Path::to_path_buf);
        let summary = self.recorder.finish()?;
        let rate_note = match (summary.offset, summary.spread) {
            (Some(o), Some((lo, hi))) => {
                format!("input frame j was heard with output frame j{o:+}, blocks within {lo:+.2}..{hi:+.2} frames")
            }
            (Some(o), None) => format!("input frame j was heard with output frame j{o:+}"),
            (None, _) => "no output clock to align it with".into(),
        };
        let mut line = format!(
            "input: {} frames from {} ({rate_note}); input latency {:.2} ms; dropped input frames {}",
            self.stats.frames(),
            self.label,
            self.stats.latency_us() / 1e3,
            self.stats.dropped()
        );
        if let Some(p) = &path {
            line.push_str(&format!("; recorded {} frames to {}", summary.frames, p.display()));
        }
        if let Some(e) = &summary.write_error {
            line.push_str(&format!(
                "; WRITING THE RECORDING FAILED ({e}): the file keeps its first {} frames, {} frames were not recorded",
                summary.frames, summary.unwritten
            ));
        }
        if summary.realigned > 0 {
            line.push_str(&format!(
                "; realigned {} times ({} silent frames inserted, {} input frames left out in all)",
                summary.realigned, summary.realign_silence, summary.skipped
            ));
        }
        if let Some(why) = &self.failed {
            line.push_str(&format!(
                "; the input failed ({why}): {} silent frames until the null input took over",
                summary.failover_silence
            ));
        }
        if self.stats.loopback_missing() > 0 {
            line.push_str(&format!("; loopback frames the output had not rendered {}", self.stats.loopback_missing()));
        }
        if self.stats.errors() > 0 || self.stats.xruns() > 0 {
            line.push_str(&format!("; input device errors {}, overruns {}", self.stats.errors(), self.stats.xruns()));
        }
        crate::say(format_args!("{line}"));
        Ok(InputSummary {
            source: self.label.clone(),
            frames_in: self.stats.frames(),
            latency_ms: self.stats.latency_us() / 1e3,
            path,
            record: summary,
            dropped: self.stats.dropped(),
            errors: self.stats.errors(),
            failed: self.failed.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::EngineConfig;
    use loophole_engine::model::Session;
    use loophole_engine::time::{Bpm, TempoMap};

    /// The recorder settings the tests use: 48 kHz, frame 0 at sample 0 and beat 0.
    fn test_config(path: Option<PathBuf>, limit: Option<u64>) -> RecordConfig {
        RecordConfig { path, sample_rate: 48_000, first_sample: 0, beat: 0.0, limit, source: "test".into() }
    }

    /// An output at 48 kHz whose sample 0 is heard at host time 1 s (one 480-frame block
    /// rendered, so the snapshot has a clock).
    fn output() -> (AudioCore, Arc<Transport>) {
        let session = Arc::new(Session::new("empty", Bpm(120.0)));
        let (_p, signal) =
            loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 1024, queue_capacity: 16 })
                .unwrap();
        let transport = Transport::new();
        let mut core = AudioCore::new(signal, TempoMap::new(48_000, Bpm(120.0), 4.0), 0, transport.clone());
        let timing = crate::clock::CallbackTiming { late_us: 0.0, latency_us: 10_000.0, due_us: 990_000.0 };
        core.render_stereo_timed(&mut vec![0f32; 960], timing);
        (core, transport)
    }

    #[test]
    fn input_frames_are_placed_at_the_output_frame_heard_at_their_capture_instant() {
        let (_core, transport) = output();
        let snap = transport.snapshot();
        assert_eq!((snap.sample, snap.host_us), (480, 1_010_000.0));
        let path = std::env::temp_dir().join(format!("loophole-record-unit-{}.wav", std::process::id()));
        let (mut icore, rx) = InputCore::new(48_000);
        let cfg = test_config(Some(path.clone()), Some(2_000));
        let rec = Recorder::start(cfg, rx, transport).unwrap();
        // Input frame 0 captured 2.5 ms after output sample 0 was heard: output sample 120.
        // Blocks of 100 frames, each a ramp of its frame numbers, one block dropped (ring full
        // is simulated by skipping its frame range).
        let us = 1e6 / 48_000.0;
        for k in 0..20u64 {
            if k == 5 {
                icore.skip_frames(100); // as if dropped
                continue;
            }
            let data: Vec<f32> = (0..200).map(|i| (k * 100 + i / 2) as f32).collect();
            icore.push(&data, 2, 1_002_500.0 + (k * 100) as f64 * us, 0.0);
        }
        let s = rec.finish().unwrap();
        assert_eq!(s.offset, Some(120));
        let (lo, hi) = s.spread.unwrap();
        assert!(lo.abs() < 1e-6 && hi.abs() < 1e-6, "exact timestamps agree: {lo}..{hi}");
        assert_eq!((s.leading, s.dropped, s.frames), (120, 100, 2_000));
        let mut r = hound::WavReader::open(&path).unwrap();
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).collect();
        for k in 0..2_000usize {
            let want = if k < 120 || (620..720).contains(&k) { 0.0 } else { (k - 120) as f32 };
            assert_eq!(got[2 * k], want, "file frame {k}");
        }
        let side = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        assert!(side.contains("offset_frames = 120\n") && side.contains("dropped_frames = 100\n"), "{side}");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(sidecar_path(&path)).unwrap();
    }

    #[test]
    fn the_offset_is_measured_again_when_the_blocks_move_away_from_it() {
        let (_core, transport) = output();
        let (mut icore, rx) = InputCore::new(48_000);
        let path = std::env::temp_dir().join(format!("loophole-record-realign-{}.wav", std::process::id()));
        let cfg = test_config(Some(path.clone()), None);
        let rec = Recorder::start(cfg, rx, transport).unwrap();
        let us = 1e6 / 48_000.0;
        // 30 blocks at offset 120; then the input's timestamps jump 5 ms (240 frames) later, as
        // when the output moved to another device; then 1.5 frames of jitter, which is kept.
        // Every block's frames hold its number plus 1.
        for k in 0..60u64 {
            let jump = if k >= 30 { 240.0 * us } else { 0.0 };
            let jitter = if k >= 45 && k % 2 == 0 { 1.5 * us } else { 0.0 };
            let data = vec![(k + 1) as f32; 200];
            icore.push(&data, 2, 1_002_500.0 + (k * 100) as f64 * us + jump + jitter, 0.0);
        }
        let s = rec.finish().unwrap();
        assert_eq!(s.offset, Some(360), "realigned to the new timestamps");
        assert_eq!(s.realigned, 1);
        assert_eq!(s.realign_silence, 240);
        assert_eq!(s.frames, 120 + 6000 + 240);
        // The blocks that revealed the change were held back and written at the new offset too:
        // block 29 ends at file frame 3120, 240 frames of silence, block 30 from 3360 on.
        let mut r = hound::WavReader::open(&path).unwrap();
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).step_by(2).collect();
        assert_eq!((got[3020], got[3119]), (30.0, 30.0), "block 29 at the old offset");
        assert!(got[3120..3360].iter().all(|v| *v == 0.0), "silence where the input moved later");
        assert_eq!((got[3360], got[3459], got[3460]), (31.0, 31.0, 32.0), "block 30 at the new offset");
        assert_eq!(got[6359], 60.0);
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(sidecar_path(&path)).unwrap();
    }

    #[test]
    fn a_failed_input_is_followed_on_the_same_timeline_with_the_gap_counted() {
        let (_core, transport) = output();
        let (mut icore, rx) = InputCore::new(48_000);
        let cfg = test_config(None, None);
        let rec = Recorder::start(cfg, rx, transport).unwrap();
        let us = 1e6 / 48_000.0;
        for k in 0..20u64 {
            icore.push(&[0.5f32; 200], 2, 1_002_500.0 + (k * 100) as f64 * us, 0.0);
        }
        // The device fails; the null input's first block is captured 1000.4 frames after the
        // failed one's end (block 20 would have started at input frame 2000).
        icore.resume_after_failure();
        for k in 0..20u64 {
            let t = 1_002_500.0 + (2000.0 + 1000.4 + (k * 100) as f64) * us;
            icore.push(&[0.25f32; 200], 2, t, 0.0);
        }
        let stats = icore.stats();
        assert_eq!((stats.lost(), stats.failovers(), stats.dropped()), (1000, 1, 0));
        let s = rec.finish().unwrap();
        assert_eq!(s.offset, Some(120), "the offset holds across the failover");
        assert_eq!((s.realigned, s.failover_silence, s.dropped), (0, 1000, 0));
        assert_eq!(s.frames, 120 + 2000 + 1000 + 2000);
        let (lo, hi) = s.spread.unwrap();
        assert!(lo > -0.5 && hi < 0.5, "each block within half a frame of the offset: {lo}..{hi}");
    }

    #[test]
    fn a_full_disk_keeps_what_was_recorded_readable_and_the_sidecar_says_so() {
        let (_core, transport) = output();
        let (mut icore, rx) = InputCore::new(48_000);
        let path = std::env::temp_dir().join(format!("loophole-record-full-{}.wav", std::process::id()));
        let cfg = test_config(Some(path.clone()), None);
        // Room for 200 000 frames and a half: more than the writer's 1 MiB buffer, so a write
        // fails in the middle of the recording.
        let cap = 58 + 8 * 200_000 + 4;
        let rec = Recorder::start_with(cfg, rx, transport, |p: &Path| crate::wav::testing::FullAfter::create(p, cap))
            .unwrap();
        let us = 1e6 / 48_000.0;
        for k in 0..400u64 {
            let data: Vec<f32> = (0..2000).map(|i| ((k * 1000 + i / 2) % 1_000_003) as f32).collect();
            icore.push(&data, 2, 1_002_500.0 + (k * 1000) as f64 * us, 0.0);
            // The writer goes on aligning after the failure: it keeps up with the input.
            let until = Instant::now() + Duration::from_secs(20);
            while k % 50 == 49 && rec.heard_until().is_none_or(|h| h < ((k + 1) * 1000 + 120) as i64) {
                assert!(Instant::now() < until, "the writer stopped at block {k}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let s = rec.finish().unwrap();
        assert_eq!(s.write_error.as_deref(), Some("No space left on device (test)"));
        assert_eq!((s.frames, s.unwritten, s.leading, s.dropped), (200_000, 400_120 - 200_000, 120, 0));
        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.duration(), 200_000);
        let got: Vec<f32> = r.samples::<f32>().map(Result::unwrap).step_by(2).collect();
        for (k, v) in got.iter().enumerate() {
            let want = if k < 120 { 0.0 } else { ((k - 120) % 1_000_003) as f32 };
            assert_eq!(*v, want, "file frame {k}");
        }
        let side = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        for line in
            ["write_error = \"No space left on device (test)\"\n", "unwritten_frames = 200120\n", "frames = 200000\n"]
        {
            assert!(side.contains(line), "{line} in {side}");
        }
        assert!(side.contains("offset_frames = 120\n") && side.contains("input_failures = 0\n"), "final: {side}");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(sidecar_path(&path)).unwrap();
    }

    #[test]
    fn a_write_error_is_in_the_summary_phrase_and_the_log_record() {
        let mut sum = InputSummary {
            source: "test".into(),
            frames_in: 2_000,
            latency_ms: 0.0,
            path: Some("in.wav".into()),
            record: RecordSummary { frames: 700, offset: Some(120), ..RecordSummary::default() },
            dropped: 0,
            errors: 0,
            failed: None,
        };
        assert!(!sum.phrase().contains("write failed"), "{}", sum.phrase());
        assert_eq!(sum.record(48_000)["write_error"], serde_json::Value::Null);
        sum.record.write_error = Some("No space left on device".into());
        sum.record.unwritten = 1_420;
        assert!(sum.phrase().ends_with(", write failed (No space left on device; 1420 frames not recorded)"));
        let rec = sum.record(48_000);
        assert_eq!(
            (rec["write_error"].as_str(), rec["unwritten_frames"].as_u64()),
            (Some("No space left on device"), Some(1_420))
        );
        assert_eq!(rec["recorded_frames"].as_u64(), Some(700));
    }

    #[test]
    fn a_full_disk_at_the_last_flush_keeps_the_frames_that_fit() {
        let (_core, transport) = output();
        let (mut icore, rx) = InputCore::new(48_000);
        let path = std::env::temp_dir().join(format!("loophole-record-full-end-{}.wav", std::process::id()));
        let cfg = test_config(Some(path.clone()), None);
        let cap = 58 + 8 * 700 + 7;
        let rec = Recorder::start_with(cfg, rx, transport, |p: &Path| crate::wav::testing::FullAfter::create(p, cap))
            .unwrap();
        let us = 1e6 / 48_000.0;
        for k in 0..20u64 {
            icore.push(&[0.5f32; 200], 2, 1_002_500.0 + (k * 100) as f64 * us, 0.0);
        }
        let s = rec.finish().unwrap();
        assert_eq!((s.frames, s.unwritten, s.write_error.is_some()), (700, 2_120 - 700, true));
        assert_eq!(hound::WavReader::open(&path).unwrap().duration(), 700);
        let side = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        assert!(side.contains("frames = 700\n") && side.contains("unwritten_frames = 1420\n"), "{side}");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(sidecar_path(&path)).unwrap();
    }
}
