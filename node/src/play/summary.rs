//! What a performance did ([`PlaySummary`]) and the end-of-play status line. Control thread.

use std::path::PathBuf;

use crate::audio::record::InputSummary;
use crate::health::HealthFigures;
use crate::input::Performance;
use crate::midi::MidiSummary;
use crate::{dbfs, say};

/// What a performance did.
#[derive(Debug, Clone)]
pub struct PlaySummary {
    /// Frames played.
    pub frames: u64,
    /// Callbacks (blocks) rendered.
    pub blocks: u64,
    /// Device underruns and callback gaps, plus deadline misses of the null device.
    pub xruns: u64,
    /// DSP load (of the last backend), xruns and late starts, realtime scheduling.
    pub health: HealthFigures,
    /// Frames that did not fit into the capture ring.
    pub dropped_capture: u64,
    /// Output peak (linear).
    pub peak: f32,
    /// Why the performance moved to the null device, if it did.
    pub fell_back: Option<String>,
    /// The capture file and the frames written to it.
    pub capture: Option<(PathBuf, u64)>,
    /// Presses refused, from every source: names the session lacks, lines that are not commands,
    /// presses while stopped, Pulse's refusals.
    pub refused: usize,
    /// Tempo and time-signature changes the audio thread could not hold
    /// ([`crate::clock::Transport::refused_tempo_changes`]).
    pub refused_tempo_changes: u64,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Times the performance switched back from the null device to its device.
    pub switched_back: u32,
    /// Frames of streamed clips played as silence because the disk reader was behind.
    pub stream_underruns: u64,
    /// What the input (`--input`) did, if there was one.
    pub input: Option<InputSummary>,
}

impl PlaySummary {
    /// Prints the end-of-play status line (and the MIDI lines): what played, on what, the
    /// DSP load, the capture and the input. `on`: the backend's label; `link`: Link's peer count
    /// and the tempo at the end, when the node played on Link.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn print(
        &self,
        on: &str,
        sample_rate: u32,
        perf: &Performance,
        link_peers: Option<u64>,
        tempo: f64,
        midi: Option<MidiSummary>,
        midi_out: Option<String>,
    ) {
        let figures = &self.health;
        let mut status = format!(
            "{} {:.2} s ({} frames, {} blocks) on {on}; {}; {}; dropped capture frames {}; output peak {}",
            if self.interrupted { "stopped by Ctrl-C after" } else { "played" },
            self.frames as f64 / sample_rate as f64,
            self.frames,
            self.blocks,
            if on.contains("null") {
                format!("deadline misses {}, late callbacks {}", self.xruns, figures.late_starts)
            } else {
                format!("xruns {}", self.xruns)
            },
            crate::health::summary(figures),
            self.dropped_capture,
            dbfs(self.peak),
        );
        if self.switched_back > 0 {
            status.push_str(&format!("; switched back from the null device {} time(s)", self.switched_back));
        }
        if let Some((path, n)) = &self.capture {
            status.push_str(&format!("; captured {n} frames to {}", path.display()));
        }
        if let Some(input) = &self.input {
            status.push_str(&format!("; {}", input.phrase()));
        }
        if let Some(peers) = link_peers {
            status.push_str(&format!("; Link: {peers} peers, {tempo:.2} BPM"));
        }
        if self.refused > 0 {
            status.push_str(&format!("; {} press(es) refused", self.refused));
        }
        if self.refused_tempo_changes > 0 {
            status.push_str(&format!(
                "; {} tempo change(s) refused (the audio thread's tempo map was full)",
                self.refused_tempo_changes
            ));
        }
        if perf.session.clips.iter().any(|c| c.stream.is_some()) {
            status.push_str(&format!("; stream underruns {} frames", self.stream_underruns));
        }
        say(format_args!("{status}"));
        if let Some(midi) = midi {
            say(format_args!("{}", midi.line()));
        }
        if let Some(line) = midi_out {
            say(format_args!("{line}"));
        }
    }
}
