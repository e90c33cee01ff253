//! Offline rendering: the same Pulse and Signal the live node runs, driven by a [`SimClock`].
//!
//! Beat 0 is sample 0. Scripted presses are made at their beats, and Pulse is ticked up to each
//! press before it is made, so the schedule (and therefore the output) is bit-identical whatever
//! block sizes the render is cut into. Clips streamed from disk ([`crate::media::stream`]) are read
//! synchronously before each block by the same reader the live node runs on a thread, so a render
//! does not depend on disk timing and equals the fully resident render.

use std::sync::Arc;

use crate::model::Session;
use crate::pulse::{Pulse, PulseError, PulseEvent};
use crate::queue::MidiOutEvent;
use crate::script::Script;
use crate::signal::Signal;
use crate::time::{Beats, Bpm, SampleTime, TempoMap};
use crate::{EngineConfig, EngineError};

/// Settings of an offline render.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderConfig {
    /// Output sample rate.
    pub sample_rate: u32,
    /// Block size the render is cut into (the output does not depend on it).
    pub block: usize,
    /// Length of the render in seconds.
    pub seconds: f64,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig { sample_rate: 48_000, block: 256, seconds: 10.0 }
    }
}

/// Capacity of the offline renderer's MIDI-out ring (drained after every block of at most 4096
/// frames).
pub const MIDI_OUT_RING: usize = 1 << 16;

/// An offline render in progress. Call [`Renderer::render_block`] until it returns 0.
pub struct Renderer {
    pulse: Pulse,
    signal: Signal,
    clock: TempoMap,
    script: Script,
    next_action: usize,
    sample: SampleTime,
    total: SampleTime,
    block: usize,
    errors: Vec<(Beats, PulseError)>,
    /// The MIDI-out ring, when a track is routed to an external output.
    midi_rx: Option<rtrb::Consumer<MidiOutEvent>>,
    /// What routed tracks sent so far, in sample order.
    midi_out: Vec<MidiOutEvent>,
    /// The disk reader of streamed clips, run synchronously before each block.
    reader: Option<crate::media::reader::StreamReader>,
    /// The inputs fed to Signal's record taps, once connected.
    inputs: Option<crate::record::wire::RenderInputs>,
}

impl Renderer {
    /// Prepares a render of `session` performed by `script`. Control thread.
    pub fn new(session: Arc<Session>, script: Script, config: RenderConfig) -> Result<Renderer, EngineError> {
        if !(config.seconds.is_finite() && config.seconds >= 0.0) {
            return Err(EngineError::Config(format!("render length {} s", config.seconds)));
        }
        let block = config.block.max(1);
        let clock = TempoMap::new(config.sample_rate, session.tempo, session.beats_per_bar);
        let (pulse, mut signal, reader) = crate::build_with_reader(
            session,
            &EngineConfig { sample_rate: config.sample_rate, max_block: block.min(4096), queue_capacity: 8192 },
        )?;
        let midi_rx = signal.has_midi_out().then(|| signal.connect_midi_out(MIDI_OUT_RING));
        Ok(Renderer {
            midi_rx,
            midi_out: Vec::new(),
            pulse,
            signal,
            clock,
            script,
            next_action: 0,
            sample: 0,
            total: (config.seconds * config.sample_rate as f64).round() as SampleTime,
            block,
            errors: Vec::new(),
            reader,
            inputs: None,
        })
    }

    /// Connects the render's named inputs (`--input NAME=SOURCE`) to the tracks that record from
    /// them: from now on each input's frames are fed to Signal before every block, and the
    /// armed tracks' takes come out of the returned ring (give it to a
    /// [`crate::record::writer::TakeWriter`]). Before each block the render waits for room in
    /// that ring, so an offline render loses nothing to a slow disk. Call before the first block.
    /// Returns the input names tracks use that were not given (they record silence).
    pub fn connect_inputs(
        &mut self,
        inputs: Vec<(String, crate::record::feed::InputSource)>,
    ) -> Result<(rtrb::Consumer<crate::queue::takes::TakeMsg>, Vec<String>), EngineError> {
        let session = self.pulse.session().clone();
        let (inputs, ring) = crate::record::wire::RenderInputs::connect(&session, &mut self.signal, inputs, self.block)
            .map_err(EngineError::Config)?;
        let unbound = inputs.unbound.clone();
        self.inputs = Some(inputs);
        Ok((ring, unbound))
    }

    /// Signal's record counters (frames lost to a full take ring, input underruns), once
    /// inputs are connected.
    pub fn record_counters(&self) -> Option<Arc<crate::signal::record::RecordCounters>> {
        self.inputs.as_ref().map(|i| i.counters.clone())
    }

    /// Frames the whole render produces.
    pub fn total_frames(&self) -> u64 {
        self.total as u64
    }

    /// Frames rendered so far.
    pub fn position(&self) -> u64 {
        self.sample as u64
    }

    /// The tempo at the render position.
    pub fn tempo(&self) -> Bpm {
        self.clock.tempo_at(self.sample)
    }

    /// The session being rendered.
    pub fn session(&self) -> &Arc<Session> {
        self.pulse.session()
    }

    /// Pulse, for actions made from code between blocks.
    pub fn pulse(&mut self) -> &mut Pulse {
        &mut self.pulse
    }

    /// Signal, for meters.
    pub fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Script actions Pulse refused, with the beat they were pressed at.
    pub fn errors(&self) -> &[(Beats, PulseError)] {
        &self.errors
    }

