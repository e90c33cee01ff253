//! Recording the input aligned with the output (latency compensation), and [`LiveInput`], what
//! `play` runs for `--input` and `--record-input`.
//!
//! The writer thread drains an [`InputCore`]'s rings. Each [`InputBlock`] says at which host
//! instant its first frame was captured; the output's [`ClockSnapshot`] says at which host
//! instant each output sample is at the speaker (with Link on Link's clock, bridged by the
//! [`HostOffset`] the control thread measures). So input frame `j` was heard while output sample
//!
//! ```text
//! x(j) = snap.sample + (capture_us(j) + link_offset - snap.host_us) / snap.us_per_sample
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

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::core::{AudioCore, ClockSnapshot, Transport};
use super::device::NoDevice;
use super::host::{self, HostOffset};
use super::input::{InputBlock, InputCore, InputPlan, InputReceiver, InputSpec, InputStats, InputStream};
use crate::wav::FloatWavWriter;

/// Blocks whose offsets are estimated before the median is taken.
pub const ESTIMATE_BLOCKS: usize = 8;

/// How far (frames) the median of the last [`REALIGN_WINDOW`] blocks' estimates may be off the
/// offset before it is measured again.
pub const REALIGN_FRAMES: f64 = 2.0;

/// Blocks whose estimates' median decides a realignment.
pub const REALIGN_WINDOW: usize = 16;

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
}

/// The writer's state (on its own thread).
struct Writer {
    cfg: RecordConfig,
    wav: Option<FloatWavWriter>,
    transport: Arc<Transport>,
    link_offset: Arc<HostOffset>,
    pending: Vec<(InputBlock, Vec<f32>)>,
    estimates: Vec<f64>,
    /// The last [`REALIGN_WINDOW`] blocks' deviations from the offset.
    recent: std::collections::VecDeque<f64>,
    next_in: Option<u64>,
    summary: RecordSummary,
    /// The output sample the input has heard up to (exclusive), for [`LiveInput::finish`].
    heard: Arc<AtomicI64>,
}

impl Writer {
    /// Where block `b`'s first frame falls on the output's sample line, minus its input frame.
    fn estimate(&self, b: &InputBlock, snap: &ClockSnapshot) -> f64 {
        let t = b.capture_us + self.link_offset.get();
        snap.sample as f64 + (t - snap.host_us) / snap.us_per_sample - b.frame as f64
    }