    /// The beat at `sample` on the render's timeline (with the tempo changes made so far).
    pub fn beat_at(&self, sample: SampleTime) -> Beats {
        self.clock.block(sample, 0).beat_at_first_sample
    }

    /// What a display shows at the render's position, as the live node publishes it: the
    /// launcher as Pulse plans it at the beat reached, the transport (playing, that beat, the
    /// tempo), the meters' peaks since the last call (they are taken), no Link and no health
    /// figures (an offline render has no device). `ui-snapshot` and the UI's tests draw it.
    pub fn snapshot(&mut self) -> crate::control::Snapshot {
        use crate::control::{HealthView, Snapshot, TransportView};
        let sample = self.sample;
        let beat = self.beat_at(sample);
        let meters = self.signal.meters();
        let tracks =
            (0..self.session().tracks.len() as u32).map(|t| meters.take_track(crate::model::TrackId(t))).collect();
        Snapshot {
            seq: 1,
            launcher: self.pulse.core().view(beat),
            transport: TransportView {
                playing: true,
                beat: beat.0,
                tempo: self.tempo().0,
                sample,
                sample_rate: self.clock.sample_rate(),
            },
            link: None,
            meters: tracks,
            master: meters.take_master(),
            health: HealthView { device: "offline render".into(), ..HealthView::default() },
            notice: None,
            conductor: None,
        }
    }

    /// Takes the MIDI messages routed tracks sent to their external outputs since the last call,
    /// in sample order (empty when no track has `midi_out`).
    pub fn take_midi_out(&mut self) -> Vec<MidiOutEvent> {
        std::mem::take(&mut self.midi_out)
    }

    /// MIDI-out messages lost because the ring was full (a block longer than the ring holds).
    pub fn lost_midi_out(&self) -> u64 {
        self.signal.lost_midi_out().load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Renders the next block of the configured size into `out` (interleaved stereo). Returns the
    /// frames rendered: 0 when the render is complete.
    pub fn render_block(&mut self, out: &mut [f32]) -> usize {
        self.render_frames(self.block, out)
    }

    /// Renders the next `frames` frames (fewer at the end) into `out`, which must hold
    /// `2 * frames` samples. Returns the frames rendered.
    pub fn render_frames(&mut self, frames: usize, out: &mut [f32]) -> usize {
        let n = (frames as i64).min(self.total - self.sample).min(out.len() as i64 / 2).max(0) as usize;
        if n == 0 {
            return 0;
        }
        let n = self.clock.next_change_after(self.sample).map_or(n, |c| n.min((c - self.sample) as usize));
        let clock = self.clock.block(self.sample, n);
        let end = clock.end_beat();
        // Press every scripted action that falls before the end of this block, ticking Pulse up
        // to each one first, so events are scheduled in beat order whatever the block size.
        while let Some(a) = self.script.actions.get(self.next_action).copied() {
            if a.beat.0 >= end.0 {
                break;
            }
            if let Err(e) = self.pulse.tick(a.beat, a.beat) {
                self.errors.push((a.beat, e));
            }
            if let Err(e) = self.pulse.press(a.action, a.beat) {
                self.errors.push((a.beat, e));
            }
            self.next_action += 1;
        }
        if let Err(e) = self.pulse.tick(clock.beat_at_first_sample, end) {
            self.errors.push((end, e));
        }
        // Scenes and the arrangement may change the tempo within this block: cut it there.
        let changes = self.pulse.take_tempo_changes();
        let (n, clock) = if changes.is_empty() {
            (n, clock)
        } else {
            for c in changes {
                if !self.clock.change(c.beat, c.tempo, c.beats_per_bar) {
                    self.errors.push((c.beat, PulseError::QueueFull));
                }
            }
            let n = self.clock.next_change_after(self.sample).map_or(n, |c| n.min((c - self.sample) as usize));
            (n, self.clock.block(self.sample, n))
        };
        if let Some(reader) = &mut self.reader {
            // Streamed clips: let Signal ask for what this block needs, then read it from disk
            // before the block renders (offline, nothing may depend on the reader's timing).
            self.signal.prepare(&clock);
            reader.service();
        }
        if let Some(inputs) = &mut self.inputs {
            inputs.before_block(&self.signal, n);
        }
        self.signal.process(&clock, &mut out[..n * 2]);
        if let Some(rx) = &mut self.midi_rx {
            self.midi_out.extend(std::iter::from_fn(|| rx.pop().ok()));
        }
        self.sample += n as i64;
        n
    }

    /// The next event Signal reported (executed triggers, clip ends).
    pub fn poll_event(&mut self) -> Option<PulseEvent> {
        self.pulse.poll_event()
    }

    /// Renders everything into one interleaved stereo buffer, collecting the events. Convenient for
    /// tests; the node streams blocks to disk instead.
    pub fn render_all(&mut self) -> (Vec<f32>, Vec<PulseEvent>) {
        let mut audio = Vec::with_capacity(self.total as usize * 2);
        let mut buf = vec![0f32; self.block * 2];
        let mut events = Vec::new();
        loop {
            let n = self.render_block(&mut buf);
            if n == 0 {
                break;
            }
            audio.extend_from_slice(&buf[..n * 2]);
            while let Some(e) = self.poll_event() {
                events.push(e);
            }
        }
        (audio, events)
    }
}