    fn take(&mut self, block: InputBlock, samples: Vec<f32>) -> anyhow::Result<()> {
        let snap = self.transport.snapshot();
        if let Some(offset) = self.summary.offset {
            if snap.us_per_sample > 0.0 {
                let d = self.estimate(&block, &snap) - offset as f64;
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
                        self.summary.offset = Some(offset + median.round() as i64);
                        self.summary.realigned += 1;
                        self.recent.clear();
                    }
                }
            }
            return self.write_block(&block, &samples);
        }
        if snap.us_per_sample > 0.0 {
            self.estimates.push(self.estimate(&block, &snap));
        }
        self.pending.push((block, samples));
        // Input captured long before the output gave a clock: before frame 0 in any case.
        while self.pending.len() > 4 * ESTIMATE_BLOCKS && self.estimates.is_empty() {
            let (b, _) = self.pending.remove(0);
            self.summary.skipped += b.frames as u64;
        }
        if self.estimates.len() >= ESTIMATE_BLOCKS {
            self.decide()?;
        }
        Ok(())
    }

    fn decide(&mut self) -> anyhow::Result<()> {
        let mut e = std::mem::take(&mut self.estimates);
        e.sort_by(f64::total_cmp);
        let offset = e[e.len() / 2].round() as i64;
        self.summary.offset = Some(offset);
        let d = |x: f64| x - offset as f64;
        self.summary.spread = Some((d(e[0]), d(e[e.len() - 1])));
        for (b, s) in std::mem::take(&mut self.pending) {
            self.write_block(&b, &s)?;
        }
        Ok(())
    }

    fn room(&self) -> u64 {
        self.cfg.limit.map_or(u64::MAX, |l| l.saturating_sub(self.summary.frames))
    }

    fn write(&mut self, samples: &[f32]) -> anyhow::Result<()> {
        let frames = (samples.len() / 2) as u64;
        if let Some(wav) = &mut self.wav {
            wav.write(samples).with_context(|| format!("cannot write the input recording {}", wav.path().display()))?;
        }
        self.summary.frames += frames;
        Ok(())
    }

    fn write_block(&mut self, b: &InputBlock, samples: &[f32]) -> anyhow::Result<()> {
        let offset = self.summary.offset.unwrap_or(0);
        let frames = b.frames as u64;
        let gap = self.next_in.map_or(0, |n| b.frame.saturating_sub(n));
        self.next_in = Some(b.frame + frames);
        self.heard.store(b.frame as i64 + frames as i64 + offset, Ordering::Release);
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
            }
            let zeros = vec![0f32; silence as usize * 2];
            self.write(&zeros)?;
        }
        self.summary.dropped += gap;
        let keep = (frames - skip).min(self.room());
        self.summary.skipped += frames - skip - keep;
        self.write(&samples[skip as usize * 2..(skip + keep) as usize * 2])
    }

    fn run(mut self, mut rx: InputReceiver, stop: Arc<AtomicBool>) -> anyhow::Result<RecordSummary> {
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let mut any = false;
            while let Ok(b) = rx.blocks.pop() {
                any = true;
                let n = b.frames as usize * 2;
                let chunk = rx.samples.read_chunk(n).context("the input ring lost frames")?;
                let (a, c) = chunk.as_slices();
                let mut samples = Vec::with_capacity(n);
                samples.extend_from_slice(a);
                samples.extend_from_slice(c);
                chunk.commit_all();
                self.take(b, samples)?;
            }
            if stopping && !any {
                break;
            }
            if !any {
                std::thread::sleep(POLL);
            }
        }
        if self.summary.offset.is_none() && !self.estimates.is_empty() {
            self.decide()?;
        }
        if let Some(wav) = self.wav.take() {
            let path = wav.path().to_path_buf();
            wav.finish().with_context(|| format!("cannot finish the input recording {}", path.display()))?;
            self.write_sidecar(&path, &rx.stats)?;
        }
        Ok(self.summary)
    }

    fn write_sidecar(&self, path: &Path, stats: &InputStats) -> anyhow::Result<()> {
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
        text.push_str(&format!("input_latency_ms = {:.3}\n", stats.latency_us() / 1e3));
        text.push_str(&format!("frames = {}\n", self.summary.frames));
        text.push_str(&format!("leading_silence_frames = {}\n", self.summary.leading));
        text.push_str(&format!("dropped_frames = {}\n", self.summary.dropped + self.pending_dropped(stats)));
        text.push_str(&format!("skipped_frames = {}\n", self.summary.skipped));
        text.push_str(&format!("realigned = {}\n", self.summary.realigned));
        text.push_str(&format!("realign_silence_frames = {}\n", self.summary.realign_silence));
        let mut f =
            std::fs::File::create(&side).with_context(|| format!("cannot create the sidecar {}", side.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("cannot write the sidecar {}", side.display()))
    }

    /// Frames the callback dropped after the last block the writer saw (no later block shows
    /// the gap).
    fn pending_dropped(&self, stats: &InputStats) -> u64 {
        let seen = self.next_in.unwrap_or(0);
        stats.frames().saturating_sub(seen).min(stats.dropped())
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
    /// clock (plus `link_offset` with Link).
    ///
    /// Thread: control. Not realtime-safe.
    pub fn start(
        cfg: RecordConfig,
        rx: InputReceiver,
        transport: Arc<Transport>,
        link_offset: Arc<HostOffset>,
    ) -> anyhow::Result<Recorder> {
        let wav = match &cfg.path {
            Some(p) => Some(
                FloatWavWriter::create(p, cfg.sample_rate, 2)
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
            transport,
            link_offset,
            pending: Vec::new(),
            estimates: Vec::new(),
            recent: std::collections::VecDeque::with_capacity(REALIGN_WINDOW),
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
    link_offset: Arc<HostOffset>,
    sample_rate: u32,
    started: Instant,
}

/// An input that has delivered this much more audio than wall-clock time since it started is
/// not paced in real time (ALSA's `null` capture, for one) and is stopped.
pub const UNPACED: Duration = Duration::from_millis(1000);

impl LiveInput {
    /// Opens `spec` at the output's `sample_rate` and `buffer` (the null input uses
    /// `null_block` frames per callback) and starts the writer, recording to `record` if given,
    /// aligned with the output `core` is about to play (at most `limit` frames). A device that
    /// cannot be used is reported on stderr and gives `Ok(None)`: the node plays on without
    /// input. A recording file that cannot be created is an error.
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
        let link_offset = Arc::new(HostOffset::default());
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
        let recorder = Recorder::start(cfg, rx, transport.clone(), link_offset.clone())?;
        let started = match spec {
            InputSpec::Device(name) => {
                InputPlan::find(name, sample_rate, buffer).and_then(|p| p.start(icore)).map(InputStream::Device)
            }
            _ => {
                let loopback = matches!(spec, InputSpec::Loopback { .. }).then(|| {
                    // A second of output, in blocks of 16 frames or more.
                    let (tx, rx) = rtrb::RingBuffer::new(sample_rate.max(1) as usize * 2);
                    let (btx, brx) = rtrb::RingBuffer::new(sample_rate.max(1) as usize / 16 + 64);
                    core.set_tap(tx, btx);
                    (rx, brx)
                });
                InputStream::start_null(spec, sample_rate, null_block, icore, loopback)
            }
        };
        match started {
            Ok(stream) => {
                let label = spec.label();
                crate::warn_line(format_args!(
                    "loophole: listening to {label}{}",
                    record.map(|p| format!(", recording it to {}", p.display())).unwrap_or_default()
                ));
                let started = Instant::now();
                Ok(Some(LiveInput { stream: Some(stream), stats, recorder, label, link_offset, sample_rate, started }))
            }
            Err(NoDevice(why)) => {
                crate::warn_line(format_args!(
                    "loophole: {why}; playing on without input{}",
                    record.map(|p| format!(" (nothing is recorded to {})", p.display())).unwrap_or_default()
                ));
                let _ = recorder.finish();
                if let Some(p) = record {
                    let _ = std::fs::remove_file(p);
                }
                Ok(None)
            }
        }
    }

    /// With Link, measures the offset from the host clock to Link's (`link_us`, read just now).
    /// Stops an input that runs faster than real time (by more than [`UNPACED`]) and says so:
    /// what it recorded so far stays.
    ///
    /// Thread: control, every tick.
    pub fn step(&mut self, link_us: Option<i64>) {
        if let Some(us) = link_us {
            self.link_offset.set(us as f64 - host::now_us());
        }
        let ahead = self.stats.frames() as f64 / self.sample_rate.max(1) as f64 - self.started.elapsed().as_secs_f64();
        if ahead > UNPACED.as_secs_f64()
            && let Some(stream) = self.stream.take()
        {
            stream.stop();
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
    pub fn finish(mut self, end: i64) -> anyhow::Result<RecordSummary> {
        self.stats.output_stopped();
        let until = Instant::now() + TAIL_WAIT;
        while Instant::now() < until && self.recorder.heard_until().is_none_or(|h| h < end) {
            std::thread::sleep(POLL);
        }
        if let Some(s) = self.stream.take() {
            s.stop();
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
        if let Some(p) = path {
            line.push_str(&format!("; recorded {} frames to {}", summary.frames, p.display()));
        }
        if summary.realigned > 0 {
            line.push_str(&format!(
                "; realigned {} times ({} silent frames inserted, {} input frames left out in all)",
                summary.realigned, summary.realign_silence, summary.skipped
            ));
        }
        if self.stats.loopback_missing() > 0 {
            line.push_str(&format!("; loopback frames the output had not rendered {}", self.stats.loopback_missing()));
        }
        if self.stats.errors() > 0 {
            line.push_str(&format!("; input device errors {}", self.stats.errors()));
        }
        crate::say(format_args!("{line}"));
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::EngineConfig;
    use loophole_engine::model::Session;
    use loophole_engine::time::{Bpm, TempoMap};

    /// An output at 48 kHz whose sample 0 is heard at host time 1 s (one 480-frame block
    /// rendered, so the snapshot has a clock).
    fn output() -> (AudioCore, Arc<Transport>) {
        let session = Arc::new(Session::new("empty", Bpm(120.0)));
        let (_p, signal) =
            loophole_engine::build(session, &EngineConfig { sample_rate: 48_000, max_block: 1024, queue_capacity: 16 })
                .unwrap();
        let transport = Transport::new();
        let mut core = AudioCore::new(signal, TempoMap::new(48_000, Bpm(120.0), 4.0), 0, transport.clone());
        let timing = crate::audio::CallbackTiming { late_us: 0.0, latency_us: 10_000.0, due_us: 990_000.0 };
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
        let cfg = RecordConfig {
            path: Some(path.clone()),
            sample_rate: 48_000,
            first_sample: 0,
            beat: 0.0,
            limit: Some(2_000),
            source: "test".into(),
        };
        let rec = Recorder::start(cfg, rx, transport, Arc::new(HostOffset::default())).unwrap();
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
        let cfg = RecordConfig {
            path: None,
            sample_rate: 48_000,
            first_sample: 0,
            beat: 0.0,
            limit: None,
            source: "test".into(),
        };
        let rec = Recorder::start(cfg, rx, transport, Arc::new(HostOffset::default())).unwrap();
        let us = 1e6 / 48_000.0;
        // 30 blocks at offset 120; then the input's timestamps jump 5 ms (240 frames) later, as
        // when the output moved to another device; then 1.5 frames of jitter, which is kept.
        for k in 0..60u64 {
            let jump = if k >= 30 { 240.0 * us } else { 0.0 };
            let jitter = if k >= 45 && k % 2 == 0 { 1.5 * us } else { 0.0 };
            let data = vec![0.25f32; 200];
            icore.push(&data, 2, 1_002_500.0 + (k * 100) as f64 * us + jump + jitter, 0.0);
        }
        let s = rec.finish().unwrap();
        assert_eq!(s.offset, Some(360), "realigned to the new timestamps");
        assert_eq!(s.realigned, 1);
        // The first 8 blocks after the jump were still written at the old offset; the ninth
        // makes them the majority of the last 16 and lands 240 frames later: silence between.
        assert_eq!(s.realign_silence, 240);
        assert_eq!(s.frames, 120 + 6000 + 240);
    }
}
